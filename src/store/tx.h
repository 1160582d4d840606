/* tx.h - transactions on one connection: BEGIN (read-write, or a read-only snapshot), a savepoint
 * per unit of work, COMMIT or ROLLBACK, and the one policy for a failure on the way. Whichever
 * thread owns the connection (the worker, an HTTP thread with a pooled one). */
#pragma once

#include <stdbool.h>

struct db_conn;
struct problem;

enum tx_kind {
        TX_WRITE,    /* BEGIN */
        TX_SNAPSHOT, /* one consistent read: REPEATABLE READ READ ONLY */
};

int tx_begin(struct db_conn *c, enum tx_kind kind, struct problem *reterr);
int tx_commit(struct db_conn *c, struct problem *reterr);
/* Best effort: a connection that is gone has rolled back by itself. */
void tx_rollback(struct db_conn *c);
/* One unit of work inside the transaction (a job of a batch): opened, then either kept
 * (tx_savepoint_end(c, true)) or undone alone (false), the transaction going on. */
int tx_savepoint(struct db_conn *c, struct problem *reterr);
int tx_savepoint_end(struct db_conn *c, bool keep, struct problem *reterr);
/* The retry policy: whether a failure (r, and the problem it set) means the database did not
 * answer (connection lost, server restarting, statement timeout): nothing was committed (or, lost
 * in COMMIT, perhaps all: the caller looks before running again), and the same work may run
 * again once it answers. Any other failure is the work's own and fails it. A serialization
 * failure (-EAGAIN) cannot happen: every write transaction first takes the generation row's lock
 * (store_generation(..., for_update)), which serialises writers across nodes. */
bool tx_retry_later(int r, const struct problem *p);
