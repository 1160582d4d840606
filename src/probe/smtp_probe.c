/* smtp_probe.c - SMTP STARTTLS probe client (see smtp_probe.h): the SMTP dialogue (greeting, EHLO,
 * STARTTLS, QUIT), one probe, and the polling of smtp_probe_expect. One overall deadline bounds
 * every step; the connection (resolving, connecting, bounded reads and writes) is probe_conn.c's,
 * the TLS handshake and the certificate's details probe_tls.c's. Lines and replies are capped.
 * Any thread; no globals. */
#include "probe/smtp_probe.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "probe/probe_conn.h"
#include "probe/probe_tls.h"
#include "event.h"
#include "util.h"

/* QUIT is a courtesy: it gets at most this long (and never more than the overall deadline). */
#define QUIT_BUDGET_USEC (2 * 1000000ULL)
/* smtp_probe_expect: each attempt gets a quarter of the timeout, but at least this */
#define EXPECT_ATTEMPT_MIN_USEC (1000000ULL)

struct reply {
        int code;
        unsigned lines;
        bool starttls;   /* an EHLO keyword line "STARTTLS" */
        char first[256]; /* the first line, printable */
};

/* Reads a whole reply ("250-a" ... "250 z"), at most SMTP_PROBE_REPLY_LINES_MAX lines. */
static int read_reply(struct probe_conn *c, const char *step, struct reply *rp,
                      struct smtp_probe_result *res)
{
        char line[SMTP_PROBE_LINE_MAX + 1];
        size_t n;

        *rp = (struct reply){ 0 };
        for (;;) {
                int r = probe_read_line(c, line, &n);
                if (r < 0)
                        return probe_io_error(res, step, r);
                if (++rp->lines > SMTP_PROBE_REPLY_LINES_MAX) {
                        probe_set_error(res, "%s: reply longer than %d lines", step,
                                        SMTP_PROBE_REPLY_LINES_MAX);
                        return -EMSGSIZE;
                }
                if (n < 3 || line[0] < '1' || line[0] > '5' || line[1] < '0' || line[1] > '9' ||
                    line[2] < '0' || line[2] > '9' || (n > 3 && line[3] != ' ' && line[3] != '-')) {
                        char shown[64];
                        probe_copy_printable(shown, sizeof(shown), line, n);
                        probe_set_error(res, "%s: malformed reply line \"%s\"", step, shown);
                        return -EPROTO;
                }
                rp->code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
                if (rp->lines == 1)
                        probe_copy_printable(rp->first, sizeof(rp->first), line, n);
                else if (n >= 12 && strncasecmp(line + 4, "STARTTLS", 8) == 0 &&
                         (n == 12 || line[12] == ' '))
                        rp->starttls = true;
                if (n == 3 || line[3] == ' ')
                        return 0;
        }
}

static int command(struct probe_conn *c, const char *step, const char *cmd, struct reply *rp,
                   struct smtp_probe_result *res)
{
        int r = probe_conn_write(c, cmd, strlen(cmd));
        if (r < 0)
                return probe_io_error(res, step, r);
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

/* ---- the conversation ---------------------------------------------------------------------- */

struct probe {
        const struct smtp_probe_options *o; /* smtp_probe_address(); NULL for the others */
        const char *servername;
        const char *ca_file;
        const char *sigalgs;
        bool verify;
        bool wrapper; /* TLS from the first byte (port 465), no STARTTLS */
        struct probe_conn conn;
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
static void say_goodbye(struct probe_conn *c, uint64_t deadline)
{
        struct reply rp;
        struct smtp_probe_result ignored = { 0 };
        uint64_t limit = probe_deadline_after(QUIT_BUDGET_USEC);

        c->deadline = limit < deadline ? limit : deadline;
        command(c, "QUIT", "QUIT\r\n", &rp, &ignored);
        if (c->ssl) {
                ERR_clear_error();
                SSL_shutdown(c->ssl); /* sends close_notify; we do not wait for the peer's */
        }
}

/* The TLS context and handshake on the connection (after STARTTLS, or at once in wrapper mode).
 * 1 when the conversation is to end with QUIT, 0 without (the handshake failed), negative on
 * error. */
static int start_tls(struct probe *p, struct smtp_probe_result *res)
{
        int r;
        if (p->o)
                r = probe_tls_ctx_paths(p->o->ca_file, p->o->ca_path, p->o->ca_default,
                                        p->o->n_tlsa > 0, &p->ctx, res);
        else
                r = probe_tls_ctx(p->ca_file, p->verify, p->sigalgs, &p->ctx, res);
        if (r < 0)
                return r;
        if (p->o)
                r = probe_tls_handshake_checked(&p->conn, p->ctx, p->meth, p->o, res);
        else
                r = probe_tls_handshake(&p->conn, p->ctx, p->meth, p->servername, p->verify, res);
        if (r < 0)
                return r;
        return r > 0 ? 0 : 1;
}

/* Greeting, EHLO, and when offered STARTTLS and the handshake (in wrapper mode the handshake
 * first). 1 when the conversation is to end with QUIT (a refusal, no STARTTLS, or after the
 * handshake), 0 when without one (the handshake failed: no QUIT over a broken session),
 * negative on error. */
static int converse_steps(struct probe *p, struct smtp_probe_result *res)
{
        struct probe_conn *c = &p->conn;
        struct reply rp;
        char cmd[300];
        int r;

        if (p->wrapper) {
                r = start_tls(p, res);
                if (r <= 0)
                        return r;
        }
        r = read_reply(c, "greeting", &rp, res);
        if (r < 0)
                return r;
        strcpy_bounded(res->banner, sizeof(res->banner), rp.first);
        if (rp.code != 220) {
                probe_set_error(res, "greeting: %s", rp.first);
                return 1;
        }

        char name[256];
        ehlo_name(c->fd, name, sizeof(name));
        snprintf(cmd, sizeof(cmd), "EHLO %s\r\n", name);
        r = command(c, "EHLO", cmd, &rp, res);
        if (r < 0)
                return r;
        if (rp.code / 100 != 2) {
                probe_set_error(res, "EHLO: %s", rp.first);
                return 1;
        }
        res->ehlo_ok = true;
        if (p->wrapper)
                return 1;
        res->starttls_offered = rp.starttls;
        if (!rp.starttls)
                return 1;

        r = command(c, "STARTTLS", "STARTTLS\r\n", &rp, res);
        if (r < 0)
                return r;
        if (rp.code != 220) {
                probe_set_error(res, "STARTTLS: %s", rp.first);
                return 1;
        }
        if (c->len > 0) {
                /* plaintext pipelined after the 220 would be taken for TLS data (CVE-2011-0411) */
                probe_set_error(res, "STARTTLS: unexpected data after the 220 reply");
                return -EPROTO;
        }
        return start_tls(p, res);
}

static int converse(struct probe *p, uint64_t deadline, struct smtp_probe_result *res)
{
        int r = converse_steps(p, res);
        if (r > 0)
                say_goodbye(&p->conn, deadline);
        return r < 0 ? r : 0;
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
        free(res->chain);
        res->chain = NULL;
        res->n_chain = 0;
}

/* One conversation with host:port by deadline: p's fields say how. */
static int run(struct probe *p, const char *host, unsigned port, uint64_t deadline,
               struct smtp_probe_result *res)
{
        int r;

        p->conn = (struct probe_conn){ .fd = -1, .deadline = deadline };
        if (!res)
                return -EINVAL;
        *res = (struct smtp_probe_result){ 0 };
        ERR_clear_error();
        if (isempty(host) || port == 0 || port > 65535) {
                probe_set_error(res, "arguments: a host and a port in 1..65535 are needed");
                return -EINVAL;
        }
        if (p->o && p->servername && (isempty(p->servername) || strlen(p->servername) > 253))
                p->servername = NULL; /* the destination probe: no SNI, still a conversation */
        if (p->servername && (isempty(p->servername) || strlen(p->servername) > 253)) {
                probe_set_error(res, "arguments: the server name is empty or too long");
                return -EINVAL;
        }
        /* the trust anchors are loaded only when needed; a CA file we cannot read is an error
         * before any connection (the destination probe reports it as the chain's trust) */
        if (!p->o && p->ca_file && access(p->ca_file, R_OK) < 0) {
                probe_set_error(res, "CA file %s: %s", p->ca_file, strerror(errno));
                return -EINVAL;
        }

        p->meth = probe_tls_bio_method();
        if (!p->meth) {
                probe_set_error(res, "TLS setup: out of memory");
                r = -ENOMEM;
                goto out;
        }
        r = probe_resolve(host, port, deadline, &p->ai, res);
        if (r < 0)
                goto out;
        r = probe_connect_any(p->ai, port, deadline, &p->conn.fd, res);
        if (r < 0)
                goto out;
        res->connected = true;
        r = converse(p, deadline, res);
out:
        probe_release(p);
        return r;
}

static int probe_once(const char *host, unsigned port, const char *servername, const char *ca_file,
                      const char *sigalgs, bool verify, bool wrapper, uint64_t timeout_usec,
                      struct smtp_probe_result *res)
{
        struct probe p = { .servername = servername,
                           .ca_file = ca_file,
                           .sigalgs = sigalgs,
                           .verify = verify,
                           .wrapper = wrapper };
        return run(&p, host, port, probe_deadline_after(timeout_usec), res);
}

int smtp_probe_address(const char *address, unsigned port, const struct smtp_probe_options *o,
                       uint64_t deadline, struct smtp_probe_result *res)
{
        struct probe p = {
                .o = o, .servername = o->servername, .ca_file = o->ca_file, .wrapper = o->wrapper
        };
        return run(&p, address, port, deadline, res);
}

int smtp_probe(const char *host, unsigned port, const char *servername, const char *ca_file,
               uint64_t timeout_usec, struct smtp_probe_result *res)
{
        return probe_once(host, port, servername, ca_file, NULL, true, false, timeout_usec, res);
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
                      struct smtp_probe_result *last, struct stop_event *stop)
{
        return smtp_probe_expect_tls(host, port, false, fingerprint, sigalgs, timeout_usec,
                                     poll_interval_usec, last, stop);
}

int smtp_probe_expect_tls(const char *host, unsigned port, bool wrapper, const char *fingerprint,
                          const char *sigalgs, uint64_t timeout_usec, uint64_t poll_interval_usec,
                          struct smtp_probe_result *last, struct stop_event *stop)
{
        struct smtp_probe_result scratch;
        struct smtp_probe_result *out = last ? last : &scratch;
        unsigned char want[32];
        uint64_t deadline = probe_deadline_after(timeout_usec);
        /* one stuck connection must not use up all the time: retry with a new one */
        uint64_t attempt_max =
            timeout_usec / 4 > EXPECT_ATTEMPT_MIN_USEC ? timeout_usec / 4 : EXPECT_ATTEMPT_MIN_USEC;
        unsigned attempts = 0;
        int r = -ETIMEDOUT;

        *out = (struct smtp_probe_result){ 0 };
        if (fingerprint && !parse_fingerprint(fingerprint, want)) {
                probe_set_error(out, "arguments: the expected fingerprint is not 32 hex bytes");
                return -EINVAL;
        }
        for (;;) {
                struct smtp_probe_result obs;
                uint64_t now = now_monotonic_usec();
                uint64_t budget = now < deadline ? deadline - now : 0;
                int k = probe_once(host, port, NULL, NULL, sigalgs, false, wrapper,
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
                if (now >= deadline || (stop && stop_event_is_set(stop)))
                        break;
                uint64_t left = deadline - now;
                /* the interval between two observations; stop ends it, and the polling, at
                 * once: no further attempt */
                if (stop_event_wait(stop, poll_interval_usec < left ? poll_interval_usec : left) <
                    0)
                        break;
        }
        if (!last)
                smtp_probe_result_done(&scratch);
        return r;
}
