/* mastercf.c - the submission services in master.cf (see mastercf.h): postconf edits on a copy,
 * read back. Worker thread and start-up. */
#include "apply/mastercf.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "apply/fsutil.h"
#include "apply/layout.h"
#include "apply/postfix.h"
#include "conf.h"
#include "core/submission.h"
#include "util.h"

int mastercf_port_number(const char *port, unsigned *ret)
{
        int64_t v;
        if (parse_int64(port, 1, 65535, &v) >= 0) {
                *ret = (unsigned)v;
                return 0;
        }
        struct servent se, *found = NULL;
        char buf[1024];
        if (getservbyname_r(port, "tcp", &se, buf, sizeof(buf), &found) != 0 || !found)
                return -ENOENT;
        *ret = ntohs((uint16_t)found->s_port);
        return 0;
}

/* The addresses of a service name's host: none of them with wild (no host, 0.0.0.0, [::], *:
 * every address); else what it resolves to (a literal; or a name another entry of master.cf
 * uses, "localhost"). */
struct host_addrs {
        bool wild;
        size_t n;
        struct sockaddr_storage a[8];
};

static void host_addrs(const char *host, struct host_addrs *ret)
{
        char h[SUBMISSION_SERVICE_MAX + 1];
        size_t len = strlen(host);
        *ret = (struct host_addrs){ 0 };
        if (len >= 2 && host[0] == '[' && host[len - 1] == ']')
                snprintf(h, sizeof(h), "%.*s", (int)(len - 2), host + 1);
        else
                snprintf(h, sizeof(h), "%s", host);
        if (!h[0] || streq(h, "0.0.0.0") || streq(h, "::") || streq(h, "*")) {
                ret->wild = true;
                return;
        }
        struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai = NULL;
        if (getaddrinfo(h, NULL, &hints, &ai) != 0)
                return;
        for (struct addrinfo *a = ai; a && ret->n < ARRAY_SIZE(ret->a); a = a->ai_next)
                memcpy(&ret->a[ret->n++], a->ai_addr, a->ai_addrlen);
        freeaddrinfo(ai);
}

static bool same_address(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
        if (a->ss_family != b->ss_family)
                return false;
        if (a->ss_family == AF_INET)
                return ((const struct sockaddr_in *)a)->sin_addr.s_addr ==
                       ((const struct sockaddr_in *)b)->sin_addr.s_addr;
        return a->ss_family == AF_INET6 &&
               memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
                      &((const struct sockaddr_in6 *)b)->sin6_addr, sizeof(struct in6_addr)) == 0;
}

/* Whether two inet services take the same port on an overlapping address. Postfix's master
 * binds both (SO_REUSEPORT) and the kernel shares the connections between them: a client of one
 * lands on the other. An unknown port is compared by its name. */
static bool services_overlap(const char *a, const char *b)
{
        char host_a[SUBMISSION_SERVICE_MAX + 1], port_a[SUBMISSION_SERVICE_MAX + 1];
        char host_b[SUBMISSION_SERVICE_MAX + 1], port_b[SUBMISSION_SERVICE_MAX + 1];
        if (strlen(a) > SUBMISSION_SERVICE_MAX || strlen(b) > SUBMISSION_SERVICE_MAX)
                return false; /* not a name settings take: not ours to judge */
        submission_service_split(a, host_a, port_a);
        submission_service_split(b, host_b, port_b);
        unsigned na = 0, nb = 0;
        (void)mastercf_port_number(port_a, &na);
        (void)mastercf_port_number(port_b, &nb);
        if (na && nb ? na != nb : !streq(port_a, port_b))
                return false;
        struct host_addrs x, y;
        host_addrs(host_a, &x);
        host_addrs(host_b, &y);
        if (x.wild || y.wild)
                return true;
        for (size_t i = 0; i < x.n; i++)
                for (size_t j = 0; j < y.n; j++)
                        if (same_address(&x.a[i], &y.a[j]))
                                return true;
        return streq(host_a, host_b);
}

/* Whether Postfix's master could bind service (a literal host, or every address) now: a test
 * bind with SO_REUSEADDR and SO_REUSEPORT (as master binds: a port master holds already binds
 * again). -EADDRNOTAVAIL: the host is no address of this system; -EADDRINUSE: another program
 * holds the port. Either would stop master at the reload. */
static int can_bind(const char *service, unsigned port)
{
        char host[SUBMISSION_SERVICE_MAX + 1], port_name[SUBMISSION_SERVICE_MAX + 1];
        submission_service_split(service, host, port_name);
        struct host_addrs h;
        host_addrs(host, &h);
        struct sockaddr_storage ss = { 0 };
        socklen_t len = sizeof(struct sockaddr_in);
        if (h.wild || h.n == 0) {
                struct sockaddr_in *in = (struct sockaddr_in *)&ss;
                in->sin_family = AF_INET;
                in->sin_addr.s_addr = htonl(INADDR_ANY);
                if (!h.wild)
                        return -EADDRNOTAVAIL; /* a literal getaddrinfo refused */
        } else {
                ss = h.a[0];
                len = ss.ss_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                               : sizeof(struct sockaddr_in);
        }
        if (ss.ss_family == AF_INET6)
                ((struct sockaddr_in6 *)&ss)->sin6_port = htons((uint16_t)port);
        else
                ((struct sockaddr_in *)&ss)->sin_port = htons((uint16_t)port);
        int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        int one = 1, r = 0;
        (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        (void)setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
        if (bind(fd, (struct sockaddr *)&ss, len) < 0)
                r = -errno;
        close(fd);
        return r;
}

struct service_ctx {
        const struct config *cfg;
        const char *dir;
        const char *listing; /* postconf -M: every entry, one a line */
        enum submission_kind kind;
        const struct submission_service *svc;
        char field[48]; /* /submission/service */
};

static int run_postconf(const struct service_ctx *c, const char *const *args, char **output,
                        struct problem *reterr)
{
        struct spawn_result res = { 0 };
        int r = postconf_in(c->cfg, c->dir, args, &res);
        if (r < 0)
                problem_set(reterr, PROBLEM_POSTFIX_REJECTED, c->field, "postconf %s %s failed: %s",
                            args[0], args[1] ? args[1] : "",
                            res.errors && res.errors[0] ? res.errors
                            : res.output                ? res.output
                                                        : strerror(-r));
        else if (output)
                *output = TAKE_PTR(res.output);
        spawn_result_done(&res);
        return r;
}

/* Whether master.cf has an inet entry named c->svc->service (*exists); the chroot column of the
 * MX's smtpd for a new one. Refuses a conflict: that entry running another command than smtpd,
 * another inet entry on the same port and an overlapping address (enabling), a line postconf
 * printed that is no entry. */
static int find_entry(const struct service_ctx *c, bool *exists, char chroot[8],
                      struct problem *reterr)
{
        int r = 0;
        *exists = false;
        snprintf(chroot, 8, "n");
        bool chroot_found = false;
        for (const char *line = c->listing; r >= 0 && line && *line;) {
                struct master_entry cur;
                const char *start = line;
                size_t len = strcspn(line, "\n");
                r = master_entry_parse(line, &cur);
                line += len + (line[len] == '\n');
                if (r < 0) {
                        r = problem_set(reterr, PROBLEM_POSTFIX_REJECTED, c->field,
                                        "postconf -M printed a line that is no master.cf entry: "
                                        "%.*s",
                                        (int)(len > 200 ? 200 : len), start);
                } else if (!streq(cur.field[ME_TYPE], "inet")) {
                        /* not a network service */
                } else {
                        /* a new entry takes the chroot column of the MX's smtpd (Debian
                         * chroots it) */
                        if (!chroot_found && streq(cur.field[ME_COMMAND], "smtpd") &&
                            strlen(cur.field[ME_CHROOT]) < 8) {
                                snprintf(chroot, 8, "%s", cur.field[ME_CHROOT]);
                                chroot_found = true;
                        }
                        if (streq(cur.field[ME_SERVICE], c->svc->service)) {
                                if (!streq(cur.field[ME_COMMAND], "smtpd"))
                                        r = problem_set(
                                            reterr, PROBLEM_SERVICE_CONFLICT, c->field,
                                            "master.cf's service %s/inet runs %s, not smtpd: it "
                                            "is not a submission service; name another",
                                            c->svc->service, cur.field[ME_COMMAND]);
                                *exists = true;
                        } else if (c->svc->enabled &&
                                   services_overlap(cur.field[ME_SERVICE], c->svc->service)) {
                                r = problem_set(
                                    reterr, PROBLEM_SERVICE_CONFLICT, c->field,
                                    "master.cf's service %s/inet (%s) takes the port of %s on "
                                    "the same address: Postfix's master binds both and the "
                                    "kernel shares the connections between them; name a free "
                                    "port, or disable that service",
                                    cur.field[ME_SERVICE], cur.field[ME_COMMAND], c->svc->service);
                        }
                }
                master_entry_done(&cur);
        }
        return r;
}

/* An entry of that name that exists already is taken over (or commented out) only when it is a
 * submission service: on the port of its kind (587, 465), or with the syslog name such a service
 * has (postfix/submission, postfix/submissions, postfix/smtps). A content filter's reinjection
 * smtpd or a second MX port is not smtptlsd's to change. */
static int recognize(const struct service_ctx *c, unsigned port, struct problem *reterr)
{
        static const char *const names[] = { "postfix/submission", "postfix/submissions",
                                             "postfix/smtps" };
        if (port == (c->kind == SUBMISSION_IMPLICIT ? 465u : 587u))
                return 0;
        char spec[SUBMISSION_SERVICE_MAX + 16], want[SUBMISSION_SERVICE_MAX + 64];
        _cleanup_free_ char *now = NULL;
        snprintf(spec, sizeof(spec), "%s/inet", c->svc->service);
        const char *const read[] = { "-P", spec, NULL };
        int r = run_postconf(c, read, &now, reterr);
        for (size_t i = 0; r >= 0 && i < ARRAY_SIZE(names); i++) {
                snprintf(want, sizeof(want), "%s/syslog_name = %s\n", spec, names[i]);
                if (now && strstr(now, want))
                        return 0;
        }
        if (r < 0)
                return r;
        return problem_set(reterr, PROBLEM_SERVICE_CONFLICT, c->field,
                           "master.cf's service %s runs smtpd but is not a submission service "
                           "(not on port %u, no syslog_name postfix/submission(s)): smtptlsd "
                           "leaves it alone; name another service",
                           spec, c->kind == SUBMISSION_IMPLICIT ? 465u : 587u);
}

static int enable_service(const struct service_ctx *c, bool exists, const char *chroot,
                          struct problem *reterr)
{
        const char *name = c->svc->service;
        char spec[SUBMISSION_SERVICE_MAX + 16], entry[SUBMISSION_SERVICE_MAX + 64];
        char assign[SUBMISSION_SERVICE_MAX + 96];
        snprintf(spec, sizeof(spec), "%s/inet", name);
        int r;
        if (!exists) {
                if (submission_entry(name, chroot, entry, sizeof(entry)) < 0 ||
                    snprintf(assign, sizeof(assign), "%s=%s", spec, entry) >= (int)sizeof(assign))
                        return problem_set(reterr, PROBLEM_INVALID_VALUE, c->field,
                                           "service name too long");
                const char *const args[] = { "-M", assign, NULL };
                r = run_postconf(c, args, NULL, reterr);
                if (r < 0)
                        return r;
        }
        const char *args[8] = { "-P" };
        char params[6][SUBMISSION_SERVICE_MAX + 96];
        size_t n = 1;
        for (const struct submission_param *p = submission_params(c->kind);
             p->name && n <= ARRAY_SIZE(params); p++, n++) {
                snprintf(params[n - 1], sizeof(params[0]), "%s/%s=%s", spec, p->name, p->value);
                args[n] = params[n - 1];
        }
        args[n] = NULL;
        r = run_postconf(c, args, NULL, reterr);
        if (r < 0)
                return r;
        /* read back: postconf -P only warns about a service it does not find */
        _cleanup_free_ char *now = NULL;
        const char *const read[] = { "-P", spec, NULL };
        char missing[128];
        r = run_postconf(c, read, &now, reterr);
        if (r >= 0 && !submission_params_present(name, c->kind, now, missing, sizeof(missing)))
                r = problem_set(reterr, PROBLEM_POSTFIX_REJECTED, c->field,
                                "postconf -P did not set %s on master.cf's %s (it reads: %s)",
                                missing, spec, now && now[0] ? now : "nothing");
        return r;
}

static int disable_service(const struct service_ctx *c, struct problem *reterr)
{
        char spec[SUBMISSION_SERVICE_MAX + 16];
        snprintf(spec, sizeof(spec), "%s/inet", c->svc->service);
        const char *const args[] = { "-M#", spec, NULL };
        int r = run_postconf(c, args, NULL, reterr);
        _cleanup_free_ char *now = NULL;
        const char *const read[] = { "-M", spec, NULL };
        if (r >= 0)
                r = run_postconf(c, read, &now, reterr);
        if (r >= 0 && now && now[0])
                r = problem_set(reterr, PROBLEM_POSTFIX_REJECTED, c->field,
                                "postconf -M# left master.cf's %s in place: %s", spec, now);
        return r;
}

static int edit_one(struct service_ctx *c, struct problem *reterr)
{
        char chroot[8], host[SUBMISSION_SERVICE_MAX + 1], port_name[SUBMISSION_SERVICE_MAX + 1];
        unsigned port = 0;
        bool exists = false;
        /* the MX's smtpd (the address smtptlsd checks after a reload) is never a submission
         * service, enabled or commented out: its name in master.cf may be anything */
        if (services_overlap(c->cfg->smtp_probe_address, c->svc->service))
                return problem_set(reterr, PROBLEM_SERVICE_CONFLICT, c->field,
                                   "%s binds the port of the MX's smtpd (smtp_probe_address %s): "
                                   "a submission service needs a port of its own",
                                   c->svc->service, c->cfg->smtp_probe_address);
        submission_service_split(c->svc->service, host, port_name);
        if (mastercf_port_number(port_name, &port) < 0)
                return problem_set(reterr, PROBLEM_INVALID_VALUE, c->field,
                                   "port '%s' is no TCP service of /etc/services: Postfix's "
                                   "master would stop at the reload; give its number",
                                   port_name);
        int r = find_entry(c, &exists, chroot, reterr);
        if (r >= 0 && exists)
                r = recognize(c, port, reterr);
        if (r < 0)
                return r;
        if (!c->svc->enabled)
                return exists ? disable_service(c, reterr) : 0;
        if (!exists) {
                /* master binds it at the reload: an address not of this host, or a port another
                 * program holds, would stop it */
                r = can_bind(c->svc->service, port);
                if (r == -EADDRNOTAVAIL)
                        return problem_set(reterr, PROBLEM_INVALID_VALUE, c->field,
                                           "%s is no address of this host: Postfix's master "
                                           "could not bind it and would stop at the reload",
                                           host[0] ? host : "*");
                if (r == -EADDRINUSE)
                        return problem_set(reterr, PROBLEM_SERVICE_CONFLICT, c->field,
                                           "another program holds port %u%s%s: Postfix's master "
                                           "could not bind it and would stop at the reload",
                                           port, host[0] ? " on " : "", host);
                if (r < 0)
                        return problem_set(reterr, PROBLEM_INTERNAL_ERROR, c->field,
                                           "cannot tell whether %s is free: %s", c->svc->service,
                                           strerror(-r));
        }
        return enable_service(c, exists, chroot, reterr);
}

int mastercf_plan(const struct config *cfg, const struct settings *s, struct plan *p,
                  struct problem *reterr)
{
        bool any = false;
        for (int k = 0; k < SUBMISSION_KINDS; k++)
                any = any || (s->managed && s->services[k].managed);
        if (!any)
                return 0;
        char dir[PATH_MAX] = "", path[PATH_MAX], live[PATH_MAX];
        int r = layout_master_cf(cfg, live, sizeof(live));
        if (r >= 0)
                r = fs_read_file(live, LAYOUT_MAIN_CF_MAX, &p->master_cf_old, &p->master_old_len);
        /* postconf reads main.cf beside master.cf: the one this plan makes */
        if (r >= 0)
                r = postfix_scratch_dir(cfg, "master.check",
                                        p->main_cf_new ? p->main_cf_new : p->main_cf_old,
                                        p->main_cf_new ? p->new_len : p->old_len, p->master_cf_old,
                                        p->master_old_len, dir, sizeof(dir));
        if (r >= 0)
                r = layout_join(dir, "master.cf", path, sizeof(path));
        if (r < 0) {
                if (dir[0])
                        fs_remove_tree(dir);
                return problem_set(reterr, PROBLEM_INTERNAL_ERROR, NULL,
                                   "cannot stage master.cf: %s", strerror(-r));
        }
        _cleanup_free_ char *listing = NULL;
        struct service_ctx c = { .cfg = cfg, .dir = dir };
        snprintf(c.field, sizeof(c.field), "/submission/service");
        const char *const list[] = { "-M", NULL };
        r = run_postconf(&c, list, &listing, reterr);
        for (int k = 0; r >= 0 && k < SUBMISSION_KINDS; k++) {
                if (!s->services[k].managed)
                        continue;
                c.kind = (enum submission_kind)k;
                c.svc = &s->services[k];
                c.listing = listing;
                snprintf(c.field, sizeof(c.field), "/%s/service",
                         submission_kind_name((enum submission_kind)k));
                r = edit_one(&c, reterr);
                if (r >= 0 && k + 1 < SUBMISSION_KINDS) {
                        /* the next service sees this one's entry */
                        free(listing);
                        listing = NULL;
                        r = run_postconf(&c, list, &listing, reterr);
                }
        }
        if (r >= 0)
                r = fs_read_file(path, LAYOUT_MAIN_CF_MAX, &p->master_cf_new, &p->master_new_len);
        fs_remove_tree(dir);
        if (r < 0)
                return reterr && reterr->code
                           ? r
                           : problem_set(reterr, PROBLEM_INTERNAL_ERROR, NULL,
                                         "cannot read the staged master.cf: %s", strerror(-r));
        p->master_cf_changed = p->master_new_len != p->master_old_len ||
                               memcmp(p->master_cf_new, p->master_cf_old, p->master_new_len) != 0;
        p->reload = p->reload || p->master_cf_changed;
        return 0;
}
