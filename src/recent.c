/* recent.c - a costly yes/no answer kept for a while, asked by one thread at a time (see
 * recent.h). Any thread. */
#include "recent.h"

#include "util.h"

static bool fresh(const struct recent_answer *a)
{
        uint64_t when = atomic_load(&a->when_usec);
        return when && now_monotonic_usec() - when < a->max_age_usec;
}

static uint64_t age(const struct recent_answer *a)
{
        uint64_t when =
            atomic_load(&a->when_usec); /* first: a store after it only makes it older */
        return now_monotonic_usec() - when;
}

void recent_store(struct recent_answer *a, bool value)
{
        atomic_store(&a->value, value);
        atomic_store(&a->when_usec, now_monotonic_usec());
}

void recent_revoke(struct recent_answer *a, uint64_t since_usec)
{
        if (atomic_load(&a->value) && atomic_load(&a->when_usec) <= since_usec)
                recent_store(a, false);
}

bool recent_get(struct recent_answer *a, bool (*ask)(void *userdata), void *userdata)
{
        if (fresh(a))
                return atomic_load(&a->value);
        /* One thread asks; the others take the last answer rather than queue behind it. */
        bool never = atomic_load(&a->when_usec) == 0;
        if (never ? pthread_mutex_lock(&a->lock) != 0 : pthread_mutex_trylock(&a->lock) != 0)
                return atomic_load(&a->value);
        bool value;
        if (fresh(a)) {
                value = atomic_load(&a->value);
        } else {
                value = ask(userdata);
                recent_store(a, value);
        }
        pthread_mutex_unlock(&a->lock);
        return value;
}

bool recent_get_ahead(struct recent_answer *a, bool (*ask)(void *userdata), void *userdata)
{
        if (!fresh(a))
                return recent_get(a, ask, userdata);
        if (age(a) >= a->max_age_usec / 4)
                atomic_store(&a->wanted, true);
        return atomic_load(&a->value);
}

void recent_refresh(struct recent_answer *a, bool (*ask)(void *userdata), void *userdata)
{
        if (!atomic_exchange(&a->wanted, false) || pthread_mutex_trylock(&a->lock) != 0)
                return;
        /* asked meanwhile (a reader wanting it while the last ask ran, the worker's own check) */
        if (age(a) >= a->max_age_usec / 4)
                recent_store(a, ask(userdata));
        pthread_mutex_unlock(&a->lock);
}
