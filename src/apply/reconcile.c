/* reconcile.c - plan, stage, validate, swap, reload, restore (see reconcile.h). Worker thread
 * (and start-up, before the worker runs). Order of a swap: certificate files first (in a new
 * directory, so nothing live is overwritten), main.cf last: main.cf is the single switch point,
 * so a crash at any moment leaves Postfix with a complete old or new configuration. */
#include "smtptlsd/reconcile.h"

#include <dirent.h>
#include <unistd.h>
#include <stdio.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "smtptlsd/cdb.h"
#include "smtptlsd/cert.h"
#include "smtptlsd/certsync.h"
#include "smtptlsd/conf.h"
#include "smtptlsd/fault.h"
#include "smtptlsd/fsutil.h"
#include "smtptlsd/layout.h"
#include "smtptlsd/log.h"
#include "smtptlsd/maincf.h"
#include "smtptlsd/metrics.h"
#include "smtptlsd/policy.h"
#include "smtptlsd/postfix.h"
#include "smtptlsd/sealed.h"

#define MAIN_CF_MAX (4u << 20)
/* Postfix re-reads a main.cf modified within the last second or so ("hot"), waiting 300 ms per
 * round, because an editor may still be writing it (src/util/load_file.c). Ours is complete
 * before it gets its name (rename of an fsynced file), so we date it this many seconds back and
 * every Postfix process reads it at once. */
#define MAIN_CF_AGE_SECONDS 2

DEFINE_TRIVIAL_CLEANUP_FUNC(SSL_CTX *, SSL_CTX_free)

void reconcile_ca_file(const struct config *cfg, const struct settings *s, char *buf, size_t size)
{
        snprintf(buf, size, "%s",
                 streq(s->outbound_ca, OUTBOUND_CA_SYSTEM) ? cfg->system_ca_file : s->outbound_ca);
}

int reconcile_check_ca_file(const char *path, const char *field, struct problem *reterr)
{
        _cleanup_(SSL_CTX_freep) SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
        if (!ctx)
                return problem_set(reterr, PROBLEM_INTERNAL_ERROR, NULL, "out of memory");
        struct stat st;
        if (stat(path, &st) < 0 || !S_ISREG(st.st_mode) ||
            SSL_CTX_load_verify_locations(ctx, path, NULL) != 1) {
                ERR_clear_error();
                return problem_set(reterr, PROBLEM_INVALID_VALUE, field,
                                   "%s is not a readable file of PEM CA certificates: Postfix "
                                   "could not load it as smtp_tls_CAfile (and would then disable "
                                   "TLS in its smtp client)",
                                   path);
        }
        if (sk_X509_OBJECT_num(X509_STORE_get0_objects(SSL_CTX_get_cert_store(ctx))) < 1)
                return problem_set(reterr, PROBLEM_INVALID_VALUE, field, "%s holds no certificate",
                                   path);
        return 0;
}

int desired_load_settings(struct db_conn *c, struct desired *d, struct problem *reterr)
{
        *d = (struct desired){ 0 };
        int r = store_settings_load(c, &d->settings, NULL, false, reterr);
        if (r < 0)
                return r;
        const char *names[SETTINGS_CERTS_MAX] = { d->settings.certificate,
                                                  d->settings.additional_certificate };
        for (size_t i = 0; i < SETTINGS_CERTS_MAX && names[i][0]; i++) {
                r = store_cert_by_name(c, names[i], &d->certs[i], reterr);
                if (r == -ENOENT)
                        return problem_set(reterr, PROBLEM_CERTIFICATE_NOT_FOUND,
                                           i ? "/additional_certificate" : "/certificate",
                                           "certificate '%s' is gone", names[i]);
                if (r < 0)
                        return r;
                d->n_certs = i + 1;
        }
        return 0;
}

int desired_load(struct db_conn *c, struct desired *d, struct problem *reterr)
{
        int r = desired_load_settings(c, d, reterr);
        if (r < 0)
                return r;
        int64_t rows = 0;
        r = store_policies_render(c, &d->map_text, &d->map_len, &d->map_entries, &rows, reterr);
        if (r < 0)
                return r;
        d->map_managed = d->settings.managed || rows > 0;
        return 0;
}

void desired_done(struct desired *d)
{
        for (size_t i = 0; i < d->n_certs; i++)
                cert_row_done(&d->certs[i]);
        d->n_certs = 0;
        if (!d->map_borrowed)
                free(d->map_text);
        d->map_text = NULL;
}

void plan_done(struct plan *p)
{
        free(p->main_cf_old);
        free(p->main_cf_new);
        for (size_t i = 0; i < p->n_certs; i++) {
                free(p->certs[i].fullchain_pem);
                free_wiped(p->certs[i].key_pem);
        }
        free(p->map_param);
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

/* Where a bound certificate's files are (an imported one's version directory, which the apply
 * writes when it does not exist yet; an ACME one's live directory). */
static int plan_one_cert(const struct config *cfg, const struct cert_row *row, const char *field,
                         struct plan_cert *pc, struct problem *reterr)
{
        char dir[PATH_MAX];
        int r = 0;
        pc->field = field;
        snprintf(pc->name, sizeof(pc->name), "%s", row->name);
        snprintf(pc->key_type, sizeof(pc->key_type), "%s", row->key_type);
        snprintf(pc->fingerprint, sizeof(pc->fingerprint), "%s", row->sha256_fingerprint);
        if (streq(row->type, "imported")) {
                r = layout_imported_dir(cfg, row->name, row->sha256_fingerprint, pc->dir,
                                        sizeof(pc->dir));
                if (r >= 0)
                        r = layout_join(pc->dir, "privkey.pem", pc->key_path, sizeof(pc->key_path));
                if (r >= 0)
                        r = layout_join(pc->dir, "fullchain.pem", pc->chain_path,
                                        sizeof(pc->chain_path));
        } else if (streq(row->type, "acme")) {
                snprintf(pc->acme_name, sizeof(pc->acme_name), "%s", row->name);
                r = layout_acme_dir(cfg, row->name, dir, sizeof(dir));
                if (r >= 0)
                        r = layout_join(dir, "privkey.pem", pc->key_path, sizeof(pc->key_path));
                if (r >= 0)
                        r = layout_join(dir, "fullchain.pem", pc->chain_path,
                                        sizeof(pc->chain_path));
        }
        if (r < 0)
                return problem_set(reterr, PROBLEM_INTERNAL_ERROR, NULL,
                                   "certificate path too long");
        if (!streq(row->type, "imported"))
                return 0;
        pc->write = !file_exists(pc->key_path) || !file_exists(pc->chain_path);
        if (!pc->write)
                return 0;
        if (asprintf(&pc->fullchain_pem, "%s%s", row->certificate_pem ? row->certificate_pem : "",
                     row->chain_pem ? row->chain_pem : "") < 0) {
                pc->fullchain_pem = NULL;
                return -ENOMEM;
        }
        return cert_row_private_key(row, cfg->kek, &pc->key_pem, reterr);
}

int reconcile_plan(const struct config *cfg, const struct desired *d, struct plan *p,
                   struct problem *reterr)
{
        char path[PATH_MAX];
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

        struct cert_files files[SETTINGS_CERTS_MAX] = { 0 };
        size_t n_files = 0;
        for (size_t i = 0; i < d->n_certs; i++) {
                r = plan_one_cert(cfg, &d->certs[i], i ? "/additional_certificate" : "/certificate",
                                  &p->certs[i], reterr);
                p->n_certs = i + 1;
                if (r < 0)
                        return r;
                p->write_cert = p->write_cert || p->certs[i].write;
                if (p->certs[i].key_path[0])
                        files[n_files++] =
                            (struct cert_files){ p->certs[i].key_path, p->certs[i].chain_path };
        }
        /* a CAfile Postfix cannot read disables TLS in its smtp client: rendered when readable */
        reconcile_ca_file(cfg, &d->settings, p->ca_file, sizeof(p->ca_file));
        const char *ca_file = p->ca_file[0] && access(p->ca_file, R_OK) == 0 ? p->ca_file : NULL;
        p->n_params = settings_render(&d->settings, files, n_files, ca_file, p->chain_value,
                                      sizeof(p->chain_value), p->params);
        /* The administrator's own policy maps (and anything else listed) stay after ours. */
        char map[PATH_MAX], ours[PATH_MAX + 32];
        _cleanup_free_ char *live_maps = NULL;
        r = layout_policy_map(cfg, map, sizeof(map));
        if (r >= 0 &&
            snprintf(ours, sizeof(ours), "%s:%s", cfg->policy_map_type, map) >= (int)sizeof(ours))
                r = -ENAMETOOLONG;
        if (r < 0)
                return problem_set(reterr, PROBLEM_INTERNAL_ERROR, NULL,
                                   "policy map path too long");
        if (maincf_get(p->main_cf_old, p->old_len, "smtp_tls_policy_maps", &live_maps) < 0)
                live_maps = NULL;
        /* Still ours while main.cf names our map: the last policy deleted must leave an empty
         * map, not the old one in force. */
        if (!d->map_managed && maincf_maps_names(live_maps, map))
                p->map_managed = true;
        if (d->map_managed || p->map_managed) {
                char index[PATH_MAX + 8];
                if (maincf_maps_merge(live_maps, ours, map, &p->map_param) < 0)
                        return -ENOMEM;
                p->params[p->n_params++] =
                    (struct maincf_param){ "smtp_tls_policy_maps", p->map_param };
                snprintf(index, sizeof(index), "%s%s", map,
                         layout_map_suffix(cfg->policy_map_type));
                p->map_managed = true;
                p->map_text = d->map_text;
                p->map_len = d->map_len;
                p->map_entries = d->map_entries;
                p->map_changed =
                    !fs_same_content(map, d->map_text, d->map_len) || !file_exists(index);
        }
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
                for (size_t i = 0; p->expect_starttls && i < p->n_certs; i++) {
                        size_t o = strlen(p->expect_fingerprint);
                        snprintf(p->expect_fingerprint + o, sizeof(p->expect_fingerprint) - o,
                                 "%s%s", i ? "," : "", p->certs[i].fingerprint);
                }
        }
        return 0;
}

/* A unified diff (no context lines) of two maps whose entries are sorted by key. */
static char *map_diff(const char *old, size_t old_len, const char *new, size_t new_len)
{
        struct buf {
                char *p;
                size_t len, cap;
        } out = { 0 };
        FILE *f = open_memstream(&out.p, &out.len);
        if (!f)
                return NULL;
        const char *a = old, *ae = old + old_len, *b = new, *be = new + new_len;
        size_t la = 1, lb = 1;
        bool header = false;
        while (a < ae || b < be) {
                const char *an = a < ae ? memchr(a, '\n', (size_t)(ae - a)) : NULL;
                const char *bn = b < be ? memchr(b, '\n', (size_t)(be - b)) : NULL;
                size_t alen = a < ae ? (an ? (size_t)(an - a) : (size_t)(ae - a)) : 0;
                size_t blen = b < be ? (bn ? (size_t)(bn - b) : (size_t)(be - b)) : 0;
                int cmp;
                if (a >= ae)
                        cmp = 1;
                else if (b >= be)
                        cmp = -1;
                else {
                        size_t m = alen < blen ? alen : blen;
                        cmp = memcmp(a, b, m);
                        if (cmp == 0 && alen != blen)
                                cmp = alen < blen ? -1 : 1;
                }
                if (cmp != 0 && !header) {
                        fprintf(f, "--- %s (live)\n+++ %s (planned)\n", LAYOUT_POLICY_MAP,
                                LAYOUT_POLICY_MAP);
                        header = true;
                }
                if (cmp == 0) {
                        a += alen + (an ? 1 : 0);
                        b += blen + (bn ? 1 : 0);
                        la++;
                        lb++;
                } else if (cmp < 0) {
                        fprintf(f, "@@ -%zu,1 +%zu,0 @@\n-%.*s\n", la, lb - 1, (int)alen, a);
                        a += alen + (an ? 1 : 0);
                        la++;
                } else {
                        fprintf(f, "@@ -%zu,0 +%zu,1 @@\n+%.*s\n", la - 1, lb, (int)blen, b);
                        b += blen + (bn ? 1 : 0);
                        lb++;
                }
        }
        fclose(f);
        return out.p;
}

json_t *reconcile_plan_json(const struct config *cfg, const struct plan *p)
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
        json_t *plan = json_pack("{s:o, s:b, s:b}", "main_cf", changes, "reload", p->reload,
                                 "postmap", p->map_changed);
        char *diff = NULL;
        if (p->map_managed && p->map_changed) {
                char map[PATH_MAX];
                _cleanup_free_ char *live = NULL;
                size_t live_len = 0;
                if (layout_policy_map(cfg, map, sizeof(map)) < 0 ||
                    fs_read_file(map, 1u << 30, &live, &live_len) < 0)
                        live_len = 0;
                diff = map_diff(live ? live : "", live_len, p->map_text, p->map_len);
        }
        json_object_set_new(plan, "tls_policy_diff", json_string(diff ? diff : ""));
        free(diff);
        return plan;
}

json_t *reconcile_settings_warnings(const struct desired *d, const struct plan *p)
{
        json_t *warnings = json_array();
        _cleanup_free_ char *sasl = NULL;
        /* the administrator's parameter, as written (a boolean; "$name" values are not
         * expanded: then no warning) */
        const char *text = p->main_cf_new ? p->main_cf_new : p->main_cf_old;
        size_t len = p->main_cf_new ? p->new_len : p->old_len;
        bool sasl_on = text && maincf_get(text, len, "smtpd_sasl_auth_enable", &sasl) >= 0 &&
                       strcasecmp(sasl, "yes") == 0;
        settings_state_warnings(&d->settings, sasl_on, warnings);
        return warnings;
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

/* The problem code of a failed file operation: a full disk or quota is the operator's to fix
 * (507, logged), anything else a fault of ours (500). */
static enum problem_code fs_problem(int r)
{
        if (r == -ENOSPC || r == -EDQUOT) {
                log_error("the disk holding the Postfix or certificate files is full: %s",
                          strerror(-r));
                return PROBLEM_INSUFFICIENT_STORAGE;
        }
        return PROBLEM_INTERNAL_ERROR;
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

static int read_pem(const char *path, char **ret, size_t *len, struct problem *reterr)
{
        int r = fs_read_file(path, CERT_BUNDLE_MAX, ret, len);
        if (r < 0)
                return problem_set(reterr, PROBLEM_CERTIFICATE_UNUSABLE, NULL, "cannot read %s: %s",
                                   path, strerror(-r));
        return 0;
}

/* Reads a key and fullchain (an ACME certificate's, acme_name not empty, through
 * certsync_acme_read(): beneath the client's tree, which must be root's) and loads the bytes as
 * Postfix will load the files. */
static int check_pair(const struct config *cfg, const char *acme_name, const char *key_path,
                      const char *chain_path, time_t now, struct cert_info *info,
                      struct problem *reterr)
{
        _cleanup_free_ char *chain = NULL;
        char *key = NULL;
        size_t key_len = 0, chain_len = 0;
        int r;
        if (acme_name[0]) {
                r = certsync_acme_read(cfg, acme_name, "privkey.pem", &key, &key_len, reterr);
                if (r >= 0)
                        r = certsync_acme_read(cfg, acme_name, "fullchain.pem", &chain, &chain_len,
                                               reterr);
        } else {
                r = read_pem(key_path, &key, &key_len, reterr);
                if (r >= 0)
                        r = read_pem(chain_path, &chain, &chain_len, reterr);
        }
        if (r >= 0) {
                const struct cert_pair pair = { .key_path = key_path,
                                                .chain_path = chain_path,
                                                .key_pem = key,
                                                .key_len = key_len,
                                                .chain_pem = chain,
                                                .chain_len = chain_len };
                r = cert_check_pem(&pair, now, info, reterr);
        }
        if (key) {
                OPENSSL_cleanse(key, key_len);
                free(key);
        }
        return r;
}

int reconcile_check_cert(const struct config *cfg, const struct plan_cert *pc, time_t now,
                         struct cert_info *info, struct problem *reterr)
{
        /* An imported certificate's new files exist only after the apply: before it (a dry
         * run), the plan's copy of them is what Postfix will load. */
        if (pc->write && pc->fullchain_pem && !pc->acme_name[0]) {
                const struct cert_pair pair = {
                        .key_path = pc->key_path,
                        .chain_path = pc->chain_path,
                        .key_pem = pc->key_pem ? pc->key_pem : "",
                        .key_len = pc->key_pem ? strlen(pc->key_pem) : 0,
                        .chain_pem = pc->fullchain_pem,
                        .chain_len = strlen(pc->fullchain_pem),
                };
                return cert_check_pem(&pair, now, info, reterr);
        }
        return check_pair(cfg, pc->acme_name, pc->key_path, pc->chain_path, now, info, reterr);
}

static int stage_cert(const struct config *cfg, const struct plan_cert *p, char *staged,
                      size_t size, struct problem *reterr)
{
        char key[PATH_MAX], chain[PATH_MAX], parent[PATH_MAX];
        int r;

        /* <certdir>/<name>/.<version>.new, renamed to <version> at the swap */
        snprintf(parent, sizeof(parent), "%s", p->dir);
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
                return problem_set(reterr, fs_problem(r), NULL,
                                   "cannot write the certificate files under %s: %s", parent,
                                   strerror(-r));
        r = check_pair(cfg, "", key, chain, time(NULL), NULL, reterr);
        if (r < 0) {
                if (reterr && !reterr->field[0])
                        snprintf(reterr->field, sizeof(reterr->field), "%s", p->field);
                fs_remove_tree(staged);
                rmdir(parent); /* a refused first version leaves no trace */
        }
        return r;
}

/* Renames a staged version directory into place. A version directory that exists but lost a
 * file (deleted behind our back) is moved aside and rendered again from the database. */
static int install_cert(const struct plan_cert *pc, const char *staged, struct problem *reterr)
{
        char broken[PATH_MAX + 16];
        int r;
        if (snprintf(broken, sizeof(broken), "%s.broken", staged) >= (int)sizeof(broken))
                return problem_set(reterr, PROBLEM_INTERNAL_ERROR, NULL,
                                   "certificate path too long");
        fs_remove_tree(broken);
        if (rename(pc->dir, broken) < 0 && errno != ENOENT) {
                r = -errno;
                return problem_set(reterr, fs_problem(r), NULL,
                                   "cannot replace the damaged certificate files: %s",
                                   strerror(-r));
        }
        if (rename(staged, pc->dir) < 0) {
                r = -errno;
                return problem_set(reterr, fs_problem(r), NULL,
                                   "cannot install the certificate files: %s", strerror(-r));
        }
        fs_remove_tree(broken);
        char parent[PATH_MAX];
        snprintf(parent, sizeof(parent), "%s", pc->dir);
        *strrchr(parent, '/') = 0;
        fs_fsync_dir(parent);
        return 0;
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

/* Puts the last-known-good policy index and text back (both kept by the swap). */
static int restore_map(const struct config *cfg)
{
        char map[PATH_MAX], lkg[PATH_MAX], from[PATH_MAX + 8], to[PATH_MAX + 8], tmp[PATH_MAX + 16];
        const char *suffix = layout_map_suffix(cfg->policy_map_type);
        int r = layout_policy_map(cfg, map, sizeof(map));
        if (r >= 0)
                r = layout_policy_lkg(cfg, lkg, sizeof(lkg));
        if (r < 0)
                return r;
        const char *sfx[] = { suffix, "" };
        for (size_t i = 0; i < 2; i++) {
                snprintf(from, sizeof(from), "%s%s", lkg, sfx[i]);
                snprintf(to, sizeof(to), "%s%s", map, sfx[i]);
                snprintf(tmp, sizeof(tmp), "%s.restore", from);
                if (access(from, F_OK) < 0)
                        continue;
                /* a copy, for the same reason as in stage_map */
                r = fs_copy_file(from, tmp, 0644);
                if (r >= 0)
                        r = fs_replace(tmp, to, NULL);
                if (r < 0)
                        return r;
        }
        return 0;
}

int reconcile_restore(const struct config *cfg, const struct plan *p,
                      const struct apply_result *res)
{
        char lkg[PATH_MAX], staged[PATH_MAX], state[PATH_MAX];
        if (res->map_swapped) {
                int k = restore_map(cfg);
                if (k < 0)
                        log_error("cannot restore the last-known-good policy map: %s",
                                  strerror(-k));
        }
        if (!res->swapped)
                return 0;
        int r = layout_main_cf_lkg(cfg, lkg, sizeof(lkg));
        if (r >= 0)
                r = layout_state_dir(cfg, state, sizeof(state));
        if (r >= 0)
                r = layout_join(state, "main.cf.restore", staged, sizeof(staged));
        /* A second name for the last-known-good file, renamed over main.cf: no data is written,
         * so a full disk cannot stop the way back. */
        if (r >= 0 && (unlink(staged) < 0 && errno != ENOENT))
                r = -errno;
        if (r >= 0 && link(lkg, staged) < 0)
                r = errno == EXDEV || errno == EPERM ? copy_file(lkg, staged, 0644) : -errno;
        if (r >= 0)
                r = put_main_cf(cfg, staged, NULL);
        if (r < 0) {
                unlink(staged);
                log_error("cannot restore the last-known-good main.cf: %s", strerror(-r));
                return r;
        }
        if (p->reload && postfix_is_running(cfg)) {
                struct apply_result back = { 0 };
                r = reload(cfg, &back);
                if (r < 0)
                        log_error("postfix reload after restoring main.cf failed: %s",
                                  back.output ? back.output : "");
                apply_result_done(&back);
        }
        return r;
}

/* Whether the dump of the built index holds exactly the rendered entries: same keys, same
 * values, no more, no fewer (postmap -s prints them in its own order). */
static int verify_entries(const struct plan *p, struct policy_map_entry *got, size_t n_got,
                          struct problem *reterr);

static int verify_dump(const struct plan *p, const char *dump, size_t dump_len,
                       struct problem *reterr)
{
        struct policy_map_entry *got = NULL;
        size_t n_got = 0;
        if (policy_map_parse(dump, dump_len, &got, &n_got) < 0)
                return problem_set(reterr, PROBLEM_INTERNAL_ERROR, NULL,
                                   "cannot read the policy map back");
        return verify_entries(p, got, n_got, reterr);
}

/* Takes ownership of got. */
static int verify_entries(const struct plan *p, struct policy_map_entry *got, size_t n_got,
                          struct problem *reterr)
{
        struct policy_map_entry *want = NULL;
        size_t n_want = 0;
        int r = policy_map_parse(p->map_text, p->map_len, &want, &n_want);
        if (r < 0) {
                policy_map_entries_free(want, n_want);
                policy_map_entries_free(got, n_got);
                return problem_set(reterr, PROBLEM_INTERNAL_ERROR, NULL,
                                   "cannot read the policy map back");
        }
        policy_map_entries_sort(got, n_got);
        policy_map_entries_sort(want, n_want);
        size_t bad = n_got == n_want ? n_want : 0;
        for (size_t i = 0; n_got == n_want && i < n_want; i++)
                if (!streq(want[i].key, got[i].key) || !streq(want[i].value, got[i].value)) {
                        bad = i;
                        break;
                }
        if (n_got != n_want || bad < n_want)
                r = problem_set(reterr, PROBLEM_POSTFIX_REJECTED, NULL,
                                "the built policy map holds %zu entries, %zu expected%s%s", n_got,
                                n_want, bad < n_want ? "; first difference at " : "",
                                bad < n_want ? want[bad].key : "");
        policy_map_entries_free(want, n_want);
        policy_map_entries_free(got, n_got);
        return r;
}

static int stage_map(const struct config *cfg, struct plan *p, struct apply_result *res,
                     struct problem *reterr)
{
        char state[PATH_MAX], staged[PATH_MAX], map[PATH_MAX], lkg[PATH_MAX];
        char s_index[PATH_MAX + 8], index[PATH_MAX + 8], lkg_index[PATH_MAX + 8];
        const char *suffix = layout_map_suffix(cfg->policy_map_type);
        struct spawn_result out = { 0 };
        int r = layout_state_dir(cfg, state, sizeof(state));
        if (r >= 0)
                r = fs_mkdir_p(state, 0700);
        if (r >= 0)
                r = layout_policy_staged(cfg, staged, sizeof(staged));
        if (r >= 0)
                r = layout_policy_map(cfg, map, sizeof(map));
        if (r >= 0)
                r = layout_policy_lkg(cfg, lkg, sizeof(lkg));
        if (r < 0)
                return problem_set(reterr, fs_problem(r), NULL, "cannot stage the policy map: %s",
                                   strerror(-r));
        snprintf(s_index, sizeof(s_index), "%s%s", staged, suffix);
        snprintf(index, sizeof(index), "%s%s", map, suffix);
        snprintf(lkg_index, sizeof(lkg_index), "%s%s", lkg, suffix);
        unlink(s_index);
        r = fs_write_file(staged, p->map_text, p->map_len, 0644);
        if (r < 0) {
                problem_set(reterr, fs_problem(r), NULL, "cannot write the policy map: %s",
                            strerror(-r));
                goto fail;
        }
        /* postmap writes hash/btree/lmdb in place: build under the staged name, never the live */
        r = postmap_build(cfg, cfg->policy_map_type, staged, &out);
        res->postmap = true;
        if (r < 0) {
                add_output(res, "postmap", out.output);
                spawn_result_done(&out);
                problem_set(reterr, PROBLEM_POSTFIX_REJECTED, NULL, "postmap failed: %s",
                            res->output ? res->output : strerror(-r));
                goto fail;
        }
        spawn_result_done(&out);
        if (streq(cfg->policy_map_type, "cdb")) {
                /* postmap -s has no sequence operation for cdb: read the file itself */
                struct policy_map_entry *got = NULL;
                size_t n_got = 0;
                r = cdb_read_entries(s_index, &got, &n_got);
                if (r < 0)
                        problem_set(reterr, PROBLEM_POSTFIX_REJECTED, NULL,
                                    "cannot read the built cdb map %s: %s", s_index, strerror(-r));
                else
                        r = verify_entries(p, got, n_got, reterr);
                if (r < 0)
                        goto fail;
                goto verified;
        }
        r = postmap_dump(cfg, cfg->policy_map_type, staged, &out);
        if (r < 0) {
                /* the dump's stdout is the entries; why it failed is on stderr */
                add_output(res, "postmap -s", !isempty(out.errors) ? out.errors : out.output);
                problem_set(reterr, PROBLEM_POSTFIX_REJECTED, NULL,
                            "postmap -s cannot read the built map: %s",
                            res->output ? res->output : strerror(-r));
        } else {
                r = verify_dump(p, out.output, out.output_len, reterr);
        }
        spawn_result_done(&out);
        if (r < 0)
                goto fail;
verified:
        fault_point("after_postmap");
        r = fs_fsync_dir(state);
        /* The previous index is kept as a COPY: a running smtp process notices a new map only
         * when the file it has open loses its last link (or changes), so the replaced inode must
         * not live on under another name. Index first (what Postfix reads), then the text. */
        if (r >= 0 && access(index, F_OK) == 0)
                r = fs_copy_file(index, lkg_index, 0644);
        if (r >= 0)
                r = fs_replace(s_index, index, NULL);
        if (r >= 0) {
                res->map_swapped = true;
                r = fs_replace(staged, map, lkg);
        }
        if (r < 0) {
                problem_set(reterr, fs_problem(r), NULL, "cannot install the policy map: %s",
                            strerror(-r));
                goto fail;
        }
        fault_point("after_map_rename");
        return 0;
fail:
        unlink(staged);
        unlink(s_index);
        return r < 0 ? r : -EIO;
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
                "smtpd_tls_mandatory_exclude_ciphers",
                "smtp_tls_mandatory_exclude_ciphers",
                "smtpd_tls_auth_only",
                "smtpd_tls_received_header",
                "smtpd_tls_loglevel",
                "smtp_tls_loglevel",
                "smtp_tls_policy_maps",
                "smtp_tls_CAfile",
                NULL,
        };
        char check[PATH_MAX], staged_main[PATH_MAX], master[PATH_MAX], lkg[PATH_MAX];
        char cert_staged[SETTINGS_CERTS_MAX][PATH_MAX] = { "" };
        int r = 0;

        *res = (struct apply_result){ 0 };
        if (!p->main_cf_changed && !p->write_cert && !p->reload && !p->map_changed)
                return 0;

        /* 1. certificate files, in a directory of their own, loaded by OpenSSL as Postfix will */
        for (size_t i = 0; i < p->n_certs; i++) {
                const struct plan_cert *pc = &p->certs[i];
                if (pc->write)
                        r = stage_cert(cfg, pc, cert_staged[i], sizeof(cert_staged[i]), reterr);
                else if ((p->main_cf_changed || p->reload) && pc->key_path[0]) {
                        r = reconcile_check_cert(cfg, pc, time(NULL), NULL, reterr);
                        if (r < 0 && reterr && !reterr->field[0])
                                snprintf(reterr->field, sizeof(reterr->field), "%s", pc->field);
                }
                if (r < 0)
                        goto fail_unstaged;
        }

        /* 2. the policy map: postmap under a new name, check every entry, swap */
        if (p->map_changed) {
                r = stage_map(cfg, p, res, reterr);
                if (r < 0)
                        goto fail_unstaged;
        }

        if (!p->main_cf_changed && !p->write_cert)
                goto reload; /* only the map, or an ACME renewal (same paths, new content) */

        /* 3. main.cf in a check directory that postconf can read */
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
                problem_set(reterr, fs_problem(r), NULL, "cannot stage main.cf: %s", strerror(-r));
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

        fault_point("after_stage");

        /* 4. swap: certificate directory, then main.cf (the switch point) */
        for (size_t i = 0; i < p->n_certs; i++) {
                if (!cert_staged[i][0])
                        continue;
                r = install_cert(&p->certs[i], cert_staged[i], reterr);
                if (r < 0)
                        goto fail_unstaged;
                cert_staged[i][0] = 0;
        }
        if (p->main_cf_changed) {
                r = layout_main_cf_lkg(cfg, lkg, sizeof(lkg));
                if (r >= 0)
                        r = put_main_cf(cfg, staged_main, lkg);
                if (r < 0) {
                        problem_set(reterr, fs_problem(r), NULL, "cannot replace main.cf: %s",
                                    strerror(-r));
                        goto fail_unstaged;
                }
                res->swapped = true;
                fault_point("after_rename");
        }
        fs_remove_tree(check);

        /* 5. reload, only when main.cf or the certificate changed (Postfix notices a new
         * indexed map by itself) and Postfix runs */
reload:
        res->postfix_running = postfix_is_running(cfg);
        if (spawn_cancelled()) {
                /* The daemon is stopping: "not running" is no answer, and no reload may run.
                 * The committed files go back; the job runs again at the next start. */
                problem_set(reterr, PROBLEM_INTERNAL_ERROR, NULL, "the daemon is stopping");
                reconcile_restore(cfg, p, res);
                res->swapped = res->map_swapped = false;
                return -ECANCELED;
        }
        if (p->reload && res->postfix_running) {
                r = reload(cfg, res);
                res->reloaded = true;
                if (r < 0) {
                        metrics_count(METRIC_RELOADS_FAILED, 1);
                        problem_set(reterr, PROBLEM_POSTFIX_REJECTED, NULL,
                                    "postfix reload failed: %s",
                                    res->output ? res->output : strerror(-r));
                        reconcile_restore(cfg, p, res);
                        res->swapped = res->map_swapped = false;
                        return -EPROTO;
                }
                fault_point("after_reload");
        }
        return 0;

fail_unstaged:
        for (size_t i = 0; i < SETTINGS_CERTS_MAX; i++)
                if (cert_staged[i][0])
                        fs_remove_tree(cert_staged[i]);
        if (layout_check_dir(cfg, check, sizeof(check)) >= 0)
                fs_remove_tree(check);
        if (res->map_swapped) {
                reconcile_restore(cfg, p, res);
                res->map_swapped = false;
        }
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
        if (entry[0] == '.' && n > 5 &&
            (streq(entry + n - 4, ".new") || (n > 12 && streq(entry + n - 11, ".new.broken"))) &&
            layout_join(dir, entry, p, sizeof(p)) >= 0)
                fs_remove_tree(p);
}

void reconcile_cleanup_staging(const struct config *cfg)
{
        char check[PATH_MAX], state[PATH_MAX];
        if (layout_check_dir(cfg, check, sizeof(check)) >= 0)
                fs_remove_tree(check);
        /* leftovers of an interrupted restore or map build */
        if (layout_state_dir(cfg, state, sizeof(state)) >= 0) {
                DIR *d = opendir(state);
                struct dirent *de;
                while (d && (de = readdir(d))) {
                        size_t n = strlen(de->d_name);
                        char path[PATH_MAX];
                        bool stale = (n > 8 && streq(de->d_name + n - 8, ".restore")) ||
                                     (n > 4 && streq(de->d_name + n - 4, ".tmp")) ||
                                     strncmp(de->d_name, "tls_policy.new", 14) == 0;
                        if (stale && layout_join(state, de->d_name, path, sizeof(path)) >= 0)
                                unlink(path);
                }
                if (d)
                        closedir(d);
        }
        each_cert_entry(cfg, remove_staged, NULL);
}

/* Keeps only the version directories the live main.cf points at: those some parameter's value
 * names, as Postfix reads main.cf (a commented-out line names nothing). The last-known-good
 * main.cf is needed only inside an apply (restore before commit), and pruning runs after the
 * commit: an old private key must not outlive its rotation or deletion. */
static void remove_unreferenced(const char *dir, const char *entry, void *arg)
{
        const char *live = arg;
        char version[PATH_MAX + 1];
        if (entry[0] == '.' ||
            snprintf(version, sizeof(version), "%s/%s/", dir, entry) >= (int)sizeof(version))
                return;
        if (strstr(live, version))
                return;
        version[strlen(version) - 1] = 0;
        fs_remove_tree(version);
}

/* Every value of main.cf, one a line. */
static int collect_value(const char *name, const char *value, void *arg)
{
        (void)name;
        return fputs(value, arg) < 0 || fputc('\n', arg) < 0 ? -ENOMEM : 0;
}

void reconcile_prune_certs(const struct config *cfg)
{
        char main_cf[PATH_MAX];
        _cleanup_free_ char *text = NULL, *values = NULL;
        size_t len, values_len = 0;
        if (layout_main_cf(cfg, main_cf, sizeof(main_cf)) < 0)
                return;
        if (fs_read_file(main_cf, MAIN_CF_MAX, &text, &len) < 0)
                return;
        FILE *f = open_memstream(&values, &values_len);
        if (!f)
                return;
        int r = maincf_each(text, len, collect_value, f);
        if (fclose(f) != 0 || r < 0)
                return; /* nothing is removed on doubt */
        each_cert_entry(cfg, remove_unreferenced, values);
        /* Empty <name> directories of certificates no longer rendered go too. */
        DIR *d = opendir(cfg->certificate_directory);
        struct dirent *de;
        while (d && (de = readdir(d))) {
                char sub[PATH_MAX];
                if (de->d_name[0] != '.' &&
                    layout_join(cfg->certificate_directory, de->d_name, sub, sizeof(sub)) >= 0)
                        rmdir(sub); /* fails, harmlessly, when not empty */
        }
        if (d)
                closedir(d);
}
