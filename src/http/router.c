/* router.c - matching a request path against the route table: exact segments and {param}
 * segments, each param percent-decoded. Pure; HTTP threads. */
#include <stdio.h>

#include "http/http.h"
#include "metrics.h"

const struct name_code http_methods[HTTP_METHOD_COUNT] = {
        { "GET", HTTP_GET },     { "HEAD", HTTP_HEAD },   { "POST", HTTP_POST },
        { "PUT", HTTP_PUT },     { "PATCH", HTTP_PATCH }, { "DELETE", HTTP_DELETE },
        { "OTHER", HTTP_OTHER },
};

_Static_assert(HTTP_METHOD_COUNT <= METRICS_METHOD_SLOTS, "a metrics slot for every method");

unsigned http_method_slot(enum http_method m)
{
        for (unsigned i = 0; i < HTTP_METHOD_COUNT - 1; i++)
                if ((unsigned)m == 1u << i)
                        return i;
        return HTTP_METHOD_COUNT - 1;
}

enum http_method http_method_from_string(const char *s)
{
        int m;
        if (name_to_code(http_methods, HTTP_METHOD_COUNT, s, &m) < 0)
                return HTTP_OTHER;
        return (enum http_method)m;
}

int http_percent_decode(const char *s, size_t n, bool plus_is_space, char **ret)
{
        char *out = malloc(n + 1), *o = out;
        if (!out)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                if (s[i] == '%') {
                        if (i + 2 >= n) {
                                free(out);
                                return -EINVAL;
                        }
                        int a = hex_digit_value(s[i + 1]), b = hex_digit_value(s[i + 2]);
                        if (a < 0 || b < 0 || (a == 0 && b == 0)) {
                                free(out);
                                return -EINVAL;
                        }
                        *o++ = (char)(a << 4 | b);
                        i += 2;
                } else {
                        *o++ = plus_is_space && s[i] == '+' ? ' ' : s[i];
                }
        }
        *o = 0;
        *ret = out;
        return 0;
}

int router_match(const struct route *routes, size_t n, const char *path,
                 char *params[ROUTE_MAX_PARAMS])
{
        for (size_t i = 0; i < n; i++) {
                const char *p = routes[i].pattern, *s = path;
                const char *pbeg[ROUTE_MAX_PARAMS];
                size_t plen[ROUTE_MAX_PARAMS];
                size_t np = 0;
                bool ok = true;

                while (*p && ok) {
                        if (*p == '{') {
                                const char *e = strchr(s, '/');
                                size_t len = e ? (size_t)(e - s) : strlen(s);
                                if (len == 0 || np >= ROUTE_MAX_PARAMS) {
                                        ok = false;
                                        break;
                                }
                                pbeg[np] = s;
                                plen[np++] = len;
                                s += len;
                                const char *close = strchr(p, '}');
                                p = close ? close + 1 : p + strlen(p);
                        } else if (*p == *s) {
                                p++;
                                s++;
                        } else {
                                ok = false;
                        }
                }
                if (!ok || *s)
                        continue;
                for (size_t k = 0; k < np; k++) {
                        int r = http_percent_decode(pbeg[k], plen[k], false, &params[k]);
                        if (r < 0) {
                                for (size_t j = 0; j < k; j++) {
                                        free(params[j]);
                                        params[j] = NULL;
                                }
                                return r;
                        }
                }
                return (int)i;
        }
        return -ENOENT;
}

const struct route_op *router_find_op(const struct route *r, enum http_method m)
{
        for (size_t i = 0; i < ARRAY_SIZE(r->ops) && r->ops[i].handler; i++)
                if (r->ops[i].method == m)
                        return &r->ops[i];
        /* HEAD is GET without the body. */
        if (m == HTTP_HEAD)
                return router_find_op(r, HTTP_GET);
        return NULL;
}

void router_allow(const struct route *r, char *buf, size_t size)
{
        size_t n = 0;
        buf[0] = 0;
        for (size_t i = 0; i < HTTP_METHOD_COUNT; i++) {
                if (!router_find_op(r, (enum http_method)http_methods[i].code))
                        continue;
                int w = snprintf(buf + n, size - n, "%s%s", n ? ", " : "", http_methods[i].name);
                if (w < 0 || (size_t)w >= size - n)
                        break;
                n += (size_t)w;
        }
}

/* Every query parameter any route accepts. multi: may be given more than once (none yet; a
 * handler reading one with request_query sees the first). */
static const struct {
        unsigned bit;
        const char *name;
        bool multi;
} query_params[] = {
        { QUERY_WAIT, "wait", false },
        { QUERY_DRY_RUN, "dry_run", false },
        { QUERY_LIMIT, "limit", false },
        { QUERY_AFTER, "after", false },
        { QUERY_Q, "q", false },
        { QUERY_TYPE, "type", false },
        { QUERY_LEVEL, "level", false },
        { QUERY_MANAGED, "managed", false },
        { QUERY_MANAGER, "manager", false },
        { QUERY_STATUS, "status", false },
        { QUERY_ACTOR, "actor", false },
        { QUERY_ACTION, "action", false },
        { QUERY_TARGET, "target", false },
        { QUERY_SINCE, "since", false },
        { QUERY_INCLUDE_KEYS, "include_keys", false },
        { QUERY_INCLUDE_REVOKED, "include_revoked", false },
        { QUERY_DESTINATION, "destination", false },
        { QUERY_PROBE, "probe", false },
        { QUERY_FORCE, "force", false },
        { QUERY_LATEST, "latest", false },
        { QUERY_SETTINGS, "settings", false },
};

const char *router_query_name(unsigned bit)
{
        for (size_t i = 0; i < ARRAY_SIZE(query_params); i++)
                if (query_params[i].bit == bit)
                        return query_params[i].name;
        return NULL;
}

void router_query_list(unsigned mask, char *buf, size_t size)
{
        size_t n = 0;
        buf[0] = 0;
        for (size_t i = 0; i < ARRAY_SIZE(query_params); i++) {
                if (!(mask & query_params[i].bit))
                        continue;
                int w = snprintf(buf + n, size - n, "%s%s", n ? ", " : "", query_params[i].name);
                if (w < 0 || (size_t)w >= size - n)
                        break;
                n += (size_t)w;
        }
        if (n == 0)
                snprintf(buf, size, "none");
}

int router_check_query(const struct route_op *op, const char *method, const char *pattern,
                       const char *name, unsigned *seen, struct problem *reterr)
{
        for (size_t i = 0; i < ARRAY_SIZE(query_params); i++) {
                if (!streq(query_params[i].name, name) || !(op->query & query_params[i].bit))
                        continue;
                if ((*seen & query_params[i].bit) && !query_params[i].multi)
                        return problem_set(reterr, PROBLEM_INVALID_VALUE, name,
                                           "%s is given more than once; send it once", name);
                *seen |= query_params[i].bit;
                return 0;
        }
        char list[160];
        router_query_list(op->query, list, sizeof(list));
        return problem_set(reterr, PROBLEM_UNKNOWN_PARAMETER, name,
                           "unknown query parameter '%.64s': %s %s accepts %s", name, method,
                           pattern, list);
}
