/* test_metrics.c - the /metrics text (src/metrics.c): every family has HELP and TYPE once, labelled
 * counters share one family, label values are escaped, and there is no smtptlsd_up. (The scrape of
 * a running daemon is tests/system/test_contract_cli.py.) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "metrics.h"

static size_t count(const char *text, const char *needle)
{
        size_t n = 0;
        for (const char *p = strstr(text, needle); p; p = strstr(p + 1, needle))
                n++;
        return n;
}

static void test_families_and_escaping(void **state)
{
        const struct metrics_certificate certs[] = {
                { "mx1", "imported", true, 86400 },
                { "odd\"na\\me\n", "acme", false, -5 },
        };
        const struct metrics_live live = {
                .database_up = true,
                .state = "degraded",
                .drift = 2,
                .served_fingerprint = "AB:CD",
                .certificates = certs,
                .n_certificates = 2,
        };
        char *text = NULL;
        size_t len = 0;
        metrics_count(METRIC_JOBS_FAILED, 3);
        assert_int_equal(metrics_render(NULL, &live, &text, &len), 0);
        assert_int_equal(strlen(text), len);

        assert_null(strstr(text, "smtptlsd_up"));
        assert_int_equal(count(text, "# TYPE smtptlsd_jobs_total counter\n"), 1);
        assert_int_equal(count(text, "# HELP smtptlsd_jobs_total "), 1);
        assert_non_null(strstr(text, "smtptlsd_jobs_total{result=\"applied\"} 0\n"));
        assert_non_null(strstr(text, "smtptlsd_jobs_total{result=\"failed\"} 3\n"));
        assert_int_equal(count(text, "# TYPE smtptlsd_postfix_reloads_total counter\n"), 1);
        assert_non_null(strstr(text, "smtptlsd_postfix_reloads_total{result=\"ok\"} 0\n"));
        assert_non_null(strstr(text, "smtptlsd_postfix_reloads_total{result=\"failed\"} 0\n"));
        assert_non_null(strstr(text, "smtptlsd_state{state=\"in_sync\"} 0\n"
                                     "smtptlsd_state{state=\"applying\"} 0\n"
                                     "smtptlsd_state{state=\"degraded\"} 1\n"));
        assert_non_null(strstr(text, "smtptlsd_drift_parameters 2\n"));
        assert_non_null(strstr(text, "smtptlsd_database_up 1\n"));
        assert_non_null(
            strstr(text, "smtptlsd_served_certificate_info{fingerprint=\"AB:CD\"} 1\n"));
        assert_non_null(strstr(text, "smtptlsd_certificate_expiry_seconds{name=\"mx1\",type="
                                     "\"imported\",in_use=\"true\"} 86400\n"));
        assert_non_null(strstr(text, "smtptlsd_certificate_expiry_seconds{name=\"odd\\\"na\\\\me"
                                     "\\n\",type=\"acme\",in_use=\"false\"} -5\n"));
        assert_non_null(strstr(text, "smtptlsd_build_info{version=\""));
        /* every TYPE has a HELP right before it */
        for (const char *p = strstr(text, "# TYPE "); p; p = strstr(p + 1, "# TYPE ")) {
                const char *line = p - 1;
                while (line > text && line[-1] != '\n')
                        line--;
                assert_memory_equal(line, "# HELP ", 7);
        }
        free(text);
}

/* Two bound certificates (RSA and ECDSA): one served_certificate_info sample each. */
static void test_two_served_fingerprints(void **state)
{
        const struct metrics_live live = { .served_fingerprint = "AB:CD,EF:01" };
        char *text = NULL;
        size_t len = 0;
        assert_int_equal(metrics_render(NULL, &live, &text, &len), 0);
        assert_non_null(strstr(text,
                               "smtptlsd_served_certificate_info{fingerprint=\"AB:CD\"} 1\n"
                               "smtptlsd_served_certificate_info{fingerprint=\"EF:01\"} 1\n"));
        assert_int_equal(count(text, "smtptlsd_served_certificate_info{"), 2);
        free(text);
}

static void test_unknown_state_and_no_fingerprint(void **state)
{
        const struct metrics_live live = { 0 };
        char *text = NULL;
        size_t len = 0;
        assert_int_equal(metrics_render(NULL, &live, &text, &len), 0);
        assert_int_equal(count(text, "smtptlsd_state{"), 3);
        assert_int_equal(count(text, "} 1\n"), 1); /* build_info only */
        assert_null(strstr(text, "smtptlsd_served_certificate_info{"));
        assert_non_null(strstr(text, "smtptlsd_database_up 0\n"));
        free(text);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_families_and_escaping),
                cmocka_unit_test(test_unknown_state_and_no_fingerprint),
                cmocka_unit_test(test_two_served_fingerprints),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
