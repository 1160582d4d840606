/* metrics.h - process-wide counters and histograms, exported as Prometheus text by /metrics.
 * Lock-free (C11 atomics): any thread may count. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum metric_counter {
        METRIC_JOBS_APPLIED,
        METRIC_JOBS_FAILED,
        METRIC_POSTMAP_RUNS,
        METRIC_MAP_EDITS,        /* the policy map's index edited (a copy: postmap -i/-d) */
        METRIC_MAP_BUILDS,       /* ... built whole */
        METRIC_BULK_DELTAS,      /* a bulk replace applied as its delta (core/item_memo.h) */
        METRIC_BULK_WHOLE,       /* ... with every item */
        METRIC_BULK_ITEMS_KNOWN, /* a bulk body's items taken as the memo had them */
        METRIC_BULK_ITEMS_READ,  /* ... parsed and checked */
        METRIC_RELOADS,          /* a reload that made a new configuration live */
        METRIC_RELOADS_FAILED,   /* a reload Postfix refused (the job failed, files restored) */
        METRIC_RECONCILES,
        METRIC_DB_RECONNECTS,
        METRIC_STATUS_MAP_RENDERS,
        METRIC_PROBES_PASSED, /* destination probes by outcome (api/probe.c) */
        METRIC_PROBES_FAILED,
        METRIC_PROBES_UNREACHABLE,
        METRIC_PROBES_REACHABLE, /* no level asked, and mail would go out */
        METRIC_PROBES_CANCELLED,
        METRIC_PROBES_REFUSED,
        METRIC_PROBES_CACHED,    /* answered from the cache (also counted by outcome) */
        METRIC_REPLY_CACHE_HITS, /* GETs answered from the read model (http/reply_cache.c) */
        METRIC_REPLY_CACHE_MISSES,
        _METRIC_COUNTER_MAX,
};

enum metric_gauge {
        METRIC_READY,
        METRIC_DESIRED_GENERATION,
        METRIC_APPLIED_GENERATION,
        METRIC_QUEUE_DEPTH,
        METRIC_POLICIES_FAILING_PROBE, /* the probe watch (apply/probe_watch.c) */
        _METRIC_GAUGE_MAX,
};

#define METRICS_METHOD_SLOTS 8

/* The label values of the request metrics, which the HTTP layer knows: the route patterns by
 * route index, the method names by method slot. */
struct metrics_labels {
        const char *const *routes;
        size_t n_routes;
        const char *const *methods;
        size_t n_methods; /* at most METRICS_METHOD_SLOTS */
};

/* route_index: the route's index, -1 for none; method_slot: an index into labels.methods. */
void metrics_observe_request(int route_index, unsigned method_slot, int status, uint64_t usec);
void metrics_count(enum metric_counter c, uint64_t n);
void metrics_gauge_set(enum metric_gauge g, int64_t v);
/* One certificate's row of smtptlsd_certificate_expiry_seconds. */
struct metrics_certificate {
        const char *name, *type;
        bool in_use; /* the certificate settings bind (served by smtpd) */
        int64_t expiry_seconds;
};

/* One node of the fleet as the registry shows it. */
struct metrics_node {
        const char *name, *state; /* in_sync, applying, degraded, failed, starting, unreachable */
        int64_t lag;              /* committed generation minus the one it applied */
};

/* What a scrape reads live (from the database, the worker, the verifier) for /metrics. */
struct metrics_live {
        bool database_up;               /* the scrape's queries were answered */
        const char *state;              /* in_sync, applying, degraded; NULL: unknown */
        int64_t drift;                  /* managed main.cf parameters edited by hand */
        const char *served_fingerprint; /* what smtpd served at the last check; NULL/"": none */
        const struct metrics_certificate *certificates;
        size_t n_certificates;
        const struct metrics_node *nodes;
        size_t n_nodes;
};

/* Renders every metric in Prometheus text format 0.0.4 (a malloc'ed string). */
int metrics_render(const struct metrics_labels *labels, const struct metrics_live *live, char **ret,
                   size_t *len);
