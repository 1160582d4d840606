/* queue.c - the coalescing job queue (see queue.h). Producers: HTTP threads; consumer: the
 * worker thread. Waits are bounded by the caller's timeout on CLOCK_MONOTONIC. */
#include "apply/queue.h"

#include <errno.h>
#include <time.h>

#include "event.h"

int queue_init(struct queue *q)
{
        *q = (struct queue){ 0 };
        int r = pthread_mutex_init(&q->lock, NULL);
        if (r)
                return -r;
        r = cond_init_monotonic(&q->cond);
        if (r < 0)
                pthread_mutex_destroy(&q->lock);
        return r;
}

void queue_destroy(struct queue *q)
{
        pthread_cond_destroy(&q->cond);
        pthread_mutex_destroy(&q->lock);
}

int queue_push(struct queue *q, struct queue_item *item)
{
        pthread_mutex_lock(&q->lock);
        if (q->closed) {
                pthread_mutex_unlock(&q->lock);
                return -ESHUTDOWN;
        }
        item->next = NULL;
        if (q->tail)
                q->tail->next = item;
        else
                q->head = item;
        q->tail = item;
        q->depth++;
        pthread_cond_signal(&q->cond);
        pthread_mutex_unlock(&q->lock);
        return 0;
}

void queue_push_front(struct queue *q, struct queue_item *list)
{
        if (!list)
                return;
        struct queue_item *last = list;
        size_t n = 1;
        for (; last->next; last = last->next)
                n++;
        pthread_mutex_lock(&q->lock);
        last->next = q->head;
        q->head = list;
        if (!q->tail)
                q->tail = last;
        q->depth += n;
        pthread_cond_signal(&q->cond);
        pthread_mutex_unlock(&q->lock);
}

struct queue_item *queue_drain(struct queue *q, uint64_t timeout_usec)
{
        struct timespec deadline;
        struct queue_item *list;

        deadline = monotonic_after(timeout_usec);
        pthread_mutex_lock(&q->lock);
        while (!q->head && !q->closed && !q->woken)
                if (pthread_cond_timedwait(&q->cond, &q->lock, &deadline) == ETIMEDOUT)
                        break;
        q->woken = false;
        list = q->head;
        q->head = q->tail = NULL;
        q->depth = 0;
        pthread_mutex_unlock(&q->lock);
        return list;
}

void queue_wake(struct queue *q)
{
        pthread_mutex_lock(&q->lock);
        q->woken = true;
        pthread_cond_broadcast(&q->cond);
        pthread_mutex_unlock(&q->lock);
}

bool queue_wait_closed(struct queue *q, uint64_t timeout_usec)
{
        struct timespec deadline;
        deadline = monotonic_after(timeout_usec);
        pthread_mutex_lock(&q->lock);
        while (!q->closed)
                if (pthread_cond_timedwait(&q->cond, &q->lock, &deadline) == ETIMEDOUT)
                        break;
        bool closed = q->closed;
        pthread_mutex_unlock(&q->lock);
        return closed;
}

void queue_close(struct queue *q)
{
        pthread_mutex_lock(&q->lock);
        q->closed = true;
        pthread_cond_broadcast(&q->cond);
        pthread_mutex_unlock(&q->lock);
}

size_t queue_depth(struct queue *q)
{
        pthread_mutex_lock(&q->lock);
        size_t n = q->depth;
        pthread_mutex_unlock(&q->lock);
        return n;
}

bool queue_closed(struct queue *q)
{
        pthread_mutex_lock(&q->lock);
        bool closed = q->closed;
        pthread_mutex_unlock(&q->lock);
        return closed;
}
