/* cert_pem.h - for the files of the certificate room only (src/core/cert*.c; the rest of the
 * program includes cert.h): PEM text and OpenSSL's objects (cert_pem.c), with the cleanup helpers
 * the room shares. Every function leaves OpenSSL's error queue to its public caller, which
 * clears it. Pure; any thread. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <time.h>
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "core/cert.h"
#include "core/problem.h"
#include "util.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(BIO *, BIO_free)

static inline void x509_stack_freep(STACK_OF(X509) * *p)
{
        if (*p)
                sk_X509_pop_free(*p, X509_free);
}

static inline void openssl_freep(void *p)
{
        OPENSSL_free(*(void **)p);
}

#define _cleanup_x509_stack_ _cleanup_(x509_stack_freep)

/* The passphrase callback for every PEM read: fails, so OpenSSL never prompts on a terminal. */
int pem_no_passphrase(char *buf, int size, int rwflag, void *userdata);

/* ---- the PEM lexer ---- */

enum pem_block_kind {
        BLOCK_CERT,
        BLOCK_KEY,
        BLOCK_PARAMS, /* EC PARAMETERS, as `openssl ecparam -genkey` writes before the key */
        BLOCK_OTHER,
};

struct pem_block {
        enum pem_block_kind kind;
        bool encrypted;
        char type[48]; /* "CERTIFICATE"; only [A-Z0-9 ], so it may be quoted in a detail */
        char *text;    /* the block: its lines trimmed, BEGIN to END, each ending in '\n' */
        size_t len;
        X509 *x509; /* BLOCK_CERT, once decoded */
};

struct pem_blocks {
        struct pem_block *v;
        size_t n, size;
};

void pem_blocks_done(struct pem_blocks *b);
/* The number of "-----BEGIN" in the raw bytes: a bound on the blocks, counted before parsing. */
size_t pem_count_begins(const char *text, size_t len);
/* Splits text into PEM blocks (at most max_blocks). Text before a block is skipped (as OpenSSL
 * does); anything but whitespace after the last one, an unterminated block, a stray END line or
 * NUL bytes are invalid_pem at field, with `what` ("the certificate") starting the detail. Zero
 * blocks and only whitespace is not an error: ret->n == 0. */
int pem_lex(const char *text, size_t len, size_t max_blocks, const char *field, const char *what,
            struct pem_blocks *ret, struct problem *reterr);

static inline size_t pem_blocks_count(const struct pem_blocks *b, enum pem_block_kind kind)
{
        size_t n = 0;
        for (size_t i = 0; i < b->n; i++)
                if (b->v[i].kind == kind)
                        n++;
        return n;
}

static inline const struct pem_block *pem_blocks_first(const struct pem_blocks *b,
                                                       enum pem_block_kind kind)
{
        for (size_t i = 0; i < b->n; i++)
                if (b->v[i].kind == kind)
                        return &b->v[i];
        return NULL;
}

/* Decodes every certificate block; `first` numbers them in details (1-based). */
int pem_decode_certs(struct pem_blocks *b, const char *field, const char *what, size_t first,
                     struct problem *reterr);
/* Decodes the key block; refuses an encrypted one before trying. */
int pem_decode_key(const struct pem_block *k, const char *field, EVP_PKEY **ret,
                   struct problem *reterr);

/* ---- conversions ---- */

/* The bytes of a memory BIO as a new string. -ENOMEM. */
int bio_to_string(BIO *bio, char **ret);
int x509_to_pem(X509 *x, char **ret);
/* Unencrypted PKCS#8 ("PRIVATE KEY"), through secure-heap buffers that are wiped when freed. */
int pkey_to_pem(EVP_PKEY *k, char **ret);
int asn1_time_to_time_t(const ASN1_TIME *t, time_t *ret);
int x509_validity(const X509 *x, time_t *not_before, time_t *not_after);
/* RFC 3339 UTC ("2026-11-22T10:00:00Z"), "?" when t cannot be shown. */
void format_time(time_t t, char buf[static 32]);
/* "RSA", "RSA-PSS", "EC", "Ed25519", "Ed448", "DSA", else OpenSSL's name or "unknown". */
const char *pkey_type_name(const EVP_PKEY *k);
