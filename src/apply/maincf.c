/* maincf.c - reading and editing main.cf text as Postfix does (src/util/readlline.c,
 * split_nameval.c; postconf's -n/-h output and its -e editor, src/postconf/postconf_edit.c):
 *  - a physical line whose first character is not whitespace starts a logical line; one that
 *    starts with whitespace continues it; blank lines and lines whose first non-whitespace
 *    character is '#' are skipped and neither end nor join a logical line (so a comment may sit
 *    between a name and its "= value");
 *  - a logical line is its physical lines joined as they are (the newlines dropped, the leading
 *    whitespace of a continuation kept), then "name = value": the name ends at whitespace or '=',
 *    whitespace may surround the '=' (also across lines), the value is trimmed;
 *  - a value is reported as postconf prints it: every run of whitespace is one space.
 * Pure; worker thread (and the HTTP threads through reconcile_drift). */
#include "apply/maincf.h"

#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

/* Postfix's ISSPACE() (isspace() in the C locale): what readllines() and split_nameval() skip. */
static bool is_space(char c)
{
        return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

/* postconf's PCF_SEPARATORS: what its output turns into single spaces. */
static bool is_separator(char c)
{
        return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

enum line_kind {
        LINE_SKIP,     /* blank or comment */
        LINE_START,    /* starts a logical line */
        LINE_CONTINUE, /* whitespace first: continues the logical line before it */
};

struct line {
        const char *p;
        size_t len; /* including the newline, if any */
        enum line_kind kind;
};

static enum line_kind classify(const char *p, size_t len)
{
        size_t i = 0;
        while (i < len && is_space(p[i]))
                i++;
        if (i == len || p[i] == '#')
                return LINE_SKIP;
        return i == 0 ? LINE_START : LINE_CONTINUE;
}

static int split_lines(const char *text, size_t len, struct line **ret, size_t *n)
{
        size_t cap = 64, count = 0;
        struct line *v = malloc(cap * sizeof(*v));
        if (!v)
                return -ENOMEM;
        for (size_t i = 0; i < len;) {
                const char *nl = memchr(text + i, '\n', len - i);
                size_t l = nl ? (size_t)(nl - (text + i)) + 1 : len - i;
                if (count == cap) {
                        struct line *nv = realloc(v, (cap *= 2) * sizeof(*v));
                        if (!nv) {
                                free(v);
                                return -ENOMEM;
                        }
                        v = nv;
                }
                v[count].p = text + i;
                v[count].len = l;
                v[count].kind = classify(text + i, l);
                count++;
                i += l;
        }
        *ret = v;
        *n = count;
        return 0;
}

/* The length of the name a START line begins with (split_nameval(): up to whitespace or '='; the
 * key postconf -e matches). */
static size_t key_len(const struct line *l)
{
        size_t i = 0;
        while (i < l->len && !is_space(l->p[i]) && l->p[i] != '=')
                i++;
        return i;
}

static bool defines(const struct line *l, const char *name)
{
        size_t n = strlen(name);
        return l->kind == LINE_START && key_len(l) == n && memcmp(l->p, name, n) == 0;
}

/* The logical line starting at lines[first] (a START line): its extent [first, *end) and its
 * value as postconf prints it (malloc'ed); -EINVAL when it has no '=' after the name (Postfix
 * refuses such a file). */
static int logical_value(const struct line *lines, size_t n, size_t first, size_t *end, char **ret)
{
        size_t total = 0, last = first + 1;
        while (last < n && lines[last].kind != LINE_START)
                total += lines[last++].len;
        *end = last;
        total += lines[first].len;
        _cleanup_free_ char *joined = malloc(total + 1);
        if (!joined)
                return -ENOMEM;
        size_t j = 0;
        for (size_t i = first; i < last; i++) {
                if (lines[i].kind == LINE_SKIP)
                        continue;
                size_t l = lines[i].len - (lines[i].p[lines[i].len - 1] == '\n');
                memcpy(joined + j, lines[i].p, l);
                j += l;
        }
        /* "name", whitespace, "=", the value trimmed (split_nameval) */
        size_t i = key_len(&lines[first]);
        while (i < j && is_space(joined[i]))
                i++;
        if (i == j || joined[i] != '=')
                return -EINVAL;
        i++;
        while (i < j && is_space(joined[i]))
                i++;
        while (j > i && is_space(joined[j - 1]))
                j--;
        /* runs of whitespace as one space (postconf's output) */
        char *out = malloc(j - i + 1);
        if (!out)
                return -ENOMEM;
        size_t o = 0;
        for (; i < j; i++) {
                if (!is_separator(joined[i]))
                        out[o++] = joined[i];
                else if (o > 0 && out[o - 1] != ' ')
                        out[o++] = ' ';
        }
        if (o > 0 && out[o - 1] == ' ')
                o--;
        out[o] = 0;
        *ret = out;
        return 0;
}

int maincf_each(const char *text, size_t len, maincf_each_fn fn, void *arg)
{
        _cleanup_free_ struct line *lines = NULL;
        size_t n = 0;
        int r = split_lines(text, len, &lines, &n);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n;) {
                if (lines[i].kind != LINE_START) {
                        i++; /* before the first logical line (Postfix ignores a continuation
                              * there, with a warning) */
                        continue;
                }
                size_t end, k = key_len(&lines[i]);
                _cleanup_free_ char *value = NULL;
                _cleanup_free_ char *name = strndup(lines[i].p, k);
                if (!name)
                        return -ENOMEM;
                r = logical_value(lines, n, i, &end, &value);
                if (r == -ENOMEM)
                        return r;
                if (r >= 0 && (r = fn(name, value, arg)) < 0)
                        return r;
                i = end;
        }
        return 0;
}

struct get_ctx {
        const char *name;
        char *value;
};

static int get_one(const char *name, const char *value, void *arg)
{
        struct get_ctx *c = arg;
        if (!streq(name, c->name))
                return 0;
        char *v = strdup(value);
        if (!v)
                return -ENOMEM;
        free(c->value);
        c->value = v; /* a later definition wins */
        return 0;
}

int maincf_get(const char *text, size_t len, const char *name, char **ret)
{
        struct get_ctx c = { .name = name };
        int r = maincf_each(text, len, get_one, &c);
        if (r < 0) {
                free(c.value);
                return r;
        }
        if (!c.value)
                return -ENOENT;
        *ret = c.value;
        return 0;
}

static bool value_is_clean(const char *v)
{
        for (; *v; v++)
                if ((unsigned char)*v < 0x20 || *v == 0x7f)
                        return false;
        return true;
}

/* The line ending of a physical line ("\r\n" or "\n"), or NULL when it has none. */
static const char *line_end(const struct line *l)
{
        if (l->len == 0 || l->p[l->len - 1] != '\n')
                return NULL;
        return l->len >= 2 && l->p[l->len - 2] == '\r' ? "\r\n" : "\n";
}

int maincf_edit(const char *text, size_t len, const struct maincf_param *params, size_t np,
                char **ret, size_t *retlen)
{
        _cleanup_free_ struct line *lines = NULL;
        size_t n = 0;
        int r;

        for (size_t k = 0; k < np; k++)
                if (params[k].value && !value_is_clean(params[k].value))
                        return -EINVAL;
        r = split_lines(text, len, &lines, &n);
        if (r < 0)
                return r;
        /* New lines end as the file's first line does (a CRLF file stays CRLF). */
        const char *eol = n > 0 && line_end(&lines[0]) ? line_end(&lines[0]) : "\n";

        size_t cap = len + 2;
        for (size_t k = 0; k < np; k++)
                cap += strlen(params[k].name) + (params[k].value ? strlen(params[k].value) : 0) + 5;
        char *out = malloc(cap + 1);
        _cleanup_free_ bool *written = calloc(np ? np : 1, sizeof(bool));
        if (!out || !written) {
                free(out);
                return -ENOMEM;
        }
        size_t o = 0;
        /* A replaced or removed definition goes with all its continuation lines; the comments and
         * blank lines between them stay (as with postconf -e). */
        bool dropping = false;
        for (size_t i = 0; i < n; i++) {
                const struct line *l = &lines[i];
                if (l->kind == LINE_CONTINUE && dropping)
                        continue;
                if (l->kind == LINE_START) {
                        dropping = false;
                        size_t k;
                        for (k = 0; k < np; k++)
                                if (defines(l, params[k].name))
                                        break;
                        if (k < np) {
                                dropping = true;
                                if (params[k].value && !written[k]) {
                                        const char *end = line_end(l) ? line_end(l) : eol;
                                        o += (size_t)sprintf(out + o, "%s = %s%s", params[k].name,
                                                             params[k].value, end);
                                        written[k] = true;
                                }
                                continue;
                        }
                }
                memcpy(out + o, l->p, l->len);
                o += l->len;
        }
        for (size_t k = 0; k < np; k++) {
                if (!params[k].value || written[k])
                        continue;
                if (o > 0 && out[o - 1] != '\n')
                        o += (size_t)sprintf(out + o, "%s", eol);
                o += (size_t)sprintf(out + o, "%s = %s%s", params[k].name, params[k].value, eol);
        }
        out[o] = 0;
        *ret = out;
        *retlen = o;
        return 0;
}

/* ---- map lists --------------------------------------------------------------------------- */

#define MAP_SEPARATORS ", \t\r\n"

/* The next token of a map list at *p (Postfix's mystrtokq() with "{}"): its start and length,
 * *p moved past it; false at the end. */
static bool next_map(const char **p, const char **start, size_t *len)
{
        const char *s = *p + strspn(*p, MAP_SEPARATORS);
        if (!*s) {
                *p = s;
                return false;
        }
        int level = 0;
        const char *c = s;
        for (; *c; c++) {
                if (*c == '{')
                        level++;
                else if (level > 0 && *c == '}')
                        level--;
                else if (level == 0 && strchr(MAP_SEPARATORS, *c))
                        break;
        }
        *start = s;
        *len = (size_t)(c - s);
        *p = c;
        return true;
}

/* "type:path" or "type:type:path" (a chain such as proxy:hash), types [A-Za-z0-9_-]. */
static bool token_names(const char *t, size_t len, const char *path)
{
        size_t n = strlen(path);
        if (n == 0 || len < n + 2 || memcmp(t + len - n, path, n) != 0 || t[len - n - 1] != ':')
                return false;
        size_t type_len = len - n - 1;
        if (t[0] == ':' || t[type_len - 1] == ':')
                return false;
        for (size_t i = 0; i < type_len; i++)
                if (!isalnum((unsigned char)t[i]) && t[i] != '_' && t[i] != '-' &&
                    !(t[i] == ':' && t[i - 1] != ':'))
                        return false;
        return true;
}

bool maincf_maps_names(const char *value, const char *path)
{
        const char *p = value ? value : "", *t;
        size_t len;
        while (next_map(&p, &t, &len))
                if (token_names(t, len, path))
                        return true;
        return false;
}

int maincf_maps_each(const char *value, maincf_map_fn fn, void *ctx)
{
        const char *p = value ? value : "", *t;
        size_t len;
        int r = 0;
        while (r >= 0 && next_map(&p, &t, &len))
                r = fn(ctx, t, len);
        return r;
}

/* Whether the token is one of skip (NULL-terminated; NULL: none), byte for byte. */
static bool token_listed(const char *t, size_t len, const char *const *skip)
{
        for (; skip && *skip; skip++)
                if (strlen(*skip) == len && memcmp(*skip, t, len) == 0)
                        return true;
        return false;
}

int maincf_maps_merge(const char *value, const char *ours, const char *path,
                      const char *const *skip, char **ret)
{
        const char *p = value ? value : "", *t;
        size_t len, o = strlen(ours);
        /* ", " between tokens never takes more than the separators and the tokens themselves
         * plus two bytes per token */
        char *out = malloc(o + 3 * strlen(p) + 3);
        if (!out)
                return -ENOMEM;
        memcpy(out, ours, o);
        while (next_map(&p, &t, &len)) {
                if (token_names(t, len, path) || token_listed(t, len, skip))
                        continue;
                out[o++] = ',';
                out[o++] = ' ';
                for (size_t i = 0; i < len; i++)
                        out[o++] = (unsigned char)t[i] < 0x20 ? ' ' : t[i];
        }
        out[o] = 0;
        *ret = out;
        return 0;
}
