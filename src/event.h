/* event.h - bounded waits on events instead of polling loops: a condition variable on
 * CLOCK_MONOTONIC with its mutex (struct event: wait until a condition holds), and a one-shot stop
 * signal built on it (struct stop_event: sleep until a timeout or until stopped, woken at once).
 * Any thread. */
#pragma once

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

/* Initializes c to time its waits on CLOCK_MONOTONIC (pthread_cond_timedwait's deadlines then
 * come from now_monotonic_usec, unmoved by changes of the wall clock). 0 or -errno. */
int cond_init_monotonic(pthread_cond_t *c);
/* The absolute CLOCK_MONOTONIC time usec from now, for pthread_cond_timedwait. */
struct timespec monotonic_after(uint64_t usec);

struct event {
        pthread_mutex_t lock;
        pthread_cond_t cond;
};

int event_init(struct event *e);
void event_destroy(struct event *e);
/* Wakes every waiter, who then checks its condition again: call after changing what they wait
 * for (an atomic, or state under a lock of one's own: nothing is lost between a waiter's check
 * and its sleep, both happen under the event's lock). */
void event_signal(struct event *e);
/* Waits until ready(arg) holds (asked before the first sleep and after every wake) or usec have
 * passed: 0 when it holds, -ETIMEDOUT when not. */
int event_wait(struct event *e, bool (*ready)(void *arg), void *arg, uint64_t usec);

struct stop_event {
        struct event ev;
        atomic_bool set;
};

int stop_event_init(struct stop_event *s);
void stop_event_destroy(struct stop_event *s);
/* Sets the event (until stop_event_clear) and wakes every stop_event_wait at once. */
void stop_event_set(struct stop_event *s);
/* Unsets it, for an owner that stops one piece of work with it and then starts the next (the
 * verifier: a check superseded by a newer one); nothing may be waiting on it meanwhile. */
void stop_event_clear(struct stop_event *s);
bool stop_event_is_set(struct stop_event *s);
/* Sleeps usec unless the event is or becomes set: 0 after the whole sleep, -EINTR at once when
 * set. s NULL: a plain sleep (for a caller that has nothing to stop it). */
int stop_event_wait(struct stop_event *s, uint64_t usec);
