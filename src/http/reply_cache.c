/* reply_cache.c - the read model the HTTP threads serve from (see reply_cache.h): a hash table of
 * reference-counted replies under one mutex, an age list for eviction when over budget. HTTP
 * threads. */
#include "http/reply_cache.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

#include <microhttpd.h>

#include "changes.h"
#include "http/http.h"
#include "metrics.h"
#include "util.h"

#define BUCKETS   1024 /* a power of two */
#define CHAIN_MAX 8    /* a longer chain keeps no new entry: a lookup stays short */
#define KEY_MAX   4096 /* a longer URL is not kept */

struct reply_cache_entry {
        atomic_uint refs;
        struct reply_cache_entry *next;          /* in its bucket, under the lock */
        struct reply_cache_entry *older, *newer; /* the age list, under the lock */
        uint64_t hash, changes, stamp, born_usec;
        size_t cost;
        char *key;
        size_t key_len;
        char *body;
        size_t len;
        size_t n_headers;
        struct {
                char *name, *value;
        } headers[REPLY_MAX_HEADERS];
};

struct reply_cache {
        pthread_mutex_t lock;
        struct reply_cache_entry *buckets[BUCKETS];
        struct reply_cache_entry *oldest, *newest;
        size_t bytes;
        uint64_t seed;
};

int reply_cache_new(struct reply_cache **ret)
{
        struct reply_cache *c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        if (getrandom(&c->seed, sizeof(c->seed), 0) != sizeof(c->seed))
                c->seed = now_monotonic_usec();
        pthread_mutex_init(&c->lock, NULL);
        *ret = c;
        return 0;
}

static void entry_free(struct reply_cache_entry *e)
{
        for (size_t i = 0; i < e->n_headers; i++) {
                free(e->headers[i].name);
                free(e->headers[i].value);
        }
        free(e->key);
        free(e->body);
        free(e);
}

void reply_cache_entry_unref(struct reply_cache_entry *e)
{
        if (e && atomic_fetch_sub(&e->refs, 1) == 1)
                entry_free(e);
}

/* Takes e out of the table and drops the table's reference. Under the lock. */
static void unlink_entry(struct reply_cache *c, struct reply_cache_entry *e)
{
        struct reply_cache_entry **pp = &c->buckets[e->hash & (BUCKETS - 1)];
        while (*pp && *pp != e)
                pp = &(*pp)->next;
        if (*pp)
                *pp = e->next;
        if (e->older)
                e->older->newer = e->newer;
        else
                c->oldest = e->newer;
        if (e->newer)
                e->newer->older = e->older;
        else
                c->newest = e->older;
        c->bytes -= e->cost;
        reply_cache_entry_unref(e);
}

void reply_cache_free(struct reply_cache *c)
{
        if (!c)
                return;
        while (c->oldest)
                unlink_entry(c, c->oldest);
        pthread_mutex_destroy(&c->lock);
        free(c);
}

/* The key: who may see it (the scope: a handler may refuse a weaker one), the path as sent and
 * each query argument in order, every part after its length (no byte a client sends can make
 * two URLs one key). No cached route reads any header: one that did would need it here. */
struct key_buf {
        char *s;
        size_t len, cap;
        bool too_long;
};

static void key_add(struct key_buf *k, const char *s, size_t n)
{
        if (k->too_long || k->len + n + 1 > KEY_MAX) {
                k->too_long = true;
                return;
        }
        memcpy(k->s + k->len, s, n);
        k->len += n;
}

/* A part: its length in decimal, ':', its bytes; "-" for none (an argument without '='). */
static void key_add_str(struct key_buf *k, const char *s)
{
        char len[24];
        int n = s ? snprintf(len, sizeof(len), "%zu:", strlen(s)) : snprintf(len, sizeof(len), "-");
        key_add(k, len, (size_t)n);
        if (s)
                key_add(k, s, strlen(s));
}

static enum MHD_Result key_arg(void *cls, enum MHD_ValueKind kind, const char *name,
                               const char *value)
{
        (void)kind;
        struct key_buf *k = cls;
        key_add_str(k, name);
        key_add_str(k, value); /* "?a" and "?a=" differ */
        return MHD_YES;
}

static bool current(const struct reply_cache_entry *e, uint64_t changes, uint64_t stamp,
                    uint64_t now)
{
        return e->changes == changes && e->stamp == stamp &&
               now - e->born_usec < REPLY_CACHE_TTL_USEC;
}

/* The entry for key, or NULL. Under the lock. */
static struct reply_cache_entry *find(struct reply_cache *c, uint64_t hash, const char *key,
                                      size_t len)
{
        for (struct reply_cache_entry *e = c->buckets[hash & (BUCKETS - 1)]; e; e = e->next)
                if (e->hash == hash && e->key_len == len && memcmp(e->key, key, len) == 0)
                        return e;
        return NULL;
}

bool reply_cache_serve(struct reply_cache *c, struct request *req, const char *url)
{
        char buf[KEY_MAX];
        struct key_buf k = { .s = buf, .cap = sizeof(buf) };
        char scope = (char)('0' + req->scope);
        key_add(&k, &scope, 1);
        key_add_str(&k, url);
        MHD_get_connection_values(req->conn, MHD_GET_ARGUMENT_KIND, key_arg, &k);
        if (k.too_long)
                return false;
        uint64_t hash = hash_fnv1a(c->seed, buf, k.len), changes = changes_now();
        uint64_t stamp = req->op->cached(req), now = now_monotonic_usec();

        pthread_mutex_lock(&c->lock);
        struct reply_cache_entry *e = find(c, hash, buf, k.len);
        if (e && current(e, changes, stamp, now))
                atomic_fetch_add(&e->refs, 1);
        else
                e = NULL;
        pthread_mutex_unlock(&c->lock);

        if (!e) {
                metrics_count(METRIC_REPLY_CACHE_MISSES, 1);
                req->cache_key = malloc(k.len);
                if (req->cache_key)
                        memcpy(req->cache_key, buf, k.len);
                req->cache_key_len = k.len;
                req->cache_hash = hash;
                req->cache_changes = changes;
                req->cache_stamp = stamp;
                req->cache_born = now; /* its age counts from before it is read */
                return false;
        }
        for (size_t i = 0; i < e->n_headers; i++)
                if (reply_header(req, e->headers[i].name, "%s", e->headers[i].value) < 0) {
                        reply_cache_entry_unref(e);
                        request_reply_free(req);
                        return false; /* cannot happen: it had these headers before */
                }
        metrics_count(METRIC_REPLY_CACHE_HITS, 1);
        req->status = 200;
        req->reply_type = "application/json";
        /* the request's reference, held until the request ends: its header names are the
         * entry's */
        req->reply_entry = e;
        req->reply_cached = true;
        req->reply_len = e->len;
        req->replied = true;
        return true;
}

void reply_cache_keep(struct reply_cache *c, struct request *req)
{
        if (!req->cache_key || req->method != HTTP_GET || req->status != 200 || req->reply_secret ||
            req->reply_cached || !req->reply_body || req->reply_len > REPLY_CACHE_MAX_ENTRY ||
            !req->reply_type || strcmp(req->reply_type, "application/json") != 0 ||
            !reply_header_value(req, "ETag"))
                return;
        struct reply_cache_entry *e = calloc(1, sizeof(*e));
        if (!e)
                return;
        e->cost = sizeof(*e) + req->cache_key_len + req->reply_len;
        for (size_t i = 0; i < req->n_headers; i++) {
                e->headers[i].name = strdup(req->headers[i].name);
                e->headers[i].value = strdup(req->headers[i].value);
                e->n_headers = i + 1;
                if (!e->headers[i].name || !e->headers[i].value) {
                        entry_free(e);
                        return;
                }
                e->cost += strlen(e->headers[i].name) + strlen(e->headers[i].value) + 2;
        }
        e->key = TAKE_PTR(req->cache_key);
        e->key_len = req->cache_key_len;
        e->hash = req->cache_hash;
        e->changes = req->cache_changes;
        e->stamp = req->cache_stamp;
        e->born_usec = req->cache_born;
        e->body = TAKE_PTR(req->reply_body);
        e->len = req->reply_len;
        atomic_init(&e->refs, 2); /* the table's and the request's */
        req->reply_entry = e;
        req->reply_cached = true;

        uint64_t changes = changes_now(), now = now_monotonic_usec();
        pthread_mutex_lock(&c->lock);
        /* what is no longer current goes first: it can never be served again */
        size_t chain = 0;
        for (struct reply_cache_entry *x = c->buckets[e->hash & (BUCKETS - 1)], *next; x;
             x = next) {
                next = x->next;
                if (!current(x, changes, x->stamp, now))
                        unlink_entry(c, x);
                else
                        chain++;
        }
        struct reply_cache_entry *old = find(c, e->hash, e->key, e->key_len);
        /* a reply read while something changed is no longer current: not kept */
        bool keep = e->changes == changes && (old ? old->changes <= e->changes : chain < CHAIN_MAX);
        if (keep) {
                if (old)
                        unlink_entry(c, old);
                e->next = c->buckets[e->hash & (BUCKETS - 1)];
                c->buckets[e->hash & (BUCKETS - 1)] = e;
                e->older = c->newest;
                if (c->newest)
                        c->newest->newer = e;
                else
                        c->oldest = e;
                c->newest = e;
                c->bytes += e->cost;
                while (c->bytes > REPLY_CACHE_MAX_BYTES && c->oldest != e)
                        unlink_entry(c, c->oldest);
        }
        pthread_mutex_unlock(&c->lock);
        if (!keep)
                atomic_fetch_sub(&e->refs, 1); /* the request's alone */
}

static void response_done(void *cls)
{
        reply_cache_entry_unref(cls);
}

struct MHD_Response *reply_cache_response(struct reply_cache_entry *e)
{
        atomic_fetch_add(&e->refs, 1);
        struct MHD_Response *r = MHD_create_response_from_buffer_with_free_callback_cls(
            e->len, e->body, response_done, e);
        if (!r)
                reply_cache_entry_unref(e);
        return r;
}
