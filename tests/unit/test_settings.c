/* test_settings.c - the settings rules and rendering that are pure (core/settings.c): the second
 * bound certificate (additional_certificate) in PUT, PATCH and the JSON form, and
 * smtpd_tls_chain_files with one and two certificates (each key directly followed by its chain,
 * certificate first), the legacy certificate parameters it replaces. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <cmocka.h>

#include "smtptlsd/settings.h"

static struct settings managed(void)
{
        struct settings s;
        settings_defaults(&s);
        return s;
}

/* Applies body (JSON text) onto *s; returns the problem code (PROBLEM_NONE when accepted). */
static enum problem_code apply(struct settings *s, const char *text, bool patch, char field[256])
{
        json_t *body = json_loads(text, 0, NULL);
        struct problem p = { 0 };
        assert_non_null(body);
        settings_apply_json(s, body, patch, &p);
        json_decref(body);
        if (field)
                snprintf(field, 256, "%s", p.field);
        enum problem_code code = p.code;
        problem_done(&p);
        return code;
}

static void test_additional_certificate_rules(void **state)
{
        struct settings s = managed();
        char field[256];
        assert_int_equal(apply(&s,
                               "{\"mode\": \"may\", \"certificate\": \"rsa\", "
                               "\"additional_certificate\": \"ec\"}",
                               false, NULL),
                         PROBLEM_NONE);
        assert_string_equal(s.certificate, "rsa");
        assert_string_equal(s.additional_certificate, "ec");

        /* PATCH keeps what it does not name; PUT resets it */
        assert_int_equal(apply(&s, "{\"certificate\": \"rsa2\"}", true, NULL), PROBLEM_NONE);
        assert_string_equal(s.additional_certificate, "ec");
        struct settings before = s;
        /* refusals leave *s as it was */
        assert_int_equal(apply(&s, "{\"certificate\": null}", true, field),
                         PROBLEM_CERTIFICATE_REQUIRED);
        assert_string_equal(field, "/certificate");
        assert_int_equal(
            apply(&s, "{\"mode\": \"none\", \"additional_certificate\": \"ec\"}", false, field),
            PROBLEM_CERTIFICATE_REQUIRED);
        assert_string_equal(field, "/certificate");
        assert_int_equal(apply(&s, "{\"additional_certificate\": \"rsa2\"}", true, field),
                         PROBLEM_DUPLICATE_KEY_TYPE);
        assert_string_equal(field, "/additional_certificate");
        assert_int_equal(apply(&s, "{\"additional_certificate\": \"Not A Name\"}", true, field),
                         PROBLEM_CERTIFICATE_NOT_FOUND);
        assert_string_equal(field, "/additional_certificate");
        assert_memory_equal(&s, &before, sizeof(s));
        assert_int_equal(apply(&s, "{\"mode\": \"may\", \"certificate\": \"rsa\"}", false, NULL),
                         PROBLEM_NONE);
        assert_string_equal(s.additional_certificate, "");
        assert_int_equal(apply(&s, "{\"mode\": \"none\", \"certificate\": null}", true, NULL),
                         PROBLEM_NONE);

        /* the JSON form carries it (null when none), and reads back */
        s = managed();
        apply(&s, "{\"mode\": \"may\", \"certificate\": \"a\", \"additional_certificate\": \"b\"}",
              false, NULL);
        json_t *j = settings_to_json(&s);
        assert_string_equal(json_string_value(json_object_get(j, "additional_certificate")), "b");
        struct settings back = managed();
        struct problem p = { 0 };
        back.managed = true;
        back.generation = s.generation;
        assert_int_equal(settings_apply_json(&back, j, false, &p), 0);
        assert_string_equal(back.additional_certificate, "b");
        json_decref(j);
        s = managed();
        j = settings_to_json(&s);
        assert_true(json_is_null(json_object_get(j, "additional_certificate")));
        json_decref(j);
}

static const char *param(const struct maincf_param *params, size_t n, const char *name,
                         bool *present)
{
        *present = false;
        for (size_t i = 0; i < n; i++)
                if (streq(params[i].name, name)) {
                        *present = true;
                        return params[i].value;
                }
        return NULL;
}

static void test_chain_files_one_and_two(void **state)
{
        struct settings s = managed();
        struct maincf_param out[SETTINGS_PARAMS_MAX];
        char buf[512];
        bool present;
        const struct cert_files two[] = { { "/c/rsa/privkey.pem", "/c/rsa/fullchain.pem" },
                                          { "/c/ec/privkey.pem", "/c/ec/fullchain.pem" } };
        s.managed = true;
        s.mode = MODE_MAY;

        size_t n = settings_render(&s, two, 2, buf, sizeof(buf), out);
        assert_string_equal(param(out, n, "smtpd_tls_chain_files", &present),
                            "/c/rsa/privkey.pem, /c/rsa/fullchain.pem, /c/ec/privkey.pem, "
                            "/c/ec/fullchain.pem");
        /* every legacy pair goes: Postfix ignores them beside chain_files */
        static const char *const legacy[] = { "smtpd_tls_cert_file",   "smtpd_tls_key_file",
                                              "smtpd_tls_eccert_file", "smtpd_tls_eckey_file",
                                              "smtpd_tls_dcert_file",  "smtpd_tls_dkey_file" };
        for (size_t i = 0; i < ARRAY_SIZE(legacy); i++) {
                assert_null(param(out, n, legacy[i], &present));
                assert_true(present);
        }

        n = settings_render(&s, two, 1, buf, sizeof(buf), out);
        assert_string_equal(param(out, n, "smtpd_tls_chain_files", &present),
                            "/c/rsa/privkey.pem, /c/rsa/fullchain.pem");

        /* no certificate: no chain_files, and the ECDSA/DSA pairs are left alone */
        n = settings_render(&s, NULL, 0, buf, sizeof(buf), out);
        assert_null(param(out, n, "smtpd_tls_chain_files", &present));
        assert_true(present);
        assert_null(param(out, n, "smtpd_tls_eccert_file", &present));
        assert_false(present);
        assert_null(param(out, n, "smtpd_tls_cert_file", &present));
        assert_true(present);

        /* a list that does not fit is not rendered half */
        char small[40];
        n = settings_render(&s, two, 2, small, sizeof(small), out);
        assert_null(param(out, n, "smtpd_tls_chain_files", &present));
        assert_true(n <= SETTINGS_PARAMS_MAX);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_additional_certificate_rules),
                cmocka_unit_test(test_chain_files_one_and_two),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
