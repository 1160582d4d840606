/* test_tokens.c - the pure parts of authentication: scope names and order, the name grammar
 * shared by tokens and certificates. (Token storage and lookup are tested against a real
 * PostgreSQL in tests/system.) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <cmocka.h>

#include "store/tokens.h"

static void test_scopes(void **state)
{
        enum scope s;
        assert_int_equal(scope_from_string("read", &s), 0);
        assert_int_equal(s, SCOPE_READ);
        assert_int_equal(scope_from_string("admin", &s), 0);
        assert_int_equal(s, SCOPE_ADMIN);
        assert_true(scope_from_string("none", &s) < 0);
        assert_true(scope_from_string("Admin", &s) < 0);
        assert_true(scope_from_string("", &s) < 0);
        /* read < write < admin: a stronger token passes every weaker check */
        assert_true(SCOPE_READ < SCOPE_WRITE && SCOPE_WRITE < SCOPE_ADMIN);
        assert_string_equal(scope_to_string(SCOPE_WRITE), "write");
}

static void test_names(void **state)
{
        static const char *const good[] = {
                "a",
                "0",
                "mx1",
                "mx1.example.com",
                "ci_pipeline-2",
                "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        };
        static const char *const bad[] = {
                "",    "-a",  ".a",
                "_a",  "A",   "mX1",
                "a b", "a/b", "a\nb",
                "a$",  "é",   "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        };
        for (size_t i = 0; i < ARRAY_SIZE(good); i++)
                if (!name_is_valid(good[i]))
                        fail_msg("refused '%s'", good[i]);
        for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
                if (name_is_valid(bad[i]))
                        fail_msg("accepted '%s'", bad[i]);
}

static void test_token_shape(void **state)
{
        static const char *const good[] = {
                "stk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
                "stk_aZ09-_aZ09-_aZ09-_aZ09-_aZ09-_aZ09-_aZ09-zz",
        };
        static const char *const bad[] = {
                "",
                "stk_",
                "wrong-token",
                "stk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",   /* 42 */
                "stk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", /* 44 */
                "stk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
                "stk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA ",
                "stk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA+/",
                "STK_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
                "xtk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        };
        for (size_t i = 0; i < ARRAY_SIZE(good); i++)
                if (!token_is_well_formed(good[i]))
                        fail_msg("refused '%s'", good[i]);
        for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
                if (token_is_well_formed(bad[i]))
                        fail_msg("accepted '%s'", bad[i]);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_scopes),
                cmocka_unit_test(test_names),
                cmocka_unit_test(test_token_shape),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
