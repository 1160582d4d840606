/* status.c (api) - GET /api/v1/status (is Postfix running what the database says, and is the
 * certificate served) and GET /api/v1/config (the rendered artefacts and any drift). HTTP
 * threads; they read files and run `postfix status`, never write. */
#include <stdio.h>
#include <time.h>

#include "smtptlsd/api.h"
#include "smtptlsd/app.h"
#include "smtptlsd/cert.h"
#include "smtptlsd/conf.h"
#include "smtptlsd/postfix.h"
#include "smtptlsd/reconcile.h"
#include "smtptlsd/store.h"
#include "smtptlsd/worker.h"

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
        const char *state = json_string_value(json_object_get(ws, "state"));
        int64_t applied = json_integer_value(json_object_get(ws, "applied_generation"));
        json_int_t queued = json_integer_value(json_object_get(ws, "queued_jobs"));
        if (streq(state, "in_sync") && applied != desired)
                state = "applying";
        /* Jobs waiting or running will create the next generation: the backlog shows as
         * applied < desired (as the desired_generation gauge does). */
        if (queued > 0)
                desired = (desired > applied ? desired : applied) + 1;

        json_t *cert = json_null();
        if (s.certificate[0]) {
                struct cert_row row;
                if (store_cert_by_name(c, s.certificate, &row, reterr) >= 0) {
                        long days =
                            row.not_after ? (long)cert_days_left(row.not_after, time(NULL)) : 0;
                        json_t *v = json_object_get(ws, "verification");
                        cert = json_pack("{s:s, s:o, s:O}", "name", row.name, "days_left",
                                         row.not_after ? json_integer(days) : json_null(),
                                         "served_fingerprint_matches",
                                         json_object_get(v, "served_fingerprint_matches"));
                        if (row.not_after && days < CERT_EXPIRING_DAYS)
                                json_array_append_new(warnings,
                                                      json_pack("{s:s, s:s}", "code",
                                                                "certificate_expiring", "detail",
                                                                "the bound certificate expires in "
                                                                "under 21 days"));
                        cert_row_done(&row);
                }
                json_t *details = NULL;
                struct problem ignore = { 0 };
                if (store_cert_get_json(c, s.certificate, &details, &ignore) >= 0 &&
                    json_is_true(json_object_get(details, "missing")))
                        json_array_append_new(warnings, json_pack("{s:s, s:s}", "code",
                                                                  "certificate_missing", "detail",
                                                                  "the bound ACME certificate's "
                                                                  "directory is gone"));
                json_decref(details);
                problem_done(&ignore);
        }
        /* Drift is what the live main.cf says now, not what it said at start-up. */
        json_t *drift = NULL;
        {
                struct desired d = { 0 };
                struct plan plan = { 0 };
                struct problem ignore = { 0 };
                if (desired_load(c, &d, &ignore) >= 0 &&
                    reconcile_plan(cfg, &d, &plan, &ignore) >= 0)
                        drift = reconcile_drift(cfg, &plan);
                desired_done(&d);
                plan_done(&plan);
                problem_done(&ignore);
        }
        if (!drift)
                drift = json_array();
        json_object_set_new(ws, "drift", drift);
        if (json_array_size(json_object_get(ws, "drift")) > 0)
                json_array_append_new(warnings,
                                      json_pack("{s:s, s:s}", "code", "drift", "detail",
                                                "managed main.cf parameters were edited by hand; "
                                                "the next apply restores them"));
        json_t *body = json_pack(
            "{s:s, s:I, s:I, s:I, s:O, s:{s:s, s:b}, s:o, s:O, s:o, s:s, s:O, s:b}", "state", state,
            "desired_generation", (json_int_t)desired, "applied_generation", (json_int_t)applied,
            "queued_jobs", queued, "last_job", json_object_get(ws, "last_job"), "postfix",
            "config_directory", cfg->postfix_config_directory, "running",
            postfix_running_recent(cfg), "certificate", cert, "drift", json_object_get(ws, "drift"),
            "warnings", warnings, "node", cfg->node_name, "verification",
            json_object_get(ws, "verification"), "managed", s.managed);
        json_decref(ws);
        return reply_json(req, 200, body);
}

int api_config(struct request *req, struct problem *reterr)
{
        const struct config *cfg = req->app->cfg;
        _cleanup_db_conn_ struct db_conn *c = NULL;
        struct desired d = { 0 };
        struct plan plan = { 0 };
        int64_t gen = 0;
        int r = db_acquire(req->app->db, &c, reterr);
        if (r >= 0)
                r = store_generation(c, &gen, false, reterr);
        if (r >= 0)
                r = desired_load(c, &d, reterr);
        if (r >= 0)
                r = reconcile_plan(cfg, &d, &plan, reterr);
        if (r < 0) {
                desired_done(&d);
                plan_done(&plan);
                return r;
        }
        json_t *params = json_object();
        for (size_t i = 0; i < plan.n_params; i++)
                json_object_set_new(params, plan.params[i].name,
                                    plan.params[i].value ? json_string(plan.params[i].value)
                                                         : json_null());
        json_t *body =
            json_pack("{s:I, s:b, s:o, s:s, s:o, s:b}", "generation", (json_int_t)gen, "managed",
                      d.settings.managed, "main_cf", params, "tls_policy_map",
                      plan.map_text ? plan.map_text : "", "drift", reconcile_drift(cfg, &plan),
                      "tls_policy_map_drift", plan.map_changed);
        desired_done(&d);
        plan_done(&plan);
        return reply_json(req, 200, body);
}
