/* test_problem.c - struct problem's two channels (core/problem.c): the client's code, field and
 * detail, and the caller's negative errno (problem_set_errno); problem_reset; the code names. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <cmocka.h>

#include "core/problem.h"

static void test_set_errno(void **state)
{
        struct problem p = { 0 };
        assert_int_equal(problem_set_errno(&p, -ENOENT, PROBLEM_NOT_FOUND, NULL, "no job %d", 7),
                         -ENOENT);
        assert_int_equal(p.code, PROBLEM_NOT_FOUND);
        assert_string_equal(p.field, "");
        assert_string_equal(p.detail, "no job 7");
        /* the first failure is the one reported; the errno is still the caller's */
        assert_int_equal(problem_set_errno(&p, -EEXIST, PROBLEM_DUPLICATE_NAME, "/name", "twice"),
                         -EEXIST);
        assert_int_equal(p.code, PROBLEM_NOT_FOUND);
        assert_string_equal(p.detail, "no job 7");
        assert_int_equal(problem_set(&p, PROBLEM_INVALID_VALUE, "/x", "bad"), -EINVAL);
        assert_int_equal(p.code, PROBLEM_NOT_FOUND);
        /* without a problem to fill */
        assert_int_equal(problem_set_errno(NULL, -EPERM, PROBLEM_FORBIDDEN, NULL, "no"), -EPERM);
        problem_done(&p);

        struct problem q = { 0 };
        assert_int_equal(problem_set(&q, PROBLEM_INVALID_VALUE, "/mode", "mode is %s", "x"),
                         -EINVAL);
        assert_int_equal(q.code, PROBLEM_INVALID_VALUE);
        assert_string_equal(q.field, "/mode");
        assert_string_equal(q.detail, "mode is x");
        problem_done(&q);
}

static void test_reset(void **state)
{
        struct problem p = { 0 };
        problem_add(&p, PROBLEM_INVALID_VALUE, "/a", "first");
        problem_add(&p, PROBLEM_MISSING_FIELD, "/b", "second");
        p.extra = json_pack("{s:i}", "n", 1);
        p.retry_after = 3;
        assert_int_equal(json_array_size(p.errors), 2);
        /* frees errors and extra (ASan's leak check fails the test otherwise) and empties p */
        problem_reset(&p);
        assert_int_equal(p.code, PROBLEM_NONE);
        assert_null(p.errors);
        assert_null(p.extra);
        assert_string_equal(p.field, "");
        assert_string_equal(p.detail, "");
        assert_int_equal(p.retry_after, 0);
        /* empty again: the next failure is reported */
        assert_int_equal(problem_set_errno(&p, -EBUSY, PROBLEM_SERVICE_UNAVAILABLE, NULL, "busy"),
                         -EBUSY);
        assert_int_equal(p.code, PROBLEM_SERVICE_UNAVAILABLE);
        assert_string_equal(p.detail, "busy");
        problem_reset(&p);
        problem_reset(NULL);
}

static void test_code_names(void **state)
{
        assert_string_equal(problem_code_name(PROBLEM_NOT_FOUND), "not_found");
        assert_string_equal(problem_code_name(PROBLEM_INTERNAL_ERROR), "internal_error");
        assert_string_equal(problem_code_name(PROBLEM_NONE), "none");
        assert_string_equal(problem_code_name((enum problem_code)_PROBLEM_MAX), "internal_error");
        assert_string_equal(problem_code_name((enum problem_code) - 1), "internal_error");
        assert_int_equal(problem_code_from_name("duplicate_name"), PROBLEM_DUPLICATE_NAME);
        assert_int_equal(problem_code_from_name("unauthorized"), PROBLEM_UNAUTHORIZED);
        /* "none" is no failure a job can have had */
        assert_int_equal(problem_code_from_name("none"), PROBLEM_INTERNAL_ERROR);
        assert_int_equal(problem_code_from_name("no_such_code"), PROBLEM_INTERNAL_ERROR);
        assert_int_equal(problem_code_from_name(NULL), PROBLEM_INTERNAL_ERROR);
        /* every code's round trip: test_reply.c */
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_set_errno),
                cmocka_unit_test(test_reset),
                cmocka_unit_test(test_code_names),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
