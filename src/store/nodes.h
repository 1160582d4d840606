/* nodes.h (store) - the fleet's registry (the nodes table: 001, 011, 012): a node registers itself
 * at start (name, version, Postfix version, myhostname, started_at), keeps a heartbeat
 * (last_contact), its worker records what it applied (store_node_update, store.h) and its
 * verifier what smtpd served; a retry asked of it; its own certificate binding (node_settings).
 * Read by GET /api/v1/nodes and /api/v1/status. The worker thread (register, heartbeat, retry),
 * the verifier's thread (served), HTTP threads (reads, retry requests, deletes). */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "core/problem.h"

struct db_conn;

/* NOTIFY channels: a node asked to retry (payload: its name), a node's row changed (payload: its
 * name; what ?wait=fleet waits for). */
#define NODE_RETRY_CHANNEL   "smtptlsd_retry"
#define NODE_CHANGED_CHANNEL "smtptlsd_node"

/* The node starts: its row (created or taken over) with started_at and last_contact now, state
 * starting. */
int store_node_register(struct db_conn *c, const char *name, const char *version,
                        const char *postfix_version, const char *myhostname,
                        struct problem *reterr);
/* What its worker applied: generation, state (in_sync, applying, degraded, failed), detail, and
 * the generation it could not apply (0: none); NOTIFY NODE_CHANGED_CHANNEL. */
int store_node_update(struct db_conn *c, const char *node, int64_t applied, const char *state,
                      const char *detail, int64_t failed, struct problem *reterr);
/* Its heartbeat: last_contact now. */
int store_node_heartbeat(struct db_conn *c, const char *name, struct problem *reterr);
/* Every node by name as GET /api/v1/nodes shows it ({name, version, postfix_version,
 * applied_generation, state, detail, started_at, last_seen, myhostname, served: {fingerprint,
 * verified, checked_at}, settings: {certificate, additional_certificate} or null}); a node whose
 * last_contact is older than stale_usec is state "unreachable". */
int store_nodes_list(struct db_conn *c, uint64_t stale_usec, json_t **items,
                     struct problem *reterr);
/* One of them; -ENOENT (not_found) when there is no such node. */
int store_node_get(struct db_conn *c, const char *name, uint64_t stale_usec, json_t **ret,
                   struct problem *reterr);
/* What the node's verifier saw its smtpd serve (SHA-256 fingerprints joined by ','), and whether
 * it was what the node applied. On the verifier's own connection. */
int store_node_served(PGconn *pg, const char *name, const char *fingerprint, bool verified,
                      struct problem *reterr);
/* POST /api/v1/nodes/{name}/retry: the flag set and the node told (NOTIFY); -ENOENT. */
int store_node_retry_request(struct db_conn *c, const char *name, struct problem *reterr);
/* The node takes a retry asked of it: *requested, and the flag cleared. */
int store_node_retry_take(struct db_conn *c, const char *name, bool *requested,
                          struct problem *reterr);
/* DELETE /api/v1/nodes/{name}: only a node silent for stale_usec (node_alive otherwise; its
 * own certificate binding goes with it); -ENOENT. */
int store_node_delete(struct db_conn *c, const char *name, uint64_t stale_usec,
                      struct problem *reterr);
/* The node exists (-ENOENT, not_found, otherwise); *myhostname (NULL: not wanted) its Postfix's. */
int store_node_lookup(struct db_conn *c, const char *name, char **myhostname,
                      struct problem *reterr);
/* A node's own certificate binding (node_settings): the names (additional "" when none) and its
 * version (ETag; NULL: not wanted); 1 when it has one, 0 when it follows the settings. */
int store_node_settings_load(struct db_conn *c, const char *node, char certificate[65],
                             char additional[65], int64_t *version, struct problem *reterr);
/* Binds certificate (and additional, 0: none) on the node: nothing changes (no version moves)
 * when it is bound so already. */
int store_node_settings_put(struct db_conn *c, const char *node, int64_t certificate,
                            int64_t additional, struct problem *reterr);
int store_node_settings_delete(struct db_conn *c, const char *node, bool *existed,
                               struct problem *reterr);
/* ACME certificates per node (certificate_nodes): whether the node has it, the node's scan
 * found it (its own copy: each node renews its own), the node's scan did not (*holders: how many
 * other nodes still have it). */
int store_cert_nodes(struct db_conn *c, int64_t certificate, const char *node, bool *on_node,
                     struct problem *reterr);
int store_cert_node_mark(struct db_conn *c, const char *name, const char *node,
                         const char *fingerprint, int64_t not_after, struct problem *reterr);
/* What the node's scan last found of it (its SHA-256 fingerprint; "" when it had none). */
int store_cert_node_copy(struct db_conn *c, const char *name, const char *node,
                         char fingerprint[96], struct problem *reterr);
int store_cert_node_forget(struct db_conn *c, const char *name, const char *node, int *holders,
                           struct problem *reterr);
/* The live nodes but except that follow the settings' binding (no binding of their own) and lack
 * the ACME certificate: their names joined by ", " ("" none). */
int store_cert_nodes_lacking(struct db_conn *c, int64_t certificate, uint64_t stale_usec,
                             const char *except, char **names, struct problem *reterr);
