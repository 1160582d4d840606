/* test_reply.c - problem replies: every stable code of api.md maps to its documented status, the
 * body is RFC 9457 problem+json, and 401/503 carry their headers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <cmocka.h>

#include "http/http.h"

/* Copied from api.md's "Error codes (stable)": the contract the table must honour. */
static const struct {
        const char *code;
        int status;
} contract[] = {
        { "unauthorized", 401 },
        { "forbidden", 403 },
        { "not_found", 404 },
        { "method_not_allowed", 405 },
        { "invalid_json", 400 },
        { "unsupported_media_type", 415 },
        { "payload_too_large", 413 },
        { "precondition_failed", 412 },
        { "unknown_field", 422 },
        { "missing_field", 422 },
        { "invalid_value", 422 },
        { "certificate_required", 422 },
        { "certificate_not_found", 422 },
        { "system_certificate_refused", 422 },
        { "certificate_unusable", 422 },
        { "invalid_destination", 422 },
        { "invalid_attribute", 422 },
        { "duplicate_destination", 409 },
        { "duplicate_name", 409 },
        { "managed_row", 409 },
        { "certificate_in_use", 409 },
        { "system_certificate", 409 },
        { "invalid_name", 422 },
        { "invalid_pem", 422 },
        { "no_certificate", 422 },
        { "no_private_key", 422 },
        { "encrypted_private_key", 422 },
        { "key_mismatch", 422 },
        { "certificate_expired", 422 },
        { "certificate_not_yet_valid", 422 },
        { "chain_mismatch", 422 },
        { "weak_key", 422 },
        { "not_a_server_certificate", 422 },
        { "postfix_rejected", 422 },
        { "destination_fails_probe", 422 },
        { "service_unavailable", 503 },
        { "insufficient_storage", 507 },
};

static void test_contract_statuses(void **state)
{
        for (size_t i = 0; i < ARRAY_SIZE(contract); i++) {
                enum problem_code c;
                for (c = PROBLEM_NONE + 1; c < _PROBLEM_MAX; c++)
                        if (streq(problem_code_name(c), contract[i].code))
                                break;
                if (c == _PROBLEM_MAX)
                        fail_msg("code %s has no enum value", contract[i].code);
                if (problem_http_status(c) != contract[i].status)
                        fail_msg("%s: status %d, contract says %d", contract[i].code,
                                 problem_http_status(c), contract[i].status);
        }
}

static void test_every_code_has_a_name_and_status(void **state)
{
        for (enum problem_code c = PROBLEM_NONE + 1; c < _PROBLEM_MAX; c++) {
                assert_string_not_equal(problem_code_name(c), "");
                assert_int_equal(problem_code_from_name(problem_code_name(c)), c);
                int s = problem_http_status(c);
                assert_true(s >= 400 && s < 600);
        }
}

static json_t *body_of(struct request *req)
{
        json_error_t e;
        json_t *j = json_loadb(req->reply_body, req->reply_len, 0, &e);
        assert_non_null(j);
        return j;
}

static const char *header(struct request *req, const char *name)
{
        for (size_t i = 0; i < req->n_headers; i++)
                if (streq(req->headers[i].name, name))
                        return req->headers[i].value;
        return NULL;
}

static void test_problem_body(void **state)
{
        struct request req = { 0 };
        struct problem p = { 0 };
        assert_true(problem_set(&p, PROBLEM_UNKNOWN_FIELD, "/items/3/levle", "unknown field '%s'",
                                "levle") < 0);
        /* the first problem wins */
        problem_set(&p, PROBLEM_INVALID_VALUE, "/other", "later");
        assert_int_equal(reply_problem(&req, &p), 0);
        assert_int_equal(req.status, 422);
        assert_string_equal(req.reply_type, "application/problem+json");
        json_t *j = body_of(&req);
        assert_string_equal(json_string_value(json_object_get(j, "type")), "about:blank");
        assert_int_equal(json_integer_value(json_object_get(j, "status")), 422);
        assert_string_equal(json_string_value(json_object_get(j, "code")), "unknown_field");
        assert_string_equal(json_string_value(json_object_get(j, "field")), "/items/3/levle");
        assert_string_equal(json_string_value(json_object_get(j, "detail")),
                            "unknown field 'levle'");
        assert_non_null(json_object_get(j, "title"));
        json_decref(j);
        problem_done(&p);
        request_reply_free(&req);
}

static void test_unauthorized_and_unavailable_headers(void **state)
{
        struct request req = { 0 };
        struct problem p = { 0 };
        problem_set(&p, PROBLEM_UNAUTHORIZED, NULL, "no token");
        reply_problem(&req, &p);
        assert_int_equal(req.status, 401);
        assert_non_null(header(&req, "WWW-Authenticate"));
        assert_true(strncmp(header(&req, "WWW-Authenticate"), "Bearer", 6) == 0);
        json_t *j = body_of(&req);
        assert_null(json_object_get(j, "field")); /* no field for a request-level problem */
        json_decref(j);
        request_reply_free(&req);

        struct request r2 = { 0 };
        struct problem q = { 0 };
        problem_set(&q, PROBLEM_SERVICE_UNAVAILABLE, NULL, "db down");
        q.retry_after = 5;
        reply_problem(&r2, &q);
        assert_int_equal(r2.status, 503);
        assert_string_equal(header(&r2, "Retry-After"), "5");
        request_reply_free(&r2);
}

static void test_several_errors(void **state)
{
        struct request req = { 0 };
        struct problem p = { 0 };
        problem_add(&p, PROBLEM_INVALID_DESTINATION, "/items/0/destination", "bad");
        problem_add(&p, PROBLEM_INVALID_ATTRIBUTE, "/items/4/match", "not for level may");
        reply_problem(&req, &p);
        json_t *j = body_of(&req);
        assert_string_equal(json_string_value(json_object_get(j, "code")), "invalid_destination");
        json_t *errors = json_object_get(j, "errors");
        assert_int_equal(json_array_size(errors), 2);
        assert_string_equal(json_string_value(json_object_get(json_array_get(errors, 1), "field")),
                            "/items/4/match");
        json_decref(j);
        problem_done(&p);
        request_reply_free(&req);
}

static void test_json_reply(void **state)
{
        struct request req = { 0 };
        assert_int_equal(reply_json(&req, 201, json_pack("{s:s}", "name", "mx1")), 0);
        assert_int_equal(req.status, 201);
        assert_string_equal(req.reply_type, "application/json");
        json_t *j = body_of(&req);
        assert_string_equal(json_string_value(json_object_get(j, "name")), "mx1");
        json_decref(j);
        request_reply_free(&req);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_contract_statuses),
                cmocka_unit_test(test_every_code_has_a_name_and_status),
                cmocka_unit_test(test_problem_body),
                cmocka_unit_test(test_unauthorized_and_unavailable_headers),
                cmocka_unit_test(test_several_errors),
                cmocka_unit_test(test_json_reply),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
