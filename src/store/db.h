/* db.h - PostgreSQL access: a bounded pool of connections for the HTTP threads, standalone
 * connections for the worker, migrations and the command line, and one query helper that sorts
 * failures into "database unavailable" (503), "duplicate" and internal errors. */
#pragma once

#include <libpq-fe.h>
#include <stdbool.h>

#include "core/problem.h"
#include "util.h"

struct config;
struct db_pool;

struct db_conn {
        PGconn *pg;
        struct db_pool *pool;
        uint64_t connected_usec; /* when its connect began (monotonic; pooled ones) */
        bool used;               /* a statement ran since db_acquire() */
        bool in_transaction;
};

/* Opens one connection (bounded by database_connect_timeout) and sets statement_timeout. On
 * failure err holds libpq's reason, without the password. */
int db_connect(const struct config *cfg, PGconn **ret, char *err, size_t errsize);

int db_pool_new(const struct config *cfg, struct db_pool **ret);
void db_pool_free(struct db_pool *p);
/* Waits (bounded) for a free connection, reconnecting it if needed. When the database is
 * unreachable fails fast with service_unavailable. */
int db_acquire(struct db_pool *p, struct db_conn **ret, struct problem *reterr);
void db_release(struct db_conn *c);
/* Closes c's connection outside a transaction; the next db_acquire of its slot opens a new one.
 * For after a statement of many megabytes: libpq keeps its buffers at their largest for the
 * connection's life. */
void db_drop(struct db_conn *c);
static inline void db_releasep(struct db_conn **c)
{
        if (*c)
                db_release(*c);
}
#define _cleanup_db_conn_ _cleanup_(db_releasep)

/* A timestamp column as every timestamp of the API: RFC 3339 in UTC, whole seconds. */
#define DB_TS(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
/* When (monotonic) the database last could not be reached (a connect or a query lost the
 * connection); 0: never. */
uint64_t db_pool_failed_usec(struct db_pool *p);
/* Whether the server has left every idle pooled connection open: reads, without waiting and
 * without a query, what it sent on them (a server that shuts down closes them all). A closed
 * one is reconnected by the next db_acquire(). Any thread; for /readyz. */
bool db_pool_idle_open(struct db_pool *p);

DEFINE_TRIVIAL_CLEANUP_FUNC(PGresult *, PQclear)
#define _cleanup_pgresult_ _cleanup_(PQclearp)

/* "%q%" for ILIKE with %, _ and \ in q escaped so that q matches literally (malloc'ed; NULL when
 * q is empty or on allocation failure). */
char *db_like_pattern(const char *q);
/* Wipes a value of res that held a secret (PQclear does not); NULL values are left alone. */
void db_wipe_value(PGresult *res, int row, int col);

/* Runs one parameterised statement. Returns 0 (result in *ret, may be NULL), -ENOTCONN or
 * -ETIMEDOUT (problem service_unavailable), -EEXIST (unique violation; no problem set, the caller
 * names the duplicate), -EAGAIN (serialization failure or deadlock; retry), -EIO (internal). */
int db_exec(struct db_conn *c, PGresult **ret, struct problem *reterr, const char *sql, int nparams,
            const char *const *params);
/* The same on a bare connection (worker, command line). */
int db_exec_pg(PGconn *pg, PGresult **ret, struct problem *reterr, const char *sql, int nparams,
               const char *const *params);
/* The rows of a page query LEFT JOINed onto config_state (so that the collection's version comes
 * even with an empty page: then one row of NULLs): *version from column version_col, *n rows of
 * the page. -EIO when config_state is empty. */
int db_page_rows(PGresult *res, int version_col, int64_t *version, int *n, struct problem *reterr);
