/* job.h - one write on its way through the worker: what to do (action, target, the validated
 * request), who asked, and what came of it, in the domain's words (created, replaced, deleted,
 * unchanged; the resource's version). Created by an HTTP thread (or acme_watch), owned by the
 * worker once queued; whoever waits for it is told through its completion callback. */
#pragma once

#include <jansson.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "apply/queue.h"
#include "core/item_memo.h"
#include "core/problem.h"

/* What a successful write did to its resource. */
enum write_outcome {
        JOB_REPLACED = 0, /* written over (or, a collection or the state, changed as a whole) */
        JOB_CREATED,
        JOB_DELETED,
        JOB_UNCHANGED, /* applied, and nothing moved: no generation of its own */
};

struct job;
/* Called once when the job is done (applied, failed, or put aside at a stop), on the thread that
 * finished it, before the job is freed. */
typedef void (*job_done_fn)(struct job *job, void *arg);

struct job {
        struct queue_item item;
        int64_t id;          /* jobs.id; 0 for a dry run (not recorded) */
        char created_at[24]; /* jobs.created_at (RFC 3339, UTC); "" for a dry run */
        char action[40];
        char target[300];
        char actor[72];
        json_t *request; /* {"body": ..., "if_match": ..., "private_key_ref": ...} */
        char *secret;    /* an upload's private key PEM, never in request (wiped by job_free) */
        bool dry_run;
        /* A bulk replace's items, as JSON text (the row's items column), kept out of request so
         * the largest part of a write exists once: recorded with the job row, then dropped; the
         * worker reads them from the row (a dry run, which has no row, from here). */
        char *items;
        /* A bulk replace's delta from the last bulk applied here and the memo of its items
         * (core/item_memo.h), or NULL: the worker applies the delta when the state is still
         * the one it is from, and publishes the memo once the job has committed. */
        struct item_memo_delta *delta;
        struct item_memo_tag delta_tag; /* the state right after the job's statements */
        /* a slot the job holds (app.bulk_busy), released when it is freed */
        atomic_bool *slot;
        /* results, set by the worker */
        bool failed;
        struct problem problem;
        json_t *result;   /* the resource after the write, or the dry-run plan */
        json_t *warnings; /* [{code, detail}] */
        enum write_outcome outcome;
        bool versioned;     /* version is the written resource's, after the write (its ETag) */
        int64_t version;    /* for the state: the generation the batch created */
        int64_t generation; /* the generation it made (applied and changed), else 0 */
        /* what the tools printed and did in a failed apply (the audit trail keeps it) */
        char *output;
        bool postmap, reloaded;
        bool retry;          /* put back after the database went away: it may have committed */
        job_done_fn on_done; /* set by whoever waits (api/pending.c), NULL for nobody */
        void *on_done_arg;
};

struct job *job_new(const char *action, const char *target, const char *actor, json_t *request);
/* Gives back the bulk slot the job holds (app.bulk_busy), if any; again: nothing. Done before
 * the job's reply can reach the client, so that its next bulk is not refused as concurrent. */
void job_release_slot(struct job *j);
/* What a run of the job left (problem, result, warnings, tool output, outcome) is dropped: before
 * it runs again, or before a dry run's plan replaces it. */
void job_reset(struct job *j);
/* The resource the write left is at `version` (its ETag says so). */
void job_set_version(struct job *j, int64_t version);
/* The job is done: its bulk slot is given back, then whoever waits is told (on_done). */
void job_complete(struct job *j);
void job_free(struct job *j);
/* The job as GET /api/v1/jobs/{id} shows it while it waits (status queued, nothing run yet):
 * the body of a 202. NULL when out of memory. */
json_t *job_accepted_json(const struct job *j);
