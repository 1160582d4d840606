/* string_set.c - see string_set.h. Open addressing with linear probing, at most half full. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/string_set.h"

static uint64_t slot_hash(uint64_t h)
{
        return h >> 32;
}

static const char *entry_string(const struct string_set *set, uint64_t slot, uint32_t *n)
{
        const char *e = set->arena.p + (uint32_t)slot - 1;
        memcpy(n, e, sizeof(*n));
        return e + sizeof(*n);
}

static int grow(struct string_set *set)
{
        size_t cap = set->cap ? set->cap * 2 : 1024;
        uint64_t *slots = calloc(cap, sizeof(*slots));
        if (!slots)
                return -ENOMEM;
        for (size_t i = 0; i < set->cap; i++) {
                uint64_t s = set->slots[i];
                if (!s)
                        continue;
                /* the hash's low bits are not kept: the string is hashed again */
                uint32_t n;
                const char *str = entry_string(set, s, &n);
                uint64_t h = hash_fnv1a(set->seed, str, strlen(str));
                size_t k = (size_t)h & (cap - 1);
                while (slots[k])
                        k = (k + 1) & (cap - 1);
                slots[k] = s;
        }
        free(set->slots);
        set->slots = slots;
        set->cap = cap;
        return 0;
}

int string_set_add(struct string_set *set, const char *s, size_t len, uint32_t n, uint32_t *first)
{
        if ((set->count + 1) * 2 > set->cap) {
                int r = grow(set);
                if (r < 0)
                        return r;
        }
        uint64_t h = hash_fnv1a(set->seed, s, len);
        size_t k = (size_t)h & (set->cap - 1);
        for (; set->slots[k]; k = (k + 1) & (set->cap - 1)) {
                if (set->slots[k] >> 32 != slot_hash(h))
                        continue;
                uint32_t was;
                const char *e = entry_string(set, set->slots[k], &was);
                if (strlen(e) == len && memcmp(e, s, len) == 0) {
                        *first = was;
                        return 0;
                }
        }
        size_t at = set->arena.len;
        if (at + sizeof(n) + len + 1 >= UINT32_MAX)
                return -E2BIG;
        if (strbuf_add(&set->arena, &n, sizeof(n)) < 0 || strbuf_add(&set->arena, s, len) < 0 ||
            strbuf_add(&set->arena, "", 1) < 0) {
                set->arena.len = at;
                return -ENOMEM;
        }
        set->slots[k] = (slot_hash(h) << 32) | (uint64_t)(at + 1);
        set->count++;
        return 1;
}

void string_set_done(struct string_set *set)
{
        free(set->slots);
        free(set->arena.p);
        *set = (struct string_set){ 0 };
}
