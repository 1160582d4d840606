/* pending.h - requests waiting for their job: the HTTP thread suspends the connection and
 * registers it here (api/write.c); the job's completion callback answers it with the outcome, or
 * the reaper thread answers 202 when the request's ?wait runs out. A write with ?wait=fleet that
 * made a generation waits on after that, until every live node applied it or refused it, or
 * fleet_wait_timeout: the reaper answers it with each node's outcome (`fleet`), woken by a
 * change of any node's row (pending_nodes_changed) and at least every second. Exactly one of them
 * resumes each request (one mutex). Owned by the app (app.pending), made by main.c. */
#pragma once

#include <stdint.h>

#include <jansson.h>
#include <stdbool.h>

struct app;
struct pending;
struct request;
struct job;

/* Makes the list and starts its reaper thread (app: the database and the configuration, for the
 * fleet's waits). */
int pending_new(const struct app *app, struct pending **ret);
/* Stops the reaper and answers every request still waiting with 202; later pending_add calls
 * fail with -ESHUTDOWN (an HTTP thread that got past the ready check as the daemon stops). */
void pending_stop(struct pending *p);
/* Stops it (if not stopped) and frees it: only once no HTTP thread can call pending_add (after
 * http_server_stop). NULL: nothing. */
void pending_free(struct pending *p);
/* Suspends req (unless it is already: a guarded write, api/guard.c) and remembers it until
 * deadline (monotonic usec), and makes the job tell it when
 * done (job->on_done). The job must be queued after this call, so that its completion always
 * finds the request suspended. */
int pending_add(struct pending *p, struct request *req, struct job *job, uint64_t deadline,
                bool fleet);
/* Some node's row changed (apply/follower.c's thread): the writes waiting for the fleet look
 * again. arg: the struct pending. */
void pending_nodes_changed(void *arg);
