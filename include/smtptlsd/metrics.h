/* metrics.h - process-wide counters and histograms, exported as Prometheus text by /metrics.
 * Lock-free (C11 atomics): any thread may count. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "smtptlsd/http.h"

enum metric_counter {
        METRIC_JOBS_APPLIED,
        METRIC_JOBS_FAILED,
        METRIC_POSTMAP_RUNS,
        METRIC_RELOADS,
        METRIC_RECONCILES,
        METRIC_DB_RECONNECTS,
        METRIC_STATUS_MAP_RENDERS,
        _METRIC_COUNTER_MAX,
};

enum metric_gauge {
        METRIC_READY,
        METRIC_DESIRED_GENERATION,
        METRIC_APPLIED_GENERATION,
        METRIC_QUEUE_DEPTH,
        _METRIC_GAUGE_MAX,
};

void metrics_observe_request(int route_index, enum http_method method, int status, uint64_t usec);
void metrics_count(enum metric_counter c, uint64_t n);
void metrics_gauge_set(enum metric_gauge g, int64_t v);
/* Renders every metric in Prometheus text format 0.0.4 (a malloc'ed string). */
int metrics_render(const struct route *routes, size_t n_routes, char **ret, size_t *len);
