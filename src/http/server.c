/* server.c - libmicrohttpd glue: limits, the per-request state machine (route, auth, media type,
 * body collection, handler, reply), request deadlines, metrics and the in-flight count for a
 * clean stop. Runs on MHD's thread pool (poll) and one watchdog thread; http_server_start/stop
 * run on the main thread. */
#include <arpa/inet.h>
#include <microhttpd.h>
#include <netdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "api/auth.h"
#include "app.h"
#include "conf.h"
#include "core/sealed.h"
#include "event.h"
#include "http/admission.h"
#include "http/browser.h"
#include "http/http.h"
#include "http/reply_cache.h"
#include "log.h"
#include "metrics.h"

/* Request deadlines. MHD's connection_timeout is an idle timeout: a client that sends a byte now
 * and then is never idle and could hold its connection (and a slot of connection_limit and
 * per_ip_connection_limit) for ever - slowloris. So a connection also has a deadline by which
 * its request must have arrived: the request line and headers within connection_timeout of the
 * moment the daemon starts waiting for them (the connection is accepted, or the previous reply
 * is done), and the body within another connection_timeout, plus one more per MiB received. The
 * watchdog shuts down the socket of a connection past its deadline; MHD then sees the end of the
 * stream and closes the connection. Body data arriving late is refused in the handler too. */
#define BODY_ALLOWANCE_BYTES (1024 * 1024)
/* What a route that takes no body reads of one before it refuses it (413). */
#define STRAY_BODY_LIMIT 1024
/* Retry-After of a bulk replace refused because another one is being received or applied. */
#define BULK_RETRY_AFTER_SEC 10

struct conn_watch {
        struct conn_watch *prev, *next;
        MHD_socket fd;
        bool receiving;       /* waiting for (the rest of) a request: the deadline applies */
        uint64_t phase_start; /* when the current wait began */
        uint64_t deadline;
        uint64_t body_bytes; /* of the current request */
};

struct http_server {
        struct MHD_Daemon *mhd;
        MHD_socket listen_fd; /* after quiesce, closed at stop */
        struct app *app;
        struct http_server_options opt;
        atomic_uint in_flight;
        struct event idle; /* signalled when in_flight drops to 0 (http_server_stop waits) */
        unsigned port;
        /* request deadlines: the watched connections, under watch_lock */
        pthread_mutex_t watch_lock;
        struct conn_watch *watches;
        uint64_t timeout_usec;
        pthread_t watchdog;
        bool watchdog_started;
        struct stop_event watchdog_stop;
        struct reply_cache *cache; /* the read model (http/reply_cache.h) */
};

/* Starts a wait for a request (phase_start = now) or moves the deadline of the body's. Call
 * with watch_lock held. */
static void watch_arm(struct http_server *srv, struct conn_watch *w, uint64_t now)
{
        w->receiving = true;
        w->phase_start = now;
        w->body_bytes = 0;
        w->deadline = now + srv->timeout_usec;
}

static struct conn_watch *watch_of(struct MHD_Connection *conn)
{
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
        return ci ? ci->socket_context : NULL;
}

/* The headers are in: the body's wait begins. Returns false if the headers came too late. */
static bool watch_headers_done(struct http_server *srv, struct MHD_Connection *conn)
{
        struct conn_watch *w = watch_of(conn);
        uint64_t now = now_monotonic_usec();
        bool in_time = true;
        if (!w)
                return true;
        pthread_mutex_lock(&srv->watch_lock);
        if (w->receiving && now > w->deadline)
                in_time = false;
        watch_arm(srv, w, now);
        pthread_mutex_unlock(&srv->watch_lock);
        return in_time;
}

/* n more bytes of body: each MiB buys another connection_timeout. Returns false if the body is
 * late. */
static bool watch_body(struct http_server *srv, struct MHD_Connection *conn, size_t n)
{
        struct conn_watch *w = watch_of(conn);
        uint64_t now = now_monotonic_usec();
        bool in_time;
        if (!w)
                return true;
        pthread_mutex_lock(&srv->watch_lock);
        w->body_bytes += n;
        w->deadline =
            w->phase_start + srv->timeout_usec * (1 + w->body_bytes / BODY_ALLOWANCE_BYTES);
        in_time = !w->receiving || now <= w->deadline;
        pthread_mutex_unlock(&srv->watch_lock);
        return in_time;
}

/* The request is complete (or answered before its body): no deadline while it is handled, waits
 * for its job or is answered; the next request's wait begins when it is done (watch_rearm). */
static void watch_stop(struct http_server *srv, struct MHD_Connection *conn)
{
        struct conn_watch *w = watch_of(conn);
        if (!w)
                return;
        pthread_mutex_lock(&srv->watch_lock);
        w->receiving = false;
        pthread_mutex_unlock(&srv->watch_lock);
}

static void watch_rearm(struct http_server *srv, struct MHD_Connection *conn)
{
        struct conn_watch *w = watch_of(conn);
        if (!w)
                return;
        pthread_mutex_lock(&srv->watch_lock);
        watch_arm(srv, w, now_monotonic_usec());
        pthread_mutex_unlock(&srv->watch_lock);
}

/* MHD calls this when it accepts a connection and before it closes its socket, so a watched fd
 * is always still this connection's while it is in the list (the watchdog holds the lock). */
static void connection_notify(void *cls, struct MHD_Connection *conn, void **socket_context,
                              enum MHD_ConnectionNotificationCode toe)
{
        struct http_server *srv = cls;
        struct conn_watch *w;

        if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
                const union MHD_ConnectionInfo *ci =
                    MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
                if (!ci || !(w = calloc(1, sizeof(*w))))
                        return; /* unwatched: the idle timeout still applies */
                w->fd = ci->connect_fd;
                pthread_mutex_lock(&srv->watch_lock);
                watch_arm(srv, w, now_monotonic_usec());
                w->next = srv->watches;
                if (w->next)
                        w->next->prev = w;
                srv->watches = w;
                pthread_mutex_unlock(&srv->watch_lock);
                *socket_context = w;
        } else if (toe == MHD_CONNECTION_NOTIFY_CLOSED && (w = *socket_context)) {
                pthread_mutex_lock(&srv->watch_lock);
                if (w->prev)
                        w->prev->next = w->next;
                else
                        srv->watches = w->next;
                if (w->next)
                        w->next->prev = w->prev;
                pthread_mutex_unlock(&srv->watch_lock);
                free(w);
                *socket_context = NULL;
        }
}

static void *watchdog_main(void *arg)
{
        struct http_server *srv = arg;
        /* A few checks per timeout: a connection is cut at most this late. */
        uint64_t period = srv->timeout_usec / 8;
        if (period < 50000)
                period = 50000;
        if (period > 1000000)
                period = 1000000;
        while (stop_event_wait(&srv->watchdog_stop, period) == 0) {
                uint64_t now = now_monotonic_usec();
                unsigned cut = 0;
                pthread_mutex_lock(&srv->watch_lock);
                for (struct conn_watch *w = srv->watches; w; w = w->next)
                        if (w->receiving && now > w->deadline) {
                                w->receiving = false;
                                shutdown(w->fd, SHUT_RDWR);
                                cut++;
                        }
                pthread_mutex_unlock(&srv->watch_lock);
                if (cut)
                        log_debug("closed %u connection(s) whose request did not arrive within "
                                  "connection_timeout",
                                  cut);
        }
        return NULL;
}

/* Everything decided before the body arrives: framing, route, method, token, query parameters,
 * media type, size. */
static int admit(struct request *req, const char *url, struct problem *reterr)
{
        struct http_server *srv = req->app->http;
        int r = admission_framing(req, reterr);
        if (r < 0)
                return r;
        r = admission_route(req, url, reterr);
        if (r < 0)
                return r;
        req->op = router_find_op(req->route, req->method);
        if (!req->op) {
                char allow[96];
                router_allow(req->route, allow, sizeof(allow));
                reply_header(req, "Allow", "%s", allow);
                return problem_set(reterr, PROBLEM_METHOD_NOT_ALLOWED, NULL,
                                   "%s is not allowed here; allowed: %s", req->method_name, allow);
        }
        /* Tokens in URLs end up in proxy logs and shell history: refuse them outright. */
        if (MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, "access_token") ||
            MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, "token"))
                return problem_set(reterr, PROBLEM_BAD_REQUEST, NULL,
                                   "tokens are not accepted in the URL; send "
                                   "'Authorization: Bearer <token>'");
        r = auth_request(req, req->op->scope, reterr);
        if (r < 0)
                return r;
        r = admission_query(req, reterr);
        if (r < 0)
                return r;

        req->content_type = request_header(req, MHD_HTTP_HEADER_CONTENT_TYPE);
        const char *cl = request_header(req, MHD_HTTP_HEADER_CONTENT_LENGTH);
        const char *te = request_header(req, MHD_HTTP_HEADER_TRANSFER_ENCODING);
        bool has_body = (cl && strcmp(cl, "0") != 0) || te;
        req->body_limit =
            (req->op->body & BODY_BULK) ? srv->opt.bulk_body_limit : srv->opt.body_limit;
        if (req->op->body == BODY_NONE) {
                /* A route that takes no body reads a small one (a client library's "{}") and
                 * drops it; a larger one, or a chunked one of unknown size, is refused unread. */
                int64_t n;
                if (has_body && (te || parse_int64(cl, 0, STRAY_BODY_LIMIT, &n) < 0)) {
                        reply_header(req, MHD_HTTP_HEADER_CONNECTION, "close");
                        return problem_set(reterr, PROBLEM_PAYLOAD_TOO_LARGE, NULL,
                                           "%s %s takes no request body (one of at most %d "
                                           "bytes is ignored)",
                                           req->method_name, req->route->pattern, STRAY_BODY_LIMIT);
                }
                return 0;
        }
        /* An empty PEM upload is judged by the certificate rules (no_certificate), not as
         * JSON. */
        if (!has_body && req->method != HTTP_DELETE &&
            !((req->op->body & BODY_PEM) &&
              media_type_is(req->content_type, "application/x-pem-file")))
                return problem_set(reterr, PROBLEM_INVALID_JSON, NULL, "the request body is empty");
        if (has_body) {
                r = admission_media_type(req, reterr);
                if (r < 0)
                        return r;
        }
        if (cl) {
                int64_t n;
                if (parse_int64(cl, 0, INT64_MAX, &n) == 0 && (uint64_t)n > req->body_limit)
                        return problem_set(reterr, PROBLEM_PAYLOAD_TOO_LARGE, NULL,
                                           "the body has %lld bytes; the limit is %zu",
                                           (long long)n, req->body_limit);
        }
        /* One bulk replace at a time, from its headers until its job is done: each takes a
         * multiple of its body in memory. Another is refused here, before its body is read. */
        if (req->op->body & BODY_BULK) {
                bool idle = false;
                if (!atomic_compare_exchange_strong(&req->app->bulk_busy, &idle, true)) {
                        problem_set(reterr, PROBLEM_SERVICE_UNAVAILABLE, NULL,
                                    "another bulk replace is being received or applied; try "
                                    "again when it is done");
                        reterr->retry_after = BULK_RETRY_AFTER_SEC;
                        return -EBUSY;
                }
                req->slot = &req->app->bulk_busy;
        }
        return 0;
}

static int append_body(struct request *req, const char *data, size_t n)
{
        if (req->op == NULL || req->op->body == BODY_NONE)
                return 0;
        if (req->body_too_large || req->body_len + n > req->body_limit) {
                req->body_too_large = true;
                return 0;
        }
        if (req->body_len + n + 1 > req->body_cap) {
                /* Sized by Content-Length when there is one (admit checked it against the limit):
                 * one allocation, no copies while a large body grows. */
                const char *cl = request_header(req, MHD_HTTP_HEADER_CONTENT_LENGTH);
                int64_t want = 0;
                size_t cap = req->body_cap ? req->body_cap : 4096;
                if (!req->body_cap && cl &&
                    parse_int64(cl, 0, (int64_t)req->body_limit, &want) == 0)
                        cap = (size_t)want + 1;
                while (cap < req->body_len + n + 1)
                        cap *= 2;
                if (cap > req->body_limit + 1)
                        cap = req->body_limit + 1;
                char *p;
                if (req->op->body & BODY_SECRET) {
                        /* realloc would leave the old copy of a key behind, unwiped */
                        p = malloc(cap);
                        if (p && req->body)
                                memcpy(p, req->body, req->body_len);
                        if (p)
                                free_wiped(req->body);
                } else {
                        p = realloc(req->body, cap);
                }
                if (!p)
                        return -ENOMEM;
                req->body = p;
                req->body_cap = cap;
        }
        memcpy(req->body + req->body_len, data, n);
        req->body_len += n;
        req->body[req->body_len] = 0;
        return 0;
}

static enum MHD_Result send_reply(struct request *req)
{
        struct MHD_Response *resp;
        /* a bulk slot still held (the request ended before it made a job) is free before the
         * client can read the reply and send its next bulk */
        atomic_bool *slot = TAKE_PTR(req->slot);
        if (slot)
                atomic_store(slot, false);
        reply_conditional(req);
        if (req->reply_cached)
                resp = reply_cache_response(req->reply_entry);
        else
                resp = req->reply_secret
                           ? MHD_create_response_from_buffer_with_free_callback(
                                 req->reply_len, req->reply_body, free_wiped)
                           : MHD_create_response_from_buffer(req->reply_len, req->reply_body,
                                                             MHD_RESPMEM_MUST_FREE);
        if (!resp)
                return MHD_NO;
        req->reply_body = NULL;
        if (req->reply_type)
                MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, req->reply_type);
        /* API replies are never cached; the console's files say otherwise (revalidated) */
        if (!reply_header_value(req, MHD_HTTP_HEADER_CACHE_CONTROL))
                MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
        MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
        for (size_t i = 0; i < req->n_headers; i++)
                MHD_add_response_header(resp, req->headers[i].name, req->headers[i].value);
        admission_cors_headers(req, resp);
        enum MHD_Result ret = MHD_queue_response(req->conn, (unsigned)req->status, resp);
        MHD_destroy_response(resp);
        return ret;
}

static enum MHD_Result fail(struct request *req, struct problem *p)
{
        reply_problem(req, p);
        problem_done(p);
        return send_reply(req);
}

static enum MHD_Result access_handler(void *cls, struct MHD_Connection *conn, const char *url,
                                      const char *method, const char *version,
                                      const char *upload_data, size_t *upload_data_size,
                                      void **con_cls)
{
        struct http_server *srv = cls;
        struct request *req = *con_cls;
        struct problem p = { 0 };

        if (!req) {
                req = calloc(1, sizeof(*req));
                if (!req)
                        return MHD_NO;
                *con_cls = req;
                atomic_fetch_add(&srv->in_flight, 1);
                req->app = srv->app;
                req->conn = conn;
                req->started_usec = now_monotonic_usec();
                req->method = http_method_from_string(method);
                req->method_name = method;
                req->route_index = -1;
                if (!watch_headers_done(srv, conn)) {
                        log_debug("closing a connection whose request headers came too late");
                        return MHD_NO;
                }
                if (streq(method, "OPTIONS") && request_header(req, "Origin") &&
                    request_header(req, "Access-Control-Request-Method")) {
                        /* A CORS preflight; an OPTIONS without these is refused by admit (405
                         * with Allow). */
                        req->body_done = true;
                        watch_stop(srv, conn);
                        if (admission_cors_preflight(req, url, &p) < 0)
                                return fail(req, &p);
                        problem_done(&p);
                        return send_reply(req);
                }
                if (admit(req, url, &p) < 0) {
                        /* Answer before the body: a refused upload is not read. */
                        req->body_done = true;
                        watch_stop(srv, conn);
                        return fail(req, &p);
                }
                return MHD_YES;
        }
        if (req->suspended) {
                /* Resumed by the worker or the reaper, with the reply set. */
                req->suspended = false;
                return send_reply(req);
        }
        if (req->body_done) {
                *upload_data_size = 0;
                return MHD_YES;
        }
        if (*upload_data_size) {
                if (!watch_body(srv, conn, *upload_data_size)) {
                        log_debug("closing a connection whose request body is too slow");
                        return MHD_NO;
                }
                if (append_body(req, upload_data, *upload_data_size) < 0)
                        return MHD_NO;
                *upload_data_size = 0;
                return MHD_YES;
        }
        req->body_done = true;
        watch_stop(srv, conn);
        if (req->body_too_large) {
                problem_set(&p, PROBLEM_PAYLOAD_TOO_LARGE, NULL,
                            "the body is larger than the limit of %zu bytes", req->body_limit);
                return fail(req, &p);
        }
        /* the read model keeps JSON replies: a request for another representation (the
         * policies as a map file) is answered by its handler */
        bool cached = req->op->cached && req->method == HTTP_GET && !request_prefers_text(req);
        if (cached && reply_cache_serve(srv->cache, req, url))
                return send_reply(req);
        int r = req->op->handler(req, &p);
        if (r == HANDLER_SUSPENDED) {
                problem_done(&p);
                return MHD_YES;
        }
        if (r < 0 || !req->replied) {
                if (p.code == PROBLEM_NONE)
                        problem_set(&p, PROBLEM_INTERNAL_ERROR, NULL, "internal error");
                return fail(req, &p);
        }
        problem_done(&p);
        if (cached) {
                reply_tag(req);
                reply_cache_keep(srv->cache, req);
        }
        return send_reply(req);
}

static void request_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                              enum MHD_RequestTerminationCode toe)
{
        struct http_server *srv = cls;
        struct request *req = *con_cls;
        /* Keep-alive: the wait for the next request begins now. */
        watch_rearm(srv, conn);
        if (!req)
                return;
        uint64_t usec = now_monotonic_usec() - req->started_usec;
        int status = req->replied ? req->status : 0;
        metrics_observe_request(req->route_index, http_method_slot(req->method), status, usec);
        log_debug("%s %s -> %d in %.1f ms (%s)", req->method_name,
                  req->route ? req->route->pattern : "-", status, (double)usec / 1000.0,
                  req->actor[0] ? req->actor : "anonymous");
        for (size_t i = 0; i < ROUTE_MAX_PARAMS; i++)
                free(req->params[i]);
        if (req->op && (req->op->body & BODY_SECRET))
                free_wiped(req->body);
        else
                free(req->body);
        if (req->slot)
                atomic_store(req->slot, false);
        request_reply_free(req);
        free(req);
        *con_cls = NULL;
        if (atomic_fetch_sub(&srv->in_flight, 1) == 1)
                event_signal(&srv->idle);
}

/* Keep the path as sent: the router splits segments first and decodes each, so "%2F" inside a
 * destination never turns into a path separator. Query values are decoded by request_query. */
static size_t no_unescape(void *cls, struct MHD_Connection *c, char *s)
{
        return strlen(s);
}

static void mhd_log(void *cls, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
static void mhd_log(void *cls, const char *fmt, va_list ap)
{
        char buf[512];
        vsnprintf(buf, sizeof(buf), fmt, ap);
        size_t n = strlen(buf);
        while (n > 0 && buf[n - 1] == '\n')
                buf[--n] = 0;
        /* MHD reports client misbehaviour here (timeouts, bad requests): not our errors. */
        log_debug("libmicrohttpd: %s", buf);
}

int http_server_start(struct app *app, const struct http_server_options *o,
                      struct http_server **ret)
{
        struct addrinfo hints = { .ai_flags = AI_NUMERICHOST | AI_PASSIVE,
                                  .ai_socktype = SOCK_STREAM };
        struct addrinfo *ai = NULL;
        char port[8];
        /* poll, not epoll: with edge-triggered epoll, MHD 0.9.75 misses a client's close that
         * arrives with its last bytes (a short read clears its "read ready"), and keeps such a
         * connection, and its slot in the connection limits, until the idle timeout. */
        unsigned flags =
            MHD_USE_POLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;

        snprintf(port, sizeof(port), "%u", o->port);
        int r = getaddrinfo(o->address, port, &hints, &ai);
        if (r != 0) {
                log_error("listen_address '%s' is not a numeric IPv4 or IPv6 address: %s",
                          o->address, gai_strerror(r));
                return -EINVAL;
        }
        if (ai->ai_family == AF_INET6)
                flags |= MHD_USE_IPv6;

        struct http_server *srv = calloc(1, sizeof(*srv));
        if (!srv) {
                freeaddrinfo(ai);
                return -ENOMEM;
        }
        srv->app = app;
        srv->opt = *o;
        srv->listen_fd = MHD_INVALID_SOCKET;
        srv->timeout_usec = (uint64_t)o->connection_timeout_sec * 1000000;
        pthread_mutex_init(&srv->watch_lock, NULL);
        r = reply_cache_new(&srv->cache);
        if (r >= 0)
                r = event_init(&srv->idle);
        if (r >= 0) {
                r = stop_event_init(&srv->watchdog_stop);
                if (r < 0)
                        event_destroy(&srv->idle);
        }
        if (r < 0) {
                freeaddrinfo(ai);
                pthread_mutex_destroy(&srv->watch_lock);
                reply_cache_free(srv->cache);
                free(srv);
                return r;
        }
        app->http = srv;
        srv->mhd = MHD_start_daemon(
            flags, (uint16_t)o->port, NULL, NULL, access_handler, srv, MHD_OPTION_EXTERNAL_LOGGER,
            mhd_log, NULL, MHD_OPTION_SOCK_ADDR, ai->ai_addr, MHD_OPTION_THREAD_POOL_SIZE,
            (unsigned)o->threads, MHD_OPTION_CONNECTION_TIMEOUT, o->connection_timeout_sec,
            MHD_OPTION_CONNECTION_LIMIT, o->connection_limit, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
            o->per_ip_connection_limit, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
            o->connection_memory_limit, MHD_OPTION_NOTIFY_COMPLETED, request_completed, srv,
            MHD_OPTION_NOTIFY_CONNECTION, connection_notify, srv, MHD_OPTION_UNESCAPE_CALLBACK,
            no_unescape, NULL, MHD_OPTION_STRICT_FOR_CLIENT, 1, MHD_OPTION_LISTENING_ADDRESS_REUSE,
            1, MHD_OPTION_END);
        freeaddrinfo(ai);
        if (!srv->mhd) {
                log_error("cannot listen on %s port %u: %s", o->address, o->port, strerror(errno));
                app->http = NULL;
                stop_event_destroy(&srv->watchdog_stop);
                event_destroy(&srv->idle);
                pthread_mutex_destroy(&srv->watch_lock);
                reply_cache_free(srv->cache);
                free(srv);
                return -EADDRINUSE;
        }
        r = pthread_create(&srv->watchdog, NULL, watchdog_main, srv);
        if (r != 0)
                /* Not fatal: the idle timeout still closes idle connections. */
                log_warning("cannot start the request deadline watchdog: %s", strerror(r));
        srv->watchdog_started = r == 0;
        const union MHD_DaemonInfo *info = MHD_get_daemon_info(srv->mhd, MHD_DAEMON_INFO_BIND_PORT);
        srv->port = info ? info->port : o->port;
        *ret = srv;
        return 0;
}

/* A connection that no client can make: one end of a socketpair handed to MHD, which serves it
 * on its thread pool like an accepted one (same threads, same handler). Its address is AF_UNIX,
 * which MHD does not count against per_ip_connection_limit; connection_limit still counts it, so
 * a daemon at that limit refuses it (-EAGAIN). */
int http_server_connect_private(struct http_server *s, int *ret)
{
        static const struct sockaddr_un addr = { .sun_family = AF_UNIX };
        int fds[2];
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, fds) < 0)
                return -errno;
        /* MHD owns fds[1] from here, and closes it even when it refuses it. */
        if (MHD_add_connection(s->mhd, fds[1], (const struct sockaddr *)&addr,
                               sizeof(sa_family_t)) != MHD_YES) {
                int r = errno == ENFILE || errno == EAGAIN ? -EAGAIN : -(errno ? errno : EIO);
                close(fds[0]);
                return r;
        }
        *ret = fds[0];
        return 0;
}

void http_server_quiesce(struct http_server *s)
{
        if (s->listen_fd != MHD_INVALID_SOCKET)
                return;
        s->listen_fd = MHD_quiesce_daemon(s->mhd);
        /* MHD no longer accepts, but the socket still listens: the kernel would complete the
         * handshake of new clients and queue them until the close at exit resets them. Shut it
         * down now so that they are refused (ECONNREFUSED) and retry elsewhere. The descriptor
         * stays open until stop, so a thread that has not yet dropped it from its poll set never
         * sees its number reused. */
        if (s->listen_fd != MHD_INVALID_SOCKET)
                shutdown(s->listen_fd, SHUT_RDWR);
}

unsigned http_server_port(const struct http_server *s)
{
        return s->port;
}

static bool none_in_flight(void *s)
{
        return atomic_load(&((struct http_server *)s)->in_flight) == 0;
}

void http_server_stop(struct http_server *s, uint64_t timeout_usec)
{
        if (!s)
                return;
        /* Stop accepting; let requests in progress finish (bounded), then stop the threads. */
        http_server_quiesce(s);
        if (event_wait(&s->idle, none_in_flight, s, timeout_usec) < 0)
                log_warning("stopping with %u requests still in progress",
                            atomic_load(&s->in_flight));
        MHD_stop_daemon(s->mhd);
        if (s->watchdog_started) {
                stop_event_set(&s->watchdog_stop);
                pthread_join(s->watchdog, NULL);
        }
        stop_event_destroy(&s->watchdog_stop);
        event_destroy(&s->idle);
        pthread_mutex_destroy(&s->watch_lock);
        if (s->listen_fd != MHD_INVALID_SOCKET)
                close(s->listen_fd);
        reply_cache_free(s->cache);
        free(s);
}
