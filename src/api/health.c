/* health.c - /healthz (the process and its worker live), /readyz (database reached - an answer at
 * most 1 s old -, migrations and first reconcile done) and /metrics. HTTP threads. */
#include <stdatomic.h>
#include <stdio.h>
#include <time.h>

#include "smtptlsd/api.h"
#include "smtptlsd/app.h"
#include "smtptlsd/db.h"
#include "smtptlsd/metrics.h"
#include "smtptlsd/recent.h"
#include "smtptlsd/store.h"
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
        char *text = NULL;
        size_t len = 0;
        metrics_gauge_set(METRIC_READY, atomic_load(&req->app->ready) ? 1 : 0);
        int r = metrics_render(api_routes, api_routes_count, &text, &len);
        if (r < 0)
                return problem_set(reterr, PROBLEM_INTERNAL_ERROR, NULL, "out of memory");

        /* Per-certificate expiry, from the store (names are [a-z0-9._-]: safe as labels). */
        _cleanup_db_conn_ struct db_conn *c = NULL;
        json_t *items = NULL, *it;
        size_t i;
        struct problem ignore = { 0 };
        if (db_acquire(req->app->db, &c, &ignore) >= 0 &&
            store_cert_expiries(c, &items, &ignore) >= 0) {
                char *more = NULL;
                size_t cap = 160 + json_array_size(items) * 120, n;
                more = malloc(cap);
                if (more) {
                        n = (size_t)snprintf(more, cap,
                                             "# HELP smtptlsd_certificate_expiry_seconds Seconds "
                                             "until the certificate expires (negative: expired).\n"
                                             "# TYPE smtptlsd_certificate_expiry_seconds gauge\n");
                        long long now = (long long)time(NULL);
                        json_array_foreach (items, i, it) {
                                int w = snprintf(
                                    more + n, cap - n,
                                    "smtptlsd_certificate_expiry_seconds{name=\"%s\"} %lld\n",
                                    json_string_value(json_object_get(it, "name")),
                                    (long long)json_integer_value(
                                        json_object_get(it, "not_after")) -
                                        now);
                                if (w < 0 || (size_t)w >= cap - n)
                                        break;
                                n += (size_t)w;
                        }
                        char *all = realloc(text, len + n + 1);
                        if (all) {
                                memcpy(all + len, more, n + 1);
                                text = all;
                                len += n;
                        }
                        free(more);
                }
        }
        json_decref(items);
        problem_done(&ignore);
        return reply_text(req, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
}
