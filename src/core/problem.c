/* problem.c - filling struct problem (see problem.h). Any thread; no I/O. */
#include "smtptlsd/problem.h"

#include <stdio.h>

#include "smtptlsd/util.h"

static const char *const code_names[_PROBLEM_MAX] = {
        [PROBLEM_NONE] = "none",
        [PROBLEM_UNAUTHORIZED] = "unauthorized",
        [PROBLEM_FORBIDDEN] = "forbidden",
        [PROBLEM_NOT_FOUND] = "not_found",
        [PROBLEM_METHOD_NOT_ALLOWED] = "method_not_allowed",
        [PROBLEM_INVALID_JSON] = "invalid_json",
        [PROBLEM_BAD_REQUEST] = "bad_request",
        [PROBLEM_UNSUPPORTED_MEDIA_TYPE] = "unsupported_media_type",
        [PROBLEM_PAYLOAD_TOO_LARGE] = "payload_too_large",
        [PROBLEM_PRECONDITION_FAILED] = "precondition_failed",
        [PROBLEM_UNKNOWN_FIELD] = "unknown_field",
        [PROBLEM_MISSING_FIELD] = "missing_field",
        [PROBLEM_INVALID_VALUE] = "invalid_value",
        [PROBLEM_UNKNOWN_PARAMETER] = "unknown_parameter",
        [PROBLEM_CERTIFICATE_REQUIRED] = "certificate_required",
        [PROBLEM_CERTIFICATE_NOT_FOUND] = "certificate_not_found",
        [PROBLEM_SYSTEM_CERTIFICATE_REFUSED] = "system_certificate_refused",
        [PROBLEM_CERTIFICATE_UNUSABLE] = "certificate_unusable",
        [PROBLEM_DUPLICATE_KEY_TYPE] = "duplicate_key_type",
        [PROBLEM_INVALID_DESTINATION] = "invalid_destination",
        [PROBLEM_INVALID_ATTRIBUTE] = "invalid_attribute",
        [PROBLEM_DUPLICATE_DESTINATION] = "duplicate_destination",
        [PROBLEM_DUPLICATE_NAME] = "duplicate_name",
        [PROBLEM_MANAGED_ROW] = "managed_row",
        [PROBLEM_CERTIFICATE_IN_USE] = "certificate_in_use",
        [PROBLEM_LEGACY_CERTIFICATE] = "legacy_certificate",
        [PROBLEM_SYSTEM_CERTIFICATE] = "system_certificate",
        [PROBLEM_ACME_CERTIFICATE] = "acme_certificate",
        [PROBLEM_INVALID_NAME] = "invalid_name",
        [PROBLEM_INVALID_PEM] = "invalid_pem",
        [PROBLEM_NO_CERTIFICATE] = "no_certificate",
        [PROBLEM_NO_PRIVATE_KEY] = "no_private_key",
        [PROBLEM_ENCRYPTED_PRIVATE_KEY] = "encrypted_private_key",
        [PROBLEM_KEY_MISMATCH] = "key_mismatch",
        [PROBLEM_CERTIFICATE_EXPIRED] = "certificate_expired",
        [PROBLEM_CERTIFICATE_NOT_YET_VALID] = "certificate_not_yet_valid",
        [PROBLEM_CHAIN_MISMATCH] = "chain_mismatch",
        [PROBLEM_WEAK_KEY] = "weak_key",
        [PROBLEM_NOT_A_SERVER_CERTIFICATE] = "not_a_server_certificate",
        [PROBLEM_POSTFIX_REJECTED] = "postfix_rejected",
        [PROBLEM_DESTINATION_FAILS_PROBE] = "destination_fails_probe",
        [PROBLEM_CSRF_REFUSED] = "csrf_refused",
        [PROBLEM_ORIGIN_NOT_ALLOWED] = "origin_not_allowed",
        [PROBLEM_SERVICE_UNAVAILABLE] = "service_unavailable",
        [PROBLEM_INSUFFICIENT_STORAGE] = "insufficient_storage",
        [PROBLEM_INTERNAL_ERROR] = "internal_error",
};

const char *problem_code_name(enum problem_code code)
{
        if ((unsigned)code >= _PROBLEM_MAX || !code_names[code])
                return "internal_error";
        return code_names[code];
}

enum problem_code problem_code_from_name(const char *name)
{
        for (enum problem_code c = PROBLEM_NONE + 1; name && c < _PROBLEM_MAX; c++)
                if (code_names[c] && streq(code_names[c], name))
                        return c;
        return PROBLEM_INTERNAL_ERROR;
}

int problem_setv(struct problem *p, enum problem_code code, const char *field, const char *fmt,
                 va_list ap)
{
        if (!p || p->code != PROBLEM_NONE)
                return -EINVAL;
        p->code = code;
        strcpy_bounded(p->field, sizeof(p->field), field ? field : "");
        if (fmt)
                vsnprintf(p->detail, sizeof(p->detail), fmt, ap);
        else
                p->detail[0] = 0;
        return -EINVAL;
}

int problem_set(struct problem *p, enum problem_code code, const char *field, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        int r = problem_setv(p, code, field, fmt, ap);
        va_end(ap);
        return r;
}

int problem_add(struct problem *p, enum problem_code code, const char *field, const char *fmt, ...)
{
        char detail[512];
        va_list ap;

        if (!p)
                return -EINVAL;
        va_start(ap, fmt);
        vsnprintf(detail, sizeof(detail), fmt, ap);
        va_end(ap);
        if (p->code == PROBLEM_NONE)
                problem_set(p, code, field, "%s", detail);
        if (!p->errors)
                p->errors = json_array();
        json_array_append_new(p->errors,
                              json_pack("{s:s, s:s, s:s}", "code", problem_code_name(code), "field",
                                        field ? field : "", "detail", detail));
        return -EINVAL;
}

json_t *problem_error_json(const struct problem *p)
{
        json_t *j =
            json_pack("{s:s, s:s}", "code", problem_code_name(p->code), "detail", p->detail);
        if (j && p->field[0])
                json_object_set_new(j, "field", json_string(p->field));
        return j;
}

void problem_done(struct problem *p)
{
        if (!p)
                return;
        json_decref(p->errors);
        json_decref(p->extra);
        p->errors = p->extra = NULL;
}

static void warnings_addv(json_t *warnings, const char *code, const char *field, const char *fmt,
                          va_list ap) __attribute__((format(printf, 4, 0)));
static void warnings_addv(json_t *warnings, const char *code, const char *field, const char *fmt,
                          va_list ap)
{
        char detail[512];
        vsnprintf(detail, sizeof(detail), fmt, ap);
        json_t *w = json_pack("{s:s, s:s}", "code", code, "detail", detail);
        if (w && field)
                json_object_set_new(w, "field", json_string(field));
        json_array_append_new(warnings, w);
}

void warnings_add(json_t *warnings, const char *code, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        warnings_addv(warnings, code, NULL, fmt, ap);
        va_end(ap);
}

void warnings_add_field(json_t *warnings, const char *code, const char *field, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        warnings_addv(warnings, code, field, fmt, ap);
        va_end(ap);
}

void problem_prefix_field(struct problem *p, const char *prefix)
{
        char field[sizeof(p->field)];
        if (!p || p->code == PROBLEM_NONE)
                return;
        snprintf(field, sizeof(field), "%s%s", prefix, p->field);
        memcpy(p->field, field, sizeof(field));
}
