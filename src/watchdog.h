/* watchdog.h - the liveness check behind WATCHDOG=1: the worker's heartbeat is fresh and an HTTP
 * request to our own /healthz, on a private connection served by the HTTP thread pool, is
 * answered. Main thread. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct app;

/* Returns true when the worker showed progress within stuck_usec and our own /healthz answers
 * 200 within timeout_usec (or the HTTP server is at connection_limit: a refusal, not a hang);
 * otherwise false and a reason in why. */
bool watchdog_check(struct app *app, uint64_t stuck_usec, uint64_t timeout_usec, char *why,
                    size_t whysize);
