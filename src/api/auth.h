/* auth.h (api) - who is asking: each request's bearer token or session cookie, checked against
 * the tokens and sessions in the store and the scope its route needs (api/auth.c). Called by the
 * HTTP layer for every request (http/server.c) and by the session routes. HTTP threads. */
#pragma once

#include "core/names.h"

struct problem;
struct request;

/* Checks the request's bearer token, or else its session cookie, against the scope the route
 * needs (api/auth.c): 401, 403, or 503 while the database is unreachable. A request
 * authenticated by the cookie must also come from this server's own origin (auth_same_origin). */
int auth_request(struct request *req, enum scope needed, struct problem *reterr);
/* For a request that uses (or opens) a session: refuses (403 csrf_refused) one that says it came
 * from another origin (Sec-Fetch-Site, Origin) and, unless it is a GET or HEAD, one without the
 * header the console sends (X-Requested-With: smtptlsd). */
int auth_same_origin(struct request *req, struct problem *reterr);
/* The session cookie's value, or NULL. */
const char *request_session_cookie(struct request *req);
