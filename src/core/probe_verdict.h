/* probe_verdict.h - what a TLS policy level would do with one mail server, by Postfix's rules
 * (smtp(8), src/tls/tls_client.c, RFC 7672 for DANE): from the evidence a probe gathered for one
 * address (the SMTP conversation, the TLS handshake, the certificate, the chain's trust, the
 * DNSSEC status of the lookups and the DANE check), whether mail would go out at each level and,
 * when not, why in words; the certificate name match of verify and secure (match lists with
 * hostname, nexthop, dot-nexthop, .domain and names; wildcards as Postfix's default
 * tls_wildcard_matches_multiple_labels = yes); and the strictest level a destination passes.
 * Pure (no I/O, no state); any thread. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "core/policy.h"

/* The DNSSEC status of a lookup (libunbound's secure/bogus flags; a failure is no answer). */
enum dns_security {
        DNS_INSECURE, /* answered, not validated (no trust chain) */
        DNS_SECURE,   /* answered and validated */
        DNS_BOGUS,    /* validation failed: Postfix treats the lookup as failed */
        DNS_FAILED,   /* no answer: timeout, SERVFAIL */
};

/* The TLSA records of a host as DANE (RFC 7672) sees them. */
enum dane_state {
        DANE_NONE,     /* no secure TLSA records: the MX or address lookup was not secure, or
                          there are none (NXDOMAIN/NODATA, secure or not) */
        DANE_USABLE,   /* secure TLSA records, at least one usable (usage 2 or 3, selector 0/1,
                          matching type 0/1/2) */
        DANE_UNUSABLE, /* secure TLSA records, none usable: mandatory TLS without authentication */
        DANE_FAILED,   /* the TLSA lookup was bogus or failed: delivery defers */
};

/* What a probe saw at one address of one host. Strings are NUL-terminated; NULL is "". */
struct probe_evidence {
        const char *hostname; /* the MX host name, or the literal next-hop's host */
        bool connected;       /* TCP connection established */
        bool smtp_ok;         /* 220 greeting and 2xx EHLO */
        bool starttls_offered;
        bool handshake_ok;             /* STARTTLS accepted and the TLS handshake completed */
        bool trusted;                  /* the chain verifies to the trust anchors (names aside) */
        const char *const *cert_names; /* the leaf's subjectAltName DNS names, or its subject
                                          CommonName when it has none (Postfix's rule) */
        size_t n_cert_names;
        /* "AB:CD:..." of the leaf's DER and of its SubjectPublicKeyInfo DER, by the digest of
         * Postfix's smtp_tls_fingerprint_digest */
        const char *cert_fingerprint;
        const char *pubkey_fingerprint;
        enum dane_state dane;
        bool dane_verified; /* with DANE_USABLE: the handshake verified against the records */
        const char *error;  /* why the conversation stopped ("step: reason"), "" when fine */
};

/* The destination as a policy names it: nexthop is the domain ("example.com", or the
 * sub-domain part of ".example.com" without its dot) or the literal next-hop's host;
 * match is the policy's match list (NULL or n_match == 0: the level's default,
 * smtp_tls_verify_cert_match (Postfix's default: hostname) for verify,
 * smtp_tls_secure_cert_match (nexthop, dot-nexthop) for secure, as main.cf sets them; for
 * fingerprint: the fingerprints, none given fails). */
struct probe_target {
        const char *nexthop;
        const char *const *match;
        size_t n_match;
        /* main.cf's smtp_tls_verify_cert_match and smtp_tls_secure_cert_match as text (items
         * separated by whitespace, ',' or ':'); NULL or "": Postfix's defaults above */
        const char *verify_default;
        const char *secure_default;
};

/* Whether the certificate name cert_name satisfies one match pattern ("hostname", "nexthop",
 * "dot-nexthop", ".domain", or a name) for nexthop and hostname, as Postfix matches them:
 * case-insensitive; ".d" and dot-nexthop any proper sub-domain; "*.d" in the certificate any
 * name (one or more labels) under d, never d itself. */
bool probe_name_matches(const char *cert_name, const char *pattern, const char *nexthop,
                        const char *hostname);

/* Whether mail to the host of e would go out at level, given t; when not, reason[size] says why
 * in words ("STARTTLS not offered", "certificate not trusted", "no certificate name matches
 * nexthop, dot-nexthop", ...) else reason is "". Rules: none: smtp_ok. may: smtp_ok (a failed
 * opportunistic handshake is retried in plain text). encrypt: handshake_ok. fingerprint:
 * handshake_ok and a match entry equals cert_fingerprint or pubkey_fingerprint (':' and case
 * ignored; MD5 to SHA-512).
 * verify, secure: handshake_ok, trusted, and a certificate name matches a pattern. dane: by the
 * DANE state: USABLE needs dane_verified, UNUSABLE handshake_ok, FAILED fails, NONE as may.
 * dane-only: USABLE and dane_verified; else fails (Postfix defers when the records are missing or
 * unusable: smtp_tls_policy.c turns dane-only into an invalid level where dane falls back). Every
 * level first needs connected and smtp_ok; t NULL is an empty target. */
bool probe_would_pass(enum tls_level level, const struct probe_evidence *e,
                      const struct probe_target *t, char *reason, size_t size);

/* The strictest level in the order dane-only, secure, verify, encrypt, may, none whose pass[]
 * is true (fingerprint and dane are not recommended: fingerprint only pins what is served
 * today, and dane is what dane-only does where records exist); _TLS_LEVEL_MAX when none passes.
 * pass is indexed by enum tls_level. */
enum tls_level probe_recommended(const bool pass[_TLS_LEVEL_MAX]);
