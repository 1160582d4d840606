/* guard.h - the probe guard of policy writes (?probe=true): before a write that sets a level
 * above may is recorded, the destinations it sets are probed (probe/runner.h) and a level the
 * destination fails refuses the write (422 destination_fails_probe with the reports) unless
 * &force=true, which writes anyway and records that it was forced (the probes' audit trail).
 * The request is suspended while the probes run; the write continues on the probe thread that
 * finished the last one. HTTP threads (the start) and probe threads (the rest). */
#pragma once

#include <jansson.h>
#include <stdbool.h>

#include "core/policy.h"
#include "core/problem.h"

struct request;

/* Whether the request asks for the guard (?probe, ?force), and whether a level needs it. */
int guard_wanted(struct request *req, bool *probe, bool *force, struct problem *reterr);
bool guard_level_needs_probe(enum tls_level level);

struct guard;
/* A guard for the write action on target with the job body jb (a reference is taken) and, for a
 * bulk, its items text (taken). */
struct guard *guard_new(struct request *req, bool force, const char *action, const char *target,
                        json_t *jb, char **items);
/* The bulk's items text (taken), known after the guard was given its destinations. */
void guard_set_items(struct guard *g, char **items);
/* Adds a destination the write sets at level with match (normalized); at most
 * probe_guard_limit: -E2BIG with a problem naming the limit. */
int guard_add(struct guard *g, const struct policy *p, struct problem *reterr);
/* Records the probes (audit), suspends the request and starts them: HANDLER_SUSPENDED, or a
 * negative errno with reterr (the guard is freed either way). A guard with no destination
 * submits the write at once, as without it. */
int guard_run(struct guard *g, struct problem *reterr);
void guard_free(struct guard *g);
