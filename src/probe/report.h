/* report.h - a destination probe's report (probe/probe.h) as POST /api/v1/probe answers it:
 * the evidence of every host and address, and what each TLS level would do with it
 * (core/probe_verdict.h) for the destination's match list. Any thread; no globals. */
#pragma once

#include <jansson.h>
#include <stdbool.h>

#include "core/policy.h"
#include "core/probe_verdict.h"
#include "probe/probe.h"

/* The JSON form; asked is the level the client asked about (_TLS_LEVEL_MAX: none), cached
 * whether the report came from the cache. NULL when out of memory. */
json_t *probe_report_json(const struct probe_report *r, const struct probe_target *t,
                          enum tls_level asked, bool cached);

/* Whether every probed address of r passes level (false when none was probed); reason[size]
 * names the first that does not ("mx1.example.com 192.0.2.1: STARTTLS not offered"). */
bool probe_report_passes(const struct probe_report *r, const struct probe_target *t,
                         enum tls_level level, char *reason, size_t size);

/* The outcome the audit trail and the metrics record of a report's JSON (NULL: cancelled):
 * unreachable (no mail would go out at all), else with a level asked passed or failed, without
 * one reachable. */
const char *probe_outcome(json_t *report);
/* smtptlsd_probes_total{outcome} (passed, failed, unreachable, reachable, cancelled) and, when
 * cached,
 * smtptlsd_probes_cached_total. */
void probe_count_outcome(const char *outcome, bool cached);
