/* status.c (api) - GET /api/v1/status (is Postfix running what the database says, and is the
 * certificate served) and GET /api/v1/config (the rendered artefacts and any drift), and the
 * cache of the policy map they both need, one per generation. HTTP threads; they read files and
 * run `postfix status`, never write. */
#include <pthread.h>
#include <stdio.h>
#include <time.h>

#include "api/api.h"
#include "apply/maincf.h"
#include "app.h"
#include "apply/layout.h"
#include "apply/live_stamp.h"
#include "apply/postfix.h"
#include "apply/reconcile.h"
#include "apply/worker.h"
#include "conf.h"
#include "core/cert.h"
#include "core/policy.h"
#include "metrics.h"
#include "store/probes.h"
#include "store/store.h"

/* The policy map rendered from the database at one generation (100,000 rows are 100,000 rows to
 * read and render): the only part of these replies that depends on the generation alone. Drift,
 * Postfix, the verification and the settings stay live. Shared read-only by the requests that
 * hold a reference; freed by the last. */
struct map_render {
        unsigned refs; /* under map_cache.lock */
        int64_t generation;
        char *text;
        size_t len, entries;
        int64_t rows; /* all rows, enabled or not: the map is managed as soon as one exists */
        char *json;   /* text as a JSON string, for /config */
        size_t json_len;
};

/* How long a request waits for another that renders the same generation, before rendering
 * itself. */
#define MAP_RENDER_WAIT_SEC 30

static struct {
        pthread_mutex_t lock;
        pthread_cond_t rendered;
        struct map_render *current;
        int64_t rendering; /* the generation a request is rendering; -1 none */
} map_cache = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL, -1 };

static void map_render_unref(struct map_render *m)
{
        if (!m)
                return;
        pthread_mutex_lock(&map_cache.lock);
        bool last = --m->refs == 0;
        pthread_mutex_unlock(&map_cache.lock);
        if (!last)
                return;
        free(m->text);
        free(m->json);
        free(m);
}

static int map_render_new(struct db_conn *c, int64_t generation, struct map_render **ret,
                          struct problem *reterr)
{
        struct map_render *m = calloc(1, sizeof(*m));
        if (!m)
                return -ENOMEM;
        m->refs = 1;
        m->generation = generation;
        int r = store_policies_render(c, &m->text, &m->len, &m->entries, &m->rows, reterr);
        if (r >= 0) {
                json_t *s = json_stringn(m->text, m->len);
                m->json = s ? json_dumps(s, JSON_ENCODE_ANY) : NULL;
                m->json_len = m->json ? strlen(m->json) : 0;
                json_decref(s);
                if (!m->json)
                        r = -ENOMEM;
        }
        if (r < 0) {
                map_render_unref(m);
                return r;
        }
        metrics_count(METRIC_STATUS_MAP_RENDERS, 1);
        *ret = m;
        return 0;
}

/* The map of the generation *generation reads now: the cached one, or rendered once (a request
 * that finds another rendering the same generation waits for it). It is cached only if the
 * generation is the same after the render as before it: the worker bumps the generation in the
 * transaction that changes the rows, so a cached map is always its generation's, and a write
 * (a new generation) is never answered from the cache of an older one. */
static int map_get(struct db_conn *c, int64_t *generation, struct map_render **ret,
                   struct problem *reterr)
{
        int64_t gen = 0, after = 0;
        struct map_render *m = NULL;
        int r = store_generation(c, &gen, false, reterr);
        if (r < 0)
                return r;
        *generation = gen;

        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += MAP_RENDER_WAIT_SEC;
        bool mine = false;
        pthread_mutex_lock(&map_cache.lock);
        while (!(map_cache.current && map_cache.current->generation == gen) &&
               map_cache.rendering == gen)
                if (pthread_cond_timedwait(&map_cache.rendered, &map_cache.lock, &until) != 0)
                        break;
        if (map_cache.current && map_cache.current->generation == gen) {
                m = map_cache.current;
                m->refs++;
        } else if (map_cache.rendering < 0) {
                map_cache.rendering = gen;
                mine = true;
        }
        pthread_mutex_unlock(&map_cache.lock);
        if (m) {
                *ret = m;
                return 0;
        }

        r = map_render_new(c, gen, &m, reterr);
        if (r >= 0)
                r = store_generation(c, &after, false, reterr);
        pthread_mutex_lock(&map_cache.lock);
        struct map_render *old = NULL;
        if (r >= 0 && after == gen &&
            (!map_cache.current || map_cache.current->generation <= gen)) {
                old = map_cache.current;
                map_cache.current = m;
                m->refs++;
        }
        if (mine)
                map_cache.rendering = -1;
        pthread_cond_broadcast(&map_cache.rendered);
        pthread_mutex_unlock(&map_cache.lock);
        map_render_unref(old);
        if (r < 0) {
                map_render_unref(m);
                return r;
        }
        *ret = m;
        return 0;
}

/* desired_load with the cached map of this generation: the map is borrowed from m. */
static int desired_load_cached(struct db_conn *c, const char *node, struct desired *d,
                               int64_t *generation, struct map_render **m, struct problem *reterr)
{
        int r = map_get(c, generation, m, reterr);
        if (r >= 0)
                r = desired_load_settings(c, node, d, reterr);
        if (r < 0)
                return r;
        d->map_text = (*m)->text;
        d->map_len = (*m)->len;
        d->map_borrowed = true;
        d->map_managed = d->settings.managed || (*m)->rows > 0;
        return 0;
}

uint64_t api_stamp_none(struct request *req)
{
        return 0;
}

uint64_t api_stamp_postfix(struct request *req)
{
        return live_stamp_now(req->app->live_stamp);
}

const char *api_state(json_t *worker_status, int64_t desired, size_t n_drift)
{
        const char *state = json_string_value(json_object_get(worker_status, "state"));
        int64_t applied = json_integer_value(json_object_get(worker_status, "applied_generation"));
        if (streq(state, "in_sync") && applied != desired)
                state = "applying";
        else if (streq(state, "in_sync") && n_drift > 0)
                state = "degraded"; /* a hand edit since the last apply */
        return state;
}

struct foreign_maps {
        const char *ours;           /* our map's path */
        const char *const *adopted; /* left out by the plan (NULL-terminated, or NULL) */
        json_t *list;
};

static int foreign_map(void *ctx, const char *token, size_t len)
{
        struct foreign_maps *f = ctx;
        _cleanup_free_ char *t = strndup(token, len);
        if (!t)
                return -ENOMEM;
        if (maincf_maps_names(t, f->ours))
                return 0;
        for (const char *const *a = f->adopted; a && *a; a++)
                if (streq(*a, t))
                        return 0;
        return json_array_append_new(f->list, json_string(t));
}

/* The administrator's own policy maps the live main.cf still lists (not ours, not adopted by an
 * import): what POST /api/v1/import would look at. */
static json_t *foreign_policy_maps(const struct config *cfg, const struct plan *plan)
{
        char ours[PATH_MAX];
        _cleanup_free_ char *live = NULL;
        struct foreign_maps f = { .ours = ours,
                                  .adopted = plan->adopted_skip,
                                  .list = json_array() };
        if (f.list && layout_policy_map(cfg, ours, sizeof(ours)) >= 0 && plan->main_cf_old &&
            maincf_get(plan->main_cf_old, plan->old_len, "smtp_tls_policy_maps", &live) >= 0)
                (void)maincf_maps_each(live, foreign_map, &f);
        return f.list;
}

json_t *api_drift(const struct config *cfg, struct db_conn *c, json_t *warnings)
{
        return api_drift_maps(cfg, c, warnings, NULL);
}

json_t *api_drift_maps(const struct config *cfg, struct db_conn *c, json_t *warnings,
                       json_t **foreign)
{
        /* Drift is what the live main.cf says now, not what it said at start-up. */
        json_t *drift = NULL;
        struct desired d = { 0 };
        struct plan plan = { 0 };
        struct problem ignore = { 0 };
        struct map_render *m = NULL;
        int64_t gen = 0;
        if (desired_load_cached(c, cfg->node_name, &d, &gen, &m, &ignore) >= 0 &&
            reconcile_plan(cfg, &d, &plan, &ignore) >= 0) {
                drift = reconcile_drift(cfg, &plan);
                if (foreign)
                        *foreign = foreign_policy_maps(cfg, &plan);
                if (warnings) {
                        json_t *mine = reconcile_settings_warnings(&d, &plan);
                        json_array_extend(warnings, mine);
                        json_decref(mine);
                }
        }
        desired_done(&d);
        plan_done(&plan);
        map_render_unref(m);
        problem_done(&ignore);
        return drift ? drift : json_array();
}

/* {name, sha256_fingerprint, days_left, served_fingerprint_matches} of the bound certificate
 * `name` (null when "" or gone), with its warnings (expiring, an ACME directory gone) added to
 * warnings. */
static json_t *cert_status(struct db_conn *c, const char *name, json_t *ws, json_t *warnings)
{
        struct cert_row row;
        struct problem ignore = { 0 };
        json_t *cert = json_null();
        if (!name[0])
                return cert;
        if (store_cert_by_name(c, name, &row, &ignore) >= 0) {
                long days = row.not_after ? (long)cert_days_left(row.not_after, time(NULL)) : 0;
                json_t *v = json_object_get(ws, "verification");
                cert = json_pack(
                    "{s:s, s:o, s:o, s:O}", "name", row.name, "sha256_fingerprint",
                    row.sha256_fingerprint[0] ? json_string(row.sha256_fingerprint) : json_null(),
                    "days_left", row.not_after ? json_integer(days) : json_null(),
                    "served_fingerprint_matches", json_object_get(v, "served_fingerprint_matches"));
                if (row.not_after && days < CERT_EXPIRING_DAYS)
                        warnings_add(warnings, "certificate_expiring",
                                     "the bound certificate '%s' expires in under 21 days",
                                     row.name);
                cert_row_done(&row);
        }
        problem_reset(&ignore);
        json_t *details = NULL;
        if (store_cert_get_json(c, name, &details, &ignore) >= 0 &&
            json_is_true(json_object_get(details, "missing")))
                warnings_add(warnings, "certificate_missing",
                             "the directory of the bound ACME certificate '%s' is gone", name);
        json_decref(details);
        problem_done(&ignore);
        return cert;
}

int api_status(struct request *req, struct problem *reterr)
{
        const struct config *cfg = req->app->cfg;
        _cleanup_db_conn_ struct db_conn *c = NULL;
        struct settings s;
        int64_t desired = 0;
        int r = db_acquire(req->app->db, &c, reterr);
        if (r >= 0)
                r = store_generation(c, &desired, false, reterr);
        if (r >= 0)
                r = store_settings_load(c, &s, NULL, false, reterr);
        if (r < 0)
                return r;

        json_t *ws = worker_status(req->app->worker);
        json_t *warnings = json_array();
        json_t *settings_warnings = json_array();
        json_t *foreign = NULL;
        json_t *drift = api_drift_maps(cfg, c, settings_warnings, &foreign);
        const char *state = api_state(ws, desired, json_array_size(drift));
        int64_t applied = json_integer_value(json_object_get(ws, "applied_generation"));
        json_int_t queued = json_integer_value(json_object_get(ws, "queued_jobs"));
        /* Jobs waiting or running will create the next generation: the backlog shows as
         * applied < desired (as the desired_generation gauge does). */
        if (queued > 0)
                desired = (desired > applied ? desired : applied) + 1;

        json_t *cert = cert_status(c, s.certificate, ws, warnings);
        json_t *additional = cert_status(c, s.additional_certificate, ws, warnings);
        json_array_extend(warnings, settings_warnings);
        json_decref(settings_warnings);
        json_object_set_new(ws, "drift", drift);
        if (json_array_size(drift) > 0)
                json_array_append_new(warnings,
                                      json_pack("{s:s, s:s}", "code", "drift", "detail",
                                                "managed main.cf parameters were edited by hand; "
                                                "the next apply restores them"));
        char why[POSTFIX_TRUST_WHY_MAX];
        bool need = false;
        struct problem unknown = { 0 };
        if (postfix_outbound_trust_recent(cfg, why, sizeof(why)) == 0 &&
            store_policies_need_trust(c, &need, &unknown) >= 0 && need)
                warnings_add(warnings, "no_trust_anchors",
                             "%s; the verify and secure TLS policies defer all mail to their "
                             "destinations",
                             why);
        /* smtp_tls_fingerprint_digest edited after the policies were written */
        struct fingerprint_digest digest;
        _cleanup_free_ char *fp_dest = NULL;
        postfix_fingerprint_digest_recent(cfg, &digest);
        if (digest.len && store_policies_digest_mismatch(c, digest.len, &fp_dest, &unknown) >= 0 &&
            fp_dest)
                warnings_add(warnings, "fingerprint_digest_mismatch",
                             "the fingerprint policy for '%s' (and maybe others) holds a digest "
                             "that Postfix's smtp_tls_fingerprint_digest (%s) cannot produce: it "
                             "never matches, and all mail to the destination is deferred",
                             fp_dest, digest.name);
        /* the probe watch's findings: a mandatory destination that would defer mail now */
        json_t *failing = NULL;
        int64_t n_failing = 0;
        if (store_probes_failing(c, 20, &failing, &n_failing, &unknown) >= 0) {
                size_t i;
                json_t *f;
                json_array_foreach (failing, i, f) {
                        const char *reason = json_string_value(json_object_get(f, "reason"));
                        warnings_add(warnings, "destination_fails_probe",
                                     "%s fails its level %s (probed %s): %s; mail to it is "
                                     "deferred until the destination or the policy changes",
                                     json_string_value(json_object_get(f, "destination")),
                                     json_string_value(json_object_get(f, "level")),
                                     json_string_value(json_object_get(f, "probed_at")),
                                     reason ? reason : "unreachable");
                }
                if (n_failing > (int64_t)json_array_size(failing))
                        warnings_add(warnings, "destination_fails_probe",
                                     "and %lld more policies fail their probes (GET "
                                     "/api/v1/probes?latest=true)",
                                     (long long)(n_failing - (int64_t)json_array_size(failing)));
                json_decref(failing);
        }
        problem_done(&unknown);
        /* The last job as GET /api/v1/jobs/{id} shows it (the worker knows only its id). */
        json_t *last_job = NULL;
        json_t *last_id = json_object_get(json_object_get(ws, "last_job"), "id");
        if (json_is_integer(last_id)) {
                struct problem ignore = { 0 };
                if (store_job_get(c, json_integer_value(last_id), &last_job, &ignore) < 0)
                        last_job = NULL;
                problem_done(&ignore);
        }
        json_t *fleet = NULL;
        if (api_fleet_summary(cfg, c, &fleet) < 0)
                fleet = json_null();
        bool running = postfix_running_recent(cfg);
        char version[32];
        postfix_version_recent(cfg, version, sizeof(version));
        json_t *body =
            json_pack("{s:s, s:I, s:I, s:I, s:o, s:{s:s, s:o, s:b}, s:o, s:o, s:O, s:o, s:s, s:O, "
                      "s:b}",
                      "state", state, "desired_generation", (json_int_t)desired,
                      "applied_generation", (json_int_t)applied, "queued_jobs", queued, "last_job",
                      last_job ? last_job : json_null(), "postfix", "config_directory",
                      cfg->postfix_config_directory, "version",
                      version[0] ? json_string(version) : json_null(), "running", running,
                      "certificate", cert, "additional_certificate", additional, "drift",
                      json_object_get(ws, "drift"), "warnings", warnings, "node", cfg->node_name,
                      "verification", json_object_get(ws, "verification"), "managed", s.managed);
        json_object_set_new(body, "fleet", fleet);
        /* what smtptlsd would take over: the TLS parameters at the first settings write, the
         * administrator's maps by an import */
        json_object_set_new(body, "takeover",
                            json_pack("{s:b, s:o}", "settings", !s.managed, "policy_maps",
                                      foreign ? foreign : json_array()));
        json_decref(ws);
        /* pollers (the console's overview) ask with If-None-Match: 304 while nothing changed */
        return reply_json_tagged(req, body, reterr);
}

int api_config(struct request *req, struct problem *reterr)
{
        const struct config *cfg = req->app->cfg;
        _cleanup_db_conn_ struct db_conn *c = NULL;
        struct desired d = { 0 };
        struct plan plan = { 0 };
        struct map_render *m = NULL;
        int64_t gen = 0;
        int r = db_acquire(req->app->db, &c, reterr);
        if (r >= 0)
                r = desired_load_cached(c, cfg->node_name, &d, &gen, &m, reterr);
        if (r >= 0)
                r = reconcile_plan(cfg, &d, &plan, reterr);
        if (r < 0) {
                desired_done(&d);
                plan_done(&plan);
                map_render_unref(m);
                return r;
        }
        json_t *params = json_object();
        const char *maps = NULL;
        for (size_t i = 0; i < plan.n_params; i++) {
                json_object_set_new(params, plan.params[i].name,
                                    plan.params[i].value ? json_string(plan.params[i].value)
                                                         : json_null());
                if (streq(plan.params[i].name, "smtp_tls_policy_maps"))
                        maps = plan.params[i].value;
        }
        /* The live part is serialized here; the map (a map of 100,000 rows is megabytes) goes in
         * as the JSON string cached with it: an unmanaged map is "". */
        bool with_map = plan.map_text != NULL;
        json_t *body =
            json_pack("{s:I, s:b, s:o, s:o, s:o, s:b}", "generation", (json_int_t)gen, "managed",
                      d.settings.managed, "main_cf", params, "tls_policy_map",
                      maps ? json_string(maps) : json_null(), "drift", reconcile_drift(cfg, &plan),
                      "tls_policy_map_drift", plan.map_changed);
        desired_done(&d);
        plan_done(&plan);
        char *head = body ? json_dumps(body, JSON_COMPACT) : NULL;
        json_decref(body);
        static const char key[] = ",\"tls_policy\":";
        const char *map = with_map ? m->json : "\"\"";
        size_t head_len = head ? strlen(head) : 0, map_len = with_map ? m->json_len : 2;
        size_t len = head_len - 1 + sizeof(key) - 1 + map_len + 2;
        char *text = head && head_len > 1 ? malloc(len + 1) : NULL;
        if (text) {
                /* head is "{...}": its closing brace goes after the map */
                size_t n = head_len - 1;
                memcpy(text, head, n);
                memcpy(text + n, key, sizeof(key) - 1);
                n += sizeof(key) - 1;
                memcpy(text + n, map, map_len);
                n += map_len;
                memcpy(text + n, "}\n", 3);
        }
        free(head);
        map_render_unref(m);
        if (!text)
                return problem_set_errno(reterr, -ENOMEM, PROBLEM_INTERNAL_ERROR, NULL,
                                         "out of memory");
        return reply_text(req, 200, "application/json", text, len);
}
