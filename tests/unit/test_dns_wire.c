/* test_dns_wire.c - the RDATA readers of the destination probe (core/dns_wire.c) as tables of wire
 * bytes: names (escaping, the root, the 63- and 255-byte limits, pointers and extended label types,
 * running past the end), MX (the null MX of RFC 7505, every truncation, trailing bytes), A and
 * AAAA (exact lengths), TLSA (the empty association data, the size limit), TXT (several strings,
 * NUL bytes, the output size), and seeded random bytes: no reader reads past its input or leaves a
 * partial value. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <cmocka.h>

#include "core/dns_wire.h"
#include "util.h"

/* Wire bytes from a string literal (which may hold NUL bytes), without its terminating NUL. */
struct wire {
        const char *bytes;
        size_t len;
};
#define W(s)                                                                                       \
        {                                                                                          \
                (s), sizeof(s) - 1                                                                 \
        }

static const uint8_t *u8(const struct wire *w)
{
        return (const uint8_t *)w->bytes;
}

/* A copy of w in a buffer of exactly its length, so that AddressSanitizer sees any read past it. */
static uint8_t *exact_copy(const void *bytes, size_t len)
{
        uint8_t *p = malloc(len ? len : 1);
        assert_non_null(p);
        if (len)
                memcpy(p, bytes, len);
        return p;
}

/* A name of labels of the given lengths (each filled with 'a'), then the root: its wire bytes
 * into buf; returns their number. */
static size_t make_name(uint8_t *buf, const size_t *labels, size_t n)
{
        size_t o = 0;
        for (size_t i = 0; i < n; i++) {
                buf[o++] = (uint8_t)labels[i];
                memset(buf + o, 'a', labels[i]);
                o += labels[i];
        }
        buf[o++] = 0;
        return o;
}

/* ---- names ---- */

static void test_name_table(void **state)
{
        static const struct {
                struct wire w;
                size_t start;
                int rc;
                const char *text; /* when rc == 0 */
                size_t end;       /* *pos after it, when rc == 0 */
        } rows[] = {
                { W("\3mx1\7example\3com\0"), 0, 0, "mx1.example.com", 17 },
                { W("\0"), 0, 0, ".", 1 },
                { W("\3MX1\7Example\3COM\0"), 0, 0, "MX1.Example.COM", 17 }, /* case kept */
                { W("\4_25_\4_tcp\2mx\0"), 0, 0, "_25_._tcp.mx", 14 },
                { W("\6a-b-c1\0"), 0, 0, "a-b-c1", 8 },
                { W("\3a.b\7example\0"), 0, 0, "a\\.b.example", 13 },
                { W("\1*\7example\0"), 0, 0, "\\042.example", 11 },
                { W("\3a\0\377\0"), 0, 0, "a\\000\\255", 5 },
                { W("\4a b\\\0"), 0, 0, "a\\032b\\092", 6 },
                { W("\2\"\x7f\0"), 0, 0, "\\034\\127", 4 },
                /* a name inside a longer RDATA: *pos starts and ends where it is */
                { W("\0\12\2mx\0zz"), 2, 0, "mx", 6 },
                { W("\0\12\0"), 2, 0, ".", 3 },
                /* running past the end */
                { W(""), 0, -EBADMSG, NULL, 0 },
                { W("\3mx1"), 0, -EBADMSG, NULL, 0 },
                { W("\3mx1\7example"), 0, -EBADMSG, NULL, 0 },
                { W("\5ab"), 0, -EBADMSG, NULL, 0 },
                { W("\0"), 1, -EBADMSG, NULL, 0 },
                { W("\0"), 7, -EBADMSG, NULL, 0 },
                /* compression pointers and the extended label types (top bits 01 and 10) */
                { W("\300\14"), 0, -EBADMSG, NULL, 0 },
                { W("\3mx1\300\14"), 0, -EBADMSG, NULL, 0 },
                { W("\377\377"), 0, -EBADMSG, NULL, 0 },
                { W("\101abc\0"), 0, -EBADMSG, NULL, 0 },
                { W("\201abc\0"), 0, -EBADMSG, NULL, 0 },
                /* a label of 64 */
                { W("\100aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\0"), 0,
                  -EBADMSG, NULL, 0 },
        };
        char out[DNS_NAME_TEXT_MAX];
        for (size_t i = 0; i < ARRAY_SIZE(rows); i++) {
                uint8_t *buf = exact_copy(rows[i].w.bytes, rows[i].w.len);
                size_t pos = rows[i].start;
                strcpy(out, "junk");
                int r = dns_wire_name(buf, rows[i].w.len, &pos, out);
                if (r != rows[i].rc)
                        fail_msg("row %zu: got %d, want %d", i, r, rows[i].rc);
                if (r == 0) {
                        assert_string_equal(out, rows[i].text);
                        assert_int_equal(pos, rows[i].end);
                } else {
                        assert_string_equal(out, "");
                        assert_int_equal(pos, rows[i].start); /* not advanced */
                }
                free(buf);
        }
}

/* 63 bytes is the longest label, 255 wire bytes (the root's included) the longest name. */
static void test_name_limits(void **state)
{
        static const struct {
                size_t labels[5];
                size_t n;
                int rc;
        } rows[] = {
                { { 63 }, 1, 0 },
                { { 64 }, 1, -EBADMSG },
                { { 63, 63, 63, 61 }, 4, 0 },        /* 64 + 64 + 64 + 62 + 1 = 255 */
                { { 63, 63, 63, 62 }, 4, -EBADMSG }, /* 256 */
                { { 63, 63, 63, 63 }, 4, -EBADMSG },
                { { 1, 63, 63, 63, 59 }, 5, 0 }, /* 2 + 192 + 60 + 1 = 255 */
                { { 1, 63, 63, 63, 60 }, 5, -EBADMSG },
        };
        uint8_t wire[512];
        char out[DNS_NAME_TEXT_MAX];
        for (size_t i = 0; i < ARRAY_SIZE(rows); i++) {
                size_t len = make_name(wire, rows[i].labels, rows[i].n), pos = 0;
                uint8_t *buf = exact_copy(wire, len);
                int r = dns_wire_name(buf, len, &pos, out);
                if (r != rows[i].rc)
                        fail_msg("row %zu (%zu bytes): got %d, want %d", i, len, r, rows[i].rc);
                if (r == 0) {
                        assert_int_equal(pos, len);
                        size_t text = 0;
                        for (size_t j = 0; j < rows[i].n; j++)
                                text += rows[i].labels[j] + (j ? 1 : 0);
                        assert_int_equal(strlen(out), text);
                }
                free(buf);
        }
}

/* The longest text form: a 255-byte name of bytes that are all escaped fits DNS_NAME_TEXT_MAX. */
static void test_name_text_max(void **state)
{
        static const size_t labels[] = { 63, 63, 63, 61 };
        uint8_t wire[256];
        char out[DNS_NAME_TEXT_MAX];
        size_t len = make_name(wire, labels, ARRAY_SIZE(labels)), pos = 0;
        for (size_t i = 0, l = 0; i < len; i++) {
                if (l == 0) {
                        l = wire[i];
                        continue;
                }
                wire[i] = 0xfe;
                l--;
        }
        assert_int_equal(dns_wire_name(wire, len, &pos, out), 0);
        assert_int_equal(strlen(out), 4 * (63 * 3 + 61) + 3);
        assert_non_null(strstr(out, "\\254\\254."));
}

/* ---- MX ---- */

static void test_mx(void **state)
{
        static const struct {
                struct wire w;
                int rc;
                unsigned pref;
                const char *host;
        } rows[] = {
                { W("\0\12\3mx1\7example\3com\0"), 0, 10, "mx1.example.com" },
                { W("\0\0\0"), 0, 0, "." }, /* RFC 7505: no mail */
                { W("\377\377\2mx\0"), 0, 65535, "mx" },
                { W("\1\0\2mx\0"), 0, 256, "mx" },
                { W(""), -EBADMSG, 0, NULL },
                { W("\0"), -EBADMSG, 0, NULL },
                { W("\0\12"), -EBADMSG, 0, NULL },
                { W("\0\12\2mx"), -EBADMSG, 0, NULL },
                { W("\0\12\0\0"), -EBADMSG, 0, NULL },     /* trailing byte */
                { W("\0\12\2mx\0\0"), -EBADMSG, 0, NULL }, /* trailing byte */
                { W("\0\12\2mx\0xyz"), -EBADMSG, 0, NULL },
                { W("\0\12\300\14"), -EBADMSG, 0, NULL }, /* pointer */
                { W("\0\12\2mx\300\14"), -EBADMSG, 0, NULL },
                { W("\0\12\100aaaa\0"), -EBADMSG, 0, NULL },
        };
        char host[DNS_NAME_TEXT_MAX];
        unsigned pref;
        for (size_t i = 0; i < ARRAY_SIZE(rows); i++) {
                uint8_t *buf = exact_copy(rows[i].w.bytes, rows[i].w.len);
                pref = 4242;
                strcpy(host, "junk");
                int r = dns_wire_mx(buf, rows[i].w.len, &pref, host);
                if (r != rows[i].rc)
                        fail_msg("row %zu: got %d, want %d", i, r, rows[i].rc);
                if (r == 0) {
                        assert_int_equal(pref, rows[i].pref);
                        assert_string_equal(host, rows[i].host);
                } else {
                        assert_int_equal(pref, 0);
                        assert_string_equal(host, "");
                }
                free(buf);
        }
}

/* Every proper prefix of a good MX record is malformed: the name's root byte is its last. */
static void test_mx_truncations(void **state)
{
        static const struct wire good[] = {
                W("\0\12\3mx1\7example\3com\0"),
                W("\0\0\0"),
                W("\0\5\4mail\2b\\\3xn-\0"),
        };
        char host[DNS_NAME_TEXT_MAX];
        unsigned pref;
        for (size_t i = 0; i < ARRAY_SIZE(good); i++) {
                assert_int_equal(dns_wire_mx(u8(&good[i]), good[i].len, &pref, host), 0);
                for (size_t n = 0; n < good[i].len; n++) {
                        uint8_t *buf = exact_copy(good[i].bytes, n);
                        if (dns_wire_mx(buf, n, &pref, host) != -EBADMSG)
                                fail_msg("record %zu cut to %zu bytes was accepted", i, n);
                        assert_string_equal(host, "");
                        free(buf);
                }
        }
}

/* ---- A and AAAA ---- */

static void test_address(void **state)
{
        static const struct {
                int type;
                struct wire w;
                int rc;
                const char *text;
        } rows[] = {
                { DNS_TYPE_A, W("\300\0\2\1"), 0, "192.0.2.1" },
                { DNS_TYPE_A, W("\0\0\0\0"), 0, "0.0.0.0" },
                { DNS_TYPE_A, W("\377\377\377\377"), 0, "255.255.255.255" },
                { DNS_TYPE_AAAA, W("\x20\x01\x0d\xb8\0\0\0\0\0\0\0\0\0\0\0\1"), 0, "2001:db8::1" },
                { DNS_TYPE_AAAA, W("\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0"), 0, "::" },
                { DNS_TYPE_AAAA, W("\0\0\0\0\0\0\0\0\0\0\377\377\300\0\2\1"), 0,
                  "::ffff:192.0.2.1" },
                { DNS_TYPE_AAAA,
                  W("\xfe\x80\x12\x34\x56\x78\x9a\xbc\xde\xf0\x12\x34\x56\x78\x9a\xbc"), 0,
                  "fe80:1234:5678:9abc:def0:1234:5678:9abc" },
                { DNS_TYPE_A, W(""), -EBADMSG, NULL },
                { DNS_TYPE_A, W("\300\0\2"), -EBADMSG, NULL },
                { DNS_TYPE_A, W("\300\0\2\1\0"), -EBADMSG, NULL },
                { DNS_TYPE_A, W("\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0"), -EBADMSG, NULL },
                { DNS_TYPE_AAAA, W("\300\0\2\1"), -EBADMSG, NULL },
                { DNS_TYPE_AAAA, W("\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0"), -EBADMSG, NULL },
                { DNS_TYPE_AAAA, W("\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0"), -EBADMSG, NULL },
                { DNS_TYPE_MX, W("\300\0\2\1"), -EINVAL, NULL },
                { DNS_TYPE_TLSA, W("\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0"), -EINVAL, NULL },
                { 0, W("\300\0\2\1"), -EINVAL, NULL },
        };
        char out[DNS_ADDRESS_MAX];
        for (size_t i = 0; i < ARRAY_SIZE(rows); i++) {
                uint8_t *buf = exact_copy(rows[i].w.bytes, rows[i].w.len);
                strcpy(out, "junk");
                int r = dns_wire_address(rows[i].type, buf, rows[i].w.len, out);
                if (r != rows[i].rc)
                        fail_msg("row %zu: got %d, want %d", i, r, rows[i].rc);
                assert_string_equal(out, r == 0 ? rows[i].text : "");
                free(buf);
        }
}

/* ---- TLSA ---- */

static void test_tlsa(void **state)
{
        static const struct {
                size_t len; /* bytes of RDATA: 3, 2, 1, then len - 3 bytes of data */
                int rc;
        } rows[] = {
                { 0, -EBADMSG },
                { 1, -EBADMSG },
                { 2, -EBADMSG },
                { 3, -EBADMSG }, /* no association data */
                { 4, 0 },
                { 3 + 32, 0 },
                { 3 + 64, 0 },
                { 3 + DNS_TLSA_DATA_MAX, 0 },
                { 3 + DNS_TLSA_DATA_MAX + 1, -EMSGSIZE },
                { 3 + 4096, -EMSGSIZE },
        };
        struct dns_tlsa *t = malloc(sizeof(*t));
        assert_non_null(t);
        for (size_t i = 0; i < ARRAY_SIZE(rows); i++) {
                size_t len = rows[i].len;
                uint8_t *buf = malloc(len ? len : 1);
                assert_non_null(buf);
                for (size_t j = 0; j < len; j++)
                        buf[j] = j < 3 ? (uint8_t)(3 - j) : (uint8_t)(j * 7);
                memset(t, 0x5a, sizeof(*t));
                int r = dns_wire_tlsa(buf, len, t);
                if (r != rows[i].rc)
                        fail_msg("row %zu (%zu bytes): got %d, want %d", i, len, r, rows[i].rc);
                if (r == 0) {
                        assert_int_equal(t->usage, 3);
                        assert_int_equal(t->selector, 2);
                        assert_int_equal(t->mtype, 1);
                        assert_int_equal(t->len, len - 3);
                        assert_memory_equal(t->data, buf + 3, len - 3);
                } else {
                        assert_int_equal(t->len, 0);
                        assert_int_equal(t->usage, 0);
                        assert_int_equal(t->selector, 0);
                        assert_int_equal(t->mtype, 0);
                }
                free(buf);
        }
        /* the fields as they are, whatever their values: usability is the caller's question */
        static const struct wire odd = W("\377\200\7\0");
        assert_int_equal(dns_wire_tlsa(u8(&odd), odd.len, t), 0);
        assert_int_equal(t->usage, 255);
        assert_int_equal(t->selector, 128);
        assert_int_equal(t->mtype, 7);
        assert_int_equal(t->len, 1);
        assert_int_equal(t->data[0], 0);
        free(t);
}

/* ---- TXT ---- */

static void test_txt(void **state)
{
        static const struct {
                struct wire w;
                size_t size; /* of out; 0: sizeof(out) */
                int rc;
                const char *text;
        } rows[] = {
                { W("\13v=spf1 -all"), 0, 0, "v=spf1 -all" },
                { W("\3abc\3def"), 0, 0, "abcdef" },
                { W("\0"), 0, 0, "" },
                { W("\0\3abc\0"), 0, 0, "abc" },
                { W("\25v=STSv1; id=20261204;"), 0, 0, "v=STSv1; id=20261204;" },
                { W("\3a\"\\"), 0, 0, "a\"\\" },
                { W("\2\377\200"), 0, 0, "\377\200" }, /* bytes as they are */
                /* the output size: the text and its NUL */
                { W("\3abc\3def"), 7, 0, "abcdef" },
                { W("\3abc\3def"), 6, -EMSGSIZE, "" },
                { W("\3abc"), 1, -EMSGSIZE, "" },
                { W("\0"), 1, 0, "" },
                /* malformed */
                { W(""), 0, -EBADMSG, "" },
                { W("\5abc"), 0, -EBADMSG, "" },
                { W("\3abc\5de"), 0, -EBADMSG, "" },
                { W("\3abc\1"), 0, -EBADMSG, "" },
                { W("\3a\0b"), 0, -EBADMSG, "" },
                { W("\1\0"), 0, -EBADMSG, "" },
                { W("\5abc"), 1, -EBADMSG, "" }, /* malformed before too long */
        };
        char out[64];
        for (size_t i = 0; i < ARRAY_SIZE(rows); i++) {
                uint8_t *buf = exact_copy(rows[i].w.bytes, rows[i].w.len);
                size_t size = rows[i].size ? rows[i].size : sizeof(out);
                char *o = malloc(size);
                assert_non_null(o);
                memset(o, 'x', size);
                int r = dns_wire_txt(buf, rows[i].w.len, o, size);
                if (r != rows[i].rc)
                        fail_msg("row %zu: got %d, want %d", i, r, rows[i].rc);
                assert_string_equal(o, rows[i].text);
                free(o);
                free(buf);
        }
        /* no room at all: nothing is written */
        static const struct wire one = W("\1a");
        assert_int_equal(dns_wire_txt(u8(&one), one.len, out, 0), -EMSGSIZE);
        /* 255-byte strings, several of them */
        uint8_t big[3 * 256];
        for (size_t s = 0; s < 3; s++) {
                big[s * 256] = 255;
                memset(big + s * 256 + 1, 'a' + (int)s, 255);
        }
        char text[3 * 255 + 1];
        assert_int_equal(dns_wire_txt(big, sizeof(big), text, sizeof(text)), 0);
        assert_int_equal(strlen(text), 3 * 255);
        assert_int_equal(text[254], 'a');
        assert_int_equal(text[255], 'b');
        assert_int_equal(text[3 * 255 - 1], 'c');
        assert_int_equal(dns_wire_txt(big, sizeof(big), text, sizeof(text) - 1), -EMSGSIZE);
}

/* ---- random bytes ---- */

static uint64_t rng_state;

static uint32_t rng(void)
{
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        return (uint32_t)(rng_state >> 32);
}

/* Seeded random RDATA (SMTPTLSD_TEST_SEED to replay), in buffers of their exact length: every
 * reader either succeeds or returns an error with an empty value; ASan catches any read past the
 * end. Label-like bytes are favoured so that names often get far. */
static void test_random_bytes(void **state)
{
        uint64_t seed = 20261204;
        const char *env = getenv("SMTPTLSD_TEST_SEED");
        if (env)
                seed = strtoull(env, NULL, 10);
        rng_state = seed ? seed : 1;
        unsigned ok[5] = { 0 };
        char text[DNS_NAME_TEXT_MAX], addr[DNS_ADDRESS_MAX], txt[300];
        struct dns_tlsa *t = malloc(sizeof(*t));
        assert_non_null(t);
        for (int step = 0; step < 20000; step++) {
                size_t len = rng() % 300;
                uint8_t *buf = malloc(len ? len : 1);
                assert_non_null(buf);
                for (size_t i = 0; i < len; i++) {
                        uint32_t x = rng();
                        buf[i] = (x & 0x300) ? (uint8_t)(x % 8) : (uint8_t)x;
                }
                size_t pos = len ? rng() % len : 0, start = pos;
                unsigned pref;
                int r = dns_wire_name(buf, len, &pos, text);
                if (r == 0) {
                        ok[0]++;
                        assert_true(pos > start && pos <= len && pos - start <= 255);
                        assert_true(strlen(text) > 0 && strlen(text) < DNS_NAME_TEXT_MAX);
                } else {
                        assert_int_equal(r, -EBADMSG);
                        assert_int_equal(pos, start);
                        assert_string_equal(text, "");
                }
                r = dns_wire_mx(buf, len, &pref, text);
                ok[1] += r == 0;
                if (r < 0)
                        assert_string_equal(text, "");
                r = dns_wire_address(rng() % 2 ? DNS_TYPE_A : DNS_TYPE_AAAA, buf, len, addr);
                ok[2] += r == 0;
                r = dns_wire_tlsa(buf, len, t);
                ok[3] += r == 0;
                assert_true(r == 0 ? t->len == len - 3 : t->len == 0);
                r = dns_wire_txt(buf, len, txt, sizeof(txt));
                ok[4] += r == 0;
                if (r == 0)
                        assert_true(strlen(txt) < len);
                else
                        assert_string_equal(txt, "");
                free(buf);
        }
        free(t);
        print_message("random bytes: seed %llu, accepted name %u mx %u address %u tlsa %u txt %u\n",
                      (unsigned long long)seed, ok[0], ok[1], ok[2], ok[3], ok[4]);
        assert_true(ok[0] > 100 && ok[1] > 0 && ok[4] > 0);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_name_table),     cmocka_unit_test(test_name_limits),
                cmocka_unit_test(test_name_text_max),  cmocka_unit_test(test_mx),
                cmocka_unit_test(test_mx_truncations), cmocka_unit_test(test_address),
                cmocka_unit_test(test_tlsa),           cmocka_unit_test(test_txt),
                cmocka_unit_test(test_random_bytes),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
