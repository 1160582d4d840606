/* policy_map_read.h - reading a policy map's source text back (policy_map_read.c), by
 * postmap(1)'s rules. Pure; any thread. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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
/* The same walk, each entry handed to fn (key lower-cased, value trimmed; neither NUL-terminated,
 * both valid only during the call, in one buffer with the key first and only the white space
 * that separates them between; line as above), duplicates included; fn's negative value stops
 * it and is returned. */
typedef int (*policy_map_entry_fn)(void *ctx, const char *key, size_t key_len, const char *value,
                                   size_t value_len, size_t line);
int policy_map_each(const char *text, size_t len, policy_map_entry_fn fn, void *ctx);

/* A digest of a map's entries that ignores their order: their count and the sum, mod 2^256, of
 * SHA-256(key NUL value) over the entries (duplicates counted each time). Two texts with equal
 * digests hold the same entries, found without sorting or keeping either (a million entries:
 * two arrays of them took ~200 MiB); a text with a duplicate key digests unlike its postmap
 * (which keeps the first): compare those entry by entry. -ENOMEM. */
struct policy_map_digest {
        uint64_t sum[4];
        size_t count;
};
int policy_map_digest(const char *text, size_t len, struct policy_map_digest *ret);
bool policy_map_digest_equal(const struct policy_map_digest *a, const struct policy_map_digest *b);
/* Sorts entries by key (byte order). */
void policy_map_entries_sort(struct policy_map_entry *e, size_t n);
void policy_map_entries_free(struct policy_map_entry *e, size_t n);
