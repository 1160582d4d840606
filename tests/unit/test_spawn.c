/* test_spawn.c - child processes: output captured (stderr together or apart), exit codes, no
 * shell, a hard time limit that kills the whole process group, cancellation, and a clean start
 * (signal mask and dispositions, environment, descriptors, process group); and the waits that
 * end at once on their event (spawn's cancel, event.h's stop event) rather than at a poll. The
 * shell in some children here is the test's, never the daemon's. */
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "apply/spawn.h"
#include "event.h"
#include "util.h"

static void test_output_and_status(void **state)
{
        struct spawn_result res;
        const char *const ok[] = { "printf", "%s|%s", "a;b", "$HOME", NULL };
        assert_int_equal(spawn_run(ok, 5000000, &res), 0);
        assert_int_equal(res.exit_status, 0);
        /* no shell: ';' and '$HOME' arrive as they are */
        assert_string_equal(res.output, "a;b|$HOME");
        spawn_result_done(&res);

        const char *const err[] = { "sh", "-c", "echo out; echo err >&2; exit 3", NULL };
        assert_int_equal(spawn_run(err, 5000000, &res), 0);
        assert_int_equal(res.exit_status, 3);
        assert_non_null(strstr(res.output, "out"));
        assert_non_null(strstr(res.output, "err"));
        spawn_result_done(&res);
}

static void test_missing_command(void **state)
{
        struct spawn_result res;
        const char *const argv[] = { "/nonexistent/postmap", NULL };
        assert_int_equal(spawn_run(argv, 1000000, &res), -ENOENT);
        spawn_result_done(&res);
}

static void test_timeout_kills(void **state)
{
        struct spawn_result res;
        const char *const argv[] = { "sleep", "30", NULL };
        uint64_t t0 = now_monotonic_usec();
        assert_int_equal(spawn_run(argv, 300000, &res), -ETIMEDOUT);
        uint64_t took = now_monotonic_usec() - t0;
        assert_true(res.timed_out);
        assert_true(took >= 250000 && took < 3000000);
        spawn_result_done(&res);
}

static void test_output_is_capped(void **state)
{
        struct spawn_result res;
        const char *const argv[] = { "head", "-c", "1000000", "/dev/zero", NULL };
        assert_int_equal(spawn_run(argv, 10000000, &res), 0);
        assert_int_equal(res.exit_status, 0);
        assert_int_equal(res.output_len, SPAWN_OUTPUT_MAX);
        spawn_result_done(&res);
}

static void test_argv_join(void **state)
{
        char docker[] = "docker", exec[] = "exec", mta[] = "mta", postfix[] = "postfix";
        char *const prefix[] = { docker, exec, mta, postfix, NULL };
        const char *const extra[] = { "-c", "/etc/postfix", "reload", NULL };
        const char **v = NULL;
        assert_int_equal(spawn_argv(prefix, extra, &v), 0);
        assert_string_equal(v[3], "postfix");
        assert_string_equal(v[6], "reload");
        assert_null(v[7]);
        free((void *)v);
}

/* The state of a daemon that serves: SIGTERM/INT/HUP blocked (signalfd), SIGPIPE ignored, a
 * database URL with a password in the environment, a descriptor without close-on-exec. */
static void test_child_starts_clean(void **state)
{
        struct spawn_result res;
        sigset_t mask, old;
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGHUP);
        assert_int_equal(pthread_sigmask(SIG_BLOCK, &mask, &old), 0);
        void (*pipe_was)(int) = signal(SIGPIPE, SIG_IGN);
        setenv("SMTPTLSD_DATABASE_URL", "postgresql://smtptlsd:hunter2@db/smtptlsd", 1);
        setenv("NOTIFY_SOCKET", "/run/systemd/notify", 1);
        int null = open("/dev/null", O_RDONLY); /* no O_CLOEXEC on purpose */
        assert_true(null >= 0);
        assert_int_equal(dup2(null, 100), 100);

        const char *const status[] = { "cat", "/proc/self/status", NULL };
        assert_int_equal(spawn_run(status, 5000000, &res), 0);
        assert_non_null(strstr(res.output, "\nSigBlk:\t0000000000000000\n"));
        /* glibc's posix_spawn leaves its own two internal signals (32, 33: thread cancellation
         * and setxid) ignored, and the glibc of the child installs its handlers again; no other. */
        const char *ign = strstr(res.output, "\nSigIgn:\t");
        assert_non_null(ign);
        unsigned long long ignored = strtoull(ign + 9, NULL, 16);
        assert_int_equal(ignored & ~(3ULL << 31), 0);
        spawn_result_done(&res);

        const char *const env[] = { "env", NULL };
        assert_int_equal(spawn_run(env, 5000000, &res), 0);
        assert_null(strstr(res.output, "hunter2"));
        assert_null(strstr(res.output, "SMTPTLSD_"));
        assert_null(strstr(res.output, "NOTIFY_SOCKET"));
        assert_non_null(strstr(res.output, "LANG=C\n"));
        assert_non_null(strstr(res.output, "LC_ALL=C\n"));
        assert_true(strncmp(res.output, "PATH=", 5) == 0 || strstr(res.output, "\nPATH="));
        spawn_result_done(&res);

        /* ls's own directory is 3: 0, 1, 2 and 3, nothing else */
        const char *const fds[] = { "ls", "/proc/self/fd", NULL };
        assert_int_equal(spawn_run(fds, 5000000, &res), 0);
        assert_string_equal(res.output, "0\n1\n2\n3\n");
        spawn_result_done(&res);

        /* its own process group: /proc/self/stat's 5th field (pgrp) is its pid (the 1st) */
        const char *const stat[] = { "cat", "/proc/self/stat", NULL };
        assert_int_equal(spawn_run(stat, 5000000, &res), 0);
        long pid = 0, pgrp = 0;
        const char *after_comm = strrchr(res.output, ')');
        assert_non_null(after_comm);
        assert_int_equal(sscanf(res.output, "%ld", &pid), 1);
        assert_int_equal(sscanf(after_comm + 2, "%*c %*d %ld", &pgrp), 1);
        assert_int_equal(pgrp, pid);
        assert_int_not_equal(pgrp, (long)getpgrp());
        spawn_result_done(&res);

        close(100);
        close(null);
        unsetenv("SMTPTLSD_DATABASE_URL");
        unsetenv("NOTIFY_SOCKET");
        signal(SIGPIPE, pipe_was);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
}

/* Whether pid is gone: no such process, or a zombie that only waits for its reaper. */
static bool gone(long pid)
{
        char path[64], buf[512];
        snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
        FILE *f = fopen(path, "re");
        if (!f)
                return true;
        size_t n = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[n] = 0;
        const char *p = strrchr(buf, ')');
        return p && (p[2] == 'Z' || p[2] == 'X');
}

static bool gone_soon(long pid)
{
        for (int i = 0; i < 200 && !gone(pid); i++)
                usleep(10000);
        return gone(pid);
}

/* The child (a shell) starts a grandchild that would outlive it: both die at the limit. */
static const char *const family[] = { "sh", "-c", "sleep 100 & echo $$ $!; sleep 100", NULL };

static void assert_family_gone(const struct spawn_result *res)
{
        long child = 0, grandchild = 0;
        assert_int_equal(sscanf(res->output, "%ld %ld", &child, &grandchild), 2);
        assert_true(gone_soon(child));
        assert_true(gone_soon(grandchild));
}

static void test_timeout_kills_the_group(void **state)
{
        struct spawn_result res;
        uint64_t t0 = now_monotonic_usec();
        assert_int_equal(spawn_run(family, 500000, &res), -ETIMEDOUT);
        assert_true(now_monotonic_usec() - t0 < 3000000);
        assert_true(res.timed_out);
        assert_family_gone(&res);
        spawn_result_done(&res);
}

static void *cancel_later(void *arg)
{
        usleep(300000);
        spawn_cancel_all();
        return NULL;
}

static void test_cancel_kills_the_group_and_later_spawns(void **state)
{
        struct spawn_result res;
        pthread_t t;
        assert_int_equal(spawn_init(), 0);
        assert_int_equal(pthread_create(&t, NULL, cancel_later, NULL), 0);
        uint64_t t0 = now_monotonic_usec();
        assert_int_equal(spawn_run(family, 30000000, &res), -ECANCELED);
        assert_true(now_monotonic_usec() - t0 < 3000000);
        assert_true(res.cancelled);
        assert_family_gone(&res);
        spawn_result_done(&res);
        pthread_join(t, NULL);

        /* nothing starts any more */
        const char *const touch[] = { "touch", "/proc/self/nothing-runs", NULL };
        assert_int_equal(spawn_run(touch, 5000000, &res), -ECANCELED);
        spawn_result_done(&res);

        spawn_cancel_reset();
        const char *const t_true[] = { "true", NULL };
        assert_int_equal(spawn_run(t_true, 5000000, &res), 0);
        spawn_result_done(&res);
}

static void test_stderr_apart(void **state)
{
        struct spawn_result res;
        const char *const argv[] = { "sh", "-c",
                                     "echo 'postconf: warning: x' >&2; echo dnssec; echo late >&2",
                                     NULL };
        const struct spawn_options o = { .stderr_apart = true };
        assert_int_equal(spawn_run_opts(argv, 5000000, &o, &res), 0);
        assert_string_equal(res.output, "dnssec\n");
        assert_string_equal(res.errors, "postconf: warning: x\nlate\n");
        spawn_result_done(&res);
}

static void count_progress(void *calls)
{
        (*(unsigned *)calls)++;
}

/* A child that closed its output and runs on: the wait sleeps on its exit (pidfd), woken for the
 * heartbeat about every 100 ms, not every 20 ms. */
static void test_wait_is_on_events(void **state)
{
        struct spawn_result res;
        const char *const argv[] = { "sh", "-c", "exec >&- 2>&-; sleep 0.6", NULL };
        unsigned progress_calls = 0;
        spawn_hooks_set(&(const struct spawn_hooks){ count_progress, &progress_calls });
        uint64_t t0 = now_monotonic_usec();
        assert_int_equal(spawn_run(argv, 5000000, &res), 0);
        uint64_t took = now_monotonic_usec() - t0;
        spawn_hooks_set(NULL);
        assert_int_equal(res.exit_status, 0);
        assert_true(took >= 550000 && took < 2000000);
        assert_true(progress_calls >= 3 && progress_calls <= 10);
        spawn_result_done(&res);
}

/* When the other thread set its event or cancelled (monotonic usec). */
static atomic_uint_fast64_t fired_at;

static void *cancel_soon(void *arg)
{
        usleep(200000);
        atomic_store(&fired_at, now_monotonic_usec());
        spawn_cancel_all();
        return NULL;
}

/* A child that is silent and far from its time limit: cancel from another thread ends the wait
 * at once (the cancel eventfd is in the poll set), not at the next heartbeat or at the limit. */
static void test_cancel_wakes_at_once(void **state)
{
        struct spawn_result res;
        const char *const argv[] = { "sh", "-c", "exec >&- 2>&-; sleep 30", NULL };
        unsigned progress_calls = 0;
        pthread_t t;
        assert_int_equal(spawn_init(), 0);
        spawn_cancel_reset();
        spawn_hooks_set(&(const struct spawn_hooks){ count_progress, &progress_calls });
        assert_int_equal(pthread_create(&t, NULL, cancel_soon, NULL), 0);
        assert_int_equal(spawn_run(argv, 20000000, &res), -ECANCELED);
        uint64_t late = now_monotonic_usec() - atomic_load(&fired_at);
        spawn_hooks_set(NULL);
        pthread_join(t, NULL);
        spawn_cancel_reset();
        fprintf(stderr, "spawn: cancel ended the wait after %.1f ms\n", (double)late / 1000.0);
        assert_true(res.cancelled);
        assert_true(late < 1000000);
        /* the heartbeat ran while it waited (about 200 ms: twice), once more for the cancel */
        assert_true(progress_calls >= 1 && progress_calls <= 6);
        spawn_result_done(&res);
}

static void *set_soon(void *ev)
{
        usleep(200000);
        atomic_store(&fired_at, now_monotonic_usec());
        stop_event_set(ev);
        return NULL;
}

/* A stop event ends a long wait at once; unset, a wait lasts its time; set, none waits. */
static void test_stop_event_wakes_at_once(void **state)
{
        struct stop_event ev;
        pthread_t t;
        assert_int_equal(stop_event_init(&ev), 0);

        uint64_t t0 = now_monotonic_usec();
        assert_int_equal(stop_event_wait(&ev, 150000), 0);
        assert_true(now_monotonic_usec() - t0 >= 150000);

        assert_int_equal(pthread_create(&t, NULL, set_soon, &ev), 0);
        assert_int_equal(stop_event_wait(&ev, 30000000), -EINTR);
        uint64_t late = now_monotonic_usec() - atomic_load(&fired_at);
        pthread_join(t, NULL);
        fprintf(stderr, "stop_event: woken %.1f ms after the set\n", (double)late / 1000.0);
        assert_true(late < 1000000);

        t0 = now_monotonic_usec();
        assert_int_equal(stop_event_wait(&ev, 30000000), -EINTR);
        assert_true(now_monotonic_usec() - t0 < 1000000);
        stop_event_destroy(&ev);

        t0 = now_monotonic_usec();
        assert_int_equal(stop_event_wait(NULL, 100000), 0);
        assert_true(now_monotonic_usec() - t0 >= 100000);
}

struct countdown {
        struct event ev;
        atomic_uint left;
};

static bool none_left(void *c)
{
        return atomic_load(&((struct countdown *)c)->left) == 0;
}

static void *count_down(void *arg)
{
        struct countdown *c = arg;
        for (int i = 0; i < 3; i++) {
                usleep(50000);
                if (atomic_fetch_sub(&c->left, 1) == 1) {
                        atomic_store(&fired_at, now_monotonic_usec());
                        event_signal(&c->ev);
                }
        }
        return NULL;
}

/* event_wait: returns when the condition holds after a signal (the last of three in flight),
 * long before its time; -ETIMEDOUT when it never holds. */
static void test_event_waits_for_its_condition(void **state)
{
        struct countdown c = { .left = 3 };
        pthread_t t;
        assert_int_equal(event_init(&c.ev), 0);
        assert_int_equal(pthread_create(&t, NULL, count_down, &c), 0);
        assert_int_equal(event_wait(&c.ev, none_left, &c, 30000000), 0);
        uint64_t late = now_monotonic_usec() - atomic_load(&fired_at);
        pthread_join(t, NULL);
        assert_int_equal(atomic_load(&c.left), 0);
        assert_true(late < 1000000);

        atomic_store(&c.left, 1);
        uint64_t t0 = now_monotonic_usec();
        assert_int_equal(event_wait(&c.ev, none_left, &c, 100000), -ETIMEDOUT);
        assert_true(now_monotonic_usec() - t0 >= 100000);
        event_destroy(&c.ev);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_output_and_status),
                cmocka_unit_test(test_missing_command),
                cmocka_unit_test(test_timeout_kills),
                cmocka_unit_test(test_output_is_capped),
                cmocka_unit_test(test_argv_join),
                cmocka_unit_test(test_child_starts_clean),
                cmocka_unit_test(test_timeout_kills_the_group),
                cmocka_unit_test(test_cancel_kills_the_group_and_later_spawns),
                cmocka_unit_test(test_stderr_apart),
                cmocka_unit_test(test_wait_is_on_events),
                cmocka_unit_test(test_cancel_wakes_at_once),
                cmocka_unit_test(test_stop_event_wakes_at_once),
                cmocka_unit_test(test_event_waits_for_its_condition),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
