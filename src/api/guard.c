/* guard.c - the probe guard of policy writes (see guard.h): the destinations a write sets above
 * may, their probes (audited as reason 'guard'), the verdict when the last one ends, and then
 * either the refusal or the write itself, submitted from the probe thread onto the request that
 * stayed suspended. HTTP threads (guard_new, guard_add, guard_run) and probe threads (the
 * answers and the continuation). */
#include "api/guard.h"

#include <errno.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "api/probe_audit.h"
#include "app.h"
#include "apply/postfix.h"
#include "conf.h"
#include "log.h"
#include "metrics.h"
#include "probe/report.h"
#include "probe/runner.h"
#include "store/db.h"
#include "store/probes.h"
#include "util.h"

struct guard_dest {
        struct guard *g;
        struct probe_destination dest;
        enum tls_level level;
        char *match[POLICY_MATCH_MAX];
        size_t n_match;
        int64_t audit_id;
        json_t *report; /* the report's JSON with the verdict of level */
        bool passes;
        int status; /* the runner's: 0, -ECANCELED, -ENOMEM */
};

struct guard {
        struct request *req;
        struct app *app;
        bool force;
        char action[32];
        char target[300];
        json_t *jb;
        char *items;
        struct guard_dest *d;
        size_t n, cap;
        pthread_mutex_t lock;
        size_t waiting; /* probes not answered yet */
};

int guard_wanted(struct request *req, bool *probe, bool *force, struct problem *reterr)
{
        int r = api_query_flag(req, "probe", probe, reterr);
        if (r >= 0)
                r = api_query_flag(req, "force", force, reterr);
        if (r >= 0 && *force && !*probe)
                r = problem_set(reterr, PROBLEM_INVALID_VALUE, "force",
                                "force=true goes with probe=true");
        return r;
}

bool guard_level_needs_probe(enum tls_level level)
{
        return level != TLS_LEVEL_NONE && level != TLS_LEVEL_MAY;
}

struct guard *guard_new(struct request *req, bool force, const char *action, const char *target,
                        json_t *jb, char **items)
{
        struct guard *g = calloc(1, sizeof(*g));
        if (!g)
                return NULL;
        g->req = req;
        g->app = req->app;
        g->force = force;
        strcpy_bounded(g->action, sizeof(g->action), action);
        strcpy_bounded(g->target, sizeof(g->target), target);
        g->jb = json_incref(jb);
        g->items = items ? TAKE_PTR(*items) : NULL;
        pthread_mutex_init(&g->lock, NULL);
        return g;
}

void guard_free(struct guard *g)
{
        if (!g)
                return;
        for (size_t i = 0; i < g->n; i++) {
                for (size_t k = 0; k < g->d[i].n_match; k++)
                        free(g->d[i].match[k]);
                json_decref(g->d[i].report);
        }
        free(g->d);
        json_decref(g->jb);
        free(g->items);
        pthread_mutex_destroy(&g->lock);
        free(g);
}

void guard_set_items(struct guard *g, char **items)
{
        free(g->items);
        g->items = TAKE_PTR(*items);
}

int guard_add(struct guard *g, const struct policy *p, struct problem *reterr)
{
        size_t limit = (size_t)g->app->cfg->probe_guard_limit;
        if (g->n >= limit)
                return problem_set_errno(reterr, -E2BIG, PROBLEM_INVALID_VALUE, "probe",
                                         "the write sets more than %zu destinations above may: "
                                         "too many to probe (probe_guard_limit); write without "
                                         "probe=true, or probe them with POST /api/v1/probe",
                                         limit);
        if (g->n == g->cap) {
                size_t cap = g->cap ? 2 * g->cap : 4;
                struct guard_dest *grown = realloc(g->d, cap * sizeof(*grown));
                if (!grown)
                        return problem_set_errno(reterr, -ENOMEM, PROBLEM_INTERNAL_ERROR, NULL,
                                                 "out of memory");
                g->d = grown;
                g->cap = cap;
        }
        struct guard_dest *d = &g->d[g->n];
        char why[256];
        *d = (struct guard_dest){ .g = g, .level = p->level };
        /* any port: the administrator writes the policy, the probe follows it */
        if (probe_destination_parse(p->destination, true, &d->dest, why, sizeof(why)) < 0)
                return problem_set(reterr, PROBLEM_INVALID_DESTINATION, "/destination",
                                   "cannot probe %s: %s", p->destination, why);
        g->n++;
        for (size_t i = 0; i < p->n_match && i < POLICY_MATCH_MAX; i++) {
                d->match[i] = strdup(p->match[i]);
                if (!d->match[i])
                        return problem_set_errno(reterr, -ENOMEM, PROBLEM_INTERNAL_ERROR, NULL,
                                                 "out of memory");
                d->n_match++;
        }
        return 0;
}

/* Finishes every audit row: passed or failed (forced when the write went on past a failure). */
static void finish_audits(struct guard *g, bool forced)
{
        for (size_t i = 0; i < g->n; i++) {
                struct guard_dest *d = &g->d[i];
                const char *outcome = probe_outcome(d->status == 0 ? d->report : NULL);
                probe_audit_finish(g->app, d->audit_id, outcome, d->report, forced && !d->passes);
        }
}

/* The last probe ended (a probe thread): refuse, or write. */
static void conclude(struct guard *g)
{
        struct request *req = g->req;
        struct problem p = { 0 };
        struct guard_dest *failed = NULL;
        bool cancelled = false;
        for (size_t i = 0; i < g->n; i++) {
                cancelled |= g->d[i].status < 0;
                if (!failed && g->d[i].status == 0 && !g->d[i].passes)
                        failed = &g->d[i];
        }
        int r = 0;
        bool busy = false;
        for (size_t i = 0; i < g->n; i++)
                busy |= g->d[i].status == -EAGAIN;
        if (cancelled) {
                finish_audits(g, false);
                r = problem_set(&p, PROBLEM_SERVICE_UNAVAILABLE, NULL,
                                busy ? "too many probes at once (probe_max_concurrent and "
                                       "probe_queue_limit); nothing was written: try again shortly"
                                     : "the probe was cancelled: the daemon stops; nothing was "
                                       "written");
                p.retry_after = busy ? 5 : 2;
        } else if (failed && !g->force) {
                finish_audits(g, false);
                const char *why =
                    json_string_value(json_object_get(json_object_get(failed->report, "reasons"),
                                                      tls_level_to_string(failed->level)));
                problem_set(&p, PROBLEM_DESTINATION_FAILS_PROBE, g->n > 1 ? "/items" : "/level",
                            "%s fails %s: %s; nothing was written (force=true writes anyway)",
                            failed->dest.key, tls_level_to_string(failed->level),
                            why ? why : "see the probe");
                json_t *reports = json_array();
                for (size_t i = 0; i < g->n; i++)
                        json_array_append(reports, g->d[i].report);
                p.extra = json_pack("{s:o}", "probes", reports);
                r = -EINVAL;
        } else {
                finish_audits(g, failed != NULL);
                if (failed)
                        log_warning("%s by %s forced past a failing probe: %s fails %s", g->action,
                                    req->actor, failed->dest.key,
                                    tls_level_to_string(failed->level));
                r = g->items ? api_submit_items(req, g->action, g->target, g->jb, &g->items, &p)
                             : api_submit(req, g->action, g->target, g->jb, &p);
                if (r == HANDLER_SUSPENDED) { /* api/pending.c answers it */
                        guard_free(g);
                        return;
                }
        }
        if (r < 0)
                reply_problem(req, &p);
        problem_done(&p);
        guard_free(g);
        /* req->suspended stays set: the HTTP thread sends the reply when it is resumed */
        MHD_resume_connection(req->conn);
}

static void guard_answered(const struct probe_report *r, bool cached, int status, void *arg)
{
        struct guard_dest *d = arg;
        struct guard *g = d->g;
        struct probe_target t =
            probe_target_of(&d->dest, (const char *const *)d->match, d->n_match);
        d->status = r ? status : -ENOMEM;
        /* status -EAGAIN: refused by the runner (counted as refused) */
        if (r && status == 0) {
                d->report = probe_report_json(r, &t, d->level, cached);
                json_object_set_new(d->report, "id", json_integer(d->audit_id));
                d->passes = json_is_true(json_object_get(d->report, "passes"));
        }
        if (d->status == -EAGAIN)
                metrics_count(METRIC_PROBES_REFUSED, 1);
        else
                probe_count_outcome(probe_outcome(d->status == 0 ? d->report : NULL), cached);
        pthread_mutex_lock(&g->lock);
        bool last = --g->waiting == 0;
        pthread_mutex_unlock(&g->lock);
        if (last)
                conclude(g);
}

int guard_run(struct guard *g, struct problem *reterr)
{
        struct request *req = g->req;
        int r = 0;
        if (g->n == 0) {
                r = g->items ? api_submit_items(req, g->action, g->target, g->jb, &g->items, reterr)
                             : api_submit(req, g->action, g->target, g->jb, reterr);
                guard_free(g);
                return r;
        }
        if (!g->app->probes) {
                guard_free(g);
                return problem_set(reterr, PROBLEM_SERVICE_UNAVAILABLE, NULL,
                                   "the probe is not running");
        }
        for (size_t i = 0; i < g->n && r >= 0; i++) {
                struct guard_dest *d = &g->d[i];
                postfix_smtp_for_probe(g->app->cfg, &d->dest);
                r = probe_audit_insert(g->app, req->actor, d->dest.key,
                                       tls_level_to_string(d->level), "guard", &d->audit_id,
                                       reterr);
        }
        if (r < 0) {
                /* the rows recorded before the failure end as cancelled: nothing was probed */
                for (size_t i = 0; i < g->n && g->d[i].audit_id > 0; i++)
                        probe_audit_finish(g->app, g->d[i].audit_id, "cancelled", NULL, false);
                guard_free(g);
                return r;
        }
        g->waiting = g->n;
        req->suspended = true;
        MHD_suspend_connection(req->conn);
        /* Each answer may come before the next submit (from the cache, on this thread) and the
         * last one frees g: nothing of g is read after the last submit. */
        size_t n = g->n;
        struct guard_dest *ds = g->d;
        struct probe_runner *runner = g->app->probes;
        for (size_t i = 0; i < n; i++) {
                int k = probe_runner_submit(runner, &ds[i].dest, false, guard_answered, &ds[i]);
                if (k < 0) {
                        /* not started (too many at once, or stopping): the write does not
                         * happen */
                        struct probe_report none = { .dest = ds[i].dest, .cancelled = true };
                        guard_answered(&none, false, k == -EAGAIN ? -EAGAIN : -ECANCELED, &ds[i]);
                }
        }
        return HANDLER_SUSPENDED;
}
