/* api.h - the resource handlers that the route table (src/api/routes.c) points at. Each runs on
 * an HTTP thread: parse, check, read or enqueue, reply. */
#pragma once

#include <jansson.h>
#include <stdint.h>

#include "http/http.h"

struct config;
struct db_conn;
struct item_memo_delta;

int api_healthz(struct request *req, struct problem *reterr);
int api_readyz(struct request *req, struct problem *reterr);
int api_metrics(struct request *req, struct problem *reterr);

int api_tokens_list(struct request *req, struct problem *reterr);
int api_tokens_create(struct request *req, struct problem *reterr);
int api_tokens_get(struct request *req, struct problem *reterr);
int api_tokens_delete(struct request *req, struct problem *reterr);
int api_session_create(struct request *req, struct problem *reterr);
int api_session_get(struct request *req, struct problem *reterr);
int api_session_delete(struct request *req, struct problem *reterr);

int api_settings_get(struct request *req, struct problem *reterr);
int api_settings_put(struct request *req, struct problem *reterr);
int api_settings_patch(struct request *req, struct problem *reterr);

int api_certificates_list(struct request *req, struct problem *reterr);
int api_certificates_get(struct request *req, struct problem *reterr);
int api_certificates_put(struct request *req, struct problem *reterr);
int api_certificates_post(struct request *req, struct problem *reterr);
int api_certificates_delete(struct request *req, struct problem *reterr);
int api_certificates_rescan(struct request *req, struct problem *reterr);

int api_policies_list(struct request *req, struct problem *reterr);
int api_policies_post(struct request *req, struct problem *reterr);
int api_policies_bulk(struct request *req, struct problem *reterr);
/* POST /api/v1/import (api/import.c) */
int api_import(struct request *req, struct problem *reterr);
int api_policy_get(struct request *req, struct problem *reterr);
int api_policy_put(struct request *req, struct problem *reterr);
int api_policy_patch(struct request *req, struct problem *reterr);
int api_policy_delete(struct request *req, struct problem *reterr);

/* POST /api/v1/probe (api/probe.c): suspends the request until the probe runner answers. */
int api_probe(struct request *req, struct problem *reterr);
int api_probes_list(struct request *req, struct problem *reterr);
/* The fleet's registry (api/nodes.c). */
int api_nodes_list(struct request *req, struct problem *reterr);
int api_nodes_get(struct request *req, struct problem *reterr);
int api_nodes_delete(struct request *req, struct problem *reterr);
int api_nodes_retry(struct request *req, struct problem *reterr);
int api_node_settings_get(struct request *req, struct problem *reterr);
int api_node_settings_put(struct request *req, struct problem *reterr);
int api_node_settings_delete(struct request *req, struct problem *reterr);
/* {nodes, in_sync, unreachable} of the registry, for /api/v1/status. */
int api_fleet_summary(const struct config *cfg, struct db_conn *c, json_t **ret);
/* Each node's outcome for generation gen, as a write's reply (?wait=fleet) and its job show it:
 * {generation, complete, nodes: [{name, outcome, state, applied_generation, detail}]}; outcome
 * applied (it applied gen or later), failed (it could not apply gen or later), unreachable
 * (silent), pending (none of these yet); complete when none is pending. */
int api_fleet_outcome(const struct config *cfg, struct db_conn *c, int64_t gen, json_t **ret);
int api_jobs_list(struct request *req, struct problem *reterr);
int api_jobs_get(struct request *req, struct problem *reterr);
int api_status(struct request *req, struct problem *reterr);
/* The read model's stamps (cache_stamp_fn, http/http.h): nothing but the change count (0), and
 * the live Postfix files a reply compares with the desired state (main.cf, the policy map and its
 * index: inode, size, modification time), for /status and /config. */
uint64_t api_stamp_none(struct request *req);
uint64_t api_stamp_postfix(struct request *req);
/* The state /status reports (in_sync, applying, degraded) from worker_status(), the committed
 * generation and the live drift: "applying" while that generation is not live yet, "degraded"
 * while managed main.cf parameters differ from their rendering (n_drift > 0). */
const char *api_state(json_t *worker_status, int64_t desired, size_t n_drift);
/* The managed main.cf parameters whose live value differs from the desired state now (a JSON
 * array; empty when it cannot be told). With warnings, the desired settings' state warnings
 * (reconcile_settings_warnings) are appended to it. */
json_t *api_drift(const struct config *cfg, struct db_conn *c, json_t *warnings);
/* The same, and in *foreign (when not NULL) the administrator's own policy maps main.cf still
 * lists after ours: what an import would look at (a JSON array of their tokens). */
json_t *api_drift_maps(const struct config *cfg, struct db_conn *c, json_t *warnings,
                       json_t **foreign);
int api_config(struct request *req, struct problem *reterr);
int api_openapi(struct request *req, struct problem *reterr);

/* The web console (api/console.c): its files, compiled in by scripts/embed-console.py; the first
 * is index.html. */
struct console_asset {
        const char *name;       /* one path segment: /console/<name> */
        const char *media_type; /* the Content-Type */
        const unsigned char *data;
        size_t len;
        const char *etag; /* strong, from the SHA-256 of data */
};
extern const struct console_asset console_assets[];
extern const size_t console_assets_count;
/* The asset of that name, or NULL. */
const struct console_asset *console_asset_find(const char *name);
int api_console_index(struct request *req, struct problem *reterr);
int api_console_asset(struct request *req, struct problem *reterr);
int api_state_get(struct request *req, struct problem *reterr);
int api_state_put(struct request *req, struct problem *reterr);

/* Common to writes (api/write.c): reads ?wait and ?dry_run, records the job, queues it and
 * suspends the request (HANDLER_SUSPENDED), or answers 202 at once for ?wait=0. */
int api_submit(struct request *req, const char *action, const char *target, json_t *body,
               struct problem *reterr);
/* The same for an upload with a private key: the job carries it in memory (job->secret) and the
 * database keeps it in pending_keys (sealed with key_encryption_key_file), never in the job row. */
int api_submit_key(struct request *req, const char *action, const char *target, json_t *body,
                   const char *key_pem, struct problem *reterr);
/* The same for a bulk replace: body is the request's body without its "policy" member, and
 * *items (taken, set to NULL) the validated items as JSON text: recorded in the job row (its
 * items column), not kept in memory as a second copy (job.h: items). */
int api_submit_items(struct request *req, const char *action, const char *target, json_t *body,
                     char **items, struct problem *reterr);
/* The same with the items' delta from the last bulk applied here (taken; may be NULL). */
int api_submit_bulk(struct request *req, const char *action, const char *target, json_t *body,
                    char **items, struct item_memo_delta **delta, struct problem *reterr);
/* Both: a key (or a state document's keys, as JSON text) and items (PUT /api/v1/state). */
int api_submit_all(struct request *req, const char *action, const char *target, json_t *body,
                   const char *key_pem, char **items, struct problem *reterr);
/* A boolean query parameter: absent false; "true", "1" or "" (a bare ?name) true; "false", "0"
 * false; anything else invalid_value naming it. */
int api_query_flag(struct request *req, const char *name, bool *ret, struct problem *reterr);
/* Validates a JSON array of TLS policies (a bulk's items, a state's tls_policies) into the JSON
 * text of the normalized items (*text, malloc'ed; body_len, the request's size, sizes it), freeing
 * each parsed item as it goes; problems name base/N/field. managed_by in an item: needs admin,
 * and only with allow_managed. */
struct guard;
/* guard (may be NULL): every item above may is added to it (api/guard.h). */
int api_policy_items(struct request *req, json_t *items, size_t body_len, const char *base,
                     bool allow_managed, struct guard *guard, char **text, struct problem *reterr);
/* A certificate name: [a-z0-9][a-z0-9._-]{0,63}, not "rescan"; invalid_name naming field. */
int api_certificate_name_check(const char *name, const char *field, struct problem *reterr);
/* ?limit= for lists: 1..1000, default 100. */
int api_list_limit(struct request *req, int *limit, struct problem *reterr);
