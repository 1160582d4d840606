/* auth.c (api) - authentication of each request: a bearer token (curl, CI, other front ends) or the
 * console's session cookie, the same-origin proof a cookie request needs, and scope checks.
 * HTTP threads. */
#include <microhttpd.h>
#include <strings.h>

#include "api/auth.h"
#include "api/token_cache.h"
#include "app.h"
#include "http/browser.h"
#include "conf.h"
#include "http/http.h"
#include "store/tokens.h"

const char *request_session_cookie(struct request *req)
{
        return MHD_lookup_connection_value(req->conn, MHD_COOKIE_KIND, SESSION_COOKIE_NAME);
}

int auth_same_origin(struct request *req, struct problem *reterr)
{
        bool write = !(req->method & (HTTP_GET | HTTP_HEAD));
        const char *site = request_header(req, "Sec-Fetch-Site");
        const char *origin = request_header(req, "Origin");
        const char *csrf = request_header(req, CSRF_HEADER);

        /* "none" is a navigation the user made (typed, bookmarked): fine for a read only. */
        if (site && strcasecmp(site, "same-origin") != 0 &&
            (write || strcasecmp(site, "none") != 0))
                return problem_set_errno(
                    reterr, -EPERM, PROBLEM_CSRF_REFUSED, NULL,
                    "Sec-Fetch-Site is '%.32s': the session cookie is accepted "
                    "from this server's own pages only; other origins send "
                    "'Authorization: Bearer <token>'",
                    site);
        if (origin && !origin_is_same(origin, request_header(req, "Host")))
                return problem_set_errno(
                    reterr, -EPERM, PROBLEM_CSRF_REFUSED, NULL,
                    "Origin '%.100s' is not this server's: the session cookie is "
                    "accepted from this server's own pages only; other origins "
                    "send 'Authorization: Bearer <token>'",
                    origin);
        if (write && !(csrf && strcasecmp(csrf, CSRF_HEADER_VALUE) == 0))
                return problem_set_errno(reterr, -EPERM, PROBLEM_CSRF_REFUSED, NULL,
                                         "a write with the session cookie must send the header "
                                         "'" CSRF_HEADER ": " CSRF_HEADER_VALUE "'");
        return 0;
}

static int authenticate_bearer(struct request *req, const char *h, enum scope *have,
                               struct problem *reterr)
{
        _cleanup_db_conn_ struct db_conn *c = NULL;
        int r;

        if (strncasecmp(h, "Bearer ", 7) != 0)
                return problem_set_errno(reterr, -EACCES, PROBLEM_UNAUTHORIZED, NULL,
                                         "only the Bearer authentication scheme is supported");
        h += 7;
        while (*h == ' ')
                h++;
        /* A token we cannot have issued costs no database connection; one authenticated a
         * moment ago none either (token_cache.h: revoked, it is refused within a second). */
        r = -ENOENT;
        if (token_is_well_formed(h)) {
                char hash[65];
                secret_sha256_hex(h, hash);
                if (token_cache_get(hash, req->actor, have))
                        return 0;
                r = db_acquire(req->app->db, &c, reterr);
                if (r >= 0)
                        r = tokens_authenticate(c, hash, req->actor, have, reterr);
                if (r >= 0)
                        token_cache_put(hash, req->actor, *have);
                explicit_bzero(hash, sizeof(hash));
        }
        if (r == -ENOENT)
                return problem_set_errno(reterr, -EACCES, PROBLEM_UNAUTHORIZED, NULL,
                                         "the token is not valid or has been revoked");
        return r;
}

static int authenticate_session(struct request *req, const char *id, enum scope *have,
                                struct problem *reterr)
{
        _cleanup_db_conn_ struct db_conn *c = NULL;
        int r = auth_same_origin(req, reterr);
        if (r < 0)
                return r;
        r = -ENOENT;
        if (session_id_is_well_formed(id)) {
                r = db_acquire(req->app->db, &c, reterr);
                if (r >= 0)
                        r = sessions_authenticate(c, id, req->app->cfg->session_idle_timeout,
                                                  req->actor, have, reterr);
        }
        if (r == -ENOENT)
                return problem_set_errno(reterr, -EACCES, PROBLEM_UNAUTHORIZED, NULL,
                                         "the session has ended (idle too long, signed out, or its "
                                         "token was revoked): sign in again");
        if (r >= 0)
                req->session_id = id;
        return r;
}

int auth_request(struct request *req, enum scope needed, struct problem *reterr)
{
        const char *h = request_header(req, "Authorization");
        const char *cookie;
        enum scope have = SCOPE_NONE;
        int r;

        if (needed == SCOPE_NONE)
                return 0;
        /* The bearer token, when there is one, is what counts: the cookie is not looked at. */
        if (h)
                r = authenticate_bearer(req, h, &have, reterr);
        else if ((cookie = request_session_cookie(req)))
                r = authenticate_session(req, cookie, &have, reterr);
        else
                return problem_set_errno(reterr, -EACCES, PROBLEM_UNAUTHORIZED, NULL,
                                         "send a token as 'Authorization: Bearer <token>'");
        if (r < 0)
                return r;
        req->scope = have;
        if (have < needed)
                return problem_set_errno(reterr, -EPERM, PROBLEM_FORBIDDEN, NULL,
                                         "this needs a token with scope '%s'; token '%s' has '%s'",
                                         scope_to_string(needed), req->actor,
                                         scope_to_string(have));
        return 0;
}
