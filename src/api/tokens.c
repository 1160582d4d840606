/* tokens.c (api) - /api/v1/tokens: list, create (the token is shown once), read one (never its
 * secret), revoke. Token management is not configuration: it goes straight to the tokens table,
 * not through the worker; ?dry_run=true checks the same and answers with a plan, writing nothing.
 * HTTP threads. */
#include <openssl/crypto.h>

#include "api/api.h"
#include "api/token_cache.h"
#include "app.h"
#include "core/json_spec.h"
#include "store/tokens.h"

struct token_body {
        const char *name;
        const char *scope;
};

static int check_name(const struct json_spec *s, json_t *v, const char *field,
                      struct problem *reterr)
{
        if (!name_is_valid(json_string_value(v)))
                return problem_set(reterr, PROBLEM_INVALID_NAME, field,
                                   "names are 1 to 64 characters of [a-z0-9._-], starting with a "
                                   "letter or digit");
        return 0;
}

static const char *const scopes[] = { "read", "write", "admin", NULL };

static const struct json_spec token_spec[] = {
        /* No length cap here: check_name refuses a long name with the same code as any other. */
        { "name", JS_STRING, JS_REQUIRED, offsetof(struct token_body, name), .check = check_name },
        { "scope", JS_CHOICE, JS_REQUIRED, offsetof(struct token_body, scope), .choices = scopes },
        { 0 },
};

int api_tokens_list(struct request *req, struct problem *reterr)
{
        _cleanup_db_conn_ struct db_conn *c = NULL;
        json_t *items = NULL;
        bool revoked = false;
        int r = api_query_flag(req, "include_revoked", &revoked, reterr);
        if (r >= 0)
                r = db_acquire(req->app->db, &c, reterr);
        if (r < 0)
                return r;
        r = tokens_list(c, revoked, &items, reterr);
        if (r < 0)
                return r;
        return reply_json(req, 200, json_pack("{s:o, s:n}", "items", items, "next"));
}

/* The plan of a token write asked with ?dry_run=true (api/openapi.yaml Plan): tokens are not
 * configuration, so nothing in main.cf or the map would change; the token is named, never its
 * secret (none is made). */
static int reply_plan(struct request *req, const char *action, const char *name, enum scope scope)
{
        json_t *plan = json_pack("{s:b, s:[], s:s, s:b, s:b, s:[], s:[], s:s, s:{s:s, s:s}}",
                                 "valid", true, "main_cf", "tls_policy_diff", "", "reload", false,
                                 "postmap", false, "warnings", "errors", "action", action, "token",
                                 "name", name, "scope", scope_to_string(scope));
        return reply_json(req, 200, json_pack("{s:o}", "plan", plan));
}

int api_tokens_create(struct request *req, struct problem *reterr)
{
        _cleanup_db_conn_ struct db_conn *c = NULL;
        struct token_body body = { 0 };
        json_t *j = NULL, *row = NULL;
        char token[TOKEN_SIZE] = "";
        enum scope scope = SCOPE_NONE;
        bool dry_run = false;
        int r;

        r = api_query_flag(req, "dry_run", &dry_run, reterr);
        if (r >= 0)
                r = json_parse_body(req->body, req->body_len, &j, reterr);
        if (r < 0)
                return r;
        r = json_dispatch(j, token_spec, &body, NULL, 0, "", reterr);
        if (r >= 0 && scope_from_string(body.scope, &scope) < 0)
                r = problem_set(reterr, PROBLEM_INVALID_VALUE, "/scope", "unknown scope");
        if (r >= 0)
                r = db_acquire(req->app->db, &c, reterr);
        if (r >= 0 && dry_run) {
                r = tokens_check_new(c, body.name, reterr);
                if (r >= 0)
                        r = reply_plan(req, "token.create", body.name, scope);
                json_decref(j);
                return r;
        }
        if (r >= 0)
                r = tokens_add(c, body.name, scope, token, &row, reterr);
        if (r >= 0) {
                json_object_set_new(row, "token", json_string(token));
                reply_header(req, "Location", "/api/v1/tokens/%s", body.name);
                r = reply_json(req, 201, row);
        }
        OPENSSL_cleanse(token, sizeof(token));
        json_decref(j);
        return r;
}

int api_tokens_get(struct request *req, struct problem *reterr)
{
        _cleanup_db_conn_ struct db_conn *c = NULL;
        json_t *row = NULL;
        int r = db_acquire(req->app->db, &c, reterr);
        if (r >= 0)
                r = tokens_get(c, req->params[0], &row, reterr);
        if (r < 0)
                return r;
        return reply_json(req, 200, row);
}

int api_tokens_delete(struct request *req, struct problem *reterr)
{
        _cleanup_db_conn_ struct db_conn *c = NULL;
        enum scope scope;
        bool dry_run = false;
        int r = api_query_flag(req, "dry_run", &dry_run, reterr);
        if (r >= 0)
                r = db_acquire(req->app->db, &c, reterr);
        if (r < 0)
                return r;
        if (dry_run) {
                r = tokens_find(c, req->params[0], &scope, reterr);
                return r < 0 ? r : reply_plan(req, "token.revoke", req->params[0], scope);
        }
        r = tokens_revoke(c, req->params[0], reterr);
        if (r < 0)
                return r;
        token_cache_clear(); /* refused here at once; elsewhere within TOKEN_CACHE_USEC */
        return reply_empty(req, 204);
}
