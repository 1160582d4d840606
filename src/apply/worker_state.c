/* worker_state.c - the reconcile worker's state and how a job leaves it: the heartbeat, the
 * state and applied generation that /status shows (under the worker's lock), the gauges, the
 * worker's own database connection, and a job completed (its failure recorded, out of the
 * backlog, its waiter told, freed). Shared by worker.c, batch.c and worker_start.c; worker thread
 * (and the start-up, before it runs). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include "app.h"
#include "changes.h"
#include "apply/job.h"
#include "apply/postfix.h"
#include "apply/reconcile.h"
#include "apply/verifier.h"
#include "apply/worker_internal.h"
#include "conf.h"
#include "config.h"
#include "log.h"
#include "metrics.h"
#include "store/nodes.h"
#include "store/store.h"
#include "util.h"

void worker_touch(struct worker *w)
{
        atomic_store(&w->heartbeat, now_monotonic_usec());
}

void worker_set_state(struct worker *w, const char *state, const char *error)
{
        pthread_mutex_lock(&w->lock);
        snprintf(w->state, sizeof(w->state), "%s", state);
        if (error)
                snprintf(w->last_error, sizeof(w->last_error), "%s", error);
        pthread_mutex_unlock(&w->lock);
        changes_bump(); /* /status shows it */
}

/* The desired_generation gauge: the applied generation, plus one while jobs wait or run (the
 * generation their batch will create), so that "applied < desired" also sees a backlog. */
void worker_publish_desired(struct worker *w)
{
        pthread_mutex_lock(&w->lock);
        int64_t gen = w->applied_generation;
        pthread_mutex_unlock(&w->lock);
        metrics_gauge_set(METRIC_DESIRED_GENERATION, gen + (atomic_load(&w->backlog) > 0));
        changes_bump(); /* /status shows the backlog: queued_jobs, applying */
}

void worker_register_node(struct worker *w)
{
        const struct config *cfg = w->app->cfg;
        struct problem p = { 0 };
        /* asked of postconf now, not of the cached Postfix facts: loading those this early
         * would keep an administrator's later main.cf edit out of /status until they refresh */
        _cleanup_free_ char *postfix_version = NULL, *myhostname = NULL;
        if (postconf_value(cfg, "mail_version", &postfix_version) < 0)
                postfix_version = NULL;
        if (postconf_value(cfg, "myhostname", &myhostname) < 0)
                myhostname = NULL;
        if (store_node_register(&w->db, cfg->node_name, SMTPTLSD_VERSION,
                                postfix_version ? postfix_version : "",
                                myhostname ? myhostname : "", &p) < 0)
                log_warning("cannot register node %s: %s", cfg->node_name, p.detail);
        else
                w->node_heartbeat_usec = now_monotonic_usec();
        problem_done(&p);
}

void worker_verify(struct worker *w, const struct plan *p, const int64_t *ids, size_t n,
                   bool settle)
{
        struct verifier_expect expect[VERIFIER_EXPECT_MAX] = { 0 };
        size_t n_expect = 0;
        for (; n_expect < p->n_certs && n_expect < VERIFIER_EXPECT_MAX; n_expect++) {
                const struct plan_cert *pc = &p->certs[n_expect];
                snprintf(expect[n_expect].fingerprint, sizeof(expect[0].fingerprint), "%s",
                         pc->fingerprint);
                snprintf(expect[n_expect].key_type, sizeof(expect[0].key_type), "%s", pc->key_type);
        }
        struct verifier_service services[VERIFIER_SERVICES_MAX] = { 0 };
        size_t n_services = 0;
        for (; n_services < p->n_services && n_services < VERIFIER_SERVICES_MAX; n_services++) {
                const struct plan_service *ps = &p->services[n_services];
                snprintf(services[n_services].name, sizeof(services[0].name), "%s", ps->service);
                services[n_services].wrapper = ps->kind == SUBMISSION_IMPLICIT;
        }
        verifier_submit(w->verifier, ids, n, p->expect_starttls, expect, n_expect, services,
                        n_services, settle);
}

void worker_node_heartbeat(struct worker *w)
{
        uint64_t now = now_monotonic_usec();
        uint64_t every = (uint64_t)w->app->cfg->node_heartbeat_interval;
        if (now - w->node_heartbeat_usec < every)
                return;
        struct problem p = { 0 };
        w->node_heartbeat_usec = now; /* tried: the next one in an interval, whatever happens */
        if (worker_ensure_db(w, &p) >= 0 &&
            store_node_heartbeat(&w->db, w->app->cfg->node_name, &p) < 0)
                log_debug("node heartbeat: %s", p.detail);
        problem_done(&p);
}

int worker_ensure_db(struct worker *w, struct problem *reterr)
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

/* Generation gen is live in Postfix: status, metrics, node row, old certificate files. */
void worker_mark_applied(struct worker *w, int64_t gen, bool reloaded)
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
        worker_set_state(w, "in_sync", "");
        worker_publish_desired(w);
        metrics_gauge_set(METRIC_APPLIED_GENERATION, gen);
        if (reloaded)
                metrics_count(METRIC_RELOADS, 1);
        reconcile_prune_certs(w->app->cfg);
        store_node_update(&w->db, w->app->cfg->node_name, gen, "in_sync", "", 0, &p);
        problem_done(&p);
}

/* A job handed to the worker is done (applied, failed, or found finished): out of the backlog,
 * before its request gets the reply. */
static void job_settled(struct worker *w)
{
        atomic_fetch_sub(&w->backlog, 1);
        worker_publish_desired(w);
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
        changes_bump(); /* /status shows it */
}

void worker_complete(struct worker *w, struct slot *s)
{
        struct job *job = s->job;
        if (!s->ok && !job->dry_run)
                finish_failed(w, job);
        else if (!s->ok) /* a dry run whose plan could not be made: the client gets the problem */
                job->failed = true;
        if (!job->dry_run)
                record_last_job(w, job);
        if (!s->settled)
                job_settled(w);
        job_complete(job);
        json_decref(s->before);
        json_decref(s->after);
        job_free(job);
}

void worker_complete_found(struct worker *w, struct job *job)
{
        record_last_job(w, job);
        job_settled(w);
        job_complete(job);
        job_free(job);
}
