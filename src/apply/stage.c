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
#include "apply/map_state.h"
#include "apply/postfix.h"
#include "conf.h"
#include "core/cert.h"
#include "core/policy.h"
#include "fault.h"
#include "log.h"
#include "metrics.h"

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
        /* the same entries by their digests, without keeping either side (a million entries);
         * unequal (or a rendered text with a duplicate key), entry by entry, which also names
         * the first difference */
        struct policy_map_digest want_digest, got_digest;
        if (policy_map_digest(p->map_text, p->map_len, &want_digest) >= 0 &&
            policy_map_digest(dump, dump_len, &got_digest) >= 0 &&
            policy_map_digest_equal(&want_digest, &got_digest))
                return 0;
        struct policy_map_entry *got = NULL;
        size_t n_got = 0;
        if (policy_map_parse(dump, dump_len, &got, &n_got) < 0)
                return problem_set(reterr, PROBLEM_INTERNAL_ERROR, NULL,
                                   "cannot read the policy map back");
        return verify_entries(p, got, n_got, reterr);
}

/* Whether got holds exactly want's entries (keys and values; in any order): 0, or
 * postfix_rejected "<what> N entries, M expected; first difference at KEY". Takes ownership of
 * both. */
static int same_entries(struct policy_map_entry *want, size_t n_want, struct policy_map_entry *got,
                        size_t n_got, const char *what, struct problem *reterr)
{
        int r = 0;
        policy_map_entries_sort(got, n_got);
        policy_map_entries_sort(want, n_want);
        /* both sorted: the first key (in byte order) one side lacks or holds otherwise */
        const char *bad = NULL;
        for (size_t i = 0, k = 0; !bad && (i < n_want || k < n_got);) {
                int c = i == n_want ? 1 : k == n_got ? -1 : strcmp(want[i].key, got[k].key);
                if (c < 0)
                        bad = want[i].key;
                else if (c > 0)
                        bad = got[k].key;
                else if (!streq(want[i].value, got[k].value))
                        bad = want[i].key;
                i += c <= 0;
                k += c >= 0;
        }
        if (bad || n_got != n_want)
                r = problem_set(reterr, PROBLEM_POSTFIX_REJECTED, NULL,
                                "%s %zu entries, %zu expected%s%s", what, n_got, n_want,
                                bad ? "; first difference at " : "", bad ? bad : "");
        policy_map_entries_free(want, n_want);
        policy_map_entries_free(got, n_got);
        return r;
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
        return same_entries(want, n_want, got, n_got, "the built policy map holds", reterr);
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

/* The files of the policy map: the live text and index, their staged and last-known-good
 * names, and the input file of an incremental edit. */
struct map_files {
        char state[PATH_MAX], staged[PATH_MAX], map[PATH_MAX], lkg[PATH_MAX], input[PATH_MAX];
        char s_index[PATH_MAX + 8], index[PATH_MAX + 8], lkg_index[PATH_MAX + 8];
};

static int map_files(const struct config *cfg, struct map_files *f, struct problem *reterr)
{
        const char *suffix = layout_map_suffix(cfg->policy_map_type);
        int r = layout_state_dir(cfg, f->state, sizeof(f->state));
        if (r >= 0)
                r = fs_mkdir_p(f->state, 0700);
        if (r >= 0)
                r = layout_policy_staged(cfg, f->staged, sizeof(f->staged));
        if (r >= 0)
                r = layout_policy_map(cfg, f->map, sizeof(f->map));
        if (r >= 0)
                r = layout_policy_lkg(cfg, f->lkg, sizeof(f->lkg));
        if (r >= 0)
                r = layout_join(f->state, "tls_policy.input", f->input, sizeof(f->input));
        if (r >= 0)
                r = layout_policy_index(cfg, f->index, sizeof(f->index));
        if (r < 0)
                return problem_set(reterr, stage_problem(r), NULL,
                                   "cannot stage the policy map: %s", strerror(-r));
        snprintf(f->s_index, sizeof(f->s_index), "%s%s", f->staged, suffix);
        snprintf(f->lkg_index, sizeof(f->lkg_index), "%s%s", f->lkg, suffix);
        return 0;
}

/* Every key of the edit, one per line: the lines put, then the keys deleted. */
static int edit_keys(const struct map_edit *e, struct strbuf *keys)
{
        int r = 0;
        for (const char *p = e->put.p; r >= 0 && p && *p;) {
                const char *tab = strchr(p, '\t'), *nl = strchr(p, '\n');
                r = strbuf_add(keys, p, (size_t)(tab - p));
                if (r >= 0)
                        r = strbuf_add(keys, "\n", 1);
                p = nl + 1;
        }
        if (r >= 0 && e->del.len)
                r = strbuf_add(keys, e->del.p, e->del.len);
        return r;
}

/* Whether the edited index answers every key of the edit as it should: each line put with its
 * value, each key deleted not at all. */
static int verify_edit(const struct map_edit *e, const char *answers, size_t len,
                       struct problem *reterr)
{
        struct policy_map_entry *want = NULL, *got = NULL;
        size_t n_want = 0, n_got = 0;
        int r = policy_map_parse(e->put.p ? e->put.p : "", e->put.len, &want, &n_want);
        if (r >= 0)
                r = policy_map_parse(answers, len, &got, &n_got);
        if (r < 0) {
                policy_map_entries_free(want, n_want);
                policy_map_entries_free(got, n_got);
                return problem_set(reterr, PROBLEM_INTERNAL_ERROR, NULL,
                                   "cannot read the policy map's answers back");
        }
        /* the keys deleted are among those asked: any answer for one is an entry too many */
        return same_entries(want, n_want, got, n_got,
                            "asked for the keys it changed, the edited policy map answers", reterr);
}

/* The index as a copy of the live one edited: the lines put (postmap -i -r), the keys deleted
 * (postmap -d -), then every key of the edit asked (postmap -q -) and checked. */
static int edit_index(const struct config *cfg, const struct plan *p, const struct map_files *f,
                      struct apply_result *res, struct problem *reterr)
{
        const struct map_edit *e = p->map_edit;
        const char *type = cfg->policy_map_type;
        struct spawn_result out = { 0 };
        struct strbuf keys = { 0 };
        int r = fs_copy_file(f->index, f->s_index, 0644);
        const char *step = "copy";
        if (r >= 0 && e->n_put) {
                step = "postmap -i";
                r = fs_write_file(f->input, e->put.p, e->put.len, 0600);
                if (r >= 0)
                        r = postmap_put(cfg, type, f->staged, f->input, &out);
                res->postmap = true;
        }
        if (r >= 0 && e->n_del) {
                spawn_result_done(&out);
                step = "postmap -d";
                r = fs_write_file(f->input, e->del.p, e->del.len, 0600);
                if (r >= 0)
                        r = postmap_delete(cfg, type, f->staged, f->input, &out);
                /* every key deleted is in the copy (the record vouched for it): all found */
                if (r >= 0 && out.exit_status != 0)
                        r = -EPROTO;
                res->postmap = true;
        }
        if (r >= 0) {
                spawn_result_done(&out);
                step = "postmap -q";
                r = edit_keys(e, &keys);
                if (r >= 0)
                        r = fs_write_file(f->input, keys.p ? keys.p : "", keys.len, 0600);
                if (r >= 0)
                        r = postmap_query(cfg, type, f->staged, f->input, &out);
                if (r >= 0 && e->n_put && out.exit_status != 0)
                        r = -EPROTO; /* the keys put must be found */
        }
        if (r < 0) {
                apply_result_add_output(res, step, !isempty(out.errors) ? out.errors : out.output);
                problem_set(reterr, r == -EPROTO ? PROBLEM_POSTFIX_REJECTED : stage_problem(r),
                            NULL, "%s of the policy map failed: %s", step,
                            res->output ? res->output : strerror(-r));
        } else {
                r = verify_edit(e, out.output, out.output_len, reterr);
        }
        spawn_result_done(&out);
        free(keys.p);
        unlink(f->input);
        return r;
}

/* The whole index built under the staged name (postmap writes hash/btree/lmdb in place: never
 * the live one) and every entry read back. */
static int build_index(const struct config *cfg, const struct plan *p, const struct map_files *f,
                       struct apply_result *res, struct problem *reterr)
{
        struct spawn_result out = { 0 };
        int r = postmap_build(cfg, cfg->policy_map_type, f->staged, &out);
        res->postmap = true;
        if (r < 0) {
                apply_result_add_output(res, "postmap", out.output);
                spawn_result_done(&out);
                return problem_set(reterr, PROBLEM_POSTFIX_REJECTED, NULL, "postmap failed: %s",
                                   res->output ? res->output : strerror(-r));
        }
        spawn_result_done(&out);
        return verify_built(cfg, p, f->staged, f->s_index, res, reterr);
}

int stage_map(const struct config *cfg, const struct plan *p, struct apply_result *res,
              struct problem *reterr)
{
        struct map_files f;
        int r = map_files(cfg, &f, reterr);
        if (r < 0)
                return r;
        unlink(f.s_index);
        r = fs_write_file(f.staged, p->map_text, p->map_len, 0644);
        if (r < 0) {
                problem_set(reterr, stage_problem(r), NULL, "cannot write the policy map: %s",
                            strerror(-r));
                goto fail;
        }
        /* a few rows changed: a copy of the live index edited (cdb cannot be edited: built) */
        bool edit = p->map_edit && !streq(cfg->policy_map_type, "cdb");
        r = edit ? edit_index(cfg, p, &f, res, reterr) : build_index(cfg, p, &f, res, reterr);
        if (r < 0)
                goto fail;
        fault_point("after_postmap");
        r = fs_fsync_dir(f.state);
        /* The previous index is kept as a COPY: a running smtp process notices a new map only
         * when the file it has open loses its last link (or changes), so the replaced inode must
         * not live on under another name. Index first (what Postfix reads), then the text. */
        if (r >= 0 && access(f.index, F_OK) == 0)
                r = fs_copy_file(f.index, f.lkg_index, 0644);
        if (r >= 0)
                r = fs_replace(f.s_index, f.index, NULL);
        if (r >= 0) {
                res->map_swapped = true;
                r = fs_replace(f.staged, f.map, f.lkg);
        }
        if (r < 0) {
                problem_set(reterr, stage_problem(r), NULL, "cannot install the policy map: %s",
                            strerror(-r));
                goto fail;
        }
        fault_point("after_map_rename");
        metrics_count(edit ? METRIC_MAP_EDITS : METRIC_MAP_BUILDS, 1);
        /* what the live map is now, for the next apply to edit it (a failure to record it only
         * makes the next apply build the map whole) */
        map_state_write(cfg, p->map_version);
        return 0;
fail:
        unlink(f.staged);
        unlink(f.s_index);
        return r < 0 ? r : -EIO;
}

int stage_map_adopt(const struct config *cfg, const struct plan *p)
{
        struct map_files f;
        struct problem ignore = { 0 };
        struct apply_result res = { 0 };
        int r = map_files(cfg, &f, &ignore);
        if (r >= 0)
                r = verify_built(cfg, p, f.map, f.index, &res, &ignore);
        apply_result_done(&res);
        problem_done(&ignore);
        if (r < 0)
                return 0;
        map_state_write(cfg, p->map_version);
        return 1;
}

int stage_map_restore(const struct config *cfg)
{
        char map[PATH_MAX], lkg[PATH_MAX], from[PATH_MAX + 8], to[PATH_MAX + 8], tmp[PATH_MAX + 16];
        const char *suffix = layout_map_suffix(cfg->policy_map_type);
        /* the files are no longer what the record says */
        map_state_forget(cfg);
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
