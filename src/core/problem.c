/* problem.c - filling struct problem (see problem.h). Any thread; no I/O. */
#include "core/problem.h"

#include <stdio.h>

#include "core/name_code.h"
#include "util.h"

static const struct name_code code_names[] = {
        { "none", PROBLEM_NONE },
        { "unauthorized", PROBLEM_UNAUTHORIZED },
        { "forbidden", PROBLEM_FORBIDDEN },
        { "not_found", PROBLEM_NOT_FOUND },
        { "method_not_allowed", PROBLEM_METHOD_NOT_ALLOWED },
        { "invalid_json", PROBLEM_INVALID_JSON },
        { "bad_request", PROBLEM_BAD_REQUEST },
        { "unsupported_media_type", PROBLEM_UNSUPPORTED_MEDIA_TYPE },
        { "payload_too_large", PROBLEM_PAYLOAD_TOO_LARGE },
        { "precondition_failed", PROBLEM_PRECONDITION_FAILED },
        { "unknown_field", PROBLEM_UNKNOWN_FIELD },
        { "missing_field", PROBLEM_MISSING_FIELD },
        { "invalid_value", PROBLEM_INVALID_VALUE },
        { "unknown_parameter", PROBLEM_UNKNOWN_PARAMETER },
        { "certificate_required", PROBLEM_CERTIFICATE_REQUIRED },
        { "certificate_not_found", PROBLEM_CERTIFICATE_NOT_FOUND },
        { "system_certificate_refused", PROBLEM_SYSTEM_CERTIFICATE_REFUSED },
        { "certificate_unusable", PROBLEM_CERTIFICATE_UNUSABLE },
        { "duplicate_key_type", PROBLEM_DUPLICATE_KEY_TYPE },
        { "invalid_destination", PROBLEM_INVALID_DESTINATION },
        { "invalid_attribute", PROBLEM_INVALID_ATTRIBUTE },
        { "duplicate_destination", PROBLEM_DUPLICATE_DESTINATION },
        { "duplicate_name", PROBLEM_DUPLICATE_NAME },
        { "managed_row", PROBLEM_MANAGED_ROW },
        { "certificate_in_use", PROBLEM_CERTIFICATE_IN_USE },
        { "legacy_certificate", PROBLEM_LEGACY_CERTIFICATE },
        { "system_certificate", PROBLEM_SYSTEM_CERTIFICATE },
        { "acme_certificate", PROBLEM_ACME_CERTIFICATE },
        { "invalid_name", PROBLEM_INVALID_NAME },
        { "invalid_pem", PROBLEM_INVALID_PEM },
        { "no_certificate", PROBLEM_NO_CERTIFICATE },
        { "no_private_key", PROBLEM_NO_PRIVATE_KEY },
        { "encrypted_private_key", PROBLEM_ENCRYPTED_PRIVATE_KEY },
        { "key_mismatch", PROBLEM_KEY_MISMATCH },
        { "certificate_expired", PROBLEM_CERTIFICATE_EXPIRED },
        { "certificate_not_yet_valid", PROBLEM_CERTIFICATE_NOT_YET_VALID },
        { "chain_mismatch", PROBLEM_CHAIN_MISMATCH },
        { "weak_key", PROBLEM_WEAK_KEY },
        { "not_a_server_certificate", PROBLEM_NOT_A_SERVER_CERTIFICATE },
        { "postfix_rejected", PROBLEM_POSTFIX_REJECTED },
        { "destination_fails_probe", PROBLEM_DESTINATION_FAILS_PROBE },
        { "node_alive", PROBLEM_NODE_ALIVE },
        { "service_conflict", PROBLEM_SERVICE_CONFLICT },
        { "certificate_not_on_node", PROBLEM_CERTIFICATE_NOT_ON_NODE },
        { "csrf_refused", PROBLEM_CSRF_REFUSED },
        { "origin_not_allowed", PROBLEM_ORIGIN_NOT_ALLOWED },
        { "service_unavailable", PROBLEM_SERVICE_UNAVAILABLE },
        { "insufficient_storage", PROBLEM_INSUFFICIENT_STORAGE },
        { "internal_error", PROBLEM_INTERNAL_ERROR },
};
_Static_assert(ARRAY_SIZE(code_names) == _PROBLEM_MAX, "every problem code has its name");

const char *problem_code_name(enum problem_code code)
{
        const char *name = code_to_name(code_names, ARRAY_SIZE(code_names), (int)code);
        return name ? name : "internal_error";
}

enum problem_code problem_code_from_name(const char *name)
{
        int code;
        if (name_to_code(code_names, ARRAY_SIZE(code_names), name, &code) < 0 ||
            code == PROBLEM_NONE)
                return PROBLEM_INTERNAL_ERROR;
        return (enum problem_code)code;
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

int problem_set_errno(struct problem *p, int error, enum problem_code code, const char *field,
                      const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        problem_setv(p, code, field, fmt, ap);
        va_end(ap);
        return error;
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

void problem_reset(struct problem *p)
{
        if (!p)
                return;
        problem_done(p);
        *p = (struct problem){ 0 };
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

const char *problem_byte_name(unsigned char c, char buf[static 8])
{
        if (c > 0x20 && c < 0x7f)
                snprintf(buf, 8, "'%c'", c);
        else
                snprintf(buf, 8, "0x%02x", c);
        return buf;
}
