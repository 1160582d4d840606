/* names.h - what clients name and hold: the grammar of resource names (tokens, certificates, job
 * actors) the token scopes with their spelling, and the shape of a token. Pure; any thread. */
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

#define TOKEN_PREFIX "stk_"
/* "stk_" + 43 characters of base64url (32 random bytes) + NUL */
#define TOKEN_SIZE 48

/* Whether token has the shape of one we issue ("stk_" + 43 base64url characters); pure, so a
 * request can be refused before it costs a database connection, and a token pasted where a name
 * belongs (a policy's destination) is recognised. */
bool token_is_well_formed(const char *token);
