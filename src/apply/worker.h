/* worker.h - the reconcile worker: the one thread that writes configuration rows and Postfix
 * files. Started by main.c after migrations (its first reconcile runs before READY); fed through
 * its queue by the HTTP threads. */
#pragma once

#include <jansson.h>
#include <stdint.h>

struct app;
struct worker;
struct job;

/* Connects, cleans up after an interrupted apply, reconciles the committed state with the live
 * files, then starts the thread that runs queued jobs. */
int worker_start(struct app *app, struct worker **ret);
/* Closes the queue (later submits fail with -ESHUTDOWN), lets the worker finish the batch it
 * holds (bounded), joins it. The struct stays valid for HTTP threads until worker_free. */
void worker_stop(struct worker *w);
void worker_free(struct worker *w);
/* Hands a job to the worker (ownership passes). -ESHUTDOWN when stopping. */
int worker_submit(struct worker *w, struct job *job);
/* Another node committed generation gen (apply/follower.c, any thread): the idle worker applies
 * the committed state when it is newer than what this node applied. */
void worker_generation_committed(struct worker *w, int64_t gen);
/* The generation committed now, as read from the database (the safety net's read, any thread):
 * like worker_generation_committed, and when it is lower than what this node applied (a
 * failover to a replica that had not received the last commits), the node applies the committed
 * state again - a later generation of that number would otherwise look applied already. */
void worker_generation_read(struct worker *w, int64_t gen);
/* A retry was asked of this node (POST /api/v1/nodes/{name}/retry, told by apply/follower.c):
 * the idle worker applies the committed state again, even a generation it could not apply. */
void worker_retry_requested(struct worker *w);
/* Microseconds since the worker last showed progress (its loop or a bounded wait it is in). */
uint64_t worker_heartbeat_age(struct worker *w);
/* A snapshot for /api/v1/status: state, applied generation, last job, drift, verification. */
json_t *worker_status(struct worker *w);
/* What the post-reload check saw smtpd serve last (verifier_served). */
void worker_served_fingerprint(struct worker *w, char *buf, size_t size);
