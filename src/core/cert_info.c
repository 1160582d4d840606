/* cert_info.c - describing a certificate (cert_info.h): the fields read from a leaf and its
 * chain, their JSON form for the API, the resource's read-only members and ETags, and the
 * description of a stored PEM. Pure; any thread. */
#include "core/cert_info.h"

#include <stdio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "core/cert_pem.h"
#include "core/json_spec.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(BIGNUM *, BN_free)
DEFINE_TRIVIAL_CLEANUP_FUNC(GENERAL_NAMES *, GENERAL_NAMES_free)

static bool utf8_valid(const char *s)
{
        const unsigned char *p = (const unsigned char *)s;
        while (*p) {
                uint32_t c;
                size_t n;
                if (*p < 0x80) {
                        p++;
                        continue;
                } else if ((*p & 0xe0) == 0xc0) {
                        c = *p & 0x1f;
                        n = 1;
                } else if ((*p & 0xf0) == 0xe0) {
                        c = *p & 0x0f;
                        n = 2;
                } else if ((*p & 0xf8) == 0xf0) {
                        c = *p & 0x07;
                        n = 3;
                } else {
                        return false;
                }
                for (size_t i = 1; i <= n; i++) {
                        if ((p[i] & 0xc0) != 0x80)
                                return false;
                        c = (c << 6) | (p[i] & 0x3f);
                }
                if ((n == 1 && c < 0x80) || (n == 2 && c < 0x800) || (n == 3 && c < 0x10000) ||
                    c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
                        return false;
                p += n + 1;
        }
        return true;
}

/* "CN=mx1.example.com,O=Example": RFC 2253 (most specific first), UTF-8 kept when valid, else
 * escaped as \XX. */
static int name_to_string(const X509_NAME *name, char **ret)
{
        static const unsigned long flags[] = { XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB,
                                               XN_FLAG_RFC2253 };
        for (size_t i = 0; i < ARRAY_SIZE(flags); i++) {
                _cleanup_(BIO_freep) BIO *bio = BIO_new(BIO_s_mem());
                _cleanup_free_ char *s = NULL;
                if (!bio)
                        return -ENOMEM;
                if (X509_NAME_print_ex(bio, name, 0, flags[i]) < 0)
                        continue;
                int r = bio_to_string(bio, &s);
                if (r < 0)
                        return r;
                if (utf8_valid(s)) {
                        *ret = TAKE_PTR(s);
                        return 0;
                }
        }
        *ret = strdup("");
        return *ret ? 0 : -ENOMEM;
}

/* A CN that may serve as a DNS name: letters, digits, '-', '.', '_', '*'. */
static bool hostname_like(const unsigned char *s, size_t n)
{
        if (n == 0 || n > 253)
                return false;
        for (size_t i = 0; i < n; i++)
                if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
                      (s[i] >= '0' && s[i] <= '9') || s[i] == '-' || s[i] == '.' || s[i] == '_' ||
                      s[i] == '*'))
                        return false;
        return true;
}

static int push_name(struct cert_info *info, size_t *size, const unsigned char *s, size_t n)
{
        if (info->n_dns_names == *size) {
                size_t nsize = *size ? *size * 2 : 4;
                char **v = reallocarray(info->dns_names, nsize, sizeof(char *));
                if (!v)
                        return -ENOMEM;
                info->dns_names = v;
                *size = nsize;
        }
        char *d = strndup((const char *)s, n);
        if (!d)
                return -ENOMEM;
        info->dns_names[info->n_dns_names++] = d;
        return 0;
}

static int fill_dns_names(X509 *x, struct cert_info *info)
{
        _cleanup_(GENERAL_NAMES_freep) GENERAL_NAMES *gens =
            X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
        size_t size = 0;
        int r;

        for (int i = 0; gens && i < sk_GENERAL_NAME_num(gens); i++) {
                const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
                if (g->type != GEN_DNS)
                        continue;
                const unsigned char *s = ASN1_STRING_get0_data(g->d.dNSName);
                int n = ASN1_STRING_length(g->d.dNSName);
                bool printable = n > 0;
                for (int j = 0; j < n; j++)
                        if (s[j] < 0x21 || s[j] > 0x7e)
                                printable = false; /* NUL-prefix tricks, controls, 8-bit */
                if (!printable)
                        continue;
                r = push_name(info, &size, s, (size_t)n);
                if (r < 0)
                        return r;
        }
        if (info->n_dns_names > 0)
                return 0;

        /* RFC 6125 6.4.4: the CN only when no DNS name is presented; the most specific one. */
        const X509_NAME *subject = X509_get_subject_name(x);
        int last = -1;
        for (int i = -1; (i = X509_NAME_get_index_by_NID(subject, NID_commonName, i)) >= 0;)
                last = i;
        if (last < 0)
                return 0;
        X509_NAME_ENTRY *e = X509_NAME_get_entry(subject, last);
        unsigned char *cn = NULL;
        int n = ASN1_STRING_to_UTF8(&cn, X509_NAME_ENTRY_get_data(e));
        if (n < 0)
                return 0;
        r = 0;
        if (hostname_like(cn, (size_t)n))
                r = push_name(info, &size, cn, (size_t)n);
        OPENSSL_free(cn);
        return r;
}

static int fill_fingerprints(X509 *x, struct cert_info *info)
{
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int mdlen = 0;

        if (X509_digest(x, EVP_sha256(), md, &mdlen) != 1 || mdlen != 32)
                return -ENOMEM;
        static const char digits[] = "0123456789ABCDEF";
        for (unsigned i = 0; i < mdlen; i++) {
                info->sha256_fingerprint[3 * i] = digits[md[i] >> 4];
                info->sha256_fingerprint[3 * i + 1] = digits[md[i] & 0xf];
                info->sha256_fingerprint[3 * i + 2] = i + 1 < mdlen ? ':' : 0;
        }

        _cleanup_(openssl_freep) unsigned char *der = NULL;
        int n = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(x), &der);
        if (n <= 0 || EVP_Digest(der, (size_t)n, md, &mdlen, EVP_sha256(), NULL) != 1 ||
            mdlen != 32)
                return -ENOMEM;
        hex_encode(md, mdlen, info->spki_sha256);
        return 0;
}

static int serial_to_string(const X509 *x, char **ret)
{
        _cleanup_(BN_freep) BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
        if (!bn)
                return -ENOMEM;
        _cleanup_(openssl_freep) char *hex = BN_bn2hex(bn);
        if (!hex)
                return -ENOMEM;
        *ret = strdup(hex);
        return *ret ? 0 : -ENOMEM;
}

int cert_info_fill(X509 *leaf, STACK_OF(X509) * chain, struct cert_info *info)
{
        int r;

        *info = (struct cert_info){ 0 };
        if (x509_validity(leaf, &info->not_before, &info->not_after) < 0)
                return -EINVAL;
        if ((r = name_to_string(X509_get_subject_name(leaf), &info->subject)) < 0 ||
            (r = name_to_string(X509_get_issuer_name(leaf), &info->issuer)) < 0 ||
            (r = serial_to_string(leaf, &info->serial)) < 0 ||
            (r = fill_dns_names(leaf, info)) < 0 || (r = fill_fingerprints(leaf, info)) < 0)
                return r;

        EVP_PKEY *pub = X509_get0_pubkey(leaf);
        strcpy_bounded(info->key_type, sizeof(info->key_type),
                       pub ? pkey_type_name(pub) : "unknown");
        info->key_bits = pub ? EVP_PKEY_get_bits(pub) : 0;
        info->self_signed = X509_self_signed(leaf, 1) == 1;
        info->is_ca = (X509_get_extension_flags(leaf) & EXFLAG_CA) != 0;

        int n = chain ? sk_X509_num(chain) : 0;
        if (n > 0) {
                info->chain = calloc((size_t)n, sizeof(*info->chain));
                if (!info->chain)
                        return -ENOMEM;
        }
        for (int i = 0; i < n; i++) {
                X509 *c = sk_X509_value(chain, i);
                struct cert_chain_entry *e = &info->chain[info->n_chain++];
                if ((r = name_to_string(X509_get_subject_name(c), &e->subject)) < 0 ||
                    (r = name_to_string(X509_get_issuer_name(c), &e->issuer)) < 0)
                        return r;
                if (asn1_time_to_time_t(X509_get0_notAfter(c), &e->not_after) < 0)
                        return -EINVAL;
        }
        return 0;
}

void cert_info_done(struct cert_info *info)
{
        if (!info)
                return;
        free(info->subject);
        free(info->issuer);
        free(info->serial);
        for (size_t i = 0; i < info->n_dns_names; i++)
                free(info->dns_names[i]);
        free(info->dns_names);
        for (size_t i = 0; i < info->n_chain; i++) {
                free(info->chain[i].subject);
                free(info->chain[i].issuer);
        }
        free(info->chain);
        *info = (struct cert_info){ 0 };
}

static json_t *time_json(time_t t)
{
        char buf[32];
        format_time(t, buf);
        return json_string(buf);
}

#define READ_ONLY(n)                                                                               \
        {                                                                                          \
                .name = n, .type = JS_ANY, .flags = JS_READ_ONLY                                   \
        }
static const struct json_spec read_only_spec[] = {
        READ_ONLY("type"),
        READ_ONLY("subject"),
        READ_ONLY("issuer"),
        READ_ONLY("serial"),
        READ_ONLY("not_before"),
        READ_ONLY("not_after"),
        { .name = "days_left", .type = JS_ANY, .flags = JS_READ_ONLY | JS_CLOCK },
        READ_ONLY("dns_names"),
        READ_ONLY("key"),
        READ_ONLY("sha256_fingerprint"),
        READ_ONLY("spki_sha256"),
        READ_ONLY("chain"),
        READ_ONLY("chain_verified"),
        READ_ONLY("self_signed"),
        READ_ONLY("system"),
        READ_ONLY("in_use"),
        READ_ONLY("missing"),
        READ_ONLY("files"),
        READ_ONLY("created_at"),
        READ_ONLY("updated_at"),
        READ_ONLY("generation"),
        { 0 },
};

json_t *cert_take_read_only(json_t *body)
{
        json_t *ro = json_object();
        for (size_t i = 0; ro && read_only_spec[i].name; i++) {
                const char *name = read_only_spec[i].name;
                json_t *v = json_object_get(body, name);
                if (!v || (streq(name, "chain") && !json_is_array(v)))
                        continue;
                json_object_set(ro, name, v);
                json_object_del(body, name);
        }
        return ro;
}

int cert_check_read_only(json_t *read_only, json_t *current, struct problem *reterr)
{
        return json_check_read_only(read_only, read_only_spec, current, "", reterr);
}

int64_t cert_days_left(time_t then, time_t now)
{
        int64_t diff = (int64_t)then - (int64_t)now;
        int64_t d = diff / 86400;
        if (diff % 86400 < 0)
                d--; /* floor, not truncation, once expired */
        return d;
}

json_t *cert_info_to_json(const struct cert_info *info, time_t now)
{
        _cleanup_(json_decrefp) json_t *names = json_array();
        _cleanup_(json_decrefp) json_t *chain = json_array();
        _cleanup_(json_decrefp) json_t *nb = time_json(info->not_before);
        _cleanup_(json_decrefp) json_t *na = time_json(info->not_after);

        if (!names || !chain || !nb || !na)
                return NULL;
        for (size_t i = 0; i < info->n_dns_names; i++)
                if (json_array_append_new(names, json_string(info->dns_names[i])) < 0)
                        return NULL;
        for (size_t i = 0; i < info->n_chain; i++) {
                const struct cert_chain_entry *e = &info->chain[i];
                _cleanup_(json_decrefp) json_t *t = time_json(e->not_after);
                if (!t)
                        return NULL;
                json_t *o = json_pack("{s:s, s:s, s:O}", "subject", e->subject ? e->subject : "",
                                      "issuer", e->issuer ? e->issuer : "", "not_after", t);
                if (json_array_append_new(chain, o) < 0)
                        return NULL;
        }
        return json_pack("{s:s, s:s, s:s, s:O, s:O, s:I, s:O, s:{s:s, s:i}, s:s, s:s, s:O, s:b}",
                         "subject", info->subject ? info->subject : "", "issuer",
                         info->issuer ? info->issuer : "", "serial",
                         info->serial ? info->serial : "", "not_before", nb, "not_after", na,
                         "days_left", (json_int_t)cert_days_left(info->not_after, now), "dns_names",
                         names, "key", "type", info->key_type, "bits", info->key_bits,
                         "sha256_fingerprint", info->sha256_fingerprint, "spki_sha256",
                         info->spki_sha256, "chain", chain, "self_signed", (int)info->self_signed);
}

static void cert_info_donep(struct cert_info *info)
{
        cert_info_done(info);
}

/* ---- cert_info_from_pem ----------------------------------------------------------------- */

static int info_from_pem_impl(const char *pem, size_t len, struct cert_info *ret,
                              struct problem *reterr)
{
        _cleanup_(pem_blocks_done) struct pem_blocks b = { 0 };
        _cleanup_x509_stack_ STACK_OF(X509) *chain = sk_X509_new_null();
        X509 *leaf = NULL;
        int r;

        if (!chain)
                return -ENOMEM;
        if (!pem)
                len = 0;
        if (len > CERT_BUNDLE_MAX)
                return problem_set(reterr, PROBLEM_PAYLOAD_TOO_LARGE, "",
                                   "the PEM is larger than %d KiB", CERT_BUNDLE_MAX / 1024);
        size_t nb = pem_count_begins(pem, len);
        if (nb > CERT_BUNDLE_MAX_BLOCKS)
                return problem_set(reterr, PROBLEM_INVALID_PEM, "",
                                   "the PEM holds more than %d blocks", CERT_BUNDLE_MAX_BLOCKS);
        r = pem_lex(pem, len, nb, "", "the PEM", &b, reterr);
        if (r < 0)
                return r;
        if (pem_blocks_count(&b, BLOCK_CERT) == 0)
                return problem_set(reterr, PROBLEM_NO_CERTIFICATE, "",
                                   "the PEM holds no certificate");
        r = pem_decode_certs(&b, "", "the PEM", 1, reterr);
        if (r < 0)
                return r;
        for (size_t i = 0; i < b.n; i++) {
                if (b.v[i].kind != BLOCK_CERT)
                        continue;
                if (!leaf)
                        leaf = b.v[i].x509;
                else if (!sk_X509_push(chain, b.v[i].x509))
                        return -ENOMEM;
                else
                        X509_up_ref(b.v[i].x509);
        }
        r = cert_info_fill(leaf, chain, ret);
        if (r == -EINVAL)
                return problem_set(reterr, PROBLEM_INVALID_PEM, "",
                                   "a certificate has unreadable validity dates");
        return r;
}

int cert_info_from_pem(const char *pem, size_t len, struct cert_info *ret, struct problem *reterr)
{
        _cleanup_(cert_info_donep) struct cert_info info = { 0 };
        *ret = (struct cert_info){ 0 };
        ERR_clear_error();
        int r = info_from_pem_impl(pem, len, &info, reterr);
        ERR_clear_error();
        if (r < 0)
                return r;
        *ret = info;
        info = (struct cert_info){ 0 };
        return 0;
}
