/* probes.h (store) - the destination probe's audit trail (010_probes.sql): a row inserted before
 * a probe connects anywhere (who, which destination, why), finished with its outcome and report;
 * listed newest first. HTTP threads (insert, list) and the probe threads (finish). */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/problem.h"

struct db_conn;

int store_probe_insert(struct db_conn *c, const char *node, const char *actor,
                       const char *destination, const char *level, const char *reason, int64_t *id,
                       struct problem *reterr);
/* outcome: passed, failed, unreachable or cancelled; recommended may be NULL; result the
 * report (borrowed, may be NULL); forced: a write went on past this failing probe. */
int store_probe_finish(struct db_conn *c, int64_t id, const char *outcome, const char *recommended,
                       json_t *result, bool forced, struct problem *reterr);
/* Newest first: rows with id below before (0: from the newest) of destination (NULL: all), at
 * most limit, as {id, actor, destination, level, reason, outcome, forced, recommended,
 * created_at, finished_at} (with the report under "result" when with_result); *next the id a next
 * page starts below, 0 for the last page. */
int store_probe_list(struct db_conn *c, int64_t before, const char *destination, int limit,
                     bool with_result, json_t **items, int64_t *next, struct problem *reterr);
/* The newest finished probe of each destination, ordered by destination, at most limit: the
 * rows as store_probe_list shows them, without the report. */
int store_probe_latest(struct db_conn *c, int limit, json_t **items, struct problem *reterr);

/* The watch (apply/probe_watch.c): the enabled policy above may whose last finished probe at its
 * level is the oldest and older than interval_sec (or older than the policy's last change, or
 * missing): {destination, level, match[]} into *ret, NULL when none is due. */
int store_probe_due(struct db_conn *c, int64_t interval_sec, json_t **ret, struct problem *reterr);
/* The enabled policies above may whose last finished probe at their level failed (outcome
 * failed or unreachable): [{destination, level, outcome, probed_at, reason}] by destination, at
 * most limit; *total how many in all. */
int store_probes_failing(struct db_conn *c, int limit, json_t **items, int64_t *total,
                         struct problem *reterr);
