/* probe_watch.c - the probe watch (see probe_watch.h): its thread asks the database for the most
 * overdue policy, probes it through the runner, waits for the answer (bounded by probe_timeout),
 * records and judges it, and sleeps on the stop event between rounds. Its own thread. */
#include "apply/probe_watch.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app.h"
#include "apply/postfix.h"
#include "conf.h"
#include "core/policy.h"
#include "event.h"
#include "log.h"
#include "metrics.h"
#include "probe/report.h"
#include "probe/runner.h"
#include "store/db.h"
#include "store/probes.h"
#include "util.h"

#define SPACING_USEC (1000ull * 1000)      /* at most one watch probe a second */
#define IDLE_USEC    (30ull * 1000 * 1000) /* nothing due: look again after at most this */
#define RETRY_USEC   (10ull * 1000 * 1000) /* the database or the runner failed */
#define ANSWER_SLACK (10ull * 1000 * 1000) /* beyond probe_timeout for the answer to come */

struct probe_watch {
        struct app *app;
        pthread_t thread;
        struct stop_event stop;
        /* the probe in flight: answered by a probe thread */
        struct event answered;
        atomic_bool done;
        json_t *report;
        enum tls_level level;
        struct probe_target target;
};

static bool is_done(void *arg)
{
        return atomic_load(&((struct probe_watch *)arg)->done);
}

static void on_answer(const struct probe_report *r, bool cached, int status, void *arg)
{
        struct probe_watch *w = arg;
        if (r && status == 0)
                w->report = probe_report_json(r, &w->target, w->level, cached);
        atomic_store(&w->done, true);
        event_signal(&w->answered);
}

/* The gauge from the database. */
static void count_failing(struct db_conn *c)
{
        struct problem p = { 0 };
        json_t *items = NULL;
        int64_t total = 0;
        if (store_probes_failing(c, 1, &items, &total, &p) >= 0)
                metrics_gauge_set(METRIC_POLICIES_FAILING_PROBE, total);
        json_decref(items);
        problem_done(&p);
}

/* One round: the most overdue policy, probed and recorded. The time to sleep after it. */
static uint64_t round_once(struct probe_watch *w)
{
        const struct config *cfg = w->app->cfg;
        _cleanup_db_conn_ struct db_conn *c = NULL;
        struct problem p = { 0 };
        json_t *due = NULL;
        uint64_t sleep = SPACING_USEC;
        char why[256];
        char *match[POLICY_MATCH_MAX] = { 0 };
        size_t n_match = 0;
        int64_t id = 0;

        if (db_acquire(w->app->db, &c, &p) < 0 ||
            store_probe_due(c, cfg->probe_watch_interval / 1000000, &due, &p) < 0) {
                problem_done(&p);
                return RETRY_USEC;
        }
        if (!due) {
                count_failing(c);
                /* a quarter of the interval, so that a due one waits little */
                uint64_t quarter = (uint64_t)cfg->probe_watch_interval / 4;
                return quarter < SPACING_USEC ? SPACING_USEC
                       : quarter > IDLE_USEC  ? IDLE_USEC
                                              : quarter;
        }
        const char *dest = json_string_value(json_object_get(due, "destination"));
        const char *level = json_string_value(json_object_get(due, "level"));
        struct probe_destination d;
        if (!dest || !level || tls_level_from_string(level, &w->level) < 0 ||
            probe_destination_parse(dest, true, &d, why, sizeof(why)) < 0) {
                log_warning("probe watch: cannot probe %s: %s", dest ? dest : "?", why);
                sleep = RETRY_USEC;
                goto out;
        }
        json_t *m;
        size_t i;
        json_array_foreach (json_object_get(due, "match"), i, m)
                if (n_match < POLICY_MATCH_MAX && json_is_string(m))
                        match[n_match++] = (char *)json_string_value(m);
        postfix_smtp_for_probe(cfg, &d);
        w->target = probe_target_of(&d, (const char *const *)match, n_match);
        if (store_probe_insert(c, cfg->node_name, "watch", dest, level, "watch", &id, &p) < 0) {
                sleep = RETRY_USEC;
                goto out;
        }
        /* the connection goes back while the probe runs */
        db_release(TAKE_PTR(c));
        atomic_store(&w->done, false);
        w->report = NULL;
        if (probe_runner_submit(w->app->probes, &d, true, on_answer, w) < 0) {
                atomic_store(&w->done, true);
                sleep = RETRY_USEC;
        }
        event_wait(&w->answered, is_done, w, (uint64_t)cfg->probe_timeout + ANSWER_SLACK);
        if (!atomic_load(&w->done)) {
                /* not answered in time: it still will be; wait for it, the runner bounds it */
                log_warning("probe watch: the probe of %s is late", dest);
                while (!atomic_load(&w->done))
                        event_wait(&w->answered, is_done, w, ANSWER_SLACK);
        }
        bool passes = json_is_true(json_object_get(w->report, "passes"));
        bool reachable =
            json_is_true(json_object_get(json_object_get(w->report, "would_pass"), "none"));
        const char *outcome = !w->report  ? "cancelled"
                              : passes    ? "passed"
                              : reachable ? "failed"
                                          : "unreachable";
        if (!passes && w->report) {
                const char *reason = json_string_value(
                    json_object_get(json_object_get(w->report, "reasons"), level));
                log_warning("probe watch: %s now fails its level %s (%s): mail to it will be "
                            "deferred",
                            dest, level, reason ? reason : outcome);
        }
        if (db_acquire(w->app->db, &c, &p) >= 0) {
                json_t *rec = json_object_get(w->report, "recommended");
                if (w->report)
                        json_object_set_new(w->report, "id", json_integer(id));
                if (store_probe_finish(c, id, outcome, json_string_value(rec), w->report, false,
                                       &p) < 0)
                        log_warning("probe watch: cannot record the probe of %s: %s", dest,
                                    p.detail);
                count_failing(c);
        }
        probe_count_outcome(outcome, false);
out:
        json_decref(w->report);
        w->report = NULL;
        json_decref(due);
        problem_done(&p);
        return sleep;
}

static void *watch_main(void *arg)
{
        struct probe_watch *w = arg;
        while (!stop_event_is_set(&w->stop)) {
                uint64_t sleep = round_once(w);
                stop_event_wait(&w->stop, sleep);
        }
        return NULL;
}

int probe_watch_start(struct app *app, struct probe_watch **ret)
{
        *ret = NULL;
        if (app->cfg->probe_watch_interval == 0 || !app->probes)
                return 0;
        struct probe_watch *w = calloc(1, sizeof(*w));
        if (!w)
                return -ENOMEM;
        w->app = app;
        int r = stop_event_init(&w->stop);
        if (r >= 0)
                r = event_init(&w->answered);
        if (r >= 0)
                r = -pthread_create(&w->thread, NULL, watch_main, w);
        if (r < 0) {
                free(w);
                return r;
        }
        *ret = w;
        return 0;
}

void probe_watch_stop(struct probe_watch *w)
{
        if (!w)
                return;
        stop_event_set(&w->stop);
        pthread_join(w->thread, NULL);
        stop_event_destroy(&w->stop);
        event_destroy(&w->answered);
        free(w);
}
