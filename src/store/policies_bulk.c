/* policies_bulk.c (store) - the set-based writes of the tls_policies table: a bulk replace (the
 * unmanaged rows, or the whole state at admin; whole or as the delta the HTTP thread worked out)
 * and an import, each one statement per step whatever the number of items: the items go into a
 * temporary table, are checked there, and three merges write only the rows that change. Worker
 * thread (and an HTTP thread's dry run, in a transaction it rolls back). */
#include <stdio.h>

#include "core/policy.h"
#include "store/store.h"

/* The columns of a bulk's items (json_to_recordset), with the table's defaults applied, so that
 * an item compares and writes as the row it becomes (the job row leaves the members at their
 * defaults out: item_drop_defaults in api/policies.c; keep the two in step). */
#define INCOMING_SELECT                                                                            \
        "SELECT destination, level, coalesce(match, '{}') AS match, protocols, ciphers, "          \
        "coalesce(exclude, '{}') AS exclude, coalesce(note, '') AS note, "                         \
        "coalesce(enabled, true) AS enabled, managed_by, servername, tafile, connection_reuse, n " \
        "FROM ROWS FROM "
#define INCOMING_COLUMNS                                                                           \
        "AS (destination text, level text, match text[], protocols text, ciphers text, "           \
        "exclude text[], note text, enabled boolean, managed_by text, servername text, "           \
        "tafile text, connection_reuse boolean)) WITH ORDINALITY "                                 \
        "AS x(destination, level, match, protocols, ciphers, exclude, note, enabled, managed_by, " \
        "servername, tafile, connection_reuse, n)"
/* The columns a write compares and sets beside destination, level and managed_by. */
#define ATTR_COLUMNS(t)                                                                            \
        t "match, " t "protocols, " t "ciphers, " t "exclude, " t "servername, " t "tafile, " t    \
          "connection_reuse, " t "note, " t "enabled"

/* The temporary table `incoming` (dropped at commit) of a bulk's or an import's items: the JSON
 * text given (a dry run), else the job row's (its items column; a job an older binary recorded
 * has them in request.body.policy: 016_job_items.sql). From the job row the items must be there:
 * a row without them (its request already dropped) is an error ('null' is not an array), never an
 * empty list, which would remove every unmanaged row. *total: the items (may be NULL). */
static int load_incoming(struct db_conn *c, const char *items, int64_t job_id, long long *total,
                         struct problem *reterr)
{
        _cleanup_pgresult_ PGresult *res = NULL;
        char idbuf[24];
        snprintf(idbuf, sizeof(idbuf), "%lld", (long long)job_id);
        const char *params[] = { items ? items : idbuf };
        int r = db_exec(c, &res, reterr,
                        items ? "CREATE TEMP TABLE incoming ON COMMIT DROP AS " INCOMING_SELECT
                                "(json_to_recordset($1::json) " INCOMING_COLUMNS
                              : "CREATE TEMP TABLE incoming ON COMMIT DROP AS " INCOMING_SELECT
                                "(json_to_recordset(coalesce((SELECT coalesce(items, (request "
                                "#> '{body,policy}')::text) FROM jobs WHERE id = $1::bigint), "
                                "'null')::json) " INCOMING_COLUMNS,
                        1, params);
        if (r >= 0 && total)
                *total = strtoll(PQcmdTuples(res), NULL, 10);
        return r;
}

int store_policies_import(struct db_conn *c, const char *items, int64_t job_id, int64_t *added,
                          struct problem *reterr)
{
        _cleanup_pgresult_ PGresult *clash = NULL;
        int r = load_incoming(c, items, job_id, NULL, reterr);
        if (r < 0)
                return r;
        /* an import adds: a row made since it looked is a conflict, never overwritten */
        r = db_exec(c, &clash, reterr,
                    "SELECT i.destination FROM incoming i JOIN tls_policies p USING (destination) "
                    "ORDER BY 1 LIMIT 1",
                    0, NULL);
        if (r >= 0 && PQntuples(clash) > 0) {
                r = problem_set_errno(reterr, -EEXIST, PROBLEM_DUPLICATE_DESTINATION, NULL,
                                      "a policy for '%s' was made since the import looked; "
                                      "import again",
                                      PQgetvalue(clash, 0, 0));
                return r;
        }
        _cleanup_pgresult_ PGresult *ins = NULL;
        if (r >= 0)
                r = db_exec(c, &ins, reterr,
                            "INSERT INTO tls_policies (destination, level, match, protocols, "
                            "ciphers, exclude, servername, tafile, connection_reuse, note, "
                            "enabled) SELECT destination, level, match, protocols, ciphers, "
                            "exclude, servername, tafile, connection_reuse, note, enabled "
                            "FROM incoming",
                            0, NULL);
        if (r >= 0)
                *added = strtoll(PQcmdTuples(ins), NULL, 10);
        if (r >= 0)
                db_exec(c, NULL, NULL, "DROP TABLE IF EXISTS incoming", 0, NULL);
        return r;
}

/* Whether a stored row p and an incoming one i are the same: a bulk compares what it writes, the
 * whole state the manager too. */
#define SAME_BULK                                                                                  \
        "(p.level, " ATTR_COLUMNS("p.") ") IS NOT DISTINCT FROM (i.level, " ATTR_COLUMNS("i.") ")"
#define SAME_WHOLE                                                                                 \
        "(p.level, " ATTR_COLUMNS("p.") ", p.managed_by) IS NOT DISTINCT FROM "                    \
                                        "(i.level, " ATTR_COLUMNS("i.") ", i.managed_by)"

/* The whole state below admin: managed rows stay exactly as they are (issue 10's rule: a managed
 * row changes only with its manager's name, which needs admin). The first row that would change
 * is refused, named by its position in the items when it is there. */
static int check_managed_unchanged(struct db_conn *c, const char *base, struct problem *reterr)
{
        _cleanup_pgresult_ PGresult *res = NULL;
        int r = db_exec(c, &res, reterr,
                        "SELECT coalesce(i.destination, p.destination), i.n - 1, p.managed_by, "
                        "i.managed_by FROM incoming i FULL JOIN tls_policies p USING (destination) "
                        "WHERE (p.managed_by IS NOT NULL OR i.managed_by IS NOT NULL) AND "
                        "(i.destination IS NULL OR p.destination IS NULL OR NOT " SAME_WHOLE ") "
                        "ORDER BY i.n NULLS LAST, 1 LIMIT 1",
                        0, NULL);
        if (r < 0 || PQntuples(res) == 0)
                return r;
        const char *dest = PQgetvalue(res, 0, 0), *was = PQgetvalue(res, 0, 2);
        const char *now = PQgetvalue(res, 0, 3);
        char prefix[64] = "", field[80] = "";
        if (!PQgetisnull(res, 0, 1)) {
                snprintf(prefix, sizeof(prefix), "%s/%s", base, PQgetvalue(res, 0, 1));
                snprintf(field, sizeof(field), "%s/managed_by", prefix);
        }
        if (!streq(was, now) && prefix[0])
                return policy_check_manager_change(was, now, SCOPE_WRITE, prefix, reterr);
        return problem_set_errno(
            reterr, -EPERM, PROBLEM_MANAGED_ROW, field,
            "'%s' is managed by '%s': only a token with scope 'admin' replaces "
            "managed rows (the document must carry it unchanged)",
            dest, was[0] ? was : now);
}

/* The items in `incoming` against the rules a bulk keeps beside each item's own checks: no
 * destination twice, fingerprints of the digest's length, and the managed rows (a bulk leaves
 * them alone; the whole state below admin keeps them as they are). -ENOTSUP: a delta whose
 * problem needs the item's place in the whole body. */
static int bulk_check(struct db_conn *c, enum scope scope, bool whole,
                      const struct fingerprint_digest *digest, const char *base, bool delta,
                      struct problem *reterr)
{
        _cleanup_pgresult_ PGresult *twice = NULL, *fpr = NULL, *managed = NULL, *clash = NULL;
        /* A destination twice (the API refuses it; a job row that reached the queue some other
         * way is checked here): the merge would pick one of them, or fail on the key */
        int r = db_exec(c, &twice, reterr,
                        "SELECT destination, max(n) - 1 FROM incoming GROUP BY destination "
                        "HAVING count(*) > 1 ORDER BY 2 LIMIT 1",
                        0, NULL);
        if (r < 0)
                return r;
        if (PQntuples(twice) > 0) {
                char field[64];
                snprintf(field, sizeof(field), "%s/%s/destination", base, PQgetvalue(twice, 0, 1));
                return problem_set_errno(reterr, -EEXIST, PROBLEM_DUPLICATE_DESTINATION, field,
                                         "'%s' is in the items twice", PQgetvalue(twice, 0, 0));
        }
        if (digest && digest->len) {
                /* the first fingerprint the effective digest cannot produce */
                char len[24];
                snprintf(len, sizeof(len), "%zu", digest->len);
                const char *p[] = { len };
                r = db_exec(c, &fpr, reterr,
                            "SELECT n - 1, k - 1, v FROM incoming, unnest(match) WITH ORDINALITY "
                            "AS m(v, k) WHERE level = 'fingerprint' AND length(v) <> $1::int "
                            "ORDER BY n, k LIMIT 1",
                            1, p);
                if (r >= 0 && PQntuples(fpr) > 0 && delta)
                        return -ENOTSUP; /* its field needs its place in the body */
                if (r >= 0 && PQntuples(fpr) > 0) {
                        char field[96];
                        snprintf(field, sizeof(field), "%s/%s/match/%s", base,
                                 PQgetvalue(fpr, 0, 0), PQgetvalue(fpr, 0, 1));
                        r = policy_check_fingerprint_digest(digest, PQgetvalue(fpr, 0, 2), field,
                                                            reterr);
                }
                if (r < 0)
                        return r;
        }
        if (whole) {
                /* The whole state: managed rows too, at admin; below, they must not change. */
                r = db_exec(c, NULL, reterr, "ANALYZE incoming", 0, NULL);
                if (r >= 0 && scope < SCOPE_ADMIN)
                        r = check_managed_unchanged(c, base, reterr);
                return r;
        }
        /* Bulk replace writes unmanaged rows only. The API refuses managed_by in items; a job
         * that reached the queue some other way is checked against the scope it recorded. */
        r = db_exec(c, &managed, reterr,
                    "SELECT n - 1, managed_by FROM incoming WHERE managed_by IS NOT NULL "
                    "ORDER BY n LIMIT 1",
                    0, NULL);
        if (r < 0)
                return r;
        if (PQntuples(managed) > 0) {
                char prefix[48], field[64];
                snprintf(prefix, sizeof(prefix), "%s/%s", base, PQgetvalue(managed, 0, 0));
                snprintf(field, sizeof(field), "%s/managed_by", prefix);
                r = policy_check_manager_change("", PQgetvalue(managed, 0, 1), scope, prefix,
                                                reterr);
                if (r >= 0)
                        r = problem_set(reterr, PROBLEM_INVALID_VALUE, field,
                                        "bulk replace writes unmanaged rows only; set managed_by "
                                        "with a single-policy write");
                return r;
        }
        r = db_exec(c, &clash, reterr,
                    "SELECT i.destination, p.managed_by FROM incoming i JOIN tls_policies p "
                    "USING (destination) WHERE p.managed_by IS NOT NULL ORDER BY 1 LIMIT 1",
                    0, NULL);
        if (r >= 0 && PQntuples(clash) > 0)
                r = problem_set_errno(
                    reterr, -EPERM, PROBLEM_MANAGED_ROW, NULL,
                    "'%s' is managed by '%s'; bulk replace leaves managed rows alone",
                    PQgetvalue(clash, 0, 0), PQgetvalue(clash, 0, 1));
        return r;
}

/* The rows this write owns: the unmanaged ones (bulk), all of them (the whole state). Three
 * statements, each touching only the rows it changes: those gone (not in `incoming`; with a
 * delta, the destinations it names), those changed (a row the same as its item is not written:
 * no trigger, no version, no new tuple), those new. Their row counts are the counts of the
 * reply; total: the items of the whole body. */
static int bulk_merge(struct db_conn *c, bool whole, const struct store_bulk_delta *delta,
                      long long total, json_t **counts, struct problem *reterr)
{
        _cleanup_pgresult_ PGresult *deleted = NULL, *updated = NULL, *inserted = NULL;
        _cleanup_free_ char *update_sql = NULL, *delete_sql = NULL, *insert_sql = NULL;
        const char *mine = whole ? "true" : "p.managed_by IS NULL";
        const char *same = whole ? SAME_WHOLE : SAME_BULK;
        const char *manager = whole ? ", managed_by" : "";
        if ((delta ? asprintf(&delete_sql,
                              "DELETE FROM tls_policies p WHERE %s AND p.destination IN "
                              "(SELECT jsonb_array_elements_text($1::jsonb))",
                              mine)
                   : asprintf(&delete_sql,
                              "DELETE FROM tls_policies p WHERE %s AND NOT EXISTS "
                              "(SELECT 1 FROM incoming i WHERE i.destination = p.destination)",
                              mine)) < 0 ||
            asprintf(&update_sql,
                     "UPDATE tls_policies p SET level = i.level, match = i.match, "
                     "protocols = i.protocols, ciphers = i.ciphers, exclude = i.exclude, "
                     "servername = i.servername, tafile = i.tafile, "
                     "connection_reuse = i.connection_reuse, note = i.note, enabled = i.enabled%s, "
                     "updated_at = now() FROM incoming i WHERE p.destination = i.destination "
                     "AND %s AND NOT %s",
                     whole ? ", managed_by = i.managed_by" : "", mine, same) < 0 ||
            asprintf(&insert_sql,
                     "INSERT INTO tls_policies (destination, level, match, protocols, ciphers, "
                     "exclude, servername, tafile, connection_reuse, note, enabled%s) "
                     "SELECT destination, level, match, protocols, ciphers, exclude, servername, "
                     "tafile, connection_reuse, note, enabled%s FROM incoming i WHERE NOT EXISTS "
                     "(SELECT 1 FROM tls_policies p WHERE p.destination = i.destination)",
                     manager, manager) < 0)
                return problem_set_errno(reterr, -ENOMEM, PROBLEM_INTERNAL_ERROR, NULL,
                                         "out of memory");
        const char *del_params[] = { delta ? delta->deletes : NULL };
        int r = db_exec(c, &deleted, reterr, delete_sql, delta ? 1 : 0, delta ? del_params : NULL);
        if (r >= 0)
                r = db_exec(c, &updated, reterr, update_sql, 0, NULL);
        if (r >= 0)
                r = db_exec(c, &inserted, reterr, insert_sql, 0, NULL);
        if (r < 0)
                return r;
        long long removed = strtoll(PQcmdTuples(deleted), NULL, 10);
        long long changed = strtoll(PQcmdTuples(updated), NULL, 10);
        long long added = strtoll(PQcmdTuples(inserted), NULL, 10);
        *counts = json_pack("{s:I, s:I, s:I, s:I}", "added", (json_int_t)added, "changed",
                            (json_int_t)changed, "removed", (json_int_t)removed, "unchanged",
                            (json_int_t)(total - added - changed));
        return *counts ? 0
                       : problem_set_errno(reterr, -ENOMEM, PROBLEM_INTERNAL_ERROR, NULL,
                                           "out of memory");
}

int store_policies_bulk(struct db_conn *c, const char *items, int64_t job_id, enum scope scope,
                        bool whole, const struct fingerprint_digest *digest, const char *base,
                        const struct store_bulk_delta *delta, json_t **counts,
                        struct problem *reterr)
{
        long long total = 0; /* the items, for the count of the unchanged ones */
        int r = load_incoming(c, delta ? delta->upserts : items, job_id, &total, reterr);
        if (r < 0)
                return r;
        if (delta)
                total = delta->total;
        r = bulk_check(c, scope, whole, digest, base, delta != NULL, reterr);
        if (r >= 0)
                r = bulk_merge(c, whole, delta, total, counts, reterr);
        /* After a failure the caller rolls back (the job's savepoint, or the dry run's
         * transaction), which drops the table; a statement now would only meet an aborted
         * transaction ("commands ignored until end of transaction block"). -ENOTSUP (the
         * caller applies the items whole next) comes before any failed statement. */
        if (r >= 0 || r == -ENOTSUP)
                db_exec(c, NULL, NULL, "DROP TABLE IF EXISTS incoming", 0, NULL);
        return r;
}
