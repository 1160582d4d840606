/* resource.h - the URLs and tags that name resources across the API: the path of the resource a
 * job writes (jobs' `location`, the Location header of a created one) and the ETag of the whole
 * desired state (/api/v1/state). Pure; any thread. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RESOURCE_PATH_MAX 400
#define STATE_ETAG_MAX    40

/* The path of one TLS policy: /api/v1/tls-policies/<destination>, every byte outside RFC 3986's
 * unreserved set percent-encoded ("[10.0.0.1]:25" -> "%5B10.0.0.1%5D%3A25"). */
void policy_path(const char *destination, char buf[static RESOURCE_PATH_MAX]);
/* The resource a job of `action` on `target` writes, when it wrote one: false (buf "") for a
 * deletion (the resource is gone) and for an unknown action. */
bool job_location(const char *action, const char *target, char buf[static RESOURCE_PATH_MAX]);
/* The strong ETag of the desired state at a generation: "\"state-N\"" (quotes included). */
void state_etag(int64_t generation, char buf[static STATE_ETAG_MAX]);
