/* mtasts.c - the MTA-STS record, policy file and mx matching of RFC 8461 (see mtasts.h). Pure;
 * any thread. */
#include "core/mtasts.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util.h"

const char *mtasts_mode_name(enum mtasts_mode m)
{
        static const char *const names[] = { "enforce", "testing", "none" };
        return (unsigned)m < ARRAY_SIZE(names) ? names[m] : "none";
}

static bool is_alnum(char c)
{
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* The fields of a record "k=v; k=v" (3.1: sts-field-delim is ';' with optional whitespace). */
int mtasts_txt_parse(const char *txt, char id[MTASTS_ID_MAX + 1], char *err, size_t size)
{
        id[0] = 0;
        if (strncmp(txt, "v=STSv1", 7) != 0 ||
            (txt[7] && txt[7] != ';' && txt[7] != ' ' && txt[7] != '\t'))
                return -ENOENT;
        const char *p = txt + 7;
        while (*p) {
                p += strspn(p, " \t;");
                if (!*p)
                        break;
                size_t n = strcspn(p, ";");
                const char *eq = memchr(p, '=', n);
                if (!eq) {
                        snprintf(err, size, "field \"%.*s\" has no '='", (int)(n > 40 ? 40 : n), p);
                        return -EINVAL;
                }
                size_t klen = (size_t)(eq - p), vlen = n - klen - 1;
                while (vlen > 0 && (eq[vlen] == ' ' || eq[vlen] == '\t'))
                        vlen--;
                if (klen == 2 && strncmp(p, "id", 2) == 0) {
                        if (vlen == 0 || vlen > MTASTS_ID_MAX) {
                                snprintf(err, size, "the id must be 1 to 32 letters and digits");
                                return -EINVAL;
                        }
                        for (size_t i = 0; i < vlen; i++)
                                if (!is_alnum(eq[1 + i])) {
                                        snprintf(err, size,
                                                 "the id must be 1 to 32 letters and digits");
                                        return -EINVAL;
                                }
                        memcpy(id, eq + 1, vlen);
                        id[vlen] = 0;
                }
                p += n;
        }
        if (!id[0]) {
                snprintf(err, size, "the record has no id");
                return -EINVAL;
        }
        return 0;
}

/* One "key: value" line of n bytes (no line end) into p. */
static int policy_line(const char *line, size_t n, struct mtasts_policy *p, bool *version,
                       bool *mode, bool *max_age, char *err, size_t size)
{
        const char *colon = memchr(line, ':', n);
        if (!colon) {
                snprintf(err, size, "line \"%.*s\" is not \"key: value\"", (int)(n > 40 ? 40 : n),
                         line);
                return -EINVAL;
        }
        size_t klen = (size_t)(colon - line);
        const char *v = colon + 1;
        size_t vlen = n - klen - 1;
        while (vlen > 0 && (*v == ' ' || *v == '\t'))
                v++, vlen--;
        while (vlen > 0 && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
                vlen--;
        char value[MTASTS_NAME_MAX + 1];
        if (vlen > MTASTS_NAME_MAX) {
                snprintf(err, size, "the value of \"%.*s\" is too long",
                         (int)(klen > 20 ? 20 : klen), line);
                return -EINVAL;
        }
        memcpy(value, v, vlen);
        value[vlen] = 0;
        if (klen == 7 && strncmp(line, "version", 7) == 0) {
                if (!streq(value, "STSv1")) {
                        snprintf(err, size, "version is \"%s\", not STSv1", value);
                        return -EINVAL;
                }
                *version = true;
        } else if (klen == 4 && strncmp(line, "mode", 4) == 0) {
                if (streq(value, "enforce"))
                        p->mode = MTASTS_MODE_ENFORCE;
                else if (streq(value, "testing"))
                        p->mode = MTASTS_MODE_TESTING;
                else if (streq(value, "none"))
                        p->mode = MTASTS_MODE_NONE;
                else {
                        snprintf(err, size, "mode \"%s\" is not enforce, testing or none", value);
                        return -EINVAL;
                }
                *mode = true;
        } else if (klen == 7 && strncmp(line, "max_age", 7) == 0) {
                char *end;
                long a = strtol(value, &end, 10);
                if (!value[0] || *end || value[0] == '-' || value[0] == '+' || a < 0 ||
                    a > MTASTS_MAX_AGE_MAX || vlen > 10) {
                        snprintf(err, size, "max_age \"%s\" is not a number of seconds up to %d",
                                 value, MTASTS_MAX_AGE_MAX);
                        return -EINVAL;
                }
                p->max_age = a;
                *max_age = true;
        } else if (klen == 2 && strncmp(line, "mx", 2) == 0) {
                if (!value[0]) {
                        snprintf(err, size, "an mx line is empty");
                        return -EINVAL;
                }
                if (p->n_mx < MTASTS_MX_MAX)
                        strcpy_bounded(p->mx[p->n_mx++], MTASTS_NAME_MAX + 1, value);
        }
        return 0;
}

int mtasts_policy_parse(const char *text, size_t len, struct mtasts_policy *p, char *err,
                        size_t size)
{
        bool version = false, mode = false, max_age = false;
        *p = (struct mtasts_policy){ .mode = MTASTS_MODE_NONE };
        err[0] = 0;
        size_t i = 0;
        while (i < len) {
                const char *nl = memchr(text + i, '\n', len - i);
                size_t end = nl ? (size_t)(nl - text) : len;
                size_t n = end - i;
                if (n > 0 && text[i + n - 1] == '\r')
                        n--;
                if (memchr(text + i, 0, n)) {
                        snprintf(err, size, "the policy holds a NUL byte");
                        return -EINVAL;
                }
                if (n > 0 && policy_line(text + i, n, p, &version, &mode, &max_age, err, size) < 0)
                        return -EINVAL;
                i = end + 1;
        }
        if (!version || !mode || !max_age) {
                snprintf(err, size, "the policy has no %s line",
                         !version ? "version"
                         : !mode  ? "mode"
                                  : "max_age");
                return -EINVAL;
        }
        if (p->mode != MTASTS_MODE_NONE && p->n_mx == 0) {
                snprintf(err, size, "mode %s needs at least one mx line",
                         mtasts_mode_name(p->mode));
                return -EINVAL;
        }
        return 0;
}

bool mtasts_mx_matches(const struct mtasts_policy *p, const char *host)
{
        for (size_t i = 0; i < p->n_mx; i++) {
                const char *pat = p->mx[i];
                if (strcasecmp(pat, host) == 0)
                        return true;
                if (pat[0] == '*' && pat[1] == '.' && pat[2]) {
                        /* exactly one label in place of the '*' */
                        const char *dot = strchr(host, '.');
                        if (dot && dot != host && strcasecmp(dot + 1, pat + 2) == 0)
                                return true;
                }
        }
        return false;
}
