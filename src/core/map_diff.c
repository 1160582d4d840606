/* map_diff.c - the unified diffs a dry run shows: of two sorted maps, of two texts (see
 * map_diff.h). Pure; any thread. */
#include "core/map_diff.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *map_diff(const char *label, const char *old, size_t old_len, const char *new, size_t new_len)
{
        struct buf {
                char *p;
                size_t len, cap;
        } out = { 0 };
        FILE *f = open_memstream(&out.p, &out.len);
        if (!f)
                return NULL;
        const char *a = old, *ae = old + old_len, *b = new, *be = new + new_len;
        size_t la = 1, lb = 1;
        bool header = false;
        while (a < ae || b < be) {
                const char *an = a < ae ? memchr(a, '\n', (size_t)(ae - a)) : NULL;
                const char *bn = b < be ? memchr(b, '\n', (size_t)(be - b)) : NULL;
                size_t alen = a < ae ? (an ? (size_t)(an - a) : (size_t)(ae - a)) : 0;
                size_t blen = b < be ? (bn ? (size_t)(bn - b) : (size_t)(be - b)) : 0;
                int cmp;
                if (a >= ae)
                        cmp = 1;
                else if (b >= be)
                        cmp = -1;
                else {
                        size_t m = alen < blen ? alen : blen;
                        cmp = memcmp(a, b, m);
                        if (cmp == 0 && alen != blen)
                                cmp = alen < blen ? -1 : 1;
                }
                if (cmp != 0 && !header) {
                        fprintf(f, "--- %s (live)\n+++ %s (planned)\n", label, label);
                        header = true;
                }
                if (cmp == 0) {
                        a += alen + (an ? 1 : 0);
                        b += blen + (bn ? 1 : 0);
                        la++;
                        lb++;
                } else if (cmp < 0) {
                        fprintf(f, "@@ -%zu,1 +%zu,0 @@\n-%.*s\n", la, lb - 1, (int)alen, a);
                        a += alen + (an ? 1 : 0);
                        la++;
                } else {
                        fprintf(f, "@@ -%zu,0 +%zu,1 @@\n+%.*s\n", la - 1, lb, (int)blen, b);
                        b += blen + (bn ? 1 : 0);
                        lb++;
                }
        }
        fclose(f);
        return out.p;
}

/* The lines of [p, e): their count, and where line i starts (starts[n] = e). */
static size_t split_lines(const char *p, const char *e, const char ***ret)
{
        size_t n = 0;
        for (const char *q = p; q < e; n++) {
                const char *nl = memchr(q, '\n', (size_t)(e - q));
                q = nl ? nl + 1 : e;
        }
        const char **starts = malloc((n + 1) * sizeof(*starts));
        if (!starts)
                return SIZE_MAX;
        size_t i = 0;
        for (const char *q = p; q < e; i++) {
                starts[i] = q;
                const char *nl = memchr(q, '\n', (size_t)(e - q));
                q = nl ? nl + 1 : e;
        }
        starts[n] = e;
        *ret = starts;
        return n;
}

static bool same_line(const char **a, size_t i, const char **b, size_t j)
{
        size_t la = (size_t)(a[i + 1] - a[i]), lb = (size_t)(b[j + 1] - b[j]);
        return la == lb && memcmp(a[i], b[j], la) == 0;
}

char *text_diff(const char *label, const char *old, size_t old_len, const char *new, size_t new_len)
{
        const char **a = NULL, **b = NULL;
        size_t na = split_lines(old, old + old_len, &a);
        size_t nb = na == SIZE_MAX ? SIZE_MAX : split_lines(new, new + new_len, &b);
        if (nb == SIZE_MAX) {
                free(a);
                return NULL;
        }
        size_t head = 0, tail = 0;
        while (head < na && head < nb && same_line(a, head, b, head))
                head++;
        while (tail < na - head && tail < nb - head &&
               same_line(a, na - 1 - tail, b, nb - 1 - tail))
                tail++;
        char *out = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&out, &len);
        if (f && (head < na - tail || head < nb - tail)) {
                size_t da = na - tail - head, db = nb - tail - head;
                fprintf(f, "--- %s (live)\n+++ %s (planned)\n@@ -%zu,%zu +%zu,%zu @@\n", label,
                        label, da ? head + 1 : head, da, db ? head + 1 : head, db);
                for (size_t i = head; i < na - tail; i++)
                        fprintf(f, "-%.*s\n", (int)strcspn(a[i], "\n"), a[i]);
                for (size_t j = head; j < nb - tail; j++)
                        fprintf(f, "+%.*s\n", (int)strcspn(b[j], "\n"), b[j]);
        }
        if (f)
                fclose(f);
        free(a);
        free(b);
        return out;
}
