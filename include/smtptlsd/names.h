/* names.h - what clients name and hold: the grammar of resource names (tokens, certificates, job
 * actors) and the token scopes with their spelling. Pure; any thread. */
#pragma once

#include <stdbool.h>

enum scope {
        SCOPE_NONE = 0, /* no token needed */
        SCOPE_READ,
        SCOPE_WRITE,
        SCOPE_ADMIN,
};

/* The longest name name_is_valid accepts. */
#define NAME_LEN_MAX 64

/* "read", "write" or "admin" (not "none": no token has it): 0 with *ret, or -EINVAL. */
int scope_from_string(const char *s, enum scope *ret);
/* The scope's name; "none" for SCOPE_NONE and anything unknown. */
const char *scope_to_string(enum scope s);
/* Names of tokens (and certificates) are [a-z0-9][a-z0-9._-]{0,63}. */
bool name_is_valid(const char *s);
