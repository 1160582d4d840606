/* test_etag.c - If-Match: its syntax (malformed is invalid_value) and the strong comparison of
 * RFC 9110 13.1.1 (stale, absent, weak-only are precondition_failed; "*" needs it to exist). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <cmocka.h>

#include "core/etag.h"

static void test_well_formed(void **state)
{
        static const char *const good[] = {
                "*",
                " * ",
                "\"policy-1\"",
                "W/\"policy-1\"",
                "\"a\", \"b\"",
                "\"a\",W/\"b\"",
                "\"\"",
                ", \"a\" ,, \"b\" ,",
                "\"\x80\"",
                "\t\"x\"\t",
        };
        for (size_t i = 0; i < ARRAY_SIZE(good); i++) {
                struct problem p = { 0 };
                if (if_match_check(good[i], &p) < 0)
                        fail_msg("refused %s: %s", good[i], p.detail);
        }
}

static void test_malformed(void **state)
{
        static const char *const bad[] = {
                "policy-1",    "\"policy-1", "policy-1\"", "w/\"a\"",    "W/a",
                "\"a\" \"b\"", "*, \"a\"",   "\"a\", *",   "",           " , ",
                "\"a b\"",     "\"a\"x",     "W/",         "\"a\"\"b\"", "\"a\x01\"",
        };
        for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
                struct problem p = { 0 };
                if (if_match_check(bad[i], &p) == 0)
                        fail_msg("accepted '%s'", bad[i]);
                assert_int_equal(p.code, PROBLEM_INVALID_VALUE);
                assert_string_equal(p.field, "If-Match");
                assert_non_null(strstr(p.detail, "malformed"));
                assert_non_null(strstr(p.detail, "quotes included"));
                /* the worker says the same of a malformed one */
                memset(&p, 0, sizeof(p));
                assert_true(if_match_evaluate(bad[i], "x", "\"policy-1\"", &p) < 0);
                assert_int_equal(p.code, PROBLEM_INVALID_VALUE);
        }
        char *longer = malloc(IF_MATCH_MAX + 2);
        memset(longer, 'a', IF_MATCH_MAX + 1);
        longer[0] = longer[IF_MATCH_MAX] = '"';
        longer[IF_MATCH_MAX + 1] = 0;
        struct problem p = { 0 };
        assert_true(if_match_check(longer, &p) < 0);
        assert_non_null(strstr(p.detail, "longer"));
        free(longer);
}

static void expect(const char *value, const char *etag, enum problem_code code, const char *word)
{
        struct problem p = { 0 };
        int r = if_match_evaluate(value, "the TLS policy for 'a.example'", etag, &p);
        if (code == PROBLEM_NONE) {
                if (r < 0)
                        fail_msg("%s vs %s: %s", value, etag, p.detail);
                return;
        }
        if (r == 0)
                fail_msg("%s vs %s: held", value, etag);
        assert_int_equal(p.code, code);
        /* the caller's channel: a failed precondition, not bad input */
        assert_int_equal(r, code == PROBLEM_PRECONDITION_FAILED ? -ESTALE : -EINVAL);
        assert_string_equal(p.field, "If-Match");
        if (!strstr(p.detail, word))
                fail_msg("%s vs %s: '%s' lacks '%s'", value, etag, p.detail, word);
}

static void test_evaluate(void **state)
{
        expect(NULL, "", PROBLEM_NONE, NULL);
        expect(NULL, "\"policy-1\"", PROBLEM_NONE, NULL);
        expect("\"policy-1\"", "\"policy-1\"", PROBLEM_NONE, NULL);
        expect("\"policy-0\", \"policy-1\"", "\"policy-1\"", PROBLEM_NONE, NULL);
        expect("*", "\"policy-1\"", PROBLEM_NONE, NULL);
        expect("W/\"policy-0\", \"policy-1\"", "\"policy-1\"", PROBLEM_NONE, NULL);
        /* stale */
        expect("\"policy-0\"", "\"policy-1\"", PROBLEM_PRECONDITION_FAILED, "changed since");
        /* absent */
        expect("*", "", PROBLEM_PRECONDITION_FAILED, "does not exist");
        expect("\"policy-1\"", "", PROBLEM_PRECONDITION_FAILED, "does not exist");
        /* weak tags never match a write precondition, even the current one */
        expect("W/\"policy-1\"", "\"policy-1\"", PROBLEM_PRECONDITION_FAILED, "weak");
        expect("W/\"policy-1\", W/\"x\"", "\"policy-1\"", PROBLEM_PRECONDITION_FAILED, "never");
        /* a prefix or a tag without its quotes is not the tag */
        expect("\"policy-10\"", "\"policy-1\"", PROBLEM_PRECONDITION_FAILED, "changed since");
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_well_formed),
                cmocka_unit_test(test_malformed),
                cmocka_unit_test(test_evaluate),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
