/* sealed.c - the key-encryption key and the AES-256-GCM envelope of private keys at rest (see
 * sealed.h). Pure; any thread. */
#include "core/sealed.h"

#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "util.h"

#define NONCE_SIZE 12
#define TAG_SIZE   16
/* "sealed:v1:" + 16 hex + ":" */
#define HEADER_LEN (sizeof(SEALED_PREFIX) - 1 + KEK_ID_SIZE - 1 + 1)

void free_wiped(void *p)
{
        if (!p)
                return;
        OPENSSL_cleanse(p, malloc_usable_size(p));
        free(p);
}

static _Thread_local unsigned json_wiping;

static void json_free(void *p)
{
        if (json_wiping)
                free_wiped(p);
        else
                free(p);
}

void json_wipe_install(void)
{
        json_set_alloc_funcs(malloc, json_free);
}

void json_wipe_begin(void)
{
        json_wiping++;
}

void json_wipe_end(void)
{
        if (json_wiping)
                json_wiping--;
}

int kek_parse(const char *text, size_t len, struct kek *ret)
{
        if (len == 2 * KEK_SIZE + 1 && text[len - 1] == '\n')
                len--;
        if (len != 2 * KEK_SIZE)
                return -EINVAL;
        for (size_t i = 0; i < KEK_SIZE; i++) {
                int hi = hex_digit_value(text[2 * i]), lo = hex_digit_value(text[2 * i + 1]);
                if (hi < 0 || lo < 0) {
                        kek_wipe(ret);
                        return -EINVAL;
                }
                ret->key[i] = (unsigned char)(hi << 4 | lo);
        }
        static const char label[] = "smtptlsd kek id"; /* with its NUL */
        unsigned char md[SHA256_DIGEST_LENGTH];
        EVP_MD_CTX *ctx = EVP_MD_CTX_new();
        unsigned mdlen = 0;
        int ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 &&
                 EVP_DigestUpdate(ctx, label, sizeof(label)) == 1 &&
                 EVP_DigestUpdate(ctx, ret->key, KEK_SIZE) == 1 &&
                 EVP_DigestFinal_ex(ctx, md, &mdlen) == 1;
        EVP_MD_CTX_free(ctx);
        if (!ok) {
                kek_wipe(ret);
                return -EIO;
        }
        hex_encode(md, (KEK_ID_SIZE - 1) / 2, ret->id);
        return 0;
}

void kek_wipe(struct kek *k)
{
        if (k)
                OPENSSL_cleanse(k, sizeof(*k));
}

bool sealed_is_sealed(const char *stored)
{
        return stored && strncmp(stored, SEALED_PREFIX, sizeof(SEALED_PREFIX) - 1) == 0;
}

int sealed_key_id(const char *stored, char id[KEK_ID_SIZE])
{
        if (!sealed_is_sealed(stored) || strlen(stored) < HEADER_LEN ||
            stored[HEADER_LEN - 1] != ':')
                return -EINVAL;
        const char *p = stored + sizeof(SEALED_PREFIX) - 1;
        for (size_t i = 0; i < KEK_ID_SIZE - 1; i++)
                if (hex_digit_value(p[i]) < 0)
                        return -EINVAL;
        memcpy(id, p, KEK_ID_SIZE - 1);
        id[KEK_ID_SIZE - 1] = 0;
        return 0;
}

/* header || context: what the tag authenticates besides the ciphertext. */
static int gcm_aad(EVP_CIPHER_CTX *ctx, const char *header, const char *context)
{
        int n = 0;
        return EVP_CipherUpdate(ctx, NULL, &n, (const unsigned char *)header, (int)HEADER_LEN) ==
                   1 &&
               EVP_CipherUpdate(ctx, NULL, &n, (const unsigned char *)context,
                                (int)strlen(context)) == 1;
}

int sealed_seal(const struct kek *k, const char *context, const char *plain, size_t len, char **ret)
{
        char header[HEADER_LEN + 1];
        snprintf(header, sizeof(header), SEALED_PREFIX "%s:", k->id);
        if (len > (size_t)(1 << 24))
                return -E2BIG;
        size_t raw_len = NONCE_SIZE + len + TAG_SIZE;
        unsigned char *raw = malloc(raw_len);
        char *out = malloc(HEADER_LEN + 4 * ((raw_len + 2) / 3) + 1);
        EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
        int n = 0, m = 0, r = -EIO;
        if (!raw || !out || !ctx) {
                r = -ENOMEM;
                goto out;
        }
        if (RAND_bytes(raw, NONCE_SIZE) != 1)
                goto out;
        if (EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL) != 1 ||
            EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, NONCE_SIZE, NULL) != 1 ||
            EVP_EncryptInit_ex(ctx, NULL, NULL, k->key, raw) != 1 || !gcm_aad(ctx, header, context))
                goto out;
        if (EVP_EncryptUpdate(ctx, raw + NONCE_SIZE, &n, (const unsigned char *)plain, (int)len) !=
                1 ||
            EVP_EncryptFinal_ex(ctx, raw + NONCE_SIZE + n, &m) != 1 || (size_t)(n + m) != len ||
            EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, TAG_SIZE, raw + NONCE_SIZE + len) != 1)
                goto out;
        memcpy(out, header, HEADER_LEN);
        EVP_EncodeBlock((unsigned char *)out + HEADER_LEN, raw, (int)raw_len);
        *ret = TAKE_PTR(out);
        r = 0;
out:
        EVP_CIPHER_CTX_free(ctx);
        free(raw); /* ciphertext only */
        free(out);
        return r;
}

int sealed_open(const struct kek *k, const char *context, const char *stored, char **ret)
{
        char id[KEK_ID_SIZE];
        int r = sealed_key_id(stored, id);
        if (r < 0)
                return r;
        if (!k || !streq(id, k->id))
                return -EKEYREJECTED;
        const char *b64 = stored + HEADER_LEN;
        size_t b64_len = strlen(b64);
        if (b64_len % 4 != 0 || b64_len < 4 * ((NONCE_SIZE + TAG_SIZE + 2) / 3))
                return -EINVAL;
        size_t pad = (b64[b64_len - 1] == '=') + (b64[b64_len - 2] == '=');
        unsigned char *raw = malloc(b64_len / 4 * 3);
        EVP_CIPHER_CTX *ctx = NULL;
        char *plain = NULL;
        if (!raw)
                return -ENOMEM;
        int raw_len = EVP_DecodeBlock(raw, (const unsigned char *)b64, (int)b64_len);
        r = -EINVAL;
        if (raw_len < 0 || (size_t)raw_len < pad + NONCE_SIZE + TAG_SIZE)
                goto out;
        size_t len = (size_t)raw_len - pad - NONCE_SIZE - TAG_SIZE;
        plain = malloc(len + 1);
        ctx = EVP_CIPHER_CTX_new();
        int n = 0, m = 0;
        r = -ENOMEM;
        if (!plain || !ctx)
                goto out;
        r = -EIO;
        if (EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL) != 1 ||
            EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, NONCE_SIZE, NULL) != 1 ||
            EVP_DecryptInit_ex(ctx, NULL, NULL, k->key, raw) != 1 || !gcm_aad(ctx, stored, context))
                goto out;
        if (EVP_DecryptUpdate(ctx, (unsigned char *)plain, &n, raw + NONCE_SIZE, (int)len) != 1)
                goto out;
        if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, TAG_SIZE, raw + NONCE_SIZE + len) != 1)
                goto out;
        r = -EBADMSG;
        if (EVP_DecryptFinal_ex(ctx, (unsigned char *)plain + n, &m) != 1 || (size_t)(n + m) != len)
                goto out;
        plain[len] = 0;
        *ret = TAKE_PTR(plain);
        r = 0;
out:
        EVP_CIPHER_CTX_free(ctx);
        free(raw);
        free_wiped(plain);
        return r;
}
