/* etag.c - If-Match: the one parser of the header and the strong comparison of RFC 9110
 * 13.1.1 (a weak tag never matches a write precondition). Pure; any thread. */
#include "core/etag.h"

#define HOW_TO                                                                                     \
        "send \"*\" or the ETag exactly as a reply gave it, quotes included (If-Match: "           \
        "\"policy-42\")"

static bool is_ows(char c)
{
        return c == ' ' || c == '\t';
}

static bool is_etagc(unsigned char c)
{
        return c == 0x21 || (c >= 0x23 && c <= 0x7e) || c >= 0x80;
}

/* Walks value. Returns -EINVAL with *why when malformed; else 0 with *star, *strong (number of
 * strong tags) and *matched (a strong tag equal to etag, when etag is not NULL). */
static int walk(const char *value, const char *etag, bool *star, unsigned *strong, bool *matched,
                const char **why)
{
        const char *p = value;
        unsigned tags = 0;
        *star = *matched = false;
        *strong = 0;
        while (is_ows(*p))
                p++;
        if (*p == '*') {
                p++;
                while (is_ows(*p))
                        p++;
                if (*p) {
                        *why = "\"*\" stands alone";
                        return -EINVAL;
                }
                *star = true;
                return 0;
        }
        for (;;) {
                while (is_ows(*p) || *p == ',')
                        p++;
                if (!*p)
                        break;
                bool weak = p[0] == 'W' && p[1] == '/';
                const char *tag = weak ? p + 2 : p;
                if (*tag != '"') {
                        *why = weak ? "W/ must be followed by a quoted tag"
                                    : "an entity tag is in double quotes";
                        return -EINVAL;
                }
                const char *q = tag + 1;
                while (is_etagc((unsigned char)*q))
                        q++;
                if (*q != '"') {
                        *why = *q ? "an entity tag holds a character it may not"
                                  : "an entity tag's closing quote is missing";
                        return -EINVAL;
                }
                size_t len = (size_t)(q + 1 - tag);
                tags++;
                if (!weak) {
                        (*strong)++;
                        if (etag && len == strlen(etag) && strncmp(tag, etag, len) == 0)
                                *matched = true;
                }
                p = q + 1;
                while (is_ows(*p))
                        p++;
                if (*p && *p != ',') {
                        *why = "entity tags are separated by commas";
                        return -EINVAL;
                }
        }
        if (!tags) {
                *why = "it holds no entity tag";
                return -EINVAL;
        }
        return 0;
}

int if_match_check(const char *value, struct problem *reterr)
{
        bool star, matched;
        unsigned strong;
        const char *why = NULL;
        if (strlen(value) > IF_MATCH_MAX)
                return problem_set(reterr, PROBLEM_INVALID_VALUE, "If-Match",
                                   "If-Match is longer than %d characters", IF_MATCH_MAX);
        if (walk(value, NULL, &star, &strong, &matched, &why) < 0)
                return problem_set(reterr, PROBLEM_INVALID_VALUE, "If-Match",
                                   "If-Match is malformed (%s); " HOW_TO, why);
        return 0;
}

int if_match_evaluate(const char *value, const char *what, const char *etag, struct problem *reterr)
{
        bool star, matched;
        unsigned strong;
        const char *why = NULL;
        if (!value)
                return 0;
        if (walk(value, etag[0] ? etag : NULL, &star, &strong, &matched, &why) < 0)
                return problem_set(reterr, PROBLEM_INVALID_VALUE, "If-Match",
                                   "If-Match is malformed (%s); " HOW_TO, why);
        if (etag[0] && (star || matched))
                return 0;
        if (!etag[0])
                return problem_set_errno(reterr, -ESTALE, PROBLEM_PRECONDITION_FAILED, "If-Match",
                                         "%s does not exist (If-Match: %.200s)", what, value);
        if (!strong)
                return problem_set_errno(reterr, -ESTALE, PROBLEM_PRECONDITION_FAILED, "If-Match",
                                         "weak entity tags (W/\"...\") never match a write "
                                         "precondition (RFC 9110 13.1.1); send the ETag as a reply "
                                         "gave it, without W/ (now %s)",
                                         etag);
        return problem_set_errno(reterr, -ESTALE, PROBLEM_PRECONDITION_FAILED, "If-Match",
                                 "%s changed since %.200s was read (now %s)", what, value, etag);
}
