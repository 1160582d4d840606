/* pending.c - requests suspended while their job runs (see pending.h). The list is shared by the
 * HTTP threads (add), the worker (complete) and the reaper thread (expire), under one mutex. */
#include "smtptlsd/pending.h"

#include <microhttpd.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

#include "smtptlsd/http.h"
#include "smtptlsd/job.h"
#include "smtptlsd/log.h"
#include "smtptlsd/util.h"

struct entry {
        struct entry *next;
        struct request *req;
        struct job *job;
        uint64_t deadline;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct entry *entries;
static pthread_t reaper;
static atomic_bool stopping;
static bool started;

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

static void reply_outcome(struct request *req, struct job *job)
{
        if (job->id > 0)
                reply_header(req, "Job-Id", "%lld", (long long)job->id);
        if (job->failed) {
                reply_problem(req, &job->problem);
                return;
        }
        if (job->location[0])
                reply_header(req, "Location", "%s", job->location);
        if (job->etag[0] && job->http_status != 204)
                reply_header(req, "ETag", "%s", job->etag);
        if (job->http_status == 204) {
                reply_empty(req, 204);
                return;
        }
        json_t *body = json_incref(job->result);
        if (json_is_object(body) && job->warnings && json_array_size(job->warnings) > 0)
                json_object_set(body, "warnings", job->warnings);
        reply_json(req, job->http_status, body);
}

static void resume(struct entry *e)
{
        struct MHD_Connection *conn = e->req->conn;
        MHD_resume_connection(conn);
        free(e);
}

int pending_add(struct request *req, struct job *job, uint64_t deadline)
{
        struct entry *e = calloc(1, sizeof(*e));
        if (!e)
                return -ENOMEM;
        e->req = req;
        e->job = job;
        e->deadline = deadline;
        req->suspended = true;
        MHD_suspend_connection(req->conn);
        pthread_mutex_lock(&lock);
        e->next = entries;
        entries = e;
        pthread_mutex_unlock(&lock);
        return 0;
}

void pending_complete(struct job *job)
{
        job_release_slot(job); /* before the reply: the client may send its next bulk at once */
        pthread_mutex_lock(&lock);
        for (struct entry **p = &entries; *p; p = &(*p)->next) {
                if ((*p)->job != job)
                        continue;
                struct entry *e = *p;
                *p = e->next;
                reply_outcome(e->req, job);
                resume(e);
                break;
        }
        pthread_mutex_unlock(&lock);
}

static void expire(bool all)
{
        uint64_t now = now_monotonic_usec();
        pthread_mutex_lock(&lock);
        for (struct entry **p = &entries; *p;) {
                struct entry *e = *p;
                if (!all && e->deadline > now) {
                        p = &e->next;
                        continue;
                }
                *p = e->next;
                reply_accepted(e->req, e->job);
                resume(e);
        }
        pthread_mutex_unlock(&lock);
}

void pending_flush(void)
{
        expire(true);
}

static void *reaper_main(void *arg)
{
        while (!stopping) {
                expire(false);
                sleep_unless(50000, &stopping);
        }
        return NULL;
}

int pending_start(void)
{
        stopping = false;
        int r = pthread_create(&reaper, NULL, reaper_main, NULL);
        if (r)
                return -r;
        started = true;
        return 0;
}

void pending_stop(void)
{
        if (!started)
                return;
        stopping = true;
        pthread_join(reaper, NULL);
        started = false;
        pending_flush();
}
