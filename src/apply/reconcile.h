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
/* After a successful apply whose transaction could not commit: last-known-good back, reload. */
int reconcile_restore(const struct config *cfg, const struct plan *p,
                      const struct apply_result *res);
