/* session.c (api) - /api/v1/session: the console signs in with an API token, which is exchanged
 * for a session cookie (HttpOnly, SameSite=Strict; only the id's hash is stored), reads who is
 * signed in, and signs out. The token and the session id never appear in a reply body. HTTP
 * threads. */
#include <openssl/crypto.h>

#include "api/api.h"
#include "api/auth.h"
#include "app.h"
#include "conf.h"
#include "core/json_spec.h"
#include "core/policy.h"
#include "http/browser.h"
#include "store/tokens.h"

struct session_body {
        const char *token;
};

static const struct json_spec session_spec[] = {
        { "token", JS_STRING, JS_REQUIRED, offsetof(struct session_body, token), .max = 256 },
        { 0 },
};

/* session_cookie_secure: yes, no, or auto = when the request came through HTTPS. The daemon
 * serves plain HTTP itself, so HTTPS is what a TLS proxy in front says (X-Forwarded-Proto,
 * Forwarded) or what the page's own origin says (browsers send Origin with every POST and
 * DELETE). A client that lies only makes its own cookie stricter. */
static bool cookie_secure(struct request *req)
{
        const char *mode = req->app->cfg->session_cookie_secure;
        if (streq(mode, "yes"))
                return true;
        if (streq(mode, "no"))
                return false;
        return request_came_through_https(request_header(req, "Origin"),
                                          request_header(req, "X-Forwarded-Proto"),
                                          request_header(req, "Forwarded"));
}

static int set_cookie(struct request *req, const char *id)
{
        char cookie[160];
        int r = session_cookie_format(cookie, sizeof(cookie), id, cookie_secure(req));
        if (r >= 0)
                r = reply_header(req, "Set-Cookie", "%s", cookie);
        OPENSSL_cleanse(cookie, sizeof(cookie));
        return r;
}

int api_session_create(struct request *req, struct problem *reterr)
{
        _cleanup_db_conn_ struct db_conn *c = NULL;
        struct session_body body = { 0 };
        char id[SESSION_ID_SIZE] = "";
        enum scope scope = SCOPE_NONE;
        json_t *j = NULL;
        int r;

        /* Signing in sets a cookie: only this server's own pages may do it (no login CSRF). */
        r = auth_same_origin(req, reterr);
        if (r >= 0)
                r = json_parse_body(req->body, req->body_len, &j, reterr);
        if (r >= 0)
                r = json_dispatch(j, session_spec, &body, NULL, 0, "", reterr);
        if (r >= 0)
                r = db_acquire(req->app->db, &c, reterr);
        if (r >= 0) {
                r = sessions_open(c, body.token, req->app->cfg->session_idle_timeout, id,
                                  req->actor, &scope, reterr);
                if (r == -ENOENT)
                        r = problem_set_errno(reterr, -EACCES, PROBLEM_UNAUTHORIZED, "/token",
                                              "the token is not valid or has been revoked");
        }
        if (r >= 0)
                r = set_cookie(req, id);
        if (r >= 0)
                r = reply_empty(req, 204);
        OPENSSL_cleanse(id, sizeof(id));
        json_decref(j);
        return r;
}

static int need_session(struct request *req, struct problem *reterr)
{
        if (req->session_id)
                return 0;
        return problem_set_errno(reterr, -EACCES, PROBLEM_UNAUTHORIZED, NULL,
                                 "no console session: sign in with POST /api/v1/session");
}

static int add_manager_url(const char *name, size_t name_len, const char *url, size_t url_len,
                           void *userdata)
{
        json_t *v = json_stringn(url, url_len);
        char key[POLICY_MANAGER_MAX + 1];
        snprintf(key, sizeof(key), "%.*s", (int)name_len, name);
        return v && json_object_set_new(userdata, key, v) == 0 ? 0 : -ENOMEM;
}

int api_session_get(struct request *req, struct problem *reterr)
{
        char err[384];
        int r = need_session(req, reterr);
        if (r < 0)
                return r;
        json_t *urls = json_object();
        /* checked at load: only memory can fail here */
        if (!urls || config_manager_urls_foreach(req->app->cfg->console_manager_urls,
                                                 add_manager_url, urls, err, sizeof(err)) < 0) {
                json_decref(urls);
                return problem_set_errno(reterr, -ENOMEM, PROBLEM_INTERNAL_ERROR, NULL,
                                         "out of memory");
        }
        return reply_json(req, 200,
                          json_pack("{s:s, s:s, s:I, s:o}", "token_name", req->actor, "scope",
                                    scope_to_string(req->scope), "idle_timeout",
                                    (json_int_t)(req->app->cfg->session_idle_timeout / 1000000),
                                    "manager_urls", urls));
}

int api_session_delete(struct request *req, struct problem *reterr)
{
        _cleanup_db_conn_ struct db_conn *c = NULL;
        int r = need_session(req, reterr);
        if (r >= 0)
                r = db_acquire(req->app->db, &c, reterr);
        if (r >= 0)
                r = sessions_close(c, req->session_id, reterr);
        if (r >= 0)
                r = set_cookie(req, NULL);
        if (r < 0)
                return r;
        return reply_empty(req, 204);
}
