/* queue.h - the job queue between the HTTP threads (producers) and the one worker (consumer):
 * an intrusive FIFO under a mutex and a condition variable. The worker takes everything queued at
 * once, so a burst of writes costs one render/validate/swap. Any thread may push. */
#pragma once

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct queue_item {
        struct queue_item *next;
};

struct queue {
        pthread_mutex_t lock;
        pthread_cond_t cond; /* on CLOCK_MONOTONIC */
        struct queue_item *head, *tail;
        size_t depth;
        bool closed;
        bool woken; /* queue_wake: the next drain returns at once, empty-handed */
};

int queue_init(struct queue *q);
void queue_destroy(struct queue *q);
/* Appends an item; -ESHUTDOWN once the queue is closed (the caller still owns the item). */
int queue_push(struct queue *q, struct queue_item *item);
/* Puts a list (linked by next, in its order) back at the head, before everything queued since it
 * was taken: the consumer returning what it could not run. Works on a closed queue too (the last
 * drain takes it). */
void queue_push_front(struct queue *q, struct queue_item *list);
/* Waits up to timeout_usec for at least one item, then takes every queued item in FIFO order.
 * Returns the list (NULL on timeout or when closed and empty). */
struct queue_item *queue_drain(struct queue *q, uint64_t timeout_usec);
/* Waits up to timeout_usec for the queue to close (a pause of the consumer that a stop cuts
 * short; pushes do not end it). Returns whether it is closed. */
bool queue_wait_closed(struct queue *q, uint64_t timeout_usec);
/* Wakes the consumer; later pushes fail. Items still queued stay for a last drain. */
void queue_close(struct queue *q);
/* Wakes the drainer without an item (something besides the queue needs it: a generation
 * another node committed); one wake ends one drain. */
void queue_wake(struct queue *q);
size_t queue_depth(struct queue *q);
bool queue_closed(struct queue *q);
