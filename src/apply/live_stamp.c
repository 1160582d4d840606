/* live_stamp.c - the stamp of Postfix's live files (see live_stamp.h). An inotify descriptor
 * watches each file, the directory it is in and all its path rests on (each directory on the way,
 * the directory of each symlink met: watch_path); a change to a file, or to what its path leads
 * to, queues an event before the write (or rename) that made it returns.
 * Whoever asks for the stamp reads the queued events without blocking (one read() that finds
 * none while nothing changed: three stat() path walks cost a fifth of a /status hit) and counts
 * them; the stamp is the count. While a path cannot be watched (inotify refused, a dangling
 * symlink, a directory gone) the stamp is made of the files' stat() and the watches are tried again
 * a second later. HTTP threads, under one mutex. */
#include "apply/live_stamp.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "apply/layout.h"
#include "util.h"

#define WATCH_MASK                                                                                 \
        (IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_CREATE | IN_DELETE | IN_MOVED_FROM |          \
         IN_MOVED_TO | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR)
/* a directory on the way to a file: its own move or removal (added to what it has) */
#define SELF_MASK (IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR | IN_MASK_ADD)
/* the file itself, whichever name it is changed through */
#define FILE_MASK                                                                                  \
        (IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_DELETE_SELF | IN_MOVE_SELF | IN_MASK_ADD)
#define LINKS_MAX  40 /* symlinks followed in one path, as the kernel (ELOOP) */
#define N_FILES    3
#define READS_MAX  64 /* reads of queued events per call; what is left counts at the next */
#define RETRY_USEC (1000 * 1000) /* between tries of the watches while they cannot be set */

struct live_stamp {
        const struct config *cfg;
        pthread_mutex_t lock;
        int fd;              /* inotify, non-blocking; -1: stat() stamps only */
        bool watching;       /* every directory is watched: the count is the stamp */
        uint64_t events;     /* calls that found events, and (re)starts of the watches */
        uint64_t retry_usec; /* not watching: when to try the watches again */
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

static bool watch(int fd, const char *path, uint32_t mask)
{
        return inotify_add_watch(fd, path[0] ? path : "/", mask) >= 0;
}

/* Watches all that what path names rests on, resolving it a component at a time as the kernel
 * does: each directory it passes through, for its own move or removal (SELF_MASK); the directory
 * of each symlink met, which may be pointed elsewhere (WATCH_MASK: a symlinked config directory,
 * a link to a link, a link through a symlinked directory), and the directory the file is in; and
 * the file itself (FILE_MASK: an edit through another name - a hard link, a bind mount of the
 * file - queues its events in that name's directory, never in this one). False when the path
 * cannot be resolved, but for its last component missing: a file (or a symlink's target) that
 * appears there is seen in its watched directory. Not seen: a mount on the way, a change on
 * another host (NFS). Under the lock. */
static bool watch_path(int fd, const char *path)
{
        char cur[PATH_MAX] = "", rest[PATH_MAX], next[PATH_MAX], link[PATH_MAX];
        if (path[0] != '/' && !getcwd(cur, sizeof(cur)))
                return false;
        if (strcmp(cur, "/") == 0)
                cur[0] = 0;
        if (snprintf(rest, sizeof(rest), "%s", path) >= (int)sizeof(rest))
                return false;
        size_t at = 0; /* rest + at: still to resolve */
        for (int links = 0;;) {
                at += strspn(rest + at, "/");
                if (!rest[at])
                        break;
                const char *comp = rest + at;
                size_t len = strcspn(comp, "/"), n = strlen(cur);
                at += len;
                bool last = !rest[at + strspn(rest + at, "/")];
                if (len == 1 && comp[0] == '.')
                        continue;
                if (len == 2 && comp[0] == '.' && comp[1] == '.') {
                        char *slash = strrchr(cur, '/');
                        if (slash)
                                *slash = 0;
                        continue;
                }
                if (n + 1 + len >= sizeof(next))
                        return false;
                memcpy(next, cur, n);
                next[n] = '/';
                memcpy(next + n + 1, comp, len);
                next[n + 1 + len] = 0;
                struct stat st;
                if (lstat(next, &st) < 0)
                        return errno == ENOENT && last && watch(fd, cur, WATCH_MASK);
                if (S_ISLNK(st.st_mode)) {
                        /* watched before it is read: pointed elsewhere after, it queues an event */
                        if (++links > LINKS_MAX || !watch(fd, cur, WATCH_MASK))
                                return false;
                        ssize_t k = readlink(next, link, sizeof(link));
                        size_t tail = strlen(rest + at);
                        if (k <= 0 || (size_t)k + tail >= sizeof(link))
                                return false;
                        memcpy(link + k, rest + at, tail + 1); /* the target, then the rest */
                        memcpy(rest, link, (size_t)k + tail + 1);
                        at = 0;
                        if (rest[0] == '/')
                                cur[0] = 0;
                        continue;
                }
                memcpy(cur, next, n + len + 2);
                if (!last && !watch(fd, cur, SELF_MASK))
                        return false;
        }
        /* cur: what path names, without a symlink on the way */
        char dir[PATH_MAX];
        memcpy(dir, cur, sizeof(dir));
        char *slash = strrchr(dir, '/');
        if (slash)
                *slash = 0;
        return watch(fd, dir, WATCH_MASK) && watch(fd, cur, FILE_MASK);
}

/* Watches what each file's path rests on (watch_path; a watched inode only gets its mask set
 * again, or added to). Under the lock. */
static bool watch_all(struct live_stamp *s)
{
        char paths[N_FILES][PATH_MAX];
        if (live_paths(s->cfg, paths) < 0)
                return false;
        for (size_t i = 0; i < N_FILES; i++)
                if (!watch_path(s->fd, paths[i]))
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

uint64_t live_stamp_now(struct live_stamp *s)
{
        if (s->fd < 0)
                return stat_stamp(s->cfg);
        pthread_mutex_lock(&s->lock);
        /* A change moves the count; the watches are set again after it: an event may be a
         * symlink pointed elsewhere or a directory replaced. Watches set again after stat()
         * stamps start a new count too - tried at most every RETRY_USEC: the stat() stamps are
         * right meanwhile, and a path that stays unwatchable (a dangling symlink, no inotify
         * watches left) should not cost every request its walk under the lock. */
        bool changed = drain(s);
        if (s->watching ? changed : now_monotonic_usec() >= s->retry_usec) {
                s->events++;
                s->watching = watch_all(s);
                if (!s->watching)
                        s->retry_usec = now_monotonic_usec() + RETRY_USEC;
        }
        bool watching = s->watching;
        uint64_t stamp = s->events << 1 | 1;
        pthread_mutex_unlock(&s->lock);
        return watching ? stamp : stat_stamp(s->cfg);
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
