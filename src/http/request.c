/* request.c - what a request says: its headers and its query parameters (percent-decoded; one
 * that cannot be read is refused, never taken for absent). MHD's pool threads. */
#include <microhttpd.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http/http.h"
#include "util.h"

const char *request_header(struct request *req, const char *name)
{
        return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

int request_query(struct request *req, const char *key, char *buf, size_t size, const char **ret,
                  struct problem *reterr)
{
        const char *raw = NULL;
        _cleanup_free_ char *dec = NULL;
        *ret = NULL;
        if (MHD_lookup_connection_value_n(req->conn, MHD_GET_ARGUMENT_KIND, key, strlen(key), &raw,
                                          NULL) != MHD_YES)
                return 0;
        if (!raw)
                raw = ""; /* "?dry_run" is "?dry_run=", not an absent parameter */
        /* A value we cannot read is refused, never taken for an absent one: ?dry_run=<garbage>
         * must not become a real write. */
        if (http_percent_decode(raw, strlen(raw), true, &dec) < 0)
                return problem_set(reterr, PROBLEM_INVALID_VALUE, key,
                                   "%s holds an invalid percent-escape", key);
        if (strcpy_bounded(buf, size, dec) < 0)
                return problem_set(reterr, PROBLEM_INVALID_VALUE, key,
                                   "%s is longer than %zu characters", key, size - 1);
        *ret = buf;
        return 1;
}

/* The q of the most specific range of an Accept header that covers type ("a/b"), its position
 * among the ranges when named exactly (else SIZE_MAX), or q -1 when none covers it. */
static void accept_q(const char *accept, const char *type, double *q, size_t *exact_at)
{
        const char *slash = strchr(type, '/');
        size_t major = slash ? (size_t)(slash - type) : strlen(type);
        int best = -1; /* 0 any type, 1 "a/" and a star, 2 "a/b" */
        *q = -1;
        *exact_at = SIZE_MAX;
        size_t index = 0;
        for (const char *p = accept; p && *p; index++) {
                const char *end = strchr(p, ',');
                size_t n = end ? (size_t)(end - p) : strlen(p);
                const char *semi = memchr(p, ';', n);
                const char *r = p;
                size_t rl = semi ? (size_t)(semi - p) : n;
                while (rl && (*r == ' ' || *r == '\t')) {
                        r++;
                        rl--;
                }
                while (rl && (r[rl - 1] == ' ' || r[rl - 1] == '\t'))
                        rl--;
                int how = -1;
                if (rl == 3 && !memcmp(r, "*/*", 3))
                        how = 0;
                else if (rl == major + 2 && !strncasecmp(r, type, major) && r[major] == '/' &&
                         r[major + 1] == '*')
                        how = 1;
                else if (rl == strlen(type) && !strncasecmp(r, type, rl))
                        how = 2;
                if (how > best) {
                        /* its parameters: q=, or 1 */
                        double qv = 1;
                        for (const char *s = semi; s && s < p + n;) {
                                const char *v = s + 1;
                                while (v < p + n && (*v == ' ' || *v == '\t'))
                                        v++;
                                if (v + 2 <= p + n && (v[0] == 'q' || v[0] == 'Q') && v[1] == '=')
                                        qv = strtod(v + 2, NULL);
                                s = memchr(v, ';', (size_t)(p + n - v));
                        }
                        best = how;
                        *q = qv;
                        *exact_at = how == 2 ? index : SIZE_MAX;
                }
                p = end ? end + 1 : NULL;
        }
}

bool http_accept_prefers(const char *accept, const char *type, const char *other)
{
        if (!accept)
                return false;
        double qt, qo;
        size_t at_t, at_o;
        accept_q(accept, type, &qt, &at_t);
        accept_q(accept, other, &qo, &at_o);
        if (qt <= 0)
                return false;
        return qt > qo || (qt == qo && at_t < at_o);
}

bool request_prefers_text(struct request *req)
{
        return http_accept_prefers(request_header(req, "Accept"), "text/plain", "application/json");
}
