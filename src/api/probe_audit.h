/* probe_audit.h - what every probe the API starts shares (POST /api/v1/probe, the policy guard):
 * the trust anchors Postfix's smtp client uses (asked of postconf), the audit row before the
 * probe connects and its finish, and the metrics by outcome. HTTP threads and probe threads. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/problem.h"
#include "probe/probe.h"

struct app;
struct config;

/* The audit row (reason: request, guard or watch; level may be NULL); its id into *id. */
int probe_audit_insert(struct app *app, const char *actor, const char *destination,
                       const char *level, const char *reason, int64_t *id, struct problem *reterr);
/* Finishes it: outcome passed, failed, unreachable or cancelled; report (may be NULL) and its
 * recommended level; forced: a write went on past this failing probe. Failures are logged. */
void probe_audit_finish(struct app *app, int64_t id, const char *outcome, json_t *report,
                        bool forced);
