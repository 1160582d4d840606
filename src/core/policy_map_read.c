/* policy_map_read.c - reading a policy map's source text back as postmap(1) does
 * (policy_map_read.h): logical lines, comments, continuations, the first of duplicate keys.
 * Pure; any thread. */
#include "core/policy_map_read.h"

#include <openssl/evp.h>

#include "core/policy_grammar.h"

void policy_map_entries_free(struct policy_map_entry *e, size_t n)
{
        if (!e)
                return;
        for (size_t i = 0; i < n; i++) {
                free(e[i].key);
                free(e[i].value);
        }
        free(e);
}

static int cmp_entry(const void *a, const void *b)
{
        const struct policy_map_entry *x = a, *y = b;
        int c = strcmp(x->key, y->key);
        if (c)
                return c;
        return x->line < y->line ? -1 : x->line > y->line;
}

void policy_map_entries_sort(struct policy_map_entry *e, size_t n)
{
        if (n > 1)
                qsort(e, n, sizeof(*e), cmp_entry);
}

struct key_ref {
        const char *key;
        size_t idx;
};

static int cmp_key_ref(const void *a, const void *b)
{
        const struct key_ref *x = a, *y = b;
        int c = strcmp(x->key, y->key);
        if (c)
                return c;
        return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* Drops every entry whose key an earlier entry has (postmap keeps the first), keeping order. */
static int drop_duplicates(struct policy_map_entry *e, size_t *n)
{
        if (*n < 2)
                return 0;
        struct key_ref *refs = malloc(*n * sizeof(*refs));
        bool *dup = calloc(*n, sizeof(bool));
        if (!refs || !dup) {
                free(refs);
                free(dup);
                return -ENOMEM;
        }
        for (size_t i = 0; i < *n; i++)
                refs[i] = (struct key_ref){ e[i].key, i };
        qsort(refs, *n, sizeof(*refs), cmp_key_ref);
        for (size_t i = 1; i < *n; i++)
                if (streq(refs[i - 1].key, refs[i].key))
                        dup[refs[i].idx] = true;
        size_t o = 0;
        for (size_t i = 0; i < *n; i++) {
                if (dup[i]) {
                        free(e[i].key);
                        free(e[i].value);
                } else {
                        e[o++] = e[i];
                }
        }
        *n = o;
        free(refs);
        free(dup);
        return 0;
}

/* One logical line (as Postfix's readllines()) into *line; returns false at the end of text. */
static int read_logical_line(const char *text, size_t len, size_t *pos, size_t *lineno,
                             struct strbuf *line, size_t *first_line, bool *got)
{
        *got = false;
        line->len = 0;
        if (line->p)
                line->p[0] = 0;
        if (*pos >= len)
                return 0;
        *got = true;
        for (;;) {
                size_t start = line->len, from = *pos, eol = *pos;
                while (eol < len && text[eol] != '\n')
                        eol++;
                bool newline = eol < len;
                if (buf_add(line, text + from, eol - from) < 0)
                        return -ENOMEM;
                *pos = newline ? eol + 1 : eol;
                if (newline || eol > from)
                        (*lineno)++;
                /* Comment lines, blank lines and whitespace-only lines go, even mid-entry. */
                size_t k = start;
                while (k < line->len && is_space((unsigned char)line->p[k]))
                        k++;
                if (k == line->len || line->p[k] == '#') {
                        line->len = start;
                        line->p[start] = 0;
                } else if (start == 0) {
                        *first_line = *lineno;
                }
                if (!newline || *pos >= len)
                        break;
                if (line->len > 0) {
                        char next = text[*pos];
                        if (next != '#' && !is_space((unsigned char)next))
                                break;
                }
        }
        return 0;
}

int policy_map_each(const char *text, size_t len, policy_map_entry_fn fn, void *ctx)
{
        size_t pos = 0, lineno = 0;
        struct strbuf line = { 0 };
        int r = 0;
        for (;;) {
                size_t first = 0;
                bool got;
                r = read_logical_line(text, len, &pos, &lineno, &line, &first, &got);
                if (r < 0 || !got)
                        break;
                if (line.len == 0 || is_space((unsigned char)line.p[0]))
                        continue; /* nothing, or continuation text without a first line */
                size_t ln = strnlen(line.p, line.len); /* text after a NUL is lost */
                char *s = line.p;
                size_t kl = 0;
                while (kl < ln && !strchr(" \t\r\n", s[kl]))
                        kl++;
                size_t v = kl < ln ? kl + 1 : kl;
                while (v < ln && is_space((unsigned char)s[v]))
                        v++;
                size_t vl = ln - v;
                while (vl > 0 && is_space((unsigned char)s[v + vl - 1]))
                        vl--;
                size_t kt = kl;
                while (kt > 0 && is_space((unsigned char)s[kt - 1]))
                        kt--;
                if (kt == 0 || vl == 0)
                        continue; /* "expected format: key whitespace value" */
                for (size_t i = 0; i < kt; i++)
                        s[i] = to_lower(s[i]);
                r = fn(ctx, s, kt, s + v, vl, first);
                if (r < 0)
                        break;
        }
        free(line.p);
        return r < 0 ? r : 0;
}

struct collect {
        struct policy_map_entry *e;
        size_t n, cap;
};

static int collect_entry(void *ctx, const char *key, size_t key_len, const char *value,
                         size_t value_len, size_t line)
{
        struct collect *c = ctx;
        if (c->n == c->cap) {
                size_t nc = c->cap ? 2 * c->cap : 64;
                struct policy_map_entry *ne = realloc(c->e, nc * sizeof(*c->e));
                if (!ne)
                        return -ENOMEM;
                c->e = ne;
                c->cap = nc;
        }
        char *k = strndup(key, key_len), *v = strndup(value, value_len);
        if (!k || !v) {
                free(k);
                free(v);
                return -ENOMEM;
        }
        c->e[c->n++] = (struct policy_map_entry){ k, v, line };
        return 0;
}

int policy_map_parse(const char *text, size_t len, struct policy_map_entry **ret, size_t *n_ret)
{
        struct collect c = { 0 };
        *ret = NULL;
        *n_ret = 0;
        int r = policy_map_each(text, len, collect_entry, &c);
        if (r >= 0)
                r = drop_duplicates(c.e, &c.n);
        if (r < 0) {
                policy_map_entries_free(c.e, c.n);
                return r;
        }
        *ret = c.e;
        *n_ret = c.n;
        return 0;
}

struct digesting {
        EVP_MD_CTX *ctx;
        const EVP_MD *md;
        struct policy_map_digest *d;
};

static int digest_entry(void *ctx, const char *key, size_t key_len, const char *value,
                        size_t value_len, size_t line)
{
        (void)line;
        struct digesting *g = ctx;
        unsigned char h[32];
        unsigned int hl = 0;
        if (!EVP_DigestInit_ex2(g->ctx, g->md, NULL) || !EVP_DigestUpdate(g->ctx, key, key_len) ||
            !EVP_DigestUpdate(g->ctx, "", 1) || !EVP_DigestUpdate(g->ctx, value, value_len) ||
            !EVP_DigestFinal_ex(g->ctx, h, &hl))
                return -ENOMEM;
        /* the sum, mod 2^256, of the entries' hashes as four 64-bit words with carries */
        unsigned carry = 0;
        for (int w = 3; w >= 0; w--) {
                uint64_t x = 0;
                for (int b = 0; b < 8; b++)
                        x = x << 8 | h[w * 8 + b];
                uint64_t s = g->d->sum[w] + x;
                unsigned c = s < x;
                uint64_t t = s + carry;
                c |= t < s;
                g->d->sum[w] = t;
                carry = c;
        }
        g->d->count++;
        return 0;
}

int policy_map_digest(const char *text, size_t len, struct policy_map_digest *ret)
{
        *ret = (struct policy_map_digest){ 0 };
        EVP_MD *md = EVP_MD_fetch(NULL, "SHA256", NULL);
        EVP_MD_CTX *ctx = EVP_MD_CTX_new();
        int r = -ENOMEM;
        if (md && ctx) {
                struct digesting g = { ctx, md, ret };
                r = policy_map_each(text, len, digest_entry, &g);
        }
        EVP_MD_CTX_free(ctx);
        EVP_MD_free(md);
        return r;
}

bool policy_map_digest_equal(const struct policy_map_digest *a, const struct policy_map_digest *b)
{
        return a->count == b->count && memcmp(a->sum, b->sum, sizeof(a->sum)) == 0;
}
