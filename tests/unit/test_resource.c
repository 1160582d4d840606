/* test_resource.c - the path of the resource a job wrote (jobs' `location`) and the state ETag. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "smtptlsd/resource.h"

static const struct {
        const char *action, *target, *want; /* want NULL: no location */
} cases[] = {
        { "policies.put", "example.com", "/api/v1/tls-policies/example.com" },
        { "policies.patch", ".example.com", "/api/v1/tls-policies/.example.com" },
        { "policies.post", "[10.0.0.1]:25", "/api/v1/tls-policies/%5B10.0.0.1%5D%3A25" },
        { "policies.post", "[2001:db8::1]", "/api/v1/tls-policies/%5B2001%3Adb8%3A%3A1%5D" },
        /* issue 12: the new destination forms */
        { "policies.put", "relay.example:587", "/api/v1/tls-policies/relay.example%3A587" },
        { "policies.put", "[mx.example]:submission",
          "/api/v1/tls-policies/%5Bmx.example%5D%3Asubmission" },
        { "policies.put", "[ipv6:2001:db8::1]:25",
          "/api/v1/tls-policies/%5Bipv6%3A2001%3Adb8%3A%3A1%5D%3A25" },
        { "policies.put", "_dmarc.a_b.example", "/api/v1/tls-policies/_dmarc.a_b.example" },
        { "policies.put", "xn--bcher-kva.example", "/api/v1/tls-policies/xn--bcher-kva.example" },
        { "policies.delete", "example.com", NULL },
        { "policies.bulk", "tls-policies", "/api/v1/tls-policies" },
        { "settings.put", "settings", "/api/v1/settings" },
        { "settings.patch", "settings", "/api/v1/settings" },
        { "certificates.put", "mx", "/api/v1/certificates/mx" },
        { "certificates.post", "mx-2026.a_b", "/api/v1/certificates/mx-2026.a_b" },
        { "certificates.delete", "mx", NULL },
        { "certificates.rescan", "certificates", "/api/v1/certificates" },
        { "state.put", "state", "/api/v1/state" },
        { "no.such", "x", NULL },
};

static void test_job_location(void **state)
{
        (void)state;
        char buf[RESOURCE_PATH_MAX];
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                bool has = job_location(cases[i].action, cases[i].target, buf);
                assert_int_equal(has, cases[i].want != NULL);
                assert_string_equal(buf, cases[i].want ? cases[i].want : "");
        }
}

static void test_long_destination_is_cut_whole(void **state)
{
        (void)state;
        char dest[300], buf[RESOURCE_PATH_MAX];
        memset(dest, ':', sizeof(dest) - 1);
        dest[sizeof(dest) - 1] = 0;
        policy_path(dest, buf);
        size_t len = strlen(buf);
        assert_true(len < RESOURCE_PATH_MAX);
        /* never half an escape */
        assert_string_equal(buf + len - 3, "%3A");
}

static void test_state_etag(void **state)
{
        (void)state;
        char buf[STATE_ETAG_MAX];
        state_etag(42, buf);
        assert_string_equal(buf, "\"state-42\"");
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_job_location),
                cmocka_unit_test(test_long_destination_is_cut_whole),
                cmocka_unit_test(test_state_etag),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
