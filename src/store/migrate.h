/* migrate.h - versioned SQL migrations (src/store/sql/NNN_*.sql, embedded at build time), applied
 * in one transaction under an advisory lock so that two daemons starting at once never race.
 * Main thread (start-up) and the `migrate` command. */
#pragma once

#include <libpq-fe.h>
#include <stddef.h>

struct migration {
        unsigned version;
        const char *name;
        const char *sql;
};

extern const struct migration migrations[];
extern const unsigned migrations_count;

/* Applies every migration newer than the database's version. *applied = how many ran. Refuses a
 * database whose schema is newer than this binary knows. */
int migrate_run(PGconn *pg, unsigned *applied, char *err, size_t errsize);
