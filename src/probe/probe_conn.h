/* probe_conn.h - the connection of the SMTP probe (smtp_probe.h): resolving with a deadline,
 * connecting to each address in turn, reading and writing (plain or over TLS) bounded by one
 * deadline, a line at a time; and the probe's error reporting. Any thread; no globals. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <openssl/ssl.h>

#include "probe/smtp_probe.h"
#include "util.h"

struct addrinfo;

struct probe_conn {
        int fd;
        SSL *ssl; /* after STARTTLS */
        uint64_t deadline;
        size_t len;                        /* bytes waiting in buf */
        char buf[SMTP_PROBE_LINE_MAX + 2]; /* one line with its CR LF */
};

/* Sets res->error (step: reason) unless it is set: the first failure is the one reported. */
void probe_set_error(struct smtp_probe_result *res, const char *fmt, ...) _printf_(2, 3);
/* Copies at most n bytes of src (stopping at NUL) as printable ASCII into dst[size]. */
void probe_copy_printable(char *dst, size_t size, const char *src, size_t n);
/* now + usec on the monotonic clock, saturated. */
uint64_t probe_deadline_after(uint64_t usec);
/* Waits until fd is ready for events (poll(2)) or the deadline passes (-ETIMEDOUT), or this
 * thread's cancel descriptor is readable (-ECANCELED). */
int probe_wait_fd(int fd, short events, uint64_t deadline);
/* A descriptor (an eventfd, a pipe's read end) whose readability cancels every wait of the
 * probes this thread runs from now on (the daemon stops); -1: none. Per thread. */
void probe_set_cancel_fd(int fd);
int probe_cancel_fd(void);
/* Whether s (numeric IPv4 or IPv6) is a loopback, private (RFC 1918, RFC 4193), shared
 * (RFC 6598), link-local or unspecified address (or no address at all): where
 * probe_private_networks = deny forbids the probe to connect. */
bool probe_address_is_private(const char *s);
/* The reason of the last OpenSSL error of this thread. */
const char *probe_ssl_reason(void);

/* host (numeric, or a name getaddrinfo resolves on a helper thread) and port into *ret
 * (freeaddrinfo), by deadline: -EHOSTUNREACH, -ETIMEDOUT, -ENOMEM with res->error set. */
int probe_resolve(const char *host, unsigned port, uint64_t deadline, struct addrinfo **ret,
                  struct smtp_probe_result *res);
/* A non-blocking socket connected to one of list's addresses into *ret; res->address. */
int probe_connect_any(const struct addrinfo *list, unsigned port, uint64_t deadline, int *ret,
                      struct smtp_probe_result *res);

/* Writes all of data by c->deadline. */
int probe_conn_write(struct probe_conn *c, const char *data, size_t n);
/* Reads one line (without CR LF) into line[SMTP_PROBE_LINE_MAX + 1] by c->deadline: -EMSGSIZE
 * for a longer one, -EBADMSG for one with a NUL byte. */
int probe_read_line(struct probe_conn *c, char *line, size_t *ret_len);
/* Sets res->error for a failed I/O step r; returns r (-EBADMSG becomes -EPROTO). */
int probe_io_error(struct smtp_probe_result *res, const char *step, int r);
