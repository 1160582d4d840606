/* store.h - the configuration rows in PostgreSQL: settings, the generation counter, certificate
 * lookups for binding, and the jobs table (the durable half of the queue and the audit trail).
 * Reads run on HTTP threads (pooled connections); writes only on the worker's connection. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "smtptlsd/db.h"
#include "smtptlsd/problem.h"
#include "smtptlsd/settings.h"
#include "smtptlsd/tokens.h"

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
};
void cert_row_done(struct cert_row *c);

/* settings (+ the bound certificate's name, version for ETags). */
int store_settings_load(struct db_conn *c, struct settings *s, int64_t *version, bool for_update,
                        struct problem *reterr);
/* Saves s; the certificate name must exist (certificate_not_found) and not be a system
 * certificate (system_certificate_refused). Bumps the version. */
int store_settings_save(struct db_conn *c, const struct settings *s, struct problem *reterr);
int store_cert_by_name(struct db_conn *c, const char *name, struct cert_row *row,
                       struct problem *reterr);

int store_generation(struct db_conn *c, int64_t *gen, bool for_update, struct problem *reterr);
int store_generation_bump(struct db_conn *c, int64_t *gen, struct problem *reterr);
/* The version of a collection (its ETag), bumped by the triggers of 003_etags.sql. */
enum store_collection { STORE_POLICIES, STORE_CERTIFICATES };
int store_collection_version(struct db_conn *c, enum store_collection which, int64_t *version,
                             struct problem *reterr);

/* jobs */
/* items (JSON text, or NULL): a bulk replace's items, recorded as request.body.policy. */
int store_job_insert(struct db_conn *c, const char *node, const char *actor, const char *action,
                     const char *target, json_t *request, const char *items, int64_t *id,
                     struct problem *reterr);
/* The same for an upload that carries a private key: the key never enters the request. It waits
 * in pending_keys (sealed with kek when not NULL) under a random reference that is added to
 * request as "private_key_ref"; job and key are inserted by one statement. */
struct kek;
int store_job_insert_with_key(struct db_conn *c, const char *node, const char *actor,
                              const char *action, const char *target, json_t *request,
                              const char *key_pem, const struct kek *kek, int64_t *id,
                              struct problem *reterr);
/* The pending key of a row of store_jobs_pending() (decrypted with kek when sealed) into *ret
 * (free with free_wiped()); *ret NULL when the job has none. A key that cannot be had:
 * certificate_unusable, naming the certificate. */
int store_job_key_open(const struct kek *kek, json_t *row, char **ret, struct problem *reterr);
/* The job as api.md shows it (request bodies are never shown). not_found when absent. */
int store_job_get(struct db_conn *c, int64_t id, json_t **ret, struct problem *reterr);
/* Newest first, ids below `before` (0: from the newest); *next = cursor or 0. */
int store_job_list(struct db_conn *c, int64_t before, int limit, json_t **items, int64_t *next,
                   struct problem *reterr);

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
int store_node_update(struct db_conn *c, const char *node, int64_t applied, const char *state,
                      const char *detail, struct problem *reterr);

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
 * -EEXIST when the name belongs to a certificate of another type. */
int store_cert_put_file_backed(struct db_conn *c, const char *name, const char *type,
                               const struct cert_info *info, bool chain_verified,
                               struct problem *reterr);
/* Marks an ACME row whose directory is gone (missing = true) or back. */
int store_cert_set_missing(struct db_conn *c, const char *name, bool missing,
                           struct problem *reterr);
/* Names of the rows of one type. */
int store_cert_names(struct db_conn *c, const char *type, json_t **names, struct problem *reterr);
int store_cert_delete(struct db_conn *c, const char *name, struct problem *reterr);
/* [{name, not_after (unix), type, in_use}] of every certificate, for the expiry metric. */
int store_cert_expiries(struct db_conn *c, json_t **items, struct problem *reterr);

/* TLS policies (store/policies.c). */
struct policy;
/* The map text of the enabled rows (sorted), its entry count, and how many rows exist at all. */
int store_policies_render(struct db_conn *c, char **text, size_t *len, size_t *entries,
                          int64_t *rows, struct problem *reterr);
/* One row as the API shows it; -ENOENT when absent. Fills *p, *json and *version (the row's)
 * when not NULL. */
int store_policy_get(struct db_conn *c, const char *destination, struct policy *p, json_t **json,
                     int64_t *version, struct problem *reterr);
int store_policy_put(struct db_conn *c, const struct policy *p, bool *created,
                     struct problem *reterr);
int store_policy_delete(struct db_conn *c, const char *destination, struct problem *reterr);
/* Filtered, ordered by destination, after the cursor; *next is the last destination of a full
 * page (malloc'ed) or NULL. managed: -1 any, 0 unmanaged, 1 managed. *version (when not NULL) is
 * the version of the whole collection (not of the page), read in the same snapshot. */
int store_policies_list(struct db_conn *c, const char *q, const char *level, int managed,
                        const char *after, int limit, json_t **items, char **next, int64_t *version,
                        struct problem *reterr);
/* Makes the unmanaged rows exactly the items: `items` (JSON text of an array of normalized
 * policies) or, when NULL, request.body.policy of job `job_id`'s row (read by the database: the
 * body is not copied through the daemon again). A destination held by a managed row: managed_row.
 * An item with managed_by: forbidden below admin `scope`, invalid_value at admin (bulk writes
 * unmanaged rows only). Counts go to *counts {added, changed, removed, unchanged}. */
int store_policies_bulk(struct db_conn *c, const char *items, int64_t job_id, enum scope scope,
                        json_t **counts, struct problem *reterr);
