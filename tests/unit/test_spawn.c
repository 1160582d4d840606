/* test_spawn.c - child processes: output captured, exit codes, no shell, a hard time limit. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <cmocka.h>

#include "smtptlsd/spawn.h"
#include "smtptlsd/util.h"

static void test_output_and_status(void **state)
{
        struct spawn_result res;
        const char *const ok[] = { "printf", "%s|%s", "a;b", "$HOME", NULL };
        assert_int_equal(spawn_run(ok, 5000000, &res), 0);
        assert_int_equal(res.exit_status, 0);
        /* no shell: ';' and '$HOME' arrive as they are */
        assert_string_equal(res.output, "a;b|$HOME");
        spawn_result_done(&res);

        const char *const err[] = { "sh", "-c", "echo out; echo err >&2; exit 3", NULL };
        assert_int_equal(spawn_run(err, 5000000, &res), 0);
        assert_int_equal(res.exit_status, 3);
        assert_non_null(strstr(res.output, "out"));
        assert_non_null(strstr(res.output, "err"));
        spawn_result_done(&res);
}

static void test_missing_command(void **state)
{
        struct spawn_result res;
        const char *const argv[] = { "/nonexistent/postmap", NULL };
        assert_int_equal(spawn_run(argv, 1000000, &res), -ENOENT);
        spawn_result_done(&res);
}

static void test_timeout_kills(void **state)
{
        struct spawn_result res;
        const char *const argv[] = { "sleep", "30", NULL };
        uint64_t t0 = now_monotonic_usec();
        assert_int_equal(spawn_run(argv, 300000, &res), -ETIMEDOUT);
        uint64_t took = now_monotonic_usec() - t0;
        assert_true(res.timed_out);
        assert_true(took >= 250000 && took < 3000000);
        spawn_result_done(&res);
}

static void test_output_is_capped(void **state)
{
        struct spawn_result res;
        const char *const argv[] = { "head", "-c", "1000000", "/dev/zero", NULL };
        assert_int_equal(spawn_run(argv, 10000000, &res), 0);
        assert_int_equal(res.exit_status, 0);
        assert_int_equal(res.output_len, SPAWN_OUTPUT_MAX);
        spawn_result_done(&res);
}

static void test_argv_join(void **state)
{
        char docker[] = "docker", exec[] = "exec", mta[] = "mta", postfix[] = "postfix";
        char *const prefix[] = { docker, exec, mta, postfix, NULL };
        const char *const extra[] = { "-c", "/etc/postfix", "reload", NULL };
        const char **v = NULL;
        assert_int_equal(spawn_argv(prefix, extra, &v), 0);
        assert_string_equal(v[3], "postfix");
        assert_string_equal(v[6], "reload");
        assert_null(v[7]);
        free((void *)v);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_output_and_status), cmocka_unit_test(test_missing_command),
                cmocka_unit_test(test_timeout_kills),     cmocka_unit_test(test_output_is_capped),
                cmocka_unit_test(test_argv_join),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
