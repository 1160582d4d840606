/* cert_pem.c - PEM text and OpenSSL's objects for the certificate room (cert_pem.h): a lexer that
 * bounds and classifies the blocks before OpenSSL sees them, their decoding, and the conversions
 * the room shares (PEM out, times, key types). Pure; any thread. Never logs; no problem detail
 * ever quotes key material. */
#include "core/cert_pem.h"

#include <stdio.h>
#include <strings.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

/* The passphrase callback for every PEM read: fails, so OpenSSL never prompts on a terminal. */
int pem_no_passphrase(char *buf, int size, int rwflag, void *userdata)
{
        return -1;
}

/* ---- the PEM lexer ---------------------------------------------------------------------- */

void pem_blocks_done(struct pem_blocks *b)
{
        for (size_t i = 0; i < b->n; i++) {
                if (b->v[i].text) {
                        OPENSSL_cleanse(b->v[i].text, b->v[i].len);
                        free(b->v[i].text);
                }
                X509_free(b->v[i].x509);
        }
        free(b->v);
        *b = (struct pem_blocks){ 0 };
}

/* The number of "-----BEGIN" in the raw bytes: a bound on the blocks, counted before parsing. */
size_t pem_count_begins(const char *text, size_t len)
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

static enum pem_block_kind classify(const char *type, bool *encrypted)
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
static int block_copy(struct pem_block *b, const char *start, const char *stop)
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
int pem_lex(const char *text, size_t len, size_t max_blocks, const char *field, const char *what,
            struct pem_blocks *ret, struct problem *reterr)
{
        const char *block_start = NULL;
        bool text_after = false;
        struct pem_block *cur = NULL;
        int r;

        *ret = (struct pem_blocks){ 0 };
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

/* Decodes every certificate block; `first` numbers them in details (1-based). */
int pem_decode_certs(struct pem_blocks *b, const char *field, const char *what, size_t first,
                     struct problem *reterr)
{
        size_t k = first;
        for (size_t i = 0; i < b->n; i++) {
                struct pem_block *blk = &b->v[i];
                if (blk->kind != BLOCK_CERT)
                        continue;
                _cleanup_(BIO_freep) BIO *bio = BIO_new_mem_buf(blk->text, (int)blk->len);
                if (!bio)
                        return -ENOMEM;
                blk->x509 = PEM_read_bio_X509_AUX(bio, NULL, pem_no_passphrase, NULL);
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
int pem_decode_key(const struct pem_block *k, const char *field, EVP_PKEY **ret,
                   struct problem *reterr)
{
        if (k->encrypted)
                return problem_set(reterr, PROBLEM_ENCRYPTED_PRIVATE_KEY, field,
                                   "the private key is encrypted; Postfix needs it unencrypted");
        _cleanup_(BIO_freep) BIO *bio = BIO_new_mem_buf(k->text, (int)k->len);
        if (!bio)
                return -ENOMEM;
        *ret = PEM_read_bio_PrivateKey(bio, NULL, pem_no_passphrase, NULL);
        if (!*ret)
                return problem_set(reterr, PROBLEM_INVALID_PEM, field,
                                   "the %s block does not decode as a supported private key",
                                   k->type);
        return 0;
}

/* ---- conversions ------------------------------------------------------------------------ */

int bio_to_string(BIO *bio, char **ret)
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

int x509_to_pem(X509 *x, char **ret)
{
        _cleanup_(BIO_freep) BIO *bio = BIO_new(BIO_s_mem());
        if (!bio || PEM_write_bio_X509(bio, x) != 1)
                return -ENOMEM;
        return bio_to_string(bio, ret);
}

/* Unencrypted PKCS#8 ("PRIVATE KEY"), through secure-heap buffers that are wiped when freed. */
int pkey_to_pem(EVP_PKEY *k, char **ret)
{
        _cleanup_(BIO_freep) BIO *bio = BIO_new(BIO_s_secmem());
        if (!bio || PEM_write_bio_PrivateKey(bio, k, NULL, NULL, 0, NULL, NULL) != 1)
                return -ENOMEM;
        return bio_to_string(bio, ret);
}

int asn1_time_to_time_t(const ASN1_TIME *t, time_t *ret)
{
        struct tm tm = { 0 };
        if (!t || ASN1_TIME_to_tm(t, &tm) != 1)
                return -EINVAL;
        *ret = timegm(&tm);
        return 0;
}

int x509_validity(const X509 *x, time_t *not_before, time_t *not_after)
{
        if (asn1_time_to_time_t(X509_get0_notBefore(x), not_before) < 0 ||
            asn1_time_to_time_t(X509_get0_notAfter(x), not_after) < 0)
                return -EINVAL;
        return 0;
}

void format_time(time_t t, char buf[static 32])
{
        struct tm tm;
        if (!gmtime_r(&t, &tm) || strftime(buf, 32, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
                strcpy(buf, "?");
}

const char *pkey_type_name(const EVP_PKEY *k)
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
