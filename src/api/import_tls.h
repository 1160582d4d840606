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
 * import_certs, bound): *ret {action: match, differs or managed, settings, reason, differs}. */
int import_settings(struct request *req, json_t *certs, json_t **ret, struct problem *reterr);
