/* cert.c - certificates and keys (see cert.h): a PEM lexer that bounds and classifies the blocks
 * before OpenSSL sees them, then OpenSSL for decoding, the checks and the normalized output. Pure:
 * no I/O but the CA file cert_verify_chain() may be handed; any thread (HTTP
 * threads and the worker). Never logs; no problem detail ever quotes key material. */
#include "smtptlsd/cert.h"

#include <limits.h>
#include <stdio.h>
#include <strings.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "smtptlsd/json_spec.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(X509 *, X509_free)
DEFINE_TRIVIAL_CLEANUP_FUNC(EVP_PKEY *, EVP_PKEY_free)
DEFINE_TRIVIAL_CLEANUP_FUNC(BIO *, BIO_free)
DEFINE_TRIVIAL_CLEANUP_FUNC(BIGNUM *, BN_free)
DEFINE_TRIVIAL_CLEANUP_FUNC(SSL_CTX *, SSL_CTX_free)
DEFINE_TRIVIAL_CLEANUP_FUNC(X509_STORE *, X509_STORE_free)
DEFINE_TRIVIAL_CLEANUP_FUNC(X509_STORE_CTX *, X509_STORE_CTX_free)
DEFINE_TRIVIAL_CLEANUP_FUNC(GENERAL_NAMES *, GENERAL_NAMES_free)
DEFINE_TRIVIAL_CLEANUP_FUNC(char *, cert_secret_free)

static void x509_stack_freep(STACK_OF(X509) * *p)
{
        if (*p)
                sk_X509_pop_free(*p, X509_free);
}

static void openssl_freep(void *p)
{
        OPENSSL_free(*(void **)p);
}

#define _cleanup_x509_stack_ _cleanup_(x509_stack_freep)
#define _cleanup_secret_     _cleanup_(cert_secret_freep)

void cert_secret_free(char *s)
{
        if (!s)
                return;
        OPENSSL_cleanse(s, strlen(s));
        free(s);
}

/* The passphrase callback for every PEM read: fails, so OpenSSL never prompts on a terminal. */
static int no_passphrase(char *buf, int size, int rwflag, void *userdata)
{
        return -1;
}

/* ---- the PEM lexer ---------------------------------------------------------------------- */

enum block_kind {
        BLOCK_CERT,
        BLOCK_KEY,
        BLOCK_PARAMS, /* EC PARAMETERS, as `openssl ecparam -genkey` writes before the key */
        BLOCK_OTHER,
};

struct block {
        enum block_kind kind;
        bool encrypted;
        char type[48]; /* "CERTIFICATE"; only [A-Z0-9 ], so it may be quoted in a detail */
        char *text;    /* the block: its lines trimmed, BEGIN to END, each ending in '\n' */
        size_t len;
        X509 *x509; /* BLOCK_CERT, once decoded */
};

struct blocks {
        struct block *v;
        size_t n, size;
};

static void blocks_done(struct blocks *b)
{
        for (size_t i = 0; i < b->n; i++) {
                if (b->v[i].text) {
                        OPENSSL_cleanse(b->v[i].text, b->v[i].len);
                        free(b->v[i].text);
                }
                X509_free(b->v[i].x509);
        }
        free(b->v);
        *b = (struct blocks){ 0 };
}

/* The number of "-----BEGIN" in the raw bytes: a bound on the blocks, counted before parsing. */
static size_t count_begins(const char *text, size_t len)
{
        static const char marker[] = "-----BEGIN";
        size_t n = 0;
        if (!text)
                return 0;
        const char *p = text, *end = text + len;
        while (p && (size_t)(end - p) >= sizeof(marker) - 1) {
                p = memmem(p, (size_t)(end - p), marker, sizeof(marker) - 1);
                if (!p)
                        break;
                n++;
                p += sizeof(marker) - 1;
        }
        return n;
}

static bool has_prefix(const char *s, size_t n, const char *prefix)
{
        size_t k = strlen(prefix);
        return n >= k && memcmp(s, prefix, k) == 0;
}

static bool is_space(char c)
{
        return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

static enum block_kind classify(const char *type, bool *encrypted)
{
        static const char *const certs[] = { "CERTIFICATE", "X509 CERTIFICATE",
                                             "TRUSTED CERTIFICATE" };
        size_t n = strlen(type);

        *encrypted = false;
        for (size_t i = 0; i < ARRAY_SIZE(certs); i++)
                if (streq(type, certs[i]))
                        return BLOCK_CERT;
        if (streq(type, "ENCRYPTED PRIVATE KEY")) {
                *encrypted = true;
                return BLOCK_KEY;
        }
        if (streq(type, "PRIVATE KEY") || (n > 12 && streq(type + n - 12, " PRIVATE KEY")))
                return BLOCK_KEY;
        if (streq(type, "EC PARAMETERS"))
                return BLOCK_PARAMS;
        return BLOCK_OTHER;
}

/* Copies the lines [start, stop) trimmed, each ending in '\n', into b->text. */
static int block_copy(struct block *b, const char *start, const char *stop)
{
        b->text = malloc((size_t)(stop - start) + 2);
        if (!b->text)
                return -ENOMEM;
        size_t n = 0;
        for (const char *p = start; p < stop;) {
                const char *nl = memchr(p, '\n', (size_t)(stop - p));
                const char *e = nl ? nl : stop;
                const char *a = p;
                while (a < e && is_space(*a))
                        a++;
                while (e > a && is_space(e[-1]))
                        e--;
                memcpy(b->text + n, a, (size_t)(e - a));
                n += (size_t)(e - a);
                b->text[n++] = '\n';
                p = nl ? nl + 1 : stop;
        }
        b->text[n] = 0;
        b->len = n;
        return 0;
}

/* Splits text into PEM blocks. Text before a block is skipped (as OpenSSL does); anything but
 * whitespace after the last one, an unterminated block, a stray END line or NUL bytes are
 * invalid_pem. Zero blocks and only whitespace is not an error: ret->n == 0. */
static int pem_lex(const char *text, size_t len, size_t max_blocks, const char *field,
                   const char *what, struct blocks *ret, struct problem *reterr)
{
        const char *block_start = NULL;
        bool text_after = false;
        struct block *cur = NULL;
        int r;

        *ret = (struct blocks){ 0 };
        if (!text || len == 0)
                return 0;
        const char *p = text, *end = text + len;
        if (memchr(text, 0, len))
                return problem_set(reterr, PROBLEM_INVALID_PEM, field,
                                   "%s holds a NUL byte: it is not PEM text", what);
        if (max_blocks > 0) {
                ret->v = calloc(max_blocks, sizeof(*ret->v));
                if (!ret->v)
                        return -ENOMEM;
                ret->size = max_blocks;
        }

        while (p < end) {
                const char *nl = memchr(p, '\n', (size_t)(end - p));
                const char *line = p, *a = p, *b = nl ? nl : end;
                p = nl ? nl + 1 : end;
                while (a < b && is_space(*a))
                        a++;
                while (b > a && is_space(b[-1]))
                        b--;
                size_t n = (size_t)(b - a);
                if (n == 0)
                        continue;

                if (!cur) {
                        if (has_prefix(a, n, "-----BEGIN ")) {
                                size_t tlen = n - 11 - 5;
                                const char *type = a + 11;
                                if (n < 11 + 5 + 1 || memcmp(b - 5, "-----", 5) != 0 ||
                                    tlen >= sizeof(cur->type))
                                        return problem_set(reterr, PROBLEM_INVALID_PEM, field,
                                                           "%s has a malformed BEGIN line", what);
                                for (size_t i = 0; i < tlen; i++)
                                        if (!((type[i] >= 'A' && type[i] <= 'Z') ||
                                              (type[i] >= '0' && type[i] <= '9') || type[i] == ' '))
                                                return problem_set(
                                                    reterr, PROBLEM_INVALID_PEM, field,
                                                    "%s has a malformed BEGIN line", what);
                                if (ret->n >= ret->size)
                                        return problem_set(reterr, PROBLEM_INVALID_PEM, field,
                                                           "%s holds more than %zu PEM blocks",
                                                           what, ret->size);
                                cur = &ret->v[ret->n++];
                                memcpy(cur->type, type, tlen);
                                cur->type[tlen] = 0;
                                cur->kind = classify(cur->type, &cur->encrypted);
                                block_start = line;
                                text_after = false;
                                continue;
                        }
                        if (has_prefix(a, n, "-----END "))
                                return problem_set(reterr, PROBLEM_INVALID_PEM, field,
                                                   "%s has an END line without BEGIN", what);
                        text_after = true;
                        continue;
                }

                if (has_prefix(a, n, "-----END ")) {
                        size_t tlen = strlen(cur->type);
                        if (n != 9 + tlen + 5 || memcmp(a + 9, cur->type, tlen) != 0 ||
                            memcmp(b - 5, "-----", 5) != 0)
                                return problem_set(reterr, PROBLEM_INVALID_PEM, field,
                                                   "%s: the %s block has a mismatched END line",
                                                   what, cur->type);
                        r = block_copy(cur, block_start, p);
                        if (r < 0)
                                return r;
                        cur = NULL;
                        continue;
                }
                if (has_prefix(a, n, "-----BEGIN "))
                        return problem_set(reterr, PROBLEM_INVALID_PEM, field,
                                           "%s: the %s block is not terminated", what, cur->type);
                if (n > 10 && strncasecmp(a, "Proc-Type:", 10) == 0 && memmem(a, n, "ENCRYPTED", 9))
                        cur->encrypted = true;
        }

        if (cur)
                return problem_set(reterr, PROBLEM_INVALID_PEM, field,
                                   "%s: the %s block is not terminated", what, cur->type);
        if (text_after && ret->n == 0)
                return problem_set(reterr, PROBLEM_INVALID_PEM, field,
                                   "%s is not PEM (no BEGIN line)", what);
        if (text_after)
                return problem_set(reterr, PROBLEM_INVALID_PEM, field,
                                   "%s has data after the last PEM block", what);
        return 0;
}

static size_t blocks_count(const struct blocks *b, enum block_kind kind)
{
        size_t n = 0;
        for (size_t i = 0; i < b->n; i++)
                if (b->v[i].kind == kind)
                        n++;
        return n;
}

static const struct block *blocks_first(const struct blocks *b, enum block_kind kind)
{
        for (size_t i = 0; i < b->n; i++)
                if (b->v[i].kind == kind)
                        return &b->v[i];
        return NULL;
}

/* Decodes every certificate block; `first` numbers them in details (1-based). */
static int decode_certs(struct blocks *b, const char *field, const char *what, size_t first,
                        struct problem *reterr)
{
        size_t k = first;
        for (size_t i = 0; i < b->n; i++) {
                struct block *blk = &b->v[i];
                if (blk->kind != BLOCK_CERT)
                        continue;
                _cleanup_(BIO_freep) BIO *bio = BIO_new_mem_buf(blk->text, (int)blk->len);
                if (!bio)
                        return -ENOMEM;
                blk->x509 = PEM_read_bio_X509_AUX(bio, NULL, no_passphrase, NULL);
                if (!blk->x509) {
                        const char *reason = ERR_reason_error_string(ERR_peek_last_error());
                        return problem_set(reterr, PROBLEM_INVALID_PEM, field,
                                           "%s: certificate %zu does not decode (%s)", what, k,
                                           reason ? reason : "malformed");
                }
                if (X509_get_extension_flags(blk->x509) & EXFLAG_INVALID)
                        return problem_set(reterr, PROBLEM_INVALID_PEM, field,
                                           "%s: certificate %zu has malformed extensions", what, k);
                k++;
        }
        return 0;
}

/* Decodes the key block; refuses an encrypted one before trying. */
static int decode_key(const struct block *k, const char *field, EVP_PKEY **ret,
                      struct problem *reterr)
{
        if (k->encrypted)
                return problem_set(reterr, PROBLEM_ENCRYPTED_PRIVATE_KEY, field,
                                   "the private key is encrypted; Postfix needs it unencrypted");
        _cleanup_(BIO_freep) BIO *bio = BIO_new_mem_buf(k->text, (int)k->len);
        if (!bio)
                return -ENOMEM;
        *ret = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL);
        if (!*ret)
                return problem_set(reterr, PROBLEM_INVALID_PEM, field,
                                   "the %s block does not decode as a supported private key",
                                   k->type);
        return 0;
}

/* ---- conversions ------------------------------------------------------------------------ */

static int bio_to_string(BIO *bio, char **ret)
{
        char *data = NULL;
        long n = BIO_get_mem_data(bio, &data);
        if (n < 0)
                return -ENOMEM;
        char *s = malloc((size_t)n + 1);
        if (!s)
                return -ENOMEM;
        if (n > 0)
                memcpy(s, data, (size_t)n);
        s[n] = 0;
        *ret = s;
        return 0;
}

static int x509_to_pem(X509 *x, char **ret)
{
        _cleanup_(BIO_freep) BIO *bio = BIO_new(BIO_s_mem());
        if (!bio || PEM_write_bio_X509(bio, x) != 1)
                return -ENOMEM;
        return bio_to_string(bio, ret);
}

/* Unencrypted PKCS#8 ("PRIVATE KEY"), through secure-heap buffers that are wiped when freed. */
static int pkey_to_pem(EVP_PKEY *k, char **ret)
{
        _cleanup_(BIO_freep) BIO *bio = BIO_new(BIO_s_secmem());
        if (!bio || PEM_write_bio_PrivateKey(bio, k, NULL, NULL, 0, NULL, NULL) != 1)
                return -ENOMEM;
        return bio_to_string(bio, ret);
}

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

static int asn1_time_to_time_t(const ASN1_TIME *t, time_t *ret)
{
        struct tm tm = { 0 };
        if (!t || ASN1_TIME_to_tm(t, &tm) != 1)
                return -EINVAL;
        *ret = timegm(&tm);
        return 0;
}

static int x509_validity(const X509 *x, time_t *not_before, time_t *not_after)
{
        if (asn1_time_to_time_t(X509_get0_notBefore(x), not_before) < 0 ||
            asn1_time_to_time_t(X509_get0_notAfter(x), not_after) < 0)
                return -EINVAL;
        return 0;
}

static void format_time(time_t t, char buf[static 32])
{
        struct tm tm;
        if (!gmtime_r(&t, &tm) || strftime(buf, 32, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
                strcpy(buf, "?");
}

static const char *pkey_type_name(const EVP_PKEY *k)
{
        switch (EVP_PKEY_get_base_id(k)) {
        case EVP_PKEY_RSA:
                return "RSA";
        case EVP_PKEY_RSA_PSS:
                return "RSA-PSS";
        case EVP_PKEY_EC:
                return "EC";
        case EVP_PKEY_ED25519:
                return "Ed25519";
        case EVP_PKEY_ED448:
                return "Ed448";
        case EVP_PKEY_DSA:
                return "DSA";
        default: {
                const char *n = EVP_PKEY_get0_type_name(k);
                return n ? n : "unknown";
        }
        }
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

/* Fills info from the leaf and its chain (issuer order; may be NULL). -EINVAL: unreadable
 * validity dates. */
static int cert_info_fill(X509 *leaf, STACK_OF(X509) * chain, struct cert_info *info)
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

void cert_etag(int64_t version, char *buf, size_t size)
{
        snprintf(buf, size, "\"certificate-%lld\"", (long long)version);
}

void certs_etag(int64_t version, char *buf, size_t size)
{
        snprintf(buf, size, "\"certificates-%lld\"", (long long)version);
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

static void cert_info_donep(struct cert_info *info)
{
        cert_info_done(info);
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
        _cleanup_(blocks_done) struct blocks cb = { 0 }, kb = { 0 }, chb = { 0 };
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
        size_t nc = count_begins(cert_pem, cert_len);
        size_t nk = count_begins(key_pem, key_len);
        size_t nch = count_begins(chain_pem, chain_len);
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
        if (blocks_count(&kb, BLOCK_KEY) == 0)
                return problem_set(reterr, PROBLEM_NO_PRIVATE_KEY, "/private_key",
                                   blocks_count(&kb, BLOCK_CERT) > 0
                                       ? "the private_key field holds a certificate, not a key"
                                       : "no private key was given");
        if (blocks_count(&kb, BLOCK_KEY) > 1 || blocks_count(&kb, BLOCK_CERT) > 0)
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
        r = decode_certs(&cb, "/certificate", "the certificate", 1, reterr);
        if (r < 0)
                return r;
        r = decode_certs(&chb, "/chain", "the chain", 1, reterr);
        if (r < 0)
                return r;
        r = decode_key(blocks_first(&kb, BLOCK_KEY), "/private_key", &pkey, reterr);
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
        _cleanup_(blocks_done) struct blocks b = { 0 };
        _cleanup_(EVP_PKEY_freep) EVP_PKEY *pkey = NULL;
        _cleanup_free_ char *cert = NULL, *chain = NULL;
        _cleanup_secret_ char *key = NULL;
        int r;

        if (!pem)
                len = 0;
        if (len > CERT_BUNDLE_MAX)
                return problem_set(reterr, PROBLEM_PAYLOAD_TOO_LARGE, "",
                                   "the bundle is larger than %d KiB", CERT_BUNDLE_MAX / 1024);
        size_t nb = count_begins(pem, len);
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
        size_t ncerts = blocks_count(&b, BLOCK_CERT), nkeys = blocks_count(&b, BLOCK_KEY);
        if (ncerts == 0)
                return problem_set(reterr, PROBLEM_NO_CERTIFICATE, "",
                                   "the bundle holds no certificate");
        if (nkeys == 0)
                return problem_set(reterr, PROBLEM_NO_PRIVATE_KEY, "",
                                   "the bundle holds no private key");
        if (nkeys > 1)
                return problem_set(reterr, PROBLEM_INVALID_PEM, "",
                                   "the bundle holds more than one private key");
        r = decode_certs(&b, "", "the bundle", 1, reterr);
        if (r < 0)
                return r;
        const struct block *kblk = blocks_first(&b, BLOCK_KEY);
        if (!kblk)
                return -EINVAL;
        if (!kblk->encrypted) {
                r = decode_key(kblk, "", &pkey, reterr);
                if (r < 0)
                        return r;
        }

        /* the leaf: the one certificate matching the key; else the first non-CA of those that
         * match (or of all, when none does); else the first certificate */
        const struct block *leaf = NULL, *first_match = NULL, *match_non_ca = NULL,
                           *first_non_ca = NULL, *first = NULL;
        size_t nmatch = 0;
        for (size_t i = 0; i < b.n; i++) {
                const struct block *c = &b.v[i];
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

/* ---- cert_info_from_pem ----------------------------------------------------------------- */

static int info_from_pem_impl(const char *pem, size_t len, struct cert_info *ret,
                              struct problem *reterr)
{
        _cleanup_(blocks_done) struct blocks b = { 0 };
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
        size_t nb = count_begins(pem, len);
        if (nb > CERT_BUNDLE_MAX_BLOCKS)
                return problem_set(reterr, PROBLEM_INVALID_PEM, "",
                                   "the PEM holds more than %d blocks", CERT_BUNDLE_MAX_BLOCKS);
        r = pem_lex(pem, len, nb, "", "the PEM", &b, reterr);
        if (r < 0)
                return r;
        if (blocks_count(&b, BLOCK_CERT) == 0)
                return problem_set(reterr, PROBLEM_NO_CERTIFICATE, "",
                                   "the PEM holds no certificate");
        r = decode_certs(&b, "", "the PEM", 1, reterr);
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
                EVP_PKEY *k = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL);
                int ok = k && SSL_CTX_use_PrivateKey(ctx, k) == 1;
                EVP_PKEY_free(k);
                return ok;
        }
        X509 *leaf = PEM_read_bio_X509_AUX(bio, NULL, no_passphrase, NULL);
        int ok =
            leaf && SSL_CTX_use_certificate(ctx, leaf) == 1 && SSL_CTX_clear_chain_certs(ctx) == 1;
        X509_free(leaf);
        if (!ok)
                return 0;
        X509 *ca;
        while ((ca = PEM_read_bio_X509(bio, NULL, no_passphrase, NULL)))
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
        SSL_CTX_set_default_passwd_cb(ctx, no_passphrase);
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
        _cleanup_(blocks_done) struct blocks b = { 0 };
        if (!pem || len == 0)
                return 0;
        if (len > CERT_BUNDLE_MAX)
                return -E2BIG;
        size_t nb = count_begins(pem, len);
        if (nb > CERT_BUNDLE_MAX_BLOCKS)
                return -E2BIG;
        int r = pem_lex(pem, len, nb, "", "", &b, NULL);
        if (r < 0)
                return r;
        r = decode_certs(&b, "", "", 1, NULL);
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
