/* pending.c (api) - requests suspended while their job runs (see pending.h): the job's outcome
 * turned into the HTTP reply (status, Location, ETag, body), or 202 when the wait runs out. The
 * list is shared by the HTTP threads (add), the worker (a job's completion callback) and the
 * reaper thread (expiry, woken by a new earlier deadline or by the stop), under one mutex. */
#include "api/pending.h"

#include <microhttpd.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

#include "apply/job.h"
#include "core/resource.h"
#include "event.h"
#include "http/http.h"
#include "log.h"
#include "util.h"

struct entry {
        struct entry *next;
        struct request *req;
        struct job *job;
        uint64_t deadline;
};

struct pending {
        pthread_mutex_t lock;
        pthread_cond_t wake; /* a new entry (perhaps the earliest deadline), or the stop */
        struct entry *entries;
        pthread_t reaper;
        bool stopping;
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
        free(e);
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
                *e = found->next;
                reply_outcome(found->req, job);
                resume(found);
                break;
        }
        pthread_mutex_unlock(&p->lock);
}

int pending_add(struct pending *p, struct request *req, struct job *job, uint64_t deadline)
{
        struct entry *e = calloc(1, sizeof(*e));
        if (!e)
                return -ENOMEM;
        e->req = req;
        e->job = job;
        e->deadline = deadline;
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
                reply_accepted(x->req, x->job);
                resume(x);
        }
        return next;
}

static void *reaper_main(void *arg)
{
        struct pending *p = arg;
        pthread_mutex_lock(&p->lock);
        while (!p->stopping) {
                uint64_t next = expire_locked(p, false);
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

int pending_new(struct pending **ret)
{
        struct pending *p = calloc(1, sizeof(*p));
        if (!p)
                return -ENOMEM;
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
