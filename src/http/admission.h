/* admission.h - the checks of a request before its body and handler (admission.c): each 0, or
 * a negative errno with the problem the client gets. MHD's pool threads. */
#pragma once

#include <stdbool.h>

struct MHD_Response;
struct problem;
struct request;

/* One Content-Length or chunked, one Authorization (request smuggling); refused: the connection
 * closes after the reply. */
int admission_framing(struct request *req, struct problem *reterr);
/* The route of url (req->route, req->params), or not_found. */
int admission_route(struct request *req, const char *url, struct problem *reterr);
/* Every query parameter one the operation takes, each once. */
int admission_query(struct request *req, struct problem *reterr);
/* Whether Content-Type ct (parameters aside, case-insensitive) is the media type want. */
bool media_type_is(const char *ct, const char *want);
/* The body's Content-Type is one the operation takes. */
int admission_media_type(struct request *req, struct problem *reterr);
/* An OPTIONS preflight from an origin in cors_allowed_origins: answered 204 with the route's
 * methods; another origin: origin_not_allowed. */
int admission_cors_preflight(struct request *req, const char *url, struct problem *reterr);
/* The CORS headers of a reply (when cors_allowed_origins is set). */
void admission_cors_headers(struct request *req, struct MHD_Response *resp);
