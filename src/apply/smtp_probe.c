/* smtp_probe.c - SMTP STARTTLS probe client (see smtp_probe.h). One overall deadline bounds every
 * step: names are resolved on a detached helper thread that the caller stops waiting for, the
 * socket is non-blocking and every read, write and TLS step polls against the deadline. Lines and
 * replies are capped. TLS goes through a small socket BIO of our own that sends with MSG_NOSIGNAL,
 * so a peer that closes early cannot raise SIGPIPE in the caller. Any thread; no globals. */
#include "smtptlsd/smtp_probe.h"

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
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "smtptlsd/util.h"

/* QUIT is a courtesy: it gets at most this long (and never more than the overall deadline). */
#define QUIT_BUDGET_USEC (2 * 1000000ULL)
/* smtp_probe_expect: each attempt gets a quarter of the timeout, but at least this */
#define EXPECT_ATTEMPT_MIN_USEC (1000000ULL)

static void set_error(struct smtp_probe_result *res, const char *fmt, ...) _printf_(2, 3);

/* The first failure is the one reported. */
static void set_error(struct smtp_probe_result *res, const char *fmt, ...)
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
static void copy_printable(char *dst, size_t size, const char *src, size_t n)
{
        size_t i = 0;
        for (; i + 1 < size && i < n && src[i]; i++) {
                unsigned char ch = (unsigned char)src[i];
                dst[i] = ch >= 0x20 && ch < 0x7f ? (char)ch : '?';
        }
        dst[i] = 0;
}

static uint64_t deadline_after(uint64_t usec)
{
        uint64_t now = now_monotonic_usec();
        return usec > UINT64_MAX - now ? UINT64_MAX : now + usec;
}

/* Waits until fd is ready for events or the deadline passes. POLLERR/POLLHUP count as ready: the
 * following I/O call reports what happened. */
static int wait_fd(int fd, short events, uint64_t deadline)
{
        for (;;) {
                uint64_t now = now_monotonic_usec();
                if (now >= deadline)
                        return -ETIMEDOUT;
                uint64_t ms = (deadline - now + 999) / 1000;
                struct pollfd p = { .fd = fd, .events = events };
                int r = poll(&p, 1, ms > INT_MAX ? INT_MAX : (int)ms);
                if (r < 0 && errno != EINTR)
                        return -errno;
                if (r > 0)
                        return 0;
        }
}

/* The reason of the last OpenSSL error of this thread. */
static const char *ssl_reason(void)
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
                set_error(res, "resolve %s: out of memory", host);
                return -ENOMEM;
        }
        if (gai == EAI_SYSTEM)
                set_error(res, "resolve %s: %s", host, strerror(gai_errno));
        else
                set_error(res, "resolve %s: %s", host, gai_strerror(gai));
        return -EHOSTUNREACH;
}

static int resolve(const char *host, unsigned port, uint64_t deadline, struct addrinfo **ret,
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
                set_error(res, "resolve %s: out of memory", host);
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
                set_error(res, "resolve %s: cannot start a thread: %s", host, strerror(r));
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
                set_error(res, "resolve %s: timed out", host);
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
                int r = wait_fd(fd, POLLOUT, deadline);
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
static int connect_any(const struct addrinfo *list, unsigned port, uint64_t deadline, int *ret,
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
                        set_error(res, "connect to %s port %u: timed out", addr, port);
                else
                        set_error(res, "connect to %s port %u: %s", addr, port, strerror(-r));
                if (now_monotonic_usec() >= deadline)
                        break;
        }
        return r;
}

struct conn {
        int fd;
        SSL *ssl;
        uint64_t deadline;
        size_t len;                        /* bytes waiting in buf */
        char buf[SMTP_PROBE_LINE_MAX + 2]; /* one line with its CR LF */
};

static int ssl_wait(struct conn *c, int ret)
{
        switch (SSL_get_error(c->ssl, ret)) {
        case SSL_ERROR_WANT_READ:
                return wait_fd(c->fd, POLLIN, c->deadline);
        case SSL_ERROR_WANT_WRITE:
                return wait_fd(c->fd, POLLOUT, c->deadline);
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

static int conn_read(struct conn *c, char *dst, size_t n, size_t *got)
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
                        r = wait_fd(c->fd, POLLIN, c->deadline);
                }
                if (r < 0)
                        return r;
        }
}

static int conn_write(struct conn *c, const char *data, size_t n)
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
                        r = wait_fd(c->fd, POLLOUT, c->deadline);
                }
                if (r < 0)
                        return r;
        }
        return 0;
}

/* Reads one line (without CR LF) into line[SMTP_PROBE_LINE_MAX + 1]. Never buffers more than one
 * line's worth: a longer line is -EMSGSIZE. */
static int read_line(struct conn *c, char *line, size_t *ret_len)
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

static int io_error(struct smtp_probe_result *res, const char *step, int r)
{
        switch (r) {
        case -ETIMEDOUT:
                set_error(res, "%s: timed out", step);
                break;
        case -ECONNRESET:
                set_error(res, "%s: connection closed by the server", step);
                break;
        case -EMSGSIZE:
                set_error(res, "%s: reply line longer than %d bytes", step, SMTP_PROBE_LINE_MAX);
                break;
        case -EBADMSG:
                set_error(res, "%s: NUL byte in a reply line", step);
                r = -EPROTO;
                break;
        case -EPROTO:
                set_error(res, "%s: TLS error: %s", step, ssl_reason());
                break;
        default:
                set_error(res, "%s: %s", step, strerror(-r));
                break;
        }
        return r;
}

struct reply {
        int code;
        unsigned lines;
        bool starttls;   /* an EHLO keyword line "STARTTLS" */
        char first[256]; /* the first line, printable */
};

/* Reads a whole reply ("250-a" ... "250 z"), at most SMTP_PROBE_REPLY_LINES_MAX lines. */
static int read_reply(struct conn *c, const char *step, struct reply *rp,
                      struct smtp_probe_result *res)
{
        char line[SMTP_PROBE_LINE_MAX + 1];
        size_t n;

        *rp = (struct reply){ 0 };
        for (;;) {
                int r = read_line(c, line, &n);
                if (r < 0)
                        return io_error(res, step, r);
                if (++rp->lines > SMTP_PROBE_REPLY_LINES_MAX) {
                        set_error(res, "%s: reply longer than %d lines", step,
                                  SMTP_PROBE_REPLY_LINES_MAX);
                        return -EMSGSIZE;
                }
                if (n < 3 || line[0] < '1' || line[0] > '5' || line[1] < '0' || line[1] > '9' ||
                    line[2] < '0' || line[2] > '9' || (n > 3 && line[3] != ' ' && line[3] != '-')) {
                        char shown[64];
                        copy_printable(shown, sizeof(shown), line, n);
                        set_error(res, "%s: malformed reply line \"%s\"", step, shown);
                        return -EPROTO;
                }
                rp->code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
                if (rp->lines == 1)
                        copy_printable(rp->first, sizeof(rp->first), line, n);
                else if (n >= 12 && strncasecmp(line + 4, "STARTTLS", 8) == 0 &&
                         (n == 12 || line[12] == ' '))
                        rp->starttls = true;
                if (n == 3 || line[3] == ' ')
                        return 0;
        }
}

static int command(struct conn *c, const char *step, const char *cmd, struct reply *rp,
                   struct smtp_probe_result *res)
{
        int r = conn_write(c, cmd, strlen(cmd));
        if (r < 0)
                return io_error(res, step, r);
        return read_reply(c, step, rp, res);
}

/* Our EHLO name: the host name when it looks like a FQDN, else our address as a literal. */
static void ehlo_name(int fd, char *buf, size_t size)
{
        char name[256];
        if (gethostname(name, sizeof(name)) == 0) {
                name[sizeof(name) - 1] = 0;
                bool ok = strchr(name, '.') && name[0] != '.' && name[0] != '-';
                for (const char *p = name; ok && *p; p++)
                        ok = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                             (*p >= '0' && *p <= '9') || *p == '-' || *p == '.';
                if (ok && name[strlen(name) - 1] != '.' && strcpy_bounded(buf, size, name) == 0)
                        return;
        }
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        char addr[INET6_ADDRSTRLEN] = "127.0.0.1";
        if (getsockname(fd, (struct sockaddr *)&ss, &len) == 0)
                getnameinfo((struct sockaddr *)&ss, len, addr, sizeof(addr), NULL, 0,
                            NI_NUMERICHOST);
        snprintf(buf, size, "[%s%s]", ss.ss_family == AF_INET6 ? "IPv6:" : "", addr);
}

/* ---- TLS ----------------------------------------------------------------------------------- */

/* A socket BIO that sends with MSG_NOSIGNAL; its data is a pointer to the fd. */
static int bio_fd_write(BIO *b, const char *data, int n)
{
        const int *fd = BIO_get_data(b);
        BIO_clear_retry_flags(b);
        ssize_t k = send(*fd, data, (size_t)n, MSG_NOSIGNAL);
        if (k < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
                        BIO_set_retry_write(b);
                return -1;
        }
        return (int)k;
}

static int bio_fd_read(BIO *b, char *data, int n)
{
        const int *fd = BIO_get_data(b);
        BIO_clear_retry_flags(b);
        ssize_t k = recv(*fd, data, (size_t)n, 0);
        if (k < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
                        BIO_set_retry_read(b);
                return -1;
        }
        return (int)k;
}

static long bio_fd_ctrl(BIO *b, int cmd, long num, void *ptr)
{
        return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

static int bio_fd_create(BIO *b)
{
        BIO_set_init(b, 1);
        return 1;
}

static BIO_METHOD *bio_fd_method(void)
{
        BIO_METHOD *m = BIO_meth_new(BIO_TYPE_SOURCE_SINK, "smtp probe socket");
        if (!m)
                return NULL;
        if (!BIO_meth_set_write(m, bio_fd_write) || !BIO_meth_set_read(m, bio_fd_read) ||
            !BIO_meth_set_ctrl(m, bio_fd_ctrl) || !BIO_meth_set_create(m, bio_fd_create)) {
                BIO_meth_free(m);
                return NULL;
        }
        return m;
}

/* The signature algorithms a client offers to be served the certificate of one key type (the
 * names of `openssl s_client -sigalgs`): with a server that holds one certificate per key type
 * (Postfix's smtpd_tls_chain_files), only that one can be chosen. TLS 1.3 binds ECDSA schemes to
 * curves: all three are offered. */
static const struct {
        const char *key_type, *sigalgs;
} sigalgs_by_key_type[] = {
        { "RSA", "rsa_pss_rsae_sha256:rsa_pss_rsae_sha384:rsa_pss_rsae_sha512:rsa_pkcs1_sha256:"
                 "rsa_pkcs1_sha384:rsa_pkcs1_sha512" },
        { "RSA-PSS", "rsa_pss_pss_sha256:rsa_pss_pss_sha384:rsa_pss_pss_sha512" },
        { "EC", "ecdsa_secp256r1_sha256:ecdsa_secp384r1_sha384:ecdsa_secp521r1_sha512" },
        { "Ed25519", "ed25519" },
        { "Ed448", "ed448" },
};

const char *smtp_probe_sigalgs(const char *key_type)
{
        for (size_t i = 0; key_type && i < ARRAY_SIZE(sigalgs_by_key_type); i++)
                if (streq(sigalgs_by_key_type[i].key_type, key_type))
                        return sigalgs_by_key_type[i].sigalgs;
        return NULL;
}

/* verify false: no trust anchors are loaded (that takes tens of ms); only the certificate is read.
 * sigalgs (NULL: OpenSSL's default list) is the signature_algorithms extension sent. */
static int make_ctx(const char *ca_file, bool verify, const char *sigalgs, SSL_CTX **ret,
                    struct smtp_probe_result *res)
{
        SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
        if (!ctx) {
                set_error(res, "TLS setup: %s", ssl_reason());
                return -ENOMEM;
        }
        /* Complete the handshake whatever the chain: the verification result is a finding. */
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
        if (sigalgs && SSL_CTX_set1_sigalgs_list(ctx, sigalgs) != 1) {
                set_error(res, "TLS setup: signature algorithms \"%s\": %s", sigalgs, ssl_reason());
                SSL_CTX_free(ctx);
                return -EINVAL;
        }
        if (verify && (ca_file ? SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1
                               : SSL_CTX_set_default_verify_paths(ctx) != 1)) {
                if (ca_file)
                        set_error(res, "CA file %s: %s", ca_file, ssl_reason());
                else
                        set_error(res, "system trust store: %s", ssl_reason());
                SSL_CTX_free(ctx);
                return -EINVAL;
        }
        *ret = ctx;
        return 0;
}

static bool is_ip_literal(const char *s)
{
        unsigned char buf[sizeof(struct in6_addr)];
        return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

/* The printable RFC 2253 form of a name. */
static void name_string(const X509_NAME *name, char *dst, size_t size)
{
        BIO *mem = BIO_new(BIO_s_mem());
        char *data = NULL;
        dst[0] = 0;
        if (!mem)
                return;
        if (X509_NAME_print_ex(mem, name, 0, XN_FLAG_RFC2253) >= 0) {
                long n = BIO_get_mem_data(mem, &data);
                if (n > 0)
                        copy_printable(dst, size, data, (size_t)n);
        }
        BIO_free(mem);
}

static int collect_dns_names(X509 *cert, struct smtp_probe_result *res)
{
        GENERAL_NAMES *names = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
        int r = 0;
        if (!names)
                return 0;
        int count = sk_GENERAL_NAME_num(names);
        size_t room = count < SMTP_PROBE_DNS_NAMES_MAX ? (size_t)count : SMTP_PROBE_DNS_NAMES_MAX;
        if (room > 0) {
                res->dns_names = calloc(room, sizeof(char *));
                if (!res->dns_names)
                        r = -ENOMEM;
        }
        for (int i = 0; r == 0 && i < count && res->n_dns_names < room; i++) {
                const GENERAL_NAME *g = sk_GENERAL_NAME_value(names, i);
                if (g->type != GEN_DNS)
                        continue;
                int len = ASN1_STRING_length(g->d.dNSName);
                if (len < 0 || len > 253)
                        continue;
                char *s = malloc((size_t)len + 1);
                if (!s) {
                        r = -ENOMEM;
                        break;
                }
                copy_printable(s, (size_t)len + 1,
                               (const char *)ASN1_STRING_get0_data(g->d.dNSName), (size_t)len);
                res->dns_names[res->n_dns_names++] = s;
        }
        GENERAL_NAMES_free(names);
        return r;
}

static int collect_cert(X509 *cert, struct smtp_probe_result *res)
{
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned n = 0;
        struct tm tm;

        if (X509_digest(cert, EVP_sha256(), md, &n) == 1) {
                char *p = res->sha256_fingerprint;
                for (unsigned i = 0; i < n && i * 3 + 3 <= sizeof(res->sha256_fingerprint); i++)
                        p += snprintf(p, 4, i ? ":%02X" : "%02X", md[i]);
        }
        name_string(X509_get_subject_name(cert), res->subject, sizeof(res->subject));
        name_string(X509_get_issuer_name(cert), res->issuer, sizeof(res->issuer));
        if (ASN1_TIME_to_tm(X509_get0_notAfter(cert), &tm) == 1)
                res->not_after = timegm(&tm);
        EVP_PKEY *pub = X509_get0_pubkey(cert);
        const char *type = NULL;
        for (size_t i = 0; pub && i < ARRAY_SIZE(sigalgs_by_key_type); i++)
                if (EVP_PKEY_is_a(pub, sigalgs_by_key_type[i].key_type))
                        type = sigalgs_by_key_type[i].key_type;
        strcpy_bounded(res->key_type, sizeof(res->key_type), type ? type : "unknown");
        return collect_dns_names(cert, res);
}

/* STARTTLS was accepted: handshake, then collect. Returns 0 when the handshake finished, 1 when it
 * failed (a finding, res->error says why), negative on timeout or allocation failure. */
static int tls_handshake(struct conn *c, SSL_CTX *ctx, BIO_METHOD *meth, const char *servername,
                         bool verify, struct smtp_probe_result *res)
{
        BIO *bio;
        int r;

        c->ssl = SSL_new(ctx);
        if (!c->ssl) {
                set_error(res, "TLS handshake: %s", ssl_reason());
                return -ENOMEM;
        }
        if (servername) {
                X509_VERIFY_PARAM *param = SSL_get0_param(c->ssl);
                if (is_ip_literal(servername)) {
                        /* RFC 6066: no IP addresses in SNI; check the IP SANs instead */
                        r = X509_VERIFY_PARAM_set1_ip_asc(param, servername);
                } else {
                        X509_VERIFY_PARAM_set_hostflags(param,
                                                        X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
                        r = X509_VERIFY_PARAM_set1_host(param, servername, 0) == 1 &&
                            SSL_set_tlsext_host_name(c->ssl, servername) == 1;
                }
                if (r != 1) {
                        char shown[64];
                        copy_printable(shown, sizeof(shown), servername, strlen(servername));
                        set_error(res, "TLS handshake: unusable server name \"%s\"", shown);
                        return -EINVAL;
                }
        }
        bio = BIO_new(meth);
        if (!bio) {
                set_error(res, "TLS handshake: %s", ssl_reason());
                return -ENOMEM;
        }
        BIO_set_data(bio, &c->fd);
        SSL_set_bio(c->ssl, bio, bio);
        SSL_set_connect_state(c->ssl);

        for (;;) {
                ERR_clear_error();
                errno = 0;
                r = SSL_connect(c->ssl);
                if (r == 1)
                        break;
                int e = SSL_get_error(c->ssl, r);
                if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
                        r = wait_fd(c->fd, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT,
                                    c->deadline);
                        if (r < 0)
                                return io_error(res, "TLS handshake", r);
                        continue;
                }
                if (e == SSL_ERROR_SYSCALL && ERR_peek_last_error() == 0)
                        set_error(res, "TLS handshake: %s",
                                  errno ? strerror(errno) : "connection closed by the server");
                else
                        set_error(res, "TLS handshake: %s", ssl_reason());
                SSL_free(TAKE_PTR(c->ssl)); /* no QUIT over a broken session */
                return 1;
        }

        res->handshake_ok = true;
        strcpy_bounded(res->protocol, sizeof(res->protocol), SSL_get_version(c->ssl));
        strcpy_bounded(res->cipher, sizeof(res->cipher), SSL_get_cipher_name(c->ssl));
        X509 *peer = SSL_get1_peer_certificate(c->ssl);
        if (!peer) {
                strcpy_bounded(res->verify_error, sizeof(res->verify_error), "no peer certificate");
                return 0;
        }
        r = collect_cert(peer, res);
        X509_free(peer);
        if (r < 0) {
                set_error(res, "TLS handshake: out of memory");
                return r;
        }
        if (!verify) {
                strcpy_bounded(res->verify_error, sizeof(res->verify_error), "not checked");
                return 0;
        }
        long v = SSL_get_verify_result(c->ssl);
        res->verified = v == X509_V_OK;
        if (!res->verified)
                strcpy_bounded(res->verify_error, sizeof(res->verify_error),
                               X509_verify_cert_error_string(v));
        return 0;
}

/* ---- the conversation ---------------------------------------------------------------------- */

struct probe {
        const char *servername;
        const char *ca_file;
        const char *sigalgs;
        bool verify;
        struct conn conn;
        SSL_CTX *ctx;
        BIO_METHOD *meth;
        struct addrinfo *ai;
};

static void probe_release(struct probe *p)
{
        if (p->conn.ssl)
                SSL_free(p->conn.ssl);
        SSL_CTX_free(p->ctx);
        BIO_meth_free(p->meth);
        if (p->ai)
                freeaddrinfo(p->ai);
        if (p->conn.fd >= 0)
                close(p->conn.fd);
        ERR_clear_error();
}

/* QUIT and, over TLS, a close_notify; bounded by QUIT_BUDGET_USEC, failures ignored. */
static void say_goodbye(struct conn *c, uint64_t deadline)
{
        struct reply rp;
        struct smtp_probe_result ignored = { 0 };
        uint64_t limit = deadline_after(QUIT_BUDGET_USEC);

        c->deadline = limit < deadline ? limit : deadline;
        command(c, "QUIT", "QUIT\r\n", &rp, &ignored);
        if (c->ssl) {
                ERR_clear_error();
                SSL_shutdown(c->ssl); /* sends close_notify; we do not wait for the peer's */
        }
}

static int converse(struct probe *p, uint64_t deadline, struct smtp_probe_result *res)
{
        struct conn *c = &p->conn;
        struct reply rp;
        char cmd[300];
        int r;

        r = read_reply(c, "greeting", &rp, res);
        if (r < 0)
                return r;
        strcpy_bounded(res->banner, sizeof(res->banner), rp.first);
        if (rp.code != 220) {
                set_error(res, "greeting: %s", rp.first);
                goto quit;
        }

        char name[256];
        ehlo_name(c->fd, name, sizeof(name));
        snprintf(cmd, sizeof(cmd), "EHLO %s\r\n", name);
        r = command(c, "EHLO", cmd, &rp, res);
        if (r < 0)
                return r;
        if (rp.code / 100 != 2) {
                set_error(res, "EHLO: %s", rp.first);
                goto quit;
        }
        res->starttls_offered = rp.starttls;
        if (!rp.starttls)
                goto quit;

        r = command(c, "STARTTLS", "STARTTLS\r\n", &rp, res);
        if (r < 0)
                return r;
        if (rp.code != 220) {
                set_error(res, "STARTTLS: %s", rp.first);
                goto quit;
        }
        if (c->len > 0) {
                /* plaintext pipelined after the 220 would be taken for TLS data (CVE-2011-0411) */
                set_error(res, "STARTTLS: unexpected data after the 220 reply");
                return -EPROTO;
        }
        r = make_ctx(p->ca_file, p->verify, p->sigalgs, &p->ctx, res);
        if (r < 0)
                return r;
        r = tls_handshake(c, p->ctx, p->meth, p->servername, p->verify, res);
        if (r < 0)
                return r;
        if (r > 0)
                return 0;
quit:
        say_goodbye(c, deadline);
        return 0;
}

void smtp_probe_result_done(struct smtp_probe_result *res)
{
        if (!res)
                return;
        for (size_t i = 0; i < res->n_dns_names; i++)
                free(res->dns_names[i]);
        free(res->dns_names);
        res->dns_names = NULL;
        res->n_dns_names = 0;
}

static int probe_run(const char *host, unsigned port, const char *servername, const char *ca_file,
                     const char *sigalgs, bool verify, uint64_t timeout_usec,
                     struct smtp_probe_result *res)
{
        uint64_t deadline = deadline_after(timeout_usec);
        struct probe p = { .servername = servername,
                           .ca_file = ca_file,
                           .sigalgs = sigalgs,
                           .verify = verify,
                           .conn = { .fd = -1, .deadline = deadline } };
        int r;

        if (!res)
                return -EINVAL;
        *res = (struct smtp_probe_result){ 0 };
        ERR_clear_error();
        if (isempty(host) || port == 0 || port > 65535) {
                set_error(res, "arguments: a host and a port in 1..65535 are needed");
                return -EINVAL;
        }
        if (servername && (isempty(servername) || strlen(servername) > 253)) {
                set_error(res, "arguments: the server name is empty or too long");
                return -EINVAL;
        }
        /* the trust anchors are loaded only when needed; a CA file we cannot read is an error
         * before any connection */
        if (ca_file && access(ca_file, R_OK) < 0) {
                set_error(res, "CA file %s: %s", ca_file, strerror(errno));
                return -EINVAL;
        }

        p.meth = bio_fd_method();
        if (!p.meth) {
                set_error(res, "TLS setup: out of memory");
                r = -ENOMEM;
                goto out;
        }
        r = resolve(host, port, deadline, &p.ai, res);
        if (r < 0)
                goto out;
        r = connect_any(p.ai, port, deadline, &p.conn.fd, res);
        if (r < 0)
                goto out;
        res->connected = true;
        r = converse(&p, deadline, res);
out:
        probe_release(&p);
        return r;
}

int smtp_probe(const char *host, unsigned port, const char *servername, const char *ca_file,
               uint64_t timeout_usec, struct smtp_probe_result *res)
{
        return probe_run(host, port, servername, ca_file, NULL, true, timeout_usec, res);
}

/* The 32 bytes of a fingerprint written as hex, with or without ':' separators. */
static bool parse_fingerprint(const char *s, unsigned char out[32])
{
        size_t n = 0;
        for (const char *p = s; *p; p++) {
                if (*p == ':')
                        continue;
                int hi = hex_digit_value(*p);
                if (hi < 0 || !p[1] || n == 32)
                        return false;
                int lo = hex_digit_value(*++p);
                if (lo < 0)
                        return false;
                out[n++] = (unsigned char)(hi << 4 | lo);
        }
        return n == 32;
}

bool smtp_probe_fingerprint_equal(const char *a, const char *b)
{
        unsigned char x[32], y[32];
        if (!a || !b || !parse_fingerprint(a, x) || !parse_fingerprint(b, y))
                return false;
        return memcmp(x, y, sizeof(x)) == 0;
}

int smtp_probe_expect(const char *host, unsigned port, const char *fingerprint, const char *sigalgs,
                      uint64_t timeout_usec, uint64_t poll_interval_usec,
                      struct smtp_probe_result *last, const atomic_bool *stop)
{
        struct smtp_probe_result scratch;
        struct smtp_probe_result *out = last ? last : &scratch;
        unsigned char want[32];
        uint64_t deadline = deadline_after(timeout_usec);
        /* one stuck connection must not use up all the time: retry with a new one */
        uint64_t attempt_max =
            timeout_usec / 4 > EXPECT_ATTEMPT_MIN_USEC ? timeout_usec / 4 : EXPECT_ATTEMPT_MIN_USEC;
        unsigned attempts = 0;
        int r = -ETIMEDOUT;

        *out = (struct smtp_probe_result){ 0 };
        if (fingerprint && !parse_fingerprint(fingerprint, want)) {
                set_error(out, "arguments: the expected fingerprint is not 32 hex bytes");
                return -EINVAL;
        }
        for (;;) {
                struct smtp_probe_result obs;
                uint64_t now = now_monotonic_usec();
                uint64_t budget = now < deadline ? deadline - now : 0;
                int k = probe_run(host, port, NULL, NULL, sigalgs, false,
                                  budget < attempt_max ? budget : attempt_max, &obs);
                unsigned char got[32];
                bool match;
                if (fingerprint)
                        match = k == 0 && obs.handshake_ok &&
                                parse_fingerprint(obs.sha256_fingerprint, got) &&
                                memcmp(got, want, sizeof(want)) == 0;
                else
                        match = k == 0 && isempty(obs.error) && !obs.starttls_offered;
                now = now_monotonic_usec();
                if (k == -ETIMEDOUT && now >= deadline && attempts > 0) {
                        /* cut short by our own deadline: the previous observation says more */
                        smtp_probe_result_done(&obs);
                        break;
                }
                attempts++;
                smtp_probe_result_done(out);
                *out = obs;
                if (match) {
                        r = 0;
                        break;
                }
                if (k == -EINVAL) {
                        r = k; /* will not get better */
                        break;
                }
                if (now >= deadline || (stop && *stop))
                        break;
                uint64_t left = deadline - now;
                sleep_unless(poll_interval_usec < left ? poll_interval_usec : left, stop);
        }
        if (!last)
                smtp_probe_result_done(&scratch);
        return r;
}
