/* nodes.c (store) - the fleet's registry (see nodes.h). The worker thread and HTTP threads. */
#include "store/nodes.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "store/db.h"
#include "util.h"

/* $1: microseconds of silence after which a node is unreachable */
#define NODE_COLUMNS                                                                               \
        "name, version, postfix_version, applied_generation, "                                     \
        "CASE WHEN last_contact < now() - make_interval(secs => $1::double precision / 1e6) "      \
        "THEN 'unreachable' ELSE state END, detail, " DB_TS("started_at") ", " DB_TS(              \
            "last_contact")

int store_node_register(struct db_conn *c, const char *name, const char *version,
                        const char *postfix_version, struct problem *reterr)
{
        const char *params[] = { name, version, postfix_version };
        return db_exec(c, NULL, reterr,
                       "INSERT INTO nodes (name, version, postfix_version, state, detail, "
                       "started_at, last_contact) VALUES ($1, $2, $3, 'starting', '', now(), "
                       "now()) ON CONFLICT (name) DO UPDATE SET version = $2, postfix_version = "
                       "$3, state = 'starting', detail = '', started_at = now(), last_contact = "
                       "now()",
                       3, params);
}

int store_node_heartbeat(struct db_conn *c, const char *name, struct problem *reterr)
{
        const char *params[] = { name };
        return db_exec(c, NULL, reterr, "UPDATE nodes SET last_contact = now() WHERE name = $1", 1,
                       params);
}

static json_t *node_json(const PGresult *res, int i)
{
        return json_pack("{s:s, s:s, s:s, s:I, s:s, s:s, s:s, s:s}", "name", PQgetvalue(res, i, 0),
                         "version", PQgetvalue(res, i, 1), "postfix_version", PQgetvalue(res, i, 2),
                         "applied_generation", (json_int_t)strtoll(PQgetvalue(res, i, 3), NULL, 10),
                         "state", PQgetvalue(res, i, 4), "detail", PQgetvalue(res, i, 5),
                         "started_at", PQgetvalue(res, i, 6), "last_seen", PQgetvalue(res, i, 7));
}

int store_nodes_list(struct db_conn *c, uint64_t stale_usec, json_t **items, struct problem *reterr)
{
        _cleanup_pgresult_ PGresult *res = NULL;
        char stale[24];
        snprintf(stale, sizeof(stale), "%llu", (unsigned long long)stale_usec);
        const char *params[] = { stale };
        int r =
            db_exec(c, &res, reterr, "SELECT " NODE_COLUMNS " FROM nodes ORDER BY name", 1, params);
        if (r < 0)
                return r;
        json_t *a = json_array();
        for (int i = 0; i < PQntuples(res); i++)
                json_array_append_new(a, node_json(res, i));
        *items = a;
        return 0;
}

int store_node_get(struct db_conn *c, const char *name, uint64_t stale_usec, json_t **ret,
                   struct problem *reterr)
{
        _cleanup_pgresult_ PGresult *res = NULL;
        char stale[24];
        snprintf(stale, sizeof(stale), "%llu", (unsigned long long)stale_usec);
        const char *params[] = { stale, name };
        int r = db_exec(c, &res, reterr, "SELECT " NODE_COLUMNS " FROM nodes WHERE name = $2", 2,
                        params);
        if (r < 0)
                return r;
        if (PQntuples(res) == 0)
                return problem_set_errno(reterr, -ENOENT, PROBLEM_NOT_FOUND, NULL, "no node '%s'",
                                         name);
        *ret = node_json(res, 0);
        return 0;
}
