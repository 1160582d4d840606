/* mastercf.c - the submission services in master.cf (see mastercf.h): postconf edits on a copy,
 * read back. Worker thread and start-up. */
#include "apply/mastercf.h"

#include <errno.h>
#include <ifaddrs.h>
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

/* An address as IPv6 (an IPv4 one mapped: ::ffff:a.b.c.d), for comparing. */
static void as_v6(const struct sockaddr_storage *a, struct in6_addr *ret)
{
        if (a->ss_family == AF_INET6) {
                *ret = ((const struct sockaddr_in6 *)a)->sin6_addr;
                return;
        }
        memset(ret, 0, sizeof(*ret));
        ret->s6_addr[10] = ret->s6_addr[11] = 0xff;
        memcpy(&ret->s6_addr[12], &((const struct sockaddr_in *)a)->sin_addr, 4);
}

static bool same_address(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
        struct in6_addr x, y;
        as_v6(a, &x);
        as_v6(b, &y);
        return memcmp(&x, &y, sizeof(x)) == 0;
}

static bool addrs_overlap(const struct host_addrs *x, const struct host_addrs *y)
{
        if (x->wild || y->wild)
                return true;
        for (size_t i = 0; i < x->n; i++)
                for (size_t j = 0; j < y->n; j++)
                        if (same_address(&x->a[i], &y->a[j]))
                                return true;
        return false;
}

/* Whether two inet services take the same port on an overlapping address. Postfix's master
 * binds both (SO_REUSEPORT) and the kernel shares the connections between them: a client of one
 * lands on the other. An unknown port is compared by its name; a host that does not resolve by
 * its spelling. */
static bool services_overlap(const char *a, const char *b)
{
        char host_a[320], port_a[320], host_b[320], port_b[320];
        submission_service_split(a, host_a, sizeof(host_a), port_a, sizeof(port_a));
        submission_service_split(b, host_b, sizeof(host_b), port_b, sizeof(port_b));
        unsigned na = 0, nb = 0;
        (void)mastercf_port_number(port_a, &na);
        (void)mastercf_port_number(port_b, &nb);
        if (na && nb ? na != nb : !streq(port_a, port_b))
                return false;
        struct host_addrs x, y;
        host_addrs(host_a, &x);
        host_addrs(host_b, &y);
        return addrs_overlap(&x, &y) || strcasecmp(host_a, host_b) == 0;
}

/* Whether a literal address is this system's: an interface's (getifaddrs), or loopback
 * (127.0.0.0/8 and ::1 are local without being an interface's address). */
static bool address_is_local(const struct sockaddr_storage *a)
{
        struct in6_addr x;
        as_v6(a, &x);
        static const struct in6_addr loopback6 = IN6ADDR_LOOPBACK_INIT;
        if ((IN6_IS_ADDR_V4MAPPED(&x) && x.s6_addr[12] == 127) ||
            memcmp(&x, &loopback6, sizeof(x)) == 0)
                return true;
        struct ifaddrs *list = NULL;
        bool found = false;
        if (getifaddrs(&list) < 0)
                return true; /* cannot tell: Postfix will */
        for (struct ifaddrs *i = list; i && !found; i = i->ifa_next) {
                if (!i->ifa_addr ||
                    (i->ifa_addr->sa_family != AF_INET && i->ifa_addr->sa_family != AF_INET6))
                        continue;
                struct sockaddr_storage ss = { 0 };
                memcpy(&ss, i->ifa_addr,
                       i->ifa_addr->sa_family == AF_INET ? sizeof(struct sockaddr_in)
                                                         : sizeof(struct sockaddr_in6));
                found = same_address(&ss, a);
        }
        freeifaddrs(list);
        return found;
}

/* One listening socket of /proc/net/tcp{,6} ("0100007F:024B" or 32 hex digits): the kernel
 * prints each 32-bit word of the address as it lies in memory. */
static bool listener_address(const char *hex, struct host_addrs *l)
{
        struct sockaddr_storage *ss = &l->a[0];
        *l = (struct host_addrs){ .n = 1 };
        if (strlen(hex) == 8) {
                struct sockaddr_in *in = (struct sockaddr_in *)ss;
                in->sin_family = AF_INET;
                in->sin_addr.s_addr = (uint32_t)strtoul(hex, NULL, 16);
                l->wild = in->sin_addr.s_addr == 0;
                return true;
        }
        if (strlen(hex) != 32)
                return false;
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
        in6->sin6_family = AF_INET6;
        for (int w = 0; w < 4; w++) {
                char word[9];
                memcpy(word, hex + 8 * w, 8);
                word[8] = 0;
                uint32_t v = (uint32_t)strtoul(word, NULL, 16);
                memcpy(&in6->sin6_addr.s6_addr[4 * w], &v, 4);
        }
        l->wild = IN6_IS_ADDR_UNSPECIFIED(&in6->sin6_addr);
        return true;
}

/* Whether a socket of this system listens on port at an address overlapping h's (a wildcard
 * on either side overlaps every address). Read from /proc/net/tcp and tcp6, so no privilege is
 * needed: the unit grants no CAP_NET_BIND_SERVICE, and a test bind of 587 would be refused. */
static bool port_listened(const struct host_addrs *h, unsigned port)
{
        static const char *const tables[] = { "/proc/net/tcp", "/proc/net/tcp6" };
        bool found = false;
        for (size_t t = 0; t < ARRAY_SIZE(tables) && !found; t++) {
                FILE *f = fopen(tables[t], "re");
                char line[512], hex[40];
                unsigned lport, state;
                while (f && !found && fgets(line, sizeof(line), f)) {
                        struct host_addrs l;
                        if (sscanf(line, " %*u: %39[0-9A-Fa-f]:%x %*s %x", hex, &lport, &state) ==
                                3 &&
                            state == 0x0A && lport == port && listener_address(hex, &l))
                                found = addrs_overlap(&l, h);
                }
                if (f)
                        fclose(f);
        }
        return found;
}

/* Whether Postfix's master could bind a new service: its host an address of this system, and
 * no socket listening on its port at an overlapping address (another program's: an entry of
 * master.cf's own is find_entry's to judge). -EADDRNOTAVAIL, -EADDRINUSE: either would stop
 * master at the reload. */
static int can_bind(const char *service, unsigned port)
{
        char host[320], port_name[320];
        submission_service_split(service, host, sizeof(host), port_name, sizeof(port_name));
        struct host_addrs h;
        host_addrs(host, &h);
        if (!h.wild && h.n == 0)
                return -EADDRNOTAVAIL;
        for (size_t i = 0; !h.wild && i < h.n; i++)
                if (!address_is_local(&h.a[i]))
                        return -EADDRNOTAVAIL;
        return port_listened(&h, port) ? -EADDRINUSE : 0;
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
        submission_service_split(c->svc->service, host, sizeof(host), port_name, sizeof(port_name));
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
                                           "another program holds port %u%s%s (a socket "
                                           "listens there): Postfix's master could not bind "
                                           "it, or would share its connections",
                                           port, host[0] ? " on " : "", host);
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
