/* nodes.c (store) - the fleet's registry (see nodes.h). The worker thread and HTTP threads. */
#include "store/nodes.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "store/db.h"
#include "util.h"

/* $1: microseconds of silence after which a node is unreachable */
#define NODE_STALE "n.last_contact < now() - make_interval(secs => $1::double precision / 1e6)"
#define NODE_COLUMNS                                                                               \
        "n.name, n.version, n.postfix_version, n.applied_generation, "                             \
        "CASE WHEN " NODE_STALE                                                                    \
        " THEN 'unreachable' ELSE n.state END, n.detail, " DB_TS("n.started_at") ", " DB_TS(       \
            "n.last_contact") ", n.myhostname, n.served_fingerprint, "                             \
                              "n.verified, " DB_TS("n.verified_at") ", c.name, a.name, "           \
                                                                    "n.failed_generation"
#define NODE_FROM                                                                                  \
        " FROM nodes n LEFT JOIN node_settings o ON o.node = n.name "                              \
        "LEFT JOIN certificates c ON c.id = o.certificate_id "                                     \
        "LEFT JOIN certificates a ON a.id = o.additional_certificate_id "

int store_node_register(struct db_conn *c, const char *name, const char *version,
                        const char *postfix_version, const char *myhostname, struct problem *reterr)
{
        const char *params[] = { name, version, postfix_version, myhostname };
        return db_exec(c, NULL, reterr,
                       "INSERT INTO nodes (name, version, postfix_version, myhostname, state, "
                       "detail, started_at, last_contact) VALUES ($1, $2, $3, $4, 'starting', '', "
                       "now(), now()) ON CONFLICT (name) DO UPDATE SET version = $2, "
                       "postfix_version = $3, myhostname = $4, state = 'starting', detail = '', "
                       "retry_requested = false, started_at = now(), last_contact = now()",
                       4, params);
}

int store_node_update(struct db_conn *c, const char *node, int64_t applied, const char *state,
                      const char *detail, int64_t failed, struct problem *reterr)
{
        char gen[24], failed_gen[24];
        snprintf(gen, sizeof(gen), "%lld", (long long)applied);
        snprintf(failed_gen, sizeof(failed_gen), "%lld", (long long)failed);
        const char *params[] = {
                node, gen, state, detail ? detail : "", SMTPTLSD_VERSION, failed ? failed_gen : NULL
        };
        /* told to every node: a write waiting for the fleet (?wait=fleet) wakes on it */
        return db_exec(c, NULL, reterr,
                       "WITH u AS (INSERT INTO nodes (name, applied_generation, state, detail, "
                       "version, failed_generation, last_contact) VALUES ($1, $2, $3, $4, $5, "
                       "$6, now()) ON CONFLICT (name) DO UPDATE SET applied_generation = $2, "
                       "state = $3, detail = $4, version = $5, failed_generation = $6, "
                       "last_contact = now() RETURNING name) "
                       "SELECT pg_notify('" NODE_CHANGED_CHANNEL "', name) FROM u",
                       6, params);
}

int store_node_heartbeat(struct db_conn *c, const char *name, struct problem *reterr)
{
        const char *params[] = { name };
        return db_exec(c, NULL, reterr, "UPDATE nodes SET last_contact = now() WHERE name = $1", 1,
                       params);
}

static json_t *text_or_null(const PGresult *res, int i, int col)
{
        return PQgetisnull(res, i, col) ? json_null() : json_string(PQgetvalue(res, i, col));
}

static json_t *node_json(const PGresult *res, int i)
{
        json_t *settings = json_null();
        if (!PQgetisnull(res, i, 12))
                settings = json_pack("{s:s, s:o}", "certificate", PQgetvalue(res, i, 12),
                                     "additional_certificate", text_or_null(res, i, 13));
        json_t *j = json_pack(
            "{s:s, s:s, s:s, s:I, s:s, s:s, s:s, s:s, s:s, s:{s:s, s:o, s:o}, s:o}", "name",
            PQgetvalue(res, i, 0), "version", PQgetvalue(res, i, 1), "postfix_version",
            PQgetvalue(res, i, 2), "applied_generation",
            (json_int_t)strtoll(PQgetvalue(res, i, 3), NULL, 10), "state", PQgetvalue(res, i, 4),
            "detail", PQgetvalue(res, i, 5), "started_at", PQgetvalue(res, i, 6), "last_seen",
            PQgetvalue(res, i, 7), "myhostname", PQgetvalue(res, i, 8), "served", "fingerprint",
            PQgetvalue(res, i, 9), "verified",
            PQgetisnull(res, i, 10) ? json_null()
                                    : json_boolean(streq(PQgetvalue(res, i, 10), "t")),
            "checked_at", text_or_null(res, i, 11), "settings", settings);
        if (j && !PQgetisnull(res, i, 14))
                json_object_set_new(j, "failed_generation",
                                    json_integer(strtoll(PQgetvalue(res, i, 14), NULL, 10)));
        return j;
}

int store_nodes_list(struct db_conn *c, uint64_t stale_usec, json_t **items, struct problem *reterr)
{
        _cleanup_pgresult_ PGresult *res = NULL;
        char stale[24];
        snprintf(stale, sizeof(stale), "%llu", (unsigned long long)stale_usec);
        const char *params[] = { stale };
        int r =
            db_exec(c, &res, reterr, "SELECT " NODE_COLUMNS NODE_FROM "ORDER BY n.name", 1, params);
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
        int r = db_exec(c, &res, reterr, "SELECT " NODE_COLUMNS NODE_FROM "WHERE n.name = $2", 2,
                        params);
        if (r < 0)
                return r;
        if (PQntuples(res) == 0)
                return problem_set_errno(reterr, -ENOENT, PROBLEM_NOT_FOUND, NULL, "no node '%s'",
                                         name);
        *ret = node_json(res, 0);
        return 0;
}

int store_node_served(PGconn *pg, const char *name, const char *fingerprint, bool verified,
                      struct problem *reterr)
{
        const char *params[] = { name, fingerprint, verified ? "t" : "f" };
        return db_exec_pg(pg, NULL, reterr,
                          "UPDATE nodes SET served_fingerprint = $2, verified = $3, "
                          "verified_at = now() WHERE name = $1",
                          3, params);
}

int store_node_retry_request(struct db_conn *c, const char *name, struct problem *reterr)
{
        _cleanup_pgresult_ PGresult *res = NULL;
        const char *params[] = { name };
        int r = db_exec(c, &res, reterr,
                        "WITH n AS (UPDATE nodes SET retry_requested = true WHERE name = $1 "
                        "RETURNING name) SELECT pg_notify('" NODE_RETRY_CHANNEL "', name) FROM n",
                        1, params);
        if (r >= 0 && PQntuples(res) == 0)
                return problem_set_errno(reterr, -ENOENT, PROBLEM_NOT_FOUND, NULL, "no node '%s'",
                                         name);
        return r;
}

int store_node_retry_take(struct db_conn *c, const char *name, bool *requested,
                          struct problem *reterr)
{
        _cleanup_pgresult_ PGresult *res = NULL;
        const char *params[] = { name };
        int r = db_exec(c, &res, reterr,
                        "UPDATE nodes SET retry_requested = false WHERE name = $1 AND "
                        "retry_requested RETURNING 1",
                        1, params);
        *requested = r >= 0 && PQntuples(res) > 0;
        return r;
}

int store_node_delete(struct db_conn *c, const char *name, uint64_t stale_usec,
                      struct problem *reterr)
{
        _cleanup_pgresult_ PGresult *res = NULL;
        char stale[24];
        snprintf(stale, sizeof(stale), "%llu", (unsigned long long)stale_usec);
        const char *params[] = { stale, name };
        /* one statement: the row, and whether it was still alive when it was looked at */
        int r = db_exec(c, &res, reterr,
                        "WITH n AS (SELECT name, " NODE_STALE " AS stale FROM nodes n "
                        "WHERE name = $2 FOR UPDATE), d AS (DELETE FROM nodes USING n "
                        "WHERE nodes.name = n.name AND n.stale RETURNING 1) "
                        "SELECT n.stale FROM n",
                        2, params);
        if (r < 0)
                return r;
        if (PQntuples(res) == 0)
                return problem_set_errno(reterr, -ENOENT, PROBLEM_NOT_FOUND, NULL, "no node '%s'",
                                         name);
        if (!streq(PQgetvalue(res, 0, 0), "t"))
                return problem_set(reterr, PROBLEM_NODE_ALIVE, NULL,
                                   "node '%s' is alive (its heartbeat is recent): stop its "
                                   "daemon first, then delete it once it is unreachable",
                                   name);
        return 0;
}

int store_node_lookup(struct db_conn *c, const char *name, char **myhostname,
                      struct problem *reterr)
{
        _cleanup_pgresult_ PGresult *res = NULL;
        const char *params[] = { name };
        int r = db_exec(c, &res, reterr, "SELECT myhostname FROM nodes WHERE name = $1", 1, params);
        if (r < 0)
                return r;
        if (PQntuples(res) == 0)
                return problem_set_errno(reterr, -ENOENT, PROBLEM_NOT_FOUND, NULL, "no node '%s'",
                                         name);
        if (myhostname && !(*myhostname = strdup(PQgetvalue(res, 0, 0))))
                return -ENOMEM;
        return 0;
}

int store_node_settings_load(struct db_conn *c, const char *node, char certificate[65],
                             char additional[65], int64_t *version, struct problem *reterr)
{
        _cleanup_pgresult_ PGresult *res = NULL;
        const char *params[] = { node };
        certificate[0] = additional[0] = 0;
        if (version)
                *version = 0;
        int r = db_exec(c, &res, reterr,
                        "SELECT c.name, a.name, o.version FROM node_settings o "
                        "JOIN certificates c ON c.id = o.certificate_id "
                        "LEFT JOIN certificates a ON a.id = o.additional_certificate_id "
                        "WHERE o.node = $1",
                        1, params);
        if (r < 0)
                return r;
        if (PQntuples(res) == 0)
                return 0;
        snprintf(certificate, 65, "%s", PQgetvalue(res, 0, 0));
        snprintf(additional, 65, "%s", PQgetvalue(res, 0, 1));
        if (version)
                *version = strtoll(PQgetvalue(res, 0, 2), NULL, 10);
        return 1;
}

int store_node_settings_put(struct db_conn *c, const char *node, int64_t certificate,
                            int64_t additional, struct problem *reterr)
{
        char cert[24], add[24];
        snprintf(cert, sizeof(cert), "%lld", (long long)certificate);
        snprintf(add, sizeof(add), "%lld", (long long)additional);
        const char *params[] = { node, cert, additional ? add : NULL };
        /* an update that changes nothing touches no row: no version moves, no generation */
        return db_exec(
            c, NULL, reterr,
            "INSERT INTO node_settings (node, certificate_id, additional_certificate_id) "
            "VALUES ($1, $2, $3) ON CONFLICT (node) DO UPDATE SET certificate_id = $2, "
            "additional_certificate_id = $3, updated_at = now() "
            "WHERE (node_settings.certificate_id, node_settings.additional_certificate_id) "
            "IS DISTINCT FROM ($2::bigint, $3::bigint)",
            3, params);
}

int store_node_settings_delete(struct db_conn *c, const char *node, bool *existed,
                               struct problem *reterr)
{
        _cleanup_pgresult_ PGresult *res = NULL;
        const char *params[] = { node };
        int r = db_exec(c, &res, reterr, "DELETE FROM node_settings WHERE node = $1 RETURNING 1", 1,
                        params);
        *existed = r >= 0 && PQntuples(res) > 0;
        return r;
}

int store_cert_nodes(struct db_conn *c, int64_t certificate, const char *node, bool *on_node,
                     struct problem *reterr)
{
        _cleanup_pgresult_ PGresult *res = NULL;
        char id[24];
        snprintf(id, sizeof(id), "%lld", (long long)certificate);
        const char *params[] = { id, node };
        int r = db_exec(c, &res, reterr,
                        "SELECT 1 FROM certificate_nodes WHERE certificate_id = $1 AND node = $2",
                        2, params);
        *on_node = r >= 0 && PQntuples(res) > 0;
        return r;
}

int store_cert_node_copy(struct db_conn *c, const char *name, const char *node,
                         char fingerprint[96], struct problem *reterr)
{
        _cleanup_pgresult_ PGresult *res = NULL;
        const char *params[] = { name, node };
        fingerprint[0] = 0;
        int r = db_exec(c, &res, reterr,
                        "SELECT n.sha256_fingerprint FROM certificate_nodes n JOIN certificates c "
                        "ON c.id = n.certificate_id WHERE c.name = $1 AND n.node = $2",
                        2, params);
        if (r >= 0 && PQntuples(res) > 0)
                snprintf(fingerprint, 96, "%s", PQgetvalue(res, 0, 0));
        return r;
}

int store_cert_node_mark(struct db_conn *c, const char *name, const char *node,
                         const char *fingerprint, int64_t not_after, struct problem *reterr)
{
        char when[24];
        snprintf(when, sizeof(when), "%lld", (long long)not_after);
        const char *params[] = { name, node, fingerprint, not_after ? when : NULL };
        return db_exec(c, NULL, reterr,
                       "INSERT INTO certificate_nodes (certificate_id, node, sha256_fingerprint, "
                       "not_after) SELECT id, $2, $3, to_timestamp($4) FROM certificates "
                       "WHERE name = $1 ON CONFLICT (certificate_id, node) DO UPDATE SET "
                       "sha256_fingerprint = $3, not_after = to_timestamp($4), seen_at = now() "
                       "WHERE (certificate_nodes.sha256_fingerprint, certificate_nodes.not_after) "
                       "IS DISTINCT FROM ($3, to_timestamp($4))",
                       4, params);
}

int store_cert_node_forget(struct db_conn *c, const char *name, const char *node, int *holders,
                           struct problem *reterr)
{
        _cleanup_pgresult_ PGresult *res = NULL;
        const char *params[] = { name, node };
        int r = db_exec(c, &res, reterr,
                        "WITH d AS (DELETE FROM certificate_nodes n USING certificates c "
                        "WHERE c.id = n.certificate_id AND c.name = $1 AND n.node = $2 "
                        "RETURNING n.certificate_id) "
                        "SELECT count(*) FROM certificate_nodes n JOIN certificates c "
                        "ON c.id = n.certificate_id JOIN nodes r ON r.name = n.node "
                        "WHERE c.name = $1 AND n.node <> $2",
                        2, params);
        *holders = r >= 0 ? (int)strtol(PQgetvalue(res, 0, 0), NULL, 10) : 0;
        return r;
}

int store_cert_nodes_lacking(struct db_conn *c, int64_t certificate, uint64_t stale_usec,
                             const char *except, char **names, struct problem *reterr)
{
        _cleanup_pgresult_ PGresult *res = NULL;
        char id[24], stale[24];
        snprintf(id, sizeof(id), "%lld", (long long)certificate);
        snprintf(stale, sizeof(stale), "%llu", (unsigned long long)stale_usec);
        const char *params[] = { stale, id, except };
        int r = db_exec(c, &res, reterr,
                        "SELECT coalesce(string_agg(n.name, ', ' ORDER BY n.name), '') "
                        "FROM nodes n WHERE NOT (" NODE_STALE ") AND n.name <> $3 "
                        "AND NOT EXISTS (SELECT 1 FROM node_settings o WHERE o.node = n.name) "
                        "AND NOT EXISTS (SELECT 1 FROM certificate_nodes h "
                        "WHERE h.certificate_id = $2 AND h.node = n.name)",
                        3, params);
        if (r < 0)
                return r;
        *names = strdup(PQgetvalue(res, 0, 0));
        return *names ? 0 : -ENOMEM;
}
