/* event.c - condition variables on the monotonic clock, and the stop event (see event.h). Any
 * thread: waiters sleep in pthread_cond_timedwait, setters wake them. */
#include "event.h"

#include <errno.h>
#include <time.h>

#include "util.h"

int cond_init_monotonic(pthread_cond_t *c)
{
        pthread_condattr_t attr;
        int r = pthread_condattr_init(&attr);
        if (r)
                return -r;
        r = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
        if (!r)
                r = pthread_cond_init(c, &attr);
        pthread_condattr_destroy(&attr);
        return -r;
}

struct timespec monotonic_after(uint64_t usec)
{
        uint64_t t = now_monotonic_usec() + usec;
        return (struct timespec){ .tv_sec = (time_t)(t / 1000000),
                                  .tv_nsec = (long)(t % 1000000) * 1000 };
}

int event_init(struct event *e)
{
        int r = pthread_mutex_init(&e->lock, NULL);
        if (r)
                return -r;
        r = cond_init_monotonic(&e->cond);
        if (r < 0)
                pthread_mutex_destroy(&e->lock);
        return r;
}

void event_destroy(struct event *e)
{
        pthread_cond_destroy(&e->cond);
        pthread_mutex_destroy(&e->lock);
}

void event_signal(struct event *e)
{
        pthread_mutex_lock(&e->lock);
        pthread_cond_broadcast(&e->cond);
        pthread_mutex_unlock(&e->lock);
}

int event_wait(struct event *e, bool (*ready)(void *arg), void *arg, uint64_t usec)
{
        struct timespec until = monotonic_after(usec);
        int r = 0;
        pthread_mutex_lock(&e->lock);
        while (!ready(arg) && r == 0)
                r = pthread_cond_timedwait(&e->cond, &e->lock, &until);
        bool ok = ready(arg);
        pthread_mutex_unlock(&e->lock);
        return ok ? 0 : -ETIMEDOUT;
}

int stop_event_init(struct stop_event *s)
{
        atomic_init(&s->set, false);
        return event_init(&s->ev);
}

void stop_event_destroy(struct stop_event *s)
{
        event_destroy(&s->ev);
}

void stop_event_set(struct stop_event *s)
{
        atomic_store(&s->set, true);
        event_signal(&s->ev);
}

void stop_event_clear(struct stop_event *s)
{
        atomic_store(&s->set, false);
}

bool stop_event_is_set(struct stop_event *s)
{
        return atomic_load(&s->set);
}

static bool is_set(void *s)
{
        return stop_event_is_set(s);
}

int stop_event_wait(struct stop_event *s, uint64_t usec)
{
        if (!s) {
                struct timespec left = { .tv_sec = (time_t)(usec / 1000000),
                                         .tv_nsec = (long)(usec % 1000000) * 1000 };
                while (nanosleep(&left, &left) < 0 && errno == EINTR)
                        ;
                return 0;
        }
        return event_wait(&s->ev, is_set, s, usec) == 0 ? -EINTR : 0;
}
