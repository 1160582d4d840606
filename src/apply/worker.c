/* worker.c - the reconcile worker thread: drains the job queue and proves it is alive through a
 * heartbeat that the watchdog path reads. Runs on its own thread. */
#include "smtptlsd/worker.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "smtptlsd/app.h"
#include "smtptlsd/log.h"
#include "smtptlsd/metrics.h"
#include "smtptlsd/queue.h"
#include "smtptlsd/util.h"

#define IDLE_TICK_USEC (500 * 1000)

struct worker {
        struct app *app;
        struct queue queue;
        pthread_t thread;
        atomic_uint_fast64_t heartbeat;
};

static void *worker_main(void *arg)
{
        struct worker *w = arg;

        log_debug("worker started");
        for (;;) {
                atomic_store(&w->heartbeat, now_monotonic_usec());
                struct queue_item *list = queue_drain(&w->queue, IDLE_TICK_USEC);
                metrics_gauge_set(METRIC_QUEUE_DEPTH, (int64_t)queue_depth(&w->queue));
                if (!list && queue_closed(&w->queue))
                        break;
        }
        log_debug("worker stopped");
        return NULL;
}

int worker_start(struct app *app, struct worker **ret)
{
        struct worker *w = calloc(1, sizeof(*w));
        int r;

        if (!w)
                return -ENOMEM;
        w->app = app;
        atomic_store(&w->heartbeat, now_monotonic_usec());
        r = queue_init(&w->queue);
        if (r < 0) {
                free(w);
                return r;
        }
        r = pthread_create(&w->thread, NULL, worker_main, w);
        if (r) {
                queue_destroy(&w->queue);
                free(w);
                return -r;
        }
        *ret = w;
        return 0;
}

void worker_stop(struct worker *w)
{
        if (!w)
                return;
        queue_close(&w->queue);
        pthread_join(w->thread, NULL);
        queue_destroy(&w->queue);
        free(w);
}

uint64_t worker_heartbeat_age(struct worker *w)
{
        uint64_t now = now_monotonic_usec(), hb = atomic_load(&w->heartbeat);
        return now > hb ? now - hb : 0;
}
