/* action_policies.c - the TLS policies' rows of the action table: one policy written (PUT,
 * PATCH, POST) or deleted, and the bulk replace; the manager and scope rules of managed rows, and
 * the warnings of a written row (DANE without DNSSEC, verify without trust anchors, its own
 * attributes, parents). Worker thread. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apply/action.h"
#include "apply/fsutil.h"
#include "apply/layout.h"
#include "apply/job.h"
#include "apply/policy_host.h"
#include "apply/postfix.h"
#include "apply/takeover.h"
#include "store/nodes.h"
#include "conf.h"
#include "log.h"
#include "metrics.h"
#include "core/policy.h"
#include "store/store.h"
#include "util.h"

static json_t *policy_json(const struct action_env *env, const char *destination, int64_t *version)
{
        json_t *j = NULL;
        struct problem ignore = { 0 };
        if (store_policy_get(env->db, destination, NULL, &j, version, &ignore) < 0)
                j = NULL;
        problem_done(&ignore);
        return j;
}

/* A managed row changes only when the request names its manager (?manager=, admin scope). */
static int check_manager(struct job *job, const struct policy *cur)
{
        const char *manager =
            json_string_value(json_object_get(json_object_get(job->request, "body"), "manager"));
        if (manager && action_scope(job) < SCOPE_ADMIN)
                return problem_set(&job->problem, PROBLEM_FORBIDDEN, "manager",
                                   "acting as a manager needs a token with scope 'admin'");
        if (!cur->managed_by[0] || streq_ptr(manager, cur->managed_by))
                return 0;
        return problem_set(&job->problem, PROBLEM_MANAGED_ROW, NULL,
                           "this row is managed by \"%s\"; change it there, or pass "
                           "?manager=%s",
                           cur->managed_by, cur->managed_by);
}

/* Entries Postfix accepts but that will not do what their author expects. */
static json_t *policy_warnings(const struct action_env *env, const struct policy *p)
{
        json_t *warnings = json_array();
        static const char *const dns[] = { "smtp_dns_support_level", "smtp_host_lookup", NULL };
        char *v[2] = { 0 };
        bool dane = p->level == TLS_LEVEL_DANE || p->level == TLS_LEVEL_DANE_ONLY;
        /* Postfix looks up TLSA records only with DNSSEC lookups on, and host addresses from DNS
         * (smtp_tls_policy.c dane_init): otherwise dane is may and dane-only defers */
        if (dane && postconf_values(env->cfg, dns, v) >= 0) {
                bool dns_hosts = strstr(v[1], "dns") != NULL;
                if (!streq(v[0], "dnssec") || !dns_hosts)
                        warnings_add(warnings, "dane_without_dnssec",
                                     "%s needs smtp_dns_support_level = dnssec and dns in "
                                     "smtp_host_lookup (they are '%s' and '%s'): until then "
                                     "Postfix looks up no TLSA record and %s",
                                     p->level == TLS_LEVEL_DANE ? "dane" : "dane-only", v[0], v[1],
                                     p->level == TLS_LEVEL_DANE
                                         ? "treats the level as may (unauthenticated, optional TLS)"
                                         : "defers all mail to the destination");
        }
        free(v[0]);
        free(v[1]);
        char why[POSTFIX_TRUST_WHY_MAX];
        /* a policy with its own tafile has its trust anchors (tafile_unusable checks the file) */
        if ((p->level == TLS_LEVEL_VERIFY || p->level == TLS_LEVEL_SECURE) && !p->tafile[0] &&
            postfix_outbound_trust(env->cfg, why, sizeof(why)) == 0)
                warnings_add(warnings, "no_trust_anchors",
                             "%s; until then Postfix defers all mail to %s (certificate not "
                             "trusted)",
                             why, p->destination);
        return warnings;
}

/* Fingerprints the effective smtp_tls_fingerprint_digest cannot produce never match (Postfix
 * then defers all mail to the destination): refused. */
static int check_fingerprint_digest(const struct action_env *env, const struct policy *p,
                                    struct problem *pb)
{
        struct fingerprint_digest d;
        if (p->level != TLS_LEVEL_FINGERPRINT || !action_fingerprint_digest(env, &d))
                return 0;
        for (size_t i = 0; i < p->n_match; i++) {
                char field[32];
                snprintf(field, sizeof(field), "/match/%zu", i);
                int r = policy_check_fingerprint_digest(&d, p->match[i], field, pb);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* What smtptlsd itself can tell of the written row (issue 12): its attributes, the live
 * configuration, and the ".d" without "d" it leaves. */
static int policy_own_warnings(const struct action_env *env, struct job *job,
                               const struct policy *p)
{
        if (!job->warnings && !(job->warnings = json_array()))
                return problem_set(&job->problem, PROBLEM_INTERNAL_ERROR, NULL, "out of memory");
        if (p->enabled)
                policy_warnings_add(p, job->warnings);
        policy_host_warnings(env->cfg, p, job->warnings);
        return policy_parent_warnings(env->db, p->destination, job->warnings, &job->problem);
}

/* The read-only members of a policy write against the row as a GET shows it now, with the
 * generation a write's reply carries. */
static int policy_read_only(const struct action_env *env, struct job *job, json_t *body,
                            json_t *row)
{
        json_t *now = json_deep_copy(row);
        int r = action_with_generation(env, job, now);
        if (r >= 0)
                r = policy_check_read_only(body, now, "", &job->problem);
        json_decref(now);
        return r;
}

int action_policy_write(const struct action_env *env, struct job *job, unsigned flags,
                        json_t **before, json_t **after)
{
        json_t *body = json_object_get(json_object_get(job->request, "body"), "policy");
        bool patch = flags & ACTION_PATCH;
        bool post = flags & ACTION_CREATE;
        struct policy cur = { 0 };
        bool created = false;
        int64_t version = 0;
        int r = action_check_if_match(env, job, post ? RESOURCE_POLICIES : RESOURCE_POLICY);
        if (r < 0)
                return r;
        r = store_policy_get(env->db, job->target, &cur, before, NULL, &job->problem);
        bool exists = r >= 0;
        if (r < 0 && r != -ENOENT)
                return r;
        if (post && exists) {
                policy_done(&cur);
                return problem_set(&job->problem, PROBLEM_DUPLICATE_DESTINATION, "/destination",
                                   "a TLS policy for '%s' exists; PUT replaces it", job->target);
        }
        if (patch && !exists)
                return problem_set(&job->problem, PROBLEM_NOT_FOUND, NULL, "no TLS policy for '%s'",
                                   job->target);
        if (exists && (r = check_manager(job, &cur)) < 0) {
                policy_done(&cur);
                return r;
        }
        if (exists && (r = policy_read_only(env, job, body, *before)) < 0) {
                policy_done(&cur);
                return r;
        }
        char was[sizeof(cur.managed_by)];
        memcpy(was, cur.managed_by, sizeof(was));
        /* PUT and POST carry the whole normalized policy; PATCH merges onto the row now */
        struct policy next = { 0 };
        if (patch) {
                next = cur;
                cur = (struct policy){ 0 };
                r = policy_apply_json(&next, body, true, job->target, "", &job->problem);
        } else {
                r = policy_apply_json(&next, body, false, job->target, "", &job->problem);
                /* a managed row keeps its manager unless the manager itself says otherwise */
                if (r >= 0 && exists && !json_object_get(body, "managed_by"))
                        snprintf(next.managed_by, sizeof(next.managed_by), "%s", cur.managed_by);
        }
        if (r >= 0)
                r = policy_check_manager_change(was, next.managed_by, action_scope(job), "",
                                                &job->problem);
        if (r >= 0)
                r = check_fingerprint_digest(env, &next, &job->problem);
        if (r >= 0)
                r = store_policy_put(env->db, &next, &created, &job->problem);
        if (r >= 0)
                job->warnings = policy_warnings(env, &next);
        if (r >= 0)
                r = policy_own_warnings(env, job, &next);
        policy_done(&cur);
        policy_done(&next);
        if (r < 0)
                return r;
        *after = policy_json(env, job->target, &version);
        action_wrote(job, *after, version, created);
        return 0;
}

int action_policy_delete(const struct action_env *env, struct job *job, unsigned flags,
                         json_t **before, json_t **after)
{
        struct policy cur = { 0 };
        int r = action_check_if_match(env, job, RESOURCE_POLICY);
        if (r >= 0)
                r = store_policy_get(env->db, job->target, &cur, before, NULL, &job->problem);
        if (r == -ENOENT)
                return problem_set(&job->problem, PROBLEM_NOT_FOUND, NULL, "no TLS policy for '%s'",
                                   job->target);
        if (r >= 0)
                r = check_manager(job, &cur);
        policy_done(&cur);
        if (r >= 0)
                r = store_policy_delete(env->db, job->target, &job->problem);
        /* the job record and a dry run show it (a 204 has no body) */
        if (r >= 0 && (job->warnings = json_array()))
                r = policy_parent_warnings(env->db, job->target, job->warnings, &job->problem);
        if (r < 0)
                return r;
        job->outcome = JOB_DELETED;
        job->result = json_null();
        return 0;
}

/* The delta the job carries, when the state is still the one it is from (core/item_memo.h):
 * NULL otherwise (the items are applied whole). */
static int bulk_delta(const struct action_env *env, struct job *job, size_t digest_len,
                      struct store_bulk_delta *ret, const struct store_bulk_delta **use)
{
        const struct item_memo_delta *d = job->delta;
        struct state_versions v;
        *use = NULL;
        if (!d || !d->base.policies)
                return 0;
        int r = store_state_versions(env->db, &v, &job->problem);
        if (r < 0)
                return r;
        if (v.settings != d->base.settings || v.policies != d->base.policies ||
            digest_len != d->base.digest_len) {
                log_debug("bulk replace: the state changed since the last bulk here; the %zu "
                          "items are applied whole",
                          d->total);
                return 0;
        }
        *ret = (struct store_bulk_delta){ .upserts = d->upserts,
                                          .deletes = d->deletes,
                                          .total = (long long)d->total };
        *use = ret;
        log_debug("bulk replace: %zu items, applied as a delta of %zu rows written and %zu "
                  "removed",
                  d->total, d->n_upserts, d->n_deletes);
        return 0;
}

int action_policies_bulk(const struct action_env *env, struct job *job, unsigned flags,
                         json_t **before, json_t **after)
{
        json_t *counts = NULL;
        int64_t version = 0;
        struct fingerprint_digest digest;
        struct store_bulk_delta sd;
        const struct store_bulk_delta *delta = NULL;
        const struct fingerprint_digest *fd = action_fingerprint_digest(env, &digest);
        size_t digest_len = fd ? fd->len : 0;
        int r = action_check_if_match(env, job, RESOURCE_POLICIES);
        if (r >= 0)
                r = bulk_delta(env, job, digest_len, &sd, &delta);
        /* The items are in the job row (api_submit_items); a dry run has no row and holds them. */
        if (r >= 0)
                r = store_policies_bulk(env->db, job->items, job->id, action_scope(job), false, fd,
                                        "/items", delta, &counts, &job->problem);
        if (r == -ENOTSUP && delta) { /* a problem the delta cannot place */
                delta = NULL;
                r = store_policies_bulk(env->db, job->items, job->id, action_scope(job), false, fd,
                                        "/items", NULL, &counts, &job->problem);
        }
        metrics_count(delta ? METRIC_BULK_DELTAS : METRIC_BULK_WHOLE, 1);
        if (r >= 0 && (job->warnings = json_array()))
                r = policy_parent_warnings(env->db, NULL, job->warnings, &job->problem);
        /* the policies' version (the reply's ETag) and, with the memo, the state the job's
         * items are the unmanaged rows of (its tag) */
        struct state_versions v;
        if (r >= 0)
                r = store_state_versions(env->db, &v, &job->problem);
        if (r >= 0) {
                version = v.policies;
                if (job->delta)
                        job->delta_tag =
                            (struct item_memo_tag){ v.settings, v.policies, digest_len };
        }
        if (r < 0) {
                json_decref(counts);
                return r;
        }
        /* The audit trail keeps the counts, not 100,000 rows. */
        *after = counts;
        job->result = json_incref(counts);
        job_set_version(job, version);
        return 0;
}

/* Why the settings an import read may not be written now (NULL: they may): what changed since
 * the import read main.cf, or what makes this node's main.cf not the fleet's to speak for. */
static const char *take_refusal(const struct action_env *env, json_t *take,
                                const struct settings *s, struct problem *reterr, int *r)
{
        char path[PATH_MAX], digest[65] = "", cert[65], add[65];
        _cleanup_free_ char *text = NULL;
        size_t len = 0;
        json_t *nodes = NULL, *node;
        size_t i;
        *r = 0;
        if (s->managed)
                return "the settings were written since the import read main.cf";
        if (layout_main_cf(env->cfg, path, sizeof(path)) >= 0 &&
            fs_read_file(path, LAYOUT_MAIN_CF_MAX, &text, &len) >= 0)
                sha256_hex(text, len, digest);
        if (!streq(digest, json_string_value(json_object_get(take, "main_cf_sha256"))))
                return "main.cf changed since the import read it: run the import again";
        /* this node's own binding would replace the certificates proved */
        if ((*r = store_node_settings_load(env->db, env->cfg->node_name, cert, add, NULL, reterr)) <
            0)
                return NULL;
        if (*r > 0) {
                *r = 0;
                return "this node has a certificate binding of its own (PUT /api/v1/nodes/{name}/"
                       "settings), which would be served instead of main.cf's";
        }
        uint64_t stale = 3 * (uint64_t)env->cfg->node_heartbeat_interval;
        if ((*r = store_nodes_list(env->db, stale, &nodes, reterr)) < 0)
                return NULL;
        const char *why = NULL;
        json_array_foreach (nodes, i, node)
                if (!streq(json_string_value(json_object_get(node, "name")), env->cfg->node_name) &&
                    !streq(json_string_value(json_object_get(node, "state")), "unreachable"))
                        why = "other nodes of the fleet are running: the settings are every "
                              "node's while this main.cf is one node's";
        json_decref(nodes);
        return why;
}

/* take_settings' work inside its savepoint: 0 written or not (report says), < 0 a failure. */
static int take_settings_try(const struct action_env *env, json_t *take, json_t *report,
                             struct problem *reterr)
{
        struct settings s, n;
        struct cert_files files[SETTINGS_CERTS_MAX];
        size_t nf = 0, i;
        json_t *pair, *differs = NULL;
        int r = store_settings_load(env->db, &s, NULL, true, reterr);
        if (r < 0)
                return r;
        const char *why = take_refusal(env, take, &s, reterr, &r);
        if (r < 0)
                return r;
        if (why) {
                json_object_set_new(report, "reason", json_string(why));
                return 0;
        }
        json_array_foreach (json_object_get(take, "files"), i, pair)
                if (nf < SETTINGS_CERTS_MAX)
                        files[nf++] = (struct cert_files){
                                json_string_value(json_array_get(pair, 0)),
                                json_string_value(json_array_get(pair, 1)),
                        };
        n = s;
        r = settings_apply_json(&n, json_object_get(take, "settings"), false, reterr);
        if (r >= 0)
                r = takeover_check(env->cfg, &n, files, nf, &differs, reterr);
        if (r < 0)
                return r;
        if (r > 0) {
                json_object_set_new(report, "action", json_string("differs"));
                json_object_set_new(report, "differs", differs);
                json_object_set_new(report, "reason",
                                    json_string("main.cf and master.cf rendered with these "
                                                "settings would not read as they do now (see "
                                                "differs): not taken over; the policies are "
                                                "imported all the same"));
                return 0;
        }
        r = action_settings_store(env, &s, json_object_get(take, "settings"), false, reterr);
        if (r < 0)
                return r;
        json_object_set_new(report, "written", json_true());
        json_object_set_new(report, "reason",
                            json_string("written: Postfix reads every parameter as before "
                                        "(postconf -x and -P -x of main.cf rendered with them, "
                                        "certificate files aside: the same certificates are "
                                        "served, from smtptlsd's copies - renew imported ones "
                                        "through the API from now on)"));
        return 0;
}

/* The settings an import takes over (take: {settings: a PUT body, files: [[key, chain], ...],
 * main_cf_sha256}), written when nothing changed since the import read main.cf, this node's
 * main.cf speaks for the fleet, and main.cf rendered with them reads as the live one
 * (apply/takeover.h). Inside a savepoint: a refusal of the write (legacy_certificate, postconf
 * failing) is reported - written false, reason - and the policies are imported all the same;
 * only the database's own failure fails the import. */
static int take_settings(const struct action_env *env, struct job *job, json_t *take,
                         json_t *report)
{
        struct problem p = { 0 };
        int r = db_exec(env->db, NULL, &job->problem, "SAVEPOINT take_settings", 0, NULL);
        if (r < 0)
                return r;
        r = take_settings_try(env, take, report, &p);
        if (r < 0 && p.code == PROBLEM_SERVICE_UNAVAILABLE) {
                problem_set(&job->problem, p.code, p.field, "%s", p.detail);
                problem_done(&p);
                return r;
        }
        if (r < 0) {
                json_object_set_new(report, "written", json_false());
                json_object_set_new(
                    report, "reason",
                    json_pack("s++", "not taken over: ", p.detail[0] ? p.detail : "an error", ""));
                r = db_exec(env->db, NULL, &job->problem, "ROLLBACK TO SAVEPOINT take_settings", 0,
                            NULL);
        }
        problem_done(&p);
        if (r >= 0)
                r = db_exec(env->db, NULL, &job->problem, "RELEASE SAVEPOINT take_settings", 0,
                            NULL);
        return r;
}

int action_policies_import(const struct action_env *env, struct job *job, unsigned flags,
                           json_t **before, json_t **after)
{
        /* the request: the report the API made, whose maps to adopt, and the items (in the row,
         * or in job->items for a dry run) */
        json_t *body = json_object_get(job->request, "body");
        json_t *report = json_object_get(body, "report"), *adopt = json_object_get(body, "adopt");
        json_t *certs = json_object_get(body, "certificates"), *keys = NULL, *c;
        int64_t added = 0, version = 0, adopted = 0, stored = 0;
        size_t i;
        json_t *m;
        int r = action_check_if_match(env, job, RESOURCE_POLICIES);
        /* the certificates main.cf names, stored unbound (their keys are the job's secret) */
        if (r >= 0 && json_array_size(certs) > 0 && action_scope(job) < SCOPE_ADMIN)
                r = problem_set(&job->problem, PROBLEM_FORBIDDEN, "/certificates",
                                "an import with private keys needs a token with scope 'admin'");
        if (r >= 0 && json_array_size(certs) > 0) {
                keys = job->secret ? json_loads(job->secret, 0, NULL) : NULL;
                if (!keys)
                        r = problem_set(&job->problem, PROBLEM_INTERNAL_ERROR, NULL,
                                        "the private keys of the import are unreadable");
        }
        json_array_foreach (certs, i, c) {
                const char *name = json_string_value(json_object_get(c, "name"));
                bool created = false;
                if (r >= 0)
                        r = action_cert_store(env, name,
                                              json_string_value(json_object_get(c, "certificate")),
                                              json_string_value(json_object_get(c, "chain")),
                                              json_string_value(json_object_get(keys, name)),
                                              &created, &job->problem);
                stored += r >= 0 && created;
        }
        json_decref(keys);

        if (r >= 0 && json_integer_value(json_object_get(report, "imported")) > 0)
                r = store_policies_import(env->db, job->items, job->id, &added, &job->problem);
        /* each map as the import read it: else an entry added meanwhile would be dropped with
         * the map from main.cf */
        json_array_foreach (adopt, i, m) {
                const char *spec = json_string_value(json_object_get(m, "map")),
                           *read = json_string_value(json_object_get(m, "digest"));
                char now[POSTMAP_DIGEST_MAX] = "";
                if (r >= 0 && (!spec || !read || postmap_content_digest(env->cfg, spec, now) < 0 ||
                               !streq(now, read)))
                        r = problem_set(&job->problem, PROBLEM_PRECONDITION_FAILED, NULL,
                                        "%s changed since the import read it: run the import "
                                        "again",
                                        spec);
                /* the entries left to smtptlsd's own rows: still there, enabled */
                json_t *ours = json_object_get(m, "ours"), *have = NULL, *d;
                size_t k, n = 0;
                if (r >= 0 && json_array_size(ours) > 0 &&
                    (r = store_policies_enabled_of(env->db, ours, &have, &job->problem)) >= 0) {
                        json_array_foreach (ours, k, d)
                                n += json_is_true(json_object_get(have, json_string_value(d)));
                        if (n != json_array_size(ours))
                                r = problem_set(&job->problem, PROBLEM_PRECONDITION_FAILED, NULL,
                                                "a policy of smtptlsd that %s left to it was "
                                                "deleted or disabled since the import read it: "
                                                "run the import again",
                                                spec);
                }
                json_decref(have);
        }
        json_array_foreach (adopt, i, m) {
                bool fresh = false;
                if (r >= 0)
                        r = store_adopted_maps_add(
                            env->db, env->cfg->node_name,
                            json_string_value(json_object_get(m, "map")),
                            json_string_value(json_object_get(m, "digest")),
                            json_integer_value(json_object_get(m, "entries")), job->actor, &fresh,
                            &job->problem);
                adopted += fresh;
        }
        if (r >= 0)
                r = store_collection_version(env->db, STORE_POLICIES, &version, &job->problem);
        if (r < 0)
                return r;
        json_t *result = json_deep_copy(report);
        if (!result)
                return problem_set_errno(&job->problem, -ENOMEM, PROBLEM_INTERNAL_ERROR, NULL,
                                         "out of memory");
        /* ?settings=true: the settings that render main.cf, written once proved */
        json_t *take = json_object_get(body, "take_settings");
        if (take && (r = take_settings(env, job, take, json_object_get(result, "settings"))) < 0) {
                json_decref(result);
                return r;
        }
        json_object_set_new(result, "added", json_integer(added));
        json_object_set_new(result, "adopted", json_integer(adopted));
        json_object_set_new(result, "certificates_added", json_integer(stored));
        *after = json_pack("{s:I, s:I, s:I}", "added", (json_int_t)added, "adopted",
                           (json_int_t)adopted, "certificates_added", (json_int_t)stored);
        job->result = result;
        job_set_version(job, version);
        return 0;
}
