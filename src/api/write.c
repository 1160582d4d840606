/* write.c (api) - the common path of every write: ?wait and ?dry_run, the durable job row (and,
 * for an upload, its pending private key: never in the row), the hand-over to the worker, and the
 * suspended request. HTTP threads. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>

#include "api/api.h"
#include "api/pending.h"
#include "app.h"
#include "apply/job.h"
#include "apply/worker.h"
#include "conf.h"
#include "fault.h"
#include "core/etag.h"
#include "store/store.h"

#define WAIT_DEFAULT 30
#define WAIT_MAX     300

int api_query_flag(struct request *req, const char *name, bool *ret, struct problem *reterr)
{
        char buf[16];
        const char *v;
        *ret = false;
        int r = request_query(req, name, buf, sizeof(buf), &v, reterr);
        if (r <= 0)
                return r;
        if (streq(v, "true") || streq(v, "1") || streq(v, ""))
                *ret = true;
        else if (!streq(v, "false") && !streq(v, "0"))
                return problem_set(reterr, PROBLEM_INVALID_VALUE, name, "%s must be true or false",
                                   name);
        return 0;
}

/* One write: a private key (key_pem), a bulk's items (JSON text, taken) and their delta (taken)
 * travel beside the body. */
static int submit(struct request *req, const char *action, const char *target, json_t *body,
                  const char *key_pem, char **items, struct item_memo_delta **delta,
                  struct problem *reterr)
{
        char buf[16];
        int64_t wait = WAIT_DEFAULT;
        bool dry_run = false, fleet = false;
        int r;

        if (!atomic_load(&req->app->ready) || !req->app->worker) {
                problem_set(reterr, PROBLEM_SERVICE_UNAVAILABLE, NULL,
                            "smtptlsd is starting or stopping; try again shortly");
                reterr->retry_after = 2;
                return -EAGAIN;
        }
        const char *v;
        r = request_query(req, "wait", buf, sizeof(buf), &v, reterr);
        if (r < 0)
                return r;
        /* fleet: as the default wait, then on for the other nodes (api/pending.c) */
        fleet = v && streq(v, "fleet");
        if (v && !fleet && parse_int64(v, 0, WAIT_MAX, &wait) < 0)
                return problem_set(reterr, PROBLEM_INVALID_VALUE, "wait",
                                   "wait is a number of seconds from 0 to %d, or fleet", WAIT_MAX);
        r = api_query_flag(req, "dry_run", &dry_run, reterr);
        if (r < 0)
                return r;
        /* A malformed If-Match is the client's mistake, said now: no job is recorded for it. */
        const char *if_match = request_header(req, "If-Match");
        if (if_match && (r = if_match_check(if_match, reterr)) < 0)
                return r;

        /* The job owns a copy: the caller's body dies with the request. */
        json_t *request = json_pack("{s:o}", "body", body ? json_deep_copy(body) : json_null());
        if (if_match)
                json_object_set_new(request, "if_match", json_string(if_match));
        struct job *job = job_new(action, target, req->actor, request);
        json_decref(request);
        if (!job)
                return problem_set(reterr, PROBLEM_INTERNAL_ERROR, NULL, "out of memory");
        job->dry_run = dry_run;
        /* The key travels to the worker in memory; durable, it is only in pending_keys. */
        if (key_pem && !(job->secret = strdup(key_pem))) {
                job_free(job);
                return problem_set(reterr, PROBLEM_INTERNAL_ERROR, NULL, "out of memory");
        }
        job->items = items ? TAKE_PTR(*items) : NULL;
        job->delta = delta ? TAKE_PTR(*delta) : NULL;
        /* The job holds the request's slot (one bulk at a time) until it is done. */
        job->slot = TAKE_PTR(req->slot);

        /* Job ids and queue order must agree (the worker applies jobs in queue order, the
         * audit trail reads in id order): numbering and queueing happen under one lock. */
        static pthread_mutex_t order = PTHREAD_MUTEX_INITIALIZER;
        pthread_mutex_lock(&order);
        if (!dry_run) {
                _cleanup_db_conn_ struct db_conn *c = NULL;
                r = db_acquire(req->app->db, &c, reterr);
                if (r >= 0 && key_pem)
                        r = store_job_insert_with_key(c, req->app->cfg->node_name, req->actor,
                                                      action, target, job->request, job->items,
                                                      key_pem, req->app->cfg->kek, &job->id,
                                                      job->created_at, reterr);
                else if (r >= 0)
                        r = store_job_insert(c, req->app->cfg->node_name, req->actor, action,
                                             target, job->request, job->items, &job->id,
                                             job->created_at, reterr);
                if (r < 0) {
                        pthread_mutex_unlock(&order);
                        job_free(job);
                        return r;
                }
                /* The row has them now: the worker reads them from there. */
                free(TAKE_PTR(job->items));
        }
        if (wait == 0 && !dry_run) {
                /* Durable already: answer 202 (the job as GET /api/v1/jobs/{id} shows it now)
                 * and let the worker run it. */
                int64_t id = job->id;
                json_t *accepted = job_accepted_json(job);
                r = worker_submit(req->app->worker, job);
                pthread_mutex_unlock(&order);
                if (r < 0)
                        job_free(job); /* still queued in the database: the next start runs it */
                reply_header(req, "Location", "/api/v1/jobs/%lld", (long long)id);
                reply_header(req, "Job-Id", "%lld", (long long)id);
                if (!accepted)
                        return problem_set(reterr, PROBLEM_INTERNAL_ERROR, NULL, "out of memory");
                return reply_json(req, 202, accepted);
        }
        uint64_t deadline = now_monotonic_usec() + (uint64_t)(wait ? wait : WAIT_DEFAULT) * 1000000;
        fault_point("submit_before_wait");
        r = pending_add(req->app->pending, req, job, deadline, fleet);
        if (r == -ESHUTDOWN) {
                pthread_mutex_unlock(&order);
                job_free(job);
                problem_set_errno(reterr, -ESHUTDOWN, PROBLEM_SERVICE_UNAVAILABLE, NULL,
                                  "smtptlsd is stopping; the write was %s",
                                  dry_run ? "not run" : "recorded and runs at the next start");
                reterr->retry_after = 2;
                return -ESHUTDOWN;
        }
        if (r < 0) {
                pthread_mutex_unlock(&order);
                job_free(job);
                return problem_set(reterr, PROBLEM_INTERNAL_ERROR, NULL, "out of memory");
        }
        r = worker_submit(req->app->worker, job);
        pthread_mutex_unlock(&order);
        if (r < 0) {
                problem_set(&job->problem, PROBLEM_SERVICE_UNAVAILABLE, NULL,
                            "smtptlsd is stopping; the write was %s",
                            dry_run ? "not run" : "recorded and runs at the next start");
                job->failed = true;
                job_complete(job);
                job_free(job);
        }
        return HANDLER_SUSPENDED;
}

int api_submit(struct request *req, const char *action, const char *target, json_t *body,
               struct problem *reterr)
{
        return submit(req, action, target, body, NULL, NULL, NULL, reterr);
}

int api_submit_key(struct request *req, const char *action, const char *target, json_t *body,
                   const char *key_pem, struct problem *reterr)
{
        return submit(req, action, target, body, key_pem, NULL, NULL, reterr);
}

int api_submit_items(struct request *req, const char *action, const char *target, json_t *body,
                     char **items, struct problem *reterr)
{
        return submit(req, action, target, body, NULL, items, NULL, reterr);
}

int api_submit_bulk(struct request *req, const char *action, const char *target, json_t *body,
                    char **items, struct item_memo_delta **delta, struct problem *reterr)
{
        return submit(req, action, target, body, NULL, items, delta, reterr);
}

int api_submit_all(struct request *req, const char *action, const char *target, json_t *body,
                   const char *key_pem, char **items, struct problem *reterr)
{
        return submit(req, action, target, body, key_pem, items, NULL, reterr);
}
