/* item_memo.h - the items of the last bulk replace of TLS policies this node applied, kept so
 * that the next push of the same set with a few rows changed costs about what those rows cost
 * (issue 17). Two things make that:
 *
 * - An item whose raw bytes are those of an item of the memo's is a valid policy whose
 *   normalized text is the one kept for it: it is neither parsed nor checked again (a JSON
 *   item's text; a map file's entry, key to value, with no note before it; the bytes are
 *   compared whole, never trusted on a hash).
 * - Every item is compared, by destination, with the memo's: the write that carries the body
 *   carries its delta too (the rows to write: new or different; the destinations gone), and the
 *   worker applies the delta instead of the whole set when the state is still the one the memo
 *   was published with (its tag: the settings' and the policies' versions, both drawn from one
 *   sequence, checked in the worker's transaction). The memo's items are then exactly the
 *   unmanaged rows: a bulk replace writes all of them and nothing else.
 *
 * A memo is built by an HTTP thread while it reads a body, published by the worker when the
 * write that made it has committed, and read by every later bulk; once published it never
 * changes (shared by reference). Pure (no I/O): the slot's mutex is its one lock. */
#pragma once

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

/* Bodies larger than this are never kept (offsets are 32 bits); the configuration's
 * bulk_memo_limit is below it. */
#define ITEM_MEMO_BODY_MAX (1u << 30)

/* The state a memo's items are the unmanaged rows of (policies 0: none, never applied): the
 * versions of the settings and the policies, and the length of the fingerprints the effective
 * smtp_tls_fingerprint_digest makes (main.cf's; 0 unknown), which every item was checked
 * against. */
struct item_memo_tag {
        int64_t settings, policies;
        size_t digest_len;
};

struct item_memo;

/* What the raw bytes of a body's items are: a JSON item's text, or a map file's entry. Bytes of
 * one kind are never known as the other's (a JSON item with a blank in it is a map line too). */
enum item_memo_kind { ITEM_MEMO_JSON, ITEM_MEMO_MAP };

/* Where the current memo is (one per daemon). */
struct item_memo_slot {
        pthread_mutex_t lock;
        struct item_memo *memo;
};
#define ITEM_MEMO_SLOT_INIT                                                                        \
        {                                                                                          \
                .lock = PTHREAD_MUTEX_INITIALIZER                                                  \
        }

/* The current memo, referenced (item_memo_unref it), or NULL. */
struct item_memo *item_memo_current(struct item_memo_slot *slot);
/* m (not yet shared) becomes the current memo, the rows of the state `tag`. */
void item_memo_publish(struct item_memo_slot *slot, struct item_memo *m, struct item_memo_tag tag);
/* Forgets the current memo (its memory goes with its last reader). */
void item_memo_forget(struct item_memo_slot *slot);
struct item_memo *item_memo_ref(struct item_memo *m);
void item_memo_unref(struct item_memo *m);
size_t item_memo_count(const struct item_memo *m);
struct item_memo_tag item_memo_tag(const struct item_memo *m);

/* What a bulk write carries beside its items: the memo of its body (published when it commits)
 * and its delta from the memo before, valid while the state is still `base`. */
struct item_memo_delta {
        struct item_memo *next;
        struct item_memo_tag base; /* policies 0: no delta (the items are applied whole) */
        char *upserts;             /* JSON array of the normalized items new or different */
        char *deletes;             /* JSON array of the destinations the body no longer has */
        size_t total, n_upserts, n_deletes;
};
void item_memo_delta_free(struct item_memo_delta *d);

/* A memo being built from one body, item by item, in body order. */
struct item_memo_build {
        struct item_memo *old;  /* referenced; NULL: none */
        uint32_t *seen;         /* per entry of old: 1 + where the item for its row was */
        struct item_memo *next; /* this body's */
        struct strbuf *text;    /* the normalized items' text (the job's), owned by the caller */
        struct strbuf upserts;
        size_t n, n_upserts;
        bool delta; /* old is applied somewhere: a delta is worth making */
};

/* old: the current memo (a reference is taken), or NULL; kind: the body's; text: where the
 * caller's items text grows (its "[" already there); body_len: the body's size; seed: the hash's
 * when there is no old memo (a random one). -ENOMEM. */
int item_memo_build_init(struct item_memo_build *b, struct item_memo *old, enum item_memo_kind kind,
                         struct strbuf *text, size_t body_len, uint64_t seed);
void item_memo_build_done(struct item_memo_build *b);

/* The next item, its raw bytes (len of them), when old has an item of these very bytes: its
 * normalized text is appended to text (after a comma unless it is the first) and it is recorded
 * as the body's next item. `where` is the caller's number for it (a JSON item's index, a map
 * file's line), said back for a duplicate. 1: known and recorded; 0: not known (read it);
 * -EEXIST: its destination (*dest, NUL-terminated in the memo) is an earlier item's (at *first);
 * -ENOMEM. */
int item_memo_build_known(struct item_memo_build *b, const char *raw, size_t len, size_t where,
                          const char **dest, size_t *first);
/* The next item, read and checked by the caller, its normalized text already appended to text at
 * norm_off (norm_len bytes), its raw bytes (len of them; 0: none, it is never known by them),
 * where as above. 0; -EEXIST when an earlier item stood for old's item of this destination (at
 * *first); -ENOMEM. */
int item_memo_build_added(struct item_memo_build *b, const char *raw, size_t len, size_t where,
                          size_t norm_off, size_t norm_len, const char *dest, size_t dest_len,
                          size_t *first);
/* The body is read: the memo takes a copy of text, and *ret is the delta. -ENOMEM. */
int item_memo_build_finish(struct item_memo_build *b, struct item_memo_delta **ret);
