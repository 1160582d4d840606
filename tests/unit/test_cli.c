/* test_cli.c - the command line parser (src/cli.c): what each argv becomes, and that --help is
 * never taken for an argument. (The commands themselves run in tests/system/test_contract_cli.py.)
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "cli.h"
#include "util.h"

struct outcome {
        int r;
        struct cli_invocation inv;
        char out[4096], err[1024];
};

static void parse(struct outcome *o, int argc, char *const *argv)
{
        memset(o, 0, sizeof(*o));
        FILE *out = fmemopen(o->out, sizeof(o->out), "w"),
             *err = fmemopen(o->err, sizeof(o->err), "w");
        assert_non_null(out);
        assert_non_null(err);
        o->r = cli_parse(argc, argv, &o->inv, out, err);
        fclose(out);
        fclose(err);
}

#define PARSE(o, ...)                                                                              \
        do {                                                                                       \
                const char *const argv_[] = { "smtptlsd", __VA_ARGS__ };                           \
                parse(o, (int)ARRAY_SIZE(argv_), (char *const *)argv_);                            \
        } while (0)

static void test_commands(void **state)
{
        struct outcome o;
        const char *const none[] = { "smtptlsd" };
        parse(&o, 1, (char *const *)none);
        assert_int_equal(o.r, 0);
        assert_int_equal(o.inv.command, CLI_SERVE);
        assert_null(o.inv.config_path);

        PARSE(&o, "-c", "/x.conf", "token", "add", "ci", "--scope", "write");
        assert_int_equal(o.r, 0);
        assert_int_equal(o.inv.command, CLI_TOKEN_ADD);
        assert_string_equal(o.inv.config_path, "/x.conf");
        assert_string_equal(o.inv.name, "ci");
        assert_int_equal(o.inv.scope, SCOPE_WRITE);

        PARSE(&o, "token", "create", "--scope=admin", "ci", "--config=/y.conf");
        assert_int_equal(o.r, 0);
        assert_int_equal(o.inv.command, CLI_TOKEN_ADD);
        assert_int_equal(o.inv.scope, SCOPE_ADMIN);
        assert_string_equal(o.inv.config_path, "/y.conf");

        PARSE(&o, "token", "revoke", "--", "ci");
        assert_int_equal(o.r, 0);
        assert_int_equal(o.inv.command, CLI_TOKEN_REVOKE);
        assert_string_equal(o.inv.name, "ci");
}

static void test_help_is_not_a_name(void **state)
{
        struct outcome o;
        PARSE(&o, "token", "revoke", "--help");
        assert_int_equal(o.r, 1);
        assert_null(o.inv.name);
        assert_non_null(strstr(o.out, "Usage: smtptlsd [-c FILE] token revoke NAME\n"));
        assert_string_equal(o.err, "");

        PARSE(&o, "serve", "-h");
        assert_int_equal(o.r, 1);
        assert_non_null(strstr(o.out, "Usage: smtptlsd [-c FILE] serve\n"));
}

static void test_usage_errors(void **state)
{
        struct outcome o;
        PARSE(&o, "token", "add", "x", "--scope", "superuser");
        assert_int_equal(o.r, -EINVAL);
        assert_string_equal(o.err, "smtptlsd token add: scope must be read, write or admin, not "
                                   "'superuser'\nTry 'smtptlsd token add --help'.\n");
        assert_string_equal(o.out, "");

        PARSE(&o, "token", "add", "x", "--scope", "none");
        assert_int_equal(o.r, -EINVAL);

        PARSE(&o, "token", "list", "--x");
        assert_int_equal(o.r, -EINVAL);
        assert_string_equal(o.err, "smtptlsd token list: unknown option --x\n"
                                   "Try 'smtptlsd token list --help'.\n");
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_commands),
                cmocka_unit_test(test_help_is_not_a_name),
                cmocka_unit_test(test_usage_errors),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
