/* etag.h - If-Match (RFC 9110 13.1.1): its syntax and its evaluation against an entity's
 * current tag. Pure; any thread (the HTTP threads check the syntax, the worker evaluates it). */
#pragma once

#include "core/problem.h"

/* Longest If-Match value taken (api/openapi.yaml says so). */
#define IF_MATCH_MAX 1024

/* Whether value is "*" or a comma-separated list of entity tags ("x", W/"x"): 0, or -EINVAL with
 * invalid_value on field "If-Match" saying what is wrong and what a valid one looks like. */
int if_match_check(const char *value, struct problem *reterr);
/* Whether a write may go on: value (NULL: no If-Match) against the current strong tag `etag` of
 * `what` (for the message; "" etag when it does not exist). 0, or -EINVAL with
 * precondition_failed (stale, absent, or weak tags only: they never match) or invalid_value
 * (malformed). */
int if_match_evaluate(const char *value, const char *what, const char *etag,
                      struct problem *reterr);
