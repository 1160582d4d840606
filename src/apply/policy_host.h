/* policy_host.h - what a TLS policy write is checked against beyond its own attributes: the
 * other rows (a ".d" without "d"), main.cf and master.cf as Postfix reads them, the trust-anchor
 * file. Each finding is a warning ({code, detail}) on the write's reply and on its dry run;
 * nothing here refuses. Worker thread (it runs postconf and reads files). */
#pragma once

#include <jansson.h>

#include "conf.h"
#include "core/policy.h"
#include "core/problem.h"
#include "store/db.h"

/* How many ".d" without "d" a bulk or state write names before it says "and more". */
#define POLICY_UNCOVERED_MAX 10

/* parent_domain_not_covered for each enabled ".d" row without an enabled "d": of destination's
 * pair after a single write (destination = the row written or deleted), of the whole table when
 * destination is NULL (bulk, state). Negative errno (database) with reterr set. */
int policy_parent_warnings(struct db_conn *db, const char *destination, json_t *warnings,
                           struct problem *reterr);

/* Against the live configuration: tafile_unusable (Postfix cannot load the tafile: it defers all
 * mail to the destination), connection_reuse_without_tlsproxy (master.cf has no tlsproxy
 * service: every delivery with connection_reuse=yes is deferred), exclude_replaces_main_cf (the
 * policy's exclude replaces smtp_tls_exclude_ciphers and smtp_tls_mandatory_exclude_ciphers,
 * and drops items of theirs). A postconf that fails adds nothing. */
void policy_host_warnings(const struct config *cfg, const struct policy *p, json_t *warnings);
