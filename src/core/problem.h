/* problem.h - what went wrong, for the client: a stable code, the field (a JSON pointer) and a
 * detail. Any module fills one through an out-parameter; only http/reply.c turns it into an HTTP
 * status and an application/problem+json body. Any thread (each request owns its own). */
#pragma once

#include <jansson.h>
#include <stdarg.h>

#include "util.h"

/* The stable codes of api.md. The HTTP status of each is decided in http/reply.c alone. */
enum problem_code {
        PROBLEM_NONE = 0,
        PROBLEM_UNAUTHORIZED,
        PROBLEM_FORBIDDEN,
        PROBLEM_NOT_FOUND,
        PROBLEM_METHOD_NOT_ALLOWED,
        PROBLEM_INVALID_JSON,
        PROBLEM_BAD_REQUEST,
        PROBLEM_UNSUPPORTED_MEDIA_TYPE,
        PROBLEM_PAYLOAD_TOO_LARGE,
        PROBLEM_PRECONDITION_FAILED,
        PROBLEM_UNKNOWN_FIELD,
        PROBLEM_MISSING_FIELD,
        PROBLEM_INVALID_VALUE,
        PROBLEM_UNKNOWN_PARAMETER,
        PROBLEM_CERTIFICATE_REQUIRED,
        PROBLEM_CERTIFICATE_NOT_FOUND,
        PROBLEM_SYSTEM_CERTIFICATE_REFUSED,
        PROBLEM_CERTIFICATE_UNUSABLE,
        PROBLEM_DUPLICATE_KEY_TYPE,
        PROBLEM_INVALID_DESTINATION,
        PROBLEM_INVALID_ATTRIBUTE,
        PROBLEM_DUPLICATE_DESTINATION,
        PROBLEM_DUPLICATE_NAME,
        PROBLEM_MANAGED_ROW,
        PROBLEM_CERTIFICATE_IN_USE,
        PROBLEM_LEGACY_CERTIFICATE,
        PROBLEM_SYSTEM_CERTIFICATE,
        PROBLEM_ACME_CERTIFICATE,
        PROBLEM_INVALID_NAME,
        PROBLEM_INVALID_PEM,
        PROBLEM_NO_CERTIFICATE,
        PROBLEM_NO_PRIVATE_KEY,
        PROBLEM_ENCRYPTED_PRIVATE_KEY,
        PROBLEM_KEY_MISMATCH,
        PROBLEM_CERTIFICATE_EXPIRED,
        PROBLEM_CERTIFICATE_NOT_YET_VALID,
        PROBLEM_CHAIN_MISMATCH,
        PROBLEM_WEAK_KEY,
        PROBLEM_NOT_A_SERVER_CERTIFICATE,
        PROBLEM_POSTFIX_REJECTED,
        PROBLEM_DESTINATION_FAILS_PROBE,
        PROBLEM_NODE_ALIVE,
        PROBLEM_SERVICE_CONFLICT,
        PROBLEM_CERTIFICATE_NOT_ON_NODE,
        PROBLEM_CSRF_REFUSED,
        PROBLEM_ORIGIN_NOT_ALLOWED,
        PROBLEM_SERVICE_UNAVAILABLE,
        PROBLEM_INSUFFICIENT_STORAGE,
        PROBLEM_INTERNAL_ERROR,
        _PROBLEM_MAX,
};

struct problem {
        enum problem_code code;
        char field[256];      /* JSON pointer of the offending field, "" when none */
        char detail[512];     /* one human sentence; never a secret */
        json_t *errors;       /* optional: further field errors [{code, field, detail}] */
        json_t *extra;        /* optional: members merged into the problem body */
        unsigned retry_after; /* seconds, for service_unavailable */
};

/* Fills p (when not NULL) and returns -EINVAL, so callers can `return problem_set(...)`. A
 * problem already set is kept: the first failure is the one reported. For what the client sent
 * (a 4xx of bad input); any other failure says what happened with problem_set_errno. */
int problem_set(struct problem *p, enum problem_code code, const char *field, const char *fmt, ...)
    _printf_(4, 5);
/* The same, returning error (a negative errno) instead: the caller's channel, on which code
 * branches, while the problem is the client's. The convention, by the code's HTTP status:
 * -ENOENT what is named does not exist (not_found, certificate_not_found); -EEXIST it exists
 * already (duplicate_name, duplicate_destination); -EACCES no valid credential (unauthorized);
 * -EPERM the credential or the row does not allow it (forbidden, csrf_refused,
 * origin_not_allowed, managed_row); -ESTALE a precondition failed (If-Match); -EBUSY come
 * back later (a slot or every connection taken); -ENOTCONN the database is gone; -ETIMEDOUT it
 * did not answer in time; -EIO or -ENOMEM an internal error. */
int problem_set_errno(struct problem *p, int error, enum problem_code code, const char *field,
                      const char *fmt, ...) _printf_(5, 6);
int problem_setv(struct problem *p, enum problem_code code, const char *field, const char *fmt,
                 va_list ap) _printf_(4, 0);
/* Adds one more field error to p->errors (the first also becomes the main code). */
int problem_add(struct problem *p, enum problem_code code, const char *field, const char *fmt, ...)
    _printf_(4, 5);
/* Frees what p holds (errors, extra); p keeps its code, field and detail. */
void problem_done(struct problem *p);
/* problem_done, then p is empty again (PROBLEM_NONE): ready for the next failure. */
void problem_reset(struct problem *p);
/* {code, detail[, field]}: a problem as a job's error or a plan's error (no field member when
 * the problem names none). NULL when out of memory. */
json_t *problem_error_json(const struct problem *p);
/* Appends {code, detail} to a JSON array of warnings (the "warnings" of replies and jobs). */
void warnings_add(json_t *warnings, const char *code, const char *fmt, ...) _printf_(3, 4);
/* The same with the member "field": the JSON pointer of the request field the warning is about. */
void warnings_add_field(json_t *warnings, const char *code, const char *field, const char *fmt, ...)
    _printf_(4, 5);
const char *problem_code_name(enum problem_code code);
/* Puts prefix (a JSON pointer) before p's field: a check written for a resource's own body
 * names the field inside a larger document ("/certificate" -> "/certificates/2/certificate"). */
void problem_prefix_field(struct problem *p, const char *prefix);
/* The code of a name problem_code_name gives; PROBLEM_INTERNAL_ERROR for an unknown one. */
enum problem_code problem_code_from_name(const char *name);
/* A readable name for a byte in a detail: 'x', or 0x0a for one that does not print. */
const char *problem_byte_name(unsigned char c, char buf[static 8]);
