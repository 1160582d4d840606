/* map_diff.h - a unified diff (no context lines) of two maps whose lines are sorted: what a dry
 * run shows of the policy map. Pure; any thread. */
#pragma once

#include <stddef.h>

/* "--- label (live)\n+++ label (planned)\n" and a "@@ -a,1 +b,0 @@" hunk per removed line, a
 * "@@ -a,0 +b,1 @@" hunk per added one; "" when they are the same. NULL when out of memory. The
 * caller frees it. */
char *map_diff(const char *label, const char *old, size_t old_len, const char *new, size_t new_len);

/* A unified diff of two texts whose lines are in no order (master.cf): the header and one hunk
 * from the first line that differs to the last (no context lines); "" when they are the same.
 * NULL when out of memory. The caller frees it. */
char *text_diff(const char *label, const char *old, size_t old_len, const char *new,
                size_t new_len);
