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
 * swap_files leaves goes. */
void reconcile_master_settled(const struct config *cfg);
/* At start: a master.cf swapped by an apply that a crash cut short (the marker is there) goes
 * back to its last-known-good version, whatever the crash left - the committed state and the
 * jobs run again make it anew - and 1 says Postfix must be reloaded (it may have read neither).
 * 0 when there was nothing to recover. */
int reconcile_recover_master(const struct config *cfg);
/* After a successful apply whose transaction could not commit: last-known-good back, reload. */
int reconcile_restore(const struct config *cfg, const struct plan *p,
                      const struct apply_result *res);
