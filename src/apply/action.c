/* action.c - the table of actions a job can name, and what their rows share: the If-Match
 * against the resource as it is now, the scope the request was made with, the generation in a
 * resource's representation. Worker thread, inside the batch's transaction. */
#include "apply/action.h"

#include "apply/job.h"
#include "apply/postfix.h"
#include "core/resource.h"
#include "store/store.h"
#include "util.h"

/* In the order of api/openapi.yaml's Job.action (tests/system/test_contract_query.py checks). */
static const struct action actions[] = {
        { "settings.put", action_settings_write, ACTION_SETTINGS },
        { "settings.patch", action_settings_write, ACTION_SETTINGS | ACTION_PATCH },
        { "certificates.post", action_certificate_put, ACTION_CREATE },
        { "certificates.put", action_certificate_put, 0 },
        { "certificates.delete", action_certificate_delete, 0 },
        { "certificates.rescan", action_certificates_rescan, ACTION_COUNTS },
        { "policies.post", action_policy_write, ACTION_CREATE },
        { "policies.put", action_policy_write, 0 },
        { "policies.patch", action_policy_write, ACTION_PATCH },
        { "policies.delete", action_policy_delete, 0 },
        { "policies.bulk", action_policies_bulk, ACTION_COUNTS },
        { "policies.import", action_policies_import, ACTION_COUNTS },
        { "state.put", action_state_put, ACTION_COUNTS | ACTION_STATE },
        { "nodes.settings.put", action_node_settings_put, 0 },
        { "nodes.settings.delete", action_node_settings_delete, 0 },
};

const struct action *action_find(const char *name)
{
        for (size_t i = 0; name && i < ARRAY_SIZE(actions); i++)
                if (streq(actions[i].name, name))
                        return &actions[i];
        return NULL;
}

const struct action *action_table(size_t *n)
{
        *n = ARRAY_SIZE(actions);
        return actions;
}

int action_run(const struct action_env *env, struct job *job, json_t **before, json_t **after)
{
        const struct action *a = action_find(job->action);
        if (!a)
                return problem_set(&job->problem, PROBLEM_INTERNAL_ERROR, NULL, "unknown action %s",
                                   job->action);
        return a->run(env, job, a->flags, before, after);
}

static const char *if_match(const struct job *job)
{
        return json_string_value(json_object_get(job->request, "if_match"));
}

int action_check_if_match(const struct action_env *env, struct job *job, enum resource_kind kind)
{
        int64_t version = 0;
        json_t *row = NULL;
        int r;
        if (!if_match(job))
                return 0;
        switch (kind) {
        case RESOURCE_CERTIFICATES:
                r = store_collection_version(env->db, STORE_CERTIFICATES, &version, &job->problem);
                break;
        case RESOURCE_POLICIES:
                r = store_collection_version(env->db, STORE_POLICIES, &version, &job->problem);
                break;
        case RESOURCE_CERTIFICATE:
                r = store_cert_get(env->db, job->target, &row, &version, &job->problem);
                json_decref(row);
                break;
        case RESOURCE_POLICY:
                r = store_policy_get(env->db, job->target, NULL, NULL, &version, &job->problem);
                break;
        default: /* the settings and the state: their actions know the version already */
                return problem_set(&job->problem, PROBLEM_INTERNAL_ERROR, NULL,
                                   "no If-Match lookup for this resource");
        }
        if (r < 0 && r != -ENOENT)
                return r;
        return action_precondition(job, kind, r >= 0, version);
}

int action_precondition(struct job *job, enum resource_kind kind, bool exists, int64_t version)
{
        return resource_precondition(if_match(job), kind, job->target, exists, version,
                                     &job->problem);
}

enum scope action_scope(const struct job *job)
{
        enum scope scope = SCOPE_NONE;
        const char *s = action_body_string(job, "scope");
        if (!s || scope_from_string(s, &scope) < 0)
                return SCOPE_NONE;
        return scope;
}

const char *action_body_string(const struct job *job, const char *key)
{
        return json_string_value(json_object_get(json_object_get(job->request, "body"), key));
}

int action_with_generation(const struct action_env *env, struct job *job, json_t *resource)
{
        int64_t gen = 0;
        int r = store_generation(env->db, &gen, false, &job->problem);
        if (r >= 0)
                json_object_set_new(resource, "generation", json_integer(gen));
        return r;
}

const struct fingerprint_digest *action_fingerprint_digest(const struct action_env *env,
                                                           struct fingerprint_digest *d)
{
        return postfix_fingerprint_digest(env->cfg, d) >= 0 ? d : NULL;
}

void action_wrote(struct job *job, json_t *after, int64_t version, bool created)
{
        job->result = json_incref(after);
        if (after)
                job_set_version(job, version);
        if (created)
                job->outcome = JOB_CREATED;
}
