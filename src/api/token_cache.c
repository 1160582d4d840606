/* token_cache.c (api) - recently authenticated bearer tokens (see token_cache.h): a small table
 * indexed by the hash's first digits, one mutex. HTTP threads. */
#include "api/token_cache.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "util.h"

#define SLOTS 256 /* tokens in use at once on one node are few; a collision only costs a lookup */

struct slot {
        char hash[65];
        char name[72];
        enum scope scope;
        uint64_t at; /* monotonic usec; 0: empty */
};

static struct slot slots[SLOTS];
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static struct slot *slot_of(const char hash[65])
{
        char first[9];
        memcpy(first, hash, 8);
        first[8] = 0;
        return &slots[strtoul(first, NULL, 16) % SLOTS];
}

bool token_cache_get(const char hash[65], char name[static 72], enum scope *scope)
{
        bool hit = false;
        uint64_t now = now_monotonic_usec();
        pthread_mutex_lock(&lock);
        struct slot *s = slot_of(hash);
        if (s->at && now - s->at < TOKEN_CACHE_USEC && CRYPTO_memcmp(s->hash, hash, 64) == 0) {
                memcpy(name, s->name, 72);
                *scope = s->scope;
                hit = true;
        }
        pthread_mutex_unlock(&lock);
        return hit;
}

void token_cache_put(const char hash[65], const char *name, enum scope scope)
{
        pthread_mutex_lock(&lock);
        struct slot *s = slot_of(hash);
        memcpy(s->hash, hash, 65);
        snprintf(s->name, sizeof(s->name), "%s", name);
        s->scope = scope;
        s->at = now_monotonic_usec();
        pthread_mutex_unlock(&lock);
}

void token_cache_clear(void)
{
        pthread_mutex_lock(&lock);
        memset(slots, 0, sizeof(slots));
        pthread_mutex_unlock(&lock);
}
