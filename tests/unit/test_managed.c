/* test_managed.c - the one table of managed main.cf parameters (core/managed.c): every parameter
 * settings_render writes has a row and is written in the table's order (with and without
 * smtpd_tls_chain_files), the plan's smtp_tls_policy_maps has its row, the flags say what a
 * change needs (a reload for every row; which rows name certificate or key files; which are the
 * legacy pairs, only ever removed; which postconf checks), and the master.cf service check reads
 * the certificate rows. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "core/managed.h"
#include "core/settings.h"
#include "util.h"

static size_t n_rows(void)
{
        size_t n = 0;
        while (managed_params[n].name)
                n++;
        return n;
}

/* settings_render writes the rows in table order: all of them with a certificate bound (but the
 * plan's smtp_tls_policy_maps), without one all but the ECDSA and DSA legacy pairs. */
static void test_render_follows_the_table(void **state)
{
        struct settings s;
        struct maincf_param out[SETTINGS_PARAMS_MAX];
        char chain[256];
        const struct cert_files one = { "/c/mx/1/privkey.pem", "/c/mx/1/fullchain.pem" };
        settings_defaults(&s);
        s.managed = true;
        assert_true(n_rows() <= MANAGED_PARAMS_MAX);
        for (int bound = 0; bound < 2; bound++) {
                size_t n = settings_render(&s, &one, (size_t)bound, "/etc/ssl/ca.pem", chain,
                                           sizeof(chain), out);
                size_t k = 0;
                for (const struct managed_param *m = managed_params; m->name; m++) {
                        if (m->source == MANAGED_POLICY_MAPS)
                                continue;
                        if (!bound && (m->flags & MANAGED_WITH_CHAIN))
                                continue;
                        assert_true(k < n);
                        assert_string_equal(out[k].name, m->name);
                        if (m->flags & MANAGED_LEGACY)
                                assert_null(out[k].value); /* only ever removed */
                        k++;
                }
                assert_int_equal(k, n); /* nothing rendered without a row */
                assert_int_equal(n, bound ? n_rows() - 1 : n_rows() - 5);
        }
        /* unmanaged: nothing */
        s.managed = false;
        assert_int_equal(settings_render(&s, &one, 1, NULL, chain, sizeof(chain), out), 0);
}

static void test_flags(void **state)
{
        /* every managed parameter is read at start or reload only */
        for (const struct managed_param *m = managed_params; m->name; m++) {
                assert_true(m->flags & MANAGED_RELOAD);
                assert_ptr_equal(managed_param_find(m->name), m);
        }
        assert_null(managed_param_find("smtpd_sasl_auth_enable"));
        assert_null(managed_param_find("smtpd_tls"));

        /* the rows whose value names certificate files: a master.cf service that sets one has a
         * certificate of its own */
        static const char *const certs[] = { "smtpd_tls_chain_files", "smtpd_tls_cert_file",
                                             "smtpd_tls_eccert_file", "smtpd_tls_dcert_file" };
        static const char *const keys[] = { "smtpd_tls_chain_files", "smtpd_tls_key_file",
                                            "smtpd_tls_eckey_file", "smtpd_tls_dkey_file" };
        size_t n_certs = 0, n_keys = 0, n_ca = 0;
        for (const struct managed_param *m = managed_params; m->name; m++) {
                n_certs += (m->flags & MANAGED_CERT_FILES) != 0;
                n_keys += (m->flags & MANAGED_KEY_FILE) != 0;
                n_ca += (m->flags & MANAGED_CA) != 0;
        }
        assert_int_equal(n_certs, ARRAY_SIZE(certs));
        assert_int_equal(n_keys, ARRAY_SIZE(keys));
        for (size_t i = 0; i < ARRAY_SIZE(certs); i++) {
                assert_true(managed_param_has(certs[i], strlen(certs[i]), MANAGED_CERT_FILES));
                assert_true(managed_param_has(keys[i], strlen(keys[i]), MANAGED_KEY_FILE));
        }
        /* a name inside a longer line: its length counts */
        assert_true(managed_param_has("smtpd_tls_cert_file = x", 19, MANAGED_CERT_FILES));
        assert_false(managed_param_has("smtpd_tls_cert_file", 18, MANAGED_CERT_FILES));
        assert_int_equal(n_ca, 1);
        assert_true(managed_param_find("smtp_tls_CAfile")->flags & MANAGED_CA);

        /* the legacy pairs: each of settings_legacy_pairs' parameters is a legacy row; the RSA
         * pair goes in any case, the others only beside smtpd_tls_chain_files */
        size_t n_legacy = 0;
        for (const struct managed_param *m = managed_params; m->name; m++)
                n_legacy += (m->flags & MANAGED_LEGACY) != 0;
        assert_int_equal(n_legacy, 6);
        for (const struct settings_legacy_pair *l = settings_legacy_pairs; l->cert_param; l++) {
                const struct managed_param *c = managed_param_find(l->cert_param);
                const struct managed_param *k = managed_param_find(l->key_param);
                assert_non_null(c);
                assert_non_null(k);
                unsigned want =
                    MANAGED_LEGACY | (l == settings_legacy_pairs ? 0 : MANAGED_WITH_CHAIN);
                assert_int_equal(c->flags & (MANAGED_LEGACY | MANAGED_WITH_CHAIN), want);
                assert_int_equal(k->flags & (MANAGED_LEGACY | MANAGED_WITH_CHAIN), want);
                assert_int_equal(c->source, MANAGED_POSTFIX_DEFAULT);
        }
}

/* postconf must not warn about any parameter smtptlsd sets: the 19 it sets or removes to a
 * default, not the legacy ones it only removes */
static void test_checked_names(void **state)
{
        static const char *const want[] = {
                "smtpd_tls_security_level",
                "smtp_tls_security_level",
                "smtpd_tls_chain_files",
                "smtpd_tls_protocols",
                "smtpd_tls_mandatory_protocols",
                "smtp_tls_protocols",
                "smtp_tls_mandatory_protocols",
                "smtpd_tls_mandatory_ciphers",
                "smtp_tls_mandatory_ciphers",
                "smtpd_tls_exclude_ciphers",
                "smtp_tls_exclude_ciphers",
                "smtpd_tls_mandatory_exclude_ciphers",
                "smtp_tls_mandatory_exclude_ciphers",
                "smtpd_tls_auth_only",
                "smtpd_tls_received_header",
                "smtpd_tls_loglevel",
                "smtp_tls_loglevel",
                "smtp_tls_policy_maps",
                "smtp_tls_CAfile",
        };
        const char *names[MANAGED_PARAMS_MAX + 1];
        size_t n = managed_checked_names(names);
        assert_int_equal(n, ARRAY_SIZE(want));
        assert_null(names[n]);
        for (size_t i = 0; i < ARRAY_SIZE(want); i++) {
                bool found = false;
                for (size_t k = 0; k < n; k++)
                        found = found || streq(names[k], want[i]);
                assert_true(found);
        }
}

/* A submission service that needs main.cf's certificate is refused without one, unless it sets
 * a certificate parameter of its own (a row that names certificate files), not a key alone. */
static void test_services_read_the_certificate_rows(void **state)
{
        struct settings s;
        struct problem p = { 0 };
        settings_defaults(&s);
        s.managed = true;
        static const char *const head = "submission/inet/smtpd_tls_security_level = encrypt\n";
        static const struct {
                const char *line;
                bool own;
        } cases[] = {
                { "", false },
                { "submission/inet/smtpd_tls_chain_files = /k.pem, /c.pem\n", true },
                { "submission/inet/smtpd_tls_cert_file = /c.pem\n", true },
                { "submission/inet/smtpd_tls_eccert_file = /c.pem\n", true },
                { "submission/inet/smtpd_tls_dcert_file = /c.pem\n", true },
                { "submission/inet/smtpd_tls_key_file = /k.pem\n", false },
                { "submission/inet/smtpd_tls_loglevel = 1\n", false },
        };
        for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
                char params[256];
                snprintf(params, sizeof(params), "%s%s", head, cases[i].line);
                int r = settings_check_services(&s, params, &p);
                if (cases[i].own)
                        assert_int_equal(r, 0);
                else
                        assert_true(r < 0);
        }
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_render_follows_the_table),
                cmocka_unit_test(test_flags),
                cmocka_unit_test(test_checked_names),
                cmocka_unit_test(test_services_read_the_certificate_rows),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
