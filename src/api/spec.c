/* spec.c (api) - GET /api/v1/openapi.yaml: the contract (api/openapi.yaml, embedded at build time
 * by scripts/embed-file.py), with a strong ETag from its SHA-256 and If-None-Match -> 304. No
 * token needed: it is the file every copy of the source has. HTTP threads. */
#include <stdlib.h>
#include <string.h>

#include "smtptlsd/api.h"

extern const unsigned char api_openapi_yaml[];
extern const size_t api_openapi_yaml_len;
extern const char api_openapi_yaml_etag[];

int api_openapi(struct request *req, struct problem *reterr)
{
        reply_header(req, "ETag", "%s", api_openapi_yaml_etag);
        const char *none_match = request_header(req, "If-None-Match");
        if (none_match && etag_list_has_weak(none_match, api_openapi_yaml_etag))
                return reply_empty(req, 304);
        char *text = malloc(api_openapi_yaml_len); /* the reply owns its body */
        if (!text)
                return problem_set(reterr, PROBLEM_INTERNAL_ERROR, NULL, "out of memory");
        memcpy(text, api_openapi_yaml, api_openapi_yaml_len);
        return reply_text(req, 200, "application/yaml", text, api_openapi_yaml_len);
}
