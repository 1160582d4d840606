/* reply.c - building replies: JSON bodies, problem+json bodies, headers. The table below is the
 * one place where a problem code becomes an HTTP status and a title. HTTP threads (and the
 * worker, when it completes a suspended request). */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>

#include "core/sealed.h"
#include "http/http.h"
#include "http/reply_cache.h"

static const struct {
        int status;
        const char *title;
} problem_table[_PROBLEM_MAX] = {
        [PROBLEM_NONE] = { 500, "Internal Server Error" },
        [PROBLEM_UNAUTHORIZED] = { 401, "Authentication required" },
        [PROBLEM_FORBIDDEN] = { 403, "Token scope too weak" },
        [PROBLEM_NOT_FOUND] = { 404, "Not found" },
        [PROBLEM_METHOD_NOT_ALLOWED] = { 405, "Method not allowed" },
        [PROBLEM_INVALID_JSON] = { 400, "Invalid JSON" },
        [PROBLEM_BAD_REQUEST] = { 400, "Bad request" },
        [PROBLEM_UNSUPPORTED_MEDIA_TYPE] = { 415, "Unsupported media type" },
        [PROBLEM_PAYLOAD_TOO_LARGE] = { 413, "Payload too large" },
        [PROBLEM_PRECONDITION_FAILED] = { 412, "Precondition failed" },
        [PROBLEM_UNKNOWN_FIELD] = { 422, "Unknown field" },
        [PROBLEM_MISSING_FIELD] = { 422, "Missing field" },
        [PROBLEM_INVALID_VALUE] = { 422, "Invalid value" },
        [PROBLEM_UNKNOWN_PARAMETER] = { 422, "Unknown query parameter" },
        [PROBLEM_CERTIFICATE_REQUIRED] = { 422, "Certificate required" },
        [PROBLEM_CERTIFICATE_NOT_FOUND] = { 422, "Certificate not found" },
        [PROBLEM_SYSTEM_CERTIFICATE_REFUSED] = { 422, "System certificate refused" },
        [PROBLEM_CERTIFICATE_UNUSABLE] = { 422, "Certificate unusable" },
        [PROBLEM_DUPLICATE_KEY_TYPE] = { 422, "Two certificates of one key type" },
        [PROBLEM_INVALID_DESTINATION] = { 422, "Invalid destination" },
        [PROBLEM_INVALID_ATTRIBUTE] = { 422, "Invalid attribute" },
        [PROBLEM_DUPLICATE_DESTINATION] = { 409, "Duplicate destination" },
        [PROBLEM_DUPLICATE_NAME] = { 409, "Duplicate name" },
        [PROBLEM_MANAGED_ROW] = { 409, "Managed row" },
        [PROBLEM_CERTIFICATE_IN_USE] = { 409, "Certificate in use" },
        [PROBLEM_LEGACY_CERTIFICATE] = { 409, "A certificate of main.cf would be dropped" },
        [PROBLEM_SYSTEM_CERTIFICATE] = { 409, "System certificate" },
        [PROBLEM_ACME_CERTIFICATE] = { 409, "ACME certificate is read-only" },
        [PROBLEM_INVALID_NAME] = { 422, "Invalid name" },
        [PROBLEM_INVALID_PEM] = { 422, "Invalid PEM" },
        [PROBLEM_NO_CERTIFICATE] = { 422, "No certificate" },
        [PROBLEM_NO_PRIVATE_KEY] = { 422, "No private key" },
        [PROBLEM_ENCRYPTED_PRIVATE_KEY] = { 422, "Encrypted private key" },
        [PROBLEM_KEY_MISMATCH] = { 422, "Key mismatch" },
        [PROBLEM_CERTIFICATE_EXPIRED] = { 422, "Certificate expired" },
        [PROBLEM_CERTIFICATE_NOT_YET_VALID] = { 422, "Certificate not yet valid" },
        [PROBLEM_CHAIN_MISMATCH] = { 422, "Chain mismatch" },
        [PROBLEM_WEAK_KEY] = { 422, "Weak key" },
        [PROBLEM_NOT_A_SERVER_CERTIFICATE] = { 422, "Not a server certificate" },
        [PROBLEM_POSTFIX_REJECTED] = { 422, "Postfix rejected the configuration" },
        [PROBLEM_DESTINATION_FAILS_PROBE] = { 422, "Destination fails probe" },
        [PROBLEM_NODE_ALIVE] = { 409, "Node is alive" },
        [PROBLEM_SERVICE_CONFLICT] = { 409, "Service conflict" },
        [PROBLEM_CERTIFICATE_NOT_ON_NODE] = { 409, "Certificate not on node" },
        [PROBLEM_CSRF_REFUSED] = { 403, "Cross-site request refused" },
        [PROBLEM_ORIGIN_NOT_ALLOWED] = { 403, "Origin not allowed" },
        [PROBLEM_SERVICE_UNAVAILABLE] = { 503, "Service unavailable" },
        [PROBLEM_INSUFFICIENT_STORAGE] = { 507, "Insufficient Storage" },
        [PROBLEM_INTERNAL_ERROR] = { 500, "Internal Server Error" },
};

int problem_http_status(enum problem_code code)
{
        if ((unsigned)code >= _PROBLEM_MAX || problem_table[code].status == 0)
                return 500;
        return problem_table[code].status;
}

/* A body with private keys (reply_secret) is wiped. */
static void release_body(struct request *req)
{
        if (req->reply_secret)
                free_wiped(req->reply_body);
        else
                free(req->reply_body);
}

static int set_body(struct request *req, int status, const char *type, char *body, size_t len)
{
        release_body(req);
        req->reply_cached = false; /* the entry's reference stays: its header names are in use */
        req->status = status;
        req->reply_type = type;
        req->reply_body = body;
        req->reply_len = len;
        req->replied = true;
        return 0;
}

int reply_json(struct request *req, int status, json_t *body)
{
        char *text = json_dumps(body, JSON_COMPACT);
        json_decref(body);
        if (!text)
                return -ENOMEM;
        size_t len = strlen(text);
        /* A trailing newline makes curl output readable; clients ignore it. */
        char *t = realloc(text, len + 2);
        if (!t) {
                free(text);
                return -ENOMEM;
        }
        t[len++] = '\n';
        t[len] = 0;
        return set_body(req, status, "application/json", t, len);
}

int reply_text(struct request *req, int status, const char *content_type, char *text, size_t len)
{
        return set_body(req, status, content_type, text, len);
}

/* Sets the reply's ETag; 1 when the request's If-None-Match has it (the reply is then a 304). */
static int not_modified(struct request *req, const char *etag, struct problem *reterr)
{
        if (reply_header(req, "ETag", "%s", etag) < 0)
                return problem_set_errno(reterr, -EIO, PROBLEM_INTERNAL_ERROR, NULL,
                                         "too many headers");
        const char *none_match = request_header(req, "If-None-Match");
        return none_match && etag_list_has_weak(none_match, etag) ? 1 : 0;
}

/* The strong ETag of the reply's bytes: the first REPLY_TAG_BYTES of their SHA-256, in hex. */
static int body_etag(const struct request *req, char etag[REPLY_TAG_BYTES * 2 + 3])
{
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int mdlen = 0;
        if (EVP_Digest(req->reply_body, req->reply_len, md, &mdlen, EVP_sha256(), NULL) != 1 ||
            mdlen < REPLY_TAG_BYTES)
                return -EIO;
        etag[0] = '"';
        hex_encode(md, REPLY_TAG_BYTES, etag + 1);
        etag[REPLY_TAG_BYTES * 2 + 1] = '"';
        etag[REPLY_TAG_BYTES * 2 + 2] = 0;
        return 0;
}

int reply_json_tagged(struct request *req, json_t *body, struct problem *reterr)
{
        int r = reply_json(req, 200, body);
        if (r < 0)
                return problem_set_errno(reterr, -ENOMEM, PROBLEM_INTERNAL_ERROR, NULL,
                                         "out of memory");
        char etag[REPLY_TAG_BYTES * 2 + 3];
        if (body_etag(req, etag) < 0)
                return problem_set_errno(reterr, -EIO, PROBLEM_INTERNAL_ERROR, NULL,
                                         "SHA-256 failed");
        r = not_modified(req, etag, reterr);
        if (r > 0)
                return reply_empty(req, 304);
        return r;
}

const char *reply_header_value(const struct request *req, const char *name)
{
        for (size_t i = 0; i < req->n_headers; i++)
                if (strcasecmp(req->headers[i].name, name) == 0)
                        return req->headers[i].value;
        return NULL;
}

static bool taggable(const struct request *req)
{
        return req->method == HTTP_GET && req->status == 200 && !req->reply_untagged &&
               req->reply_type && strcmp(req->reply_type, "application/json") == 0;
}

void reply_tag(struct request *req)
{
        char tag[REPLY_TAG_BYTES * 2 + 3];
        if (taggable(req) && !reply_header_value(req, "ETag") && req->reply_body &&
            body_etag(req, tag) == 0)
                reply_header(req, "ETag", "%s", tag); /* none (too many headers): a plain 200 */
}

void reply_conditional(struct request *req)
{
        if (!taggable(req))
                return;
        reply_tag(req);
        const char *etag = reply_header_value(req, "ETag");
        const char *none_match = request_header(req, "If-None-Match");
        if (etag && none_match && etag_list_has_weak(none_match, etag))
                reply_empty(req, 304); /* the headers, the ETag among them, stay */
}

int reply_static(struct request *req, const char *content_type, const unsigned char *data,
                 size_t len, const char *etag, struct problem *reterr)
{
        int r = not_modified(req, etag, reterr);
        if (r != 0)
                return r < 0 ? r : reply_empty(req, 304);
        char *copy = malloc(len ? len : 1); /* the reply owns its body */
        if (!copy)
                return problem_set_errno(reterr, -ENOMEM, PROBLEM_INTERNAL_ERROR, NULL,
                                         "out of memory");
        memcpy(copy, data, len);
        return reply_text(req, 200, content_type, copy, len);
}

int reply_text_tagged(struct request *req, const char *content_type, char *text, size_t len,
                      const char *etag, struct problem *reterr)
{
        int r = not_modified(req, etag, reterr);
        if (r != 0) {
                free(text);
                return r < 0 ? r : reply_empty(req, 304);
        }
        return reply_text(req, 200, content_type, text, len);
}

int reply_empty(struct request *req, int status)
{
        return set_body(req, status, NULL, NULL, 0);
}

int reply_header(struct request *req, const char *name, const char *fmt, ...)
{
        char *value = NULL;
        va_list ap;

        if (req->n_headers >= REPLY_MAX_HEADERS)
                return -E2BIG;
        va_start(ap, fmt);
        int r = vasprintf(&value, fmt, ap);
        va_end(ap);
        if (r < 0)
                return -ENOMEM;
        req->headers[req->n_headers].name = name;
        req->headers[req->n_headers++].value = value;
        return 0;
}

int reply_problem(struct request *req, const struct problem *p)
{
        enum problem_code code = p->code == PROBLEM_NONE ? PROBLEM_INTERNAL_ERROR : p->code;
        int status = problem_http_status(code);
        json_t *body =
            json_pack("{s:s, s:i, s:s, s:s}", "type", "about:blank", "status", status, "code",
                      problem_code_name(code), "title", problem_table[code].title);
        if (!body)
                return -ENOMEM;
        if (p->detail[0])
                json_object_set_new(body, "detail", json_string(p->detail));
        if (p->field[0] || code == PROBLEM_UNKNOWN_FIELD || code == PROBLEM_MISSING_FIELD ||
            code == PROBLEM_INVALID_VALUE || code == PROBLEM_UNKNOWN_PARAMETER)
                json_object_set_new(body, "field", json_string(p->field));
        if (p->errors && json_array_size(p->errors) > 0)
                json_object_set(body, "errors", p->errors);
        if (p->extra)
                json_object_update_missing(body, p->extra);

        if (code == PROBLEM_UNAUTHORIZED)
                reply_header(req, "WWW-Authenticate", "Bearer realm=\"smtptlsd\"");
        if (code == PROBLEM_SERVICE_UNAVAILABLE)
                reply_header(req, "Retry-After", "%u", p->retry_after ? p->retry_after : 2);

        char *text = json_dumps(body, JSON_COMPACT);
        json_decref(body);
        if (!text)
                return -ENOMEM;
        return set_body(req, status, "application/problem+json", text, strlen(text));
}

void request_reply_free(struct request *req)
{
        release_body(req);
        req->reply_body = NULL;
        reply_cache_entry_unref(TAKE_PTR(req->reply_entry));
        free(TAKE_PTR(req->cache_key));
        for (size_t i = 0; i < req->n_headers; i++)
                free(req->headers[i].value);
        req->n_headers = 0;
}
