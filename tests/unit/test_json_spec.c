/* test_json_spec.c - the table-driven body validator: types, bounds, choices, required fields,
 * unknown fields, nulls, patch mode, JSON pointers, and the body parser's refusals. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <cmocka.h>

#include "core/json_spec.h"

struct body {
        const char *mode;
        const char *certificate;
        bool auth_only;
        int64_t loglevel;
        json_t *match;
};

static const char *const modes[] = { "none", "may", "encrypt", NULL };

static int check_no_upper(const struct json_spec *s, json_t *v, const char *field,
                          struct problem *p)
{
        for (const char *c = json_string_value(v); *c; c++)
                if (*c >= 'A' && *c <= 'Z')
                        return problem_set(p, PROBLEM_INVALID_NAME, field, "lower case only");
        return 0;
}

static const struct json_spec spec[] = {
        { "mode", JS_CHOICE, JS_REQUIRED, offsetof(struct body, mode), .choices = modes },
        { "certificate", JS_STRING, JS_NULLABLE, offsetof(struct body, certificate), .max = 64,
          .check = check_no_upper },
        { "auth_only", JS_BOOL, 0, offsetof(struct body, auth_only), .choices = NULL },
        { "loglevel", JS_INT, 0, offsetof(struct body, loglevel), .min = 0, .max = 4 },
        { "match", JS_STRING_ARRAY, 0, offsetof(struct body, match), .max = 3 },
        { 0 },
};

static int run(const char *text, struct body *b, uint64_t *present, unsigned flags,
               struct problem *p)
{
        json_t *j = NULL;
        int r = json_parse_body(text, strlen(text), &j, p);
        if (r < 0)
                return r;
        memset(b, 0, sizeof(*b));
        r = json_dispatch(j, spec, b, present, flags, "", p);
        json_decref(j); /* borrowed strings are not used after this in the tests below */
        return r;
}

static void expect(const char *text, unsigned flags, enum problem_code code, const char *field)
{
        struct body b;
        struct problem p = { 0 };
        int r = run(text, &b, NULL, flags, &p);
        if (r >= 0)
                fail_msg("accepted: %s", text);
        if (p.code != code)
                fail_msg("%s: got %s, want %s", text, problem_code_name(p.code),
                         problem_code_name(code));
        if (field && !streq(p.field, field))
                fail_msg("%s: field '%s', want '%s'", text, p.field, field);
        problem_done(&p);
}

static void test_accepts(void **state)
{
        struct body b;
        struct problem p = { 0 };
        uint64_t present = 0;
        json_t *j = NULL;
        const char *text = "{\"mode\":\"may\",\"certificate\":\"mx1\",\"auth_only\":true,"
                           "\"loglevel\":2,\"match\":[\"a\",\"b\"]}";
        assert_int_equal(json_parse_body(text, strlen(text), &j, &p), 0);
        assert_int_equal(json_dispatch(j, spec, &b, &present, 0, "", &p), 0);
        assert_string_equal(b.mode, "may");
        assert_string_equal(b.certificate, "mx1");
        assert_true(b.auth_only);
        assert_int_equal(b.loglevel, 2);
        assert_int_equal(json_array_size(b.match), 2);
        assert_int_equal(present, 0x1f);
        json_decref(j);
}

static void test_refusals(void **state)
{
        expect("{}", 0, PROBLEM_MISSING_FIELD, "/mode");
        expect("{\"mode\":\"may\",\"mdoe\":1}", 0, PROBLEM_UNKNOWN_FIELD, "/mdoe");
        expect("{\"mode\":\"sometimes\"}", 0, PROBLEM_INVALID_VALUE, "/mode");
        expect("{\"mode\":1}", 0, PROBLEM_INVALID_VALUE, "/mode");
        expect("{\"mode\":null}", 0, PROBLEM_INVALID_VALUE, "/mode");
        expect("{\"mode\":\"may\",\"auth_only\":\"yes\"}", 0, PROBLEM_INVALID_VALUE, "/auth_only");
        expect("{\"mode\":\"may\",\"loglevel\":5}", 0, PROBLEM_INVALID_VALUE, "/loglevel");
        expect("{\"mode\":\"may\",\"loglevel\":1.5}", 0, PROBLEM_INVALID_VALUE, "/loglevel");
        expect("{\"mode\":\"may\",\"match\":[\"a\",2]}", 0, PROBLEM_INVALID_VALUE, "/match/1");
        expect("{\"mode\":\"may\",\"match\":[\"a\",\"b\",\"c\",\"d\"]}", 0, PROBLEM_INVALID_VALUE,
               "/match");
        expect("{\"mode\":\"may\",\"certificate\":\"MX1\"}", 0, PROBLEM_INVALID_NAME,
               "/certificate");
        expect("{\"mode\":\"may\",\"certificate\":"
               "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"}",
               0, PROBLEM_INVALID_VALUE, "/certificate");
        expect("{\"a/b\":1,\"mode\":\"may\"}", 0, PROBLEM_UNKNOWN_FIELD, "/a~1b");
}

static void test_null_and_patch(void **state)
{
        struct body b;
        struct problem p = { 0 };
        uint64_t present = 0;
        assert_int_equal(run("{\"mode\":\"none\",\"certificate\":null}", &b, &present, 0, &p), 0);
        assert_null(b.certificate);
        assert_int_equal(present, 0x3); /* null counts as set: it clears the field */
        /* patch: nothing is required, only what is sent is marked present */
        assert_int_equal(run("{\"loglevel\":0}", &b, &present, JSON_DISPATCH_PATCH, &p), 0);
        assert_int_equal(present, 0x8);
        assert_int_equal(run("{}", &b, &present, JSON_DISPATCH_PATCH, &p), 0);
        assert_int_equal(present, 0);
}

static void test_parser_refusals(void **state)
{
        static const char *const bad[] = {
                "",
                "{",
                "{\"mode\":\"may\",\"mode\":\"none\"}", /* duplicate key */
                "{\"mode\":\"a\\u0000b\"}",             /* NUL inside a string */
                "\xef\xbb\xbf{\"mode\":\"may\"}",       /* byte order mark */
                "{\"mode\":\"may\"} trailing",
                "{'mode':'may'}",
                "{\"loglevel\":01}",
                "{\"mode\":\"may\" /* comment */}",
        };
        for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
                struct problem p = { 0 };
                json_t *j = NULL;
                if (json_parse_body(bad[i], strlen(bad[i]), &j, &p) >= 0)
                        fail_msg("parsed case %zu", i);
                assert_int_equal(p.code, PROBLEM_INVALID_JSON);
        }
        /* the detail names line and column */
        struct problem p = { 0 };
        json_t *j = NULL;
        json_parse_body("{\n  \"mode\": may\n}", 16, &j, &p);
        assert_non_null(strstr(p.detail, "line 2"));
        assert_non_null(strstr(p.detail, "column"));
        /* a top level that is not an object */
        struct problem q = { 0 };
        assert_true(json_parse_body("[1]", 3, &j, &q) < 0);
        assert_int_equal(q.code, PROBLEM_INVALID_VALUE);
}

static void test_deep_nesting_refused(void **state)
{
        size_t depth = 5000;
        char *text = malloc(2 * depth + 16);
        size_t n = 0;
        n += (size_t)sprintf(text, "{\"a\":");
        for (size_t i = 0; i < depth; i++)
                text[n++] = '[';
        for (size_t i = 0; i < depth; i++)
                text[n++] = ']';
        text[n++] = '}';
        struct problem p = { 0 };
        json_t *j = NULL;
        assert_true(json_parse_body(text, n, &j, &p) < 0);
        assert_int_equal(p.code, PROBLEM_INVALID_JSON);
        free(text);
}

/* Found by fuzzing: a field or detail must stay valid UTF-8 without control characters, or
 * jansson drops it from the problem body. */
static void test_problem_text_stays_clean(void **state)
{
        struct body b;
        struct problem p = { 0 };
        assert_true(run("{\"mode\":\"may\",\"le\\u007fvel\":1}", &b, NULL, 0, &p) < 0);
        assert_string_equal(p.field, "/le?vel");
        problem_done(&p);

        char text[512] = "{\"";
        for (int i = 0; i < 100; i++)
                strcat(text, "\xc3\xa9"); /* é */
        strcat(text, "\":1}");
        struct problem q = { 0 };
        assert_true(run(text, &b, NULL, 0, &q) < 0);
        assert_int_equal(q.code, PROBLEM_UNKNOWN_FIELD);
        json_t *f = json_string(q.field), *d = json_string(q.detail);
        assert_non_null(f); /* NULL would mean invalid UTF-8 */
        assert_non_null(d);
        json_decref(f);
        json_decref(d);
        problem_done(&q);

        struct problem r = { 0 };
        json_t *j = NULL;
        assert_true(json_parse_body("{\"\\\xc3\xa9\":1}", 9, &j, &r) < 0);
        d = json_string(r.detail);
        assert_non_null(d);
        json_decref(d);
}

/* Read-only members: any value passes json_dispatch (and nothing is written); against the
 * current resource each must be equal (a timestamp: the same instant), else invalid_value naming
 * it; with no current resource (a create) nothing is compared. */
static void test_read_only(void **state)
{
        static const struct json_spec ro_spec[] = {
                { "mode", JS_CHOICE, 0, offsetof(struct body, mode), .choices = modes },
                { .name = "generation", .type = JS_ANY, .flags = JS_READ_ONLY },
                { .name = "updated_at", .type = JS_ANY, .flags = JS_READ_ONLY },
                { .name = "days_left", .type = JS_ANY, .flags = JS_READ_ONLY | JS_CLOCK },
                { 0 },
        };
        static const struct {
                const char *body;
                int ok;
                const char *field;
        } cases[] = {
                { "{\"mode\":\"may\"}", 1, NULL },
                { "{\"generation\":7,\"updated_at\":\"2026-11-22T10:00:00Z\"}", 1, NULL },
                { "{\"updated_at\":\"2026-11-22T10:00:00.000Z\"}", 1, NULL },
                { "{\"updated_at\":\"2026-11-22T11:30:00+01:30\"}", 1, NULL },
                { "{\"generation\":8}", 0, "/generation" },
                { "{\"generation\":\"7\"}", 0, "/generation" },
                { "{\"generation\":null}", 0, "/generation" },
                { "{\"updated_at\":\"2026-11-22T10:00:01Z\"}", 0, "/updated_at" },
                { "{\"updated_at\":\"2026-11-22T10:00:00.5Z\"}", 0, "/updated_at" },
                { "{\"updated_at\":\"2026-11-22 10:00\"}", 0, "/updated_at" },
                /* read a moment ago, across the second the count moved: one off is current */
                { "{\"days_left\":364}", 1, NULL },
                { "{\"days_left\":365}", 1, NULL },
                { "{\"days_left\":363}", 1, NULL },
                { "{\"days_left\":366}", 0, "/days_left" },
                { "{\"days_left\":\"364\"}", 0, "/days_left" },
                { "{\"generation\":6}", 0, "/generation" },
        };
        json_t *current = json_pack("{s:s, s:i, s:s, s:i}", "mode", "may", "generation", 7,
                                    "updated_at", "2026-11-22T10:00:00Z", "days_left", 364);
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                struct body b = { 0 };
                struct problem p = { 0 };
                json_t *j = json_loads(cases[i].body, 0, NULL);
                assert_non_null(j);
                assert_int_equal(json_dispatch(j, ro_spec, &b, NULL, JSON_DISPATCH_PATCH, "", &p),
                                 0);
                assert_int_equal(json_check_read_only(j, ro_spec, NULL, "", &p), 0);
                int r = json_check_read_only(j, ro_spec, current, "", &p);
                if (cases[i].ok && r < 0)
                        fail_msg("%s refused: %s", cases[i].body, p.detail);
                if (!cases[i].ok &&
                    (r >= 0 || p.code != PROBLEM_INVALID_VALUE || !streq(p.field, cases[i].field)))
                        fail_msg("%s: %d %s at '%s'", cases[i].body, r, problem_code_name(p.code),
                                 p.field);
                problem_done(&p);
                json_decref(j);
        }
        /* copied into a normalized body: only the read-only members */
        json_t *from = json_pack("{s:s, s:i}", "mode", "may", "generation", 7), *to = json_object();
        json_copy_read_only(from, ro_spec, to);
        assert_int_equal(json_object_size(to), 1);
        assert_int_equal(json_integer_value(json_object_get(to, "generation")), 7);
        json_decref(from);
        json_decref(to);
        json_decref(current);
}

/* The reader of {"items": [...]} a bulk body is taken with, item by item, against the whole-tree
 * parser it replaces: the same verdict for every body - accepted with the same items, or refused
 * (with the same code where the text is well-formed JSON) - for hand-picked bodies and 20,000
 * random corruptions of them. */
static int read_items(const char *text, size_t len, json_t **items, struct problem *p)
{
        struct json_items it;
        json_items_init(&it, text, len, "items", "an array");
        *items = json_array();
        json_t *item;
        int r;
        while ((r = json_items_next(&it, &item, p)) > 0)
                json_array_append_new(*items, item);
        if (r < 0) {
                json_decref(*items);
                *items = NULL;
        }
        return r;
}

/* What json_parse_body says of the same text as a bulk body. */
static int whole_items(const char *text, size_t len, json_t **items, struct problem *p)
{
        json_t *j = NULL;
        *items = NULL;
        int r = json_parse_body(text, len, &j, p);
        if (r < 0)
                return r;
        const char *key;
        json_t *v;
        json_object_foreach (j, key, v)
                if (strcmp(key, "items") != 0) {
                        json_decref(j);
                        return problem_set(p, PROBLEM_UNKNOWN_FIELD, "", "unknown");
                }
        v = json_object_get(j, "items");
        if (!json_is_array(v)) {
                json_decref(j);
                return problem_set(p, v ? PROBLEM_INVALID_VALUE : PROBLEM_MISSING_FIELD, "/items",
                                   "not an array");
        }
        *items = json_incref(v);
        json_decref(j);
        return 0;
}

/* Items read before (their bytes and values), as a bulk's memo keeps them. */
struct known_items {
        size_t n;
        char *raw[16];
        size_t len[16];
        json_t *value[16];
};

static void known_of(const char *text, size_t len, struct known_items *k)
{
        struct json_items it;
        struct problem p = { 0 };
        json_t *item;
        *k = (struct known_items){ 0 };
        json_items_init(&it, text, len, "items", "an array");
        while (k->n < 16 && json_items_next(&it, &item, &p) > 0) {
                if (json_is_object(item)) {
                        k->len[k->n] = it.pos - it.item_start;
                        k->raw[k->n] = strndup(text + it.item_start, k->len[k->n]);
                        k->value[k->n++] = json_incref(item);
                }
                json_decref(item);
        }
        problem_done(&p);
}

static void known_done(struct known_items *k)
{
        for (size_t i = 0; i < k->n; i++) {
                free(k->raw[i]);
                json_decref(k->value[i]);
        }
}

/* The reader as the bulk uses it with a memo: an item whose bytes are known is passed
 * (json_items_peek, json_items_skip) and taken as known; any other is read. */
static int read_items_known(const char *text, size_t len, const struct known_items *k,
                            json_t **items, struct problem *p)
{
        struct json_items it;
        json_items_init(&it, text, len, "items", "an array");
        *items = json_array();
        json_t *item;
        int r;
        while ((r = json_items_advance(&it, p)) > 0) {
                size_t off = 0, n = json_items_peek(&it, &off), j = 0;
                while (n && j < k->n && (k->len[j] != n || memcmp(k->raw[j], text + off, n)))
                        j++;
                if (n && j < k->n) {
                        json_items_skip(&it, n);
                        json_array_append_new(*items, json_deep_copy(k->value[j]));
                        continue;
                }
                if ((r = json_items_next(&it, &item, p)) <= 0)
                        break;
                json_array_append_new(*items, item);
        }
        if (r < 0) {
                json_decref(*items);
                *items = NULL;
        }
        return r;
}

static void same_verdict(const char *text, size_t len, const struct known_items *k)
{
        struct problem p1 = { 0 }, p2 = { 0 }, p3 = { 0 };
        json_t *a = NULL, *b = NULL, *c = NULL;
        int r1 = read_items(text, len, &a, &p1), r2 = whole_items(text, len, &b, &p2);
        /* passing known items changes nothing: the same items, or the same problem */
        int r3 = read_items_known(text, len, k, &c, &p3);
        if (r3 != r1 || (r1 >= 0 && !json_equal(a, c)) ||
            (r1 < 0 && (p1.code != p3.code || strcmp(p1.detail, p3.detail) != 0)))
                fail_msg("known items passed: %d / %d: %.*s (%s / %s)", r1, r3, (int)len, text,
                         p1.detail, p3.detail);
        json_decref(c);
        problem_done(&p3);
        if ((r1 >= 0) != (r2 >= 0))
                fail_msg("streamed %s, whole %s: %.*s (%s / %s)", r1 >= 0 ? "accepted" : "refused",
                         r2 >= 0 ? "accepted" : "refused", (int)len, text, p1.detail, p2.detail);
        if (r1 >= 0 && !json_equal(a, b))
                fail_msg("different items: %.*s", (int)len, text);
        /* refused: the same code (bad JSON first, then the shape), but for a member other than
         * the items given twice (json_spec.h: not noticed) */
        if (r1 < 0 && p1.code != p2.code &&
            !(p1.code == PROBLEM_UNKNOWN_FIELD && strstr(p2.detail, "duplicate object key")))
                fail_msg("codes %d / %d: %.*s (%s / %s)", p1.code, p2.code, (int)len, text,
                         p1.detail, p2.detail);
        json_decref(a);
        json_decref(b);
        problem_done(&p1);
        problem_done(&p2);
}

static void test_items_reader(void **state)
{
        (void)state;
        static const char *const cases[] = {
                "{\"items\": []}",
                " {\"items\":[{\"a\":1},{\"b\":[1,2,{\"c\":\"}]\"}]} , 3,\"x\", true,null] }\n",
                "{\"items\":[1,2 ,3]}",
                "{\"items\":[1 ,true,false,null,-0.5e3,\"s\"]}",
                "{\"\\u0069tems\":[{}]}",
                "{}",
                "[]",
                "3",
                "\"items\"",
                "",
                "   ",
                "{\"items\":{}}",
                "{\"items\":null}",
                "{\"items\":[],\"items\":[]}",
                "{\"items\":[],\"other\":1}",
                "{\"other\":1,\"items\":[]}",
                "{\"items\":[{\"a\":1,\"a\":2}]}",
                "{\"items\":[{}]",
                "{\"items\":[{}],}",
                "{\"items\":[{},]}",
                "{\"items\":[,{}]}",
                "{\"items\":[{}]}}",
                "{\"items\":[{}]} x",
                "{\"items\":[\"a\\u0000b\"]}",
                "{\"items\":[01]}",
                "{\"items\" [1]}",
                "{items:[1]}",
                "\xef\xbb\xbf{\"items\":[]}",
                "{\"items\":[\"\xff\"]}",
                "{\"items\":[1]",
                "{\"items\":5} trailing",
                "{\"foo\":",
                "{\"a\"}",
                "{\"items\":[1], \"x\":[}",
                "{\"items\":[1],\"extra\":1}",
                "{\"x\":1,\"items\":[1]",
                "true",
                "\"items\" ",
                "[1,2]",
                " \n",
        };
        for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
                struct known_items k;
                known_of(cases[i], strlen(cases[i]), &k);
                same_verdict(cases[i], strlen(cases[i]), &k);
                known_done(&k);
        }

        /* bad JSON after good items: the body's line and column, as the whole parser says them */
        static const char *const late[] = {
                "{\"items\": [\n{\"a\": 1},\n{\"b\": x}]}",
                "{\"items\": [\n{\"a\": \"\xc3\xa9\xc3\xa9\"},\n  {\"b\": 1}}",
                "{\"items\": [{}]\n\n , x}",
                "{\"items\": [{}] ]",
                "{\"items\": [{}, 1 2]}",
        };
        for (size_t i = 0; i < ARRAY_SIZE(late); i++) {
                struct problem p = { 0 }, q = { 0 };
                json_t *items = NULL, *j = NULL;
                assert_true(read_items(late[i], strlen(late[i]), &items, &p) < 0);
                assert_true(json_parse_body(late[i], strlen(late[i]), &j, &q) < 0);
                /* the place, word for word; the words after it may differ (jansson's own) */
                const char *end = strstr(q.detail, ": ");
                assert_non_null(end);
                if (strncmp(p.detail, q.detail, (size_t)(end - q.detail)) != 0)
                        fail_msg("streamed: %s; whole: %s", p.detail, q.detail);
                problem_done(&p);
                problem_done(&q);
        }

        /* a raw NUL is never JSON (jansson skips one after a number: the reader does not) */
        static const char nul_bodies[][24] = { "{\"items\":[[1\0]}", "{\"items\":[[true\0]]}",
                                               "{\"items\":[]}\0" };
        static const size_t nul_len[] = { 15, 19, 14 };
        for (size_t i = 0; i < ARRAY_SIZE(nul_bodies); i++) {
                struct problem p = { 0 };
                json_t *items = NULL;
                assert_true(read_items(nul_bodies[i], nul_len[i], &items, &p) < 0);
                assert_int_equal(p.code, PROBLEM_INVALID_JSON);
                problem_done(&p);
        }

        /* random corruptions of valid bodies, the items of the body before them known */
        static const char alphabet[] = "{}[],:\" \n1a\\e-.tn";
        unsigned seed = 17;
        struct known_items known[5];
        for (size_t i = 0; i < 5; i++)
                known_of(cases[i], strlen(cases[i]), &known[i]);
        for (int round = 0; round < 20000; round++) {
                char buf[160];
                size_t n = (size_t)snprintf(buf, sizeof(buf), "%s", cases[round % 5]);
                int edits = 1 + rand_r(&seed) % 3;
                for (int e = 0; e < edits && n > 0; e++) {
                        size_t at = (size_t)rand_r(&seed) % n;
                        char c = alphabet[rand_r(&seed) % (int)(sizeof(alphabet) - 1)];
                        switch (rand_r(&seed) % 3) {
                        case 0:
                                buf[at] = c;
                                break;
                        case 1:
                                memmove(buf + at, buf + at + 1, n - at);
                                n--;
                                break;
                        default:
                                if (n + 1 < sizeof(buf)) {
                                        memmove(buf + at + 1, buf + at, n - at + 1);
                                        buf[at] = c;
                                        n++;
                                }
                        }
                }
                same_verdict(buf, n, &known[round % 5]);
        }
        for (size_t i = 0; i < 5; i++)
                known_done(&known[i]);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_accepts),
                cmocka_unit_test(test_refusals),
                cmocka_unit_test(test_null_and_patch),
                cmocka_unit_test(test_parser_refusals),
                cmocka_unit_test(test_deep_nesting_refused),
                cmocka_unit_test(test_problem_text_stays_clean),
                cmocka_unit_test(test_read_only),
                cmocka_unit_test(test_items_reader),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
