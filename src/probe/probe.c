/* probe.c - the destination probe (see probe.h): the destination's parts, the lookups (MX, then
 * each host's A, AAAA and TLSA side by side), the DANE state of each host by RFC 7672's rules,
 * and a thread per address for the SMTP conversations, joined before the report is handed back.
 * Runs on a probe runner thread; the address threads are its own and end before it returns. */
#include "probe/probe.h"

#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "probe/probe_conn.h"
#include "util.h"

/* ---- the destination's parts ----------------------------------------------------------------- */

static const struct {
        const char *name;
        unsigned port;
} services[] = {
        { "smtp", 25 },
        { "submission", 587 },
        { "submissions", 465 },
        { "smtps", 465 },
};

static int parse_port(const char *s, unsigned *port, char *err, size_t size)
{
        if (*s >= '0' && *s <= '9') {
                char *end;
                unsigned long v = strtoul(s, &end, 10);
                if (*end || v == 0 || v > 65535) {
                        snprintf(err, size, "the port \"%s\" is not a number in 1..65535", s);
                        return -EINVAL;
                }
                *port = (unsigned)v;
                return 0;
        }
        for (size_t i = 0; i < ARRAY_SIZE(services); i++)
                if (strcasecmp(s, services[i].name) == 0) {
                        *port = services[i].port;
                        return 0;
                }
        snprintf(err, size,
                 "the service \"%s\" is not one the probe knows (smtp, submission, submissions, "
                 "smtps): give the port as a number",
                 s);
        return -EINVAL;
}

static bool is_smtp_port(unsigned port)
{
        return port == 25 || port == 465 || port == 587;
}

int probe_destination_parse(const char *key, bool any_port, struct probe_destination *out,
                            char *err, size_t size)
{
        char host[256];
        const char *port = NULL;

        *out = (struct probe_destination){ .port = 25 };
        err[0] = 0;
        if (strcpy_bounded(out->key, sizeof(out->key), key) < 0 || !*key) {
                snprintf(err, size, "the destination is empty or too long");
                return -EINVAL;
        }
        if (key[0] == '[') {
                const char *close = strchr(key, ']');
                if (!close || (size_t)(close - key - 1) >= sizeof(host) || close == key + 1) {
                        snprintf(err, size, "the destination has no closing ']'");
                        return -EINVAL;
                }
                memcpy(host, key + 1, (size_t)(close - key - 1));
                host[close - key - 1] = 0;
                if (close[1] == ':')
                        port = close + 2;
                else if (close[1]) {
                        snprintf(err, size, "only \":port\" may follow ']'");
                        return -EINVAL;
                }
                out->literal = true;
                const char *h = strncasecmp(host, "ipv6:", 5) == 0 ? host + 5 : host;
                unsigned char buf[16];
                out->is_address =
                    inet_pton(AF_INET, h, buf) == 1 || inet_pton(AF_INET6, h, buf) == 1;
                strcpy_bounded(out->name, sizeof(out->name), h);
        } else {
                const char *colon = strrchr(key, ':');
                size_t n = colon ? (size_t)(colon - key) : strlen(key);
                if (n >= sizeof(host)) {
                        snprintf(err, size, "the destination is too long");
                        return -EINVAL;
                }
                memcpy(host, key, n);
                host[n] = 0;
                if (colon)
                        port = colon + 1;
                out->subdomains = host[0] == '.';
                strcpy_bounded(out->name, sizeof(out->name), host + out->subdomains);
        }
        if (!out->name[0]) {
                snprintf(err, size, "the destination names no host");
                return -EINVAL;
        }
        if (port && parse_port(port, &out->port, err, size) < 0)
                return -EINVAL;
        if (!any_port && !out->literal && !is_smtp_port(out->port)) {
                snprintf(err, size,
                         "port %u is not an SMTP port (25, 465, 587): only a literal next-hop "
                         "\"[host]:%u\" may name another",
                         out->port, out->port);
                return -EINVAL;
        }
        return 0;
}

void probe_destination_set_smtp(struct probe_destination *d, const char *ca_file,
                                const char *ca_path, bool ca_default, const char *verify_match,
                                const char *secure_match, const char *inet_protocols,
                                const char *fingerprint_digest)
{
        snprintf(d->fingerprint_digest, sizeof(d->fingerprint_digest), "%s",
                 fingerprint_digest ? fingerprint_digest : "");
        /* "all", "ipv4", "ipv6", "ipv4, ipv6" */
        const char *p = inet_protocols ? inet_protocols : "all";
        bool all = strstr(p, "all") != NULL;
        d->only_ipv4 = !all && strstr(p, "ipv4") && !strstr(p, "ipv6");
        d->only_ipv6 = !all && strstr(p, "ipv6") && !strstr(p, "ipv4");
        snprintf(d->ca_file, sizeof(d->ca_file), "%s", ca_file ? ca_file : "");
        snprintf(d->ca_path, sizeof(d->ca_path), "%s", ca_path ? ca_path : "");
        d->ca_default = ca_default;
        snprintf(d->verify_match, sizeof(d->verify_match), "%s", verify_match ? verify_match : "");
        snprintf(d->secure_match, sizeof(d->secure_match), "%s", secure_match ? secure_match : "");
}

struct probe_target probe_target_of(const struct probe_destination *d, const char *const *match,
                                    size_t n_match)
{
        return (struct probe_target){ .nexthop = d->name,
                                      .match = match,
                                      .n_match = n_match,
                                      .verify_default = d->verify_match,
                                      .secure_default = d->secure_match };
}

/* ---- lookups ------------------------------------------------------------------------------- */

static const char *security_words(enum dns_security s)
{
        switch (s) {
        case DNS_SECURE:
                return "DNSSEC-validated";
        case DNS_INSECURE:
                return "not DNSSEC-signed";
        case DNS_BOGUS:
                return "DNSSEC-bogus";
        default:
                return "failed";
        }
}

struct mx {
        unsigned pref;
        char host[DNS_NAME_TEXT_MAX];
};

static int mx_compare(const void *a, const void *b)
{
        const struct mx *x = a, *y = b;
        return x->pref < y->pref ? -1 : x->pref > y->pref;
}

/* The hosts of a domain from its MX answer into r (or r->error). */
static int hosts_from_mx(const struct probe_config *cfg, struct dns_lookup *q,
                         struct probe_report *r)
{
        r->mx_security = q->security;
        if (q->security == DNS_FAILED || q->security == DNS_BOGUS) {
                snprintf(r->error, sizeof(r->error), "MX lookup of %s failed: %s", q->name, q->why);
                return 0;
        }
        if (q->nxdomain) {
                snprintf(r->error, sizeof(r->error), "the domain %s does not exist", q->name);
                return 0;
        }
        size_t n = dns_lookup_count(q);
        if (n == 0) { /* RFC 5321 5.1: no MX, the domain is its own mail host */
                r->implicit_mx = true;
                r->hosts = calloc(1, sizeof(*r->hosts));
                if (!r->hosts)
                        return -ENOMEM;
                r->n_hosts = 1;
                strcpy_bounded(r->hosts[0].name, sizeof(r->hosts[0].name), q->name);
                return 0;
        }
        struct mx *list = calloc(n, sizeof(*list));
        if (!list)
                return -ENOMEM;
        size_t k = 0;
        for (size_t i = 0; i < n; i++) {
                size_t len;
                const uint8_t *data = dns_lookup_rdata(q, i, &len);
                if (dns_wire_mx(data, len, &list[k].pref, list[k].host) == 0)
                        k++;
        }
        if (k == 1 && streq(list[0].host, ".")) {
                snprintf(r->error, sizeof(r->error),
                         "%s accepts no mail: its MX record is \".\" (null MX, RFC 7505)", q->name);
                free(list);
                return 0;
        }
        qsort(list, k, sizeof(*list), mx_compare);
        size_t keep = k < cfg->max_hosts ? k : cfg->max_hosts;
        r->hosts = calloc(keep > 0 ? keep : 1, sizeof(*r->hosts));
        if (!r->hosts) {
                free(list);
                return -ENOMEM;
        }
        for (size_t i = 0; i < keep; i++) {
                strcpy_bounded(r->hosts[i].name, sizeof(r->hosts[i].name), list[i].host);
                r->hosts[i].preference = list[i].pref;
        }
        r->n_hosts = keep;
        if (k == 0)
                snprintf(r->error, sizeof(r->error), "the MX records of %s are malformed", q->name);
        free(list);
        return 0;
}

/* The combined security of the A and AAAA answers: secure only if every answer is. */
static enum dns_security combine(const struct dns_lookup *a, const struct dns_lookup *aaaa)
{
        if (a->security == DNS_BOGUS || aaaa->security == DNS_BOGUS)
                return DNS_BOGUS;
        if (a->security == DNS_FAILED && aaaa->security == DNS_FAILED)
                return DNS_FAILED;
        if (a->security == DNS_INSECURE || aaaa->security == DNS_INSECURE)
                return DNS_INSECURE;
        return DNS_SECURE;
}

/* A record DANE for SMTP uses (RFC 7672 3.1): DANE-TA(2) or DANE-EE(3), the certificate or its
 * key, and the whole data or a SHA-256/SHA-512 digest of the right length; the others are
 * ignored, as Postfix and OpenSSL ignore them. */
static bool tlsa_usable(const struct dns_tlsa *x)
{
        static const size_t digest_len[] = { 0, 32, 64 };
        return (x->usage == 2 || x->usage == 3) && x->selector <= 1 && x->mtype <= 2 &&
               x->len > 0 && (x->mtype == 0 || x->len == digest_len[x->mtype]);
}

/* The TLSA state of a host by RFC 7672 2.2: records count only when the chain that led to them
 * (the MX answer, the host's addresses) was validated too. */
static void dane_state_of(const struct probe_report *r, struct probe_host *h,
                          const struct dns_lookup *t)
{
        h->tlsa_security = t->security;
        if (!r->dest.literal && r->mx_security != DNS_SECURE) {
                h->dane = DANE_NONE;
                snprintf(h->dane_note, sizeof(h->dane_note), "the MX records are %s",
                         security_words(r->mx_security));
                return;
        }
        if (h->address_security != DNS_SECURE) {
                h->dane = DANE_NONE;
                snprintf(h->dane_note, sizeof(h->dane_note), "the addresses of %.120s are %s",
                         h->name, security_words(h->address_security));
                return;
        }
        if (t->security == DNS_BOGUS || t->security == DNS_FAILED) {
                h->dane = DANE_FAILED;
                snprintf(h->dane_note, sizeof(h->dane_note), "TLSA lookup of %.60s: %.100s",
                         t->name, t->why);
                return;
        }
        size_t n = dns_lookup_count(t);
        if (t->security != DNS_SECURE || n == 0) {
                h->dane = DANE_NONE;
                snprintf(h->dane_note, sizeof(h->dane_note), "%s has no %sTLSA records", t->name,
                         n ? "DNSSEC-validated " : "");
                return;
        }
        struct dns_tlsa *x = malloc(sizeof(*x));
        for (size_t i = 0; x && i < n; i++) {
                size_t len;
                const uint8_t *data = dns_lookup_rdata(t, i, &len);
                if (dns_wire_tlsa(data, len, x) < 0 || !tlsa_usable(x) ||
                    h->n_tlsa >= PROBE_TLSA_MAX) {
                        h->n_tlsa_unusable++;
                        continue;
                }
                struct dns_tlsa *grown = realloc(h->tlsa, (h->n_tlsa + 1) * sizeof(*grown));
                if (!grown)
                        break;
                h->tlsa = grown;
                h->tlsa[h->n_tlsa++] = *x;
        }
        free(x);
        bool usable = h->n_tlsa > 0;
        h->dane = usable ? DANE_USABLE : DANE_UNUSABLE;
        if (!usable)
                snprintf(h->dane_note, sizeof(h->dane_note),
                         "no TLSA record of %s is usable for SMTP (RFC 7672: usages 2 and 3)",
                         t->name);
}

/* Adds the addresses of one answer to h, up to *budget. */
static int add_addresses(struct probe_host *h, const struct dns_lookup *q, int type, size_t *budget)
{
        size_t n = dns_lookup_count(q);
        for (size_t i = 0; i<n && * budget> 0; i++) {
                size_t len;
                const uint8_t *data = dns_lookup_rdata(q, i, &len);
                char text[DNS_ADDRESS_MAX];
                if (dns_wire_address(type, data, len, text) < 0)
                        continue;
                struct probe_address *grown =
                    realloc(h->addresses, (h->n_addresses + 1) * sizeof(*grown));
                if (!grown)
                        return -ENOMEM;
                h->addresses = grown;
                h->addresses[h->n_addresses++] = (struct probe_address){ 0 };
                strcpy_bounded(h->addresses[h->n_addresses - 1].address, DNS_ADDRESS_MAX, text);
                (*budget)--;
        }
        return 0;
}

/* Each host's A, AAAA and TLSA records, asked side by side. */
static int resolve_hosts(const struct probe_config *cfg, struct dns *d, struct probe_report *r,
                         uint64_t deadline)
{
        size_t n = r->n_hosts;
        struct dns_lookup *q = calloc(3 * n, sizeof(*q));
        char(*tlsa_names)[DNS_NAME_TEXT_MAX + 16] = calloc(n, sizeof(*tlsa_names));
        int ret = -ENOMEM;
        if (!q || !tlsa_names)
                goto out;
        for (size_t i = 0; i < n; i++) {
                snprintf(tlsa_names[i], sizeof(tlsa_names[i]), "_%u._tcp.%s", r->dest.port,
                         r->hosts[i].name);
                q[3 * i] = (struct dns_lookup){ .name = r->hosts[i].name, .type = DNS_TYPE_A };
                q[3 * i + 1] =
                    (struct dns_lookup){ .name = r->hosts[i].name, .type = DNS_TYPE_AAAA };
                q[3 * i + 2] = (struct dns_lookup){ .name = tlsa_names[i], .type = DNS_TYPE_TLSA };
        }
        ret = dns_lookup_all(d, q, 3 * n, deadline);
        if (ret < 0)
                goto out;
        size_t budget = cfg->max_addresses;
        for (size_t i = 0; i < n; i++) {
                struct probe_host *h = &r->hosts[i];
                h->address_security = combine(&q[3 * i], &q[3 * i + 1]);
                if (h->address_security == DNS_BOGUS || h->address_security == DNS_FAILED) {
                        snprintf(h->address_error, sizeof(h->address_error),
                                 "address lookup of %.80s failed: %.80s", h->name,
                                 q[3 * i].why[0] ? q[3 * i].why : q[3 * i + 1].why);
                } else {
                        /* the families Postfix's smtp connects over (inet_protocols) */
                        ret = r->dest.only_ipv6 ? 0
                                                : add_addresses(h, &q[3 * i], DNS_TYPE_A, &budget);
                        if (ret == 0 && !r->dest.only_ipv4)
                                ret = add_addresses(h, &q[3 * i + 1], DNS_TYPE_AAAA, &budget);
                        if (ret < 0)
                                goto out;
                        if (h->n_addresses == 0 && budget == 0)
                                snprintf(h->address_error, sizeof(h->address_error),
                                         "not probed: the limit of %u addresses was reached",
                                         cfg->max_addresses);
                        else if (h->n_addresses == 0)
                                snprintf(h->address_error, sizeof(h->address_error),
                                         "%.160s has no address", h->name);
                }
                dane_state_of(r, h, &q[3 * i + 2]);
        }
        ret = 0;
out:
        for (size_t i = 0; q && i < 3 * n; i++)
                dns_lookup_done(&q[i]);
        free(q);
        free(tlsa_names);
        return ret;
}

/* ---- conversations ------------------------------------------------------------------------- */

struct conversation {
        pthread_t thread;
        bool started;
        const struct probe_config *cfg;
        const struct probe_report *r;
        const struct probe_host *h;
        struct probe_address *a;
        uint64_t deadline;
        int cancel_fd;
};

static void *converse_thread(void *arg)
{
        struct conversation *c = arg;
        probe_set_cancel_fd(c->cancel_fd);
        bool dane = c->h->dane == DANE_USABLE;
        struct smtp_probe_options o = {
                .servername = c->r->dest.is_address ? NULL : c->h->name,
                .ca_file = c->r->dest.ca_file[0] ? c->r->dest.ca_file : NULL,
                .ca_path = c->r->dest.ca_path[0] ? c->r->dest.ca_path : NULL,
                .ca_default = c->r->dest.ca_default,
                .tlsa = dane ? c->h->tlsa : NULL,
                .n_tlsa = dane ? c->h->n_tlsa : 0,
                .tlsa_base = c->h->name,
                .wrapper = c->r->dest.port == 465,
                .fingerprint_digest =
                    c->r->dest.fingerprint_digest[0] ? c->r->dest.fingerprint_digest : NULL,
        };
        uint64_t start = now_monotonic_usec();
        c->a->status =
            smtp_probe_address(c->a->address, c->r->dest.port, &o, c->deadline, &c->a->smtp);
        c->a->elapsed_usec = now_monotonic_usec() - start;
        return NULL;
}

static int converse_all(const struct probe_config *cfg, struct probe_report *r, uint64_t deadline)
{
        size_t n = 0;
        for (size_t i = 0; i < r->n_hosts; i++)
                n += r->hosts[i].n_addresses;
        if (n == 0)
                return 0;
        struct conversation *c = calloc(n, sizeof(*c));
        if (!c)
                return -ENOMEM;
        uint64_t step = probe_deadline_after(cfg->step_timeout_usec);
        size_t k = 0;
        int ret = 0;
        for (size_t i = 0; i < r->n_hosts; i++) {
                struct probe_host *h = &r->hosts[i];
                for (size_t j = 0; j < h->n_addresses; j++) {
                        struct probe_address *a = &h->addresses[j];
                        if (!cfg->allow_private && probe_address_is_private(a->address)) {
                                a->status = -EPERM;
                                snprintf(a->smtp.error, sizeof(a->smtp.error),
                                         "not probed: %s is a loopback, private or link-local "
                                         "address (probe_private_networks = deny)",
                                         a->address);
                                continue;
                        }
                        c[k] = (struct conversation){ .cfg = cfg,
                                                      .r = r,
                                                      .h = h,
                                                      .a = a,
                                                      .deadline = step < deadline ? step : deadline,
                                                      .cancel_fd = probe_cancel_fd() };
                        if (pthread_create(&c[k].thread, NULL, converse_thread, &c[k]) != 0) {
                                ret = -EAGAIN;
                                break;
                        }
                        c[k++].started = true;
                }
                if (ret < 0)
                        break;
        }
        for (size_t i = 0; i < k; i++)
                pthread_join(c[i].thread, NULL);
        free(c);
        return ret;
}

/* ---- the probe ----------------------------------------------------------------------------- */

/* The MTA-STS check of a domain, on a thread of its own (its own resolver context) beside the
 * lookups and conversations. */
struct sts_check {
        pthread_t thread;
        const struct probe_config *cfg;
        const char *domain;
        uint64_t deadline;
        int cancel_fd;
        struct mtasts_result *out;
};

static void *sts_thread(void *arg)
{
        struct sts_check *s = arg;
        struct dns *d = NULL;
        char err[256];
        probe_set_cancel_fd(s->cancel_fd);
        if (dns_open(&s->cfg->dns, &d, err, sizeof(err)) < 0) {
                s->out->looked_up = true;
                snprintf(s->out->error, sizeof(s->out->error), "%s", err);
                return NULL;
        }
        mtasts_check(d, s->domain, s->cfg->https_ca_file, s->cfg->allow_private, s->deadline,
                     s->out);
        dns_close(d);
        return NULL;
}

int probe_run(const struct probe_config *cfg, const struct probe_destination *dest,
              struct probe_report *r)
{
        uint64_t start = now_monotonic_usec();
        uint64_t deadline = probe_deadline_after(cfg->timeout_usec);
        struct dns *d = NULL;
        int ret = 0;

        *r = (struct probe_report){ .dest = *dest, .probed_at = time(NULL) };
        struct sts_check sts = { .cfg = cfg,
                                 .domain = dest->name,
                                 .deadline = deadline,
                                 .cancel_fd = probe_cancel_fd(),
                                 .out = &r->mta_sts };
        bool sts_started =
            !dest->literal && pthread_create(&sts.thread, NULL, sts_thread, &sts) == 0;
        if (dest->is_address) {
                r->hosts = calloc(1, sizeof(*r->hosts));
                if (!r->hosts)
                        return -ENOMEM;
                r->n_hosts = 1;
                r->hosts[0].addresses = calloc(1, sizeof(struct probe_address));
                if (!r->hosts[0].addresses)
                        return -ENOMEM;
                strcpy_bounded(r->hosts[0].name, sizeof(r->hosts[0].name), dest->name);
                strcpy_bounded(r->hosts[0].addresses[0].address, DNS_ADDRESS_MAX, dest->name);
                r->hosts[0].n_addresses = 1;
                r->hosts[0].address_security = DNS_INSECURE;
                r->mx_security = DNS_INSECURE;
                snprintf(r->hosts[0].dane_note, sizeof(r->hosts[0].dane_note),
                         "an address literal has no TLSA records");
        } else {
                char err[256];
                ret = dns_open(&cfg->dns, &d, err, sizeof(err));
                if (ret < 0) {
                        snprintf(r->error, sizeof(r->error), "%s", err);
                        ret = ret == -ENOMEM ? ret : 0;
                        goto out;
                }
                if (dest->literal) {
                        r->hosts = calloc(1, sizeof(*r->hosts));
                        if (!r->hosts) {
                                ret = -ENOMEM;
                                goto out;
                        }
                        r->n_hosts = 1;
                        strcpy_bounded(r->hosts[0].name, sizeof(r->hosts[0].name), dest->name);
                } else {
                        struct dns_lookup mx = { .name = dest->name, .type = DNS_TYPE_MX };
                        ret = dns_lookup_all(d, &mx, 1, deadline);
                        if (ret == 0)
                                ret = hosts_from_mx(cfg, &mx, r);
                        dns_lookup_done(&mx);
                        if (ret < 0)
                                goto out;
                }
                if (r->n_hosts > 0) {
                        ret = resolve_hosts(cfg, d, r, deadline);
                        if (ret < 0)
                                goto out;
                        if (dest->literal)
                                r->mx_security = r->hosts[0].address_security;
                }
        }
        ret = converse_all(cfg, r, deadline);
        if (ret == 0 && r->n_hosts > 0 && !r->error[0]) {
                size_t addresses = 0;
                for (size_t i = 0; i < r->n_hosts; i++)
                        addresses += r->hosts[i].n_addresses;
                if (addresses == 0)
                        snprintf(r->error, sizeof(r->error),
                                 "no mail host of %.200s has an address", dest->name);
        }
out:
        if (sts_started)
                pthread_join(sts.thread, NULL);
        if (ret == -ECANCELED) {
                r->cancelled = true;
                snprintf(r->error, sizeof(r->error), "cancelled: the daemon stops");
        }
        dns_close(d);
        r->elapsed_usec = now_monotonic_usec() - start;
        return ret;
}

bool probe_report_transient(const struct probe_report *r)
{
        if (r->cancelled || r->mx_security == DNS_FAILED)
                return true;
        for (size_t i = 0; i < r->n_hosts; i++) {
                const struct probe_host *h = &r->hosts[i];
                if (h->address_security == DNS_FAILED || h->dane == DANE_FAILED)
                        return true;
                for (size_t j = 0; j < h->n_addresses; j++) {
                        int st = h->addresses[j].status;
                        if (st == -ETIMEDOUT || st == -EAGAIN || st == -ECANCELED)
                                return true;
                }
        }
        return false;
}

void probe_report_done(struct probe_report *r)
{
        if (!r)
                return;
        for (size_t i = 0; i < r->n_hosts; i++) {
                for (size_t j = 0; j < r->hosts[i].n_addresses; j++)
                        smtp_probe_result_done(&r->hosts[i].addresses[j].smtp);
                free(r->hosts[i].addresses);
                free(r->hosts[i].tlsa);
        }
        free(r->hosts);
        r->hosts = NULL;
        r->n_hosts = 0;
}
