/* policy_render.c - the policy map's source text (policy_render.h): one line per enabled policy,
 * sorted, from whitelisted bytes only, an internationalized destination under both its spellings.
 * Pure; any thread. */
#include "core/policy_render.h"

#include "core/destination.h"
#include "core/policy_grammar.h"

static int buf_adds(struct strbuf *b, const char *s)
{
        return strbuf_add(b, s, strlen(s));
}

/* Bytes >= 0x80 come only from the U-label spelling of a key (destination.h): never
 * whitespace, '#' or a control to Postfix, whose ctype macros are ASCII-only. */
static bool key_byte_ok(unsigned char c)
{
        return (c >= 'a' && c <= 'z') || is_digit(c) || c >= 0x80 || c == '.' || c == '-' ||
               c == '_' || c == '[' || c == ']' || c == ':';
}

static bool value_byte_ok(unsigned char c)
{
        return is_alnum(c) || (c && strchr(".:!|<>=+_-/", c));
}

/* The last word on what reaches the map: "key<TAB>token[ token]...", each byte whitelisted. */
static bool entry_bytes_ok(const char *s, size_t n)
{
        size_t i = 0;
        while (i < n && key_byte_ok((unsigned char)s[i]))
                i++;
        if (i == 0 || i >= n || s[i] != '\t')
                return false;
        i++;
        bool token = false; /* inside a token */
        for (; i < n; i++) {
                if (s[i] == ' ') {
                        if (!token)
                                return false; /* leading or double space */
                        token = false;
                } else if (value_byte_ok((unsigned char)s[i])) {
                        token = true;
                } else {
                        return false;
                }
        }
        return token;
}

static int join_attr(struct strbuf *b, const char *name, char *const *v, size_t n, const char *sep)
{
        int r = buf_adds(b, " ");
        if (r >= 0)
                r = buf_adds(b, name);
        if (r >= 0)
                r = buf_adds(b, "=");
        for (size_t i = 0; r >= 0 && i < n; i++) {
                if (i)
                        r = buf_adds(b, sep);
                if (r >= 0)
                        r = buf_adds(b, v[i]);
        }
        return r;
}

static int add_attr(struct strbuf *b, const char *name, const char *value)
{
        int r = buf_adds(b, " ");
        if (r >= 0)
                r = buf_adds(b, name);
        if (r >= 0)
                r = buf_adds(b, "=");
        if (r >= 0)
                r = buf_adds(b, value);
        return r;
}

static int render_into(struct strbuf *b, const struct policy *p)
{
        struct problem ignore = { 0 };
        size_t start = b->len;
        int r;

        if (policy_check(p, "", &ignore) < 0) {
                problem_done(&ignore);
                return -EINVAL;
        }
        problem_done(&ignore);
        r = buf_adds(b, p->destination);
        if (r >= 0)
                r = buf_adds(b, "\t");
        if (r >= 0)
                r = buf_adds(b, policy_level_names[p->level]);
        if (r >= 0 && p->n_match)
                r = join_attr(b, "match", p->match, p->n_match,
                              p->level == TLS_LEVEL_FINGERPRINT ? "|" : ":");
        if (r >= 0 && p->protocols[0])
                r = add_attr(b, "protocols", p->protocols);
        if (r >= 0 && p->ciphers[0])
                r = add_attr(b, "ciphers", p->ciphers);
        if (r >= 0 && p->n_exclude)
                r = join_attr(b, "exclude", p->exclude, p->n_exclude, ":");
        if (r >= 0 && p->servername[0])
                r = add_attr(b, "servername", p->servername);
        if (r >= 0 && p->tafile[0])
                r = add_attr(b, "tafile", p->tafile);
        if (r >= 0 && p->connection_reuse != POLICY_REUSE_UNSET)
                r = add_attr(b, "connection_reuse",
                             p->connection_reuse == POLICY_REUSE_YES ? "yes" : "no");
        if (r >= 0 && !entry_bytes_ok(b->p + start, b->len - start))
                r = -EINVAL;
        if (r < 0) {
                b->len = start;
                if (b->p)
                        b->p[start] = 0;
        }
        return r;
}

int policy_render_entry(const struct policy *p, char **line)
{
        struct strbuf b = { 0 };
        int r = render_into(&b, p);
        if (r < 0) {
                free(b.p);
                return r;
        }
        *line = b.p;
        return 0;
}

static int cmp_destination(const void *a, const void *b)
{
        const struct policy *x = *(const struct policy *const *)a;
        const struct policy *y = *(const struct policy *const *)b;
        return strcmp(x->destination, y->destination);
}

/* An internationalized destination is looked up as Postfix finds it in the delivery request:
 * the A-label, or the U-label of SMTPUTF8 mail. The entry just rendered at `line` (its key, an
 * A-label spelling) is repeated under the U-label key; the two keys never collide with another
 * row's (the U-label has bytes >= 0x80, keys of rows have none). */
static int render_unicode_key(struct strbuf *b, size_t line)
{
        char ukey[DESTINATION_UKEY_MAX + 1];
        char *tab = memchr(b->p + line, '\t', b->len - line);
        if (!tab)
                return -EINVAL;
        size_t kl = (size_t)(tab - (b->p + line));
        char key[POLICY_DESTINATION_MAX + 1];
        if (kl > POLICY_DESTINATION_MAX)
                return -EINVAL;
        memcpy(key, b->p + line, kl);
        key[kl] = 0;
        int r = destination_unicode_key(key, ukey);
        if (r <= 0)
                return r;
        size_t start = b->len;
        _cleanup_free_ char *value = strndup(tab, b->len - line - kl); /* "\t...\n" */
        if (!value)
                return -ENOMEM;
        r = buf_adds(b, ukey);
        if (r >= 0)
                r = buf_adds(b, value);
        if (r >= 0 && !entry_bytes_ok(b->p + start, b->len - start - 1))
                r = -EINVAL;
        return r;
}

int policy_map_render(const struct policy *const *items, size_t n, char **text, size_t *len)
{
        const struct policy **v = malloc((n ? n : 1) * sizeof(*v));
        struct strbuf b = { 0 };
        size_t m = 0;
        int r;

        if (!v)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++)
                if (items[i] && items[i]->enabled)
                        v[m++] = items[i];
        qsort(v, m, sizeof(*v), cmp_destination);
        r = buf_adds(&b, POLICY_MAP_HEADER);
        for (size_t i = 0; r >= 0 && i < m; i++) {
                if (i && streq(v[i - 1]->destination, v[i]->destination))
                        r = -EEXIST;
                size_t line = b.len;
                if (r >= 0)
                        r = render_into(&b, v[i]);
                if (r >= 0)
                        r = buf_adds(&b, "\n");
                if (r >= 0)
                        r = render_unicode_key(&b, line);
        }
        free(v);
        if (r < 0) {
                free(b.p);
                return r;
        }
        *text = b.p;
        if (len)
                *len = b.len;
        return 0;
}
