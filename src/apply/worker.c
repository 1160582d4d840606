/* worker.c - the reconcile worker thread. It takes every queued job at once; each job runs in its
 * own SAVEPOINT (a bad job fails alone), then one render, one validation and one swap serve the
 * whole batch, and the transaction commits only after Postfix has the new files. Only this
 * thread writes configuration rows and Postfix files. */
#include "smtptlsd/worker.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "smtptlsd/app.h"
#include "smtptlsd/cert.h"
#include "smtptlsd/certsync.h"
#include "smtptlsd/layout.h"
#include "smtptlsd/conf.h"
#include "smtptlsd/etag.h"
#include "smtptlsd/fault.h"
#include "smtptlsd/fsutil.h"
#include "smtptlsd/job.h"
#include "smtptlsd/log.h"
#include "smtptlsd/maincf.h"
#include "smtptlsd/metrics.h"
#include "smtptlsd/notify.h"
#include "smtptlsd/pending.h"
#include "smtptlsd/policy.h"
#include "smtptlsd/policy_host.h"
#include "smtptlsd/postfix.h"
#include "smtptlsd/queue.h"
#include "smtptlsd/reconcile.h"
#include "smtptlsd/resource.h"
#include "smtptlsd/sealed.h"
#include "smtptlsd/spawn.h"
#include "smtptlsd/store.h"
#include "smtptlsd/util.h"
#include "smtptlsd/verifier.h"

#define IDLE_TICK_USEC (500 * 1000)
#define MAX_BATCH      1024
#define MAX_ATTEMPTS   3

struct worker {
        struct app *app;
        struct queue queue;
        pthread_t thread;
        atomic_uint_fast64_t heartbeat;
        struct db_conn db; /* the worker's own connection (no pool) */
        struct verifier *verifier;
        pthread_mutex_t lock; /* guards the status fields below */
        char state[16];
        int64_t applied_generation;
        json_t *last_job;
        json_t *drift;
        char last_error[512];
        uint64_t last_reload_usec;
        unsigned reloads;
        bool stopped;
        /* jobs handed to the worker and not yet completed (queued, or in the running batch):
         * while there are any the status says applying and desired_generation runs ahead */
        atomic_size_t backlog;
        /* the bound certificates' fingerprints (joined by ',') that Postfix was last reloaded
         * with ("" unknown): an ACME renewal changes one without changing main.cf */
        char applied_fingerprint[SETTINGS_CERTS_MAX * 96];
        /* the batch running: its generation before the bump, and whether a job before the one
         * running changed something (a state If-Match must then fail: the state moved on) */
        int64_t batch_generation;
        bool batch_dirty;
};

static struct worker *current; /* for spawn's progress hook */

static void touch(void)
{
        if (current)
                atomic_store(&current->heartbeat, now_monotonic_usec());
}

static void set_state(struct worker *w, const char *state, const char *error)
{
        pthread_mutex_lock(&w->lock);
        snprintf(w->state, sizeof(w->state), "%s", state);
        if (error)
                snprintf(w->last_error, sizeof(w->last_error), "%s", error);
        pthread_mutex_unlock(&w->lock);
}

/* The desired_generation gauge: the applied generation, plus one while jobs wait or run (the
 * generation their batch will create), so that "applied < desired" also sees a backlog. */
static void publish_desired(struct worker *w)
{
        pthread_mutex_lock(&w->lock);
        int64_t gen = w->applied_generation;
        pthread_mutex_unlock(&w->lock);
        metrics_gauge_set(METRIC_DESIRED_GENERATION, gen + (atomic_load(&w->backlog) > 0));
}

static int ensure_db(struct worker *w, struct problem *reterr)
{
        char err[512];
        if (w->db.pg && PQstatus(w->db.pg) == CONNECTION_OK)
                return 0;
        if (w->db.pg)
                PQfinish(w->db.pg);
        w->db.pg = NULL;
        int r = db_connect(w->app->cfg, &w->db.pg, err, sizeof(err));
        if (r < 0) {
                problem_set(reterr, PROBLEM_SERVICE_UNAVAILABLE, NULL,
                            "the database is unavailable: %s", err);
                return r;
        }
        return 0;
}

static int sql(struct worker *w, const char *stmt, struct problem *reterr)
{
        return db_exec(&w->db, NULL, reterr, stmt, 0, NULL);
}

/* ---- loading the desired state ---------------------------------------------------------- */

static int load_desired(struct worker *w, struct desired *d, struct problem *reterr)
{
        return desired_load(&w->db, d, reterr);
}

/* ---- one job ------------------------------------------------------------------------------- */

/* Checks the job's If-Match against `what` (for the message) whose current tag is etag ("" when
 * it does not exist): core/etag.c. Runs inside the transaction that applies the job, so no other
 * write comes between check and change. */
static int check_precondition(json_t *request, const char *what, const char *etag,
                              struct problem *reterr)
{
        return if_match_evaluate(json_string_value(json_object_get(request, "if_match")), what,
                                 etag, reterr);
}

static int check_if_match(json_t *request, const char *etag, struct problem *reterr)
{
        return check_precondition(request, "the settings", etag, reterr);
}

/* The key type of the certificate in `path` (a legacy parameter's value), or `fallback` when it
 * cannot be read here (a $variable in the value, a file gone). */
static void legacy_key_type(const char *path, const char *fallback, char type[16])
{
        _cleanup_free_ char *pem = NULL;
        size_t len = 0;
        struct cert_info info = { 0 };
        struct problem ignore = { 0 };
        snprintf(type, 16, "%s", fallback);
        if (!strchr(path, '$') && fs_read_file(path, CERT_BUNDLE_MAX, &pem, &len) >= 0 &&
            cert_info_from_pem(pem, len, &info, &ignore) >= 0 && !streq(info.key_type, "unknown"))
                snprintf(type, 16, "%s", info.key_type);
        cert_info_done(&info);
        problem_done(&ignore);
}

/* Postfix ignores smtpd_tls_eccert_file/eckey_file and dcert_file/dkey_file once
 * smtpd_tls_chain_files is set, and the rendering removes them then: a write that binds a
 * certificate while the live main.cf serves one from them must bind one of the same key type
 * (bound_types), or the ECDSA (DSA) certificate of the installation would silently be gone.
 * The RSA pair (cert_file/key_file) is what `certificate` replaces, as it always did. */
static int check_legacy_pairs(struct worker *w, char bound_types[][16], size_t n_bound,
                              struct problem *reterr)
{
        const struct config *cfg = w->app->cfg;
        char path[PATH_MAX];
        _cleanup_free_ char *text = NULL;
        size_t len = 0;
        if (n_bound == 0 || layout_main_cf(cfg, path, sizeof(path)) < 0 ||
            fs_read_file(path, 4u << 20, &text, &len) < 0)
                return 0;
        for (const struct settings_legacy_pair *l = settings_legacy_pairs + 1; l->cert_param; l++) {
                _cleanup_free_ char *live = NULL, *value = NULL;
                /* the text first (no command for a main.cf without it), then Postfix's reading */
                if (maincf_get(text, len, l->cert_param, &live) < 0 || isempty(live) ||
                    postconf_value(cfg, l->cert_param, &value) < 0 || isempty(value))
                        continue;
                char type[16];
                legacy_key_type(value, l->key_type, type);
                bool covered = false;
                for (size_t i = 0; i < n_bound; i++)
                        covered = covered || streq(bound_types[i], type);
                if (covered)
                        continue;
                return problem_set(
                    reterr, PROBLEM_LEGACY_CERTIFICATE,
                    n_bound < SETTINGS_CERTS_MAX ? "/additional_certificate" : "/certificate",
                    "main.cf serves a %s certificate from %s = %s (key: %s); Postfix ignores "
                    "that parameter once smtpd_tls_chain_files is set, so this write would drop "
                    "it. Import it (PUT /api/v1/certificates/{name} with the PEM of the "
                    "certificate and its key) and bind it as additional_certificate, or remove "
                    "%s and %s from main.cf to drop it",
                    type, l->cert_param, value, l->key_param, l->cert_param, l->key_param);
        }
        return 0;
}

/* A settings write onto the row loaded (for update) into *s: body applied (PUT or PATCH), the
 * bound certificates checked (or, with none, that no master.cf service needs one), saved. */
static int settings_store(struct worker *w, struct settings *s, json_t *body, bool patch,
                          struct problem *reterr)
{
        char ca_was[sizeof(s->outbound_ca)];
        memcpy(ca_was, s->outbound_ca, sizeof(ca_was));
        int r = settings_apply_json(s, body, patch, reterr);
        if (r < 0)
                return r;
        if (!s->certificate[0]) {
                /* a master.cf service that needs main.cf's certificate (submission at encrypt) */
                _cleanup_free_ char *services = NULL;
                if (postconf_service_params(w->app->cfg, &services) < 0)
                        log_info("postconf -P failed: master.cf services not checked");
                r = settings_check_services(s, services, reterr);
                if (r < 0)
                        return r;
        }
        /* a file named now must load as Postfix will load it ("system" may be missing: then no
         * smtp_tls_CAfile is rendered, and /status warns) */
        if (!streq(s->outbound_ca, OUTBOUND_CA_SYSTEM) && !streq(s->outbound_ca, ca_was)) {
                r = reconcile_check_ca_file(s->outbound_ca, "/outbound_ca", reterr);
                if (r < 0)
                        return r;
        }
        const char *names[SETTINGS_CERTS_MAX] = { s->certificate, s->additional_certificate };
        const char *fields[SETTINGS_CERTS_MAX] = { "/certificate", "/additional_certificate" };
        char types[SETTINGS_CERTS_MAX][16];
        size_t n = 0;
        for (size_t i = 0; i < SETTINGS_CERTS_MAX && names[i][0]; i++) {
                struct cert_row row;
                r = store_cert_by_name(&w->db, names[i], &row, reterr);
                if (r == -ENOENT)
                        return problem_set(reterr, PROBLEM_CERTIFICATE_NOT_FOUND, fields[i],
                                           "no certificate named '%s'", names[i]);
                if (r < 0)
                        return r;
                bool expired = row.not_after > 0 && row.not_after < time(NULL);
                bool system = row.system;
                snprintf(types[n++], sizeof(types[0]), "%s", row.key_type);
                cert_row_done(&row);
                if (!system && expired)
                        return problem_set(reterr, PROBLEM_CERTIFICATE_UNUSABLE, fields[i],
                                           "certificate '%s' has expired", names[i]);
        }
        r = store_settings_save(&w->db, s, reterr);
        if (r >= 0)
                r = check_legacy_pairs(w, types, n, reterr);
        return r;
}

static int run_settings(struct worker *w, struct job *job, json_t **before, json_t **after)
{
        struct settings s;
        int64_t version = 0;
        char etag[48];
        int r = store_settings_load(&w->db, &s, &version, true, &job->problem);
        if (r < 0)
                return r;
        settings_etag(version, etag, sizeof(etag));
        r = check_if_match(job->request, etag, &job->problem);
        if (r < 0)
                return r;
        *before = settings_to_json(&s);
        r = settings_store(w, &s, json_object_get(job->request, "body"),
                           streq(job->action, "settings.patch"), &job->problem);
        if (r < 0)
                return r;
        r = store_settings_load(&w->db, &s, &version, false, &job->problem);
        if (r < 0)
                return r;
        *after = settings_to_json(&s);
        job->result = json_incref(*after);
        if (!job->dry_run)
                settings_etag(version, job->etag, sizeof(job->etag));
        return 0;
}

/* Sets the current generation into a resource's representation (as a write's reply has it),
 * to compare read-only members with. */
static int with_generation(struct worker *w, struct job *job, json_t *resource)
{
        int64_t gen = 0;
        int r = store_generation(&w->db, &gen, false, &job->problem);
        if (r >= 0)
                json_object_set_new(resource, "generation", json_integer(gen));
        return r;
}

static json_t *cert_json(struct worker *w, const char *name, int64_t *version)
{
        json_t *j = NULL;
        struct problem ignore = { 0 };
        if (store_cert_get(&w->db, name, &j, version, &ignore) < 0)
                j = NULL;
        problem_done(&ignore);
        if (j)
                json_object_set_new(j, "files", layout_cert_files_json(w->app->cfg, j));
        return j;
}

/* If-Match of a certificate job: the tag of the collection (POST, rescan) or of the row. */
static int cert_check_if_match(struct worker *w, struct job *job, bool collection)
{
        char etag[CERT_ETAG_MAX] = "", what[sizeof(job->target) + 32];
        int64_t version = 0;
        json_t *j = NULL;
        int r;
        if (!json_object_get(job->request, "if_match"))
                return 0;
        if (collection) {
                r = store_collection_version(&w->db, STORE_CERTIFICATES, &version, &job->problem);
                if (r < 0)
                        return r;
                certs_etag(version, etag, sizeof(etag));
                snprintf(what, sizeof(what), "the certificate collection");
        } else {
                r = store_cert_get(&w->db, job->target, &j, &version, &job->problem);
                json_decref(j);
                if (r < 0 && r != -ENOENT)
                        return r;
                if (r >= 0)
                        cert_etag(version, etag, sizeof(etag));
                snprintf(what, sizeof(what), "certificate '%s'", job->target);
        }
        return check_precondition(job->request, what, etag, &job->problem);
}

static const char *body_string(const struct job *job, const char *key)
{
        return json_string_value(json_object_get(json_object_get(job->request, "body"), key));
}

/* Validates an imported certificate again, at the time it is applied, and stores it. */
static int cert_store(struct worker *w, const char *name, const char *cert, const char *chain,
                      const char *key, bool *created, struct problem *reterr)
{
        struct cert_import imp = { 0 };
        bool verified = false;
        int r = cert_import(cert ? cert : "", cert ? strlen(cert) : 0, key ? key : "",
                            key ? strlen(key) : 0, chain, chain ? strlen(chain) : 0, time(NULL),
                            &imp, reterr);
        if (r < 0)
                return r;
        if (cert_verify_chain(imp.cert_pem, strlen(imp.cert_pem), imp.chain_pem,
                              strlen(imp.chain_pem), NULL, time(NULL), &verified) < 0)
                verified = false;
        r = store_cert_put_imported(&w->db, name, &imp, w->app->cfg->kek, verified, created,
                                    reterr);
        cert_import_done(&imp);
        return r;
}

/* PUT (create or replace) and POST (create) of an imported certificate. The HTTP thread already
 * validated the upload; it is validated again here, at the time it is applied. */
static int run_cert_put(struct worker *w, struct job *job, bool post, json_t **before,
                        json_t **after)
{
        const char *name = job->target;
        const char *cert = body_string(job, "certificate"), *chain = body_string(job, "chain");
        /* The key came in memory (or from pending_keys after a restart); a job queued by a
         * version that kept it in the request still has it there. */
        const char *key = job->secret ? job->secret : body_string(job, "private_key");
        bool created = false;
        int64_t version = 0;
        int r = cert_check_if_match(w, job, post);
        if (r < 0)
                return r;
        *before = cert_json(w, name, NULL);
        if (post && *before)
                return problem_set(&job->problem, PROBLEM_DUPLICATE_NAME, "/name",
                                   "a certificate named '%s' exists; PUT replaces it", name);
        json_t *read_only = json_object_get(json_object_get(job->request, "body"), "read_only");
        if (*before && read_only) {
                json_t *now = json_deep_copy(*before);
                r = with_generation(w, job, now);
                if (r >= 0)
                        r = cert_check_read_only(read_only, now, &job->problem);
                json_decref(now);
                if (r < 0)
                        return r;
        }
        r = cert_store(w, name, cert, chain, key, &created, &job->problem);
        if (r < 0)
                return r;
        *after = cert_json(w, name, &version);
        job->result = json_incref(*after);
        if (*after && !job->dry_run)
                cert_etag(version, job->etag, sizeof(job->etag));
        if (created) {
                job->http_status = 201;
                job_location(job->action, name, job->location);
        }
        return 0;
}

/* Deletes the certificate `cur` (as cert_json shows it) unless it is the system's, bound, or
 * an ACME one. */
static int cert_remove(struct worker *w, const char *name, json_t *cur, struct problem *reterr)
{
        const char *type = json_string_value(json_object_get(cur, "type"));
        if (json_is_true(json_object_get(cur, "system")))
                return problem_set(reterr, PROBLEM_SYSTEM_CERTIFICATE, NULL,
                                   "'%s' is the system certificate and cannot be deleted", name);
        if (json_is_true(json_object_get(cur, "in_use")))
                return problem_set(reterr, PROBLEM_CERTIFICATE_IN_USE, NULL,
                                   "'%s' is bound to Postfix; bind another certificate first",
                                   name);
        if (streq(type, "acme"))
                return problem_set(reterr, PROBLEM_ACME_CERTIFICATE, NULL,
                                   "'%s' is an ACME certificate: remove it with the ACME client",
                                   name);
        return store_cert_delete(&w->db, name, reterr);
}

static int run_cert_delete(struct worker *w, struct job *job, json_t **before)
{
        const char *name = job->target;
        int r = cert_check_if_match(w, job, false);
        if (r < 0)
                return r;
        *before = cert_json(w, name, NULL);
        if (!*before)
                return problem_set(&job->problem, PROBLEM_NOT_FOUND, NULL,
                                   "no certificate named '%s'", name);
        r = cert_remove(w, name, *before, &job->problem);
        if (r < 0)
                return r;
        job->http_status = 204;
        job->result = json_null();
        return 0;
}

static int run_cert_rescan(struct worker *w, struct job *job, json_t **after)
{
        json_t *warnings = json_array(), *summary = NULL;
        int64_t version = 0;
        int r = cert_check_if_match(w, job, true);
        if (r >= 0)
                r = certsync_run(w->app->cfg, &w->db, warnings, &summary, &job->problem);
        if (r >= 0)
                r = store_collection_version(&w->db, STORE_CERTIFICATES, &version, &job->problem);
        if (r < 0) {
                json_decref(warnings);
                json_decref(summary);
                return r;
        }
        json_object_set_new(summary, "warnings", warnings);
        *after = summary;
        job->result = json_incref(summary);
        if (!job->dry_run)
                certs_etag(version, job->etag, sizeof(job->etag));
        return 0;
}

/* ---- TLS policies ---- */

static json_t *policy_json(struct worker *w, const char *destination, int64_t *version)
{
        json_t *j = NULL;
        struct problem ignore = { 0 };
        if (store_policy_get(&w->db, destination, NULL, &j, version, &ignore) < 0)
                j = NULL;
        problem_done(&ignore);
        return j;
}

/* If-Match of a policy job: the tag of the collection (POST, bulk) or of the row. */
static int policy_check_if_match(struct worker *w, struct job *job, bool collection)
{
        char etag[POLICY_ETAG_MAX] = "", what[sizeof(job->target) + 32];
        int64_t version = 0;
        int r;
        if (!json_object_get(job->request, "if_match"))
                return 0;
        if (collection) {
                r = store_collection_version(&w->db, STORE_POLICIES, &version, &job->problem);
                if (r < 0)
                        return r;
                policies_etag(version, etag, sizeof(etag));
                snprintf(what, sizeof(what), "the TLS policy collection");
        } else {
                r = store_policy_get(&w->db, job->target, NULL, NULL, &version, &job->problem);
                if (r < 0 && r != -ENOENT)
                        return r;
                if (r >= 0)
                        policy_etag(version, etag, sizeof(etag));
                snprintf(what, sizeof(what), "the TLS policy for '%s'", job->target);
        }
        return check_precondition(job->request, what, etag, &job->problem);
}

/* The scope the job's request was made with, as the API recorded it; none recorded (or one not
 * known) counts as the lowest, so a job nobody vouched for cannot do what needs admin. */
static enum scope job_scope(const struct job *job)
{
        enum scope scope = SCOPE_NONE;
        const char *s =
            json_string_value(json_object_get(json_object_get(job->request, "body"), "scope"));
        if (!s || scope_from_string(s, &scope) < 0)
                return SCOPE_NONE;
        return scope;
}

/* A managed row changes only when the request names its manager (?manager=, admin scope). */
static int check_manager(struct job *job, const struct policy *cur)
{
        const char *manager =
            json_string_value(json_object_get(json_object_get(job->request, "body"), "manager"));
        if (manager && job_scope(job) < SCOPE_ADMIN)
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
static json_t *policy_warnings(struct worker *w, const struct policy *p)
{
        json_t *warnings = json_array();
        static const char *const dns[] = { "smtp_dns_support_level", "smtp_host_lookup", NULL };
        char *v[2] = { 0 };
        bool dane = p->level == TLS_LEVEL_DANE || p->level == TLS_LEVEL_DANE_ONLY;
        /* Postfix looks up TLSA records only with DNSSEC lookups on, and host addresses from DNS
         * (smtp_tls_policy.c dane_init): otherwise dane is may and dane-only defers */
        if (dane && postconf_values(w->app->cfg, dns, v) >= 0) {
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
            postfix_outbound_trust(w->app->cfg, why, sizeof(why)) == 0)
                warnings_add(warnings, "no_trust_anchors",
                             "%s; until then Postfix defers all mail to %s (certificate not "
                             "trusted)",
                             why, p->destination);
        return warnings;
}

/* The effective smtp_tls_fingerprint_digest into *d; NULL when postconf cannot tell (then nothing
 * is checked against it). */
static const struct fingerprint_digest *fingerprint_digest(struct worker *w,
                                                           struct fingerprint_digest *d)
{
        return postfix_fingerprint_digest(w->app->cfg, d) >= 0 ? d : NULL;
}

/* Fingerprints the effective smtp_tls_fingerprint_digest cannot produce never match (Postfix
 * then defers all mail to the destination): refused. */
static int check_fingerprint_digest(struct worker *w, const struct policy *p, struct problem *pb)
{
        struct fingerprint_digest d;
        if (p->level != TLS_LEVEL_FINGERPRINT || !fingerprint_digest(w, &d))
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
static int policy_own_warnings(struct worker *w, struct job *job, const struct policy *p)
{
        if (!job->warnings && !(job->warnings = json_array()))
                return problem_set(&job->problem, PROBLEM_INTERNAL_ERROR, NULL, "out of memory");
        if (p->enabled)
                policy_warnings_add(p, job->warnings);
        policy_host_warnings(w->app->cfg, p, job->warnings);
        return policy_parent_warnings(&w->db, p->destination, job->warnings, &job->problem);
}

/* The read-only members of a policy write against the row as a GET shows it now, with the
 * generation a write's reply carries. */
static int policy_read_only(struct worker *w, struct job *job, json_t *body, json_t *row)
{
        json_t *now = json_deep_copy(row);
        int r = with_generation(w, job, now);
        if (r >= 0)
                r = policy_check_read_only(body, now, "", &job->problem);
        json_decref(now);
        return r;
}

static int run_policy_write(struct worker *w, struct job *job, json_t **before, json_t **after)
{
        json_t *body = json_object_get(json_object_get(job->request, "body"), "policy");
        bool patch = streq(job->action, "policies.patch");
        bool post = streq(job->action, "policies.post");
        struct policy cur = { 0 };
        bool created = false;
        int64_t version = 0;
        int r = policy_check_if_match(w, job, post);
        if (r < 0)
                return r;
        r = store_policy_get(&w->db, job->target, &cur, before, NULL, &job->problem);
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
        if (exists && (r = policy_read_only(w, job, body, *before)) < 0) {
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
                r = policy_check_manager_change(was, next.managed_by, job_scope(job), "",
                                                &job->problem);
        if (r >= 0)
                r = check_fingerprint_digest(w, &next, &job->problem);
        if (r >= 0)
                r = store_policy_put(&w->db, &next, &created, &job->problem);
        if (r >= 0)
                job->warnings = policy_warnings(w, &next);
        if (r >= 0)
                r = policy_own_warnings(w, job, &next);
        policy_done(&cur);
        policy_done(&next);
        if (r < 0)
                return r;
        *after = policy_json(w, job->target, &version);
        job->result = json_incref(*after);
        if (*after && !job->dry_run)
                policy_etag(version, job->etag, sizeof(job->etag));
        if (created) {
                job->http_status = 201;
                job_location(job->action, job->target, job->location);
        }
        return 0;
}

static int run_policy_delete(struct worker *w, struct job *job, json_t **before)
{
        struct policy cur = { 0 };
        int r = policy_check_if_match(w, job, false);
        if (r >= 0)
                r = store_policy_get(&w->db, job->target, &cur, before, NULL, &job->problem);
        if (r == -ENOENT)
                return problem_set(&job->problem, PROBLEM_NOT_FOUND, NULL, "no TLS policy for '%s'",
                                   job->target);
        if (r >= 0)
                r = check_manager(job, &cur);
        policy_done(&cur);
        if (r >= 0)
                r = store_policy_delete(&w->db, job->target, &job->problem);
        /* the job record and a dry run show it (a 204 has no body) */
        if (r >= 0 && (job->warnings = json_array()))
                r = policy_parent_warnings(&w->db, job->target, job->warnings, &job->problem);
        if (r < 0)
                return r;
        job->http_status = 204;
        job->result = json_null();
        return 0;
}

static int run_policy_bulk(struct worker *w, struct job *job, json_t **after)
{
        json_t *counts = NULL;
        int64_t version = 0;
        struct fingerprint_digest digest;
        int r = policy_check_if_match(w, job, true);
        /* The items are in the job row (api_submit_items); a dry run has no row and holds them. */
        if (r >= 0)
                r = store_policies_bulk(&w->db, job->items, job->id, job_scope(job), false,
                                        fingerprint_digest(w, &digest), "/items", &counts,
                                        &job->problem);
        if (r >= 0 && (job->warnings = json_array()))
                r = policy_parent_warnings(&w->db, NULL, job->warnings, &job->problem);
        if (r >= 0)
                r = store_collection_version(&w->db, STORE_POLICIES, &version, &job->problem);
        if (r < 0) {
                json_decref(counts);
                return r;
        }
        /* The audit trail keeps the counts, not 100,000 rows. */
        *after = counts;
        job->result = json_incref(counts);
        if (!job->dry_run)
                policies_etag(version, job->etag, sizeof(job->etag));
        return 0;
}

/* ---- the whole desired state (PUT /api/v1/state) ---- */

/* The certificates of the document, in order: an ACME or system one must exist as such; an
 * imported one is unchanged when stored with the same certificate and chain (it keeps its key: a
 * GET without keys round-trips), imported when the document carries its key, refused otherwise.
 * Fills plan {added, changed, unchanged} with names. */
static int state_certs(struct worker *w, struct job *job, json_t *certs, json_t *keys, json_t *plan,
                       json_t *warnings)
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
                int r = store_cert_by_name(&w->db, name, &row, &job->problem);
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
                        r = cert_store(w, name, cert, chain, key, &created, &job->problem);
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
static int state_settings(struct worker *w, struct job *job, json_t *body, json_t *plan)
{
        json_t *doc = json_object_get(body, "settings");
        bool managed = json_is_true(json_object_get(body, "managed"));
        struct settings s, n;
        int r = store_settings_load(&w->db, &s, NULL, true, &job->problem);
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
        r = settings_store(w, &s, doc, false, &job->problem);
        problem_prefix_field(&job->problem, "/settings");
        return r;
}

/* Imported certificates the document does not list are removed (after the settings, which may
 * have bound another); ACME and system ones follow their files and stay. */
static int state_prune_certs(struct worker *w, struct job *job, json_t *certs, json_t *plan,
                             json_t *warnings)
{
        json_t *stored = NULL, *it, *doc;
        size_t i, k;
        int r = store_certs_list(&w->db, NULL, NULL, &stored, NULL, &job->problem);
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
                r = cert_remove(w, name, it, &job->problem);
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
static int run_state(struct worker *w, struct job *job, json_t **after)
{
        json_t *body = json_object_get(job->request, "body");
        json_t *certs = json_object_get(body, "certificates"), *keys = NULL, *counts = NULL;
        struct fingerprint_digest digest;
        char etag[STATE_ETAG_MAX];
        state_etag(w->batch_generation + (w->batch_dirty ? 1 : 0), etag);
        int r = check_precondition(job->request, "the desired state", etag, &job->problem);
        if (r < 0)
                return r;
        if (job->secret) {
                keys = json_loads(job->secret, 0, NULL);
                if (!keys)
                        return problem_set(&job->problem, PROBLEM_INTERNAL_ERROR, NULL,
                                           "the private keys of the document are unreadable");
                if (job_scope(job) < SCOPE_ADMIN) {
                        json_decref(keys);
                        return problem_set(&job->problem, PROBLEM_FORBIDDEN, "/certificates",
                                           "a document with private keys needs a token with "
                                           "scope 'admin'");
                }
        }
        json_t *plan = json_pack("{s:{}, s:{s:[], s:[], s:[], s:[]}}", "settings", "certificates",
                                 "added", "changed", "removed", "unchanged");
        json_t *cplan = json_object_get(plan, "certificates"), *warnings = json_array();
        r = state_certs(w, job, certs, keys, cplan, warnings);
        json_decref(keys);
        if (r >= 0)
                r = state_settings(w, job, body, json_object_get(plan, "settings"));
        if (r >= 0)
                r = store_policies_bulk(&w->db, job->items, job->id, job_scope(job), true,
                                        fingerprint_digest(w, &digest), "/tls_policies", &counts,
                                        &job->problem);
        if (r >= 0) {
                json_object_set_new(plan, "tls_policies", counts);
                r = state_prune_certs(w, job, certs, cplan, warnings);
        }
        if (r >= 0)
                r = policy_parent_warnings(&w->db, NULL, warnings, &job->problem);
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

static int run_job(struct worker *w, struct job *job, json_t **before, json_t **after)
{
        if (streq(job->action, "policies.put") || streq(job->action, "policies.patch") ||
            streq(job->action, "policies.post"))
                return run_policy_write(w, job, before, after);
        if (streq(job->action, "policies.delete"))
                return run_policy_delete(w, job, before);
        if (streq(job->action, "policies.bulk"))
                return run_policy_bulk(w, job, after);
        if (streq(job->action, "settings.put") || streq(job->action, "settings.patch"))
                return run_settings(w, job, before, after);
        if (streq(job->action, "certificates.put") || streq(job->action, "certificates.post"))
                return run_cert_put(w, job, streq(job->action, "certificates.post"), before, after);
        if (streq(job->action, "certificates.delete"))
                return run_cert_delete(w, job, before);
        if (streq(job->action, "certificates.rescan"))
                return run_cert_rescan(w, job, after);
        if (streq(job->action, "state.put"))
                return run_state(w, job, after);
        return problem_set(&job->problem, PROBLEM_INTERNAL_ERROR, NULL, "unknown action %s",
                           job->action);
}

/* ---- warnings on a settings reply ---------------------------------------------------------- */

static json_t *settings_warnings(struct worker *w, const struct desired *d, const struct plan *p)
{
        json_t *warnings = reconcile_settings_warnings(d, p);
        if (!d->settings.managed)
                return warnings;
        char *host = NULL;
        for (size_t i = 0; i < p->n_certs; i++) {
                const struct plan_cert *pc = &p->certs[i];
                struct cert_info info = { 0 };
                struct problem ignore = { 0 };
                if (pc->key_path[0] &&
                    reconcile_check_cert(w->app->cfg, pc, time(NULL), &info, &ignore) >= 0) {
                        long days = (long)cert_days_left(info.not_after, time(NULL));
                        if (days < CERT_EXPIRING_DAYS)
                                warnings_add(warnings, "certificate_expiring",
                                             "certificate '%s' expires in %ld days", pc->name,
                                             days);
                        if (host || postconf_value(w->app->cfg, "myhostname", &host) >= 0) {
                                if (!cert_covers_hostname(&info, host))
                                        warnings_add(warnings, "hostname_mismatch",
                                                     "certificate '%s' does not cover myhostname "
                                                     "'%s': strict peers will refuse it",
                                                     pc->name, host);
                        }
                }
                cert_info_done(&info);
                problem_done(&ignore);
        }
        free(host);
        return warnings;
}

/* The warnings of one write, made in this one place for the write and for its dry run: the
 * job's own (a policy's), then the batch's: the bound certificate's and the modes' for a settings
 * write, and that Postfix is not running when the files change (files_change; running: whether
 * Postfix runs). */
static json_t *write_warnings(const struct job *job, json_t *settings_warn, bool files_change,
                              bool running)
{
        json_t *warnings = job->warnings ? json_deep_copy(job->warnings) : json_array();
        if (strncmp(job->action, "settings.", 9) == 0)
                json_array_extend(warnings, settings_warn);
        if (files_change && !running)
                warnings_add(warnings, "postfix_not_running",
                             "Postfix is not running: the new files are in place and will be used "
                             "when it starts");
        return warnings;
}

/* Generation gen is live in Postfix: status, metrics, node row, old certificate files. */
static void mark_applied(struct worker *w, int64_t gen, bool reloaded)
{
        struct problem p = { 0 };
        pthread_mutex_lock(&w->lock);
        w->applied_generation = gen;
        json_decref(w->drift);
        w->drift = json_array();
        if (reloaded) {
                w->last_reload_usec = now_monotonic_usec();
                w->reloads++;
        }
        pthread_mutex_unlock(&w->lock);
        set_state(w, "in_sync", "");
        publish_desired(w);
        metrics_gauge_set(METRIC_APPLIED_GENERATION, gen);
        if (reloaded)
                metrics_count(METRIC_RELOADS, 1);
        reconcile_prune_certs(w->app->cfg);
        store_node_update(&w->db, w->app->cfg->node_name, gen, "in_sync", "", &p);
        problem_done(&p);
}

/* ---- a batch --------------------------------------------------------------------------------- */

struct slot {
        struct job *job;
        bool ok;
        bool changed; /* the job changed the desired state (a version moved) */
        bool settled; /* committed: already out of the backlog */
        json_t *before, *after;
};

/* A job handed to the worker is done (applied, failed, or found finished): out of the backlog,
 * before its request gets the reply. */
static void job_settled(struct worker *w)
{
        atomic_fetch_sub(&w->backlog, 1);
        publish_desired(w);
}

static void finish_failed(struct worker *w, struct job *job)
{
        job->failed = true;
        metrics_count(METRIC_JOBS_FAILED, 1);
        /* Once per failed job, at warning: the code and field, not the detail (it may quote a
         * tool's output); the job record has everything. */
        log_warning("job %lld (%s %s) failed: %s%s%s; details in GET /api/v1/jobs/%lld",
                    (long long)job->id, job->action, job->target,
                    problem_code_name(job->problem.code), job->problem.field[0] ? " at " : "",
                    job->problem.field, (long long)job->id);
        if (job->id <= 0)
                return;
        json_t *err = problem_error_json(&job->problem);
        struct job_outcome o = { .status = "failed",
                                 .error = err,
                                 .output = job->output,
                                 .postmap = job->postmap,
                                 .reload = job->reloaded };
        struct problem ignore = { 0 };
        if (store_job_finish(&w->db, job->id, &o, &ignore) < 0)
                log_warning("job %lld: cannot record its failure: %s", (long long)job->id,
                            ignore.detail);
        problem_done(&ignore);
        json_decref(err);
}

static void record_last_job(struct worker *w, const struct job *job)
{
        pthread_mutex_lock(&w->lock);
        json_decref(w->last_job);
        w->last_job =
            json_pack("{s:I, s:s, s:s, s:s}", "id", (json_int_t)job->id, "action", job->action,
                      "target", job->target, "status", job->failed ? "failed" : "applied");
        pthread_mutex_unlock(&w->lock);
}

/* Runs the jobs in one transaction. Returns -EAGAIN (the slots' problems set) when the batch as a
 * whole failed after its jobs had run: the caller may retry them one by one; -ENOTCONN when the
 * database went away: nothing is committed and the caller puts the jobs back. */
static int run_batch(struct worker *w, struct slot *slots, size_t n, bool dry_run)
{
        const struct config *cfg = w->app->cfg;
        struct problem p = { 0 };
        struct desired d = { 0 };
        struct plan plan = { 0 };
        struct apply_result res = { 0 };
        char served_before[sizeof(w->applied_fingerprint)] = "";
        size_t ok = 0;
        int64_t gen = 0;
        struct state_versions was = { 0 }, now = { 0 };
        bool changed = false;
        int r;

        r = sql(w, "BEGIN", &p);
        if (r >= 0)
                r = store_generation(&w->db, &gen, true, &p); /* one writer across nodes */
        if (r >= 0)
                r = store_state_versions(&w->db, &was, &p);
        if (r < 0)
                goto fail_all;
        for (size_t i = 0; i < n; i++) {
                touch();
                r = sql(w, "SAVEPOINT job", &p);
                if (r < 0)
                        goto fail_all;
                w->batch_generation = gen;
                w->batch_dirty = changed;
                r = run_job(w, slots[i].job, &slots[i].before, &slots[i].after);
                if (r < 0 && slots[i].job->problem.code == PROBLEM_SERVICE_UNAVAILABLE) {
                        problem_set(&p, PROBLEM_SERVICE_UNAVAILABLE, NULL, "%s",
                                    slots[i].job->problem.detail);
                        goto fail_all;
                }
                r = sql(w, r < 0 ? "ROLLBACK TO SAVEPOINT job" : "RELEASE SAVEPOINT job", &p);
                if (r < 0)
                        goto fail_all;
                slots[i].ok = slots[i].job->problem.code == PROBLEM_NONE;
                ok += slots[i].ok;
                /* A write that changes nothing changes no version: the job is applied, and
                 * the batch made of such jobs bumps no generation and touches no file. */
                r = store_state_versions(&w->db, &now, &p);
                if (r < 0)
                        goto fail_all;
                slots[i].changed = slots[i].ok && memcmp(&was, &now, sizeof(now)) != 0;
                changed = changed || slots[i].changed;
                was = now;
        }
        if (ok == 0 && !dry_run) {
                sql(w, "ROLLBACK", &p);
                return 0;
        }
        if (!dry_run) {
                if (changed)
                        r = store_generation_bump(&w->db, &gen, &p);
                if (r < 0)
                        goto fail_all;
                /* The replies and the audit trail show the generation this batch creates (or,
                 * when it changes nothing, the current one). */
                for (size_t i = 0; i < n; i++) {
                        if (!slots[i].ok)
                                continue;
                        if (json_is_object(slots[i].after))
                                json_object_set_new(slots[i].after, "generation",
                                                    json_integer(gen));
                        if (json_is_object(slots[i].job->result))
                                json_object_set_new(slots[i].job->result, "generation",
                                                    json_integer(gen));
                        if (streq(slots[i].job->action, "state.put"))
                                state_etag(gen, slots[i].job->etag);
                }
        }
        r = load_desired(w, &d, &p);
        if (r >= 0)
                r = reconcile_plan(cfg, &d, &plan, &p);
        if (r < 0)
                goto fail_ok;

        if (dry_run) {
                json_t *pl = reconcile_plan_json(cfg, &plan);
                json_t *errors = json_array();
                for (size_t i = 0; i < n; i++)
                        if (!slots[i].ok)
                                json_array_append_new(errors,
                                                      problem_error_json(&slots[i].job->problem));
                json_object_set_new(pl, "valid", json_boolean(json_array_size(errors) == 0));
                json_object_set_new(pl, "errors", errors);
                /* the warnings the write would get: files change where the plan says so */
                bool files_change = plan.main_cf_changed || plan.map_changed || plan.write_cert;
                bool running = files_change && postfix_is_running(cfg);
                json_t *settings_warn = settings_warnings(w, &d, &plan);
                sql(w, "ROLLBACK", &p);
                for (size_t i = 0; i < n; i++) {
                        struct job *job = slots[i].job;
                        json_t *mine = json_deep_copy(pl);
                        json_object_set_new(
                            mine, "warnings",
                            slots[i].ok ? write_warnings(job, settings_warn, files_change, running)
                                        : json_array());
                        problem_done(&job->problem);
                        job->problem = (struct problem){ 0 };
                        /* the counts of a bulk replace or a rescan stay beside the plan */
                        bool counts_too = streq(job->action, "policies.bulk") ||
                                          streq(job->action, "certificates.rescan") ||
                                          streq(job->action, "state.put");
                        json_t *counts = counts_too && json_is_object(job->result)
                                             ? json_deep_copy(job->result)
                                             : json_object();
                        json_object_set_new(counts, "plan", mine);
                        json_decref(job->result);
                        job->result = counts;
                        /* nothing was created or deleted: 200 with the plan, no Location */
                        json_decref(job->warnings);
                        job->warnings = NULL;
                        job->http_status = 200;
                        job->location[0] = job->etag[0] = 0;
                }
                json_decref(settings_warn);
                json_decref(pl);
                goto out;
        }
        /* A batch that changed nothing has nothing to render into Postfix's files: no swap, no
         * postmap, no reload (res stays empty); its jobs are recorded and committed below. */
        if (changed) {
                if (plan.expect_fingerprint[0] && w->applied_fingerprint[0] &&
                    !streq(plan.expect_fingerprint, w->applied_fingerprint))
                        plan.reload = true;
                set_state(w, "applying", NULL);
                snprintf(served_before, sizeof(served_before), "%s", w->applied_fingerprint);
                r = reconcile_apply(cfg, &plan, &res, &p);
                if (r < 0)
                        goto fail_ok;
                /* Postfix has the new files from this moment, whatever becomes of the batch: a
                 * batch that loses the database after the reload (and is retried, or found
                 * committed) must not make the next write reload again for the same
                 * certificate. An ACME certificate's files stay new even then; only a restored
                 * main.cf is reloaded back (below). */
                if (res.reloaded)
                        snprintf(w->applied_fingerprint, sizeof(w->applied_fingerprint), "%s",
                                 plan.expect_fingerprint);
        }
        /* Warnings about the bound certificate and modes go to settings writes; that Postfix
         * is not running concerns every write. */
        json_t *settings_warn = settings_warnings(w, &d, &plan);
        for (size_t i = 0; i < n; i++) {
                if (!slots[i].ok)
                        continue;
                json_t *warnings =
                    write_warnings(slots[i].job, settings_warn, res.swapped, res.postfix_running);
                json_decref(slots[i].job->warnings);
                slots[i].job->warnings = warnings;
                /* a job that changed nothing in a batch that did: no generation of its own */
                bool mine = slots[i].changed;
                struct job_outcome o = {
                        .status = "applied",
                        .generation = mine ? gen : 0,
                        .reload = mine && res.reloaded,
                        .postmap = mine && res.postmap,
                        .output = res.output,
                        .before = slots[i].before,
                        .after = slots[i].after,
                        .warnings = warnings,
                };
                r = slots[i].job->id > 0 ? store_job_finish(&w->db, slots[i].job->id, &o, &p) : 0;
                if (r < 0)
                        break;
        }
        json_decref(settings_warn);
        if (r >= 0) {
                fault_point("before_commit");
                r = sql(w, "COMMIT", &p);
        }
        if (r < 0) {
                /* Nothing committed (or, the connection lost in COMMIT, perhaps everything: the
                 * retry looks): the files must be the committed state again. */
                reconcile_restore(cfg, &plan, &res);
                if (res.swapped && res.reloaded) /* reloaded back to the previous main.cf */
                        snprintf(w->applied_fingerprint, sizeof(w->applied_fingerprint), "%s",
                                 served_before);
                if (p.code == PROBLEM_SERVICE_UNAVAILABLE)
                        goto fail_all;
                goto fail_ok;
        }

        /* committed: out of the backlog now, so that no status between here and the replies
         * says applying for jobs the database has as applied */
        for (size_t i = 0; i < n; i++)
                if (slots[i].ok && !slots[i].settled) {
                        slots[i].settled = true;
                        atomic_fetch_sub(&w->backlog, 1);
                }
        if (!changed) {
                metrics_count(METRIC_JOBS_APPLIED, ok);
                publish_desired(w);
                problem_done(&p);
                goto out;
        }
        fault_point("after_commit");
        metrics_count(METRIC_RECONCILES, 1);
        if (res.postmap)
                metrics_count(METRIC_POSTMAP_RUNS, 1);
        metrics_count(METRIC_JOBS_APPLIED, ok);
        mark_applied(w, gen, res.reloaded);
        snprintf(w->applied_fingerprint, sizeof(w->applied_fingerprint), "%s",
                 plan.expect_fingerprint);
        if (res.reloaded && res.postfix_running) {
                int64_t ids[MAX_BATCH];
                size_t nids = 0;
                for (size_t i = 0; i < n; i++) /* the jobs the reload was for */
                        if (slots[i].ok && slots[i].changed && slots[i].job->id > 0)
                                ids[nids++] = slots[i].job->id;
                struct verifier_expect expect[VERIFIER_EXPECT_MAX] = { 0 };
                size_t n_expect = 0;
                for (; n_expect < plan.n_certs && n_expect < VERIFIER_EXPECT_MAX; n_expect++) {
                        const struct plan_cert *pc = &plan.certs[n_expect];
                        snprintf(expect[n_expect].fingerprint, sizeof(expect[0].fingerprint), "%s",
                                 pc->fingerprint);
                        snprintf(expect[n_expect].key_type, sizeof(expect[0].key_type), "%s",
                                 pc->key_type);
                }
                verifier_submit(w->verifier, ids, nids, plan.expect_starttls, expect, n_expect);
        }
        problem_done(&p);
        goto out;

fail_ok:
        sql(w, "ROLLBACK", NULL);
        if (spawn_cancelled()) {
                /* The daemon is stopping and killed the running command at shutdown_timeout
                 * (the files are the committed ones again): nothing is recorded, the caller
                 * puts the jobs back, and the next start runs them. */
                problem_done(&p);
                r = -ECANCELED;
                goto out_r;
        }
        /* The batch could not be applied: every job that had run fails with the reason. */
        for (size_t i = 0; i < n; i++) {
                if (!slots[i].ok)
                        continue;
                problem_done(&slots[i].job->problem);
                slots[i].job->problem = (struct problem){ 0 };
                problem_set(&slots[i].job->problem, p.code, p.field, "%s", p.detail);
                slots[i].ok = false;
                free(slots[i].job->output);
                slots[i].job->output = res.output ? strdup(res.output) : NULL;
                slots[i].job->postmap = res.postmap;
                slots[i].job->reloaded = res.reloaded;
        }
        /* The live files are the committed ones again. A write refused for its own content
         * (a certificate that does not load) leaves the daemon in sync; a tool or the system
         * failing (postmap, reload, disk) makes it degraded until a later apply works. */
        if (p.code == PROBLEM_CERTIFICATE_UNUSABLE)
                set_state(w, "in_sync", NULL);
        else
                set_state(w, "degraded", p.detail);
        problem_done(&p);
        r = ok > 1 ? -EAGAIN : 0;
        goto out_r;

fail_all:
        /* Nothing of the batch is committed. Without the database the jobs are put back (the
         * caller retries them once it answers); another failure fails them all. */
        sql(w, "ROLLBACK", NULL);
        for (size_t i = 0; i < n; i++) {
                struct job *job = slots[i].job;
                if (job->problem.code == PROBLEM_NONE ||
                    job->problem.code == PROBLEM_SERVICE_UNAVAILABLE) {
                        problem_done(&job->problem);
                        job->problem = (struct problem){ 0 };
                        problem_set(&job->problem, p.code ? p.code : PROBLEM_INTERNAL_ERROR,
                                    p.field, "%s", p.detail);
                }
                slots[i].ok = false;
        }
        r = p.code == PROBLEM_SERVICE_UNAVAILABLE ? -ENOTCONN : -EIO;
        problem_done(&p);
        goto out_r;

out:
        r = 0;
out_r:
        apply_result_done(&res);
        plan_done(&plan);
        desired_done(&d);
        return r;
}

static void complete(struct worker *w, struct slot *s)
{
        struct job *job = s->job;
        if (!s->ok && !job->dry_run)
                finish_failed(w, job);
        if (!job->dry_run)
                record_last_job(w, job);
        if (!s->settled)
                job_settled(w);
        pending_complete(job);
        json_decref(s->before);
        json_decref(s->after);
        job_free(job);
}

/* Puts jobs whose batch lost the database back at the head of the queue, as they were queued:
 * their requests keep waiting (a ?wait that ends answers 202) and nothing is recorded yet. */
static void requeue(struct worker *w, struct slot *slots, size_t n)
{
        struct queue_item *list = NULL, **tail = &list;
        for (size_t i = 0; i < n; i++) {
                struct job *job = slots[i].job;
                problem_done(&job->problem);
                job->problem = (struct problem){ 0 };
                json_decref(job->result);
                json_decref(job->warnings);
                job->result = job->warnings = NULL;
                free(job->output);
                job->output = NULL;
                job->postmap = job->reloaded = false;
                job->http_status = 200;
                job->location[0] = job->etag[0] = 0;
                job->retry = true;
                json_decref(slots[i].before);
                json_decref(slots[i].after);
                *tail = &job->item;
                tail = &job->item.next;
        }
        *tail = NULL;
        queue_push_front(&w->queue, list);
}

/* A job put back by requeue() may have committed after all (the connection lost in COMMIT): its
 * record decides. Returns 1 when it is finished (complete it as it is), 0 to run it, < 0 when
 * the database does not answer. */
static int settled_before(struct worker *w, struct job *job)
{
        json_t *row = NULL;
        struct problem p = { 0 };
        int r = store_job_get(&w->db, job->id, &row, &p);
        if (r < 0) {
                r = p.code == PROBLEM_SERVICE_UNAVAILABLE ? -ENOTCONN : 0;
                problem_done(&p);
                return r;
        }
        const char *status = json_string_value(json_object_get(row, "status"));
        r = 0;
        if (status && streq(status, "applied")) {
                job->result = json_incref(json_object_get(row, "after"));
                r = 1;
        } else if (status && streq(status, "failed")) {
                json_t *e = json_object_get(row, "error");
                problem_set(&job->problem,
                            problem_code_from_name(json_string_value(json_object_get(e, "code"))),
                            json_string_value(json_object_get(e, "field")), "%s",
                            json_string_value(json_object_get(e, "detail")));
                job->failed = true;
                r = 1;
        }
        json_decref(row);
        return r;
}

/* Returns -ENOTCONN when jobs were put back for want of the database. */
static int process(struct worker *w, struct job **jobs, size_t n)
{
        struct slot slots[MAX_BATCH];
        size_t m = 0;

        for (size_t i = 0; i < n; i++) {
                struct job *job = jobs[i];
                if (job->retry && !job->dry_run) {
                        int k = settled_before(w, job);
                        if (k < 0) {
                                struct slot rest[MAX_BATCH];
                                size_t nrest = 0;
                                for (size_t j = 0; j < m; j++)
                                        rest[nrest++] = slots[j];
                                for (size_t j = i; j < n; j++)
                                        rest[nrest++] = (struct slot){ .job = jobs[j] };
                                requeue(w, rest, nrest);
                                return -ENOTCONN;
                        }
                        job->retry = false;
                        if (k > 0) {
                                /* finished by the attempt that lost the connection */
                                record_last_job(w, job);
                                job_settled(w);
                                pending_complete(job);
                                job_free(job);
                                continue;
                        }
                }
                if (job->dry_run) {
                        struct slot s = { .job = job };
                        run_batch(w, &s, 1, true);
                        s.ok = job->problem.code == PROBLEM_NONE;
                        complete(w, &s);
                        continue;
                }
                slots[m++] = (struct slot){ .job = job };
        }
        if (m == 0)
                return 0;
        int r = run_batch(w, slots, m, false);
        if (r == -ENOTCONN || r == -ECANCELED) {
                requeue(w, slots, m);
                return r;
        }
        if (r == -EAGAIN) {
                /* One job spoiled the batch (Postfix refused the combined result): run each
                 * alone so that the good ones land and the bad one fails by itself. */
                for (size_t i = 0; i < m; i++) {
                        problem_done(&slots[i].job->problem);
                        slots[i].job->problem = (struct problem){ 0 };
                        json_decref(slots[i].job->result);
                        slots[i].job->result = NULL;
                        json_decref(slots[i].job->warnings);
                        slots[i].job->warnings = NULL;
                        json_decref(slots[i].before);
                        json_decref(slots[i].after);
                        slots[i].before = slots[i].after = NULL;
                        int k = run_batch(w, &slots[i], 1, false);
                        if (k == -ENOTCONN || k == -ECANCELED) {
                                requeue(w, &slots[i], m - i);
                                m = i;
                                r = k;
                                break;
                        }
                }
        }
        for (size_t i = 0; i < m; i++)
                complete(w, &slots[i]);
        if (r == -ENOTCONN || r == -ECANCELED)
                return r;
        pthread_mutex_lock(&w->lock);
        int64_t gen = w->applied_generation;
        uint64_t since = w->last_reload_usec;
        pthread_mutex_unlock(&w->lock);
        if (since)
                notify_status("generation %lld applied, %zu queued, last reload %.2f s ago",
                              (long long)gen, queue_depth(&w->queue),
                              (double)(now_monotonic_usec() - since) / 1e6);
        else
                notify_status("generation %lld applied, %zu queued", (long long)gen,
                              queue_depth(&w->queue));
        return 0;
}

/* Jobs left queued in the database (by a crash, or by an HTTP thread whose push raced a stop):
 * they were acknowledged, so they run. */
static size_t recover(struct worker *w, struct job **jobs, size_t n, size_t cap)
{
        struct problem p = { 0 };
        json_t *rows = NULL, *row;
        size_t i;
        if (store_jobs_pending(&w->db, w->app->cfg->node_name, &rows, &p) < 0) {
                problem_done(&p);
                return n;
        }
        json_array_foreach (rows, i, row) {
                int64_t id = json_integer_value(json_object_get(row, "id"));
                bool known = false;
                for (size_t k = 0; k < n; k++)
                        if (jobs[k]->id == id)
                                known = true;
                if (known || n >= cap)
                        continue;
                int attempts = 0;
                struct job *job = job_new(json_string_value(json_object_get(row, "action")),
                                          json_string_value(json_object_get(row, "target")),
                                          json_string_value(json_object_get(row, "actor")),
                                          json_object_get(row, "request"));
                if (!job)
                        break;
                atomic_fetch_add(&w->backlog, 1);
                job->id = id;
                store_job_attempt(&w->db, id, &attempts, &p);
                if (attempts > MAX_ATTEMPTS)
                        problem_set(&job->problem, PROBLEM_INTERNAL_ERROR, NULL,
                                    "given up after %d attempts", MAX_ATTEMPTS);
                else if (store_job_key_open(w->app->cfg->kek, row, &job->secret, &job->problem) ==
                         -ENOMEM)
                        problem_set(&job->problem, PROBLEM_INTERNAL_ERROR, NULL, "out of memory");
                if (job->problem.code != PROBLEM_NONE) {
                        log_warning("job %lld (%s %s) left by a previous run fails: %s",
                                    (long long)id, job->action, job->target, job->problem.detail);
                        struct slot s = { .job = job };
                        complete(w, &s);
                        continue;
                }
                log_notice("resuming job %lld (%s %s) left by a previous run", (long long)id,
                           job->action, job->target);
                jobs[n++] = job;
        }
        json_decref(rows);
        problem_done(&p);
        return n;
}

static void *worker_main(void *arg)
{
        struct worker *w = arg;
        static struct job *jobs[MAX_BATCH];

        current = w;
        spawn_hooks_set(&(const struct spawn_hooks){ spawn_progress_stamp, &w->heartbeat });
        for (;;) {
                touch();
                struct queue_item *list = queue_drain(&w->queue, IDLE_TICK_USEC);
                size_t n = 0;
                while (list && n < MAX_BATCH) {
                        struct queue_item *next = list->next;
                        jobs[n++] = (struct job *)list;
                        list = next;
                }
                /* more than MAX_BATCH: the rest waits for the next round, still first in line */
                queue_push_front(&w->queue, list);
                metrics_gauge_set(METRIC_QUEUE_DEPTH, (int64_t)queue_depth(&w->queue));
                if (n == 0) {
                        if (queue_closed(&w->queue))
                                break;
                        continue;
                }
                struct problem p = { 0 };
                int r = ensure_db(w, &p);
                if (r < 0) {
                        /* Jobs are durable in the database: keep their requests waiting (their
                         * ?wait ends in a 202) and try again shortly. */
                        set_state(w, "degraded", p.detail);
                        for (size_t i = n; i-- > 0;) {
                                jobs[i]->item.next = i + 1 < n ? &jobs[i + 1]->item : NULL;
                        }
                        queue_push_front(&w->queue, &jobs[0]->item);
                } else {
                        r = process(w, jobs, n);
                        if (r == -ENOTCONN)
                                set_state(w, "degraded", "the database went away during an apply");
                }
                problem_done(&p);
                if (r == -ECANCELED) {
                        log_notice("stopping: the running batch was interrupted; the %zu queued "
                                   "job(s) run at the next start",
                                   queue_depth(&w->queue));
                        break;
                }
                if (r < 0) { /* the database is away: wait a little, bounded */
                        if (queue_closed(&w->queue))
                                break;
                        struct timespec ts = { 0, 500 * 1000000 };
                        nanosleep(&ts, NULL);
                        continue;
                }
                metrics_gauge_set(METRIC_QUEUE_DEPTH, (int64_t)queue_depth(&w->queue));
        }
        current = NULL;
        return NULL;
}

/* Start-up, key_encryption_key_file configured: the plaintext keys left in the database are
 * sealed (one transaction, under the lock of one writer across nodes). Either way, certificates
 * whose key no configured key opens are named. */
static void keys_at_start(struct worker *w)
{
        const struct kek *kek = w->app->cfg->kek;
        struct problem p = { 0 };
        json_t *bad = NULL, *it;
        size_t i;
        int64_t gen = 0;
        int n = 0;
        if (kek) {
                int r = sql(w, "BEGIN", &p);
                if (r >= 0)
                        r = store_generation(&w->db, &gen, true, &p);
                if (r >= 0)
                        r = store_certs_seal_keys(&w->db, kek, &n, &p);
                if (r >= 0)
                        r = sql(w, "COMMIT", &p);
                if (r < 0) {
                        sql(w, "ROLLBACK", NULL);
                        log_error("cannot encrypt the private keys in the database: %s", p.detail);
                } else if (n > 0) {
                        log_notice("encrypted the private keys of %d certificate(s) with key %s "
                                   "(key_encryption_key_file)",
                                   n, kek->id);
                }
        }
        problem_done(&p);
        p = (struct problem){ 0 };
        if (store_certs_unreadable_keys(&w->db, kek, &bad, &p) >= 0)
                json_array_foreach (bad, i, it)
                        log_error("certificate '%s' is unusable: its private key is encrypted with "
                                  "key %s, and key_encryption_key_file %s",
                                  json_string_value(json_object_get(it, "name")),
                                  json_string_value(json_object_get(it, "key_id")),
                                  kek ? "holds another key" : "is not configured");
        json_decref(bad);
        problem_done(&p);
}

static int initial_reconcile(struct worker *w)
{
        const struct config *cfg = w->app->cfg;
        struct problem p = { 0 };
        struct desired d = { 0 };
        struct plan plan = { 0 };
        struct apply_result res = { 0 };
        int64_t gen = 0;
        int r;

        reconcile_cleanup_staging(cfg);
        r = ensure_db(w, &p);
        if (r >= 0) {
                /* The files may have changed while we were away (renewals, a new system pair). */
                json_t *warnings = json_array(), *summary = NULL;
                struct problem sp = { 0 };
                int k = sql(w, "BEGIN", &sp);
                if (k >= 0)
                        k = certsync_run(cfg, &w->db, warnings, &summary, &sp);
                if (k >= 0)
                        k = sql(w, "COMMIT", &sp);
                if (k < 0) {
                        sql(w, "ROLLBACK", NULL);
                        log_warning("start-up certificate scan failed: %s", sp.detail);
                }
                problem_done(&sp);
                json_decref(warnings);
                json_decref(summary);
        }
        if (r >= 0)
                keys_at_start(w);
        if (r >= 0)
                r = store_generation(&w->db, &gen, false, &p);
        if (r >= 0)
                r = load_desired(w, &d, &p);
        if (r >= 0)
                r = reconcile_plan(cfg, &d, &plan, &p);
        if (r >= 0) {
                json_t *drift = reconcile_drift(cfg, &plan);
                if (json_array_size(drift) > 0)
                        log_notice("main.cf differs from the committed state in %zu managed "
                                   "parameter(s): applying generation %lld",
                                   json_array_size(drift), (long long)gen);
                pthread_mutex_lock(&w->lock);
                w->drift = drift;
                pthread_mutex_unlock(&w->lock);
                /* Postfix may still hold an ACME certificate renewed while we were away. */
                for (size_t i = 0; i < plan.n_certs; i++)
                        if (plan.certs[i].acme_name[0] && postfix_is_running(cfg))
                                plan.reload = true;
                r = reconcile_apply(cfg, &plan, &res, &p);
                if (r >= 0)
                        snprintf(w->applied_fingerprint, sizeof(w->applied_fingerprint), "%s",
                                 plan.expect_fingerprint);
        }
        if (r < 0) {
                log_error("start-up reconcile failed: %s", p.detail);
                set_state(w, "failed", p.detail);
        } else {
                mark_applied(w, gen, res.reloaded);
        }
        apply_result_done(&res);
        plan_done(&plan);
        desired_done(&d);
        problem_done(&p);
        /* A failed start-up reconcile is reported, not fatal: the API must stay up to fix it. */
        return 0;
}

int worker_start(struct app *app, struct worker **ret)
{
        struct worker *w = calloc(1, sizeof(*w));
        int r;

        if (!w)
                return -ENOMEM;
        w->app = app;
        pthread_mutex_init(&w->lock, NULL);
        snprintf(w->state, sizeof(w->state), "applying");
        atomic_store(&w->heartbeat, now_monotonic_usec());
        r = spawn_init(); /* before READY: its descriptor is there before anyone counts them */
        if (r >= 0)
                r = queue_init(&w->queue);
        if (r >= 0)
                r = verifier_start(app->cfg, &w->verifier);
        if (r < 0) {
                free(w);
                return r;
        }
        initial_reconcile(w);
        /* Jobs a previous run acknowledged but did not finish go first. This runs before READY
         * and before any write is accepted (api_submit answers 503 until then), so no job can be
         * both recovered here and queued by an HTTP thread. */
        {
                static struct job *left[MAX_BATCH];
                json_wipe_begin(); /* the rows hold the pending keys */
                size_t n = w->db.pg ? recover(w, left, 0, MAX_BATCH) : 0;
                json_wipe_end();
                for (size_t i = 0; i < n; i++)
                        queue_push(&w->queue, &left[i]->item);
                publish_desired(w);
        }
        r = pthread_create(&w->thread, NULL, worker_main, w);
        if (r) {
                verifier_stop(w->verifier);
                queue_destroy(&w->queue);
                free(w);
                return -r;
        }
        *ret = w;
        return 0;
}

int worker_submit(struct worker *w, struct job *job)
{
        atomic_fetch_add(&w->backlog, 1);
        int r = queue_push(&w->queue, &job->item);
        if (r < 0)
                atomic_fetch_sub(&w->backlog, 1);
        publish_desired(w);
        return r;
}

void worker_stop(struct worker *w)
{
        if (!w || w->stopped)
                return;
        queue_close(&w->queue);
        /* The stop is bounded by shutdown_timeout: a command still running then (a `postfix
         * reload` that hangs) is killed with its process group, and so is every later one (a
         * rollback's reload). Its batch is not committed: the jobs run at the next start. */
        uint64_t limit = (uint64_t)w->app->cfg->shutdown_timeout;
        uint64_t end = now_monotonic_usec() + limit;
        struct timespec ts = { .tv_sec = (time_t)(end / 1000000),
                               .tv_nsec = (long)(end % 1000000) * 1000 };
        if (pthread_clockjoin_np(w->thread, NULL, CLOCK_MONOTONIC, &ts) != 0) {
                log_warning("stopping: the worker is still busy after shutdown_timeout (%.1f s); "
                            "killing its running command",
                            (double)limit / 1e6);
                spawn_cancel_all();
                pthread_join(w->thread, NULL);
        }
        w->stopped = true;
        verifier_stop(w->verifier);
        w->verifier = NULL;
}

void worker_free(struct worker *w)
{
        if (!w)
                return;
        worker_stop(w);
        /* Jobs still queued in memory are durable in the database: the next start runs them. */
        struct queue_item *rest = queue_drain(&w->queue, 0);
        while (rest) {
                struct queue_item *next = rest->next;
                job_free((struct job *)rest);
                rest = next;
        }
        queue_destroy(&w->queue);
        if (w->db.pg)
                PQfinish(w->db.pg);
        json_decref(w->last_job);
        json_decref(w->drift);
        pthread_mutex_destroy(&w->lock);
        free(w);
}

uint64_t worker_heartbeat_age(struct worker *w)
{
        uint64_t now = now_monotonic_usec(), hb = atomic_load(&w->heartbeat);
        return now > hb ? now - hb : 0;
}

void worker_served_fingerprint(struct worker *w, char *buf, size_t size)
{
        if (w->verifier)
                verifier_served(w->verifier, buf, size);
        else if (size)
                buf[0] = 0;
}

json_t *worker_status(struct worker *w)
{
        pthread_mutex_lock(&w->lock);
        size_t backlog = atomic_load(&w->backlog);
        /* jobs waiting or running: not in sync yet, whatever the last batch left */
        const char *state = backlog && streq(w->state, "in_sync") ? "applying" : w->state;
        json_t *j = json_pack("{s:s, s:I, s:o, s:o, s:s*, s:i, s:I}", "state", state,
                              "applied_generation", (json_int_t)w->applied_generation, "last_job",
                              w->last_job ? json_deep_copy(w->last_job) : json_null(), "drift",
                              w->drift ? json_deep_copy(w->drift) : json_array(), "last_error",
                              w->last_error[0] ? w->last_error : NULL, "reloads", w->reloads,
                              "queued_jobs", (json_int_t)backlog);
        if (w->last_reload_usec)
                json_object_set_new(
                    j, "last_reload_seconds_ago",
                    json_real((double)(now_monotonic_usec() - w->last_reload_usec) / 1e6));
        pthread_mutex_unlock(&w->lock);
        json_object_set_new(j, "verification",
                            w->verifier ? verifier_status(w->verifier) : json_null());
        return j;
}
