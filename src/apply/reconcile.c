/* reconcile.c - an apply of a plan (see reconcile.h): stage certificate files and the policy map
 * (stage.c), stage main.cf (and master.cf, mastercf.c's) and have postconf and postfix check
 * them, swap, reload; and the restore of the last-known-good files. Worker thread (and start-up,
 * before the worker runs). Order of a swap: certificate files first (in a new directory, so
 * nothing live is overwritten), then master.cf, main.cf last; each file is renamed whole, so a
 * crash at any moment leaves each old or new, and the job, not yet committed, runs again at the
 * next start: nothing in master.cf needs what a new main.cf alone brings (the certificate is
 * main.cf's already, or the write that binds it is the same one). */
#include "apply/reconcile.h"

#include <stdio.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "apply/fsutil.h"
#include "apply/layout.h"
#include "apply/postfix.h"
#include "conf.h"
#include "core/managed.h"
#include "fault.h"
#include "log.h"
#include "metrics.h"

/* Postfix re-reads a main.cf modified within the last second or so ("hot"), waiting 300 ms per
 * round, because an editor may still be writing it (src/util/load_file.c). Ours is complete
 * before it gets its name (rename of an fsynced file), so we date it this many seconds back and
 * every Postfix process reads it at once. */
#define MAIN_CF_AGE_SECONDS 2

DEFINE_TRIVIAL_CLEANUP_FUNC(SSL_CTX *, SSL_CTX_free)

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

static int copy_file(const char *from, const char *to, mode_t mode)
{
        _cleanup_free_ char *data = NULL;
        size_t len = 0;
        int r = fs_read_file(from, LAYOUT_MAIN_CF_MAX, &data, &len);
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

/* master.cf is read by postfix reload and postfix start, not by running services: no date to
 * move back, but a rename of a complete file all the same. */
static int put_master_cf(const struct config *cfg, const char *staged, const char *lkg)
{
        char master_cf[PATH_MAX];
        int r = layout_master_cf(cfg, master_cf, sizeof(master_cf));
        if (r >= 0)
                r = fs_replace(staged, master_cf, lkg);
        return r;
}

/* A last-known-good file put back under its live name by a second name (a link, else a copy):
 * no data is written, so a full disk cannot stop the way back. */
static int restore_lkg(const struct config *cfg, const char *lkg, const char *name,
                       int (*put)(const struct config *, const char *, const char *))
{
        char state[PATH_MAX], staged[PATH_MAX];
        int r = layout_state_dir(cfg, state, sizeof(state));
        if (r >= 0)
                r = layout_join(state, name, staged, sizeof(staged));
        if (r >= 0 && (unlink(staged) < 0 && errno != ENOENT))
                r = -errno;
        if (r >= 0 && link(lkg, staged) < 0)
                r = errno == EXDEV || errno == EPERM ? copy_file(lkg, staged, 0644) : -errno;
        if (r >= 0)
                r = put(cfg, staged, NULL);
        if (r < 0)
                unlink(staged);
        return r;
}

static int reload(const struct config *cfg, struct apply_result *res)
{
        struct spawn_result out;
        int r = postfix_reload(cfg, &out);
        apply_result_add_output(res, "postfix reload", out.output);
        spawn_result_done(&out);
        return r;
}

int reconcile_restore(const struct config *cfg, const struct plan *p,
                      const struct apply_result *res)
{
        char lkg[PATH_MAX];
        if (res->map_swapped) {
                int k = stage_map_restore(cfg);
                if (k < 0)
                        log_error("cannot restore the last-known-good policy map: %s",
                                  strerror(-k));
        }
        int r = 0, k;
        if (res->master_swapped) {
                r = layout_master_cf_lkg(cfg, lkg, sizeof(lkg));
                if (r >= 0)
                        r = restore_lkg(cfg, lkg, "master.cf.restore", put_master_cf);
                if (r < 0)
                        log_error("cannot restore the last-known-good master.cf: %s", strerror(-r));
        }
        if (res->swapped) {
                k = layout_main_cf_lkg(cfg, lkg, sizeof(lkg));
                if (k >= 0)
                        k = restore_lkg(cfg, lkg, "main.cf.restore", put_main_cf);
                if (k < 0) {
                        log_error("cannot restore the last-known-good main.cf: %s", strerror(-k));
                        return k;
                }
        }
        if (!res->swapped && !res->master_swapped)
                return r;
        int restored = r;
        if (p->reload && postfix_is_running(cfg)) {
                struct apply_result back = { 0 };
                r = reload(cfg, &back);
                if (r < 0)
                        log_error("postfix reload after restoring main.cf failed: %s",
                                  back.output ? back.output : "");
                apply_result_done(&back);
        }
        /* the master.cf restored and reloaded (or Postfix not running): nothing to recover */
        if (res->master_swapped && restored >= 0 && r >= 0)
                reconcile_master_settled(cfg);
        return restored < 0 ? restored : r;
}

void reconcile_master_settled(const struct config *cfg)
{
        char pending[PATH_MAX];
        if (layout_master_cf_pending(cfg, pending, sizeof(pending)) >= 0 && unlink(pending) < 0 &&
            errno != ENOENT)
                log_warning("cannot remove %s: %s", pending, strerror(errno));
}

/* The SHA-256 of a file as 64 hex digits ("" when it cannot be read). */
static void file_digest(const char *path, char out[65])
{
        _cleanup_free_ char *data = NULL;
        size_t len = 0;
        out[0] = 0;
        if (fs_read_file(path, LAYOUT_MAIN_CF_MAX, &data, &len) >= 0)
                sha256_hex(data, len, out);
}

/* Before master.cf's swap: "<generation> <new digest> <last-known-good digest>". */
static int write_master_marker(const struct config *cfg, const struct plan *p, const char *staged)
{
        char pending[PATH_MAX], live[PATH_MAX], text[200], new[65], old[65];
        int r = layout_master_cf_pending(cfg, pending, sizeof(pending));
        if (r >= 0)
                r = layout_master_cf(cfg, live, sizeof(live));
        if (r < 0)
                return r;
        file_digest(staged, new);
        file_digest(live, old); /* the live one becomes the last-known-good one */
        int n = snprintf(text, sizeof(text), "%lld %s %s\n", (long long)p->generation, new, old);
        return fs_write_file(pending, text, (size_t)n, 0600);
}

int reconcile_recover_master(const struct config *cfg, int64_t committed)
{
        char pending[PATH_MAX], lkg[PATH_MAX], live[PATH_MAX], new[65], old[65], now[65];
        _cleanup_free_ char *text = NULL;
        size_t len = 0;
        long long gen = 0;
        if (layout_master_cf_pending(cfg, pending, sizeof(pending)) < 0 ||
            fs_read_file(pending, 4096, &text, &len) < 0)
                return 0;
        /* committed (a batch's, or the committed state a start or a follower applied): kept,
         * but perhaps not reloaded yet */
        if (sscanf(text, "%lld %64s %64s", &gen, new, old) != 3 || gen <= committed)
                return 1;
        int r = layout_master_cf_lkg(cfg, lkg, sizeof(lkg));
        if (r >= 0)
                r = layout_master_cf(cfg, live, sizeof(live));
        if (r < 0)
                return r;
        file_digest(live, now);
        if (streq(now, new)) {
                r = restore_lkg(cfg, lkg, "master.cf.restore", put_master_cf);
                if (r < 0) {
                        log_error("cannot put back the last-known-good master.cf after an "
                                  "interrupted apply: %s",
                                  strerror(-r));
                        return r;
                }
                log_notice("master.cf: generation %lld was swapped in and never committed; the "
                           "last-known-good master.cf is back",
                           gen);
        } else if (!streq(now, old)) {
                /* edited since the swap: the administrator's, left alone */
                log_warning("master.cf: generation %lld was swapped in and never committed, and "
                            "the file was edited since: left as it is",
                            gen);
        }
        return 1; /* Postfix may hold the uncommitted one, or not the new one yet: reload */
}

/* 1. Certificate files: a new version in a directory of its own (cert_staged[i]), or the files
 * main.cf already names, loaded by OpenSSL as Postfix will. */
static int stage_certs(const struct config *cfg, const struct plan *p,
                       char cert_staged[SETTINGS_CERTS_MAX][PATH_MAX], struct problem *reterr)
{
        int r = 0;
        for (size_t i = 0; i < p->n_certs; i++) {
                const struct plan_cert *pc = &p->certs[i];
                if (pc->write)
                        r = stage_cert(cfg, pc, cert_staged[i], PATH_MAX, reterr);
                else if ((p->main_cf_changed || p->reload) && pc->key_path[0]) {
                        r = reconcile_check_cert(cfg, pc, time(NULL), NULL, reterr);
                        if (r < 0 && reterr && !reterr->field[0])
                                snprintf(reterr->field, sizeof(reterr->field), "%s", pc->field);
                }
                if (r < 0)
                        return r;
        }
        return 0;
}

/* 3. main.cf in a check directory that postconf can read, with master.cf (the plan's new one, else
 * a copy of the live one), checked: no postconf warning about a managed parameter, and a new
 * master.cf passes `postfix check`. Its path into staged_main. */
static int stage_main_cf(const struct config *cfg, const struct plan *p, struct apply_result *res,
                         char staged_main[PATH_MAX], struct problem *reterr)
{
        const char *names[MANAGED_PARAMS_MAX + 1];
        char check[PATH_MAX], master[PATH_MAX];
        int r = layout_check_dir(cfg, check, sizeof(check));
        if (r >= 0)
                r = fs_mkdir_p(check, 0700);
        if (r >= 0)
                r = layout_join(check, "main.cf", staged_main, PATH_MAX);
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
                        r = p->master_cf_changed
                                ? fs_write_file(master, p->master_cf_new, p->master_new_len, 0644)
                                : copy_file(from, master, 0644);
        }
        if (r < 0)
                return problem_set(reterr, stage_problem(r), NULL, "cannot stage main.cf: %s",
                                   strerror(-r));
        struct spawn_result out;
        managed_checked_names(names);
        r = postconf_check(cfg, check, names, &out);
        apply_result_add_output(res, "postconf -n", r < 0 ? out.output : NULL);
        spawn_result_done(&out);
        if (r < 0)
                return problem_set(reterr, PROBLEM_POSTFIX_REJECTED, NULL,
                                   "postconf refused the new main.cf: %s",
                                   res->output ? res->output : strerror(-r));
        if (!p->master_cf_changed)
                return 0;
        r = postfix_check(cfg, check, &out);
        apply_result_add_output(res, "postfix check", r < 0 ? out.output : NULL);
        if (r < 0)
                problem_set(reterr, PROBLEM_POSTFIX_REJECTED, NULL,
                            "postfix check refused the new master.cf: %s",
                            out.output && out.output[0] ? out.output : strerror(-r));
        spawn_result_done(&out);
        return r;
}

/* 4. swap: the staged certificate directories, then main.cf (the switch point). An installed
 * directory's cert_staged[i] is emptied. */
static int swap_files(const struct config *cfg, const struct plan *p, struct apply_result *res,
                      char cert_staged[SETTINGS_CERTS_MAX][PATH_MAX], const char *staged_main,
                      struct problem *reterr)
{
        char lkg[PATH_MAX];
        for (size_t i = 0; i < p->n_certs; i++) {
                if (!cert_staged[i][0])
                        continue;
                int r = stage_cert_install(&p->certs[i], cert_staged[i], reterr);
                if (r < 0)
                        return r;
                cert_staged[i][0] = 0;
        }
        if (p->master_cf_changed) {
                char check[PATH_MAX], staged[PATH_MAX], live[PATH_MAX];
                int r = layout_check_dir(cfg, check, sizeof(check));
                if (r >= 0)
                        r = layout_join(check, "master.cf", staged, sizeof(staged));
                if (r >= 0)
                        r = layout_master_cf_lkg(cfg, lkg, sizeof(lkg));
                if (r >= 0)
                        r = layout_master_cf(cfg, live, sizeof(live));
                /* a crash from here until the batch settles: the marker says what was swapped
                 * in, for reconcile_recover_master */
                if (r >= 0)
                        r = write_master_marker(cfg, p, staged);
                if (r >= 0)
                        r = put_master_cf(cfg, staged, lkg);
                if (r < 0) {
                        /* renamed already (a failed fsync after it): restored like a swap */
                        if (fs_same_content(live, p->master_cf_new, p->master_new_len) > 0)
                                res->master_swapped = true;
                        else
                                reconcile_master_settled(cfg);
                        return problem_set(reterr, stage_problem(r), NULL,
                                           "cannot replace master.cf: %s", strerror(-r));
                }
                res->master_swapped = true;
                fault_point("after_master_rename");
        }
        if (p->main_cf_changed) {
                int r = layout_main_cf_lkg(cfg, lkg, sizeof(lkg));
                if (r >= 0)
                        r = put_main_cf(cfg, staged_main, lkg);
                if (r < 0)
                        return problem_set(reterr, stage_problem(r), NULL,
                                           "cannot replace main.cf: %s", strerror(-r));
                res->swapped = true;
                fault_point("after_rename");
        }
        return 0;
}

/* 5. reload, only when main.cf or the certificate changed (Postfix notices a new indexed map by
 * itself) and Postfix runs. On failure the swapped files go back. */
static int reload_postfix(const struct config *cfg, const struct plan *p, struct apply_result *res,
                          struct problem *reterr)
{
        res->postfix_running = postfix_is_running(cfg);
        if (spawn_cancelled()) {
                /* The daemon is stopping: "not running" is no answer, and no reload may run.
                 * The committed files go back; the job runs again at the next start. */
                problem_set(reterr, PROBLEM_INTERNAL_ERROR, NULL, "the daemon is stopping");
                reconcile_restore(cfg, p, res);
                res->swapped = res->map_swapped = res->master_swapped = false;
                return -ECANCELED;
        }
        if (p->reload && res->postfix_running) {
                int r = reload(cfg, res);
                res->reloaded = true;
                if (r < 0) {
                        metrics_count(METRIC_RELOADS_FAILED, 1);
                        problem_set(reterr, PROBLEM_POSTFIX_REJECTED, NULL,
                                    "postfix reload failed: %s",
                                    res->output ? res->output : strerror(-r));
                        reconcile_restore(cfg, p, res);
                        res->swapped = res->map_swapped = res->master_swapped = false;
                        return -EPROTO;
                }
                fault_point("after_reload");
        }
        return 0;
}

int reconcile_apply(const struct config *cfg, struct plan *p, struct apply_result *res,
                    struct problem *reterr)
{
        char check[PATH_MAX], staged_main[PATH_MAX];
        char cert_staged[SETTINGS_CERTS_MAX][PATH_MAX] = { "" };
        int r;

        *res = (struct apply_result){ 0 };
        if (!p->main_cf_changed && !p->write_cert && !p->reload && !p->map_changed &&
            !p->master_cf_changed)
                return 0;

        r = stage_certs(cfg, p, cert_staged, reterr);
        if (r < 0)
                goto fail_unstaged;

        /* 2. the policy map: postmap under a new name, check every entry, swap */
        if (p->map_changed) {
                r = stage_map(cfg, p, res, reterr);
                if (r < 0)
                        goto fail_unstaged;
        }

        /* main.cf and certificate files stay as they are when only the map changed, or for an
         * ACME renewal (same paths, new content) */
        if (p->main_cf_changed || p->write_cert || p->master_cf_changed) {
                r = stage_main_cf(cfg, p, res, staged_main, reterr);
                if (r < 0)
                        goto fail_unstaged;
                fault_point("after_stage");
                r = swap_files(cfg, p, res, cert_staged, staged_main, reterr);
                if (r < 0)
                        goto fail_unstaged;
                if (layout_check_dir(cfg, check, sizeof(check)) >= 0)
                        fs_remove_tree(check);
        }
        return reload_postfix(cfg, p, res, reterr);

fail_unstaged:
        for (size_t i = 0; i < SETTINGS_CERTS_MAX; i++)
                if (cert_staged[i][0])
                        fs_remove_tree(cert_staged[i]);
        if (layout_check_dir(cfg, check, sizeof(check)) >= 0)
                fs_remove_tree(check);
        if (res->map_swapped || res->master_swapped || res->swapped) {
                reconcile_restore(cfg, p, res);
                res->map_swapped = res->master_swapped = res->swapped = false;
        }
        return r < 0 ? r : -EIO;
}
