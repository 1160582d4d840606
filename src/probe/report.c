/* report.c - the JSON form of a destination probe's report and its verdicts (see report.h).
 * Any thread; no globals. */
#include "probe/report.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "metrics.h"
#include "probe/probe_conn.h"
#include "util.h"

static const char *security_name(enum dns_security s)
{
        static const char *const names[] = { "insecure", "secure", "bogus", "failed" };
        return (unsigned)s < ARRAY_SIZE(names) ? names[s] : "failed";
}

static const char *dane_name(enum dane_state s)
{
        static const char *const names[] = { "none", "usable", "unusable", "failed" };
        return (unsigned)s < ARRAY_SIZE(names) ? names[s] : "failed";
}

static json_t *string_or_null(const char *s)
{
        return s && *s ? json_string(s) : json_null();
}

static json_t *time_or_null(time_t t)
{
        struct tm tm;
        char buf[32];
        if (t <= 0 || !gmtime_r(&t, &tm) || !strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm))
                return json_null();
        return json_string(buf);
}

/* The evidence of one address as core/probe_verdict.h takes it; names points into a. */
static void evidence_of(const struct probe_host *h, const struct probe_address *a,
                        const char *names[1], struct probe_evidence *e)
{
        const struct smtp_probe_result *s = &a->smtp;
        *e = (struct probe_evidence){
                .hostname = h->name,
                .connected = s->connected,
                .smtp_ok = s->ehlo_ok,
                .starttls_offered =
                    s->starttls_offered || (s->handshake_ok && !s->starttls_offered),
                .handshake_ok = s->handshake_ok,
                .trusted = s->trusted,
                /* fingerprint matches with Postfix's digest (SHA-256 unless said otherwise) */
                .cert_fingerprint = s->digest_name[0] ? s->cert_digest : s->sha256_fingerprint,
                .pubkey_fingerprint = s->digest_name[0] ? s->pubkey_digest : s->pubkey_sha256,
                .dane = h->dane,
                .dane_verified = s->dane_verified,
                .error = s->error,
        };
        if (s->n_dns_names > 0) {
                e->cert_names = (const char *const *)s->dns_names;
                e->n_cert_names = s->n_dns_names;
        } else if (s->common_name[0]) {
                names[0] = s->common_name;
                e->cert_names = names;
                e->n_cert_names = 1;
        }
}

/* Whether one address passes level: the verdict, and in wrapper mode (port 465, TLS from the
 * first byte: smtp_tls_wrappermode) no level below encrypt can deliver. */
static bool address_passes(const struct probe_report *r, const struct probe_host *h,
                           const struct probe_address *a, const struct probe_target *t,
                           enum tls_level level, char *why, size_t size)
{
        const char *names[1];
        struct probe_evidence e;
        evidence_of(h, a, names, &e);
        if (!probe_would_pass(level, &e, t, why, size))
                return false;
        if (r->dest.port == 465 && (level == TLS_LEVEL_NONE || level == TLS_LEVEL_MAY)) {
                snprintf(why, size,
                         "port 465 speaks TLS from the first byte: Postfix needs "
                         "smtp_tls_wrappermode = yes and a level of encrypt or above");
                return false;
        }
        return true;
}

/* "mx.example.com 192.0.2.1", or the address alone when the host is that address (a literal). */
static const char *where(const struct probe_host *h, const struct probe_address *a, char *buf,
                         size_t size)
{
        if (streq(h->name, a->address))
                snprintf(buf, size, "%s", a->address);
        else
                snprintf(buf, size, "%.120s %s", h->name, a->address);
        return buf;
}

bool probe_report_passes(const struct probe_report *r, const struct probe_target *t,
                         enum tls_level level, char *reason, size_t size)
{
        char at[180];
        size_t reachable = 0;
        char unreachable[400] = "";
        reason[0] = 0;
        if (r->error[0]) {
                snprintf(reason, size, "%s", r->error);
                return false;
        }
        /* Postfix tries the next address (and MX) when one does not answer: the destination is
         * judged by the addresses that answered, and fails only if none did */
        for (size_t i = 0; i < r->n_hosts; i++) {
                const struct probe_host *h = &r->hosts[i];
                for (size_t j = 0; j < h->n_addresses; j++) {
                        const struct probe_address *a = &h->addresses[j];
                        char why[256];
                        if (!a->smtp.connected) {
                                if (!unreachable[0])
                                        snprintf(unreachable, sizeof(unreachable),
                                                 "%s: not reachable: %.150s",
                                                 where(h, a, at, sizeof(at)),
                                                 a->smtp.error[0] ? a->smtp.error : "not probed");
                                continue;
                        }
                        reachable++;
                        if (!address_passes(r, h, a, t, level, why, sizeof(why))) {
                                snprintf(reason, size, "%s: %s", where(h, a, at, sizeof(at)), why);
                                return false;
                        }
                }
        }
        if (reachable == 0)
                snprintf(reason, size, "%s",
                         unreachable[0] ? unreachable : "no address was probed");
        return reachable > 0;
}

static json_t *certificate_json(const struct smtp_probe_result *s)
{
        if (!s->sha256_fingerprint[0])
                return json_null();
        json_t *names = json_array(), *chain = json_array();
        for (size_t i = 0; i < s->n_dns_names; i++)
                json_array_append_new(names, json_string(s->dns_names[i]));
        for (size_t i = 0; i < s->n_chain; i++) {
                const struct smtp_probe_chain_cert *c = &s->chain[i];
                json_array_append_new(
                    chain, json_pack("{s:s, s:s, s:o, s:o, s:s}", "subject", c->subject, "issuer",
                                     c->issuer, "not_before", time_or_null(c->not_before),
                                     "not_after", time_or_null(c->not_after), "sha256_fingerprint",
                                     c->sha256_fingerprint));
        }
        json_t *other = s->digest_name[0]
                            ? json_pack("{s:s, s:s, s:s}", "digest", s->digest_name, "fingerprint",
                                        s->cert_digest, "pubkey_fingerprint", s->pubkey_digest)
                            : json_null();
        return json_pack(
            "{s:s, s:s, s:o, s:o, s:o, s:o, s:s, s:s, s:s, s:o, s:o}", "subject", s->subject,
            "issuer", s->issuer, "common_name", string_or_null(s->common_name), "dns_names", names,
            "not_before", time_or_null(s->not_before), "not_after", time_or_null(s->not_after),
            "key_type", s->key_type, "sha256_fingerprint", s->sha256_fingerprint,
            "pubkey_sha256_fingerprint", s->pubkey_sha256, "postfix_digest", other, "chain", chain);
}

/* would_pass {level: bool} and reasons {level: "why"} (only failing levels) of one address. */
static void verdicts_json(const struct probe_report *r, const struct probe_host *h,
                          const struct probe_address *a, const struct probe_target *t,
                          json_t **would, json_t **reasons)
{
        *would = json_object();
        *reasons = json_object();
        for (int l = 0; l < _TLS_LEVEL_MAX; l++) {
                char why[256];
                bool pass = address_passes(r, h, a, t, (enum tls_level)l, why, sizeof(why));
                json_object_set_new(*would, tls_level_to_string((enum tls_level)l),
                                    json_boolean(pass));
                if (!pass)
                        json_object_set_new(*reasons, tls_level_to_string((enum tls_level)l),
                                            json_string(why));
        }
}

static json_t *address_json(const struct probe_report *r, const struct probe_host *h,
                            const struct probe_address *a, const struct probe_target *t)
{
        const struct smtp_probe_result *s = &a->smtp;
        json_t *would, *reasons;
        verdicts_json(r, h, a, t, &would, &reasons);
        json_t *tls = s->handshake_ok
                          ? json_pack("{s:s, s:s, s:o}", "protocol", s->protocol, "cipher",
                                      s->cipher, "group", string_or_null(s->group))
                          : json_null();
        return json_pack(
            "{s:s, s:i, s:b, s:o, s:b, s:o, s:o, s:b, s:o, s:o, s:o, s:o, s:I, s:o, s:o}",
            "address", a->address, "port", (int)r->dest.port, "connected", s->connected, "banner",
            string_or_null(s->banner), "starttls",
            s->starttls_offered || (r->dest.port == 465 && s->handshake_ok), "tls", tls,
            "certificate", certificate_json(s), "trusted", s->trusted, "trust_error",
            s->handshake_ok ? string_or_null(s->trust_error) : json_null(), "dane_verified",
            s->dane_checked ? json_boolean(s->dane_verified) : json_null(), "dane_error",
            s->dane_checked ? string_or_null(s->dane_error) : json_null(), "error",
            string_or_null(s->error), "duration_ms", (json_int_t)(a->elapsed_usec / 1000),
            "would_pass", would, "reasons", reasons);
}

static json_t *tlsa_records_json(const struct probe_host *h)
{
        json_t *list = json_array();
        for (size_t i = 0; i < h->n_tlsa; i++) {
                const struct dns_tlsa *x = &h->tlsa[i];
                char text[16 + 2 * DNS_TLSA_DATA_MAX];
                int n = snprintf(text, sizeof(text), "%u %u %u ", x->usage, x->selector, x->mtype);
                for (size_t k = 0; k < x->len && n + 3 < (int)sizeof(text); k++)
                        n += snprintf(text + n, sizeof(text) - (size_t)n, "%02x", x->data[k]);
                json_array_append_new(list, json_string(text));
        }
        return list;
}

static json_t *host_json(const struct probe_report *r, const struct probe_host *h,
                         const struct probe_target *t)
{
        json_t *addresses = json_array();
        for (size_t j = 0; j < h->n_addresses; j++)
                json_array_append_new(addresses, address_json(r, h, &h->addresses[j], t));
        json_t *tlsa =
            json_pack("{s:s, s:s, s:o, s:o, s:I}", "dnssec", security_name(h->tlsa_security),
                      "dane", dane_name(h->dane), "note", string_or_null(h->dane_note), "records",
                      tlsa_records_json(h), "unusable", (json_int_t)h->n_tlsa_unusable);
        json_t *sts = r->mta_sts.has_policy
                          ? json_boolean(mtasts_mx_matches(&r->mta_sts.policy, h->name))
                          : json_null();
        return json_pack("{s:s, s:i, s:s, s:o, s:o, s:o, s:o}", "name", h->name, "preference",
                         (int)h->preference, "dnssec", security_name(h->address_security), "error",
                         string_or_null(h->address_error), "tlsa", tlsa, "mta_sts_match", sts,
                         "addresses", addresses);
}

/* Text from the network (a TXT record, a policy's lines, errors quoting them) as printable
 * ASCII: JSON strings must be UTF-8, and a cut multi-byte character or a raw byte is not. */
static json_t *printable_or_null(const char *s)
{
        char buf[512];
        if (!s || !*s)
                return json_null();
        probe_copy_printable(buf, sizeof(buf), s, strlen(s));
        return json_string(buf);
}

static json_t *mta_sts_json(const struct mtasts_result *m)
{
        if (!m->looked_up)
                return json_null();
        json_t *policy = json_null();
        if (m->has_policy) {
                json_t *mx = json_array();
                for (size_t i = 0; i < m->policy.n_mx; i++)
                        json_array_append_new(mx, printable_or_null(m->policy.mx[i]));
                policy = json_pack("{s:s, s:I, s:o}", "mode", mtasts_mode_name(m->policy.mode),
                                   "max_age", (json_int_t)m->policy.max_age, "mx", mx);
        }
        return json_pack("{s:o, s:o, s:s, s:o, s:o}", "record",
                         m->has_record ? printable_or_null(m->record) : json_null(), "id",
                         printable_or_null(m->id), "dnssec", security_name(m->txt_security),
                         "policy", policy, "error", printable_or_null(m->error));
}

json_t *probe_report_json(const struct probe_report *r, const struct probe_target *t,
                          enum tls_level asked, bool cached)
{
        json_t *hosts = json_array(), *would = json_object(), *reasons = json_object();
        bool pass[_TLS_LEVEL_MAX];
        for (size_t i = 0; i < r->n_hosts; i++)
                json_array_append_new(hosts, host_json(r, &r->hosts[i], t));
        for (int l = 0; l < _TLS_LEVEL_MAX; l++) {
                char why[512];
                pass[l] = probe_report_passes(r, t, (enum tls_level)l, why, sizeof(why));
                json_object_set_new(would, tls_level_to_string((enum tls_level)l),
                                    json_boolean(pass[l]));
                if (!pass[l])
                        json_object_set_new(reasons, tls_level_to_string((enum tls_level)l),
                                            json_string(why));
        }
        enum tls_level best = probe_recommended(pass);
        const char *kind = r->dest.literal      ? "literal"
                           : r->dest.subdomains ? "subdomains"
                                                : "domain";
        json_t *mx = r->dest.literal
                         ? json_null()
                         : json_pack("{s:s, s:b}", "dnssec", security_name(r->mx_security),
                                     "implicit", r->implicit_mx);
        bool asked_ok = asked < _TLS_LEVEL_MAX && pass[asked];
        json_t *out = json_pack(
            "{s:s, s:s, s:s, s:i, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:I, s:b}", "destination",
            r->dest.key, "kind", kind, "nexthop", r->dest.name, "port", (int)r->dest.port, "mx", mx,
            "error", string_or_null(r->error), "hosts", hosts, "would_pass", would, "reasons",
            reasons, "recommended",
            best < _TLS_LEVEL_MAX ? json_string(tls_level_to_string(best)) : json_null(), "level",
            asked < _TLS_LEVEL_MAX ? json_string(tls_level_to_string(asked)) : json_null(),
            "passes", asked < _TLS_LEVEL_MAX ? json_boolean(asked_ok) : json_null(), "duration_ms",
            (json_int_t)(r->elapsed_usec / 1000), "cached", cached);
        if (out) {
                json_object_set_new(out, "mta_sts", mta_sts_json(&r->mta_sts));
                json_object_set_new(out, "probed_at", time_or_null(r->probed_at));
        }
        return out;
}

const char *probe_outcome(json_t *report)
{
        if (!report)
                return "cancelled";
        if (!json_is_true(json_object_get(json_object_get(report, "would_pass"), "none")))
                return "unreachable";
        json_t *passes = json_object_get(report, "passes");
        if (json_is_null(passes) || !passes)
                return "reachable";
        return json_is_true(passes) ? "passed" : "failed";
}

void probe_count_outcome(const char *outcome, bool cached)
{
        static const struct {
                const char *name;
                enum metric_counter counter;
        } counters[] = {
                { "passed", METRIC_PROBES_PASSED },
                { "failed", METRIC_PROBES_FAILED },
                { "unreachable", METRIC_PROBES_UNREACHABLE },
                { "reachable", METRIC_PROBES_REACHABLE },
                { "cancelled", METRIC_PROBES_CANCELLED },
        };
        for (size_t i = 0; i < ARRAY_SIZE(counters); i++)
                if (streq(outcome, counters[i].name))
                        metrics_count(counters[i].counter, 1);
        if (cached)
                metrics_count(METRIC_PROBES_CACHED, 1);
}
