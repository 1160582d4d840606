/* certificates.c (api) - /api/v1/certificates: list and search (the console's autocomplete), one
 * certificate, upload (JSON fields or one application/x-pem-file bundle), delete, rescan of the
 * ACME directory. Uploads are validated here (every refusal of api.md, sizes first) and again by
 * the worker when applied. HTTP threads. */
#include <strings.h>
#include <time.h>

#include "api/api.h"
#include "app.h"
#include "apply/layout.h"
#include "core/cert.h"
#include "core/json_spec.h"
#include "core/resource.h"
#include "core/sealed.h"
#include "store/store.h"
#include "store/tokens.h"

static const char *const types[] = { "imported", "acme", "system", NULL };

int api_certificates_list(struct request *req, struct problem *reterr)
{
        _cleanup_db_conn_ struct db_conn *c = NULL;
        char q[256], type[16];
        const char *qv, *tv;
        json_t *items = NULL, *it;
        size_t i;
        int r = request_query(req, "q", q, sizeof(q), &qv, reterr);
        if (r >= 0)
                r = request_query(req, "type", type, sizeof(type), &tv, reterr);
        if (r < 0)
                return r;
        if (tv) {
                bool ok = false;
                for (size_t k = 0; types[k]; k++)
                        ok |= streq(types[k], tv);
                if (!ok)
                        return problem_set(reterr, PROBLEM_INVALID_VALUE, "type",
                                           "type is imported, acme or system");
        }
        int64_t version = 0;
        r = db_acquire(req->app->db, &c, reterr);
        if (r >= 0)
                r = store_certs_list(c, qv, tv, &items, &version, reterr);
        if (r < 0)
                return r;
        json_array_foreach (items, i, it)
                json_object_set_new(it, "files", layout_cert_files_json(req->app->cfg, it));
        /* the tag of the whole collection, whatever the filters */
        char etag[RESOURCE_ETAG_MAX];
        resource_etag(RESOURCE_CERTIFICATES, version, etag);
        reply_header(req, "ETag", "%s", etag);
        return reply_json(req, 200, json_pack("{s:o, s:n}", "items", items, "next"));
}

int api_certificates_get(struct request *req, struct problem *reterr)
{
        _cleanup_db_conn_ struct db_conn *c = NULL;
        json_t *cert = NULL;
        int64_t version = 0;
        int r = db_acquire(req->app->db, &c, reterr);
        if (r >= 0)
                r = store_cert_get(c, req->params[0], &cert, &version, reterr);
        if (r == -ENOENT)
                return problem_set_errno(reterr, -ENOENT, PROBLEM_NOT_FOUND, NULL,
                                         "no certificate named '%s'", req->params[0]);
        if (r < 0)
                return r;
        json_object_set_new(cert, "files", layout_cert_files_json(req->app->cfg, cert));
        char etag[RESOURCE_ETAG_MAX];
        resource_etag(RESOURCE_CERTIFICATE, version, etag);
        reply_header(req, "ETag", "%s", etag);
        return reply_json(req, 200, cert);
}

struct upload {
        const char *name;
        const char *certificate;
        const char *private_key;
        const char *chain;
};

/* The PEM fields may be large; cert_import decides payload_too_large, the body limit caps all. */
#define PEM_FIELD_MAX (4 * CERT_PEM_MAX)

#define PEM_FIELDS                                                                                 \
        { "certificate",        JS_STRING,                                                         \
          JS_REQUIRED,          offsetof(struct upload, certificate),                              \
          .max = PEM_FIELD_MAX, .invalid_code = PROBLEM_INVALID_PEM },                             \
            { "private_key",        JS_STRING,                                                     \
              JS_REQUIRED,          offsetof(struct upload, private_key),                          \
              .max = PEM_FIELD_MAX, .invalid_code = PROBLEM_INVALID_PEM },                         \
        {                                                                                          \
                "chain", JS_STRING, JS_NULLABLE, offsetof(struct upload, chain),                   \
                    .max = PEM_FIELD_MAX, .invalid_code = PROBLEM_INVALID_PEM                      \
        }

/* PUT names the certificate in the URL (a name in the body must be that one); POST in the
 * body. */
static const struct json_spec upload_spec[] = {
        { "name", JS_STRING, 0, offsetof(struct upload, name), .max = 256,
          .invalid_code = PROBLEM_INVALID_VALUE },
        PEM_FIELDS,
        { 0 },
};
static const struct json_spec post_spec[] = {
        { "name", JS_STRING, JS_REQUIRED, offsetof(struct upload, name), .max = 256,
          .invalid_code = PROBLEM_INVALID_NAME },
        PEM_FIELDS,
        { 0 },
};

int api_certificate_name_check(const char *name, const char *field, struct problem *reterr)
{
        /* "rescan" would collide with POST /api/v1/certificates/rescan. */
        if (!name_is_valid(name) || streq(name, "rescan"))
                return problem_set(reterr, PROBLEM_INVALID_NAME, field,
                                   "certificate names are 1 to 64 characters of [a-z0-9._-], "
                                   "starting with a letter or digit (and not 'rescan')");
        return 0;
}

static bool is_pem_upload(struct request *req)
{
        const char *ct = req->content_type;
        return ct && strncasecmp(ct, "application/x-pem-file", 22) == 0;
}

/* Validates the upload and hands the normalized PEM to the worker; the key apart from the job's
 * request (api_submit_key). cert_import_done wipes the normalized key. */
static int upload_checked(struct request *req, const char *action, bool post,
                          struct problem *reterr)
{
        struct upload u = { 0 };
        struct cert_import imp = { 0 };
        json_t *body = NULL, *read_only = NULL;
        int r;

        if (is_pem_upload(req)) {
                r = cert_import_bundle(req->body ? req->body : "", req->body_len, time(NULL), &imp,
                                       reterr);
        } else {
                r = json_parse_body(req->body, req->body_len, &body, reterr);
                /* a GET reply sent back: its read-only members go to the worker to compare */
                if (r >= 0)
                        read_only = cert_take_read_only(body);
                if (r >= 0)
                        r = json_dispatch(body, post ? post_spec : upload_spec, &u, NULL, 0, "",
                                          reterr);
                if (r >= 0 && post)
                        r = api_certificate_name_check(u.name, "/name", reterr);
                if (r >= 0 && !post && u.name && !streq(u.name, req->params[0]))
                        r = problem_set(reterr, PROBLEM_INVALID_VALUE, "/name",
                                        "the name '%s' is not the one in the URL ('%s')", u.name,
                                        req->params[0]);
                if (r >= 0)
                        r = cert_import(u.certificate, strlen(u.certificate), u.private_key,
                                        strlen(u.private_key), u.chain,
                                        u.chain ? strlen(u.chain) : 0, time(NULL), &imp, reterr);
        }
        const char *name = post ? u.name : req->params[0];
        if (r >= 0) {
                json_t *normalized =
                    json_pack("{s:s, s:s}", "certificate", imp.cert_pem, "chain", imp.chain_pem);
                if (json_object_size(read_only) > 0)
                        json_object_set(normalized, "read_only", read_only);
                r = api_submit_key(req, action, name, normalized, imp.key_pem, reterr);
                json_decref(normalized);
        }
        cert_import_done(&imp);
        json_decref(read_only);
        json_decref(body);
        return r;
}

/* What jansson frees meanwhile is wiped: the body's strings and the parser's buffers. */
static int upload(struct request *req, const char *action, bool post, struct problem *reterr)
{
        json_wipe_begin();
        int r = upload_checked(req, action, post, reterr);
        json_wipe_end();
        return r;
}

int api_certificates_put(struct request *req, struct problem *reterr)
{
        int r = api_certificate_name_check(req->params[0], "", reterr);
        if (r < 0)
                return r;
        return upload(req, "certificates.put", false, reterr);
}

int api_certificates_post(struct request *req, struct problem *reterr)
{
        return upload(req, "certificates.post", true, reterr);
}

int api_certificates_delete(struct request *req, struct problem *reterr)
{
        return api_submit(req, "certificates.delete", req->params[0], NULL, reterr);
}

int api_certificates_rescan(struct request *req, struct problem *reterr)
{
        return api_submit(req, "certificates.rescan", "certificates", NULL, reterr);
}
