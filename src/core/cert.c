/* cert.c - importing a certificate and its key (see cert.h): the checks of an upload in their
 * documented order, ordering its chain, and splitting a PEM bundle; the PEM lexer is cert_pem.c.
 * Pure; any thread (HTTP threads and the worker). Never logs; no problem detail ever quotes key
 * material. */
#include "core/cert.h"

#include <stdio.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "core/cert_pem.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(EVP_PKEY *, EVP_PKEY_free)
DEFINE_TRIVIAL_CLEANUP_FUNC(char *, cert_secret_free)

#define _cleanup_secret_ _cleanup_(cert_secret_freep)

void cert_secret_free(char *s)
{
        if (!s)
                return;
        OPENSSL_cleanse(s, strlen(s));
        free(s);
}

/* ---- chain ordering --------------------------------------------------------------------- */

/* Whether issuer issued subject: names, key identifiers and key usage agree, and the signature
 * verifies. */
static bool issued_by(X509 *subject, X509 *issuer)
{
        if (X509_check_issued(issuer, subject) != X509_V_OK)
                return false;
        EVP_PKEY *pub = X509_get0_pubkey(issuer);
        return pub && X509_verify(subject, pub) == 1;
}

/* Depth-first search for an order of all nodes starting at node 0 (the leaf) in which each node
 * issued the one before it; failed[mask] remembers the dead ends. */
static bool link_path(bool issued[CERT_CHAIN_MAX_CERTS][CERT_CHAIN_MAX_CERTS], size_t m,
                      size_t last, unsigned mask, uint16_t *failed, size_t *order, size_t depth)
{
        if (depth == m)
                return true;
        if (failed[mask] & (1u << last))
                return false;
        for (size_t i = 1; i < m; i++) {
                if ((mask & (1u << i)) || !issued[i][last])
                        continue;
                order[depth] = i;
                if (link_path(issued, m, i, mask | (1u << i), failed, order, depth + 1))
                        return true;
        }
        failed[mask] |= (uint16_t)(1u << last);
        return false;
}

/* Orders the candidates (duplicates and copies of the leaf dropped) into issuer order. *ret
 * holds new references. -ENOENT when no order links them all to the leaf. */
static int order_chain(X509 *leaf, X509 *const *cand, size_t n, STACK_OF(X509) * *ret)
{
        X509 *nodes[CERT_CHAIN_MAX_CERTS];
        size_t m = 0;
        bool issued[CERT_CHAIN_MAX_CERTS][CERT_CHAIN_MAX_CERTS] = { { false } };
        uint16_t failed[1u << CERT_CHAIN_MAX_CERTS];
        size_t order[CERT_CHAIN_MAX_CERTS];

        nodes[m++] = leaf;
        for (size_t i = 0; i < n; i++) {
                bool dup = false;
                for (size_t j = 0; j < m; j++)
                        if (X509_cmp(cand[i], nodes[j]) == 0)
                                dup = true;
                if (dup)
                        continue;
                if (m == CERT_CHAIN_MAX_CERTS)
                        return -E2BIG;
                nodes[m++] = cand[i];
        }
        for (size_t i = 1; i < m; i++)
                for (size_t j = 0; j < m; j++)
                        if (i != j)
                                issued[i][j] = issued_by(nodes[j], nodes[i]);

        memset(failed, 0, sizeof(failed));
        order[0] = 0;
        if (!link_path(issued, m, 0, 1u, failed, order, 1))
                return -ENOENT;

        _cleanup_x509_stack_ STACK_OF(X509) *chain = sk_X509_new_null();
        if (!chain)
                return -ENOMEM;
        for (size_t i = 1; i < m; i++) {
                X509 *c = nodes[order[i]];
                if (!sk_X509_push(chain, c))
                        return -ENOMEM;
                X509_up_ref(c);
        }
        *ret = TAKE_PTR(chain);
        return 0;
}

/* ---- cert_import ------------------------------------------------------------------------ */

void cert_import_done(struct cert_import *imp)
{
        if (!imp)
                return;
        free(imp->cert_pem);
        free(imp->chain_pem);
        free(imp->fullchain_pem);
        cert_secret_free(imp->key_pem);
        cert_info_done(&imp->info);
        *imp = (struct cert_import){ 0 };
}

static void cert_import_donep(struct cert_import *imp)
{
        cert_import_done(imp);
}

static bool key_is_weak(const EVP_PKEY *k, int *min)
{
        int bits = EVP_PKEY_get_bits(k);
        switch (EVP_PKEY_get_base_id(k)) {
        case EVP_PKEY_RSA:
        case EVP_PKEY_RSA_PSS:
        case EVP_PKEY_DSA:
                *min = 2048;
                return bits < 2048;
        case EVP_PKEY_EC:
                *min = 256;
                return bits < 256;
        default:
                return false;
        }
}

static int import_impl(const char *cert_pem, size_t cert_len, const char *key_pem, size_t key_len,
                       const char *chain_pem, size_t chain_len, time_t now, struct cert_import *ret,
                       struct problem *reterr)
{
        _cleanup_(pem_blocks_done) struct pem_blocks cb = { 0 }, kb = { 0 }, chb = { 0 };
        _cleanup_(EVP_PKEY_freep) EVP_PKEY *pkey = NULL;
        _cleanup_x509_stack_ STACK_OF(X509) *chain = NULL;
        _cleanup_(cert_import_donep) struct cert_import imp = { 0 };
        int r;

        if (!cert_pem)
                cert_len = 0;
        if (!key_pem)
                key_len = 0;
        if (!chain_pem)
                chain_len = 0;

        /* 1. sizes and counts, before any parsing */
        if (cert_len > CERT_PEM_MAX)
                return problem_set(reterr, PROBLEM_PAYLOAD_TOO_LARGE, "/certificate",
                                   "the certificate is larger than %d KiB", CERT_PEM_MAX / 1024);
        if (key_len > CERT_PEM_MAX)
                return problem_set(reterr, PROBLEM_PAYLOAD_TOO_LARGE, "/private_key",
                                   "the private key is larger than %d KiB", CERT_PEM_MAX / 1024);
        if (chain_len > CERT_PEM_MAX)
                return problem_set(reterr, PROBLEM_PAYLOAD_TOO_LARGE, "/chain",
                                   "the chain is larger than %d KiB", CERT_PEM_MAX / 1024);
        size_t nc = pem_count_begins(cert_pem, cert_len);
        size_t nk = pem_count_begins(key_pem, key_len);
        size_t nch = pem_count_begins(chain_pem, chain_len);
        if (nc > CERT_CHAIN_MAX_CERTS)
                return problem_set(reterr, PROBLEM_INVALID_PEM, "/certificate",
                                   "the certificate holds more than %d PEM blocks",
                                   CERT_CHAIN_MAX_CERTS);
        if (nc + nch > CERT_CHAIN_MAX_CERTS)
                return problem_set(reterr, PROBLEM_INVALID_PEM, "/chain",
                                   "leaf and chain hold more than %d certificates",
                                   CERT_CHAIN_MAX_CERTS);
        if (nk > CERT_KEY_MAX_BLOCKS)
                return problem_set(reterr, PROBLEM_INVALID_PEM, "/private_key",
                                   "the private key holds more than %d PEM blocks",
                                   CERT_KEY_MAX_BLOCKS);

        /* 2. the PEM structure of each field */
        r = pem_lex(cert_pem, cert_len, nc, "/certificate", "the certificate", &cb, reterr);
        if (r < 0)
                return r;
        if (cb.n == 0)
                return problem_set(reterr, PROBLEM_NO_CERTIFICATE, "/certificate",
                                   "no certificate was given");
        for (size_t i = 0; i < cb.n; i++) {
                if (cb.v[i].kind == BLOCK_KEY)
                        return problem_set(reterr, PROBLEM_INVALID_PEM, "/certificate",
                                           "the certificate holds a private key; send it as "
                                           "private_key");
                if (cb.v[i].kind != BLOCK_CERT)
                        return problem_set(reterr, PROBLEM_INVALID_PEM, "/certificate",
                                           "the certificate holds a %s block", cb.v[i].type);
        }

        r = pem_lex(key_pem, key_len, nk, "/private_key", "the private key", &kb, reterr);
        if (r < 0)
                return r;
        for (size_t i = 0; i < kb.n; i++)
                if (kb.v[i].kind == BLOCK_OTHER)
                        return problem_set(reterr, PROBLEM_INVALID_PEM, "/private_key",
                                           "the private key holds a %s block", kb.v[i].type);
        if (pem_blocks_count(&kb, BLOCK_KEY) == 0)
                return problem_set(reterr, PROBLEM_NO_PRIVATE_KEY, "/private_key",
                                   pem_blocks_count(&kb, BLOCK_CERT) > 0
                                       ? "the private_key field holds a certificate, not a key"
                                       : "no private key was given");
        if (pem_blocks_count(&kb, BLOCK_KEY) > 1 || pem_blocks_count(&kb, BLOCK_CERT) > 0)
                return problem_set(reterr, PROBLEM_INVALID_PEM, "/private_key",
                                   "the private_key field must hold exactly one private key");

        r = pem_lex(chain_pem, chain_len, nch, "/chain", "the chain", &chb, reterr);
        if (r < 0)
                return r;
        for (size_t i = 0; i < chb.n; i++) {
                if (chb.v[i].kind == BLOCK_KEY)
                        return problem_set(reterr, PROBLEM_INVALID_PEM, "/chain",
                                           "the chain holds a private key; send it as "
                                           "private_key");
                if (chb.v[i].kind != BLOCK_CERT)
                        return problem_set(reterr, PROBLEM_INVALID_PEM, "/chain",
                                           "the chain holds a %s block", chb.v[i].type);
        }

        /* 3. decoding */
        r = pem_decode_certs(&cb, "/certificate", "the certificate", 1, reterr);
        if (r < 0)
                return r;
        r = pem_decode_certs(&chb, "/chain", "the chain", 1, reterr);
        if (r < 0)
                return r;
        r = pem_decode_key(pem_blocks_first(&kb, BLOCK_KEY), "/private_key", &pkey, reterr);
        if (r < 0)
                return r;

        /* 4. the checks, in the documented order */
        X509 *leaf = cb.v[0].x509;
        EVP_PKEY *pub = X509_get0_pubkey(leaf);
        if (!pub || EVP_PKEY_eq(pub, pkey) != 1)
                return problem_set(reterr, PROBLEM_KEY_MISMATCH, "/private_key",
                                   "the private key does not belong to the certificate");

        time_t nb, na;
        char when[32];
        if (x509_validity(leaf, &nb, &na) < 0)
                return problem_set(reterr, PROBLEM_INVALID_PEM, "/certificate",
                                   "the certificate has unreadable validity dates");
        if (now > na) {
                format_time(na, when);
                return problem_set(reterr, PROBLEM_CERTIFICATE_EXPIRED, "/certificate",
                                   "the certificate expired on %s", when);
        }
        if (now < nb) {
                format_time(nb, when);
                return problem_set(reterr, PROBLEM_CERTIFICATE_NOT_YET_VALID, "/certificate",
                                   "the certificate is valid only from %s", when);
        }

        int min_bits = 0;
        if (key_is_weak(pkey, &min_bits))
                return problem_set(reterr, PROBLEM_WEAK_KEY, "/private_key",
                                   "the %s key has %d bits; at least %d are needed",
                                   pkey_type_name(pkey), EVP_PKEY_get_bits(pkey), min_bits);

        uint32_t flags = X509_get_extension_flags(leaf);
        if (flags & EXFLAG_CA)
                return problem_set(reterr, PROBLEM_NOT_A_SERVER_CERTIFICATE, "/certificate",
                                   "the certificate is a CA certificate (basicConstraints "
                                   "CA:TRUE), not a server certificate");
        if ((flags & EXFLAG_XKUSAGE) &&
            !(X509_get_extended_key_usage(leaf) & (XKU_SSL_SERVER | XKU_ANYEKU)))
                return problem_set(reterr, PROBLEM_NOT_A_SERVER_CERTIFICATE, "/certificate",
                                   "the certificate's extendedKeyUsage lacks serverAuth");

        X509 *cand[CERT_CHAIN_MAX_CERTS];
        size_t ncand = 0;
        for (size_t i = 1; i < cb.n; i++)
                cand[ncand++] = cb.v[i].x509;
        for (size_t i = 0; i < chb.n; i++)
                cand[ncand++] = chb.v[i].x509;
        r = order_chain(leaf, cand, ncand, &chain);
        if (r == -ENOENT)
                return problem_set(reterr, PROBLEM_CHAIN_MISMATCH,
                                   chb.n > 0 ? "/chain" : "/certificate",
                                   "the chain does not sign the certificate: no order of its "
                                   "certificates links each to the one before, up from the leaf");
        if (r < 0)
                return r;

        /* 5. the normalized output */
        if ((r = x509_to_pem(leaf, &imp.cert_pem)) < 0)
                return r;
        _cleanup_(BIO_freep) BIO *bio = BIO_new(BIO_s_mem());
        if (!bio)
                return -ENOMEM;
        for (int i = 0; i < sk_X509_num(chain); i++)
                if (PEM_write_bio_X509(bio, sk_X509_value(chain, i)) != 1)
                        return -ENOMEM;
        if ((r = bio_to_string(bio, &imp.chain_pem)) < 0)
                return r;
        size_t lc = strlen(imp.cert_pem), lch = strlen(imp.chain_pem);
        imp.fullchain_pem = malloc(lc + lch + 1);
        if (!imp.fullchain_pem)
                return -ENOMEM;
        memcpy(imp.fullchain_pem, imp.cert_pem, lc);
        memcpy(imp.fullchain_pem + lc, imp.chain_pem, lch + 1);
        if ((r = pkey_to_pem(pkey, &imp.key_pem)) < 0)
                return r;
        r = cert_info_fill(leaf, chain, &imp.info);
        if (r == -EINVAL) /* the leaf's dates were read above */
                return problem_set(reterr, PROBLEM_INVALID_PEM,
                                   chb.n > 0 ? "/chain" : "/certificate",
                                   "a chain certificate has unreadable validity dates");
        if (r < 0)
                return r;

        *ret = imp;
        imp = (struct cert_import){ 0 };
        return 0;
}

int cert_import(const char *cert_pem, size_t cert_len, const char *key_pem, size_t key_len,
                const char *chain_pem, size_t chain_len, time_t now, struct cert_import *ret,
                struct problem *reterr)
{
        *ret = (struct cert_import){ 0 };
        ERR_clear_error();
        int r = import_impl(cert_pem, cert_len, key_pem, key_len, chain_pem, chain_len, now, ret,
                            reterr);
        ERR_clear_error();
        return r;
}

/* ---- bundles ---------------------------------------------------------------------------- */

static int bundle_impl(const char *pem, size_t len, char **cert_pem, char **key_pem,
                       char **chain_pem, struct problem *reterr)
{
        _cleanup_(pem_blocks_done) struct pem_blocks b = { 0 };
        _cleanup_(EVP_PKEY_freep) EVP_PKEY *pkey = NULL;
        _cleanup_free_ char *cert = NULL, *chain = NULL;
        _cleanup_secret_ char *key = NULL;
        int r;

        if (!pem)
                len = 0;
        if (len > CERT_BUNDLE_MAX)
                return problem_set(reterr, PROBLEM_PAYLOAD_TOO_LARGE, "",
                                   "the bundle is larger than %d KiB", CERT_BUNDLE_MAX / 1024);
        size_t nb = pem_count_begins(pem, len);
        if (nb > CERT_BUNDLE_MAX_BLOCKS)
                return problem_set(reterr, PROBLEM_INVALID_PEM, "",
                                   "the bundle holds more than %d PEM blocks",
                                   CERT_BUNDLE_MAX_BLOCKS);
        r = pem_lex(pem, len, nb, "", "the bundle", &b, reterr);
        if (r < 0)
                return r;
        for (size_t i = 0; i < b.n; i++)
                if (b.v[i].kind == BLOCK_OTHER)
                        return problem_set(reterr, PROBLEM_INVALID_PEM, "",
                                           "the bundle holds a %s block", b.v[i].type);
        size_t ncerts = pem_blocks_count(&b, BLOCK_CERT), nkeys = pem_blocks_count(&b, BLOCK_KEY);
        if (ncerts == 0)
                return problem_set(reterr, PROBLEM_NO_CERTIFICATE, "",
                                   "the bundle holds no certificate");
        if (nkeys == 0)
                return problem_set(reterr, PROBLEM_NO_PRIVATE_KEY, "",
                                   "the bundle holds no private key");
        if (nkeys > 1)
                return problem_set(reterr, PROBLEM_INVALID_PEM, "",
                                   "the bundle holds more than one private key");
        r = pem_decode_certs(&b, "", "the bundle", 1, reterr);
        if (r < 0)
                return r;
        const struct pem_block *kblk = pem_blocks_first(&b, BLOCK_KEY);
        if (!kblk)
                return -EINVAL;
        if (!kblk->encrypted) {
                r = pem_decode_key(kblk, "", &pkey, reterr);
                if (r < 0)
                        return r;
        }

        /* the leaf: the one certificate matching the key; else the first non-CA of those that
         * match (or of all, when none does); else the first certificate */
        const struct pem_block *leaf = NULL, *first_match = NULL, *match_non_ca = NULL,
                               *first_non_ca = NULL, *first = NULL;
        size_t nmatch = 0;
        for (size_t i = 0; i < b.n; i++) {
                const struct pem_block *c = &b.v[i];
                if (c->kind != BLOCK_CERT)
                        continue;
                bool ca = (X509_get_extension_flags(c->x509) & EXFLAG_CA) != 0;
                EVP_PKEY *pub = X509_get0_pubkey(c->x509);
                bool match = pkey && pub && EVP_PKEY_eq(pub, pkey) == 1;
                if (!first)
                        first = c;
                if (!ca && !first_non_ca)
                        first_non_ca = c;
                if (match) {
                        nmatch++;
                        if (!first_match)
                                first_match = c;
                        if (!ca && !match_non_ca)
                                match_non_ca = c;
                }
        }
        if (nmatch == 1)
                leaf = first_match;
        else if (nmatch > 1)
                leaf = match_non_ca ? match_non_ca : first_match;
        else
                leaf = first_non_ca ? first_non_ca : first;

        cert = strdup(leaf->text);
        key = strdup(kblk->text);
        if (!cert || !key)
                return -ENOMEM;
        if (ncerts > 1) {
                size_t n = 0;
                for (size_t i = 0; i < b.n; i++)
                        if (b.v[i].kind == BLOCK_CERT && &b.v[i] != leaf)
                                n += b.v[i].len;
                chain = malloc(n + 1);
                if (!chain)
                        return -ENOMEM;
                n = 0;
                for (size_t i = 0; i < b.n; i++)
                        if (b.v[i].kind == BLOCK_CERT && &b.v[i] != leaf) {
                                memcpy(chain + n, b.v[i].text, b.v[i].len);
                                n += b.v[i].len;
                        }
                chain[n] = 0;
        }
        *cert_pem = TAKE_PTR(cert);
        *key_pem = TAKE_PTR(key);
        *chain_pem = TAKE_PTR(chain);
        return 0;
}

int cert_parse_bundle(const char *pem, size_t len, char **cert_pem, char **key_pem,
                      char **chain_pem, struct problem *reterr)
{
        *cert_pem = *key_pem = *chain_pem = NULL;
        ERR_clear_error();
        int r = bundle_impl(pem, len, cert_pem, key_pem, chain_pem, reterr);
        ERR_clear_error();
        return r;
}

int cert_import_bundle(const char *pem, size_t len, time_t now, struct cert_import *ret,
                       struct problem *reterr)
{
        _cleanup_free_ char *cert = NULL, *chain = NULL;
        _cleanup_secret_ char *key = NULL;
        bool had_problem = reterr && reterr->code != PROBLEM_NONE;

        *ret = (struct cert_import){ 0 };
        int r = cert_parse_bundle(pem, len, &cert, &key, &chain, reterr);
        if (r >= 0)
                r = cert_import(cert, strlen(cert), key, strlen(key), chain,
                                chain ? strlen(chain) : 0, now, ret, reterr);
        if (r < 0 && reterr && !had_problem)
                reterr->field[0] = 0; /* one body: no member to point at */
        return r;
}
