/* policies.c (store) - the tls_policies table row by row: rows as the API shows them, single
 * writes, the map rendered from the enabled ones, the changes since a version and the map file;
 * the set-based writes (bulk replace, import) are policies_bulk.c's. HTTP threads read; the
 * worker writes. */
#include <stdio.h>

#include "core/policy.h"
#include "core/policy_map_text.h"
#include "store/store.h"
#include "store/tx.h"

#define POLICY_COLUMNS                                                                             \
        "destination, level, array_to_json(match)::text, protocols, ciphers, "                     \
        "array_to_json(exclude)::text, note, enabled, managed_by, servername, tafile, "            \
        "connection_reuse, " DB_TS("created_at") ", " DB_TS("updated_at") ", version"
#define COL_CREATED_AT 12
#define COL_UPDATED_AT 13
#define COL_VERSION    14 /* the row's version (ETag) */
/* What the map needs, in the same positions: the note (up to 1 KiB a row) is never rendered. */
#define POLICY_RENDER_COLUMNS                                                                      \
        "destination, level, array_to_json(match)::text, protocols, ciphers, "                     \
        "array_to_json(exclude)::text, NULL, enabled, managed_by, servername, tafile, "            \
        "connection_reuse"
/* Rows fetched and converted to struct policy at a time while rendering the map (the two
 * numbers are one: the FETCH's count is the array's size). */
#define RENDER_CHUNK 8192
#define RENDER_FETCH "FETCH 8192 FROM smtptlsd_render"

static char **strv_from_json(const char *text, size_t *n)
{
        *n = 0;
        if (streq(text, "[]")) /* most rows: no parse (two a row while rendering the map) */
                return NULL;
        json_t *a = json_loads(text, 0, NULL), *it;
        size_t i;
        if (!json_is_array(a) || json_array_size(a) == 0) {
                json_decref(a);
                return NULL;
        }
        char **v = calloc(json_array_size(a) + 1, sizeof(char *));
        if (v)
                json_array_foreach (a, i, it)
                        v[(*n)++] = strdup(json_string_value(it) ? json_string_value(it) : "");
        json_decref(a);
        return v;
}

static void row_policy(const PGresult *res, int i, struct policy *p)
{
        *p = (struct policy){ 0 };
        snprintf(p->destination, sizeof(p->destination), "%s", PQgetvalue(res, i, 0));
        tls_level_from_string(PQgetvalue(res, i, 1), &p->level);
        p->match = strv_from_json(PQgetvalue(res, i, 2), &p->n_match);
        snprintf(p->protocols, sizeof(p->protocols), "%s", PQgetvalue(res, i, 3));
        snprintf(p->ciphers, sizeof(p->ciphers), "%s", PQgetvalue(res, i, 4));
        p->exclude = strv_from_json(PQgetvalue(res, i, 5), &p->n_exclude);
        p->note = strdup(PQgetvalue(res, i, 6));
        p->enabled = streq(PQgetvalue(res, i, 7), "t");
        snprintf(p->managed_by, sizeof(p->managed_by), "%s", PQgetvalue(res, i, 8));
        snprintf(p->servername, sizeof(p->servername), "%s", PQgetvalue(res, i, 9));
        snprintf(p->tafile, sizeof(p->tafile), "%s", PQgetvalue(res, i, 10));
        p->connection_reuse = PQgetisnull(res, i, 11)              ? POLICY_REUSE_UNSET
                              : streq(PQgetvalue(res, i, 11), "t") ? POLICY_REUSE_YES
                                                                   : POLICY_REUSE_NO;
}

static json_t *row_json(const PGresult *res, int i)
{
        struct policy p;
        row_policy(res, i, &p);
        json_t *j = policy_to_json(&p);
        policy_done(&p);
        json_object_set_new(j, "created_at", json_string(PQgetvalue(res, i, COL_CREATED_AT)));
        json_object_set_new(j, "updated_at", json_string(PQgetvalue(res, i, COL_UPDATED_AT)));
        return j;
}

int store_policies_render(struct db_conn *c, char **text, size_t *len, size_t *entries,
                          int64_t *rows, struct problem *reterr)
{
        _cleanup_pgresult_ PGresult *count = NULL;
        /* A cursor (which needs a transaction: the caller's, else a snapshot of our own), so
         * that a chunk of rows at a time is in memory: one result of a million rows took
         * ~250 MiB. */
        PGTransactionStatusType st = PQtransactionStatus(c->pg);
        bool own = st != PQTRANS_INTRANS && st != PQTRANS_INERROR;
        int r = own ? tx_begin(c, TX_SNAPSHOT, reterr) : 0;
        if (r >= 0)
                r = db_exec(c, &count, reterr, "SELECT count(*) FROM tls_policies", 0, NULL);
        if (r >= 0)
                r = db_exec(
                    c, NULL, reterr,
                    "DECLARE smtptlsd_render NO SCROLL CURSOR FOR SELECT " POLICY_RENDER_COLUMNS
                    " FROM tls_policies WHERE enabled "
                    "ORDER BY destination COLLATE \"C\"",
                    0, NULL);
        if (r < 0) {
                if (own)
                        tx_rollback(c);
                return r;
        }
        *rows = strtoll(PQgetvalue(count, 0, 0), NULL, 10);
        /* The rows come sorted by byte order and unique, so the header and then each chunk's
         * lines (a chunk renders after a header of its own) make the one map policy_map_render
         * would give. */
        size_t n = 0, header = strlen(POLICY_MAP_HEADER);
        struct policy *v = calloc(RENDER_CHUNK, sizeof(*v));
        const struct policy **ptrs = calloc(RENDER_CHUNK, sizeof(*ptrs));
        struct strbuf out = { 0 };
        bool failed = !v || !ptrs; /* rendering, not the database */
        r = failed ? -ENOMEM : strbuf_add(&out, POLICY_MAP_HEADER, header);
        failed = r < 0;
        while (r >= 0) {
                _cleanup_pgresult_ PGresult *res = NULL;
                r = db_exec(c, &res, reterr, RENDER_FETCH, 0, NULL);
                if (r < 0)
                        break;
                size_t m = (size_t)PQntuples(res);
                if (m == 0)
                        break;
                _cleanup_free_ char *chunk = NULL;
                size_t chunk_len = 0;
                for (size_t i = 0; i < m; i++) {
                        row_policy(res, (int)i, &v[i]);
                        ptrs[i] = &v[i];
                }
                r = policy_map_render(ptrs, m, &chunk, &chunk_len);
                for (size_t i = 0; i < m; i++)
                        policy_done(&v[i]);
                if (r >= 0)
                        r = strbuf_add(&out, chunk + header, chunk_len - header);
                failed = r < 0;
                n += m;
        }
        free(v);
        free(ptrs);
        if (own)
                tx_rollback(c);
        else if (r >= 0)
                r = db_exec(c, NULL, reterr, "CLOSE smtptlsd_render", 0, NULL);
        else if (PQtransactionStatus(c->pg) == PQTRANS_INTRANS)
                /* our failure, not the database's: the caller's transaction goes on, without
                 * the cursor (a second render in it would meet the name) */
                db_exec(c, NULL, NULL, "CLOSE smtptlsd_render", 0, NULL);
        if (r < 0) {
                free(out.p);
                if (!failed)
                        return r;
                return problem_set_errno(reterr, -EIO, PROBLEM_INTERNAL_ERROR, NULL,
                                         "cannot render the policy map: %s", strerror(-r));
        }
        *text = out.p;
        if (len)
                *len = out.len;
        *entries = n;
        return 0;
}

int store_policies_map_file(struct db_conn *c, char **text, size_t *len, int64_t *version,
                            struct problem *reterr)
{
        _cleanup_pgresult_ PGresult *head = NULL;
        /* one snapshot: the count and version of the header, and the rows, a chunk at a time */
        int r = tx_begin(c, TX_SNAPSHOT, reterr);
        if (r < 0)
                return r;
        r = db_exec(c, &head, reterr,
                    "SELECT (SELECT count(*) FROM tls_policies WHERE managed_by IS NULL), "
                    "policies_version FROM config_state LIMIT 1",
                    0, NULL);
        if (r >= 0)
                r = db_exec(c, NULL, reterr,
                            "DECLARE smtptlsd_map_file NO SCROLL CURSOR FOR SELECT " POLICY_COLUMNS
                            " FROM tls_policies WHERE managed_by IS NULL "
                            "ORDER BY destination COLLATE \"C\"",
                            0, NULL);
        if (r < 0) {
                tx_rollback(c);
                return r;
        }
        *version = strtoll(PQgetvalue(head, 0, 1), NULL, 10);
        struct strbuf out = { 0 };
        bool failed =
            policy_map_text_header(&out, (size_t)strtoull(PQgetvalue(head, 0, 0), NULL, 10)) < 0;
        r = failed ? -ENOMEM : 0;
        while (r >= 0) {
                _cleanup_pgresult_ PGresult *res = NULL;
                r = db_exec(c, &res, reterr, "FETCH 8192 FROM smtptlsd_map_file", 0, NULL);
                if (r < 0 || PQntuples(res) == 0)
                        break;
                for (int i = 0; r >= 0 && i < PQntuples(res); i++) {
                        struct policy p;
                        row_policy(res, i, &p);
                        r = policy_map_text_add(&out, &p);
                        policy_done(&p);
                }
                failed = r < 0;
        }
        tx_rollback(c);
        if (r < 0) {
                free(out.p);
                return failed ? problem_set_errno(reterr, r, PROBLEM_INTERNAL_ERROR, NULL,
                                                  "cannot write the policies as a map file: %s",
                                                  strerror(-r))
                              : r;
        }
        *text = out.p;
        *len = out.len;
        return 0;
}

int store_policies_enabled_of(struct db_conn *c, json_t *destinations, json_t **ret,
                              struct problem *reterr)
{
        _cleanup_pgresult_ PGresult *res = NULL;
        _cleanup_free_ char *list = json_dumps(destinations, JSON_COMPACT);
        *ret = NULL;
        if (!list)
                return problem_set_errno(reterr, -ENOMEM, PROBLEM_INTERNAL_ERROR, NULL,
                                         "out of memory");
        const char *params[] = { list };
        int r = db_exec(c, &res, reterr,
                        "SELECT destination, enabled FROM tls_policies WHERE destination IN "
                        "(SELECT jsonb_array_elements_text($1::jsonb))",
                        1, params);
        if (r < 0)
                return r;
        json_t *o = json_object();
        for (int i = 0; o && i < PQntuples(res); i++)
                json_object_set_new(o, PQgetvalue(res, i, 0),
                                    json_boolean(streq(PQgetvalue(res, i, 1), "t")));
        if (!o)
                return problem_set_errno(reterr, -ENOMEM, PROBLEM_INTERNAL_ERROR, NULL,
                                         "out of memory");
        *ret = o;
        return 0;
}

int store_policies_map_version(struct db_conn *c, int64_t *version, int64_t *pruned,
                               struct problem *reterr)
{
        _cleanup_pgresult_ PGresult *res = NULL;
        int r = db_exec(c, &res, reterr,
                        "SELECT greatest(policies_version, tombstones_pruned, "
                        "(SELECT coalesce(max(version), 0) FROM tls_policies), "
                        "(SELECT coalesce(max(version), 0) FROM tls_policy_tombstones)), "
                        "tombstones_pruned FROM config_state",
                        0, NULL);
        if (r < 0)
                return r;
        *version = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
        if (pruned)
                *pruned = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
        return 0;
}

int store_policies_exist(struct db_conn *c, bool *any, struct problem *reterr)
{
        _cleanup_pgresult_ PGresult *res = NULL;
        int r = db_exec(c, &res, reterr, "SELECT EXISTS (SELECT 1 FROM tls_policies)", 0, NULL);
        if (r >= 0)
                *any = streq(PQgetvalue(res, 0, 0), "t");
        return r;
}

void policy_changes_done(struct policy_changes *ch)
{
        for (size_t i = 0; i < ch->n_rows; i++)
                policy_done(&ch->rows[i]);
        free(ch->rows);
        for (size_t i = 0; i < ch->n_gone; i++)
                free(ch->gone[i]);
        free(ch->gone);
        *ch = (struct policy_changes){ 0 };
}

int store_policies_changes(struct db_conn *c, int64_t since, size_t max, struct policy_changes *ret,
                           struct problem *reterr)
{
        _cleanup_pgresult_ PGresult *rows = NULL, *gone = NULL;
        *ret = (struct policy_changes){ 0 };
        int64_t pruned = 0;
        /* the version first: a row committed after it is read again by the next delta, never
         * missed */
        int r = store_policies_map_version(c, &ret->version, &pruned, reterr);
        if (r < 0)
                return r;
        /* deletions forgotten since, or a map newer than the database (a failover to a replica
         * without the last commits): the map cannot be brought up to date by changes */
        if (pruned > since || since > ret->version)
                return -ESTALE;
        char since_s[24], limit_s[24];
        snprintf(since_s, sizeof(since_s), "%lld", (long long)since);
        snprintf(limit_s, sizeof(limit_s), "%zu", max + 1);
        const char *params[] = { since_s, limit_s };
        /* More rows than max (a bulk replace): known from the version index alone, before
         * reading and sorting every changed row */
        _cleanup_pgresult_ PGresult *many = NULL;
        r = db_exec(c, &many, reterr,
                    "SELECT count(*) FROM (SELECT 1 FROM tls_policies WHERE version > $1 "
                    "LIMIT $2) x",
                    2, params);
        if (r < 0)
                return r;
        if ((size_t)strtoull(PQgetvalue(many, 0, 0), NULL, 10) > max)
                return -E2BIG;
        r = db_exec(c, &rows, reterr,
                    "SELECT " POLICY_RENDER_COLUMNS " FROM tls_policies WHERE version > $1 "
                    "ORDER BY destination COLLATE \"C\" LIMIT $2",
                    2, params);
        if (r >= 0)
                r = db_exec(c, &gone, reterr,
                            "SELECT DISTINCT t.destination COLLATE \"C\" FROM "
                            "tls_policy_tombstones t WHERE t.version > $1 AND NOT EXISTS "
                            "(SELECT 1 FROM tls_policies p WHERE p.destination = t.destination) "
                            "ORDER BY 1 LIMIT $2",
                            2, params);
        if (r < 0)
                return r;
        size_t n = (size_t)PQntuples(rows), m = (size_t)PQntuples(gone);
        if (n > max || m > max || n + m > max)
                return -E2BIG;
        ret->rows = calloc(n ? n : 1, sizeof(*ret->rows));
        ret->gone = calloc(m + 1, sizeof(char *));
        if (!ret->rows || !ret->gone) {
                policy_changes_done(ret);
                return -ENOMEM;
        }
        for (size_t i = 0; i < n; i++) {
                row_policy(rows, (int)i, &ret->rows[i]);
                ret->n_rows = i + 1;
        }
        for (size_t i = 0; i < m; i++) {
                ret->gone[i] = strdup(PQgetvalue(gone, (int)i, 0));
                if (!ret->gone[i]) {
                        policy_changes_done(ret);
                        return -ENOMEM;
                }
                ret->n_gone = i + 1;
        }
        return 0;
}

int store_policies_prune_tombstones(struct db_conn *c, struct problem *reterr)
{
        return db_exec(c, NULL, reterr,
                       "WITH d AS (DELETE FROM tls_policy_tombstones WHERE deleted_at < now() - "
                       "interval '" TOMBSTONE_KEEP "' RETURNING version) UPDATE config_state SET "
                       "tombstones_pruned = greatest(tombstones_pruned, (SELECT max(version) "
                       "FROM d)) WHERE EXISTS (SELECT 1 FROM d)",
                       0, NULL);
}

int store_policy_get(struct db_conn *c, const char *destination, struct policy *p, json_t **json,
                     int64_t *version, struct problem *reterr)
{
        _cleanup_pgresult_ PGresult *res = NULL;
        const char *params[] = { destination };
        int r = db_exec(c, &res, reterr,
                        "SELECT " POLICY_COLUMNS " FROM tls_policies WHERE destination = $1", 1,
                        params);
        if (r < 0)
                return r;
        if (PQntuples(res) != 1)
                return -ENOENT;
        if (p)
                row_policy(res, 0, p);
        if (json)
                *json = row_json(res, 0);
        if (version)
                *version = strtoll(PQgetvalue(res, 0, COL_VERSION), NULL, 10);
        return 0;
}

static char *strv_json(char **v, size_t n)
{
        json_t *a = json_array();
        for (size_t i = 0; i < n; i++)
                json_array_append_new(a, json_string(v[i]));
        char *s = json_dumps(a, JSON_COMPACT);
        json_decref(a);
        return s;
}

int store_policy_put(struct db_conn *c, const struct policy *p, bool *created,
                     struct problem *reterr)
{
        _cleanup_pgresult_ PGresult *res = NULL;
        _cleanup_free_ char *match = strv_json(p->match, p->n_match);
        _cleanup_free_ char *exclude = strv_json(p->exclude, p->n_exclude);
        const char *params[] = {
                p->destination,
                tls_level_to_string(p->level),
                match,
                p->protocols[0] ? p->protocols : NULL,
                p->ciphers[0] ? p->ciphers : NULL,
                exclude,
                p->note ? p->note : "",
                p->enabled ? "t" : "f",
                p->managed_by[0] ? p->managed_by : NULL,
                p->servername[0] ? p->servername : NULL,
                p->tafile[0] ? p->tafile : NULL,
                p->connection_reuse == POLICY_REUSE_UNSET ? NULL
                : p->connection_reuse == POLICY_REUSE_YES ? "t"
                                                          : "f",
        };
        int r = db_exec(c, &res, reterr,
                        "INSERT INTO tls_policies (destination, level, match, protocols, ciphers, "
                        "exclude, note, enabled, managed_by, servername, tafile, "
                        "connection_reuse) VALUES ($1, $2, "
                        "ARRAY(SELECT jsonb_array_elements_text($3::jsonb)), $4, $5, "
                        "ARRAY(SELECT jsonb_array_elements_text($6::jsonb)), $7, $8, $9, $10, "
                        "$11, $12::boolean) "
                        "ON CONFLICT (destination) DO UPDATE SET level = $2, "
                        "match = EXCLUDED.match, protocols = $4, ciphers = $5, "
                        "exclude = EXCLUDED.exclude, note = $7, enabled = $8, managed_by = $9, "
                        "servername = $10, tafile = $11, connection_reuse = $12::boolean, "
                        "updated_at = now() RETURNING (xmax = 0)",
                        12, params);
        if (r < 0)
                return r;
        *created = streq(PQgetvalue(res, 0, 0), "t");
        return 0;
}

int store_policy_delete(struct db_conn *c, const char *destination, struct problem *reterr)
{
        const char *params[] = { destination };
        return db_exec(c, NULL, reterr, "DELETE FROM tls_policies WHERE destination = $1", 1,
                       params);
}

int store_policies_uncovered(struct db_conn *c, const char *destination, int limit, json_t **names,
                             bool *more, struct problem *reterr)
{
        _cleanup_pgresult_ PGresult *res = NULL;
        char lim[16];
        snprintf(lim, sizeof(lim), "%d", limit + 1);
        const char *params[] = { destination, lim };
        int r = db_exec(c, &res, reterr,
                        "SELECT p.destination FROM tls_policies p WHERE p.enabled "
                        "AND left(p.destination, 1) = '.' "
                        "AND ($1::text IS NULL OR p.destination IN ($1, '.' || $1)) "
                        "AND NOT EXISTS (SELECT 1 FROM tls_policies q WHERE q.enabled "
                        "AND q.destination = substr(p.destination, 2)) "
                        "ORDER BY p.destination COLLATE \"C\" LIMIT $2::int",
                        2, params);
        if (r < 0)
                return r;
        int n = PQntuples(res);
        json_t *a = json_array();
        for (int i = 0; a && i < n && i < limit; i++)
                json_array_append_new(a, json_string(PQgetvalue(res, i, 0)));
        if (!a)
                return problem_set_errno(reterr, -ENOMEM, PROBLEM_INTERNAL_ERROR, NULL,
                                         "out of memory");
        *names = a;
        *more = n > limit;
        return 0;
}

int store_policies_list(struct db_conn *c, const char *q, const char *level, int managed,
                        const char *after, int limit, json_t **items, char **next, int64_t *version,
                        struct problem *reterr)
{
        _cleanup_pgresult_ PGresult *res = NULL;
        char lim[16], man[8];
        _cleanup_free_ char *pattern = db_like_pattern(q);
        snprintf(lim, sizeof(lim), "%d", limit + 1);
        snprintf(man, sizeof(man), "%d", managed);
        const char *params[] = { pattern, level, man, after, lim };
        /* One statement, so that the collection's version and the page are of one snapshot; the
         * outer join yields one row (of NULLs but the version) for an empty page. (LIMIT 1: the
         * planner then expects one row of config_state, not 1330, and does not JIT.) */
        int r = db_exec(c, &res, reterr,
                        "WITH page AS (SELECT " POLICY_COLUMNS " FROM tls_policies "
                        "WHERE ($1::text IS NULL OR destination ILIKE $1 OR note ILIKE $1) "
                        "AND ($2::text IS NULL OR level = $2) "
                        "AND ($3::int < 0 OR (managed_by IS NOT NULL) = ($3::int = 1)) "
                        "AND ($4::text IS NULL OR destination COLLATE \"C\" > $4) "
                        "ORDER BY destination COLLATE \"C\" LIMIT $5::int) "
                        "SELECT page.*, s.policies_version "
                        "FROM (SELECT policies_version FROM config_state LIMIT 1) s "
                        "LEFT JOIN page ON true ORDER BY page.destination COLLATE \"C\"",
                        5, params);
        int n = 0;
        if (r >= 0)
                r = db_page_rows(res, COL_VERSION + 1, version, &n, reterr);
        if (r < 0)
                return r;
        json_t *a = json_array();
        for (int i = 0; i < n && i < limit; i++)
                json_array_append_new(a, row_json(res, i));
        *next = n > limit ? strdup(PQgetvalue(res, limit - 1, 0)) : NULL;
        *items = a;
        return 0;
}

int store_policies_need_trust(struct db_conn *c, bool *ret, struct problem *reterr)
{
        _cleanup_pgresult_ PGresult *res = NULL;
        int r = db_exec(c, &res, reterr,
                        "SELECT EXISTS (SELECT 1 FROM tls_policies WHERE enabled AND level IN "
                        "('verify', 'secure'))",
                        0, NULL);
        if (r >= 0)
                *ret = streq(PQgetvalue(res, 0, 0), "t");
        return r;
}

int store_policies_digest_mismatch(struct db_conn *c, size_t len, char **destination,
                                   struct problem *reterr)
{
        _cleanup_pgresult_ PGresult *res = NULL;
        char buf[24];
        snprintf(buf, sizeof(buf), "%zu", len);
        const char *params[] = { buf };
        int r = db_exec(c, &res, reterr,
                        "SELECT destination FROM tls_policies WHERE enabled AND level = "
                        "'fingerprint' AND EXISTS (SELECT 1 FROM unnest(match) v WHERE length(v) "
                        "<> $1::int) ORDER BY destination LIMIT 1",
                        1, params);
        *destination = NULL;
        if (r >= 0 && PQntuples(res) > 0 && !(*destination = strdup(PQgetvalue(res, 0, 0))))
                r = -ENOMEM;
        return r;
}

int store_policies_json_size(struct db_conn *c, size_t *bytes, struct problem *reterr)
{
        _cleanup_pgresult_ PGresult *res = NULL;
        /* the values, and 180 bytes of member names, quotes, level and nulls a row */
        int r =
            db_exec(c, &res, reterr,
                    "SELECT coalesce(sum(octet_length(destination) + octet_length(note) + "
                    "coalesce(octet_length(protocols), 0) + coalesce(octet_length(ciphers), 0) + "
                    "octet_length(array_to_json(match)::text) + "
                    "octet_length(array_to_json(exclude)::text) + "
                    "coalesce(octet_length(managed_by), 0) + coalesce(octet_length(servername), "
                    "0) + coalesce(octet_length(tafile), 0) + 180), 0) FROM tls_policies",
                    0, NULL);
        if (r < 0)
                return r;
        *bytes = (size_t)strtoull(PQgetvalue(res, 0, 0), NULL, 10);
        return 0;
}

/* Rows fetched at a time by store_policies_dump: the daemon holds one chunk, not every row. */
int store_policies_dump(struct db_conn *c, struct strbuf *out, struct problem *reterr)
{
        int r = db_exec(c, NULL, reterr,
                        "DECLARE state_policies NO SCROLL CURSOR FOR SELECT " POLICY_COLUMNS
                        " FROM tls_policies ORDER BY destination COLLATE \"C\"",
                        0, NULL);
        if (r < 0)
                return r;
        bool first = true;
        r = strbuf_add(out, "[", 1);
        for (int n = 1; r >= 0 && n > 0;) {
                _cleanup_pgresult_ PGresult *res = NULL;
                r = db_exec(c, &res, reterr, "FETCH 5000 FROM state_policies", 0, NULL);
                n = r < 0 ? 0 : PQntuples(res);
                for (int i = 0; r >= 0 && i < n; i++) {
                        struct policy p;
                        row_policy(res, i, &p);
                        json_t *j = policy_to_json(&p);
                        policy_done(&p);
                        _cleanup_free_ char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
                        json_decref(j);
                        if (!text || (!first && strbuf_add(out, ",", 1) < 0) ||
                            strbuf_add(out, text, strlen(text)) < 0)
                                r = problem_set_errno(reterr, -ENOMEM, PROBLEM_INTERNAL_ERROR, NULL,
                                                      "out of memory");
                        first = false;
                }
        }
        if (r >= 0)
                r = strbuf_add(out, "]", 1) < 0
                        ? problem_set_errno(reterr, -ENOMEM, PROBLEM_INTERNAL_ERROR, NULL,
                                            "out of memory")
                        : 0;
        db_exec(c, NULL, NULL, "CLOSE state_policies", 0, NULL);
        return r;
}
