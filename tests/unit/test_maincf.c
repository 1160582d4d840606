/* test_maincf.c - reading and editing main.cf: continuation lines, comments between a line and
 * its continuation, duplicates, missing keys, no trailing newline, and every unmanaged byte kept.
 */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "apply/fsutil.h"
#include "apply/maincf.h"
#include "util.h"

static char *get(const char *text, const char *name)
{
        char *v = NULL;
        int r = maincf_get(text, strlen(text), name, &v);
        return r < 0 ? NULL : v;
}

static char *edit(const char *text, const struct maincf_param *p, size_t n)
{
        char *out = NULL;
        size_t len = 0;
        assert_int_equal(maincf_edit(text, strlen(text), p, n, &out, &len), 0);
        assert_int_equal(strlen(out), len);
        return out;
}

static void expect_get(const char *text, const char *name, const char *want)
{
        char *v = get(text, name);
        if (!want) {
                if (v)
                        fail_msg("%s: got '%s', want none", name, v);
                return;
        }
        if (!v || !streq(v, want))
                fail_msg("%s: got '%s', want '%s'", name, v ? v : "(none)", want);
        free(v);
}

static void test_get(void **state)
{
        const char *cf = "# smtpd_tls_security_level = encrypt\n"
                         "myhostname = mx.example.com\n"
                         "smtpd_tls_security_level=may\n"
                         "smtpd_tls_chain_files =\n"
                         "    /k.pem,\n"
                         "# a comment inside\n"
                         "\t/c.pem\n"
                         "smtpd_tls_security_level_x = none\n"
                         "  \n"
                         "mydestination = a, b\n"
                         "mydestination = c\n";
        expect_get(cf, "smtpd_tls_security_level", "may");
        expect_get(cf, "smtpd_tls_chain_files", "/k.pem, /c.pem");
        expect_get(cf, "mydestination", "c"); /* the last definition wins */
        expect_get(cf, "myhostname", "mx.example.com");
        expect_get(cf, "smtp_tls_security_level", NULL);
        expect_get(cf, "smtpd_tls", NULL); /* a prefix is not a name */
        expect_get("x = 1", "x", "1");     /* no newline at the end */
        expect_get("x =\n", "x", "");
}

static void test_edit_keeps_everything_else(void **state)
{
        const char *cf = "# Administrator's notes, keep me\n"
                         "myhostname = mx.example.com\n"
                         "\n"
                         "smtpd_tls_security_level = none   # old\n"
                         "smtpd_banner = $myhostname ESMTP\n"
                         "smtpd_tls_cert_file = /etc/ssl/certs/ssl-cert-snakeoil.pem\n"
                         "smtpd_tls_key_file = /etc/ssl/private/ssl-cert-snakeoil.key\n"
                         "relay_domains =\n"
                         "    a.example,\n"
                         "    b.example\n";
        const struct maincf_param p[] = {
                { "smtpd_tls_security_level", "may" },
                { "smtpd_tls_cert_file", NULL },
                { "smtpd_tls_key_file", NULL },
                { "smtpd_tls_chain_files", "/k.pem, /c.pem" },
        };
        char *out = edit(cf, p, ARRAY_SIZE(p));
        assert_string_equal(out, "# Administrator's notes, keep me\n"
                                 "myhostname = mx.example.com\n"
                                 "\n"
                                 "smtpd_tls_security_level = may\n"
                                 "smtpd_banner = $myhostname ESMTP\n"
                                 "relay_domains =\n"
                                 "    a.example,\n"
                                 "    b.example\n"
                                 "smtpd_tls_chain_files = /k.pem, /c.pem\n");
        free(out);
}

static void test_continuations_and_duplicates(void **state)
{
        const char *cf = "smtp_tls_policy_maps =\n"
                         "  hash:/etc/postfix/a,\n"
                         "# comment between value lines stays\n"
                         "  hash:/etc/postfix/b\n"
                         "other = 1\n"
                         "smtp_tls_policy_maps = hash:/etc/postfix/c\n"
                         "  , hash:/etc/postfix/d\n"
                         "last = 2";
        const struct maincf_param p[] = { { "smtp_tls_policy_maps", "hash:/x/tls_policy" } };
        char *out = edit(cf, p, 1);
        assert_string_equal(out, "smtp_tls_policy_maps = hash:/x/tls_policy\n"
                                 "# comment between value lines stays\n"
                                 "other = 1\n"
                                 "last = 2");
        expect_get(out, "smtp_tls_policy_maps", "hash:/x/tls_policy");
        free(out);

        /* a missing key after a file without a final newline */
        const struct maincf_param q[] = { { "x", "1" } };
        out = edit("a = 1", q, 1);
        assert_string_equal(out, "a = 1\nx = 1\n");
        free(out);
        out = edit("", q, 1);
        assert_string_equal(out, "x = 1\n");
        free(out);
}

static void test_edit_is_idempotent(void **state)
{
        const char *cf = "a = 1\nsmtpd_tls_loglevel = 0\nb = 2\n";
        const struct maincf_param p[] = { { "smtpd_tls_loglevel", "1" }, { "c", "3" } };
        char *once = edit(cf, p, 2);
        char *twice = edit(once, p, 2);
        assert_string_equal(once, twice);
        free(once);
        free(twice);
}

static void test_refuses_multiline_values(void **state)
{
        static const char *const bad[] = { "may\nsmtpd_tls_security_level = none", "a\rb", "a\tb",
                                           "a\x7f" };
        for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
                const struct maincf_param p[] = { { "smtpd_tls_security_level", bad[i] } };
                char *out = NULL;
                size_t len;
                assert_int_equal(maincf_edit("a = 1\n", 6, p, 1, &out, &len), -EINVAL);
                assert_null(out);
        }
}

static void test_removing_everything(void **state)
{
        const struct maincf_param p[] = { { "a", NULL } };
        char *out = edit("a = 1\n  continued\n# kept\na = 2\n", p, 1);
        assert_string_equal(out, "# kept\n");
        free(out);
}

/* Issue 12 item 4: the name alone on its line, "= value" on an indented line after it (comments
 * and blank lines may come between). Postfix reads one definition; an edit replaces it rather
 * than appending a second one (postconf: "overriding earlier entry"). */
static void test_name_and_value_on_separate_lines(void **state)
{
        (void)state;
        const char *cf = "smtpd_tls_security_level\n"
                         "    = encrypt\n"
                         "smtp_tls_security_level\n"
                         "# a comment between the name and '='\n"
                         "\n"
                         "\t=\n"
                         "\tdane\n"
                         "biff = no\n";
        expect_get(cf, "smtpd_tls_security_level", "encrypt");
        expect_get(cf, "smtp_tls_security_level", "dane");
        const struct maincf_param p[] = { { "smtpd_tls_security_level", "may" },
                                          { "smtp_tls_security_level", "may" } };
        char *out = edit(cf, p, ARRAY_SIZE(p));
        assert_string_equal(out, "smtpd_tls_security_level = may\n"
                                 "smtp_tls_security_level = may\n"
                                 "# a comment between the name and '='\n"
                                 "\n"
                                 "biff = no\n");
        free(out);
}

/* Values read as postconf shows them: the physical lines are joined as they are (Postfix's
 * readllines() keeps the leading whitespace of a continuation line), then every run of
 * whitespace becomes one space (postconf's output). CRLF files keep their line endings. */
static void test_whitespace_and_crlf(void **state)
{
        (void)state;
        const char *cf = "a = x    y\t\tz  \r\n"
                         "b = 1,\r\n"
                         "  2\r\n"
                         "c\r\n"
                         "  = may\r\n"
                         "d =\r\n";
        expect_get(cf, "a", "x y z");
        expect_get(cf, "b", "1, 2");
        expect_get(cf, "c", "may");
        expect_get(cf, "d", "");
        const struct maincf_param p[] = { { "c", "encrypt" }, { "e", "1" } };
        char *out = edit(cf, p, ARRAY_SIZE(p));
        assert_string_equal(out, "a = x    y\t\tz  \r\n"
                                 "b = 1,\r\n"
                                 "  2\r\n"
                                 "c = encrypt\r\n"
                                 "d =\r\n"
                                 "e = 1\r\n");
        free(out);
}

/* smtp_tls_policy_maps: ours first, every other token kept verbatim and in order. */
#define OURS_PATH "/etc/postfix/smtptlsd_tls_policy"
#define OURS      "hash:" OURS_PATH

static void expect_merge(const char *value, const char *want)
{
        char *got = NULL;
        assert_int_equal(maincf_maps_merge(value, OURS, OURS_PATH, NULL, &got), 0);
        if (!streq(got, want))
                fail_msg("merge of '%s': got '%s', want '%s'", value ? value : "(unset)", got,
                         want);
        /* idempotent: merging the result again gives the result */
        char *again = NULL;
        assert_int_equal(maincf_maps_merge(got, OURS, OURS_PATH, NULL, &again), 0);
        if (!streq(again, want))
                fail_msg("merge of '%s' is not idempotent: '%s'", want, again);
        assert_true(maincf_maps_names(got, OURS_PATH));
        free(again);
        free(got);
}

/* Adopted maps (an import took their entries) are left out, byte for byte, wherever they are;
 * the walk gives the tokens as the merge splits them. */
static int collect_token(void *ctx, const char *token, size_t len)
{
        char *out = ctx;
        strncat(out, token, len);
        strcat(out, "|");
        return 0;
}

static void test_maps_merge_adopted(void **state)
{
        (void)state;
        static const char *const adopted[] = { "hash:/etc/postfix/tls_policy", "cdb:/etc/postfix/b",
                                               NULL };
        char *got = NULL;
        assert_int_equal(maincf_maps_merge("hash:/etc/postfix/tls_policy, inline:{ a=may },"
                                           "cdb:/etc/postfix/b hash:/etc/postfix/tls_policy2",
                                           OURS, OURS_PATH, adopted, &got),
                         0);
        assert_string_equal(got, OURS ", inline:{ a=may }, hash:/etc/postfix/tls_policy2");
        free(got);
        char tokens[256] = "";
        assert_int_equal(maincf_maps_each("a:/x, { b c },d:/y\te:/z", collect_token, tokens), 0);
        assert_string_equal(tokens, "a:/x|{ b c }|d:/y|e:/z|");
}

static void test_maps_merge(void **state)
{
        (void)state;
        expect_merge(NULL, OURS);
        expect_merge("", OURS);
        expect_merge(" , ,\t", OURS);
        expect_merge(OURS, OURS);
        /* commas and/or whitespace separate; the administrator's maps follow, in order */
        expect_merge("hash:/etc/postfix/admin, texthash:/etc/postfix/second",
                     OURS ", hash:/etc/postfix/admin, texthash:/etc/postfix/second");
        expect_merge("hash:/a texthash:/b,,cdb:/c\t lmdb:/d",
                     OURS ", hash:/a, texthash:/b, cdb:/c, lmdb:/d");
        /* ours is moved first, never doubled; another type of ours (a changed map type, a
         * proxy chain) is ours too */
        expect_merge("hash:/a, " OURS ", hash:/b", OURS ", hash:/a, hash:/b");
        expect_merge("lmdb:" OURS_PATH " proxy:hash:" OURS_PATH " hash:/a", OURS ", hash:/a");
        /* a longer path, a path inside another, a bare path: not ours */
        expect_merge("hash:" OURS_PATH "_extra, hash:/x" OURS_PATH "x",
                     OURS ", hash:" OURS_PATH "_extra, hash:/x" OURS_PATH "x");
        expect_merge(OURS_PATH, OURS ", " OURS_PATH);
        expect_merge("::" OURS_PATH ", a::" OURS_PATH ", a b:" OURS_PATH,
                     OURS ", ::" OURS_PATH ", a::" OURS_PATH ", a");
        /* brace groups (inline maps with spaces, nested) are one token, kept verbatim */
        expect_merge("inline:{ { a.example = encrypt }, { b.example = may } } hash:/a",
                     OURS ", inline:{ { a.example = encrypt }, { b.example = may } }, hash:/a");
        expect_merge("inline:{ {x = " OURS "} }", OURS ", inline:{ {x = " OURS "} }");
        /* whitespace control characters inside a group become spaces: one clean line */
        expect_merge("inline:{\t{ a = may }\r}", OURS ", inline:{ { a = may } }");
        /* unbalanced: the rest of the value is one token, kept */
        expect_merge("hash:/a inline:{ { a = may }, hash:/b",
                     OURS ", hash:/a, inline:{ { a = may }, hash:/b");
        expect_merge("hash:/a } hash:/b", OURS ", hash:/a, }, hash:/b");
        /* $parameters and unknown tokens are kept as they are */
        expect_merge("$smtp_tls_policy_maps_extra ${x}:/y socketmap:inet:127.0.0.1:8461:postfix",
                     OURS ", $smtp_tls_policy_maps_extra, ${x}:/y, "
                          "socketmap:inet:127.0.0.1:8461:postfix");

        assert_false(maincf_maps_names(NULL, OURS_PATH));
        assert_false(maincf_maps_names("hash:/a, hash:" OURS_PATH ".old", OURS_PATH));
        assert_false(maincf_maps_names("inline:{ {k = hash:" OURS_PATH "} }", OURS_PATH));
        assert_true(maincf_maps_names("hash:/a\thash:" OURS_PATH, OURS_PATH));
}

/* The merged list goes through maincf_edit() as a clean value, and a second render with it is
 * byte for byte the same file. */
static void test_maps_merge_through_edit(void **state)
{
        (void)state;
        const char *cf = "smtp_tls_policy_maps = hash:/etc/postfix/admin,\n"
                         "    texthash:/etc/postfix/second\n"
                         "\tinline:{ {a = may} }\n"
                         "biff = no\n";
        char *live = get(cf, "smtp_tls_policy_maps"), *merged = NULL;
        assert_int_equal(maincf_maps_merge(live, OURS, OURS_PATH, NULL, &merged), 0);
        struct maincf_param p[] = { { "smtp_tls_policy_maps", merged } };
        char *out = edit(cf, p, 1);
        assert_string_equal(out, "smtp_tls_policy_maps = " OURS ", hash:/etc/postfix/admin, "
                                 "texthash:/etc/postfix/second, inline:{ {a = may} }\n"
                                 "biff = no\n");
        char *live2 = get(out, "smtp_tls_policy_maps"), *merged2 = NULL;
        assert_int_equal(maincf_maps_merge(live2, OURS, OURS_PATH, NULL, &merged2), 0);
        struct maincf_param p2[] = { { "smtp_tls_policy_maps", merged2 } };
        char *out2 = edit(out, p2, 1);
        assert_string_equal(out2, out);
        free(out2);
        free(merged2);
        free(live2);
        free(out);
        free(merged);
        free(live);
}

/* ---- the corpus: tests/data/maincf (see tests/system/test_postfix_maincf.py) -------------- */

/* NAME.cf is read as NAME.n says postconf -n prints it (the system test holds NAME.n to the real
 * postconf), and edited with EDIT_PARAMS into NAME.edited byte for byte (which the system test
 * has the real postconf read). SMTPTLSD_UPDATE_CORPUS=1 writes NAME.edited instead of comparing:
 * review the diff before committing it. */
#define CORPUS_MAX_PARAMS 32

static char *corpus_path(const char *name, const char *ext)
{
        const char *root = getenv("SMTPTLSD_SOURCE_ROOT");
        char *p = NULL;
        assert_true(asprintf(&p, "%s/tests/data/maincf/%s%s", root ? root : "..", name, ext) > 0);
        return p;
}

static char *corpus_read(const char *name, const char *ext, size_t *len)
{
        _cleanup_free_ char *path = corpus_path(name, ext);
        char *text = NULL;
        size_t n = 0;
        int r = fs_read_file(path, 1u << 20, &text, &n);
        if (r < 0)
                fail_msg("%s: %s", path, strerror(-r));
        if (len)
                *len = n;
        return text;
}

struct listing {
        char *names[256];
        char *values[256];
        size_t n;
};

static int list_one(const char *name, const char *value, void *arg)
{
        struct listing *l = arg;
        for (size_t i = 0; i < l->n; i++)
                if (streq(l->names[i], name)) {
                        free(l->values[i]);
                        l->values[i] = strdup(value); /* the last definition wins */
                        return 0;
                }
        assert_true(l->n < ARRAY_SIZE(l->names));
        l->names[l->n] = strdup(name);
        l->values[l->n++] = strdup(value);
        return 0;
}

/* What postconf -n prints for text (without config_directory): sorted "name = value" lines. */
static char *postconf_n(const char *text, size_t len)
{
        struct listing l = { 0 };
        assert_int_equal(maincf_each(text, len, list_one, &l), 0);
        for (size_t i = 1; i < l.n; i++) /* insertion sort by name */
                for (size_t j = i; j > 0 && strcmp(l.names[j - 1], l.names[j]) > 0; j--) {
                        char *n = l.names[j], *v = l.values[j];
                        l.names[j] = l.names[j - 1];
                        l.values[j] = l.values[j - 1];
                        l.names[j - 1] = n;
                        l.values[j - 1] = v;
                }
        char *out = NULL;
        size_t outlen = 0;
        FILE *f = open_memstream(&out, &outlen);
        assert_non_null(f);
        for (size_t i = 0; i < l.n; i++) {
                fprintf(f, "%s =%s%s\n", l.names[i], *l.values[i] ? " " : "", l.values[i]);
                free(l.names[i]);
                free(l.values[i]);
        }
        fclose(f);
        return out;
}

struct edit_spec {
        struct maincf_param p[CORPUS_MAX_PARAMS];
        bool merge[CORPUS_MAX_PARAMS];
        char *merged[CORPUS_MAX_PARAMS];
        size_t n;
        char *text;
};

/* EDIT_PARAMS: "name = value"; "-name": removed; "+name = type:path": path's map first in the
 * live list. */
static void edit_spec_load(struct edit_spec *e)
{
        *e = (struct edit_spec){ 0 };
        e->text = corpus_read("EDIT_PARAMS", "", NULL);
        for (char *line = strtok(e->text, "\n"); line; line = strtok(NULL, "\n")) {
                if (*line == '#' || !*line)
                        continue;
                assert_true(e->n < CORPUS_MAX_PARAMS);
                size_t k = e->n++;
                if (*line == '-') {
                        e->p[k].name = line + 1;
                        continue;
                }
                e->merge[k] = *line == '+';
                char *eq = strstr(line, " = ");
                assert_non_null(eq);
                *eq = 0;
                e->p[k].name = line + e->merge[k];
                e->p[k].value = eq + 3;
        }
}

/* The params to set on text: merged map lists computed from text's live value. */
static void edit_spec_bind(struct edit_spec *e, const char *text, size_t len,
                           struct maincf_param *out)
{
        for (size_t k = 0; k < e->n; k++) {
                out[k] = e->p[k];
                if (!e->merge[k])
                        continue;
                _cleanup_free_ char *live = NULL;
                const char *ours = e->p[k].value, *path = strchr(ours, ':') + 1;
                if (maincf_get(text, len, e->p[k].name, &live) < 0)
                        live = NULL;
                free(e->merged[k]);
                assert_int_equal(maincf_maps_merge(live, ours, path, NULL, &e->merged[k]), 0);
                out[k].value = e->merged[k];
        }
}

static void edit_spec_done(struct edit_spec *e)
{
        for (size_t k = 0; k < e->n; k++)
                free(e->merged[k]);
        free(e->text);
}

static void corpus_case(const char *name, struct edit_spec *spec)
{
        size_t len, edited_len = 0, again_len;
        _cleanup_free_ char *text = corpus_read(name, ".cf", &len);
        _cleanup_free_ char *want_n = corpus_read(name, ".n", NULL);
        _cleanup_free_ char *got_n = postconf_n(text, len);
        if (!streq(got_n, want_n))
                fail_msg("%s.cf: read as\n%s\npostconf -n prints\n%s", name, got_n, want_n);

        struct maincf_param p[CORPUS_MAX_PARAMS];
        _cleanup_free_ char *edited = NULL, *again = NULL;
        edit_spec_bind(spec, text, len, p);
        assert_int_equal(maincf_edit(text, len, p, spec->n, &edited, &edited_len), 0);
        _cleanup_free_ char *path = corpus_path(name, ".edited");
        if (getenv("SMTPTLSD_UPDATE_CORPUS")) {
                assert_int_equal(fs_write_file(path, edited, edited_len, 0644), 0);
        } else {
                size_t want_len;
                _cleanup_free_ char *want = corpus_read(name, ".edited", &want_len);
                if (want_len != edited_len || memcmp(want, edited, want_len) != 0)
                        fail_msg("%s.cf edited:\n%s\n--- %s.edited:\n%s", name, edited, name, want);
        }
        /* a second edit with the same settings changes nothing */
        edit_spec_bind(spec, edited, edited_len, p);
        assert_int_equal(maincf_edit(edited, edited_len, p, spec->n, &again, &again_len), 0);
        if (again_len != edited_len || memcmp(again, edited, edited_len) != 0)
                fail_msg("%s: a second edit changed the file:\n%s", name, again);
}

static void test_corpus(void **state)
{
        (void)state;
        struct edit_spec spec;
        edit_spec_load(&spec);
        _cleanup_free_ char *dir = corpus_path("", "");
        struct dirent **names = NULL;
        int n = scandir(dir, &names, NULL, alphasort);
        if (n < 0)
                fail_msg("%s: %s", dir, strerror(errno));
        size_t cases = 0;
        for (int i = 0; i < n; i++) {
                size_t l = strlen(names[i]->d_name);
                if (l > 3 && streq(names[i]->d_name + l - 3, ".cf")) {
                        names[i]->d_name[l - 3] = 0;
                        corpus_case(names[i]->d_name, &spec);
                        cases++;
                }
                free(names[i]);
        }
        free(names);
        edit_spec_done(&spec);
        assert_true(cases >= 10);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_get),
                cmocka_unit_test(test_edit_keeps_everything_else),
                cmocka_unit_test(test_continuations_and_duplicates),
                cmocka_unit_test(test_edit_is_idempotent),
                cmocka_unit_test(test_refuses_multiline_values),
                cmocka_unit_test(test_removing_everything),
                cmocka_unit_test(test_name_and_value_on_separate_lines),
                cmocka_unit_test(test_whitespace_and_crlf),
                cmocka_unit_test(test_maps_merge),
                cmocka_unit_test(test_maps_merge_adopted),
                cmocka_unit_test(test_maps_merge_through_edit),
                cmocka_unit_test(test_corpus),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
