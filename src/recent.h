/* recent.h - a yes/no answer that is costly to get (a process to spawn, a database round trip),
 * kept for a while and fetched by one thread at a time: the others take the last answer rather
 * than queue behind the one asking. Any thread. */
#pragma once

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct recent_answer {
        pthread_mutex_t lock; /* held by the one thread asking */
        _Atomic bool value;
        _Atomic uint64_t when_usec; /* monotonic; 0: never asked */
        uint64_t max_age_usec;
        _Atomic bool wanted; /* a reader found the answer a quarter of max_age old: refresh asks */
};

#define RECENT_ANSWER_INIT(age)                                                                    \
        {                                                                                          \
                .lock = PTHREAD_MUTEX_INITIALIZER, .max_age_usec = (age)                           \
        }

/* The answer if it is at most max_age old; else ask(userdata) on this thread, unless another
 * thread is asking: then the previous answer. The very first answer is waited for. */
bool recent_get(struct recent_answer *a, bool (*ask)(void *userdata), void *userdata);
/* recent_get for threads whose time is a request's (HTTP), asking ahead: a reader that finds the
 * answer a quarter of its max_age old takes it and wants it asked again by recent_refresh, so
 * that a reader that comes back within half max_age finds it fresh and never waits for the
 * asking; one that finds it older than max_age (no one refreshed: a quiet while) asks as
 * recent_get does. */
bool recent_get_ahead(struct recent_answer *a, bool (*ask)(void *userdata), void *userdata);
/* Asks again if a reader wanted it (recent_get_ahead), on this thread: one whose time is no
 * request's (the worker's idle round). Nothing when no one read the answer meanwhile. */
void recent_refresh(struct recent_answer *a, bool (*ask)(void *userdata), void *userdata);
/* Records an answer got elsewhere (it counts as fresh). */
void recent_store(struct recent_answer *a, bool value);
/* Something went wrong at since_usec (monotonic): a yes got at or before then no longer holds and
 * becomes a no from now (a no keeps its age, so it still expires and is asked again). */
void recent_revoke(struct recent_answer *a, uint64_t since_usec);
