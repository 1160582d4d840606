/* test_settings.c - the settings rules and rendering that are pure (core/settings.c): what each
 * TLS profile renders (opportunistic TLS at Postfix's defaults, a TLS 1.2 floor for mandatory
 * TLS but in legacy), the settings' state warnings with the field each names, the services that
 * need a certificate, the second bound certificate (additional_certificate) in PUT, PATCH and
 * the JSON form, and smtpd_tls_chain_files with one and two certificates (each key directly
 * followed by its chain, certificate first); each field's validation in PUT and PATCH with the
 * problem code and field it names (a refusal changes nothing), PUT's defaults and PATCH's merge,
 * the mode and profile names, outbound_ca paths, the other rendered parameters (levels,
 * auth_only, Received header, log levels, CA file) and the JSON forms. The real peers are in
 * test_postfix_profiles.py, test_postfix_dualcert.py and test_settings.py. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <cmocka.h>

#include "core/settings.h"
#include "util.h"

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
        struct settings s = { 0 };
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

/* Each field's validation in a PUT (or a PATCH): the problem code and the field it names, and a
 * refused body changes nothing. The starting point is the defaults (generation 0, unmanaged). */
static void test_field_validation(void **state)
{
        static const struct {
                const char *body;
                bool patch;
                enum problem_code code;
                const char *field;
        } cases[] = {
                /* mode: required in a PUT, one of the names ("" is none) */
                { "{}", false, PROBLEM_MISSING_FIELD, "/mode" },
                { "{}", true, PROBLEM_NONE, "" },
                { "{\"mode\": \"\"}", false, PROBLEM_NONE, "" },
                { "{\"mode\": \"sometimes\"}", false, PROBLEM_INVALID_VALUE, "/mode" },
                { "{\"mode\": \"MAY\"}", false, PROBLEM_INVALID_VALUE, "/mode" },
                { "{\"mode\": 1}", false, PROBLEM_INVALID_VALUE, "/mode" },
                { "{\"mode\": null}", false, PROBLEM_INVALID_VALUE, "/mode" },
                { "{\"mode\": \"none\", \"inbound_mode\": \"x\"}", false, PROBLEM_INVALID_VALUE,
                  "/inbound_mode" },
                { "{\"mode\": \"none\", \"outbound_mode\": \"x\"}", false, PROBLEM_INVALID_VALUE,
                  "/outbound_mode" },
                { "{\"mode\": \"none\", \"inbound_mode\": null, \"outbound_mode\": \"encrypt\"}",
                  false, PROBLEM_NONE, "" },
                /* profile: one of the names, not nullable */
                { "{\"mode\": \"none\", \"profile\": \"paranoid\"}", false, PROBLEM_INVALID_VALUE,
                  "/profile" },
                { "{\"mode\": \"none\", \"profile\": null}", false, PROBLEM_INVALID_VALUE,
                  "/profile" },
                { "{\"mode\": \"none\", \"profile\": \"legacy\"}", false, PROBLEM_NONE, "" },
                /* booleans and the log level 0..4 */
                { "{\"mode\": \"none\", \"auth_only\": \"yes\"}", false, PROBLEM_INVALID_VALUE,
                  "/auth_only" },
                { "{\"mode\": \"none\", \"received_header\": 1}", false, PROBLEM_INVALID_VALUE,
                  "/received_header" },
                { "{\"mode\": \"none\", \"loglevel\": 5}", false, PROBLEM_INVALID_VALUE,
                  "/loglevel" },
                { "{\"mode\": \"none\", \"loglevel\": -1}", false, PROBLEM_INVALID_VALUE,
                  "/loglevel" },
                { "{\"mode\": \"none\", \"loglevel\": \"2\"}", false, PROBLEM_INVALID_VALUE,
                  "/loglevel" },
                { "{\"mode\": \"none\", \"loglevel\": 4}", false, PROBLEM_NONE, "" },
                { "{\"mode\": \"none\", \"loglevel\": 0}", false, PROBLEM_NONE, "" },
                /* outbound_ca: "system" or an absolute path of plain components */
                { "{\"mode\": \"none\", \"outbound_ca\": \"system\"}", false, PROBLEM_NONE, "" },
                { "{\"mode\": \"none\", \"outbound_ca\": \"/etc/ssl/ca.pem\"}", false, PROBLEM_NONE,
                  "" },
                { "{\"mode\": \"none\", \"outbound_ca\": \"ca.pem\"}", false, PROBLEM_INVALID_VALUE,
                  "/outbound_ca" },
                { "{\"mode\": \"none\", \"outbound_ca\": \"/etc/../ca.pem\"}", false,
                  PROBLEM_INVALID_VALUE, "/outbound_ca" },
                { "{\"mode\": \"none\", \"outbound_ca\": null}", false, PROBLEM_INVALID_VALUE,
                  "/outbound_ca" },
                /* certificate names; a non-none inbound level needs one */
                { "{\"mode\": \"none\", \"certificate\": \"Not A Name\"}", false,
                  PROBLEM_CERTIFICATE_NOT_FOUND, "/certificate" },
                { "{\"mode\": \"none\", \"certificate\": \"-mx\"}", false,
                  PROBLEM_CERTIFICATE_NOT_FOUND, "/certificate" },
                { "{\"mode\": \"may\"}", false, PROBLEM_CERTIFICATE_REQUIRED, "/certificate" },
                { "{\"mode\": \"encrypt\", \"certificate\": null}", false,
                  PROBLEM_CERTIFICATE_REQUIRED, "/certificate" },
                { "{\"mode\": \"none\", \"inbound_mode\": \"may\"}", false,
                  PROBLEM_CERTIFICATE_REQUIRED, "/certificate" },
                { "{\"mode\": \"may\", \"inbound_mode\": \"none\"}", false, PROBLEM_NONE, "" },
                { "{\"mode\": \"encrypt\", \"certificate\": \"mx.example-1\"}", false, PROBLEM_NONE,
                  "" },
                { "{\"mode\": \"may\"}", true, PROBLEM_CERTIFICATE_REQUIRED, "/certificate" },
                /* unknown members; read-only members only at their current values */
                { "{\"mode\": \"none\", \"colour\": \"blue\"}", false, PROBLEM_UNKNOWN_FIELD,
                  "/colour" },
                { "{\"mode\": \"none\", \"generation\": 7}", false, PROBLEM_INVALID_VALUE,
                  "/generation" },
                { "{\"mode\": \"none\", \"managed\": true}", false, PROBLEM_INVALID_VALUE,
                  "/managed" },
                { "{\"mode\": \"none\", \"updated_at\": \"2026-01-01T00:00:00Z\"}", false,
                  PROBLEM_INVALID_VALUE, "/updated_at" },
                { "{\"mode\": \"none\", \"generation\": 0, \"managed\": false, "
                  "\"updated_at\": null}",
                  false, PROBLEM_NONE, "" },
                { "[]", false, PROBLEM_INVALID_VALUE, "" },
        };
        for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
                struct settings s = managed();
                struct settings before = s;
                char field[256];
                enum problem_code code = apply(&s, cases[i].body, cases[i].patch, field);
                if (code != cases[i].code || !streq(field, cases[i].field))
                        fail_msg("case %zu %s: got %s at '%s', want %s at '%s'", i, cases[i].body,
                                 problem_code_name(code), field, problem_code_name(cases[i].code),
                                 cases[i].field);
                if (code != PROBLEM_NONE)
                        assert_memory_equal(&s, &before, sizeof(s));
                else
                        assert_true(s.managed); /* the first write takes main.cf over */
        }
        /* a NUL byte in outbound_ca (a body parser that lets one through) */
        struct settings s = managed(), before = s;
        struct problem p = { 0 };
        json_t *body =
            json_pack("{s:s, s:s%}", "mode", "none", "outbound_ca", "/etc/ca\0.pem", (size_t)12);
        assert_non_null(body);
        assert_int_equal(settings_apply_json(&s, body, false, &p), -EINVAL);
        assert_int_equal(p.code, PROBLEM_INVALID_VALUE);
        assert_string_equal(p.field, "/outbound_ca");
        assert_memory_equal(&s, &before, sizeof(s));
        problem_done(&p);
        json_decref(body);
}

/* A PUT sets every field it names and resets the others to their defaults; a PATCH changes only
 * what it names (null clears an override); the generation is the caller's. */
static void test_put_replaces_patch_merges(void **state)
{
        struct settings s = managed();
        s.generation = 9;
        assert_int_equal(apply(&s,
                               "{\"mode\": \"may\", \"inbound_mode\": \"encrypt\", "
                               "\"outbound_mode\": \"none\", \"certificate\": \"mx\", "
                               "\"profile\": \"modern\", \"auth_only\": false, "
                               "\"received_header\": true, \"loglevel\": 3, "
                               "\"outbound_ca\": \"/etc/ssl/ca.pem\", \"generation\": 9}",
                               false, NULL),
                         PROBLEM_NONE);
        assert_true(s.managed);
        assert_int_equal(s.mode, MODE_MAY);
        assert_int_equal(s.inbound_mode, MODE_ENCRYPT);
        assert_int_equal(s.outbound_mode, MODE_NONE);
        assert_int_equal(settings_inbound(&s), MODE_ENCRYPT);
        assert_int_equal(settings_outbound(&s), MODE_NONE);
        assert_string_equal(s.certificate, "mx");
        assert_int_equal(s.profile, PROFILE_MODERN);
        assert_false(s.auth_only);
        assert_true(s.received_header);
        assert_int_equal(s.loglevel, 3);
        assert_string_equal(s.outbound_ca, "/etc/ssl/ca.pem");
        assert_int_equal(s.generation, 9);

        struct settings before = s;
        assert_int_equal(apply(&s, "{\"loglevel\": 0}", true, NULL), PROBLEM_NONE);
        assert_int_equal(s.loglevel, 0);
        before.loglevel = 0;
        assert_memory_equal(&s, &before, sizeof(s));

        /* null clears an override: the side follows mode again */
        assert_int_equal(apply(&s, "{\"inbound_mode\": null, \"outbound_mode\": null}", true, NULL),
                         PROBLEM_NONE);
        assert_int_equal(s.inbound_mode, MODE_UNSET);
        assert_int_equal(s.outbound_mode, MODE_UNSET);
        assert_int_equal(settings_inbound(&s), MODE_MAY);
        assert_int_equal(settings_outbound(&s), MODE_MAY);

        /* a PUT of mode alone: the defaults for the rest */
        assert_int_equal(apply(&s, "{\"mode\": \"none\"}", false, NULL), PROBLEM_NONE);
        struct settings want = managed();
        want.managed = true;
        want.generation = 9;
        assert_memory_equal(&s, &want, sizeof(s));
        assert_int_equal(s.profile, PROFILE_INTERMEDIATE);
        assert_true(s.auth_only);
        assert_false(s.received_header);
        assert_int_equal(s.loglevel, 1);
        assert_string_equal(s.outbound_ca, OUTBOUND_CA_SYSTEM);
        assert_string_equal(s.certificate, "");
}

static void test_mode_and_profile_names(void **state)
{
        static const char *const modes[] = { "none", "may", "encrypt" };
        static const char *const profiles[] = { "modern", "intermediate", "legacy" };
        enum tls_mode m = MODE_UNSET;
        enum tls_profile p = PROFILE_LEGACY;

        for (int i = 0; i < 3; i++) {
                assert_int_equal(tls_mode_from_string(modes[i], &m), 0);
                assert_int_equal(m, (enum tls_mode)i);
                assert_string_equal(tls_mode_to_string(m), modes[i]);
                assert_int_equal(tls_profile_from_string(profiles[i], &p), 0);
                assert_int_equal(p, (enum tls_profile)i);
                assert_string_equal(tls_profile_to_string(p), profiles[i]);
        }
        m = MODE_ENCRYPT;
        assert_int_equal(tls_mode_from_string("", &m), 0); /* the admin page's "Disabled" */
        assert_int_equal(m, MODE_NONE);
        assert_int_equal(tls_mode_from_string("May", &m), -EINVAL);
        assert_int_equal(tls_mode_from_string("dane", &m), -EINVAL);
        assert_int_equal(tls_profile_from_string("", &p), -EINVAL);
        assert_int_equal(tls_profile_from_string("Modern", &p), -EINVAL);
        assert_null(tls_mode_to_string(MODE_UNSET));
        assert_null(tls_mode_to_string((enum tls_mode)3));
}

static void test_outbound_ca_paths(void **state)
{
        static const struct {
                const char *path;
                bool valid;
        } cases[] = {
                { "/etc/ssl/certs/ca-certificates.crt", true },
                { "/a", true },
                { "/etc/ssl/my_ca+2@site-1.pem", true },
                { "/etc/ssl/.hidden.pem", true },
                { "", false },
                { "/", false },
                { "system", false }, /* the keyword is the JSON check's, not a path */
                { "etc/ssl/ca.pem", false },
                { "/etc/ssl/", false },
                { "/etc//ca.pem", false },
                { "/etc/./ca.pem", false },
                { "/etc/../ca.pem", false },
                { "/etc/ssl/..", false },
                { "/etc/ssl/ca pem", false },
                { "/etc/ssl/ca,pem", false },
                { "/etc/ssl/$ca.pem", false },
                { "/etc/ssl/ca.pem\n", false },
        };
        for (size_t i = 0; i < ARRAY_SIZE(cases); i++)
                if (outbound_ca_path_is_valid(cases[i].path) != cases[i].valid)
                        fail_msg("'%s' should be %s", cases[i].path,
                                 cases[i].valid ? "valid" : "refused");
        assert_false(outbound_ca_path_is_valid(NULL));
        char longest[OUTBOUND_CA_MAX + 2];
        memset(longest, 'a', sizeof(longest));
        longest[0] = '/';
        longest[OUTBOUND_CA_MAX] = 0;
        assert_true(outbound_ca_path_is_valid(longest));
        longest[OUTBOUND_CA_MAX] = 'a';
        longest[OUTBOUND_CA_MAX + 1] = 0;
        assert_false(outbound_ca_path_is_valid(longest));
}

/* What the settings render into main.cf besides the profiles and the chain files: each side's
 * level (its override, else mode), auth_only, the Received header, the log level on both sides,
 * the CA file; every parameter once; nothing while main.cf is not managed. */
static void test_render_parameters(void **state)
{
        struct settings s = managed();
        struct maincf_param out[SETTINGS_PARAMS_MAX];
        char buf[256];
        bool present;

        s.mode = MODE_MAY;
        assert_int_equal(settings_render(&s, NULL, 0, "/ca.pem", buf, sizeof(buf), out), 0);

        s.managed = true;
        size_t n = settings_render(&s, NULL, 0, "/etc/ssl/ca.pem", buf, sizeof(buf), out);
        assert_true(n > 0 && n <= SETTINGS_PARAMS_MAX);
        for (size_t i = 0; i < n; i++)
                for (size_t j = i + 1; j < n; j++)
                        if (streq(out[i].name, out[j].name))
                                fail_msg("%s is rendered twice", out[i].name);
        assert_string_equal(param(out, n, "smtpd_tls_security_level", &present), "may");
        assert_string_equal(param(out, n, "smtp_tls_security_level", &present), "may");
        assert_string_equal(param(out, n, "smtpd_tls_auth_only", &present), "yes");
        assert_string_equal(param(out, n, "smtpd_tls_received_header", &present), "no");
        assert_string_equal(param(out, n, "smtpd_tls_loglevel", &present), "1");
        assert_string_equal(param(out, n, "smtp_tls_loglevel", &present), "1");
        assert_string_equal(param(out, n, "smtp_tls_CAfile", &present), "/etc/ssl/ca.pem");

        s.inbound_mode = MODE_ENCRYPT;
        s.outbound_mode = MODE_NONE;
        s.auth_only = false;
        s.received_header = true;
        s.loglevel = 4;
        n = settings_render(&s, NULL, 0, NULL, buf, sizeof(buf), out);
        assert_string_equal(param(out, n, "smtpd_tls_security_level", &present), "encrypt");
        assert_string_equal(param(out, n, "smtp_tls_security_level", &present), "none");
        assert_string_equal(param(out, n, "smtpd_tls_auth_only", &present), "no");
        assert_string_equal(param(out, n, "smtpd_tls_received_header", &present), "yes");
        assert_string_equal(param(out, n, "smtpd_tls_loglevel", &present), "4");
        assert_string_equal(param(out, n, "smtp_tls_loglevel", &present), "4");
        /* a CA file that cannot be read is removed, not rendered */
        assert_null(param(out, n, "smtp_tls_CAfile", &present));
        assert_true(present);

        s.mode = MODE_ENCRYPT;
        s.inbound_mode = s.outbound_mode = MODE_UNSET;
        s.loglevel = 0;
        n = settings_render(&s, NULL, 0, NULL, buf, sizeof(buf), out);
        assert_string_equal(param(out, n, "smtpd_tls_security_level", &present), "encrypt");
        assert_string_equal(param(out, n, "smtp_tls_security_level", &present), "encrypt");
        assert_string_equal(param(out, n, "smtp_tls_loglevel", &present), "0");
}

/* The JSON forms: a GET's (overrides and certificates null when unset) and the desired state's
 * (without generation and updated_at); the ETag. */
static void test_json_forms(void **state)
{
        struct settings s = managed();
        s.managed = true;
        s.mode = MODE_MAY;
        s.outbound_mode = MODE_ENCRYPT;
        snprintf(s.certificate, sizeof(s.certificate), "mx");
        s.profile = PROFILE_LEGACY;
        s.loglevel = 2;
        s.generation = 42;
        snprintf(s.updated_at, sizeof(s.updated_at), "2026-12-04T10:00:00Z");

        json_t *j = settings_to_json(&s);
        assert_string_equal(json_string_value(json_object_get(j, "mode")), "may");
        assert_true(json_is_null(json_object_get(j, "inbound_mode")));
        assert_string_equal(json_string_value(json_object_get(j, "outbound_mode")), "encrypt");
        assert_string_equal(json_string_value(json_object_get(j, "certificate")), "mx");
        assert_true(json_is_null(json_object_get(j, "additional_certificate")));
        assert_string_equal(json_string_value(json_object_get(j, "profile")), "legacy");
        assert_true(json_is_true(json_object_get(j, "auth_only")));
        assert_true(json_is_false(json_object_get(j, "received_header")));
        assert_int_equal(json_integer_value(json_object_get(j, "loglevel")), 2);
        assert_string_equal(json_string_value(json_object_get(j, "outbound_ca")), "system");
        assert_true(json_is_true(json_object_get(j, "managed")));
        assert_int_equal(json_integer_value(json_object_get(j, "generation")), 42);
        assert_string_equal(json_string_value(json_object_get(j, "updated_at")),
                            "2026-12-04T10:00:00Z");

        /* a GET's reply is a valid PUT of the same settings (updated_at is the store's to set) */
        struct settings back = s, want = s;
        struct problem p = { 0 };
        assert_int_equal(settings_apply_json(&back, j, false, &p), 0);
        json_decref(j);
        memset(want.updated_at, 0, sizeof(want.updated_at));
        assert_memory_equal(&back, &want, sizeof(s));

        j = settings_desired_json(&s);
        assert_null(json_object_get(j, "generation"));
        assert_null(json_object_get(j, "updated_at"));
        assert_true(json_is_true(json_object_get(j, "managed")));
        assert_string_equal(json_string_value(json_object_get(j, "mode")), "may");
        json_decref(j);

        s.updated_at[0] = 0;
        j = settings_to_json(&s);
        assert_true(json_is_null(json_object_get(j, "updated_at")));
        json_decref(j);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_profiles),
                cmocka_unit_test(test_state_warnings),
                cmocka_unit_test(test_services_needing_a_certificate),
                cmocka_unit_test(test_additional_certificate_rules),
                cmocka_unit_test(test_chain_files_one_and_two),
                cmocka_unit_test(test_field_validation),
                cmocka_unit_test(test_put_replaces_patch_merges),
                cmocka_unit_test(test_mode_and_profile_names),
                cmocka_unit_test(test_outbound_ca_paths),
                cmocka_unit_test(test_render_parameters),
                cmocka_unit_test(test_json_forms),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
