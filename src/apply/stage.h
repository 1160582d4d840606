/* stage.h - the files of an apply, staged and checked before anything live changes: a bound
 * certificate's version directory and the policy map; the apply's result record. Worker thread
 * (and start-up). */
#pragma once

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "apply/plan.h"
#include "core/problem.h"

struct config;
struct cert_info;

struct apply_result {
        bool swapped;
        bool master_swapped; /* master.cf replaced (the submission services) */
        bool map_swapped;
        bool postmap;
        bool reloaded;
        bool postfix_running;
        char *output; /* what postconf/postfix said, for the job record */
};
void apply_result_done(struct apply_result *r);

/* Appends "what:\ntext" to res->output (nothing when text is empty). */
void apply_result_add_output(struct apply_result *res, const char *what, const char *text);

/* The problem code of a failed file operation: insufficient_storage (logged) for a full disk or
 * quota, the operator's to fix; internal_error for anything else. */
enum problem_code stage_problem(int r);

/* Reads a bound certificate's key and fullchain (an ACME one only beneath its client's trusted
 * tree, never blocking on a FIFO) and loads them as Postfix will: certificate_unusable when they
 * do not load or the leaf expired at now. Fills *info when not NULL. */
int reconcile_check_cert(const struct config *cfg, const struct plan_cert *pc, time_t now,
                         struct cert_info *info, struct problem *reterr);
/* Writes an imported certificate's new version (pc->write) into <certdir>/<name>/.<version>.new,
 * its path into staged[size], and loads it as Postfix will; a refused one leaves nothing. */
int stage_cert(const struct config *cfg, const struct plan_cert *pc, char *staged, size_t size,
               struct problem *reterr);
/* Renames a staged version directory to pc->dir (a damaged one there moved aside first). */
int stage_cert_install(const struct plan_cert *pc, const char *staged, struct problem *reterr);

/* Builds the plan's policy map under the staged name with postmap, checks that the index holds
 * exactly the rendered entries, and swaps it in (index first, the previous one kept as the
 * last-known-good copy): res->postmap, res->map_swapped. On failure the staged files go. */
int stage_map(const struct config *cfg, const struct plan *p, struct apply_result *res,
              struct problem *reterr);
/* At start, the live map whose text is the committed state's: 1 when its index holds exactly
 * those entries too (postmap -s; then recorded, for the next write to edit it), 0 when not (a
 * crash between the index's swap and the text's left a newer index: build it again). */
int stage_map_adopt(const struct config *cfg, const struct plan *p);
/* Puts the last-known-good policy index and text back (and forgets the map's record). */
int stage_map_restore(const struct config *cfg);
