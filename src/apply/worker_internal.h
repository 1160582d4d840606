/* worker_internal.h - the reconcile worker's rooms share this: its state (struct worker), a job's
 * place in a batch (struct slot), and the few calls between worker.c (the thread, its queue and
 * status), batch.c (one batch), worker_start.c (the start-up) and worker_state.c (the state
 * and a job's completion, which the others use). Worker thread, and the HTTP
 * threads through worker.h's locked accessors only. */
#pragma once

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "apply/queue.h"
#include "core/settings.h"
#include "store/db.h"

#define WORKER_MAX_BATCH       1024
#define WORKER_FINGERPRINT_MAX (SETTINGS_CERTS_MAX * 96)

struct app;
struct job;
struct problem;
struct verifier;

struct worker {
        struct app *app;
        struct queue queue;
        pthread_t thread;
        atomic_uint_fast64_t heartbeat;
        struct db_conn db; /* the worker's own connection (no pool) */
        struct verifier *verifier;
        uint64_t tombstones_pruned_usec; /* the last prune of the policy map's deletions */
        pthread_mutex_t lock;            /* guards the status fields below */
        char state[16];
        int64_t applied_generation;
        json_t *last_job;
        json_t *drift;
        char last_error[512];
        uint64_t last_reload_usec;
        unsigned reloads;
        bool stopped;
        /* jobs handed to the worker and not yet completed (queued, or in the running batch):
         * while there are any the status says applying and desired_generation runs ahead */
        atomic_size_t backlog;
        /* the bound certificates' fingerprints (joined by ',') that Postfix was last reloaded
         * with ("" unknown): an ACME renewal changes one without changing main.cf */
        char applied_fingerprint[WORKER_FINGERPRINT_MAX];
        /* when this node's heartbeat was last written (nodes.last_contact), monotonic usec */
        uint64_t node_heartbeat_usec;
        /* the newest generation committed in the database that this node has heard of (its own
         * commits and the fleet's, apply/follower.c) */
        atomic_int_fast64_t committed_generation;
        /* a generation the follow could not apply: tried again when a newer one comes */
        int64_t follow_failed_generation;
        /* a retry was asked of this node: the next idle round applies again */
        atomic_bool retry_asked;
        /* the database's generation is below the applied one (worker_generation_read) */
        atomic_bool generation_went_back;
};

/* A job's place in a batch. */
struct slot {
        struct job *job;
        bool ok;
        bool changed; /* the job changed the desired state (a version moved) */
        bool settled; /* committed: already out of the backlog */
        json_t *before, *after;
};

/* ---- worker_state.c ---- */
/* The worker shows progress (the watchdog's heartbeat). */
void worker_touch(struct worker *w);
void worker_set_state(struct worker *w, const char *state, const char *error);
/* The desired_generation gauge: the applied generation, plus one while jobs wait or run. */
void worker_publish_desired(struct worker *w);
/* Generation gen is live in Postfix: status, metrics, node row, old certificate files. */
void worker_mark_applied(struct worker *w, int64_t gen, bool reloaded);
/* The worker's connection, (re)connected when needed; service_unavailable when it cannot be. */
/* This node in the fleet's registry (store/nodes.h): registered at start (its version and
 * Postfix's, started now), and its heartbeat, written when node_heartbeat_interval has passed
 * since the last (the idle worker calls it every round). */
void worker_register_node(struct worker *w);
/* The verifier checks what smtpd serves now against what plan p bound (job ids: the jobs the
 * check is for, recorded on them; n may be 0; settle: verifier_submit's). */
struct plan;
void worker_verify(struct worker *w, const struct plan *p, const int64_t *ids, size_t n,
                   bool settle);
void worker_node_heartbeat(struct worker *w);
int worker_ensure_db(struct worker *w, struct problem *reterr);
/* A job is done: recorded (a failure), out of the backlog, its waiter told, freed. */
void worker_complete(struct worker *w, struct slot *s);
/* The same for a job found finished by an attempt that lost the connection (already recorded). */
void worker_complete_found(struct worker *w, struct job *job);

/* ---- batch.c ---- */
/* Runs the jobs in one transaction (see batch.c). Returns -EAGAIN (the slots' problems set) when
 * the batch as a whole failed after its jobs had run: the caller may retry them one by one;
 * -ENOTCONN when the database went away and -ECANCELED when the daemon stops mid-apply: nothing
 * is committed and the caller puts the jobs back. */
int batch_run(struct worker *w, struct slot *slots, size_t n, bool dry_run);

/* ---- worker_start.c ---- */
/* Before the thread starts: staging cleaned, the certificate files scanned, keys sealed, the
 * committed state reconciled with the live files (a failure is reported, not fatal). */
void worker_initial_reconcile(struct worker *w);
/* When a generation newer than the applied one was committed (by another node): applies the
 * committed state (worker thread, idle). */
void worker_follow_committed(struct worker *w);
/* Jobs a previous run acknowledged but did not finish, into jobs[n..cap) (those that cannot run
 * are completed as failed). Returns the new count. */
size_t worker_recover(struct worker *w, struct job **jobs, size_t n, size_t cap);
