/* map_diff.c - the unified diff of two sorted maps (see map_diff.h). Pure; any thread. */
#include "core/map_diff.h"

#include <stdbool.h>
#include <stdio.h>
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
