/* takeover.h - the proof an import needs before it writes the settings that render a live
 * main.cf (POST /api/v1/import?settings=true): main.cf rendered with them in a scratch directory
 * reads, through `postconf -x`, exactly as the live one - every parameter, $names expanded - but
 * for the certificate files (the same certificates, in smtptlsd's files), the policy map list
 * (the import's own), and smtp_tls_CAfile set to the system's CA file where main.cf trusted the
 * system's CA directory (/etc/ssl/certs) alone: the same CAs. Worker thread. */
#pragma once

#include <jansson.h>

#include "core/problem.h"
#include "core/settings.h"

struct config;

/* 0 when Postfix would read every parameter as now; 1 when not, with *differs the parameters
 * that would change ([{name, live, rendered}], at most a few dozen); negative on failure
 * (reterr). certs: the n bound certificates' files as main.cf names them (key, chain). */
int takeover_check(const struct config *cfg, const struct settings *s,
                   const struct cert_files *certs, size_t n, json_t **differs,
                   struct problem *reterr);
