/* worker.h - the reconcile worker: the one thread that writes configuration rows and Postfix
 * files. Started by main.c after migrations; fed through its queue by the HTTP threads. */
#pragma once

#include <stdint.h>

struct app;
struct worker;

int worker_start(struct app *app, struct worker **ret);
/* Closes the queue, lets the worker finish the jobs it holds (bounded), joins it. */
void worker_stop(struct worker *w);
/* Microseconds since the worker last showed progress (its loop or a bounded wait it is in). */
uint64_t worker_heartbeat_age(struct worker *w);
