/* settings.c (api) - GET/PUT/PATCH /api/v1/settings. Reads come from PostgreSQL; writes are
 * checked for shape here (so most mistakes get their 4xx without a job) and applied by the
 * worker. HTTP threads. */
#include <stdio.h>

#include "api/api.h"
#include "app.h"
#include "core/json_spec.h"
#include "core/resource.h"
#include "core/settings.h"
#include "store/store.h"

int api_settings_get(struct request *req, struct problem *reterr)
{
        _cleanup_db_conn_ struct db_conn *c = NULL;
        struct settings s;
        int64_t version = 0;
        int r = db_acquire(req->app->db, &c, reterr);
        if (r >= 0)
                r = store_settings_load(c, &s, &version, false, reterr);
        if (r < 0)
                return r;
        char etag[48];
        resource_etag(RESOURCE_SETTINGS, version, etag);
        reply_header(req, "ETag", "%s", etag);
        return reply_json(req, 200, settings_to_json(&s));
}

static int settings_write(struct request *req, bool patch, struct problem *reterr)
{
        _cleanup_db_conn_ struct db_conn *c = NULL;
        json_t *body = NULL;
        struct settings s;
        int r = json_parse_body(req->body, req->body_len, &body, reterr);
        if (r >= 0)
                r = db_acquire(req->app->db, &c, reterr);
        if (r >= 0)
                r = store_settings_load(c, &s, NULL, false, reterr);
        /* The same rules the worker applies, on the current state: refuse early. */
        if (r >= 0)
                r = settings_apply_json(&s, body, patch, reterr);
        if (r >= 0) {
                db_release(TAKE_PTR(c));
                r = api_submit(req, patch ? "settings.patch" : "settings.put", "settings", body,
                               reterr);
        }
        json_decref(body);
        return r;
}

int api_settings_put(struct request *req, struct problem *reterr)
{
        return settings_write(req, false, reterr);
}

int api_settings_patch(struct request *req, struct problem *reterr)
{
        return settings_write(req, true, reterr);
}
