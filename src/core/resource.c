/* resource.c - the URLs and tags that name resources across the API: the path of the resource a
 * job writes, the ETag of the whole desired state. Pure; any thread (the worker for Location, the
 * HTTP threads for the jobs' location and /api/v1/state). */
#include "smtptlsd/resource.h"

#include <stdio.h>
#include <string.h>

#include "smtptlsd/util.h"

static bool unreserved(unsigned char c)
{
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '-' || c == '.' || c == '_' || c == '~';
}

/* Appends s to buf at *o, percent-encoded; stops (still terminated) when it would not fit. */
static void append_encoded(char *buf, size_t size, size_t *o, const char *s)
{
        for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
                if (unreserved(*p)) {
                        if (*o + 1 >= size)
                                break;
                        buf[(*o)++] = (char)*p;
                } else {
                        if (*o + 3 >= size)
                                break;
                        *o += (size_t)snprintf(buf + *o, size - *o, "%%%02X", *p);
                }
        }
        buf[*o] = 0;
}

void policy_path(const char *destination, char buf[static RESOURCE_PATH_MAX])
{
        size_t o = (size_t)snprintf(buf, RESOURCE_PATH_MAX, "/api/v1/tls-policies/");
        append_encoded(buf, RESOURCE_PATH_MAX, &o, destination);
}

/* What each action writes: a fixed path, or the collection's path + the encoded target. */
static const struct {
        const char *action;
        const char *path;
        bool per_target;
} locations[] = {
        { "policies.put", NULL, true },
        { "policies.patch", NULL, true },
        { "policies.post", NULL, true },
        { "policies.bulk", "/api/v1/tls-policies", false },
        { "settings.put", "/api/v1/settings", false },
        { "settings.patch", "/api/v1/settings", false },
        { "certificates.put", "/api/v1/certificates/", true },
        { "certificates.post", "/api/v1/certificates/", true },
        { "certificates.rescan", "/api/v1/certificates", false },
        { "state.put", "/api/v1/state", false },
};

bool job_location(const char *action, const char *target, char buf[static RESOURCE_PATH_MAX])
{
        buf[0] = 0;
        for (size_t i = 0; i < ARRAY_SIZE(locations); i++) {
                if (!streq(locations[i].action, action))
                        continue;
                if (!locations[i].per_target) {
                        snprintf(buf, RESOURCE_PATH_MAX, "%s", locations[i].path);
                } else if (!locations[i].path) {
                        policy_path(target ? target : "", buf);
                } else {
                        size_t o =
                            (size_t)snprintf(buf, RESOURCE_PATH_MAX, "%s", locations[i].path);
                        append_encoded(buf, RESOURCE_PATH_MAX, &o, target ? target : "");
                }
                return true;
        }
        return false;
}

void state_etag(int64_t generation, char buf[static STATE_ETAG_MAX])
{
        snprintf(buf, STATE_ETAG_MAX, "\"state-%lld\"", (long long)generation);
}
