/* remote.h - `smtptlsd push` and `smtptlsd pull`: a client of a daemon's API for pipelines
 * (libcurl), which needs neither the configuration file nor the database. Main thread. */
#pragma once

#include <stdio.h>

#include "cli.h"

/* Exit statuses a CI job can branch on. */
enum {
        REMOTE_OK = 0,          /* applied, nothing to change, or the file printed */
        REMOTE_REFUSED = 1,     /* the daemon said no: the reason is printed */
        REMOTE_UNREACHABLE = 2, /* no answer, or not one of the API's */
        REMOTE_RUNNING = 3,     /* accepted, its job still running when the wait ended: not
                                 * known to be applied (GET /api/v1/jobs/ID tells) */
};

/* The policies of inv->file made the daemon's unmanaged set (a dry run first: its diff printed
 * on out; with inv->dry_run nothing more). Messages on err. Returns an exit status. */
int remote_push(const struct cli_invocation *inv, FILE *out, FILE *err);
/* POST /api/v1/import (inv->dry_run: ?dry_run=true): its report on out. Returns an exit
 * status. */
int remote_import(const struct cli_invocation *inv, FILE *out, FILE *err);
/* The daemon's unmanaged policies as a map file on out. Returns an exit status. */
int remote_pull(const struct cli_invocation *inv, FILE *out, FILE *err);
