/* follower.h - how a node hears of generations other nodes commit: its own session connection
 * LISTENs on smtptlsd_generation (store_generation_bump notifies in the committing transaction),
 * and every node_heartbeat_interval it reads the generation anyway (notifications are lost while
 * the connection is down). Each generation heard of goes to the worker
 * (worker_generation_committed), which applies the committed state when it is newer than what
 * this node applied. Its own thread; made and stopped by main.c (before the worker stops). */
#pragma once

struct app;
struct follower;

int follower_start(struct app *app, struct follower **ret);
/* Stops the thread at once (its eventfd) and frees it; NULL: nothing. */
void follower_stop(struct follower *f);
