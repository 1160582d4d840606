/* import_tls.h - the TLS part of an import (api/import_tls.c): certificates and settings. HTTP
 * threads. */
#pragma once

#include <jansson.h>
#include <stddef.h>

#include "core/problem.h"
#include "http/http.h"

/* The certificate files main.cf (its text) names: each recognized or to be stored, described in
 * report; what to store into store ({name, certificate, chain}) and keys ({name: key PEM}). */
int import_certs(struct request *req, const char *main_cf, size_t len, json_t *report,
                 json_t *store, json_t *keys, struct problem *reterr);
/* The settings whose rendering main.cf's TLS parameters are, if any (with certs, the report of
 * import_certs, bound): *ret {action: match, differs or managed, settings, reason, differs,
 * written}. With take (?settings=true) and a match that a settings write may take over - the
 * settings not written yet, no other node alive in the fleet, no system pair served beside the
 * bound certificates - *job is what the job needs to write them: {settings: the PUT body, files:
 * [[key, chain], ...] of the bound certificates as main.cf names them}; else NULL (and the
 * report's reason says why). */
int import_settings(struct request *req, json_t *certs, bool take, json_t **ret, json_t **job,
                    struct problem *reterr);
