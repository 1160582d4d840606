/* test_settings.c - the settings rules and rendering that are pure (core/settings.c): what each
 * TLS profile renders (opportunistic TLS at Postfix's defaults, a TLS 1.2 floor for mandatory
 * TLS but in legacy), the settings' state warnings with the field each names, the services that
 * need a certificate, the second bound certificate (additional_certificate) in PUT, PATCH and
 * the JSON form, and smtpd_tls_chain_files with one and two certificates (each key directly
 * followed by its chain, certificate first). The real peers are in test_postfix_profiles.py
 * and test_postfix_dualcert.py. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <cmocka.h>

#include "smtptlsd/settings.h"
#include "smtptlsd/util.h"

static const char *rendered(const struct maincf_param *out, size_t n, const char *name)
{
        for (size_t i = 0; i < n; i++)
                if (streq(out[i].name, name))
                        return out[i].value ? out[i].value : "(removed)";
        fail_msg("%s is not rendered", name);
        return NULL;
}

static void test_profiles(void **state)
{
        static const struct {
                enum tls_profile profile;
                const char *mandatory_protocols, *mandatory_ciphers, *mandatory_exclude;
        } cases[] = {
                { PROFILE_MODERN, ">=TLSv1.2", "high",
                  "aNULL, eNULL, EXPORT, DES, RC4, MD5, PSK, SRP, 3DES" },
                { PROFILE_INTERMEDIATE, ">=TLSv1.2", "medium",
                  "aNULL, eNULL, EXPORT, DES, RC4, MD5" },
                { PROFILE_LEGACY, "(removed)", "(removed)", "(removed)" },
        };
        for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
                struct settings s = { 0 };
                struct maincf_param out[SETTINGS_PARAMS_MAX];
                char chain[64];
                settings_defaults(&s);
                s.managed = true;
                s.profile = cases[i].profile;
                size_t n = settings_render(&s, NULL, 0, NULL, chain, sizeof(chain), out);
                assert_true(n <= SETTINGS_PARAMS_MAX);
                static const char *const sides[] = { "smtpd", "smtp" };
                for (size_t k = 0; k < ARRAY_SIZE(sides); k++) {
                        char name[64];
#define CHECK(param, want)                                                                         \
        do {                                                                                       \
                snprintf(name, sizeof(name), "%s_tls_%s", sides[k], param);                        \
                assert_string_equal(rendered(out, n, name), want);                                 \
        } while (0)
                        CHECK("protocols", "(removed)");
                        CHECK("exclude_ciphers", "(removed)");
                        CHECK("mandatory_protocols", cases[i].mandatory_protocols);
                        CHECK("mandatory_ciphers", cases[i].mandatory_ciphers);
                        CHECK("mandatory_exclude_ciphers", cases[i].mandatory_exclude);
#undef CHECK
                }
        }
}

static void test_state_warnings(void **state)
{
        static const struct {
                enum tls_mode mode, inbound, outbound;
                bool auth_only, sasl;
                const char *want; /* "code field; ..." */
        } cases[] = {
                { MODE_MAY, MODE_UNSET, MODE_UNSET, true, true, "" },
                { MODE_NONE, MODE_UNSET, MODE_UNSET, true, false, "" },
                { MODE_NONE, MODE_UNSET, MODE_UNSET, true, true, "auth_without_tls /auth_only; " },
                { MODE_NONE, MODE_UNSET, MODE_UNSET, false, true, "" },
                { MODE_MAY, MODE_NONE, MODE_UNSET, true, true, "auth_without_tls /auth_only; " },
                { MODE_NONE, MODE_MAY, MODE_UNSET, true, true, "" },
                { MODE_ENCRYPT, MODE_UNSET, MODE_UNSET, true, false,
                  "mandatory_inbound /mode; mandatory_outbound /mode; " },
                { MODE_MAY, MODE_UNSET, MODE_ENCRYPT, true, false,
                  "mandatory_outbound /outbound_mode; " },
                { MODE_MAY, MODE_ENCRYPT, MODE_UNSET, true, false,
                  "mandatory_inbound /inbound_mode; " },
                { MODE_ENCRYPT, MODE_UNSET, MODE_MAY, true, false, "mandatory_inbound /mode; " },
                { MODE_ENCRYPT, MODE_NONE, MODE_UNSET, true, true,
                  "mandatory_outbound /mode; auth_without_tls /auth_only; " },
        };
        for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
                struct settings s = { 0 };
                settings_defaults(&s);
                s.managed = true;
                s.mode = cases[i].mode;
                s.inbound_mode = cases[i].inbound;
                s.outbound_mode = cases[i].outbound;
                s.auth_only = cases[i].auth_only;
                json_t *w = json_array();
                settings_state_warnings(&s, cases[i].sasl, w);
                char got[256] = "";
                size_t at = 0;
                json_t *x;
                size_t idx;
                json_array_foreach (w, idx, x) {
                        assert_non_null(json_string_value(json_object_get(x, "detail")));
                        at += (size_t)snprintf(got + at, sizeof(got) - at, "%s %s; ",
                                               json_string_value(json_object_get(x, "code")),
                                               json_string_value(json_object_get(x, "field")));
                }
                if (!streq(got, cases[i].want))
                        fail_msg("case %zu: got '%s', want '%s'", i, got, cases[i].want);
                json_decref(w);
                /* not managed: main.cf is the administrator's, nothing to say */
                s.managed = false;
                w = json_array();
                settings_state_warnings(&s, cases[i].sasl, w);
                assert_int_equal(json_array_size(w), 0);
                json_decref(w);
        }
}

static void test_services_needing_a_certificate(void **state)
{
        static const struct {
                const char *params; /* postconf -P */
                bool refused;
        } cases[] = {
                { "", false },
                { "relay/unix/syslog_name = postfix/$service_name\n", false },
                { "submission/inet/smtpd_tls_security_level = encrypt\n", true },
                { "submission/inet/smtpd_client_restrictions = permit_sasl_authenticated,reject\n"
                  "submission/inet/smtpd_tls_security_level = encrypt\n"
                  "submission/inet/syslog_name = postfix/submission",
                  true },
                { "submission/inet/smtpd_tls_security_level = may\n", false },
                { "submission/inet/smtpd_tls_security_level = ENCRYPT\n", true },
                { "submission/inet/smtpd_tls_security_level = encrypted\n", false },
                { "submission/inet/smtpd_enforce_tls = yes\n", true },
                { "smtps/inet/smtpd_tls_wrappermode = yes\n", true },
                { "smtps/inet/smtpd_tls_wrappermode = no\n", false },
                /* a certificate of its own, before or after the level, with paths in it */
                { "127.0.0.1:2525/inet/smtpd_tls_chain_files = /x/k,/x/c\n"
                  "127.0.0.1:2525/inet/smtpd_tls_security_level = encrypt\n",
                  false },
                { "smtps/inet/smtpd_tls_cert_file = /etc/c.pem\n"
                  "smtps/inet/smtpd_tls_wrappermode = yes\n",
                  false },
                { "smtps/inet/smtpd_tls_eccert_file = /e.pem\nsmtps/inet/smtpd_tls_wrappermode = "
                  "yes\n",
                  false },
                /* an empty override is no certificate */
                { "smtps/inet/smtpd_tls_chain_files = \nsmtps/inet/smtpd_tls_wrappermode = yes\n",
                  true },
                /* another service's certificate does not count */
                { "a/inet/smtpd_tls_chain_files = /k,/c\nb/inet/smtpd_tls_security_level = "
                  "encrypt\n",
                  true },
                { "b/inet/smtpd_tls_security_level = encrypt\nb/inet/smtpd_tls_dcert_file = /d\n"
                  "c/inet/syslog_name = c\n",
                  false },
                /* the value's '/' is not the service's */
                { "x/inet/milter_macro_daemon_name = a/b/smtpd_tls_wrappermode = yes\n", false },
        };
        for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
                struct settings s = { 0 };
                struct problem p = { 0 };
                settings_defaults(&s);
                int r = settings_check_services(&s, cases[i].params, &p);
                if ((r < 0) != cases[i].refused)
                        fail_msg("case %zu: %s (%s)", i, r < 0 ? "refused" : "accepted", p.detail);
                if (r < 0) {
                        assert_int_equal(p.code, PROBLEM_CERTIFICATE_REQUIRED);
                        assert_string_equal(p.field, "/certificate");
                }
                problem_done(&p);
                /* a bound certificate serves them all */
                snprintf(s.certificate, sizeof(s.certificate), "mx");
                assert_int_equal(settings_check_services(&s, cases[i].params, &p), 0);
        }
        struct settings s = { 0 };
        settings_defaults(&s);
        assert_int_equal(settings_check_services(&s, NULL, NULL), 0); /* unknown: no refusal */
}

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

        size_t n = settings_render(&s, two, 2, NULL, buf, sizeof(buf), out);
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

        n = settings_render(&s, two, 1, NULL, buf, sizeof(buf), out);
        assert_string_equal(param(out, n, "smtpd_tls_chain_files", &present),
                            "/c/rsa/privkey.pem, /c/rsa/fullchain.pem");

        /* no certificate: no chain_files, and the ECDSA/DSA pairs are left alone */
        n = settings_render(&s, NULL, 0, NULL, buf, sizeof(buf), out);
        assert_null(param(out, n, "smtpd_tls_chain_files", &present));
        assert_true(present);
        assert_null(param(out, n, "smtpd_tls_eccert_file", &present));
        assert_false(present);
        assert_null(param(out, n, "smtpd_tls_cert_file", &present));
        assert_true(present);

        /* a list that does not fit is not rendered half */
        char small[40];
        n = settings_render(&s, two, 2, NULL, small, sizeof(small), out);
        assert_null(param(out, n, "smtpd_tls_chain_files", &present));
        assert_true(n <= SETTINGS_PARAMS_MAX);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_profiles),
                cmocka_unit_test(test_state_warnings),
                cmocka_unit_test(test_services_needing_a_certificate),
                cmocka_unit_test(test_additional_certificate_rules),
                cmocka_unit_test(test_chain_files_one_and_two),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
