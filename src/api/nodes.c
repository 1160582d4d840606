/* nodes.c (api) - the fleet's registry: GET /api/v1/nodes and /api/v1/nodes/{name} (every daemon
 * sharing this database, what it applied, what it serves, its heartbeat; silent for three
 * heartbeat intervals: unreachable), DELETE of a node gone for good, a retry asked of one, and
 * each node's outcome for a generation (?wait=fleet, jobs). HTTP threads. */
#include "api/api.h"
#include "app.h"
#include "conf.h"
#include "store/db.h"
#include "core/json_spec.h"
#include "core/resource.h"
#include "store/nodes.h"
#include "store/store.h"
#include "store/tx.h"

/* A node is unreachable after three heartbeats it did not write. */
static uint64_t stale_usec(const struct config *cfg)
{
        return 3 * (uint64_t)cfg->node_heartbeat_interval;
}

int api_nodes_list(struct request *req, struct problem *reterr)
{
        _cleanup_db_conn_ struct db_conn *c = NULL;
        json_t *items = NULL;
        int r = db_acquire(req->app->db, &c, reterr);
        if (r >= 0)
                r = store_nodes_list(c, stale_usec(req->app->cfg), &items, reterr);
        if (r < 0)
                return r;
        size_t i;
        json_t *n;
        json_array_foreach (items, i, n)
                json_object_set_new(
                    n, "self",
                    json_boolean(streq(json_string_value(json_object_get(n, "name")),
                                       req->app->cfg->node_name)));
        return reply_json(req, 200, json_pack("{s:o}", "items", items));
}

/* The node the path names, as GET shows it, in a reply of this status. */
static int reply_node(struct request *req, struct db_conn *c, int status, struct problem *reterr)
{
        json_t *node = NULL;
        int r = store_node_get(c, req->params[0], stale_usec(req->app->cfg), &node, reterr);
        if (r < 0)
                return r;
        json_object_set_new(node, "self",
                            json_boolean(streq(req->params[0], req->app->cfg->node_name)));
        return reply_json(req, status, node);
}

int api_nodes_get(struct request *req, struct problem *reterr)
{
        _cleanup_db_conn_ struct db_conn *c = NULL;
        int r = db_acquire(req->app->db, &c, reterr);
        return r < 0 ? r : reply_node(req, c, 200, reterr);
}

/* The registry for a summary of the fleet (a problem is the caller's to word, not a client's). */
static int fleet_nodes(const struct config *cfg, struct db_conn *c, json_t **items)
{
        struct problem p = { 0 };
        int r = store_nodes_list(c, stale_usec(cfg), items, &p);
        problem_done(&p);
        return r;
}

int api_fleet_summary(const struct config *cfg, struct db_conn *c, json_t **ret)
{
        json_t *items = NULL;
        int r = fleet_nodes(cfg, c, &items);
        if (r < 0)
                return r;
        size_t i, in_sync = 0, unreachable = 0;
        json_t *n;
        json_array_foreach (items, i, n) {
                const char *state = json_string_value(json_object_get(n, "state"));
                in_sync += state && streq(state, "in_sync");
                unreachable += state && streq(state, "unreachable");
        }
        *ret = json_pack("{s:I, s:I, s:I}", "nodes", (json_int_t)json_array_size(items), "in_sync",
                         (json_int_t)in_sync, "unreachable", (json_int_t)unreachable);
        json_decref(items);
        return *ret ? 0 : -ENOMEM;
}

int api_nodes_delete(struct request *req, struct problem *reterr)
{
        _cleanup_db_conn_ struct db_conn *c = NULL;
        int64_t gen = 0;
        int r = db_acquire(req->app->db, &c, reterr);
        if (r < 0)
                return r;
        /* the one writer's lock first, as every writer takes it: the node's binding goes with
         * it, and its triggers touch certificate rows a batch may hold */
        r = tx_begin(c, TX_WRITE, reterr);
        if (r >= 0)
                r = store_generation(c, &gen, true, reterr);
        if (r >= 0)
                r = store_node_delete(c, req->params[0], stale_usec(req->app->cfg), reterr);
        if (r >= 0)
                r = tx_commit(c, reterr);
        if (r < 0) {
                tx_rollback(c);
                return r;
        }
        return reply_empty(req, 204);
}

int api_nodes_retry(struct request *req, struct problem *reterr)
{
        _cleanup_db_conn_ struct db_conn *c = NULL;
        int r = db_acquire(req->app->db, &c, reterr);
        if (r >= 0)
                r = store_node_retry_request(c, req->params[0], reterr);
        if (r < 0)
                return r;
        /* asked: the node retries when it hears of it (at once, or at its next poll) */
        char location[RESOURCE_PATH_MAX];
        node_path(req->params[0], location);
        reply_header(req, "Location", "%s", location);
        return reply_node(req, c, 202, reterr);
}

static const char *node_outcome(json_t *n, int64_t gen)
{
        const char *state = json_string_value(json_object_get(n, "state"));
        json_t *failed = json_object_get(n, "failed_generation");
        if (json_integer_value(json_object_get(n, "applied_generation")) >= gen)
                return "applied";
        if (state && streq(state, "unreachable"))
                return "unreachable";
        if (json_is_integer(failed) && json_integer_value(failed) >= gen && state &&
            (streq(state, "degraded") || streq(state, "failed")))
                return "failed";
        return "pending";
}

int api_fleet_outcome(const struct config *cfg, struct db_conn *c, int64_t gen, json_t **ret)
{
        json_t *items = NULL;
        int r = fleet_nodes(cfg, c, &items);
        if (r < 0)
                return r;
        json_t *nodes = json_array();
        bool complete = true;
        size_t i;
        json_t *n;
        json_array_foreach (items, i, n) {
                const char *outcome = node_outcome(n, gen);
                complete = complete && !streq(outcome, "pending");
                json_array_append_new(
                    nodes,
                    json_pack("{s:O, s:s, s:O, s:O, s:O}", "name", json_object_get(n, "name"),
                              "outcome", outcome, "state", json_object_get(n, "state"),
                              "applied_generation", json_object_get(n, "applied_generation"),
                              "detail", json_object_get(n, "detail")));
        }
        json_decref(items);
        *ret = json_pack("{s:I, s:b, s:o}", "generation", (json_int_t)gen, "complete", complete,
                         "nodes", nodes);
        return *ret ? 0 : -ENOMEM;
}

int api_node_settings_get(struct request *req, struct problem *reterr)
{
        _cleanup_db_conn_ struct db_conn *c = NULL;
        char cert[65], add[65];
        int64_t version = 0;
        int r = db_acquire(req->app->db, &c, reterr);
        if (r >= 0)
                r = store_node_lookup(c, req->params[0], NULL, reterr);
        if (r >= 0)
                r = store_node_settings_load(c, req->params[0], cert, add, &version, reterr);
        if (r < 0)
                return r;
        if (r > 0) { /* a binding of its own: If-Match can name it */
                char etag[RESOURCE_ETAG_MAX];
                resource_etag(RESOURCE_NODE_SETTINGS, version, etag);
                reply_header(req, "ETag", "%s", etag);
        }
        if (r == 0) { /* it follows the settings: no binding whose version If-Match could name */
                req->reply_untagged = true;
                return reply_json(req, 200,
                                  json_pack("{s:s, s:n, s:n}", "node", req->params[0],
                                            "certificate", "additional_certificate"));
        }
        return reply_json(req, 200,
                          json_pack("{s:s, s:s, s:o}", "node", req->params[0], "certificate", cert,
                                    "additional_certificate",
                                    add[0] ? json_string(add) : json_null()));
}

struct node_settings_body {
        const char *certificate, *additional_certificate;
};

static const struct json_spec node_settings_spec[] = {
        { "certificate", JS_STRING, JS_REQUIRED, offsetof(struct node_settings_body, certificate),
          .max = 64 },
        { "additional_certificate", JS_STRING, JS_NULLABLE,
          offsetof(struct node_settings_body, additional_certificate), .max = 64 },
        /* the resource's own members, sent back as read */
        { "node", JS_ANY, JS_READ_ONLY, 0, .choices = NULL },
        { "generation", JS_ANY, JS_REPLY_ONLY, 0, .choices = NULL },
        { "warnings", JS_ANY, JS_REPLY_ONLY, 0, .choices = NULL },
        { "fleet", JS_ANY, JS_REPLY_ONLY, 0, .choices = NULL },
        { NULL, 0, 0, 0, .choices = NULL },
};

int api_node_settings_put(struct request *req, struct problem *reterr)
{
        json_t *body = NULL;
        struct node_settings_body b = { 0 };
        uint64_t present = 0;
        int r = json_parse_body(req->body, req->body_len, &body, reterr);
        if (r >= 0 && !json_is_object(body))
                r = problem_set(reterr, PROBLEM_BAD_REQUEST, NULL, "the body is a JSON object");
        if (r >= 0)
                r = json_dispatch(body, node_settings_spec, &b, &present, 0, "", reterr);
        json_t *node = r >= 0 ? json_object_get(body, "node") : NULL;
        if (node && (!json_is_string(node) || !streq(json_string_value(node), req->params[0])))
                r = problem_set(reterr, PROBLEM_INVALID_VALUE, "/node",
                                "node is the one the path names ('%s')", req->params[0]);
        if (r >= 0)
                r = api_submit(req, "nodes.settings.put", req->params[0], body, reterr);
        json_decref(body);
        return r;
}

int api_node_settings_delete(struct request *req, struct problem *reterr)
{
        return api_submit(req, "nodes.settings.delete", req->params[0], NULL, reterr);
}
