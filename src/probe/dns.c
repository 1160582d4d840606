/* dns.c - the destination probe's lookups through libunbound (see dns.h): a context per probe
 * with its own resolver thread (ub_ctx_async), questions sent with ub_resolve_async and their
 * answers collected by polling the context's descriptor (and the thread's cancel descriptor)
 * against the deadline. Any thread; one struct dns at a time per thread. */
#include "probe/dns.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <unbound.h>

#include "core/dns_wire.h"
#include "probe/probe_conn.h"
#include "util.h"

struct dns {
        struct ub_ctx *ctx;
};

/* Calls fn(arg, item) for each whitespace-separated item of list; stops at the first error. */
static int each_item(const char *list, int (*fn)(void *arg, const char *item), void *arg)
{
        const char *p = list ? list : "";
        for (;;) {
                p += strspn(p, " \t,");
                if (!*p)
                        return 0;
                size_t n = strcspn(p, " \t,");
                char item[300];
                if (n >= sizeof(item))
                        return -ENAMETOOLONG;
                memcpy(item, p, n);
                item[n] = 0;
                int r = fn(arg, item);
                if (r < 0)
                        return r;
                p += n;
        }
}

struct setup {
        struct ub_ctx *ctx;
        char *err;
        size_t errsize;
};

static int add_forward(void *arg, const char *item)
{
        struct setup *s = arg;
        int r = ub_ctx_set_fwd(s->ctx, item);
        if (r != 0) {
                snprintf(s->err, s->errsize, "resolver \"%s\": %s", item, ub_strerror(r));
                return -EINVAL;
        }
        return 0;
}

static int add_stub(void *arg, const char *item)
{
        struct setup *s = arg;
        char zone[256];
        const char *eq = strchr(item, '=');
        if (!eq || eq == item || (size_t)(eq - item) >= sizeof(zone) || !eq[1]) {
                snprintf(s->err, s->errsize, "stub zone \"%s\" is not zone=address[@port]", item);
                return -EINVAL;
        }
        memcpy(zone, item, (size_t)(eq - item));
        zone[eq - item] = 0;
        /* libunbound answers some zones itself (RFC 6761's test., invalid., local zones of
         * private ranges): a transparent local zone lets the stub's answers through */
        char local[300];
        snprintf(local, sizeof(local), "%s transparent", zone);
        int r = ub_ctx_set_option(s->ctx, "local-zone:", local);
        if (r != 0) {
                snprintf(s->err, s->errsize, "stub zone \"%s\": %s", item, ub_strerror(r));
                return -EINVAL;
        }
        r = ub_ctx_set_stub(s->ctx, zone, eq + 1, 0);
        if (r != 0) {
                snprintf(s->err, s->errsize, "stub zone \"%s\": %s", item, ub_strerror(r));
                return -EINVAL;
        }
        return 0;
}

static int set_option(struct setup *s, const char *opt, const char *val)
{
        int r = ub_ctx_set_option(s->ctx, opt, val);
        if (r != 0) {
                snprintf(s->err, s->errsize, "resolver option %s %s: %s", opt, val, ub_strerror(r));
                return -EINVAL;
        }
        return 0;
}

int dns_open(const struct dns_config *cfg, struct dns **ret, char *err, size_t errsize)
{
        struct dns *d = calloc(1, sizeof(*d));
        struct setup s = { .err = err, .errsize = errsize };
        int r = -ENOMEM;

        err[0] = 0;
        if (!d)
                goto fail;
        d->ctx = s.ctx = ub_ctx_create();
        if (!d->ctx) {
                snprintf(err, errsize, "resolver: cannot create a libunbound context");
                goto fail;
        }
        /* a thread of its own (not a forked process), answers to our descriptor; stubs and
         * forwarders on loopback (a local resolver, the tests' servers) are allowed; a small
         * socket range: a probe asks a handful of questions */
        if ((r = ub_ctx_async(d->ctx, 1)) != 0) {
                snprintf(err, errsize, "resolver: %s", ub_strerror(r));
                r = -EINVAL;
                goto fail;
        }
        if ((r = set_option(&s, "do-not-query-localhost:", "no")) < 0 ||
            (r = set_option(&s, "outgoing-range:", "64")) < 0)
                goto fail;
        const char *resolvers = cfg->resolvers ? cfg->resolvers : "resolv.conf";
        if (streq(resolvers, "resolv.conf")) {
                r = ub_ctx_resolvconf(d->ctx, NULL);
                if (r != 0) {
                        snprintf(err, errsize, "resolver: /etc/resolv.conf: %s", ub_strerror(r));
                        r = -EINVAL;
                        goto fail;
                }
        } else if (!streq(resolvers, "root")) {
                r = each_item(resolvers, add_forward, &s);
                if (r < 0)
                        goto fail;
        }
        r = each_item(cfg->stub_zones, add_stub, &s);
        if (r < 0) {
                if (!err[0])
                        snprintf(err, errsize, "stub zones: an entry is too long");
                goto fail;
        }
        if (!isempty(cfg->trust_anchor_file)) {
                if (access(cfg->trust_anchor_file, R_OK) < 0) {
                        snprintf(err, errsize, "trust anchor file %s: %s", cfg->trust_anchor_file,
                                 strerror(errno));
                        r = -EINVAL;
                        goto fail;
                }
                r = ub_ctx_add_ta_file(d->ctx, cfg->trust_anchor_file);
                if (r != 0) {
                        snprintf(err, errsize, "trust anchor file %s: %s", cfg->trust_anchor_file,
                                 ub_strerror(r));
                        r = -EINVAL;
                        goto fail;
                }
        }
        *ret = d;
        return 0;
fail:
        if (!err[0])
                snprintf(err, errsize, "resolver: out of memory");
        dns_close(d);
        return r < 0 ? r : -EINVAL;
}

void dns_close(struct dns *d)
{
        if (!d)
                return;
        if (d->ctx)
                ub_ctx_delete(d->ctx);
        free(d);
}

int dns_config_check(const struct dns_config *cfg, char *err, size_t errsize)
{
        struct dns *d = NULL;
        int r = dns_open(cfg, &d, err, errsize);
        dns_close(d);
        return r;
}

/* The answer to one question (libunbound's resolver thread hands it over in ub_process, which
 * runs on the caller's thread). */
static void answered(void *arg, int err, struct ub_result *result)
{
        struct dns_lookup *q = arg;
        q->done = true;
        if (err != 0) {
                q->security = DNS_FAILED;
                snprintf(q->why, sizeof(q->why), "%s", ub_strerror(err));
                return;
        }
        q->result = result;
        q->rcode = result->rcode;
        q->nxdomain = result->nxdomain;
        if (result->bogus) {
                q->security = DNS_BOGUS;
                snprintf(q->why, sizeof(q->why), "DNSSEC validation failed: %s",
                         result->why_bogus ? result->why_bogus : "bogus");
        } else if (result->rcode != 0 && !result->nxdomain) {
                q->security = DNS_FAILED;
                snprintf(q->why, sizeof(q->why), "%s",
                         result->rcode == 2   ? "SERVFAIL"
                         : result->rcode == 5 ? "REFUSED"
                                              : "error reply");
        } else {
                q->security = result->secure ? DNS_SECURE : DNS_INSECURE;
        }
}

int dns_lookup_all(struct dns *d, struct dns_lookup *q, size_t n, uint64_t deadline)
{
        int r = 0;

        for (size_t i = 0; i < n; i++) {
                q[i].done = false;
                q[i].result = NULL;
                q[i].why[0] = 0;
                q[i].id = -1;
                int k = ub_resolve_async(d->ctx, q[i].name, q[i].type, 1 /* IN */, &q[i], answered,
                                         &q[i].id);
                if (k != 0) {
                        q[i].done = true;
                        q[i].security = DNS_FAILED;
                        snprintf(q[i].why, sizeof(q[i].why), "%s", ub_strerror(k));
                }
        }
        int fd = ub_fd(d->ctx);
        while (r == 0) {
                size_t left = 0;
                for (size_t i = 0; i < n; i++)
                        left += !q[i].done;
                if (left == 0)
                        break;
                r = probe_wait_fd(fd, POLLIN, deadline);
                if (r == 0 && ub_process(d->ctx) != 0)
                        r = -EIO;
        }
        for (size_t i = 0; i < n; i++) {
                if (q[i].done)
                        continue;
                if (q[i].id >= 0)
                        ub_cancel(d->ctx, q[i].id);
                q[i].done = true;
                q[i].security = DNS_FAILED;
                snprintf(q[i].why, sizeof(q[i].why), "%s",
                         r == -ECANCELED   ? "cancelled"
                         : r == -ETIMEDOUT ? "timed out"
                                           : "resolver failed");
        }
        return r == -ECANCELED ? r : 0;
}

size_t dns_lookup_count(const struct dns_lookup *q)
{
        size_t n = 0;
        if (!q->result || !q->result->havedata || !q->result->data)
                return 0;
        while (q->result->data[n])
                n++;
        return n;
}

const uint8_t *dns_lookup_rdata(const struct dns_lookup *q, size_t i, size_t *len)
{
        *len = (size_t)(q->result->len[i] > 0 ? q->result->len[i] : 0);
        return (const uint8_t *)q->result->data[i];
}

void dns_lookup_done(struct dns_lookup *q)
{
        if (q && q->result) {
                ub_resolve_free(q->result);
                q->result = NULL;
        }
}
