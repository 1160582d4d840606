/* reconcile.h - from a plan (plan.h) to live files: apply (stage, validate, swap atomically,
 * reload when needed), restore (put the last-known-good files back). Worker thread and start-up,
 * never concurrently. */
#pragma once

#include "apply/plan.h"
#include "apply/prune.h"
#include "apply/stage.h"
#include "core/problem.h"

struct config;

/* Stages, validates (OpenSSL loads the key and chain as Postfix will; postconf has no warning
 * about our parameters), swaps and reloads. On any failure the live files are the previous ones
 * again (and Postfix reloaded back if it had been reloaded) and reterr says why. */
int reconcile_apply(const struct config *cfg, struct plan *p, struct apply_result *res,
                    struct problem *reterr);
/* Loads path as Postfix loads smtp_tls_CAfile (SSL_CTX_load_verify_locations): invalid_value at
 * field, naming the file, when it cannot be read or holds no certificate. */
int reconcile_check_ca_file(const char *path, const char *field, struct problem *reterr);
/* A swapped master.cf is settled once its batch committed (or its restore reloaded): the marker
 * the swap leaves (.smtptlsd/master.cf.pending: the plan's generation, the SHA-256 of the new
 * master.cf and of the last-known-good one) goes. */
void reconcile_master_settled(const struct config *cfg);
/* A master.cf swapped by an apply a crash cut short (the marker is there), judged against the
 * committed generation: not committed - the last-known-good master.cf back when the live one is
 * still the swapped one (a file edited since is left alone); committed - kept. Either way 1:
 * Postfix must be reloaded (it may hold the uncommitted one, or not yet the new one), then
 * reconcile_master_settled (a crash before that finds the marker again). 0 when there is no
 * marker. Needs no database but the committed generation. */
int reconcile_recover_master(const struct config *cfg, int64_t committed);
/* After a successful apply whose transaction could not commit: last-known-good back, reload. */
int reconcile_restore(const struct config *cfg, const struct plan *p,
                      const struct apply_result *res);
