/* string_set.h - a set of strings, each with a number (where it was first seen), compact enough
 * for a million destinations of a bulk body (an arena of the strings and a table of 8-byte
 * slots, instead of a JSON object of a million members). Pure (no I/O); one thread at a time. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "util.h"

struct string_set {
        uint64_t *slots; /* 0 empty, else (32 bits of the hash << 32) | (arena offset + 1) */
        size_t cap;      /* a power of two */
        size_t count;
        struct strbuf arena; /* per string: its number (4 bytes), the string, NUL */
        uint64_t seed;       /* the hash's; the caller picks it (a random one: no chosen
                              * collisions) */
};

/* Adds s (len bytes, no NUL inside) with number n: 1 added; 0 when it is there already, with
 * the number it was added with in *first; -ENOMEM, -E2BIG (over 4 GiB of strings). */
int string_set_add(struct string_set *set, const char *s, size_t len, uint32_t n, uint32_t *first);
void string_set_done(struct string_set *set);
