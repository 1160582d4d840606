/* jobs.c (api) - GET /api/v1/jobs (the audit trail, newest first; filters by status, actor,
 * action, target and time) and /api/v1/jobs/{id}. HTTP threads. */
#include <stdio.h>

#include "api/api.h"
#include "app.h"
#include "apply/action.h"
#include "core/cursor.h"
#include "store/store.h"

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

static const char *const job_statuses[] = { "queued", "running", "applied", "failed", NULL };

/* One filter value of ?name=: absent (NULL), or checked by its rule. */
static int filter_value(struct request *req, const char *name, char *buf, size_t size,
                        const char **ret, struct problem *reterr)
{
        int r = request_query(req, name, buf, size, ret, reterr);
        if (r <= 0)
                return r;
        if (!**ret)
                return problem_set(reterr, PROBLEM_INVALID_VALUE, name,
                                   "%s is empty; leave it out to list every job", name);
        return 0;
}

static int jobs_filter(struct request *req, struct job_filter *f, char (*bufs)[CURSOR_MAX],
                       struct problem *reterr)
{
        const char *after, *action, *since, *status;
        char pos[CURSOR_POSITION_MAX + 1];
        int r = filter_value(req, "after", bufs[0], CURSOR_MAX, &after, reterr);
        if (r >= 0)
                r = filter_value(req, "status", bufs[1], CURSOR_MAX, &status, reterr);
        if (r >= 0)
                r = filter_value(req, "actor", bufs[2], CURSOR_MAX, &f->actor, reterr);
        if (r >= 0)
                r = filter_value(req, "action", bufs[3], CURSOR_MAX, &action, reterr);
        if (r >= 0)
                r = filter_value(req, "target", bufs[4], CURSOR_MAX, &f->target, reterr);
        if (r >= 0)
                r = filter_value(req, "since", bufs[5], CURSOR_MAX, &since, reterr);
        if (r < 0)
                return r;
        if (after) {
                r = cursor_decode(CURSOR_JOBS, after, pos, sizeof(pos), reterr);
                if (r < 0)
                        return r;
                if (parse_int64(pos, 1, INT64_MAX, &f->before) < 0)
                        return problem_set(reterr, PROBLEM_INVALID_VALUE, "after",
                                           "after is not a valid cursor; use the `next` of the "
                                           "previous page");
        }
        if (status) {
                for (size_t i = 0; job_statuses[i] && !f->status; i++)
                        if (streq(job_statuses[i], status))
                                f->status = job_statuses[i];
                if (!f->status)
                        return problem_set(reterr, PROBLEM_INVALID_VALUE, "status",
                                           "status is one of queued, running, applied, failed");
        }
        if (f->actor && !name_is_valid(f->actor))
                return problem_set(reterr, PROBLEM_INVALID_VALUE, "actor",
                                   "actor is a token name or cli, acme-watch, reconcile: "
                                   "[a-z0-9][a-z0-9._-]{0,63}");
        /* ?action= takes the names of api/openapi.yaml's Job.action: the worker's actions */
        if (action) {
                const struct action *a = action_find(action);
                f->action = a ? a->name : NULL;
                if (!f->action)
                        return problem_set(reterr, PROBLEM_INVALID_VALUE, "action",
                                           "action is one of Job.action's values in "
                                           "api/openapi.yaml (settings.put, policies.put, "
                                           "certificates.post, ...)");
        }
        if (since && (parse_rfc3339(since, &f->since) < 0 || f->since <= 0))
                return problem_set(reterr, PROBLEM_INVALID_VALUE, "since",
                                   "since is an RFC 3339 date-time after 1970, e.g. "
                                   "2026-11-22T10:00:00Z");
        return 0;
}

int api_jobs_list(struct request *req, struct problem *reterr)
{
        _cleanup_db_conn_ struct db_conn *c = NULL;
        char bufs[6][CURSOR_MAX], cursor[CURSOR_MAX], id[24];
        struct job_filter f = { 0 };
        int64_t next = 0;
        int limit = 100;
        json_t *items = NULL;
        int r = api_list_limit(req, &limit, reterr);
        if (r >= 0)
                r = jobs_filter(req, &f, bufs, reterr);
        if (r >= 0)
                r = db_acquire(req->app->db, &c, reterr);
        if (r >= 0)
                r = store_job_list(c, &f, limit, &items, &next, reterr);
        if (r < 0)
                return r;
        json_t *body = json_pack("{s:o}", "items", items);
        snprintf(id, sizeof(id), "%lld", (long long)next);
        if (next && cursor_encode(CURSOR_JOBS, id, cursor, sizeof(cursor)) >= 0)
                json_object_set_new(body, "next", json_string(cursor));
        else
                json_object_set_new(body, "next", json_null());
        return reply_json_tagged(req, body, reterr);
}

int api_jobs_get(struct request *req, struct problem *reterr)
{
        _cleanup_db_conn_ struct db_conn *c = NULL;
        int64_t id;
        json_t *job = NULL;
        if (parse_int64(req->params[0], 1, INT64_MAX, &id) < 0)
                return problem_set_errno(reterr, -ENOENT, PROBLEM_NOT_FOUND, NULL, "no job %s",
                                         req->params[0]);
        int r = db_acquire(req->app->db, &c, reterr);
        if (r >= 0)
                r = store_job_get(c, id, &job, reterr);
        if (r < 0)
                return r;
        /* it made a generation: where in the fleet it is live (with two nodes or more) */
        json_t *gen = json_object_get(job, "generation"), *fleet = NULL;
        if (json_is_integer(gen) &&
            api_fleet_outcome(req->app->cfg, c, json_integer_value(gen), &fleet) >= 0) {
                if (json_array_size(json_object_get(fleet, "nodes")) > 1)
                        json_object_set(job, "fleet", fleet);
                json_decref(fleet);
        }
        return reply_json(req, 200, job);
}
