/* tokens.c - the tokens table: create (random, shown once), list, revoke, authenticate by
 * SHA-256. HTTP threads and the command line. Never logs a token. */
#include "store/tokens.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>

void secret_sha256_hex(const char *s, char out[65])
{
        unsigned char md[32];
        unsigned int len = 0;
        EVP_Digest(s, strlen(s), md, &len, EVP_sha256(), NULL);
        hex_encode(md, 32, out);
        OPENSSL_cleanse(md, sizeof(md));
}

static int make_token(char out[static TOKEN_SIZE])
{
        unsigned char raw[32];
        size_t n = strlen(TOKEN_PREFIX);

        if (RAND_bytes(raw, sizeof(raw)) != 1)
                return -EIO;
        memcpy(out, TOKEN_PREFIX, n);
        base64url_encode(raw, sizeof(raw), out + n); /* 4 + 43 characters */
        OPENSSL_cleanse(raw, sizeof(raw));
        return 0;
}

static int duplicate_name(const char *name, struct problem *reterr)
{
        return problem_set_errno(reterr, -EEXIST, PROBLEM_DUPLICATE_NAME, "/name",
                                 "a token named '%s' exists; revoke it first", name);
}

static int no_such_token(const char *name, struct problem *reterr)
{
        return problem_set_errno(reterr, -ENOENT, PROBLEM_NOT_FOUND, NULL,
                                 "no active token named '%s'", name);
}

int tokens_find(struct db_conn *c, const char *name, enum scope *scope, struct problem *reterr)
{
        _cleanup_pgresult_ PGresult *res = NULL;
        const char *params[] = { name };
        int r =
            db_exec(c, &res, reterr,
                    "SELECT scope FROM tokens WHERE name = $1 AND revoked_at IS NULL", 1, params);
        if (r < 0)
                return r;
        if (PQntuples(res) == 0)
                return no_such_token(name, reterr);
        if (scope && scope_from_string(PQgetvalue(res, 0, 0), scope) < 0)
                return problem_set_errno(reterr, -EIO, PROBLEM_INTERNAL_ERROR, NULL,
                                         "token '%s' has an unknown scope", name);
        return 0;
}

int tokens_check_new(struct db_conn *c, const char *name, struct problem *reterr)
{
        struct problem p = { 0 };
        if (!name_is_valid(name))
                return problem_set(reterr, PROBLEM_INVALID_NAME, "/name",
                                   "token names are [a-z0-9][a-z0-9._-]{0,63}");
        int r = tokens_find(c, name, NULL, &p);
        if (r < 0 && r != -ENOENT) {
                *reterr = p;
                return r;
        }
        problem_done(&p);
        return r == 0 ? duplicate_name(name, reterr) : 0;
}

int tokens_add(struct db_conn *c, const char *name, enum scope scope,
               char token_out[static TOKEN_SIZE], json_t **row, struct problem *reterr)
{
        _cleanup_pgresult_ PGresult *res = NULL;
        char hash[65];
        int r;

        if (!name_is_valid(name))
                return problem_set(reterr, PROBLEM_INVALID_NAME, "/name",
                                   "token names are [a-z0-9][a-z0-9._-]{0,63}");
        r = make_token(token_out);
        if (r < 0)
                return problem_set_errno(reterr, r, PROBLEM_INTERNAL_ERROR, NULL,
                                         "no random bytes available");
        secret_sha256_hex(token_out, hash);
        const char *params[] = { name, scope_to_string(scope), hash };
        r = db_exec(c, &res, reterr,
                    "INSERT INTO tokens (name, scope, sha256) VALUES ($1, $2, $3) "
                    "RETURNING to_char(created_at AT TIME ZONE 'UTC', "
                    "'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')",
                    3, params);
        if (r == -EEXIST)
                return duplicate_name(name, reterr);
        if (r < 0)
                return r;
        if (row)
                *row = json_pack("{s:s, s:s, s:s}", "name", name, "scope", scope_to_string(scope),
                                 "created_at", PQgetvalue(res, 0, 0));
        return 0;
}

/* The tokens named name (NULL: all), active ones only unless include_revoked. */
static int tokens_select(struct db_conn *c, bool include_revoked, const char *name, json_t **items,
                         struct problem *reterr)
{
        _cleanup_pgresult_ PGresult *res = NULL;
        const char *params[] = { include_revoked ? "t" : "f", name };
        int r = db_exec(c, &res, reterr,
                        "SELECT name, scope, "
                        "to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), "
                        "to_char(last_used_at AT TIME ZONE 'UTC', "
                        "'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), "
                        "to_char(revoked_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') "
                        "FROM tokens WHERE (revoked_at IS NULL OR $1::boolean) "
                        "AND ($2::text IS NULL OR name = $2) ORDER BY name, created_at",
                        2, params);
        if (r < 0)
                return r;
        json_t *a = json_array();
        for (int i = 0; i < PQntuples(res); i++) {
                json_t *o = json_pack("{s:s, s:s, s:s}", "name", PQgetvalue(res, i, 0), "scope",
                                      PQgetvalue(res, i, 1), "created_at", PQgetvalue(res, i, 2));
                json_object_set_new(o, "last_used_at",
                                    PQgetisnull(res, i, 3) ? json_null()
                                                           : json_string(PQgetvalue(res, i, 3)));
                if (include_revoked && !PQgetisnull(res, i, 4))
                        json_object_set_new(o, "revoked_at", json_string(PQgetvalue(res, i, 4)));
                json_array_append_new(a, o);
        }
        *items = a;
        return 0;
}

int tokens_list(struct db_conn *c, bool include_revoked, json_t **items, struct problem *reterr)
{
        return tokens_select(c, include_revoked, NULL, items, reterr);
}

int tokens_get(struct db_conn *c, const char *name, json_t **row, struct problem *reterr)
{
        json_t *items = NULL;
        int r = tokens_select(c, false, name, &items, reterr);
        if (r < 0)
                return r;
        if (json_array_size(items) == 0) {
                json_decref(items);
                return no_such_token(name, reterr);
        }
        *row = json_incref(json_array_get(items, 0));
        json_decref(items);
        return 0;
}

int tokens_revoke(struct db_conn *c, const char *name, struct problem *reterr)
{
        _cleanup_pgresult_ PGresult *res = NULL;
        const char *params[] = { name };
        /* Its console sessions end with it, in the same statement. */
        int r = db_exec(c, &res, reterr,
                        "WITH r AS (UPDATE tokens SET revoked_at = now() "
                        "WHERE name = $1 AND revoked_at IS NULL RETURNING id), "
                        "s AS (DELETE FROM sessions WHERE token_id IN (SELECT id FROM r)) "
                        "SELECT count(*) FROM r",
                        1, params);
        if (r < 0)
                return r;
        if (strtol(PQgetvalue(res, 0, 0), NULL, 10) == 0)
                return no_such_token(name, reterr);
        return 0;
}

int credential_row(const struct pg_result *res, const char hash[65], char name_out[static 72],
                   enum scope *scope, bool *refresh)
{
        if (PQntuples(res) != 1 || CRYPTO_memcmp(PQgetvalue(res, 0, 2), hash, 64) != 0)
                return -ENOENT;
        if (scope_from_string(PQgetvalue(res, 0, 1), scope) < 0)
                return -ENOENT;
        snprintf(name_out, 72, "%s", PQgetvalue(res, 0, 0));
        *refresh = streq(PQgetvalue(res, 0, 3), "t");
        return 0;
}

int tokens_authenticate(struct db_conn *c, const char hash[65], char name_out[static 72],
                        enum scope *scope, struct problem *reterr)
{
        _cleanup_pgresult_ PGresult *res = NULL;
        int r;

        /* The lookup is by hash, so its timing reveals nothing about the secret. */
        const char *params[] = { hash };
        r = db_exec(c, &res, reterr,
                    "SELECT name, scope, sha256, "
                    "last_used_at IS NULL OR last_used_at < now() - interval '1 minute' "
                    "FROM tokens WHERE sha256 = $1 AND revoked_at IS NULL",
                    1, params);
        bool refresh = false;
        if (r >= 0)
                r = credential_row(res, hash, name_out, scope, &refresh);
        if (r < 0)
                return r;
        if (refresh) {
                /* last_used_at, at most once a minute per token: cheap and good enough. */
                _cleanup_pgresult_ PGresult *upd = NULL;
                struct problem ignore = { 0 };
                db_exec(c, &upd, &ignore,
                        "UPDATE tokens SET last_used_at = now() WHERE sha256 = $1", 1, params);
                problem_done(&ignore);
        }
        return 0;
}
