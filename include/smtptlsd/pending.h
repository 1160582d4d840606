/* pending.h - requests waiting for their job: the HTTP thread suspends the connection and
 * registers it here; the worker completes it with the job's outcome, or the reaper answers 202
 * when the request's ?wait runs out. Exactly one of them resumes each request (one mutex). */
#pragma once

#include <stdint.h>

struct request;
struct job;

int pending_start(void);
void pending_stop(void);
/* Suspends req and remembers it until deadline (monotonic usec). The job must be queued after
 * this call, so that its completion always finds the request suspended. */
int pending_add(struct request *req, struct job *job, uint64_t deadline);
/* The worker's half: when the job's request still waits, reply with the job's outcome. */
void pending_complete(struct job *job);
/* Answers every waiting request now with 202 (used when stopping). */
void pending_flush(void);
