/* changes.h - the daemon's change count: a number that moves whenever what a read of the API may
 * show has changed - a transaction of this process committed (store/tx.c), a probe finished
 * (store/probes.c), another node's commit was heard of (apply/follower.c), the worker's state,
 * backlog or verification moved (apply/worker_state.c, verifier.c). The HTTP
 * layer's reply cache (http/reply_cache.c) keeps a rendered reply only while the count it was
 * rendered under is still the current one. Lock-free; any thread. */
#pragma once

#include <stdint.h>

/* The current count. A reader takes it BEFORE reading what it renders, so that a change during
 * the read leaves the reply under an older count (thrown away), never a newer one. */
uint64_t changes_now(void);
/* Something a read may show has changed (after the change is visible to other readers). */
void changes_bump(void);
