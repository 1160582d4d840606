/* test_action.c - the worker's table of actions (apply/action.c) against core's description of
 * what each action writes (core/resource.c): the same names, one row each, flags that agree with
 * the kind of write, and every kind's ETag and If-Match precondition. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "apply/action.h"
#include "apply/job.h"
#include "core/problem.h"
#include "core/resource.h"

/* The actions api/openapi.yaml's Job.action lists: each has exactly one row in both tables. */
static const char *const names[] = {
        "settings.put",        "settings.patch",      "certificates.put",      "certificates.post",
        "certificates.delete", "certificates.rescan", "policies.put",          "policies.patch",
        "policies.post",       "policies.delete",     "policies.bulk",         "policies.import",
        "state.put",           "nodes.settings.put",  "nodes.settings.delete",
};

static void test_every_action_has_one_row(void **state)
{
        size_t n = 0;
        const struct action *t = action_table(&n);
        assert_int_equal(n, sizeof(names) / sizeof(names[0]));
        for (size_t i = 0; i < n; i++) {
                const struct action *a = action_find(names[i]);
                assert_non_null(a);
                assert_string_equal(a->name, names[i]);
                assert_non_null(a->run);
                enum resource_kind kind;
                assert_int_equal(resource_of_action(names[i], &kind), 0);
                for (size_t k = i + 1; k < n; k++)
                        assert_string_not_equal(t[i].name, t[k].name);
        }
        assert_null(action_find("settings.delete"));
        assert_null(action_find(NULL));
        enum resource_kind kind;
        assert_int_equal(resource_of_action("settings.delete", &kind), -ENOENT);
}

/* The flags say what the name says: PATCH merges, POST creates only, the writes of a whole
 * collection or state keep counts, settings get the settings' warnings, the state its tag. */
static void test_flags_agree_with_names(void **state)
{
        size_t n = 0;
        const struct action *t = action_table(&n);
        for (size_t i = 0; i < n; i++) {
                const char *verb = strrchr(t[i].name, '.') + 1;
                enum resource_kind kind;
                assert_int_equal(resource_of_action(t[i].name, &kind), 0);
                assert_int_equal(!!(t[i].flags & ACTION_PATCH), strcmp(verb, "patch") == 0);
                assert_int_equal(!!(t[i].flags & ACTION_CREATE), strcmp(verb, "post") == 0);
                assert_int_equal(!!(t[i].flags & ACTION_SETTINGS), kind == RESOURCE_SETTINGS);
                assert_int_equal(!!(t[i].flags & ACTION_STATE), kind == RESOURCE_STATE);
                assert_int_equal(!!(t[i].flags & ACTION_COUNTS),
                                 kind == RESOURCE_POLICIES || kind == RESOURCE_CERTIFICATES ||
                                     kind == RESOURCE_STATE);
                /* a deletion has no Location; every other write names its resource */
                char path[RESOURCE_PATH_MAX];
                assert_int_equal(job_location(t[i].name, "x", path), strcmp(verb, "delete") != 0);
        }
}

/* An unknown action fails its job (internal_error) without touching anything. */
static void test_unknown_action_fails_the_job(void **state)
{
        struct job *job = job_new("policies.frobnicate", "x", "test", NULL);
        assert_non_null(job);
        json_t *before = NULL, *after = NULL;
        struct action_env env = { 0 };
        assert_true(action_run(&env, job, &before, &after) < 0);
        assert_int_equal(job->problem.code, PROBLEM_INTERNAL_ERROR);
        assert_non_null(strstr(job->problem.detail, "policies.frobnicate"));
        assert_null(before);
        assert_null(after);
        job_free(job);
}

static void test_preconditions(void **state)
{
        struct problem p = { 0 };
        /* no If-Match: always */
        assert_int_equal(resource_precondition(NULL, RESOURCE_POLICY, "a.example", true, 3, &p), 0);
        /* the current tag, or "*" on an existing resource */
        assert_int_equal(
            resource_precondition("\"policy-3\"", RESOURCE_POLICY, "a.example", true, 3, &p), 0);
        assert_int_equal(resource_precondition("*", RESOURCE_SETTINGS, NULL, true, 1, &p), 0);
        /* stale: refused, naming the resource in words */
        assert_true(
            resource_precondition("\"policy-2\"", RESOURCE_POLICY, "a.example", true, 3, &p) < 0);
        assert_int_equal(p.code, PROBLEM_PRECONDITION_FAILED);
        assert_non_null(strstr(p.detail, "the TLS policy for 'a.example'"));
        problem_done(&p);
        p = (struct problem){ 0 };
        /* "*" on a resource that does not exist */
        assert_true(resource_precondition("*", RESOURCE_CERTIFICATE, "mx", false, 0, &p) < 0);
        assert_int_equal(p.code, PROBLEM_PRECONDITION_FAILED);
        assert_non_null(strstr(p.detail, "certificate 'mx'"));
        problem_done(&p);
        p = (struct problem){ 0 };
        /* a tag of another kind never matches */
        assert_true(resource_precondition("\"settings-3\"", RESOURCE_POLICIES, NULL, true, 3, &p) <
                    0);
        assert_non_null(strstr(p.detail, "the TLS policy collection"));
        problem_done(&p);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_every_action_has_one_row),
                cmocka_unit_test(test_flags_agree_with_names),
                cmocka_unit_test(test_unknown_action_fails_the_job),
                cmocka_unit_test(test_preconditions),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
