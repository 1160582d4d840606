/* routes.c - the route table: every path, method, handler, scope, accepted body and accepted query
 * parameters (QUERY_*; any other is refused before the handler runs) in one place.
 * Read-only data, used by the HTTP threads and by /metrics for route labels. */
#include "api/api.h"

const struct route api_routes[] = {
        /* the web console (api/console.c): public files; the page signs in by itself */
        { "/", { { HTTP_GET, api_console_index, SCOPE_NONE, BODY_NONE, 0 } } },
        { "/console/{path}", { { HTTP_GET, api_console_asset, SCOPE_NONE, BODY_NONE, 0 } } },
        { "/healthz", { { HTTP_GET, api_healthz, SCOPE_NONE, BODY_NONE, 0 } } },
        { "/readyz", { { HTTP_GET, api_readyz, SCOPE_NONE, BODY_NONE, 0 } } },
        { "/metrics", { { HTTP_GET, api_metrics, SCOPE_READ, BODY_NONE, 0 } } },
        { "/api/v1/tokens",
          { { HTTP_GET, api_tokens_list, SCOPE_ADMIN, BODY_NONE, QUERY_INCLUDE_REVOKED },
            { HTTP_POST, api_tokens_create, SCOPE_ADMIN, BODY_JSON, QUERY_DRY_RUN } } },
        { "/api/v1/tokens/{name}",
          { { HTTP_GET, api_tokens_get, SCOPE_ADMIN, BODY_NONE, 0 },
            { HTTP_DELETE, api_tokens_delete, SCOPE_ADMIN, BODY_NONE, QUERY_DRY_RUN } } },
        /* the console's sign-in: the POST checks the token itself (it has no session yet) */
        { "/api/v1/session",
          { { HTTP_GET, api_session_get, SCOPE_READ, BODY_NONE, 0 },
            { HTTP_POST, api_session_create, SCOPE_NONE, BODY_JSON | BODY_SECRET, 0 },
            { HTTP_DELETE, api_session_delete, SCOPE_READ, BODY_NONE, 0 } } },
        { "/api/v1/settings",
          { { HTTP_GET, api_settings_get, SCOPE_READ, BODY_NONE, 0 },
            { HTTP_PUT, api_settings_put, SCOPE_WRITE, BODY_JSON, QUERY_WRITE },
            { HTTP_PATCH, api_settings_patch, SCOPE_WRITE, BODY_JSON, QUERY_WRITE } } },
        { "/api/v1/certificates",
          { { HTTP_GET, api_certificates_list, SCOPE_READ, BODY_NONE, QUERY_Q | QUERY_TYPE },
            { HTTP_POST, api_certificates_post, SCOPE_WRITE, BODY_JSON | BODY_SECRET,
              QUERY_WRITE } } },
        { "/api/v1/certificates/rescan",
          { { HTTP_POST, api_certificates_rescan, SCOPE_WRITE, BODY_NONE, QUERY_WRITE } } },
        { "/api/v1/certificates/{name}",
          { { HTTP_GET, api_certificates_get, SCOPE_READ, BODY_NONE, 0 },
            { HTTP_PUT, api_certificates_put, SCOPE_WRITE, BODY_JSON | BODY_PEM | BODY_SECRET,
              QUERY_WRITE },
            { HTTP_DELETE, api_certificates_delete, SCOPE_WRITE, BODY_NONE, QUERY_WRITE } } },
        { "/api/v1/tls-policies",
          { { HTTP_GET, api_policies_list, SCOPE_READ, BODY_NONE,
              QUERY_PAGE | QUERY_Q | QUERY_LEVEL | QUERY_MANAGED },
            { HTTP_POST, api_policies_post, SCOPE_WRITE, BODY_JSON, QUERY_WRITE | QUERY_MANAGER },
            { HTTP_PUT, api_policies_bulk, SCOPE_WRITE, BODY_JSON | BODY_BULK, QUERY_WRITE } } },
        { "/api/v1/tls-policies/{destination}",
          { { HTTP_GET, api_policy_get, SCOPE_READ, BODY_NONE, 0 },
            { HTTP_PUT, api_policy_put, SCOPE_WRITE, BODY_JSON, QUERY_WRITE | QUERY_MANAGER },
            { HTTP_PATCH, api_policy_patch, SCOPE_WRITE, BODY_JSON, QUERY_WRITE | QUERY_MANAGER },
            { HTTP_DELETE, api_policy_delete, SCOPE_WRITE, BODY_NONE,
              QUERY_WRITE | QUERY_MANAGER } } },
        { "/api/v1/jobs",
          { { HTTP_GET, api_jobs_list, SCOPE_READ, BODY_NONE,
              QUERY_PAGE | QUERY_STATUS | QUERY_ACTOR | QUERY_ACTION | QUERY_TARGET |
                  QUERY_SINCE } } },
        { "/api/v1/jobs/{id}", { { HTTP_GET, api_jobs_get, SCOPE_READ, BODY_NONE, 0 } } },
        { "/api/v1/status", { { HTTP_GET, api_status, SCOPE_READ, BODY_NONE, 0 } } },
        { "/api/v1/config", { { HTTP_GET, api_config, SCOPE_READ, BODY_NONE, 0 } } },
        /* the contract itself: public, as the same file is in every copy of the source */
        { "/api/v1/openapi.yaml", { { HTTP_GET, api_openapi, SCOPE_NONE, BODY_NONE, 0 } } },
        { "/api/v1/state",
          { { HTTP_GET, api_state_get, SCOPE_READ, BODY_NONE, QUERY_INCLUDE_KEYS },
            { HTTP_PUT, api_state_put, SCOPE_WRITE, BODY_JSON | BODY_BULK | BODY_SECRET,
              QUERY_WRITE } } },
};
const size_t api_routes_count = ARRAY_SIZE(api_routes);
