/* action_settings.c - the settings' row of the action table (PUT and PATCH /api/v1/settings):
 * the body applied onto the row, the bound certificates checked (existing, not expired, of the key
 * types main.cf serves), the master.cf services that need one, saved. Worker thread. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "apply/action.h"
#include "apply/fsutil.h"
#include "apply/job.h"
#include "apply/layout.h"
#include "apply/maincf.h"
#include "apply/postfix.h"
#include "apply/reconcile.h"
#include "conf.h"
#include "core/cert.h"
#include "log.h"
#include "store/nodes.h"
#include "store/store.h"
#include "util.h"

/* The key type of the certificate in `path` (a legacy parameter's value), or `fallback` when it
 * cannot be read here (a $variable in the value, a file gone). */
static void legacy_key_type(const char *path, const char *fallback, char type[16])
{
        _cleanup_free_ char *pem = NULL;
        size_t len = 0;
        struct cert_info info = { 0 };
        struct problem ignore = { 0 };
        snprintf(type, 16, "%s", fallback);
        if (!strchr(path, '$') && fs_read_file(path, CERT_BUNDLE_MAX, &pem, &len) >= 0 &&
            cert_info_from_pem(pem, len, &info, &ignore) >= 0 && !streq(info.key_type, "unknown"))
                snprintf(type, 16, "%s", info.key_type);
        cert_info_done(&info);
        problem_done(&ignore);
}

/* Postfix ignores smtpd_tls_eccert_file/eckey_file and dcert_file/dkey_file once
 * smtpd_tls_chain_files is set, and the rendering removes them then: a write that binds a
 * certificate while the live main.cf serves one from them must bind one of the same key type
 * (bound_types), or the ECDSA (DSA) certificate of the installation would silently be gone.
 * The RSA pair (cert_file/key_file) is what `certificate` replaces, as it always did. */
static int check_legacy_pairs(const struct action_env *env, char bound_types[][16], size_t n_bound,
                              struct problem *reterr)
{
        const struct config *cfg = env->cfg;
        char path[PATH_MAX];
        _cleanup_free_ char *text = NULL;
        size_t len = 0;
        if (n_bound == 0 || layout_main_cf(cfg, path, sizeof(path)) < 0 ||
            fs_read_file(path, 4u << 20, &text, &len) < 0)
                return 0;
        for (const struct settings_legacy_pair *l = settings_legacy_pairs + 1; l->cert_param; l++) {
                _cleanup_free_ char *live = NULL, *value = NULL;
                /* the text first (no command for a main.cf without it), then Postfix's reading */
                if (maincf_get(text, len, l->cert_param, &live) < 0 || isempty(live) ||
                    postconf_value(cfg, l->cert_param, &value) < 0 || isempty(value))
                        continue;
                char type[16];
                legacy_key_type(value, l->key_type, type);
                bool covered = false;
                for (size_t i = 0; i < n_bound; i++)
                        covered = covered || streq(bound_types[i], type);
                if (covered)
                        continue;
                return problem_set(
                    reterr, PROBLEM_LEGACY_CERTIFICATE,
                    n_bound < SETTINGS_CERTS_MAX ? "/additional_certificate" : "/certificate",
                    "main.cf serves a %s certificate from %s = %s (key: %s); Postfix ignores "
                    "that parameter once smtpd_tls_chain_files is set, so this write would drop "
                    "it. Import it (PUT /api/v1/certificates/{name} with the PEM of the "
                    "certificate and its key) and bind it as additional_certificate, or remove "
                    "%s and %s from main.cf to drop it",
                    type, l->cert_param, value, l->key_param, l->cert_param, l->key_param);
        }
        return 0;
}

/* A settings write onto the row loaded (for update) into *s: body applied (PUT or PATCH), the
 * bound certificates checked (or, with none, that no master.cf service needs one), saved. */
int action_settings_store(const struct action_env *env, struct settings *s, json_t *body,
                          bool patch, struct problem *reterr)
{
        char ca_was[sizeof(s->outbound_ca)];
        memcpy(ca_was, s->outbound_ca, sizeof(ca_was));
        char bound_was[SETTINGS_CERTS_MAX][sizeof(s->certificate)];
        memcpy(bound_was[0], s->certificate, sizeof(bound_was[0]));
        memcpy(bound_was[1], s->additional_certificate, sizeof(bound_was[1]));
        int r = settings_apply_json(s, body, patch, reterr);
        if (r < 0)
                return r;
        if (!s->certificate[0]) {
                /* a master.cf service that needs main.cf's certificate (submission at encrypt) */
                _cleanup_free_ char *services = NULL;
                if (postconf_service_params(env->cfg, &services) < 0)
                        log_info("postconf -P failed: master.cf services not checked");
                r = settings_check_services(s, services, reterr);
                if (r < 0)
                        return r;
        }
        /* a file named now must load as Postfix will load it ("system" may be missing: then no
         * smtp_tls_CAfile is rendered, and /status warns) */
        if (!streq(s->outbound_ca, OUTBOUND_CA_SYSTEM) && !streq(s->outbound_ca, ca_was)) {
                r = reconcile_check_ca_file(s->outbound_ca, "/outbound_ca", reterr);
                if (r < 0)
                        return r;
        }
        const char *names[SETTINGS_CERTS_MAX] = { s->certificate, s->additional_certificate };
        const char *fields[SETTINGS_CERTS_MAX] = { "/certificate", "/additional_certificate" };
        char types[SETTINGS_CERTS_MAX][16];
        size_t n = 0;
        for (size_t i = 0; i < SETTINGS_CERTS_MAX && names[i][0]; i++) {
                struct cert_row row;
                r = store_cert_by_name(env->db, names[i], &row, reterr);
                if (r == -ENOENT)
                        return problem_set(reterr, PROBLEM_CERTIFICATE_NOT_FOUND, fields[i],
                                           "no certificate named '%s'", names[i]);
                if (r < 0)
                        return r;
                bool expired = row.not_after > 0 && row.not_after < time(NULL);
                bool system = row.system, acme = streq(row.type, "acme");
                int64_t id = row.id;
                snprintf(types[n++], sizeof(types[0]), "%s", row.key_type);
                cert_row_done(&row);
                if (!system && expired)
                        return problem_set(reterr, PROBLEM_CERTIFICATE_UNUSABLE, fields[i],
                                           "certificate '%s' has expired", names[i]);
                /* ACME certificates are per node: every other node this binding applies to has it
                 * (this one's files are checked with the plan, as always); asked when it is bound,
                 * not of every later settings write (a node losing it is that node's problem) */
                _cleanup_free_ char *lacking = NULL;
                uint64_t stale = 3 * (uint64_t)env->cfg->node_heartbeat_interval;
                bool newly = !streq(names[i], bound_was[0]) && !streq(names[i], bound_was[1]);
                r = acme && newly ? store_cert_nodes_lacking(env->db, id, stale,
                                                             env->cfg->node_name, &lacking, reterr)
                                  : 0;
                if (r < 0)
                        return r;
                if (lacking && lacking[0])
                        return problem_set(reterr, PROBLEM_CERTIFICATE_NOT_ON_NODE, fields[i],
                                           "'%s' is an ACME certificate that node(s) %s do not "
                                           "have: each node serves ACME certificates from its own "
                                           "live directory; obtain it there, or bind another "
                                           "certificate on those nodes (PUT "
                                           "/api/v1/nodes/{name}/settings)",
                                           names[i], lacking);
        }
        r = store_settings_save(env->db, s, reterr);
        if (r >= 0)
                r = check_legacy_pairs(env, types, n, reterr);
        return r;
}

int action_settings_write(const struct action_env *env, struct job *job, unsigned flags,
                          json_t **before, json_t **after)
{
        struct settings s;
        int64_t version = 0;
        int r = store_settings_load(env->db, &s, &version, true, &job->problem);
        if (r < 0)
                return r;
        r = action_precondition(job, RESOURCE_SETTINGS, true, version);
        if (r < 0)
                return r;
        *before = settings_to_json(&s);
        r = action_settings_store(env, &s, json_object_get(job->request, "body"),
                                  flags & ACTION_PATCH, &job->problem);
        if (r < 0)
                return r;
        r = store_settings_load(env->db, &s, &version, false, &job->problem);
        if (r < 0)
                return r;
        *after = settings_to_json(&s);
        job->result = json_incref(*after);
        job_set_version(job, version);
        return 0;
}

/* The warnings of a settings write that come from the batch's plan: the modes', and the bound
 * certificates' (expiring, not covering myhostname). */
json_t *action_settings_warnings(const struct config *cfg, const struct desired *d,
                                 const struct plan *p)
{
        json_t *warnings = reconcile_settings_warnings(d, p);
        if (!d->settings.managed)
                return warnings;
        char *host = NULL;
        for (size_t i = 0; i < p->n_certs; i++) {
                const struct plan_cert *pc = &p->certs[i];
                struct cert_info info = { 0 };
                struct problem ignore = { 0 };
                if (pc->key_path[0] &&
                    reconcile_check_cert(cfg, pc, time(NULL), &info, &ignore) >= 0) {
                        long days = (long)cert_days_left(info.not_after, time(NULL));
                        if (days < CERT_EXPIRING_DAYS)
                                warnings_add(warnings, "certificate_expiring",
                                             "certificate '%s' expires in %ld days", pc->name,
                                             days);
                        if (host || postconf_value(cfg, "myhostname", &host) >= 0) {
                                if (!cert_covers_hostname(&info, host))
                                        warnings_add(warnings, "hostname_mismatch",
                                                     "certificate '%s' does not cover myhostname "
                                                     "'%s': strict peers will refuse it",
                                                     pc->name, host);
                        }
                }
                cert_info_done(&info);
                problem_done(&ignore);
        }
        free(host);
        return warnings;
}
