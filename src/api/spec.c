/* spec.c (api) - GET /api/v1/openapi.yaml: the contract (api/openapi.yaml, embedded at build time
 * by scripts/embed-file.py), with a strong ETag from its SHA-256 and If-None-Match -> 304. No
 * token needed: it is the file every copy of the source has. HTTP threads. */
#include "api/api.h"

extern const unsigned char api_openapi_yaml[];
extern const size_t api_openapi_yaml_len;
extern const char api_openapi_yaml_etag[];

int api_openapi(struct request *req, struct problem *reterr)
{
        return reply_static(req, "application/yaml", api_openapi_yaml, api_openapi_yaml_len,
                            api_openapi_yaml_etag, reterr);
}
