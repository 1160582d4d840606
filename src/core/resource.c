/* resource.c - the URLs and tags that name resources across the API: the path of the resource a
 * job writes, the ETag of the whole desired state. Pure; any thread (the worker for Location, the
 * HTTP threads for the jobs' location and /api/v1/state). */
#include "core/resource.h"

#include <stdio.h>
#include <string.h>

#include "core/etag.h"
#include "util.h"

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

void node_path(const char *name, char buf[static RESOURCE_PATH_MAX])
{
        size_t o = (size_t)snprintf(buf, RESOURCE_PATH_MAX, "/api/v1/nodes/");
        append_encoded(buf, RESOURCE_PATH_MAX, &o, name);
}

/* What each action writes: the kind of resource (its tag, its name in a precondition's words)
 * and where it is: a fixed path, or the collection's path + the encoded target (+ a suffix). */
static const struct {
        const char *action;
        enum resource_kind kind;
        const char *path;
        bool per_target;
        const char *suffix;
} actions[] = {
        { "policies.put", RESOURCE_POLICY, NULL, true, NULL },
        { "policies.patch", RESOURCE_POLICY, NULL, true, NULL },
        { "policies.post", RESOURCE_POLICY, NULL, true, NULL },
        { "policies.delete", RESOURCE_POLICY, NULL, true, NULL },
        { "policies.bulk", RESOURCE_POLICIES, "/api/v1/tls-policies", false, NULL },
        { "policies.import", RESOURCE_POLICIES, "/api/v1/tls-policies", false, NULL },
        { "settings.put", RESOURCE_SETTINGS, "/api/v1/settings", false, NULL },
        { "settings.patch", RESOURCE_SETTINGS, "/api/v1/settings", false, NULL },
        { "certificates.put", RESOURCE_CERTIFICATE, "/api/v1/certificates/", true, NULL },
        { "certificates.post", RESOURCE_CERTIFICATE, "/api/v1/certificates/", true, NULL },
        { "certificates.delete", RESOURCE_CERTIFICATE, "/api/v1/certificates/", true, NULL },
        { "certificates.rescan", RESOURCE_CERTIFICATES, "/api/v1/certificates", false, NULL },
        { "state.put", RESOURCE_STATE, "/api/v1/state", false, NULL },
        { "nodes.settings.put", RESOURCE_NODE_SETTINGS, "/api/v1/nodes/", true, "/settings" },
        { "nodes.settings.delete", RESOURCE_NODE_SETTINGS, "/api/v1/nodes/", true, "/settings" },
};

/* Each kind's tag prefix and its name in words (followed by the quoted target when named). */
static const struct {
        const char *tag;
        const char *what;
        bool named;
} kinds[] = {
        [RESOURCE_SETTINGS] = { "settings", "the settings", false },
        [RESOURCE_CERTIFICATE] = { "certificate", "certificate", true },
        [RESOURCE_CERTIFICATES] = { "certificates", "the certificate collection", false },
        [RESOURCE_POLICY] = { "policy", "the TLS policy for", true },
        [RESOURCE_POLICIES] = { "policies", "the TLS policy collection", false },
        [RESOURCE_STATE] = { "state", "the desired state", false },
        [RESOURCE_NODE_SETTINGS] = { "node-settings", "the certificate binding of node", true },
};

static int find_action(const char *action)
{
        for (size_t i = 0; action && i < ARRAY_SIZE(actions); i++)
                if (streq(actions[i].action, action))
                        return (int)i;
        return -ENOENT;
}

int resource_of_action(const char *action, enum resource_kind *ret)
{
        int i = find_action(action);
        if (i < 0)
                return i;
        *ret = actions[i].kind;
        return 0;
}

bool job_location(const char *action, const char *target, char buf[static RESOURCE_PATH_MAX])
{
        buf[0] = 0;
        int i = find_action(action);
        if (i < 0 || streq(action + strlen(action) - 7, ".delete"))
                return false;
        if (!actions[i].per_target) {
                snprintf(buf, RESOURCE_PATH_MAX, "%s", actions[i].path);
        } else if (!actions[i].path) {
                policy_path(target ? target : "", buf);
        } else {
                size_t o = (size_t)snprintf(buf, RESOURCE_PATH_MAX, "%s", actions[i].path);
                append_encoded(buf, RESOURCE_PATH_MAX, &o, target ? target : "");
                if (actions[i].suffix && o < RESOURCE_PATH_MAX)
                        snprintf(buf + o, RESOURCE_PATH_MAX - o, "%s", actions[i].suffix);
        }
        return true;
}

void resource_etag(enum resource_kind kind, int64_t version, char buf[static RESOURCE_ETAG_MAX])
{
        snprintf(buf, RESOURCE_ETAG_MAX, "\"%s-%lld\"", kinds[kind].tag, (long long)version);
}

void resource_etag_map(int64_t version, char buf[static RESOURCE_ETAG_MAX])
{
        snprintf(buf, RESOURCE_ETAG_MAX, "\"%s-%lld.map\"", kinds[RESOURCE_POLICIES].tag,
                 (long long)version);
}

int resource_precondition(const char *if_match, enum resource_kind kind, const char *target,
                          bool exists, int64_t version, struct problem *reterr)
{
        char etag[RESOURCE_ETAG_MAX] = "", what[RESOURCE_PATH_MAX];
        if (exists)
                resource_etag(kind, version, etag);
        if (kinds[kind].named)
                snprintf(what, sizeof(what), "%s '%s'", kinds[kind].what, target ? target : "");
        else
                snprintf(what, sizeof(what), "%s", kinds[kind].what);
        if (exists && kind == RESOURCE_POLICIES) {
                /* the tag of the map-file representation names the same version */
                char map[RESOURCE_ETAG_MAX];
                struct problem scratch = { 0 };
                resource_etag_map(version, map);
                int r = if_match_evaluate(if_match, what, map, &scratch);
                problem_done(&scratch);
                if (r >= 0)
                        return r;
        }
        return if_match_evaluate(if_match, what, etag, reterr);
}
