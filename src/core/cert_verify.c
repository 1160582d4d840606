/* cert_verify.c - checking certificates against what uses them (cert_verify.h): rendered files
 * loaded the way Postfix loads them, hostname coverage (RFC 6125), and chain verification against
 * a CA file or the system store (the only file anything in the room opens). Pure otherwise; any
 * thread. */
#include "core/cert_verify.h"

#include <limits.h>
#include <stdio.h>
#include <strings.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "core/cert_pem.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(X509 *, X509_free)
DEFINE_TRIVIAL_CLEANUP_FUNC(SSL_CTX *, SSL_CTX_free)
DEFINE_TRIVIAL_CLEANUP_FUNC(X509_STORE *, X509_STORE_free)
DEFINE_TRIVIAL_CLEANUP_FUNC(X509_STORE_CTX *, X509_STORE_CTX_free)

/* ---- cert_check_pem --------------------------------------------------------------------- */

/* OpenSSL's reasons for the failure, earliest first, without the generic wrappers. */
static const char *ossl_reasons(char *buf, size_t size)
{
        unsigned long e;
        size_t n = 0;

        buf[0] = 0;
        while ((e = ERR_get_error()) != 0) {
                char sys[128];
                const char *reason;
                if (ERR_SYSTEM_ERROR(e))
                        reason = strerror_r((int)ERR_GET_REASON(e), sys, sizeof(sys));
                else
                        reason = ERR_reason_error_string(e);
                if (!reason || streq(reason, "system lib") || streq(reason, "PEM lib") ||
                    strstr(buf, reason))
                        continue;
                int w = snprintf(buf + n, size - n, "%s%s", n ? ": " : "", reason);
                if (w < 0 || (size_t)w >= size - n)
                        break;
                n += (size_t)w;
        }
        if (!buf[0])
                snprintf(buf, size, "unknown error");
        return buf;
}

/* What Postfix's SSL_CTX_use_PrivateKey_file() (key) or SSL_CTX_use_certificate_chain_file()
 * does, on bytes. A chain: the first certificate is the leaf (with its trust attributes, as
 * OpenSSL reads it), every further one goes to the chain; a parse error other than running out of
 * blocks fails the load. */
static int use_pem(SSL_CTX *ctx, const char *pem, size_t len, bool key)
{
        if (len > INT_MAX)
                return 0;
        _cleanup_(BIO_freep) BIO *bio = BIO_new_mem_buf(pem, (int)len);
        if (!bio)
                return 0;
        if (key) {
                EVP_PKEY *k = PEM_read_bio_PrivateKey(bio, NULL, pem_no_passphrase, NULL);
                int ok = k && SSL_CTX_use_PrivateKey(ctx, k) == 1;
                EVP_PKEY_free(k);
                return ok;
        }
        X509 *leaf = PEM_read_bio_X509_AUX(bio, NULL, pem_no_passphrase, NULL);
        int ok =
            leaf && SSL_CTX_use_certificate(ctx, leaf) == 1 && SSL_CTX_clear_chain_certs(ctx) == 1;
        X509_free(leaf);
        if (!ok)
                return 0;
        X509 *ca;
        while ((ca = PEM_read_bio_X509(bio, NULL, pem_no_passphrase, NULL)))
                if (SSL_CTX_add0_chain_cert(ctx, ca) != 1) {
                        X509_free(ca);
                        return 0;
                }
        unsigned long e = ERR_peek_last_error();
        if (ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE) {
                ERR_clear_error();
                return 1;
        }
        return 0;
}

static int check_pem_impl(const struct cert_pair *pair, time_t now, struct cert_info *info_ret,
                          struct problem *reterr)
{
        _cleanup_(SSL_CTX_freep) SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
        const char *key_path = pair->key_path, *chain_path = pair->chain_path;
        char why[256];

        if (!ctx)
                return -ENOMEM;
        SSL_CTX_set_default_passwd_cb(ctx, pem_no_passphrase);
        if (use_pem(ctx, pair->chain_pem, pair->chain_len, false) != 1)
                return problem_set(reterr, PROBLEM_CERTIFICATE_UNUSABLE, "",
                                   "cannot load the certificate chain from %s: %s", chain_path,
                                   ossl_reasons(why, sizeof(why)));
        if (use_pem(ctx, pair->key_pem, pair->key_len, true) != 1)
                return problem_set(reterr, PROBLEM_CERTIFICATE_UNUSABLE, "",
                                   "cannot load the private key from %s: %s", key_path,
                                   ossl_reasons(why, sizeof(why)));
        if (SSL_CTX_check_private_key(ctx) != 1)
                return problem_set(reterr, PROBLEM_CERTIFICATE_UNUSABLE, "",
                                   "the private key in %s does not match the certificate in %s: %s",
                                   key_path, chain_path, ossl_reasons(why, sizeof(why)));

        X509 *leaf = SSL_CTX_get0_certificate(ctx);
        time_t nb, na;
        if (!leaf || x509_validity(leaf, &nb, &na) < 0)
                return problem_set(reterr, PROBLEM_CERTIFICATE_UNUSABLE, "",
                                   "the certificate in %s has unreadable validity dates",
                                   chain_path);
        if (now > na) {
                char when[32];
                format_time(na, when);
                return problem_set(reterr, PROBLEM_CERTIFICATE_UNUSABLE, "",
                                   "the certificate in %s expired on %s", chain_path, when);
        }
        if (info_ret) {
                STACK_OF(X509) *chain = NULL;
                if (SSL_CTX_get0_chain_certs(ctx, &chain) != 1)
                        return -ENOMEM;
                int r = cert_info_fill(leaf, chain, info_ret);
                if (r < 0) {
                        cert_info_done(info_ret);
                        if (r == -EINVAL)
                                return problem_set(reterr, PROBLEM_CERTIFICATE_UNUSABLE, "",
                                                   "a certificate in %s has unreadable validity "
                                                   "dates",
                                                   chain_path);
                        return r;
                }
        }
        return 0;
}

int cert_check_pem(const struct cert_pair *pair, time_t now, struct cert_info *info_ret,
                   struct problem *reterr)
{
        if (info_ret)
                *info_ret = (struct cert_info){ 0 };
        ERR_clear_error();
        int r = check_pem_impl(pair, now, info_ret, reterr);
        ERR_clear_error();
        return r;
}

/* ---- hostnames -------------------------------------------------------------------------- */

/* Whether pattern (a dNSName) covers host; both without a trailing dot, host non-empty. */
static bool name_covers(const char *pattern, size_t plen, const char *host, size_t hlen)
{
        if (plen > 0 && pattern[plen - 1] == '.')
                plen--;
        if (plen == 0)
                return false;
        if (pattern[0] != '*')
                return !memchr(pattern, '*', plen) && plen == hlen &&
                       strncasecmp(pattern, host, hlen) == 0;

        /* "*.rest": the wildcard is the whole left-most label, rest has at least two labels and
         * no further wildcard; it covers exactly one non-empty label in front of rest */
        if (plen < 3 || pattern[1] != '.' || memchr(pattern + 1, '*', plen - 1))
                return false;
        const char *rest = pattern + 2;
        size_t rlen = plen - 2;
        if (!memchr(rest, '.', rlen) || rest[0] == '.')
                return false;
        const char *dot = memchr(host, '.', hlen);
        if (!dot || dot == host)
                return false;
        size_t tail = hlen - (size_t)(dot + 1 - host);
        return tail == rlen && strncasecmp(dot + 1, rest, rlen) == 0;
}

bool cert_covers_hostname(const struct cert_info *info, const char *hostname)
{
        if (!info || isempty(hostname))
                return false;
        size_t hlen = strlen(hostname);
        if (hostname[hlen - 1] == '.')
                hlen--;
        if (hlen == 0 || memchr(hostname, '*', hlen) || hostname[0] == '.')
                return false;
        for (size_t i = 1; i < hlen; i++)
                if (hostname[i] == '.' && hostname[i - 1] == '.')
                        return false; /* an empty label */
        for (size_t i = 0; i < info->n_dns_names; i++)
                if (name_covers(info->dns_names[i], strlen(info->dns_names[i]), hostname, hlen))
                        return true;
        return false;
}

/* ---- chain verification ----------------------------------------------------------------- */

/* Appends the certificates of pem (keys and other blocks ignored) to certs. */
static int load_certs(const char *pem, size_t len, STACK_OF(X509) * certs)
{
        _cleanup_(pem_blocks_done) struct pem_blocks b = { 0 };
        if (!pem || len == 0)
                return 0;
        if (len > CERT_BUNDLE_MAX)
                return -E2BIG;
        size_t nb = pem_count_begins(pem, len);
        if (nb > CERT_BUNDLE_MAX_BLOCKS)
                return -E2BIG;
        int r = pem_lex(pem, len, nb, "", "", &b, NULL);
        if (r < 0)
                return r;
        r = pem_decode_certs(&b, "", "", 1, NULL);
        if (r < 0)
                return r;
        for (size_t i = 0; i < b.n; i++) {
                if (b.v[i].kind != BLOCK_CERT)
                        continue;
                if (!sk_X509_push(certs, b.v[i].x509))
                        return -ENOMEM;
                X509_up_ref(b.v[i].x509);
        }
        return 0;
}

static int verify_impl(const char *cert_pem, size_t cert_len, const char *chain_pem,
                       size_t chain_len, const char *ca_file, time_t now, bool *verified)
{
        _cleanup_x509_stack_ STACK_OF(X509) *certs = sk_X509_new_null();
        _cleanup_(X509_freep) X509 *leaf = NULL;
        _cleanup_(X509_STORE_freep) X509_STORE *store = X509_STORE_new();
        _cleanup_(X509_STORE_CTX_freep) X509_STORE_CTX *ctx = X509_STORE_CTX_new();
        int r;

        *verified = false;
        if (!certs || !store || !ctx)
                return -ENOMEM;
        if ((r = load_certs(cert_pem, cert_len, certs)) < 0 ||
            (r = load_certs(chain_pem, chain_len, certs)) < 0)
                return r == -ENOMEM ? r : -EINVAL;
        if (sk_X509_num(certs) == 0)
                return -EINVAL;
        leaf = sk_X509_shift(certs);

        if (ca_file ? X509_STORE_load_file(store, ca_file) != 1
                    : X509_STORE_set_default_paths(store) != 1)
                return -ENOENT;
        if (X509_STORE_CTX_init(ctx, store, leaf, certs) != 1)
                return -ENOMEM;
        X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_SERVER);
        X509_STORE_CTX_set_time(ctx, 0, now);
        *verified = X509_verify_cert(ctx) == 1;
        return 0;
}

int cert_verify_chain(const char *cert_pem, size_t cert_len, const char *chain_pem,
                      size_t chain_len, const char *ca_file, time_t now, bool *verified)
{
        ERR_clear_error();
        int r = verify_impl(cert_pem, cert_len, chain_pem, chain_len, ca_file, now, verified);
        ERR_clear_error();
        return r;
}
