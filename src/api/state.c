/* state.c (api) - /api/v1/state: the whole desired state as one document (settings, certificates,
 * TLS policies, and the generation it is), out (GET, for backup and review) and in (PUT, restore:
 * one job, one transaction, one generation, applied by the worker's per-resource code). Private
 * keys leave only for an admin who asks (?include_keys=true) and come in only from one. HTTP
 * threads. */
#include <malloc.h>
#include <stdarg.h>
#include <stdio.h>

#include "api/api.h"
#include "app.h"
#include "conf.h"
#include "core/cert.h"
#include "core/json_spec.h"
#include "core/resource.h"
#include "core/sealed.h"
#include "store/store.h"
#include "store/tx.h"

/* json_dumps into a strbuf, appended. */
static int add_json(struct strbuf *out, json_t *j)
{
        char *text = json_dumps(j, JSON_COMPACT);
        int r = text ? strbuf_add(out, text, strlen(text)) : -ENOMEM;
        free_wiped(text);
        return r;
}

/* The document, read in one snapshot: {"generation", "settings", "tls_policies", "certificates"}.
 * The policies are written row chunk by row chunk into the reply's buffer; the certificates (the
 * part that may hold keys) last, so that no growth of the buffer leaves a copy of a key behind. */
static int state_read(struct request *req, struct db_conn *c, bool keys, struct strbuf *out,
                      int64_t *generation, struct problem *reterr)
{
        struct settings s;
        json_t *certs = NULL;
        char head[64];
        int r = tx_begin(c, TX_SNAPSHOT, reterr);
        if (r < 0)
                return r;
        size_t size = 0;
        r = store_generation(c, generation, false, reterr);
        if (r >= 0)
                r = store_settings_load(c, &s, NULL, false, reterr);
        /* one buffer of about the document's size: no copy of 100,000 rows while it grows */
        if (r >= 0)
                r = store_policies_json_size(c, &size, reterr);
        out->cap = size + size / 8 + 64 * 1024;
        if (r >= 0) {
                snprintf(head, sizeof(head),
                         "{\"generation\":%lld,\"settings\":", (long long)*generation);
                json_t *sj = settings_desired_json(&s);
                r = strbuf_add(out, head, strlen(head));
                if (r >= 0)
                        r = add_json(out, sj);
                if (r >= 0)
                        r = strbuf_add(out, ",\"tls_policies\":", 16);
                json_decref(sj);
                if (r < 0)
                        r = problem_set_errno(reterr, -ENOMEM, PROBLEM_INTERNAL_ERROR, NULL,
                                              "out of memory");
        }
        if (r >= 0)
                r = store_policies_dump(c, out, reterr);
        if (r >= 0)
                r = store_certs_state(c, req->app->cfg->kek, keys, &certs, reterr);
        tx_rollback(c); /* read only: nothing to keep */
        if (r >= 0 && (strbuf_add(out, ",\"certificates\":", 16) < 0 || add_json(out, certs) < 0 ||
                       strbuf_add(out, "}\n", 2) < 0))
                r = problem_set_errno(reterr, -ENOMEM, PROBLEM_INTERNAL_ERROR, NULL,
                                      "out of memory");
        json_decref(certs);
        return r;
}

int api_state_get(struct request *req, struct problem *reterr)
{
        _cleanup_db_conn_ struct db_conn *c = NULL;
        struct strbuf out = { 0 };
        int64_t generation = 0;
        bool keys = false;
        int r = api_query_flag(req, "include_keys", &keys, reterr);
        if (r < 0)
                return r;
        if (keys && req->scope < SCOPE_ADMIN)
                return problem_set_errno(reterr, -EPERM, PROBLEM_FORBIDDEN, "include_keys",
                                         "include_keys=true needs a token with scope 'admin'");
        r = db_acquire(req->app->db, &c, reterr);
        if (r < 0)
                return r;
        if (keys)
                json_wipe_begin();
        r = state_read(req, c, keys, &out, &generation, reterr);
        if (keys)
                json_wipe_end();
        if (r < 0) {
                free_wiped(out.p);
                return r;
        }
        char etag[RESOURCE_ETAG_MAX];
        resource_etag(RESOURCE_STATE, generation, etag);
        reply_header(req, "ETag", "%s", etag);
        req->reply_secret = keys;
        return reply_text(req, 200, "application/json", out.p, out.len);
}

/* ---- PUT ------------------------------------------------------------------------------------ */

struct state_body {
        int64_t generation;
        json_t *settings, *certificates, *tls_policies;
};

static int is_object(const struct json_spec *spec, json_t *v, const char *field,
                     struct problem *reterr)
{
        if (json_is_object(v))
                return 0;
        return problem_set(reterr, PROBLEM_INVALID_VALUE, field, "%s must be an object",
                           spec->name);
}

static int is_array(const struct json_spec *spec, json_t *v, const char *field,
                    struct problem *reterr)
{
        if (json_is_array(v))
                return 0;
        return problem_set(reterr, PROBLEM_INVALID_VALUE, field, "%s must be an array", spec->name);
}

/* generation is what GET gave: informational (restoring into another site is a new generation
 * there); the precondition is If-Match. */
static const struct json_spec state_spec[] = {
        { "generation", JS_INT, 0, offsetof(struct state_body, generation), .max = INT64_MAX },
        { "settings", JS_ANY, JS_REQUIRED, offsetof(struct state_body, settings),
          .check = is_object },
        { "certificates", JS_ANY, JS_REQUIRED, offsetof(struct state_body, certificates),
          .check = is_array },
        { "tls_policies", JS_ANY, JS_REQUIRED, offsetof(struct state_body, tls_policies),
          .check = is_array },
        { 0 },
};

struct state_cert {
        const char *name, *type, *sha256_fingerprint, *certificate, *chain, *private_key;
};

static const char *const cert_types[] = { "imported", "acme", "system", NULL };

static const struct json_spec cert_spec[] = {
        { "name", JS_STRING, JS_REQUIRED, offsetof(struct state_cert, name), .max = 256,
          .invalid_code = PROBLEM_INVALID_NAME },
        { "type", JS_CHOICE, JS_REQUIRED, offsetof(struct state_cert, type),
          .choices = cert_types },
        { "sha256_fingerprint", JS_STRING, JS_NULLABLE,
          offsetof(struct state_cert, sha256_fingerprint), .max = 128 },
        { "certificate", JS_STRING, JS_NULLABLE, offsetof(struct state_cert, certificate),
          .max = CERT_PEM_MAX, .invalid_code = PROBLEM_INVALID_PEM },
        { "chain", JS_STRING, JS_NULLABLE, offsetof(struct state_cert, chain), .max = CERT_PEM_MAX,
          .invalid_code = PROBLEM_INVALID_PEM },
        { "private_key", JS_STRING, JS_NULLABLE, offsetof(struct state_cert, private_key),
          .max = CERT_PEM_MAX, .invalid_code = PROBLEM_INVALID_PEM },
        { 0 },
};

_printf_(5, 6) static int refuse(struct problem *reterr, enum problem_code code, const char *prefix,
                                 const char *name, const char *fmt, ...)
{
        char field[96], detail[400];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(detail, sizeof(detail), fmt, ap);
        va_end(ap);
        snprintf(field, sizeof(field), "%s/%s", prefix, name);
        return problem_set(reterr, code, field, "%s", detail);
}

/* One certificate of the document, checked as an upload is, into its normalized form
 * {name, type, sha256_fingerprint, certificate, chain} (the last two for imported ones) and,
 * when it carries one, its key into keys[name]. */
static int state_cert(struct request *req, json_t *item, size_t i, json_t *out, json_t *keys,
                      struct problem *reterr)
{
        struct state_cert c = { 0 };
        char prefix[48];
        snprintf(prefix, sizeof(prefix), "/certificates/%zu", i);
        if (!json_is_object(item))
                return problem_set(reterr, PROBLEM_INVALID_VALUE, prefix,
                                   "a certificate is an object");
        int r = json_dispatch(item, cert_spec, &c, NULL, 0, prefix, reterr);
        if (r >= 0) {
                char field[64];
                snprintf(field, sizeof(field), "%s/name", prefix);
                r = api_certificate_name_check(c.name, field, reterr);
        }
        if (r < 0)
                return r;
        for (size_t k = 0; k < json_array_size(out); k++)
                if (streq(c.name,
                          json_string_value(json_object_get(json_array_get(out, k), "name"))))
                        return refuse(reterr, PROBLEM_DUPLICATE_NAME, prefix, "name",
                                      "'%s' appears twice", c.name);
        if (!streq(c.type, "imported")) {
                /* a reference: the files are the ACME client's or the system's */
                const char *content = c.certificate   ? "certificate"
                                      : c.chain       ? "chain"
                                      : c.private_key ? "private_key"
                                                      : NULL;
                if (content)
                        return refuse(reterr, PROBLEM_INVALID_VALUE, prefix, content,
                                      "an %s certificate is listed by reference (name, type, "
                                      "sha256_fingerprint): its files are not the API's",
                                      c.type);
                json_array_append_new(out,
                                      json_pack("{s:s, s:s, s:s*}", "name", c.name, "type", c.type,
                                                "sha256_fingerprint", c.sha256_fingerprint));
                return 0;
        }
        if (!c.certificate)
                return refuse(reterr, PROBLEM_MISSING_FIELD, prefix, "certificate",
                              "an imported certificate carries its certificate");
        struct cert_import imp = { 0 };
        struct cert_info info = { 0 };
        const char *fpr;
        if (c.private_key) {
                if (req->scope < SCOPE_ADMIN)
                        return refuse(reterr, PROBLEM_FORBIDDEN, prefix, "private_key",
                                      "a document with private keys needs a token with scope "
                                      "'admin'");
                r = cert_import(c.certificate, strlen(c.certificate), c.private_key,
                                strlen(c.private_key), c.chain, c.chain ? strlen(c.chain) : 0,
                                time(NULL), &imp, reterr);
                fpr = imp.info.sha256_fingerprint;
        } else {
                /* no key: it must be stored already with this certificate (the worker checks) */
                r = cert_info_from_pem(c.certificate, strlen(c.certificate), &info, reterr);
                fpr = info.sha256_fingerprint;
        }
        if (r < 0) {
                problem_prefix_field(reterr, prefix);
        } else if (c.sha256_fingerprint && !streq(c.sha256_fingerprint, fpr)) {
                r = refuse(reterr, PROBLEM_INVALID_VALUE, prefix, "sha256_fingerprint",
                           "is not the fingerprint of the certificate (%s)", fpr);
        } else {
                json_array_append_new(
                    out, json_pack("{s:s, s:s, s:s, s:s, s:s}", "name", c.name, "type", c.type,
                                   "sha256_fingerprint", fpr, "certificate",
                                   c.private_key ? imp.cert_pem : c.certificate, "chain",
                                   c.private_key ? imp.chain_pem : (c.chain ? c.chain : "")));
                if (c.private_key)
                        json_object_set_new(keys, c.name, json_string(imp.key_pem));
        }
        cert_import_done(&imp);
        cert_info_done(&info);
        return r;
}

static int state_put(struct request *req, struct problem *reterr)
{
        struct state_body b = { 0 };
        json_t *body = NULL, *item;
        json_t *certs = json_array(), *keys = json_object(), *jb = NULL;
        _cleanup_free_ char *items = NULL;
        char *keys_text = NULL;
        size_t body_len = req->body_len, i;
        int r = json_parse_body(req->body, req->body_len, &body, reterr);
        /* parsed: the raw body goes now (it may be bulk_body_limit large, and hold keys) */
        free_wiped(TAKE_PTR(req->body));
        req->body_len = req->body_cap = 0;
        if (r >= 0)
                r = json_dispatch(body, state_spec, &b, NULL, 0, "", reterr);
        /* settings: the rules of PUT /api/v1/settings (managed said apart: the worker takes
         * over main.cf for a document whose settings are managed) */
        json_t *settings = r >= 0 ? json_deep_copy(b.settings) : NULL;
        json_t *managed = json_object_get(settings, "managed");
        if (managed && !json_is_boolean(managed))
                r = problem_set(reterr, PROBLEM_INVALID_VALUE, "/settings/managed",
                                "managed is true or false");
        if (r >= 0) {
                struct settings s;
                settings_defaults(&s);
                json_object_del(settings, "managed");
                r = settings_apply_json(&s, settings, false, reterr);
                problem_prefix_field(reterr, "/settings");
        }
        if (r >= 0)
                json_array_foreach (b.certificates, i, item) {
                        r = state_cert(req, item, i, certs, keys, reterr);
                        if (r < 0)
                                break;
                }
        if (r >= 0)
                r = api_policy_items(req, b.tls_policies, body_len, "/tls_policies", true, NULL,
                                     &items, reterr);
        if (r >= 0) {
                jb = json_pack("{s:o, s:b, s:O, s:n, s:s}", "settings", TAKE_PTR(settings),
                               "managed", managed ? json_is_true(managed) : true, "certificates",
                               certs, "policy", "scope", scope_to_string(req->scope));
                if (json_object_size(keys) > 0 && !(keys_text = json_dumps(keys, JSON_COMPACT)))
                        r = problem_set_errno(reterr, -ENOMEM, PROBLEM_INTERNAL_ERROR, NULL,
                                              "out of memory");
        }
        json_decref(settings);
        json_decref(keys);
        json_decref(certs);
        json_decref(body);
        /* The parsed body was many small blocks: give them back before the row is sent. */
        malloc_trim(0);
        if (r >= 0)
                r = api_submit_all(req, "state.put", "state", jb, keys_text, &items, reterr);
        json_decref(jb);
        free_wiped(keys_text);
        return r;
}

/* What jansson frees meanwhile is wiped: the document may hold private keys. */
int api_state_put(struct request *req, struct problem *reterr)
{
        json_wipe_begin();
        int r = state_put(req, reterr);
        json_wipe_end();
        return r;
}
