/* jobs.c (store) - the jobs table: inserted as 'queued' by the HTTP thread that accepted a write
 * (so an acknowledged write survives a crash), finished by the worker, read as the audit trail.
 * HTTP threads and the worker. */
#include <stdio.h>
#include <openssl/rand.h>

#include "config.h"
#include "core/resource.h"
#include "core/sealed.h"
#include "store/store.h"

#define JOB_COLUMNS                                                                                \
        "id, status, actor, action, target, " DB_TS("created_at") ", " DB_TS(                      \
            "finished_at") ", "                                                                    \
                           "generation, postmap, reload, error::text, output, verified, "          \
                           "before::text, after::text, "                                           \
                           "warnings::text"

/* The additional data of a pending key's envelope: its reference and the job's target. */
static void pending_key_context(char *buf, size_t size, const char *ref, const char *target)
{
        snprintf(buf, size, "pending_keys.private_key:%s:%s", ref, target);
}

/* items (a bulk's, JSON text) go into their own column as text (016_job_items.sql): PostgreSQL
 * does not parse them here. */
static int job_insert(struct db_conn *c, const char *node, const char *actor, const char *action,
                      const char *target, json_t *request, const char *items, const char *ref,
                      const char *key, int64_t *id, char *created_at, struct problem *reterr)
{
        _cleanup_pgresult_ PGresult *res = NULL;
        _cleanup_free_ char *req = request ? json_dumps(request, JSON_COMPACT) : NULL;
        const char *params[] = { node, actor, action, target, req, items, ref, key };
        /* One statement: the key is durable exactly when the job is. */
        int r = db_exec(
            c, &res, reterr,
            key ? "WITH j AS (INSERT INTO jobs (node, status, actor, action, target, "
                  "request, items) VALUES ($1, 'queued', $2, $3, $4, $5::jsonb, $6) RETURNING "
                  "id, " DB_TS(
                      "created_at") " AS created_at), "
                                    "k AS (INSERT INTO pending_keys (ref, job_id, private_key) "
                                    "SELECT $7, id, $8 FROM j) SELECT id, created_at FROM j"
                : "INSERT INTO jobs (node, status, actor, action, target, request, items) "
                  "VALUES ($1, 'queued', $2, $3, $4, $5::jsonb, $6) RETURNING id, " DB_TS(
                      "created_at"),
            key ? 8 : 6, params);
        if (items)
                db_drop(c); /* its send buffer is as large as the items now */
        if (r < 0)
                return r;
        *id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
        if (created_at)
                snprintf(created_at, STORE_TIME_SIZE, "%s", PQgetvalue(res, 0, 1));
        return 0;
}

int store_job_insert(struct db_conn *c, const char *node, const char *actor, const char *action,
                     const char *target, json_t *request, const char *items, int64_t *id,
                     char *created_at, struct problem *reterr)
{
        return job_insert(c, node, actor, action, target, request, items, NULL, NULL, id,
                          created_at, reterr);
}

int store_job_insert_with_key(struct db_conn *c, const char *node, const char *actor,
                              const char *action, const char *target, json_t *request,
                              const char *items, const char *key_pem, const struct kek *kek,
                              int64_t *id, char *created_at, struct problem *reterr)
{
        unsigned char raw[16];
        char ref[33], context[400];
        if (RAND_bytes(raw, sizeof(raw)) != 1)
                return problem_set_errno(reterr, -EIO, PROBLEM_INTERNAL_ERROR, NULL,
                                         "no random bytes");
        hex_encode(raw, sizeof(raw), ref);
        json_object_set_new(request, "private_key_ref", json_string(ref));
        if (!kek)
                return job_insert(c, node, actor, action, target, request, items, ref, key_pem, id,
                                  created_at, reterr);
        _cleanup_free_ char *sealed = NULL;
        pending_key_context(context, sizeof(context), ref, target);
        if (sealed_seal(kek, context, key_pem, strlen(key_pem), &sealed) < 0)
                return problem_set_errno(reterr, -EIO, PROBLEM_INTERNAL_ERROR, NULL,
                                         "cannot encrypt the private key");
        return job_insert(c, node, actor, action, target, request, items, ref, sealed, id,
                          created_at, reterr);
}

int store_job_key_open(const struct kek *kek, json_t *row, char **ret, struct problem *reterr)
{
        json_t *req = json_object_get(row, "request");
        const char *ref = json_string_value(json_object_get(req, "private_key_ref"));
        const char *target = json_string_value(json_object_get(row, "target"));
        const char *stored = json_string_value(json_object_get(row, "private_key"));
        char context[400], what[400];
        *ret = NULL;
        if (!ref)
                return 0;
        pending_key_context(context, sizeof(context), ref, target ? target : "");
        snprintf(what, sizeof(what), "the pending upload of certificate '%s'", target);
        return store_key_open(kek, context, stored, what, ret, reterr);
}

static json_t *json_or_null(const PGresult *res, int row, int col)
{
        if (PQgetisnull(res, row, col))
                return json_null();
        json_t *j = json_loads(PQgetvalue(res, row, col), JSON_DECODE_ANY, NULL);
        return j ? j : json_null();
}

static json_t *text_or_null(const PGresult *res, int row, int col)
{
        return PQgetisnull(res, row, col) ? json_null() : json_string(PQgetvalue(res, row, col));
}

static json_t *bool_or_null(const PGresult *res, int row, int col)
{
        return PQgetisnull(res, row, col) ? json_null()
                                          : json_boolean(streq(PQgetvalue(res, row, col), "t"));
}

static json_t *job_json(const PGresult *res, int i)
{
        json_t *j = json_object();
        int64_t id = strtoll(PQgetvalue(res, i, 0), NULL, 10);
        json_object_set_new(j, "id", json_integer(id));
        json_object_set_new(j, "status", json_string(PQgetvalue(res, i, 1)));
        json_object_set_new(j, "actor", json_string(PQgetvalue(res, i, 2)));
        json_object_set_new(j, "action", json_string(PQgetvalue(res, i, 3)));
        json_object_set_new(j, "target", json_string(PQgetvalue(res, i, 4)));
        /* the resource the job wrote: none before it is applied, nor for a deletion */
        char location[RESOURCE_PATH_MAX];
        json_object_set_new(
            j, "location",
            streq(PQgetvalue(res, i, 1), "applied") &&
                    job_location(PQgetvalue(res, i, 3), PQgetvalue(res, i, 4), location)
                ? json_string(location)
                : json_null());
        json_object_set_new(j, "created_at", text_or_null(res, i, 5));
        json_object_set_new(j, "finished_at", text_or_null(res, i, 6));
        json_object_set_new(j, "generation",
                            PQgetisnull(res, i, 7)
                                ? json_null()
                                : json_integer(strtoll(PQgetvalue(res, i, 7), NULL, 10)));
        /* An applied job that changed nothing has no generation of its own (no version moved,
         * no file was touched): "changed" says so plainly. */
        json_object_set_new(
            j, "changed",
            json_boolean(streq(PQgetvalue(res, i, 1), "applied") && !PQgetisnull(res, i, 7)));
        json_object_set_new(j, "postmap", json_boolean(streq(PQgetvalue(res, i, 8), "t")));
        json_object_set_new(j, "reload", json_boolean(streq(PQgetvalue(res, i, 9), "t")));
        json_object_set_new(j, "error", json_or_null(res, i, 10));
        json_object_set_new(j, "output", json_string(PQgetvalue(res, i, 11)));
        json_object_set_new(j, "verified", bool_or_null(res, i, 12));
        json_object_set_new(j, "before", json_or_null(res, i, 13));
        json_object_set_new(j, "after", json_or_null(res, i, 14));
        /* always a list: a failed job (none recorded) has [] */
        json_t *warnings = json_or_null(res, i, 15);
        json_object_set_new(j, "warnings", json_is_array(warnings) ? warnings : json_array());
        if (!json_is_array(warnings))
                json_decref(warnings);
        return j;
}

int store_job_get(struct db_conn *c, int64_t id, json_t **ret, struct problem *reterr)
{
        _cleanup_pgresult_ PGresult *res = NULL;
        char idbuf[24];
        snprintf(idbuf, sizeof(idbuf), "%lld", (long long)id);
        const char *params[] = { idbuf };
        int r =
            db_exec(c, &res, reterr, "SELECT " JOB_COLUMNS " FROM jobs WHERE id = $1", 1, params);
        if (r < 0)
                return r;
        if (PQntuples(res) != 1)
                return problem_set_errno(reterr, -ENOENT, PROBLEM_NOT_FOUND, NULL, "no job %lld",
                                         (long long)id);
        *ret = job_json(res, 0);
        return 0;
}

int store_job_list(struct db_conn *c, const struct job_filter *f, int limit, json_t **items,
                   int64_t *next, struct problem *reterr)
{
        _cleanup_pgresult_ PGresult *res = NULL;
        char b[24], l[16], since[24];
        snprintf(b, sizeof(b), "%lld", (long long)(f->before > 0 ? f->before : INT64_MAX));
        snprintf(l, sizeof(l), "%d", limit + 1);
        snprintf(since, sizeof(since), "%lld", (long long)f->since);
        const char *params[] = {
                b, l, f->status, f->actor, f->action, f->target, f->since ? since : NULL,
        };
        int r = db_exec(c, &res, reterr,
                        "SELECT " JOB_COLUMNS " FROM jobs WHERE id < $1 "
                        "AND ($3::text IS NULL OR status = $3) "
                        "AND ($4::text IS NULL OR actor = $4) "
                        "AND ($5::text IS NULL OR action = $5) "
                        "AND ($6::text IS NULL OR target = $6) "
                        "AND ($7::bigint IS NULL OR created_at >= to_timestamp($7::bigint)) "
                        "ORDER BY id DESC LIMIT $2",
                        7, params);
        if (r < 0)
                return r;
        json_t *a = json_array();
        int n = PQntuples(res);
        for (int i = 0; i < n && i < limit; i++)
                json_array_append_new(a, job_json(res, i));
        *next = n > limit ? strtoll(PQgetvalue(res, limit - 1, 0), NULL, 10) : 0;
        *items = a;
        return 0;
}

int store_job_finish(struct db_conn *c, int64_t id, const struct job_outcome *o,
                     struct problem *reterr)
{
        char idbuf[24], gen[24];
        _cleanup_free_ char *err = o->error ? json_dumps(o->error, JSON_COMPACT) : NULL;
        _cleanup_free_ char *before = o->before ? json_dumps(o->before, JSON_COMPACT) : NULL;
        _cleanup_free_ char *after = o->after ? json_dumps(o->after, JSON_COMPACT) : NULL;
        _cleanup_free_ char *warn = o->warnings ? json_dumps(o->warnings, JSON_COMPACT) : NULL;
        snprintf(idbuf, sizeof(idbuf), "%lld", (long long)id);
        snprintf(gen, sizeof(gen), "%lld", (long long)o->generation);
        const char *params[] = {
                idbuf,
                o->status,
                o->generation > 0 ? gen : NULL,
                o->postmap ? "t" : "f",
                o->reload ? "t" : "f",
                o->output ? o->output : "",
                err,
                before,
                after,
                warn,
        };
        /* The upload's pending key goes with the job's end (in the transaction that wrote the
         * certificate, for an applied job); the request is not kept either. */
        return db_exec(c, NULL, reterr,
                       "WITH gone AS (DELETE FROM pending_keys WHERE job_id = $1) "
                       "UPDATE jobs SET status = $2, generation = $3, postmap = $4, reload = $5, "
                       "output = $6, error = $7::jsonb, before = $8::jsonb, after = $9::jsonb, "
                       "warnings = $10::jsonb, finished_at = clock_timestamp(), request = NULL, "
                       "items = NULL "
                       "WHERE id = $1",
                       10, params);
}

int store_job_attempt(struct db_conn *c, int64_t id, int *attempts, struct problem *reterr)
{
        _cleanup_pgresult_ PGresult *res = NULL;
        char idbuf[24];
        snprintf(idbuf, sizeof(idbuf), "%lld", (long long)id);
        const char *params[] = { idbuf };
        int r = db_exec(c, &res, reterr,
                        "UPDATE jobs SET attempts = attempts + 1 WHERE id = $1 RETURNING attempts",
                        1, params);
        if (r < 0)
                return r;
        *attempts = PQntuples(res) == 1 ? atoi(PQgetvalue(res, 0, 0)) : 0;
        return 0;
}

int store_jobs_pending(struct db_conn *c, const char *node, json_t **rows, struct problem *reterr)
{
        _cleanup_pgresult_ PGresult *res = NULL;
        const char *params[] = { node };
        int r = db_exec(c, &res, reterr,
                        /* a bulk's items stay in the row: the worker reads them there (an
                         * older binary's bulk has them in request.body.policy: 016) */
                        "SELECT j.id, j.action, j.target, j.actor, coalesce((CASE WHEN j.action = "
                        "'policies.bulk' THEN j.request #- '{body,policy}' ELSE j.request "
                        "END)::text, 'null'), k.private_key "
                        "FROM jobs j LEFT JOIN pending_keys k ON k.job_id = j.id "
                        "WHERE j.node = $1 AND j.status IN ('queued', 'running') "
                        "ORDER BY j.id",
                        1, params);
        if (r < 0)
                return r;
        json_t *a = json_array();
        for (int i = 0; i < PQntuples(res); i++) {
                json_t *req = json_loads(PQgetvalue(res, i, 4), JSON_DECODE_ANY, NULL);
                json_t *row =
                    json_pack("{s:I, s:s, s:s, s:s, s:o}", "id",
                              (json_int_t)strtoll(PQgetvalue(res, i, 0), NULL, 10), "action",
                              PQgetvalue(res, i, 1), "target", PQgetvalue(res, i, 2), "actor",
                              PQgetvalue(res, i, 3), "request", req ? req : json_null());
                if (!PQgetisnull(res, i, 5))
                        json_object_set_new(row, "private_key", json_string(PQgetvalue(res, i, 5)));
                db_wipe_value(res, i, 5);
                json_array_append_new(a, row);
        }
        *rows = a;
        return 0;
}
