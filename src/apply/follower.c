/* follower.c - the fleet's generation listener (see follower.h): a libpq session with LISTEN,
 * poll on its socket and a stop eventfd, bounded by node_heartbeat_interval for the safety-net
 * read of the generation; a lost connection is made again after a pause. Its own thread. */
#include "apply/follower.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "app.h"
#include "changes.h"
#include "apply/worker.h"
#include "conf.h"
#include "log.h"
#include "store/db.h"
#include "store/nodes.h"
#include "util.h"

#define RECONNECT_USEC (2ull * 1000 * 1000) /* the pause before connecting again */

struct follower {
        struct app *app;
        pthread_t thread;
        int stop_fd;
        PGconn *pg;
        void (*on_nodes_changed)(void *arg);
        void *on_nodes_changed_arg;
};

/* Waits up to usec for the stop (true) or for pg's socket (false). */
static bool wait_for(struct follower *f, int sock, uint64_t usec, bool *readable)
{
        struct pollfd p[2] = { { .fd = f->stop_fd, .events = POLLIN },
                               { .fd = sock, .events = POLLIN } };
        int ms = (int)(usec / 1000);
        int r = poll(p, sock >= 0 ? 2 : 1, ms);
        *readable = r > 0 && sock >= 0 && p[1].revents;
        return r > 0 && p[0].revents;
}

static void notified(struct follower *f, const PGnotify *n);

static void drain(struct follower *f)
{
        PGnotify *n;
        while ((n = PQnotifies(f->pg))) {
                notified(f, n);
                PQfreemem(n);
        }
}

/* The generation as committed now, and a retry asked of this node: the safety net for
 * notifications lost while away. */
static void read_generation(struct follower *f)
{
        const char *params[] = { f->app->cfg->node_name };
        PGresult *res = PQexecParams(f->pg,
                                     "SELECT generation, coalesce((SELECT retry_requested FROM "
                                     "nodes WHERE name = $1), false) FROM config_state",
                                     1, NULL, params, NULL, NULL, 0);
        if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1) {
                worker_generation_read(f->app->worker, strtoll(PQgetvalue(res, 0, 0), NULL, 10));
                if (streq(PQgetvalue(res, 0, 1), "t"))
                        worker_retry_requested(f->app->worker);
        }
        PQclear(res);
        changes_bump(); /* another node may have committed or moved: reads look again */
        /* what arrived while the query ran waits in libpq, not on the socket */
        drain(f);
        if (f->on_nodes_changed)
                f->on_nodes_changed(f->on_nodes_changed_arg);
}

/* One notification: a generation committed, a retry asked (of this node?), a node's row. */
static void notified(struct follower *f, const PGnotify *n)
{
        changes_bump(); /* what this node's reads show has changed (http/reply_cache.h) */
        if (streq(n->relname, NODE_RETRY_CHANNEL)) {
                if (streq(n->extra, f->app->cfg->node_name))
                        worker_retry_requested(f->app->worker);
        } else if (streq(n->relname, NODE_CHANGED_CHANNEL)) {
                if (f->on_nodes_changed)
                        f->on_nodes_changed(f->on_nodes_changed_arg);
        } else {
                worker_generation_committed(f->app->worker, strtoll(n->extra, NULL, 10));
        }
}

static bool listen_now(struct follower *f)
{
        char err[512];
        if (db_connect(f->app->cfg, &f->pg, err, sizeof(err)) < 0) {
                log_debug("fleet listener: %s", err);
                return false;
        }
        /* named, so that an operator (or a test) can tell this session in pg_stat_activity */
        PGresult *res = PQexec(f->pg, "SET application_name = 'smtptlsd-listener'; "
                                      "LISTEN smtptlsd_generation; LISTEN " NODE_RETRY_CHANNEL
                                      "; LISTEN " NODE_CHANGED_CHANNEL);
        bool ok = PQresultStatus(res) == PGRES_COMMAND_OK;
        PQclear(res);
        if (!ok) {
                log_warning("fleet listener: LISTEN failed: %s", PQerrorMessage(f->pg));
                PQfinish(f->pg);
                f->pg = NULL;
                return false;
        }
        read_generation(f); /* what was committed while we were not listening */
        return true;
}

static void *follower_main(void *arg)
{
        struct follower *f = arg;
        uint64_t every = (uint64_t)f->app->cfg->node_heartbeat_interval;
        for (;;) {
                bool readable = false;
                if (!f->pg && !listen_now(f)) {
                        if (wait_for(f, -1, RECONNECT_USEC, &readable))
                                break;
                        continue;
                }
                if (wait_for(f, PQsocket(f->pg), every, &readable))
                        break;
                if (!readable) {
                        read_generation(f);
                } else if (PQconsumeInput(f->pg) == 1) {
                        drain(f);
                }
                if (PQstatus(f->pg) != CONNECTION_OK) {
                        log_notice("fleet listener: the database connection was lost; "
                                   "listening again");
                        PQfinish(f->pg);
                        f->pg = NULL;
                }
        }
        if (f->pg)
                PQfinish(f->pg);
        return NULL;
}

int follower_start(struct app *app, void (*on_nodes_changed)(void *arg), void *arg,
                   struct follower **ret)
{
        struct follower *f = calloc(1, sizeof(*f));
        if (!f)
                return -ENOMEM;
        f->app = app;
        f->on_nodes_changed = on_nodes_changed;
        f->on_nodes_changed_arg = arg;
        f->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (f->stop_fd < 0) {
                int r = -errno;
                free(f);
                return r;
        }
        int r = pthread_create(&f->thread, NULL, follower_main, f);
        if (r != 0) {
                close(f->stop_fd);
                free(f);
                return -r;
        }
        *ret = f;
        return 0;
}

void follower_stop(struct follower *f)
{
        if (!f)
                return;
        uint64_t one = 1;
        if (write(f->stop_fd, &one, sizeof(one)) < 0)
                log_warning("fleet listener: cannot stop it: %s", strerror(errno));
        pthread_join(f->thread, NULL);
        close(f->stop_fd);
        free(f);
}
