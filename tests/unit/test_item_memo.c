/* test_item_memo.c - the memo of the last bulk's items (core/item_memo.c) and the reader's peek
 * that feeds it (json_items_peek): known items found by their whole bytes only, the delta (rows
 * to write, destinations gone) against a naive comparison over random edits, duplicates across
 * known and read items refused with the first one's number, no delta from an unpublished memo,
 * and the peek's spans over strings with brackets and escapes. The normalization here is a
 * stand-in (spaces dropped), as api/policies.c's is policy_to_json. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "core/item_memo.h"
#include "core/json_spec.h"

/* One body's items as api_policies_bulk reads them: known ones taken from the memo, the others
 * "normalized" (spaces dropped) and added. Returns the first -EEXIST's item number + 1 in
 * *dup_at (0: none) and the delta. */
struct run {
        struct item_memo_delta *delta;
        size_t known, dup_at, dup_first;
        char *text;
};

static void dest_of(const char *item, size_t len, char *out, size_t size)
{
        const char *d = memmem(item, len, "\"d\":", 4);
        assert_non_null(d);
        for (d += 4; *d == ' '; d++)
                ;
        assert_int_equal(*d++, '"');
        const char *e = memchr(d, '"', len - (size_t)(d - item));
        assert_non_null(e);
        snprintf(out, size, "%.*s", (int)(e - d), d);
}

static struct run read_body_of(struct item_memo *old, enum item_memo_kind kind, char **items,
                               size_t n)
{
        struct run run = { 0 };
        struct strbuf body = { 0 }, text = { 0 };
        assert_int_equal(strbuf_add(&body, "{\"items\": [", 11), 0);
        size_t *off = calloc(n + 1, sizeof(*off));
        for (size_t i = 0; i < n; i++) {
                if (i)
                        assert_int_equal(strbuf_add(&body, ", ", 2), 0);
                off[i] = body.len;
                assert_int_equal(strbuf_add(&body, items[i], strlen(items[i])), 0);
        }
        assert_int_equal(strbuf_add(&body, "]}", 2), 0);
        assert_int_equal(strbuf_add(&text, "[", 1), 0);
        struct item_memo_build b;
        assert_int_equal(item_memo_build_init(&b, old, kind, &text, body.len, 42), 0);
        for (size_t i = 0; i < n && !run.dup_at; i++) {
                size_t len = strlen(items[i]), first = 0;
                const char *dest = NULL;
                int k = item_memo_build_known(&b, body.p + off[i], len, i, &dest, &first);
                if (k == 1) {
                        run.known++;
                        continue;
                }
                if (k == -EEXIST) {
                        run.dup_at = i + 1;
                        run.dup_first = first;
                        break;
                }
                assert_int_equal(k, 0);
                char d[64];
                dest_of(items[i], len, d, sizeof(d));
                size_t norm_off = text.len + (i ? 1 : 0);
                if (i)
                        assert_int_equal(strbuf_add(&text, ",", 1), 0);
                for (const char *c = items[i]; *c; c++)
                        if (*c != ' ')
                                assert_int_equal(strbuf_add(&text, c, 1), 0);
                k = item_memo_build_added(&b, body.p + off[i], len, i, norm_off,
                                          text.len - norm_off, d, strlen(d), &first);
                if (k == -EEXIST) {
                        run.dup_at = i + 1;
                        run.dup_first = first;
                        break;
                }
                assert_int_equal(k, 0);
        }
        if (!run.dup_at) {
                assert_int_equal(item_memo_build_finish(&b, &run.delta), 0);
                run.text = text.p;
                text.p = NULL;
        }
        item_memo_build_done(&b);
        free(body.p);
        free(text.p);
        free(off);
        return run;
}

static struct run read_body(struct item_memo *old, char **items, size_t n)
{
        return read_body_of(old, ITEM_MEMO_JSON, items, n);
}

static void run_done(struct run *run)
{
        item_memo_delta_free(run->delta);
        free(run->text);
        *run = (struct run){ 0 };
}

static char *item(unsigned d, unsigned level, bool spaced)
{
        char buf[96];
        snprintf(buf, sizeof(buf),
                 spaced ? "{\"d\": \"h%u.example\", \"l\": %u}"
                        : "{\"d\":\"h%u.example\",\"l\":%u}",
                 d, level);
        return strdup(buf);
}

static void test_first_body_has_no_delta(void **state)
{
        (void)state;
        struct item_memo_slot slot = ITEM_MEMO_SLOT_INIT;
        char *items[3] = { item(1, 0, false), item(2, 1, false), item(3, 2, true) };
        struct run run = read_body(NULL, items, 3);
        assert_int_equal(run.known, 0);
        assert_non_null(run.delta);
        assert_int_equal(run.delta->total, 3);
        assert_int_equal(run.delta->base.policies, 0);
        assert_null(run.delta->upserts);
        assert_string_equal(run.text,
                            "[{\"d\":\"h1.example\",\"l\":0},{\"d\":\"h2.example\",\"l\":1},"
                            "{\"d\":\"h3.example\",\"l\":2}");
        /* unpublished: a memo read against has no tag, so no delta either */
        struct item_memo *m = item_memo_ref(run.delta->next);
        struct run again = read_body(m, items, 3);
        assert_int_equal(again.known, 3);
        assert_null(again.delta->upserts);
        run_done(&again);
        item_memo_publish(&slot, m, (struct item_memo_tag){ 7, 9, 95 });
        item_memo_unref(m);
        struct item_memo *cur = item_memo_current(&slot);
        assert_ptr_equal(cur, m);
        assert_int_equal(item_memo_tag(cur).settings, 7);
        assert_int_equal(item_memo_tag(cur).policies, 9);
        assert_int_equal(item_memo_count(cur), 3);
        again = read_body(cur, items, 3);
        assert_int_equal(again.known, 3);
        assert_string_equal(again.delta->upserts, "[]");
        assert_string_equal(again.delta->deletes, "[]");
        assert_int_equal(again.delta->base.policies, 9);
        /* the same text as the body read whole */
        assert_string_equal(again.text, run.text);
        run_done(&again);
        item_memo_unref(cur);
        run_done(&run);
        item_memo_forget(&slot);
        for (int i = 0; i < 3; i++)
                free(items[i]);
}

/* Random bodies against the one before: the delta is exactly a naive comparison's. */
static void test_delta_matches_naive(void **state)
{
        (void)state;
        enum { N = 400, ROUNDS = 30 };
        unsigned seed = 11;
        struct item_memo_slot slot = ITEM_MEMO_SLOT_INIT;
        /* level per destination in the last body; -1 absent */
        static int was[N], now[N];
        static bool spaced_was[N], spaced_now[N];
        for (int d = 0; d < N; d++)
                was[d] = -1;
        for (int round = 0; round < ROUNDS; round++) {
                char *items[N];
                size_t n = 0;
                for (int d = 0; d < N; d++) {
                        int r = rand_r(&seed) % 10;
                        now[d] = r == 0 ? -1 : r == 1 ? rand_r(&seed) % 3 : was[d];
                        if (now[d] < 0 && was[d] < 0 && r > 1)
                                now[d] = rand_r(&seed) % 3;
                        spaced_now[d] = r == 2 ? !spaced_was[d] : spaced_was[d];
                        if (now[d] >= 0)
                                items[n++] = item((unsigned)d, (unsigned)now[d], spaced_now[d]);
                }
                /* shuffled: order is not what makes a row */
                for (size_t i = n; i > 1; i--) {
                        size_t j = (size_t)rand_r(&seed) % i;
                        char *t = items[i - 1];
                        items[i - 1] = items[j];
                        items[j] = t;
                }
                struct item_memo *old = item_memo_current(&slot);
                struct run run = read_body(old, items, n);
                assert_int_equal(run.dup_at, 0);
                assert_int_equal(run.delta->total, n);
                size_t known = 0, upserts = 0, deletes = 0;
                for (int d = 0; d < N; d++) {
                        char key[48];
                        snprintf(key, sizeof(key), "\"h%d.example\"", d);
                        bool in_up = old && strstr(run.delta->upserts, key);
                        bool in_del = old && strstr(run.delta->deletes, key);
                        if (!old)
                                continue;
                        /* known: the same bytes; the same row: the same level */
                        known += now[d] >= 0 && was[d] == now[d] && spaced_now[d] == spaced_was[d];
                        assert_int_equal(in_up, now[d] >= 0 && was[d] != now[d]);
                        assert_int_equal(in_del, now[d] < 0 && was[d] >= 0);
                        upserts += in_up;
                        deletes += in_del;
                }
                if (old) {
                        assert_int_equal(run.known, known);
                        assert_int_equal(run.delta->n_upserts, upserts);
                        assert_int_equal(run.delta->n_deletes, deletes);
                }
                item_memo_publish(&slot, run.delta->next,
                                  (struct item_memo_tag){ 1, round + 1, 95 });
                item_memo_unref(old);
                run_done(&run);
                for (size_t i = 0; i < n; i++)
                        free(items[i]);
                memcpy(was, now, sizeof(was));
                memcpy(spaced_was, spaced_now, sizeof(spaced_was));
        }
        item_memo_forget(&slot);
}

static void test_duplicates(void **state)
{
        (void)state;
        struct item_memo_slot slot = ITEM_MEMO_SLOT_INIT;
        char *base[3] = { item(1, 0, false), item(2, 0, false), item(3, 0, false) };
        struct run run = read_body(NULL, base, 3);
        item_memo_publish(&slot, run.delta->next, (struct item_memo_tag){ 1, 1, 95 });
        run_done(&run);
        struct item_memo *m = item_memo_current(&slot);
        /* a known item twice */
        char *twice[3] = { base[1], base[0], base[1] };
        run = read_body(m, twice, 3);
        assert_int_equal(run.dup_at, 3);
        assert_int_equal(run.dup_first, 0);
        /* a known item, then another of its destination */
        char *other = item(2, 1, false);
        char *known_then_read[3] = { base[0], base[1], other };
        run = read_body(m, known_then_read, 3);
        assert_int_equal(run.dup_at, 3);
        assert_int_equal(run.dup_first, 1);
        /* read first, then the known one of its destination */
        char *read_then_known[3] = { other, base[0], base[1] };
        run = read_body(m, read_then_known, 3);
        assert_int_equal(run.dup_at, 3);
        assert_int_equal(run.dup_first, 0);
        /* the same bytes in a body of the other type are read, and compared by row */
        run = read_body_of(m, ITEM_MEMO_MAP, base, 3);
        assert_int_equal(run.known, 0);
        assert_int_equal(run.delta->n_upserts, 0);
        assert_int_equal(run.delta->n_deletes, 0);
        run_done(&run);
        /* a prefix or an extension of a known item's bytes is not known */
        char *spaced = item(1, 0, true);
        char *reformatted[1] = { spaced };
        run = read_body(m, reformatted, 1);
        assert_int_equal(run.known, 0);
        assert_int_equal(run.delta->n_upserts, 0); /* the same row */
        assert_int_equal(run.delta->n_deletes, 2);
        run_done(&run);
        free(spaced);
        free(other);
        item_memo_unref(m);
        item_memo_forget(&slot);
        for (int i = 0; i < 3; i++)
                free(base[i]);
}

/* The peek's span is the item's, whatever its strings hold; it sees only what json_items_advance
 * stands before; passing an item with json_items_skip leaves the reader as reading it would. */
static void test_peek(void **state)
{
        (void)state;
        const char *body = "{\"items\": [ {\"a\": \"}]\\\"{\"} ,\n{\"b\": [1, {\"c\": 2}]},"
                           "{\"d\": \"\\\\\"}, 3, {\"e\": 1} ]}";
        struct json_items it;
        struct problem p = { 0 };
        json_t *v = NULL;
        size_t off = 0;
        json_items_init(&it, body, strlen(body), "items", "an array");
        assert_int_equal(json_items_peek(&it, &off), 0); /* not at an item yet */
        assert_int_equal(json_items_advance(&it, &p), 1);
        size_t len = json_items_peek(&it, &off);
        assert_int_equal(off, 12);
        assert_int_equal(len, strlen("{\"a\": \"}]\\\"{\"}"));
        assert_int_equal(json_items_next(&it, &v, &p), 1); /* read instead */
        assert_int_equal(it.item_start, 12);
        assert_string_equal(json_string_value(json_object_get(v, "a")), "}]\"{");
        json_decref(v);
        assert_int_equal(json_items_peek(&it, &off), 0); /* before the comma */
        assert_int_equal(json_items_advance(&it, &p), 1);
        len = json_items_peek(&it, &off);
        assert_int_equal(len, strlen("{\"b\": [1, {\"c\": 2}]}"));
        assert_memory_equal(body + off, "{\"b\": [1, {\"c\": 2}]}", len);
        json_items_skip(&it, len);
        assert_int_equal(json_items_advance(&it, &p), 1);
        len = json_items_peek(&it, &off);
        assert_int_equal(len, strlen("{\"d\": \"\\\\\"}"));
        json_items_skip(&it, len);
        assert_int_equal(json_items_advance(&it, &p), 1);
        assert_int_equal(json_items_peek(&it, &off), 0); /* a number */
        assert_int_equal(json_items_next(&it, &v, &p), 1);
        assert_int_equal(json_integer_value(v), 3);
        json_decref(v);
        assert_int_equal(json_items_advance(&it, &p), 1);
        len = json_items_peek(&it, &off);
        assert_int_equal(len, strlen("{\"e\": 1}"));
        json_items_skip(&it, len);
        assert_int_equal(json_items_advance(&it, &p), 0); /* the end */
        assert_int_equal(json_items_next(&it, &v, &p), 0);
        assert_int_equal(it.count, 5);
        /* an item with no end is for json_items_next to refuse */
        const char *open = "{\"items\": [{\"a\": 1}, {\"b\": \"}";
        json_items_init(&it, open, strlen(open), "items", "an array");
        assert_int_equal(json_items_next(&it, &v, &p), 1);
        json_decref(v);
        assert_int_equal(json_items_advance(&it, &p), 1);
        assert_int_equal(json_items_peek(&it, &off), 0);
        assert_true(json_items_next(&it, &v, &p) < 0);
        assert_int_equal(p.code, PROBLEM_INVALID_JSON);
        problem_reset(&p);
        /* after the last item, advance checks the rest as next does */
        const char *trailing = "{\"items\": [{\"a\": 1}], \"x\": 2}";
        json_items_init(&it, trailing, strlen(trailing), "items", "an array");
        assert_int_equal(json_items_advance(&it, &p), 1);
        json_items_skip(&it, json_items_peek(&it, &off));
        assert_true(json_items_advance(&it, &p) < 0);
        assert_int_equal(p.code, PROBLEM_UNKNOWN_FIELD);
        problem_done(&p);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_first_body_has_no_delta),
                cmocka_unit_test(test_delta_matches_naive),
                cmocka_unit_test(test_duplicates),
                cmocka_unit_test(test_peek),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
