/* probes.c (store) - the destination probe's audit trail (see probes.h). HTTP threads and the
 * probe threads. */
#include "changes.h"
#include "store/probes.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "store/db.h"
#include "util.h"

int store_probe_insert(struct db_conn *c, const char *node, const char *actor,
                       const char *destination, const char *level, const char *reason, int64_t *id,
                       struct problem *reterr)
{
        _cleanup_pgresult_ PGresult *res = NULL;
        const char *params[] = { node, actor, destination, level, reason };
        int r = db_exec(c, &res, reterr,
                        "INSERT INTO probes (node, actor, destination, level, reason) "
                        "VALUES ($1, $2, $3, $4, $5) RETURNING id",
                        5, params);
        if (r < 0)
                return r;
        *id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
        return 0;
}

int store_probe_finish(struct db_conn *c, int64_t id, const char *outcome, const char *recommended,
                       json_t *result, bool forced, struct problem *reterr)
{
        char idbuf[24];
        _cleanup_free_ char *text = result ? json_dumps(result, JSON_COMPACT) : NULL;
        snprintf(idbuf, sizeof(idbuf), "%lld", (long long)id);
        const char *params[] = { idbuf, outcome, recommended, text, forced ? "t" : "f" };
        int r = db_exec(c, NULL, reterr,
                        "UPDATE probes SET outcome = $2, recommended = $3, result = $4::jsonb, "
                        "forced = $5, finished_at = clock_timestamp() WHERE id = $1",
                        5, params);
        changes_bump(); /* /status shows the policies failing their probe */
        return r;
}

static json_t *text_or_null(const PGresult *res, int row, int col)
{
        return PQgetisnull(res, row, col) ? json_null() : json_string(PQgetvalue(res, row, col));
}

/* The audit columns every list selects first: id, actor, destination, level, reason, outcome,
 * recommended, forced, created_at, finished_at. */
#define PROBE_COLUMNS                                                                              \
        "id, actor, destination, level, reason, outcome, recommended, forced, " DB_TS(             \
            "created_at") ", " DB_TS("finished_at")

/* One row of PROBE_COLUMNS as the API shows it. */
static json_t *probe_row_json(const PGresult *res, int i)
{
        return json_pack("{s:I, s:s, s:s, s:o, s:s, s:o, s:o, s:b, s:s, s:o}", "id",
                         (json_int_t)strtoll(PQgetvalue(res, i, 0), NULL, 10), "actor",
                         PQgetvalue(res, i, 1), "destination", PQgetvalue(res, i, 2), "level",
                         text_or_null(res, i, 3), "reason", PQgetvalue(res, i, 4), "outcome",
                         text_or_null(res, i, 5), "recommended", text_or_null(res, i, 6), "forced",
                         streq(PQgetvalue(res, i, 7), "t"), "created_at", PQgetvalue(res, i, 8),
                         "finished_at", text_or_null(res, i, 9));
}

int store_probe_list(struct db_conn *c, int64_t before, const char *destination, int limit,
                     bool with_result, json_t **items, int64_t *next, struct problem *reterr)
{
        _cleanup_pgresult_ PGresult *res = NULL;
        char b[24], l[16];
        snprintf(b, sizeof(b), "%lld", (long long)(before > 0 ? before : INT64_MAX));
        snprintf(l, sizeof(l), "%d", limit + 1);
        const char *params[] = { b, l, destination, with_result ? "t" : "f" };
        int r = db_exec(c, &res, reterr,
                        "SELECT " PROBE_COLUMNS ", CASE WHEN $4::boolean THEN result::text END "
                        "FROM probes WHERE id < $1 "
                        "AND ($3::text IS NULL OR destination = $3) "
                        "ORDER BY id DESC LIMIT $2",
                        4, params);
        if (r < 0)
                return r;
        json_t *a = json_array();
        int n = PQntuples(res);
        for (int i = 0; i < n && i < limit; i++) {
                json_t *row = probe_row_json(res, i);
                if (with_result)
                        json_object_set_new(row, "result",
                                            PQgetisnull(res, i, 10)
                                                ? json_null()
                                                : json_loads(PQgetvalue(res, i, 10), 0, NULL));
                json_array_append_new(a, row);
        }
        *next = n > limit ? strtoll(PQgetvalue(res, limit - 1, 0), NULL, 10) : 0;
        *items = a;
        return 0;
}

/* the last finished probe of policy p at its level */
#define LAST_PROBE                                                                                 \
        "LEFT JOIN LATERAL (SELECT r.outcome, r.created_at, r.result FROM probes r "               \
        "WHERE r.destination = p.destination AND r.level = p.level AND r.outcome IS NOT NULL "     \
        "ORDER BY r.id DESC LIMIT 1) last ON true "
#define ABOVE_MAY "p.enabled AND p.level NOT IN ('none', 'may') "

int store_probe_latest(struct db_conn *c, int limit, json_t **items, struct problem *reterr)
{
        _cleanup_pgresult_ PGresult *res = NULL;
        char l[16];
        snprintf(l, sizeof(l), "%d", limit);
        const char *params[] = { l };
        int r = db_exec(c, &res, reterr,
                        "SELECT " PROBE_COLUMNS " FROM ("
                        "SELECT DISTINCT ON (destination) * FROM probes WHERE outcome IS "
                        "NOT NULL "
                        "ORDER BY destination, id DESC) x ORDER BY destination LIMIT $1",
                        1, params);
        if (r < 0)
                return r;
        json_t *a = json_array();
        for (int i = 0; i < PQntuples(res); i++)
                json_array_append_new(a, probe_row_json(res, i));
        *items = a;
        return 0;
}

int store_probe_due(struct db_conn *c, int64_t interval_sec, json_t **ret, struct problem *reterr)
{
        _cleanup_pgresult_ PGresult *res = NULL;
        char iv[24];
        snprintf(iv, sizeof(iv), "%lld", (long long)interval_sec);
        const char *params[] = { iv };
        *ret = NULL;
        int r = db_exec(c, &res, reterr,
                        "SELECT p.destination, p.level, array_to_json(p.match)::text "
                        "FROM tls_policies p " LAST_PROBE "WHERE " ABOVE_MAY
                        "AND (last.created_at IS NULL "
                        "OR last.created_at < now() - make_interval(secs => $1::bigint) "
                        "OR last.created_at < p.updated_at) "
                        "ORDER BY last.created_at NULLS FIRST, p.destination LIMIT 1",
                        1, params);
        if (r < 0 || PQntuples(res) == 0)
                return r < 0 ? r : 0;
        *ret =
            json_pack("{s:s, s:s, s:o}", "destination", PQgetvalue(res, 0, 0), "level",
                      PQgetvalue(res, 0, 1), "match", json_loads(PQgetvalue(res, 0, 2), 0, NULL));
        return *ret ? 0 : -ENOMEM;
}

int store_probes_failing(struct db_conn *c, int limit, json_t **items, int64_t *total,
                         struct problem *reterr)
{
        _cleanup_pgresult_ PGresult *res = NULL;
        char l[16];
        snprintf(l, sizeof(l), "%d", limit);
        const char *params[] = { l };
        int r = db_exec(c, &res, reterr,
                        "SELECT p.destination, p.level, last.outcome, " DB_TS(
                            "last.created_at") ", last.result->'reasons'->>p.level, "
                                               "count(*) OVER () "
                                               "FROM tls_policies p " LAST_PROBE "WHERE " ABOVE_MAY
                                               "AND last.outcome IN ('failed', 'unreachable') "
                                               "ORDER BY p.destination LIMIT $1",
                        1, params);
        if (r < 0)
                return r;
        json_t *a = json_array();
        int n = PQntuples(res);
        for (int i = 0; i < n; i++)
                json_array_append_new(
                    a, json_pack("{s:s, s:s, s:s, s:s, s:o}", "destination", PQgetvalue(res, i, 0),
                                 "level", PQgetvalue(res, i, 1), "outcome", PQgetvalue(res, i, 2),
                                 "probed_at", PQgetvalue(res, i, 3), "reason",
                                 text_or_null(res, i, 4)));
        *total = n > 0 ? strtoll(PQgetvalue(res, 0, 5), NULL, 10) : 0;
        *items = a;
        return 0;
}
