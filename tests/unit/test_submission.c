/* test_submission.c - the submission services' pure parts: which service names settings take
 * (byte by byte: they become master.cf's first field), the settings members submission and
 * submissions (null, PUT's defaults, PATCH's merge, the refusals and the fields they name, the
 * JSON form round trip), the -o parameters each kind sets and their read-back from postconf -P,
 * the parsing of postconf -M lines, and the one-hunk diff of master.cf (core/map_diff.c). The real
 * master.cf and real clients are in tests/system/test_submission.py. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <cmocka.h>

#include "core/map_diff.h"
#include "core/submission.h"
#include "util.h"

static void test_service_names(void **state)
{
        static const char *const good[] = {
                "submission",
                "submissions",
                "587",
                "465",
                "10587",
                "65535",
                "1",
                "127.0.0.1:10587",
                "[::1]:10465",
                "[2001:db8::1]:submission",
                "0.0.0.0:587",
                "10.1.2.3:smtps",
                "255.255.255.255:x1",
        };
        static const char *const bad[] = {
                "",
                "smtp",
                "25",
                "127.0.0.1:25",
                "[::1]:smtp",
                "0",
                "65536",
                "0587",
                "Submission",
                "sub mission",
                "587\n",
                "-x",
                "x-",
                "1abc:",
                ":587",
                "127.0.0.1:",
                "[::1]",
                "[::1:587",
                "[x::1]:587",
                "[1.2.3.4]:587",
                "host..a:587",
                "-host:587",
                "host-:587",
                "a/b",
                "a=b",
                "$port",
                "a,b:587",
                "*:587",
                "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", /* a port name of 33 */
                "a.very.long.host.name.that.goes.on.and.on.and.on.and.on.example.org:587",
                "mail.example:587",
                "localhost:smtps",
                "256.1.1.1:587",
                "1.2.3:587",
                "1.2.3.4.5:587",
                "01.2.3.4:587",
                "1..2.3:587",
                "1.2.3.4444:587",
        };
        for (size_t i = 0; i < ARRAY_SIZE(good); i++)
                if (!submission_service_is_valid(good[i]))
                        fail_msg("refused: '%s'", good[i]);
        for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
                if (submission_service_is_valid(bad[i]))
                        fail_msg("taken: '%s'", bad[i]);
        assert_false(submission_service_is_valid(NULL));
}

static struct settings base(void)
{
        struct settings s;
        settings_defaults(&s);
        s.managed = true;
        s.mode = MODE_MAY;
        snprintf(s.certificate, sizeof(s.certificate), "mx");
        return s;
}

static int apply(struct settings *s, const char *body, bool patch, struct problem *p)
{
        json_error_t e;
        json_t *j = json_loads(body, JSON_ALLOW_NUL, &e);
        if (!j)
                fail_msg("bad test JSON: %s", body);
        problem_reset(p);
        int r = settings_apply_json(s, j, patch, p);
        json_decref(j);
        return r;
}

static void test_settings_members(void **state)
{
        struct problem p = { 0 };
        struct settings s = base();
        const struct submission_service *sub = &s.services[SUBMISSION_STARTTLS],
                                        *subs = &s.services[SUBMISSION_IMPLICIT];
        /* not sent: null, master.cf is the administrator's */
        assert_int_equal(apply(&s, "{\"mode\": \"may\", \"certificate\": \"mx\"}", false, &p), 0);
        assert_false(sub->managed);
        assert_false(subs->managed);
        /* the default service names */
        assert_int_equal(apply(&s,
                               "{\"mode\": \"may\", \"certificate\": \"mx\", \"submission\": "
                               "{\"enabled\": true}, \"submissions\": {\"enabled\": false}}",
                               false, &p),
                         0);
        assert_true(sub->managed && sub->enabled);
        assert_string_equal(sub->service, "submission");
        assert_true(subs->managed && !subs->enabled);
        assert_string_equal(subs->service, "submissions");
        /* an object without enabled: enabled (sending the member asks for the service) */
        struct settings t = s;
        assert_int_equal(apply(&t, "{\"submission\": {}}", true, &p), 0);
        assert_true(t.services[SUBMISSION_STARTTLS].enabled);
        /* PATCH merges into the member: the service name stays */
        assert_int_equal(
            apply(&s, "{\"submissions\": {\"service\": \"127.0.0.1:10465\"}}", true, &p), 0);
        assert_true(subs->managed && !subs->enabled);
        assert_string_equal(subs->service, "127.0.0.1:10465");
        assert_int_equal(apply(&s, "{\"submissions\": {\"enabled\": true}}", true, &p), 0);
        assert_true(subs->enabled);
        assert_string_equal(subs->service, "127.0.0.1:10465");
        assert_true(sub->managed && sub->enabled); /* not named: unchanged */
        /* the JSON form, and a GET's reply PUT back is the same settings */
        json_t *j = settings_to_json(&s);
        json_t *m = json_object_get(j, "submissions");
        assert_true(json_is_true(json_object_get(m, "enabled")));
        assert_string_equal(json_string_value(json_object_get(m, "service")), "127.0.0.1:10465");
        struct settings back = s;
        assert_int_equal(settings_apply_json(&back, j, false, &p), 0);
        json_decref(j);
        assert_memory_equal(&back.services, &s.services, sizeof(s.services));
        /* null: left alone again (PATCH and PUT) */
        assert_int_equal(apply(&s, "{\"submission\": null}", true, &p), 0);
        assert_false(sub->managed);
        j = settings_to_json(&s);
        assert_true(json_is_null(json_object_get(j, "submission")));
        json_decref(j);

        /* refusals: each names its field, and changes nothing */
        static const struct {
                const char *body;
                enum problem_code code;
                const char *field;
        } refused[] = {
                { "{\"submission\": true}", PROBLEM_INVALID_VALUE, "/submission" },
                { "{\"submission\": \"587\"}", PROBLEM_INVALID_VALUE, "/submission" },
                { "{\"submission\": {\"enabled\": \"yes\"}}", PROBLEM_INVALID_VALUE,
                  "/submission/enabled" },
                { "{\"submission\": {\"enabled\": 1}}", PROBLEM_INVALID_VALUE,
                  "/submission/enabled" },
                { "{\"submission\": {\"enabled\": true, \"port\": 587}}", PROBLEM_UNKNOWN_FIELD,
                  "/submission/port" },
                { "{\"submission\": {\"enabled\": true, \"service\": \"smtp\"}}",
                  PROBLEM_INVALID_VALUE, "/submission/service" },
                { "{\"submissions\": {\"enabled\": true, \"service\": \"465 -o x=y\"}}",
                  PROBLEM_INVALID_VALUE, "/submissions/service" },
                { "{\"submissions\": {\"enabled\": true, \"service\": \"a\\u0000b\"}}",
                  PROBLEM_INVALID_VALUE, "/submissions/service" },
                { "{\"submissions\": {\"enabled\": true, \"service\": 465}}", PROBLEM_INVALID_VALUE,
                  "/submissions/service" },
                { "{\"submission\": {\"enabled\": true, \"service\": \"x\"}, \"submissions\": "
                  "{\"enabled\": false, \"service\": \"x\"}}",
                  PROBLEM_INVALID_VALUE, "/submissions/service" },
                { "{\"certificate\": null, \"mode\": \"none\", \"submission\": {\"enabled\": "
                  "true}}",
                  PROBLEM_CERTIFICATE_REQUIRED, "/certificate" },
        };
        for (size_t i = 0; i < ARRAY_SIZE(refused); i++) {
                struct settings before = s;
                int r = apply(&s, refused[i].body, true, &p);
                if (r >= 0 || p.code != refused[i].code || !streq(p.field, refused[i].field))
                        fail_msg("%s: %d %s at '%s' (%s)", refused[i].body, r,
                                 problem_code_name(p.code), p.field, p.detail);
                assert_memory_equal(&s, &before, sizeof(s));
        }
        /* an enabled service keeps its name (the old entry would stay, enabled, unmanaged):
         * disabled first, then renamed */
        assert_true(apply(&s, "{\"submissions\": {\"service\": \"465\"}}", true, &p) < 0);
        assert_int_equal(p.code, PROBLEM_SERVICE_CONFLICT);
        assert_string_equal(p.field, "/submissions/service");
        /* a null member of the object: its default (RFC 7396) */
        struct settings u = s;
        assert_int_equal(apply(&u, "{\"submissions\": {\"enabled\": null}}", true, &p), 0);
        assert_true(u.services[SUBMISSION_IMPLICIT].enabled);
        assert_int_equal(apply(&u, "{\"submissions\": {\"enabled\": false}}", true, &p), 0);
        assert_int_equal(apply(&u, "{\"submissions\": {\"service\": null}}", true, &p), 0);
        assert_string_equal(u.services[SUBMISSION_IMPLICIT].service, "submissions");
        /* disabled needs no certificate; unbinding with one enabled is refused */
        assert_int_equal(
            apply(&s,
                  "{\"mode\": \"none\", \"submission\": {\"enabled\": false}, "
                  "\"submissions\": {\"enabled\": false, \"service\": \"127.0.0.1:10465\"}}",
                  false, &p),
            0);
        assert_int_equal(
            apply(&s, "{\"certificate\": \"mx\", \"submissions\": {\"enabled\": true}}", true, &p),
            0);
        assert_true(apply(&s, "{\"certificate\": null}", true, &p) < 0);
        assert_int_equal(p.code, PROBLEM_CERTIFICATE_REQUIRED);
        problem_done(&p);
}

static void test_params_and_read_back(void **state)
{
        const struct submission_param *p = submission_params(SUBMISSION_STARTTLS);
        bool level = false, auth_only = false, sasl = false, wrapper = false;
        for (; p->name; p++) {
                level = level ||
                        (streq(p->name, "smtpd_tls_security_level") && streq(p->value, "encrypt"));
                auth_only = auth_only || streq(p->name, "smtpd_tls_auth_only");
                sasl = sasl || streq(p->name, "smtpd_sasl_auth_enable");
                wrapper = wrapper || streq(p->name, "smtpd_tls_wrappermode");
        }
        assert_true(level && auth_only && sasl && !wrapper);
        level = wrapper = false;
        for (p = submission_params(SUBMISSION_IMPLICIT); p->name; p++) {
                level = level || streq(p->name, "smtpd_tls_security_level");
                wrapper =
                    wrapper || (streq(p->name, "smtpd_tls_wrappermode") && streq(p->value, "yes"));
        }
        assert_true(wrapper && !level);

        char missing[128];
        const char *all = "127.0.0.1:10465/inet/smtpd_client_restrictions = x\n"
                          "127.0.0.1:10465/inet/syslog_name = postfix/submissions\n"
                          "127.0.0.1:10465/inet/smtpd_tls_wrappermode = yes\n"
                          "127.0.0.1:10465/inet/smtpd_sasl_auth_enable = yes\n";
        assert_true(submission_params_present("127.0.0.1:10465", SUBMISSION_IMPLICIT, all, missing,
                                              sizeof(missing)));
        assert_string_equal(missing, "");
        /* another service's lines, another value, a longer name: not present */
        assert_false(submission_params_present("127.0.0.1:1046", SUBMISSION_IMPLICIT, all, missing,
                                               sizeof(missing)));
        const char *no = "s/inet/syslog_name = postfix/submissions\n"
                         "s/inet/smtpd_tls_wrappermode = no\n"
                         "s/inet/smtpd_sasl_auth_enable = yes\n";
        assert_false(
            submission_params_present("s", SUBMISSION_IMPLICIT, no, missing, sizeof(missing)));
        assert_string_equal(missing, "smtpd_tls_wrappermode=yes");
        assert_false(
            submission_params_present("s", SUBMISSION_STARTTLS, "", missing, sizeof(missing)));

        char entry[128];
        assert_int_equal(submission_entry("[::1]:10587", "y", entry, sizeof(entry)), 0);
        assert_string_equal(entry, "[::1]:10587 inet n - y - - smtpd");
        assert_true(submission_entry("submission", "n", entry, 10) < 0);
}

static void test_master_entries(void **state)
{
        struct master_entry e;
        assert_int_equal(master_entry_parse("submission inet n       -       y       -       -  "
                                            "     smtpd -o syslog_name=postfix/submission\nx",
                                            &e),
                         0);
        assert_string_equal(e.field[ME_SERVICE], "submission");
        assert_string_equal(e.field[ME_TYPE], "inet");
        assert_string_equal(e.field[ME_CHROOT], "y");
        assert_string_equal(e.field[ME_COMMAND], "smtpd");
        master_entry_done(&e);
        assert_true(master_entry_parse("pickup unix n - y 60", &e) < 0);
        master_entry_done(&e);
        assert_true(master_entry_parse("", &e) < 0);
        master_entry_done(&e);
        /* a line of any length (an entry with many -o options) */
        char *long_line = malloc(70000);
        assert_non_null(long_line);
        strcpy(long_line, "127.0.0.1:10587 inet n - n - - smtpd");
        for (size_t o = strlen(long_line); o < 69000; o += 10)
                memcpy(long_line + o, " -o a=bbbb", 11);
        assert_int_equal(master_entry_parse(long_line, &e), 0);
        assert_string_equal(e.field[ME_COMMAND], "smtpd");
        master_entry_done(&e);
        free(long_line);

        char host[SUBMISSION_SERVICE_MAX + 1], port[SUBMISSION_SERVICE_MAX + 1];
        submission_service_split("[::1]:10465", host, sizeof(host), port, sizeof(port));
        assert_string_equal(host, "[::1]");
        assert_string_equal(port, "10465");
        submission_service_split("submission", host, sizeof(host), port, sizeof(port));
        assert_string_equal(host, "");
        assert_string_equal(port, "submission");
}

static void test_text_diff(void **state)
{
        const char *old = "a\nb\nc\nd\n";
        char *d = text_diff("master.cf", old, strlen(old), old, strlen(old));
        assert_string_equal(d, "");
        free(d);
        /* an entry appended */
        const char *appended = "a\nb\nc\nd\ne\n  -o x=y\n";
        d = text_diff("master.cf", old, strlen(old), appended, strlen(appended));
        assert_string_equal(d, "--- master.cf (live)\n+++ master.cf (planned)\n@@ -4,0 +5,2 @@\n"
                               "+e\n+  -o x=y\n");
        free(d);
        /* one commented out in the middle */
        const char *commented = "a\n#b\nc\nd\n";
        d = text_diff("master.cf", old, strlen(old), commented, strlen(commented));
        assert_string_equal(d, "--- master.cf (live)\n+++ master.cf (planned)\n@@ -2,1 +2,1 @@\n"
                               "-b\n+#b\n");
        free(d);
        /* both: one hunk from the first change to the last */
        const char *both = "a\n#b\nc\nd\ne\n";
        d = text_diff("master.cf", old, strlen(old), both, strlen(both));
        assert_string_equal(d, "--- master.cf (live)\n+++ master.cf (planned)\n@@ -2,3 +2,4 @@\n"
                               "-b\n-c\n-d\n+#b\n+c\n+d\n+e\n");
        free(d);
        /* a repeated line at the seam, and no final newline */
        d = text_diff("m", "x\nx\n", 4, "x\nx\nx", 5);
        assert_string_equal(d, "--- m (live)\n+++ m (planned)\n@@ -2,0 +3,1 @@\n+x\n");
        free(d);
        d = text_diff("m", "", 0, "x\n", 2);
        assert_string_equal(d, "--- m (live)\n+++ m (planned)\n@@ -0,0 +1,1 @@\n+x\n");
        free(d);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_service_names),
                cmocka_unit_test(test_settings_members),
                cmocka_unit_test(test_params_and_read_back),
                cmocka_unit_test(test_master_entries),
                cmocka_unit_test(test_text_diff),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
