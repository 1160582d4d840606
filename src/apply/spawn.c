/* spawn.c - bounded child processes without a shell (see spawn.h). Worker thread. */
#include "smtptlsd/spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "smtptlsd/util.h"

extern char **environ;

void (*spawn_progress)(void);

int spawn_argv(char *const *prefix, const char *const *extra, const char ***ret)
{
        size_t a = 0, b = 0;
        while (prefix[a])
                a++;
        while (extra[b])
                b++;
        const char **v = calloc(a + b + 1, sizeof(char *));
        if (!v)
                return -ENOMEM;
        for (size_t i = 0; i < a; i++)
                v[i] = prefix[i];
        for (size_t i = 0; i < b; i++)
                v[a + i] = extra[i];
        *ret = v;
        return 0;
}

void spawn_result_done(struct spawn_result *res)
{
        free(res->output);
        res->output = NULL;
}

static void append_output(struct spawn_result *res, const char *buf, size_t n)
{
        size_t room = res->output_max - res->output_len;
        if (n > room)
                n = room;
        memcpy(res->output + res->output_len, buf, n);
        res->output_len += n;
        res->output[res->output_len] = 0;
}

int spawn_run(const char *const argv[], uint64_t timeout_usec, struct spawn_result *res)
{
        return spawn_run_max(argv, timeout_usec, SPAWN_OUTPUT_MAX, res);
}

int spawn_run_max(const char *const argv[], uint64_t timeout_usec, size_t output_max,
                  struct spawn_result *res)
{
        posix_spawn_file_actions_t fa;
        int pipefd[2];
        pid_t pid;
        int r;

        *res = (struct spawn_result){ .output_max = output_max };
        res->output = malloc(output_max + 1);
        if (!res->output)
                return -ENOMEM;
        res->output[0] = 0;
        if (pipe2(pipefd, O_CLOEXEC) < 0)
                return -errno;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
        posix_spawn_file_actions_adddup2(&fa, pipefd[1], STDOUT_FILENO);
        posix_spawn_file_actions_adddup2(&fa, pipefd[1], STDERR_FILENO);
        /* posix_spawnp takes char *const[] for historical reasons; it does not write to it. */
        r = posix_spawnp(&pid, argv[0], &fa, NULL, (char *const *)argv, environ);
        posix_spawn_file_actions_destroy(&fa);
        close(pipefd[1]);
        if (r != 0) {
                close(pipefd[0]);
                return -r;
        }

        uint64_t deadline = now_monotonic_usec() + timeout_usec;
        bool eof = false;
        int status = 0;
        bool reaped = false;
        while (!reaped) {
                uint64_t now = now_monotonic_usec();
                if (now >= deadline) {
                        kill(pid, SIGKILL);
                        waitpid(pid, &status, 0);
                        close(pipefd[0]);
                        res->timed_out = 1;
                        res->exit_status = 128 + SIGKILL;
                        append_output(res, "\n(killed: time limit reached)", 29);
                        return -ETIMEDOUT;
                }
                if (!eof) {
                        struct pollfd p = { .fd = pipefd[0], .events = POLLIN };
                        int n = poll(&p, 1, 100);
                        if (n > 0) {
                                char buf[65536];
                                ssize_t got = read(pipefd[0], buf, sizeof(buf));
                                if (got > 0)
                                        append_output(res, buf, (size_t)got);
                                else if (got == 0 || errno != EINTR)
                                        eof = true;
                        }
                } else {
                        struct timespec ts = { 0, 20 * 1000000 };
                        nanosleep(&ts, NULL);
                }
                if (spawn_progress)
                        spawn_progress();
                pid_t w = waitpid(pid, &status, WNOHANG);
                if (w == pid)
                        reaped = true;
        }
        /* Drain what the child wrote before it exited (its descendants may keep the pipe open:
         * read only what is already there). */
        for (;;) {
                struct pollfd p = { .fd = pipefd[0], .events = POLLIN };
                if (poll(&p, 1, 0) <= 0)
                        break;
                char buf[4096];
                ssize_t got = read(pipefd[0], buf, sizeof(buf));
                if (got <= 0)
                        break;
                append_output(res, buf, (size_t)got);
        }
        close(pipefd[0]);
        res->exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        return 0;
}
