/* policy_map_read.h - reading a policy map's source text back (policy_map_read.c), by
 * postmap(1)'s rules. Pure; any thread. */
#pragma once

#include <stddef.h>

/* A key/value pair read from a map source (or from `postmap -s` output). */
struct policy_map_entry {
        char *key;   /* lower case */
        char *value; /* trimmed */
        size_t line; /* 1-based line where the entry starts */
};

/* Reads map source text as postmap(1) does: logical lines `key<whitespace>value`; blank lines
 * and lines whose first non-blank is '#' skipped (also inside a logical line); a line starting
 * with whitespace continues the previous one (joined without the newline); a logical line that
 * starts with whitespace, or lacks a key or a value, is skipped; text after a NUL byte in a
 * logical line is ignored; keys are lower-cased; the FIRST of duplicate keys wins. Entries come
 * in file order. -ENOMEM. */
int policy_map_parse(const char *text, size_t len, struct policy_map_entry **ret, size_t *n_ret);
/* Sorts entries by key (byte order). */
void policy_map_entries_sort(struct policy_map_entry *e, size_t n);
void policy_map_entries_free(struct policy_map_entry *e, size_t n);
