/* maincf.c - reading and editing main.cf text after Postfix's readlline() rules: a logical line
 * starts with non-whitespace text, a line starting with whitespace continues it, blank lines and
 * lines whose first non-blank character is '#' are skipped (they neither start nor end a logical
 * line). Pure; worker thread. */
#include "smtptlsd/maincf.h"

#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
        while (i < len &&
               (p[i] == ' ' || p[i] == '\t' || p[i] == '\r' || p[i] == '\v' || p[i] == '\f'))
                i++;
        if (i == len || p[i] == '\n' || p[i] == '#')
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

/* Whether a START line defines name: "name", optional blanks, "=". */
static bool defines(const struct line *l, const char *name)
{
        size_t n = strlen(name);
        if (l->kind != LINE_START || l->len <= n || strncmp(l->p, name, n) != 0)
                return false;
        size_t i = n;
        while (i < l->len && (l->p[i] == ' ' || l->p[i] == '\t'))
                i++;
        return i < l->len && l->p[i] == '=';
}

/* Appends the trimmed text of [p, p+len) to out, space-separated. */
static void append_trimmed(char *out, size_t *o, const char *p, size_t len)
{
        while (len > 0 && isspace((unsigned char)*p)) {
                p++;
                len--;
        }
        while (len > 0 && isspace((unsigned char)p[len - 1]))
                len--;
        if (len == 0)
                return;
        if (*o > 0)
                out[(*o)++] = ' ';
        memcpy(out + *o, p, len);
        *o += len;
}

int maincf_get(const char *text, size_t len, const char *name, char **ret)
{
        struct line *lines = NULL;
        size_t n = 0, last = (size_t)-1;
        int r = split_lines(text, len, &lines, &n);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++)
                if (defines(&lines[i], name))
                        last = i;
        if (last == (size_t)-1) {
                free(lines);
                return -ENOENT;
        }
        size_t total = 0;
        for (size_t i = last; i < n; i++) {
                if (i > last && lines[i].kind == LINE_START)
                        break;
                total += lines[i].len + 1;
        }
        char *out = malloc(total + 1);
        if (!out) {
                free(lines);
                return -ENOMEM;
        }
        size_t o = 0;
        const char *eq = memchr(lines[last].p, '=', lines[last].len);
        append_trimmed(out, &o, eq + 1, lines[last].len - (size_t)(eq + 1 - lines[last].p));
        for (size_t i = last + 1; i < n && lines[i].kind != LINE_START; i++)
                if (lines[i].kind == LINE_CONTINUE)
                        append_trimmed(out, &o, lines[i].p, lines[i].len);
        out[o] = 0;
        free(lines);
        *ret = out;
        return 0;
}

static bool value_is_clean(const char *v)
{
        for (; *v; v++)
                if ((unsigned char)*v < 0x20 || *v == 0x7f)
                        return false;
        return true;
}

int maincf_edit(const char *text, size_t len, const struct maincf_param *params, size_t np,
                char **ret, size_t *retlen)
{
        struct line *lines = NULL;
        size_t n = 0;
        int r;

        for (size_t k = 0; k < np; k++)
                if (params[k].value && !value_is_clean(params[k].value))
                        return -EINVAL;
        r = split_lines(text, len, &lines, &n);
        if (r < 0)
                return r;

        size_t cap = len + 2;
        for (size_t k = 0; k < np; k++)
                cap += strlen(params[k].name) + (params[k].value ? strlen(params[k].value) : 0) + 4;
        char *out = malloc(cap + 1);
        bool *written = calloc(np ? np : 1, sizeof(bool));
        if (!out || !written) {
                free(out);
                free(written);
                free(lines);
                return -ENOMEM;
        }
        size_t o = 0;
        /* While skipping a removed definition, its continuation lines go too. */
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
                                        o += (size_t)sprintf(out + o, "%s = %s\n", params[k].name,
                                                             params[k].value);
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
                        out[o++] = '\n';
                o += (size_t)sprintf(out + o, "%s = %s\n", params[k].name, params[k].value);
        }
        out[o] = 0;
        free(written);
        free(lines);
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

int maincf_maps_merge(const char *value, const char *ours, const char *path, char **ret)
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
                if (token_names(t, len, path))
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
