/* sessions.c - the sessions table: console sign-in (a token exchanged for a random session id),
 * lookup by SHA-256 with idle expiry and the token's revocation, sign-out. HTTP threads. Never
 * logs a session id or a token. */
#include <inttypes.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdio.h>

#include "store/tokens.h"

#define USEC_PER_MINUTE INT64_C(60000000)

bool session_id_is_well_formed(const char *id)
{
        return strlen(id) == SESSION_ID_SIZE - 1 &&
               strspn(id, base64url_alphabet) == SESSION_ID_SIZE - 1;
}

static int make_session_id(char out[static SESSION_ID_SIZE])
{
        unsigned char raw[32];
        if (RAND_bytes(raw, sizeof(raw)) != 1)
                return -EIO;
        base64url_encode(raw, sizeof(raw), out); /* 43 characters */
        OPENSSL_cleanse(raw, sizeof(raw));
        return 0;
}

int sessions_open(struct db_conn *c, const char *token, int64_t idle_usec,
                  char id_out[static SESSION_ID_SIZE], char name_out[static 72], enum scope *scope,
                  struct problem *reterr)
{
        _cleanup_pgresult_ PGresult *res = NULL, *old = NULL;
        char id[SESSION_ID_SIZE], token_hash[65], id_hash[65], idle[24];
        struct problem ignore = { 0 };
        int r;

        if (!token_is_well_formed(token))
                return -ENOENT;
        if (make_session_id(id) < 0)
                return problem_set_errno(reterr, -EIO, PROBLEM_INTERNAL_ERROR, NULL,
                                         "no random bytes available");
        secret_sha256_hex(token, token_hash);
        secret_sha256_hex(id, id_hash);
        snprintf(idle, sizeof(idle), "%" PRId64, idle_usec);
        /* Sessions that ran out of idle time are gone for good: drop them while here. */
        const char *oparams[] = { idle };
        db_exec(c, &old, &ignore,
                "DELETE FROM sessions WHERE last_used_at < "
                "now() - make_interval(secs => ($1::bigint / 1e6)::float8)",
                1, oparams);
        problem_done(&ignore);
        const char *params[] = { id_hash, token_hash };
        /* Signing in is a use of the token: its last_used_at says so (the Tokens page shows it). */
        r = db_exec(c, &res, reterr,
                    "WITH t AS (UPDATE tokens SET last_used_at = now() "
                    "WHERE sha256 = $2 AND revoked_at IS NULL RETURNING id, name, scope) "
                    "INSERT INTO sessions (sha256, token_id) SELECT $1, id FROM t "
                    "RETURNING (SELECT name FROM t), (SELECT scope FROM t)",
                    2, params);
        if (r < 0) {
                OPENSSL_cleanse(id, sizeof(id));
                return r;
        }
        if (PQntuples(res) != 1 || scope_from_string(PQgetvalue(res, 0, 1), scope) < 0) {
                OPENSSL_cleanse(id, sizeof(id));
                return -ENOENT;
        }
        snprintf(name_out, 72, "%s", PQgetvalue(res, 0, 0));
        memcpy(id_out, id, SESSION_ID_SIZE);
        OPENSSL_cleanse(id, sizeof(id));
        return 0;
}

int sessions_authenticate(struct db_conn *c, const char *id, int64_t idle_usec,
                          char name_out[static 72], enum scope *scope, struct problem *reterr)
{
        _cleanup_pgresult_ PGresult *res = NULL;
        char hash[65], idle[24], refresh[24];
        /* last_used_at is written at most once a minute: idle expiry is that much coarse, which
         * a short idle time (tests) would notice, so it is refreshed at least ten times per idle
         * period. */
        int64_t refresh_usec = idle_usec / 10 < USEC_PER_MINUTE ? idle_usec / 10 : USEC_PER_MINUTE;
        int r;

        if (!session_id_is_well_formed(id))
                return -ENOENT;
        secret_sha256_hex(id, hash);
        snprintf(idle, sizeof(idle), "%" PRId64, idle_usec);
        snprintf(refresh, sizeof(refresh), "%" PRId64, refresh_usec);
        const char *params[] = { hash, idle, refresh };
        r = db_exec(
            c, &res, reterr,
            "SELECT t.name, t.scope, s.sha256, "
            "s.last_used_at < now() - make_interval(secs => ($3::bigint / 1e6)::float8) "
            "FROM sessions s JOIN tokens t ON t.id = s.token_id "
            "WHERE s.sha256 = $1 AND t.revoked_at IS NULL "
            "AND s.last_used_at >= now() - make_interval(secs => ($2::bigint / 1e6)::float8)",
            3, params);
        bool due = false;
        if (r >= 0)
                r = credential_row(res, hash, name_out, scope, &due);
        if (r < 0)
                return r;
        if (due) {
                _cleanup_pgresult_ PGresult *upd = NULL;
                struct problem ignore = { 0 };
                db_exec(c, &upd, &ignore,
                        "UPDATE sessions SET last_used_at = now() WHERE sha256 = $1", 1, params);
                problem_done(&ignore);
        }
        return 0;
}

int sessions_close(struct db_conn *c, const char *id, struct problem *reterr)
{
        _cleanup_pgresult_ PGresult *res = NULL;
        char hash[65];
        if (!session_id_is_well_formed(id))
                return 0;
        secret_sha256_hex(id, hash);
        const char *params[] = { hash };
        return db_exec(c, &res, reterr, "DELETE FROM sessions WHERE sha256 = $1", 1, params);
}
