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
