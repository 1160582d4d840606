/* http.h - the HTTP layer: the request a handler sees, the route table's shape and the server.
 * server.c runs libmicrohttpd's thread pool; handlers run on those threads. */
#pragma once

#include <jansson.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/name_code.h"
#include "core/names.h"
#include "core/problem.h"

struct MHD_Connection;
struct app;

enum http_method {
        HTTP_GET = 1 << 0,
        HTTP_HEAD = 1 << 1,
        HTTP_POST = 1 << 2,
        HTTP_PUT = 1 << 3,
        HTTP_PATCH = 1 << 4,
        HTTP_DELETE = 1 << 5,
        HTTP_OTHER = 1 << 6,
};
#define HTTP_METHOD_COUNT 7
/* The methods' names ("GET"), one row per bit in the order of the bits, HTTP_OTHER ("OTHER")
 * last (router.c). */
extern const struct name_code http_methods[HTTP_METHOD_COUNT];
/* The row of m in http_methods (HTTP_OTHER's for anything else): its metrics slot too. */
unsigned http_method_slot(enum http_method m);

/* What a route accepts as a body. */
enum {
        BODY_NONE = 0,
        BODY_JSON = 1 << 0,        /* application/json */
        BODY_MERGE_PATCH = 1 << 1, /* application/merge-patch+json */
        BODY_PEM = 1 << 2,         /* application/x-pem-file */
        BODY_BULK = 1 << 3,        /* bulk_body_limit instead of body_limit */
        BODY_SECRET = 1 << 4,      /* may carry a private key: the buffer is wiped when it grows
                                    * and when the request ends */
        BODY_TEXT = 1 << 5,        /* text/plain (a map source file) */
};

/* The query parameters a route may accept: one bit each, named in router.c's table. A request
 * with any other parameter, or with one of these twice, is refused before its handler runs. */
enum {
        QUERY_WAIT = 1 << 0,
        QUERY_DRY_RUN = 1 << 1,
        QUERY_LIMIT = 1 << 2,
        QUERY_AFTER = 1 << 3,
        QUERY_Q = 1 << 4,
        QUERY_TYPE = 1 << 5,
        QUERY_LEVEL = 1 << 6,
        QUERY_MANAGED = 1 << 7,
        QUERY_MANAGER = 1 << 8,
        QUERY_STATUS = 1 << 9,
        QUERY_ACTOR = 1 << 10,
        QUERY_ACTION = 1 << 11,
        QUERY_TARGET = 1 << 12,
        QUERY_SINCE = 1 << 13,
        QUERY_INCLUDE_KEYS = 1 << 14,
        QUERY_INCLUDE_REVOKED = 1 << 15,
        QUERY_DESTINATION = 1 << 16,
        QUERY_PROBE = 1 << 17,
        QUERY_FORCE = 1 << 18,
        QUERY_LATEST = 1 << 19,
        QUERY_SETTINGS = 1 << 20,
};
/* What every write takes (api/write.c reads them). */
#define QUERY_WRITE (QUERY_WAIT | QUERY_DRY_RUN)
/* What every paged list takes. */
#define QUERY_PAGE (QUERY_LIMIT | QUERY_AFTER)
/* What the policy writes take besides: the probe guard (api/guard.h). */
#define QUERY_GUARD (QUERY_PROBE | QUERY_FORCE)

#define ROUTE_MAX_PARAMS  2
#define REPLY_MAX_HEADERS 12

struct request;
/* A handler returns >= 0 with a reply set on req (reply_*), or < 0 with reterr filled. */
typedef int (*handler_fn)(struct request *req, struct problem *reterr);
/* For a GET whose 200 replies the read model keeps (http/reply_cache.h): a number that moves
 * when anything the reply shows changes that the change count (changes.h) does not see - the
 * live Postfix files, say; 0 when there is nothing else. Cheap: it runs on every such GET. */
typedef uint64_t (*cache_stamp_fn)(struct request *req);

struct route_op {
        enum http_method method;
        handler_fn handler;
        enum scope scope;
        unsigned body;
        unsigned query; /* QUERY_* the operation accepts */
        /* NULL, or a GET served from the read model (http/reply_cache.h) while the change count
         * and this stamp stay the same: its reply depends on nothing but the URL, the Accept
         * header, the token's scope, the stored state and what the stamp watches */
        cache_stamp_fn cached;
};

struct route {
        const char *pattern; /* "/api/v1/tokens/{name}": a {x} matches one segment */
        struct route_op ops[6];
};

struct header {
        const char *name;
        char *value;
};

struct request {
        struct app *app;
        struct MHD_Connection *conn;
        enum http_method method;
        const char *method_name;
        const struct route *route;
        const struct route_op *op;
        int route_index; /* for metrics; -1 = no route */
        char *params[ROUTE_MAX_PARAMS];
        const char *content_type;
        /* who is asking */
        char actor[72];
        enum scope scope;
        /* the session cookie's value when the request was authenticated by it (owned by MHD's
         * connection; NULL for a bearer token or no authentication) */
        const char *session_id;
        /* the body, collected by server.c up to the route's limit */
        char *body;
        size_t body_len, body_cap, body_limit;
        bool body_too_large;
        bool body_done;
        uint64_t started_usec;
        /* the reply, set by reply_*() */
        int status;
        char *reply_body;
        size_t reply_len;
        const char *reply_type;
        struct header headers[REPLY_MAX_HEADERS];
        size_t n_headers;
        bool replied;
        bool reply_secret; /* the body holds private keys: wiped when it is freed */
        /* a GET reply that must carry no ETag (reply_conditional adds none): there is no
         * resource whose version a write's If-Match could name */
        bool reply_untagged;
        /* a reply served from (or kept in) the read model: its bytes, by reference (released with
         * the reply); the key and change count noted by a miss, for keeping what the handler
         * renders (http/reply_cache.c) */
        struct reply_cache_entry *reply_entry;
        bool reply_cached; /* the body is reply_entry's (a 304 made of it is not) */
        char *cache_key;
        size_t cache_key_len;
        uint64_t cache_hash, cache_changes, cache_stamp, cache_born;
        bool preflight; /* a CORS preflight (http/server.c) */
        bool suspended; /* waiting for its job (http/pending.c) */
        /* a slot it holds (app.bulk_busy): released when the request ends, unless api_submit
         * handed it to the request's job */
        atomic_bool *slot;
};

/* The route table (src/api/routes.c) and the matcher (src/http/router.c). */
extern const struct route api_routes[];
extern const size_t api_routes_count;

/* Finds the route for path; fills params (percent-decoded, owned by the caller: free them).
 * Returns the route index, -ENOENT when no pattern matches, -EINVAL for a bad escape. */
int router_match(const struct route *routes, size_t n, const char *path,
                 char *params[ROUTE_MAX_PARAMS]);
const struct route_op *router_find_op(const struct route *r, enum http_method m);
/* The name of a QUERY_* bit ("dry_run"), NULL for none or several. */
const char *router_query_name(unsigned bit);
/* "dry_run, wait" for the QUERY_* bits of mask ("none" for 0). */
void router_query_list(unsigned mask, char *buf, size_t size);
/* Checks one query parameter of a request against what op accepts; *seen collects the bits met so
 * far (start at 0), so a repeated one is refused. 422 unknown_parameter or invalid_value naming
 * the parameter. Pure. */
int router_check_query(const struct route_op *op, const char *method, const char *pattern,
                       const char *name, unsigned *seen, struct problem *reterr);
/* "GET, HEAD, PUT" for the Allow header (HEAD implied by GET). */
void router_allow(const struct route *r, char *buf, size_t size);
enum http_method http_method_from_string(const char *s);
/* Decodes %XX escapes of [s, s+n) into a new string; refuses bad escapes and %00. In query
 * strings '+' stands for a space. */
int http_percent_decode(const char *s, size_t n, bool plus_is_space, char **ret);

/* Handlers return this (> 0) after handing the request to http/pending.c: the reply comes
 * later, from the worker or the reaper. */
#define HANDLER_SUSPENDED 1

/* The query argument key, percent-decoded into buf: returns 1 with *ret = buf, 0 with *ret = NULL
 * when absent, or -EINVAL with invalid_value naming key (the parameter's name is the problem's
 * field) when the value has a bad escape or does not fit in size - 1 characters. */
int request_query(struct request *req, const char *key, char *buf, size_t size, const char **ret,
                  struct problem *reterr);
/* A request header's value, or NULL. */
const char *request_header(struct request *req, const char *name);
/* Whether an Accept header (NULL: none) asks for type rather than other: a positive q for type
 * above other's (each from its most specific range: a/b, then a/\*, then \*\/\*), or the same q
 * with type named before other. No header, or neither named: other (the default). */
bool http_accept_prefers(const char *accept, const char *type, const char *other);
/* The request asks for text/plain rather than application/json (a map file of the policies). */
bool request_prefers_text(struct request *req);

/* Replies (http/reply.c): each takes ownership of what it is given. */
int reply_json(struct request *req, int status, json_t *body);
int reply_text(struct request *req, int status, const char *content_type, char *text, size_t len);
/* A 200 of text (taken) with its strong ETag, or 304 (text freed) when If-None-Match names it:
 * a large generated reply without a copy. */
int reply_text_tagged(struct request *req, const char *content_type, char *text, size_t len,
                      const char *etag, struct problem *reterr);
int reply_empty(struct request *req, int status);
/* Bytes compiled into the daemon (the contract, the console) with their strong ETag: 304 when
 * If-None-Match has it, else 200 with a copy of data. */
int reply_static(struct request *req, const char *content_type, const unsigned char *data,
                 size_t len, const char *etag, struct problem *reterr);
/* A 200 JSON reply that has no version of its own (/status, the jobs list), tagged by its bytes:
 * the strong ETag is the first REPLY_TAG_BYTES of their SHA-256, in hex; 304 without the body
 * when If-None-Match has it, so a poller pays a hash, not a transfer, while nothing changed. */
#define REPLY_TAG_BYTES 16
int reply_json_tagged(struct request *req, json_t *body, struct problem *reterr);
/* Every 200 JSON reply to a GET gets a strong ETag - the resource's own when the handler set
 * one, else reply_json_tagged's - and becomes a 304 when If-None-Match has it (server.c, just
 * before sending): a client or console polling anything pays a hash, not a transfer. */
void reply_conditional(struct request *req);
/* The first half of reply_conditional: the ETag, without the 304 (what the read model keeps). */
void reply_tag(struct request *req);
int reply_header(struct request *req, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The value of a header the reply has (reply_header), or NULL. */
const char *reply_header_value(const struct request *req, const char *name);
/* The one place where a problem code becomes an HTTP status. */
int problem_http_status(enum problem_code code);
int reply_problem(struct request *req, const struct problem *p);
void request_reply_free(struct request *req);

struct http_server;
struct http_server_options {
        const char *address;
        unsigned port;
        unsigned threads;
        unsigned connection_timeout_sec;
        unsigned connection_limit;
        unsigned per_ip_connection_limit;
        size_t connection_memory_limit;
        size_t body_limit;
        size_t bulk_body_limit;
};
int http_server_start(struct app *app, const struct http_server_options *o,
                      struct http_server **ret);
/* The port really bound (useful with port 0). */
unsigned http_server_port(const struct http_server *s);
/* A new connection to our own HTTP server that bypasses the listening socket (for the watchdog):
 * *ret is our end; MHD's thread pool serves the other. -EAGAIN at connection_limit. */
int http_server_connect_private(struct http_server *s, int *ret);
/* Stops accepting new connections (idempotent); new clients are refused from then on. */
void http_server_quiesce(struct http_server *s);
/* Stops accepting, waits up to timeout for in-flight requests, then stops the threads. */
void http_server_stop(struct http_server *s, uint64_t timeout_usec);
