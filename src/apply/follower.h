/* follower.h - how a node hears of generations other nodes commit: its own session connection
 * LISTENs on smtptlsd_generation (store_generation_bump notifies in the committing transaction),
 * and every node_heartbeat_interval it reads the generation anyway (notifications are lost while
 * the connection is down). Each generation heard of goes to the worker
 * (worker_generation_committed), which applies the committed state when it is newer than what
 * this node applied. It also LISTENs for a retry asked of this node (worker_retry_requested) and
 * for changes of any node's row, which it passes on to on_nodes_changed (a write waiting for the
 * fleet, api/pending.c; also called after each safety-net read). Its own thread; made and
 * stopped by main.c (before the worker stops). */
#pragma once

struct app;
struct follower;

int follower_start(struct app *app, void (*on_nodes_changed)(void *arg), void *arg,
                   struct follower **ret);
/* Stops the thread at once (its eventfd) and frees it; NULL: nothing. */
void follower_stop(struct follower *f);
