/* request.c - what a request says: its headers and its query parameters (percent-decoded; one
 * that cannot be read is refused, never taken for absent). MHD's pool threads. */
#include <microhttpd.h>
#include <string.h>

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
