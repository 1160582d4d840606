/* store.h - the configuration rows in PostgreSQL: settings, the generation counter, certificate
 * lookups for binding, and the jobs table (the durable half of the queue and the audit trail).
 * Reads run on HTTP threads (pooled connections); writes only on the worker's connection. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/problem.h"
#include "core/settings.h"
#include "store/db.h"
#include "store/tokens.h"

struct cert_row {
        int64_t id;
        char name[65];
        char type[16]; /* imported, acme, system */
        bool system;
        char *certificate_pem; /* leaf */
        char *chain_pem;
        char *private_key_pem; /* as stored: PEM, or sealed (cert_row_private_key() opens it) */
        char sha256_fingerprint[96];
        int64_t not_after; /* unix time, 0 when unknown */
        char key_type[16]; /* as cert_info's: "RSA", "EC", ...; "" when unknown */
};
void cert_row_done(struct cert_row *c);

/* settings (+ the bound certificate's name, version for ETags). */
int store_settings_load(struct db_conn *c, struct settings *s, int64_t *version, bool for_update,
                        struct problem *reterr);
/* Saves s; each bound certificate name must exist (certificate_not_found) and not be a system
 * certificate (system_certificate_refused), and the two must differ in key type
 * (duplicate_key_type). Bumps the version. */
int store_settings_save(struct db_conn *c, const struct settings *s, struct problem *reterr);
int store_cert_by_name(struct db_conn *c, const char *name, struct cert_row *row,
                       struct problem *reterr);

int store_generation(struct db_conn *c, int64_t *gen, bool for_update, struct problem *reterr);
int store_generation_bump(struct db_conn *c, int64_t *gen, struct problem *reterr);
/* The version of a collection (its ETag), bumped by the triggers of 003_etags.sql. */
enum store_collection { STORE_POLICIES, STORE_CERTIFICATES };
int store_collection_version(struct db_conn *c, enum store_collection which, int64_t *version,
                             struct problem *reterr);
/* The versions of the whole desired state: the settings row's and both collections'. A write
 * that leaves all three as they were changed nothing (the triggers keep a row and its collection
 * as they were when an UPDATE changes no value; so does store_settings_save). */
struct state_versions {
        int64_t settings, policies, certificates;
};
int store_state_versions(struct db_conn *c, struct state_versions *v, struct problem *reterr);

/* jobs */
/* The size of a timestamp of the API: RFC 3339 in UTC, whole seconds ("2026-11-22T10:00:00Z"). */
#define STORE_TIME_SIZE 24
/* items (JSON text, or NULL): a bulk replace's items, recorded in the row's items column.
 * created_at (STORE_TIME_SIZE bytes, or NULL) receives the row's created_at. */
int store_job_insert(struct db_conn *c, const char *node, const char *actor, const char *action,
                     const char *target, json_t *request, const char *items, int64_t *id,
                     char *created_at, struct problem *reterr);
/* The same for an upload that carries a private key (or a state document its keys, as one JSON
 * text {name: PEM}, with its items beside): the key never enters the request. It waits
 * in pending_keys (sealed with kek when not NULL) under a random reference that is added to
 * request as "private_key_ref"; job and key are inserted by one statement. */
struct kek;
struct fingerprint_digest;
int store_job_insert_with_key(struct db_conn *c, const char *node, const char *actor,
                              const char *action, const char *target, json_t *request,
                              const char *items, const char *key_pem, const struct kek *kek,
                              int64_t *id, char *created_at, struct problem *reterr);
/* The pending key of a row of store_jobs_pending() (decrypted with kek when sealed) into *ret
 * (free with free_wiped()); *ret NULL when the job has none. A key that cannot be had:
 * certificate_unusable, naming the certificate. */
int store_job_key_open(const struct kek *kek, json_t *row, char **ret, struct problem *reterr);
/* The job as api.md shows it (request bodies are never shown). not_found when absent. */
int store_job_get(struct db_conn *c, int64_t id, json_t **ret, struct problem *reterr);
/* Which jobs a list shows; NULL (or 0) members do not filter. */
struct job_filter {
        int64_t before;     /* ids below (the cursor's position) */
        const char *status; /* queued, running, applied or failed */
        const char *actor;  /* exactly */
        const char *action; /* exactly (a name of apply/action.c's table) */
        const char *target; /* exactly */
        int64_t since;      /* created at or after (seconds since the epoch); 0 none */
};
/* Newest first, those that pass f; *next = the id the page ended at, or 0 for the last page. */
int store_job_list(struct db_conn *c, const struct job_filter *f, int limit, json_t **items,
                   int64_t *next, struct problem *reterr);

/* The worker's side of the jobs table. */
struct job_outcome {
        const char *status; /* applied or failed */
        int64_t generation; /* 0: none */
        bool postmap, reload;
        const char *output;
        json_t *error, *before, *after, *warnings; /* borrowed, may be NULL */
};
int store_job_finish(struct db_conn *c, int64_t id, const struct job_outcome *o,
                     struct problem *reterr);
/* Counts an attempt before the job runs (committed on its own, so a job that crashes the daemon
 * is not retried forever). */
int store_job_attempt(struct db_conn *c, int64_t id, int *attempts, struct problem *reterr);
/* Jobs of this node still queued or running (left by a crash, or queued by another thread):
 * [{id, action, target, actor, request, private_key?}] oldest first (private_key: the stored
 * pending key of an upload, sealed or not: open it with store_job_key_open()). */
int store_jobs_pending(struct db_conn *c, const char *node, json_t **rows, struct problem *reterr);

/* Versions (ETags, If-Match): every certificate and TLS policy row has a version, and each of the
 * two collections one (config_state), all from one sequence (never reused, not even after a delete
 * and a re-create). Triggers (sql/003_etags.sql) give a row a new version when it is inserted or
 * really changed (a certificate also when it is bound or unbound: in_use), and the collection one
 * when a statement inserted, changed or deleted a row; an UPDATE that changes nothing changes no
 * version. */

/* The certificate store (store/certificates.c). */
struct cert_import;
struct cert_info;
/* [{name, type, system, in_use, chain_verified, missing, ...info}] filtered by q (name, subject,
 * DNS names; case-insensitive substring) and type; days_left is computed for now. *version (when
 * not NULL) is the version of the whole collection, read in the same snapshot as the items. */
int store_certs_list(struct db_conn *c, const char *q, const char *type, json_t **items,
                     int64_t *version, struct problem *reterr);
/* One certificate as the API shows it, and its version (when not NULL); -ENOENT when absent. */
int store_cert_get(struct db_conn *c, const char *name, json_t **ret, int64_t *version,
                   struct problem *reterr);
int store_cert_get_json(struct db_conn *c, const char *name, json_t **ret, struct problem *reterr);
/* Creates or replaces an imported certificate. *created tells which. A name held by an ACME or
 * system certificate: acme_certificate / system_certificate. With kek the private key is stored
 * sealed (sealed.h), its name and fingerprint the envelope's additional data. */
int store_cert_put_imported(struct db_conn *c, const char *name, const struct cert_import *imp,
                            const struct kek *kek, bool chain_verified, bool *created,
                            struct problem *reterr);
/* The private key PEM of a row read by store_cert_by_name() (row->private_key_pem as stored:
 * sealed or plaintext), decrypted with kek when sealed, into *pem (free with free_wiped()). A key
 * that cannot be had: certificate_unusable naming the certificate, and why (encrypted with
 * another key, no key configured, does not decrypt). */
int cert_row_private_key(const struct cert_row *row, const struct kek *kek, char **pem,
                         struct problem *reterr);
/* The common part: a stored key (PEM passes, an envelope opens with kek and context); `what`
 * names it in the problem ("certificate 'mx'"). */
int store_key_open(const struct kek *kek, const char *context, const char *stored, const char *what,
                   char **pem, struct problem *reterr);
/* Seals every plaintext private key with kek (start-up, in the caller's transaction): *count
 * rows. The rows get new versions (ETags). */
int store_certs_seal_keys(struct db_conn *c, const struct kek *kek, int *count,
                          struct problem *reterr);
/* [{name, key_id}] of the rows whose key is sealed with another key than kek (kek NULL: every
 * sealed row). Reads the envelopes' headers only. */
int store_certs_unreadable_keys(struct db_conn *c, const struct kek *kek, json_t **items,
                                struct problem *reterr);
/* Creates or refreshes an ACME or system row (files are used in place, no PEM kept). Returns
 * STORE_CERT_ADDED (a new row), STORE_CERT_CHANGED (another fingerprint than the row's), 0 (the
 * same certificate), or -EEXIST when the name belongs to a certificate of another type. */
enum { STORE_CERT_ADDED = 1, STORE_CERT_CHANGED = 2 };
int store_cert_put_file_backed(struct db_conn *c, const char *name, const char *type,
                               const struct cert_info *info, bool chain_verified,
                               struct problem *reterr);
/* Marks an ACME row whose directory is gone (missing = true) or back. */
int store_cert_set_missing(struct db_conn *c, const char *name, bool missing,
                           struct problem *reterr);
/* Every certificate as the desired-state document (/api/v1/state) lists it, ordered by name:
 * {name, type, sha256_fingerprint}, and for an imported one its certificate and chain PEM, and
 * with `keys` its private key (opened with kek: free the array between json_wipe_begin/end). */
int store_certs_state(struct db_conn *c, const struct kek *kek, bool keys, json_t **items,
                      struct problem *reterr);
/* Names of the rows of one type. */
int store_cert_names(struct db_conn *c, const char *type, json_t **names, struct problem *reterr);
int store_cert_delete(struct db_conn *c, const char *name, struct problem *reterr);
/* [{name, not_after (unix), type, in_use}] of every certificate, for the expiry metric of node:
 * its own copy of an ACME certificate, none of one only other nodes have. */
int store_cert_expiries(struct db_conn *c, const char *node, json_t **items,
                        struct problem *reterr);

/* TLS policies (store/policies.c). */
struct policy;
/* The map text of the enabled rows (sorted), its entry count, and how many rows exist at all. */
/* Which of destinations (a JSON array of normalized ones) have a row: {destination: enabled}. */
int store_policies_enabled_of(struct db_conn *c, json_t *destinations, json_t **ret,
                              struct problem *reterr);
/* An import's policies (the JSON text of normalized items, or NULL: the job row's), added:
 * one that exists meanwhile is duplicate_destination; *added the rows inserted. */
int store_policies_import(struct db_conn *c, const char *items, int64_t job_id, int64_t *added,
                          struct problem *reterr);
/* The name of a certificate of the store with this SHA-256 fingerprint: 1 and name, 0 none. */
int store_cert_name_by_fingerprint(struct db_conn *c, const char *fingerprint, char *name,
                                   size_t size, struct problem *reterr);
/* The administrator's policy maps this node adopted by an import: their main.cf tokens and
 * what their entries were when adopted, in pairs (spec, digest, ..., NULL), or NULL: none. */
int store_adopted_maps(struct db_conn *c, const char *node, char ***ret, struct problem *reterr);
/* One more map this node adopted (again, with another file: the new digest); *added false when
 * it was already, with this file. */
int store_adopted_maps_add(struct db_conn *c, const char *node, const char *spec,
                           const char *digest, int64_t entries, const char *actor, bool *added,
                           struct problem *reterr);
/* The unmanaged TLS policies (those a bulk replace owns) as a Postfix map source file
 * (core/policy_map_text.h), sorted by destination, with the collection's version: one snapshot,
 * read through a cursor. */
int store_policies_map_file(struct db_conn *c, char **text, size_t *len, int64_t *version,
                            struct problem *reterr);
int store_policies_render(struct db_conn *c, char **text, size_t *len, size_t *entries,
                          int64_t *rows, struct problem *reterr);
/* The policy map's changes (store/policies.c, migration 013). A map rendered from the rows is
 * at the version store_policies_map_version gives (read it BEFORE rendering: a row committed in
 * between is then taken again by the next delta, never missed); *pruned is the newest
 * tombstone forgotten (a map older than it cannot be brought up to date by changes). */
int store_policies_map_version(struct db_conn *c, int64_t *version, int64_t *pruned,
                               struct problem *reterr);
/* Whether any policy row exists (enabled or not). */
int store_policies_exist(struct db_conn *c, bool *any, struct problem *reterr);
struct policy_changes {
        struct policy *rows; /* changed after `since`, enabled or not, sorted (byte order) */
        size_t n_rows;
        char **gone; /* destinations deleted after `since` and not there now, sorted */
        size_t n_gone;
        int64_t version; /* what the map is at with these changes */
};
/* The rows and deletions after version since: -E2BIG when more than max (render the map
 * whole: it is cheaper), -ESTALE when the deletions since then were pruned. */
int store_policies_changes(struct db_conn *c, int64_t since, size_t max, struct policy_changes *ret,
                           struct problem *reterr);
void policy_changes_done(struct policy_changes *ch);
/* Forgets the deletions older than TOMBSTONE_KEEP (a node whose map is older renders it whole). */
#define TOMBSTONE_KEEP "1 day"
int store_policies_prune_tombstones(struct db_conn *c, struct problem *reterr);
/* One row as the API shows it; -ENOENT when absent. Fills *p, *json and *version (the row's)
 * when not NULL. */
int store_policy_get(struct db_conn *c, const char *destination, struct policy *p, json_t **json,
                     int64_t *version, struct problem *reterr);
int store_policy_put(struct db_conn *c, const struct policy *p, bool *created,
                     struct problem *reterr);
int store_policy_delete(struct db_conn *c, const char *destination, struct problem *reterr);
/* Enabled ".d" rows without an enabled "d" (Postfix looks up the full name, then its dotted
 * parents: ".d" never covers d itself), sorted, at most limit of them into *names (a JSON array
 * of destinations); *more when there are others. destination: only the row of that name and the
 * ".d" of a plain "d" (a single write); NULL: the whole table (bulk, state). */
int store_policies_uncovered(struct db_conn *c, const char *destination, int limit, json_t **names,
                             bool *more, struct problem *reterr);
/* Filtered, ordered by destination, after the cursor; *next is the last destination of a full
 * page (malloc'ed) or NULL. managed: -1 any, 0 unmanaged, 1 managed. *version (when not NULL) is
 * the version of the whole collection (not of the page), read in the same snapshot. */
int store_policies_list(struct db_conn *c, const char *q, const char *level, int managed,
                        const char *after, int limit, json_t **items, char **next, int64_t *version,
                        struct problem *reterr);
/* Whether an enabled policy at verify or secure exists (they need trust anchors). */
int store_policies_need_trust(struct db_conn *c, bool *ret, struct problem *reterr);
/* The first enabled fingerprint policy (by destination) with a digest of another length than len
 * into *destination (NULL when none; the caller frees it). */
int store_policies_digest_mismatch(struct db_conn *c, size_t len, char **destination,
                                   struct problem *reterr);
/* Makes the unmanaged rows exactly the items: `items` (JSON text of an array of normalized
 * policies) or, when NULL, the items of job `job_id`'s row (read by the database: the
 * body is not copied through the daemon again). A destination held by a managed row: managed_row.
 * An item with managed_by: forbidden below admin `scope`, invalid_value at admin (bulk writes
 * unmanaged rows only). Counts go to *counts {added, changed, removed, unchanged}. */
/* With `whole` (PUT /api/v1/state) the items are every row, managed ones included: rows not in
 * them are removed whatever their manager, managed_by is written and compared; below admin
 * `scope` a managed row (in the items or in the table) must stay exactly as it is (forbidden or
 * managed_row otherwise). `base` is the JSON pointer of the items in the request ("/items",
 * "/tls_policies"), for the fields of problems. */
/* With `delta` (a bulk replace whose items differ from the unmanaged rows, as they are, only in
 * delta->upserts and delta->deletes: core/item_memo.h; the caller checked the state is the one
 * the delta is from) only those rows are read and written; the counts are the same. -ENOTSUP
 * when an upsert's problem would need its place in the body (a fingerprint of another length
 * than the digest's): nothing is written, the caller applies the items whole. */
struct store_bulk_delta {
        const char *upserts, *deletes; /* JSON arrays: normalized items; destinations */
        long long total;               /* the items of the body */
};
int store_policies_bulk(struct db_conn *c, const char *items, int64_t job_id, enum scope scope,
                        bool whole, const struct fingerprint_digest *digest, const char *base,
                        const struct store_bulk_delta *delta, json_t **counts,
                        struct problem *reterr);
/* Appends every row, ordered by destination, as a JSON array of normalized policies (no
 * timestamps: the desired state) to *out. Reads through a cursor a chunk at a time, so the
 * caller must be in a transaction (one snapshot with whatever else it reads). */
struct strbuf;
/* About the size of what store_policies_dump appends (escapes aside): to size its buffer once. */
int store_policies_json_size(struct db_conn *c, size_t *bytes, struct problem *reterr);
int store_policies_dump(struct db_conn *c, struct strbuf *out, struct problem *reterr);
