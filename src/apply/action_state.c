/* action_state.c - the whole desired state's row of the action table (PUT /api/v1/state): one
 * job, one transaction, one generation, through the code of each resource's own writes
 * (certificates, settings, the policies' bulk replace, then the imported certificates no longer
 * listed). Worker thread. */
#include <stdio.h>
#include <string.h>

#include "apply/action.h"
#include "apply/job.h"
#include "apply/policy_host.h"
#include "core/policy.h"
#include "store/store.h"
#include "util.h"

/* The certificates of the document, in order: an ACME or system one must exist as such; an
 * imported one is unchanged when stored with the same certificate and chain (it keeps its key: a
 * GET without keys round-trips), imported when the document carries its key, refused otherwise.
 * Fills plan {added, changed, unchanged} with names. */
static int state_certs(const struct action_env *env, struct job *job, json_t *certs, json_t *keys,
                       json_t *plan, json_t *warnings)
{
        json_t *item;
        size_t i;
        json_array_foreach (certs, i, item) {
                const char *name = json_string_value(json_object_get(item, "name"));
                const char *type = json_string_value(json_object_get(item, "type"));
                const char *fpr = json_string_value(json_object_get(item, "sha256_fingerprint"));
                const char *cert = json_string_value(json_object_get(item, "certificate"));
                const char *chain = json_string_value(json_object_get(item, "chain"));
                const char *key = json_string_value(json_object_get(keys, name));
                char prefix[48], field[64];
                struct cert_row row = { 0 };
                snprintf(prefix, sizeof(prefix), "/certificates/%zu", i);
                int r = store_cert_by_name(env->db, name, &row, &job->problem);
                if (r < 0 && r != -ENOENT)
                        return r;
                bool exists = r >= 0, same_type = exists && streq(row.type, type);
                bool same =
                    same_type && fpr && streq(row.sha256_fingerprint, fpr) &&
                    (!cert || streq(chain ? chain : "", row.chain_pem ? row.chain_pem : ""));
                cert_row_done(&row);
                const char *bucket = "unchanged";
                if (!streq(type, "imported")) {
                        if (!same_type) {
                                snprintf(field, sizeof(field), "%s/name", prefix);
                                return problem_set(
                                    &job->problem, PROBLEM_CERTIFICATE_NOT_FOUND, field,
                                    "the document lists the %s certificate '%s', "
                                    "which is not here: its files come from %s",
                                    type, name,
                                    streq(type, "acme") ? "the ACME client" : "the system");
                        }
                        if (!same && fpr)
                                warnings_add(warnings, "certificate_differs",
                                             "the %s certificate '%s' here is not the one the "
                                             "document lists (%s)",
                                             type, name, fpr);
                } else if (!same) {
                        if (!key) {
                                snprintf(field, sizeof(field), "%s/private_key", prefix);
                                return problem_set(&job->problem, PROBLEM_MISSING_FIELD, field,
                                                   "certificate '%s' is not stored here with this "
                                                   "certificate and chain: the document must "
                                                   "carry its private key (GET "
                                                   "?include_keys=true)",
                                                   name);
                        }
                        bool created = false;
                        r = action_cert_store(env, name, cert, chain, key, &created, &job->problem);
                        if (r < 0) {
                                problem_prefix_field(&job->problem, prefix);
                                return r;
                        }
                        bucket = created ? "added" : "changed";
                }
                json_array_append_new(json_object_get(plan, bucket), json_string(name));
        }
        return 0;
}

/* The settings of the document: written when they differ (or when the document's are managed
 * and main.cf is not taken over yet); a document whose settings are not managed leaves an
 * unmanaged site alone. */
static int state_settings(const struct action_env *env, struct job *job, json_t *body, json_t *plan)
{
        json_t *doc = json_object_get(body, "settings");
        bool managed = json_is_true(json_object_get(body, "managed"));
        struct settings s, n;
        int r = store_settings_load(env->db, &s, NULL, true, &job->problem);
        if (r < 0)
                return r;
        n = s;
        r = settings_apply_json(&n, doc, false, &job->problem);
        if (r < 0) {
                problem_prefix_field(&job->problem, "/settings");
                return r;
        }
        json_t *a = settings_desired_json(&s), *b = settings_desired_json(&n);
        json_object_del(a, "managed");
        json_object_del(b, "managed");
        bool differ = !json_equal(a, b);
        json_decref(a);
        json_decref(b);
        bool write = s.managed ? differ : managed;
        json_object_set_new(plan, "changed", json_boolean(write));
        if (!write)
                return 0;
        r = action_settings_store(env, &s, doc, false, &job->problem);
        problem_prefix_field(&job->problem, "/settings");
        return r;
}

/* Imported certificates the document does not list are removed (after the settings, which may
 * have bound another); ACME and system ones follow their files and stay. */
static int state_prune_certs(const struct action_env *env, struct job *job, json_t *certs,
                             json_t *plan, json_t *warnings)
{
        json_t *stored = NULL, *it, *doc;
        size_t i, k;
        int r = store_certs_list(env->db, NULL, NULL, &stored, NULL, &job->problem);
        if (r < 0)
                return r;
        json_array_foreach (stored, i, it) {
                const char *name = json_string_value(json_object_get(it, "name"));
                const char *type = json_string_value(json_object_get(it, "type"));
                bool listed = false;
                json_array_foreach (certs, k, doc)
                        listed |= streq(name, json_string_value(json_object_get(doc, "name")));
                if (listed)
                        continue;
                if (!streq(type, "imported")) {
                        warnings_add(warnings, "certificate_kept",
                                     "the %s certificate '%s' is not in the document: it stays "
                                     "(its files are not the API's)",
                                     type, name);
                        continue;
                }
                r = action_cert_remove(env, name, it, &job->problem);
                if (r < 0)
                        break;
                json_array_append_new(json_object_get(plan, "removed"), json_string(name));
        }
        json_decref(stored);
        return r;
}

/* PUT /api/v1/state: the whole desired state in this one job (one transaction, one generation),
 * through the code of each resource's own writes: certificates imported first (the settings may
 * bind one), then the settings, the policies (the bulk replace over every row), and last the
 * imported certificates no longer listed. A document equal to the state changes nothing and
 * makes no generation (no version moves). */
int action_state_put(const struct action_env *env, struct job *job, unsigned flags, json_t **before,
                     json_t **after)
{
        json_t *body = json_object_get(job->request, "body");
        json_t *certs = json_object_get(body, "certificates"), *keys = NULL, *counts = NULL;
        struct fingerprint_digest digest;
        int r = action_precondition(job, RESOURCE_STATE, true,
                                    env->batch_generation + (env->batch_dirty ? 1 : 0));
        if (r < 0)
                return r;
        if (job->secret) {
                keys = json_loads(job->secret, 0, NULL);
                if (!keys)
                        return problem_set(&job->problem, PROBLEM_INTERNAL_ERROR, NULL,
                                           "the private keys of the document are unreadable");
                if (action_scope(job) < SCOPE_ADMIN) {
                        json_decref(keys);
                        return problem_set(&job->problem, PROBLEM_FORBIDDEN, "/certificates",
                                           "a document with private keys needs a token with "
                                           "scope 'admin'");
                }
        }
        json_t *plan = json_pack("{s:{}, s:{s:[], s:[], s:[], s:[]}}", "settings", "certificates",
                                 "added", "changed", "removed", "unchanged");
        json_t *cplan = json_object_get(plan, "certificates"), *warnings = json_array();
        r = state_certs(env, job, certs, keys, cplan, warnings);
        json_decref(keys);
        if (r >= 0)
                r = state_settings(env, job, body, json_object_get(plan, "settings"));
        if (r >= 0)
                r = store_policies_bulk(env->db, job->items, job->id, action_scope(job), true,
                                        action_fingerprint_digest(env, &digest), "/tls_policies",
                                        NULL, &counts, &job->problem);
        if (r >= 0) {
                json_object_set_new(plan, "tls_policies", counts);
                r = state_prune_certs(env, job, certs, cplan, warnings);
        }
        if (r >= 0)
                r = policy_parent_warnings(env->db, NULL, warnings, &job->problem);
        if (r < 0) {
                json_decref(plan);
                json_decref(warnings);
                return r;
        }
        job->warnings = warnings;
        *after = plan;
        job->result = json_incref(plan);
        return 0;
}
