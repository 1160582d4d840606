/* test_recent.c - a costly answer kept for a while (src/recent.c): recent_get asks when the answer
 * is too old; recent_get_ahead, for request threads, takes a fresh answer and wants it asked again
 * once it is a quarter of its age, which recent_refresh does (only then, and only once), and asks
 * itself when the answer is too old. Real time, with margins of tens of milliseconds. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <unistd.h>
#include <cmocka.h>

#include "recent.h"

#define AGE_USEC (200 * 1000)

static int asked;

static bool ask(void *userdata)
{
        (void)userdata;
        asked++;
        return asked % 2 == 1; /* true, false, true, ...: each answer tells who gave it */
}

static void test_get_ahead_and_refresh(void **state)
{
        (void)state;
        struct recent_answer a = RECENT_ANSWER_INIT(AGE_USEC);
        asked = 0;
        /* the first answer is waited for */
        assert_true(recent_get_ahead(&a, ask, NULL));
        assert_int_equal(asked, 1);
        /* young: taken, nothing wanted, a refresh asks nothing */
        assert_true(recent_get_ahead(&a, ask, NULL));
        recent_refresh(&a, ask, NULL);
        assert_int_equal(asked, 1);
        /* a quarter of its age: taken as it is, and wanted again */
        usleep(AGE_USEC / 4 + 20 * 1000);
        assert_true(recent_get_ahead(&a, ask, NULL));
        assert_int_equal(asked, 1);
        recent_refresh(&a, ask, NULL); /* the worker's idle round */
        assert_int_equal(asked, 2);
        assert_false(recent_get_ahead(&a, ask, NULL)); /* the refreshed answer */
        recent_refresh(&a, ask, NULL);                 /* wanted once: asked once */
        assert_int_equal(asked, 2);
        /* wanted, then asked by someone else meanwhile: the refresh does not ask again */
        usleep(AGE_USEC / 4 + 20 * 1000);
        (void)recent_get_ahead(&a, ask, NULL);
        recent_store(&a, true);
        recent_refresh(&a, ask, NULL);
        assert_int_equal(asked, 2);
        /* too old (no one refreshed): the reader asks, as recent_get */
        usleep(AGE_USEC + 20 * 1000);
        assert_true(recent_get_ahead(&a, ask, NULL));
        assert_int_equal(asked, 3);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_get_ahead_and_refresh),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
