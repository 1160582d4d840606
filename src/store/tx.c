/* tx.c - transactions on one connection (see tx.h): the statements in one place, and the one
 * policy for failures. Whichever thread owns the connection. */
#include "store/tx.h"

#include <errno.h>

#include "changes.h"
#include "core/problem.h"
#include "store/db.h"

static int exec(struct db_conn *c, const char *stmt, struct problem *reterr)
{
        return db_exec(c, NULL, reterr, stmt, 0, NULL);
}

int tx_begin(struct db_conn *c, enum tx_kind kind, struct problem *reterr)
{
        return exec(
            c, kind == TX_SNAPSHOT ? "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY" : "BEGIN",
            reterr);
}

int tx_commit(struct db_conn *c, struct problem *reterr)
{
        int r = exec(c, "COMMIT", reterr);
        /* what a read may show has changed (a COMMIT lost on the way may have committed too) */
        changes_bump();
        return r;
}

void tx_rollback(struct db_conn *c)
{
        exec(c, "ROLLBACK", NULL);
}

int tx_savepoint(struct db_conn *c, struct problem *reterr)
{
        return exec(c, "SAVEPOINT unit", reterr);
}

int tx_savepoint_end(struct db_conn *c, bool keep, struct problem *reterr)
{
        return exec(c, keep ? "RELEASE SAVEPOINT unit" : "ROLLBACK TO SAVEPOINT unit", reterr);
}

bool tx_retry_later(int r, const struct problem *p)
{
        if (r == -ENOTCONN)
                return true;
        /* a statement timeout, or a store function that passed on the problem, not the errno */
        return r < 0 && p && p->code == PROBLEM_SERVICE_UNAVAILABLE;
}
