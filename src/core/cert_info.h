/* cert_info.h - describing a certificate (cert_info.c): the fields of a leaf and its chain, their
 * JSON form for the API, the resource's read-only members and ETags. Pure; any thread. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include <jansson.h>
#include <openssl/types.h>

#include "core/problem.h"

/* Read-only members of a certificate (what a GET shows, and the generation a write's reply
 * carries) in an upload body, so that a GET reply can be sent back with the new PEM: taken out of
 * the body into an object of their own (a `chain` only when it is the GET's array: an upload's
 * chain is PEM text), and compared by the worker with the certificate as it is then: equal, or
 * invalid_value naming the member; nothing to compare when it does not exist yet. */
json_t *cert_take_read_only(json_t *body);
int cert_check_read_only(json_t *read_only, json_t *current, struct problem *reterr);

struct cert_chain_entry {
        char *subject;
        char *issuer;
        time_t not_after;
};

struct cert_info {
        char *subject; /* "CN=mx1.example.com,O=Example" (RFC 2253 order, UTF-8) */
        char *issuer;
        char *serial; /* upper-case hex, "1A2B" */
        time_t not_before;
        time_t not_after;
        char **dns_names; /* SAN dNSNames; the CN when there is none */
        size_t n_dns_names;
        char key_type[16]; /* "RSA", "RSA-PSS", "EC", "Ed25519", "Ed448", "DSA" */
        int key_bits;
        char sha256_fingerprint[96];    /* "AB:CD:..." of the leaf DER */
        char spki_sha256[65];           /* lower hex of the SubjectPublicKeyInfo DER (TLSA 3 1 1) */
        bool self_signed;               /* issuer == subject and the signature verifies */
        bool is_ca;                     /* basicConstraints CA:TRUE */
        struct cert_chain_entry *chain; /* the intermediates, issuer order */
        size_t n_chain;
};

void cert_info_done(struct cert_info *info);

/* Under this many days left, the bound certificate is reported as expiring. */
#define CERT_EXPIRING_DAYS 21
/* Whole days from now until not_after, rounded down (negative once expired). */
int64_t cert_days_left(time_t not_after, time_t now);

/* The members of api.md's certificate object that come from the PEM: subject, issuer, serial,
 * not_before, not_after (RFC 3339 UTC), days_left (floor, negative once expired), dns_names,
 * key {type, bits}, sha256_fingerprint, spki_sha256, chain [{subject, issuer, not_after}],
 * self_signed. NULL on allocation failure. */
json_t *cert_info_to_json(const struct cert_info *info, time_t now);

/* Parses a PEM holding a leaf and, after it, its chain (fullchain.pem, or the stored leaf and chain
 * concatenated) without judging it: for ACME certificates and stored rows. */
int cert_info_from_pem(const char *pem, size_t len, struct cert_info *ret, struct problem *reterr);

/* For the certificate room's files (src/core/cert*.c): fills info from the leaf and its chain
 * (issuer order; may be NULL). -EINVAL: unreadable validity dates. */
STACK_OF(X509);
int cert_info_fill(X509 *leaf, STACK_OF(X509) * chain, struct cert_info *info);
