/* migrate.c - applies the embedded migrations under pg_advisory_xact_lock. Main thread. */
#include "store/migrate.h"

#include <stdio.h>
#include <stdlib.h>

#include "log.h"
#include "util.h"

/* The advisory lock key every smtptlsd takes to migrate (any fixed number works). */
#define MIGRATE_LOCK_KEY "32199946223184243"

static int exec_simple(PGconn *pg, const char *sql, char *err, size_t errsize)
{
        PGresult *res = PQexec(pg, sql);
        ExecStatusType st = PQresultStatus(res);
        int r = 0;
        if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
                snprintf(err, errsize, "%s", PQresultErrorMessage(res));
                size_t n = strlen(err);
                while (n > 0 && err[n - 1] == '\n')
                        err[--n] = 0;
                r = PQstatus(pg) == CONNECTION_OK ? -EIO : -ENOTCONN;
        }
        PQclear(res);
        return r;
}

static int current_version(PGconn *pg, long *ret, char *err, size_t errsize)
{
        PGresult *res = PQexec(pg, "SELECT coalesce(max(version), 0) FROM schema_migrations");
        int r = 0;
        if (PQresultStatus(res) != PGRES_TUPLES_OK) {
                snprintf(err, errsize, "%s", PQresultErrorMessage(res));
                r = -EIO;
        } else {
                *ret = strtol(PQgetvalue(res, 0, 0), NULL, 10);
        }
        PQclear(res);
        return r;
}

int migrate_run(PGconn *pg, unsigned *applied, char *err, size_t errsize)
{
        long version = 0;
        unsigned n = 0;
        int r;

        *applied = 0;
        r = exec_simple(pg, "BEGIN", err, errsize);
        if (r < 0)
                return r;
        r = exec_simple(pg, "SELECT pg_advisory_xact_lock(" MIGRATE_LOCK_KEY ")", err, errsize);
        if (r < 0)
                goto fail;
        r = exec_simple(pg,
                        "CREATE TABLE IF NOT EXISTS schema_migrations ("
                        " version integer PRIMARY KEY, name text NOT NULL,"
                        " applied_at timestamptz NOT NULL DEFAULT now())",
                        err, errsize);
        if (r < 0)
                goto fail;
        r = current_version(pg, &version, err, errsize);
        if (r < 0)
                goto fail;
        if (version > (long)migrations_count) {
                snprintf(err, errsize,
                         "the database schema is at version %ld, newer than this smtptlsd knows "
                         "(%u): upgrade smtptlsd",
                         version, migrations_count);
                r = -EPROTO;
                goto fail;
        }
        for (unsigned i = (unsigned)version; i < migrations_count; i++) {
                char msg[512], num[16];
                log_info("applying migration %03u_%s", migrations[i].version, migrations[i].name);
                r = exec_simple(pg, migrations[i].sql, msg, sizeof(msg));
                if (r < 0) {
                        snprintf(err, errsize, "migration %03u_%s failed: %s",
                                 migrations[i].version, migrations[i].name, msg);
                        goto fail;
                }
                snprintf(num, sizeof(num), "%u", migrations[i].version);
                const char *params[] = { num, migrations[i].name };
                PGresult *res = PQexecParams(
                    pg, "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", 2, NULL,
                    params, NULL, NULL, 0);
                bool ok = PQresultStatus(res) == PGRES_COMMAND_OK;
                if (!ok)
                        snprintf(err, errsize, "%s", PQresultErrorMessage(res));
                PQclear(res);
                if (!ok) {
                        r = -EIO;
                        goto fail;
                }
                n++;
        }
        r = exec_simple(pg, "COMMIT", err, errsize);
        if (r < 0)
                return r;
        *applied = n;
        return 0;
fail:;
        char ignore[64];
        exec_simple(pg, "ROLLBACK", ignore, sizeof(ignore));
        return r;
}
