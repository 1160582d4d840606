/* acme_watch.c - inotify on <acme_live_directory> and each <name>/ below it (see acme_watch.h).
 * Events are debounced (certbot switches four symlinks per renewal) into one rescan job, recorded
 * in the audit trail with the actor "acme-watch". A directory that does not exist yet is looked
 * for again every few seconds. Its own thread, asleep in poll on the inotify descriptor and a stop
 * eventfd (acme_watch_stop wakes it at once); the only timeouts are the debounce and the look for
 * a missing directory, and an idle wait is bounded by RETRY_USEC. */
#include "apply/acme_watch.h"

#include <dirent.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <unistd.h>

#include "app.h"
#include "apply/job.h"
#include "apply/layout.h"
#include "apply/worker.h"
#include "conf.h"
#include "log.h"
#include "store/db.h"
#include "store/store.h"
#include "util.h"

#define QUIET_USEC     (1000ull * 1000) /* submit once events stop for this long */
#define MAX_DELAY_USEC (5000ull * 1000) /* ... or this long after the first event */
#define RETRY_USEC     (5000ull * 1000) /* look for a missing directory again */

struct acme_watch {
        struct app *app;
        pthread_t thread;
        int stop_fd; /* an eventfd: readable once acme_watch_stop ran */
        int fd;
        int root_wd;
};

static void watch_subdirs(struct acme_watch *w)
{
        const char *root = w->app->cfg->acme_live_directory;
        DIR *d = opendir(root);
        if (!d)
                return;
        struct dirent *de;
        while ((de = readdir(d))) {
                char path[PATH_MAX];
                if (de->d_name[0] == '.' || layout_join(root, de->d_name, path, sizeof(path)) < 0)
                        continue;
                /* inotify_add_watch on a watched directory only updates its mask */
                inotify_add_watch(w->fd, path,
                                  IN_CREATE | IN_DELETE | IN_MOVED_TO | IN_MOVED_FROM |
                                      IN_CLOSE_WRITE | IN_ATTRIB | IN_ONLYDIR);
        }
        closedir(d);
}

static bool watch_root(struct acme_watch *w)
{
        w->root_wd = inotify_add_watch(w->fd, w->app->cfg->acme_live_directory,
                                       IN_CREATE | IN_DELETE | IN_MOVED_TO | IN_MOVED_FROM |
                                           IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR);
        if (w->root_wd < 0)
                return false;
        watch_subdirs(w);
        return true;
}

static void submit_rescan(struct acme_watch *w)
{
        _cleanup_db_conn_ struct db_conn *c = NULL;
        struct problem p = { 0 };
        struct job *job = job_new("certificates.rescan", "certificates", "acme-watch", NULL);
        int r = job ? db_acquire(w->app->db, &c, &p) : -ENOMEM;
        if (r >= 0)
                r = store_job_insert(c, w->app->cfg->node_name, "acme-watch", "certificates.rescan",
                                     "certificates", NULL, NULL, &job->id, job->created_at, &p);
        if (r >= 0) {
                log_info("ACME directory changed: rescanning (job %lld)", (long long)job->id);
                if (worker_submit(w->app->worker, job) < 0)
                        job_free(job); /* stopping: the job row runs at the next start */
        } else {
                /* The database is away: the start-up scan or the next event catches up. */
                log_warning("ACME directory changed, but no rescan could be queued: %s", p.detail);
                job_free(job);
        }
        problem_done(&p);
}

static void *watch_main(void *arg)
{
        struct acme_watch *w = arg;
        uint64_t first = 0, last = 0, next_look = 0;
        bool started = false; /* the start-up scan already read what is there now */
        char buf[8192] __attribute__((aligned(__alignof__(struct inotify_event))));

        for (;;) {
                uint64_t now = now_monotonic_usec();
                if (w->root_wd < 0 && now >= next_look) {
                        if (watch_root(w)) {
                                log_info("watching %s", w->app->cfg->acme_live_directory);
                                if (started)
                                        first = last = now; /* it appeared: scan it */
                        }
                        next_look = now + RETRY_USEC;
                        started = true;
                }
                /* Asleep until an event, the stop, or what is due next: the end of a
                 * debounce, or the next look for a missing directory. */
                uint64_t due = now + RETRY_USEC;
                if (first) {
                        uint64_t quiet = last + QUIET_USEC, most = first + MAX_DELAY_USEC;
                        due = quiet < most ? quiet : most;
                }
                if (w->root_wd < 0 && next_look < due)
                        due = next_look;
                struct pollfd p[2] = { { .fd = w->fd, .events = POLLIN },
                                       { .fd = w->stop_fd, .events = POLLIN } };
                int woke = poll(p, 2, due > now ? (int)((due - now + 999) / 1000) : 0);
                if (woke > 0 && (p[1].revents & POLLIN))
                        break;
                if (woke > 0 && (p[0].revents & POLLIN)) {
                        ssize_t n = read(w->fd, buf, sizeof(buf));
                        for (char *q = buf; n > 0 && q < buf + n;) {
                                const struct inotify_event *ev = (const void *)q;
                                if (ev->wd == w->root_wd &&
                                    (ev->mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED)))
                                        w->root_wd = -1; /* gone: look for it again */
                                if (ev->wd == w->root_wd && (ev->mask & (IN_CREATE | IN_MOVED_TO)))
                                        watch_subdirs(w);
                                q += sizeof(*ev) + ev->len;
                        }
                        now = now_monotonic_usec();
                        if (!first)
                                first = now;
                        last = now;
                }
                now = now_monotonic_usec();
                if (first && (now - last >= QUIET_USEC || now - first >= MAX_DELAY_USEC)) {
                        first = last = 0;
                        submit_rescan(w);
                }
        }
        return NULL;
}

int acme_watch_start(struct app *app, struct acme_watch **ret)
{
        struct acme_watch *w = calloc(1, sizeof(*w));
        if (!w)
                return -ENOMEM;
        w->app = app;
        w->root_wd = -1;
        w->fd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
        w->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        int r =
            w->fd < 0 || w->stop_fd < 0 ? -errno : -pthread_create(&w->thread, NULL, watch_main, w);
        if (r < 0) {
                if (w->fd >= 0)
                        close(w->fd);
                if (w->stop_fd >= 0)
                        close(w->stop_fd);
                free(w);
                return r;
        }
        *ret = w;
        return 0;
}

void acme_watch_stop(struct acme_watch *w)
{
        if (!w)
                return;
        uint64_t one = 1;
        /* the counter goes from 0 to 1: nothing to fail on */
        if (write(w->stop_fd, &one, sizeof(one)) < 0)
                log_warning("cannot wake the ACME directory watch: %s", strerror(errno));
        pthread_join(w->thread, NULL);
        close(w->stop_fd);
        close(w->fd);
        free(w);
}
