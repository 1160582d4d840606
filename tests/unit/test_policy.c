/* test_policy.c - TLS policies: the destination grammar against an injection corpus, the JSON
 * body (PUT/POST/PATCH/bulk item, JSON pointers), Postfix's level x attribute rules as a table,
 * attribute grammars, smuggling attempts, whitelisted rendering (also of hand-made bad structs),
 * the map reader against Postfix's rules (and against postmap itself when it is installed), and a
 * seeded property test: random valid and invalid writes, then the rendered map parses back to
 * exactly the enabled rows. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <cmocka.h>

#include <sys/stat.h>

#include "core/destination.h"
#include "core/policy.h"
#include "core/policy_json.h"
#include "core/policy_map_text.h"

#define OK    PROBLEM_NONE
#define ATTR  PROBLEM_INVALID_ATTRIBUTE
#define VALUE PROBLEM_INVALID_VALUE
#define DEST  PROBLEM_INVALID_DESTINATION

#define FP32                                                                                       \
        "ab:cd:ef:01:23:45:67:89:ab:cd:ef:01:23:45:67:89:ab:cd:ef:01:23:45:67:89:ab:cd:ef:01:23:"  \
        "45:67:89"
#define FP32_UPPER                                                                                 \
        "AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:"  \
        "45:67:89"

/* FP32 without its first byte: ":cd:ef:..." */
#define FP32_TAIL                                                                                  \
        ":cd:ef:01:23:45:67:89:ab:cd:ef:01:23:45:67:89:ab:cd:ef:01:23:45:67:89:ab:cd:ef:01:23:45:" \
        "67:89"

/* ---- helpers ---- */

static char *repeat(char c, size_t n)
{
        char *s = malloc(n + 1);
        memset(s, c, n);
        s[n] = 0;
        return s;
}

/* A name of exactly n characters made of 63-character labels (and a shorter last one). */
static char *name_of_length(size_t n)
{
        char *s = malloc(n + 1);
        for (size_t i = 0; i < n; i++)
                s[i] = (i % 64 == 63) ? '.' : 'a';
        if (s[n - 1] == '.')
                s[n - 1] = 'b', s[n - 2] = 'b';
        s[n] = 0;
        return s;
}

static json_t *parse(const char *text)
{
        json_error_t e;
        json_t *j = json_loads(text, JSON_REJECT_DUPLICATES, &e);
        if (!j)
                fail_msg("bad test JSON (%s): %s", e.text, text);
        return j;
}

static int apply(struct policy *p, const char *text, bool patch, const char *url,
                 const char *prefix, struct problem *pr)
{
        json_t *j = parse(text);
        int r = policy_apply_json(p, j, patch, url, prefix, pr);
        json_decref(j);
        return r;
}

static void expect_apply(const char *text, bool patch, const char *url, const char *prefix,
                         enum problem_code code, const char *field)
{
        struct policy p = { 0 };
        struct problem pr = { 0 };
        int r = apply(&p, text, patch, url, prefix, &pr);
        if (code == OK) {
                if (r < 0)
                        fail_msg("refused %s: %s %s: %s", text, problem_code_name(pr.code),
                                 pr.field, pr.detail);
        } else {
                if (r >= 0)
                        fail_msg("accepted: %s", text);
                if (pr.code != code)
                        fail_msg("%s: got %s (%s: %s), want %s", text, problem_code_name(pr.code),
                                 pr.field, pr.detail, problem_code_name(code));
                if (field && !streq(pr.field, field))
                        fail_msg("%s: field '%s', want '%s' (%s)", text, pr.field, field,
                                 pr.detail);
        }
        problem_done(&pr);
        policy_done(&p);
}

static char *render(const struct policy *p)
{
        char *line = NULL;
        int r = policy_render_entry(p, &line);
        if (r < 0)
                fail_msg("cannot render %s: %d", p->destination, r);
        return line;
}

/* ---- levels ---- */

static void test_levels(void **state)
{
        static const char *const names[] = { "none",      "may",         "encrypt", "dane",
                                             "dane-only", "fingerprint", "verify",  "secure" };
        enum tls_level l;
        assert_int_equal(ARRAY_SIZE(names), _TLS_LEVEL_MAX);
        for (unsigned i = 0; i < _TLS_LEVEL_MAX; i++) {
                assert_int_equal(tls_level_from_string(names[i], &l), 0);
                assert_int_equal(l, i);
                assert_string_equal(tls_level_to_string(l), names[i]);
        }
        static const char *const bad[] = { "",          "NONE", "Encrypt",  "dane_only",
                                           "half-dane", "may ", "verify\n", "fingerprints" };
        for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
                assert_true(tls_level_from_string(bad[i], &l) < 0);
        assert_null(tls_level_to_string(_TLS_LEVEL_MAX));
        assert_null(tls_level_to_string((enum tls_level) - 1));
}

/* ---- the destination grammar ---- */

/* A fingerprint of another length than the effective digest's never matches: refused, naming
 * the field and smtp_tls_fingerprint_digest (md5 with the compatibility_level hint). */
static void test_fingerprint_digest_length(void **state)
{
        (void)state;
        char f256[96] = "", f512[192] = "";
        for (int i = 0; i < 64; i++) {
                if (i < 32)
                        strcat(f256, i ? ":AB" : "AB");
                strcat(f512, i ? ":CD" : "CD");
        }
        assert_int_equal(strlen(f256), 95);
        assert_int_equal(strlen(f512), 191);
        const struct fingerprint_digest md5 = { "md5", 47 }, sha256 = { "sha256", 95 },
                                        sha512 = { "sha512", 191 }, unknown = { "", 0 };
        struct problem p = { 0 };
        assert_int_equal(policy_check_fingerprint_digest(&sha256, f256, "/match/0", &p), 0);
        assert_int_equal(policy_check_fingerprint_digest(&sha512, f512, "/match/0", &p), 0);
        assert_int_equal(policy_check_fingerprint_digest(&unknown, f512, "/match/0", &p), 0);
        assert_int_equal(policy_check_fingerprint_digest(&sha256, f512, "/match/1", &p), -EINVAL);
        assert_int_equal(p.code, PROBLEM_INVALID_VALUE);
        assert_string_equal(p.field, "/match/1");
        assert_non_null(strstr(p.detail, "SHA-512 fingerprint never matches"));
        assert_non_null(strstr(p.detail, "smtp_tls_fingerprint_digest = sha256"));
        problem_done(&p);
        p = (struct problem){ 0 };
        assert_int_equal(policy_check_fingerprint_digest(&md5, f256, "/items/3/match/0", &p),
                         -EINVAL);
        assert_string_equal(p.field, "/items/3/match/0");
        assert_non_null(strstr(p.detail, "compatibility_level 3.6"));
        problem_done(&p);
        p = (struct problem){ 0 };
        assert_int_equal(policy_check_fingerprint_digest(&sha512, f256, "/match/0", &p), -EINVAL);
        assert_non_null(strstr(p.detail, "smtp_tls_fingerprint_digest = sha512"));
        problem_done(&p);
        p = (struct problem){ 0 };
}

static void test_destination_accepts(void **state)
{
        static const struct {
                const char *in, *out;
        } good[] = {
                { "example.com", "example.com" },
                { "Example.COM", "example.com" },
                { "EXAMPLE.com", "example.com" },
                { ".example.com", ".example.com" },
                { ".Example.Com", ".example.com" },
                { "com", "com" },
                { "a-b.example", "a-b.example" },
                { "xn--bcher-kva.example", "xn--bcher-kva.example" },
                { "3com.example", "3com.example" },
                { "example.a1", "example.a1" },
                { "[mx.example.net]", "[mx.example.net]" },
                { "[MX.Example.NET]:465", "[mx.example.net]:465" },
                { "[mx.example.net]:1", "[mx.example.net]:1" },
                { "[mx.example.net]:65535", "[mx.example.net]:65535" },
                { "[192.0.2.1]", "[192.0.2.1]" },
                { "[192.0.2.1]:25", "[192.0.2.1]:25" },
                { "[0.0.0.0]:10025", "[0.0.0.0]:10025" },
                { "[255.255.255.255]", "[255.255.255.255]" },
                { "[localhost]:2525", "[localhost]:2525" },
                /* issue 12: the next-hop as Postfix looks it up (smtp_tls_policy.c) */
                { "relay.example:587", "relay.example:587" },
                { "Relay.Example:587", "relay.example:587" },
                { "host:25", "host:25" },
                { "relay.example:submission", "relay.example:submission" },
                { "[mx.example.net]:submission", "[mx.example.net]:submission" },
                { "[MX.example.net]:SMTP", "[mx.example.net]:smtp" },
                { "[mx.example.net]:x-1", "[mx.example.net]:x-1" },
                { "[192.0.2.1]:submissions", "[192.0.2.1]:submissions" },
                { "[ipv6:2001:db8::1]:25", "[ipv6:2001:db8::1]:25" },
                { "[IPv6:2001:DB8::1]", "[ipv6:2001:db8::1]" },
                { "[2001:db8::1]", "[2001:db8::1]" },
                { "[2001:db8::1]:2525", "[2001:db8::1]:2525" },
                { "[::1]", "[::1]" },
                { "[::]:25", "[::]:25" },
                { "[ipv6:::ffff:192.0.2.1]", "[ipv6:::ffff:192.0.2.1]" },
                { "[ipv6:2001:db8:0:0:1:0:0:1]", "[ipv6:2001:db8:0:0:1:0:0:1]" },
                { "_dmarc.example", "_dmarc.example" },
                { "a_b.example", "a_b.example" },
                { "_a_.example", "_a_.example" },
                { ".sub_domain.example", ".sub_domain.example" },
                { "[a_b.example]:25", "[a_b.example]:25" },
                { "a_b.example:587", "a_b.example:587" },
                /* internationalized names: one key, the A-label (UTS #46 non-transitional) */
                { "b\xc3\xbc"
                  "cher.example",
                  "xn--bcher-kva.example" },
                { "B\xc3\x9c"
                  "CHER.Example",
                  "xn--bcher-kva.example" },
                { "XN--BCHER-KVA.example", "xn--bcher-kva.example" },
                { ".b\xc3\xbc"
                  "cher.example",
                  ".xn--bcher-kva.example" },
                { "[b\xc3\xbc"
                  "cher.example]:25",
                  "[xn--bcher-kva.example]:25" },
                { "mx.b\xc3\xbc"
                  "cher.example:587",
                  "mx.xn--bcher-kva.example:587" },
                { "_dmarc.b\xc3\xbc"
                  "cher.example",
                  "_dmarc.xn--bcher-kva.example" },
                { "\xc3\xa9"
                  "xample.com",
                  "xn--xample-9ua.com" },
                /* ASCII is kept as written, whatever its xn-- labels hold (Postfix compares the
                 * text); such a key just has no U-label twin (test_destination_idn_keys) */
                { "xn--garbage.example", "xn--garbage.example" },
                { "XN--STRAE-OQA.example", "xn--strae-oqa.example" },
                { "xn--rexn--resat-oqa.sat-oqa.le", "xn--rexn--resat-oqa.sat-oqa.le" },
                { "ab--c.xn--bcher-kva.example", "ab--c.xn--bcher-kva.example" },
        };
        char out[POLICY_DESTINATION_MAX + 1];
        for (size_t i = 0; i < ARRAY_SIZE(good); i++) {
                struct problem p = { 0 };
                if (policy_destination_normalize(good[i].in, out, "/destination", &p) < 0)
                        fail_msg("refused '%s': %s", good[i].in, p.detail);
                assert_string_equal(out, good[i].out);
        }

        /* the limits, just inside */
        char *l63 = repeat('a', 63), buf[400];
        struct problem p = { 0 };
        snprintf(buf, sizeof(buf), "%s.example", l63);
        assert_int_equal(policy_destination_normalize(buf, out, "", &p), 0);
        char *n253 = name_of_length(253);
        assert_int_equal(strlen(n253), 253);
        assert_int_equal(policy_destination_normalize(n253, out, "", &p), 0);
        snprintf(buf, sizeof(buf), ".%s", n253);
        assert_int_equal(policy_destination_normalize(buf, out, "", &p), 0);
        assert_string_equal(out, buf);
        snprintf(buf, sizeof(buf), "[%s]", n253); /* 255 bytes: the longest key */
        assert_int_equal(policy_destination_normalize(buf, out, "", &p), 0);
        assert_int_equal(strlen(out), 255);
        free(l63);
        free(n253);
}

static void test_destination_refusals(void **state)
{
        char *l64 = repeat('a', 64), *n254 = name_of_length(254), *n253 = name_of_length(253);
        char label64[128], bracket_port[300];
        snprintf(label64, sizeof(label64), "%s.example", l64);
        snprintf(bracket_port, sizeof(bracket_port), "[%s]:25", n253);
        const struct {
                const char *in, *detail;
        } bad[] = {
                /* an API token pasted where a destination belongs, in any case (its lower-cased
                 * form is what would be kept: fuzz_destination found "Stk_..." accepted) */
                { "stk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "API token" },
                { "Stk_exampsssssssssssqssssssssssssssssssssssssss", "API token" },
                { "STK_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "API token" },
                { ".stk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "API token" },
                { "[stk_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa]:25", "API token" },
                /* the injection corpus */
                { "bank.example none\nvictim.example", "whitespace" },
                { "bank.example\nvictim.example none", "line break" },
                { "example.com\n", "line break" },
                { "example.com\r", "line break" },
                { "a\r\nb.example", "line break" },
                { "exa\tmple.com", "whitespace" },
                { "exa mple.com", "whitespace" },
                { " example.com", "whitespace" },
                { "\texample.com", "whitespace" },
                { "example.com ", "whitespace" },
                { "#example.com", "'#'" },
                { "example.com#", "'#'" },
                { "$example.com", "'$'" },
                { "${smtp}.example", "'$'" },
                { "a,b.example", "','" },
                { "{example}.com", "'{'" },
                { "example}.com", "'}'" },
                { "example.com/25", "'/'" },
                { "\x01"
                  "example.com",
                  "control character (0x01)" },
                { "example\x7f.com", "control character (0x7f)" },
                { "\x1b[31mexample.com", "control character (0x1b)" },
                { "\xe2\x98\x83.example", "not valid IDNA" },
                { "b\xc3\xbc"
                  "cher\xff.example",
                  "not valid IDNA" },
                { "stra\xc3\x9f"
                  "e.example",
                  "folds" },
                { "\xcf\x82.example", "folds" },
                /* found by fuzz_destination: U+00BA maps to 'o', an ASCII name */
                { "a-be\xc2\xba.example", "ASCII name a-beo.example" },
                { "*.example.com", "outbound_mode" },
                { "*", "outbound_mode" },
                { "[*]:25", "outbound_mode" },
                { "user@example.com", "'@'" },
                { "\"example.com\"", "'\"'" },
                { "example.com;", "';'" },
                { "example\\.com", "'\\'" },
                /* empty, dots and labels */
                { "", "empty" },
                { ".", "'.' alone" },
                { "..", "empty label" },
                { "...", "empty label" },
                { "..example.com", "empty label" },
                { "a..b.example", "empty label" },
                { "example.com.", "trailing dot" },
                { ".example.com.", "trailing dot" },
                { "-example.com", "'-'" },
                { "example-.com", "'-'" },
                { "example.-com", "'-'" },
                { label64, "at most 63" },
                { n254, "at most 253" },
                { "192.0.2.1", "bracketed" },
                { "example.123", "all-digit" },
                /* ports */
                { "[mx.example.net]:0", "between 1 and 65535" },
                { "[mx.example.net]:65536", "between 1 and 65535" },
                { "[mx.example.net]:99999999999999999999", "between 1 and 65535" },
                { "[mx.example.net]:00025", "leading zeros" },
                { "[mx.example.net]:025", "leading zeros" },
                { "[mx.example.net]:", "no port" },
                { "[mx.example.net]:2a", "decimal" },
                { "[mx.example.net]:-25", "service name" },
                { "[mx.example.net]:+25", "'+'" },
                { "[mx.example.net]:25:25", "decimal" },
                { "[mx.example.net]:sub--mission", "service name" },
                { "[mx.example.net]:submission-", "service name" },
                { "[mx.example.net]:abcdefghijklmnop", "at most 15" },
                { "[mx.example.net]:sub_mission", "service name" },
                { "[mx.example.net]:s\xc3\xbc"
                  "b",
                  "service name" },
                { "relay.example:", "no port" },
                { "relay.example:0", "between 1 and 65535" },
                { "relay.example:2a", "decimal" },
                { ":25", "no host" },
                { ".example.com:25", "takes no port" },
                { "192.0.2.1:25", "bracketed" },
                { "relay.example:25:25", "more than one ':'" },
                /* brackets */
                { "[mx.example.net", "unclosed" },
                { "[mx.example.net:25", "unclosed" },
                { "[", "unclosed" },
                { "mx.example.net]", "brackets" },
                { "mx.[example].net", "brackets" },
                { "[]", "empty brackets" },
                { "[]:25", "empty brackets" },
                { "[[mx.example.net]]", "inside brackets" },
                { "[mx.example.net]]", "after ']'" },
                { "[mx.example.net]x", "after ']'" },
                { "[mx.example.net].", "after ']'" },
                { "[.example.net]", "cannot start with '.'" },
                { "[mx.example.net.]", "trailing dot" },
                { "[mx..example.net]", "empty label" },
                { bracket_port, "at most 255" },
                /* IPv4 and IPv6 */
                { "[192.0.2.256]", "dotted quad" },
                { "[192.0.2]", "four parts" },
                { "[192.0.2.1.5]", "dotted quad" },
                { "[192.0.02.1]", "leading zero" },
                { "[192.0.2.1]:0", "between 1 and 65535" },
                { "[1234.0.2.1]", "dotted quad" },
                { "::1", "IPv6" },
                { "2001:db8::1", "IPv6" },
                { "[ipv6:]", "IPv6 address is not valid" },
                { "[ipv6:2001:db8::1::2]", "IPv6 address is not valid" },
                { "[ipv6:2001:db8:12345::1]", "IPv6 address is not valid" },
                { "[ipv6:1:2:3:4:5:6:7::]", "IPv6 address is not valid" },
                { "[ipv6:1:2:3:4:5:6:7:8:9]", "IPv6 address is not valid" },
                { "[ipv6:2001:db8::g]", "IPv6 address is not valid" },
                { "[ipv6:192.0.2.1]", "IPv6 address is not valid" },
                { "[ipv6:::ffff:192.0.2.256]", "IPv6 address is not valid" },
                { "[2001:db8::1%eth0]", "'%'" },
                { "[ipv6:fe80::1]:0", "between 1 and 65535" },
                { "[ipv6:b\xc3\xbc"
                  "cher]",
                  "IPv6 address is not valid" },
                { "[:1]", "IPv6 address is not valid" },
                { "[1:]", "IPv6 address is not valid" },
        };
        char out[POLICY_DESTINATION_MAX + 1];
        for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
                struct problem p = { 0 };
                strcpy(out, "untouched");
                if (policy_destination_normalize(bad[i].in, out, "/items/17/destination", &p) >= 0)
                        fail_msg("accepted case %zu '%s' as '%s'", i, bad[i].in, out);
                if (p.code != DEST || !streq(p.field, "/items/17/destination"))
                        fail_msg("case %zu: %s at '%s'", i, problem_code_name(p.code), p.field);
                if (!strstr(p.detail, bad[i].detail))
                        fail_msg("case %zu '%s': detail '%s' lacks '%s'", i, bad[i].in, p.detail,
                                 bad[i].detail);
                assert_string_equal(out, ""); /* nothing half-normalized escapes */
        }
        free(l64);
        free(n254);
        free(n253);
}

static int postmap_roundtrip(const char *text, size_t len, char **dump, size_t *dump_len);

/* Spellings of one next-hop are one key after normalization (duplicates are found there); the
 * U-label spelling of a key; the map holds an internationalized row under both keys, and
 * postmap reads back exactly that. */
static void test_destination_idn_keys(void **state)
{
        static const struct {
                const char *a, *b;
        } same[] = {
                { "b\xc3\xbc"
                  "cher.example",
                  "xn--bcher-kva.example" },
                { "B\xc3\x9c"
                  "cher.example",
                  "XN--BCHER-KVA.EXAMPLE" },
                { "[b\xc3\xbc"
                  "cher.example]:25",
                  "[xn--bcher-kva.example]:25" },
                { "[IPv6:2001:DB8::1]:25", "[ipv6:2001:db8::1]:25" },
                { "Relay.example:Submission", "relay.example:submission" },
        };
        char a[POLICY_DESTINATION_MAX + 1], b[POLICY_DESTINATION_MAX + 1];
        for (size_t i = 0; i < ARRAY_SIZE(same); i++) {
                struct problem p = { 0 };
                assert_int_equal(policy_destination_normalize(same[i].a, a, "", &p), 0);
                assert_int_equal(policy_destination_normalize(same[i].b, b, "", &p), 0);
                assert_string_equal(a, b);
        }
        /* Postfix compares the text: other spellings of one address or port are other keys */
        static const struct {
                const char *a, *b;
        } other[] = {
                { "[ipv6:2001:db8::1]", "[2001:db8::1]" },
                { "[ipv6:2001:db8::1]", "[ipv6:2001:db8:0::1]" },
                { "[mx.example]:submission", "[mx.example]:587" },
                { "relay.example:587", "[relay.example]:587" },
        };
        for (size_t i = 0; i < ARRAY_SIZE(other); i++) {
                struct problem p = { 0 };
                assert_int_equal(policy_destination_normalize(other[i].a, a, "", &p), 0);
                assert_int_equal(policy_destination_normalize(other[i].b, b, "", &p), 0);
                assert_string_not_equal(a, b);
        }

        static const struct {
                const char *key, *ukey;
        } u[] = {
                { "xn--bcher-kva.example", "b\xc3\xbc"
                                           "cher.example" },
                { ".xn--bcher-kva.example", ".b\xc3\xbc"
                                            "cher.example" },
                { "[xn--bcher-kva.example]:25", "[b\xc3\xbc"
                                                "cher.example]:25" },
                { "mx.xn--bcher-kva.example:submission", "mx.b\xc3\xbc"
                                                         "cher.example:submission" },
                { "_dmarc.xn--bcher-kva.example", "_dmarc.b\xc3\xbc"
                                                  "cher.example" },
                { "example.com", "" },
                { "[192.0.2.1]:25", "" },
                { "[ipv6:2001:db8::1]:25", "" },
                { "[2001:db8::1]", "" },
                { "relay.example:587", "" },
                /* A-labels that are no IDNA name converting back to them, or whose U-label
                 * Postfix folds (ß): no U-label key */
                { "xn--garbage.example", "" },
                { "xn--strae-oqa.example", "" },
                { "xn--rexn--resat-oqa.sat-oqa.le", "" }, /* found by fuzz_destination */
        };
        char ukey[DESTINATION_UKEY_MAX + 1];
        for (size_t i = 0; i < ARRAY_SIZE(u); i++) {
                assert_int_equal(destination_unicode_key(u[i].key, ukey), u[i].ukey[0] ? 1 : 0);
                assert_string_equal(ukey, u[i].ukey);
        }

        /* the map: the A-label entry and the U-label entry, one value */
        struct policy rows[3];
        const char *dests[] = { "xn--bcher-kva.example", "a_b.example:587",
                                "[ipv6:2001:db8::1]:25" };
        const struct policy *items[3];
        for (size_t i = 0; i < 3; i++) {
                policy_init(&rows[i]);
                snprintf(rows[i].destination, sizeof(rows[i].destination), "%s", dests[i]);
                rows[i].level = TLS_LEVEL_ENCRYPT;
                items[i] = &rows[i];
        }
        char *text = NULL, *dump = NULL;
        size_t len = 0, dump_len = 0;
        assert_int_equal(policy_map_render(items, 3, &text, &len), 0);
        assert_non_null(strstr(text, "\nxn--bcher-kva.example\tencrypt\n"
                                     "b\xc3\xbc"
                                     "cher.example\tencrypt\n"));
        assert_non_null(strstr(text, "\na_b.example:587\tencrypt\n"));
        assert_non_null(strstr(text, "\n[ipv6:2001:db8::1]:25\tencrypt\n"));
        for (int pass = 0; pass < 2; pass++) {
                struct policy_map_entry *e = NULL;
                size_t n = 0;
                if (pass == 1 && postmap_roundtrip(text, len, &dump, &dump_len) == -ENOENT)
                        break;
                assert_int_equal(
                    policy_map_parse(pass ? dump : text, pass ? dump_len : len, &e, &n), 0);
                assert_int_equal(n, 4);
                policy_map_entries_sort(e, n);
                assert_string_equal(e[0].key, "[ipv6:2001:db8::1]:25");
                assert_string_equal(e[1].key, "a_b.example:587");
                assert_string_equal(e[2].key, "b\xc3\xbc"
                                              "cher.example");
                assert_string_equal(e[3].key, "xn--bcher-kva.example");
                for (size_t i = 0; i < n; i++)
                        assert_string_equal(e[i].value, "encrypt");
                policy_map_entries_free(e, n);
        }
        free(dump);
        free(text);
}

/* Upper-case duplicates are one key; a NUL cannot truncate a destination into another key. */
static void test_destination_fold_and_nul(void **state)
{
        char a[POLICY_DESTINATION_MAX + 1], b[POLICY_DESTINATION_MAX + 1];
        struct problem p = { 0 };
        assert_int_equal(policy_destination_normalize("Example.COM", a, "", &p), 0);
        assert_int_equal(policy_destination_normalize("example.com", b, "", &p), 0);
        assert_string_equal(a, b);
        assert_int_equal(policy_destination_normalize("[MX.example.NET]:25", a, "", &p), 0);
        assert_int_equal(policy_destination_normalize("[mx.EXAMPLE.net]:25", b, "", &p), 0);
        assert_string_equal(a, b);

        /* "a\0b" must not become "a": the JSON path refuses the NUL */
        const char *fields[] = { "destination", "protocols", "note", "managed_by" };
        for (size_t i = 0; i < ARRAY_SIZE(fields); i++) {
                json_t *body =
                    json_pack("{s:s, s:s}", "destination", "victim.example", "level", "may");
                json_object_set_new(body, fields[i], json_stringn("a.example\0b", 11));
                struct policy pol = { 0 };
                struct problem pr = { 0 };
                assert_true(policy_apply_json(&pol, body, false, NULL, "/items/4", &pr) < 0);
                char want[64];
                snprintf(want, sizeof(want), "/items/4/%s", fields[i]);
                assert_string_equal(pr.field, want);
                assert_int_equal(pr.code, i == 0 ? DEST : VALUE);
                assert_non_null(strstr(pr.detail, "NUL"));
                assert_string_equal(pol.destination, ""); /* untouched */
                problem_done(&pr);
                json_decref(body);
        }
        /* in array items too */
        const char *arrays[] = { "match", "exclude" };
        for (size_t i = 0; i < ARRAY_SIZE(arrays); i++) {
                json_t *body =
                    json_pack("{s:s, s:s}", "destination", "victim.example", "level", "verify");
                json_t *a2 = json_array();
                json_array_append_new(a2, json_string("aNULL"));
                json_array_append_new(a2, json_stringn("hostname\0x", 10));
                json_object_set_new(body, arrays[i], a2);
                struct policy pol = { 0 };
                struct problem pr = { 0 };
                assert_true(policy_apply_json(&pol, body, false, NULL, "", &pr) < 0);
                char want[64];
                snprintf(want, sizeof(want), "/%s/1", arrays[i]);
                assert_string_equal(pr.field, want);
                assert_int_equal(pr.code, VALUE);
                problem_done(&pr);
                json_decref(body);
        }
}

/* ---- the JSON body ---- */

static void test_apply_post_put(void **state)
{
        struct policy p = { 0 };
        struct problem pr = { 0 };

        /* POST / bulk item: the body names the destination; defaults */
        assert_int_equal(
            apply(&p, "{\"destination\":\"Example.COM\",\"level\":\"may\"}", false, NULL, "", &pr),
            0);
        assert_string_equal(p.destination, "example.com");
        assert_int_equal(p.level, TLS_LEVEL_MAY);
        assert_true(p.enabled);
        assert_null(p.match);
        assert_int_equal(p.n_match, 0);
        assert_string_equal(p.protocols, "");
        assert_string_equal(p.ciphers, "");
        assert_int_equal(p.n_exclude, 0);
        assert_null(p.note);
        assert_string_equal(p.managed_by, "");
        policy_done(&p);

        /* everything set, as api.md shows it */
        const char *full = "{\"destination\":\".example.com\",\"level\":\"encrypt\",\"match\":[],"
                           "\"protocols\":\">=TLSv1.2\",\"ciphers\":\"high\",\"exclude\":[],"
                           "\"note\":\"partner relay\",\"enabled\":true,\"managed_by\":null,"
                           "\"created_at\":\"2026-01-01T00:00:00Z\",\"updated_at\":\"x\"}";
        assert_int_equal(apply(&p, full, false, NULL, "", &pr), 0);
        assert_string_equal(p.destination, ".example.com");
        assert_string_equal(p.protocols, ">=TLSv1.2");
        assert_string_equal(p.ciphers, "high");
        assert_string_equal(p.note, "partner relay");
        /* to_json round-trips through apply */
        json_t *j = policy_to_json(&p);
        char *dump = json_dumps(j, JSON_SORT_KEYS);
        assert_string_equal(dump, "{\"ciphers\": \"high\", \"connection_reuse\": null, "
                                  "\"destination\": \".example.com\", "
                                  "\"enabled\": true, \"exclude\": [], \"level\": \"encrypt\", "
                                  "\"managed_by\": null, \"match\": [], \"note\": \"partner "
                                  "relay\", \"protocols\": \">=TLSv1.2\", \"servername\": null, "
                                  "\"tafile\": null}");
        struct policy q = { 0 };
        assert_int_equal(policy_apply_json(&q, j, false, NULL, "", &pr), 0);
        json_t *j2 = policy_to_json(&q);
        char *dump2 = json_dumps(j2, JSON_SORT_KEYS);
        assert_string_equal(dump, dump2);
        free(dump);
        free(dump2);
        json_decref(j);
        json_decref(j2);
        policy_done(&q);

        /* PUT replaces: attributes, note and enabled go back to defaults; the manager stays */
        assert_int_equal(apply(&p,
                               "{\"level\":\"verify\",\"match\":[\"hostname\"],"
                               "\"enabled\":false,\"managed_by\":\"domains\"}",
                               false, ".Example.com", "", &pr),
                         0);
        assert_false(p.enabled);
        assert_string_equal(p.managed_by, "domains");
        assert_null(p.note);
        assert_string_equal(p.protocols, "");
        assert_int_equal(apply(&p, "{\"level\":\"may\"}", false, ".example.com", "", &pr), 0);
        assert_int_equal(p.level, TLS_LEVEL_MAY);
        assert_int_equal(p.n_match, 0);
        assert_true(p.enabled);
        assert_string_equal(p.managed_by, "domains"); /* kept: the caller decides */
        assert_int_equal(
            apply(&p, "{\"level\":\"may\",\"managed_by\":null}", false, ".example.com", "", &pr),
            0);
        assert_string_equal(p.managed_by, "");
        policy_done(&p);

        /* the URL names the destination; the body may repeat it in any case */
        assert_int_equal(apply(&p, "{\"destination\":\"[MX.example.net]:25\",\"level\":\"may\"}",
                               false, "[mx.EXAMPLE.net]:25", "", &pr),
                         0);
        assert_string_equal(p.destination, "[mx.example.net]:25");
        policy_done(&p);
        assert_int_equal(pr.code, PROBLEM_NONE);

        /* refusals, each naming its field under the prefix */
        expect_apply("{\"level\":\"may\"}", false, NULL, "/items/17", PROBLEM_MISSING_FIELD,
                     "/items/17/destination");
        expect_apply("{\"destination\":\"a.example\"}", false, NULL, "/items/17",
                     PROBLEM_MISSING_FIELD, "/items/17/level");
        expect_apply("{\"destination\":\"a.example\"}", false, "a.example", "",
                     PROBLEM_MISSING_FIELD, "/level");
        expect_apply("{\"destination\":\"a.example\",\"level\":\"may\",\"colour\":1}", false, NULL,
                     "/items/3", PROBLEM_UNKNOWN_FIELD, "/items/3/colour");
        expect_apply("{\"destination\":\"a.example\",\"level\":\"may\",\"sni\":\"x\"}", false, NULL,
                     "", PROBLEM_UNKNOWN_FIELD, "/sni");
        expect_apply("{\"destination\":\"b.example\",\"level\":\"may\"}", false, "a.example", "",
                     VALUE, "/destination");
        expect_apply("{\"destination\":\"a.example\",\"level\":\"may\"}", false, "a..example", "",
                     DEST, "");
        expect_apply("{\"destination\":\"a example\",\"level\":\"may\"}", false, NULL, "/items/17",
                     DEST, "/items/17/destination");
        expect_apply("{\"destination\":7,\"level\":\"may\"}", false, NULL, "", DEST,
                     "/destination");
        expect_apply("{\"destination\":null,\"level\":\"may\"}", false, NULL, "", DEST,
                     "/destination");
        expect_apply("{\"destination\":\"a.example\",\"level\":\"Encrypt\"}", false, NULL, "",
                     VALUE, "/level");
        expect_apply("{\"destination\":\"a.example\",\"level\":null}", false, NULL, "", VALUE,
                     "/level");
        expect_apply("{\"destination\":\"a.example\",\"level\":\"may\",\"ciphers\":\"HIGH\"}",
                     false, NULL, "", VALUE, "/ciphers");
        expect_apply("{\"destination\":\"a.example\",\"level\":\"may\",\"ciphers\":\"\"}", false,
                     NULL, "", VALUE, "/ciphers");
        expect_apply("{\"destination\":\"a.example\",\"level\":\"may\",\"enabled\":\"yes\"}", false,
                     NULL, "", VALUE, "/enabled");
        expect_apply("{\"destination\":\"a.example\",\"level\":\"may\",\"enabled\":null}", false,
                     NULL, "", VALUE, "/enabled");
        expect_apply("{\"destination\":\"a.example\",\"level\":\"verify\",\"match\":\"hostname\"}",
                     false, NULL, "", VALUE, "/match");
        expect_apply("{\"destination\":\"a.example\",\"level\":\"verify\",\"match\":[1]}", false,
                     NULL, "", VALUE, "/match/0");
        expect_apply("{\"destination\":\"a.example\",\"level\":\"may\",\"managed_by\":\"Domains\"}",
                     false, NULL, "", VALUE, "/managed_by");
        expect_apply("{\"destination\":\"a.example\",\"level\":\"may\",\"managed_by\":\"-x\"}",
                     false, NULL, "", VALUE, "/managed_by");
        expect_apply("{\"destination\":\"a.example\",\"level\":\"may\",\"managed_by\":\"\"}", false,
                     NULL, "", VALUE, "/managed_by");
        expect_apply(
            "{\"destination\":\"a.example\",\"level\":\"may\",\"managed_by\":\"ci.x_y-1\"}", false,
            NULL, "", OK, NULL);
        expect_apply("[]", false, NULL, "/items/2", VALUE, "/items/2");

        /* managed_by: 64 characters fit, 65 do not */
        char body[400];
        char *m64 = repeat('m', 64);
        snprintf(body, sizeof(body),
                 "{\"destination\":\"a.example\",\"level\":\"may\",\"managed_by\":\"%s\"}", m64);
        expect_apply(body, false, NULL, "", OK, NULL);
        snprintf(body, sizeof(body),
                 "{\"destination\":\"a.example\",\"level\":\"may\",\"managed_by\":\"%sm\"}", m64);
        expect_apply(body, false, NULL, "", VALUE, "/managed_by");
        free(m64);
}

static void test_apply_note(void **state)
{
        struct policy p = { 0 };
        struct problem pr = { 0 };
        char *n1024 = repeat('n', 1024);
        json_t *b =
            json_pack("{s:s, s:s, s:s}", "destination", "a.example", "level", "may", "note", n1024);
        assert_int_equal(policy_apply_json(&p, b, false, NULL, "", &pr), 0);
        assert_int_equal(strlen(p.note), 1024);
        json_object_set_new(b, "note", json_string("x\n# a.example none\n\xc3\xbc \xe2\x82\xac"));
        assert_int_equal(policy_apply_json(&p, b, false, NULL, "", &pr), 0);
        /* stored, shown by the API, never rendered */
        char *line = render(&p);
        assert_string_equal(line, "a.example\tmay");
        free(line);
        json_t *j = policy_to_json(&p);
        assert_string_equal(json_string_value(json_object_get(j, "note")),
                            "x\n# a.example none\n\xc3\xbc \xe2\x82\xac");
        json_decref(j);
        char *n1025 = repeat('n', 1025);
        json_object_set_new(b, "note", json_string(n1025));
        assert_true(policy_apply_json(&p, b, false, NULL, "", &pr) < 0);
        assert_string_equal(pr.field, "/note");
        assert_int_equal(pr.code, VALUE);
        problem_done(&pr);
        json_decref(b);
        policy_done(&p);
        free(n1024);
        free(n1025);
}

static void test_apply_patch(void **state)
{
        struct policy p = { 0 }, before = { 0 };
        struct problem pr = { 0 };
        assert_int_equal(apply(&p,
                               "{\"level\":\"verify\",\"match\":[\"Hostname\",\".Example.com\"],"
                               "\"protocols\":\"!SSLv2, !SSLv3\",\"ciphers\":\"high\","
                               "\"exclude\":[\"aNULL\",\"MD5\"],\"note\":\"n\","
                               "\"managed_by\":\"domains\"}",
                               false, "a.example", "", &pr),
                         0);
        assert_string_equal(p.match[0], "hostname");
        assert_string_equal(p.match[1], ".example.com");
        assert_string_equal(p.protocols, "!SSLv2:!SSLv3");

        /* merge: only what is sent changes */
        assert_int_equal(apply(&p, "{\"enabled\":false}", true, "a.example", "", &pr), 0);
        assert_false(p.enabled);
        assert_int_equal(p.n_match, 2);
        assert_string_equal(p.ciphers, "high");
        assert_string_equal(p.managed_by, "domains");
        /* null clears */
        assert_int_equal(apply(&p, "{\"protocols\":null,\"note\":null,\"exclude\":null}", true,
                               "a.example", "", &pr),
                         0);
        assert_string_equal(p.protocols, "");
        assert_null(p.note);
        assert_int_equal(p.n_exclude, 0);
        assert_null(p.exclude);
        assert_int_equal(p.n_match, 2);

        /* a refused patch changes nothing */
        assert_int_equal(policy_copy(&before, &p), 0);
        json_t *jb = policy_to_json(&before);
        char *snap = json_dumps(jb, JSON_SORT_KEYS);
        const struct {
                const char *body, *field;
                enum problem_code code;
        } bad[] = {
                { "{\"level\":\"may\"}", "/match", ATTR }, /* match stays: not at may */
                { "{\"level\":\"none\",\"match\":null}", "/ciphers", ATTR },
                { "{\"level\":\"fingerprint\"}", "/match/0", VALUE }, /* patterns are no digests */
                { "{\"destination\":\"b.example\"}", "/destination", VALUE },
                { "{\"match\":[\"a b\"]}", "/match/0", VALUE },
                { "{\"level\":null}", "/level", VALUE },
                { "{\"enabled\":null}", "/enabled", VALUE },
                { "{\"protocols\":\"TLSv1.2\\nvictim.example none\"}", "/protocols", VALUE },
                { "{\"ciphers\":\"high exclude=x\"}", "/ciphers", VALUE },
                { "{\"what\":1}", "/what", PROBLEM_UNKNOWN_FIELD },
        };
        for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
                struct problem e = { 0 };
                if (apply(&p, bad[i].body, true, "a.example", "", &e) >= 0)
                        fail_msg("accepted patch %s", bad[i].body);
                if (e.code != bad[i].code || !streq(e.field, bad[i].field))
                        fail_msg("patch %s: %s at %s (%s)", bad[i].body, problem_code_name(e.code),
                                 e.field, e.detail);
                problem_done(&e);
                json_t *ja = policy_to_json(&p);
                char *now = json_dumps(ja, JSON_SORT_KEYS);
                assert_string_equal(now, snap);
                free(now);
                json_decref(ja);
        }
        free(snap);
        json_decref(jb);
        policy_done(&before);

        /* a level change that drops match in the same patch */
        assert_int_equal(
            apply(&p, "{\"level\":\"may\",\"match\":null}", true, "a.example", "", &pr), 0);
        assert_int_equal(p.level, TLS_LEVEL_MAY);
        assert_int_equal(p.n_match, 0);
        /* a patch without a URL keeps the destination it has */
        assert_int_equal(apply(&p, "{\"ciphers\":\"medium\"}", true, NULL, "", &pr), 0);
        assert_string_equal(p.destination, "a.example");
        assert_int_equal(apply(&p, "{\"destination\":\"A.EXAMPLE\"}", true, NULL, "", &pr), 0);
        policy_done(&p);
        /* ... and a patch on nothing needs one */
        expect_apply("{\"level\":\"may\"}", true, NULL, "", PROBLEM_MISSING_FIELD, "/destination");
}

/* ---- Postfix's level x attribute rules, as a table ---- */

enum { C_NONE, C_MATCH_FP, C_MATCH_PATTERN, C_PROTOCOLS, C_CIPHERS, C_EXCLUDE, _C_MAX };

static void test_level_attribute_matrix(void **state)
{
        static const char *const attrs[_C_MAX] = {
                [C_NONE] = "",
                [C_MATCH_FP] = ",\"match\":[\"" FP32 "\"]",
                [C_MATCH_PATTERN] = ",\"match\":[\"nexthop\",\".example.com\"]",
                [C_PROTOCOLS] = ",\"protocols\":\">=TLSv1.2\"",
                [C_CIPHERS] = ",\"ciphers\":\"high\"",
                [C_EXCLUDE] = ",\"exclude\":[\"aNULL\",\"3DES\"]",
        };
        static const char *const renders[_C_MAX] = {
                [C_NONE] = "",
                [C_MATCH_FP] = " match=" FP32_UPPER,
                [C_MATCH_PATTERN] = " match=nexthop:.example.com",
                [C_PROTOCOLS] = " protocols=>=TLSv1.2",
                [C_CIPHERS] = " ciphers=high",
                [C_EXCLUDE] = " exclude=aNULL:3DES",
        };
        /* Expected outcome per level and column: the code and the field it names. The second
         * table is the same columns with a fingerprint match added (what fingerprint needs and
         * what the other levels refuse; attributes are checked in the order match, protocols,
         * ciphers, exclude). */
        struct cell {
                enum problem_code code;
                const char *field;
        };
#define Y                                                                                          \
        {                                                                                          \
                OK, NULL                                                                           \
        }
#define AM                                                                                         \
        {                                                                                          \
                ATTR, "/match"                                                                     \
        }
#define AP                                                                                         \
        {                                                                                          \
                ATTR, "/protocols"                                                                 \
        }
#define AC                                                                                         \
        {                                                                                          \
                ATTR, "/ciphers"                                                                   \
        }
#define AE                                                                                         \
        {                                                                                          \
                ATTR, "/exclude"                                                                   \
        }
#define V0                                                                                         \
        {                                                                                          \
                VALUE, "/match/0"                                                                  \
        }
        static const struct {
                const char *level;
                struct cell plain[_C_MAX], with_fp[_C_MAX];
        } rules[] = {
                /*                 none match(fp) match(pat) protocols ciphers exclude */
                { "none", { Y, AM, AM, AP, AC, AE }, { AM, Y, Y, AM, AM, AM } },
                { "may", { Y, AM, AM, Y, Y, Y }, { AM, Y, Y, AM, AM, AM } },
                { "encrypt", { Y, AM, AM, Y, Y, Y }, { AM, Y, Y, AM, AM, AM } },
                { "dane", { Y, AM, AM, Y, Y, Y }, { AM, Y, Y, AM, AM, AM } },
                { "dane-only", { Y, AM, AM, Y, Y, Y }, { AM, Y, Y, AM, AM, AM } },
                { "fingerprint", { AM, Y, V0, AM, AM, AM }, { Y, Y, Y, Y, Y, Y } },
                { "verify", { Y, V0, Y, Y, Y, Y }, { V0, Y, Y, V0, V0, V0 } },
                { "secure", { Y, V0, Y, Y, Y, Y }, { V0, Y, Y, V0, V0, V0 } },
        };
#undef Y
#undef AM
#undef AP
#undef AC
#undef AE
#undef V0
        assert_int_equal(ARRAY_SIZE(rules), _TLS_LEVEL_MAX);
        size_t cases = 0;
        for (size_t l = 0; l < ARRAY_SIZE(rules); l++)
                for (int c = 0; c < _C_MAX; c++)
                        for (int with_fp = 0; with_fp < 2; with_fp++) {
                                if (with_fp && (c == C_MATCH_FP || c == C_MATCH_PATTERN))
                                        continue;
                                const struct cell *want =
                                    with_fp ? &rules[l].with_fp[c] : &rules[l].plain[c];
                                char body[512], want_line[512];
                                snprintf(body, sizeof(body),
                                         "{\"destination\":\"x.example\",\"level\":\"%s\"%s%s}",
                                         rules[l].level, with_fp ? attrs[C_MATCH_FP] : "",
                                         attrs[c]);
                                struct policy p = { 0 };
                                struct problem pr = { 0 };
                                int r = apply(&p, body, false, NULL, "/items/3", &pr);
                                if (want->code == OK) {
                                        if (r < 0)
                                                fail_msg("%s: refused: %s at %s: %s", body,
                                                         problem_code_name(pr.code), pr.field,
                                                         pr.detail);
                                        snprintf(want_line, sizeof(want_line), "x.example\t%s%s%s",
                                                 rules[l].level, with_fp ? renders[C_MATCH_FP] : "",
                                                 renders[c]);
                                        char *line = render(&p);
                                        if (!streq(line, want_line))
                                                fail_msg("%s: rendered '%s', want '%s'", body, line,
                                                         want_line);
                                        free(line);
                                } else {
                                        char field[64];
                                        snprintf(field, sizeof(field), "/items/3%s", want->field);
                                        if (r >= 0)
                                                fail_msg("%s: accepted", body);
                                        if (pr.code != want->code || !streq(pr.field, field))
                                                fail_msg("%s: %s at %s (%s); want %s at %s", body,
                                                         problem_code_name(pr.code), pr.field,
                                                         pr.detail, problem_code_name(want->code),
                                                         field);
                                }
                                problem_done(&pr);
                                policy_done(&p);
                                cases++;
                        }
        print_message("level x attribute: %zu cases\n", cases);
}

/* ---- attribute grammars ---- */

static void test_protocols(void **state)
{
        static const struct {
                const char *in, *out;
        } good[] = {
                { "", "" },
                { ">=TLSv1.2", ">=TLSv1.2" },
                { ">=tlsv1.3", ">=TLSv1.3" },
                { "!SSLv2:!SSLv3", "!SSLv2:!SSLv3" },
                { "!SSLv2, !SSLv3", "!SSLv2:!SSLv3" },
                { "!SSLv2 !SSLv3 !TLSv1 !TLSv1.1", "!SSLv2:!SSLv3:!TLSv1:!TLSv1.1" },
                { " !SSLv2,,!SSLv3 ", "!SSLv2:!SSLv3" },
                { "TLSv1.2:TLSv1.3", "TLSv1.2:TLSv1.3" },
                { ">=TLSv1.2 <=TLSv1.3", ">=TLSv1.2:<=TLSv1.3" },
                { "<=TLSv1.2", "<=TLSv1.2" },
                { ">=TLSv1.2:<=TLSv1.2", ">=TLSv1.2:<=TLSv1.2" },
                { ">=TLSv1:!TLSv1.1", ">=TLSv1:!TLSv1.1" },
        };
        char out[128];
        for (size_t i = 0; i < ARRAY_SIZE(good); i++) {
                struct problem p = { 0 };
                if (policy_protocols_normalize(good[i].in, out, "/protocols", &p) < 0)
                        fail_msg("refused '%s': %s", good[i].in, p.detail);
                assert_string_equal(out, good[i].out);
        }
        static const char *const bad[] = {
                "TLSv1.4",
                "TLSv1.2\nvictim.example none",
                "TLSv1.2\tx",
                "TLSv1.2;TLSv1.3",
                "TLSv1.2|TLSv1.3",
                "protocols=TLSv1.2",
                ">=TLSv1.2:>=TLSv1.3",
                "<=TLSv1.2 <=TLSv1.3",
                "!SSLv2:!SSLv2",
                "TLSv1.2:!TLSv1.2",
                ">=TLSv1.3:<=TLSv1.2",
                "!TLSv1:!TLSv1.1:!TLSv1.2:!TLSv1.3",
                "SSLv3",
                "SSLv2:SSLv3",
                "<=SSLv3",
                ">=",
                "!",
                ", :",
                ">TLSv1.2",
                "=>TLSv1.2",
                "!!SSLv2",
                ">=!TLSv1",
                "TLSv1.2#",
                "TLSv1.2\xc2\xa0",
        };
        for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
                struct problem p = { 0 };
                if (policy_protocols_normalize(bad[i], out, "/items/9/protocols", &p) >= 0)
                        fail_msg("accepted '%s' as '%s'", bad[i], out);
                assert_int_equal(p.code, VALUE);
                assert_string_equal(p.field, "/items/9/protocols");
                assert_string_equal(out, "");
        }
}

static void test_match_and_exclude_values(void **state)
{
        char fp_plain[200], fp64[300], fp31[200], fp33[200], fp_sha1[100];
        size_t o = 0;
        for (int i = 0; i < 32; i++)
                o += (size_t)sprintf(fp_plain + o, "%02x", i * 7 + 1);
        o = 0;
        for (int i = 0; i < 64; i++)
                o += (size_t)sprintf(fp64 + o, "%s%02X", i ? ":" : "", (i * 13) & 0xff);
        memcpy(fp31, FP32, 3 * 31 - 1);
        fp31[3 * 31 - 1] = 0;
        snprintf(fp33, sizeof(fp33), "%s:00", FP32);
        memcpy(fp_sha1, FP32, 3 * 20 - 1);
        fp_sha1[3 * 20 - 1] = 0;

        struct policy p = { 0 };
        struct problem pr = { 0 };
        char body[1024];
        /* fingerprints: upper case, colon-separated; plain hex accepted and rewritten */
        snprintf(body, sizeof(body),
                 "{\"destination\":\"[mx.example.net]:25\",\"level\":\"fingerprint\","
                 "\"match\":[\"%s\",\"%s\",\"%s\"]}",
                 FP32, fp_plain, fp64);
        assert_int_equal(apply(&p, body, false, NULL, "", &pr), 0);
        assert_string_equal(p.match[0], FP32_UPPER);
        assert_int_equal(strlen(p.match[1]), 95);
        assert_true(p.match[1][2] == ':' && p.match[1][0] == '0' && p.match[1][1] == '1');
        assert_string_equal(p.match[2], fp64);
        char *line = render(&p);
        char want[1024];
        snprintf(want, sizeof(want), "[mx.example.net]:25\tfingerprint match=%s|%s|%s", FP32_UPPER,
                 p.match[1], fp64);
        assert_string_equal(line, want);
        free(line);
        policy_done(&p);

        const struct {
                const char *level, *item;
                enum problem_code code;
        } match_cases[] = {
                { "fingerprint", fp31, VALUE },
                { "fingerprint", fp33, VALUE },
                { "fingerprint", fp_sha1, VALUE },
                { "fingerprint", FP32 ":", VALUE },
                { "fingerprint", ":" FP32, VALUE },
                { "fingerprint", "GG" FP32_TAIL, VALUE },
                { "fingerprint", "", VALUE },
                { "fingerprint", FP32 "|" FP32, VALUE },
                { "fingerprint", FP32 " ", VALUE },
                { "fingerprint", "sha256:" FP32, VALUE },
                { "verify", "hostname", OK },
                { "verify", "nexthop", OK },
                { "verify", "dot-nexthop", OK },
                { "verify", "Mail.Example.COM", OK },
                { "secure", ".example.com", OK },
                { "verify", "a b", VALUE },
                { "verify", "a,b", VALUE },
                { "verify", "a\\nb", VALUE },
                { "verify", "hostname\\n[victim.example] none", VALUE },
                { "verify", "a|b", VALUE },
                { "verify", "a:b", VALUE },
                { "verify", "", VALUE },
                { "verify", ".", VALUE },
                { "verify", "..", VALUE },
                { "secure", "a..b", VALUE },
                { "secure", "example.com.", VALUE },
                { "secure", "*.example.com", VALUE },
                { "secure", "a_b.example", VALUE },
                { "secure", "[mx.example.net]", VALUE },
                { "secure",
                  "b\xc3\xbc"
                  "cher.example",
                  VALUE },
        };
        for (size_t i = 0; i < ARRAY_SIZE(match_cases); i++) {
                snprintf(body, sizeof(body),
                         "{\"destination\":\"a.example\",\"level\":\"%s\","
                         "\"match\":[\"hostname\",\"%s\"]}",
                         match_cases[i].level, match_cases[i].item);
                if (streq(match_cases[i].level, "fingerprint"))
                        snprintf(body, sizeof(body),
                                 "{\"destination\":\"a.example\",\"level\":\"fingerprint\","
                                 "\"match\":[\"" FP32 "\",\"%s\"]}",
                                 match_cases[i].item);
                expect_apply(body, false, NULL, "/items/3", match_cases[i].code,
                             "/items/3/match/1");
        }
        /* match takes at most 32 items */
        o = (size_t)snprintf(body, sizeof(body),
                             "{\"destination\":\"a.example\",\"level\":\"verify\",\"match\":[");
        for (int i = 0; i < 33; i++)
                o += (size_t)snprintf(body + o, sizeof(body) - o, "%s\"h%d\"", i ? "," : "", i);
        snprintf(body + o, sizeof(body) - o, "]}");
        expect_apply(body, false, NULL, "", VALUE, "/match");

        /* exclude */
        assert_int_equal(apply(&p,
                               "{\"destination\":\"a.example\",\"level\":\"encrypt\",\"exclude\":"
                               "[\"aNULL\",\"3DES\",\"ECDHE-RSA-AES128-SHA\","
                               "\"TLS_AES_128_GCM_SHA256\",\"RSA+AES\",\"kRSA\",\"eNULL\"]}",
                               false, NULL, "", &pr),
                         0);
        line = render(&p);
        assert_string_equal(line, "a.example\tencrypt exclude=aNULL:3DES:ECDHE-RSA-AES128-SHA:"
                                  "TLS_AES_128_GCM_SHA256:RSA+AES:kRSA:eNULL");
        free(line);
        policy_done(&p);
        char *e65 = repeat('E', 65), *e64 = repeat('E', 64);
        const struct {
                const char *item;
                enum problem_code code;
        } ex_cases[] = {
                { "a NULL", VALUE },    { "aNULL,MD5", VALUE }, { "aNULL:MD5", VALUE },
                { "!MD5", VALUE },      { "-MD5", VALUE },      { "+MD5", VALUE },
                { "@STRENGTH", VALUE }, { "", VALUE },          { "MD5\\n", VALUE },
                { "MD5#", VALUE },      { e65, VALUE },         { e64, OK },
                { "aNULL", OK },
        };
        for (size_t i = 0; i < ARRAY_SIZE(ex_cases); i++) {
                snprintf(body, sizeof(body),
                         "{\"destination\":\"a.example\",\"level\":\"may\","
                         "\"exclude\":[\"MD5\",\"%s\"]}",
                         ex_cases[i].item);
                expect_apply(body, false, NULL, "", ex_cases[i].code, "/exclude/1");
        }
        free(e65);
        free(e64);
        o = (size_t)snprintf(body, sizeof(body),
                             "{\"destination\":\"a.example\",\"level\":\"may\",\"exclude\":[");
        for (int i = 0; i < 33; i++)
                o += (size_t)snprintf(body + o, sizeof(body) - o, "%s\"C%d\"", i ? "," : "", i);
        snprintf(body + o, sizeof(body) - o, "]}");
        expect_apply(body, false, NULL, "", VALUE, "/exclude");
}

/* ---- smuggling: nothing a client sends adds a line, a comment or an entry ---- */

static void test_smuggling(void **state)
{
        static const struct {
                const char *body, *field;
                enum problem_code code;
        } bad[] = {
                { "{\"destination\":\"bank.example none\\nvictim.example\",\"level\":\"encrypt\"}",
                  "/items/5/destination", DEST },
                { "{\"destination\":\"victim.example\\n bank.example\",\"level\":\"encrypt\"}",
                  "/items/5/destination", DEST },
                { "{\"destination\":\"victim.example\\r\\nbank.example none\",\"level\":\"may\"}",
                  "/items/5/destination", DEST },
                { "{\"destination\":\"#victim.example\",\"level\":\"none\"}",
                  "/items/5/destination", DEST },
                { "{\"destination\":\"a.example\",\"level\":\"may\",\"protocols\":"
                  "\"TLSv1.2\\nvictim.example none\"}",
                  "/items/5/protocols", VALUE },
                { "{\"destination\":\"a.example\",\"level\":\"may\",\"protocols\":"
                  "\"TLSv1.2 ciphers=null\"}",
                  "/items/5/protocols", VALUE },
                { "{\"destination\":\"a.example\",\"level\":\"verify\",\"match\":"
                  "[\"hostname victim.example\"]}",
                  "/items/5/match/0", VALUE },
                { "{\"destination\":\"a.example\",\"level\":\"verify\",\"match\":"
                  "[\"hostname,protocols=SSLv3\"]}",
                  "/items/5/match/0", VALUE },
                { "{\"destination\":\"a.example\",\"level\":\"verify\",\"match\":"
                  "[\"nexthop\",\"hostname\\nvictim.example none\"]}",
                  "/items/5/match/1", VALUE },
                { "{\"destination\":\"a.example\",\"level\":\"verify\",\"match\":"
                  "[\"hostname|nexthop\"]}",
                  "/items/5/match/0", VALUE },
                { "{\"destination\":\"a.example\",\"level\":\"may\",\"exclude\":[\"aNULL MD5\"]}",
                  "/items/5/exclude/0", VALUE },
                { "{\"destination\":\"a.example\",\"level\":\"may\",\"exclude\":"
                  "[\"aNULL\\n\\tprotocols=SSLv3\"]}",
                  "/items/5/exclude/0", VALUE },
                { "{\"destination\":\"a.example\",\"level\":\"may\",\"ciphers\":\"null\\n\"}",
                  "/items/5/ciphers", VALUE },
                { "{\"destination\":\"a.example\",\"level\":\"may match=x\"}", "/items/5/level",
                  VALUE },
                { "{\"destination\":\"a.example\",\"level\":\"none\",\"protocols\":\"TLSv1.2\"}",
                  "/items/5/protocols", ATTR },
        };
        for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
                expect_apply(bad[i].body, false, NULL, "/items/5", bad[i].code, bad[i].field);
}

static struct policy *make(const char *json)
{
        struct policy *p = calloc(1, sizeof(*p));
        struct problem pr = { 0 };
        if (apply(p, json, false, NULL, "", &pr) < 0)
                fail_msg("refused %s: %s", json, pr.detail);
        return p;
}

static void free_policy(struct policy *p)
{
        policy_done(p);
        free(p);
}

/* Issue 12 item 8: servername, tafile and connection_reuse with Postfix 3.7's per-level rules
 * (smtp_tls_policy.c): servername and connection_reuse at every level with TLS, tafile at verify
 * and secure only; each value whitelisted byte by byte. */
static void test_new_attributes(void **state)
{
        /* accepted, normalized, rendered in order */
        struct policy *p = make("{\"destination\":\"a.example\",\"level\":\"secure\","
                                "\"match\":[\"nexthop\"],\"servername\":\"MX.Example.NET\","
                                "\"tafile\":\"/etc/postfix/ta/partner-ca.pem\","
                                "\"connection_reuse\":true}");
        assert_string_equal(p->servername, "mx.example.net");
        assert_string_equal(p->tafile, "/etc/postfix/ta/partner-ca.pem");
        assert_int_equal(p->connection_reuse, POLICY_REUSE_YES);
        char *line = NULL;
        assert_int_equal(policy_render_entry(p, &line), 0);
        assert_string_equal(line, "a.example\tsecure match=nexthop servername=mx.example.net "
                                  "tafile=/etc/postfix/ta/partner-ca.pem connection_reuse=yes");
        free(line);
        json_t *j = policy_to_json(p);
        assert_string_equal(json_string_value(json_object_get(j, "servername")), "mx.example.net");
        assert_true(json_is_true(json_object_get(j, "connection_reuse")));
        /* to_json round-trips */
        struct policy q = { 0 };
        struct problem pr = { 0 };
        assert_int_equal(policy_apply_json(&q, j, false, NULL, "", &pr), 0);
        assert_string_equal(q.tafile, p->tafile);
        assert_int_equal(q.connection_reuse, POLICY_REUSE_YES);
        policy_done(&q);
        json_decref(j);
        /* PATCH null clears each; false renders no */
        struct problem pp = { 0 };
        assert_int_equal(apply(p,
                               "{\"servername\":null,\"tafile\":null,"
                               "\"connection_reuse\":false}",
                               true, "a.example", "", &pp),
                         0);
        assert_int_equal(policy_render_entry(p, &line), 0);
        assert_string_equal(line, "a.example\tsecure match=nexthop connection_reuse=no");
        free(line);
        assert_int_equal(apply(p, "{\"connection_reuse\":null}", true, "a.example", "", &pp), 0);
        assert_int_equal(p->connection_reuse, POLICY_REUSE_UNSET);
        free_policy(p);

        /* the keywords, at every level with TLS */
        static const char *const tls_levels[] = { "may",       "encrypt", "dane",
                                                  "dane-only", "verify",  "secure" };
        for (size_t i = 0; i < ARRAY_SIZE(tls_levels); i++) {
                char body[200];
                snprintf(body, sizeof(body),
                         "{\"destination\":\"a.example\",\"level\":\"%s\","
                         "\"servername\":\"%s\",\"connection_reuse\":false}",
                         tls_levels[i], i % 2 ? "hostname" : "nexthop");
                expect_apply(body, false, NULL, "", OK, NULL);
        }
        /* none takes nothing; tafile only at verify and secure */
        expect_apply("{\"destination\":\"a.example\",\"level\":\"none\",\"servername\":"
                     "\"hostname\"}",
                     false, NULL, "", ATTR, "/servername");
        expect_apply("{\"destination\":\"a.example\",\"level\":\"none\","
                     "\"connection_reuse\":true}",
                     false, NULL, "", ATTR, "/connection_reuse");
        static const char *const no_tafile[] = { "none", "may", "encrypt", "dane", "dane-only" };
        for (size_t i = 0; i < ARRAY_SIZE(no_tafile); i++) {
                char body[200];
                snprintf(body, sizeof(body),
                         "{\"destination\":\"a.example\",\"level\":\"%s\","
                         "\"tafile\":\"/etc/ta.pem\"}",
                         no_tafile[i]);
                expect_apply(body, false, NULL, "/items/2", ATTR, "/items/2/tafile");
        }
        expect_apply("{\"destination\":\"a.example\",\"level\":\"fingerprint\",\"match\":"
                     "[\"" FP32 "\"],\"tafile\":\"/etc/ta.pem\"}",
                     false, NULL, "", ATTR, "/tafile");

        /* values: nothing that splits, comments or escapes the value */
        static const char *const bad_servername[] = {
                "",           "a b",        "a,b",        "a\\nb none",           "#x",  "1.2.3.4",
                "-a.example", "a..example", "a.example.", "b\\u00fccher.example", "x=y",
        };
        for (size_t i = 0; i < ARRAY_SIZE(bad_servername); i++) {
                char body[200];
                snprintf(body, sizeof(body),
                         "{\"destination\":\"a.example\",\"level\":\"may\","
                         "\"servername\":\"%s\"}",
                         bad_servername[i]);
                expect_apply(body, false, NULL, "", VALUE, "/servername");
        }
        static const char *const bad_tafile[] = {
                "",
                "/",
                "ta.pem",
                "./ta.pem",
                "/etc/../shadow",
                "/etc/./ta.pem",
                "/etc//ta.pem",
                "/etc/ta.pem/",
                "/etc/ta pem",
                "/etc/ta,pem",
                "/etc/ta\\npem none",
                "/etc/#ta",
                "/etc/ta=pem",
                "/etc/t\\u00e4.pem",
                "~/ta.pem",
        };
        for (size_t i = 0; i < ARRAY_SIZE(bad_tafile); i++) {
                char body[200];
                snprintf(body, sizeof(body),
                         "{\"destination\":\"a.example\",\"level\":\"verify\","
                         "\"tafile\":\"%s\"}",
                         bad_tafile[i]);
                expect_apply(body, false, NULL, "", VALUE, "/tafile");
        }
        char longpath[POLICY_TAFILE_MAX + 64];
        memset(longpath, 'a', sizeof(longpath));
        longpath[0] = '/';
        longpath[POLICY_TAFILE_MAX + 1] = 0;
        char body[POLICY_TAFILE_MAX + 200];
        snprintf(body, sizeof(body),
                 "{\"destination\":\"a.example\",\"level\":\"verify\",\"tafile\":\"%s\"}",
                 longpath);
        expect_apply(body, false, NULL, "", VALUE, "/tafile");
        longpath[POLICY_TAFILE_MAX] = 0;
        snprintf(body, sizeof(body),
                 "{\"destination\":\"a.example\",\"level\":\"verify\",\"tafile\":\"%s\"}",
                 longpath);
        expect_apply(body, false, NULL, "", OK, NULL);
        static const char *const bad_reuse[] = { "\"yes\"", "1", "0", "[]", "{}" };
        for (size_t i = 0; i < ARRAY_SIZE(bad_reuse); i++) {
                snprintf(body, sizeof(body),
                         "{\"destination\":\"a.example\",\"level\":\"may\","
                         "\"connection_reuse\":%s}",
                         bad_reuse[i]);
                expect_apply(body, false, NULL, "", VALUE, "/connection_reuse");
        }

        /* a write's reply sent back: its warnings are advice, ignored */
        expect_apply("{\"destination\":\".a.example\",\"level\":\"may\",\"warnings\":[{\"code\":"
                     "\"parent_domain_not_covered\",\"detail\":\"x\"}]}",
                     false, NULL, "", OK, NULL);

        /* a struct that skipped validation is not rendered */
        struct policy r = { 0 };
        policy_init(&r);
        snprintf(r.destination, sizeof(r.destination), "a.example");
        r.level = TLS_LEVEL_VERIFY;
        snprintf(r.tafile, sizeof(r.tafile), "/etc/ta pem\nb.example none");
        assert_int_equal(policy_render_entry(&r, &line), -EINVAL);
        r.tafile[0] = 0;
        snprintf(r.servername, sizeof(r.servername), "Upper.example");
        assert_int_equal(policy_render_entry(&r, &line), -EINVAL);
        r.servername[0] = 0;
        r.connection_reuse = (enum policy_reuse)7;
        assert_int_equal(policy_render_entry(&r, &line), -EINVAL);
        r.level = TLS_LEVEL_ENCRYPT;
        r.connection_reuse = POLICY_REUSE_NO;
        snprintf(r.tafile, sizeof(r.tafile), "/etc/ta.pem");
        assert_int_equal(policy_render_entry(&r, &line), -EINVAL);
        policy_done(&r);
}

/* Issue 12 item 7: what cannot deliver is refused on write, what is legal but likely wrong is a
 * warning; rows already stored still render. */
static void test_impossible_combinations(void **state)
{
        /* ciphers null: encrypt leaves no cipher (Postfix adds eNULL to the exclusions) */
        expect_apply("{\"destination\":\"a.example\",\"level\":\"encrypt\",\"ciphers\":"
                     "\"null\"}",
                     false, NULL, "", ATTR, "/ciphers");
        struct policy *p = make("{\"destination\":\"a.example\",\"level\":\"may\","
                                "\"ciphers\":\"null\"}");
        struct problem pr = { 0 };
        /* a patch that makes the combination is refused too, and changes nothing */
        assert_int_equal(apply(p, "{\"level\":\"encrypt\"}", true, "a.example", "", &pr), -EINVAL);
        assert_int_equal(pr.code, ATTR);
        assert_string_equal(pr.field, "/ciphers");
        assert_int_equal(p->level, TLS_LEVEL_MAY);
        problem_done(&pr);
        json_t *w = json_array();
        policy_warnings_add(p, w);
        assert_int_equal(json_array_size(w), 1);
        assert_string_equal(json_string_value(json_object_get(json_array_get(w, 0), "code")),
                            "null_ciphers");
        assert_non_null(strstr(json_string_value(json_object_get(json_array_get(w, 0), "detail")),
                               "a.example"));
        json_decref(w);
        /* a row stored before the check still renders (Postfix has had it all along) */
        p->level = TLS_LEVEL_ENCRYPT;
        char *line = NULL;
        assert_int_equal(policy_render_entry(p, &line), 0);
        assert_string_equal(line, "a.example\tencrypt ciphers=null");
        free(line);
        free_policy(p);

        /* protocols without TLSv1.2 and TLSv1.3: refused where Postfix authenticates the peer
         * (OpenSSL security level 1), a warning at may and encrypt (level 0: it works) */
        static const char *const weak[] = { "<=TLSv1.1", "TLSv1:TLSv1.1", "!TLSv1.2:!TLSv1.3",
                                            "<=TLSv1" };
        static const char *const strict[] = { "dane", "dane-only", "verify", "secure" };
        for (size_t i = 0; i < ARRAY_SIZE(weak); i++) {
                char body[300];
                for (size_t k = 0; k < ARRAY_SIZE(strict); k++) {
                        snprintf(body, sizeof(body),
                                 "{\"destination\":\"a.example\",\"level\":\"%s\","
                                 "\"protocols\":\"%s\"}",
                                 strict[k], weak[i]);
                        expect_apply(body, false, NULL, "", ATTR, "/protocols");
                }
                snprintf(body, sizeof(body),
                         "{\"destination\":\"a.example\",\"level\":\"fingerprint\","
                         "\"match\":[\"" FP32 "\"],\"protocols\":\"%s\"}",
                         weak[i]);
                expect_apply(body, false, NULL, "", ATTR, "/protocols");
                for (int lv = TLS_LEVEL_MAY; lv <= TLS_LEVEL_ENCRYPT; lv++) {
                        snprintf(body, sizeof(body),
                                 "{\"destination\":\"a.example\",\"level\":\"%s\","
                                 "\"protocols\":\"%s\"}",
                                 tls_level_to_string(lv), weak[i]);
                        p = make(body);
                        w = json_array();
                        policy_warnings_add(p, w);
                        assert_int_equal(json_array_size(w), 1);
                        assert_string_equal(
                            json_string_value(json_object_get(json_array_get(w, 0), "code")),
                            "weak_protocols");
                        json_decref(w);
                        free_policy(p);
                }
        }
        /* TLSv1.2 or TLSv1.3 left: fine everywhere, no warning */
        static const char *const fine[] = { ">=TLSv1.2", "TLSv1.1:TLSv1.2", "<=TLSv1.2",
                                            "!SSLv2:!SSLv3", "TLSv1.3" };
        for (size_t i = 0; i < ARRAY_SIZE(fine); i++) {
                char body[300];
                snprintf(body, sizeof(body),
                         "{\"destination\":\"a.example\",\"level\":\"secure\","
                         "\"protocols\":\"%s\",\"ciphers\":\"high\"}",
                         fine[i]);
                p = make(body);
                w = json_array();
                policy_warnings_add(p, w);
                assert_int_equal(json_array_size(w), 0);
                json_decref(w);
                free_policy(p);
        }
        /* servername at the dane levels: Postfix sends the TLSA base domain instead */
        p = make("{\"destination\":\"a.example\",\"level\":\"dane\",\"servername\":"
                 "\"mx.a.example\"}");
        w = json_array();
        policy_warnings_add(p, w);
        assert_int_equal(json_array_size(w), 1);
        assert_string_equal(json_string_value(json_object_get(json_array_get(w, 0), "code")),
                            "servername_ignored");
        json_decref(w);
        free_policy(p);
}

/* Issue 12 item 7: a policy's exclude replaces main.cf's exclusions (Postfix's
 * set_cipher_grade); what it drops, minus what Postfix adds back by level. */
static void test_exclude_dropped(void **state)
{
        char out[256];
        struct policy *p = make("{\"destination\":\"a.example\",\"level\":\"encrypt\"}");
        policy_exclude_dropped(p, "aNULL, eNULL, RC4", out, sizeof(out));
        assert_string_equal(out, ""); /* no exclude: main.cf's list applies */
        free_policy(p);
        p = make("{\"destination\":\"a.example\",\"level\":\"encrypt\",\"exclude\":[\"RC4\"]}");
        policy_exclude_dropped(p, "aNULL, eNULL, EXPORT:RC4\tMD5", out, sizeof(out));
        assert_string_equal(out, "aNULL, EXPORT, MD5"); /* eNULL: Postfix adds it at encrypt */
        free_policy(p);
        p = make("{\"destination\":\"a.example\",\"level\":\"secure\",\"exclude\":[\"MD5\"]}");
        policy_exclude_dropped(p, " aNULL,, eNULL ,MD5 ", out, sizeof(out));
        assert_string_equal(out, "eNULL"); /* aNULL: Postfix adds it above encrypt */
        policy_exclude_dropped(p, "", out, sizeof(out));
        assert_string_equal(out, "");
        free_policy(p);
        p = make("{\"destination\":\"a.example\",\"level\":\"may\",\"exclude\":[\"x\"]}");
        policy_exclude_dropped(p, "aNULL, eNULL", out, sizeof(out));
        assert_string_equal(out, "aNULL, eNULL"); /* may: nothing added back */
        char tiny[8];
        policy_exclude_dropped(p, "aNULL, eNULL", tiny, sizeof(tiny));
        assert_string_equal(tiny, "aNULL"); /* what fits, never a cut item */
        free_policy(p);
}

/* Defence in depth: a struct that never went through policy_apply_json() is not rendered. */
static void test_render_refuses_bad_structs(void **state)
{
        struct policy good = { 0 };
        struct problem pr = { 0 };
        assert_int_equal(apply(&good,
                               "{\"destination\":\"a.example\",\"level\":\"verify\",\"match\":"
                               "[\"hostname\"],\"protocols\":\">=TLSv1.2\",\"ciphers\":\"high\","
                               "\"exclude\":[\"MD5\"]}",
                               false, NULL, "", &pr),
                         0);
        struct policy *other = make("{\"destination\":\"z.example\",\"level\":\"may\"}");
        char *line = render(&good);
        assert_string_equal(line, "a.example\tverify match=hostname protocols=>=TLSv1.2 "
                                  "ciphers=high exclude=MD5");
        free(line);

        for (int c = 0; c < 14; c++) {
                struct policy p = { 0 };
                assert_int_equal(policy_copy(&p, &good), 0);
                switch (c) {
                case 0:
                        strcpy(p.destination, "bank.example none\nvictim.example");
                        break;
                case 1:
                        strcpy(p.destination, "A.example");
                        break;
                case 2:
                        strcpy(p.destination, "");
                        break;
                case 3:
                        strcpy(p.protocols, "TLSv1.2\nvictim.example none");
                        break;
                case 4:
                        strcpy(p.protocols, "TLSv1.2 ciphers=null");
                        break;
                case 5:
                        strcpy(p.ciphers, "high x");
                        break;
                case 6:
                        free(p.match[0]);
                        p.match[0] = strdup("hostname\nvictim.example none");
                        break;
                case 7:
                        free(p.exclude[0]);
                        p.exclude[0] = strdup("MD5 x");
                        break;
                case 8:
                        p.level = (enum tls_level)42;
                        break;
                case 9:
                        p.level = TLS_LEVEL_MAY; /* match at may */
                        break;
                case 10:
                        p.level = TLS_LEVEL_NONE;
                        break;
                case 11:
                        memset(p.destination, 'a', sizeof(p.destination)); /* no NUL */
                        break;
                case 12:
                        free(p.match[0]);
                        p.match[0] = strdup("Hostname"); /* not normalized */
                        break;
                case 13:
                        p.level = TLS_LEVEL_FINGERPRINT; /* a pattern as a digest */
                        break;
                }
                char *l = NULL;
                if (policy_render_entry(&p, &l) != -EINVAL)
                        fail_msg("case %d rendered: %s", c, l ? l : "(null)");
                const struct policy *items[] = { other, &p };
                char *text = NULL;
                size_t len = 0;
                assert_int_equal(policy_map_render(items, 2, &text, &len), -EINVAL);
                assert_null(text);
                if (c == 11)
                        p.destination[0] = 0;
                policy_done(&p);
        }
        policy_done(&good);
        free_policy(other);
}

static void test_map_render(void **state)
{
        struct policy *a = make("{\"destination\":\"b.example\",\"level\":\"encrypt\"}");
        struct policy *b = make("{\"destination\":\"[mx.example.net]:25\",\"level\":\"may\"}");
        struct policy *c = make("{\"destination\":\".a.example\",\"level\":\"none\"}");
        struct policy *d = make("{\"destination\":\"a.example\",\"level\":\"secure\","
                                "\"enabled\":false}");
        struct policy *e = make("{\"destination\":\"A.EXAMPLE\",\"level\":\"dane\"}");
        const struct policy *items[] = { a, b, c, d };
        char *text = NULL;
        size_t len = 0;
        assert_int_equal(policy_map_render(items, 4, &text, &len), 0);
        assert_string_equal(text, POLICY_MAP_HEADER ".a.example\tnone\n"
                                                    "[mx.example.net]:25\tmay\n"
                                                    "b.example\tencrypt\n");
        assert_int_equal(len, strlen(text));
        free(text);
        /* the caller's array is not reordered */
        assert_ptr_equal(items[0], a);

        /* two enabled rows with one key: refused; one of them disabled: fine */
        const struct policy *dup[] = { a, d, e };
        assert_int_equal(policy_map_render(dup, 3, &text, &len), 0);
        assert_non_null(strstr(text, "a.example\tdane\n"));
        assert_null(strstr(text, "secure"));
        free(text);
        d->enabled = true;
        text = NULL;
        assert_int_equal(policy_map_render(dup, 3, &text, &len), -EEXIST);
        assert_null(text);

        /* nothing enabled: the header alone */
        assert_int_equal(policy_map_render(NULL, 0, &text, &len), 0);
        assert_string_equal(text, POLICY_MAP_HEADER);
        free(text);

        free_policy(a);
        free_policy(b);
        free_policy(c);
        free_policy(d);
        free_policy(e);
}

/* ---- the map reader, and postmap itself when installed ---- */

static const char tricky_map[] = "  leading whitespace is skipped\n"
                                 "# a comment\n"
                                 "A.Example\tmay\n"
                                 "  protocols=>=TLSv1.2\n"
                                 "# a comment inside an entry does not end it\n"
                                 "\tciphers=high\n"
                                 "\n"
                                 "b.example none\n"
                                 "B.EXAMPLE encrypt\n"
                                 "   \n"
                                 "c.example   secure   \r\n"
                                 "d.example\n"
                                 "    # indented comment\n"
                                 "e.example  x\0y\n"
                                 "f.example\t\tverify match=hostname\n"
                                 "[mx.example.net]:25 fingerprint\n"
                                 "#g.example none\n"
                                 "h.example\t \tdane-only\n"
                                 "b.example may\n"
                                 "i.example\tmay";

static const struct {
        const char *key, *value;
} tricky_want[] = {
        { "a.example", "may  protocols=>=TLSv1.2\tciphers=high" },
        { "b.example", "none" },
        { "c.example", "secure" },
        { "e.example", "x" },
        { "f.example", "verify match=hostname" },
        { "[mx.example.net]:25", "fingerprint" },
        { "h.example", "dane-only" },
        { "i.example", "may" },
};

static void check_tricky(struct policy_map_entry *e, size_t n, bool in_file_order)
{
        if (n != ARRAY_SIZE(tricky_want)) {
                for (size_t i = 0; i < n; i++)
                        print_message("got '%s' -> '%s'\n", e[i].key, e[i].value);
                fail_msg("%zu entries, want %zu", n, ARRAY_SIZE(tricky_want));
        }
        for (size_t i = 0; i < n; i++) {
                size_t k = i;
                if (!in_file_order)
                        for (k = 0; k < n && !streq(tricky_want[k].key, e[i].key); k++)
                                ;
                if (k == n || !streq(e[i].key, tricky_want[k].key) ||
                    !streq(e[i].value, tricky_want[k].value))
                        fail_msg("entry %zu: '%s' -> '%s'", i, e[i].key, e[i].value);
        }
}

static void test_map_parse(void **state)
{
        struct policy_map_entry *e = NULL;
        size_t n = 0;
        assert_int_equal(policy_map_parse(tricky_map, sizeof(tricky_map) - 1, &e, &n), 0);
        check_tricky(e, n, true);
        assert_int_equal(e[0].line, 3);
        assert_int_equal(e[1].line, 8);
        policy_map_entries_sort(e, n);
        assert_string_equal(e[0].key, "[mx.example.net]:25");
        assert_string_equal(e[1].key, "a.example");
        policy_map_entries_free(e, n);

        assert_int_equal(policy_map_parse("", 0, &e, &n), 0);
        assert_int_equal(n, 0);
        policy_map_entries_free(e, n);
        assert_int_equal(policy_map_parse("# only\n\n", 8, &e, &n), 0);
        assert_int_equal(n, 0);
        policy_map_entries_free(e, n);
        /* postmap -s output: key TAB value */
        const char dump[] = "b.example\tnone\na.example\tmay  protocols=x\n";
        assert_int_equal(policy_map_parse(dump, sizeof(dump) - 1, &e, &n), 0);
        assert_int_equal(n, 2);
        assert_string_equal(e[1].value, "may  protocols=x");
        policy_map_entries_free(e, n);
}

static const char *postmap_path(void)
{
        static const char *const paths[] = { "/usr/sbin/postmap", "/usr/bin/postmap" };
        for (size_t i = 0; i < ARRAY_SIZE(paths); i++)
                if (access(paths[i], X_OK) == 0)
                        return paths[i];
        return NULL;
}

/* Builds a hash map from text with the real postmap and reads it back with postmap -s.
 * Returns -ENOENT when postmap is not installed. */
static int postmap_roundtrip(const char *text, size_t len, char **dump, size_t *dump_len)
{
        const char *pm = postmap_path();
        if (!pm)
                return -ENOENT;
        char dir[] = "/tmp/test_policy.XXXXXX", path[128], cmd[512];
        assert_non_null(mkdtemp(dir));
        snprintf(path, sizeof(path), "%s/main.cf", dir);
        FILE *f = fopen(path, "w");
        assert_non_null(f);
        fclose(f);
        snprintf(path, sizeof(path), "%s/map", dir);
        f = fopen(path, "w");
        assert_non_null(f);
        assert_int_equal(fwrite(text, 1, len, f), len);
        fclose(f);
        snprintf(cmd, sizeof(cmd),
                 "%s -c %s hash:%s 2>/dev/null && %s -c %s -s hash:%s 2>/dev/null", pm, dir, path,
                 pm, dir, path);
        FILE *out = popen(cmd, "r");
        assert_non_null(out);
        size_t cap = 4096, n = 0;
        char *buf = malloc(cap);
        size_t got;
        while ((got = fread(buf + n, 1, cap - n, out)) > 0) {
                n += got;
                if (n == cap)
                        buf = realloc(buf, cap *= 2);
        }
        int status = pclose(out);
        snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
        assert_int_equal(system(cmd), 0);
        if (status != 0) {
                free(buf);
                fail_msg("postmap failed (status %d)", status);
        }
        *dump = buf;
        *dump_len = n;
        return 0;
}

/* The order-free digest a whole build is checked with: the same entries in another order (and
 * another layout: continuation lines, comments, a dump's tabs) digest alike; one value changed,
 * two values swapped between keys, an entry dropped or a key's case or a duplicate: not. */
static void test_map_digest(void **state)
{
        (void)state;
        static const char *const same[] = {
                "a.example may\nb.example\tencrypt protocols=>=TLSv1.2\n[c.example]:25 none\n",
                "[c.example]:25\tnone\nb.example\tencrypt protocols=>=TLSv1.2\na.example\tmay\n",
                "# header\nB.EXAMPLE encrypt\n protocols=>=TLSv1.2\n\na.example   may  \n"
                "[c.example]:25 none",
        };
        static const char *const other[] = {
                "a.example may\nb.example\tencrypt protocols=>=TLSv1.3\n[c.example]:25 none\n",
                "a.example none\nb.example\tencrypt protocols=>=TLSv1.2\n[c.example]:25 may\n",
                "a.example may\nb.example\tencrypt protocols=>=TLSv1.2\n",
                "a.example may\nb.example\tencrypt protocols=>=TLSv1.2\n[c.example]:25 none\n"
                "a.example none\n",
                "a.example may\nb.example\tencrypt\tprotocols=>=TLSv1.2\n[c.example]:25 none\n",
        };
        struct policy_map_digest d0, d;
        assert_int_equal(policy_map_digest(same[0], strlen(same[0]), &d0), 0);
        assert_int_equal(d0.count, 3);
        for (size_t i = 1; i < ARRAY_SIZE(same); i++) {
                assert_int_equal(policy_map_digest(same[i], strlen(same[i]), &d), 0);
                if (!policy_map_digest_equal(&d0, &d))
                        fail_msg("same entries, other digest: case %zu", i);
        }
        for (size_t i = 0; i < ARRAY_SIZE(other); i++) {
                assert_int_equal(policy_map_digest(other[i], strlen(other[i]), &d), 0);
                if (policy_map_digest_equal(&d0, &d))
                        fail_msg("other entries, same digest: case %zu", i);
        }
        /* each walk hands out what policy_map_parse keeps (before its duplicates go) */
        struct policy_map_entry *e = NULL;
        size_t n = 0;
        assert_int_equal(policy_map_parse(tricky_map, sizeof(tricky_map) - 1, &e, &n), 0);
        struct strbuf text = { 0 };
        for (size_t i = n; i-- > 0;) {
                strbuf_add(&text, e[i].key, strlen(e[i].key));
                strbuf_add(&text, "\t", 1);
                strbuf_add(&text, e[i].value, strlen(e[i].value));
                strbuf_add(&text, "\n", 1);
        }
        policy_map_entries_free(e, n);
        struct policy_map_digest t1, t2;
        assert_int_equal(policy_map_digest(text.p, text.len, &t1), 0);
        assert_int_equal(policy_map_digest(tricky_map, sizeof(tricky_map) - 1, &t2), 0);
        assert_int_equal(t1.count, n);
        /* tricky_map has duplicate keys: its digest counts them, the entries' does not */
        assert_true(t2.count > n);
        assert_false(policy_map_digest_equal(&t1, &t2));
        free(text.p);
}

/* A map file read as Postfix reads policy values (policy_map_text.c): each case's text gives
 * these items (compact JSON, in file order), or the problem's code and field. */
static int collect_item(void *ctx, json_t *item, size_t line, const char *raw, size_t raw_len,
                        struct problem *reterr)
{
        (void)reterr;
        (void)raw;
        (void)raw_len;
        json_object_set_new(item, "line", json_integer((json_int_t)line));
        return json_array_append_new(ctx, item);
}

/* The raw bytes each item is made of alone: the key (folded) to the value, continuation lines
 * joined; none with a note or as #@disabled. Those the caller knows make no item. */
static int collect_raw(void *ctx, json_t *item, size_t line, const char *raw, size_t raw_len,
                       struct problem *reterr)
{
        (void)reterr;
        (void)line;
        json_decref(item);
        return json_array_append_new(ctx, raw ? json_stringn(raw, raw_len) : json_null());
}

static int know_b(void *ctx, const char *raw, size_t raw_len, size_t line, struct problem *reterr)
{
        (void)ctx;
        (void)reterr;
        bool b = raw_len == 13 && !memcmp(raw, "b.example\tmay", 13);
        if (b)
                assert_int_equal(line, 2);
        return b;
}

static void test_map_text_raw(void **state)
{
        (void)state;
        const char *text = "A.Example  encrypt  \n"
                           "b.example\tmay\n"
                           "c.example secure\n"
                           "  match=nexthop\n"
                           "#@note \"n\"\n"
                           "d.example may\n"
                           "#@disabled e.example none\n";
        json_t *got = json_array();
        struct problem p = { 0 };
        assert_int_equal(policy_map_text_items(text, strlen(text), know_b, collect_raw, got, &p),
                         0);
        char *dump = json_dumps(got, JSON_COMPACT);
        assert_string_equal(
            dump, "[\"a.example  encrypt\",\"c.example secure  match=nexthop\",null,null]");
        free(dump);
        json_decref(got);
}

static void test_map_text_read(void **state)
{
        (void)state;
        static const struct {
                const char *text, *want, *field;
        } cases[] = {
                { "a.example may\n",
                  "[{\"destination\":\"a.example\",\"level\":\"may\",\"line\":1}]", NULL },
                { "# c\n\nA.EXAMPLE  SECURE,Match=NextHop:dot-nexthop ,match=.x\n",
                  "[{\"destination\":\"a.example\",\"level\":\"secure\",\"match\":[\"NextHop\","
                  "\"dot-nexthop\",\".x\"],\"line\":3}]",
                  NULL },
                { "f.example fingerprint match=AB:CD|EF:01\n",
                  "[{\"destination\":\"f.example\",\"level\":\"fingerprint\",\"match\":[\"AB:CD\","
                  "\"EF:01\"],\"line\":1}]",
                  NULL },
                { "b.example encrypt\n protocols=>=TLSv1.2\n\texclude=aNULL:MD5\n",
                  "[{\"destination\":\"b.example\",\"level\":\"encrypt\",\"protocols\":\">=TLSv1."
                  "2\","
                  "\"exclude\":[\"aNULL\",\"MD5\"],\"line\":1}]",
                  NULL },
                { "c.example verify { servername = mx.example } connection_reuse=YES "
                  "connection_reuse=no\n",
                  "[{\"destination\":\"c.example\",\"level\":\"verify\",\"servername\":\"mx."
                  "example\","
                  "\"connection_reuse\":false,\"line\":1}]",
                  NULL },
                { "#@note \"n\\u00e9\"\n#@disabled d.example\tmay\ne.example none\n",
                  "[{\"destination\":\"d.example\",\"level\":\"may\",\"enabled\":false,\"note\":"
                  "\"n\\u00E9\",\"line\":2},{\"destination\":\"e.example\",\"level\":\"none\","
                  "\"line\":3}]",
                  NULL },
                { "a.example may\nb.example may colour=red\n", NULL, "/lines/2" },
                { "a.example may protocols=a protocols=b\n", NULL, "/lines/1" },
                { "a.example may {protocols=a\n", NULL, "/lines/1" },
                { "a.example may protocols\n", NULL, "/lines/1" },
                { "a.example secure match=\n", NULL, "/lines/1" },
                { "a.example may connection_reuse=maybe\n", NULL, "/lines/1" },
                { "a.example may\n#@note \"x\"\n", NULL, "/lines/2" },
                { "#@note \"x\"\n#@note \"y\"\na.example may\n", NULL, "/lines/1" },
                { "#@note x\na.example may\n", NULL, "/lines/1" },
                { "#@note \"x\" junk\na.example may\n", NULL, "/lines/1" },
                { "#@disabled \n", NULL, "/lines/1" },
                /* not UTF-8: refused, never dropped (jansson would give no string) */
                { "a.example verify tafile=/etc/\xe9.pem\n", NULL, "/lines/1" },
                { "a.example may\nb\xe9.example may\n", NULL, "/lines/2" },
                { "a.example secure match=a\xff\n", NULL, "/lines/1" },
                /* an empty value: Postfix reads protocols= as every protocol */
                { "a.example encrypt protocols=\n", NULL, "/lines/1" },
                { "a.example encrypt { protocols = }\n", NULL, "/lines/1" },
                { "a.example encrypt ciphers=HIGH\n",
                  "[{\"destination\":\"a.example\",\"level\":\"encrypt\",\"ciphers\":\"high\","
                  "\"line\":1}]",
                  NULL },
        };
        for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
                json_t *got = json_array();
                struct problem p = { 0 };
                int r = policy_map_text_items(cases[i].text, strlen(cases[i].text), NULL,
                                              collect_item, got, &p);
                if (cases[i].want) {
                        if (r < 0)
                                fail_msg("case %zu refused: %s %s", i, p.field, p.detail);
                        char *text =
                            json_dumps(got, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII);
                        if (strcmp(text, cases[i].want) != 0)
                                fail_msg("case %zu: %s", i, text);
                        free(text);
                } else {
                        if (r >= 0)
                                fail_msg("case %zu accepted", i);
                        if (strcmp(p.field, cases[i].field) != 0)
                                fail_msg("case %zu: field %s (%s)", i, p.field, p.detail);
                }
                problem_done(&p);
                json_decref(got);
        }
}

/* Policies written as the file and read back are the same policies (note, disabled, every
 * attribute). */
static void test_map_text_round_trip(void **state)
{
        (void)state;
        static const char *const bodies[] = {
                "{\"destination\":\"a.example\",\"level\":\"may\"}",
                "{\"destination\":\".sub.example\",\"level\":\"secure\",\"match\":[\"nexthop\","
                "\"dot-nexthop\"],\"protocols\":\">=TLSv1.2\",\"ciphers\":\"high\",\"exclude\":"
                "[\"aNULL\",\"MD5\"],\"connection_reuse\":true,\"note\":\"line1\\nline2 "
                "\\\"q\\\"\","
                "\"enabled\":false}",
                "{\"destination\":\"[mx.example]:25\",\"level\":\"verify\",\"servername\":"
                "\"mx.example\",\"note\":\"caf\\u00e9\"}",
                "{\"destination\":\"xn--bcher-kva.example\",\"level\":\"dane-only\"}",
        };
        struct strbuf file = { 0 };
        json_t *want = json_array();
        assert_int_equal(policy_map_text_header(&file, ARRAY_SIZE(bodies)), 0);
        for (size_t i = 0; i < ARRAY_SIZE(bodies); i++) {
                struct policy p = { 0 };
                struct problem pr = { 0 };
                json_t *b = json_loads(bodies[i], 0, NULL);
                assert_int_equal(policy_apply_json(&p, b, false, NULL, "", &pr), 0);
                assert_int_equal(policy_map_text_add(&file, &p), 0);
                json_array_append_new(want, policy_to_json(&p));
                policy_done(&p);
                json_decref(b);
        }
        json_t *items = json_array();
        struct problem pr = { 0 };
        assert_int_equal(policy_map_text_items(file.p, file.len, NULL, collect_item, items, &pr),
                         0);
        assert_int_equal(json_array_size(items), ARRAY_SIZE(bodies));
        for (size_t i = 0; i < ARRAY_SIZE(bodies); i++) {
                struct policy p = { 0 };
                json_t *item = json_array_get(items, i);
                json_object_del(item, "line");
                assert_int_equal(policy_apply_json(&p, item, false, NULL, "", &pr), 0);
                json_t *got = policy_to_json(&p);
                if (!json_equal(got, json_array_get(want, i))) {
                        char *a = json_dumps(got, JSON_COMPACT),
                             *b = json_dumps(json_array_get(want, i), JSON_COMPACT);
                        fail_msg("policy %zu: %s, written %s\n%s", i, a, b, file.p);
                }
                json_decref(got);
                policy_done(&p);
        }
        json_decref(items);
        json_decref(want);
        free(file.p);
}

static void test_map_parse_agrees_with_postmap(void **state)
{
        char *dump = NULL;
        size_t len = 0;
        if (postmap_roundtrip(tricky_map, sizeof(tricky_map) - 1, &dump, &len) == -ENOENT) {
                print_message("postmap not installed: skipped\n");
                skip();
        }
        struct policy_map_entry *e = NULL;
        size_t n = 0;
        assert_int_equal(policy_map_parse(dump, len, &e, &n), 0);
        check_tricky(e, n, false);
        policy_map_entries_free(e, n);
        free(dump);
}

/* ---- the property test ---- */

static uint64_t rng_state;

static uint64_t rnd(void)
{
        /* xorshift64* */
        rng_state ^= rng_state >> 12;
        rng_state ^= rng_state << 25;
        rng_state ^= rng_state >> 27;
        return rng_state * UINT64_C(2685821657736338717);
}

static unsigned pick(unsigned n)
{
        return (unsigned)(rnd() % n);
}

static bool chance(unsigned percent)
{
        return pick(100) < percent;
}

static const char *const bad_destinations[] = {
        "bank.example none\nvictim.example",
        "a.example\n",
        " a.example",
        "a.example ",
        "a\tb.example",
        "a\rb.example",
        "#a.example",
        "$a.example",
        "a,b.example",
        "{a}.example",
        "a/b.example",
        ".",
        "..",
        "a..b.example",
        "a.example.",
        "\xe2\x98\x83.example",
        "[a.example",
        "[::1::2]:25",
        ".host:25",
        "*.example",
        "[a.example]:sub--mission",
        "[a.example]:0",
        "[a.example]:65536",
        "[a.example]:00025",
        "192.0.2.1",
        "-a.example",
        "",
};

/* A valid destination, in random case, from a small space so that writes collide. */
static void gen_destination(char *out, size_t size)
{
        /* forms whose key is not the input in lower case (the map oracle knows the U-label) */
        static const char *const idn[] = { "b\xc3\xbc"
                                           "cher.example",
                                           ".b\xc3\xbc"
                                           "cher.example",
                                           "[b\xc3\xbc"
                                           "cher.example]:25",
                                           "xn--bcher-kva.example:587" };
        unsigned k = pick(40);
        switch (pick(10)) {
        case 5:
                snprintf(out, size, "relay%u.example:%s", k, chance(50) ? "587" : "submission");
                break;
        case 6:
                snprintf(out, size, "[ipv6:2001:db8::%x]:25", k);
                break;
        case 7:
                snprintf(out, size, "_smtp%u.example", k);
                break;
        case 8:
                snprintf(out, size, "%s", idn[pick(ARRAY_SIZE(idn))]);
                break;
        case 9:
                snprintf(out, size, "[2001:db8::%x]", k);
                break;
        case 0:
                snprintf(out, size, ".d%u.example", k);
                break;
        case 1:
                snprintf(out, size, "[mx%u.example.net]", k);
                break;
        case 2:
                snprintf(out, size, "[mx%u.example.net]:%u", k, 1 + pick(3) * 1000);
                break;
        case 3:
                snprintf(out, size, "[192.0.2.%u]:25", k);
                break;
        default:
                snprintf(out, size, "d%u.example", k);
                break;
        }
        for (char *c = out; *c; c++)
                if (*c >= 'a' && *c <= 'z' && chance(20))
                        *c = (char)(*c - 'a' + 'A');
}

/* The test's own statement of the rules: which level takes which attribute. */
enum {
        GA_MATCH,
        GA_PROTOCOLS,
        GA_CIPHERS,
        GA_EXCLUDE,
        GA_SERVERNAME,
        GA_TAFILE,
        GA_REUSE,
        _GA_MAX
};
static const bool level_takes[_TLS_LEVEL_MAX][_GA_MAX] = {
        [TLS_LEVEL_NONE] = { false, false, false, false, false, false, false },
        [TLS_LEVEL_MAY] = { false, true, true, true, true, false, true },
        [TLS_LEVEL_ENCRYPT] = { false, true, true, true, true, false, true },
        [TLS_LEVEL_DANE] = { false, true, true, true, true, false, true },
        [TLS_LEVEL_DANE_ONLY] = { false, true, true, true, true, false, true },
        [TLS_LEVEL_FINGERPRINT] = { true, true, true, true, true, false, true },
        [TLS_LEVEL_VERIFY] = { true, true, true, true, true, true, true },
        [TLS_LEVEL_SECURE] = { true, true, true, true, true, true, true },
};

enum match_kind { MK_NONE, MK_FP, MK_PATTERN };

/* What a generated write should do, computed independently of the module. */
struct expect {
        bool valid;       /* every component well-formed */
        int level;        /* -1: not sent */
        int has[_GA_MAX]; /* -1 not sent, 0 sent empty/null, 1 sent non-empty */
        enum match_kind match_kind;
        bool null_ciphers; /* ciphers sent as the grade "null" */
};

static void gen_attributes(json_t *body, struct expect *x)
{
        static const char *const good_protocols[] = { ">=TLSv1.2", "!SSLv2, !SSLv3",
                                                      "TLSv1.2:TLSv1.3", ">=tlsv1.3", "" };
        static const char *const bad_protocols[] = { "TLSv1.2\nvictim.example none", "TLSv9",
                                                     ">=TLSv1.3:<=TLSv1.2", "SSLv3" };
        static const char *const good_ciphers[] = { "export", "low", "medium", "high", "null" };
        static const char *const bad_ciphers[] = { "HIGH", "high\n", "" };
        static const char *const good_patterns[] = { "hostname", "nexthop", "dot-nexthop",
                                                     ".Example.com", "mx.example.net" };
        static const char *const bad_items[] = {
                "a b", "a,b", "a\nb", "a|b", "", "a..b", "hostname\nvictim.example none"
        };
        static const char *const good_exclude[] = { "aNULL", "MD5", "3DES", "RSA+AES",
                                                    "TLS_AES_128_GCM_SHA256" };
        static const char *const bad_exclude[] = { "a NULL", "!MD5", "MD5:RC4", "-x", "" };

        for (int a = 0; a < _GA_MAX; a++)
                x->has[a] = -1;
        x->match_kind = MK_NONE;
        if (chance(35)) {
                if (chance(10)) {
                        json_object_set_new(body, "match", json_null());
                        x->has[GA_MATCH] = 0;
                } else {
                        json_t *a = json_array();
                        unsigned n = pick(3);
                        bool fp = chance(50);
                        x->match_kind = fp ? MK_FP : MK_PATTERN;
                        for (unsigned i = 0; i < n; i++) {
                                if (chance(8)) {
                                        json_array_append_new(
                                            a, json_string(bad_items[pick(ARRAY_SIZE(bad_items))]));
                                        x->valid = false;
                                } else if (fp) {
                                        char s[200];
                                        size_t o = 0;
                                        unsigned bytes = chance(80) ? 32 : 64;
                                        for (unsigned b = 0; b < bytes; b++)
                                                o +=
                                                    (size_t)snprintf(s + o, sizeof(s) - o, "%s%02x",
                                                                     b ? ":" : "", pick(256));
                                        json_array_append_new(a, json_string(s));
                                } else {
                                        json_array_append_new(
                                            a, json_string(
                                                   good_patterns[pick(ARRAY_SIZE(good_patterns))]));
                                }
                        }
                        x->has[GA_MATCH] = n > 0;
                        if (n == 0)
                                x->match_kind = MK_NONE;
                        json_object_set_new(body, "match", a);
                }
        }
        if (chance(35)) {
                if (chance(10)) {
                        json_object_set_new(body, "protocols", json_null());
                        x->has[GA_PROTOCOLS] = 0;
                } else if (chance(10)) {
                        json_object_set_new(
                            body, "protocols",
                            json_string(bad_protocols[pick(ARRAY_SIZE(bad_protocols))]));
                        x->valid = false;
                        x->has[GA_PROTOCOLS] = 1;
                } else {
                        const char *s = good_protocols[pick(ARRAY_SIZE(good_protocols))];
                        json_object_set_new(body, "protocols", json_string(s));
                        x->has[GA_PROTOCOLS] = *s != 0;
                }
        }
        if (chance(35)) {
                if (chance(10)) {
                        json_object_set_new(body, "ciphers", json_null());
                        x->has[GA_CIPHERS] = 0;
                } else if (chance(10)) {
                        json_object_set_new(
                            body, "ciphers",
                            json_string(bad_ciphers[pick(ARRAY_SIZE(bad_ciphers))]));
                        x->valid = false;
                        x->has[GA_CIPHERS] = 1;
                } else {
                        const char *c = good_ciphers[pick(ARRAY_SIZE(good_ciphers))];
                        json_object_set_new(body, "ciphers", json_string(c));
                        x->has[GA_CIPHERS] = 1;
                        x->null_ciphers = streq(c, "null");
                }
        }
        static const char *const good_servernames[] = { "hostname", "nexthop", "MX.Example.net" };
        static const char *const bad_servernames[] = { "a b", "x\ny none", "", "1.2.3.4" };
        static const char *const bad_tafiles[] = { "rel/ta.pem", "/a b", "/a/../b", "/a,b", "" };
        if (chance(15)) {
                if (chance(15)) {
                        json_object_set_new(body, "servername", json_null());
                        x->has[GA_SERVERNAME] = 0;
                } else if (chance(10)) {
                        json_object_set_new(
                            body, "servername",
                            json_string(bad_servernames[pick(ARRAY_SIZE(bad_servernames))]));
                        x->valid = false;
                        x->has[GA_SERVERNAME] = 1;
                } else {
                        json_object_set_new(
                            body, "servername",
                            json_string(good_servernames[pick(ARRAY_SIZE(good_servernames))]));
                        x->has[GA_SERVERNAME] = 1;
                }
        }
        if (chance(15)) {
                if (chance(15)) {
                        json_object_set_new(body, "tafile", json_null());
                        x->has[GA_TAFILE] = 0;
                } else if (chance(10)) {
                        json_object_set_new(
                            body, "tafile",
                            json_string(bad_tafiles[pick(ARRAY_SIZE(bad_tafiles))]));
                        x->valid = false;
                        x->has[GA_TAFILE] = 1;
                } else {
                        json_object_set_new(body, "tafile", json_string("/etc/ssl/ta-1.pem"));
                        x->has[GA_TAFILE] = 1;
                }
        }
        if (chance(15)) {
                if (chance(15)) {
                        json_object_set_new(body, "connection_reuse", json_null());
                        x->has[GA_REUSE] = 0;
                } else if (chance(10)) {
                        json_object_set_new(body, "connection_reuse", json_string("yes"));
                        x->valid = false;
                        x->has[GA_REUSE] = 1;
                } else {
                        json_object_set_new(body, "connection_reuse", json_boolean(chance(50)));
                        x->has[GA_REUSE] = 1;
                }
        }
        if (chance(35)) {
                if (chance(10)) {
                        json_object_set_new(body, "exclude", json_null());
                        x->has[GA_EXCLUDE] = 0;
                } else {
                        json_t *a = json_array();
                        unsigned n = pick(3);
                        for (unsigned i = 0; i < n; i++) {
                                if (chance(8)) {
                                        json_array_append_new(
                                            a, json_string(
                                                   bad_exclude[pick(ARRAY_SIZE(bad_exclude))]));
                                        x->valid = false;
                                } else {
                                        json_array_append_new(
                                            a, json_string(
                                                   good_exclude[pick(ARRAY_SIZE(good_exclude))]));
                                }
                        }
                        x->has[GA_EXCLUDE] = n > 0;
                        json_object_set_new(body, "exclude", a);
                }
        }
        if (chance(20))
                json_object_set_new(body, "note",
                                    chance(90) ? json_string("n\n# x none") : json_null());
        if (chance(5)) {
                json_object_set_new(body, "note", json_stringn("a\0b", 3));
                x->valid = false;
        }
        if (chance(30))
                json_object_set_new(body, "enabled", json_boolean(chance(70)));
        if (chance(3)) {
                json_object_set_new(body, "enabled", json_string("yes"));
                x->valid = false;
        }
        if (chance(5))
                json_object_set_new(body, "managed_by",
                                    chance(50) ? json_string("domains") : json_null());
        if (chance(2)) {
                json_object_set_new(body, "managed_by", json_string("Domains"));
                x->valid = false;
        }
        if (chance(2)) {
                json_object_set_new(body, "unknown", json_true());
                x->valid = false;
        }
}

static void gen_level(json_t *body, struct expect *x, bool required)
{
        x->level = -1;
        if (!required && chance(60))
                return;
        if (chance(3)) {
                json_object_set_new(body, "level", json_string(chance(50) ? "Verify" : "tls"));
                x->valid = false;
                return;
        }
        x->level = (int)pick(_TLS_LEVEL_MAX);
        json_object_set_new(body, "level", json_string(tls_level_to_string(x->level)));
}

static enum match_kind row_match_kind(const struct policy *p)
{
        if (!p || !p->n_match)
                return MK_NONE;
        return p->level == TLS_LEVEL_FINGERPRINT ? MK_FP : MK_PATTERN;
}

/* Whether the merged result obeys the rules (the generated components being valid). */
static bool expect_accepted(const struct expect *x, const struct policy *base)
{
        if (!x->valid)
                return false;
        int level = x->level >= 0 ? x->level : (base ? (int)base->level : -1);
        if (level < 0)
                return false; /* PUT without a level: missing_field */
        int has[_GA_MAX];
        int base_has[_GA_MAX] = { base && base->n_match,
                                  base && base->protocols[0],
                                  base && base->ciphers[0],
                                  base && base->n_exclude,
                                  base && base->servername[0],
                                  base && base->tafile[0],
                                  base && base->connection_reuse != POLICY_REUSE_UNSET };
        for (int a = 0; a < _GA_MAX; a++)
                has[a] = x->has[a] >= 0 ? x->has[a] : (base ? base_has[a] : 0);
        for (int a = 0; a < _GA_MAX; a++)
                if (has[a] && !level_takes[level][a])
                        return false;
        if (level == TLS_LEVEL_FINGERPRINT && !has[GA_MATCH])
                return false;
        /* ciphers null at encrypt leaves no cipher (the good protocols all keep TLSv1.2+) */
        bool null_ciphers = x->has[GA_CIPHERS] >= 0 ? x->has[GA_CIPHERS] == 1 && x->null_ciphers
                                                    : base && streq(base->ciphers, "null");
        if (level == TLS_LEVEL_ENCRYPT && null_ciphers)
                return false;
        if (has[GA_MATCH]) {
                enum match_kind k = x->has[GA_MATCH] >= 0 ? x->match_kind : row_match_kind(base);
                if (k != (level == TLS_LEVEL_FINGERPRINT ? MK_FP : MK_PATTERN))
                        return false;
        }
        return true;
}

struct model {
        struct policy *rows;
        size_t n, cap;
};

static ssize_t model_find(const struct model *m, const char *key)
{
        for (size_t i = 0; i < m->n; i++)
                if (streq(m->rows[i].destination, key))
                        return (ssize_t)i;
        return -1;
}

static void model_put(struct model *m, struct policy *p)
{
        ssize_t i = model_find(m, p->destination);
        if (i >= 0) {
                policy_done(&m->rows[i]);
                m->rows[i] = *p;
                return;
        }
        if (m->n == m->cap) {
                m->cap = m->cap ? 2 * m->cap : 64;
                m->rows = realloc(m->rows, m->cap * sizeof(*m->rows));
        }
        m->rows[m->n++] = *p;
}

static void model_delete(struct model *m, size_t i)
{
        policy_done(&m->rows[i]);
        m->rows[i] = m->rows[--m->n];
}

struct sbuf {
        char *p;
        size_t n, cap;
};

static void sbuf_add(struct sbuf *b, const char *s, size_t n)
{
        while (b->n + n + 2 > b->cap)
                b->p = realloc(b->p, b->cap = b->cap ? 2 * b->cap : 4096);
        memcpy(b->p + b->n, s, n);
        b->n += n;
        b->p[b->n++] = '\x1f'; /* a separator no field holds */
        b->p[b->n] = 0;
}

static void sbuf_adds(struct sbuf *b, const char *s)
{
        sbuf_add(b, s ? s : "(null)", strlen(s ? s : "(null)"));
}

/* A full serialization of the set (every field of every row, in order), to prove that refused
 * writes changed nothing. */
static char *model_snapshot(const struct model *m)
{
        struct sbuf b = { 0 };
        sbuf_add(&b, "", 0);
        for (size_t i = 0; i < m->n; i++) {
                const struct policy *p = &m->rows[i];
                char num[64];
                snprintf(num, sizeof(num), "%d %zu %zu %d", (int)p->level, p->n_match, p->n_exclude,
                         (int)p->enabled);
                sbuf_adds(&b, p->destination);
                sbuf_adds(&b, num);
                for (size_t k = 0; k < p->n_match; k++)
                        sbuf_adds(&b, p->match[k]);
                sbuf_adds(&b, p->protocols);
                sbuf_adds(&b, p->ciphers);
                for (size_t k = 0; k < p->n_exclude; k++)
                        sbuf_adds(&b, p->exclude[k]);
                sbuf_adds(&b, p->note);
                sbuf_adds(&b, p->managed_by);
                sbuf_add(&b, "\n", 1);
        }
        return b.p;
}

/* The test's own rendering of a row's value: the oracle the parsed map is compared with. */
static void oracle_value(const struct policy *p, char *out, size_t size)
{
        size_t o = (size_t)snprintf(out, size, "%s", tls_level_to_string(p->level));
        if (p->n_match) {
                o += (size_t)snprintf(out + o, size - o, " match=");
                for (size_t i = 0; i < p->n_match; i++)
                        o += (size_t)snprintf(
                            out + o, size - o, "%s%s",
                            i ? (p->level == TLS_LEVEL_FINGERPRINT ? "|" : ":") : "", p->match[i]);
        }
        if (p->protocols[0])
                o += (size_t)snprintf(out + o, size - o, " protocols=%s", p->protocols);
        if (p->ciphers[0])
                o += (size_t)snprintf(out + o, size - o, " ciphers=%s", p->ciphers);
        if (p->n_exclude) {
                o += (size_t)snprintf(out + o, size - o, " exclude=");
                for (size_t i = 0; i < p->n_exclude; i++)
                        o += (size_t)snprintf(out + o, size - o, "%s%s", i ? ":" : "",
                                              p->exclude[i]);
        }
        if (p->servername[0])
                o += (size_t)snprintf(out + o, size - o, " servername=%s", p->servername);
        if (p->tafile[0])
                o += (size_t)snprintf(out + o, size - o, " tafile=%s", p->tafile);
        if (p->connection_reuse != POLICY_REUSE_UNSET)
                o += (size_t)snprintf(out + o, size - o, " connection_reuse=%s",
                                      p->connection_reuse == POLICY_REUSE_YES ? "yes" : "no");
        for (const char *c = out; *c; c++)
                if (!(strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                             ".:!|<>=+_-/ ",
                             *c)))
                        fail_msg("row %s: byte 0x%02x in its value", p->destination,
                                 (unsigned char)*c);
}

static int cmp_str(const void *a, const void *b)
{
        return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The map of the set parses back (with our reader, and with postmap when installed) to exactly
 * the enabled rows: same keys, same values, no more, no fewer. */
static void check_map_matches(const struct model *m, bool with_postmap)
{
        const struct policy **items = malloc((m->n + 1) * sizeof(*items));
        for (size_t i = 0; i < m->n; i++)
                items[i] = &m->rows[i];
        char *text = NULL;
        size_t len = 0;
        assert_int_equal(policy_map_render(items, m->n, &text, &len), 0);
        free(items);

        char **want = malloc((2 * m->n + 1) * sizeof(char *));
        size_t n_want = 0;
        for (size_t i = 0; i < m->n; i++) {
                if (!m->rows[i].enabled)
                        continue;
                char value[4096], *line;
                oracle_value(&m->rows[i], value, sizeof(value));
                assert_true(asprintf(&line, "%s\t%s", m->rows[i].destination, value) > 0);
                want[n_want++] = line;
                /* an internationalized destination is also keyed by its U-label */
                const char *a = strstr(m->rows[i].destination, "xn--bcher-kva");
                if (a) {
                        int at = (int)(a - m->rows[i].destination);
                        assert_true(asprintf(&line,
                                             "%.*sb\xc3\xbc"
                                             "cher%s\t%s",
                                             at, m->rows[i].destination,
                                             a + strlen("xn--bcher-kva"), value) > 0);
                        want[n_want++] = line;
                }
        }
        qsort(want, n_want, sizeof(char *), cmp_str);

        for (int pass = 0; pass < (with_postmap ? 2 : 1); pass++) {
                const char *src = text;
                size_t src_len = len;
                char *dump = NULL;
                if (pass == 1) {
                        if (postmap_roundtrip(text, len, &dump, &src_len) == -ENOENT)
                                break;
                        src = dump;
                }
                struct policy_map_entry *e = NULL;
                size_t n = 0;
                assert_int_equal(policy_map_parse(src, src_len, &e, &n), 0);
                char **got = malloc((n + 1) * sizeof(char *));
                for (size_t i = 0; i < n; i++)
                        assert_true(asprintf(&got[i], "%s\t%s", e[i].key, e[i].value) > 0);
                qsort(got, n, sizeof(char *), cmp_str);
                if (n != n_want)
                        fail_msg("%s: %zu entries, %zu enabled rows", pass ? "postmap" : "parse", n,
                                 n_want);
                for (size_t i = 0; i < n; i++)
                        if (!streq(got[i], want[i]))
                                fail_msg("%s: entry '%s', want '%s'", pass ? "postmap" : "parse",
                                         got[i], want[i]);
                for (size_t i = 0; i < n; i++)
                        free(got[i]);
                free(got);
                policy_map_entries_free(e, n);
                free(dump);
        }
        for (size_t i = 0; i < n_want; i++)
                free(want[i]);
        free(want);
        free(text);
}

static void test_property_random_writes(void **state)
{
        uint64_t seed = 20261122;
        const char *env = getenv("SMTPTLSD_TEST_SEED");
        if (env)
                seed = strtoull(env, NULL, 10);
        rng_state = seed ? seed : 1;
        struct model m = { 0 };
        unsigned accepted = 0, refused = 0, ops[6] = { 0 };
        uint64_t t0 = now_monotonic_usec();

        for (int step = 0; step < 2000; step++) {
                char dest[300], url[300];
                struct expect x = { .valid = true };
                json_t *body = json_object();
                char *before = model_snapshot(&m);
                struct problem pr = { 0 };
                int r = 0;
                bool expect_ok = false, check_expectation = true;
                unsigned op = pick(100);
                bool bad_dest = chance(10);
                if (bad_dest)
                        snprintf(dest, sizeof(dest), "%s",
                                 bad_destinations[pick(ARRAY_SIZE(bad_destinations))]);
                else
                        gen_destination(dest, sizeof(dest));

                if (op < 40) { /* PUT /tls-policies/{dest} */
                        ops[0]++;
                        snprintf(url, sizeof(url), "%s", dest);
                        gen_level(body, &x, true);
                        gen_attributes(body, &x);
                        if (chance(20)) { /* the body repeats the destination, maybe another */
                                char other[300];
                                if (chance(70)) {
                                        snprintf(other, sizeof(other), "%s", dest);
                                        for (char *c = other; *c; c++)
                                                *c = (char)(chance(50) && *c >= 'a' && *c <= 'z'
                                                                ? *c - 'a' + 'A'
                                                                : *c);
                                } else {
                                        gen_destination(other, sizeof(other));
                                        char k1[256], k2[256];
                                        struct problem ig = { 0 };
                                        if (bad_dest ||
                                            policy_destination_normalize(dest, k1, "", &ig) < 0 ||
                                            policy_destination_normalize(other, k2, "", &ig) < 0 ||
                                            !streq(k1, k2))
                                                x.valid = false;
                                }
                                json_object_set_new(body, "destination", json_string(other));
                        }
                        if (bad_dest)
                                x.valid = false;
                        struct policy p = { 0 };
                        char key[256];
                        struct problem ig = { 0 };
                        ssize_t at = policy_destination_normalize(dest, key, "", &ig) >= 0
                                         ? model_find(&m, key)
                                         : -1;
                        if (at >= 0) /* the manager stays with the row */
                                memcpy(p.managed_by, m.rows[at].managed_by, sizeof(p.managed_by));
                        expect_ok = expect_accepted(&x, NULL);
                        r = policy_apply_json(&p, body, false, url, "", &pr);
                        if (r >= 0)
                                model_put(&m, &p);
                        else
                                policy_done(&p);
                } else if (op < 55) { /* POST, or a bulk item */
                        ops[1]++;
                        gen_level(body, &x, true);
                        gen_attributes(body, &x);
                        if (chance(95))
                                json_object_set_new(body, "destination", json_string(dest));
                        else
                                x.valid = false; /* missing */
                        if (bad_dest)
                                x.valid = false;
                        struct policy p = { 0 };
                        expect_ok = expect_accepted(&x, NULL);
                        r = policy_apply_json(&p, body, false, NULL, "/items/0", &pr);
                        if (r >= 0 && model_find(&m, p.destination) >= 0) {
                                /* the caller's 409 duplicate_destination: nothing changes */
                                check_expectation = false;
                                policy_done(&p);
                                r = -EEXIST;
                        } else if (r >= 0) {
                                model_put(&m, &p);
                        } else {
                                policy_done(&p);
                        }
                } else if (op < 80 && m.n) { /* PATCH an existing row */
                        ops[2]++;
                        struct policy *row = &m.rows[pick((unsigned)m.n)];
                        snprintf(url, sizeof(url), "%s", row->destination);
                        if (chance(30))
                                for (char *c = url; *c; c++)
                                        *c = (char)(*c >= 'a' && *c <= 'z' ? *c - 'a' + 'A' : *c);
                        gen_level(body, &x, false);
                        gen_attributes(body, &x);
                        expect_ok = expect_accepted(&x, row);
                        r = policy_apply_json(row, body, true, url, "", &pr);
                } else if (op < 90 && m.n) { /* toggle enabled */
                        ops[3]++;
                        struct policy *row = &m.rows[pick((unsigned)m.n)];
                        json_object_set_new(body, "enabled", json_boolean(!row->enabled));
                        bool was = row->enabled;
                        expect_ok = true;
                        r = policy_apply_json(row, body, true, row->destination, "", &pr);
                        assert_true(r < 0 || row->enabled == !was);
                } else { /* DELETE /tls-policies/{dest} */
                        ops[4]++;
                        char key[256];
                        check_expectation = false;
                        if (m.n && chance(70))
                                snprintf(dest, sizeof(dest), "%s",
                                         m.rows[pick((unsigned)m.n)].destination);
                        r = policy_destination_normalize(dest, key, "", &pr);
                        if (r >= 0) {
                                ssize_t at = model_find(&m, key);
                                if (at >= 0)
                                        model_delete(&m, (size_t)at);
                                else
                                        r = -ENOENT; /* 404 */
                        }
                }
                if (check_expectation && (r >= 0) != expect_ok) {
                        char *b = json_dumps(body, JSON_SORT_KEYS);
                        fail_msg("step %d (seed %llu): %s %s, expected %s: %s at %s: %s", step,
                                 (unsigned long long)seed, b, r >= 0 ? "accepted" : "refused",
                                 expect_ok ? "accepted" : "refused", problem_code_name(pr.code),
                                 pr.field, pr.detail);
                }
                if (r < 0) {
                        refused++;
                        char *after = model_snapshot(&m);
                        if (!streq(before, after))
                                fail_msg("step %d: a refused write changed the set", step);
                        free(after);
                } else {
                        accepted++;
                }
                /* every row in the set is one the module accepts as a whole */
                for (size_t i = 0; i < m.n; i++) {
                        struct problem c = { 0 };
                        if (policy_check(&m.rows[i], "", &c) < 0)
                                fail_msg("row %s: %s", m.rows[i].destination, c.detail);
                }
                free(before);
                problem_done(&pr);
                json_decref(body);
                if (step % 500 == 499)
                        check_map_matches(&m, false);
        }
        size_t enabled = 0;
        for (size_t i = 0; i < m.n; i++)
                enabled += m.rows[i].enabled;
        check_map_matches(&m, true);
        print_message("property: seed %llu, 2000 writes (put %u, post %u, patch %u, toggle %u, "
                      "delete %u): %u accepted, %u refused; %zu rows, %zu enabled; %.1f ms%s\n",
                      (unsigned long long)seed, ops[0], ops[1], ops[2], ops[3], ops[4], accepted,
                      refused, m.n, enabled, (double)(now_monotonic_usec() - t0) / 1000.0,
                      postmap_path() ? " (map also checked with postmap)" : "");
        assert_true(accepted > 300 && refused > 300);
        for (size_t i = 0; i < m.n; i++)
                policy_done(&m.rows[i]);
        free(m.rows);
}

/* ---- bulk scale: 100,000 items ---- */

static void test_bulk_scale(void **state)
{
        enum { N = 100000 };
        char(*dests)[64] = malloc(N * sizeof(*dests));
        char out[POLICY_DESTINATION_MAX + 1];
        for (unsigned i = 0; i < N; i++) {
                switch (i % 4) {
                case 0:
                        snprintf(dests[i], sizeof(dests[i]), "Host%06u.Example.COM", i);
                        break;
                case 1:
                        snprintf(dests[i], sizeof(dests[i]), ".sub%06u.example.org", i);
                        break;
                case 2:
                        snprintf(dests[i], sizeof(dests[i]), "[mx%06u.example.net]:%u", i,
                                 1 + i % 65535);
                        break;
                default:
                        snprintf(dests[i], sizeof(dests[i]), "[10.%u.%u.%u]:25", (i >> 16) & 255,
                                 (i >> 8) & 255, i & 255);
                        break;
                }
        }
        uint64_t t0 = now_monotonic_usec();
        for (unsigned i = 0; i < N; i++) {
                struct problem p = { 0 };
                if (policy_destination_normalize(dests[i], out, "", &p) < 0)
                        fail_msg("refused %s: %s", dests[i], p.detail);
        }
        uint64_t t_norm = now_monotonic_usec() - t0;

        /* the bulk path: one apply per item with its /items/N prefix, then the map */
        struct policy *ps = calloc(N, sizeof(*ps));
        const struct policy **ptrs = malloc(N * sizeof(*ptrs));
        t0 = now_monotonic_usec();
        for (unsigned i = 0; i < N; i++) {
                char prefix[32];
                snprintf(prefix, sizeof(prefix), "/items/%u", i);
                json_t *item = json_pack("{s:s, s:s, s:s, s:s}", "destination", dests[i], "level",
                                         i % 3 ? "encrypt" : "may", "protocols", ">=TLSv1.2",
                                         "ciphers", "high");
                struct problem p = { 0 };
                if (policy_apply_json(&ps[i], item, false, NULL, prefix, &p) < 0)
                        fail_msg("item %u: %s", i, p.detail);
                json_decref(item);
                ptrs[i] = &ps[i];
        }
        uint64_t t_apply = now_monotonic_usec() - t0;
        char *text = NULL;
        size_t len = 0;
        t0 = now_monotonic_usec();
        assert_int_equal(policy_map_render(ptrs, N, &text, &len), 0);
        uint64_t t_render = now_monotonic_usec() - t0;
        struct policy_map_entry *e = NULL;
        size_t n = 0;
        t0 = now_monotonic_usec();
        assert_int_equal(policy_map_parse(text, len, &e, &n), 0);
        uint64_t t_parse = now_monotonic_usec() - t0;
        assert_int_equal(n, N);
        policy_map_entries_free(e, n);

        /* one bad item among 100,000 is named */
        json_t *bad = json_pack("{s:s, s:s}", "destination", "x.example\n", "level", "may");
        struct policy p = { 0 };
        struct problem pr = { 0 };
        assert_true(policy_apply_json(&p, bad, false, NULL, "/items/99999", &pr) < 0);
        assert_string_equal(pr.field, "/items/99999/destination");
        json_decref(bad);

        print_message("bulk: %d destinations normalized in %.1f ms; %d items applied in %.1f ms; "
                      "map of %zu bytes rendered in %.1f ms, parsed back in %.1f ms\n",
                      N, (double)t_norm / 1000.0, N, (double)t_apply / 1000.0, len,
                      (double)t_render / 1000.0, (double)t_parse / 1000.0);
        free(text);
        for (unsigned i = 0; i < N; i++)
                policy_done(&ps[i]);
        free(ps);
        free(ptrs);
        free(dests);
}

/* One rule for managed_by on every path: a change needs admin, keeping it needs nothing. */
static void test_manager_change_needs_admin(void **state)
{
        static const struct {
                const char *was, *now;
                enum scope scope;
                bool ok;
        } cases[] = {
                { "", "", SCOPE_WRITE, true },
                { NULL, NULL, SCOPE_WRITE, true },
                { "", "domains", SCOPE_WRITE, false },
                { NULL, "domains", SCOPE_READ, false },
                { "domains", "", SCOPE_WRITE, false },
                { "domains", "other", SCOPE_WRITE, false },
                { "domains", "domains", SCOPE_WRITE, true },
                { "", "domains", SCOPE_ADMIN, true },
                { "domains", NULL, SCOPE_ADMIN, true },
                { "", "domains", SCOPE_NONE, false },
        };
        (void)state;
        for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
                struct problem p = { 0 };
                int r = policy_check_manager_change(cases[i].was, cases[i].now, cases[i].scope,
                                                    i % 2 ? "/items/7" : "", &p);
                if (cases[i].ok) {
                        assert_int_equal(r, 0);
                        assert_int_equal(p.code, 0);
                } else {
                        assert_true(r < 0);
                        assert_int_equal(p.code, PROBLEM_FORBIDDEN);
                        assert_string_equal(p.field, i % 2 ? "/items/7/managed_by" : "/managed_by");
                        assert_non_null(strstr(p.detail, "admin"));
                }
                problem_done(&p);
        }
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_levels),
                cmocka_unit_test(test_fingerprint_digest_length),
                cmocka_unit_test(test_destination_accepts),
                cmocka_unit_test(test_destination_refusals),
                cmocka_unit_test(test_destination_fold_and_nul),
                cmocka_unit_test(test_destination_idn_keys),
                cmocka_unit_test(test_apply_post_put),
                cmocka_unit_test(test_apply_note),
                cmocka_unit_test(test_apply_patch),
                cmocka_unit_test(test_level_attribute_matrix),
                cmocka_unit_test(test_protocols),
                cmocka_unit_test(test_match_and_exclude_values),
                cmocka_unit_test(test_smuggling),
                cmocka_unit_test(test_render_refuses_bad_structs),
                cmocka_unit_test(test_new_attributes),
                cmocka_unit_test(test_impossible_combinations),
                cmocka_unit_test(test_exclude_dropped),
                cmocka_unit_test(test_map_render),
                cmocka_unit_test(test_map_parse),
                cmocka_unit_test(test_map_parse_agrees_with_postmap),
                cmocka_unit_test(test_map_digest),
                cmocka_unit_test(test_map_text_read),
                cmocka_unit_test(test_map_text_raw),
                cmocka_unit_test(test_map_text_round_trip),
                cmocka_unit_test(test_property_random_writes),
                cmocka_unit_test(test_bulk_scale),
                cmocka_unit_test(test_manager_change_needs_admin),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
