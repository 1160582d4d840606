/* import_tls.c - what POST /api/v1/import (api/import.c) does with main.cf's TLS part beside
 * its policy maps: the certificate files it names (recognized, or stored unbound) and the
 * settings that render its TLS parameters (a report; with ?settings=true what the job needs to
 * write them, which apply/takeover.c proves first). HTTP threads. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/import_tls.h"
#include "app.h"
#include "apply/fsutil.h"
#include "apply/maincf.h"
#include "apply/postfix.h"
#include "conf.h"
#include "core/cert.h"
#include "core/managed.h"
#include "core/settings.h"
#include "store/nodes.h"
#include "store/store.h"

/* The certificate files main.cf names: smtpd_tls_chain_files (key, then its certificates; one
 * pair), else smtpd_tls_cert_file + smtpd_tls_key_file and the EC pair: a JSON array of
 * {files: [...]}, each pair's files read together as one bundle. */
static json_t *named_cert_files(const char *main_cf, size_t len)
{
        json_t *pairs = json_array();
        _cleanup_free_ char *chain = NULL;
        if (maincf_get(main_cf, len, "smtpd_tls_chain_files", &chain) >= 0 && !isempty(chain)) {
                json_t *files = json_array();
                char *save = NULL;
                for (char *t = strtok_r(chain, ", \t", &save); t; t = strtok_r(NULL, ", \t", &save))
                        json_array_append_new(files, json_string(t));
                json_array_append_new(pairs, json_pack("{s:o}", "files", files));
                return pairs;
        }
        static const char *const names[][2] = {
                { "smtpd_tls_key_file", "smtpd_tls_cert_file" },
                { "smtpd_tls_eckey_file", "smtpd_tls_eccert_file" },
        };
        for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
                _cleanup_free_ char *key = NULL, *cert = NULL;
                if (maincf_get(main_cf, len, names[i][1], &cert) < 0 || isempty(cert))
                        continue;
                if (maincf_get(main_cf, len, names[i][0], &key) < 0 || isempty(key)) {
                        free(key);
                        key = strdup(cert); /* Postfix: the key may be in the cert file */
                }
                if (key)
                        json_array_append_new(pairs, json_pack("{s:[s,s]}", "files", key, cert));
        }
        return pairs;
}

/* A free name for an imported certificate: "imported-" and the first file's base name (then
 * -2, -3, ...), neither in the store nor taken by this import (keys). */
static int free_cert_name(struct db_conn *c, const char *file, json_t *keys, char name[65],
                          struct problem *reterr)
{
        char base[40];
        const char *b = strrchr(file, '/') ? strrchr(file, '/') + 1 : file;
        size_t o = 0;
        for (; *b && *b != '.' && o + 1 < sizeof(base); b++)
                if (isalnum((unsigned char)*b) || *b == '-' || *b == '_')
                        base[o++] = (char)tolower((unsigned char)*b);
        base[o] = 0;
        for (int n = 1; n < 100; n++) {
                struct cert_row row = { 0 };
                struct problem p = { 0 };
                if (n == 1)
                        snprintf(name, 65, "imported-%s", base[0] ? base : "certificate");
                else
                        snprintf(name, 65, "imported-%s-%d", base[0] ? base : "certificate", n);
                int q = store_cert_by_name(c, name, &row, &p);
                cert_row_done(&row);
                if (q == -ENOENT && !json_object_get(keys, name)) {
                        problem_done(&p);
                        return 0;
                }
                if (q < 0 && q != -ENOENT) {
                        *reterr = p;
                        return q;
                }
                problem_done(&p);
        }
        return problem_set(reterr, PROBLEM_INTERNAL_ERROR, NULL, "no free certificate name");
}

/* One pair of files: read as one bundle and checked as an upload is. */
static void import_pair(json_t *files, struct cert_import *imp, json_t *entry)
{
        struct strbuf pem = { 0 };
        size_t k;
        json_t *f;
        bool unreadable = false;
        json_array_foreach (files, k, f) {
                _cleanup_free_ char *data = NULL;
                size_t n = 0;
                if (strchr(json_string_value(f), '$') ||
                    fs_read_file(json_string_value(f), CERT_BUNDLE_MAX, &data, &n) < 0 ||
                    strbuf_add(&pem, data, n) < 0 || strbuf_add(&pem, "\n", 1) < 0)
                        unreadable = true;
                if (data)
                        explicit_bzero(data, n);
        }
        struct problem p = { 0 };
        int r =
            unreadable || !pem.p ? -EIO : cert_import_bundle(pem.p, pem.len, time(NULL), imp, &p);
        if (pem.p)
                explicit_bzero(pem.p, pem.len);
        free(pem.p);
        if (r < 0) {
                json_object_set_new(entry, "action", json_string("keep"));
                json_object_set_new(entry, "reason",
                                    json_string(unreadable ? "a file cannot be read (or names a "
                                                             "$parameter)"
                                                           : p.detail));
        }
        problem_done(&p);
}

/* Whether key and chain are privkey.pem and fullchain.pem of one directory right below the ACME
 * live directory (its path is alen bytes of both). */
static bool acme_pair(const char *key, const char *chain, size_t alen)
{
        const char *kname = strrchr(key, '/'), *cname = strrchr(chain, '/');
        return kname && cname && streq(kname, "/privkey.pem") && streq(cname, "/fullchain.pem") &&
               kname - key == cname - chain && strncmp(key, chain, (size_t)(cname - chain)) == 0 &&
               memchr(chain + alen + 1, '/', (size_t)(cname - chain) - alen - 1) == NULL;
}

/* What an import does with the certificates main.cf names: recognizes them (the system pair, an
 * ACME live directory, one the store has) or imports them, unbound: Postfix serves them as
 * before, and a settings write can bind one. Each entry of report: {files, action (system,
 * acme, already, import, keep), name, sha256_fingerprint, reason}; what to import into store
 * ({name, certificate, chain}) and keys ({name: key PEM}: a secret). */
int import_certs(struct request *req, const char *main_cf, size_t len, json_t *report,
                 json_t *store, json_t *keys, struct problem *reterr)
{
        const struct config *cfg = req->app->cfg;
        json_t *pairs = named_cert_files(main_cf, len), *pair;
        size_t i;
        _cleanup_db_conn_ struct db_conn *c = NULL;
        int r = db_acquire(req->app->db, &c, reterr);
        json_array_foreach (pairs, i, pair) {
                if (r < 0)
                        break;
                json_t *files = json_object_get(pair, "files");
                json_t *entry = json_pack("{s:O}", "files", files);
                json_array_append_new(report, entry);
                const char *first = json_string_value(json_array_get(files, 0));
                const char *last =
                    json_string_value(json_array_get(files, json_array_size(files) - 1));
                size_t alen = strlen(cfg->acme_live_directory);
                while (alen && cfg->acme_live_directory[alen - 1] == '/')
                        alen--;
                if (streq(last, cfg->system_certificate_file)) {
                        json_object_set_new(entry, "action", json_string("system"));
                        json_object_set_new(entry, "name", json_string("system"));
                        continue;
                }
                /* the ACME client's own pair (privkey.pem, fullchain.pem of one live directory):
                 * served as it is after a settings write too; another file of it (cert.pem, the
                 * leaf alone) is stored like any file */
                if (alen && strncmp(last, cfg->acme_live_directory, alen) == 0 &&
                    last[alen] == '/' && acme_pair(first, last, alen)) {
                        /* .../live/NAME/fullchain.pem: the ACME watch keeps it in the store */
                        const char *rest = last + alen + 1;
                        json_object_set_new(entry, "action", json_string("acme"));
                        json_object_set_new(entry, "name", json_stringn(rest, strcspn(rest, "/")));
                        continue;
                }
                struct cert_import imp = { 0 };
                import_pair(files, &imp, entry);
                if (!imp.cert_pem) {
                        cert_import_done(&imp);
                        continue;
                }
                char name[80] = "";
                const char *fp = imp.info.sha256_fingerprint;
                json_object_set_new(entry, "sha256_fingerprint", json_string(fp));
                r = store_cert_name_by_fingerprint(c, fp, name, sizeof(name), reterr);
                if (r > 0) {
                        /* the same leaf with the same chain: a store row with another chain
                         * (the leaf uploaded alone) would serve other certificates */
                        struct cert_row row = { 0 };
                        struct problem ignore = { 0 };
                        bool same = store_cert_by_name(c, name, &row, &ignore) >= 0 &&
                                    streq(row.chain_pem ? row.chain_pem : "",
                                          imp.chain_pem ? imp.chain_pem : "");
                        cert_row_done(&row);
                        problem_done(&ignore);
                        r = same ? 1 : 0;
                }
                if (r > 0) {
                        json_object_set_new(entry, "action", json_string("already"));
                        json_object_set_new(entry, "name", json_string(name));
                        r = 0;
                } else if (r == 0 && (r = free_cert_name(c, first, keys, name, reterr)) >= 0) {
                        json_object_set_new(entry, "action", json_string("import"));
                        json_object_set_new(entry, "name", json_string(name));
                        json_array_append_new(store, json_pack("{s:s, s:s, s:s}", "name", name,
                                                               "certificate", imp.cert_pem, "chain",
                                                               imp.chain_pem));
                        json_object_set_new(keys, name, json_string(imp.key_pem));
                }
                cert_import_done(&imp);
        }
        json_decref(pairs);
        return r < 0 ? r : 0;
}

/* Two parameter values the same list to Postfix: the same words, whatever commas and blanks
 * separate them. */
static bool same_list(const char *a, const char *b)
{
        for (;;) {
                a += strspn(a, ", \t");
                b += strspn(b, ", \t");
                size_t la = strcspn(a, ", \t"), lb = strcspn(b, ", \t");
                if (la != lb || strncmp(a, b, la) != 0)
                        return false;
                if (la == 0)
                        return true;
                a += la;
                b += lb;
        }
}

/* The managed parameters an import of the settings must keep as they are: all but the
 * certificate files (the certificates are compared by what smtpd serves), smtp_tls_CAfile (by the
 * CA it names) and smtp_tls_policy_maps (the maps above). */
static bool compared(const struct managed_param *m)
{
        return m->source != MANAGED_POLICY_MAPS && m->source != MANAGED_CHAIN_FILES &&
               m->source != MANAGED_CA_FILE &&
               !(m->flags & (MANAGED_CERT_FILES | MANAGED_KEY_FILE | MANAGED_WITH_CHAIN));
}

static int mode_of(const char *level, enum tls_mode *ret)
{
        if (isempty(level)) { /* Postfix: no level, no TLS (the legacy switches off) */
                *ret = MODE_NONE;
                return 0;
        }
        return tls_mode_from_string(level, ret);
}

/* The settings whose rendering main.cf holds already, if there are ones - a report for the
 * administrator, never written by the import. *ret: {action (match, differs, managed),
 * settings, reason, differs: [{name, live, rendered}]}. */
/* Why settings that render this node's main.cf may not be written for the fleet: another node
 * alive (its main.cf may differ), a certificate main.cf serves that they would not (the system
 * pair, a file the import cannot read); NULL when none. files: [[key, chain], ...] of the bound
 * ones. */
static const char *take_over_refusal(struct request *req, struct db_conn *c, json_t *certs,
                                     json_t *files, struct problem *reterr)
{
        json_t *nodes = NULL, *node, *cert;
        size_t i;
        const char *why = NULL;
        uint64_t stale = 3 * (uint64_t)req->app->cfg->node_heartbeat_interval;
        struct problem ignore = { 0 };
        char bound_cert[65], bound_add[65];
        int bound = store_node_settings_load(c, req->app->cfg->node_name, bound_cert, bound_add,
                                             NULL, &ignore);
        problem_done(&ignore);
        if (bound != 0)
                return bound > 0 ? "this node has a certificate binding of its own (PUT "
                                   "/api/v1/nodes/{name}/settings), which would be served instead "
                                   "of main.cf's"
                                 : "this node's certificate binding cannot be read";
        if (store_nodes_list(c, stale, &nodes, &ignore) < 0) {
                problem_done(&ignore);
                return "the fleet's registry cannot be read";
        }
        json_array_foreach (nodes, i, node)
                if (!streq(json_string_value(json_object_get(node, "name")),
                           req->app->cfg->node_name) &&
                    !streq(json_string_value(json_object_get(node, "state")), "unreachable"))
                        why = "other nodes of the fleet are running: the settings are every "
                              "node's while this main.cf is one node's; write them with a "
                              "settings write after a dry run on each";
        json_decref(nodes);
        if (why)
                return why;
        bool system = false;
        json_array_foreach (certs, i, cert) {
                const char *action = json_string_value(json_object_get(cert, "action"));
                json_t *f = json_object_get(cert, "files");
                system = system || streq(action, "system");
                if (streq(action, "keep"))
                        return "a certificate main.cf names cannot be imported (see "
                               "certificates): bound without it, Postfix would no longer serve "
                               "it";
                if (streq(action, "system") || streq(action, "keep") ||
                    !json_string_value(json_object_get(cert, "name")))
                        continue;
                json_array_append_new(files, json_pack("[O,O]", json_array_get(f, 0),
                                                       json_array_get(f, json_array_size(f) - 1)));
        }
        /* the settings never bind it, and they remove smtpd_tls_cert_file: a service of
         * master.cf that offers STARTTLS with it (or a second key type beside one's own) would
         * lose it */
        if (system)
                return "main.cf serves the system's self-signed pair, which settings never bind: "
                       "taking them over would stop serving it (to a master.cf service at may, "
                       "or as a second key type)";
        return NULL;
}

int import_settings(struct request *req, json_t *certs, bool take, json_t **ret, json_t **job,
                    struct problem *reterr)
{
        const struct config *cfg = req->app->cfg;
        const char *names[MANAGED_PARAMS_MAX + 3];
        size_t n = 0;
        for (const struct managed_param *m = managed_params; m->name; m++)
                if (compared(m))
                        names[n++] = m->name;
        size_t ca_file = n, ca_path = n + 1;
        names[n] = "smtp_tls_CAfile";
        names[n + 1] = "smtp_tls_CApath";
        names[n + 2] = NULL;
        char *live[MANAGED_PARAMS_MAX + 3] = { 0 }, *dflt[MANAGED_PARAMS_MAX + 3] = { 0 };
        json_t *report = json_object(), *differs = json_array();
        struct settings s, current;
        int r = 0;
        const char *why = NULL;
        _cleanup_db_conn_ struct db_conn *c = NULL;
        if ((r = db_acquire(req->app->db, &c, reterr)) < 0 ||
            (r = store_settings_load(c, &current, NULL, false, reterr)) < 0)
                goto out;
        if (current.managed) {
                why = "smtptlsd manages the settings already";
                json_object_set_new(report, "action", json_string("managed"));
                goto done;
        }
        /* Only a report: the settings are the whole fleet's while main.cf is this node's, and
         * a master.cf service, a parameter naming another through $, or a key type of the
         * system pair may depend on what main.cf holds beyond them. The administrator writes
         * them (a dry run of the PUT first) knowing that. */
        if (postconf_values(cfg, names, live) < 0 || postconf_defaults(cfg, names, dflt) < 0) {
                why = "postconf cannot tell the live values";
                goto keep;
        }
        settings_defaults(&s);
        s.managed = true;
        enum tls_mode in, outb;
        if (mode_of(live[0], &in) < 0 || mode_of(live[1], &outb) < 0) {
                why = "a security level smtptlsd's settings have not (none, may and encrypt are "
                      "theirs; a stricter outbound level belongs in a policy)";
                goto keep;
        }
        s.mode = in;
        s.inbound_mode = in;
        s.outbound_mode = outb;
        /* the certificates: those the import recognizes or stores, in main.cf's order */
        size_t k;
        json_t *cert;
        int bound = 0;
        json_array_foreach (certs, k, cert) {
                const char *action = json_string_value(json_object_get(cert, "action"));
                const char *name = json_string_value(json_object_get(cert, "name"));
                if (streq(action, "system") || streq(action, "keep") || !name)
                        continue;
                if (bound < SETTINGS_CERTS_MAX)
                        snprintf(bound ? s.additional_certificate : s.certificate,
                                 sizeof(s.certificate), "%s", name);
                bound++;
        }
        if (in != MODE_NONE && !s.certificate[0]) {
                why = "smtpd serves no certificate smtptlsd may bind (the system's self-signed "
                      "one is never bound): bind one of your own with a settings write";
                goto keep;
        }
        /* the CA of verify and secure policies: the system's store, or a file */
        const char *file = live[ca_file], *path = live[ca_path];
        if (streq(file, cfg->system_ca_file) || (isempty(file) && streq(path, "/etc/ssl/certs")))
                snprintf(s.outbound_ca, sizeof(s.outbound_ca), "%s", OUTBOUND_CA_SYSTEM);
        else if (file[0] == '/')
                snprintf(s.outbound_ca, sizeof(s.outbound_ca), "%s", file);
        else {
                why = "smtp_tls_CAfile names no CA file, and smtp_tls_CApath is not the system's "
                      "store";
                goto keep;
        }
        /* the rest: the one profile, switch and log level whose rendering is main.cf's */
        bool found = false;
        for (int profile = PROFILE_MODERN; profile <= PROFILE_LEGACY && !found; profile++)
                for (int bits = 0; bits < 4 * 5 && !found; bits++) {
                        s.profile = (enum tls_profile)profile;
                        s.auth_only = bits & 1;
                        s.received_header = bits & 2;
                        s.loglevel = bits / 4;
                        struct maincf_param out[SETTINGS_PARAMS_MAX];
                        char chain[16];
                        size_t m = settings_render(&s, NULL, 0, NULL, chain, sizeof(chain), out);
                        bool all = true;
                        for (size_t i = 0; i < m && all; i++)
                                for (size_t j = 0; j < ca_file; j++)
                                        if (streq(out[i].name, names[j]) &&
                                            !same_list(out[i].value ? out[i].value : dflt[j],
                                                       live[j]))
                                                all = false;
                        found = all;
                }
        if (!found) {
                /* what the default settings would change, for the report */
                s.profile = PROFILE_INTERMEDIATE;
                s.loglevel = 1;
                s.auth_only = true;
                s.received_header = false;
                struct maincf_param out[SETTINGS_PARAMS_MAX];
                char chain[16];
                size_t m = settings_render(&s, NULL, 0, NULL, chain, sizeof(chain), out);
                for (size_t i = 0; i < m; i++)
                        for (size_t j = 0; j < ca_file; j++) {
                                const char *would = out[i].value ? out[i].value : dflt[j];
                                if (streq(out[i].name, names[j]) && !same_list(would, live[j]))
                                        json_array_append_new(
                                            differs, json_pack("{s:s, s:s, s:s}", "name", names[j],
                                                               "live", live[j], "rendered", would));
                        }
                why = "main.cf's TLS parameters match no settings of smtptlsd (see differs): "
                      "choose them in a settings write";
                json_object_set_new(report, "action", json_string("differs"));
                goto done;
        }
        json_t *settings = settings_to_json(&s);
        /* a PUT body: the read-only members are the store's, not these */
        json_object_del(settings, "generation");
        json_object_del(settings, "updated_at");
        json_object_del(settings, "managed");
        json_object_set_new(report, "action", json_string("match"));
        json_object_set_new(report, "settings", settings);
        why = "these settings render main.cf's TLS parameters; the import writes them only "
              "with ?settings=true (after proving that Postfix reads every parameter as before)";
        if (take) {
                json_t *files = json_array();
                why = take_over_refusal(req, c, certs, files, reterr);
                if (!why) {
                        *job = json_pack("{s:O, s:o}", "settings", settings, "files", files);
                        why = "the job writes these settings once it has proved that Postfix "
                              "then reads every parameter as it does now (postconf -x of a "
                              "main.cf rendered with them in a scratch directory, certificate "
                              "files aside: the same certificates are served)";
                } else {
                        json_decref(files);
                }
        }
        goto done;
keep:
        json_object_set_new(report, "action", json_string("differs"));
done:
        if (why)
                json_object_set_new(report, "reason", json_string(why));
        json_object_set_new(report, "written", json_false()); /* the job says true */
        json_object_set_new(report, "differs", json_incref(differs));
        *ret = report;
        report = NULL;
out:
        for (size_t i = 0; names[i]; i++) {
                free(live[i]);
                free(dflt[i]);
        }
        json_decref(report);
        json_decref(differs);
        return r;
}
