/* test_map_merge.c - a generation's changes merged into the policy map's text: after any random
 * sequence of changes the merged text is the text policy_map_render makes of the whole set, and
 * the index edited by the merge's put and del lines holds exactly that text's entries. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "core/map_merge.h"
#include "core/policy.h"
#include "core/policy_map_read.h"
#include "core/policy_render.h"

#define N_DEST 48

/* The destinations: plain, with a port, bracketed, internationalized (two keys each). */
static void destination(size_t i, char *buf, size_t size)
{
        switch (i % 4) {
        case 0:
                snprintf(buf, size, "d%02zu.example", i);
                break;
        case 1:
                snprintf(buf, size, "[mx%02zu.example]:25", i);
                break;
        case 2:
                snprintf(buf, size, "m%02zu.xn--bcher-kva.example", i);
                break;
        default:
                snprintf(buf, size, ".sub%02zu.example", i);
                break;
        }
}

/* The model: per destination 0 (absent), 1 (disabled) or 2 + level. */
static int state[N_DEST];

static void make_policy(size_t i, struct policy *p)
{
        policy_init(p);
        destination(i, p->destination, sizeof(p->destination));
        p->level = (enum tls_level)(state[i] >= 2 ? state[i] - 2 : 0);
        p->enabled = state[i] >= 2;
}

static char *render_all(size_t *len)
{
        struct policy rows[N_DEST];
        const struct policy *items[N_DEST];
        size_t n = 0;
        for (size_t i = 0; i < N_DEST; i++)
                if (state[i]) {
                        make_policy(i, &rows[n]);
                        items[n] = &rows[n];
                        n++;
                }
        char *text = NULL;
        assert_int_equal(policy_map_render(items, n, &text, len), 0);
        for (size_t i = 0; i < n; i++)
                policy_done(&rows[i]);
        return text;
}

/* The block of destination i as a change carries it (NULL: not in the map). */
static char *block_of(size_t i)
{
        if (state[i] < 2)
                return NULL;
        struct policy p;
        make_policy(i, &p);
        const struct policy *items[] = { &p };
        char *text = NULL;
        size_t len = 0;
        assert_int_equal(policy_map_render(items, 1, &text, &len), 0);
        policy_done(&p);
        char *block = strdup(text + strlen(POLICY_MAP_HEADER));
        free(text);
        return block;
}

/* A toy index: "key\tvalue" lines, kept sorted, edited like postmap -i -r / -d. */
struct index {
        char *line[2 * N_DEST];
        size_t n;
};

static int find(const struct index *x, const char *key, size_t kl)
{
        for (size_t i = 0; i < x->n; i++)
                if (strncmp(x->line[i], key, kl) == 0 && x->line[i][kl] == '\t')
                        return (int)i;
        return -1;
}

static void index_apply(struct index *x, const struct map_edit *e)
{
        for (const char *p = e->del.p; p && *p;) {
                const char *nl = strchr(p, '\n');
                int at = find(x, p, (size_t)(nl - p));
                assert_true(at >= 0); /* only keys that are there are deleted */
                free(x->line[at]);
                x->line[at] = x->line[--x->n];
                p = nl + 1;
        }
        for (const char *p = e->put.p; p && *p;) {
                const char *nl = strchr(p, '\n');
                const char *tab = strchr(p, '\t');
                int at = find(x, p, (size_t)(tab - p));
                char *line = strndup(p, (size_t)(nl - p));
                if (at >= 0) {
                        free(x->line[at]);
                        x->line[at] = line;
                } else {
                        x->line[x->n++] = line;
                }
                p = nl + 1;
        }
}

static int cmp_str(const void *a, const void *b)
{
        return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The index holds exactly the entries of text. */
static void assert_index_is(struct index *x, const char *text)
{
        char *want[2 * N_DEST];
        size_t n = 0;
        const char *p = text + strlen(POLICY_MAP_HEADER);
        while (*p) {
                const char *nl = strchr(p, '\n');
                want[n++] = strndup(p, (size_t)(nl - p));
                p = nl + 1;
        }
        assert_int_equal(x->n, n);
        qsort(want, n, sizeof(char *), cmp_str);
        qsort(x->line, x->n, sizeof(char *), cmp_str);
        for (size_t i = 0; i < n; i++) {
                assert_string_equal(x->line[i], want[i]);
                free(want[i]);
        }
}

static int cmp_change(const void *a, const void *b)
{
        return strcmp(((const struct map_change *)a)->destination,
                      ((const struct map_change *)b)->destination);
}

static void test_random_changes_equal_a_whole_render(void **unused)
{
        srand(17);
        for (size_t i = 0; i < N_DEST; i++)
                state[i] = rand() % 5;
        size_t len = 0;
        char *text = render_all(&len);
        struct index x = { 0 };
        struct map_edit first = { 0 };
        strbuf_add(&first.put, text + strlen(POLICY_MAP_HEADER), len - strlen(POLICY_MAP_HEADER));
        index_apply(&x, &first);
        map_edit_done(&first);

        bool saw_unicode = false;
        for (int round = 0; round < 2000; round++) {
                struct map_change ch[6];
                char names[6][POLICY_DESTINATION_MAX + 1];
                char *blocks[6];
                size_t k = 0, want = 1 + (size_t)rand() % 6;
                while (k < want) {
                        size_t i = (size_t)rand() % N_DEST;
                        char name[POLICY_DESTINATION_MAX + 1];
                        destination(i, name, sizeof(name));
                        bool dup = false;
                        for (size_t j = 0; j < k; j++)
                                dup = dup || strcmp(names[j], name) == 0;
                        if (dup)
                                continue;
                        /* sometimes a change that changes nothing (a row rewritten as it was) */
                        if (rand() % 4)
                                state[i] = rand() % 7; /* up to dane-only: no match= */
                        memcpy(names[k], name, sizeof(name));
                        blocks[k] = block_of(i);
                        ch[k] = (struct map_change){ names[k], blocks[k] };
                        k++;
                }
                qsort(ch, k, sizeof(ch[0]), cmp_change);
                char *merged = NULL;
                size_t merged_len = 0;
                struct map_edit e;
                assert_int_equal(map_merge(text, len, ch, k, &merged, &merged_len, &e), 0);
                size_t whole_len = 0;
                char *whole = render_all(&whole_len);
                assert_int_equal(merged_len, whole_len);
                assert_string_equal(merged, whole);
                saw_unicode = saw_unicode || strstr(whole, "b\xc3\xbc"
                                                           "cher.example\t");
                index_apply(&x, &e);
                assert_index_is(&x, whole);
                if (strcmp(text, merged) == 0)
                        assert_true(e.n_put == 0 && e.n_del == 0);
                map_edit_done(&e);
                free(whole);
                free(text);
                text = merged;
                len = merged_len;
                for (size_t j = 0; j < k; j++)
                        free(blocks[j]);
        }
        free(text);
        for (size_t i = 0; i < x.n; i++)
                free(x.line[i]);
        assert_true(saw_unicode); /* the two-key blocks were among the changes */
}

static void test_a_text_it_did_not_make_is_refused(void **unused)
{
        const char *h = POLICY_MAP_HEADER;
        char buf[512];
        const struct map_change ok[] = { { "b.example", "b.example\tmay\n" } };
        const struct map_change bad_block[] = { { "b.example", "c.example\tmay\n" } };
        const struct map_change unsorted[] = { { "c.example", NULL }, { "b.example", NULL } };
        char *t = NULL;
        size_t len = 0;
        struct map_edit e;
        /* no header (a hand-written map) */
        assert_int_equal(map_merge("a.example\tmay\n", 14, ok, 1, &t, &len, &e), -EINVAL);
        /* unsorted text, a destination twice, a line without TAB, a U-label line first */
        const char *bodies[] = { "c.example\tmay\na.example\tmay\n",
                                 "a.example\tmay\na.example\tmay\n", "a.example may\n",
                                 "b\xc3\xbc"
                                 "cher.example\tmay\n",
                                 "a.example\tmay" };
        for (size_t i = 0; i < ARRAY_SIZE(bodies); i++) {
                snprintf(buf, sizeof(buf), "%s%s", h, bodies[i]);
                assert_int_equal(map_merge(buf, strlen(buf), ok, 1, &t, &len, &e), -EINVAL);
        }
        snprintf(buf, sizeof(buf), "%sa.example\tmay\n", h);
        assert_int_equal(map_merge(buf, strlen(buf), bad_block, 1, &t, &len, &e), -EINVAL);
        assert_int_equal(map_merge(buf, strlen(buf), unsorted, 2, &t, &len, &e), -EINVAL);
        /* a new destination at the end; the same block again is no change */
        assert_int_equal(map_merge(buf, strlen(buf), ok, 1, &t, &len, &e), 0);
        assert_string_equal(e.put.p, "b.example\tmay\n");
        assert_true(e.n_put == 1 && e.n_del == 0);
        map_edit_done(&e);
        char *again = NULL;
        assert_int_equal(map_merge(t, len, ok, 1, &again, &len, &e), 0);
        assert_true(e.n_put == 0 && e.n_del == 0 && strcmp(again, t) == 0);
        free(again);
        free(t);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_random_changes_equal_a_whole_render),
                cmocka_unit_test(test_a_text_it_did_not_make_is_refused),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
