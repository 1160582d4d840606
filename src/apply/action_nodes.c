/* action_nodes.c - a node's own certificate binding, the fleet's row of the action table (PUT
 * and DELETE /api/v1/nodes/{name}/settings): the node must be registered; each certificate
 * must exist, not be the system one, not be expired, differ in key type from the other, and an
 * ACME certificate must be on that node (each scans its own live directory). Warnings against
 * that node's own myhostname. Worker thread. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "apply/action.h"
#include "apply/job.h"
#include "core/cert.h"
#include "core/cert_info.h"
#include "core/cert_verify.h"
#include "store/nodes.h"
#include "store/store.h"
#include "util.h"

/* The node's binding as its settings resource shows it; *exists and *version (NULL: not
 * wanted) for If-Match. */
static json_t *node_settings_json(const struct action_env *env, const char *node, bool *exists,
                                  int64_t *version, struct problem *reterr)
{
        char cert[65], add[65];
        int r = store_node_settings_load(env->db, node, cert, add, version, reterr);
        if (r < 0)
                return NULL;
        if (exists)
                *exists = r > 0;
        if (r == 0)
                return json_pack("{s:s, s:n, s:n}", "node", node, "certificate",
                                 "additional_certificate");
        return json_pack("{s:s, s:s, s:o}", "node", node, "certificate", cert,
                         "additional_certificate", add[0] ? json_string(add) : json_null());
}

/* One certificate to bind on node: loaded into row, or the problem at field. */
static int check_cert(const struct action_env *env, const char *node, const char *name,
                      const char *field, struct cert_row *row, struct problem *reterr)
{
        int r = store_cert_by_name(env->db, name, row, reterr);
        if (r == -ENOENT)
                return problem_set(reterr, PROBLEM_CERTIFICATE_NOT_FOUND, field,
                                   "no certificate named '%s'", name);
        if (r < 0)
                return r;
        if (row->system)
                return problem_set(reterr, PROBLEM_SYSTEM_CERTIFICATE_REFUSED, field,
                                   "'%s' is the system's self-signed certificate: it is never "
                                   "bound",
                                   name);
        if (row->not_after > 0 && row->not_after < time(NULL))
                return problem_set(reterr, PROBLEM_CERTIFICATE_UNUSABLE, field,
                                   "certificate '%s' has expired", name);
        if (streq(row->type, "acme")) {
                bool on = false;
                r = store_cert_nodes(env->db, row->id, node, &on, reterr);
                if (r < 0)
                        return r;
                if (!on)
                        return problem_set(reterr, PROBLEM_CERTIFICATE_NOT_ON_NODE, field,
                                           "'%s' is an ACME certificate that node '%s' does not "
                                           "have: each node serves ACME certificates from its "
                                           "own live directory; obtain it on that node (or bind "
                                           "an imported one)",
                                           name, node);
        }
        return 0;
}

/* What a client should know of a certificate it bound on node: expiring soon, or not covering
 * the node's myhostname (strict peers refuse it). */
static void cert_warnings(const struct cert_row *row, const char *node, const char *host,
                          json_t *warnings)
{
        struct cert_info info = { 0 };
        struct problem ignore = { 0 };
        if (row->certificate_pem &&
            cert_info_from_pem(row->certificate_pem, strlen(row->certificate_pem), &info,
                               &ignore) >= 0) {
                long days = (long)cert_days_left(info.not_after, time(NULL));
                if (days < CERT_EXPIRING_DAYS)
                        warnings_add(warnings, "certificate_expiring",
                                     "certificate '%s' expires in %ld days", row->name, days);
                if (host && host[0] && !cert_covers_hostname(&info, host))
                        warnings_add(warnings, "hostname_mismatch",
                                     "certificate '%s' does not cover node '%s''s myhostname "
                                     "'%s': strict peers will refuse it",
                                     row->name, node, host);
        }
        cert_info_done(&info);
        problem_done(&ignore);
}

int action_node_settings_put(const struct action_env *env, struct job *job, unsigned flags,
                             json_t **before, json_t **after)
{
        const char *node = job->target;
        _cleanup_free_ char *host = NULL;
        bool exists = false;
        int64_t version = 0;
        int r = store_node_lookup(env->db, node, &host, &job->problem);
        if (r < 0)
                return r;
        if (!(*before = node_settings_json(env, node, &exists, &version, &job->problem)))
                return -EIO;
        r = action_precondition(job, RESOURCE_NODE_SETTINGS, exists, version);
        if (r < 0)
                return r;
        const char *names[2] = { action_body_string(job, "certificate"),
                                 action_body_string(job, "additional_certificate") };
        const char *fields[2] = { "/certificate", "/additional_certificate" };
        struct cert_row rows[2] = { 0 };
        int64_t ids[2] = { 0, 0 };
        json_t *warnings = json_array();
        for (size_t i = 0; r >= 0 && i < 2 && names[i]; i++) {
                r = check_cert(env, node, names[i], fields[i], &rows[i], &job->problem);
                ids[i] = rows[i].id;
                if (r >= 0)
                        cert_warnings(&rows[i], node, host, warnings);
        }
        if (r >= 0 && names[1] && streq(rows[0].key_type, rows[1].key_type))
                r = problem_set(&job->problem, PROBLEM_DUPLICATE_KEY_TYPE,
                                "/additional_certificate",
                                "'%s' and '%s' are both %s certificates: Postfix serves one "
                                "certificate per key type",
                                names[0], names[1], rows[0].key_type);
        cert_row_done(&rows[0]);
        cert_row_done(&rows[1]);
        if (r >= 0)
                r = store_node_settings_put(env->db, node, ids[0], ids[1], &job->problem);
        if (r >= 0 && !(*after = node_settings_json(env, node, NULL, &version, &job->problem)))
                r = -EIO;
        if (r < 0) {
                json_decref(warnings);
                return r;
        }
        /* a binding nobody serves yet: say so rather than let it look applied */
        struct settings s;
        struct problem ignore = { 0 };
        if (store_settings_load(env->db, &s, NULL, false, &ignore) >= 0 && !s.managed)
                warnings_add(warnings, "settings_not_managed",
                             "smtptlsd does not manage main.cf yet (no settings write): node '%s' "
                             "serves this certificate once the settings are written",
                             node);
        problem_done(&ignore);
        json_decref(job->warnings);
        job->warnings = warnings;
        job->result = json_incref(*after);
        job->outcome = exists ? JOB_REPLACED : JOB_CREATED;
        job_set_version(job, version);
        return 0;
}

/* The node goes back to the settings' binding: an ACME certificate they bind must be on it. */
static int node_follows_settings_ok(const struct action_env *env, const char *node,
                                    struct problem *reterr)
{
        struct settings s;
        int r = store_settings_load(env->db, &s, NULL, false, reterr);
        const char *names[2] = { s.certificate, s.additional_certificate };
        const char *fields[2] = { "/certificate", "/additional_certificate" };
        for (size_t i = 0; r >= 0 && i < 2 && names[i][0]; i++) {
                struct cert_row row = { 0 };
                bool on = true;
                r = store_cert_by_name(env->db, names[i], &row, reterr);
                if (r >= 0 && streq(row.type, "acme"))
                        r = store_cert_nodes(env->db, row.id, node, &on, reterr);
                cert_row_done(&row);
                if (r >= 0 && !on)
                        r = problem_set(reterr, PROBLEM_CERTIFICATE_NOT_ON_NODE, fields[i],
                                        "the settings bind the ACME certificate '%s', which node "
                                        "'%s' does not have: it keeps its own binding until it "
                                        "has it (or bind another one there)",
                                        names[i], node);
        }
        return r;
}

int action_node_settings_delete(const struct action_env *env, struct job *job, unsigned flags,
                                json_t **before, json_t **after)
{
        const char *node = job->target;
        bool existed = false;
        int64_t version = 0;
        int r = store_node_lookup(env->db, node, NULL, &job->problem);
        if (r >= 0 && !(*before = node_settings_json(env, node, &existed, &version, &job->problem)))
                r = -EIO;
        if (r < 0)
                return r;
        if (!existed)
                return problem_set(&job->problem, PROBLEM_NOT_FOUND, NULL,
                                   "node '%s' has no certificate binding of its own", node);
        r = action_precondition(job, RESOURCE_NODE_SETTINGS, true, version);
        if (r >= 0)
                r = node_follows_settings_ok(env, node, &job->problem);
        if (r >= 0)
                r = store_node_settings_delete(env->db, node, &existed, &job->problem);
        if (r < 0)
                return r;
        job->outcome = JOB_DELETED;
        return 0;
}
