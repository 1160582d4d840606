/* auth.c - bearer-token authentication and scope checks for each request. HTTP threads. */
#include <strings.h>

#include "smtptlsd/app.h"
#include "smtptlsd/http.h"
#include "smtptlsd/tokens.h"

int auth_request(struct request *req, enum scope needed, struct problem *reterr)
{
        _cleanup_db_conn_ struct db_conn *c = NULL;
        const char *h = request_header(req, "Authorization");
        enum scope have = SCOPE_NONE;
        int r;

        if (needed == SCOPE_NONE)
                return 0;
        if (!h)
                return problem_set(reterr, PROBLEM_UNAUTHORIZED, NULL,
                                   "send a token as 'Authorization: Bearer <token>'");
        if (strncasecmp(h, "Bearer ", 7) != 0)
                return problem_set(reterr, PROBLEM_UNAUTHORIZED, NULL,
                                   "only the Bearer authentication scheme is supported");
        h += 7;
        while (*h == ' ')
                h++;
        /* A token we cannot have issued costs no database connection. */
        r = -ENOENT;
        if (token_is_well_formed(h)) {
                r = db_acquire(req->app->db, &c, reterr);
                if (r >= 0)
                        r = tokens_authenticate(c, h, req->actor, &have, reterr);
        }
        if (r == -ENOENT)
                return problem_set(reterr, PROBLEM_UNAUTHORIZED, NULL,
                                   "the token is not valid or has been revoked");
        if (r < 0)
                return r;
        req->scope = have;
        if (have < needed)
                return problem_set(reterr, PROBLEM_FORBIDDEN, NULL,
                                   "this needs a token with scope '%s'; token '%s' has '%s'",
                                   scope_to_string(needed), req->actor, scope_to_string(have));
        return 0;
}
