/* submission.h - what the client-facing services settings manage (submission: STARTTLS
 * required; submissions: implicit TLS) are in master.cf: the `-o` parameters each takes, its new
 * entry, and the reading of postconf's -M and -P output that checks an edit took. Pure; the
 * worker (apply/mastercf.c) runs postconf. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "core/problem.h"
#include "core/settings.h"

/* One `-o name=value` of a service. */
struct submission_param {
        const char *name, *value;
};
/* The parameters smtptlsd sets on an enabled service of kind k (NULL-name-terminated): the TLS
 * and SASL ones alone; the administrator's other -o options (restrictions, milters) stay. */
const struct submission_param *submission_params(enum submission_kind k);

/* The fields of one master.cf entry as `postconf -M` prints it (one line, of any length):
 * service, type, private, unpriv, chroot, wakeup, maxproc, command (pointers into buf, which
 * master_entry_done frees). */
struct master_entry {
        char *buf;
        const char *field[8];
};
enum { ME_SERVICE, ME_TYPE, ME_PRIVATE, ME_UNPRIV, ME_CHROOT, ME_WAKEUP, ME_MAXPROC, ME_COMMAND };
/* Splits line (up to its first newline) into e: -EINVAL when it has fewer than 8 fields,
 * -ENOMEM. Call master_entry_done after any return. */
int master_entry_parse(const char *line, struct master_entry *e);
void master_entry_done(struct master_entry *e);

/* A service name's host ("" when it has none: every address) and port (a number or a
 * services(5) name) parts, cut to their buffers' sizes; an IPv6 host keeps its brackets. */
void submission_service_split(const char *service, char *host, size_t host_size, char *port,
                              size_t port_size);

/* The `postconf -M` value that creates service: "<service> inet n - <chroot> - - smtpd" into
 * buf; -ENAMETOOLONG when it does not fit. */
int submission_entry(const char *service, const char *chroot, char *buf, size_t size);

/* Whether `postconf -P service/inet` output (params: "service/inet/name = value" lines) holds
 * every parameter of kind k with its value; the first that does not into missing ("" when all
 * do). */
bool submission_params_present(const char *service, enum submission_kind k, const char *params,
                               char *missing, size_t size);
