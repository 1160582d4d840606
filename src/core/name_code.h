/* name_code.h - the one table helper for the names of enumerations (a TLS mode, a profile, a token
 * scope, a log level, an HTTP method, a problem code): rows {name, code}, looked up either way,
 * as Postfix's name_code.c does. Pure; any thread. */
#pragma once

#include <stddef.h>

struct name_code {
        const char *name;
        int code;
};

/* The code of the row named name (exact, case-sensitive): 0 with *code, -EINVAL when no row has
 * that name or name is NULL (*code untouched). */
int name_to_code(const struct name_code *table, size_t n, const char *name, int *code);
/* The name of the first row with code, NULL when there is none. */
const char *code_to_name(const struct name_code *table, size_t n, int code);
/* The same for a list indexed by the code (names[code], which may double as a JSON choice
 * list): the index of name, or -EINVAL. */
int name_to_index(const char *const *names, size_t n, const char *name);
