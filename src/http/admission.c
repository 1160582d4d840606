/* admission.c - what the server checks of a request before its body and its handler: the
 * framing (one unambiguous length), the route, the query parameters the operation takes, the media
 * type of the body, and CORS (the preflight, and the headers of every reply to an allowed origin).
 * MHD's pool threads, called by server.c. */
#include <microhttpd.h>
#include <stdio.h>
#include <strings.h>

#include "http/admission.h"
#include "app.h"
#include "http/browser.h"
#include "conf.h"
#include "http/http.h"

/* The media type of Content-Type without parameters, compared case-insensitively. */
bool media_type_is(const char *ct, const char *want)
{
        size_t n = strlen(want);
        if (!ct)
                return false;
        while (*ct == ' ')
                ct++;
        if (strncasecmp(ct, want, n) != 0)
                return false;
        ct += n;
        while (*ct == ' ')
                ct++;
        return *ct == 0 || *ct == ';';
}

int admission_media_type(struct request *req, struct problem *reterr)
{
        static const struct {
                unsigned flag;
                const char *type;
        } accepted[] = {
                { BODY_JSON, "application/json" },
                { BODY_MERGE_PATCH, "application/merge-patch+json" },
                { BODY_PEM, "application/x-pem-file" },
                { BODY_TEXT, "text/plain" },
        };
        unsigned body = req->op->body;
        char list[128] = "";
        size_t n = 0;

        /* PATCH takes merge-patch+json as well as plain JSON. */
        if (req->method == HTTP_PATCH && (body & BODY_JSON))
                body |= BODY_MERGE_PATCH;
        for (size_t i = 0; i < ARRAY_SIZE(accepted); i++) {
                if (!(body & accepted[i].flag))
                        continue;
                if (media_type_is(req->content_type, accepted[i].type))
                        return 0;
                n += (size_t)snprintf(list + n, sizeof(list) - n, "%s%s", n ? " or " : "",
                                      accepted[i].type);
        }
        return problem_set(reterr, PROBLEM_UNSUPPORTED_MEDIA_TYPE, NULL,
                           "send the body as %s (got %s)", list,
                           req->content_type ? req->content_type : "no Content-Type");
}

struct header_count {
        unsigned content_length, transfer_encoding, authorization;
};

static enum MHD_Result count_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                    const char *value)
{
        struct header_count *n = cls;
        if (strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH) == 0)
                n->content_length++;
        else if (strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING) == 0)
                n->transfer_encoding++;
        else if (strcasecmp(key, MHD_HTTP_HEADER_AUTHORIZATION) == 0)
                n->authorization++;
        return MHD_YES;
}

/* Where the body ends and who is asking must be unambiguous: a proxy in front that reads the
 * message differently would otherwise smuggle a second request past it (RFC 9112 6.1, 6.3).
 * Refused requests close the connection, so nothing after them is read. */
int admission_framing(struct request *req, struct problem *reterr)
{
        struct header_count n = { 0 };
        const char *te = request_header(req, MHD_HTTP_HEADER_TRANSFER_ENCODING);
        const char *why = NULL;

        MHD_get_connection_values(req->conn, MHD_HEADER_KIND, count_header, &n);
        if (n.content_length > 1)
                why = "send one Content-Length header";
        else if (n.transfer_encoding > 1)
                why = "send one Transfer-Encoding header";
        else if (n.content_length && n.transfer_encoding)
                why = "send either Content-Length or Transfer-Encoding, not both";
        else if (te && strcasecmp(te, "chunked") != 0)
                why = "the only transfer coding accepted is chunked";
        else if (n.authorization > 1)
                why = "send one Authorization header";
        if (!why)
                return 0;
        reply_header(req, MHD_HTTP_HEADER_CONNECTION, "close");
        return problem_set(reterr, PROBLEM_BAD_REQUEST, NULL, "%s", why);
}

struct query_walk {
        struct request *req;
        unsigned seen;
        int r;
        struct problem *reterr;
};

static enum MHD_Result check_query_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                                       const char *value)
{
        struct query_walk *w = cls;
        w->r = router_check_query(w->req->op, w->req->method_name, w->req->route->pattern, key,
                                  &w->seen, w->reterr);
        return w->r < 0 ? MHD_NO : MHD_YES;
}

/* Every query parameter must be one the operation accepts, each once: a typo (?dryrun=true) or
 * an option not built (?probe=true) is refused, never ignored. Names are compared as sent (the
 * handlers look them up so): "dry%5Frun" is not dry_run. */
int admission_query(struct request *req, struct problem *reterr)
{
        struct query_walk w = { .req = req, .reterr = reterr };
        MHD_get_connection_values(req->conn, MHD_GET_ARGUMENT_KIND, check_query_arg, &w);
        return w.r;
}

int admission_route(struct request *req, const char *url, struct problem *reterr)
{
        int r = router_match(api_routes, api_routes_count, url, req->params);
        if (r == -ENOENT)
                return problem_set_errno(reterr, -ENOENT, PROBLEM_NOT_FOUND, NULL,
                                         "no resource at %.200s", url);
        if (r < 0)
                return problem_set(reterr, PROBLEM_BAD_REQUEST, NULL,
                                   "the path holds an invalid percent-escape");
        req->route_index = r;
        req->route = &api_routes[r];
        return 0;
}

/* CORS (Fetch standard): a page of an origin in cors_allowed_origins may call the API with a
 * bearer token. Its preflight is answered 204 with the route's methods and the request headers
 * the API reads; never Access-Control-Allow-Credentials, so a browser never sends the session
 * cookie across origins, and never "*". The preflight of any other origin gets 403: without
 * Access-Control-Allow-Origin the browser fails it whatever the status, and the problem tells a
 * person with curl why. */
#define CORS_ALLOW_HEADERS  "Authorization, If-Match, If-None-Match, Content-Type"
#define CORS_EXPOSE_HEADERS "ETag, Location, Job-Id, Retry-After"
#define CORS_MAX_AGE_SEC    600

int admission_cors_preflight(struct request *req, const char *url, struct problem *reterr)
{
        const char *origin = request_header(req, "Origin");
        char allow[96];
        int r = admission_framing(req, reterr);
        if (r >= 0)
                r = admission_route(req, url, reterr);
        if (r < 0)
                return r;
        if (!origin_is_listed(req->app->cfg->cors_allowed_origins, origin))
                return problem_set_errno(reterr, -EPERM, PROBLEM_ORIGIN_NOT_ALLOWED, NULL,
                                         "origin '%.100s' is not in cors_allowed_origins", origin);
        router_allow(req->route, allow, sizeof(allow));
        req->preflight = true;
        reply_empty(req, 204);
        /* Access-Control-Allow-Origin: admission_cors_headers(), as on every reply to the origin */
        reply_header(req, "Access-Control-Allow-Methods", "%s", allow);
        reply_header(req, "Access-Control-Allow-Headers", CORS_ALLOW_HEADERS);
        reply_header(req, "Access-Control-Max-Age", "%d", CORS_MAX_AGE_SEC);
        return 0;
}

/* Every reply when CORS is on: Vary: Origin (a cache must not serve one origin's reply to
 * another); to an allowed origin, Access-Control-Allow-Origin and the headers its script may
 * read. */
void admission_cors_headers(struct request *req, struct MHD_Response *resp)
{
        const char *list = req->app->cfg->cors_allowed_origins;
        const char *origin;
        if (!list || !*list)
                return;
        MHD_add_response_header(resp, "Vary", "Origin");
        origin = request_header(req, "Origin");
        /* a preflight refused (no such path) grants nothing; any other reply is readable */
        if (!origin_is_listed(list, origin) ||
            (streq(req->method_name, "OPTIONS") && !req->preflight))
                return;
        MHD_add_response_header(resp, "Access-Control-Allow-Origin", origin);
        if (!req->preflight)
                MHD_add_response_header(resp, "Access-Control-Expose-Headers", CORS_EXPOSE_HEADERS);
}
