/* test_conf.c - the configuration table: defaults, file parsing, environment overrides, bounds,
 * errors naming the line, and docs/configuration.md listing every key. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <cmocka.h>

#include "conf.h"
#include "util.h"

static char *write_temp(const char *text)
{
        char *path = strdup("/tmp/smtptlsd-conf-XXXXXX");
        int fd = mkstemp(path);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
        close(fd);
        return path;
}

static void clear_env(void)
{
        for (size_t i = 0; i < conf_keys_count; i++) {
                char var[96] = "SMTPTLSD_";
                size_t n = strlen(var);
                for (const char *p = conf_keys[i].name; *p; p++)
                        var[n++] = (char)(*p >= 'a' && *p <= 'z' ? *p - 32 : *p);
                var[n] = 0;
                unsetenv(var);
        }
}

static void test_defaults(void **state)
{
        struct config c;
        char err[256] = "";
        clear_env();
        assert_int_equal(config_load(&c, "/nonexistent/smtptlsd.conf", 0, err, sizeof(err)), 0);
        assert_string_equal(c.listen_address, "127.0.0.1");
        assert_int_equal(c.listen_port, 8480);
        assert_int_equal(c.body_limit, 1 << 20);
        assert_int_equal(c.connection_timeout, 30 * 1000000);
        assert_string_equal(c.postfix_command[0], "postfix");
        assert_null(c.postfix_command[1]);
        assert_true(c.http_threads >= 1);
        assert_int_equal(c.database_pool_size, c.http_threads + 2);
        assert_false(isempty(c.node_name));
        config_free(&c);
}

static void test_required_file_missing(void **state)
{
        struct config c;
        char err[256] = "";
        clear_env();
        assert_true(config_load(&c, "/nonexistent/smtptlsd.conf", 1, err, sizeof(err)) < 0);
        assert_non_null(strstr(err, "/nonexistent/smtptlsd.conf"));
        config_free(&c);
}

static void test_file_values(void **state)
{
        struct config c;
        char err[256] = "";
        clear_env();
        char *path = write_temp("# a comment\n"
                                "\n"
                                "listen_port = 9000\n"
                                "  body_limit=64K  \n"
                                "shutdown_timeout = 500ms\n"
                                "command_timeout = 2m\n"
                                "postfix_command = docker exec mta postfix\n"
                                "policy_map_type = lmdb\n");
        assert_int_equal(config_load(&c, path, 1, err, sizeof(err)), 0);
        assert_int_equal(c.listen_port, 9000);
        assert_int_equal(c.body_limit, 64 * 1024);
        assert_int_equal(c.shutdown_timeout, 500 * 1000);
        assert_int_equal(c.command_timeout, 120 * 1000000LL);
        assert_string_equal(c.postfix_command[0], "docker");
        assert_string_equal(c.postfix_command[2], "mta");
        assert_string_equal(c.postfix_command[3], "postfix");
        assert_null(c.postfix_command[4]);
        assert_string_equal(c.policy_map_type, "lmdb");
        config_free(&c);
        unlink(path);
        free(path);
}

static void test_env_overrides_file(void **state)
{
        struct config c;
        char err[256] = "";
        clear_env();
        char *path = write_temp("listen_port = 9000\n");
        setenv("SMTPTLSD_LISTEN_PORT", "9001", 1);
        setenv("SMTPTLSD_NODE_NAME", "mx7", 1);
        assert_int_equal(config_load(&c, path, 1, err, sizeof(err)), 0);
        assert_int_equal(c.listen_port, 9001);
        assert_string_equal(c.node_name, "mx7");
        config_free(&c);
        clear_env();

        setenv("SMTPTLSD_LISTEN_PORT", "70000", 1);
        assert_true(config_load(&c, path, 1, err, sizeof(err)) < 0);
        assert_non_null(strstr(err, "SMTPTLSD_LISTEN_PORT"));
        config_free(&c);
        clear_env();
        unlink(path);
        free(path);
}

static void test_errors_name_the_line(void **state)
{
        static const struct {
                const char *text;
                const char *expect;
        } cases[] = {
                { "listen_port = 8480\nlisten_prot = 1\n", ":2: unknown key 'listen_prot'" },
                { "\n\nlisten_port = 65536\n", ":3: listen_port: '65536' is out of range" },
                { "listen_port = eighty\n", ":1: listen_port: 'eighty' is not a valid number" },
                { "body_limit = 1T\n", ":1: body_limit: '1T' is not a valid size" },
                { "body_limit = 10\n", ":1: body_limit: '10' is out of range" },
                { "connection_timeout = soon\n", ":1: connection_timeout: 'soon' is not a valid" },
                { "log_level = chatty\n", ":1: log_level: 'chatty' is not one of the choices" },
                { "policy_map_type = texthash\n", ":1: policy_map_type: 'texthash' is not one" },
                { "postmap_command =\n", ":1: postmap_command: a command needs at least one word" },
                { "just words\n", ":1: expected 'key = value'" },
        };
        clear_env();
        for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
                struct config c;
                char err[256] = "";
                char *path = write_temp(cases[i].text);
                assert_true(config_load(&c, path, 1, err, sizeof(err)) < 0);
                if (!strstr(err, cases[i].expect))
                        fail_msg("case %zu: '%s' does not contain '%s'", i, err, cases[i].expect);
                assert_non_null(strstr(err, path));
                config_free(&c);
                unlink(path);
                free(path);
        }
}

static void test_print_round_trips(void **state)
{
        struct config c, d;
        char err[256] = "";
        clear_env();
        char *path = write_temp("connection_timeout = 1500ms\nbody_limit = 2M\n");
        assert_int_equal(config_load(&c, path, 1, err, sizeof(err)), 0);
        char out[] = "/tmp/smtptlsd-conf-out-XXXXXX";
        int fd = mkstemp(out);
        FILE *f = fdopen(fd, "w");
        config_print(&c, f);
        fclose(f);
        assert_int_equal(config_load(&d, out, 1, err, sizeof(err)), 0);
        assert_int_equal(d.connection_timeout, c.connection_timeout);
        assert_int_equal(d.body_limit, c.body_limit);
        assert_int_equal(d.http_threads, c.http_threads);
        assert_string_equal(d.database_url, c.database_url);
        config_free(&c);
        config_free(&d);
        unlink(out);
        unlink(path);
        free(path);
}

static int collect_url(const char *name, size_t nl, const char *url, size_t ul, void *userdata)
{
        char *out = userdata;
        size_t o = strlen(out);
        snprintf(out + o, 512 - o, "[%.*s|%.*s]", (int)nl, name, (int)ul, url);
        return 0;
}

/* console_manager_urls: manager=URL pairs, checked when the configuration is loaded. */
static void test_console_manager_urls(void **state)
{
        static const char *const good[] = {
                "",
                "domains=https://admin.example.net/domains?d={destination}",
                "  dom=http://10.0.0.5:8080/x\tsasl.auth=https://h/{destination}/{destination} ",
        };
        static const char *const bad[] = {
                "domains",                               /* no '=' */
                "Domains=https://h/",                    /* manager name upper case */
                "=https://h/",                           /* no name */
                "domains=javascript:alert(1)",           /* not http(s) */
                "domains=ftp://h/",                      /* not http(s) */
                "domains=https://",                      /* no host */
                "domains=https:///path",                 /* no host */
                "domains=https://h/\"onclick=",          /* a quote */
                "domains=https://h/<script>",            /* angle brackets */
                "domains=https://h/{dest}",              /* another placeholder */
                "domains=https://h/\xc3\xa9",            /* not ASCII */
                "domains=https://a/ domains=https://b/", /* a manager twice */
        };
        char err[256], out[512];
        struct config c;
        for (size_t i = 0; i < ARRAY_SIZE(good); i++) {
                memset(&c, 0, sizeof(c));
                assert_int_equal(config_set(&c, "console_manager_urls", good[i], err, sizeof(err)),
                                 0);
                assert_string_equal(c.console_manager_urls, good[i]);
                free(c.console_manager_urls);
        }
        for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
                memset(&c, 0, sizeof(c));
                err[0] = 0;
                if (config_set(&c, "console_manager_urls", bad[i], err, sizeof(err)) != -EINVAL)
                        fail_msg("accepted console_manager_urls = %s", bad[i]);
                assert_non_null(strstr(err, "console_manager_urls: "));
                assert_null(c.console_manager_urls);
        }
        out[0] = 0;
        assert_int_equal(config_manager_urls_foreach(good[2], collect_url, out, err, sizeof(err)),
                         0);
        assert_string_equal(out, "[dom|http://10.0.0.5:8080/x][sasl.auth|https://h/{destination}/"
                                 "{destination}]");
        /* a bad line in the file stops the load, naming the line */
        clear_env();
        char *path = write_temp("console_manager_urls = domains=file:///etc/passwd\n");
        assert_true(config_load(&c, path, 1, err, sizeof(err)) < 0);
        assert_non_null(strstr(err, ":1: console_manager_urls: "));
        config_free(&c);
        unlink(path);
        free(path);
}

/* docs/configuration.md is the reference: every key of the table must have a row there. */
static void test_docs_list_every_key(void **state)
{
        const char *root = getenv("SMTPTLSD_SOURCE_ROOT");
        char path[512];
        if (!root)
                skip();
        snprintf(path, sizeof(path), "%s/docs/configuration.md", root);
        FILE *f = fopen(path, "re");
        assert_non_null(f);
        static char text[1 << 18];
        size_t n = fread(text, 1, sizeof(text) - 1, f);
        text[n] = 0;
        fclose(f);
        for (size_t i = 0; i < conf_keys_count; i++) {
                char row[128];
                snprintf(row, sizeof(row), "\n| %s |", conf_keys[i].name);
                if (!strstr(text, row))
                        fail_msg("docs/configuration.md has no row '%s'", row);
        }
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_defaults),
                cmocka_unit_test(test_required_file_missing),
                cmocka_unit_test(test_file_values),
                cmocka_unit_test(test_env_overrides_file),
                cmocka_unit_test(test_errors_name_the_line),
                cmocka_unit_test(test_print_round_trips),
                cmocka_unit_test(test_console_manager_urls),
                cmocka_unit_test(test_docs_list_every_key),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
