/* cert.h - X.509 material, the room's front door: validating an upload (leaf, key, chain) into
 * normalized PEM and splitting a PEM bundle (cert.c), and, through the headers it includes,
 * describing a certificate for the API (cert_info.h), checking rendered files the way Postfix
 * loads them, hostname coverage (RFC 6125) and chain verification (cert_verify.h). Pure, no I/O
 * except the CA file cert_verify_chain() may be named; any thread (HTTP threads and the worker).
 * Every public function leaves the calling thread's OpenSSL error queue empty. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "core/cert_info.h"
#include "core/cert_verify.h"
#include "core/problem.h"

#define CERT_PEM_MAX           (256 * 1024)  /* each field of an upload (payload_too_large) */
#define CERT_BUNDLE_MAX        (1024 * 1024) /* an application/x-pem-file bundle */
#define CERT_CHAIN_MAX_CERTS   10            /* leaf + chain (invalid_pem beyond) */
#define CERT_BUNDLE_MAX_BLOCKS 11            /* key + leaf + chain */
#define CERT_KEY_MAX_BLOCKS    2             /* the key, and the EC PARAMETERS ecparam writes */

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
