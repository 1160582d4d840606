/* nodes.c (api) - the fleet's registry: GET /api/v1/nodes and /api/v1/nodes/{name} (every daemon
 * sharing this database, what it applied, its heartbeat; silent for three heartbeat intervals:
 * unreachable). HTTP threads. */
#include "api/api.h"
#include "app.h"
#include "conf.h"
#include "store/db.h"
#include "store/nodes.h"

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

int api_nodes_get(struct request *req, struct problem *reterr)
{
        _cleanup_db_conn_ struct db_conn *c = NULL;
        json_t *node = NULL;
        int r = db_acquire(req->app->db, &c, reterr);
        if (r >= 0)
                r = store_node_get(c, req->params[0], stale_usec(req->app->cfg), &node, reterr);
        if (r < 0)
                return r;
        json_object_set_new(node, "self",
                            json_boolean(streq(req->params[0], req->app->cfg->node_name)));
        return reply_json(req, 200, node);
}

int api_fleet_summary(const struct config *cfg, struct db_conn *c, json_t **ret)
{
        struct problem p = { 0 };
        json_t *items = NULL;
        int r = store_nodes_list(c, stale_usec(cfg), &items, &p);
        problem_done(&p);
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
