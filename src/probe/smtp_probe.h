/* smtp_probe.h - an SMTP STARTTLS client that reports what a server serves: greeting, whether
 * STARTTLS is offered, the TLS protocol and cipher, the peer certificate (SHA-256 fingerprint,
 * subject, issuer, DNS names, expiry) and whether it verifies. Used by the worker after a Postfix
 * reload (is the bound certificate served, or no STARTTLS with TLS mode none?) and by
 * POST /api/v1/probe. Every step (resolve, connect, each reply, the handshake, QUIT) is bounded by
 * one overall deadline; lines and replies are capped. No globals: any thread. */
#pragma once

struct stop_event;

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "core/dns_wire.h"

#define SMTP_PROBE_LINE_MAX        4096 /* bytes of one reply line, without CRLF */
#define SMTP_PROBE_REPLY_LINES_MAX 100  /* lines of one (multi-line) reply */
#define SMTP_PROBE_DNS_NAMES_MAX   256  /* subjectAltName DNS entries kept */

#define SMTP_PROBE_CHAIN_MAX 16 /* certificates of the served chain described */

/* One certificate of the chain a server sent. */
struct smtp_probe_chain_cert {
        char subject[512]; /* RFC 2253, printable */
        char issuer[512];
        time_t not_before, not_after; /* 0 when unknown */
        char sha256_fingerprint[96];
};

struct smtp_probe_result {
        bool connected;        /* TCP connection established */
        bool ehlo_ok;          /* a 220 greeting and a 2xx reply to EHLO */
        bool starttls_offered; /* STARTTLS in the EHLO reply */
        bool handshake_ok;     /* STARTTLS accepted (220) and the TLS handshake completed */
        char protocol[32];     /* "TLSv1.3" */
        char cipher[128];      /* "TLS_AES_256_GCM_SHA384" */
        /* "AB:CD:..." of the peer leaf DER, as `openssl x509 -noout -fingerprint -sha256` */
        char sha256_fingerprint[96];
        char subject[512]; /* RFC 2253, non-ASCII escaped */
        char issuer[512];
        char **dns_names; /* subjectAltName DNS entries (owned) */
        size_t n_dns_names;
        time_t not_after;       /* 0 when unknown */
        char key_type[16];      /* of the leaf's key: "RSA", "EC", "Ed25519", ... or "unknown" */
        bool verified;          /* chain to the trust anchors and, with a servername, the name */
        char verify_error[256]; /* why not verified, "" when verified */
        char error[256];        /* why the conversation stopped ("step: reason"), "" when fine */
        char banner[256];       /* first line of the greeting, "220 mx.example ESMTP" */
        char address[64];       /* the address connected to, "127.0.0.1" or "::1" */
        /* filled by smtp_probe_address() */
        char pubkey_sha256[96];  /* of the leaf's SubjectPublicKeyInfo DER, as above */
        time_t not_before;       /* 0 when unknown */
        char common_name[256];   /* the leaf subject's CN, "" when none */
        char group[48];          /* the key exchange group, "X25519", "" when unknown */
        bool trusted;            /* the chain verifies to the trust anchors (no name check) */
        char trust_error[256];   /* why not trusted, "" when trusted */
        bool dane_checked;       /* usable TLSA records were given and checked */
        bool dane_verified;      /* the chain matched one of them (OpenSSL's DANE) */
        char dane_error[256];    /* why not, "" when verified or not checked */
        char digest_name[32];    /* fingerprint_digest's, "" when none was asked */
        char cert_digest[200];   /* the leaf's fingerprint by it */
        char pubkey_digest[200]; /* its key's */
        struct smtp_probe_chain_cert *chain; /* the chain the server sent, leaf first (owned) */
        size_t n_chain;
};

/* How smtp_probe_address() talks to a server. */
struct smtp_probe_options {
        const char *servername; /* sent as SNI (an IP literal is not sent); names are not checked
                                   here: core/probe_verdict.h judges them */
        const char *ca_file;    /* trust anchors of the chain check (NULL: none) */
        const char *ca_path;
        bool ca_default;             /* and the system's (OpenSSL's default paths) */
        const struct dns_tlsa *tlsa; /* DNSSEC-validated TLSA records, checked with OpenSSL's
                                        DANE support (RFC 7672: DANE-EE without name checks) */
        size_t n_tlsa;
        const char *tlsa_base; /* the TLSA base domain (the MX host name) for DANE-TA names */
        bool wrapper;          /* TLS from the first byte (port 465), no STARTTLS */
        const char *fingerprint_digest; /* besides SHA-256, the fingerprints by this digest
                                           (an OpenSSL name: Postfix's
                                           smtp_tls_fingerprint_digest); NULL: none */
};

/* Frees what res owns (dns_names); safe on a zeroed or already released result. */
void smtp_probe_result_done(struct smtp_probe_result *res);

/* Connects to host (numeric IPv4/IPv6 or a name for getaddrinfo, each address tried in turn) on
 * port, reads the 220 greeting, sends EHLO, and when STARTTLS is offered sends it, completes a TLS
 * handshake (SNI and hostname check with servername when not NULL; an IP literal servername is
 * checked against IP SANs and sent without SNI), collects the peer certificate and verifies it
 * against ca_file (NULL: the system trust store, loaded only when STARTTLS is accepted), then
 * QUITs. The whole conversation ends by now + timeout_usec.
 *
 * res is always initialised; call smtp_probe_result_done() after any return.
 * Returns 0 when the conversation finished, whatever it found: look at starttls_offered,
 * handshake_ok and verified; error is not empty when the server refused a step (greeting or EHLO
 * not 2xx, STARTTLS not 220) or the TLS handshake failed. Returns a negative errno when it could
 * not be had, with error naming the step: -EINVAL (arguments, unusable ca_file), -EHOSTUNREACH
 * (name not resolved), the connect error (-ECONNREFUSED ...), -ETIMEDOUT, -ECONNRESET (the peer
 * closed), -EPROTO (malformed reply, data after the STARTTLS reply), -EMSGSIZE (a line longer than
 * SMTP_PROBE_LINE_MAX or a reply longer than SMTP_PROBE_REPLY_LINES_MAX lines), -ENOMEM. */
int smtp_probe(const char *host, unsigned port, const char *servername, const char *ca_file,
               uint64_t timeout_usec, struct smtp_probe_result *res);

/* The destination probe's conversation with one address (numeric IPv4/IPv6) and port: as
 * smtp_probe(), and besides what the peer serves, the chain's trust (without names), the DANE
 * check against o->tlsa, the key's fingerprint and the chain. Bounded by deadline (monotonic
 * usec) and the thread's cancel descriptor (probe_conn.h, -ECANCELED). Same return values. */
int smtp_probe_address(const char *address, unsigned port, const struct smtp_probe_options *o,
                       uint64_t deadline, struct smtp_probe_result *res);

/* Whether two SHA-256 fingerprints are the same: case and ':' separators are ignored, so
 * "AB:CD:.." matches "abcd..". False unless both hold 64 hex digits. */
bool smtp_probe_fingerprint_equal(const char *a, const char *b);

/* Probes host:port with a new connection every poll_interval_usec until the served certificate
 * has the expected fingerprint (or, when fingerprint is NULL, until a finished conversation shows
 * no STARTTLS), or until timeout_usec has passed. Each attempt is bounded by a quarter of the
 * timeout (at least 1 s) and by what is left of it, so one stuck connection cannot use it all. No
 * SNI, and no trust store is loaded (that costs tens of ms per attempt): in these observations
 * verified is false and verify_error "not checked". Returns 0 on a match, -ETIMEDOUT otherwise (or
 * -EINVAL). last (may be NULL) receives the last observation (an attempt cut short by the deadline
 * does not replace an earlier one); it is always initialised: call smtp_probe_result_done() on it.
 */
/* stop (may be NULL): once set, the polling ends at once (-ETIMEDOUT), its wait included.
 * sigalgs (may be NULL: OpenSSL's defaults): the signature algorithms offered, in the syntax of
 * SSL_CTX_set1_sigalgs_list (see smtp_probe_sigalgs): a server holding a certificate per key type
 * must then serve the one of that type. A list OpenSSL refuses is -EINVAL. */
int smtp_probe_expect(const char *host, unsigned port, const char *fingerprint, const char *sigalgs,
                      uint64_t timeout_usec, uint64_t poll_interval_usec,
                      struct smtp_probe_result *last, struct stop_event *stop);
/* The same with wrapper true: TLS from the first byte (a submissions service, port 465), no
 * STARTTLS (then give a fingerprint: every wrapped conversation offers no STARTTLS). */
int smtp_probe_expect_tls(const char *host, unsigned port, bool wrapper, const char *fingerprint,
                          const char *sigalgs, uint64_t timeout_usec, uint64_t poll_interval_usec,
                          struct smtp_probe_result *last, struct stop_event *stop);
/* The signature algorithms that only a certificate with a key of key_type ("RSA", "EC",
 * "Ed25519", as cert_info's key_type) can answer; NULL for a type without its own. */
const char *smtp_probe_sigalgs(const char *key_type);
