/* test_layout.c - the paths apply/layout.c derives: main.cf, the state directory and what is
 * staged and kept there, the policy map and its index suffix per map type, an imported
 * certificate's version directory (named after its fingerprint: 16 lower-case hex digits, no
 * colons), an ACME one's live directory, the API's view of a certificate's files, and
 * -ENAMETOOLONG for a buffer too small (never a truncated path). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <limits.h>

#include "apply/layout.h"
#include "conf.h"
#include "util.h"

static struct config cfg = {
        .postfix_config_directory = (char *)"/etc/postfix",
        .certificate_directory = (char *)"/var/lib/smtptlsd/certs",
        .acme_live_directory = (char *)"/etc/letsencrypt/live",
        .system_certificate_file = (char *)"/etc/ssl/certs/ssl-cert-snakeoil.pem",
        .system_key_file = (char *)"/etc/ssl/private/ssl-cert-snakeoil.key",
        .policy_map_type = (char *)"hash",
};

#define FP                                                                                         \
        "AB:CD:EF:01:23:45:67:89:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:"  \
        "FF:00:11"

static void test_postfix_paths(void **state)
{
        char buf[PATH_MAX];
        static const struct {
                int (*fn)(const struct config *, char *, size_t);
                const char *want;
        } cases[] = {
                { layout_main_cf, "/etc/postfix/main.cf" },
                { layout_state_dir, "/etc/postfix/.smtptlsd" },
                { layout_check_dir, "/etc/postfix/.smtptlsd/check" },
                { layout_main_cf_lkg, "/etc/postfix/.smtptlsd/main.cf.lkg" },
                { layout_policy_map, "/etc/postfix/smtptlsd_tls_policy" },
                { layout_policy_index, "/etc/postfix/smtptlsd_tls_policy.db" },
                { layout_policy_staged, "/etc/postfix/.smtptlsd/tls_policy.new" },
                { layout_policy_lkg, "/etc/postfix/.smtptlsd/tls_policy.lkg" },
        };
        for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
                assert_int_equal(cases[i].fn(&cfg, buf, sizeof(buf)), 0);
                assert_string_equal(buf, cases[i].want);
                /* exactly the room the path needs, and one byte less */
                size_t n = strlen(cases[i].want);
                assert_int_equal(cases[i].fn(&cfg, buf, n + 1), 0);
                assert_string_equal(buf, cases[i].want);
                assert_int_equal(cases[i].fn(&cfg, buf, n), -ENAMETOOLONG);
        }
}

static void test_map_suffix(void **state)
{
        assert_string_equal(layout_map_suffix("hash"), ".db");
        assert_string_equal(layout_map_suffix("btree"), ".db");
        assert_string_equal(layout_map_suffix("lmdb"), ".lmdb");
        assert_string_equal(layout_map_suffix("cdb"), ".cdb");
}

static void test_certificate_dirs(void **state)
{
        char buf[PATH_MAX], small[40];
        /* the version: the fingerprint's first 16 hex digits, lower case, without colons */
        assert_int_equal(layout_imported_dir(&cfg, "mx", FP, buf, sizeof(buf)), 0);
        assert_string_equal(buf, "/var/lib/smtptlsd/certs/mx/abcdef0123456789");
        assert_int_equal(layout_imported_dir(&cfg, "mx", FP, small, sizeof(small)), -ENAMETOOLONG);
        /* a different content is a different directory: nothing live is overwritten */
        assert_int_equal(layout_imported_dir(&cfg, "mx", "0011223344556677aa", buf, sizeof(buf)),
                         0);
        assert_string_equal(buf, "/var/lib/smtptlsd/certs/mx/0011223344556677");
        assert_int_equal(layout_acme_dir(&cfg, "mail.example", buf, sizeof(buf)), 0);
        assert_string_equal(buf, "/etc/letsencrypt/live/mail.example");
        assert_int_equal(layout_join("/a/b", "privkey.pem", buf, sizeof(buf)), 0);
        assert_string_equal(buf, "/a/b/privkey.pem");
        assert_int_equal(layout_join("/a/b", "privkey.pem", buf, 16), -ENAMETOOLONG);
        assert_int_equal(layout_join("/a/b", "privkey.pem", buf, 17), 0);
}

static void check_files(json_t *cert, const char *chain, const char *key)
{
        json_t *j = layout_cert_files_json(&cfg, cert);
        if (!chain) {
                assert_true(json_is_null(j));
        } else {
                assert_string_equal(json_string_value(json_object_get(j, "chain")), chain);
                assert_string_equal(json_string_value(json_object_get(j, "key")), key);
        }
        json_decref(j);
        json_decref(cert);
}

static void test_cert_files_json(void **state)
{
        check_files(json_pack("{s:s, s:s, s:s}", "name", "mx", "type", "imported",
                              "sha256_fingerprint", FP),
                    "/var/lib/smtptlsd/certs/mx/abcdef0123456789/fullchain.pem",
                    "/var/lib/smtptlsd/certs/mx/abcdef0123456789/privkey.pem");
        check_files(json_pack("{s:s, s:s}", "name", "le", "type", "acme"),
                    "/etc/letsencrypt/live/le/fullchain.pem",
                    "/etc/letsencrypt/live/le/privkey.pem");
        check_files(json_pack("{s:s, s:s}", "name", "snakeoil", "type", "system"),
                    "/etc/ssl/certs/ssl-cert-snakeoil.pem",
                    "/etc/ssl/private/ssl-cert-snakeoil.key");
        check_files(json_pack("{s:s}", "type", "imported"), NULL, NULL);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_postfix_paths),
                cmocka_unit_test(test_map_suffix),
                cmocka_unit_test(test_certificate_dirs),
                cmocka_unit_test(test_cert_files_json),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
