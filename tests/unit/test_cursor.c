/* test_cursor.c - paging cursors (opaque, checked, tied to their list), the base64url they are
 * written in, and the RFC 3339 parser of ?since=. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <cmocka.h>

#include "core/cursor.h"

static void test_base64url(void **state)
{
        /* RFC 4648 section 10, unpadded */
        static const char *const vec[][2] = {
                { "", "" },
                { "f", "Zg" },
                { "fo", "Zm8" },
                { "foo", "Zm9v" },
                { "foob", "Zm9vYg" },
                { "fooba", "Zm9vYmE" },
                { "foobar", "Zm9vYmFy" },
                { "\xfb\xff", "-_8" },
        };
        for (size_t i = 0; i < ARRAY_SIZE(vec); i++) {
                char out[32];
                unsigned char back[32];
                size_t n = strlen(vec[i][0]);
                base64url_encode((const unsigned char *)vec[i][0], n, out);
                assert_string_equal(out, vec[i][1]);
                assert_int_equal(base64url_decode(out, back, sizeof(back)), (ssize_t)n);
                assert_memory_equal(back, vec[i][0], n);
        }
        unsigned char b[8];
        assert_int_equal(base64url_decode("Zg==", b, sizeof(b)), -EINVAL); /* no padding */
        assert_int_equal(base64url_decode("Zm9v+", b, sizeof(b)), -EINVAL);
        assert_int_equal(base64url_decode("Z", b, sizeof(b)), -EINVAL);
        assert_int_equal(base64url_decode("Zh", b, sizeof(b)), -EINVAL); /* trailing bits */
        assert_int_equal(base64url_decode("Zm9vYmFy", b, 5), -ENOBUFS);
}

static void test_round_trip(void **state)
{
        static const char *const positions[] = { ".example.com", "[mx.example.net]:465", "1",
                                                 "9223372036854775807", "" };
        for (size_t i = 0; i < ARRAY_SIZE(positions); i++) {
                char c[CURSOR_MAX], pos[CURSOR_POSITION_MAX + 1];
                struct problem p = { 0 };
                assert_int_equal(cursor_encode(CURSOR_POLICIES, positions[i], c, sizeof(c)), 0);
                /* opaque: the position is not readable in it */
                if (positions[i][0])
                        assert_null(strstr(c, positions[i]));
                assert_int_equal(strspn(c, base64url_alphabet), strlen(c));
                assert_int_equal(cursor_decode(CURSOR_POLICIES, c, pos, sizeof(pos), &p), 0);
                assert_string_equal(pos, positions[i]);
        }
        char longest[CURSOR_POSITION_MAX + 1], c[CURSOR_MAX];
        memset(longest, 'a', CURSOR_POSITION_MAX);
        longest[CURSOR_POSITION_MAX] = 0;
        assert_int_equal(cursor_encode(CURSOR_JOBS, longest, c, sizeof(c)), 0);
        char more[CURSOR_POSITION_MAX + 2];
        memset(more, 'a', CURSOR_POSITION_MAX + 1);
        more[CURSOR_POSITION_MAX + 1] = 0;
        assert_int_equal(cursor_encode(CURSOR_JOBS, more, c, sizeof(c)), -EINVAL);
}

static void refused(enum cursor_list list, const char *text, const char *why)
{
        char pos[CURSOR_POSITION_MAX + 1];
        struct problem p = { 0 };
        if (cursor_decode(list, text, pos, sizeof(pos), &p) == 0)
                fail_msg("'%s' taken as a cursor of '%s'", text, pos);
        assert_int_equal(p.code, PROBLEM_INVALID_VALUE);
        assert_string_equal(p.field, "after");
        if (!strstr(p.detail, why))
                fail_msg("'%s': '%s' lacks '%s'", text, p.detail, why);
}

static void test_refused(void **state)
{
        char c[CURSOR_MAX], raw[64], edited[CURSOR_MAX];
        refused(CURSOR_POLICIES, "zzz", "not a cursor");
        refused(CURSOR_POLICIES, "", "not a cursor");
        refused(CURSOR_POLICIES, "a.example", "not a cursor"); /* the old, raw form */
        refused(CURSOR_JOBS, "42", "not a cursor");
        /* made without the check */
        base64url_encode((const unsigned char *)"p1:a.example", 12, raw);
        refused(CURSOR_POLICIES, raw, "changed");
        assert_int_equal(cursor_encode(CURSOR_POLICIES, "a.example", c, sizeof(c)), 0);
        /* another list's */
        refused(CURSOR_JOBS, c, "another list");
        /* cut short, or one character changed */
        snprintf(edited, sizeof(edited), "%.*s", (int)strlen(c) - 4, c);
        refused(CURSOR_POLICIES, edited, "cut short");
        snprintf(edited, sizeof(edited), "%s", c);
        edited[5] = edited[5] == 'A' ? 'B' : 'A';
        refused(CURSOR_POLICIES, edited, "changed");
}

static void test_rfc3339(void **state)
{
        static const struct {
                const char *s;
                int64_t t;
        } good[] = {
                { "1970-01-01T00:00:01Z", 1 },
                { "2026-11-22T10:00:00Z", 1795341600 },
                { "2026-11-22t10:00:00z", 1795341600 },
                { "2026-11-22T10:00:00.999Z", 1795341600 },
                { "2026-11-22T12:00:00+02:00", 1795341600 },
                { "2026-11-22T09:30:00-00:30", 1795341600 },
                { "2024-02-29T00:00:00Z", 1709164800 },
                { "2016-12-31T23:59:60Z", 1483228799 },
        };
        static const char *const bad[] = {
                "2026-11-22",
                "10:00:00Z",
                "2026-11-22T10:00:00",
                "2026-11-22 10:00:00Z",
                "2026-13-01T00:00:00Z",
                "2026-02-30T00:00:00Z",
                "2025-02-29T00:00:00Z",
                "2026-11-22T24:00:00Z",
                "2026-11-22T10:00:00.Z",
                "2026-11-22T10:00:00+0200",
                "2026-11-22T10:00:00Zx",
                "yesterday",
                "",
                "2026-1-22T10:00:00Z",
        };
        for (size_t i = 0; i < ARRAY_SIZE(good); i++) {
                int64_t t = 0;
                if (parse_rfc3339(good[i].s, &t) < 0)
                        fail_msg("refused %s", good[i].s);
                assert_int_equal(t, good[i].t);
        }
        for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
                int64_t t;
                if (parse_rfc3339(bad[i], &t) == 0)
                        fail_msg("accepted %s", bad[i]);
        }
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_base64url),
                cmocka_unit_test(test_round_trip),
                cmocka_unit_test(test_refused),
                cmocka_unit_test(test_rfc3339),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
