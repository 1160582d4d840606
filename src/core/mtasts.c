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

static bool is_wsp(char c)
{
        return c == ' ' || c == '\t';
}

/* sts-ext-name and sts-policy-ext-name (3.1, 3.2): a letter or digit, then up to 31 letters,
 * digits, '_', '-' or '.'. */
static bool is_ext_name(const char *s, size_t n)
{
        if (n == 0 || n > 32 || !is_alnum(s[0]))
                return false;
        for (size_t i = 1; i < n; i++)
                if (!is_alnum(s[i]) && s[i] != '_' && s[i] != '-' && s[i] != '.')
                        return false;
        return true;
}

/* sts-ext-value (3.1): 1* of %x21-3A / %x3C / %x3E-7E (no '=', ';', space or control). */
static bool is_txt_ext_value(const char *s, size_t n)
{
        if (n == 0)
                return false;
        for (size_t i = 0; i < n; i++)
                if (s[i] < 0x21 || s[i] > 0x7e || s[i] == '=' || s[i] == ';')
                        return false;
        return true;
}

static bool is_id(const char *s, size_t n)
{
        if (n == 0 || n > MTASTS_ID_MAX)
                return false;
        for (size_t i = 0; i < n; i++)
                if (!is_alnum(s[i]))
                        return false;
        return true;
}

/* The record by the grammar of 3.1: sts-version 1*(sts-field-delim sts-field) [sts-field-delim],
 * sts-field-delim = *WSP ";" *WSP, sts-field = sts-id / sts-extension. A syntactically invalid
 * record is no record (3.1), so anything off the grammar is -EINVAL. "id=" with a value that is
 * not 1*32 alphanumerics is still a valid sts-extension, so the record is refused for it only
 * when no valid id follows; of two valid ids the first is the sts-id. */
static int txt_parse(const char *txt, char id[MTASTS_ID_MAX + 1], char *err, size_t size)
{
        id[0] = 0;
        if (strncmp(txt, "v=STSv1", 7) != 0 || (txt[7] && txt[7] != ';' && !is_wsp(txt[7])))
                return -ENOENT;
        const char *p = txt + 7;
        bool bad_id = false;
        while (*p) {
                const char *d = p + strspn(p, " \t");
                if (*d != ';') {
                        if (*d)
                                snprintf(err, size, "the fields must be separated by ';'");
                        else
                                snprintf(err, size, "whitespace at the end, not after a ';'");
                        return -EINVAL;
                }
                p = d + 1;
                p += strspn(p, " \t");
                if (!*p)
                        break; /* the optional trailing delimiter */
                size_t n = strcspn(p, " \t;");
                const char *eq = memchr(p, '=', n);
                if (!eq) {
                        if (n == 0)
                                snprintf(err, size, "an empty field (two ';' in a row)");
                        else
                                snprintf(err, size, "field \"%.*s\" has no '='",
                                         (int)(n > 40 ? 40 : n), p);
                        return -EINVAL;
                }
                size_t klen = (size_t)(eq - p), vlen = n - klen - 1;
                bool is_id_key = klen == 2 && strncmp(p, "id", 2) == 0;
                if (is_id_key && !id[0] && is_id(eq + 1, vlen)) {
                        memcpy(id, eq + 1, vlen);
                        id[vlen] = 0;
                } else if (!is_ext_name(p, klen) || !is_txt_ext_value(eq + 1, vlen)) {
                        if (is_id_key)
                                snprintf(err, size, "the id must be 1 to 32 letters and digits");
                        else
                                snprintf(err, size,
                                         "field \"%.*s\" is not name=value (RFC 8461 3.1)",
                                         (int)(n > 40 ? 40 : n), p);
                        return -EINVAL;
                } else if (is_id_key) {
                        bad_id = !id[0];
                }
                p += n;
        }
        if (!id[0]) {
                snprintf(err, size,
                         bad_id ? "the id must be 1 to 32 letters and digits"
                                : "the record has no id");
                return -EINVAL;
        }
        return 0;
}

int mtasts_txt_parse(const char *txt, char id[MTASTS_ID_MAX + 1], char *err, size_t size)
{
        int r = txt_parse(txt, id, err, size);
        if (r < 0)
                id[0] = 0; /* no id of a record that is none */
        return r;
}

/* sts-policy-ext-value (3.2): printable ASCII, spaces (not at either end: the *WSP around it is
 * already cut) and the bytes of UTF-8 (not checked further). */
static bool is_policy_ext_value(const char *s, size_t n)
{
        if (n == 0)
                return false;
        for (size_t i = 0; i < n; i++) {
                unsigned char c = (unsigned char)s[i];
                if ((c < 0x20 || c == 0x7f) || (c == ' ' && (i == 0 || i == n - 1)))
                        return false;
        }
        return true;
}

/* ["*."] Domain (3.2, Domain as in RFC 5321 4.1.2): labels of letters, digits and '-', neither
 * starting nor ending with '-'; a wildcard only as the whole left-most label (4.1). */
static bool is_mx_pattern(const char *v)
{
        if (v[0] == '*' && v[1] == '.')
                v += 2;
        do {
                size_t n = 0;
                while (is_alnum(v[n]) || v[n] == '-')
                        n++;
                if (n == 0 || v[0] == '-' || v[n - 1] == '-')
                        return false;
                v += n;
        } while (*v == '.' && *++v);
        return *v == 0 && v[-1] != '.';
}

/* One "key: value" line of n bytes (no line end) into p: sts-policy-field *WSP, where a field is
 * NAME ":" *WSP VALUE and NAME is case-sensitive (3.2). */
static int policy_line(const char *line, size_t n, struct mtasts_policy *p, bool *version,
                       bool *mode, bool *max_age, char *err, size_t size)
{
        const char *colon = memchr(line, ':', n);
        if (!colon || !is_ext_name(line, (size_t)(colon - line))) {
                snprintf(err, size, "line \"%.*s\" is not \"key: value\"", (int)(n > 40 ? 40 : n),
                         line);
                return -EINVAL;
        }
        size_t klen = (size_t)(colon - line);
        const char *v = colon + 1;
        size_t vlen = n - klen - 1;
        while (vlen > 0 && is_wsp(*v))
                v++, vlen--;
        while (vlen > 0 && is_wsp(v[vlen - 1]))
                vlen--;
        bool known = (klen == 7 && strncmp(line, "version", 7) == 0) ||
                     (klen == 4 && strncmp(line, "mode", 4) == 0) ||
                     (klen == 7 && strncmp(line, "max_age", 7) == 0) ||
                     (klen == 2 && strncmp(line, "mx", 2) == 0);
        if (!known) {
                /* an extension: ignored (3.2), whatever its length, when it is one */
                if (!is_policy_ext_value(v, vlen)) {
                        snprintf(err, size, "the value of \"%.*s\" is empty or not text",
                                 (int)(klen > 32 ? 32 : klen), line);
                        return -EINVAL;
                }
                return 0;
        }
        char value[MTASTS_NAME_MAX + 1];
        if (vlen > MTASTS_NAME_MAX) {
                snprintf(err, size, "the value of \"%.*s\" is too long", (int)klen, line);
                return -EINVAL;
        }
        memcpy(value, v, vlen);
        value[vlen] = 0;
        if (klen == 7 && strncmp(line, "version", 7) == 0) {
                if (!streq(value, "STSv1")) {
                        snprintf(err, size, "version is \"%.40s\", not STSv1", value);
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
                        snprintf(err, size, "mode \"%.40s\" is not enforce, testing or none",
                                 value);
                        return -EINVAL;
                }
                *mode = true;
        } else if (klen == 7 && strncmp(line, "max_age", 7) == 0) {
                /* 1*10DIGIT, at most 31557600 */
                bool digits = vlen > 0 && vlen <= 10;
                for (size_t i = 0; digits && i < vlen; i++)
                        digits = value[i] >= '0' && value[i] <= '9';
                long a = digits ? strtol(value, NULL, 10) : -1;
                if (!digits || a > MTASTS_MAX_AGE_MAX) {
                        snprintf(err, size, "max_age \"%.40s\" is not a number of seconds up to %d",
                                 value, MTASTS_MAX_AGE_MAX);
                        return -EINVAL;
                }
                p->max_age = a;
                *max_age = true;
        } else {
                if (!is_mx_pattern(value)) {
                        snprintf(err, size,
                                 "mx \"%.80s\" is not a host name or \"*.\" and one (RFC 8461 "
                                 "3.2, 4.1)",
                                 value);
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
        /* the end of the host's first label: its first '.' that is not escaped (dns_wire_name()
         * writes a '.' inside a label "\.", any other escape is "\DDD") */
        const char *dot = host;
        while (*dot && *dot != '.')
                dot += dot[0] == '\\' && dot[1] ? 2 : 1;
        for (size_t i = 0; i < p->n_mx; i++) {
                const char *pat = p->mx[i];
                if (strcasecmp(pat, host) == 0)
                        return true;
                /* exactly one label in place of the '*' */
                if (pat[0] == '*' && pat[1] == '.' && pat[2] && *dot == '.' && dot != host &&
                    strcasecmp(dot + 1, pat + 2) == 0)
                        return true;
        }
        return false;
}
