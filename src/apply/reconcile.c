/* reconcile.c - plan, stage, validate, swap, reload, restore (see reconcile.h). Worker thread
 * (and start-up, before the worker runs). Order of a swap: certificate files first (in a new
 * directory, so nothing live is overwritten), main.cf last: main.cf is the single switch point,
 * so a crash at any moment leaves Postfix with a complete old or new configuration. */
#include "smtptlsd/reconcile.h"

#include <dirent.h>
#include <stdio.h>
#include <sys/stat.h>
#include <time.h>

#include "smtptlsd/cert.h"
#include "smtptlsd/conf.h"
#include "smtptlsd/fsutil.h"
#include "smtptlsd/layout.h"
#include "smtptlsd/log.h"
#include "smtptlsd/maincf.h"
#include "smtptlsd/postfix.h"

#define MAIN_CF_MAX (4u << 20)
/* Postfix re-reads a main.cf modified within the last second or so ("hot"), waiting 300 ms per
 * round, because an editor may still be writing it (src/util/load_file.c). Ours is complete
 * before it gets its name (rename of an fsynced file), so we date it this many seconds back and
 * every Postfix process reads it at once. */
#define MAIN_CF_AGE_SECONDS 2

int desired_load(struct db_conn *c, struct desired *d, struct problem *reterr)
{
        *d = (struct desired){ 0 };
        int r = store_settings_load(c, &d->settings, NULL, false, reterr);
        if (r < 0)
                return r;
        if (d->settings.certificate[0]) {
                r = store_cert_by_name(c, d->settings.certificate, &d->cert, reterr);
                if (r == -ENOENT)
                        return problem_set(reterr, PROBLEM_CERTIFICATE_NOT_FOUND, "/certificate",
                                           "certificate '%s' is gone", d->settings.certificate);
                if (r < 0)
                        return r;
                d->has_cert = true;
        }
        return 0;
}

void desired_done(struct desired *d)
{
        cert_row_done(&d->cert);
        d->has_cert = false;
}

void plan_done(struct plan *p)
{
        free(p->main_cf_old);
        free(p->main_cf_new);
        free(p->fullchain_pem);
        *p = (struct plan){ 0 };
}

void apply_result_done(struct apply_result *r)
{
        free(r->output);
        r->output = NULL;
}

static bool file_exists(const char *path)
{
        struct stat st;
        return stat(path, &st) == 0;
}

int reconcile_plan(const struct config *cfg, const struct desired *d, struct plan *p,
                   struct problem *reterr)
{
        char path[PATH_MAX];
        struct cert_files files = { 0 };
        int r;

        *p = (struct plan){ 0 };
        r = layout_main_cf(cfg, path, sizeof(path));
        if (r >= 0)
                r = fs_read_file(path, MAIN_CF_MAX, &p->main_cf_old, &p->old_len);
        if (r < 0 && !d->settings.managed) {
                /* Nothing is managed yet, so nothing is read or written: an empty plan. */
                p->main_cf_old = strdup("");
                p->main_cf_new = strdup("");
                return p->main_cf_old && p->main_cf_new ? 0 : -ENOMEM;
        }
        if (r < 0)
                return problem_set(reterr, PROBLEM_POSTFIX_REJECTED, NULL, "cannot read %s: %s",
                                   path, strerror(-r));

        if (d->has_cert && streq(d->cert.type, "imported")) {
                r = layout_imported_dir(cfg, d->cert.name, d->cert.sha256_fingerprint, p->cert_dir,
                                        sizeof(p->cert_dir));
                if (r >= 0)
                        r = layout_join(p->cert_dir, "privkey.pem", p->key_path,
                                        sizeof(p->key_path));
                if (r >= 0)
                        r = layout_join(p->cert_dir, "fullchain.pem", p->chain_path,
                                        sizeof(p->chain_path));
                if (r < 0)
                        return problem_set(reterr, PROBLEM_INTERNAL_ERROR, NULL,
                                           "certificate path too long");
                p->write_cert = !file_exists(p->key_path) || !file_exists(p->chain_path);
                if (p->write_cert) {
                        if (asprintf(&p->fullchain_pem, "%s%s",
                                     d->cert.certificate_pem ? d->cert.certificate_pem : "",
                                     d->cert.chain_pem ? d->cert.chain_pem : "") < 0)
                                return -ENOMEM;
                        p->key_pem = d->cert.private_key_pem;
                }
        } else if (d->has_cert && streq(d->cert.type, "acme")) {
                char dir[PATH_MAX];
                r = layout_acme_dir(cfg, d->cert.name, dir, sizeof(dir));
                if (r >= 0)
                        r = layout_join(dir, "privkey.pem", p->key_path, sizeof(p->key_path));
                if (r >= 0)
                        r = layout_join(dir, "fullchain.pem", p->chain_path, sizeof(p->chain_path));
                if (r < 0)
                        return problem_set(reterr, PROBLEM_INTERNAL_ERROR, NULL,
                                           "certificate path too long");
        }
        if (p->key_path[0]) {
                files.key = p->key_path;
                files.chain = p->chain_path;
        }
        p->n_params = settings_render(&d->settings, files.key ? &files : NULL, p->chain_value,
                                      sizeof(p->chain_value), p->params);
        r = maincf_edit(p->main_cf_old, p->old_len, p->params, p->n_params, &p->main_cf_new,
                        &p->new_len);
        if (r < 0)
                return problem_set(reterr, PROBLEM_INTERNAL_ERROR, NULL,
                                   "cannot render main.cf: %s", strerror(-r));
        p->main_cf_changed =
            p->new_len != p->old_len || memcmp(p->main_cf_new, p->main_cf_old, p->new_len) != 0;
        p->reload = p->main_cf_changed;
        if (d->settings.managed) {
                p->expect_starttls = settings_inbound(&d->settings) != MODE_NONE;
                if (p->expect_starttls && d->has_cert)
                        snprintf(p->expect_fingerprint, sizeof(p->expect_fingerprint), "%s",
                                 d->cert.sha256_fingerprint);
        }
        return 0;
}

json_t *reconcile_plan_json(const struct plan *p)
{
        json_t *changes = json_array();
        for (size_t i = 0; i < p->n_params; i++) {
                char *old = NULL;
                if (maincf_get(p->main_cf_old, p->old_len, p->params[i].name, &old) < 0)
                        old = NULL;
                const char *new = p->params[i].value;
                if (streq_ptr(old, new) || (old && !new && !*old)) {
                        free(old);
                        continue;
                }
                json_array_append_new(changes,
                                      json_pack("{s:s, s:o, s:o}", "name", p->params[i].name, "old",
                                                old ? json_string(old) : json_null(), "new",
                                                new ? json_string(new) : json_null()));
                free(old);
        }
        return json_pack("{s:o, s:b}", "main_cf", changes, "reload", p->reload);
}

json_t *reconcile_drift(const struct config *cfg, const struct plan *p)
{
        json_t *drift = json_array();
        for (size_t i = 0; i < p->n_params; i++) {
                char *live = NULL;
                if (maincf_get(p->main_cf_old, p->old_len, p->params[i].name, &live) < 0)
                        live = NULL;
                const char *want = p->params[i].value;
                bool same = streq_ptr(live, want) || (!want && live && !*live);
                if (!same)
                        json_array_append_new(
                            drift, json_pack("{s:s, s:o, s:o}", "name", p->params[i].name, "live",
                                             live ? json_string(live) : json_null(), "desired",
                                             want ? json_string(want) : json_null()));
                free(live);
        }
        return drift;
}

static void add_output(struct apply_result *res, const char *what, const char *text)
{
        char *n = NULL;
        if (isempty(text))
                return;
        if (asprintf(&n, "%s%s%s:\n%s", res->output ? res->output : "", res->output ? "\n" : "",
                     what, text) < 0)
                return;
        free(res->output);
        res->output = n;
}

static int stage_cert(const struct config *cfg, const struct plan *p, char *staged, size_t size,
                      struct problem *reterr)
{
        char key[PATH_MAX], chain[PATH_MAX], parent[PATH_MAX];
        int r;

        /* <certdir>/<name>/.<version>.new, renamed to <version> at the swap */
        snprintf(parent, sizeof(parent), "%s", p->cert_dir);
        char *slash = strrchr(parent, '/');
        if (!slash)
                return -EINVAL;
        *slash = 0;
        if (snprintf(staged, size, "%s/.%s.new", parent, slash + 1) >= (int)size)
                return -ENAMETOOLONG;
        r = fs_mkdir_p(parent, 0700);
        if (r >= 0)
                r = fs_remove_tree(staged);
        if (r >= 0 && mkdir(staged, 0700) < 0)
                r = -errno;
        if (r >= 0)
                r = layout_join(staged, "privkey.pem", key, sizeof(key));
        if (r >= 0)
                r = layout_join(staged, "fullchain.pem", chain, sizeof(chain));
        if (r >= 0)
                r = fs_write_file(key, p->key_pem ? p->key_pem : "",
                                  p->key_pem ? strlen(p->key_pem) : 0, 0600);
        if (r >= 0)
                r = fs_write_file(chain, p->fullchain_pem, strlen(p->fullchain_pem), 0644);
        if (r >= 0)
                r = fs_fsync_dir(staged);
        if (r < 0)
                return problem_set(reterr, PROBLEM_INTERNAL_ERROR, NULL,
                                   "cannot write the certificate files under %s: %s", parent,
                                   strerror(-r));
        r = cert_check_files(key, chain, time(NULL), NULL, reterr);
        if (r < 0)
                fs_remove_tree(staged);
        return r;
}

static int copy_file(const char *from, const char *to, mode_t mode)
{
        _cleanup_free_ char *data = NULL;
        size_t len = 0;
        int r = fs_read_file(from, MAIN_CF_MAX, &data, &len);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return r;
        return fs_write_file(to, data, len, mode);
}

static int put_main_cf(const struct config *cfg, const char *staged, const char *lkg)
{
        char main_cf[PATH_MAX];
        int r = layout_main_cf(cfg, main_cf, sizeof(main_cf));
        if (r >= 0)
                r = fs_set_mtime_ago(staged, MAIN_CF_AGE_SECONDS);
        if (r >= 0)
                r = fs_replace(staged, main_cf, lkg);
        return r;
}

static int reload(const struct config *cfg, struct apply_result *res)
{
        struct spawn_result out;
        int r = postfix_reload(cfg, &out);
        add_output(res, "postfix reload", out.output);
        spawn_result_done(&out);
        return r;
}

int reconcile_restore(const struct config *cfg, const struct plan *p)
{
        char lkg[PATH_MAX], staged[PATH_MAX], state[PATH_MAX];
        int r = layout_main_cf_lkg(cfg, lkg, sizeof(lkg));
        if (r >= 0)
                r = layout_state_dir(cfg, state, sizeof(state));
        if (r >= 0)
                r = layout_join(state, "main.cf.restore", staged, sizeof(staged));
        if (r >= 0)
                r = copy_file(lkg, staged, 0644);
        if (r >= 0)
                r = put_main_cf(cfg, staged, NULL);
        if (r < 0) {
                log_error("cannot restore the last-known-good main.cf: %s", strerror(-r));
                return r;
        }
        if (p->reload && postfix_is_running(cfg)) {
                struct apply_result res = { 0 };
                r = reload(cfg, &res);
                if (r < 0)
                        log_error("postfix reload after restoring main.cf failed: %s",
                                  res.output ? res.output : "");
                apply_result_done(&res);
        }
        return r;
}

int reconcile_apply(const struct config *cfg, struct plan *p, struct apply_result *res,
                    struct problem *reterr)
{
        static const char *const names[] = {
                "smtpd_tls_security_level",
                "smtp_tls_security_level",
                "smtpd_tls_chain_files",
                "smtpd_tls_protocols",
                "smtpd_tls_mandatory_protocols",
                "smtp_tls_protocols",
                "smtp_tls_mandatory_protocols",
                "smtpd_tls_mandatory_ciphers",
                "smtp_tls_mandatory_ciphers",
                "smtpd_tls_exclude_ciphers",
                "smtp_tls_exclude_ciphers",
                "smtpd_tls_auth_only",
                "smtpd_tls_received_header",
                "smtpd_tls_loglevel",
                "smtp_tls_loglevel",
                "smtp_tls_policy_maps",
                NULL,
        };
        char check[PATH_MAX], staged_main[PATH_MAX], master[PATH_MAX], lkg[PATH_MAX];
        char cert_staged[PATH_MAX] = "";
        int r;

        *res = (struct apply_result){ 0 };
        if (!p->main_cf_changed && !p->write_cert && !p->reload)
                return 0;

        /* 1. certificate files, in a directory of their own, loaded by OpenSSL as Postfix will */
        if (p->write_cert) {
                r = stage_cert(cfg, p, cert_staged, sizeof(cert_staged), reterr);
                if (r < 0)
                        return r;
        } else if ((p->main_cf_changed || p->reload) && p->key_path[0]) {
                r = cert_check_files(p->key_path, p->chain_path, time(NULL), NULL, reterr);
                if (r < 0)
                        return r;
        }

        if (!p->main_cf_changed && !p->write_cert)
                goto reload; /* same paths, new content (an ACME renewal): reload only */

        /* 2. main.cf in a check directory that postconf can read */
        r = layout_check_dir(cfg, check, sizeof(check));
        if (r >= 0)
                r = fs_mkdir_p(check, 0700);
        if (r >= 0)
                r = layout_join(check, "main.cf", staged_main, sizeof(staged_main));
        if (r >= 0)
                r = fs_write_file(staged_main, p->main_cf_new, p->new_len, 0644);
        if (r >= 0)
                r = fs_set_mtime_ago(staged_main, MAIN_CF_AGE_SECONDS);
        if (r >= 0) {
                char from[PATH_MAX];
                r = layout_join(cfg->postfix_config_directory, "master.cf", from, sizeof(from));
                if (r >= 0)
                        r = layout_join(check, "master.cf", master, sizeof(master));
                if (r >= 0)
                        r = copy_file(from, master, 0644);
        }
        if (r < 0) {
                problem_set(reterr, PROBLEM_INTERNAL_ERROR, NULL, "cannot stage main.cf: %s",
                            strerror(-r));
                goto fail_unstaged;
        }
        struct spawn_result out;
        r = postconf_check(cfg, check, names, &out);
        add_output(res, "postconf -n", r < 0 ? out.output : NULL);
        spawn_result_done(&out);
        if (r < 0) {
                problem_set(reterr, PROBLEM_POSTFIX_REJECTED, NULL,
                            "postconf refused the new main.cf: %s",
                            res->output ? res->output : strerror(-r));
                goto fail_unstaged;
        }

        /* 3. swap: certificate directory, then main.cf (the switch point) */
        if (cert_staged[0]) {
                if (rename(cert_staged, p->cert_dir) < 0 && errno != EEXIST && errno != ENOTEMPTY) {
                        r = -errno;
                        problem_set(reterr, PROBLEM_INTERNAL_ERROR, NULL,
                                    "cannot install the certificate files: %s", strerror(-r));
                        goto fail_unstaged;
                }
                char parent[PATH_MAX];
                snprintf(parent, sizeof(parent), "%s", p->cert_dir);
                *strrchr(parent, '/') = 0;
                fs_fsync_dir(parent);
                cert_staged[0] = 0;
        }
        if (p->main_cf_changed) {
                r = layout_main_cf_lkg(cfg, lkg, sizeof(lkg));
                if (r >= 0)
                        r = put_main_cf(cfg, staged_main, lkg);
                if (r < 0) {
                        problem_set(reterr, PROBLEM_INTERNAL_ERROR, NULL,
                                    "cannot replace main.cf: %s", strerror(-r));
                        goto fail_unstaged;
                }
                res->swapped = true;
        }
        fs_remove_tree(check);

        /* 4. reload, only when what Postfix loads changed and Postfix runs */
reload:
        res->postfix_running = postfix_is_running(cfg);
        if (p->reload && res->postfix_running) {
                r = reload(cfg, res);
                res->reloaded = true;
                if (r < 0) {
                        problem_set(reterr, PROBLEM_POSTFIX_REJECTED, NULL,
                                    "postfix reload failed: %s",
                                    res->output ? res->output : strerror(-r));
                        reconcile_restore(cfg, p);
                        res->swapped = false;
                        return -EPROTO;
                }
        }
        return 0;

fail_unstaged:
        if (cert_staged[0])
                fs_remove_tree(cert_staged);
        return r < 0 ? r : -EIO;
}

/* Calls fn for every entry <certificate_directory>/<name>/<entry> (dot entries included). */
static void each_cert_entry(const struct config *cfg,
                            void (*fn)(const char *dir, const char *entry, void *arg), void *arg)
{
        DIR *d = opendir(cfg->certificate_directory);
        if (!d)
                return;
        struct dirent *de;
        while ((de = readdir(d))) {
                if (de->d_name[0] == '.')
                        continue;
                char sub[PATH_MAX];
                if (layout_join(cfg->certificate_directory, de->d_name, sub, sizeof(sub)) < 0)
                        continue;
                DIR *s = opendir(sub);
                if (!s)
                        continue;
                struct dirent *e;
                while ((e = readdir(s)))
                        if (!streq(e->d_name, ".") && !streq(e->d_name, ".."))
                                fn(sub, e->d_name, arg);
                closedir(s);
        }
        closedir(d);
}

static void remove_staged(const char *dir, const char *entry, void *arg)
{
        size_t n = strlen(entry);
        char p[PATH_MAX];
        if (entry[0] == '.' && n > 5 && streq(entry + n - 4, ".new") &&
            layout_join(dir, entry, p, sizeof(p)) >= 0)
                fs_remove_tree(p);
}

void reconcile_cleanup_staging(const struct config *cfg)
{
        char check[PATH_MAX];
        if (layout_check_dir(cfg, check, sizeof(check)) >= 0)
                fs_remove_tree(check);
        each_cert_entry(cfg, remove_staged, NULL);
}

struct referenced {
        const char *live, *lkg;
};

/* Keeps the version directories the live or the last-known-good main.cf points at. */
static void remove_unreferenced(const char *dir, const char *entry, void *arg)
{
        const struct referenced *ref = arg;
        char version[PATH_MAX + 1];
        if (entry[0] == '.' ||
            snprintf(version, sizeof(version), "%s/%s/", dir, entry) >= (int)sizeof(version))
                return;
        if (strstr(ref->live, version) || (ref->lkg && strstr(ref->lkg, version)))
                return;
        version[strlen(version) - 1] = 0;
        fs_remove_tree(version);
}

void reconcile_prune_certs(const struct config *cfg)
{
        char main_cf[PATH_MAX], lkg[PATH_MAX];
        _cleanup_free_ char *live = NULL, *old = NULL;
        if (layout_main_cf(cfg, main_cf, sizeof(main_cf)) < 0 ||
            layout_main_cf_lkg(cfg, lkg, sizeof(lkg)) < 0)
                return;
        if (fs_read_file(main_cf, MAIN_CF_MAX, &live, NULL) < 0)
                return;
        if (fs_read_file(lkg, MAIN_CF_MAX, &old, NULL) < 0)
                old = NULL;
        struct referenced ref = { live, old };
        each_cert_entry(cfg, remove_unreferenced, &ref);
}
