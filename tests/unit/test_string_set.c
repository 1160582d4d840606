/* test_string_set.c - the compact set a bulk body's destinations are checked against: every
 * string found again with the number it was added with, none found that was not added (against a
 * naive search), across growth, with strings that share prefixes, differ only in length, or are
 * empty. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <cmocka.h>

#include "core/string_set.h"

static void names(struct string_set *set, unsigned count, unsigned seed)
{
        char s[64];
        uint32_t first = 0;
        for (unsigned i = 0; i < count; i++) {
                int n = snprintf(s, sizeof(s), "host%u.example%s", i * seed, i % 3 ? "" : ".");
                assert_int_equal(string_set_add(set, s, (size_t)n, i, &first), 1);
        }
        assert_int_equal(set->count, count);
        for (unsigned i = 0; i < count; i++) {
                int n = snprintf(s, sizeof(s), "host%u.example%s", i * seed, i % 3 ? "" : ".");
                assert_int_equal(string_set_add(set, s, (size_t)n, 999999999u, &first), 0);
                assert_int_equal(first, i);
                /* a prefix is another string */
                assert_int_equal(string_set_add(set, s, (size_t)n - 1, i, &first), 1);
        }
}

static void test_found_again(void **state)
{
        (void)state;
        struct string_set set = { .seed = 0x5eed };
        names(&set, 200000, 7);
        assert_int_equal(set.count, 400000);
        uint32_t first = 0;
        assert_int_equal(string_set_add(&set, "", 0, 5, &first), 1);
        assert_int_equal(string_set_add(&set, "", 0, 6, &first), 0);
        assert_int_equal(first, 5);
        string_set_done(&set);
        assert_null(set.slots);
}

static void test_nothing_false(void **state)
{
        (void)state;
        /* random strings over a small alphabet: many share prefixes; each answer as a naive
         * search says */
        enum { N = 3000 };
        static char seen[N][8];
        size_t n_seen = 0;
        struct string_set set = { .seed = 1 };
        unsigned seed = 3;
        for (int round = 0; round < 2 * N; round++) {
                char s[8];
                size_t len = (size_t)(rand_r(&seed) % 5);
                for (size_t k = 0; k < len; k++)
                        s[k] = "ab."[rand_r(&seed) % 3];
                s[len] = 0;
                size_t where = n_seen;
                for (size_t k = 0; k < n_seen; k++)
                        if (strcmp(seen[k], s) == 0)
                                where = k;
                uint32_t first = 0;
                int r = string_set_add(&set, s, len, (uint32_t)n_seen, &first);
                if (where < n_seen) {
                        assert_int_equal(r, 0);
                        assert_int_equal(first, where);
                } else {
                        assert_int_equal(r, 1);
                        memcpy(seen[n_seen++], s, len + 1);
                }
        }
        assert_int_equal(set.count, n_seen);
        string_set_done(&set);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_found_again),
                cmocka_unit_test(test_nothing_false),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
