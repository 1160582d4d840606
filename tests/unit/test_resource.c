/* test_resource.c - the path of the resource a job wrote (jobs' `location`) and the state ETag. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <regex.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "core/resource.h"

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

/* Every kind's tag: quoted (a strong entity tag of RFC 9110's characters), one kind each, a
 * version of its own, within RESOURCE_ETAG_MAX even at the largest version. */
static void test_etags(void **state)
{
        static const struct {
                enum resource_kind kind;
                const char *want42, *want_max;
        } kinds[] = {
                { RESOURCE_SETTINGS, "\"settings-42\"", "\"settings-9223372036854775807\"" },
                { RESOURCE_CERTIFICATE, "\"certificate-42\"",
                  "\"certificate-9223372036854775807\"" },
                { RESOURCE_CERTIFICATES, "\"certificates-42\"",
                  "\"certificates-9223372036854775807\"" },
                { RESOURCE_POLICY, "\"policy-42\"", "\"policy-9223372036854775807\"" },
                { RESOURCE_POLICIES, "\"policies-42\"", "\"policies-9223372036854775807\"" },
                { RESOURCE_STATE, "\"state-42\"", "\"state-9223372036854775807\"" },
        };
        regex_t rx;
        assert_int_equal(regcomp(&rx, "^\"[\x21\x23-\x7e]*\"$", REG_EXTENDED | REG_NOSUB), 0);
        for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
                char buf[RESOURCE_ETAG_MAX], other[RESOURCE_ETAG_MAX];
                resource_etag(kinds[i].kind, 42, buf);
                assert_string_equal(buf, kinds[i].want42);
                assert_int_equal(regexec(&rx, buf, 0, NULL, 0), 0);
                resource_etag(kinds[i].kind, INT64_MAX, buf);
                assert_string_equal(buf, kinds[i].want_max);
                assert_true(strlen(buf) < RESOURCE_ETAG_MAX);
                resource_etag(kinds[i].kind, 1, buf);
                resource_etag(kinds[i].kind, 11, other);
                assert_string_not_equal(buf, other);
        }
        regfree(&rx);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_job_location),
                cmocka_unit_test(test_long_destination_is_cut_whole),
                cmocka_unit_test(test_etags),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
