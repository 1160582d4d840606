/* token_cache.h (api) - bearer tokens authenticated a moment ago, by the SHA-256 of the token:
 * name and scope, kept at most TOKEN_CACHE_USEC, so that a read costs no database round trip for
 * its token while a token revoked anywhere (on this node, another node, by the CLI) is refused
 * within that time. Only successes are kept; the hash, never the token. HTTP threads. */
#pragma once

#include <stdbool.h>

#include "core/names.h"

#define TOKEN_CACHE_USEC (1000ull * 1000) /* a revocation reaches every node within this */

/* The name and scope of the token whose SHA-256 (hex) is hash, if it was authenticated less
 * than TOKEN_CACHE_USEC ago. */
bool token_cache_get(const char hash[65], char name[static 72], enum scope *scope);
void token_cache_put(const char hash[65], const char *name, enum scope scope);
/* Everything forgotten (a token revoked through this node: refused at once here). */
void token_cache_clear(void);
