/* probe_conn.c - the connection of the SMTP probe (see probe_conn.h): names resolved on a
 * detached helper thread that the caller stops waiting for, each address tried in turn on a
 * non-blocking socket, every read and write (plain or TLS) polled against the deadline, one line
 * at a time. Any thread; no globals. */
#include "probe/probe_conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "util.h"

/* The first failure is the one reported. */
void probe_set_error(struct smtp_probe_result *res, const char *fmt, ...)
{
        va_list ap;
        if (res->error[0])
                return;
        va_start(ap, fmt);
        vsnprintf(res->error, sizeof(res->error), fmt, ap);
        va_end(ap);
}

/* Copies at most n bytes of src (stopping at NUL) as printable ASCII: anything else becomes '?'.
 * Server text and certificate fields end up in JSON and logs. */
void probe_copy_printable(char *dst, size_t size, const char *src, size_t n)
{
        size_t i = 0;
        for (; i + 1 < size && i < n && src[i]; i++) {
                unsigned char ch = (unsigned char)src[i];
                dst[i] = ch >= 0x20 && ch < 0x7f ? (char)ch : '?';
        }
        dst[i] = 0;
}

uint64_t probe_deadline_after(uint64_t usec)
{
        uint64_t now = now_monotonic_usec();
        return usec > UINT64_MAX - now ? UINT64_MAX : now + usec;
}

/* The cancel descriptor of this thread (probe_set_cancel_fd); -1: none. */
static _Thread_local int cancel_fd = -1;

void probe_set_cancel_fd(int fd)
{
        cancel_fd = fd;
}

int probe_cancel_fd(void)
{
        return cancel_fd;
}

/* Waits until fd is ready for events, the deadline passes, or this thread's cancel descriptor
 * becomes readable (-ECANCELED). POLLERR/POLLHUP count as ready: the following I/O call reports
 * what happened. */
int probe_wait_fd(int fd, short events, uint64_t deadline)
{
        for (;;) {
                uint64_t now = now_monotonic_usec();
                if (now >= deadline)
                        return -ETIMEDOUT;
                uint64_t ms = (deadline - now + 999) / 1000;
                struct pollfd p[2] = { { .fd = fd, .events = events },
                                       { .fd = cancel_fd, .events = POLLIN } };
                int r = poll(p, cancel_fd >= 0 ? 2 : 1, ms > INT_MAX ? INT_MAX : (int)ms);
                if (r < 0 && errno != EINTR)
                        return -errno;
                if (r > 0 && cancel_fd >= 0 && p[1].revents)
                        return -ECANCELED;
                if (r > 0)
                        return 0;
        }
}

/* Loopback, private (RFC 1918, RFC 4193), shared (RFC 6598), link-local and unspecified
 * addresses: refused when the configuration says so. */
bool probe_address_is_private(const char *s)
{
        unsigned char a[16];
        if (inet_pton(AF_INET, s, a) == 1)
                return a[0] == 127 || a[0] == 10 || a[0] == 0 || a[0] >= 224 || /* multicast,
                                                                                   reserved */
                       (a[0] == 172 && (a[1] & 0xf0) == 16) || (a[0] == 192 && a[1] == 168) ||
                       (a[0] == 169 && a[1] == 254) || (a[0] == 100 && (a[1] & 0xc0) == 64) ||
                       (a[0] == 198 && (a[1] & 0xfe) == 18) ||  /* benchmarking, RFC 2544 */
                       (a[0] == 192 && a[1] == 0 && a[2] == 0); /* IETF protocol assignments */
        if (inet_pton(AF_INET6, s, a) != 1)
                return true;
        static const unsigned char zero[16];
        if (memcmp(a, zero, 15) == 0 && (a[15] == 0 || a[15] == 1))
                return true; /* :: and ::1 */
        if ((a[0] & 0xfe) == 0xfc || (a[0] == 0xfe && (a[1] & 0xc0) == 0x80) ||
            (a[0] == 0xfe && (a[1] & 0xc0) == 0xc0) || a[0] == 0xff)
                return true; /* unique local, link-local, site-local, multicast */
        /* an IPv4 address inside: mapped ::ffff:a.b.c.d, NAT64 64:ff9b::a.b.c.d, 6to4 2002:ab:cd::
         */
        static const unsigned char mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
        static const unsigned char nat64[12] = { 0, 0x64, 0xff, 0x9b };
        const unsigned char *v4 = memcmp(a, mapped, 12) == 0 || memcmp(a, nat64, 12) == 0 ? a + 12
                                  : a[0] == 0x20 && a[1] == 0x02                          ? a + 2
                                                                                          : NULL;
        if (v4) {
                char text[16];
                snprintf(text, sizeof(text), "%u.%u.%u.%u", v4[0], v4[1], v4[2], v4[3]);
                return probe_address_is_private(text);
        }
        return false;
}

/* The reason of the last OpenSSL error of this thread. */
const char *probe_ssl_reason(void)
{
        unsigned long e = ERR_peek_last_error();
        const char *s = e ? ERR_reason_error_string(e) : NULL;
        return s ? s : "unknown error";
}

/* ---- name resolution with a deadline ------------------------------------------------------- */

/* Shared by the caller and the helper thread; the last one to let go frees it. */
struct resolve_job {
        pthread_mutex_t lock;
        pthread_cond_t cond;
        unsigned refs;
        bool done;
        int gai;
        int gai_errno;
        struct addrinfo *ai;
        char service[8];
        char host[];
};

static void resolve_job_unref(struct resolve_job *j)
{
        pthread_mutex_lock(&j->lock);
        bool last = --j->refs == 0;
        pthread_mutex_unlock(&j->lock);
        if (!last)
                return;
        if (j->ai)
                freeaddrinfo(j->ai);
        pthread_cond_destroy(&j->cond);
        pthread_mutex_destroy(&j->lock);
        free(j);
}

static void *resolve_thread(void *arg)
{
        struct resolve_job *j = arg;
        const struct addrinfo hints = { .ai_family = AF_UNSPEC,
                                        .ai_socktype = SOCK_STREAM,
                                        .ai_protocol = IPPROTO_TCP,
                                        .ai_flags = AI_NUMERICSERV };
        struct addrinfo *ai = NULL;
        int r = getaddrinfo(j->host, j->service, &hints, &ai);
        int e = errno;

        pthread_mutex_lock(&j->lock);
        j->gai = r;
        j->gai_errno = e;
        j->ai = r == 0 ? ai : NULL;
        j->done = true;
        pthread_cond_signal(&j->cond);
        pthread_mutex_unlock(&j->lock);
        resolve_job_unref(j);
        return NULL;
}

static int resolve_error(struct smtp_probe_result *res, const char *host, int gai, int gai_errno)
{
        if (gai == EAI_MEMORY) {
                probe_set_error(res, "resolve %s: out of memory", host);
                return -ENOMEM;
        }
        if (gai == EAI_SYSTEM)
                probe_set_error(res, "resolve %s: %s", host, strerror(gai_errno));
        else
                probe_set_error(res, "resolve %s: %s", host, gai_strerror(gai));
        return -EHOSTUNREACH;
}

int probe_resolve(const char *host, unsigned port, uint64_t deadline, struct addrinfo **ret,
                  struct smtp_probe_result *res)
{
        const struct addrinfo numeric = { .ai_family = AF_UNSPEC,
                                          .ai_socktype = SOCK_STREAM,
                                          .ai_protocol = IPPROTO_TCP,
                                          .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV };
        char service[8];
        int r;

        snprintf(service, sizeof(service), "%u", port);
        r = getaddrinfo(host, service, &numeric, ret);
        if (r == 0)
                return 0;
        if (r != EAI_NONAME)
                return resolve_error(res, host, r, errno);

        /* A name: getaddrinfo() cannot be bounded, so it runs on a detached thread that we stop
         * waiting for at the deadline (it then cleans up after itself). */
        size_t len = strlen(host);
        struct resolve_job *j = calloc(1, sizeof(*j) + len + 1);
        if (!j) {
                probe_set_error(res, "resolve %s: out of memory", host);
                return -ENOMEM;
        }
        memcpy(j->host, host, len + 1);
        memcpy(j->service, service, sizeof(service));
        j->refs = 2;
        pthread_mutex_init(&j->lock, NULL);
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&j->cond, &ca);
        pthread_condattr_destroy(&ca);

        pthread_attr_t ta;
        pthread_t t;
        pthread_attr_init(&ta);
        pthread_attr_setdetachstate(&ta, PTHREAD_CREATE_DETACHED);
        r = pthread_create(&t, &ta, resolve_thread, j);
        pthread_attr_destroy(&ta);
        if (r != 0) {
                j->refs = 1;
                resolve_job_unref(j);
                probe_set_error(res, "resolve %s: cannot start a thread: %s", host, strerror(r));
                return -r;
        }

        struct timespec until = { .tv_sec = (time_t)(deadline / 1000000),
                                  .tv_nsec = (long)(deadline % 1000000) * 1000 };
        pthread_mutex_lock(&j->lock);
        while (!j->done && pthread_cond_timedwait(&j->cond, &j->lock, &until) != ETIMEDOUT)
                ;
        bool done = j->done;
        int gai = j->gai, gai_errno = j->gai_errno;
        struct addrinfo *ai = TAKE_PTR(j->ai);
        pthread_mutex_unlock(&j->lock);
        resolve_job_unref(j);

        if (!done) {
                probe_set_error(res, "resolve %s: timed out", host);
                return -ETIMEDOUT;
        }
        if (gai != 0)
                return resolve_error(res, host, gai, gai_errno);
        *ret = ai;
        return 0;
}

/* ---- connection ---------------------------------------------------------------------------- */

static int connect_one(const struct addrinfo *ai, uint64_t deadline, int *ret)
{
        _cleanup_close_ int fd =
            socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0)
                return -errno;
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
                if (errno != EINPROGRESS && errno != EINTR)
                        return -errno;
                int r = probe_wait_fd(fd, POLLOUT, deadline);
                if (r < 0)
                        return r;
                int err = 0;
                socklen_t len = sizeof(err);
                if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
                        return -errno;
                if (err != 0)
                        return -err;
        }
        *ret = TAKE_FD(fd);
        return 0;
}

/* Tries each address in turn until one connects. Each gets an equal share of the time left, so
 * one black-holed address (say an IPv6 route that goes nowhere) cannot use it all up. */
int probe_connect_any(const struct addrinfo *list, unsigned port, uint64_t deadline, int *ret,
                      struct smtp_probe_result *res)
{
        unsigned left = 0;
        int r = -EHOSTUNREACH;
        for (const struct addrinfo *ai = list; ai; ai = ai->ai_next)
                left++;
        for (const struct addrinfo *ai = list; ai; ai = ai->ai_next, left--) {
                uint64_t now = now_monotonic_usec();
                uint64_t until = now >= deadline ? now : now + (deadline - now) / left;
                char addr[64] = "?";
                getnameinfo(ai->ai_addr, ai->ai_addrlen, addr, sizeof(addr), NULL, 0,
                            NI_NUMERICHOST);
                strcpy_bounded(res->address, sizeof(res->address), addr);
                r = connect_one(ai, until, ret);
                res->error[0] = 0; /* only the last address's failure is reported */
                if (r == 0)
                        return 0;
                if (r == -ETIMEDOUT)
                        probe_set_error(res, "connect to %s port %u: timed out", addr, port);
                else if (r == -EPERM)
                        /* the kernel's answer to a packet an IP filter drops: under the shipped
                         * systemd unit, IPAddressDeny=any with IPAddressAllow=localhost */
                        probe_set_error(res,
                                        "connect to %s port %u: not permitted by this host's IP "
                                        "filter (the systemd unit allows this host only: "
                                        "docs/operations.md, \"The destination probe\")",
                                        addr, port);
                else
                        probe_set_error(res, "connect to %s port %u: %s", addr, port, strerror(-r));
                if (now_monotonic_usec() >= deadline)
                        break;
        }
        return r;
}

static int ssl_wait(struct probe_conn *c, int ret)
{
        switch (SSL_get_error(c->ssl, ret)) {
        case SSL_ERROR_WANT_READ:
                return probe_wait_fd(c->fd, POLLIN, c->deadline);
        case SSL_ERROR_WANT_WRITE:
                return probe_wait_fd(c->fd, POLLOUT, c->deadline);
        case SSL_ERROR_ZERO_RETURN:
                return -ECONNRESET;
        case SSL_ERROR_SYSCALL:
                return errno != 0 ? -errno : -ECONNRESET;
        default:
                if (ERR_GET_REASON(ERR_peek_last_error()) == SSL_R_UNEXPECTED_EOF_WHILE_READING)
                        return -ECONNRESET;
                return -EPROTO;
        }
}

static int conn_read(struct probe_conn *c, char *dst, size_t n, size_t *got)
{
        for (;;) {
                int r;
                if (now_monotonic_usec() >= c->deadline)
                        return -ETIMEDOUT;
                if (c->ssl) {
                        ERR_clear_error();
                        errno = 0;
                        int k = SSL_read_ex(c->ssl, dst, n, got);
                        if (k == 1)
                                return 0;
                        r = ssl_wait(c, k);
                } else {
                        ssize_t k = recv(c->fd, dst, n, 0);
                        if (k > 0) {
                                *got = (size_t)k;
                                return 0;
                        }
                        if (k == 0)
                                return -ECONNRESET;
                        if (errno == EINTR)
                                continue;
                        if (errno != EAGAIN && errno != EWOULDBLOCK)
                                return -errno;
                        r = probe_wait_fd(c->fd, POLLIN, c->deadline);
                }
                if (r < 0)
                        return r;
        }
}

int probe_conn_write(struct probe_conn *c, const char *data, size_t n)
{
        while (n > 0) {
                int r;
                size_t done = 0;
                if (now_monotonic_usec() >= c->deadline)
                        return -ETIMEDOUT;
                if (c->ssl) {
                        ERR_clear_error();
                        errno = 0;
                        int k = SSL_write_ex(c->ssl, data, n, &done);
                        if (k == 1) {
                                data += done;
                                n -= done;
                                continue;
                        }
                        r = ssl_wait(c, k);
                } else {
                        ssize_t k = send(c->fd, data, n, MSG_NOSIGNAL);
                        if (k >= 0) {
                                data += k;
                                n -= (size_t)k;
                                continue;
                        }
                        if (errno == EINTR)
                                continue;
                        if (errno != EAGAIN && errno != EWOULDBLOCK)
                                return -errno;
                        r = probe_wait_fd(c->fd, POLLOUT, c->deadline);
                }
                if (r < 0)
                        return r;
        }
        return 0;
}

/* Reads one line (without CR LF) into line[SMTP_PROBE_LINE_MAX + 1]. Never buffers more than one
 * line's worth: a longer line is -EMSGSIZE. */
int probe_read_line(struct probe_conn *c, char *line, size_t *ret_len)
{
        for (;;) {
                char *nl = memchr(c->buf, '\n', c->len);
                if (nl) {
                        size_t used = (size_t)(nl - c->buf) + 1;
                        size_t n = used - 1;
                        if (n > 0 && c->buf[n - 1] == '\r')
                                n--;
                        if (n > SMTP_PROBE_LINE_MAX)
                                return -EMSGSIZE;
                        if (memchr(c->buf, 0, n))
                                return -EBADMSG;
                        memcpy(line, c->buf, n);
                        line[n] = 0;
                        memmove(c->buf, c->buf + used, c->len - used);
                        c->len -= used;
                        *ret_len = n;
                        return 0;
                }
                if (c->len == sizeof(c->buf))
                        return -EMSGSIZE;
                size_t got = 0;
                int r = conn_read(c, c->buf + c->len, sizeof(c->buf) - c->len, &got);
                if (r < 0)
                        return r;
                c->len += got;
        }
}

int probe_io_error(struct smtp_probe_result *res, const char *step, int r)
{
        switch (r) {
        case -ETIMEDOUT:
                probe_set_error(res, "%s: timed out", step);
                break;
        case -ECONNRESET:
                probe_set_error(res, "%s: connection closed by the server", step);
                break;
        case -EMSGSIZE:
                probe_set_error(res, "%s: reply line longer than %d bytes", step,
                                SMTP_PROBE_LINE_MAX);
                break;
        case -EBADMSG:
                probe_set_error(res, "%s: NUL byte in a reply line", step);
                r = -EPROTO;
                break;
        case -EPROTO:
                probe_set_error(res, "%s: TLS error: %s", step, probe_ssl_reason());
                break;
        default:
                probe_set_error(res, "%s: %s", step, strerror(-r));
                break;
        }
        return r;
}
