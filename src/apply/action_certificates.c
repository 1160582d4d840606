/* action_certificates.c - the certificates' rows of the action table: an imported certificate
 * put (PUT or POST, validated again when applied) or deleted (never the system one, a bound one, or
 * an ACME one), and a rescan of the ACME and system files. Worker thread. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "apply/action.h"
#include "apply/certsync.h"
#include "apply/job.h"
#include "apply/layout.h"
#include "conf.h"
#include "core/cert.h"
#include "store/store.h"
#include "util.h"

static json_t *cert_json(const struct action_env *env, const char *name, int64_t *version)
{
        json_t *j = NULL;
        struct problem ignore = { 0 };
        if (store_cert_get(env->db, name, &j, version, &ignore) < 0)
                j = NULL;
        problem_done(&ignore);
        if (j)
                json_object_set_new(j, "files", layout_cert_files_json(env->cfg, j));
        return j;
}

/* Validates an imported certificate again, at the time it is applied, and stores it. */
int action_cert_store(const struct action_env *env, const char *name, const char *cert,
                      const char *chain, const char *key, bool *created, struct problem *reterr)
{
        struct cert_import imp = { 0 };
        bool verified = false;
        int r = cert_import(cert ? cert : "", cert ? strlen(cert) : 0, key ? key : "",
                            key ? strlen(key) : 0, chain, chain ? strlen(chain) : 0, time(NULL),
                            &imp, reterr);
        if (r < 0)
                return r;
        if (cert_verify_chain(imp.cert_pem, strlen(imp.cert_pem), imp.chain_pem,
                              strlen(imp.chain_pem), NULL, time(NULL), &verified) < 0)
                verified = false;
        r = store_cert_put_imported(env->db, name, &imp, env->cfg->kek, verified, created, reterr);
        cert_import_done(&imp);
        return r;
}

/* PUT (create or replace) and POST (create) of an imported certificate. The HTTP thread already
 * validated the upload; it is validated again here, at the time it is applied. */
int action_certificate_put(const struct action_env *env, struct job *job, unsigned flags,
                           json_t **before, json_t **after)
{
        bool post = flags & ACTION_CREATE;
        const char *name = job->target;
        const char *cert = action_body_string(job, "certificate"),
                   *chain = action_body_string(job, "chain");
        /* The key came in memory (or from pending_keys after a restart); a job queued by a
         * version that kept it in the request still has it there. */
        const char *key = job->secret ? job->secret : action_body_string(job, "private_key");
        bool created = false;
        int64_t version = 0;
        int r =
            action_check_if_match(env, job, post ? RESOURCE_CERTIFICATES : RESOURCE_CERTIFICATE);
        if (r < 0)
                return r;
        *before = cert_json(env, name, NULL);
        if (post && *before)
                return problem_set(&job->problem, PROBLEM_DUPLICATE_NAME, "/name",
                                   "a certificate named '%s' exists; PUT replaces it", name);
        json_t *read_only = json_object_get(json_object_get(job->request, "body"), "read_only");
        if (*before && read_only) {
                json_t *now = json_deep_copy(*before);
                r = action_with_generation(env, job, now);
                if (r >= 0)
                        r = cert_check_read_only(read_only, now, &job->problem);
                json_decref(now);
                if (r < 0)
                        return r;
        }
        r = action_cert_store(env, name, cert, chain, key, &created, &job->problem);
        if (r < 0)
                return r;
        *after = cert_json(env, name, &version);
        action_wrote(job, *after, version, created);
        return 0;
}

/* Deletes the certificate `cur` (as cert_json shows it) unless it is the system's, bound, or
 * an ACME one. */
int action_cert_remove(const struct action_env *env, const char *name, json_t *cur,
                       struct problem *reterr)
{
        const char *type = json_string_value(json_object_get(cur, "type"));
        if (json_is_true(json_object_get(cur, "system")))
                return problem_set(reterr, PROBLEM_SYSTEM_CERTIFICATE, NULL,
                                   "'%s' is the system certificate and cannot be deleted", name);
        if (json_is_true(json_object_get(cur, "in_use")))
                return problem_set(reterr, PROBLEM_CERTIFICATE_IN_USE, NULL,
                                   "'%s' is bound to Postfix; bind another certificate first",
                                   name);
        if (streq(type, "acme"))
                return problem_set(reterr, PROBLEM_ACME_CERTIFICATE, NULL,
                                   "'%s' is an ACME certificate: remove it with the ACME client",
                                   name);
        return store_cert_delete(env->db, name, reterr);
}

int action_certificate_delete(const struct action_env *env, struct job *job, unsigned flags,
                              json_t **before, json_t **after)
{
        const char *name = job->target;
        int r = action_check_if_match(env, job, RESOURCE_CERTIFICATE);
        if (r < 0)
                return r;
        *before = cert_json(env, name, NULL);
        if (!*before)
                return problem_set(&job->problem, PROBLEM_NOT_FOUND, NULL,
                                   "no certificate named '%s'", name);
        r = action_cert_remove(env, name, *before, &job->problem);
        if (r < 0)
                return r;
        job->outcome = JOB_DELETED;
        job->result = json_null();
        return 0;
}

int action_certificates_rescan(const struct action_env *env, struct job *job, unsigned flags,
                               json_t **before, json_t **after)
{
        json_t *warnings = json_array(), *summary = NULL;
        int64_t version = 0;
        int r = action_check_if_match(env, job, RESOURCE_CERTIFICATES);
        if (r >= 0)
                r = certsync_run(env->cfg, env->db, warnings, &summary, &job->problem);
        if (r >= 0)
                r = store_collection_version(env->db, STORE_CERTIFICATES, &version, &job->problem);
        if (r < 0) {
                json_decref(warnings);
                json_decref(summary);
                return r;
        }
        json_object_set_new(summary, "warnings", warnings);
        *after = summary;
        job->result = json_incref(summary);
        job_set_version(job, version);
        return 0;
}
