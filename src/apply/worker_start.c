/* worker_start.c - the reconcile worker's start, before its thread runs and before READY:
 * staging left by an interrupted apply cleaned, the ACME and system certificate files scanned,
 * private keys sealed (key_encryption_key_file), the committed state reconciled with the live
 * files, and the jobs a previous run acknowledged but did not finish taken up again. The thread
 * that calls worker_start (main). */
#include <stdio.h>
#include <stdlib.h>

#include "app.h"
#include "apply/map_state.h"
#include "apply/mastercf.h"
#include "apply/certsync.h"
#include "apply/job.h"
#include "apply/postfix.h"
#include "apply/reconcile.h"
#include "apply/stage.h"
#include "apply/worker_internal.h"
#include "conf.h"
#include "core/sealed.h"
#include "log.h"
#include "store/nodes.h"
#include "store/store.h"
#include "store/tx.h"
#include "util.h"

#define MAX_ATTEMPTS 3

/* Start-up, key_encryption_key_file configured: the plaintext keys left in the database are
 * sealed (one transaction, under the lock of one writer across nodes). Either way, certificates
 * whose key no configured key opens are named. */
static void keys_at_start(struct worker *w)
{
        const struct kek *kek = w->app->cfg->kek;
        struct problem p = { 0 };
        json_t *bad = NULL, *it;
        size_t i;
        int64_t gen = 0;
        int n = 0;
        if (kek) {
                int r = tx_begin(&w->db, TX_WRITE, &p);
                if (r >= 0)
                        r = store_generation(&w->db, &gen, true, &p);
                if (r >= 0)
                        r = store_certs_seal_keys(&w->db, kek, &n, &p);
                if (r >= 0)
                        r = tx_commit(&w->db, &p);
                if (r < 0) {
                        tx_rollback(&w->db);
                        log_error("cannot encrypt the private keys in the database: %s", p.detail);
                } else if (n > 0) {
                        log_notice("encrypted the private keys of %d certificate(s) with key %s "
                                   "(key_encryption_key_file)",
                                   n, kek->id);
                }
        }
        problem_reset(&p);
        if (store_certs_unreadable_keys(&w->db, kek, &bad, &p) >= 0)
                json_array_foreach (bad, i, it)
                        log_error("certificate '%s' is unusable: its private key is encrypted with "
                                  "key %s, and key_encryption_key_file %s",
                                  json_string_value(json_object_get(it, "name")),
                                  json_string_value(json_object_get(it, "key_id")),
                                  kek ? "holds another key" : "is not configured");
        json_decref(bad);
        problem_done(&p);
}

/* Why the committed state is applied outside a batch, and what that decides. */
struct occasion {
        const char *why;        /* in the log */
        const char *fail_state; /* the node's state when Postfix or the files refuse it */
        bool at_start;          /* nothing says what Postfix serves: check it even without a
                                 * reload, at once; a follower's check settles first */
};
static const struct occasion AT_START = { "start-up", "failed", true };
static const struct occasion FOLLOWING = { "fleet", "degraded", false };
static const struct occasion RETRYING = { "retry", "degraded", false };

/* Renders the committed state for this node's Postfix and applies it (stage, validate, swap,
 * reload when needed, verify; the last-known-good files stay on a failure), recording the
 * generation as applied; refused, the node's state is the occasion's fail_state with the
 * reason. */
static int apply_committed(struct worker *w, const struct occasion *o)
{
        const char *why = o->why, *fail_state = o->fail_state;
        const struct config *cfg = w->app->cfg;
        struct problem p = { 0 };
        struct desired d = { 0 };
        struct plan plan = { 0 };
        struct apply_result res = { 0 };
        int64_t gen = 0;
        int r = worker_ensure_db(w, &p);
        /* one snapshot: the generation, the settings and the map's changes of one commit */
        bool snapshot = r >= 0 && (r = tx_begin(&w->db, TX_SNAPSHOT, &p)) >= 0;
        if (r >= 0)
                r = store_generation(&w->db, &gen, false, &p);
        if (r >= 0)
                r = desired_load(cfg, &w->db, &d, &p);
        if (snapshot)
                tx_rollback(&w->db);
        /* a master.cf swap a crash cut short (at this start or an earlier one whose database
         * did not answer): its last-known-good version back first, unless committed */
        int recovered = r >= 0 ? reconcile_recover_master(cfg, gen) : 0;
        if (r >= 0)
                r = reconcile_plan(cfg, &d, &plan, &p);
        plan.generation = gen;
        /* master.cf is this node's: one it cannot take the services into (an entry of its own
         * on that port) leaves the rest of the generation to apply, and says so */
        struct problem master_p = { 0 };
        if (r >= 0 && mastercf_plan(cfg, &d.settings, &plan, &master_p) < 0)
                log_warning("%s: master.cf's submission services not applied: %s", why,
                            master_p.detail);
        if (r >= 0 && recovered > 0 && postfix_is_running(cfg))
                plan.reload = true;
        if (r >= 0 && o->at_start && plan.map_managed && !plan.map_changed &&
            stage_map_adopt(cfg, &plan) == 0)
                plan.map_changed = true;
        if (r >= 0) {
                json_t *drift = reconcile_drift(cfg, &plan);
                if (json_array_size(drift) > 0)
                        log_notice("main.cf differs from the committed state in %zu managed "
                                   "parameter(s): applying generation %lld (%s)",
                                   json_array_size(drift), (long long)gen, why);
                pthread_mutex_lock(&w->lock);
                json_decref(w->drift);
                w->drift = drift;
                pthread_mutex_unlock(&w->lock);
                /* Postfix may still hold an ACME certificate renewed while we were away (at the
                 * start nothing says what it was reloaded with); following the fleet, only when
                 * the certificate changed since this node's last reload, as a batch does */
                bool unknown = !w->applied_fingerprint[0],
                     renewed = plan.expect_fingerprint[0] &&
                               !streq(plan.expect_fingerprint, w->applied_fingerprint);
                for (size_t i = 0; i < plan.n_certs; i++)
                        if (plan.certs[i].acme_name[0] && (unknown || renewed) &&
                            postfix_is_running(cfg))
                                plan.reload = true;
                r = reconcile_apply(cfg, &plan, &res, &p);
                if (r >= 0)
                        snprintf(w->applied_fingerprint, sizeof(w->applied_fingerprint), "%s",
                                 plan.expect_fingerprint);
        }
        /* the database, not Postfix: the same generation is worth trying again, and it was not
         * refused (the registry would call it failed for a write waiting on the fleet) */
        bool database = r < 0 && p.code == PROBLEM_SERVICE_UNAVAILABLE;
        if (r < 0) {
                log_error("%s reconcile failed: %s", why, p.detail);
                worker_set_state(w, database ? "degraded" : fail_state, p.detail);
                struct problem ignore = { 0 };
                int64_t tried = gen ? gen : atomic_load(&w->committed_generation);
                if (w->db.pg && !database)
                        store_node_update(&w->db, cfg->node_name, w->applied_generation, fail_state,
                                          p.detail, tried, &ignore);
                /* refused: not tried again until a newer generation or a retry (the follow would
                 * otherwise take the generation a failed start-up tried for a new one) */
                if (!database)
                        w->follow_failed_generation = tried;
                problem_done(&ignore);
        } else {
                worker_mark_applied(w, gen, res.reloaded);
                if (res.master_swapped || recovered > 0)
                        reconcile_master_settled(cfg);
                if (master_p.code) {
                        worker_set_state(w, "degraded", master_p.detail);
                        struct problem ignore = { 0 };
                        if (w->db.pg)
                                store_node_update(&w->db, cfg->node_name, w->applied_generation,
                                                  "degraded", master_p.detail, gen, &ignore);
                        problem_done(&ignore);
                }
                /* what this node's smtpd serves now, for its row in the fleet's registry: after
                 * a reload, and at the start (nothing may have changed, but nothing was seen) */
                if (res.postfix_running && (res.reloaded || o->at_start))
                        worker_verify(w, &plan, NULL, 0, !o->at_start);
        }
        apply_result_done(&res);
        plan_done(&plan);
        desired_done(&d);
        problem_done(&p);
        problem_done(&master_p);
        return database ? -EAGAIN : r < 0 ? r : 0;
}

void worker_initial_reconcile(struct worker *w)
{
        const struct config *cfg = w->app->cfg;
        struct problem p = { 0 };
        int r;

        reconcile_cleanup_staging(cfg);
        /* At start nothing says the live map is committed state: swapped in by a batch whose
         * COMMIT a crash prevented, it holds rows the database never got. Until it is checked
         * against the committed state (stage_map_adopt) or built again, no edit builds on it. */
        map_state_forget(cfg);
        r = worker_ensure_db(w, &p);
        if (r >= 0)
                worker_register_node(w);
        if (r >= 0) {
                /* The files may have changed while we were away (renewals, a new system pair). */
                json_t *warnings = json_array(), *summary = NULL;
                struct problem sp = { 0 };
                int k = tx_begin(&w->db, TX_WRITE, &sp);
                if (k >= 0)
                        k = certsync_run(cfg, &w->db, warnings, &summary, &sp);
                if (k >= 0)
                        k = tx_commit(&w->db, &sp);
                if (k < 0) {
                        tx_rollback(&w->db);
                        log_warning("start-up certificate scan failed: %s", sp.detail);
                }
                problem_done(&sp);
                json_decref(warnings);
                json_decref(summary);
        }
        if (r >= 0)
                keys_at_start(w);
        if (r < 0) {
                log_error("start-up reconcile failed: %s", p.detail);
                worker_set_state(w, "failed", p.detail);
        } else {
                (void)apply_committed(w, &AT_START);
        }
        problem_done(&p);
        /* A failed start-up reconcile is reported, not fatal: the API must stay up to fix it. */
}

/* A retry asked of this node: the flag taken from its row; true when there was one. */
static bool take_retry(struct worker *w)
{
        if (!atomic_exchange(&w->retry_asked, false))
                return false;
        struct problem p = { 0 };
        bool requested = false;
        if (worker_ensure_db(w, &p) >= 0)
                (void)store_node_retry_take(&w->db, w->app->cfg->node_name, &requested, &p);
        problem_done(&p);
        return requested;
}

void worker_follow_committed(struct worker *w)
{
        bool retry = take_retry(w), back = atomic_exchange(&w->generation_went_back, false);
        int64_t committed = atomic_load(&w->committed_generation);
        pthread_mutex_lock(&w->lock);
        int64_t applied = w->applied_generation;
        pthread_mutex_unlock(&w->lock);
        back = back && committed < applied;
        /* a retry repairs, and a generation gone back may have taken rows the map has with it:
         * the map is built whole from the committed state */
        if (retry || back)
                map_state_forget(w->app->cfg);
        if (retry) {
                log_notice("a retry was asked of this node: applying the committed state again");
                w->follow_failed_generation = 0;
        } else if (back) {
                log_warning("the database's generation went back from %lld to %lld (a failover "
                            "to a replica without the last commits?): applying the committed "
                            "state again",
                            (long long)applied, (long long)committed);
                w->follow_failed_generation = 0;
        } else if (committed <= applied || committed == w->follow_failed_generation) {
                return;
        }
        if (!retry && !back)
                log_info("generation %lld was committed by another node: applying it",
                         (long long)committed);
        worker_set_state(w, "applying", "");
        /* refused (Postfix, the files): the last-known-good files stay, the node says degraded,
         * and the next generation (or a retry) is tried; not this one again and again */
        int r = apply_committed(w, retry ? &RETRYING : &FOLLOWING);
        if (r < 0 && r != -EAGAIN)
                w->follow_failed_generation = committed;
}

/* Jobs left queued in the database (by a crash, or by an HTTP thread whose push raced a stop):
 * they were acknowledged, so they run. */
size_t worker_recover(struct worker *w, struct job **jobs, size_t n, size_t cap)
{
        struct problem p = { 0 };
        json_t *rows = NULL, *row;
        size_t i;
        if (store_jobs_pending(&w->db, w->app->cfg->node_name, &rows, &p) < 0) {
                problem_done(&p);
                return n;
        }
        json_array_foreach (rows, i, row) {
                int64_t id = json_integer_value(json_object_get(row, "id"));
                bool known = false;
                for (size_t k = 0; k < n; k++)
                        if (jobs[k]->id == id)
                                known = true;
                if (known || n >= cap)
                        continue;
                int attempts = 0;
                struct job *job = job_new(json_string_value(json_object_get(row, "action")),
                                          json_string_value(json_object_get(row, "target")),
                                          json_string_value(json_object_get(row, "actor")),
                                          json_object_get(row, "request"));
                if (!job)
                        break;
                atomic_fetch_add(&w->backlog, 1);
                job->id = id;
                store_job_attempt(&w->db, id, &attempts, &p);
                if (attempts > MAX_ATTEMPTS)
                        problem_set(&job->problem, PROBLEM_INTERNAL_ERROR, NULL,
                                    "given up after %d attempts", MAX_ATTEMPTS);
                else if (store_job_key_open(w->app->cfg->kek, row, &job->secret, &job->problem) ==
                         -ENOMEM)
                        problem_set(&job->problem, PROBLEM_INTERNAL_ERROR, NULL, "out of memory");
                if (job->problem.code != PROBLEM_NONE) {
                        log_warning("job %lld (%s %s) left by a previous run fails: %s",
                                    (long long)id, job->action, job->target, job->problem.detail);
                        struct slot s = { .job = job };
                        worker_complete(w, &s);
                        continue;
                }
                log_notice("resuming job %lld (%s %s) left by a previous run", (long long)id,
                           job->action, job->target);
                jobs[n++] = job;
        }
        json_decref(rows);
        problem_done(&p);
        return n;
}
