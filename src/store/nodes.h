/* nodes.h (store) - the fleet's registry (the nodes table: 001, 011): a node registers itself at
 * start (name, version, Postfix version, started_at), keeps a heartbeat (last_contact), and its
 * worker records what it applied (store_node_update, store.h). Read by GET /api/v1/nodes and
 * /api/v1/status. The worker thread (register, heartbeat) and HTTP threads (reads). */
#pragma once

#include <jansson.h>
#include <stdint.h>

#include "core/problem.h"

struct db_conn;

/* The node starts: its row (created or taken over) with started_at and last_contact now, state
 * starting. */
int store_node_register(struct db_conn *c, const char *name, const char *version,
                        const char *postfix_version, struct problem *reterr);
/* Its heartbeat: last_contact now. */
int store_node_heartbeat(struct db_conn *c, const char *name, struct problem *reterr);
/* Every node by name as GET /api/v1/nodes shows it ({name, version, postfix_version,
 * applied_generation, state, detail, started_at, last_seen}); a node whose last_contact is older
 * than stale_usec is state "unreachable". */
int store_nodes_list(struct db_conn *c, uint64_t stale_usec, json_t **items,
                     struct problem *reterr);
/* One of them; -ENOENT (not_found) when there is no such node. */
int store_node_get(struct db_conn *c, const char *name, uint64_t stale_usec, json_t **ret,
                   struct problem *reterr);
