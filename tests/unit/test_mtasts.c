/* test_mtasts.c - MTA-STS (core/mtasts.c) against RFC 8461 as tables: the `_mta-sts` TXT record
 * (3.1: "v=STSv1" first, ';' with optional whitespace between fields, an id of 1 to 32 letters and
 * digits, extensions by their grammar, anything else -ENOENT or -EINVAL), the policy file (3.2:
 * CRLF or LF, version/mode/max_age required in any order, case-sensitive names and values, max_age
 * 1*10 digits up to 31557600, mx required unless mode is none, mx values ["*."] Domain, unknown
 * keys ignored, no NUL byte, mx lines kept up to MTASTS_MX_MAX) and mx matching (4.1: the same
 * name case-insensitively, or "*." for exactly one more label). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <cmocka.h>

#include "core/mtasts.h"
#include "util.h"

/* ---- the TXT record (3.1) ---- */

static void test_txt_table(void **state)
{
        static const struct {
                const char *txt;
                int rc;
                const char *id; /* when rc == 0 */
        } rows[] = {
                { "v=STSv1; id=20160831085700Z;", 0, "20160831085700Z" },
                { "v=STSv1; id=20160831085700Z", 0, "20160831085700Z" },
                { "v=STSv1;id=abc", 0, "abc" },
                { "v=STSv1 ; id=abc ;", 0, "abc" },
                { "v=STSv1\t;\tid=abc;\t", 0, "abc" },
                { "v=STSv1;   id=abc;   ", 0, "abc" },
                { "v=STSv1; id=1", 0, "1" },
                { "v=STSv1; id=abcdefghijklmnopqrstuvwxyz012345", 0,
                  "abcdefghijklmnopqrstuvwxyz012345" }, /* 32 */
                /* extensions, before and after the id */
                { "v=STSv1; foo=bar; id=abc", 0, "abc" },
                { "v=STSv1; id=abc; ext_1.x-y=!\"#$%&'()*+,-./:<>?@[\\]^_`{|}~", 0, "abc" },
                { "v=STSv1; id=abc; x=1; y=2; z=3;", 0, "abc" },
                /* of two ids the first; an "id=" that is no id is an extension before a good one */
                { "v=STSv1; id=first; id=second", 0, "first" },
                { "v=STSv1; id=bad!; id=good", 0, "good" },
                /* not STS records */
                { "", -ENOENT, NULL },
                { "v=spf1 -all", -ENOENT, NULL },
                { "v=STSv2; id=abc", -ENOENT, NULL },
                { "v=STSv10; id=abc", -ENOENT, NULL },
                { "v=stsv1; id=abc", -ENOENT, NULL }, /* case-sensitive */
                { "V=STSv1; id=abc", -ENOENT, NULL },
                { " v=STSv1; id=abc", -ENOENT, NULL }, /* must begin with it */
                { "id=abc; v=STSv1", -ENOENT, NULL },
                { "v=STSv1x; id=abc", -ENOENT, NULL },
                /* STS records, malformed */
                { "v=STSv1", -EINVAL, NULL },
                { "v=STSv1;", -EINVAL, NULL },
                { "v=STSv1; ", -EINVAL, NULL },
                { "v=STSv1; id=", -EINVAL, NULL },
                { "v=STSv1; id=;", -EINVAL, NULL },
                { "v=STSv1; id=abcdefghijklmnopqrstuvwxyz0123456", -EINVAL, NULL }, /* 33 */
                { "v=STSv1; id=2016-08-31", -EINVAL, NULL },
                { "v=STSv1; id=abc_def", -EINVAL, NULL },
                { "v=STSv1; id=abc.", -EINVAL, NULL },
                { "v=STSv1; id=\xc3\xa9t\xc3\xa9", -EINVAL, NULL },
                { "v=STSv1; id= abc", -EINVAL, NULL },
                { "v=STSv1; id=abc def", -EINVAL, NULL },
                { "v=STSv1; ID=abc", -EINVAL, NULL }, /* "ID" is an extension: no id */
                { "v=STSv1; Id=abc", -EINVAL, NULL },
                { "v=STSv1; foo=bar", -EINVAL, NULL },
                { "v=STSv1 id=abc", -EINVAL, NULL },   /* no ';' between the fields */
                { "v=STSv1; id=abc ", -EINVAL, NULL }, /* whitespace without ';' */
                { "v=STSv1;; id=abc", -EINVAL, NULL }, /* an empty field */
                { "v=STSv1; id=abc;;", -EINVAL, NULL },
                { "v=STSv1; id", -EINVAL, NULL },
                { "v=STSv1; id=abc; foo", -EINVAL, NULL },
                { "v=STSv1; id=abc; =bar", -EINVAL, NULL },
                { "v=STSv1; id=abc; foo=", -EINVAL, NULL },
                { "v=STSv1; id=abc; foo=a=b", -EINVAL, NULL },
                { "v=STSv1; id=abc; _foo=bar", -EINVAL, NULL },
                { "v=STSv1; id=abc; f/o=bar", -EINVAL, NULL },
                { "v=STSv1; id=abc; abcdefghijklmnopqrstuvwxyz0123456=1", -EINVAL, NULL }, /* 33 */
                { "v=STSv1; id=abc; foo=b\x01r", -EINVAL, NULL },
                { "v=STSv1; id=abc; foo=b\xc3\xa9", -EINVAL, NULL },
                { "v=STSv1; id=abc; foo=bar baz", -EINVAL, NULL },
                { "v=STSv1; id=bad!", -EINVAL, NULL },
        };
        char id[MTASTS_ID_MAX + 1], err[160];
        for (size_t i = 0; i < ARRAY_SIZE(rows); i++) {
                strcpy(id, "junk");
                err[0] = 0;
                int r = mtasts_txt_parse(rows[i].txt, id, err, sizeof(err));
                if (r != rows[i].rc)
                        fail_msg("row %zu \"%s\": got %d (%s), want %d", i, rows[i].txt, r, err,
                                 rows[i].rc);
                if (r == 0) {
                        assert_string_equal(id, rows[i].id);
                } else {
                        assert_string_equal(id, "");
                        if (r == -EINVAL && !err[0])
                                fail_msg("row %zu \"%s\": -EINVAL without a message", i,
                                         rows[i].txt);
                }
        }
}

/* The message of a bad id names the id rule; a short err buffer is cut, not overrun. */
static void test_txt_messages(void **state)
{
        char id[MTASTS_ID_MAX + 1], err[160], tiny[8];
        assert_int_equal(mtasts_txt_parse("v=STSv1; id=", id, err, sizeof(err)), -EINVAL);
        assert_non_null(strstr(err, "1 to 32"));
        assert_int_equal(mtasts_txt_parse("v=STSv1", id, err, sizeof(err)), -EINVAL);
        assert_non_null(strstr(err, "no id"));
        assert_int_equal(mtasts_txt_parse("v=STSv1; id=abc; foo", id, tiny, sizeof(tiny)), -EINVAL);
        assert_int_equal(strlen(tiny), sizeof(tiny) - 1);
}

/* ---- the policy file (3.2) ---- */

#define OK_POLICY "version: STSv1\nmode: enforce\nmx: mx.example.com\nmax_age: 86400\n"

/* Policies accepted, and what they hold. */
static void test_policy_table(void **state)
{
        static const struct {
                const char *text;
                enum mtasts_mode mode;
                long max_age;
                size_t n_mx;
                const char *mx0, *mx1;
        } rows[] = {
                /* the RFC's examples, CRLF and LF, with and without the last line end */
                { "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\n"
                  "mx: *.example.net\r\nmx: backupmx.example.com\r\nmax_age: 604800\r\n",
                  MTASTS_MODE_ENFORCE, 604800, 3, "mail.example.com", "*.example.net" },
                { "version: STSv1\nmode: enforce\nmx: mail.example.com\nmx: *.example.net\n"
                  "max_age: 604800\n",
                  MTASTS_MODE_ENFORCE, 604800, 2, "mail.example.com", "*.example.net" },
                { "version: STSv1\r\nmode: testing\r\nmx: mx.example.com\r\nmax_age: 86400",
                  MTASTS_MODE_TESTING, 86400, 1, "mx.example.com", NULL },
                { "version: STSv1\r\nmode: testing\nmx: mx.example.com\r\nmax_age: 86400\n",
                  MTASTS_MODE_TESTING, 86400, 1, "mx.example.com", NULL }, /* mixed */
                /* any order: version need not be first */
                { "max_age: 1\nmx: mx.example.com\nmode: enforce\nversion: STSv1\n",
                  MTASTS_MODE_ENFORCE, 1, 1, "mx.example.com", NULL },
                /* whitespace after ':' and at the line end; none after ':' */
                { "version:STSv1\nmode:\t enforce \t\nmx:   MX.Example.COM  \r\nmax_age:5 \n",
                  MTASTS_MODE_ENFORCE, 5, 1, "MX.Example.COM", NULL },
                /* mode none: no mx needed, and mx lines are still read */
                { "version: STSv1\nmode: none\nmax_age: 86400\n", MTASTS_MODE_NONE, 86400, 0, NULL,
                  NULL },
                { "version: STSv1\nmode: none\nmx: mx.example.com\nmax_age: 86400\n",
                  MTASTS_MODE_NONE, 86400, 1, "mx.example.com", NULL },
                /* unknown keys are ignored, also long ones, odd text and case variants */
                { "version: STSv1\nfoo: bar\nmode: enforce\nx-y_z.1: a b: c; d=e\n"
                  "mx: mx.example.com\nmax_age: 86400\nMode: junk\nMX: junk\n",
                  MTASTS_MODE_ENFORCE, 86400, 1, "mx.example.com", NULL },
                { "version: STSv1\nmode: none\nmax_age: 1\ncomment: caf\xc3\xa9\n",
                  MTASTS_MODE_NONE, 1, 0, NULL, NULL },
                /* max_age bounds */
                { "version: STSv1\nmode: none\nmax_age: 0\n", MTASTS_MODE_NONE, 0, 0, NULL, NULL },
                { "version: STSv1\nmode: none\nmax_age: 31557600\n", MTASTS_MODE_NONE, 31557600, 0,
                  NULL, NULL },
                { "version: STSv1\nmode: none\nmax_age: 0031557600\n", MTASTS_MODE_NONE, 31557600,
                  0, NULL, NULL }, /* 10 digits */
                /* mx patterns */
                { "version: STSv1\nmode: enforce\nmx: *.example.com\nmx: a-1.b2.c\nmax_age: "
                  "1\n",
                  MTASTS_MODE_ENFORCE, 1, 2, "*.example.com", "a-1.b2.c" },
                { "version: STSv1\nmode: enforce\nmx: xn--bcher-kva.example\nmax_age: 1\n",
                  MTASTS_MODE_ENFORCE, 1, 1, "xn--bcher-kva.example", NULL },
                { "version: STSv1\nmode: enforce\nmx: localhost\nmax_age: 1\n", MTASTS_MODE_ENFORCE,
                  1, 1, "localhost", NULL },
                /* blank lines are let through */
                { "version: STSv1\n\nmode: none\r\n\r\nmax_age: 1\n\n", MTASTS_MODE_NONE, 1, 0,
                  NULL, NULL },
        };
        struct mtasts_policy p;
        char err[200];
        for (size_t i = 0; i < ARRAY_SIZE(rows); i++) {
                const char *t = rows[i].text;
                size_t len = strlen(t);
                char *buf = malloc(len ? len : 1); /* exactly len: ASan sees a read past it */
                assert_non_null(buf);
                memcpy(buf, t, len);
                memset(&p, 0x5a, sizeof(p));
                err[0] = 0;
                int r = mtasts_policy_parse(buf, len, &p, err, sizeof(err));
                free(buf);
                if (r != 0)
                        fail_msg("row %zu: got %d (%s), want 0", i, r, err);
                assert_int_equal(p.mode, rows[i].mode);
                assert_int_equal(p.max_age, rows[i].max_age);
                if (p.n_mx != rows[i].n_mx)
                        fail_msg("row %zu: %zu mx, want %zu", i, p.n_mx, rows[i].n_mx);
                if (rows[i].mx0)
                        assert_string_equal(p.mx[0], rows[i].mx0);
                if (rows[i].mx1)
                        assert_string_equal(p.mx[1], rows[i].mx1);
        }
}

/* Policies refused, each with a message. */
static void test_policy_refused(void **state)
{
        static const char *const rows[] = {
                /* missing fields */
                "",
                "\n",
                "mode: enforce\nmx: mx.example.com\nmax_age: 86400\n",
                "version: STSv1\nmx: mx.example.com\nmax_age: 86400\n",
                "version: STSv1\nmode: enforce\nmx: mx.example.com\n",
                /* enforce and testing need an mx */
                "version: STSv1\nmode: enforce\nmax_age: 86400\n",
                "version: STSv1\nmode: testing\nmax_age: 86400\n",
                /* bad values; names and values are case-sensitive */
                "version: STSv2\nmode: none\nmax_age: 1\n",
                "version: stsv1\nmode: none\nmax_age: 1\n",
                "version: \nmode: none\nmax_age: 1\n",
                "Version: STSv1\nmode: none\nmax_age: 1\n", /* no version */
                "version: STSv1\nmode: report\nmax_age: 1\n",
                "version: STSv1\nmode: Enforce\nmx: mx.example.com\nmax_age: 1\n",
                "version: STSv1\nmode: NONE\nmax_age: 1\n",
                "version: STSv1\nmode:\nmax_age: 1\n",
                "version: STSv1\nmode: none\nmax_age: 31557601\n",
                "version: STSv1\nmode: none\nmax_age: 99999999999\n",
                "version: STSv1\nmode: none\nmax_age: 00000000001\n", /* 11 */
                "version: STSv1\nmode: none\nmax_age: -1\n",
                "version: STSv1\nmode: none\nmax_age: +1\n",
                "version: STSv1\nmode: none\nmax_age: 1d\n",
                "version: STSv1\nmode: none\nmax_age: 0x10\n",
                "version: STSv1\nmode: none\nmax_age: 1 000\n",
                "version: STSv1\nmode: none\nmax_age: \f1\n",
                "version: STSv1\nmode: none\nmax_age: 1.5\n",
                "version: STSv1\nmode: none\nmax_age:\n",
                /* lines that are not "key: value" */
                "version: STSv1\nmode: none\nmax_age: 1\njunk\n",
                "version: STSv1\nmode: none\nmax_age: 1\n \n",
                "version: STSv1\n mode: none\nmax_age: 1\n", /* leading space */
                "version: STSv1\nmode : none\nmax_age: 1\n",
                "version: STSv1\nmode: none\nmax_age: 1\n: x\n",
                "version: STSv1\nmode: none\nmax_age: 1\nf o: x\n",
                "version: STSv1\nmode: none\nmax_age: 1\n_foo: x\n",
                "version: STSv1\nmode: none\nmax_age: 1\nfoo:\n",
                "version: STSv1\nmode: none\nmax_age: 1\nfoo: a\x01z\n",
                "version: STSv1\rmode: none\rmax_age: 1\r", /* CR alone */
                /* mx values that are not ["*."] Domain */
                "version: STSv1\nmode: enforce\nmx:\nmax_age: 1\n",
                "version: STSv1\nmode: enforce\nmx: mx.*.example.com\nmax_age: 1\n",
                "version: STSv1\nmode: enforce\nmx: mx*.example.com\nmax_age: 1\n",
                "version: STSv1\nmode: enforce\nmx: *.*.example.com\nmax_age: 1\n",
                "version: STSv1\nmode: enforce\nmx: *\nmax_age: 1\n",
                "version: STSv1\nmode: enforce\nmx: *.\nmax_age: 1\n",
                "version: STSv1\nmode: enforce\nmx: mx.example.com.\nmax_age: 1\n",
                "version: STSv1\nmode: enforce\nmx: .example.com\nmax_age: 1\n",
                "version: STSv1\nmode: enforce\nmx: mx..example.com\nmax_age: 1\n",
                "version: STSv1\nmode: enforce\nmx: -mx.example.com\nmax_age: 1\n",
                "version: STSv1\nmode: enforce\nmx: mx-.example.com\nmax_age: 1\n",
                "version: STSv1\nmode: enforce\nmx: mx_1.example.com\nmax_age: 1\n",
                "version: STSv1\nmode: enforce\nmx: mx example.com\nmax_age: 1\n",
                "version: STSv1\nmode: enforce\nmx: b\xc3\xbc\x63her.example\nmax_age: "
                "1\n", /* a U-label */
                "version: STSv1\nmode: none\nmx: mx.*.example.com\nmax_age: 1\n",
        };
        struct mtasts_policy p;
        char err[200];
        for (size_t i = 0; i < ARRAY_SIZE(rows); i++) {
                size_t len = strlen(rows[i]);
                char *buf = malloc(len ? len : 1); /* exactly len: ASan sees a read past it */
                assert_non_null(buf);
                memcpy(buf, rows[i], len);
                err[0] = 0;
                int r = mtasts_policy_parse(buf, len, &p, err, sizeof(err));
                free(buf);
                if (r != -EINVAL)
                        fail_msg("row %zu: got %d, want -EINVAL", i, r);
                if (!err[0])
                        fail_msg("row %zu: -EINVAL without a message", i);
        }
}

/* The messages name what is wrong. */
static void test_policy_messages(void **state)
{
        static const struct {
                const char *text, *needle;
        } rows[] = {
                { "mode: none\nmax_age: 1\n", "version" },
                { "version: STSv1\nmax_age: 1\n", "mode" },
                { "version: STSv1\nmode: none\n", "max_age" },
                { "version: STSv1\nmode: testing\nmax_age: 1\n", "mx" },
                { "version: STSv1\nmode: sometimes\nmax_age: 1\n", "sometimes" },
                { "version: STSv1\nmode: none\nmax_age: 31557601\n", "31557600" },
                { "version: STSv1\nmode: none\nmax_age: 1\nnonsense\n", "nonsense" },
                { "version: STSv1\nmode: enforce\nmx: mx.*.example.com\nmax_age: 1\n",
                  "mx.*.example.com" },
        };
        struct mtasts_policy p;
        char err[200];
        for (size_t i = 0; i < ARRAY_SIZE(rows); i++) {
                assert_int_equal(
                    mtasts_policy_parse(rows[i].text, strlen(rows[i].text), &p, err, sizeof(err)),
                    -EINVAL);
                if (!strstr(err, rows[i].needle))
                        fail_msg("row %zu: \"%s\" does not name \"%s\"", i, err, rows[i].needle);
        }
}

/* The length is the policy's, not strlen: a NUL byte anywhere is refused, also in an unknown
 * line and on the last line; the bytes after len are not read. */
static void test_policy_nul(void **state)
{
#define BYTES(s)                                                                                   \
        {                                                                                          \
                (s), sizeof(s) - 1                                                                 \
        }
        static const struct {
                const char *bytes;
                size_t len;
        } rows[] = {
                BYTES("version: STSv1\nmode: none\nmax_age: 1\n\0"),
                BYTES("version: STSv1\nmode: none\nmax_age: 1\0\n"),
                BYTES("version: STSv1\nmode: none\nmax_age: 1\0"),
                BYTES("version: STSv1\0\nmode: none\nmax_age: 1\n"),
                BYTES("version: STSv1\nfoo: a\0b\nmode: none\nmax_age: 1\n"),
                BYTES("\0version: STSv1\nmode: none\nmax_age: 1\n"),
                BYTES("version: STSv1\nmode: none\nmax_age: 1\r\0\n"),
                BYTES("version: STSv1\nmode: none\nmax_age: 1\n\0\n"),
        };
#undef BYTES
        struct mtasts_policy p;
        char err[200];
        for (size_t i = 0; i < ARRAY_SIZE(rows); i++) {
                if (mtasts_policy_parse(rows[i].bytes, rows[i].len, &p, err, sizeof(err)) !=
                    -EINVAL)
                        fail_msg("row %zu: a NUL byte is accepted", i);
        }
        /* a policy without a final line end, in a buffer of exactly its length */
        const char ok[] = "version: STSv1\nmode: none\nmax_age: 12";
        char *buf = malloc(sizeof(ok) - 1);
        assert_non_null(buf);
        memcpy(buf, ok, sizeof(ok) - 1);
        assert_int_equal(mtasts_policy_parse(buf, sizeof(ok) - 1, &p, err, sizeof(err)), 0);
        assert_int_equal(p.max_age, 12);
        /* a shorter len cuts the policy: max_age "1" */
        assert_int_equal(mtasts_policy_parse(buf, sizeof(ok) - 2, &p, err, sizeof(err)), 0);
        assert_int_equal(p.max_age, 1);
        free(buf);
}

/* More mx lines than MTASTS_MX_MAX: the policy stands, the first MTASTS_MX_MAX are kept. */
static void test_policy_mx_cap(void **state)
{
        static const size_t counts[] = { 1, MTASTS_MX_MAX - 1, MTASTS_MX_MAX, MTASTS_MX_MAX + 1,
                                         3 * MTASTS_MX_MAX };
        for (size_t c = 0; c < ARRAY_SIZE(counts); c++) {
                char text[8192];
                size_t o =
                    (size_t)snprintf(text, sizeof(text), "version: STSv1\r\nmode: enforce\r\n");
                for (size_t i = 0; i < counts[c]; i++)
                        o += (size_t)snprintf(text + o, sizeof(text) - o,
                                              "mx: mx%zu.example.com\r\n", i);
                o += (size_t)snprintf(text + o, sizeof(text) - o, "max_age: 604800\r\n");
                assert_true(o < sizeof(text));
                struct mtasts_policy p;
                char err[200];
                assert_int_equal(mtasts_policy_parse(text, o, &p, err, sizeof(err)), 0);
                size_t want = counts[c] < MTASTS_MX_MAX ? counts[c] : MTASTS_MX_MAX;
                assert_int_equal(p.n_mx, want);
                for (size_t i = 0; i < want; i++) {
                        char name[64];
                        snprintf(name, sizeof(name), "mx%zu.example.com", i);
                        assert_string_equal(p.mx[i], name);
                }
                char last[64], first_dropped[64];
                snprintf(last, sizeof(last), "mx%d.example.com", MTASTS_MX_MAX - 1);
                snprintf(first_dropped, sizeof(first_dropped), "mx%d.example.com", MTASTS_MX_MAX);
                assert_true(mtasts_mx_matches(&p, "mx0.example.com"));
                assert_int_equal(mtasts_mx_matches(&p, last), counts[c] >= MTASTS_MX_MAX);
                assert_false(mtasts_mx_matches(&p, first_dropped));
        }
}

/* An mx value of MTASTS_NAME_MAX bytes is kept whole; a longer one is refused. An unknown key's
 * value may be longer: it is ignored. */
static void test_policy_long_values(void **state)
{
        char name[MTASTS_NAME_MAX + 2], text[1024], err[200];
        struct mtasts_policy p;
        for (size_t len = MTASTS_NAME_MAX; len <= MTASTS_NAME_MAX + 1; len++) {
                /* labels of 49 'a' and a dot, then 'b's to the length wanted */
                for (size_t i = 0; i < len; i++)
                        name[i] = i % 50 == 49 ? '.' : (i < 250 ? 'a' : 'b');
                name[len] = 0;
                int n = snprintf(text, sizeof(text),
                                 "version: STSv1\nmode: enforce\nmx: %s\nmax_age: 1\n", name);
                int r = mtasts_policy_parse(text, (size_t)n, &p, err, sizeof(err));
                if (len == MTASTS_NAME_MAX) {
                        assert_int_equal(r, 0);
                        assert_string_equal(p.mx[0], name);
                        assert_true(mtasts_mx_matches(&p, name));
                } else {
                        assert_int_equal(r, -EINVAL);
                }
        }
        char big[600];
        memset(big, 'x', sizeof(big) - 1);
        big[sizeof(big) - 1] = 0;
        int n =
            snprintf(text, sizeof(text), "version: STSv1\nmode: none\nmax_age: 1\nnote: %s\n", big);
        assert_int_equal(mtasts_policy_parse(text, (size_t)n, &p, err, sizeof(err)), 0);
}

/* ---- mx matching (4.1) ---- */

static void test_mx_matches(void **state)
{
        static const struct {
                const char *pattern, *host;
                bool match;
        } rows[] = {
                { "mx.example.com", "mx.example.com", true },
                { "mx.example.com", "MX.EXAMPLE.COM", true },
                { "MX.Example.Com", "mx.example.com", true },
                { "mx.example.com", "mx2.example.com", false },
                { "mx.example.com", "mx.example.co", false },
                { "mx.example.com", "example.com", false },
                { "mx.example.com", "a.mx.example.com", false },
                { "mx.example.com", "", false },
                { "*.example.com", "mx.example.com", true },
                { "*.example.com", "MX.Example.COM", true },
                { "*.EXAMPLE.com", "mx.example.com", true },
                { "*.example.com", "a-b.example.com", true },
                { "*.example.com", "a.b.example.com", false }, /* one label only */
                { "*.example.com", "example.com", false },
                { "*.example.com", ".example.com", false },
                { "*.example.com", "mx.example.com.evil", false },
                { "*.example.com", "mxexample.com", false },
                { "*.example.com", "mx.example.net", false },
                { "*.com", "example.com", true },
                { "*.com", "mx.example.com", false },
                /* a wildcard anywhere but as the whole first label is no wildcard */
                { "mx.*.example.com", "mx.a.example.com", false },
                { "mx.*.example.com", "mx.example.com", false },
                { "mx*.example.com", "mx1.example.com", false },
                { "*mx.example.com", "amx.example.com", false },
                { "*", "mx", false },
                { "*", "mx.example.com", false },
                { "*.", "mx.", false },
                /* the text form of dns_wire_name(): "\." is a dot inside a label */
                { "*.b.example", "a\\.b.example", false },
                { "*.example", "a\\.b.example", true },
                { "*.example", "a\\032b.example", true },
                { "*.example", "\\..example", true },
                { "*.example", "\\.example", false }, /* one label, ".example" */
        };
        struct mtasts_policy p = { .mode = MTASTS_MODE_ENFORCE, .max_age = 1, .n_mx = 1 };
        for (size_t i = 0; i < ARRAY_SIZE(rows); i++) {
                strcpy_bounded(p.mx[0], sizeof(p.mx[0]), rows[i].pattern);
                if (mtasts_mx_matches(&p, rows[i].host) != rows[i].match)
                        fail_msg("row %zu: \"%s\" vs \"%s\": want %s", i, rows[i].pattern,
                                 rows[i].host, rows[i].match ? "a match" : "no match");
        }
}

/* A parsed policy: any of its patterns matches; none, none does. */
static void test_mx_matches_policy(void **state)
{
        static const char text[] = "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\n"
                                   "mx: *.example.net\r\nmx: backupmx.example.com\r\n"
                                   "max_age: 604800\r\n";
        struct mtasts_policy p;
        char err[200];
        assert_int_equal(mtasts_policy_parse(text, sizeof(text) - 1, &p, err, sizeof(err)), 0);
        assert_true(mtasts_mx_matches(&p, "mail.example.com"));
        assert_true(mtasts_mx_matches(&p, "mx1.example.net"));
        assert_true(mtasts_mx_matches(&p, "BACKUPMX.example.com"));
        assert_false(mtasts_mx_matches(&p, "mx1.example.com"));
        assert_false(mtasts_mx_matches(&p, "a.b.example.net"));
        assert_false(mtasts_mx_matches(&p, "example.net"));
        struct mtasts_policy none;
        assert_int_equal(mtasts_policy_parse(OK_POLICY, strlen(OK_POLICY), &none, err, sizeof(err)),
                         0);
        none.n_mx = 0;
        assert_false(mtasts_mx_matches(&none, "mx.example.com"));
}

static void test_mode_name(void **state)
{
        assert_string_equal(mtasts_mode_name(MTASTS_MODE_ENFORCE), "enforce");
        assert_string_equal(mtasts_mode_name(MTASTS_MODE_TESTING), "testing");
        assert_string_equal(mtasts_mode_name(MTASTS_MODE_NONE), "none");
        assert_string_equal(mtasts_mode_name((enum mtasts_mode)42), "none");
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_txt_table),       cmocka_unit_test(test_txt_messages),
                cmocka_unit_test(test_policy_table),    cmocka_unit_test(test_policy_refused),
                cmocka_unit_test(test_policy_messages), cmocka_unit_test(test_policy_nul),
                cmocka_unit_test(test_policy_mx_cap),   cmocka_unit_test(test_policy_long_values),
                cmocka_unit_test(test_mx_matches),      cmocka_unit_test(test_mx_matches_policy),
                cmocka_unit_test(test_mode_name),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
