/* test_name_code.c - the {name, code} table helper (core/name_code.c) and the tables that use it:
 * TLS modes and profiles, token scopes, log levels, HTTP methods. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <cmocka.h>

#include "core/name_code.h"
#include "core/names.h"
#include "core/settings.h"
#include "http/http.h"
#include "log.h"

static const struct name_code colours[] = {
        { "red", 7 },
        { "green", -1 },
        { "blue", 0 },
        { "azure", 0 }, /* a second name of 0: code_to_name gives the first */
};

static void test_name_to_code(void **state)
{
        int code = 42;
        assert_int_equal(name_to_code(colours, ARRAY_SIZE(colours), "red", &code), 0);
        assert_int_equal(code, 7);
        assert_int_equal(name_to_code(colours, ARRAY_SIZE(colours), "green", &code), 0);
        assert_int_equal(code, -1);
        assert_int_equal(name_to_code(colours, ARRAY_SIZE(colours), "azure", &code), 0);
        assert_int_equal(code, 0);
        /* misses leave *code alone */
        code = 42;
        assert_int_equal(name_to_code(colours, ARRAY_SIZE(colours), "Red", &code), -EINVAL);
        assert_int_equal(name_to_code(colours, ARRAY_SIZE(colours), "", &code), -EINVAL);
        assert_int_equal(name_to_code(colours, ARRAY_SIZE(colours), "re", &code), -EINVAL);
        assert_int_equal(name_to_code(colours, ARRAY_SIZE(colours), "redd", &code), -EINVAL);
        assert_int_equal(name_to_code(colours, ARRAY_SIZE(colours), NULL, &code), -EINVAL);
        /* only the first n rows count */
        assert_int_equal(name_to_code(colours, 1, "green", &code), -EINVAL);
        assert_int_equal(name_to_code(colours, 0, "red", &code), -EINVAL);
        assert_int_equal(code, 42);
}

static void test_code_to_name(void **state)
{
        assert_string_equal(code_to_name(colours, ARRAY_SIZE(colours), 7), "red");
        assert_string_equal(code_to_name(colours, ARRAY_SIZE(colours), -1), "green");
        assert_string_equal(code_to_name(colours, ARRAY_SIZE(colours), 0), "blue");
        assert_null(code_to_name(colours, ARRAY_SIZE(colours), 3));
        assert_null(code_to_name(colours, 2, 0));
}

static void test_modes_and_profiles(void **state)
{
        static const struct {
                const char *name;
                enum tls_mode mode;
        } modes[] = { { "none", MODE_NONE }, { "may", MODE_MAY }, { "encrypt", MODE_ENCRYPT } };
        enum tls_mode m;
        enum tls_profile p;

        for (size_t i = 0; i < ARRAY_SIZE(modes); i++) {
                assert_int_equal(tls_mode_from_string(modes[i].name, &m), 0);
                assert_int_equal(m, modes[i].mode);
                assert_string_equal(tls_mode_to_string(modes[i].mode), modes[i].name);
        }
        m = MODE_MAY;
        assert_int_equal(tls_mode_from_string("", &m), 0); /* the admin page's "Disabled" */
        assert_int_equal(m, MODE_NONE);
        assert_int_equal(tls_mode_from_string("dane", &m), -EINVAL);
        assert_int_equal(tls_mode_from_string("MAY", &m), -EINVAL);
        assert_null(tls_mode_to_string(MODE_UNSET));

        assert_int_equal(tls_profile_from_string("intermediate", &p), 0);
        assert_int_equal(p, PROFILE_INTERMEDIATE);
        assert_int_equal(tls_profile_from_string("legacy", &p), 0);
        assert_int_equal(p, PROFILE_LEGACY);
        assert_int_equal(tls_profile_from_string("old", &p), -EINVAL);
        assert_string_equal(tls_profile_to_string(PROFILE_MODERN), "modern");
        assert_string_equal(tls_profile_to_string(PROFILE_LEGACY), "legacy");
}

static void test_scopes(void **state)
{
        enum scope s = SCOPE_NONE;
        assert_int_equal(scope_from_string("write", &s), 0);
        assert_int_equal(s, SCOPE_WRITE);
        /* no token has scope none */
        assert_int_equal(scope_from_string("none", &s), -EINVAL);
        assert_int_equal(s, SCOPE_WRITE);
        assert_string_equal(scope_to_string(SCOPE_READ), "read");
        assert_string_equal(scope_to_string(SCOPE_ADMIN), "admin");
        assert_string_equal(scope_to_string(SCOPE_NONE), "none");
        assert_string_equal(scope_to_string((enum scope)17), "none");
}

static void test_log_levels(void **state)
{
        assert_int_equal(log_level_from_string("err"), LOG_ERR);
        assert_int_equal(log_level_from_string("warning"), LOG_WARNING);
        assert_int_equal(log_level_from_string("notice"), LOG_NOTICE);
        assert_int_equal(log_level_from_string("info"), LOG_INFO);
        assert_int_equal(log_level_from_string("debug"), LOG_DEBUG);
        assert_int_equal(log_level_from_string("error"), -EINVAL);
        assert_int_equal(log_level_from_string("crit"), -EINVAL);
}

static void test_http_methods(void **state)
{
        /* one row per bit, in the order of the bits (metrics.c indexes by bit), OTHER last */
        for (size_t i = 0; i < HTTP_METHOD_COUNT; i++)
                assert_int_equal(http_methods[i].code, 1 << i);
        assert_string_equal(http_methods[HTTP_METHOD_COUNT - 1].name, "OTHER");
        assert_int_equal(http_method_from_string("GET"), HTTP_GET);
        assert_int_equal(http_method_from_string("DELETE"), HTTP_DELETE);
        assert_int_equal(http_method_from_string("PATCH"), HTTP_PATCH);
        assert_int_equal(http_method_from_string("get"), HTTP_OTHER);
        assert_int_equal(http_method_from_string("OPTIONS"), HTTP_OTHER);
        assert_int_equal(http_method_from_string(""), HTTP_OTHER);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_name_to_code),       cmocka_unit_test(test_code_to_name),
                cmocka_unit_test(test_modes_and_profiles), cmocka_unit_test(test_scopes),
                cmocka_unit_test(test_log_levels),         cmocka_unit_test(test_http_methods),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
