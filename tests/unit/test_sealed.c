/* test_sealed.c - the private-key envelope: round trip, a fresh nonce per value, and every
 * tampering refused (tag, nonce, ciphertext, additional data, key id, truncation), the wrong key
 * and no key refused; the key file's text format. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <cmocka.h>
#include <openssl/evp.h>

#include "core/sealed.h"
#include "util.h"

static const char HEX_A[] = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
static const char HEX_B[] = "ff0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
static const char PEM[] = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEH\n"
                          "-----END PRIVATE KEY-----\n";
static const char CTX[] = "certificates.private_key_pem:mx:AB:CD";

static struct kek key(const char *hex)
{
        struct kek k;
        assert_int_equal(kek_parse(hex, strlen(hex), &k), 0);
        return k;
}

static char *seal(const struct kek *k, const char *context)
{
        char *s = NULL;
        assert_int_equal(sealed_seal(k, context, PEM, strlen(PEM), &s), 0);
        return s;
}

static int open_(const struct kek *k, const char *context, const char *stored)
{
        char *plain = NULL;
        int r = sealed_open(k, context, stored, &plain);
        if (r >= 0) {
                assert_string_equal(plain, PEM);
                free_wiped(plain);
        } else {
                assert_null(plain);
        }
        return r;
}

/* The raw bytes of an envelope (nonce || ciphertext || tag) and back. */
__attribute__((noinline)) static size_t decode(const char *stored, unsigned char *raw)
{
        const char *b64 = strrchr(stored, ':') + 1;
        size_t n = strlen(b64), pad = (b64[n - 1] == '=') + (b64[n - 2] == '=');
        return (size_t)EVP_DecodeBlock(raw, (const unsigned char *)b64, (int)n) - pad;
}

static char *encode(const char *stored, const unsigned char *raw, size_t n)
{
        size_t head = (size_t)(strrchr(stored, ':') + 1 - stored);
        char *s = malloc(head + 4 * ((n + 2) / 3) + 1);
        memcpy(s, stored, head);
        EVP_EncodeBlock((unsigned char *)s + head, raw, (int)n);
        return s;
}

static void test_round_trip_and_fresh_nonce(void **state)
{
        struct kek a = key(HEX_A);
        char *s1 = seal(&a, CTX), *s2 = seal(&a, CTX);
        char id[KEK_ID_SIZE];
        assert_true(sealed_is_sealed(s1));
        assert_false(sealed_is_sealed(PEM));
        assert_int_equal(sealed_key_id(s1, id), 0);
        assert_string_equal(id, a.id);
        assert_int_equal(strlen(a.id), 16);
        assert_null(strstr(s1, "PRIVATE KEY"));
        assert_string_not_equal(s1, s2); /* a new nonce each time */
        assert_int_equal(open_(&a, CTX, s1), 0);
        assert_int_equal(open_(&a, CTX, s2), 0);
        free(s1);
        free(s2);
}

static void test_wrong_key_and_no_key_refused(void **state)
{
        struct kek a = key(HEX_A), b = key(HEX_B);
        assert_string_not_equal(a.id, b.id);
        char *s = seal(&a, CTX);
        assert_int_equal(open_(&b, CTX, s), -EKEYREJECTED);
        assert_int_equal(open_(NULL, CTX, s), -EKEYREJECTED);
        /* the other key under this key's id: the tag refuses it */
        memcpy(b.id, a.id, sizeof(a.id));
        assert_int_equal(open_(&b, CTX, s), -EBADMSG);
        free(s);
}

static void test_other_context_refused(void **state)
{
        struct kek a = key(HEX_A);
        char *s = seal(&a, CTX);
        assert_int_equal(open_(&a, "certificates.private_key_pem:mx2:AB:CD", s), -EBADMSG);
        assert_int_equal(open_(&a, "certificates.private_key_pem:mx:AB:CE", s), -EBADMSG);
        assert_int_equal(open_(&a, "", s), -EBADMSG);
        free(s);
}

static void test_tampering_refused(void **state)
{
        struct kek a = key(HEX_A);
        char *s = seal(&a, CTX);
        unsigned char raw[512], copy[512];
        size_t n = decode(s, raw);
        assert_int_equal(n, 12 + strlen(PEM) + 16);
        /* one bit flipped in the nonce, the ciphertext's first and last byte, the tag */
        size_t at[] = { 0, 11, 12, 12 + strlen(PEM) - 1, n - 16, n - 1 };
        for (size_t i = 0; i < ARRAY_SIZE(at); i++) {
                memcpy(copy, raw, n);
                copy[at[i]] ^= 0x01;
                char *t = encode(s, copy, n);
                assert_int_equal(open_(&a, CTX, t), -EBADMSG);
                free(t);
        }
        /* the tag cut short, or nothing but a nonce */
        char *t = encode(s, raw, n - 1);
        assert_true(open_(&a, CTX, t) < 0);
        free(t);
        t = encode(s, raw, 12);
        assert_int_equal(open_(&a, CTX, t), -EINVAL);
        free(t);
        /* the header (version, key id) is authenticated and checked */
        t = strdup(s);
        t[8] = '2'; /* sealed:v2: */
        assert_int_equal(open_(&a, CTX, t), -EINVAL);
        free(t);
        assert_int_equal(open_(&a, CTX, "sealed:v1:zz"), -EINVAL);
        assert_int_equal(open_(&a, CTX, PEM), -EINVAL);
        assert_int_equal(open_(&a, CTX, "sealed:v1:0011223344556677:!!!!"), -EKEYREJECTED);
        free(s);
}

static void test_key_file_text(void **state)
{
        struct kek k;
        char with_nl[80];
        snprintf(with_nl, sizeof(with_nl), "%s\n", HEX_A);
        assert_int_equal(kek_parse(with_nl, strlen(with_nl), &k), 0);
        struct kek a = key(HEX_A);
        assert_memory_equal(k.key, a.key, KEK_SIZE);
        assert_int_equal(k.key[31], 0x1f);
        assert_int_equal(kek_parse(HEX_A, 63, &k), -EINVAL);   /* short */
        assert_int_equal(kek_parse(with_nl, 66, &k), -EINVAL); /* two newlines' worth */
        char bad[sizeof(HEX_A)];
        memcpy(bad, HEX_A, sizeof(HEX_A));
        bad[0] = 'g';
        assert_int_equal(kek_parse(bad, 64, &k), -EINVAL); /* not hex */
        char raw[32] = { 0 };
        assert_int_equal(kek_parse(raw, sizeof(raw), &k), -EINVAL); /* raw bytes: refused */
}

static void test_free_wiped_null(void **state)
{
        free_wiped(NULL);
        char *p = strdup(PEM);
        free_wiped(p);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_round_trip_and_fresh_nonce),
                cmocka_unit_test(test_wrong_key_and_no_key_refused),
                cmocka_unit_test(test_other_context_refused),
                cmocka_unit_test(test_tampering_refused),
                cmocka_unit_test(test_key_file_text),
                cmocka_unit_test(test_free_wiped_null),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
