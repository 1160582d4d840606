/* names.c - the grammar of resource names and the spelling of token scopes (see names.h). Pure;
 * any thread. */
#include "core/names.h"

#include <string.h>

#include "core/name_code.h"
#include "util.h"

static const struct name_code scope_names[] = {
        { "read", SCOPE_READ },
        { "write", SCOPE_WRITE },
        { "admin", SCOPE_ADMIN },
};

int scope_from_string(const char *s, enum scope *ret)
{
        int code;
        int r = name_to_code(scope_names, ARRAY_SIZE(scope_names), s, &code);
        if (r < 0)
                return r;
        *ret = (enum scope)code;
        return 0;
}

const char *scope_to_string(enum scope s)
{
        const char *name = code_to_name(scope_names, ARRAY_SIZE(scope_names), (int)s);
        return name ? name : "none";
}

bool name_is_valid(const char *s)
{
        size_t n = strlen(s);
        if (n == 0 || n > NAME_LEN_MAX)
                return false;
        for (size_t i = 0; i < n; i++) {
                char c = s[i];
                bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
                if (!alnum && (i == 0 || (c != '.' && c != '_' && c != '-')))
                        return false;
        }
        return true;
}

bool token_is_well_formed(const char *token)
{
        size_t n = strlen(TOKEN_PREFIX);
        return strncmp(token, TOKEN_PREFIX, n) == 0 && strlen(token) == TOKEN_SIZE - 1 &&
               strspn(token + n, base64url_alphabet) == TOKEN_SIZE - 1 - n;
}
