/* test_contract.c - pure parts of issue 11's contract fixes: a job's or plan's error names a field
 * only when there is one (never ""), and If-None-Match lists compare weakly (RFC 9110 13.1.2). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <cmocka.h>

#include "core/problem.h"
#include "util.h"

static void test_error_json_without_field(void **state)
{
        (void)state;
        struct problem p = { 0 };
        problem_set(&p, PROBLEM_POSTFIX_REJECTED, NULL, "postconf said no");
        json_t *j = problem_error_json(&p);
        assert_non_null(j);
        assert_string_equal(json_string_value(json_object_get(j, "code")), "postfix_rejected");
        assert_string_equal(json_string_value(json_object_get(j, "detail")), "postconf said no");
        assert_null(json_object_get(j, "field"));
        json_decref(j);
        problem_done(&p);
}

static void test_error_json_with_field(void **state)
{
        (void)state;
        struct problem p = { 0 };
        problem_set(&p, PROBLEM_PRECONDITION_FAILED, "If-Match", "stale");
        json_t *j = problem_error_json(&p);
        assert_string_equal(json_string_value(json_object_get(j, "field")), "If-Match");
        json_decref(j);
        problem_done(&p);
}

static void test_etag_list_weak(void **state)
{
        (void)state;
        const char *tag = "\"openapi-0123456789abcdef\"";
        assert_true(etag_list_has_weak(tag, tag));
        assert_true(etag_list_has_weak(" * ", tag));
        assert_true(etag_list_has_weak("W/\"openapi-0123456789abcdef\"", tag));
        assert_true(etag_list_has_weak("\"a\", \"b\",W/\"openapi-0123456789abcdef\"", tag));
        assert_false(etag_list_has_weak("\"openapi-0123456789abcde\"", tag));
        assert_false(etag_list_has_weak("\"a\", \"b\"", tag));
        assert_false(etag_list_has_weak("openapi-0123456789abcdef", tag)); /* unquoted */
        assert_false(etag_list_has_weak("\"a\", *", tag));                 /* * alone only */
        assert_false(etag_list_has_weak("", tag));
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_error_json_without_field),
                cmocka_unit_test(test_error_json_with_field),
                cmocka_unit_test(test_etag_list_weak),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
