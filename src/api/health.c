/* health.c - /healthz (the process and its worker live), /readyz (database reached - an answer at
 * most 1 s old -, migrations and first reconcile done) and /metrics. HTTP threads. */
#include <stdatomic.h>
#include <stdio.h>
#include <time.h>

#include "api/api.h"
#include "app.h"
#include "apply/verifier.h"
#include "apply/worker.h"
#include "metrics.h"
#include "recent.h"
#include "store/db.h"
#include "store/nodes.h"
#include "store/store.h"
#include "conf.h"

/* A worker that has shown no progress for this long is stuck: its waits are all bounded. */
#define WORKER_STUCK_USEC (60ull * 1000000)

int api_healthz(struct request *req, struct problem *reterr)
{
        struct app *app = req->app;
        if (app->worker && worker_heartbeat_age(app->worker) > WORKER_STUCK_USEC) {
                problem_set(reterr, PROBLEM_SERVICE_UNAVAILABLE, NULL,
                            "the reconcile worker has made no progress for %llu s",
                            (unsigned long long)(worker_heartbeat_age(app->worker) / 1000000));
                return -EBUSY;
        }
        return reply_json(req, 200, json_pack("{s:s}", "status", "ok"));
}

/* Ready means the database answers now, not that it did once; but /readyz needs no token, so a
 * flood of it must not become a flood of queries: one SELECT 1 per READYZ_MAX_AGE_USEC at most. */
#define READYZ_MAX_AGE_USEC (1000000ull)
static struct recent_answer database_answers = RECENT_ANSWER_INIT(READYZ_MAX_AGE_USEC);

static bool ask_database(void *db)
{
        _cleanup_db_conn_ struct db_conn *c = NULL;
        struct problem ignore = { 0 };
        int r = db_acquire(db, &c, &ignore);
        if (r >= 0)
                r = db_exec(c, NULL, &ignore, "SELECT 1", 0, NULL);
        problem_done(&ignore);
        return r >= 0;
}

int api_readyz(struct request *req, struct problem *reterr)
{
        struct app *app = req->app;
        if (!atomic_load(&app->ready)) {
                problem_set(reterr, PROBLEM_SERVICE_UNAVAILABLE, NULL,
                            "starting: waiting for the database and the first reconcile");
                return -EAGAIN;
        }
        /* A yes is dropped at once when the database was lost since (a request found it gone,
         * or the server closed an idle connection: it stopped); neither costs a query. */
        uint64_t lost =
            db_pool_idle_open(app->db) ? db_pool_failed_usec(app->db) : now_monotonic_usec();
        if (lost)
                recent_revoke(&database_answers, lost);
        if (!recent_get(&database_answers, ask_database, app->db)) {
                problem_set(reterr, PROBLEM_SERVICE_UNAVAILABLE, NULL,
                            "the database does not answer; try again shortly");
                reterr->retry_after = 2;
                return -ENOTCONN;
        }
        return reply_json(req, 200, json_pack("{s:s}", "status", "ready"));
}

int api_metrics(struct request *req, struct problem *reterr)
{
        struct app *app = req->app;
        _cleanup_db_conn_ struct db_conn *c = NULL;
        struct problem ignore = { 0 };
        json_t *items = NULL, *ws = NULL, *drift = NULL, *it;
        int64_t desired = 0;
        char served[VERIFIER_EXPECT_MAX * 96] = "";
        size_t i;

        metrics_gauge_set(METRIC_READY, atomic_load(&app->ready) ? 1 : 0);
        struct metrics_live live = { 0 };
        live.database_up = db_acquire(app->db, &c, &ignore) >= 0 &&
                           store_generation(c, &desired, false, &ignore) >= 0 &&
                           store_cert_expiries(c, app->cfg->node_name, &items, &ignore) >= 0;
        /* The worker exists once the daemon is ready; before, state and drift are unknown. */
        if (atomic_load(&app->ready) && app->worker) {
                ws = worker_status(app->worker);
                worker_served_fingerprint(app->worker, served, sizeof(served));
                live.served_fingerprint = served;
                if (live.database_up) {
                        drift = api_drift(app->cfg, c, NULL);
                        live.drift = (int64_t)json_array_size(drift);
                        live.state = api_state(ws, desired, json_array_size(drift));
                }
        }
        _cleanup_free_ struct metrics_certificate *certs =
            calloc(json_array_size(items) + 1, sizeof(*certs));
        long long now = (long long)time(NULL);
        json_array_foreach (items, i, it) {
                if (!certs)
                        break;
                certs[i] = (struct metrics_certificate){
                        .name = json_string_value(json_object_get(it, "name")),
                        .type = json_string_value(json_object_get(it, "type")),
                        .in_use = json_is_true(json_object_get(it, "in_use")),
                        .expiry_seconds =
                            json_integer_value(json_object_get(it, "not_after")) - now,
                };
                live.n_certificates = i + 1;
        }
        live.certificates = certs;
        /* the fleet's registry: each node's state and how far behind it is */
        json_t *nodes = NULL, *n;
        _cleanup_free_ struct metrics_node *mn = NULL;
        if (live.database_up &&
            store_nodes_list(c, 3 * (uint64_t)app->cfg->node_heartbeat_interval, &nodes, &ignore) >=
                0 &&
            (mn = calloc(json_array_size(nodes) + 1, sizeof(*mn)))) {
                json_array_foreach (nodes, i, n) {
                        int64_t applied =
                            json_integer_value(json_object_get(n, "applied_generation"));
                        mn[i] = (struct metrics_node){
                                .name = json_string_value(json_object_get(n, "name")),
                                .state = json_string_value(json_object_get(n, "state")),
                                .lag = desired > applied ? desired - applied : 0,
                        };
                }
                live.nodes = mn;
                live.n_nodes = json_array_size(nodes);
        }

        char *text = NULL;
        size_t len = 0;
        /* the request metrics' labels: the route patterns and the method names */
        const char *routes[64], *methods[HTTP_METHOD_COUNT];
        size_t n_routes =
            api_routes_count < ARRAY_SIZE(routes) ? api_routes_count : ARRAY_SIZE(routes);
        for (size_t k = 0; k < n_routes; k++)
                routes[k] = api_routes[k].pattern;
        for (size_t k = 0; k < HTTP_METHOD_COUNT; k++)
                methods[k] = http_methods[k].name;
        struct metrics_labels labels = { routes, n_routes, methods, HTTP_METHOD_COUNT };
        int r = metrics_render(&labels, &live, &text, &len);
        json_decref(items);
        json_decref(nodes);
        json_decref(ws);
        json_decref(drift);
        problem_done(&ignore);
        if (r < 0)
                return problem_set_errno(reterr, -ENOMEM, PROBLEM_INTERNAL_ERROR, NULL,
                                         "out of memory");
        return reply_text(req, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
}
