/* name_code.c - looking a {name, code} table up either way (see name_code.h). Pure; any thread. */
#include "core/name_code.h"

#include "util.h"

int name_to_code(const struct name_code *table, size_t n, const char *name, int *code)
{
        for (size_t i = 0; name && i < n; i++)
                if (streq(table[i].name, name)) {
                        *code = table[i].code;
                        return 0;
                }
        return -EINVAL;
}

const char *code_to_name(const struct name_code *table, size_t n, int code)
{
        for (size_t i = 0; i < n; i++)
                if (table[i].code == code)
                        return table[i].name;
        return NULL;
}

int name_to_index(const char *const *names, size_t n, const char *name)
{
        for (size_t i = 0; name && i < n; i++)
                if (names[i] && streq(names[i], name))
                        return (int)i;
        return -EINVAL;
}
