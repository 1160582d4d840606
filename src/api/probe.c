/* probe.c (api) - POST /api/v1/probe: checks the request (the destination as a policy names it,
 * the level and match list asked about), finds the trust anchors Postfix's smtp client uses,
 * records the probe in the audit trail before anything connects, suspends the request and
 * hands the probe to the runner (probe/runner.h); the runner's thread answers it with the report
 * and its verdicts, and finishes the audit row. HTTP threads (the request), probe threads (the
 * answer). */
#include <errno.h>
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "api/probe_audit.h"
#include "app.h"
#include "apply/postfix.h"
#include "conf.h"
#include "core/json_spec.h"
#include "core/policy.h"
#include "core/policy_grammar.h"
#include "log.h"
#include "metrics.h"
#include "probe/report.h"
#include "probe/runner.h"
#include "store/db.h"
#include "store/probes.h"
#include "util.h"

static const char *const level_names[] = { "none",        "may",    "encrypt", "dane", "dane-only",
                                           "fingerprint", "verify", "secure",  NULL };

struct probe_body {
        const char *destination;
        const char *level;
        json_t *match;
        bool fresh;
};

static const struct json_spec probe_spec[] = {
        { "destination", JS_STRING, JS_REQUIRED, offsetof(struct probe_body, destination),
          .max = 1024 },
        { "level", JS_CHOICE, 0, offsetof(struct probe_body, level), .choices = level_names },
        { "match", JS_STRING_ARRAY, 0, offsetof(struct probe_body, match),
          .max = POLICY_MATCH_MAX },
        { "fresh", JS_BOOL, 0, offsetof(struct probe_body, fresh), .max = 0 },
        { 0 },
};

/* One request's probe, from the HTTP thread that took it to the probe thread that answers. */
struct asked {
        struct request *req;
        struct app *app;
        int64_t audit_id;
        enum tls_level level; /* _TLS_LEVEL_MAX: none asked */
        struct probe_destination dest;
        char *match[POLICY_MATCH_MAX];
        size_t n_match;
};

static void asked_free(struct asked *a)
{
        if (!a)
                return;
        for (size_t i = 0; i < a->n_match; i++)
                free(a->match[i]);
        free(a);
}

/* The runner's answer (a probe thread, or the HTTP thread for a cache hit). */
static void probe_answered(const struct probe_report *r, bool cached, int status, void *arg)
{
        struct asked *a = arg;
        struct probe_target t =
            probe_target_of(&a->dest, (const char *const *)a->match, a->n_match);
        json_t *report =
            r && status != -ECANCELED ? probe_report_json(r, &t, a->level, cached) : NULL;
        const char *outcome = probe_outcome(report);
        probe_audit_finish(a->app, a->audit_id, outcome, report, false);
        probe_count_outcome(outcome, cached);
        log_info("probe %lld of %s: %s%s, recommended %s", (long long)a->audit_id, a->dest.key,
                 outcome, cached ? " (cached)" : "",
                 report && json_string_value(json_object_get(report, "recommended"))
                     ? json_string_value(json_object_get(report, "recommended"))
                     : "none");
        if (report) {
                json_object_set_new(report, "id", json_integer(a->audit_id));
                reply_json(a->req, 200, report);
        } else {
                struct problem p = { 0 };
                if (status == -ECANCELED) {
                        problem_set(&p, PROBLEM_SERVICE_UNAVAILABLE, NULL,
                                    "the probe was cancelled: the daemon stops");
                } else {
                        problem_set(&p, PROBLEM_INTERNAL_ERROR, NULL,
                                    "the probe ran out of memory");
                }
                reply_problem(a->req, &p);
                problem_done(&p);
        }
        /* req->suspended stays set: the HTTP thread sends the reply when it is resumed */
        MHD_resume_connection(a->req->conn);
        asked_free(a);
}

/* The body's level and match list into a. */
static int take_level_and_match(const struct probe_body *b, struct asked *a, struct problem *reterr)
{
        a->level = _TLS_LEVEL_MAX;
        if (b->level && tls_level_from_string(b->level, &a->level) < 0)
                return problem_set(reterr, PROBLEM_INVALID_VALUE, "/level", "unknown level");
        size_t n = b->match ? json_array_size(b->match) : 0;
        if (n == 0)
                return 0;
        if (a->level != TLS_LEVEL_FINGERPRINT && a->level != TLS_LEVEL_VERIFY &&
            a->level != TLS_LEVEL_SECURE)
                return problem_set(reterr, PROBLEM_INVALID_VALUE, "/match",
                                   "match needs the level it belongs to: fingerprint, verify or "
                                   "secure");
        for (size_t i = 0; i < n; i++) {
                char field[32], out[FPR_MAX];
                snprintf(field, sizeof(field), "/match/%zu", i);
                int r = policy_match_item_normalize(
                    a->level, json_string_value(json_array_get(b->match, i)), out, field, reterr);
                if (r < 0)
                        return r;
                a->match[a->n_match] = strdup(out);
                if (!a->match[a->n_match])
                        return problem_set_errno(reterr, -ENOMEM, PROBLEM_INTERNAL_ERROR, NULL,
                                                 "out of memory");
                a->n_match++;
        }
        return 0;
}

int api_probe(struct request *req, struct problem *reterr)
{
        struct app *app = req->app;
        struct probe_body b = { 0 };
        json_t *j = NULL;
        char key[POLICY_DESTINATION_MAX + 1], why[256];
        struct asked *a = calloc(1, sizeof(*a));
        int r =
            a ? 0
              : problem_set_errno(reterr, -ENOMEM, PROBLEM_INTERNAL_ERROR, NULL, "out of memory");
        if (r >= 0)
                r = json_parse_body(req->body, req->body_len, &j, reterr);
        if (r >= 0)
                r = json_dispatch(j, probe_spec, &b, NULL, 0, "", reterr);
        if (r >= 0)
                r = policy_destination_normalize(b.destination, key, "/destination", reterr);
        if (r >= 0 && probe_destination_parse(key, false, &a->dest, why, sizeof(why)) < 0)
                r = problem_set(reterr, PROBLEM_INVALID_DESTINATION, "/destination", "%s", why);
        if (r >= 0)
                r = take_level_and_match(&b, a, reterr);
        if (r >= 0 && !app->probes)
                r = problem_set(reterr, PROBLEM_SERVICE_UNAVAILABLE, NULL,
                                "the probe is not running");
        if (r >= 0) {
                _cleanup_db_conn_ struct db_conn *c = NULL;
                r = db_acquire(app->db, &c, reterr);
                if (r >= 0)
                        r = store_probe_insert(
                            c, app->cfg->node_name, req->actor, key,
                            a->level < _TLS_LEVEL_MAX ? tls_level_to_string(a->level) : NULL,
                            "request", &a->audit_id, reterr);
        }
        bool fresh = b.fresh;
        json_decref(j);
        if (r < 0) {
                asked_free(a);
                return r;
        }
        postfix_smtp_for_probe(app->cfg, &a->dest);
        log_info("probe %lld of %s asked by %s", (long long)a->audit_id, key, req->actor);
        a->req = req;
        a->app = app;
        /* suspended before the runner may answer (from the cache: at once, on this thread) */
        req->suspended = true;
        MHD_suspend_connection(req->conn);
        r = probe_runner_submit(app->probes, &a->dest, fresh, probe_answered, a);
        if (r < 0) {
                struct problem p = { 0 };
                if (r == -EAGAIN) {
                        problem_set(&p, PROBLEM_SERVICE_UNAVAILABLE, NULL,
                                    "too many probes at once (probe_max_concurrent and "
                                    "probe_queue_limit): try again shortly");
                        p.retry_after = 5;
                        metrics_count(METRIC_PROBES_REFUSED, 1);
                } else {
                        problem_set(&p, PROBLEM_SERVICE_UNAVAILABLE, NULL,
                                    "the daemon stops: no probe is started");
                        metrics_count(METRIC_PROBES_CANCELLED, 1);
                }
                probe_audit_finish(app, a->audit_id, "cancelled", NULL, false);
                reply_problem(req, &p);
                problem_done(&p);
                MHD_resume_connection(req->conn);
                asked_free(a);
        }
        return HANDLER_SUSPENDED;
}

int api_probes_list(struct request *req, struct problem *reterr)
{
        _cleanup_db_conn_ struct db_conn *c = NULL;
        const char *dest = NULL;
        char key[POLICY_DESTINATION_MAX + 1], buf[1024];
        int limit = 100;
        int64_t next = 0;
        json_t *items = NULL;
        bool latest = false;
        int r = api_list_limit(req, &limit, reterr);
        if (r >= 0)
                r = request_query(req, "destination", buf, sizeof(buf), &dest, reterr);
        if (r >= 0)
                r = api_query_flag(req, "latest", &latest, reterr);
        if (r >= 0 && latest && dest)
                r = problem_set(reterr, PROBLEM_INVALID_VALUE, "latest",
                                "latest lists every destination's last probe: not with "
                                "destination (whose newest is the first of its list)");
        if (r >= 0 && dest)
                r = policy_destination_normalize(dest, key, "destination", reterr);
        if (r >= 0)
                r = db_acquire(req->app->db, &c, reterr);
        if (r >= 0 && latest)
                r = store_probe_latest(c, limit, &items, reterr);
        else if (r >= 0)
                r = store_probe_list(c, 0, dest ? key : NULL, limit, dest != NULL, &items, &next,
                                     reterr);
        if (r < 0)
                return r;
        return reply_json(req, 200, json_pack("{s:o}", "items", items));
}
