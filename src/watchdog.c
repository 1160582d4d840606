/* watchdog.c - proves the worker and the HTTP threads alive before each WATCHDOG=1: the worker's
 * heartbeat must be recent and GET /healthz over loopback must answer 200 in time (that handler
 * checks the heartbeat too). Main thread. */
#include "smtptlsd/watchdog.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <sys/socket.h>

#include "smtptlsd/app.h"
#include "smtptlsd/conf.h"
#include "smtptlsd/util.h"
#include "smtptlsd/worker.h"

static int connect_self(const char *address, unsigned port, int *ret)
{
        struct sockaddr_storage ss = { 0 };
        socklen_t len;
        struct sockaddr_in *in = (struct sockaddr_in *)&ss;
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;

        if (inet_pton(AF_INET, address, &in->sin_addr) == 1) {
                in->sin_family = AF_INET;
                in->sin_port = htons((uint16_t)port);
                if (in->sin_addr.s_addr == htonl(INADDR_ANY))
                        in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
                len = sizeof(*in);
        } else if (inet_pton(AF_INET6, address, &in6->sin6_addr) == 1) {
                in6->sin6_family = AF_INET6;
                in6->sin6_port = htons((uint16_t)port);
                if (IN6_IS_ADDR_UNSPECIFIED(&in6->sin6_addr))
                        in6->sin6_addr = in6addr_loopback;
                len = sizeof(*in6);
        } else {
                return -EINVAL;
        }
        int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return -errno;
        if (connect(fd, (struct sockaddr *)&ss, len) < 0 && errno != EINPROGRESS) {
                int r = -errno;
                close(fd);
                return r;
        }
        *ret = fd;
        return 0;
}

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

static int probe_healthz(const char *address, unsigned port, uint64_t timeout_usec)
{
        static const char request[] = "GET /healthz HTTP/1.1\r\nHost: localhost\r\n"
                                      "Connection: close\r\n\r\n";
        uint64_t deadline = now_monotonic_usec() + timeout_usec;
        _cleanup_close_ int fd = -1;
        char buf[64];
        size_t got = 0;
        int r;

        r = connect_self(address, port, &fd);
        if (r < 0)
                return r;
        r = wait_fd(fd, POLLOUT, deadline);
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

bool watchdog_check(struct app *app, unsigned port, uint64_t stuck_usec, uint64_t timeout_usec,
                    char *why, size_t whysize)
{
        uint64_t age = worker_heartbeat_age(app->worker);
        if (age > stuck_usec) {
                snprintf(why, whysize, "the worker has shown no progress for %.1f s",
                         (double)age / 1e6);
                return false;
        }
        int r = probe_healthz(app->cfg->listen_address, port, timeout_usec);
        if (r < 0) {
                snprintf(why, whysize, "GET /healthz on our own port failed: %s", strerror(-r));
                return false;
        }
        return true;
}
