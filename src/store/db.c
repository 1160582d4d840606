/* db.c - PostgreSQL connections: the pool used by HTTP threads (mutex + condition variable,
 * bounded waits), reconnects with back-off, and db_exec()'s error sorting. */
#include "store/db.h"

#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <time.h>

#include <openssl/crypto.h>

#include "conf.h"
#include "event.h"
#include "log.h"

#define ACQUIRE_TIMEOUT_USEC (5 * 1000000ull)
/* After a failed connect, none for the longer of 1 s and 4 times what the attempt took (a
 * refused connection costs nothing; a connect timing out into a network that drops packets
 * holds an HTTP thread for database_connect_timeout: at most a fifth of its time then), and
 * never longer than a minute. */
#define RECONNECT_BACKOFF_USEC     (1000000ull)
#define RECONNECT_BACKOFF_FACTOR   4
#define RECONNECT_BACKOFF_MAX_USEC (60 * 1000000ull)

struct db_pool {
        const struct config *cfg;
        pthread_mutex_t lock;
        pthread_cond_t cond;
        size_t size;
        struct db_conn *conns;
        bool *busy;
        uint64_t retry_after_usec; /* no reconnect attempt before this (monotonic) */
        uint64_t failed_usec;      /* the last time the database could not be reached; 0: never */
        bool available;
};

/* Server notices ("relation already exists, skipping") are not errors: keep them at debug. */
static void notice_to_log(void *arg, const char *message)
{
        log_debug("database notice: %s", message);
}

int db_connect(const struct config *cfg, PGconn **ret, char *err, size_t errsize)
{
        char timeout[32], unacked[32], stmt[64];
        snprintf(timeout, sizeof(timeout), "%lld",
                 (long long)(cfg->database_connect_timeout / 1000000));
        snprintf(unacked, sizeof(unacked), "%lld",
                 (long long)(cfg->database_connect_timeout / 1000));
        /* A network that drops packets must not hold a thread for TCP's own retransmission
         * limit (about 15 minutes): data unacknowledged for the connect timeout, or an idle
         * connection that answers no keepalive for 10 + 3 x 5 s, breaks the connection (a
         * server busy with a long statement still acknowledges at the TCP level). Over a Unix
         * socket these do nothing. */
        const char *keys[] = { "dbname",           "connect_timeout",  "application_name",
                               "keepalives",       "keepalives_idle",  "keepalives_interval",
                               "keepalives_count", "tcp_user_timeout", NULL };
        const char *vals[] = { cfg->database_url, timeout, "smtptlsd", "1", "10", "5", "3",
                               unacked,           NULL };

        PGconn *pg = PQconnectdbParams(keys, vals, 1);
        if (!pg)
                return -ENOMEM;
        if (PQstatus(pg) != CONNECTION_OK) {
                /* libpq's message names host and reason, never the password. */
                snprintf(err, errsize, "%s", PQerrorMessage(pg));
                size_t n = strlen(err);
                while (n > 0 && (err[n - 1] == '\n' || err[n - 1] == ' '))
                        err[--n] = 0;
                PQfinish(pg);
                return -ENOTCONN;
        }
        PQsetNoticeProcessor(pg, notice_to_log, NULL);
        snprintf(stmt, sizeof(stmt), "%lldms", (long long)(cfg->database_statement_timeout / 1000));
        const char *params[] = { stmt };
        PGresult *res = PQexecParams(pg, "SELECT set_config('statement_timeout', $1, false)", 1,
                                     NULL, params, NULL, NULL, 0);
        bool ok = PQresultStatus(res) == PGRES_TUPLES_OK;
        PQclear(res);
        if (!ok) {
                snprintf(err, errsize, "cannot set statement_timeout: %s", PQerrorMessage(pg));
                PQfinish(pg);
                return -EIO;
        }
        *ret = pg;
        return 0;
}

int db_pool_new(const struct config *cfg, struct db_pool **ret)
{
        struct db_pool *p = calloc(1, sizeof(*p));
        if (!p)
                return -ENOMEM;
        p->cfg = cfg;
        p->size = (size_t)cfg->database_pool_size;
        p->conns = calloc(p->size, sizeof(*p->conns));
        p->busy = calloc(p->size, sizeof(*p->busy));
        if (!p->conns || !p->busy) {
                db_pool_free(p);
                return -ENOMEM;
        }
        for (size_t i = 0; i < p->size; i++)
                p->conns[i].pool = p;
        pthread_mutex_init(&p->lock, NULL);
        int r = cond_init_monotonic(&p->cond);
        if (r < 0) {
                pthread_mutex_destroy(&p->lock);
                free(p->conns);
                free(p->busy);
                free(p);
                return r;
        }
        *ret = p;
        return 0;
}

void db_pool_free(struct db_pool *p)
{
        if (!p)
                return;
        if (p->conns) {
                for (size_t i = 0; i < p->size; i++)
                        if (p->conns[i].pg)
                                PQfinish(p->conns[i].pg);
                pthread_mutex_destroy(&p->lock);
                pthread_cond_destroy(&p->cond);
        }
        free(p->conns);
        free(p->busy);
        free(p);
}

uint64_t db_pool_failed_usec(struct db_pool *p)
{
        pthread_mutex_lock(&p->lock);
        uint64_t t = p->failed_usec;
        pthread_mutex_unlock(&p->lock);
        return t;
}

/* At most a few reads per connection: what the server sent (a shutdown's FATAL), then its EOF. */
#define IDLE_PROBE_READS 4

bool db_pool_idle_open(struct db_pool *p)
{
        bool open = true;
        pthread_mutex_lock(&p->lock);
        for (size_t i = 0; i < p->size; i++) {
                PGconn *pg = p->conns[i].pg;
                if (p->busy[i] || !pg)
                        continue;
                for (int n = 0; n < IDLE_PROBE_READS && PQstatus(pg) == CONNECTION_OK; n++) {
                        struct pollfd pfd = { .fd = PQsocket(pg), .events = POLLIN };
                        /* Readable: data or EOF is there, so the read does not block. */
                        if (pfd.fd < 0 || poll(&pfd, 1, 0) <= 0 || !PQconsumeInput(pg))
                                break;
                }
                if (PQstatus(pg) != CONNECTION_OK)
                        open = false;
        }
        pthread_mutex_unlock(&p->lock);
        return open;
}

/* available: a connection made, begun at `since` (a connect begun before the last failure says
 * nothing of the database after it); not: a connect begun at `since` failed. */
static void set_available(struct db_pool *p, bool available, uint64_t since, const char *why)
{
        pthread_mutex_lock(&p->lock);
        bool was = p->available;
        p->available = available;
        if (!available) {
                p->failed_usec = now_monotonic_usec();
                uint64_t took = p->failed_usec - since;
                uint64_t wait = took * RECONNECT_BACKOFF_FACTOR;
                wait = wait < RECONNECT_BACKOFF_USEC       ? RECONNECT_BACKOFF_USEC
                       : wait > RECONNECT_BACKOFF_MAX_USEC ? RECONNECT_BACKOFF_MAX_USEC
                                                           : wait;
                p->retry_after_usec = p->failed_usec + wait;
        } else if (since >= p->failed_usec) {
                /* a connection just made: the database answers, the others may reconnect at
                 * once (the read model leaves pooled connections idle, dead since an outage,
                 * for longer than the queries did) */
                p->retry_after_usec = 0;
        }
        pthread_mutex_unlock(&p->lock);
        if (was && !available)
                log_warning("database unavailable: %s", why);
        else if (!was && available)
                log_notice("database connection established");
}

static int unavailable(struct problem *reterr)
{
        if (reterr && reterr->code == PROBLEM_NONE) {
                problem_set(reterr, PROBLEM_SERVICE_UNAVAILABLE, NULL,
                            "the database is unavailable; try again shortly");
                reterr->retry_after = 2;
        }
        return -ENOTCONN;
}

int db_acquire(struct db_pool *p, struct db_conn **ret, struct problem *reterr)
{
        struct timespec deadline = monotonic_after(ACQUIRE_TIMEOUT_USEC);
        struct db_conn *c = NULL;
        size_t i;

        pthread_mutex_lock(&p->lock);
        for (;;) {
                for (i = 0; i < p->size; i++)
                        if (!p->busy[i])
                                break;
                if (i < p->size)
                        break;
                /* woken by db_release; the condition variable times on CLOCK_MONOTONIC */
                if (pthread_cond_timedwait(&p->cond, &p->lock, &deadline) == ETIMEDOUT) {
                        pthread_mutex_unlock(&p->lock);
                        problem_set(reterr, PROBLEM_SERVICE_UNAVAILABLE, NULL,
                                    "all database connections are busy; try again shortly");
                        if (reterr)
                                reterr->retry_after = 1;
                        return -EBUSY;
                }
        }
        p->busy[i] = true;
        c = &p->conns[i];
        /* a connection made before the database was last found unreachable may be dead
         * without knowing it (a network that drops packets): its first query would wait for
         * the TCP bound; a new one is asked for instead */
        bool need_connect =
            !c->pg || PQstatus(c->pg) != CONNECTION_OK || c->connected_usec < p->failed_usec;
        bool backoff = need_connect && now_monotonic_usec() < p->retry_after_usec;
        pthread_mutex_unlock(&p->lock);

        c->used = false;
        c->in_transaction = false;
        if (backoff) {
                db_release(c);
                return unavailable(reterr);
        }
        if (need_connect) {
                char err[512];
                if (c->pg) {
                        PQfinish(c->pg);
                        c->pg = NULL;
                }
                uint64_t since = now_monotonic_usec();
                int r = db_connect(p->cfg, &c->pg, err, sizeof(err));
                if (r < 0) {
                        set_available(p, false, since, err);
                        db_release(c);
                        return unavailable(reterr);
                }
                c->connected_usec = since;
                set_available(p, true, since, NULL);
        }
        *ret = c;
        return 0;
}

void db_drop(struct db_conn *c)
{
        if (c->in_transaction || !c->pg)
                return;
        PQfinish(c->pg);
        c->pg = NULL;
}

void db_release(struct db_conn *c)
{
        struct db_pool *p = c->pool;
        if (c->in_transaction && c->pg) {
                PGresult *r = PQexec(c->pg, "ROLLBACK");
                PQclear(r);
                c->in_transaction = false;
        }
        pthread_mutex_lock(&p->lock);
        p->busy[c - p->conns] = false;
        pthread_cond_signal(&p->cond);
        pthread_mutex_unlock(&p->lock);
}

static bool sqlstate_is(const PGresult *res, const char *prefix)
{
        const char *s = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
        return s && strncmp(s, prefix, strlen(prefix)) == 0;
}

static int classify(PGconn *pg, PGresult *res, struct problem *reterr)
{
        if (PQstatus(pg) != CONNECTION_OK || sqlstate_is(res, "08") || sqlstate_is(res, "57P01") ||
            sqlstate_is(res, "57P02") || sqlstate_is(res, "57P03"))
                return unavailable(reterr);
        if (sqlstate_is(res, "23505"))
                return -EEXIST;
        if (sqlstate_is(res, "40001") || sqlstate_is(res, "40P01"))
                return -EAGAIN;
        if (sqlstate_is(res, "57014")) {
                problem_set(reterr, PROBLEM_SERVICE_UNAVAILABLE, NULL,
                            "the database did not answer in time; try again shortly");
                if (reterr)
                        reterr->retry_after = 2;
                return -ETIMEDOUT;
        }
        const char *msg = res ? PQresultErrorMessage(res) : PQerrorMessage(pg);
        log_error("database error: %s", msg);
        return problem_set_errno(reterr, -EIO, PROBLEM_INTERNAL_ERROR, NULL, "database error");
}

int db_exec_pg(PGconn *pg, PGresult **ret, struct problem *reterr, const char *sql, int nparams,
               const char *const *params)
{
        PGresult *res = PQexecParams(pg, sql, nparams, NULL, params, NULL, NULL, 0);
        ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
        if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) {
                if (ret)
                        *ret = res;
                else
                        PQclear(res);
                return 0;
        }
        int r = classify(pg, res, reterr);
        PQclear(res);
        return r;
}

int db_exec(struct db_conn *c, PGresult **ret, struct problem *reterr, const char *sql, int nparams,
            const char *const *params)
{
        struct problem scratch = { 0 };
        bool first = !c->used && !c->in_transaction;
        c->used = true;

        /* A pooled connection may have died while idle (database restarted). When this is the
         * first statement since acquire and no transaction is open, reconnect once and retry, so
         * that recovery needs no failed request. */
        int r = db_exec_pg(c->pg, ret, first ? &scratch : reterr, sql, nparams, params);
        if (r == -ENOTCONN && first && c->pool) {
                char err[512];
                PQfinish(c->pg);
                c->pg = NULL;
                uint64_t since = now_monotonic_usec();
                if (db_connect(c->pool->cfg, &c->pg, err, sizeof(err)) < 0) {
                        set_available(c->pool, false, since, err);
                        problem_done(&scratch);
                        return unavailable(reterr);
                }
                c->connected_usec = since;
                set_available(c->pool, true, since, NULL);
                r = db_exec_pg(c->pg, ret, reterr, sql, nparams, params);
        } else if (first && r < 0 && reterr && reterr->code == PROBLEM_NONE) {
                *reterr = scratch;
                scratch = (struct problem){ 0 };
        }
        problem_done(&scratch);
        if (r == -ENOTCONN && c->pool) /* lost, not a connect: the shortest back-off */
                set_available(c->pool, false, now_monotonic_usec(), PQerrorMessage(c->pg));
        return r;
}

char *db_like_pattern(const char *q)
{
        if (isempty(q))
                return NULL;
        char *p = malloc(2 * strlen(q) + 3), *o = p;
        if (!p)
                return NULL;
        *o++ = '%';
        for (const char *s = q; *s; s++) {
                if (*s == '%' || *s == '_' || *s == '\\')
                        *o++ = '\\';
                *o++ = *s;
        }
        *o++ = '%';
        *o = 0;
        return p;
}

void db_wipe_value(PGresult *res, int row, int col)
{
        if (res && row < PQntuples(res) && col < PQnfields(res) && !PQgetisnull(res, row, col))
                OPENSSL_cleanse(PQgetvalue(res, row, col), (size_t)PQgetlength(res, row, col));
}

int db_page_rows(PGresult *res, int version_col, int64_t *version, int *n, struct problem *reterr)
{
        *n = PQntuples(res);
        if (*n < 1)
                return problem_set_errno(reterr, -EIO, PROBLEM_INTERNAL_ERROR, NULL,
                                         "config_state is empty");
        if (version)
                *version = strtoll(PQgetvalue(res, 0, version_col), NULL, 10);
        if (*n == 1 && PQgetisnull(res, 0, 0))
                *n = 0;
        return 0;
}
