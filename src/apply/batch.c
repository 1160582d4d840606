/* batch.c - one batch of the worker: every job in its own SAVEPOINT of one transaction (a bad job
 * fails alone), then one generation, one render, one validation and one swap for the whole batch;
 * the transaction commits only after Postfix has the new files, and a failure on the way puts
 * the committed files back. A dry run stops after the plan and rolls back. Worker thread. */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app.h"
#include "apply/action.h"
#include "apply/job.h"
#include "apply/mastercf.h"
#include "apply/postfix.h"
#include "apply/reconcile.h"
#include "apply/spawn.h"
#include "apply/verifier.h"
#include "apply/worker_internal.h"
#include "conf.h"
#include "fault.h"
#include "log.h"
#include "metrics.h"
#include "store/store.h"
#include "store/tx.h"
#include "util.h"

/* One batch on its way: its jobs, the transaction's own failure, and what it rendered and did. */
struct batch {
        struct worker *w;
        struct slot *slots;
        size_t n;
        bool dry_run;
        struct problem p;      /* the batch's failure (not a job's own) */
        struct problem plan_p; /* a dry run's plan that cannot be applied (master.cf) */
        struct desired d;
        struct plan plan;
        struct apply_result res;
        int64_t gen;
        size_t ok;    /* jobs that ran without refusal */
        bool changed; /* a job changed the desired state */
        char served_before[WORKER_FINGERPRINT_MAX];
};

/* The warnings of one write, made in this one place for the write and for its dry run: the
 * job's own (a policy's), then the batch's: the bound certificate's and the modes' for a settings
 * write, and that Postfix is not running when the files change (files_change; running: whether
 * Postfix runs). */
static json_t *write_warnings(const struct job *job, json_t *settings_warn, bool files_change,
                              bool running)
{
        json_t *warnings = job->warnings ? json_deep_copy(job->warnings) : json_array();
        const struct action *a = action_find(job->action);
        if (a && (a->flags & ACTION_SETTINGS))
                json_array_extend(warnings, settings_warn);
        if (files_change && !running)
                warnings_add(warnings, "postfix_not_running",
                             "Postfix is not running: the new files are in place and will be used "
                             "when it starts");
        return warnings;
}

/* BEGIN, the one-writer lock, then each job in its own savepoint: a refused job is undone alone.
 * Fails (b->p set) only when the transaction itself does. */
static int run_jobs(struct batch *b)
{
        struct worker *w = b->w;
        struct state_versions was = { 0 }, now = { 0 };
        int r = tx_begin(&w->db, TX_WRITE, &b->p);
        if (r >= 0)
                r = store_generation(&w->db, &b->gen, true, &b->p); /* one writer across nodes */
        if (r >= 0)
                r = store_state_versions(&w->db, &was, &b->p);
        for (size_t i = 0; r >= 0 && i < b->n; i++) {
                struct slot *s = &b->slots[i];
                worker_touch(w);
                r = tx_savepoint(&w->db, &b->p);
                if (r < 0)
                        break;
                struct action_env env = { .cfg = w->app->cfg,
                                          .db = &w->db,
                                          .batch_generation = b->gen,
                                          .batch_dirty = b->changed };
                int k = action_run(&env, s->job, &s->before, &s->after);
                if (k < 0 && tx_retry_later(k, &s->job->problem)) {
                        problem_set(&b->p, PROBLEM_SERVICE_UNAVAILABLE, NULL, "%s",
                                    s->job->problem.detail);
                        r = -ENOTCONN;
                        break;
                }
                /* a failure that set no problem (a constraint the action did not foresee) is
                 * one all the same: the job fails, it is never "applied" with nothing written */
                if (k < 0 && s->job->problem.code == PROBLEM_NONE)
                        problem_set_errno(&s->job->problem, k, PROBLEM_INTERNAL_ERROR, NULL,
                                          "%s failed: %s", s->job->action, strerror(-k));
                r = tx_savepoint_end(&w->db, k >= 0, &b->p);
                if (r < 0)
                        break;
                s->ok = k >= 0 && s->job->problem.code == PROBLEM_NONE;
                b->ok += s->ok;
                /* A write that changes nothing changes no version: the job is applied, and
                 * the batch made of such jobs bumps no generation and touches no file. */
                r = store_state_versions(&w->db, &now, &b->p);
                s->changed = r >= 0 && s->ok && memcmp(&was, &now, sizeof(now)) != 0;
                if (s->ok && !s->changed && s->job->outcome == JOB_REPLACED)
                        s->job->outcome = JOB_UNCHANGED;
                b->changed = b->changed || s->changed;
                was = now;
        }
        return r;
}

/* A batch whose map text was larger returns its memory to the system (malloc_trim). */
#define MAP_TRIM_BYTES (1u << 20)

/* How often a batch forgets the policy map's old deletions (store_policies_prune_tombstones). */
#define TOMBSTONE_PRUNE_USEC (3600ull * 1000000)

/* At most hourly, in a savepoint of the batch's transaction: a prune that fails costs the
 * prune, not the batch's writes. */
static void prune_tombstones(struct batch *b)
{
        uint64_t now = now_monotonic_usec();
        if (now - b->w->tombstones_pruned_usec < TOMBSTONE_PRUNE_USEC)
                return;
        b->w->tombstones_pruned_usec = now;
        struct problem p = { 0 };
        int r = tx_savepoint(&b->w->db, &p);
        if (r >= 0) {
                r = store_policies_prune_tombstones(&b->w->db, &p);
                if (r < 0)
                        log_warning("cannot prune the policy map's old deletions: %s", p.detail);
                problem_done(&p);
                tx_savepoint_end(&b->w->db, r >= 0, &p);
        }
        problem_done(&p);
}

/* The generation this batch creates (or, when it changes nothing, the current one) goes into
 * the replies, the audit trail, and the state's tag. */
static int bump_generation(struct batch *b)
{
        int r = b->changed ? store_generation_bump(&b->w->db, &b->gen, &b->p) : 0;
        if (r >= 0 && b->changed)
                prune_tombstones(b);
        for (size_t i = 0; r >= 0 && i < b->n; i++) {
                struct slot *s = &b->slots[i];
                if (!s->ok)
                        continue;
                if (json_is_object(s->after))
                        json_object_set_new(s->after, "generation", json_integer(b->gen));
                if (json_is_object(s->job->result))
                        json_object_set_new(s->job->result, "generation", json_integer(b->gen));
                const struct action *a = action_find(s->job->action);
                if (a && (a->flags & ACTION_STATE))
                        job_set_version(s->job, b->gen);
        }
        return r;
}

/* A dry run's replies: the plan (valid, errors, the warnings the write would get), beside the
 * counts of a bulk replace, a rescan or a whole state; nothing created or deleted. */
static void dry_run_replies(struct batch *b)
{
        const struct config *cfg = b->w->app->cfg;
        json_t *pl = reconcile_plan_json(cfg, &b->plan);
        json_t *errors = json_array();
        for (size_t i = 0; i < b->n; i++)
                if (!b->slots[i].ok)
                        json_array_append_new(errors,
                                              problem_error_json(&b->slots[i].job->problem));
        if (b->plan_p.code)
                json_array_append_new(errors, problem_error_json(&b->plan_p));
        json_object_set_new(pl, "valid", json_boolean(json_array_size(errors) == 0));
        json_object_set_new(pl, "errors", errors);
        bool files_change = b->plan.main_cf_changed || b->plan.map_changed || b->plan.write_cert ||
                            b->plan.master_cf_changed;
        bool running = files_change && postfix_is_running(cfg);
        json_t *settings_warn = action_settings_warnings(cfg, &b->d, &b->plan);
        for (size_t i = 0; i < b->n; i++) {
                struct job *job = b->slots[i].job;
                json_t *mine = json_deep_copy(pl);
                json_object_set_new(mine, "warnings",
                                    b->slots[i].ok
                                        ? write_warnings(job, settings_warn, files_change, running)
                                        : json_array());
                const struct action *a = action_find(job->action);
                json_t *counts = a && (a->flags & ACTION_COUNTS) && json_is_object(job->result)
                                     ? json_deep_copy(job->result)
                                     : json_object();
                job_reset(job);
                json_object_set_new(counts, "plan", mine);
                job->result = counts;
        }
        json_decref(settings_warn);
        json_decref(pl);
}

static bool touches_settings(const struct batch *b)
{
        for (size_t i = 0; i < b->n; i++) {
                const struct action *a = action_find(b->slots[i].job->action);
                if (a && (a->flags & (ACTION_SETTINGS | ACTION_STATE)))
                        return true;
        }
        return false;
}

/* The files of a batch that changed something: rendered, validated, swapped, Postfix reloaded
 * when it must be (or for an ACME renewal: same paths, new certificate). */
static int apply_files(struct batch *b)
{
        struct worker *w = b->w;
        if (!b->changed)
                return 0; /* nothing to render: no swap, no postmap, no reload */
        if (b->plan.expect_fingerprint[0] && w->applied_fingerprint[0] &&
            !streq(b->plan.expect_fingerprint, w->applied_fingerprint))
                b->plan.reload = true;
        worker_set_state(w, "applying", NULL);
        snprintf(b->served_before, sizeof(b->served_before), "%s", w->applied_fingerprint);
        b->plan.generation = b->gen;
        int r = reconcile_apply(w->app->cfg, &b->plan, &b->res, &b->p);
        /* Postfix has the new files from this moment, whatever becomes of the batch: a batch that
         * loses the database after the reload (and is retried, or found committed) must not make
         * the next write reload again for the same certificate. An ACME certificate's files stay
         * new even then; only a restored main.cf is reloaded back (record_and_commit). */
        if (r >= 0 && b->res.reloaded)
                snprintf(w->applied_fingerprint, sizeof(w->applied_fingerprint), "%s",
                         b->plan.expect_fingerprint);
        return r;
}

/* Each job's warnings and audit record, then COMMIT. On failure the files are the committed
 * state again (or, the connection lost in COMMIT, perhaps the new one: the retry looks). */
static int record_and_commit(struct batch *b)
{
        struct worker *w = b->w;
        int r = 0;
        json_t *settings_warn = action_settings_warnings(w->app->cfg, &b->d, &b->plan);
        for (size_t i = 0; r >= 0 && i < b->n; i++) {
                struct slot *s = &b->slots[i];
                if (!s->ok)
                        continue;
                json_t *warnings =
                    write_warnings(s->job, settings_warn, b->res.swapped, b->res.postfix_running);
                json_decref(s->job->warnings);
                s->job->warnings = warnings;
                /* a job that changed nothing in a batch that did: no generation of its own */
                bool mine = s->changed;
                s->job->generation = mine ? b->gen : 0;
                struct job_outcome o = {
                        .status = "applied",
                        .generation = mine ? b->gen : 0,
                        .reload = mine && b->res.reloaded,
                        .postmap = mine && b->res.postmap,
                        .output = b->res.output,
                        .before = s->before,
                        .after = s->after,
                        .warnings = warnings,
                };
                r = s->job->id > 0 ? store_job_finish(&w->db, s->job->id, &o, &b->p) : 0;
        }
        json_decref(settings_warn);
        if (r >= 0) {
                fault_point("before_commit");
                r = tx_commit(&w->db, &b->p);
        }
        if (r < 0) {
                reconcile_restore(w->app->cfg, &b->plan, &b->res);
                if (b->res.swapped && b->res.reloaded) /* reloaded back to the previous main.cf */
                        snprintf(w->applied_fingerprint, sizeof(w->applied_fingerprint), "%s",
                                 b->served_before);
        }
        return r;
}

/* Committed: the jobs out of the backlog (no status between here and the replies says applying
 * for jobs the database has as applied), the generation live, the served certificate checked. */
static void committed(struct batch *b)
{
        struct worker *w = b->w;
        for (size_t i = 0; i < b->n; i++)
                if (b->slots[i].ok && !b->slots[i].settled) {
                        b->slots[i].settled = true;
                        atomic_fetch_sub(&w->backlog, 1);
                }
        /* A bulk replace's items are the unmanaged rows now: the next bulk reads against them. */
        for (size_t i = 0; i < b->n; i++) {
                struct job *j = b->slots[i].job;
                if (b->slots[i].ok && j->delta && j->delta->next && j->delta_tag.policies)
                        item_memo_publish(&w->app->bulk_memo, j->delta->next, j->delta_tag);
        }
        metrics_count(METRIC_JOBS_APPLIED, b->ok);
        if (b->res.master_swapped)
                reconcile_master_settled(w->app->cfg);
        if (!b->changed) {
                worker_publish_desired(w);
                return;
        }
        fault_point("after_commit");
        metrics_count(METRIC_RECONCILES, 1);
        if (b->res.postmap)
                metrics_count(METRIC_POSTMAP_RUNS, 1);
        worker_mark_applied(w, b->gen, b->res.reloaded);
        snprintf(w->applied_fingerprint, sizeof(w->applied_fingerprint), "%s",
                 b->plan.expect_fingerprint);
        if (!b->res.reloaded || !b->res.postfix_running)
                return;
        int64_t ids[WORKER_MAX_BATCH];
        size_t nids = 0;
        for (size_t i = 0; i < b->n; i++) /* the jobs the reload was for */
                if (b->slots[i].ok && b->slots[i].changed && b->slots[i].job->id > 0)
                        ids[nids++] = b->slots[i].job->id;
        worker_verify(w, &b->plan, ids, nids, false);
}

/* The batch could not be applied after its jobs ran: nothing committed, every job that had run
 * fails with the reason. -ECANCELED when the daemon is stopping and killed the running command
 * (the caller puts the jobs back, the next start runs them); -EAGAIN when more than one job ran
 * (the caller may run them one by one). */
static int fail_applied(struct batch *b)
{
        tx_rollback(&b->w->db);
        if (spawn_cancelled())
                return -ECANCELED;
        for (size_t i = 0; i < b->n; i++) {
                struct job *job = b->slots[i].job;
                if (!b->slots[i].ok)
                        continue;
                job_reset(job);
                problem_set(&job->problem, b->p.code, b->p.field, "%s", b->p.detail);
                b->slots[i].ok = false;
                job->output = b->res.output ? strdup(b->res.output) : NULL;
                job->postmap = b->res.postmap;
                job->reloaded = b->res.reloaded;
        }
        /* The live files are the committed ones again. A write refused for its own content (a
         * certificate that does not load) leaves the daemon in sync; a tool or the system failing
         * (postmap, reload, disk) makes it degraded until a later apply works. */
        /* (a category of the client's problem, not an errno: the tools' failures carry theirs) */
        if (b->p.code == PROBLEM_CERTIFICATE_UNUSABLE || b->p.code == PROBLEM_SERVICE_CONFLICT)
                worker_set_state(b->w, "in_sync", NULL);
        else
                worker_set_state(b->w, "degraded", b->p.detail);
        return b->ok > 1 ? -EAGAIN : 0;
}

/* Nothing of the batch is committed. Without the database the jobs are put back (-ENOTCONN: the
 * caller retries them once it answers); another failure fails them all (-EIO). */
static int fail_all(struct batch *b, int r)
{
        tx_rollback(&b->w->db);
        for (size_t i = 0; i < b->n; i++) {
                struct job *job = b->slots[i].job;
                if (job->problem.code == PROBLEM_NONE ||
                    job->problem.code == PROBLEM_SERVICE_UNAVAILABLE) {
                        job_reset(job);
                        problem_set(&job->problem, b->p.code ? b->p.code : PROBLEM_INTERNAL_ERROR,
                                    b->p.field, "%s", b->p.detail);
                }
                b->slots[i].ok = false;
        }
        return tx_retry_later(r, &b->p) ? -ENOTCONN : -EIO;
}

/* The milliseconds since *t, and *t moved to now (the debug line of a batch's phases). */
static double lap_ms(uint64_t *t)
{
        uint64_t now = now_monotonic_usec(), was = *t;
        *t = now;
        return (double)(now - was) / 1000.0;
}

int batch_run(struct worker *w, struct slot *slots, size_t n, bool dry_run)
{
        struct batch b = { .w = w, .slots = slots, .n = n, .dry_run = dry_run };
        /* phases: jobs, generation, desired state, plan, files, record + commit */
        double ms[6] = { 0 };
        uint64_t t = now_monotonic_usec();
        int r = run_jobs(&b);
        ms[0] = lap_ms(&t);
        if (r >= 0 && b.ok == 0 && !dry_run) { /* every job refused: nothing to do */
                tx_rollback(&w->db);
                r = 0;
                goto out;
        }
        if (r >= 0 && !dry_run)
                r = bump_generation(&b);
        ms[1] = lap_ms(&t);
        if (r < 0) {
                r = fail_all(&b, r);
                goto out;
        }
        r = desired_load(w->app->cfg, &w->db, &b.d, &b.p);
        ms[2] = lap_ms(&t);
        if (r >= 0)
                r = reconcile_plan(w->app->cfg, &b.d, &b.plan, &b.p);
        /* master.cf for a batch with a settings write (a policy write leaves it; the start and a
         * follower's apply make it too); a dry run's that cannot be made is its plan's error,
         * not the batch's */
        if (r >= 0 && touches_settings(&b) &&
            mastercf_plan(w->app->cfg, &b.d.settings, &b.plan, dry_run ? &b.plan_p : &b.p) < 0 &&
            !dry_run)
                r = -EPROTO;
        ms[3] = lap_ms(&t);
        if (r >= 0 && dry_run) {
                dry_run_replies(&b);
                tx_rollback(&w->db);
                r = 0;
                goto out;
        }
        if (r >= 0)
                r = apply_files(&b);
        ms[4] = lap_ms(&t);
        if (r >= 0) {
                r = record_and_commit(&b);
                ms[5] = lap_ms(&t);
                if (tx_retry_later(r, &b.p)) {
                        r = fail_all(&b, r);
                        goto out;
                }
        }
        if (r < 0) {
                r = fail_applied(&b);
                goto out;
        }
        committed(&b);
        r = 0;
out:
        log_debug("batch of %zu job(s)%s: jobs %.1f ms, generation %.1f ms, desired state %.1f ms "
                  "(map %s, %zu bytes), plan %.1f ms, files %.1f ms (postmap: %s), record and "
                  "commit %.1f ms",
                  n, dry_run ? " (dry run)" : "", ms[0], ms[1], ms[2],
                  b.d.map_incremental ? "edited" : "rendered whole", b.d.map_len, ms[3], ms[4],
                  b.res.postmap ? "yes" : "no", ms[5]);
        apply_result_done(&b.res);
        plan_done(&b.plan);
        bool large = b.d.map_len > MAP_TRIM_BYTES;
        desired_done(&b.d);
        problem_done(&b.p);
        problem_done(&b.plan_p);
        if (large) /* what a large map took goes back to the system, not to malloc's arenas */
                malloc_trim(0);
        return r;
}
