/* metrics.c - counters and latency histograms kept in atomics, and the rendering of /metrics
 * (those plus what a scrape reads live: state, drift, served certificate, expiries) in the
 * Prometheus text format; the family names and labels are the ones docs/operations.md lists. Any
 * thread counts; an HTTP thread renders. */
#include "metrics.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>

#include "config.h"
#include "util.h"

#define MAX_ROUTES  48
#define ROUTE_SLOTS (MAX_ROUTES + 1) /* the last slot: requests that matched no route */

static const int statuses[] = { 200, 201, 202, 204, 304, 400, 401, 403, 404,
                                405, 409, 412, 413, 415, 422, 500, 503, 0 /* other */ };
#define N_STATUS ARRAY_SIZE(statuses)

#define N_METHOD METRICS_METHOD_SLOTS

static const double buckets[] = { 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                  0.25,   0.5,   1,      2.5,   5,    10,    30 };
#define N_BUCKET ARRAY_SIZE(buckets)

static atomic_uint_fast64_t requests[ROUTE_SLOTS][N_METHOD][N_STATUS];
static atomic_uint_fast64_t latency[ROUTE_SLOTS][N_BUCKET + 1];
static atomic_uint_fast64_t latency_sum_usec[ROUTE_SLOTS];
static atomic_uint_fast64_t counters[_METRIC_COUNTER_MAX];
static atomic_int_fast64_t gauges[_METRIC_GAUGE_MAX];

/* A family with labels has one entry per label value, next to each other. */
static const struct {
        const char *name, *label, *help; /* label: `key="value"`, or NULL */
} counter_info[_METRIC_COUNTER_MAX] = {
        [METRIC_JOBS_APPLIED] = { "smtptlsd_jobs_total", "result=\"applied\"",
                                  "Jobs finished, by result (failed: refused or failed)." },
        [METRIC_JOBS_FAILED] = { "smtptlsd_jobs_total", "result=\"failed\"", NULL },
        [METRIC_POSTMAP_RUNS] = { "smtptlsd_postmap_runs_total", NULL, "postmap runs." },
        [METRIC_MAP_EDITS] = { "smtptlsd_policy_map_updates_total", "how=\"edit\"",
                               "Policy map indexes swapped in, by how they were made (edit: a "
                               "copy of the live index with the changed rows put and deleted; "
                               "build: the whole map built)." },
        [METRIC_MAP_BUILDS] = { "smtptlsd_policy_map_updates_total", "how=\"build\"", NULL },
        [METRIC_BULK_DELTAS] = { "smtptlsd_bulk_replaces_total", "how=\"delta\"",
                                 "Bulk replaces of TLS policies run by the worker (dry runs too), "
                                 "by how (delta: only the rows that differ from the last bulk "
                                 "applied on this node; whole: every item)." },
        [METRIC_BULK_WHOLE] = { "smtptlsd_bulk_replaces_total", "how=\"whole\"", NULL },
        [METRIC_BULK_ITEMS_KNOWN] = { "smtptlsd_bulk_items_total", "how=\"known\"",
                                      "Items of bulk replace bodies read without refusal, by how "
                                      "(known: the very bytes of an item of the last bulk applied "
                                      "on this node, taken without being parsed and checked "
                                      "again; read: parsed and checked)." },
        [METRIC_BULK_ITEMS_READ] = { "smtptlsd_bulk_items_total", "how=\"read\"", NULL },
        [METRIC_RELOADS] = { "smtptlsd_postfix_reloads_total", "result=\"ok\"",
                             "postfix reloads, by result (ok: a new configuration went live; "
                             "failed: Postfix refused it and the last-known-good files are "
                             "back)." },
        [METRIC_RELOADS_FAILED] = { "smtptlsd_postfix_reloads_total", "result=\"failed\"", NULL },
        [METRIC_RECONCILES] = { "smtptlsd_reconciles_total", NULL, "Render-validate-swap rounds." },
        [METRIC_DB_RECONNECTS] = { "smtptlsd_database_reconnects_total", NULL,
                                   "Database reconnections." },
        [METRIC_STATUS_MAP_RENDERS] = { "smtptlsd_status_map_renders_total", NULL,
                                        "Policy maps rendered for /api/v1/status and "
                                        "/api/v1/config (once per generation; cached)." },
        [METRIC_PROBES_PASSED] = { "smtptlsd_probes_total", "outcome=\"passed\"",
                                   "Destination probes, by outcome (passed: reachable and, with a "
                                   "level asked, passing it; failed: reachable, failing the "
                                   "level; reachable: no level asked, mail would go out; "
                                   "unreachable: no mail would go out at all; cancelled: "
                                   "the daemon stopped; refused: too many at once)." },
        [METRIC_PROBES_FAILED] = { "smtptlsd_probes_total", "outcome=\"failed\"", NULL },
        [METRIC_PROBES_UNREACHABLE] = { "smtptlsd_probes_total", "outcome=\"unreachable\"", NULL },
        [METRIC_PROBES_REACHABLE] = { "smtptlsd_probes_total", "outcome=\"reachable\"", NULL },
        [METRIC_PROBES_CANCELLED] = { "smtptlsd_probes_total", "outcome=\"cancelled\"", NULL },
        [METRIC_PROBES_REFUSED] = { "smtptlsd_probes_total", "outcome=\"refused\"", NULL },
        [METRIC_PROBES_CACHED] = { "smtptlsd_probes_cached_total", NULL,
                                   "Destination probes answered from the cache." },
        [METRIC_REPLY_CACHE_HITS] = { "smtptlsd_read_model_requests_total", "result=\"hit\"",
                                      "GETs of the cached routes, by result (hit: served from "
                                      "the read model, no database round trip; miss: read and "
                                      "rendered, then kept)." },
        [METRIC_REPLY_CACHE_MISSES] = { "smtptlsd_read_model_requests_total", "result=\"miss\"",
                                        NULL },
};

static const struct {
        const char *name, *help;
} gauge_info[_METRIC_GAUGE_MAX] = {
        [METRIC_READY] = { "smtptlsd_ready", "1 once the daemon is ready." },
        [METRIC_DESIRED_GENERATION] = { "smtptlsd_desired_generation",
                                        "Configuration generation in the database (one ahead of "
                                        "the applied one while jobs wait or run)." },
        [METRIC_APPLIED_GENERATION] = { "smtptlsd_applied_generation",
                                        "Configuration generation live in Postfix." },
        [METRIC_QUEUE_DEPTH] = { "smtptlsd_queue_depth", "Jobs waiting for the worker." },
        [METRIC_POLICIES_FAILING_PROBE] = { "smtptlsd_policies_failing_probe",
                                            "Enabled policies above may whose last probe at "
                                            "their level failed (mail to them defers)." },
};

/* The values of smtptlsd_state's label: exactly one is 1 when the state is known. */
static const char *const states[] = { "in_sync", "applying", "degraded" };

static size_t status_index(int status)
{
        for (size_t i = 0; i < N_STATUS - 1; i++)
                if (statuses[i] == status)
                        return i;
        return N_STATUS - 1;
}

void metrics_observe_request(int route_index, unsigned method_slot, int status, uint64_t usec)
{
        size_t r = route_index >= 0 && route_index < MAX_ROUTES ? (size_t)route_index : MAX_ROUTES;
        atomic_fetch_add_explicit(
            &requests[r][method_slot < N_METHOD ? method_slot : N_METHOD - 1][status_index(status)],
            1, memory_order_relaxed);
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

/* A label value, escaped as the text format wants (backslash, double quote, line feed). */
static void blabel(struct buf *b, const char *key, const char *value)
{
        bprintf(b, "%s=\"", key);
        for (const char *p = value; *p; p++) {
                size_t n = strcspn(p, "\\\"\n");
                bprintf(b, "%.*s", (int)n, p);
                p += n;
                if (!*p)
                        break;
                bprintf(b, "\\%c", *p == '\n' ? 'n' : *p);
        }
        bprintf(b, "\"");
}

static void bfamily(struct buf *b, const char *name, const char *type, const char *help)
{
        bprintf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void render_live(struct buf *b, const struct metrics_live *live)
{
        bfamily(b, "smtptlsd_build_info", "gauge", "Always 1; the version in a label.");
        bprintf(b, "smtptlsd_build_info{");
        blabel(b, "version", SMTPTLSD_VERSION);
        bprintf(b, "} 1\n");

        bfamily(b, "smtptlsd_database_up", "gauge",
                "1 when the database answered this scrape's queries, else 0.");
        bprintf(b, "smtptlsd_database_up %d\n", live->database_up ? 1 : 0);

        bfamily(b, "smtptlsd_state", "gauge",
                "1 for the state /api/v1/status reports (in_sync, applying, degraded), 0 for the "
                "others.");
        for (size_t i = 0; i < ARRAY_SIZE(states); i++)
                bprintf(b, "smtptlsd_state{state=\"%s\"} %d\n", states[i],
                        streq_ptr(live->state, states[i]) ? 1 : 0);

        bfamily(b, "smtptlsd_drift_parameters", "gauge",
                "Managed main.cf parameters whose live value differs from the desired one "
                "(edited by hand; the next apply restores them).");
        bprintf(b, "smtptlsd_drift_parameters %lld\n", (long long)live->drift);

        bfamily(b, "smtptlsd_served_certificate_info", "gauge",
                "1, with the SHA-256 fingerprint of each certificate smtpd served at the last "
                "check (one per bound certificate; none before the first check, or when it "
                "offered no STARTTLS).");
        /* served_fingerprint holds one fingerprint per bound certificate, joined by ',' */
        for (const char *f = live->served_fingerprint; !isempty(f);) {
                const char *end = strchr(f, ',');
                size_t len = end ? (size_t)(end - f) : strlen(f);
                char one[96];
                if (len > 0 && len < sizeof(one)) {
                        memcpy(one, f, len);
                        one[len] = 0;
                        bprintf(b, "smtptlsd_served_certificate_info{");
                        blabel(b, "fingerprint", one);
                        bprintf(b, "} 1\n");
                }
                f = end ? end + 1 : NULL;
        }

        static const char *const node_states[] = { "starting", "applying", "in_sync",
                                                   "degraded", "failed",   "unreachable" };
        bfamily(b, "smtptlsd_fleet_nodes", "gauge",
                "Nodes of the fleet (the daemons sharing this database) by state, as this node "
                "sees the registry.");
        for (size_t k = 0; live->database_up && k < ARRAY_SIZE(node_states); k++) {
                size_t n = 0;
                for (size_t i = 0; i < live->n_nodes; i++)
                        n += streq(live->nodes[i].state, node_states[k]);
                bprintf(b, "smtptlsd_fleet_nodes{state=\"%s\"} %zu\n", node_states[k], n);
        }
        bfamily(b, "smtptlsd_fleet_node_generation_lag", "gauge",
                "Generations a node is behind the committed one (0: it applied the newest).");
        for (size_t i = 0; i < live->n_nodes; i++) {
                bprintf(b, "smtptlsd_fleet_node_generation_lag{");
                blabel(b, "node", live->nodes[i].name);
                bprintf(b, "} %lld\n", (long long)live->nodes[i].lag);
        }

        bfamily(b, "smtptlsd_certificate_expiry_seconds", "gauge",
                "Seconds until the certificate expires (negative: expired); in_use=\"true\" for "
                "those settings bind (certificate and additional_certificate).");
        for (size_t i = 0; i < live->n_certificates; i++) {
                const struct metrics_certificate *c = &live->certificates[i];
                bprintf(b, "smtptlsd_certificate_expiry_seconds{");
                blabel(b, "name", c->name);
                bprintf(b, ",");
                blabel(b, "type", c->type);
                bprintf(b, ",in_use=\"%s\"} %lld\n", c->in_use ? "true" : "false",
                        (long long)c->expiry_seconds);
        }
}

int metrics_render(const struct metrics_labels *labels, const struct metrics_live *live, char **ret,
                   size_t *len)
{
        static const struct metrics_labels none = { 0 };
        if (!labels)
                labels = &none;
        size_t n_routes = labels->n_routes;
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
                const char *route = r == MAX_ROUTES ? "unmatched" : labels->routes[r];
                for (size_t m = 0; m < labels->n_methods && m < N_METHOD; m++)
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
                                        route, labels->methods[m], code, (unsigned long long)v);
                        }
        }

        bprintf(&b, "# HELP smtptlsd_http_request_duration_seconds Time from request to reply.\n"
                    "# TYPE smtptlsd_http_request_duration_seconds histogram\n");
        for (size_t r = 0; r < ROUTE_SLOTS; r++) {
                if (r >= n_routes && r != MAX_ROUTES)
                        continue;
                const char *route = r == MAX_ROUTES ? "unmatched" : labels->routes[r];
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

        for (size_t c = 0; c < _METRIC_COUNTER_MAX; c++) {
                const char *name = counter_info[c].name;
                if (c == 0 || !streq(name, counter_info[c - 1].name))
                        bfamily(&b, name, "counter", counter_info[c].help);
                const char *label = counter_info[c].label;
                bprintf(
                    &b, "%s%s%s%s %llu\n", name, label ? "{" : "", label ? label : "",
                    label ? "}" : "",
                    (unsigned long long)atomic_load_explicit(&counters[c], memory_order_relaxed));
        }
        for (size_t g = 0; g < _METRIC_GAUGE_MAX; g++) {
                bfamily(&b, gauge_info[g].name, "gauge", gauge_info[g].help);
                bprintf(&b, "%s %lld\n", gauge_info[g].name,
                        (long long)atomic_load_explicit(&gauges[g], memory_order_relaxed));
        }
        render_live(&b, live);
        if (b.err) {
                free(b.p);
                return b.err;
        }
        *ret = b.p;
        *len = b.len;
        return 0;
}
