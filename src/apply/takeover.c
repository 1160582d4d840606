/* takeover.c - the settings take-over's proof (see takeover.h): two `postconf -x` compared.
 * Worker thread. */
#include "apply/takeover.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "apply/fsutil.h"
#include "apply/layout.h"
#include "apply/maincf.h"
#include "apply/plan.h"
#include "apply/postfix.h"
#include "conf.h"
#include "core/managed.h"
#include "util.h"

#define DIFFERS_MAX 50

/* Parameters whose value is not compared: the certificate files (the same certificates are
 * served from smtptlsd's own copies), the policy map list (the import's to change) and the
 * configuration directory itself, and postconf's own process id. */
static bool exempt(const char *name, size_t len)
{
        static const char *const names[] = {
                "smtp_tls_policy_maps",
                "config_directory",
                "process_id",
        };
        for (size_t i = 0; i < ARRAY_SIZE(names); i++)
                if (strlen(names[i]) == len && memcmp(names[i], name, len) == 0)
                        return true;
        return managed_param_has(name, len, MANAGED_CERT_FILES) ||
               managed_param_has(name, len, MANAGED_KEY_FILE);
}

/* The value of the "name = value" line of out for name (len bytes), or NULL. */
static const char *find_line(const char *out, const char *name, size_t len, size_t *value_len)
{
        for (const char *p = out; p && *p;) {
                size_t n = strcspn(p, "\n");
                if (n > len + 3 && memcmp(p, name, len) == 0 && memcmp(p + len, " = ", 3) == 0) {
                        *value_len = n - len - 3;
                        return p + len + 3;
                }
                if (n == len + 2 && memcmp(p, name, len) == 0 && memcmp(p + len, " =", 2) == 0) {
                        *value_len = 0;
                        return p + len + 2;
                }
                p += n + (p[n] == '\n');
        }
        return NULL;
}

/* Debian's system CA file is the system's CA directory in one file (update-ca-certificates
 * writes both): a client trusting the directory alone (X_CApath = /etc/ssl/certs, no X_CAfile)
 * trusts what outbound_ca "system" renders as smtp_tls_CAfile (and what derives from it through
 * $smtp_tls_CAfile: lmtp_tls_CAfile, tlsproxy_client_CAfile). name: an X_CAfile parameter whose
 * value is empty in live and value (value_len bytes) in rendered. */
static bool same_trust(const struct config *cfg, const char *live, const char *name,
                       size_t name_len, const char *value, size_t value_len)
{
        static const char dir[] = "/etc/ssl/certs", suffix[] = "_CAfile";
        size_t sl = strlen(suffix), capath_len = 0;
        char capath_name[128];
        if (name_len <= sl || name_len - sl + 7 >= sizeof(capath_name) ||
            memcmp(name + name_len - sl, suffix, sl) != 0 ||
            value_len != strlen(cfg->system_ca_file) ||
            memcmp(value, cfg->system_ca_file, value_len) != 0)
                return false;
        snprintf(capath_name, sizeof(capath_name), "%.*s_CApath", (int)(name_len - sl), name);
        const char *capath = find_line(live, capath_name, strlen(capath_name), &capath_len);
        return capath && capath_len == strlen(dir) && memcmp(capath, dir, capath_len) == 0;
}

/* Every parameter of live whose value in rendered is another (or missing), and every one of
 * rendered that live lacks: into differs (at most DIFFERS_MAX). */
/* A certificate or key file parameter (smtpd's own are exempt()) that main.cf does not set:
 * Postfix's default makes it follow smtpd's ($smtpd_tls_chain_files for tlsproxy), the same
 * certificates in smtptlsd's files. One the administrator set (lmtp_tls_cert_file =
 * $smtpd_tls_cert_file) is compared: it may name a parameter the settings remove. */
static bool follows_smtpd(const char *main_cf, size_t main_len, const char *name, size_t len)
{
        static const char *const suffixes[] = { "_chain_files", "_cert_file", "_key_file" };
        bool file = false;
        for (size_t i = 0; i < ARRAY_SIZE(suffixes); i++) {
                size_t sl = strlen(suffixes[i]);
                file = file || (len > sl && memcmp(name + len - sl, suffixes[i], sl) == 0);
        }
        char buf[128];
        _cleanup_free_ char *value = NULL;
        if (!file || len >= sizeof(buf))
                return false;
        memcpy(buf, name, len);
        buf[len] = 0;
        return maincf_get(main_cf, main_len, buf, &value) < 0;
}

/* A value for the report: its bytes as UTF-8, anything else as '?' (a difference is counted
 * whatever becomes of its text). */
static json_t *text_of(const char *p, size_t n)
{
        json_t *j = json_stringn(p, n);
        if (j)
                return j;
        char *copy = strndup(p, n);
        for (size_t i = 0; copy && i < n; i++)
                if ((unsigned char)copy[i] >= 0x80 || copy[i] == 0)
                        copy[i] = '?';
        j = copy ? json_string(copy) : NULL;
        free(copy);
        return j ? j : json_string("?");
}

struct diff {
        size_t n;       /* every difference, reported or not */
        json_t *report; /* the first DIFFERS_MAX */
};

static void differ(struct diff *d, const char *name, size_t name_len, const char *live,
                   size_t live_len, const char *rendered, size_t rendered_len)
{
        d->n++;
        if (!d->report || json_array_size(d->report) >= DIFFERS_MAX)
                return;
        json_array_append_new(d->report,
                              json_pack("{s:o, s:o, s:o}", "name", text_of(name, name_len), "live",
                                        live ? text_of(live, live_len) : json_null(), "rendered",
                                        rendered ? text_of(rendered, rendered_len) : json_null()));
}

/* Every "name = value" line of live whose value in rendered is another (or missing), and every
 * one of rendered that live lacks. main_cf (the live text) set: postconf -x's main.cf
 * parameters, with their exemptions; NULL: postconf -P's master.cf ones, all compared. */
static void compare(const struct config *cfg, const char *main_cf, size_t main_len,
                    const char *live, const char *rendered, struct diff *d)
{
        const char *sides[2][2] = { { live, rendered }, { rendered, live } };
        for (int side = 0; side < 2; side++) {
                for (const char *p = sides[side][0]; p && *p;) {
                        size_t n = strcspn(p, "\n");
                        const char *eq = memmem(p, n, " =", 2);
                        if (eq) {
                                size_t name_len = (size_t)(eq - p), other_len = 0;
                                size_t value_len = n - name_len - 2 - (n > name_len + 2);
                                const char *value = eq + 2 + (n > name_len + 2);
                                const char *other =
                                    find_line(sides[side][1], p, name_len, &other_len);
                                bool same = other && other_len == value_len &&
                                            memcmp(other, value, value_len) == 0;
                                bool skip =
                                    main_cf &&
                                    (exempt(p, name_len) ||
                                     follows_smtpd(main_cf, main_len, p, name_len) ||
                                     (side == 0 && value_len == 0 && other &&
                                      same_trust(cfg, live, p, name_len, other, other_len)));
                                if (!skip && !same && (side == 0 || !other))
                                        differ(d, p, name_len, side == 0 ? value : other,
                                               side == 0 ? value_len : other_len,
                                               side == 0 ? other : value,
                                               side == 0 ? other_len : value_len);
                        }
                        p += n + (p[n] == '\n');
                }
        }
}

/* What postconf -P cannot show: a master.cf service's own legacy certificate (-o
 * smtpd_tls_cert_file=...) is ignored once main.cf sets smtpd_tls_chain_files (postconf(5)), and
 * a service trusting a CA directory of its own (-o smtp_tls_CApath=...) inherits the CAfile the
 * settings add. services: postconf -P -x of the live master.cf. */
static void service_hazards(const char *services, bool chain_added, bool ca_added, struct diff *d)
{
        static const char ignored[] = "(ignored once main.cf sets smtpd_tls_chain_files)",
                          inherits[] = "(and the CAfile the settings add)";
        static const char *const legacy[] = { "smtpd_tls_cert_file",   "smtpd_tls_key_file",
                                              "smtpd_tls_eccert_file", "smtpd_tls_eckey_file",
                                              "smtpd_tls_dcert_file",  "smtpd_tls_dkey_file" };
        for (const char *p = services; p && *p;) {
                size_t n = strcspn(p, "\n");
                const char *eq = memmem(p, n, " = ", 3);
                const char *slash = eq ? memrchr(p, '/', (size_t)(eq - p)) : NULL;
                if (slash) {
                        const char *name = slash + 1;
                        size_t len = (size_t)(eq - name);
                        for (size_t i = 0; chain_added && i < ARRAY_SIZE(legacy); i++)
                                if (strlen(legacy[i]) == len && memcmp(name, legacy[i], len) == 0)
                                        differ(d, p, (size_t)(eq - p), eq + 3,
                                               n - (size_t)(eq - p) - 3, ignored,
                                               sizeof(ignored) - 1);
                        if (ca_added && len > 7 && memcmp(name + len - 7, "_CApath", 7) == 0)
                                differ(d, p, (size_t)(eq - p), eq + 3, n - (size_t)(eq - p) - 3,
                                       inherits, sizeof(inherits) - 1);
                }
                p += n + (p[n] == '\n');
        }
}

int takeover_check(const struct config *cfg, const struct settings *s,
                   const struct cert_files *certs, size_t n, json_t **differs,
                   struct problem *reterr)
{
        char dir[PATH_MAX] = "", live_main[PATH_MAX], live_master[PATH_MAX], ca_file[PATH_MAX],
             chain[SETTINGS_CERTS_MAX * (2 * PATH_MAX + 4)];
        _cleanup_free_ char *text = NULL, *master = NULL, *rendered = NULL, *live_out = NULL,
                            *new_out = NULL, *live_services = NULL, *new_services = NULL,
                            *old_chain = NULL, *old_ca = NULL;
        size_t len = 0, master_len = 0, new_len = 0;
        struct maincf_param params[SETTINGS_PARAMS_MAX];
        *differs = NULL;
        int r = layout_main_cf(cfg, live_main, sizeof(live_main));
        if (r >= 0)
                r = layout_master_cf(cfg, live_master, sizeof(live_master));
        if (r >= 0)
                r = fs_read_file(live_main, LAYOUT_MAIN_CF_MAX, &text, &len);
        if (r >= 0)
                r = fs_read_file(live_master, LAYOUT_MAIN_CF_MAX, &master, &master_len);
        if (r < 0)
                return problem_set(reterr, PROBLEM_INTERNAL_ERROR, NULL,
                                   "cannot read main.cf and master.cf: %s", strerror(-r));
        /* main.cf as the plan would render it (smtp_tls_policy_maps aside) */
        reconcile_ca_file(cfg, s, ca_file, sizeof(ca_file));
        const char *ca = access(ca_file, R_OK) == 0 ? ca_file : NULL;
        size_t np = settings_render(s, certs, n, ca, chain, sizeof(chain), params);
        r = maincf_edit(text, len, params, np, &rendered, &new_len);
        if (r >= 0)
                r = postfix_scratch_dir(cfg, "takeover.check", rendered, new_len, master,
                                        master_len, dir, sizeof(dir));
        if (r < 0)
                return problem_set(reterr, PROBLEM_INTERNAL_ERROR, NULL,
                                   "cannot stage main.cf for the settings' proof: %s",
                                   strerror(-r));
        /* every main.cf parameter, and every -o of master.cf, expanded */
        const char *const services_args[] = { "-P", "-x", NULL };
        struct spawn_result out = { 0 };
        r = postconf_expanded_all(cfg, cfg->postfix_config_directory, &live_out);
        if (r >= 0)
                r = postconf_expanded_all(cfg, dir, &new_out);
        if (r >= 0 &&
            (r = postconf_in(cfg, cfg->postfix_config_directory, services_args, &out)) >= 0)
                live_services = TAKE_PTR(out.output);
        spawn_result_done(&out);
        if (r >= 0 && (r = postconf_in(cfg, dir, services_args, &out)) >= 0)
                new_services = TAKE_PTR(out.output);
        spawn_result_done(&out);
        fs_remove_tree(dir);
        if (r < 0)
                return problem_set(reterr, PROBLEM_POSTFIX_REJECTED, NULL,
                                   "postconf -x failed: the settings cannot be proved");
        struct diff d = { .report = json_array() };
        compare(cfg, text, len, live_out, new_out, &d);
        compare(cfg, NULL, 0, live_services, new_services, &d);
        bool chain_added =
            maincf_get(text, len, "smtpd_tls_chain_files", &old_chain) < 0 || isempty(old_chain);
        bool ca_added =
            ca && (maincf_get(text, len, "smtp_tls_CAfile", &old_ca) < 0 || isempty(old_ca));
        service_hazards(live_services, chain_added && n > 0, ca_added, &d);
        if (d.n == 0) {
                json_decref(d.report);
                return 0;
        }
        if (!d.report)
                return problem_set(reterr, PROBLEM_INTERNAL_ERROR, NULL, "out of memory");
        *differs = d.report;
        return 1;
}
