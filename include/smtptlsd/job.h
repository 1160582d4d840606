/* job.h - one write on its way through the worker: what to do (action, target, the validated
 * request), who asked, and what came of it. Created by an HTTP thread, owned by the worker once
 * queued; its waiting request is reached only through http/pending.c. */
#pragma once

#include <jansson.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "smtptlsd/problem.h"
#include "smtptlsd/queue.h"

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
        /* A bulk replace's items, as JSON text (the request's body.policy), kept out of request so
         * the largest part of a write exists once: recorded with the job row, then dropped; the
         * worker reads them from the row (a dry run, which has no row, from here). */
        char *items;
        /* a slot the job holds (app.bulk_busy), released when it is freed */
        atomic_bool *slot;
        /* results, set by the worker */
        bool failed;
        struct problem problem;
        json_t *result;     /* the resource after the write, or the dry-run plan */
        json_t *warnings;   /* [{code, detail}] */
        int http_status;    /* 200 or 201 on success */
        char location[400]; /* Location of a created resource */
        char etag[64];      /* ETag of the resource in result ("" none) */
        /* what the tools printed and did in a failed apply (the audit trail keeps it) */
        char *output;
        bool postmap, reloaded;
        bool retry; /* put back after the database went away: it may have committed */
};

struct job *job_new(const char *action, const char *target, const char *actor, json_t *request);
/* Gives back the bulk slot the job holds (app.bulk_busy), if any; again: nothing. Done before
 * the job's reply can reach the client, so that its next bulk is not refused as concurrent. */
void job_release_slot(struct job *j);
void job_free(struct job *j);
/* The job as GET /api/v1/jobs/{id} shows it while it waits (status queued, nothing run yet):
 * the body of a 202. NULL when out of memory. */
json_t *job_accepted_json(const struct job *j);
