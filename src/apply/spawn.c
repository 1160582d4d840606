/* spawn.c - bounded child processes without a shell (see spawn.h). Worker thread (and start-up,
 * and HTTP threads through postfix_running_recent), each with its own hooks; spawn_cancel_all
 * from the main thread. A child is waited for in poll on its pidfd, its output and the cancel
 * eventfd, which spawn_cancel_all makes readable: the wait ends at once. */
#include "apply/spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/pidfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "util.h"

#define PROGRESS_USEC (100 * 1000)
#define DEFAULT_PATH  "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#define DRAIN_READS   64 /* after the child exited: at most this many reads of what is left */

/* The calling thread's hooks (spawn_hooks_set). */
static _Thread_local struct spawn_hooks hooks;

/* Readable once spawn_cancel_all ran (never read but by spawn_cancel_reset): every wait wakes. */
static atomic_int cancel_fd = -1;
static atomic_bool cancelled;
static pthread_once_t cancel_once = PTHREAD_ONCE_INIT;
static int cancel_error;

static void cancel_init(void)
{
        int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (fd < 0)
                cancel_error = -errno;
        atomic_store(&cancel_fd, fd);
}

void spawn_hooks_set(const struct spawn_hooks *h)
{
        hooks = h ? *h : (struct spawn_hooks){ 0 };
}

void spawn_progress_stamp(void *clock)
{
        atomic_store((atomic_uint_fast64_t *)clock, now_monotonic_usec());
}

int spawn_init(void)
{
        pthread_once(&cancel_once, cancel_init);
        return cancel_error;
}

void spawn_cancel_all(void)
{
        atomic_store(&cancelled, true);
        int fd = atomic_load(&cancel_fd);
        uint64_t one = 1;
        if (fd >= 0 && write(fd, &one, sizeof(one)) < 0)
                return; /* the counter is full: it is readable anyway */
}

bool spawn_cancelled(void)
{
        return atomic_load(&cancelled);
}

void spawn_cancel_reset(void)
{
        uint64_t n;
        int fd = atomic_load(&cancel_fd);
        if (fd >= 0 && read(fd, &n, sizeof(n)) < 0 && errno != EAGAIN)
                return;
        atomic_store(&cancelled, false);
}

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
        free(res->errors);
        res->errors = NULL;
}

/* One captured stream: the read end of a pipe (-1 once at EOF) and where its bytes go. */
struct stream {
        int fd;
        char *buf; /* NULL: read and dropped */
        size_t *len;
        size_t max;
};

static void append(struct stream *s, const char *data, size_t n)
{
        if (!s->buf)
                return;
        size_t room = s->max - *s->len;
        if (n > room)
                n = room; /* keep reading, so that the child never blocks on a full pipe */
        memcpy(s->buf + *s->len, data, n);
        *s->len += n;
        s->buf[*s->len] = 0;
}

/* One read; closes the stream at EOF or on an error. Returns whether it read something. */
static bool read_once(struct stream *s)
{
        char chunk[65536];
        ssize_t got = read(s->fd, chunk, sizeof(chunk));
        if (got > 0) {
                append(s, chunk, (size_t)got);
                return true;
        }
        if (got == 0 || (errno != EINTR && errno != EAGAIN)) {
                close(s->fd);
                s->fd = -1;
        }
        return false;
}

/* The child's environment: PATH, LANG=C, LC_ALL=C and TZ; nothing of ours (SMTPTLSD_* holds
 * the database URL with its password, NOTIFY_SOCKET would let a tool speak for us). Postfix's
 * tools take the configuration directory from `-c`, which every caller passes. */
struct child_env {
        char path[4096 + 8], tz[256 + 8];
        char *v[5];
};

static void child_env(struct child_env *e)
{
        const char *path = getenv("PATH"), *tz = getenv("TZ");
        size_t n = 0;
        if (!path || !*path || strlen(path) >= sizeof(e->path) - 8)
                path = DEFAULT_PATH;
        snprintf(e->path, sizeof(e->path), "PATH=%s", path);
        e->v[n++] = e->path;
        e->v[n++] = (char *)"LANG=C";
        e->v[n++] = (char *)"LC_ALL=C";
        if (tz && strlen(tz) < sizeof(e->tz) - 8) {
                snprintf(e->tz, sizeof(e->tz), "TZ=%s", tz);
                e->v[n++] = e->tz;
        }
        e->v[n] = NULL;
}

static void close_pair(int p[2])
{
        for (int i = 0; i < 2; i++)
                if (p[i] >= 0)
                        close(p[i]);
        p[0] = p[1] = -1;
}

static int open_pipe(int p[2])
{
        if (pipe2(p, O_CLOEXEC) < 0)
                return -errno;
        /* only our end: the child's stays blocking */
        if (fcntl(p[0], F_SETFL, O_NONBLOCK) < 0) {
                int r = -errno;
                close_pair(p);
                return r;
        }
        return 0;
}

/* posix_spawnp with a clean start (spawn.h): its own process group, signals unblocked and at their
 * defaults (we block SIGTERM/SIGINT/SIGHUP for signalfd and ignore SIGPIPE), descriptors 3 and
 * up closed (they are all close-on-exec as well), the minimal environment. */
static int start(const char *const argv[], const char *in, int out, int err, pid_t *pid)
{
        posix_spawn_file_actions_t fa;
        posix_spawnattr_t at;
        struct child_env env;
        sigset_t none, all;
        int r;

        child_env(&env);
        sigemptyset(&none);
        sigfillset(&all);
        sigdelset(&all, SIGKILL);
        sigdelset(&all, SIGSTOP);
        posix_spawn_file_actions_init(&fa);
        posix_spawnattr_init(&at);
        r = posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, in ? in : "/dev/null", O_RDONLY, 0);
        if (!r)
                r = posix_spawn_file_actions_adddup2(&fa, out, STDOUT_FILENO);
        if (!r)
                r = posix_spawn_file_actions_adddup2(&fa, err, STDERR_FILENO);
        if (!r)
                r = posix_spawn_file_actions_addclosefrom_np(&fa, STDERR_FILENO + 1);
        if (!r)
                r = posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF |
                                                      POSIX_SPAWN_SETPGROUP);
        if (!r)
                r = posix_spawnattr_setsigmask(&at, &none);
        if (!r)
                r = posix_spawnattr_setsigdefault(&at, &all);
        if (!r)
                r = posix_spawnattr_setpgroup(&at, 0);
        /* posix_spawnp takes char *const[] for historical reasons; it does not write to it. */
        if (!r)
                r = posix_spawnp(pid, argv[0], &fa, &at, (char *const *)argv, env.v);
        posix_spawnattr_destroy(&at);
        posix_spawn_file_actions_destroy(&fa);
        return -r;
}

int spawn_run(const char *const argv[], uint64_t timeout_usec, struct spawn_result *res)
{
        return spawn_run_opts(argv, timeout_usec, NULL, res);
}

int spawn_run_max(const char *const argv[], uint64_t timeout_usec, size_t output_max,
                  struct spawn_result *res)
{
        struct spawn_options o = { .output_max = output_max };
        return spawn_run_opts(argv, timeout_usec, &o, res);
}

int spawn_run_opts(const char *const argv[], uint64_t timeout_usec, const struct spawn_options *o,
                   struct spawn_result *res)
{
        size_t max = o && o->output_max ? o->output_max : SPAWN_OUTPUT_MAX;
        bool apart = o && o->stderr_apart;
        int out[2] = { -1, -1 }, err[2] = { -1, -1 };
        pid_t pid;
        int r;

        *res = (struct spawn_result){ .output_max = max };
        res->output = malloc(max + 1);
        if (apart)
                res->errors = malloc(SPAWN_OUTPUT_MAX + 1);
        if (!res->output || (apart && !res->errors))
                return -ENOMEM;
        res->output[0] = 0;
        if (apart)
                res->errors[0] = 0;
        if (spawn_cancelled()) {
                res->cancelled = 1;
                return -ECANCELED;
        }
        r = open_pipe(out);
        if (r >= 0 && apart)
                r = open_pipe(err);
        if (r >= 0)
                r = start(argv, o ? o->stdin_path : NULL, out[1], apart ? err[1] : out[1], &pid);
        if (out[1] >= 0)
                close(out[1]);
        if (err[1] >= 0)
                close(err[1]);
        out[1] = err[1] = -1;
        if (r < 0) {
                close_pair(out);
                close_pair(err);
                return r;
        }

        struct stream st[2] = {
                { out[0], res->output, &res->output_len, max },
                { err[0], res->errors, &res->errors_len, SPAWN_OUTPUT_MAX },
        };
        int pidfd = pidfd_open(pid, 0);
        int killed = pidfd < 0 ? -errno : 0; /* -ETIMEDOUT, -ECANCELED, or why we cannot wait */
        uint64_t deadline = now_monotonic_usec() + timeout_usec;
        /* Wait for the child's exit (its pidfd), reading its output as it comes, woken also by
         * spawn_cancel_all; bounded by the deadline (and every 100 ms for the heartbeat). */
        while (!killed) {
                uint64_t now = now_monotonic_usec();
                if (now >= deadline) {
                        killed = -ETIMEDOUT;
                        break;
                }
                uint64_t wait = deadline - now < PROGRESS_USEC ? deadline - now : PROGRESS_USEC;
                struct pollfd p[4] = {
                        { .fd = st[0].fd, .events = POLLIN },
                        { .fd = st[1].fd, .events = POLLIN },
                        { .fd = pidfd, .events = POLLIN },
                        { .fd = atomic_load(&cancel_fd), .events = POLLIN },
                };
                int n = poll(p, ARRAY_SIZE(p), (int)((wait + 999) / 1000));
                if (n < 0 && errno != EINTR) {
                        killed = -errno;
                        break;
                }
                for (size_t i = 0; i < 2; i++)
                        if (p[i].revents && st[i].fd >= 0)
                                read_once(&st[i]);
                if (p[3].revents & POLLIN)
                        killed = -ECANCELED;
                else if (p[2].revents & POLLIN)
                        break;
                if (hooks.progress)
                        hooks.progress(hooks.arg);
        }
        if (killed)
                kill(-pid, SIGKILL); /* the whole group: what the child started dies with it */
        int status = 0;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
                ;
        /* What the child wrote before it exited (its descendants may keep the pipe open: read
         * only what is there, bounded). */
        for (size_t i = 0; i < 2; i++)
                for (int k = 0; k < DRAIN_READS && st[i].fd >= 0 && read_once(&st[i]); k++)
                        ;
        for (size_t i = 0; i < 2; i++)
                if (st[i].fd >= 0)
                        close(st[i].fd);
        if (pidfd >= 0)
                close(pidfd);
        if (killed == -ETIMEDOUT || killed == -ECANCELED) {
                const char *why = killed == -ETIMEDOUT ? "\n(killed: time limit reached)"
                                                       : "\n(killed: the daemon is stopping)";
                res->timed_out = killed == -ETIMEDOUT;
                res->cancelled = killed == -ECANCELED;
                res->exit_status = 128 + SIGKILL;
                append(&st[0], why, strlen(why));
                return killed;
        }
        if (killed)
                return killed;
        res->exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        return 0;
}
