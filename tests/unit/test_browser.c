/* test_browser.c - the pure browser decisions: the session cookie's exact text, same-origin
 * and CORS allowlist matching, and whether a request came through HTTPS. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <cmocka.h>
#include <errno.h>
#include <string.h>

#include "http/browser.h"
#include "store/tokens.h"

static void test_cookie_format(void **state)
{
        char buf[160];
        const char *id = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
        assert_true(session_cookie_format(buf, sizeof(buf), id, false) > 0);
        assert_string_equal(buf, "smtptlsd_session=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA; "
                                 "Path=/; HttpOnly; SameSite=Strict");
        assert_true(session_cookie_format(buf, sizeof(buf), id, true) > 0);
        assert_string_equal(buf, "smtptlsd_session=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA; "
                                 "Path=/; HttpOnly; SameSite=Strict; Secure");
        assert_true(session_cookie_format(buf, sizeof(buf), NULL, false) > 0);
        assert_string_equal(buf, "smtptlsd_session=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict");
        assert_true(session_cookie_format(buf, sizeof(buf), NULL, true) > 0);
        assert_string_equal(
            buf, "smtptlsd_session=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict; Secure");
        assert_int_equal(session_cookie_format(buf, 20, id, false), -ENOBUFS);
}

static void test_session_id_shape(void **state)
{
        assert_true(session_id_is_well_formed("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA-_"));
        assert_false(session_id_is_well_formed("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"));
        assert_false(session_id_is_well_formed("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"));
        assert_false(session_id_is_well_formed("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="));
        assert_false(session_id_is_well_formed(""));
}

static void test_origin_is_same(void **state)
{
        assert_true(origin_is_same("http://127.0.0.1:8480", "127.0.0.1:8480"));
        assert_true(origin_is_same("https://MX.example", "mx.example"));
        assert_false(origin_is_same("http://127.0.0.1:8481", "127.0.0.1:8480"));
        assert_false(origin_is_same("http://127.0.0.1", "127.0.0.1:8480"));
        assert_false(origin_is_same("null", "null"));
        assert_false(origin_is_same("ftp://mx.example", "mx.example"));
        assert_false(origin_is_same("http://mx.example/", "mx.example"));
        assert_false(origin_is_same("http://evil@mx.example", "mx.example"));
        assert_false(origin_is_same("http://", ""));
        assert_false(origin_is_same("http://mx.example", NULL));
        assert_false(origin_is_same(NULL, "mx.example"));
}

static void test_origin_is_listed(void **state)
{
        const char *list = "https://admin.example, http://127.0.0.1:9000/\thttps://b.example";
        assert_true(origin_is_listed(list, "https://admin.example"));
        assert_true(origin_is_listed(list, "HTTPS://ADMIN.EXAMPLE"));
        assert_true(origin_is_listed(list, "http://127.0.0.1:9000"));
        assert_true(origin_is_listed(list, "https://b.example"));
        assert_false(origin_is_listed(list, "https://admin.example:443"));
        assert_false(origin_is_listed(list, "https://admin.exampl"));
        assert_false(origin_is_listed(list, "https://admin.example.evil"));
        assert_false(origin_is_listed(list, "http://admin.example"));
        assert_false(origin_is_listed(list, "null"));
        assert_false(origin_is_listed(list, NULL));
        assert_false(origin_is_listed("", "https://admin.example"));
        assert_false(origin_is_listed("*", "https://admin.example"));
        assert_false(origin_is_listed("null", "null"));
}

static void test_https(void **state)
{
        assert_true(request_came_through_https("https://mx.example", NULL, NULL));
        assert_false(request_came_through_https("http://mx.example", NULL, NULL));
        assert_true(request_came_through_https(NULL, "https", NULL));
        assert_true(request_came_through_https(NULL, "https,http", NULL));
        assert_false(request_came_through_https(NULL, "http", NULL));
        assert_false(request_came_through_https(NULL, "httpsx", NULL));
        assert_true(request_came_through_https(NULL, NULL, "for=192.0.2.1;proto=https"));
        assert_true(request_came_through_https(NULL, NULL, "proto=https;by=x, proto=http"));
        assert_false(request_came_through_https(NULL, NULL, "proto=http, proto=https"));
        assert_false(request_came_through_https(NULL, NULL, "xproto=https"));
        assert_false(request_came_through_https(NULL, NULL, NULL));
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_cookie_format),  cmocka_unit_test(test_session_id_shape),
                cmocka_unit_test(test_origin_is_same), cmocka_unit_test(test_origin_is_listed),
                cmocka_unit_test(test_https),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
