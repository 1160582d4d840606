/* cert.h - X.509 material: validating an upload (leaf, key, chain) into normalized PEM, splitting a
 * PEM bundle, describing a certificate for the API, checking rendered files the way Postfix loads
 * them, hostname coverage (RFC 6125) and chain verification. Pure, no I/O except the CA file
 * cert_verify_chain() may be named; any thread (HTTP threads and the worker).
 * Every public function leaves the calling thread's OpenSSL error queue empty. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include <jansson.h>

#include "smtptlsd/problem.h"

#define CERT_PEM_MAX           (256 * 1024)  /* each field of an upload (payload_too_large) */
#define CERT_BUNDLE_MAX        (1024 * 1024) /* an application/x-pem-file bundle */
#define CERT_CHAIN_MAX_CERTS   10            /* leaf + chain (invalid_pem beyond) */
#define CERT_BUNDLE_MAX_BLOCKS 11            /* key + leaf + chain */
#define CERT_KEY_MAX_BLOCKS    2             /* the key, and the EC PARAMETERS ecparam writes */

/* The ETags of one certificate and of the whole collection at a version (versions come from one
 * sequence, store.h): "\"certificate-N\"" and "\"certificates-N\"" (quotes included).
 * CERT_ETAG_MAX bytes always suffice. */
#define CERT_ETAG_MAX 48
void cert_etag(int64_t version, char *buf, size_t size);
void certs_etag(int64_t version, char *buf, size_t size);

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

struct cert_import {
        char *cert_pem;      /* the leaf, one CERTIFICATE block */
        char *chain_pem;     /* the intermediates in issuer order; "" when none */
        char *fullchain_pem; /* cert_pem + chain_pem: what the worker renders next to the key */
        char *key_pem;       /* unencrypted PKCS#8 "PRIVATE KEY": a secret, wiped by _done */
        struct cert_info info;
};

/* Frees (and wipes the key). Safe on a zeroed or already released struct. */
void cert_import_done(struct cert_import *imp);

/* Validates an upload and normalizes it. The fields: "/certificate" (the leaf; certificates after
 * it are taken as chain, so a fullchain.pem may be sent here), "/private_key" (one key, PKCS#8 or
 * traditional, never encrypted), "/chain" (optional, NULL or empty for none; any order). Refusals
 * in this order: payload_too_large (a field over CERT_PEM_MAX, before any parsing), invalid_pem
 * (more than CERT_CHAIN_MAX_CERTS certificates, not PEM, a block that does not decode, a key where
 * a certificate belongs, trailing data after the last block), no_certificate, no_private_key,
 * encrypted_private_key, key_mismatch, certificate_expired, certificate_not_yet_valid, weak_key
 * (RSA or DSA under 2048 bits, EC under 256), not_a_server_certificate (CA:TRUE, or an
 * extendedKeyUsage without serverAuth), chain_mismatch (no order of the chain links it to the
 * leaf). Text before a block is ignored as OpenSSL does (`openssl x509 -text`, "Bag Attributes").
 * On success *ret is filled (release with cert_import_done); on failure it is left zeroed. */
int cert_import(const char *cert_pem, size_t cert_len, const char *key_pem, size_t key_len,
                const char *chain_pem, size_t chain_len, time_t now, struct cert_import *ret,
                struct problem *reterr);

/* Splits an application/x-pem-file bundle (key, leaf and chain in any order; at most
 * CERT_BUNDLE_MAX bytes and CERT_BUNDLE_MAX_BLOCKS blocks, checked before parsing). The leaf is the
 * certificate whose public key matches the key (when several or none do: the first that is not a
 * CA). *chain_pem is NULL when the bundle holds only the leaf. Problems carry the field "". Free
 * *key_pem with cert_secret_free(). */
int cert_parse_bundle(const char *pem, size_t len, char **cert_pem, char **key_pem,
                      char **chain_pem, struct problem *reterr);

/* cert_parse_bundle() then cert_import(); every problem carries the field "". */
int cert_import_bundle(const char *pem, size_t len, time_t now, struct cert_import *ret,
                       struct problem *reterr);

/* Wipes and frees a string holding a private key. */
void cert_secret_free(char *s);

/* The bytes of a rendered key and fullchain file, read by the caller (apply/), and their paths (for
 * messages only: nothing here opens a file). */
struct cert_pair {
        const char *key_path, *chain_path;
        const char *key_pem, *chain_pem;
        size_t key_len, chain_len;
};
/* Loads key and chain exactly as Postfix loads its files (SSL_CTX_use_certificate_chain_file's
 * rules on the bytes: the first certificate is the leaf, the rest the chain;
 * SSL_CTX_use_PrivateKey, SSL_CTX_check_private_key; never prompts for a passphrase). Any
 * failure, or a leaf expired at now: certificate_unusable (field "") with a detail naming the file
 * and OpenSSL's reason. On success fills *info_ret when not NULL. */
int cert_check_pem(const struct cert_pair *pair, time_t now, struct cert_info *info_ret,
                   struct problem *reterr);

/* RFC 6125: whether a dNSName of info covers hostname. Case-insensitive, a trailing dot ignored, a
 * wildcard only as the whole left-most label of a name with at least three labels ("*.example.com"
 * covers "mx.example.com", not "example.com" nor "a.b.example.com"); no partial wildcards. */
bool cert_covers_hostname(const struct cert_info *info, const char *hostname);

/* Whether the leaf (the first certificate of cert_pem) chains, through the other certificates of
 * cert_pem and chain_pem (NULL for none), to a trust anchor of ca_file, or of the system store
 * (X509_STORE_set_default_paths) when ca_file is NULL, at time now, for TLS server use. Returns 0
 * with *verified set; -EINVAL when the PEM does not parse, -ENOENT when ca_file cannot be loaded,
 * -ENOMEM. */
int cert_verify_chain(const char *cert_pem, size_t cert_len, const char *chain_pem,
                      size_t chain_len, const char *ca_file, time_t now, bool *verified);
