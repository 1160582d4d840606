/* test_router.c - route matching, percent-decoding of path parameters, 405's Allow list, the
 * query parameters each operation accepts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <cmocka.h>

#include "http/http.h"

static int h(struct request *req, struct problem *p)
{
        return 0;
}

static const struct route routes[] = {
        { "/healthz", { { HTTP_GET, h, SCOPE_NONE, BODY_NONE, 0, 0 } } },
        { "/api/v1/tls-policies",
          { { HTTP_GET, h, SCOPE_READ, BODY_NONE, QUERY_PAGE | QUERY_Q, 0 },
            { HTTP_PUT, h, SCOPE_WRITE, BODY_JSON, QUERY_WRITE, 0 },
            { HTTP_POST, h, SCOPE_WRITE, BODY_JSON, QUERY_WRITE, 0 } } },
        { "/api/v1/tls-policies/{destination}",
          { { HTTP_GET, h, SCOPE_READ, BODY_NONE, QUERY_PAGE | QUERY_Q, 0 },
            { HTTP_DELETE, h, SCOPE_WRITE, BODY_NONE, QUERY_WRITE, 0 },
            { HTTP_PATCH, h, SCOPE_WRITE, BODY_JSON, QUERY_WRITE, 0 } } },
        { "/api/v1/certificates/rescan",
          { { HTTP_POST, h, SCOPE_WRITE, BODY_NONE, QUERY_WRITE, 0 } } },
        { "/api/v1/certificates/{name}",
          { { HTTP_GET, h, SCOPE_READ, BODY_NONE, QUERY_PAGE | QUERY_Q, 0 } } },
        { "/api/v1/a/{x}/b/{y}",
          { { HTTP_GET, h, SCOPE_READ, BODY_NONE, QUERY_PAGE | QUERY_Q, 0 } } },
};

static int match(const char *path, char *params[ROUTE_MAX_PARAMS])
{
        memset(params, 0, sizeof(char *) * ROUTE_MAX_PARAMS);
        return router_match(routes, ARRAY_SIZE(routes), path, params);
}

static void free_params(char *params[ROUTE_MAX_PARAMS])
{
        for (size_t i = 0; i < ROUTE_MAX_PARAMS; i++) {
                free(params[i]);
                params[i] = NULL;
        }
}

static void test_exact_and_missing(void **state)
{
        char *p[ROUTE_MAX_PARAMS];
        assert_int_equal(match("/healthz", p), 0);
        assert_int_equal(match("/api/v1/tls-policies", p), 1);
        assert_int_equal(match("/healthz/", p), -ENOENT);
        assert_int_equal(match("/healthzz", p), -ENOENT);
        assert_int_equal(match("/", p), -ENOENT);
        assert_int_equal(match("", p), -ENOENT);
        assert_int_equal(match("/api/v1/tls-policies/", p), -ENOENT); /* empty parameter */
        assert_int_equal(match("/api/v1/tls-policies/a/b", p), -ENOENT);
}

static void test_params_are_decoded(void **state)
{
        char *p[ROUTE_MAX_PARAMS];
        assert_int_equal(match("/api/v1/tls-policies/.example.com", p), 2);
        assert_string_equal(p[0], ".example.com");
        free_params(p);
        assert_int_equal(match("/api/v1/tls-policies/%5Bmx.example.net%5D%3A465", p), 2);
        assert_string_equal(p[0], "[mx.example.net]:465");
        free_params(p);
        /* %2F decodes inside the segment; it never splits the path. */
        assert_int_equal(match("/api/v1/tls-policies/a%2Fb", p), 2);
        assert_string_equal(p[0], "a/b");
        free_params(p);
        /* '+' is a plus in a path, not a space */
        assert_int_equal(match("/api/v1/tls-policies/a+b", p), 2);
        assert_string_equal(p[0], "a+b");
        free_params(p);
        assert_int_equal(match("/api/v1/a/one/b/two", p), 5);
        assert_string_equal(p[0], "one");
        assert_string_equal(p[1], "two");
        free_params(p);
}

static void test_bad_escapes(void **state)
{
        char *p[ROUTE_MAX_PARAMS];
        assert_int_equal(match("/api/v1/tls-policies/a%00b", p), -EINVAL);
        assert_int_equal(match("/api/v1/tls-policies/a%2", p), -EINVAL);
        assert_int_equal(match("/api/v1/tls-policies/%zz", p), -EINVAL);
        assert_int_equal(match("/api/v1/tls-policies/%", p), -EINVAL);
        assert_null(p[0]);
}

static void test_literal_before_param(void **state)
{
        char *p[ROUTE_MAX_PARAMS];
        assert_int_equal(match("/api/v1/certificates/rescan", p), 3);
        assert_int_equal(match("/api/v1/certificates/mx1", p), 4);
        assert_string_equal(p[0], "mx1");
        free_params(p);
}

static void test_methods_and_allow(void **state)
{
        char allow[96];
        assert_non_null(router_find_op(&routes[0], HTTP_GET));
        assert_non_null(router_find_op(&routes[0], HTTP_HEAD)); /* HEAD follows GET */
        assert_null(router_find_op(&routes[0], HTTP_POST));
        assert_null(router_find_op(&routes[3], HTTP_GET));
        router_allow(&routes[0], allow, sizeof(allow));
        assert_string_equal(allow, "GET, HEAD");
        router_allow(&routes[1], allow, sizeof(allow));
        assert_string_equal(allow, "GET, HEAD, POST, PUT");
        router_allow(&routes[2], allow, sizeof(allow));
        assert_string_equal(allow, "GET, HEAD, PATCH, DELETE");
        router_allow(&routes[3], allow, sizeof(allow));
        assert_string_equal(allow, "POST");
        assert_int_equal(http_method_from_string("GET"), HTTP_GET);
        assert_int_equal(http_method_from_string("get"), HTTP_OTHER);
        assert_int_equal(http_method_from_string("TRACE"), HTTP_OTHER);
}

static void test_query_decoding(void **state)
{
        char *out = NULL;
        assert_int_equal(http_percent_decode("a+b%20c", 7, true, &out), 0);
        assert_string_equal(out, "a b c");
        free(out);
        assert_int_equal(http_percent_decode("%41%62", 6, true, &out), 0);
        assert_string_equal(out, "Ab");
        free(out);
        assert_int_equal(http_percent_decode("%0", 2, true, &out), -EINVAL);
}

static int check_query(const struct route_op *op, const char *const *names, struct problem *p)
{
        unsigned seen = 0;
        memset(p, 0, sizeof(*p));
        for (size_t i = 0; names[i]; i++) {
                int r = router_check_query(op, "PUT", "/x", names[i], &seen, p);
                if (r < 0)
                        return r;
        }
        return 0;
}

static void test_query_parameters(void **state)
{
        const struct route_op *put = router_find_op(&routes[1], HTTP_PUT);
        const struct route_op *get = router_find_op(&routes[1], HTTP_GET);
        const struct route_op *health = router_find_op(&routes[0], HTTP_GET);
        struct problem p;

        assert_int_equal(check_query(put, (const char *[]){ "dry_run", "wait", NULL }, &p), 0);
        assert_int_equal(check_query(get, (const char *[]){ "limit", "after", "q", NULL }, &p), 0);
        assert_int_equal(check_query(health, (const char *[]){ NULL }, &p), 0);

        /* a typo, an option not built, one of another route: named, with what the route takes */
        assert_true(check_query(put, (const char *[]){ "dryrun", NULL }, &p) < 0);
        assert_int_equal(p.code, PROBLEM_UNKNOWN_PARAMETER);
        assert_string_equal(p.field, "dryrun");
        assert_non_null(strstr(p.detail, "wait, dry_run"));
        assert_true(check_query(put, (const char *[]){ "probe", NULL }, &p) < 0);
        assert_int_equal(p.code, PROBLEM_UNKNOWN_PARAMETER);
        assert_true(check_query(put, (const char *[]){ "limit", NULL }, &p) < 0);
        assert_string_equal(p.field, "limit");
        assert_true(check_query(health, (const char *[]){ "wait", NULL }, &p) < 0);
        assert_non_null(strstr(p.detail, "accepts none"));
        /* as sent: an escaped name is not the parameter the handlers read */
        assert_true(check_query(put, (const char *[]){ "dry%5Frun", NULL }, &p) < 0);
        assert_true(check_query(put, (const char *[]){ "", NULL }, &p) < 0);
        assert_true(check_query(put, (const char *[]){ "DRY_RUN", NULL }, &p) < 0);

        /* twice is refused, even with the same value */
        assert_true(check_query(get, (const char *[]){ "limit", "q", "limit", NULL }, &p) < 0);
        assert_int_equal(p.code, PROBLEM_INVALID_VALUE);
        assert_string_equal(p.field, "limit");

        char list[64];
        router_query_list(QUERY_WRITE | QUERY_MANAGER, list, sizeof(list));
        assert_string_equal(list, "wait, dry_run, manager");
        assert_string_equal(router_query_name(QUERY_SINCE), "since");
        assert_null(router_query_name(QUERY_WAIT | QUERY_DRY_RUN));
}

/* The real table: every route has at least one handler, patterns are unique, and no two
 * routes could both match the same concrete path. */
static void test_api_table(void **state)
{
        for (size_t i = 0; i < api_routes_count; i++) {
                assert_non_null(api_routes[i].ops[0].handler);
                assert_true(api_routes[i].pattern[0] == '/');
                for (size_t j = 0; j < i; j++)
                        assert_string_not_equal(api_routes[i].pattern, api_routes[j].pattern);
        }
}

/* Content negotiation of the policies' map file: text/plain only when the client asks for it
 * over JSON (q values, the most specific range, then the order named). */
static void test_accept(void **state)
{
        (void)state;
        static const struct {
                const char *accept;
                bool text;
        } cases[] = {
                { NULL, false },
                { "", false },
                { "*/*", false },
                { "text/plain", true },
                { "TEXT/PLAIN; charset=utf-8", true },
                { "application/json", false },
                { "text/plain, application/json", true },
                { "application/json, text/plain", false },
                { "text/plain;q=0.5, application/json", false },
                { "application/json;q=0.1, text/plain", true },
                { "text/*", true },
                { "text/*, application/*", false },
                { "text/plain;q=0, */*", false },
                { "text/html", false },
                { "*/*;q=0.1, text/plain;q=0.2", true },
                { "text/plain ; q=0.9 , application/json ; q=0.8", true },
        };
        for (size_t i = 0; i < ARRAY_SIZE(cases); i++)
                if (http_accept_prefers(cases[i].accept, "text/plain", "application/json") !=
                    cases[i].text)
                        fail_msg("Accept: %s", cases[i].accept ? cases[i].accept : "(none)");
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_exact_and_missing),
                cmocka_unit_test(test_params_are_decoded),
                cmocka_unit_test(test_bad_escapes),
                cmocka_unit_test(test_literal_before_param),
                cmocka_unit_test(test_methods_and_allow),
                cmocka_unit_test(test_query_decoding),
                cmocka_unit_test(test_query_parameters),
                cmocka_unit_test(test_api_table),
                cmocka_unit_test(test_accept),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
