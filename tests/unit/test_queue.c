/* test_queue.c - the job queue: FIFO order, draining everything at once, bounded waits, close,
 * and many producers racing one consumer without losing or duplicating an item. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <cmocka.h>

#include "apply/queue.h"
#include "util.h"

struct item {
        struct queue_item q;
        int value;
};

static void test_fifo_and_drain_all(void **state)
{
        struct queue q;
        struct item items[5];
        assert_int_equal(queue_init(&q), 0);
        for (int i = 0; i < 5; i++) {
                items[i].value = i;
                assert_int_equal(queue_push(&q, &items[i].q), 0);
        }
        assert_int_equal(queue_depth(&q), 5);
        struct queue_item *list = queue_drain(&q, 1000);
        int expect = 0;
        for (struct queue_item *it = list; it; it = it->next)
                assert_int_equal(((struct item *)it)->value, expect++);
        assert_int_equal(expect, 5);
        assert_int_equal(queue_depth(&q), 0);
        queue_destroy(&q);
}

/* A batch the consumer gives back goes before what was pushed meanwhile, in its own order, on an
 * open or a closed queue. */
static void test_push_front_keeps_id_order(void **state)
{
        struct queue q;
        struct item items[6];
        assert_int_equal(queue_init(&q), 0);
        for (int i = 0; i < 6; i++)
                items[i].value = i;
        for (int i = 0; i < 3; i++)
                assert_int_equal(queue_push(&q, &items[i].q), 0);
        struct queue_item *taken = queue_drain(&q, 1000);
        assert_ptr_equal(taken, &items[0].q);
        assert_int_equal(queue_push(&q, &items[3].q), 0);
        assert_int_equal(queue_push(&q, &items[4].q), 0);
        queue_push_front(&q, taken);
        assert_int_equal(queue_depth(&q), 5);
        int expect = 0;
        for (struct queue_item *it = queue_drain(&q, 1000); it; it = it->next)
                assert_int_equal(((struct item *)it)->value, expect++);
        assert_int_equal(expect, 5);
        /* into an empty, closed queue: the tail is set, a later drain takes them */
        queue_close(&q);
        items[1].q.next = NULL;
        queue_push_front(&q, &items[0].q);
        assert_int_equal(queue_push(&q, &items[5].q), -ESHUTDOWN);
        assert_int_equal(queue_depth(&q), 2);
        struct queue_item *list = queue_drain(&q, 1000);
        assert_ptr_equal(list, &items[0].q);
        assert_ptr_equal(list->next, &items[1].q);
        assert_null(list->next->next);
        assert_int_equal(queue_depth(&q), 0);
        queue_destroy(&q);
}

static void test_timeout_is_bounded(void **state)
{
        struct queue q;
        assert_int_equal(queue_init(&q), 0);
        uint64_t t0 = now_monotonic_usec();
        assert_null(queue_drain(&q, 100000));
        uint64_t waited = now_monotonic_usec() - t0;
        assert_true(waited >= 90000);
        assert_true(waited < 2000000);
        queue_destroy(&q);
}

/* A wake ends one drain at once, empty-handed; the next waits again (for its timeout). */
static void test_wake(void **state)
{
        struct queue q;
        assert_int_equal(queue_init(&q), 0);
        queue_wake(&q);
        uint64_t t0 = now_monotonic_usec();
        assert_null(queue_drain(&q, 10 * 1000000ULL));
        assert_true(now_monotonic_usec() - t0 < 1000000ULL);
        t0 = now_monotonic_usec();
        assert_null(queue_drain(&q, 100 * 1000ULL));
        assert_true(now_monotonic_usec() - t0 >= 90 * 1000ULL);
        queue_destroy(&q);
}

static void test_close(void **state)
{
        struct queue q;
        struct item a = { .value = 1 }, b = { .value = 2 };
        assert_int_equal(queue_init(&q), 0);
        assert_int_equal(queue_push(&q, &a.q), 0);
        queue_close(&q);
        assert_true(queue_closed(&q));
        assert_int_equal(queue_push(&q, &b.q), -ESHUTDOWN);
        /* what was queued before the close is still handed out */
        struct queue_item *list = queue_drain(&q, 1000000);
        assert_ptr_equal(list, &a.q);
        assert_null(list->next);
        /* closed and empty: no wait at all */
        uint64_t t0 = now_monotonic_usec();
        assert_null(queue_drain(&q, 5000000));
        assert_true(now_monotonic_usec() - t0 < 1000000);
        queue_destroy(&q);
}

#define PRODUCERS    8
#define PER_PRODUCER 5000

struct producer {
        struct queue *q;
        struct item *items;
        int base;
};

static void *produce(void *arg)
{
        struct producer *p = arg;
        for (int i = 0; i < PER_PRODUCER; i++) {
                p->items[i].value = p->base + i;
                assert_int_equal(queue_push(p->q, &p->items[i].q), 0);
        }
        return NULL;
}

static void test_many_producers(void **state)
{
        struct queue q;
        pthread_t threads[PRODUCERS];
        struct producer prod[PRODUCERS];
        static struct item items[PRODUCERS][PER_PRODUCER];
        static unsigned char seen[PRODUCERS * PER_PRODUCER];
        int last[PRODUCERS];
        size_t total = 0, drains = 0;

        memset(seen, 0, sizeof(seen));
        for (int i = 0; i < PRODUCERS; i++)
                last[i] = -1;
        assert_int_equal(queue_init(&q), 0);
        for (int i = 0; i < PRODUCERS; i++) {
                prod[i] = (struct producer){ &q, items[i], i * PER_PRODUCER };
                assert_int_equal(pthread_create(&threads[i], NULL, produce, &prod[i]), 0);
        }
        uint64_t deadline = now_monotonic_usec() + 30000000;
        while (total < PRODUCERS * PER_PRODUCER && now_monotonic_usec() < deadline) {
                struct queue_item *list = queue_drain(&q, 100000);
                if (list)
                        drains++;
                for (struct queue_item *it = list; it; it = it->next) {
                        int v = ((struct item *)it)->value;
                        assert_false(seen[v]);
                        seen[v] = 1;
                        /* each producer's items arrive in the order it pushed them */
                        int who = v / PER_PRODUCER;
                        assert_true(v > last[who]);
                        last[who] = v;
                        total++;
                }
        }
        for (int i = 0; i < PRODUCERS; i++)
                pthread_join(threads[i], NULL);
        assert_int_equal(total, PRODUCERS * PER_PRODUCER);
        /* draining takes batches: far fewer drains than items */
        print_message("%zu items in %zu drains\n", total, drains);
        assert_true(drains <= total);
        queue_destroy(&q);
}

static void *close_later(void *arg)
{
        struct timespec ts = { 0, 100 * 1000000 };
        nanosleep(&ts, NULL);
        queue_close(arg);
        return NULL;
}

/* The worker's pause while the database is away: a push does not end it, its bound does, and a
 * close ends it at once (not at the end of the bound). */
static void test_wait_closed(void **state)
{
        struct queue q;
        struct queue_item a = { 0 };
        assert_int_equal(queue_init(&q), 0);
        assert_int_equal(queue_push(&q, &a), 0);
        uint64_t t0 = now_monotonic_usec();
        assert_false(queue_wait_closed(&q, 150000));
        assert_true(now_monotonic_usec() - t0 >= 150000);
        pthread_t t;
        assert_int_equal(pthread_create(&t, NULL, close_later, &q), 0);
        t0 = now_monotonic_usec();
        assert_true(queue_wait_closed(&q, 30 * 1000000));
        uint64_t waited = now_monotonic_usec() - t0;
        pthread_join(t, NULL);
        assert_true(waited < 5 * 1000000);
        assert_true(queue_wait_closed(&q, 0));
        queue_drain(&q, 0);
        queue_destroy(&q);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_fifo_and_drain_all),
                cmocka_unit_test(test_push_front_keeps_id_order),
                cmocka_unit_test(test_timeout_is_bounded),
                cmocka_unit_test(test_wake),
                cmocka_unit_test(test_close),
                cmocka_unit_test(test_many_producers),
                cmocka_unit_test(test_wait_closed),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
