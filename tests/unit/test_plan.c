/* test_plan.c - the plan (apply/plan.c) against real files in a temporary Postfix directory: what
 * changes when the settings or the policies change (main.cf parameters, whether Postfix must
 * reload, whether the policy map is rebuilt), which certificate files an apply writes and where,
 * the dry run's JSON (changes, reload, postmap, the map's diff), drift, and the pure map diff
 * (core/map_diff.c). Nothing is mocked: the plan reads the files as the worker's would. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "apply/fsutil.h"
#include "apply/layout.h"
#include "apply/plan.h"
#include "conf.h"
#include "core/map_diff.h"
#include "util.h"

#define FP                                                                                         \
        "AB:CD:EF:01:23:45:67:89:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:"  \
        "FF:00:11"

static char root[64];
static char postfix_dir[256], cert_dir[256], acme_dir[256];
static struct config cfg;

static int setup(void **state)
{
        snprintf(root, sizeof(root), "/tmp/test_plan.XXXXXX");
        if (!mkdtemp(root))
                return -1;
        snprintf(postfix_dir, sizeof(postfix_dir), "%s/postfix", root);
        snprintf(cert_dir, sizeof(cert_dir), "%s/certs", root);
        snprintf(acme_dir, sizeof(acme_dir), "%s/live", root);
        cfg = (struct config){ .postfix_config_directory = postfix_dir,
                               .certificate_directory = cert_dir,
                               .acme_live_directory = acme_dir,
                               .system_ca_file = (char *)"/nonexistent/ca.pem",
                               .policy_map_type = (char *)"hash" };
        return fs_mkdir_p(postfix_dir, 0700) < 0 ? -1 : 0;
}

static int teardown(void **state)
{
        return fs_remove_tree(root) < 0 ? -1 : 0;
}

static void write_main_cf(const char *text, size_t len)
{
        char path[PATH_MAX];
        assert_int_equal(layout_main_cf(&cfg, path, sizeof(path)), 0);
        assert_int_equal(fs_write_file(path, text, len, 0644), 0);
}

/* The live files become what the plan renders: main.cf, the map text and its index. */
static void apply_plan(const struct plan *p)
{
        char map[PATH_MAX], index[PATH_MAX + 8];
        write_main_cf(p->main_cf_new, p->new_len);
        assert_int_equal(layout_policy_map(&cfg, map, sizeof(map)), 0);
        snprintf(index, sizeof(index), "%s%s", map, layout_map_suffix(cfg.policy_map_type));
        if (p->map_managed) {
                assert_int_equal(fs_write_file(map, p->map_text, p->map_len, 0644), 0);
                assert_int_equal(fs_write_file(index, "index", 5, 0644), 0);
        }
}

static void desired_managed(struct desired *d, const char *map_text)
{
        *d = (struct desired){ 0 };
        settings_defaults(&d->settings);
        d->settings.managed = true;
        d->map_managed = true;
        d->map_text = (char *)map_text;
        d->map_len = strlen(map_text);
        d->map_borrowed = true;
}

static json_t *plan_json(const struct plan *p)
{
        json_t *j = reconcile_plan_json(&cfg, p);
        assert_non_null(j);
        return j;
}

static void test_unmanaged(void **state)
{
        struct desired d = { 0 };
        struct plan p;
        settings_defaults(&d.settings);
        /* nothing managed and no main.cf: an empty plan that reads and writes nothing */
        assert_int_equal(reconcile_plan(&cfg, &d, &p, NULL), 0);
        assert_false(p.main_cf_changed || p.reload || p.map_changed || p.write_cert);
        assert_int_equal(p.n_params, 0);
        plan_done(&p);
        /* main.cf of the administrator's own: left as it is */
        static const char text[] = "myhostname = mx.example\nsmtpd_tls_loglevel = 3\n";
        write_main_cf(text, strlen(text));
        assert_int_equal(reconcile_plan(&cfg, &d, &p, NULL), 0);
        assert_false(p.main_cf_changed || p.reload || p.map_changed || p.write_cert);
        assert_string_equal(p.main_cf_new, text);
        json_t *drift = reconcile_drift(&cfg, &p);
        assert_int_equal(json_array_size(drift), 0);
        json_decref(drift);
        plan_done(&p);
}

/* The name, old and new value of a dry run's change i. */
static void check_change(json_t *changes, size_t i, const char *name, const char *old,
                         const char *new)
{
        json_t *c = json_array_get(changes, i);
        assert_non_null(c);
        assert_string_equal(json_string_value(json_object_get(c, "name")), name);
        if (old)
                assert_string_equal(json_string_value(json_object_get(c, "old")), old);
        else
                assert_true(json_is_null(json_object_get(c, "old")));
        if (new)
                assert_string_equal(json_string_value(json_object_get(c, "new")), new);
        else
                assert_true(json_is_null(json_object_get(c, "new")));
}

static void test_settings_and_policies(void **state)
{
        struct desired d;
        struct plan p;
        static const char text[] = "myhostname = mx.example\nsmtpd_tls_loglevel = 3\n"
                                   "smtp_tls_policy_maps = hash:/etc/postfix/mine\n";
        write_main_cf(text, strlen(text));

        /* the first settings write: main.cf changes (a reload), the map is built */
        desired_managed(&d, "");
        assert_int_equal(reconcile_plan(&cfg, &d, &p, NULL), 0);
        assert_true(p.main_cf_changed && p.reload && p.map_changed && p.map_managed);
        assert_false(p.write_cert);
        assert_false(p.expect_starttls); /* inbound none: no STARTTLS to see */
        json_t *j = plan_json(&p);
        json_t *changes = json_object_get(j, "main_cf");
        assert_true(json_is_true(json_object_get(j, "reload")));
        assert_true(json_is_true(json_object_get(j, "postmap")));
        check_change(changes, 0, "smtpd_tls_security_level", NULL, "none");
        /* ours first, the administrator's map after it */
        char maps[512];
        snprintf(maps, sizeof(maps), "hash:%s/smtptlsd_tls_policy, hash:/etc/postfix/mine",
                 postfix_dir);
        bool seen_loglevel = false, seen_maps = false;
        for (size_t i = 0; i < json_array_size(changes); i++) {
                const char *name =
                    json_string_value(json_object_get(json_array_get(changes, i), "name"));
                if (streq(name, "smtpd_tls_loglevel")) {
                        check_change(changes, i, name, "3", "1");
                        seen_loglevel = true;
                }
                if (streq(name, "smtp_tls_policy_maps")) {
                        check_change(changes, i, name, "hash:/etc/postfix/mine", maps);
                        seen_maps = true;
                }
        }
        assert_true(seen_loglevel && seen_maps);
        json_decref(j);
        apply_plan(&p);
        plan_done(&p);

        /* applied: nothing left to do, no drift */
        assert_int_equal(reconcile_plan(&cfg, &d, &p, NULL), 0);
        assert_false(p.main_cf_changed || p.reload || p.map_changed || p.write_cert);
        j = plan_json(&p);
        assert_int_equal(json_array_size(json_object_get(j, "main_cf")), 0);
        assert_true(json_is_false(json_object_get(j, "reload")));
        assert_true(json_is_false(json_object_get(j, "postmap")));
        assert_string_equal(json_string_value(json_object_get(j, "tls_policy_diff")), "");
        json_decref(j);
        json_t *drift = reconcile_drift(&cfg, &p);
        assert_int_equal(json_array_size(drift), 0);
        json_decref(drift);
        plan_done(&p);

        /* a settings change: those two parameters, a reload, the map untouched */
        d.settings.loglevel = 2;
        assert_int_equal(reconcile_plan(&cfg, &d, &p, NULL), 0);
        assert_true(p.main_cf_changed && p.reload);
        assert_false(p.map_changed || p.write_cert);
        j = plan_json(&p);
        changes = json_object_get(j, "main_cf");
        assert_int_equal(json_array_size(changes), 2);
        check_change(changes, 0, "smtpd_tls_loglevel", "1", "2");
        check_change(changes, 1, "smtp_tls_loglevel", "1", "2");
        json_decref(j);
        /* ... which is drift until applied */
        drift = reconcile_drift(&cfg, &p);
        assert_int_equal(json_array_size(drift), 2);
        assert_string_equal(json_string_value(json_object_get(json_array_get(drift, 0), "live")),
                            "1");
        assert_string_equal(json_string_value(json_object_get(json_array_get(drift, 0), "desired")),
                            "2");
        json_decref(drift);
        apply_plan(&p);
        plan_done(&p);

        /* a policy change: the map is rebuilt, main.cf stays, no reload (Postfix notices a new
         * index by itself) */
        desired_managed(&d, "a.example encrypt\nc.example may\n");
        d.settings.loglevel = 2;
        assert_int_equal(reconcile_plan(&cfg, &d, &p, NULL), 0);
        assert_true(p.map_changed);
        assert_false(p.main_cf_changed || p.reload || p.write_cert);
        j = plan_json(&p);
        assert_int_equal(json_array_size(json_object_get(j, "main_cf")), 0);
        assert_true(json_is_false(json_object_get(j, "reload")));
        assert_true(json_is_true(json_object_get(j, "postmap")));
        assert_string_equal(json_string_value(json_object_get(j, "tls_policy_diff")),
                            "--- smtptlsd_tls_policy (live)\n+++ smtptlsd_tls_policy (planned)\n"
                            "@@ -0,0 +1,1 @@\n+a.example encrypt\n"
                            "@@ -0,0 +2,1 @@\n+c.example may\n");
        json_decref(j);
        apply_plan(&p);
        plan_done(&p);

        /* a parameter we remove, set empty behind our back: main.cf is rewritten (and Postfix
         * reloaded), yet neither the dry run nor drift shows it (empty and removed are alike) */
        char main_cf[512], *live = NULL, *edited = NULL;
        size_t live_len = 0;
        assert_int_equal(layout_main_cf(&cfg, main_cf, sizeof(main_cf)), 0);
        assert_int_equal(fs_read_file(main_cf, LAYOUT_MAIN_CF_MAX, &live, &live_len), 0);
        assert_true(asprintf(&edited, "%ssmtpd_tls_protocols =\n", live) > 0);
        free(live);
        write_main_cf(edited, strlen(edited));
        free(edited);
        assert_int_equal(reconcile_plan(&cfg, &d, &p, NULL), 0);
        assert_true(p.main_cf_changed && p.reload);
        j = plan_json(&p);
        assert_int_equal(json_array_size(json_object_get(j, "main_cf")), 0);
        json_decref(j);
        drift = reconcile_drift(&cfg, &p);
        assert_int_equal(json_array_size(drift), 0);
        json_decref(drift);
        apply_plan(&p);
        plan_done(&p);

        /* the index gone behind our back: rebuilt, still no reload */
        char index[512];
        snprintf(index, sizeof(index), "%s/smtptlsd_tls_policy.db", postfix_dir);
        assert_int_equal(unlink(index), 0);
        assert_int_equal(reconcile_plan(&cfg, &d, &p, NULL), 0);
        assert_true(p.map_changed);
        assert_false(p.main_cf_changed || p.reload);
        plan_done(&p);
}

static void test_certificate_files(void **state)
{
        struct desired d;
        struct plan p;
        desired_managed(&d, "");
        d.settings.mode = MODE_MAY;
        snprintf(d.settings.certificate, sizeof(d.settings.certificate), "mx");
        snprintf(d.settings.additional_certificate, sizeof(d.settings.additional_certificate),
                 "le");
        d.n_certs = 2;
        d.certs[0] = (struct cert_row){ .name = "mx",
                                        .type = "imported",
                                        .certificate_pem = (char *)"LEAF\n",
                                        .chain_pem = (char *)"CA\n",
                                        .private_key_pem = (char *)"KEY\n",
                                        .sha256_fingerprint = FP,
                                        .key_type = "EC" };
        d.certs[1] = (struct cert_row){
                .name = "le", .type = "acme", .sha256_fingerprint = "11:22", .key_type = "RSA"
        };
        write_main_cf("", 0);
        assert_int_equal(reconcile_plan(&cfg, &d, &p, NULL), 0);
        assert_int_equal(p.n_certs, 2);
        /* the imported one: a new version directory named after its content, written */
        char dir[512], key[600], chain[600];
        snprintf(dir, sizeof(dir), "%s/mx/abcdef0123456789", cert_dir);
        snprintf(key, sizeof(key), "%s/privkey.pem", dir);
        snprintf(chain, sizeof(chain), "%s/fullchain.pem", dir);
        assert_true(p.write_cert && p.certs[0].write);
        assert_string_equal(p.certs[0].dir, dir);
        assert_string_equal(p.certs[0].key_path, key);
        assert_string_equal(p.certs[0].chain_path, chain);
        assert_string_equal(p.certs[0].fullchain_pem, "LEAF\nCA\n");
        assert_string_equal(p.certs[0].key_pem, "KEY\n");
        assert_string_equal(p.certs[0].field, "/certificate");
        assert_string_equal(p.certs[0].acme_name, "");
        /* the ACME one: used in place, never written */
        assert_false(p.certs[1].write);
        assert_string_equal(p.certs[1].acme_name, "le");
        char acme_key[600];
        snprintf(acme_key, sizeof(acme_key), "%s/le/privkey.pem", acme_dir);
        assert_string_equal(p.certs[1].key_path, acme_key);
        assert_string_equal(p.certs[1].field, "/additional_certificate");
        /* chain_files: each key followed by its chain, certificate first */
        char want[4096];
        snprintf(want, sizeof(want), "%s, %s, %s/le/privkey.pem, %s/le/fullchain.pem", key, chain,
                 acme_dir, acme_dir);
        bool seen = false;
        for (size_t i = 0; i < p.n_params; i++)
                if (streq(p.params[i].name, "smtpd_tls_chain_files")) {
                        assert_string_equal(p.params[i].value, want);
                        seen = true;
                }
        assert_true(seen);
        /* STARTTLS must then serve both */
        assert_true(p.expect_starttls);
        assert_string_equal(p.expect_fingerprint, FP ",11:22");
        apply_plan(&p);
        plan_done(&p);

        /* the version directory exists: nothing to write, nothing changes */
        assert_int_equal(fs_mkdir_p(dir, 0700), 0);
        assert_int_equal(fs_write_file(key, "KEY\n", 4, 0600), 0);
        assert_int_equal(fs_write_file(chain, "LEAF\nCA\n", 8, 0644), 0);
        assert_int_equal(reconcile_plan(&cfg, &d, &p, NULL), 0);
        assert_false(p.write_cert || p.certs[0].write || p.main_cf_changed || p.reload);
        assert_null(p.certs[0].key_pem);
        plan_done(&p);

        /* a file of it lost: written again */
        assert_int_equal(unlink(chain), 0);
        assert_int_equal(reconcile_plan(&cfg, &d, &p, NULL), 0);
        assert_true(p.write_cert && p.certs[0].write);
        assert_false(p.main_cf_changed);
        plan_done(&p);
        assert_int_equal(fs_remove_tree(cert_dir), 0);
}

static void test_map_diff(void **state)
{
        char *s = map_diff("m", "a x\nc z\n", 8, "a x\nb y\n", 8);
        assert_string_equal(s, "--- m (live)\n+++ m (planned)\n@@ -1,0 +2,1 @@\n+b y\n"
                               "@@ -2,1 +2,0 @@\n-c z\n");
        free(s);
        s = map_diff("m", "a x\nb y\n", 8, "a x\nb y\n", 8);
        assert_string_equal(s, "");
        free(s);
        /* a changed value: the old line out, then the new one in (the last without '\n') */
        s = map_diff("m", "a x\n", 4, "a y", 3);
        assert_string_equal(s, "--- m (live)\n+++ m (planned)\n@@ -1,1 +0,0 @@\n-a x\n"
                               "@@ -1,0 +1,1 @@\n+a y\n");
        free(s);
        s = map_diff("m", "", 0, "", 0);
        assert_string_equal(s, "");
        free(s);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_unmanaged, setup, teardown),
                cmocka_unit_test(test_map_diff),
                cmocka_unit_test_setup_teardown(test_settings_and_policies, setup, teardown),
                cmocka_unit_test_setup_teardown(test_certificate_files, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
