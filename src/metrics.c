/* metrics.c - counters and latency histograms kept in atomics, rendered for /metrics. Any
 * thread counts; an HTTP thread renders. */
#include "smtptlsd/metrics.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>

#define MAX_ROUTES  48
#define ROUTE_SLOTS (MAX_ROUTES + 1) /* the last slot: requests that matched no route */

static const int statuses[] = { 200, 201, 202, 204, 304, 400, 401, 403, 404,
                                405, 409, 412, 413, 415, 422, 500, 503, 0 /* other */ };
#define N_STATUS ARRAY_SIZE(statuses)

static const char *const method_names[] = {
        "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OTHER"
};
#define N_METHOD ARRAY_SIZE(method_names)

static const double buckets[] = { 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                  0.25,   0.5,   1,      2.5,   5,    10,    30 };
#define N_BUCKET ARRAY_SIZE(buckets)

static atomic_uint_fast64_t requests[ROUTE_SLOTS][N_METHOD][N_STATUS];
static atomic_uint_fast64_t latency[ROUTE_SLOTS][N_BUCKET + 1];
static atomic_uint_fast64_t latency_sum_usec[ROUTE_SLOTS];
static atomic_uint_fast64_t counters[_METRIC_COUNTER_MAX];
static atomic_int_fast64_t gauges[_METRIC_GAUGE_MAX];

static const struct {
        const char *name, *help;
} counter_info[_METRIC_COUNTER_MAX] = {
        [METRIC_JOBS_APPLIED] = { "smtptlsd_jobs_applied_total", "Jobs applied." },
        [METRIC_JOBS_FAILED] = { "smtptlsd_jobs_failed_total", "Jobs refused or failed." },
        [METRIC_POSTMAP_RUNS] = { "smtptlsd_postmap_runs_total", "postmap runs." },
        [METRIC_RELOADS] = { "smtptlsd_postfix_reloads_total", "postfix reloads." },
        [METRIC_RECONCILES] = { "smtptlsd_reconciles_total", "Render-validate-swap rounds." },
        [METRIC_DB_RECONNECTS] = { "smtptlsd_database_reconnects_total",
                                   "Database reconnections." },
        [METRIC_STATUS_MAP_RENDERS] = { "smtptlsd_status_map_renders_total",
                                        "Policy maps rendered for /api/v1/status and "
                                        "/api/v1/config (once per generation; cached)." },
}, gauge_info[_METRIC_GAUGE_MAX] = {
        [METRIC_READY] = { "smtptlsd_ready", "1 once the daemon is ready." },
        [METRIC_DESIRED_GENERATION] = { "smtptlsd_desired_generation",
                                        "Configuration generation in the database." },
        [METRIC_APPLIED_GENERATION] = { "smtptlsd_applied_generation",
                                        "Configuration generation live in Postfix." },
        [METRIC_QUEUE_DEPTH] = { "smtptlsd_queue_depth", "Jobs waiting for the worker." },
};

static size_t method_index(enum http_method m)
{
        for (size_t i = 0; i < N_METHOD - 1; i++)
                if (m == (enum http_method)(1 << i))
                        return i;
        return N_METHOD - 1;
}

static size_t status_index(int status)
{
        for (size_t i = 0; i < N_STATUS - 1; i++)
                if (statuses[i] == status)
                        return i;
        return N_STATUS - 1;
}

void metrics_observe_request(int route_index, enum http_method method, int status, uint64_t usec)
{
        size_t r = route_index >= 0 && route_index < MAX_ROUTES ? (size_t)route_index : MAX_ROUTES;
        atomic_fetch_add_explicit(&requests[r][method_index(method)][status_index(status)], 1,
                                  memory_order_relaxed);
        size_t b;
        for (b = 0; b < N_BUCKET; b++)
                if ((double)usec <= buckets[b] * 1e6)
                        break;
        atomic_fetch_add_explicit(&latency[r][b], 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&latency_sum_usec[r], usec, memory_order_relaxed);
}

void metrics_count(enum metric_counter c, uint64_t n)
{
        atomic_fetch_add_explicit(&counters[c], n, memory_order_relaxed);
}

void metrics_gauge_set(enum metric_gauge g, int64_t v)
{
        atomic_store_explicit(&gauges[g], v, memory_order_relaxed);
}

struct buf {
        char *p;
        size_t len, cap;
        int err;
};

static void bprintf(struct buf *b, const char *fmt, ...) _printf_(2, 3);
static void bprintf(struct buf *b, const char *fmt, ...)
{
        va_list ap;
        for (;;) {
                if (b->err)
                        return;
                va_start(ap, fmt);
                int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
                va_end(ap);
                if (n < 0) {
                        b->err = -EINVAL;
                        return;
                }
                if ((size_t)n < b->cap - b->len) {
                        b->len += (size_t)n;
                        return;
                }
                size_t cap = (b->cap + (size_t)n) * 2;
                char *p = realloc(b->p, cap);
                if (!p) {
                        b->err = -ENOMEM;
                        return;
                }
                b->p = p;
                b->cap = cap;
        }
}

int metrics_render(const struct route *routes, size_t n_routes, char **ret, size_t *len)
{
        struct buf b = { .cap = 16384 };
        b.p = malloc(b.cap);
        if (!b.p)
                return -ENOMEM;
        b.p[0] = 0;

        bprintf(&b, "# HELP smtptlsd_http_requests_total HTTP requests by route, method and "
                    "status.\n# TYPE smtptlsd_http_requests_total counter\n");
        for (size_t r = 0; r < ROUTE_SLOTS; r++) {
                if (r >= n_routes && r != MAX_ROUTES)
                        continue;
                const char *route = r == MAX_ROUTES ? "unmatched" : routes[r].pattern;
                for (size_t m = 0; m < N_METHOD; m++)
                        for (size_t s = 0; s < N_STATUS; s++) {
                                uint64_t v =
                                    atomic_load_explicit(&requests[r][m][s], memory_order_relaxed);
                                if (!v)
                                        continue;
                                char code[16];
                                if (statuses[s])
                                        snprintf(code, sizeof(code), "%d", statuses[s]);
                                else
                                        strcpy(code, "other");
                                bprintf(&b,
                                        "smtptlsd_http_requests_total{route=\"%s\",method=\"%s\","
                                        "code=\"%s\"} %llu\n",
                                        route, method_names[m], code, (unsigned long long)v);
                        }
        }

        bprintf(&b, "# HELP smtptlsd_http_request_duration_seconds Time from request to reply.\n"
                    "# TYPE smtptlsd_http_request_duration_seconds histogram\n");
        for (size_t r = 0; r < ROUTE_SLOTS; r++) {
                if (r >= n_routes && r != MAX_ROUTES)
                        continue;
                const char *route = r == MAX_ROUTES ? "unmatched" : routes[r].pattern;
                uint64_t cum = 0;
                for (size_t i = 0; i <= N_BUCKET; i++)
                        cum += atomic_load_explicit(&latency[r][i], memory_order_relaxed);
                if (!cum)
                        continue;
                uint64_t total = cum;
                cum = 0;
                for (size_t i = 0; i < N_BUCKET; i++) {
                        cum += atomic_load_explicit(&latency[r][i], memory_order_relaxed);
                        bprintf(&b,
                                "smtptlsd_http_request_duration_seconds_bucket{route=\"%s\","
                                "le=\"%g\"} %llu\n",
                                route, buckets[i], (unsigned long long)cum);
                }
                bprintf(&b,
                        "smtptlsd_http_request_duration_seconds_bucket{route=\"%s\",le=\"+Inf\"} "
                        "%llu\n"
                        "smtptlsd_http_request_duration_seconds_sum{route=\"%s\"} %.6f\n"
                        "smtptlsd_http_request_duration_seconds_count{route=\"%s\"} %llu\n",
                        route, (unsigned long long)total, route,
                        (double)atomic_load_explicit(&latency_sum_usec[r], memory_order_relaxed) /
                            1e6,
                        route, (unsigned long long)total);
        }

        bprintf(&b, "# HELP smtptlsd_up 1 while the process runs.\n# TYPE smtptlsd_up gauge\n"
                    "smtptlsd_up 1\n");
        for (size_t c = 0; c < _METRIC_COUNTER_MAX; c++)
                bprintf(
                    &b, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", counter_info[c].name,
                    counter_info[c].help, counter_info[c].name, counter_info[c].name,
                    (unsigned long long)atomic_load_explicit(&counters[c], memory_order_relaxed));
        for (size_t g = 0; g < _METRIC_GAUGE_MAX; g++)
                bprintf(&b, "# HELP %s %s\n# TYPE %s gauge\n%s %lld\n", gauge_info[g].name,
                        gauge_info[g].help, gauge_info[g].name, gauge_info[g].name,
                        (long long)atomic_load_explicit(&gauges[g], memory_order_relaxed));
        if (b.err) {
                free(b.p);
                return b.err;
        }
        *ret = b.p;
        *len = b.len;
        return 0;
}
