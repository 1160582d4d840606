/* item_memo.c - see item_memo.h. Two open-addressing tables of entry numbers (by raw bytes, by
 * destination), at most half full; entries point into three buffers the memo owns (the body, the
 * normalized text, the destinations). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/item_memo.h"

struct item_memo_entry {
        uint64_t raw_hash, dest_hash;
        uint32_t raw_off, raw_len; /* in raw; raw_len 0: no raw key */
        uint32_t norm_off, norm_len;
        uint32_t dest_off, dest_len; /* in dests (NUL-terminated there) */
};

struct item_memo {
        atomic_int refs;
        uint64_t seed;
        enum item_memo_kind kind; /* of the raw bytes */
        struct strbuf raw;        /* the items' raw bytes */
        char *norm;               /* the normalized items */
        struct strbuf dests;
        struct item_memo_entry *e;
        size_t n, cap;
        uint32_t *by_raw, *by_dest; /* 0 empty, else entry + 1 */
        size_t slots;               /* a power of two */
        struct item_memo_tag tag;
};

struct item_memo *item_memo_ref(struct item_memo *m)
{
        if (m)
                atomic_fetch_add(&m->refs, 1);
        return m;
}

void item_memo_unref(struct item_memo *m)
{
        if (!m || atomic_fetch_sub(&m->refs, 1) != 1)
                return;
        free(m->raw.p);
        free(m->norm);
        free(m->dests.p);
        free(m->e);
        free(m->by_raw);
        free(m->by_dest);
        free(m);
}

size_t item_memo_count(const struct item_memo *m)
{
        return m ? m->n : 0;
}

struct item_memo_tag item_memo_tag(const struct item_memo *m)
{
        return m ? m->tag : (struct item_memo_tag){ 0 };
}

struct item_memo *item_memo_current(struct item_memo_slot *slot)
{
        pthread_mutex_lock(&slot->lock);
        struct item_memo *m = item_memo_ref(slot->memo);
        pthread_mutex_unlock(&slot->lock);
        return m;
}

/* The slot holds m (referenced by the caller for it) now; the memo before goes. */
static void slot_swap(struct item_memo_slot *slot, struct item_memo *m)
{
        pthread_mutex_lock(&slot->lock);
        struct item_memo *was = slot->memo;
        slot->memo = m;
        pthread_mutex_unlock(&slot->lock);
        item_memo_unref(was);
}

void item_memo_publish(struct item_memo_slot *slot, struct item_memo *m, struct item_memo_tag tag)
{
        m->tag = tag;
        slot_swap(slot, item_memo_ref(m));
}

void item_memo_forget(struct item_memo_slot *slot)
{
        slot_swap(slot, NULL);
}

void item_memo_delta_free(struct item_memo_delta *d)
{
        if (!d)
                return;
        item_memo_unref(d->next);
        free(d->upserts);
        free(d->deletes);
        free(d);
}

static const char *entry_raw(const struct item_memo *m, const struct item_memo_entry *e)
{
        return m->raw.p + e->raw_off;
}

static const char *entry_dest(const struct item_memo *m, const struct item_memo_entry *e)
{
        return m->dests.p + e->dest_off;
}

static const char *entry_norm(const struct item_memo *m, const struct item_memo_entry *e)
{
        return m->norm + e->norm_off;
}

/* Puts entry i into a table of `slots` slots. */
static void table_put(uint32_t *t, size_t slots, uint64_t hash, size_t i)
{
        size_t k = (size_t)hash & (slots - 1);
        while (t[k])
                k = (k + 1) & (slots - 1);
        t[k] = (uint32_t)(i + 1);
}

/* Room for cap entries (a power of two), the tables at most half full. */
static int grow_to(struct item_memo *m, size_t cap)
{
        size_t slots = cap * 2;
        struct item_memo_entry *e = realloc(m->e, cap * sizeof(*e));
        if (!e)
                return -ENOMEM;
        m->e = e;
        uint32_t *by_raw = calloc(slots, sizeof(*by_raw)),
                 *by_dest = calloc(slots, sizeof(*by_dest));
        if (!by_raw || !by_dest) {
                free(by_raw);
                free(by_dest);
                return -ENOMEM;
        }
        for (size_t i = 0; i < m->n; i++) {
                if (m->e[i].raw_len)
                        table_put(by_raw, slots, m->e[i].raw_hash, i);
                table_put(by_dest, slots, m->e[i].dest_hash, i);
        }
        free(m->by_raw);
        free(m->by_dest);
        m->by_raw = by_raw;
        m->by_dest = by_dest;
        m->cap = cap;
        m->slots = slots;
        return 0;
}

/* A hash of n bytes taken 8 at a time (a memo hashes every byte of a body: FNV-1a's byte at a
 * time was most of the time of reading a known body). Collisions cost a comparison, never a
 * wrong answer: entries are compared whole. */
static uint64_t memo_hash(uint64_t seed, const void *data, size_t n)
{
        const unsigned char *p = data;
        uint64_t h = seed ^ (n * 0x9e3779b97f4a7c15ull), w;
        for (; n >= 8; p += 8, n -= 8) {
                memcpy(&w, p, 8);
                h = (h ^ w) * 0xbf58476d1ce4e5b9ull;
                h ^= h >> 31;
        }
        w = 0;
        memcpy(&w, p, n);
        h = (h ^ w) * 0x94d049bb133111ebull;
        return h ^ (h >> 29);
}

/* An entry is found by either of two keys: its raw bytes, its destination. */
enum memo_key { KEY_RAW, KEY_DEST };

static bool entry_has(const struct item_memo *m, const struct item_memo_entry *e, enum memo_key key,
                      uint64_t hash, const char *s, size_t len)
{
        if (key == KEY_RAW)
                return e->raw_hash == hash && e->raw_len == len && !memcmp(entry_raw(m, e), s, len);
        return e->dest_hash == hash && e->dest_len == len && !memcmp(entry_dest(m, e), s, len);
}

/* The entry whose key is s, or -1; *hash: s's. */
static ssize_t find(const struct item_memo *m, enum memo_key key, const char *s, size_t len,
                    uint64_t *hash)
{
        uint64_t h = *hash = memo_hash(m->seed, s, len);
        const uint32_t *table = key == KEY_RAW ? m->by_raw : m->by_dest;
        if (!m->n)
                return -1;
        for (size_t k = (size_t)h & (m->slots - 1); table[k]; k = (k + 1) & (m->slots - 1))
                if (entry_has(m, &m->e[table[k] - 1], key, h, s, len))
                        return table[k] - 1;
        return -1;
}

/* A new entry of the memo being built: its raw bytes (len 0: none) and destination copied in,
 * with their hashes (the memo's seed is the one before it: lookups there hashed them). */
static int add_entry(struct item_memo *m, const char *raw, size_t len, uint64_t raw_hash,
                     size_t norm_off, size_t norm_len, const char *dest, size_t dest_len,
                     uint64_t dest_hash)
{
        if (m->raw.len + len > UINT32_MAX || norm_off + norm_len > UINT32_MAX ||
            m->dests.len + dest_len + 1 > UINT32_MAX)
                return -E2BIG;
        if (m->n == m->cap) {
                int r = grow_to(m, m->cap ? m->cap * 2 : 1024);
                if (r < 0)
                        return r;
        }
        struct item_memo_entry *e = &m->e[m->n];
        *e = (struct item_memo_entry){ .raw_hash = raw_hash,
                                       .dest_hash = dest_hash,
                                       .raw_off = (uint32_t)m->raw.len,
                                       .raw_len = (uint32_t)len,
                                       .norm_off = (uint32_t)norm_off,
                                       .norm_len = (uint32_t)norm_len,
                                       .dest_off = (uint32_t)m->dests.len,
                                       .dest_len = (uint32_t)dest_len };
        size_t at = m->dests.len, raw_at = m->raw.len;
        if (strbuf_add(&m->dests, dest, dest_len) < 0 || strbuf_add(&m->dests, "", 1) < 0 ||
            (len && strbuf_add(&m->raw, raw, len) < 0)) {
                m->dests.len = at;
                m->raw.len = raw_at;
                return -ENOMEM;
        }
        if (len)
                table_put(m->by_raw, m->slots, e->raw_hash, m->n);
        table_put(m->by_dest, m->slots, e->dest_hash, m->n);
        m->n++;
        return 0;
}

int item_memo_build_init(struct item_memo_build *b, struct item_memo *old, enum item_memo_kind kind,
                         struct strbuf *text, size_t body_len, uint64_t seed)
{
        *b = (struct item_memo_build){ .text = text };
        b->next = calloc(1, sizeof(*b->next));
        if (!b->next)
                return -ENOMEM;
        atomic_init(&b->next->refs, 1);
        /* one seed along the memos: a hash computed in the old one is the new one's too */
        b->next->seed = old ? old->seed : seed;
        b->next->kind = kind;
        /* about the body's bytes: grown once (untouched pages of a large one cost no memory) */
        b->next->raw.cap = body_len + 1;
        if (old && old->n) {
                /* as many items as the last body, most likely: the tables made once */
                size_t cap = 1024;
                while (cap < old->n + old->n / 8)
                        cap *= 2;
                if (grow_to(b->next, cap) < 0) {
                        item_memo_build_done(b);
                        return -ENOMEM;
                }
                b->seen = calloc(old->n, sizeof(*b->seen));
                if (!b->seen) {
                        item_memo_build_done(b);
                        return -ENOMEM;
                }
                b->old = item_memo_ref(old);
                b->delta = old->tag.policies != 0;
        }
        if (b->delta && strbuf_add(&b->upserts, "[", 1) < 0) {
                item_memo_build_done(b);
                return -ENOMEM;
        }
        return 0;
}

void item_memo_build_done(struct item_memo_build *b)
{
        item_memo_unref(b->old);
        item_memo_unref(b->next);
        free(b->seen);
        free(b->upserts.p);
        *b = (struct item_memo_build){ 0 };
}

/* Old's entry e now stands for the item at `where`: -EEXIST when an earlier item did already. */
static int claim(struct item_memo_build *b, size_t e, size_t where, size_t *first)
{
        if (b->seen[e]) {
                *first = b->seen[e] - 1;
                return -EEXIST;
        }
        b->seen[e] = (uint32_t)(where + 1);
        return 0;
}

int item_memo_build_known(struct item_memo_build *b, const char *raw, size_t len, size_t where,
                          const char **dest, size_t *first)
{
        uint64_t h = 0;
        /* only against the raw bytes of a body of the same type */
        bool comparable = b->old && len && b->old->kind == b->next->kind;
        ssize_t i = comparable ? find(b->old, KEY_RAW, raw, len, &h) : -1;
        if (i < 0 || where >= UINT32_MAX - 1)
                return 0;
        const struct item_memo_entry *e = &b->old->e[i];
        *dest = entry_dest(b->old, e);
        int r = claim(b, (size_t)i, where, first);
        if (r < 0)
                return r;
        size_t at = b->text->len, norm_off = at + (b->n ? 1 : 0);
        if ((b->n && strbuf_add(b->text, ",", 1) < 0) ||
            strbuf_add(b->text, entry_norm(b->old, e), e->norm_len) < 0 ||
            (r = add_entry(b->next, raw, len, h, norm_off, e->norm_len, *dest, e->dest_len,
                           e->dest_hash)) < 0) {
                b->text->len = at;
                b->seen[i] = 0;
                return r < 0 ? r : -ENOMEM;
        }
        b->n++;
        return 1;
}

int item_memo_build_added(struct item_memo_build *b, const char *raw, size_t len, size_t where,
                          size_t norm_off, size_t norm_len, const char *dest, size_t dest_len,
                          size_t *first)
{
        uint64_t dest_hash = 0;
        ssize_t i = b->old ? find(b->old, KEY_DEST, dest, dest_len, &dest_hash) : -1;
        if (!b->old)
                dest_hash = memo_hash(b->next->seed, dest, dest_len);
        if (i >= 0 && where >= UINT32_MAX - 1)
                return -E2BIG;
        int r = i >= 0 ? claim(b, (size_t)i, where, first) : 0;
        if (r < 0)
                return r;
        const char *norm = b->text->p + norm_off;
        bool same = i >= 0 && b->old->e[i].norm_len == norm_len &&
                    !memcmp(entry_norm(b->old, &b->old->e[i]), norm, norm_len);
        if (b->delta && !same) {
                size_t at = b->upserts.len;
                if ((b->n_upserts && strbuf_add(&b->upserts, ",", 1) < 0) ||
                    strbuf_add(&b->upserts, norm, norm_len) < 0) {
                        b->upserts.len = at;
                        return -ENOMEM;
                }
                b->n_upserts++;
        }
        r = add_entry(b->next, raw, len, len ? memo_hash(b->next->seed, raw, len) : 0, norm_off,
                      norm_len, dest, dest_len, dest_hash);
        if (r < 0)
                return r;
        b->n++;
        return 0;
}

/* s as a JSON string (destinations are host names and addresses: escaping is for safety). */
static int add_json_string(struct strbuf *out, const char *s)
{
        if (strbuf_add(out, "\"", 1) < 0)
                return -ENOMEM;
        for (; *s; s++) {
                unsigned char c = (unsigned char)*s;
                char esc[8];
                int k = 0;
                if (c == '"' || c == '\\')
                        k = snprintf(esc, sizeof(esc), "\\%c", c);
                else if (c < 0x20)
                        k = snprintf(esc, sizeof(esc), "\\u%04x", c);
                if (k ? strbuf_add(out, esc, (size_t)k) < 0 : strbuf_add(out, s, 1) < 0)
                        return -ENOMEM;
        }
        return strbuf_add(out, "\"", 1) < 0 ? -ENOMEM : 0;
}

int item_memo_build_finish(struct item_memo_build *b, struct item_memo_delta **ret)
{
        struct item_memo *m = b->next;
        *ret = NULL;
        struct item_memo_delta *d = calloc(1, sizeof(*d));
        if (!d || !(m->norm = malloc(b->text->len + 1))) {
                free(d);
                return -ENOMEM;
        }
        memcpy(m->norm, b->text->p, b->text->len);
        m->norm[b->text->len] = 0;
        d->total = b->n;
        if (b->delta) {
                struct strbuf del = { 0 };
                int r = strbuf_add(&del, "[", 1);
                for (size_t i = 0; r >= 0 && i < b->old->n; i++)
                        if (!b->seen[i]) {
                                if (d->n_deletes && strbuf_add(&del, ",", 1) < 0)
                                        r = -ENOMEM;
                                if (r >= 0)
                                        r = add_json_string(&del,
                                                            entry_dest(b->old, &b->old->e[i]));
                                d->n_deletes++;
                        }
                if (r < 0 || strbuf_add(&del, "]", 1) < 0 || strbuf_add(&b->upserts, "]", 1) < 0) {
                        free(del.p);
                        free(d);
                        return -ENOMEM;
                }
                d->base = b->old->tag;
                d->deletes = del.p;
                d->upserts = TAKE_PTR(b->upserts.p);
                d->n_upserts = b->n_upserts;
        }
        d->next = TAKE_PTR(b->next);
        *ret = d;
        return 0;
}
