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

static void compare(const struct config *cfg, const char *main_cf, size_t main_len,
                    const char *live, const char *rendered, json_t *differs)
{
        const char *sides[2][2] = { { live, rendered }, { rendered, live } };
        for (int side = 0; side < 2; side++) {
                for (const char *p = sides[side][0]; p && *p;) {
                        size_t n = strcspn(p, "\n");
                        const char *eq = memmem(p, n, " =", 2);
                        if (eq && json_array_size(differs) < DIFFERS_MAX) {
                                size_t name_len = (size_t)(eq - p), other_len = 0;
                                size_t value_len = n - name_len - 2 - (n > name_len + 2);
                                const char *value = eq + 2 + (n > name_len + 2);
                                const char *other =
                                    find_line(sides[side][1], p, name_len, &other_len);
                                bool same = other && other_len == value_len &&
                                            memcmp(other, value, value_len) == 0;
                                bool ca = side == 0 && value_len == 0 && other &&
                                          same_trust(cfg, live, p, name_len, other, other_len);
                                if (!exempt(p, name_len) && !ca && !same &&
                                    !follows_smtpd(main_cf, main_len, p, name_len) &&
                                    (side == 0 || !other)) {
                                        json_t *l = json_stringn(value, value_len),
                                               *o = other ? json_stringn(other, other_len)
                                                          : json_null();
                                        json_array_append_new(
                                            differs,
                                            json_pack("{s:s%, s:o, s:o}", "name", p, name_len,
                                                      side == 0 ? "live" : "rendered", l,
                                                      side == 0 ? "rendered" : "live", o));
                                }
                        }
                        p += n + (p[n] == '\n');
                }
        }
}

int takeover_check(const struct config *cfg, const struct settings *s,
                   const struct cert_files *certs, size_t n, json_t **differs,
                   struct problem *reterr)
{
        char dir[PATH_MAX] = "", live_main[PATH_MAX], live_master[PATH_MAX], ca_file[PATH_MAX],
             chain[SETTINGS_CERTS_MAX * (2 * PATH_MAX + 4)];
        _cleanup_free_ char *text = NULL, *master = NULL, *rendered = NULL, *live_out = NULL,
                            *new_out = NULL;
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
        size_t np = settings_render(s, certs, n, access(ca_file, R_OK) == 0 ? ca_file : NULL, chain,
                                    sizeof(chain), params);
        r = maincf_edit(text, len, params, np, &rendered, &new_len);
        if (r >= 0)
                r = postfix_scratch_dir(cfg, "takeover.check", rendered, new_len, master,
                                        master_len, dir, sizeof(dir));
        if (r < 0)
                return problem_set(reterr, PROBLEM_INTERNAL_ERROR, NULL,
                                   "cannot stage main.cf for the settings' proof: %s",
                                   strerror(-r));
        r = postconf_expanded_all(cfg, cfg->postfix_config_directory, &live_out);
        if (r >= 0)
                r = postconf_expanded_all(cfg, dir, &new_out);
        fs_remove_tree(dir);
        if (r < 0)
                return problem_set(reterr, PROBLEM_POSTFIX_REJECTED, NULL,
                                   "postconf -x failed: the settings cannot be proved");
        json_t *d = json_array();
        compare(cfg, text, len, live_out, new_out, d);
        if (json_array_size(d) == 0) {
                json_decref(d);
                return 0;
        }
        *differs = d;
        return 1;
}
