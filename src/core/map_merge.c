/* map_merge.c - a generation's changes merged into the policy map's text (see map_merge.h).
 * Pure; any thread. */
#include "core/map_merge.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "core/policy_render.h"

/* One block of the text: [start, end), its destination the key of its first line. */
struct block {
        const char *start, *end;
        const char *key;
        size_t key_len;
};

static bool has_high_byte(const char *s, size_t n)
{
        for (size_t i = 0; i < n; i++)
                if ((unsigned char)s[i] >= 0x80)
                        return true;
        return false;
}

/* The block at *at (before end): 1 with it, 0 at the end, -EINVAL for a line that is not
 * "key<TAB>value\n" or a first key with bytes >= 0x80 (a U-label line belongs to the block
 * before it). */
static int next_block(const char **at, const char *end, struct block *b)
{
        const char *p = *at;
        if (p == end)
                return 0;
        b->start = p;
        for (bool first = true; p < end; first = false) {
                const char *nl = memchr(p, '\n', (size_t)(end - p));
                const char *tab = nl ? memchr(p, '\t', (size_t)(nl - p)) : NULL;
                if (!nl || !tab || tab == p)
                        return -EINVAL;
                bool unicode = has_high_byte(p, (size_t)(tab - p));
                if (first) {
                        if (unicode)
                                return -EINVAL;
                        b->key = p;
                        b->key_len = (size_t)(tab - p);
                } else if (!unicode) {
                        break; /* the next block's first line */
                }
                p = nl + 1;
        }
        b->end = p;
        *at = p;
        return 1;
}

static int cmp_key(const char *a, size_t an, const char *b, size_t bn)
{
        int c = memcmp(a, b, an < bn ? an : bn);
        return c ? c : (an > bn) - (an < bn);
}

/* Each line of [s, e) whose "key<TAB>" starts no line of [o, oe): its key into del. */
static int keys_gone(struct map_edit *ed, const char *s, const char *e, const char *o,
                     const char *oe)
{
        for (const char *p = s; p < e;) {
                const char *nl = memchr(p, '\n', (size_t)(e - p));
                const char *tab = memchr(p, '\t', (size_t)(nl - p));
                size_t kl = (size_t)(tab - p) + 1; /* with the TAB */
                bool kept = false;
                for (const char *q = o; q && q < oe && !kept;) {
                        kept = (size_t)(oe - q) > kl && memcmp(q, p, kl) == 0;
                        q = memchr(q, '\n', (size_t)(oe - q));
                        q = q ? q + 1 : NULL;
                }
                int r = 0;
                if (!kept) {
                        r = strbuf_add(&ed->del, p, kl - 1);
                        if (r >= 0)
                                r = strbuf_add(&ed->del, "\n", 1);
                        ed->n_del++;
                }
                if (r < 0)
                        return r;
                p = nl + 1;
        }
        return 0;
}

static size_t count_lines(const char *s, size_t n)
{
        size_t k = 0;
        for (size_t i = 0; i < n; i++)
                k += s[i] == '\n';
        return k;
}

/* The change of one destination: its old block (NULL: none) becomes block (NULL: none). */
static int change(struct map_edit *ed, struct strbuf *out, const struct block *old,
                  const char *block)
{
        size_t bl = block ? strlen(block) : 0;
        if (old && block && (size_t)(old->end - old->start) == bl &&
            memcmp(old->start, block, bl) == 0)
                return strbuf_add(out, block, bl); /* the same lines: no change */
        int r = 0;
        if (old)
                r = keys_gone(ed, old->start, old->end, block, block ? block + bl : NULL);
        if (r >= 0 && block) {
                r = strbuf_add(out, block, bl);
                if (r >= 0)
                        r = strbuf_add(&ed->put, block, bl);
                ed->n_put += count_lines(block, bl);
        }
        return r;
}

/* A change's block must be what policy_map_render gives one destination: its own lines. */
static bool block_ok(const struct map_change *c)
{
        if (!c->block)
                return true;
        const char *at = c->block, *end = c->block + strlen(c->block);
        struct block b;
        size_t dl = strlen(c->destination);
        return next_block(&at, end, &b) == 1 && at == end && b.key_len == dl &&
               memcmp(b.key, c->destination, dl) == 0;
}

int map_merge(const char *old, size_t old_len, const struct map_change *changes, size_t n,
              char **text, size_t *len, struct map_edit *edit)
{
        static const char header[] = POLICY_MAP_HEADER;
        const size_t hl = sizeof(header) - 1;
        *edit = (struct map_edit){ 0 };
        if (old_len < hl || memcmp(old, header, hl) != 0)
                return -EINVAL;
        for (size_t i = 0; i < n; i++)
                if (!block_ok(&changes[i]) ||
                    (i && strcmp(changes[i - 1].destination, changes[i].destination) >= 0))
                        return -EINVAL;

        struct strbuf out = { .cap = old_len + 64 };
        const char *at = old + hl, *end = old + old_len;
        const char *prev = NULL;
        size_t prev_len = 0, i = 0;
        struct block b;
        int r = strbuf_add(&out, header, hl), k = 0;
        while (r >= 0 && (k = next_block(&at, end, &b)) > 0) {
                if (prev && cmp_key(prev, prev_len, b.key, b.key_len) >= 0) {
                        k = -EINVAL; /* not sorted, or a destination twice */
                        break;
                }
                prev = b.key;
                prev_len = b.key_len;
                /* the changes before this block: new destinations */
                int c = 0;
                while (r >= 0 && i < n &&
                       (c = cmp_key(changes[i].destination, strlen(changes[i].destination), b.key,
                                    b.key_len)) < 0)
                        r = change(edit, &out, NULL, changes[i++].block);
                if (r < 0)
                        break;
                if (i < n && c == 0)
                        r = change(edit, &out, &b, changes[i++].block);
                else
                        r = strbuf_add(&out, b.start, (size_t)(b.end - b.start));
        }
        while (r >= 0 && k == 0 && i < n)
                r = change(edit, &out, NULL, changes[i++].block);
        if (r >= 0 && k < 0)
                r = k;
        if (r < 0) {
                free(out.p);
                map_edit_done(edit);
                return r;
        }
        *text = out.p; /* strbuf keeps it NUL-terminated */
        *len = out.len;
        return 0;
}

void map_edit_done(struct map_edit *e)
{
        free(e->put.p);
        free(e->del.p);
        *e = (struct map_edit){ 0 };
}
