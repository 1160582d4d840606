/* jobs.c (api) - GET /api/v1/jobs (the audit trail, newest first) and /api/v1/jobs/{id}. HTTP
 * threads. */
#include <stdio.h>

#include "smtptlsd/api.h"
#include "smtptlsd/app.h"
#include "smtptlsd/store.h"

int api_list_limit(struct request *req, int *limit, struct problem *reterr)
{
        char buf[16];
        int64_t v = 100;
        const char *s;
        int r = request_query(req, "limit", buf, sizeof(buf), &s, reterr);
        if (r < 0)
                return r;
        if (s && parse_int64(s, 1, 1000, &v) < 0)
                return problem_set(reterr, PROBLEM_INVALID_VALUE, "limit",
                                   "limit is a number from 1 to 1000");
        *limit = (int)v;
        return 0;
}

int api_jobs_list(struct request *req, struct problem *reterr)
{
        _cleanup_db_conn_ struct db_conn *c = NULL;
        char buf[24];
        int64_t after = 0, next = 0;
        int limit = 100;
        json_t *items = NULL;
        int r = api_list_limit(req, &limit, reterr);
        if (r < 0)
                return r;
        const char *a;
        r = request_query(req, "after", buf, sizeof(buf), &a, reterr);
        if (r < 0)
                return r;
        if (a && parse_int64(a, 1, INT64_MAX, &after) < 0)
                return problem_set(reterr, PROBLEM_INVALID_VALUE, "after",
                                   "after is the cursor of a previous page");
        r = db_acquire(req->app->db, &c, reterr);
        if (r >= 0)
                r = store_job_list(c, after, limit, &items, &next, reterr);
        if (r < 0)
                return r;
        json_t *body = json_pack("{s:o}", "items", items);
        if (next) {
                snprintf(buf, sizeof(buf), "%lld", (long long)next);
                json_object_set_new(body, "next", json_string(buf));
        } else {
                json_object_set_new(body, "next", json_null());
        }
        return reply_json(req, 200, body);
}

int api_jobs_get(struct request *req, struct problem *reterr)
{
        _cleanup_db_conn_ struct db_conn *c = NULL;
        int64_t id;
        json_t *job = NULL;
        if (parse_int64(req->params[0], 1, INT64_MAX, &id) < 0)
                return problem_set(reterr, PROBLEM_NOT_FOUND, NULL, "no job %s", req->params[0]);
        int r = db_acquire(req->app->db, &c, reterr);
        if (r >= 0)
                r = store_job_get(c, id, &job, reterr);
        if (r < 0)
                return r;
        return reply_json(req, 200, job);
}
