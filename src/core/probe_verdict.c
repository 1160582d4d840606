/* probe_verdict.c - what each TLS policy level would do with one mail server, by Postfix's rules
 * (probe_verdict.h): the certificate name match of verify and secure after
 * src/tls/tls_client.c (match_servername), the fingerprint comparison, DANE as
 * src/smtp/smtp_tls_policy.c (dane_init) applies it, and the strictest level that passes.
 * Pure; any thread. */
#include "core/probe_verdict.h"

#include <stdarg.h>
#include <stdio.h>
#include <strings.h>

#include "core/chars.h"
#include "util.h"

#define FPR_BYTES_MIN 16 /* MD5 */
#define FPR_BYTES_MAX 64 /* SHA-512 */

/* ---- certificate names ---------------------------------------------------------------------- */

/* Whether cert_name is a proper sub-domain of domain: longer than domain and a dot, the byte
 * before the suffix a '.', the suffix domain (case aside). Postfix compares the text only, so
 * "*.example.com" is a sub-domain of "example.com" here. */
static bool subdomain_match(const char *cert_name, const char *domain)
{
        size_t idlen = strlen(cert_name), domlen = strlen(domain);
        return domlen > 0 && idlen > domlen + 1 && cert_name[idlen - domlen - 1] == '.' &&
               strcasecmp(cert_name + (idlen - domlen), domain) == 0;
}

/* Whether cert_name names domain: equal (case aside), or "*.rest" and domain has a first label
 * followed by anything that ends in ".rest" (tls_wildcard_matches_multiple_labels = yes: the
 * wildcard stands for one or more labels, never for none). */
static bool exact_match(const char *cert_name, const char *domain)
{
        if (!*domain)
                return false;
        if (strcasecmp(cert_name, domain) == 0)
                return true;
        if (cert_name[0] != '*' || cert_name[1] != '.' || cert_name[2] == 0)
                return false;
        const char *parent = strchr(domain, '.');
        if (!parent)
                return false;
        size_t idlen = strlen(cert_name + 1), domlen = strlen(parent);
        return idlen <= domlen && strcasecmp(parent + (domlen - idlen), cert_name + 1) == 0;
}

bool probe_name_matches(const char *cert_name, const char *pattern, const char *nexthop,
                        const char *hostname)
{
        if (isempty(cert_name) || isempty(pattern))
                return false;
        nexthop = nexthop ? nexthop : "";
        hostname = hostname ? hostname : "";
        /* the keywords are matched case-insensitively, as Postfix does */
        if (strcasecmp(pattern, "hostname") == 0)
                return exact_match(cert_name, hostname);
        if (strcasecmp(pattern, "nexthop") == 0)
                return exact_match(cert_name, nexthop);
        if (strcasecmp(pattern, "dot-nexthop") == 0)
                return subdomain_match(cert_name, nexthop);
        if (pattern[0] == '.' && pattern[1]) /* "." alone is a name like any other */
                return subdomain_match(cert_name, pattern + 1);
        return exact_match(cert_name, pattern);
}

/* ---- fingerprints --------------------------------------------------------------------------- */

/* The hex digits of a fingerprint (MD5 to SHA-512: 16 to 64 bytes), colons dropped, upper
 * case; false when s is not one. */
static bool fpr_digits(const char *s, char out[2 * FPR_BYTES_MAX + 1])
{
        size_t n = 0;
        if (!s)
                return false;
        for (; *s; s++) {
                if (*s == ':')
                        continue;
                if (!is_hex((unsigned char)*s) || n == 2 * FPR_BYTES_MAX)
                        return false;
                out[n++] = to_upper(*s);
        }
        out[n] = 0;
        return n >= 2 * FPR_BYTES_MIN && n % 2 == 0;
}

/* The same digest of the same bytes: the same digits (digests of other lengths never are). */
static bool fpr_equal(const char *a, const char *b)
{
        char da[2 * FPR_BYTES_MAX + 1], db[2 * FPR_BYTES_MAX + 1];
        return fpr_digits(a, da) && fpr_digits(b, db) && streq(da, db);
}

/* ---- the verdict ---------------------------------------------------------------------------- */

/* A main.cf match list (smtp_tls_*_cert_match) of at most DEFAULT_MATCH_TEXT - 1 bytes split
 * on whitespace, ',' and ':' into items (at most POLICY_MATCH_MAX) pointing into text; the
 * count (0: none, or a NULL or empty list). */
#define DEFAULT_MATCH_TEXT 512
static size_t split_match(const char *list, char text[DEFAULT_MATCH_TEXT],
                          const char *items[POLICY_MATCH_MAX])
{
        size_t n = 0;
        if (!list || strlen(list) >= DEFAULT_MATCH_TEXT)
                return 0;
        memcpy(text, list, strlen(list) + 1);
        for (char *p = text; *p && n < POLICY_MATCH_MAX;) {
                p += strspn(p, " \t\r\n,:");
                if (!*p)
                        break;
                items[n++] = p;
                p += strcspn(p, " \t\r\n,:");
                if (*p)
                        *p++ = 0;
        }
        return n;
}

static const char *const verify_default[] = { "hostname" };
static const char *const secure_default[] = { "nexthop", "dot-nexthop" };

_printf_(3, 4) static bool fail(char *reason, size_t size, const char *fmt, ...)
{
        if (reason && size > 0) {
                va_list ap;
                va_start(ap, fmt);
                vsnprintf(reason, size, fmt, ap);
                va_end(ap);
        }
        return false;
}

/* "what" or "what: error" */
static bool fail_with_error(char *reason, size_t size, const char *what, const char *error)
{
        return isempty(error) ? fail(reason, size, "%s", what)
                              : fail(reason, size, "%s: %s", what, error);
}

/* Mandatory TLS: STARTTLS offered and the handshake completed. */
static bool tls_ok(const struct probe_evidence *e, char *reason, size_t size)
{
        if (!e->starttls_offered)
                return fail(reason, size, "STARTTLS not offered");
        if (!e->handshake_ok)
                return fail_with_error(reason, size, "TLS handshake failed", e->error);
        return true;
}

/* verify and secure: a trusted chain and a certificate name that matches one of the patterns. */
static bool pkix_ok(const struct probe_evidence *e, const char *const *match, size_t n_match,
                    const char *nexthop, char *reason, size_t size)
{
        if (!e->trusted)
                return fail(reason, size, "certificate not trusted");
        for (size_t i = 0; e->cert_names && i < e->n_cert_names; i++)
                for (size_t j = 0; j < n_match; j++)
                        if (probe_name_matches(e->cert_names[i], match[j], nexthop, e->hostname))
                                return true;
        if (reason && size > 0) {
                size_t o = (size_t)snprintf(reason, size, "no certificate name matches ");
                for (size_t j = 0; j < n_match && o < size; j++)
                        o += (size_t)snprintf(reason + o, size - o, "%s%s", j ? ", " : "",
                                              match[j] ? match[j] : "");
        }
        return false;
}

static bool fingerprint_ok(const struct probe_evidence *e, const struct probe_target *t,
                           char *reason, size_t size)
{
        if (t->n_match == 0 || !t->match)
                return fail(reason, size, "no fingerprint given (match)");
        for (size_t i = 0; i < t->n_match; i++)
                if (fpr_equal(t->match[i], e->cert_fingerprint) ||
                    fpr_equal(t->match[i], e->pubkey_fingerprint))
                        return true;
        return fail(reason, size, "certificate fingerprint not in match");
}

#define TLSA_FAILED "TLSA lookup failed (DNSSEC bogus or no answer): delivery defers"

/* dane with usable records, and dane-only: the handshake verified against the TLSA records. */
static bool dane_verified(const struct probe_evidence *e, char *reason, size_t size)
{
        if (!tls_ok(e, reason, size))
                return false;
        if (!e->dane_verified)
                return fail(reason, size, "TLSA records present but the certificate matches none");
        return true;
}

static bool would_pass(enum tls_level level, const struct probe_evidence *e,
                       const struct probe_target *t, char *reason, size_t size)
{
        if (!e->connected)
                return fail_with_error(reason, size, "not reachable", e->error);
        if (!e->smtp_ok)
                return fail_with_error(reason, size, "SMTP conversation failed", e->error);

        switch (level) {
        case TLS_LEVEL_NONE:
        case TLS_LEVEL_MAY: /* a failed opportunistic handshake is retried in plain text */
                return true;
        case TLS_LEVEL_ENCRYPT:
                return tls_ok(e, reason, size);
        case TLS_LEVEL_FINGERPRINT:
                return tls_ok(e, reason, size) && fingerprint_ok(e, t, reason, size);
        case TLS_LEVEL_VERIFY:
        case TLS_LEVEL_SECURE: {
                const char *const *match = t->match;
                size_t n = t->match ? t->n_match : 0;
                char text[DEFAULT_MATCH_TEXT];
                const char *items[POLICY_MATCH_MAX];
                if (n == 0) {
                        bool v = level == TLS_LEVEL_VERIFY;
                        n = split_match(v ? t->verify_default : t->secure_default, text, items);
                        match = items;
                }
                if (n == 0) {
                        bool v = level == TLS_LEVEL_VERIFY;
                        match = v ? verify_default : secure_default;
                        n = v ? ARRAY_SIZE(verify_default) : ARRAY_SIZE(secure_default);
                }
                return tls_ok(e, reason, size) && pkix_ok(e, match, n, t->nexthop, reason, size);
        }
        case TLS_LEVEL_DANE:
                switch (e->dane) {
                case DANE_NONE: /* no secure TLSA records: may */
                        return true;
                case DANE_USABLE:
                        return dane_verified(e, reason, size);
                case DANE_UNUSABLE: /* TLS becomes mandatory, unauthenticated: encrypt */
                        return tls_ok(e, reason, size);
                case DANE_FAILED:
                        return fail(reason, size, TLSA_FAILED);
                }
                break;
        case TLS_LEVEL_DANE_ONLY:
                /* no fallback: Postfix defers when records are missing or unusable
                 * (smtp_tls_policy.c, dane_incompat) */
                switch (e->dane) {
                case DANE_NONE:
                        return fail(reason, size, "no DNSSEC-validated TLSA records");
                case DANE_USABLE:
                        return dane_verified(e, reason, size);
                case DANE_UNUSABLE:
                        return fail(reason, size,
                                    "TLSA records present but none usable: dane-only defers");
                case DANE_FAILED:
                        return fail(reason, size, TLSA_FAILED);
                }
                break;
        case _TLS_LEVEL_MAX:
                break;
        }
        return fail(reason, size, "unknown TLS level");
}

bool probe_would_pass(enum tls_level level, const struct probe_evidence *e,
                      const struct probe_target *t, char *reason, size_t size)
{
        static const struct probe_target none = { 0 };

        if (reason && size > 0)
                reason[0] = 0;
        if (!e)
                return fail(reason, size, "no evidence");
        return would_pass(level, e, t ? t : &none, reason, size);
}

enum tls_level probe_recommended(const bool pass[_TLS_LEVEL_MAX])
{
        static const enum tls_level order[] = {
                TLS_LEVEL_DANE_ONLY, TLS_LEVEL_SECURE, TLS_LEVEL_VERIFY,
                TLS_LEVEL_ENCRYPT,   TLS_LEVEL_MAY,    TLS_LEVEL_NONE,
        };
        for (size_t i = 0; i < ARRAY_SIZE(order); i++)
                if (pass[order[i]])
                        return order[i];
        return _TLS_LEVEL_MAX;
}
