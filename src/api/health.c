/* health.c - /healthz (the process and its worker live), /readyz (database reached, migrations
 * and first reconcile done) and /metrics. HTTP threads. */
#include <stdatomic.h>

#include "smtptlsd/api.h"
#include "smtptlsd/app.h"
#include "smtptlsd/db.h"
#include "smtptlsd/metrics.h"
#include "smtptlsd/worker.h"

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

int api_readyz(struct request *req, struct problem *reterr)
{
        struct app *app = req->app;
        if (!atomic_load(&app->ready)) {
                problem_set(reterr, PROBLEM_SERVICE_UNAVAILABLE, NULL,
                            "starting: waiting for the database and the first reconcile");
                return -EAGAIN;
        }
        /* Ready means the database answers now, not that it did once. */
        _cleanup_db_conn_ struct db_conn *c = NULL;
        int r = db_acquire(app->db, &c, reterr);
        if (r >= 0)
                r = db_exec(c, NULL, reterr, "SELECT 1", 0, NULL);
        if (r < 0)
                return r;
        return reply_json(req, 200, json_pack("{s:s}", "status", "ready"));
}

int api_metrics(struct request *req, struct problem *reterr)
{
        char *text = NULL;
        size_t len = 0;
        metrics_gauge_set(METRIC_READY, atomic_load(&req->app->ready) ? 1 : 0);
        int r = metrics_render(api_routes, api_routes_count, &text, &len);
        if (r < 0)
                return problem_set(reterr, PROBLEM_INTERNAL_ERROR, NULL, "out of memory");
        return reply_text(req, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
}
