/* watchdog.c - proves the worker and the HTTP threads alive before each WATCHDOG=1: the worker's
 * heartbeat must be recent and a GET /healthz must be answered 200 in time (that handler checks
 * the heartbeat too). Main thread.
 *
 * The request does not go through the public port: a client holding per_ip_connection_limit
 * idle connections from the address the probe comes from (or the kernel's backlog full of them)
 * would have the probe refused, and systemd would kill a healthy daemon for anyone who can
 * connect. It goes over a socketpair whose other end is handed to libmicrohttpd
 * (http_server_connect_private): the same thread pool, request state machine and handler that
 * serve clients answer it, so a 200 proves them responsive, not merely a thread that bumps a
 * counter. A daemon at connection_limit refuses even that connection; that is a refusal, not a
 * hang, so the round counts as passed (the worker's heartbeat is still checked). */
#include "watchdog.h"

#include <poll.h>
#include <stdio.h>
#include <sys/socket.h>

#include "app.h"
#include "apply/worker.h"
#include "http/http.h"
#include "log.h"
#include "util.h"

static int wait_fd(int fd, short events, uint64_t deadline)
{
        uint64_t now = now_monotonic_usec();
        if (now >= deadline)
                return -ETIMEDOUT;
        struct pollfd p = { .fd = fd, .events = events };
        int r = poll(&p, 1, (int)((deadline - now + 999) / 1000));
        if (r < 0)
                return -errno;
        return r == 0 ? -ETIMEDOUT : 0;
}

static int probe_healthz(struct http_server *http, uint64_t timeout_usec)
{
        static const char request[] = "GET /healthz HTTP/1.1\r\nHost: localhost\r\n"
                                      "Connection: close\r\n\r\n";
        uint64_t deadline = now_monotonic_usec() + timeout_usec;
        _cleanup_close_ int fd = -1;
        char buf[64];
        size_t got = 0;
        int r;

        r = http_server_connect_private(http, &fd);
        if (r < 0)
                return r;
        if (send(fd, request, sizeof(request) - 1, MSG_NOSIGNAL) != (ssize_t)sizeof(request) - 1)
                return -EIO;
        while (got < 12) {
                r = wait_fd(fd, POLLIN, deadline);
                if (r < 0)
                        return r;
                ssize_t n = recv(fd, buf + got, sizeof(buf) - 1 - got, 0);
                if (n <= 0)
                        return n == 0 ? -ECONNRESET : -errno;
                got += (size_t)n;
        }
        buf[got] = 0;
        return strncmp(buf, "HTTP/1.1 200", 12) == 0 ? 0 : -EPROTO;
}

bool watchdog_check(struct app *app, uint64_t stuck_usec, uint64_t timeout_usec, char *why,
                    size_t whysize)
{
        uint64_t age = worker_heartbeat_age(app->worker);
        if (age > stuck_usec) {
                snprintf(why, whysize, "the worker has shown no progress for %.1f s",
                         (double)age / 1e6);
                return false;
        }
        int r = probe_healthz(app->http, timeout_usec);
        if (r == -EAGAIN) {
                log_debug("watchdog: connection_limit reached; the HTTP threads are not probed "
                          "this round");
                return true;
        }
        if (r < 0) {
                snprintf(why, whysize, "GET /healthz on a private connection failed: %s",
                         strerror(-r));
                return false;
        }
        return true;
}
