/* runner.c - the probe threads, their queue, the coalescing of probes of one destination and
 * the report cache (see runner.h). Submitters run on HTTP threads (or the watch); the probes on
 * the runner's own threads. One mutex guards the queue, the flights and the cache. */
#include "probe/runner.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "event.h"
#include "log.h"
#include "probe/probe_conn.h"
#include "util.h"

struct waiter {
        probe_done_fn done;
        void *arg;
        struct waiter *next;
};

/* A probe of one destination: queued, then running; waiters are answered when it ends. */
struct flight {
        struct probe_destination dest;
        bool running;
        struct waiter *waiters;
        struct flight *next;
};

/* A finished report, shared while the cache holds it or a callback reads it. */
struct cached {
        struct probe_report report;
        uint64_t expires; /* monotonic usec */
        unsigned refs;
        struct cached *next;
};

struct probe_runner {
        const struct probe_config *cfg;
        unsigned n_threads, queue_max;
        uint64_t cache_usec;
        pthread_t *threads;
        unsigned started;
        int cancel_fd; /* an eventfd written once at stop: every probe's waits end */
        pthread_mutex_t lock;
        pthread_cond_t wake;
        struct flight *flights; /* queued and running, oldest first */
        unsigned queued, running;
        struct cached *cache;
        bool stopping;
};

static void cached_unref_locked(struct cached *c)
{
        if (--c->refs == 0) {
                probe_report_done(&c->report);
                free(c);
        }
}

/* Whether a and b ask the same: the destination and the trust anchors. */
static bool same_question(const struct probe_destination *a, const struct probe_destination *b)
{
        return streq(a->key, b->key) && streq(a->ca_file, b->ca_file) &&
               streq(a->ca_path, b->ca_path) && a->ca_default == b->ca_default;
}

/* The cached report of d when still fresh (a reference taken), else NULL; drops the stale. */
static struct cached *cache_find_locked(struct probe_runner *pr, const struct probe_destination *d)
{
        uint64_t now = now_monotonic_usec();
        for (struct cached **p = &pr->cache; *p;) {
                struct cached *c = *p;
                if (c->expires <= now) {
                        *p = c->next;
                        cached_unref_locked(c);
                        continue;
                }
                if (same_question(&c->report.dest, d)) {
                        c->refs++;
                        return c;
                }
                p = &c->next;
        }
        return NULL;
}

/* Reports the cache keeps at most: the oldest goes (a write-scope client probing random names
 * must not grow it without bound). */
#define CACHE_MAX 1024

static void cache_put_locked(struct probe_runner *pr, struct cached *c)
{
        uint64_t now = now_monotonic_usec();
        size_t n = 0;
        /* the same question's older report, the expired ones, and beyond CACHE_MAX - 1 the
         * oldest (the list is newest first) */
        for (struct cached **p = &pr->cache; *p;) {
                struct cached *x = *p;
                if (same_question(&x->report.dest, &c->report.dest) || x->expires <= now ||
                    n >= CACHE_MAX - 1) {
                        *p = x->next;
                        cached_unref_locked(x);
                        continue;
                }
                n++;
                p = &x->next;
        }
        c->refs++;
        c->next = pr->cache;
        pr->cache = c;
}

static struct flight *flight_find_locked(struct probe_runner *pr, const struct probe_destination *d,
                                         bool queued_only)
{
        for (struct flight *f = pr->flights; f; f = f->next)
                if (same_question(&f->dest, d) && !(queued_only && f->running))
                        return f;
        return NULL;
}

static void answer_all(struct waiter *w, const struct probe_report *r, int status)
{
        while (w) {
                struct waiter *next = w->next;
                w->done(r, false, status, w->arg);
                free(w);
                w = next;
        }
}

static void *probe_thread(void *arg)
{
        struct probe_runner *pr = arg;
        probe_set_cancel_fd(pr->cancel_fd);
        pthread_mutex_lock(&pr->lock);
        for (;;) {
                struct flight *f = NULL;
                for (struct flight *x = pr->flights; x && !f; x = x->next)
                        if (!x->running)
                                f = x;
                if (!f) {
                        if (pr->stopping)
                                break;
                        pthread_cond_wait(&pr->wake, &pr->lock);
                        continue;
                }
                f->running = true;
                pr->queued--;
                pr->running++;
                pthread_mutex_unlock(&pr->lock);

                struct cached *c = calloc(1, sizeof(*c));
                int r = c ? probe_run(pr->cfg, &f->dest, &c->report) : -ENOMEM;
                if (c)
                        c->refs = 1; /* ours, while the waiters read it */

                pthread_mutex_lock(&pr->lock);
                for (struct flight **p = &pr->flights; *p; p = &(*p)->next)
                        if (*p == f) {
                                *p = f->next;
                                break;
                        }
                pr->running--;
                if (c && r == 0 && pr->cache_usec > 0 && !probe_report_transient(&c->report)) {
                        c->expires = now_monotonic_usec() + pr->cache_usec;
                        cache_put_locked(pr, c);
                }
                struct waiter *w = f->waiters;
                pthread_mutex_unlock(&pr->lock);
                /* the waiters are answered without the lock: a callback may submit again */
                answer_all(w, c ? &c->report : NULL, c ? (r < 0 ? r : 0) : -ENOMEM);
                free(f);
                pthread_mutex_lock(&pr->lock);
                if (c)
                        cached_unref_locked(c);
        }
        pthread_mutex_unlock(&pr->lock);
        return NULL;
}

int probe_runner_new(const struct probe_config *cfg, unsigned threads, unsigned queue_max,
                     uint64_t cache_usec, struct probe_runner **ret)
{
        struct probe_runner *pr = calloc(1, sizeof(*pr));
        if (!pr)
                return -ENOMEM;
        pr->cfg = cfg;
        pr->n_threads = threads > 0 ? threads : 1;
        pr->queue_max = queue_max;
        pr->cache_usec = cache_usec;
        pr->cancel_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        pr->threads = calloc(pr->n_threads, sizeof(*pr->threads));
        if (pr->cancel_fd < 0 || !pr->threads) {
                int r = pr->cancel_fd < 0 ? -errno : -ENOMEM;
                if (pr->cancel_fd >= 0)
                        close(pr->cancel_fd);
                free(pr->threads);
                free(pr);
                return r;
        }
        pthread_mutex_init(&pr->lock, NULL);
        pthread_cond_init(&pr->wake, NULL);
        for (unsigned i = 0; i < pr->n_threads; i++) {
                int r = pthread_create(&pr->threads[i], NULL, probe_thread, pr);
                if (r != 0) {
                        probe_runner_free(pr);
                        return -r;
                }
                pr->started++;
        }
        *ret = pr;
        return 0;
}

int probe_runner_submit(struct probe_runner *pr, const struct probe_destination *d, bool fresh,
                        probe_done_fn done, void *arg)
{
        struct waiter *w = calloc(1, sizeof(*w));
        if (!w)
                return -ENOMEM;
        w->done = done;
        w->arg = arg;
        pthread_mutex_lock(&pr->lock);
        if (pr->stopping) {
                pthread_mutex_unlock(&pr->lock);
                free(w);
                return -ESHUTDOWN;
        }
        struct cached *c = fresh ? NULL : cache_find_locked(pr, d);
        if (c) {
                pthread_mutex_unlock(&pr->lock);
                free(w);
                done(&c->report, true, 0, arg);
                pthread_mutex_lock(&pr->lock);
                cached_unref_locked(c);
                pthread_mutex_unlock(&pr->lock);
                return 0;
        }
        /* a probe of the same question answers this one too; a fresh request takes only one
         * that has not started (a running one began before the request) */
        struct flight *f = flight_find_locked(pr, d, fresh);
        if (!f) {
                if (pr->queued >= pr->queue_max + pr->n_threads - pr->running) {
                        pthread_mutex_unlock(&pr->lock);
                        free(w);
                        return -EAGAIN;
                }
                f = calloc(1, sizeof(*f));
                if (!f) {
                        pthread_mutex_unlock(&pr->lock);
                        free(w);
                        return -ENOMEM;
                }
                f->dest = *d;
                struct flight **p = &pr->flights;
                while (*p)
                        p = &(*p)->next;
                *p = f;
                pr->queued++;
                pthread_cond_signal(&pr->wake);
        }
        w->next = f->waiters;
        f->waiters = w;
        pthread_mutex_unlock(&pr->lock);
        return 0;
}

void probe_runner_stop(struct probe_runner *pr)
{
        if (!pr)
                return;
        pthread_mutex_lock(&pr->lock);
        if (pr->stopping) {
                pthread_mutex_unlock(&pr->lock);
                return;
        }
        pr->stopping = true;
        /* the queued: answered here; the running end at their next wait */
        struct flight *queued = NULL;
        for (struct flight **p = &pr->flights; *p;) {
                struct flight *f = *p;
                if (f->running) {
                        p = &f->next;
                        continue;
                }
                *p = f->next;
                f->next = queued;
                queued = f;
                pr->queued--;
        }
        pthread_cond_broadcast(&pr->wake);
        pthread_mutex_unlock(&pr->lock);
        uint64_t one = 1;
        if (write(pr->cancel_fd, &one, sizeof(one)) < 0)
                log_warning("probe runner: cannot cancel the probes in flight: %s",
                            strerror(errno));
        while (queued) {
                struct flight *next = queued->next;
                struct probe_report r = { .dest = queued->dest, .cancelled = true };
                strcpy_bounded(r.error, sizeof(r.error), "cancelled: the daemon stops");
                answer_all(queued->waiters, &r, -ECANCELED);
                free(queued);
                queued = next;
        }
        for (unsigned i = 0; i < pr->started; i++)
                pthread_join(pr->threads[i], NULL);
        pr->started = 0;
}

void probe_runner_free(struct probe_runner *pr)
{
        if (!pr)
                return;
        probe_runner_stop(pr);
        while (pr->cache) {
                struct cached *c = pr->cache;
                pr->cache = c->next;
                cached_unref_locked(c);
        }
        pthread_mutex_destroy(&pr->lock);
        pthread_cond_destroy(&pr->wake);
        close(pr->cancel_fd);
        free(pr->threads);
        free(pr);
}
