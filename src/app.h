/* app.h - the daemon's shared context, built by main.c and handed to every module that needs
 * more than its own state. Fields are set before threads start; flags are atomics. */
#pragma once

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/item_memo.h"

struct config;
struct db_pool;
struct http_server;
struct live_stamp;
struct pending;
struct probe_runner;
struct worker;

struct app {
        const struct config *cfg;
        struct db_pool *db;
        struct http_server *http;
        struct worker *worker;
        struct pending *pending;       /* requests waiting for their job (api/pending.c) */
        struct probe_runner *probes;   /* destination probes (probe/runner.c); NULL: not running */
        struct live_stamp *live_stamp; /* Postfix's live files changed (apply/live_stamp.c) */
        atomic_bool ready;             /* database reached, migrations ran, first reconcile done */
        atomic_bool stopping;          /* SIGTERM seen */
        /* One bulk replace at a time: taken when its headers are admitted (http/server.c), held
         * by its job until the job is freed (job.h: slot). */
        atomic_bool bulk_busy;
        /* The items of the last bulk replace applied here (core/item_memo.h): built by the HTTP
         * thread that read the next one, published by the worker when it commits. */
        struct item_memo_slot bulk_memo;
        uint64_t started_usec;
};
