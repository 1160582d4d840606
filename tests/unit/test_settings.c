/* test_settings.c - what each TLS profile renders (opportunistic TLS at Postfix's defaults, a
 * TLS 1.2 floor for mandatory TLS but in legacy) and the settings' state warnings with the field
 * each names (settings_state_warnings). The real peers are in test_postfix_profiles.py. */
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
                size_t n = settings_render(&s, NULL, chain, sizeof(chain), out);
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

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_profiles),
                cmocka_unit_test(test_state_warnings),
                cmocka_unit_test(test_services_needing_a_certificate),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
