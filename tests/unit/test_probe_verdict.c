/* test_probe_verdict.c - what each TLS level would do with one mail server (core/probe_verdict.c):
 * Postfix's certificate name match as tables (hostname, nexthop, dot-nexthop, .domain, names,
 * multi-label wildcards and the textual sub-domain quirk), then every level against passing and
 * failing evidence with the reason in words, the default match lists, fingerprints with and
 * without colons and in either case, the DANE states, reasons that do not fit their buffer, and
 * the recommended level. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <cmocka.h>

#include "core/probe_verdict.h"
#include "util.h"

/* The leaf's SHA-256 and its public key's, as an x509 fingerprint prints them. */
#define FP_CERT                                                                                    \
        "AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:"  \
        "45:67:89"
#define FP_KEY                                                                                     \
        "0F:1E:2D:3C:4B:5A:69:78:87:96:A5:B4:C3:D2:E1:F0:0F:1E:2D:3C:4B:5A:69:78:87:96:A5:B4:C3:"  \
        "D2:E1:F0"
#define FP_KEY_PLAIN_LOWER "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0"
#define FP_CERT_MIXED                                                                              \
        "abcdef0123456789ABCDEF01:23:45:67:89:ab:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89"
#define FP_OTHER                                                                                   \
        "AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:"  \
        "45:67:88"
/* FP_CERT without its last byte, and with one more */
#define FP_CERT_SHORT                                                                              \
        "AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:"  \
        "45:67"
#define FP_CERT_LONG FP_CERT ":00"

#define TLSA_FAILED "TLSA lookup failed (DNSSEC bogus or no answer): delivery defers"

/* ---- certificate names ---- */

static void test_name_matches(void **state)
{
        static const struct {
                const char *cert, *pattern, *nexthop, *hostname;
                bool match;
        } rows[] = {
                /* hostname */
                { "mx.example.com", "hostname", "example.com", "mx.example.com", true },
                { "MX.Example.COM", "hostname", "example.com", "mx.example.com", true },
                { "mx.example.com", "hostname", "example.com", "MX.EXAMPLE.COM", true },
                { "mx.example.com", "HostName", "example.com", "mx.example.com", true },
                { "example.com", "hostname", "example.com", "mx.example.com", false },
                { "mx.example.com.evil", "hostname", "example.com", "mx.example.com", false },
                { "x.mx.example.com", "hostname", "example.com", "mx.example.com", false },
                /* nexthop */
                { "example.com", "nexthop", "example.com", "mx.example.com", true },
                { "EXAMPLE.com", "NEXTHOP", "example.com", "mx.example.com", true },
                { "mx.example.com", "nexthop", "example.com", "mx.example.com", false },
                /* dot-nexthop: a proper sub-domain, at a label boundary */
                { "mx.example.com", "dot-nexthop", "example.com", "mx.example.com", true },
                { "a.b.example.com", "dot-nexthop", "example.com", "x", true },
                { "A.Example.Com", "dot-nexthop", "example.com", "x", true },
                { "example.com", "dot-nexthop", "example.com", "x", false },
                { ".example.com", "dot-nexthop", "example.com", "x", false },
                { "xexample.com", "dot-nexthop", "example.com", "x", false },
                { "mx.example.com.evil", "dot-nexthop", "example.com", "x", false },
                /* Postfix compares the text in sub-domain mode: a wildcard is just a name */
                { "*.example.com", "dot-nexthop", "example.com", "x", true },
                { "*.a.example.com", "dot-nexthop", "example.com", "x", true },
                { "*.com", "dot-nexthop", "example.com", "x", false },
                /* .domain */
                { "mx.example.net", ".example.net", "example.com", "x", true },
                { "a.b.EXAMPLE.net", ".Example.NET", "example.com", "x", true },
                { "example.net", ".example.net", "example.com", "x", false },
                { "xexample.net", ".example.net", "example.com", "x", false },
                { "*.example.net", ".example.net", "example.com", "x", true },
                /* "." alone is a name, not every sub-domain of the root */
                { "mx.example.com", ".", "example.com", "mx.example.com", false },
                { "com", ".", "example.com", "mx.example.com", false },
                /* a name */
                { "mx.example.net", "mx.example.net", "example.com", "x", true },
                { "MX.example.NET", "mx.EXAMPLE.net", "example.com", "x", true },
                { "mx.example.net", "example.net", "example.com", "x", false },
                { "example.net", "mx.example.net", "example.com", "x", false },
                /* a name pattern that looks like a keyword only when spelled exactly */
                { "hostnames", "hostnames", "example.com", "mx.example.com", true },
                { "mx.example.com", "hostnames", "example.com", "mx.example.com", false },
                /* wildcards: one or more labels under the rest, never the rest itself */
                { "*.example.com", "hostname", "example.com", "mx.example.com", true },
                { "*.example.com", "hostname", "example.com", "a.b.example.com", true },
                { "*.example.com", "hostname", "example.com", "a.b.c.example.com", true },
                { "*.EXAMPLE.com", "hostname", "example.com", "MX.example.COM", true },
                { "*.example.com", "hostname", "example.com", "example.com", false },
                { "*.example.com", "hostname", "example.com", "xexample.com", false },
                { "*.example.com", "hostname", "example.com", "a.xexample.com", false },
                { "*.example.com", "hostname", "example.com", "mx.example.net", false },
                { "*.example.com", "hostname", "example.com", "mx", false },
                { "*.example.com", "nexthop", "example.com", "mx.example.com", false },
                { "*.example.com", "nexthop", "mail.example.com", "x", true },
                { "*.example.com", "mx.example.com", "example.net", "x", true },
                /* Postfix's default: any label count, so "*.com" covers all of .com */
                { "*.com", "hostname", "example.com", "mx.example.com", true },
                { "*.com", "hostname", "example.com", "com", false },
                /* not wildcards: the star must be the whole first label, with something after */
                { "*.", "hostname", "example.com", "mx.example.com", false },
                { "*", "hostname", "example.com", "mx.example.com", false },
                { "*mx.example.com", "hostname", "example.com", "mx.example.com", false },
                { "m*.example.com", "hostname", "example.com", "mx.example.com", false },
                { "mx.*.com", "hostname", "example.com", "mx.example.com", false },
                { "*.example.com", "hostname", "example.com", "*.example.com", true }, /* text */
                /* empty or missing parts never match */
                { "", "hostname", "example.com", "", false },
                { "", "nexthop", "", "mx.example.com", false },
                { "mx.example.com", "", "example.com", "mx.example.com", false },
                { "mx.example.com", NULL, "example.com", "mx.example.com", false },
                { NULL, "hostname", "example.com", "mx.example.com", false },
                { "mx.example.com", "hostname", "example.com", NULL, false },
                { "mx.example.com", "hostname", "example.com", "", false },
                { "example.com", "nexthop", NULL, "mx.example.com", false },
                { "foo.", "dot-nexthop", "", "mx.example.com", false },
                { "foo.", "dot-nexthop", NULL, "mx.example.com", false },
                { "*.x", "hostname", "example.com", "", false },
                { "*.x", "nexthop", "", "", false },
        };
        for (size_t i = 0; i < ARRAY_SIZE(rows); i++)
                if (probe_name_matches(rows[i].cert, rows[i].pattern, rows[i].nexthop,
                                       rows[i].hostname) != rows[i].match)
                        fail_msg(
                            "row %zu: '%s' against '%s' (nexthop '%s', hostname '%s'): want %s", i,
                            rows[i].cert ? rows[i].cert : "(null)",
                            rows[i].pattern ? rows[i].pattern : "(null)",
                            rows[i].nexthop ? rows[i].nexthop : "(null)",
                            rows[i].hostname ? rows[i].hostname : "(null)",
                            rows[i].match ? "match" : "no match");
}

/* ---- the verdict per level ---- */

/* What a row takes away from the evidence of a server that does everything right. */
enum {
        NO_CONNECT = 1 << 0,
        NO_SMTP = 1 << 1,
        NO_STARTTLS = 1 << 2,
        NO_HANDSHAKE = 1 << 3,
        NO_TRUST = 1 << 4,
        NO_DANE_VERIFY = 1 << 5,
};

static const char *const names_mx[] = { "mx.example.com" };
static const char *const names_apex[] = { "example.com" };
static const char *const names_wild[] = { "*.example.com" };
static const char *const names_other[] = { "mx.example.net", "mail.example.org" };
static const char *const names_second[] = { "mx.example.net", "mx.example.com" };
static const char *const names_mixed[] = { "MX.EXAMPLE.COM" };

#define NAMES(a) a, ARRAY_SIZE(a)

static const char *const m_nexthop[] = { "nexthop" };
static const char *const m_hostname[] = { "hostname" };
static const char *const m_two[] = { "nexthop", ".example.net" };
static const char *const m_net[] = { ".example.net" };
static const char *const fp_cert[] = { FP_CERT };
static const char *const fp_key_plain[] = { FP_KEY_PLAIN_LOWER };
static const char *const fp_mixed[] = { FP_CERT_MIXED };
static const char *const fp_other[] = { FP_OTHER };
static const char *const fp_many[] = { FP_OTHER, FP_KEY };
static const char *const fp_short[] = { FP_CERT_SHORT };
static const char *const fp_long[] = { FP_CERT_LONG };
static const char *const fp_junk[] = { "", "ZZ:CD", "sha256:" FP_CERT };

#define MATCH(a) a, ARRAY_SIZE(a)

struct row {
        enum tls_level level;
        unsigned off;             /* NO_... */
        enum dane_state dane;     /* 0: DANE_NONE */
        const char *error;        /* the probe's error, NULL: "" */
        const char *const *names; /* NULL: names_mx */
        size_t n_names;
        const char *const *match;
        size_t n_match;
        bool pass;
        const char *reason; /* the whole reason when it fails */
};

static struct probe_evidence evidence_of(const struct row *r)
{
        return (struct probe_evidence){
                .hostname = "mx.example.com",
                .connected = !(r->off & NO_CONNECT),
                .smtp_ok = !(r->off & NO_SMTP),
                .starttls_offered = !(r->off & NO_STARTTLS),
                .handshake_ok = !(r->off & NO_HANDSHAKE),
                .trusted = !(r->off & NO_TRUST),
                .cert_names = r->names ? r->names : names_mx,
                .n_cert_names = r->names ? r->n_names : ARRAY_SIZE(names_mx),
                .cert_fingerprint = FP_CERT,
                .pubkey_fingerprint = FP_KEY,
                .dane = r->dane,
                .dane_verified = !(r->off & NO_DANE_VERIFY),
                .error = r->error ? r->error : "",
        };
}

#define L(x) TLS_LEVEL_##x

static const struct row verdicts[] = {
        /* none and may: an SMTP conversation is all they need */
        { L(NONE), 0, 0, NULL, NULL, 0, NULL, 0, true, NULL },
        { L(NONE), NO_STARTTLS | NO_HANDSHAKE | NO_TRUST, 0, NULL, NULL, 0, NULL, 0, true, NULL },
        { L(NONE), NO_CONNECT | NO_SMTP, 0, "connect: Connection refused", NULL, 0, NULL, 0, false,
          "not reachable: connect: Connection refused" },
        { L(NONE), NO_CONNECT, 0, NULL, NULL, 0, NULL, 0, false, "not reachable" },
        { L(NONE), NO_SMTP, 0, "greeting: 554 go away", NULL, 0, NULL, 0, false,
          "SMTP conversation failed: greeting: 554 go away" },
        { L(MAY), 0, 0, NULL, NULL, 0, NULL, 0, true, NULL },
        { L(MAY), NO_STARTTLS, 0, NULL, NULL, 0, NULL, 0, true, NULL },
        { L(MAY), NO_HANDSHAKE, 0, "handshake: alert 40", NULL, 0, NULL, 0, true, NULL },
        { L(MAY), NO_CONNECT, 0, "connect: timed out", NULL, 0, NULL, 0, false,
          "not reachable: connect: timed out" },
        { L(MAY), NO_SMTP, 0, "ehlo: 502", NULL, 0, NULL, 0, false,
          "SMTP conversation failed: ehlo: 502" },
        /* encrypt: a completed handshake, whatever the certificate */
        { L(ENCRYPT), 0, 0, NULL, NULL, 0, NULL, 0, true, NULL },
        { L(ENCRYPT), NO_TRUST | NO_DANE_VERIFY, 0, NULL, NAMES(names_other), NULL, 0, true, NULL },
        { L(ENCRYPT), 0, 0, NULL, NULL, 0, NULL, 0, true, NULL },
        { L(ENCRYPT), NO_STARTTLS | NO_HANDSHAKE, 0, NULL, NULL, 0, NULL, 0, false,
          "STARTTLS not offered" },
        { L(ENCRYPT), NO_HANDSHAKE, 0, "handshake: alert 40", NULL, 0, NULL, 0, false,
          "TLS handshake failed: handshake: alert 40" },
        { L(ENCRYPT), NO_HANDSHAKE, 0, NULL, NULL, 0, NULL, 0, false, "TLS handshake failed" },
        { L(ENCRYPT), NO_CONNECT, 0, "connect: refused", NULL, 0, NULL, 0, false,
          "not reachable: connect: refused" },
        /* fingerprint: the leaf's or its key's digest in match, ':' and case aside */
        { L(FINGERPRINT), NO_TRUST, 0, NULL, NULL, 0, MATCH(fp_cert), true, NULL },
        { L(FINGERPRINT), NO_TRUST, 0, NULL, NULL, 0, MATCH(fp_key_plain), true, NULL },
        { L(FINGERPRINT), 0, 0, NULL, NULL, 0, MATCH(fp_mixed), true, NULL },
        { L(FINGERPRINT), 0, 0, NULL, NAMES(names_other), MATCH(fp_many), true, NULL },
        { L(FINGERPRINT), 0, 0, NULL, NULL, 0, MATCH(fp_other), false,
          "certificate fingerprint not in match" },
        { L(FINGERPRINT), 0, 0, NULL, NULL, 0, MATCH(fp_short), false,
          "certificate fingerprint not in match" },
        { L(FINGERPRINT), 0, 0, NULL, NULL, 0, MATCH(fp_long), false,
          "certificate fingerprint not in match" },
        { L(FINGERPRINT), 0, 0, NULL, NULL, 0, MATCH(fp_junk), false,
          "certificate fingerprint not in match" },
        { L(FINGERPRINT), 0, 0, NULL, NULL, 0, NULL, 0, false, "no fingerprint given (match)" },
        { L(FINGERPRINT), NO_STARTTLS, 0, NULL, NULL, 0, MATCH(fp_cert), false,
          "STARTTLS not offered" },
        { L(FINGERPRINT), NO_HANDSHAKE, 0, "handshake: eof", NULL, 0, MATCH(fp_cert), false,
          "TLS handshake failed: handshake: eof" },
        /* verify: trusted, and by default a name matches the MX host name */
        { L(VERIFY), 0, 0, NULL, NULL, 0, NULL, 0, true, NULL },
        { L(VERIFY), 0, 0, NULL, NAMES(names_wild), NULL, 0, true, NULL },
        { L(VERIFY), 0, 0, NULL, NAMES(names_second), NULL, 0, true, NULL },
        { L(VERIFY), 0, 0, NULL, NAMES(names_mixed), NULL, 0, true, NULL },
        { L(VERIFY), 0, 0, NULL, NAMES(names_apex), NULL, 0, false,
          "no certificate name matches hostname" },
        { L(VERIFY), 0, 0, NULL, NAMES(names_other), NULL, 0, false,
          "no certificate name matches hostname" },
        { L(VERIFY), 0, 0, NULL, NULL, 0, NULL, 0, true, NULL },
        { L(VERIFY), NO_TRUST, 0, NULL, NULL, 0, NULL, 0, false, "certificate not trusted" },
        { L(VERIFY), NO_STARTTLS, 0, NULL, NULL, 0, NULL, 0, false, "STARTTLS not offered" },
        { L(VERIFY), NO_HANDSHAKE, 0, "handshake: alert 42", NULL, 0, NULL, 0, false,
          "TLS handshake failed: handshake: alert 42" },
        { L(VERIFY), 0, 0, NULL, NAMES(names_apex), MATCH(m_nexthop), true, NULL },
        { L(VERIFY), 0, 0, NULL, NULL, 0, MATCH(m_nexthop), false,
          "no certificate name matches nexthop" },
        { L(VERIFY), 0, 0, NULL, NAMES(names_other), MATCH(m_two), true, NULL },
        { L(VERIFY), 0, 0, NULL, NULL, 0, MATCH(m_two), false,
          "no certificate name matches nexthop, .example.net" },
        { L(VERIFY), 0, 0, NULL, NULL, 0, NULL, 0, true, NULL },
        { L(VERIFY), 0, 0, NULL, names_mx, 0, NULL, 0, false,
          "no certificate name matches hostname" },
        /* secure: by default nexthop or one of its sub-domains, never the MX name as such */
        { L(SECURE), 0, 0, NULL, NULL, 0, NULL, 0, true, NULL },
        { L(SECURE), 0, 0, NULL, NAMES(names_apex), NULL, 0, true, NULL },
        { L(SECURE), 0, 0, NULL, NAMES(names_wild), NULL, 0, true, NULL },
        { L(SECURE), 0, 0, NULL, NAMES(names_other), NULL, 0, false,
          "no certificate name matches nexthop, dot-nexthop" },
        { L(SECURE), NO_TRUST, 0, NULL, NULL, 0, NULL, 0, false, "certificate not trusted" },
        { L(SECURE), NO_STARTTLS, 0, NULL, NULL, 0, NULL, 0, false, "STARTTLS not offered" },
        { L(SECURE), 0, 0, NULL, NAMES(names_apex), MATCH(m_hostname), false,
          "no certificate name matches hostname" },
        { L(SECURE), 0, 0, NULL, NAMES(names_other), MATCH(m_net), true, NULL },
        /* dane: by the TLSA records */
        { L(DANE), 0, DANE_USABLE, NULL, NULL, 0, NULL, 0, true, NULL },
        { L(DANE), NO_TRUST, DANE_USABLE, NULL, NAMES(names_other), NULL, 0, true, NULL },
        { L(DANE), NO_DANE_VERIFY, DANE_USABLE, NULL, NULL, 0, NULL, 0, false,
          "TLSA records present but the certificate matches none" },
        { L(DANE), NO_STARTTLS, DANE_USABLE, NULL, NULL, 0, NULL, 0, false,
          "STARTTLS not offered" },
        { L(DANE), NO_HANDSHAKE, DANE_USABLE, "handshake: alert 48", NULL, 0, NULL, 0, false,
          "TLS handshake failed: handshake: alert 48" },
        { L(DANE), NO_TRUST | NO_DANE_VERIFY, DANE_UNUSABLE, NULL, NULL, 0, NULL, 0, true, NULL },
        { L(DANE), NO_STARTTLS, DANE_UNUSABLE, NULL, NULL, 0, NULL, 0, false,
          "STARTTLS not offered" },
        { L(DANE), NO_HANDSHAKE, DANE_UNUSABLE, "handshake: eof", NULL, 0, NULL, 0, false,
          "TLS handshake failed: handshake: eof" },
        { L(DANE), NO_STARTTLS | NO_DANE_VERIFY, DANE_NONE, NULL, NULL, 0, NULL, 0, true, NULL },
        { L(DANE), NO_HANDSHAKE | NO_DANE_VERIFY, DANE_NONE, NULL, NULL, 0, NULL, 0, true, NULL },
        { L(DANE), NO_CONNECT, DANE_NONE, "connect: refused", NULL, 0, NULL, 0, false,
          "not reachable: connect: refused" },
        { L(DANE), 0, DANE_FAILED, NULL, NULL, 0, NULL, 0, false, TLSA_FAILED },
        /* dane-only: usable records and a verified handshake, nothing else */
        { L(DANE_ONLY), 0, DANE_USABLE, NULL, NULL, 0, NULL, 0, true, NULL },
        { L(DANE_ONLY), NO_TRUST, DANE_USABLE, NULL, NAMES(names_other), NULL, 0, true, NULL },
        { L(DANE_ONLY), NO_DANE_VERIFY, DANE_USABLE, NULL, NULL, 0, NULL, 0, false,
          "TLSA records present but the certificate matches none" },
        { L(DANE_ONLY), NO_STARTTLS, DANE_USABLE, NULL, NULL, 0, NULL, 0, false,
          "STARTTLS not offered" },
        { L(DANE_ONLY), 0, DANE_UNUSABLE, NULL, NULL, 0, NULL, 0, false,
          "TLSA records present but none usable: dane-only defers" },
        { L(DANE_ONLY), 0, DANE_NONE, NULL, NULL, 0, NULL, 0, false,
          "no DNSSEC-validated TLSA records" },
        { L(DANE_ONLY), 0, DANE_FAILED, NULL, NULL, 0, NULL, 0, false, TLSA_FAILED },
        { L(DANE_ONLY), NO_SMTP, DANE_USABLE, "greeting: timed out", NULL, 0, NULL, 0, false,
          "SMTP conversation failed: greeting: timed out" },
        /* no such level */
        { _TLS_LEVEL_MAX, 0, 0, NULL, NULL, 0, NULL, 0, false, "unknown TLS level" },
};

static void test_would_pass(void **state)
{
        char reason[256];
        for (size_t i = 0; i < ARRAY_SIZE(verdicts); i++) {
                const struct row *r = &verdicts[i];
                struct probe_evidence e = evidence_of(r);
                struct probe_target t = { "example.com", r->match, r->n_match, NULL, NULL };
                strcpy(reason, "junk");
                bool pass = probe_would_pass(r->level, &e, &t, reason, sizeof(reason));
                if (pass != r->pass)
                        fail_msg("row %zu (level %d): %s, want %s (%s)", i, (int)r->level,
                                 pass ? "passes" : "fails", r->pass ? "pass" : "fail", reason);
                if (!streq(reason, r->pass ? "" : r->reason))
                        fail_msg("row %zu (level %d): reason '%s', want '%s'", i, (int)r->level,
                                 reason, r->pass ? "" : r->reason);
        }
}

/* No match list is the level's default, whether match is NULL, n_match 0 or the target NULL. */
static void test_default_match_lists(void **state)
{
        static const char *const unused[] = { "mx.example.net" };
        struct probe_evidence e = evidence_of(&(struct row){ 0 });
        const struct probe_target targets[] = {
                { "example.com", NULL, 0, NULL, NULL },
                { "example.com", unused, 0, NULL, NULL },
                { "example.com", NULL, 3, NULL, NULL },
        };
        char reason[128];
        for (size_t i = 0; i < ARRAY_SIZE(targets); i++) {
                assert_true(
                    probe_would_pass(TLS_LEVEL_VERIFY, &e, &targets[i], reason, sizeof(reason)));
                assert_true(
                    probe_would_pass(TLS_LEVEL_SECURE, &e, &targets[i], reason, sizeof(reason)));
                assert_false(probe_would_pass(TLS_LEVEL_FINGERPRINT, &e, &targets[i], reason,
                                              sizeof(reason)));
                assert_string_equal(reason, "no fingerprint given (match)");
        }
        /* hostname for verify: the apex name is not the MX name */
        e.cert_names = names_apex;
        assert_false(probe_would_pass(TLS_LEVEL_VERIFY, &e, &targets[0], reason, sizeof(reason)));
        assert_string_equal(reason, "no certificate name matches hostname");
        assert_true(probe_would_pass(TLS_LEVEL_SECURE, &e, &targets[0], reason, sizeof(reason)));
        /* nexthop, dot-nexthop for secure: the MX name under another domain is neither */
        e.hostname = "mx.example.net";
        e.cert_names = (const char *const[]){ "mx.example.net" };
        assert_true(probe_would_pass(TLS_LEVEL_VERIFY, &e, &targets[0], reason, sizeof(reason)));
        assert_false(probe_would_pass(TLS_LEVEL_SECURE, &e, &targets[0], reason, sizeof(reason)));
        assert_string_equal(reason, "no certificate name matches nexthop, dot-nexthop");
        /* no target at all: no nexthop, so secure's defaults cannot match */
        assert_true(probe_would_pass(TLS_LEVEL_VERIFY, &e, NULL, reason, sizeof(reason)));
        assert_false(probe_would_pass(TLS_LEVEL_SECURE, &e, NULL, reason, sizeof(reason)));
        assert_false(probe_would_pass(TLS_LEVEL_FINGERPRINT, &e, NULL, reason, sizeof(reason)));
        assert_string_equal(reason, "no fingerprint given (match)");
}

/* main.cf's smtp_tls_verify_cert_match and smtp_tls_secure_cert_match replace Postfix's
 * defaults when the policy has no match list (and a policy's list still wins). */
static void test_maincf_match_lists(void **state)
{
        static const char *const apex[] = { "example.com" };
        struct probe_evidence e = evidence_of(&(struct row){ 0 });
        struct probe_target t = { "example.com", NULL, 0, NULL, NULL };
        char reason[160];
        e.cert_names = apex;
        e.n_cert_names = 1;

        assert_false(probe_would_pass(TLS_LEVEL_VERIFY, &e, &t, reason, sizeof(reason)));
        assert_string_equal(reason, "no certificate name matches hostname");
        t.verify_default = "nexthop";
        assert_true(probe_would_pass(TLS_LEVEL_VERIFY, &e, &t, reason, sizeof(reason)));
        t.verify_default = " hostname,\tnexthop ";
        assert_true(probe_would_pass(TLS_LEVEL_VERIFY, &e, &t, reason, sizeof(reason)));
        t.verify_default = "";
        assert_false(probe_would_pass(TLS_LEVEL_VERIFY, &e, &t, reason, sizeof(reason)));

        t.secure_default = "dot-nexthop";
        assert_false(probe_would_pass(TLS_LEVEL_SECURE, &e, &t, reason, sizeof(reason)));
        assert_string_equal(reason, "no certificate name matches dot-nexthop");
        t.secure_default = "hostname:nexthop";
        assert_true(probe_would_pass(TLS_LEVEL_SECURE, &e, &t, reason, sizeof(reason)));

        static const char *const policy[] = { "other.example" };
        t.match = policy;
        t.n_match = 1;
        assert_false(probe_would_pass(TLS_LEVEL_SECURE, &e, &t, reason, sizeof(reason)));
        assert_string_equal(reason, "no certificate name matches other.example");
}

/* Missing evidence parts: no names, no fingerprints, no host name, no evidence. */
static void test_missing_evidence(void **state)
{
        struct probe_evidence e = evidence_of(&(struct row){ 0 });
        struct probe_target t = { "example.com", NULL, 0, NULL, NULL };
        char reason[128];

        e.cert_names = NULL;
        e.n_cert_names = 1;
        assert_false(probe_would_pass(TLS_LEVEL_VERIFY, &e, &t, reason, sizeof(reason)));
        assert_string_equal(reason, "no certificate name matches hostname");
        assert_true(probe_would_pass(TLS_LEVEL_ENCRYPT, &e, &t, reason, sizeof(reason)));

        e = evidence_of(&(struct row){ 0 });
        e.cert_fingerprint = e.pubkey_fingerprint = NULL;
        t.match = fp_cert;
        t.n_match = 1;
        assert_false(probe_would_pass(TLS_LEVEL_FINGERPRINT, &e, &t, reason, sizeof(reason)));
        assert_string_equal(reason, "certificate fingerprint not in match");

        e = evidence_of(&(struct row){ 0 });
        e.hostname = NULL;
        e.error = NULL;
        t = (struct probe_target){ NULL, NULL, 0, NULL, NULL };
        assert_false(probe_would_pass(TLS_LEVEL_VERIFY, &e, &t, reason, sizeof(reason)));
        e.connected = false;
        assert_false(probe_would_pass(TLS_LEVEL_NONE, &e, &t, reason, sizeof(reason)));
        assert_string_equal(reason, "not reachable");

        assert_false(probe_would_pass(TLS_LEVEL_NONE, NULL, &t, reason, sizeof(reason)));
        assert_string_equal(reason, "no evidence");
}

/* Reasons are cut to their buffer, always NUL-terminated; no buffer is fine too. */
static void test_reason_buffer(void **state)
{
        static const char *const many[] = {
                "a-very-long-pattern-0.example.com", "a-very-long-pattern-1.example.com",
                "a-very-long-pattern-2.example.com", "a-very-long-pattern-3.example.com",
                "a-very-long-pattern-4.example.com", "a-very-long-pattern-5.example.com",
        };
        struct probe_evidence e = evidence_of(&(struct row){ 0 });
        struct probe_target t = { "example.com", many, ARRAY_SIZE(many), NULL, NULL };
        char full[512];

        assert_false(probe_would_pass(TLS_LEVEL_VERIFY, &e, &t, full, sizeof(full)));
        assert_int_equal(strncmp(full, "no certificate name matches a-very-long-pattern-0", 49), 0);
        assert_non_null(strstr(full, ", a-very-long-pattern-5.example.com"));
        for (size_t size = 1; size < strlen(full) + 2; size++) {
                char *cut = malloc(size); /* exact size: ASan sees any write past it */
                assert_non_null(cut);
                memset(cut, 'x', size);
                assert_false(probe_would_pass(TLS_LEVEL_VERIFY, &e, &t, cut, size));
                assert_int_equal(strlen(cut), size - 1 < strlen(full) ? size - 1 : strlen(full));
                assert_int_equal(strncmp(cut, full, size - 1), 0);
                free(cut);
        }
        char *one = malloc(1);
        assert_non_null(one);
        e.connected = false;
        e.error = "connect: Connection refused";
        assert_false(probe_would_pass(TLS_LEVEL_MAY, &e, &t, one, 1));
        assert_string_equal(one, "");
        free(one);
        assert_false(probe_would_pass(TLS_LEVEL_MAY, &e, &t, NULL, 0));
        e.connected = true;
        assert_true(probe_would_pass(TLS_LEVEL_MAY, &e, &t, NULL, 0));
        /* a pass clears what was there */
        strcpy(full, "stale");
        assert_true(probe_would_pass(TLS_LEVEL_MAY, &e, &t, full, sizeof(full)));
        assert_string_equal(full, "");
}

/* ---- the recommended level ---- */

static void test_recommended(void **state)
{
        static const struct {
                unsigned passing; /* bits by enum tls_level */
                enum tls_level want;
        } rows[] = {
                { 0, _TLS_LEVEL_MAX },
                { 0xff, TLS_LEVEL_DANE_ONLY },
                { 1 << TLS_LEVEL_NONE, TLS_LEVEL_NONE },
                { 1 << TLS_LEVEL_NONE | 1 << TLS_LEVEL_MAY, TLS_LEVEL_MAY },
                { 1 << TLS_LEVEL_NONE | 1 << TLS_LEVEL_MAY | 1 << TLS_LEVEL_ENCRYPT,
                  TLS_LEVEL_ENCRYPT },
                { 1 << TLS_LEVEL_ENCRYPT | 1 << TLS_LEVEL_VERIFY, TLS_LEVEL_VERIFY },
                { 1 << TLS_LEVEL_VERIFY | 1 << TLS_LEVEL_SECURE, TLS_LEVEL_SECURE },
                { 1 << TLS_LEVEL_SECURE | 1 << TLS_LEVEL_DANE_ONLY, TLS_LEVEL_DANE_ONLY },
                { 1 << TLS_LEVEL_DANE_ONLY, TLS_LEVEL_DANE_ONLY },
                /* fingerprint and dane are never recommended */
                { 1 << TLS_LEVEL_FINGERPRINT | 1 << TLS_LEVEL_DANE, _TLS_LEVEL_MAX },
                { 1 << TLS_LEVEL_FINGERPRINT | 1 << TLS_LEVEL_DANE | 1 << TLS_LEVEL_MAY,
                  TLS_LEVEL_MAY },
                { 0xff & ~(1 << TLS_LEVEL_DANE_ONLY), TLS_LEVEL_SECURE },
        };
        for (size_t i = 0; i < ARRAY_SIZE(rows); i++) {
                bool pass[_TLS_LEVEL_MAX];
                for (unsigned l = 0; l < _TLS_LEVEL_MAX; l++)
                        pass[l] = rows[i].passing & (1u << l);
                if (probe_recommended(pass) != rows[i].want)
                        fail_msg("row %zu: got %d, want %d", i, (int)probe_recommended(pass),
                                 (int)rows[i].want);
        }
}

/* Whole servers: every level's verdict, then the recommendation. */
static void test_servers(void **state)
{
        static const struct {
                const char *what;
                struct row r;
                enum tls_level want;
        } servers[] = {
                { "DANE with a verified handshake", { .dane = DANE_USABLE }, TLS_LEVEL_DANE_ONLY },
                { "a public CA's certificate for the domain",
                  { .names = names_wild, .n_names = 1 },
                  TLS_LEVEL_SECURE },
                { "a public CA's certificate for the MX name only",
                  { .names = names_second + 0, .n_names = 1 },
                  TLS_LEVEL_ENCRYPT },
                { "a self-signed certificate", { .off = NO_TRUST }, TLS_LEVEL_ENCRYPT },
                { "TLSA records that do not match",
                  { .off = NO_DANE_VERIFY, .dane = DANE_USABLE },
                  TLS_LEVEL_SECURE },
                { "unusable TLSA records", { .dane = DANE_UNUSABLE }, TLS_LEVEL_SECURE },
                { "no STARTTLS", { .off = NO_STARTTLS | NO_HANDSHAKE }, TLS_LEVEL_MAY },
                { "a broken handshake", { .off = NO_HANDSHAKE }, TLS_LEVEL_MAY },
                { "unreachable", { .off = NO_CONNECT | NO_SMTP }, _TLS_LEVEL_MAX },
        };
        for (size_t i = 0; i < ARRAY_SIZE(servers); i++) {
                struct probe_evidence e = evidence_of(&servers[i].r);
                struct probe_target t = { "example.com", NULL, 0, NULL, NULL };
                bool pass[_TLS_LEVEL_MAX];
                for (unsigned l = 0; l < _TLS_LEVEL_MAX; l++)
                        pass[l] = probe_would_pass((enum tls_level)l, &e, &t, NULL, 0);
                if (probe_recommended(pass) != servers[i].want)
                        fail_msg("%s: recommended %d, want %d", servers[i].what,
                                 (int)probe_recommended(pass), (int)servers[i].want);
        }
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_name_matches),
                cmocka_unit_test(test_would_pass),
                cmocka_unit_test(test_default_match_lists),
                cmocka_unit_test(test_maincf_match_lists),
                cmocka_unit_test(test_missing_evidence),
                cmocka_unit_test(test_reason_buffer),
                cmocka_unit_test(test_recommended),
                cmocka_unit_test(test_servers),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
