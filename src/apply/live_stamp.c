/* live_stamp.c - the stamp of Postfix's live files (see live_stamp.h). An inotify descriptor
 * watches the directory of each file and, for a file that is a symlink, the directory its target
 * lives in (and, when the configuration directory is itself a symlink, the directory holding it);
 * a change to a file queues an event before the write (or rename) that made it returns.
 * Whoever asks for the stamp reads the queued events without blocking (one read() that finds
 * none while nothing changed: three stat() path walks cost a fifth of a /status hit) and counts
 * them; the stamp is the count. While a directory cannot be watched (inotify refused, a dangling
 * symlink, a directory gone) the stamp is made of the files' stat() and the watches are tried again
 * at the next call. HTTP threads, under one mutex. */
#include "apply/live_stamp.h"

#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "apply/layout.h"
#include "conf.h"
#include "util.h"

#define WATCH_MASK                                                                                 \
        (IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_CREATE | IN_DELETE | IN_MOVED_FROM |          \
         IN_MOVED_TO | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR)
#define N_FILES   3
#define READS_MAX 64 /* reads of queued events per call; what is left counts at the next */

struct live_stamp {
        const struct config *cfg;
        pthread_mutex_t lock;
        int fd;          /* inotify, non-blocking; -1: stat() stamps only */
        bool watching;   /* every directory is watched: the count is the stamp */
        uint64_t events; /* calls that found events, and (re)starts of the watches */
};

static int live_paths(const struct config *cfg, char paths[N_FILES][PATH_MAX])
{
        int r = layout_main_cf(cfg, paths[0], PATH_MAX);
        if (r >= 0)
                r = layout_policy_map(cfg, paths[1], PATH_MAX);
        if (r >= 0)
                r = layout_policy_index(cfg, paths[2], PATH_MAX);
        return r;
}

/* One file's identity mixed into h (a missing file counts too). */
static uint64_t stat_file(uint64_t h, const char *path)
{
        struct stat st = { 0 };
        if (stat(path, &st) < 0)
                st.st_ino = (ino_t)-1;
        const uint64_t v[] = { (uint64_t)st.st_ino, (uint64_t)st.st_size,
                               (uint64_t)st.st_mtim.tv_sec, (uint64_t)st.st_mtim.tv_nsec };
        return hash_fnv1a(h, v, sizeof(v));
}

/* Even: never a count's stamp. */
static uint64_t stat_stamp(const struct config *cfg)
{
        char paths[N_FILES][PATH_MAX];
        uint64_t h = 0;
        if (live_paths(cfg, paths) >= 0)
                for (size_t i = 0; i < N_FILES; i++)
                        h = stat_file(h, paths[i]);
        return h & ~(uint64_t)1;
}

static bool watch_dir_of(int fd, const char *path)
{
        char dir[PATH_MAX];
        size_t n = strlen(path);
        if (n >= sizeof(dir))
                return false;
        memcpy(dir, path, n + 1);
        return inotify_add_watch(fd, dirname(dir), WATCH_MASK) >= 0;
}

/* Watches the directory of each file and of a symlink's target (a watched directory only gets
 * its mask set again). Under the lock. */
static bool watch_all(struct live_stamp *s)
{
        char paths[N_FILES][PATH_MAX];
        if (live_paths(s->cfg, paths) < 0)
                return false;
        for (size_t i = 0; i < N_FILES; i++) {
                char real[PATH_MAX];
                struct stat st;
                if (!watch_dir_of(s->fd, paths[i]))
                        return false;
                if (realpath(paths[i], real)) {
                        if (!watch_dir_of(s->fd, real))
                                return false;
                } else if (errno != ENOENT || (lstat(paths[i], &st) == 0 && S_ISLNK(st.st_mode))) {
                        return false; /* a dangling symlink: where its target will be is unknown */
                }
        }
        /* The configuration directory a symlink itself: pointed elsewhere, it shows in the
         * directory that holds it. (A symlink further up the path is not watched.) */
        struct stat st;
        const char *dir = s->cfg->postfix_config_directory;
        if (lstat(dir, &st) == 0 && S_ISLNK(st.st_mode) && !watch_dir_of(s->fd, dir))
                return false;
        return true;
}

/* Reads what is queued; true if anything was. Under the lock. */
static bool drain(struct live_stamp *s)
{
        _Alignas(struct inotify_event) char buf[4096];
        bool any = false;
        for (int i = 0; i < READS_MAX; i++) {
                ssize_t n = read(s->fd, buf, sizeof(buf));
                if (n > 0) {
                        any = true;
                        continue;
                }
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && errno != EAGAIN)
                        s->watching = false; /* cannot tell: stat() until it can */
                break;
        }
        return any;
}

uint64_t live_stamp_now(const struct config *cfg, struct live_stamp *s)
{
        if (!s || s->fd < 0)
                return stat_stamp(cfg);
        pthread_mutex_lock(&s->lock);
        /* A change moves the count; the watches are set again after it: an event may be a
         * symlink pointed elsewhere or a directory replaced. Watches set again after stat()
         * stamps start a new count too. */
        if (drain(s) || !s->watching) {
                s->events++;
                s->watching = watch_all(s);
        }
        bool watching = s->watching;
        uint64_t stamp = s->events << 1 | 1;
        pthread_mutex_unlock(&s->lock);
        return watching ? stamp : stat_stamp(cfg);
}

int live_stamp_new(const struct config *cfg, struct live_stamp **ret)
{
        struct live_stamp *s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->cfg = cfg;
        pthread_mutex_init(&s->lock, NULL);
        s->fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
        if (s->fd >= 0)
                s->watching = watch_all(s);
        *ret = s;
        return 0;
}

void live_stamp_free(struct live_stamp *s)
{
        if (!s)
                return;
        if (s->fd >= 0)
                close(s->fd);
        pthread_mutex_destroy(&s->lock);
        free(s);
}
