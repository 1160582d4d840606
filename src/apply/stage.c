/* stage.c - the files of an apply, staged and checked before anything live changes: a bound
 * certificate's version directory (written beside the live one, loaded by OpenSSL as Postfix
 * will, renamed into place) and the policy map (postmap under a new name, every entry read back,
 * swapped index first; the last-known-good copy put back on a restore). Worker thread (and
 * start-up). */
#include "apply/stage.h"

#include <stdio.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <openssl/crypto.h>

#include "apply/cdb.h"
#include "apply/certsync.h"
#include "apply/fsutil.h"
#include "apply/layout.h"
#include "apply/postfix.h"
#include "conf.h"
#include "core/cert.h"
#include "core/policy.h"
#include "fault.h"
#include "log.h"

void apply_result_done(struct apply_result *r)
{
        free(r->output);
        r->output = NULL;
}

void apply_result_add_output(struct apply_result *res, const char *what, const char *text)
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

enum problem_code stage_problem(int r)
{
        if (r == -ENOSPC || r == -EDQUOT) {
                log_error("the disk holding the Postfix or certificate files is full: %s",
                          strerror(-r));
                return PROBLEM_INSUFFICIENT_STORAGE;
        }
        return PROBLEM_INTERNAL_ERROR;
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

int stage_cert(const struct config *cfg, const struct plan_cert *p, char *staged, size_t size,
               struct problem *reterr)
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
                return problem_set(reterr, stage_problem(r), NULL,
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

int stage_cert_install(const struct plan_cert *pc, const char *staged, struct problem *reterr)
{
        char broken[PATH_MAX + 16];
        int r;
        if (snprintf(broken, sizeof(broken), "%s.broken", staged) >= (int)sizeof(broken))
                return problem_set(reterr, PROBLEM_INTERNAL_ERROR, NULL,
                                   "certificate path too long");
        fs_remove_tree(broken);
        if (rename(pc->dir, broken) < 0 && errno != ENOENT) {
                r = -errno;
                return problem_set(reterr, stage_problem(r), NULL,
                                   "cannot replace the damaged certificate files: %s",
                                   strerror(-r));
        }
        if (rename(staged, pc->dir) < 0) {
                r = -errno;
                return problem_set(reterr, stage_problem(r), NULL,
                                   "cannot install the certificate files: %s", strerror(-r));
        }
        fs_remove_tree(broken);
        char parent[PATH_MAX];
        snprintf(parent, sizeof(parent), "%s", pc->dir);
        *strrchr(parent, '/') = 0;
        fs_fsync_dir(parent);
        return 0;
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

/* Whether the index built under staged (its file s_index) holds exactly the rendered entries. */
static int verify_built(const struct config *cfg, const struct plan *p, const char *staged,
                        const char *s_index, struct apply_result *res, struct problem *reterr)
{
        struct spawn_result out = { 0 };
        int r;
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
                return r;
        }
        r = postmap_dump(cfg, cfg->policy_map_type, staged, &out);
        if (r < 0) {
                /* the dump's stdout is the entries; why it failed is on stderr */
                apply_result_add_output(res, "postmap -s",
                                        !isempty(out.errors) ? out.errors : out.output);
                problem_set(reterr, PROBLEM_POSTFIX_REJECTED, NULL,
                            "postmap -s cannot read the built map: %s",
                            res->output ? res->output : strerror(-r));
        } else {
                r = verify_dump(p, out.output, out.output_len, reterr);
        }
        spawn_result_done(&out);
        return r;
}

int stage_map(const struct config *cfg, const struct plan *p, struct apply_result *res,
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
                return problem_set(reterr, stage_problem(r), NULL,
                                   "cannot stage the policy map: %s", strerror(-r));
        snprintf(s_index, sizeof(s_index), "%s%s", staged, suffix);
        snprintf(index, sizeof(index), "%s%s", map, suffix);
        snprintf(lkg_index, sizeof(lkg_index), "%s%s", lkg, suffix);
        unlink(s_index);
        r = fs_write_file(staged, p->map_text, p->map_len, 0644);
        if (r < 0) {
                problem_set(reterr, stage_problem(r), NULL, "cannot write the policy map: %s",
                            strerror(-r));
                goto fail;
        }
        /* postmap writes hash/btree/lmdb in place: build under the staged name, never the live */
        r = postmap_build(cfg, cfg->policy_map_type, staged, &out);
        res->postmap = true;
        if (r < 0) {
                apply_result_add_output(res, "postmap", out.output);
                spawn_result_done(&out);
                problem_set(reterr, PROBLEM_POSTFIX_REJECTED, NULL, "postmap failed: %s",
                            res->output ? res->output : strerror(-r));
                goto fail;
        }
        spawn_result_done(&out);
        r = verify_built(cfg, p, staged, s_index, res, reterr);
        if (r < 0)
                goto fail;
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
                problem_set(reterr, stage_problem(r), NULL, "cannot install the policy map: %s",
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

int stage_map_restore(const struct config *cfg)
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
