/* pending.c (api) - requests suspended while their job runs (see pending.h): the job's outcome
 * turned into the HTTP reply (status, Location, ETag, body), or 202 when the wait runs out. The
 * list is shared by the HTTP threads (add), the worker (a job's completion callback) and the
 * reaper thread (expiry, woken by a new earlier deadline or by the stop), under one mutex. */
#include "api/pending.h"

#include <microhttpd.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/api.h"
#include "app.h"
#include "apply/job.h"
#include "conf.h"
#include "core/resource.h"
#include "store/db.h"
#include "event.h"
#include "http/http.h"
#include "log.h"
#include "util.h"

#define FLEET_LOOK_USEC (1000 * 1000) /* the fleet looked at again without being told */

struct entry {
        struct entry *next;
        struct request *req;
        struct job *job;
        uint64_t deadline;
        bool fleet; /* ?wait=fleet */
        /* waiting for the fleet: the job is done here, this is what its reply needs (the job
         * itself is freed by the worker) */
        struct job *done;
};

struct pending {
        const struct app *app;
        pthread_mutex_t lock;
        pthread_cond_t wake; /* a new entry (perhaps the earliest deadline), or the stop */
        struct entry *entries;
        pthread_t reaper;
        bool stopping;
        bool nodes_changed; /* a node's row changed: the fleet's waits look again */
};

/* 202: the job is durable and will be applied; the client follows Location. A dry run has no
 * job to follow (it is not recorded): its plan did not come in time, 503 to ask again. */
static void reply_accepted(struct request *req, struct job *job)
{
        if (job->dry_run) {
                struct problem p = { .retry_after = 2 };
                problem_set(&p, PROBLEM_SERVICE_UNAVAILABLE, "wait",
                            "the worker is busy: the plan was not ready within the wait; ask "
                            "again");
                reply_problem(req, &p);
                problem_done(&p);
                return;
        }
        json_t *body = job_accepted_json(job);
        reply_header(req, "Location", "/api/v1/jobs/%lld", (long long)job->id);
        reply_header(req, "Job-Id", "%lld", (long long)job->id);
        if (body) {
                reply_json(req, 202, body);
                return;
        }
        struct problem p = { 0 };
        problem_set(&p, PROBLEM_INTERNAL_ERROR, NULL, "out of memory");
        reply_problem(req, &p);
        problem_done(&p);
}

/* The job's outcome in HTTP's words: a refusal's problem; a dry run's plan (200, it created and
 * deleted nothing); 201 with Location for a created resource, 204 for a deleted one, else 200;
 * the written resource's ETag. */
static void reply_outcome(struct request *req, struct job *job)
{
        if (job->id > 0)
                reply_header(req, "Job-Id", "%lld", (long long)job->id);
        if (job->failed) {
                reply_problem(req, &job->problem);
                return;
        }
        enum write_outcome outcome = job->dry_run ? JOB_REPLACED : job->outcome;
        enum resource_kind kind;
        if (outcome == JOB_DELETED) {
                reply_empty(req, 204);
                return;
        }
        char location[RESOURCE_PATH_MAX];
        if (outcome == JOB_CREATED && job_location(job->action, job->target, location))
                reply_header(req, "Location", "%s", location);
        if (!job->dry_run && job->versioned && resource_of_action(job->action, &kind) >= 0) {
                char etag[RESOURCE_ETAG_MAX];
                resource_etag(kind, job->version, etag);
                reply_header(req, "ETag", "%s", etag);
        }
        json_t *body = json_incref(job->result);
        if (json_is_object(body) && job->warnings && json_array_size(job->warnings) > 0)
                json_object_set(body, "warnings", job->warnings);
        reply_json(req, outcome == JOB_CREATED ? 201 : 200, body);
}

static void resume(struct entry *e)
{
        MHD_resume_connection(e->req->conn);
        job_free(e->done);
        free(e);
}

/* What the reply of a finished job needs, for a write that waits on for the fleet. */
static struct job *reply_snapshot(const struct job *job)
{
        struct job *s = calloc(1, sizeof(*s));
        if (!s)
                return NULL;
        s->id = job->id;
        memcpy(s->action, job->action, sizeof(s->action));
        memcpy(s->target, job->target, sizeof(s->target));
        s->result = json_incref(job->result);
        s->warnings = json_incref(job->warnings);
        s->outcome = job->outcome;
        s->versioned = job->versioned;
        s->version = job->version;
        s->generation = job->generation;
        return s;
}

/* The job's completion callback (worker thread, or the HTTP thread whose submit failed). */
static void job_done(struct job *job, void *arg)
{
        struct pending *p = arg;
        pthread_mutex_lock(&p->lock);
        for (struct entry **e = &p->entries; *e; e = &(*e)->next) {
                if ((*e)->job != job)
                        continue;
                struct entry *found = *e;
                /* made a generation, and the fleet was asked for: the reaper answers later */
                if (found->fleet && !job->failed && !job->dry_run && job->generation > 0 &&
                    (found->done = reply_snapshot(job))) {
                        found->job = NULL; /* freed by the worker once this returns */
                        found->deadline =
                            now_monotonic_usec() + (uint64_t)p->app->cfg->fleet_wait_timeout;
                        p->nodes_changed = true;
                        pthread_cond_signal(&p->wake);
                        break;
                }
                *e = found->next;
                reply_outcome(found->req, job);
                resume(found);
                break;
        }
        pthread_mutex_unlock(&p->lock);
}

int pending_add(struct pending *p, struct request *req, struct job *job, uint64_t deadline,
                bool fleet)
{
        struct entry *e = calloc(1, sizeof(*e));
        if (!e)
                return -ENOMEM;
        e->req = req;
        e->job = job;
        e->deadline = deadline;
        e->fleet = fleet;
        pthread_mutex_lock(&p->lock);
        if (p->stopping) { /* the daemon stops: nobody would answer it */
                pthread_mutex_unlock(&p->lock);
                free(e);
                return -ESHUTDOWN;
        }
        job->on_done = job_done;
        job->on_done_arg = p;
        if (!req->suspended) { /* a guarded write comes suspended already (api/guard.c) */
                req->suspended = true;
                MHD_suspend_connection(req->conn);
        }
        e->next = p->entries;
        p->entries = e;
        pthread_cond_signal(&p->wake);
        pthread_mutex_unlock(&p->lock);
        return 0;
}

/* Answers 202 to the requests whose wait ran out (all: every one); with the lock held. Returns
 * the earliest deadline left (UINT64_MAX: none). */
static uint64_t expire_locked(struct pending *p, bool all)
{
        uint64_t now = now_monotonic_usec(), next = UINT64_MAX;
        for (struct entry **e = &p->entries; *e;) {
                struct entry *x = *e;
                if (!all && x->deadline > now) {
                        if (x->deadline < next)
                                next = x->deadline;
                        e = &x->next;
                        continue;
                }
                *e = x->next;
                if (x->done)
                        reply_outcome(x->req, x->done); /* the fleet as last seen is in it */
                else
                        reply_accepted(x->req, x->job);
                resume(x);
        }
        return next;
}

/* The generations the fleet's waits are for, and whether there are any (with the lock held). */
static bool fleet_waits_locked(struct pending *p)
{
        for (struct entry *e = p->entries; e; e = e->next)
                if (e->done)
                        return true;
        return false;
}

/* Looks at the nodes (the lock released meanwhile) and answers each fleet wait whose generation
 * every node has applied, refused or is silent for; the others get the outcome as it stands,
 * kept for their deadline. With the lock held. */
static void fleet_look_locked(struct pending *p)
{
        p->nodes_changed = false;
        int64_t gens[64];
        size_t n = 0;
        for (struct entry *e = p->entries; e && n < ARRAY_SIZE(gens); e = e->next)
                if (e->done) {
                        bool seen = false;
                        for (size_t i = 0; i < n; i++)
                                seen = seen || gens[i] == e->done->generation;
                        if (!seen)
                                gens[n++] = e->done->generation;
                }
        json_t *outcomes[ARRAY_SIZE(gens)] = { 0 };
        pthread_mutex_unlock(&p->lock);
        {
                struct problem ignore = { 0 };
                _cleanup_db_conn_ struct db_conn *c = NULL;
                if (db_acquire(p->app->db, &c, &ignore) >= 0)
                        for (size_t i = 0; i < n; i++)
                                (void)api_fleet_outcome(p->app->cfg, c, gens[i], &outcomes[i]);
                problem_done(&ignore);
        }
        pthread_mutex_lock(&p->lock);
        for (struct entry **e = &p->entries; *e;) {
                struct entry *x = *e;
                json_t *o = NULL;
                for (size_t i = 0; x->done && i < n; i++)
                        if (gens[i] == x->done->generation)
                                o = outcomes[i];
                if (!o) {
                        e = &x->next;
                        continue;
                }
                /* a deletion's 204 has no body to carry it: its job does (GET /api/v1/jobs) */
                if (json_is_object(x->done->result))
                        json_object_set(x->done->result, "fleet", o);
                if (!json_is_true(json_object_get(o, "complete"))) {
                        e = &x->next;
                        continue;
                }
                *e = x->next;
                reply_outcome(x->req, x->done);
                resume(x);
        }
        for (size_t i = 0; i < n; i++)
                json_decref(outcomes[i]);
}

void pending_nodes_changed(void *arg)
{
        struct pending *p = arg;
        pthread_mutex_lock(&p->lock);
        p->nodes_changed = true;
        if (fleet_waits_locked(p))
                pthread_cond_signal(&p->wake);
        pthread_mutex_unlock(&p->lock);
}

static void *reaper_main(void *arg)
{
        struct pending *p = arg;
        pthread_mutex_lock(&p->lock);
        uint64_t looked = 0;
        while (!p->stopping) {
                /* the waits that ran out first: a look at the fleet may take a while */
                uint64_t next = expire_locked(p, false);
                bool fleet = fleet_waits_locked(p);
                if (fleet &&
                    (p->nodes_changed || now_monotonic_usec() - looked >= FLEET_LOOK_USEC)) {
                        fleet_look_locked(p);
                        looked = now_monotonic_usec();
                        continue; /* the lock was let go: look at everything again */
                }
                if (fleet && looked + FLEET_LOOK_USEC < next)
                        next = looked + FLEET_LOOK_USEC;
                if (next == UINT64_MAX) {
                        pthread_cond_wait(&p->wake, &p->lock);
                        continue;
                }
                uint64_t now = now_monotonic_usec();
                struct timespec ts = monotonic_after(next > now ? next - now : 0);
                pthread_cond_timedwait(&p->wake, &p->lock, &ts);
        }
        pthread_mutex_unlock(&p->lock);
        return NULL;
}

int pending_new(const struct app *app, struct pending **ret)
{
        struct pending *p = calloc(1, sizeof(*p));
        if (!p)
                return -ENOMEM;
        p->app = app;
        pthread_mutex_init(&p->lock, NULL);
        int r = cond_init_monotonic(&p->wake); /* the deadlines are monotonic */
        if (r < 0) {
                pthread_mutex_destroy(&p->lock);
                free(p);
                return r;
        }
        r = pthread_create(&p->reaper, NULL, reaper_main, p);
        if (r) {
                pthread_cond_destroy(&p->wake);
                pthread_mutex_destroy(&p->lock);
                free(p);
                return -r;
        }
        *ret = p;
        return 0;
}

void pending_stop(struct pending *p)
{
        if (!p)
                return;
        pthread_mutex_lock(&p->lock);
        bool was = p->stopping;
        p->stopping = true;
        pthread_cond_signal(&p->wake);
        pthread_mutex_unlock(&p->lock);
        if (!was)
                pthread_join(p->reaper, NULL);
        pthread_mutex_lock(&p->lock);
        expire_locked(p, true);
        pthread_mutex_unlock(&p->lock);
}

void pending_free(struct pending *p)
{
        if (!p)
                return;
        pending_stop(p);
        pthread_cond_destroy(&p->wake);
        pthread_mutex_destroy(&p->lock);
        free(p);
}
