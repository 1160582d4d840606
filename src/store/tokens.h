/* tokens.h - API bearer tokens: created once and shown once, stored only as SHA-256, revocable.
 * Used by the HTTP threads (authentication, /api/v1/tokens) and the `token` command. */
#pragma once

#include <jansson.h>

#include "core/names.h"
#include "core/problem.h"
#include "store/db.h"

/* The SHA-256 of a secret (a token, a session id) as 64 lowercase hex digits: what is stored. */
void secret_sha256_hex(const char *secret, char out[65]);
/* The row of a credential lookup by hash (name, scope, sha256, "t" when last_used_at is due for
 * a refresh): 0 with the name, the scope and whether to refresh; -ENOENT when there is no such
 * row or it does not hold exactly this hash (compared in constant time). For store/. */
struct pg_result;
int credential_row(const struct pg_result *res, const char hash[65], char name_out[static 72],
                   enum scope *scope, bool *refresh);

/* Creates a token; *row = {name, scope, created_at}. duplicate_name while an active token has
 * that name. The plain token is written to token_out and nowhere else. */
int tokens_add(struct db_conn *c, const char *name, enum scope scope,
               char token_out[static TOKEN_SIZE], json_t **row, struct problem *reterr);
/* Active tokens [{name, scope, created_at, last_used_at}]; with include_revoked also the revoked
 * ones, each with revoked_at. */
int tokens_list(struct db_conn *c, bool include_revoked, json_t **items, struct problem *reterr);
/* The scope of the active token `name` (scope may be NULL): 0, or -ENOENT with not_found. */
int tokens_find(struct db_conn *c, const char *name, enum scope *scope, struct problem *reterr);
/* Whether tokens_add could create `name` now (a dry run): 0, invalid_name or duplicate_name. */
int tokens_check_new(struct db_conn *c, const char *name, struct problem *reterr);
/* The active token named name: {name, scope, created_at, last_used_at}, never the secret (only
 * its hash is stored); not_found when there is none. */
int tokens_get(struct db_conn *c, const char *name, json_t **row, struct problem *reterr);
/* not_found when no active token has that name. */
int tokens_revoke(struct db_conn *c, const char *name, struct problem *reterr);
/* Looks a presented token up by its hash (secret_sha256_hex of a well-formed token). Returns 0
 * and fills name/scope, or -ENOENT (unknown or revoked), or another error with reterr set. */
int tokens_authenticate(struct db_conn *c, const char hash[65], char name_out[static 72],
                        enum scope *scope, struct problem *reterr);

/* Console sessions (store/sessions.c): a random id (base64url of 32 bytes) in a cookie, stored
 * only as its SHA-256, bound to the token it was opened with. */
#define SESSION_ID_SIZE 44 /* 43 base64url characters + NUL */
/* Whether id has the shape of a session id we issue (pure). */
bool session_id_is_well_formed(const char *id);
/* Opens a session for the active token `token`: writes its id to id_out, its token's name and
 * scope. -ENOENT when the token is unknown or revoked. Also deletes sessions idle longer than
 * idle_usec (housekeeping, bounded by the index). */
int sessions_open(struct db_conn *c, const char *token, int64_t idle_usec,
                  char id_out[static SESSION_ID_SIZE], char name_out[static 72], enum scope *scope,
                  struct problem *reterr);
/* The session with this id, if it was used within idle_usec and its token is active: 0 with the
 * token's name and scope (last_used_at refreshed at most once a minute, or per tenth of
 * idle_usec when that is shorter); -ENOENT otherwise. */
int sessions_authenticate(struct db_conn *c, const char *id, int64_t idle_usec,
                          char name_out[static 72], enum scope *scope, struct problem *reterr);
/* Ends the session with this id (no error when there is none). */
int sessions_close(struct db_conn *c, const char *id, struct problem *reterr);
