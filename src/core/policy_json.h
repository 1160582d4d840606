/* policy_json.h - the JSON form of a policy (policy_json.c): applying a PUT/POST/PATCH or bulk
 * item body onto a row through one spec table, and the read-only members a client may send
 * back. Pure; any thread. */
#pragma once

#include <jansson.h>
#include <stdbool.h>

#include "core/problem.h"

struct policy;

/* The read-only members of a policy body (created_at, updated_at, generation) against current,
 * the row as a GET shows it with the current generation (NULL: a new row, nothing to compare):
 * invalid_value naming the member that differs. */
int policy_check_read_only(json_t *body, json_t *current, const char *prefix,
                           struct problem *reterr);
/* Copies the read-only members of body into its normalized form, for the worker to check. */
void policy_copy_read_only(json_t *body, json_t *normalized);

/* Applies a body onto *p: PUT/POST/bulk item (patch = false: what is not sent takes its default,
 * except managed_by, which keeps what *p holds) or PATCH (merge; null clears match, exclude,
 * servername, tafile, connection_reuse,
 * protocols, ciphers and note). url_destination is the destination named by the URL (NULL when
 * the body names it: then "destination" is required unless patching). prefix is the JSON
 * pointer of the body ("" or "/items/17"); problems name prefix + "/field". The combination is
 * validated after the merge (level/attribute rules), and so are combinations that cannot
 * deliver (invalid_attribute: ciphers null at encrypt; protocols below TLSv1.2 only at the
 * levels that authenticate the peer), which policy_check() lets pass for rows already stored.
 * On failure *p is unchanged. */
int policy_apply_json(struct policy *p, json_t *body, bool patch, const char *url_destination,
                      const char *prefix, struct problem *reterr);
