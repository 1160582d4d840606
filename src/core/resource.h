/* resource.h - the URLs and tags that name resources across the API: the path of the resource a
 * job writes (jobs' `location`, the Location header of a created one), the kind of resource each
 * action writes, every kind's strong ETag and the If-Match precondition against it. Pure; any
 * thread. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RESOURCE_PATH_MAX 400
#define RESOURCE_ETAG_MAX 48

struct problem;

/* What a job's action writes; each kind has its strong tag "\"<kind>-<version>\"". */
enum resource_kind {
        RESOURCE_SETTINGS,
        RESOURCE_CERTIFICATE,
        RESOURCE_CERTIFICATES, /* the collection */
        RESOURCE_POLICY,
        RESOURCE_POLICIES,      /* the collection */
        RESOURCE_STATE,         /* tagged by the generation */
        RESOURCE_NODE_SETTINGS, /* a node's own certificate binding */
};

/* The path of one TLS policy: /api/v1/tls-policies/<destination>, every byte outside RFC 3986's
 * unreserved set percent-encoded ("[10.0.0.1]:25" -> "%5B10.0.0.1%5D%3A25"). */
void policy_path(const char *destination, char buf[static RESOURCE_PATH_MAX]);
/* The path of one node of the fleet: /api/v1/nodes/<name>, encoded the same way. */
void node_path(const char *name, char buf[static RESOURCE_PATH_MAX]);
/* The resource a job of `action` on `target` writes, when it wrote one: false (buf "") for a
 * deletion (the resource is gone) and for an unknown action. */
bool job_location(const char *action, const char *target, char buf[static RESOURCE_PATH_MAX]);
/* The kind of resource a job's action writes; -ENOENT for an unknown action. */
int resource_of_action(const char *action, enum resource_kind *ret);
/* The strong ETag of a resource of `kind` at `version` (quotes included). */
void resource_etag(enum resource_kind kind, int64_t version, char buf[static RESOURCE_ETAG_MAX]);
/* The strong ETag of the TLS policies as a map file (GET with Accept: text/plain): another
 * representation, another tag; an If-Match on the collection takes either. */
void resource_etag_map(int64_t version, char buf[static RESOURCE_ETAG_MAX]);
/* Whether a write may go on: the request's If-Match (NULL: none) against the resource of `kind`
 * (target: its name, for the message) at `version`, or absent (!exists). 0, or -EINVAL with
 * precondition_failed or invalid_value (core/etag.c: if_match_evaluate). */
int resource_precondition(const char *if_match, enum resource_kind kind, const char *target,
                          bool exists, int64_t version, struct problem *reterr);
