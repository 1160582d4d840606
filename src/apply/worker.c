/* worker.c - the reconcile worker thread: it takes every queued job at once and hands them to
 * one batch (batch.c; a dry run is a batch of its own), puts them back when the database went
 * away, retries a spoiled batch job by job and completes each (worker_state.c); its start, stop
 * and status. Only this thread writes configuration rows and Postfix files; the HTTP threads
 * submit and read the status. */
#include "apply/worker.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include "app.h"
#include "apply/job.h"
#include "apply/postfix.h"
#include "apply/reconcile.h"
#include "apply/spawn.h"
#include "apply/verifier.h"
#include "apply/worker_internal.h"
#include "conf.h"
#include "core/sealed.h"
#include "event.h"
#include "log.h"
#include "metrics.h"
#include "notify.h"
#include "store/store.h"
#include "store/tx.h"
#include "util.h"

#define IDLE_TICK_USEC (500 * 1000)
#define DB_RETRY_USEC  (500 * 1000)

/* Puts jobs whose batch lost the database back at the head of the queue, as they were queued:
 * their requests keep waiting (a ?wait that ends answers 202) and nothing is recorded yet. */
static void requeue(struct worker *w, struct slot *slots, size_t n)
{
        struct queue_item *list = NULL, **tail = &list;
        for (size_t i = 0; i < n; i++) {
                struct job *job = slots[i].job;
                job_reset(job);
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
                r = tx_retry_later(r, &p) ? -ENOTCONN : 0;
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
        struct slot slots[WORKER_MAX_BATCH];
        size_t m = 0;

        for (size_t i = 0; i < n; i++) {
                struct job *job = jobs[i];
                if (job->retry && !job->dry_run) {
                        int k = settled_before(w, job);
                        if (k < 0) {
                                struct slot rest[WORKER_MAX_BATCH];
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
                                worker_complete_found(w, job);
                                continue;
                        }
                }
                if (job->dry_run) {
                        struct slot s = { .job = job };
                        if (batch_run(w, &s, 1, true) == -ECANCELED) {
                                /* stopping killed a tool the plan needed: no plan to show */
                                job_reset(job);
                                problem_set_errno(&job->problem, -ECANCELED,
                                                  PROBLEM_SERVICE_UNAVAILABLE, NULL,
                                                  "smtptlsd is stopping; ask again");
                                job->problem.retry_after = 2;
                        }
                        s.ok = job->problem.code == PROBLEM_NONE;
                        worker_complete(w, &s);
                        continue;
                }
                slots[m++] = (struct slot){ .job = job };
        }
        if (m == 0)
                return 0;
        int r = batch_run(w, slots, m, false);
        if (r == -ENOTCONN || r == -ECANCELED) {
                requeue(w, slots, m);
                return r;
        }
        if (r == -EAGAIN) {
                /* One job spoiled the batch (Postfix refused the combined result): run each
                 * alone so that the good ones land and the bad one fails by itself. */
                for (size_t i = 0; i < m; i++) {
                        job_reset(slots[i].job);
                        json_decref(slots[i].before);
                        json_decref(slots[i].after);
                        slots[i].before = slots[i].after = NULL;
                        int k = batch_run(w, &slots[i], 1, false);
                        if (k == -ENOTCONN || k == -ECANCELED) {
                                requeue(w, &slots[i], m - i);
                                m = i;
                                r = k;
                                break;
                        }
                }
        }
        for (size_t i = 0; i < m; i++)
                worker_complete(w, &slots[i]);
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

static void *worker_main(void *arg)
{
        struct worker *w = arg;
        static struct job *jobs[WORKER_MAX_BATCH];

        spawn_hooks_set(&(const struct spawn_hooks){ spawn_progress_stamp, &w->heartbeat });
        for (;;) {
                worker_touch(w);
                struct queue_item *list = queue_drain(&w->queue, IDLE_TICK_USEC);
                size_t n = 0;
                while (list && n < WORKER_MAX_BATCH) {
                        struct queue_item *next = list->next;
                        jobs[n++] = (struct job *)list;
                        list = next;
                }
                /* more than WORKER_MAX_BATCH: the rest waits for the next round, still first in
                 * line */
                queue_push_front(&w->queue, list);
                metrics_gauge_set(METRIC_QUEUE_DEPTH, (int64_t)queue_depth(&w->queue));
                if (n == 0) {
                        if (queue_closed(&w->queue))
                                break;
                        worker_follow_committed(w);
                        worker_node_heartbeat(w);
                        /* what /status asked of Postfix, checked here, not on its thread */
                        postfix_recent_refresh(w->app->cfg);
                        continue;
                }
                struct problem p = { 0 };
                int r = worker_ensure_db(w, &p);
                if (r < 0) {
                        /* Jobs are durable in the database: keep their requests waiting (their
                         * ?wait ends in a 202) and try again shortly. */
                        worker_set_state(w, "degraded", p.detail);
                        for (size_t i = n; i-- > 0;) {
                                jobs[i]->item.next = i + 1 < n ? &jobs[i + 1]->item : NULL;
                        }
                        queue_push_front(&w->queue, &jobs[0]->item);
                } else {
                        r = process(w, jobs, n);
                        if (r == -ENOTCONN)
                                worker_set_state(w, "degraded",
                                                 "the database went away during an apply");
                }
                problem_done(&p);
                if (r == -ECANCELED) {
                        log_notice("stopping: the running batch was interrupted; the %zu queued "
                                   "job(s) run at the next start",
                                   queue_depth(&w->queue));
                        break;
                }
                /* the database is away: wait a little (bounded; a stop ends the wait) */
                if (r < 0 && queue_wait_closed(&w->queue, DB_RETRY_USEC))
                        break;
                if (r < 0)
                        continue;
                metrics_gauge_set(METRIC_QUEUE_DEPTH, (int64_t)queue_depth(&w->queue));
        }
        return NULL;
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
        worker_initial_reconcile(w);
        /* Jobs a previous run acknowledged but did not finish go first. This runs before READY
         * and before any write is accepted (api_submit answers 503 until then), so no job can be
         * both recovered here and queued by an HTTP thread. */
        {
                static struct job *left[WORKER_MAX_BATCH];
                json_wipe_begin(); /* the rows hold the pending keys */
                size_t n = w->db.pg ? worker_recover(w, left, 0, WORKER_MAX_BATCH) : 0;
                json_wipe_end();
                for (size_t i = 0; i < n; i++)
                        queue_push(&w->queue, &left[i]->item);
                worker_publish_desired(w);
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

void worker_generation_committed(struct worker *w, int64_t gen)
{
        int64_t seen = atomic_load(&w->committed_generation);
        while (gen > seen && !atomic_compare_exchange_weak(&w->committed_generation, &seen, gen))
                ;
        if (gen > seen)
                queue_wake(&w->queue);
}

void worker_generation_read(struct worker *w, int64_t gen)
{
        pthread_mutex_lock(&w->lock);
        bool back = gen < w->applied_generation;
        pthread_mutex_unlock(&w->lock);
        if (!back) {
                worker_generation_committed(w, gen);
                return;
        }
        atomic_store(&w->committed_generation, gen);
        atomic_store(&w->generation_went_back, true);
        queue_wake(&w->queue);
}

void worker_retry_requested(struct worker *w)
{
        atomic_store(&w->retry_asked, true);
        queue_wake(&w->queue);
}

int worker_submit(struct worker *w, struct job *job)
{
        atomic_fetch_add(&w->backlog, 1);
        int r = queue_push(&w->queue, &job->item);
        if (r < 0)
                atomic_fetch_sub(&w->backlog, 1);
        worker_publish_desired(w);
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
        struct timespec ts = monotonic_after(limit);
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
