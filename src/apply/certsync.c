/* certsync.c - scanning the ACME live directory and the system pair into the certificates table
 * (see certsync.h). Worker thread. */
#include "apply/certsync.h"

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "apply/fsutil.h"
#include "apply/layout.h"
#include "conf.h"
#include "core/cert.h"
#include "log.h"
#include "store/nodes.h"
#include "store/store.h"
#include "store/tokens.h"
#include "util.h"

#define PEM_FILE_MAX (1u << 20)

/* Scan problems are logged as well as returned: the watch runs with nobody waiting. */
#define warn(warnings, code, ...)                                                                  \
        do {                                                                                       \
                warnings_add((warnings), (code), __VA_ARGS__);                                     \
                log_warning("%s", json_string_value(json_object_get(                               \
                                      json_array_get((warnings), json_array_size(warnings) - 1),   \
                                      "detail")));                                                 \
        } while (0)

void certsync_system_name(const struct config *cfg, char name[static 65])
{
        const char *base = strrchr(cfg->system_certificate_file, '/');
        base = base ? base + 1 : cfg->system_certificate_file;
        size_t n = strlen(base);
        if (n > 4 && (streq(base + n - 4, ".pem") || streq(base + n - 4, ".crt")))
                n -= 4;
        if (n == 0 || n > 64) {
                strcpy(name, "system");
                return;
        }
        memcpy(name, base, n);
        name[n] = 0;
        if (!name_is_valid(name))
                strcpy(name, "system");
}

/* ---- reading an ACME client's files ------------------------------------------------------- */

/* An ACME client's tree (certbot's /etc/letsencrypt) is trusted only when nobody but root can
 * change it: the daemon reads a private key from it and hands its paths to Postfix. */
static int check_trusted(const struct stat *st, const char *root, const char *rel,
                         struct problem *reterr)
{
        if (st->st_uid != 0 && st->st_uid != geteuid())
                return problem_set(reterr, PROBLEM_CERTIFICATE_UNUSABLE, NULL,
                                   "%s/%s is owned by uid %u, not by root: an ACME directory "
                                   "another user can change is not trusted",
                                   root, rel, (unsigned)st->st_uid);
        if (st->st_mode & (S_IWGRP | S_IWOTH))
                return problem_set(reterr, PROBLEM_CERTIFICATE_UNUSABLE, NULL,
                                   "%s/%s is writable by its group or by others: an ACME "
                                   "directory another user can change is not trusted",
                                   root, rel);
        return 0;
}

/* Checks root/dir and every directory between root and it (dir relative, no "..": it comes from
 * our own layout or from the kernel's resolution beneath root). */
static int check_dirs(int rootfd, const char *root, const char *dir, struct problem *reterr)
{
        char prefix[PATH_MAX];
        struct stat st;
        if (strcpy_bounded(prefix, sizeof(prefix), dir) < 0)
                return -ENAMETOOLONG;
        for (char *p = prefix;; p++) {
                if (*p != '/' && *p != 0)
                        continue;
                char c = *p;
                *p = 0;
                if (prefix[0] && fstatat(rootfd, prefix, &st, 0) < 0)
                        return problem_set(reterr, PROBLEM_CERTIFICATE_UNUSABLE, NULL,
                                           "cannot read %s/%s: %s", root, prefix, strerror(errno));
                if (prefix[0] && !S_ISDIR(st.st_mode))
                        return problem_set(reterr, PROBLEM_CERTIFICATE_UNUSABLE, NULL,
                                           "%s/%s is not a directory", root, prefix);
                int r = prefix[0] ? check_trusted(&st, root, prefix, reterr) : 0;
                if (r < 0)
                        return r;
                *p = c;
                if (c == 0)
                        return 0;
        }
}

/* The path the kernel has for an open fd. */
static int fd_path(int fd, char buf[static PATH_MAX])
{
        char proc[64];
        snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
        ssize_t n = readlink(proc, buf, PATH_MAX - 1);
        if (n < 0)
                return -errno;
        if (n == 0 || n >= PATH_MAX - 1)
                return -ENAMETOOLONG;
        buf[n] = 0;
        return 0;
}

int certsync_acme_open(const struct config *cfg, const char *name, const char *file,
                       struct problem *reterr)
{
        char root[PATH_MAX], rel[PATH_MAX], dir[PATH_MAX], real[PATH_MAX];
        struct stat st;

        /* root: the client's tree, the parent of live/; everything is resolved beneath it */
        if (strcpy_bounded(root, sizeof(root), cfg->acme_live_directory) < 0)
                return -ENAMETOOLONG;
        for (size_t n = strlen(root); n > 1 && root[n - 1] == '/'; n--)
                root[n - 1] = 0;
        char *slash = strrchr(root, '/');
        if (!slash || !slash[1])
                return problem_set(reterr, PROBLEM_CERTIFICATE_UNUSABLE, NULL,
                                   "acme_live_directory %s has no parent directory",
                                   cfg->acme_live_directory);
        if (snprintf(dir, sizeof(dir), "%s/%s", slash + 1, name) >= (int)sizeof(dir) ||
            snprintf(rel, sizeof(rel), "%s/%s", dir, file) >= (int)sizeof(rel))
                return -ENAMETOOLONG;
        *slash = 0;
        if (!root[0])
                strcpy(root, "/");

        _cleanup_close_ int rootfd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (rootfd < 0 || fstat(rootfd, &st) < 0)
                return problem_set(reterr, PROBLEM_CERTIFICATE_UNUSABLE, NULL, "cannot read %s: %s",
                                   root, strerror(errno));
        int r = check_trusted(&st, root, ".", reterr);
        if (r >= 0)
                r = check_dirs(rootfd, root, dir, reterr);
        if (r < 0)
                return r;

        _cleanup_close_ int fd = fs_open_beneath(rootfd, rel);
        if (fd == -EXDEV || fd == -ELOOP)
                return problem_set(reterr, PROBLEM_CERTIFICATE_UNUSABLE, NULL,
                                   "%s/%s is a symlink that leads out of %s (or loops): not "
                                   "followed",
                                   root, rel, root);
        if (fd < 0)
                return problem_set(reterr, PROBLEM_CERTIFICATE_UNUSABLE, NULL,
                                   "cannot read %s/%s: %s", root, rel, strerror(-fd));
        if (fstat(fd, &st) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode))
                return problem_set(reterr, PROBLEM_CERTIFICATE_UNUSABLE, NULL,
                                   "%s/%s is not a regular file", root, rel);
        /* The file and the directories the symlinks led to (archive/<name>/), relative to the
         * tree as the kernel resolved both (root itself may be reached through a symlink) */
        char base[PATH_MAX];
        size_t bl = 0;
        if (fd_path(rootfd, base) < 0 || fd_path(fd, real) < 0 ||
            strncmp(real, base, bl = strlen(base)) != 0 || (bl > 1 && real[bl] != '/'))
                return problem_set(reterr, PROBLEM_CERTIFICATE_UNUSABLE, NULL,
                                   "cannot resolve %s/%s inside %s", root, rel, root);
        const char *inside = real + (bl > 1 ? bl + 1 : 1);
        r = check_trusted(&st, root, inside, reterr);
        char *last = strrchr(real, '/');
        if (r >= 0 && last && last > inside) {
                *last = 0;
                r = check_dirs(rootfd, root, inside, reterr);
        }
        return r < 0 ? r : TAKE_FD(fd);
}

int certsync_acme_read(const struct config *cfg, const char *name, const char *file, char **ret,
                       size_t *len, struct problem *reterr)
{
        _cleanup_close_ int fd = certsync_acme_open(cfg, name, file, reterr);
        if (fd < 0)
                return fd;
        int r = fs_read_fd(fd, PEM_FILE_MAX, ret, len);
        if (r < 0)
                return problem_set(reterr, PROBLEM_CERTIFICATE_UNUSABLE, NULL,
                                   "cannot read %s/%s/%s: %s", cfg->acme_live_directory, name, file,
                                   strerror(-r));
        return 0;
}

/* The details of a fullchain's bytes, and (verified not NULL) whether its chain verifies against
 * the system store. */
static int pem_info(const char *pem, size_t len, struct cert_info *info, bool *verified,
                    struct problem *reterr)
{
        int r = cert_info_from_pem(pem, len, info, reterr);
        if (r >= 0 && verified &&
            cert_verify_chain(pem, len, NULL, 0, NULL, time(NULL), verified) < 0)
                *verified = false;
        return r;
}

static int sync_system(const struct config *cfg, struct db_conn *c, json_t *warnings,
                       struct problem *reterr)
{
        char name[65];
        struct cert_info info = { 0 };
        struct problem p = { 0 };
        _cleanup_free_ char *pem = NULL;
        size_t len = 0;

        certsync_system_name(cfg, name);
        if (access(cfg->system_certificate_file, R_OK) < 0)
                return 0; /* no bootstrap pair on this machine: nothing to list */
        int k = fs_read_file(cfg->system_certificate_file, PEM_FILE_MAX, &pem, &len);
        if (k < 0)
                problem_set(&p, PROBLEM_CERTIFICATE_UNUSABLE, NULL, "cannot read it: %s",
                            strerror(-k));
        if (k < 0 || pem_info(pem, len, &info, NULL, &p) < 0) {
                warn(warnings, "system_certificate_unreadable", "system certificate %s: %s",
                     cfg->system_certificate_file, p.detail);
                problem_done(&p);
                return 0;
        }
        int r = store_cert_put_file_backed(c, name, "system", &info, false, reterr);
        cert_info_done(&info);
        if (r == -EEXIST) {
                warn(warnings, "name_taken",
                     "the system certificate's name '%s' is taken by another certificate", name);
                return 0;
        }
        return r;
}

int certsync_run(const struct config *cfg, struct db_conn *c, json_t *warnings, json_t **summary,
                 struct problem *reterr)
{
        json_t *seen = json_array(), *removed = json_array(), *missing = json_array();
        json_t *added = json_array(), *changed = json_array();
        json_t *known = NULL, *name_j;
        size_t idx;
        int64_t gen;
        int r;

        /* config_state first, as every writer does (the worker's batch holds it already; the
         * start-up scan does not): the version triggers update it after each certificate row,
         * and two transactions taking the two in opposite orders could deadlock. */
        r = store_generation(c, &gen, true, reterr);
        if (r >= 0)
                r = sync_system(cfg, c, warnings, reterr);
        if (r < 0)
                goto out;

        DIR *d = opendir(cfg->acme_live_directory);
        if (!d && errno != ENOENT)
                warn(warnings, "acme_directory_unreadable", "cannot read %s: %s",
                     cfg->acme_live_directory, strerror(errno));
        struct dirent *de;
        while (d && (de = readdir(d))) {
                char dir[PATH_MAX], chain[PATH_MAX], key[PATH_MAX];
                if (de->d_name[0] == '.' || streq(de->d_name, "README"))
                        continue;
                if (layout_acme_dir(cfg, de->d_name, dir, sizeof(dir)) < 0 ||
                    layout_join(dir, "fullchain.pem", chain, sizeof(chain)) < 0 ||
                    layout_join(dir, "privkey.pem", key, sizeof(key)) < 0)
                        continue;
                if (access(chain, F_OK) < 0 && access(key, F_OK) < 0)
                        continue; /* not a certificate directory */
                if (!name_is_valid(de->d_name)) {
                        warn(warnings, "acme_invalid_name",
                             "ACME directory '%s' is not a valid certificate name; skipped",
                             de->d_name);
                        continue;
                }
                struct cert_info info = { 0 };
                struct problem p = { 0 };
                _cleanup_free_ char *pem = NULL;
                size_t len = 0;
                bool verified = false;
                /* the key is only opened (every check but reading it): the scan needs the chain */
                int fd = certsync_acme_open(cfg, de->d_name, "privkey.pem", &p);
                if (fd >= 0)
                        close(fd);
                if (fd < 0 ||
                    certsync_acme_read(cfg, de->d_name, "fullchain.pem", &pem, &len, &p) < 0 ||
                    pem_info(pem, len, &info, &verified, &p) < 0) {
                        warn(warnings, "acme_certificate_unreadable", "ACME certificate '%s': %s",
                             de->d_name, p.detail);
                        problem_done(&p);
                        cert_info_done(&info);
                        json_array_append_new(seen, json_string(de->d_name)); /* keep its row */
                        continue;
                }
                /* ACME certificates are per node, each node renewing its own copy: the shared row
                 * follows this node's copy when that changed (or is new here), not merely because
                 * another node's copy differs from it */
                char mine[96];
                r = store_cert_node_copy(c, de->d_name, cfg->node_name, mine, reterr);
                if (r >= 0 && streq(mine, info.sha256_fingerprint)) {
                        cert_info_done(&info);
                        json_array_append_new(seen, json_string(de->d_name));
                        continue;
                }
                if (r >= 0)
                        r = store_cert_put_file_backed(c, de->d_name, "acme", &info, verified,
                                                       reterr);
                if (r >= 0) {
                        int k = store_cert_node_mark(c, de->d_name, cfg->node_name,
                                                     info.sha256_fingerprint,
                                                     (int64_t)info.not_after, reterr);
                        if (k < 0)
                                r = k;
                }
                cert_info_done(&info);
                if (r == -EEXIST) {
                        warn(warnings, "acme_name_conflict",
                             "ACME certificate '%s' has the name of an imported certificate; "
                             "skipped",
                             de->d_name);
                        continue;
                }
                if (r < 0) {
                        closedir(d);
                        goto out;
                }
                if (r == STORE_CERT_ADDED || r == STORE_CERT_CHANGED)
                        json_array_append_new(r == STORE_CERT_ADDED ? added : changed,
                                              json_string(de->d_name));
                json_array_append_new(seen, json_string(de->d_name));
        }
        if (d)
                closedir(d);

        /* Rows whose directory is gone: removed, unless bound (then reported as missing). */
        r = store_cert_names(c, "acme", &known, reterr);
        if (r < 0)
                goto out;
        json_array_foreach (known, idx, name_j) {
                const char *name = json_string_value(name_j);
                bool present = false;
                size_t k;
                json_t *s;
                json_array_foreach (seen, k, s)
                        if (streq(json_string_value(s), name))
                                present = true;
                if (present)
                        continue;
                /* not on this node: still another's (each node scans its own directory) */
                int holders = 0;
                r = store_cert_node_forget(c, name, cfg->node_name, &holders, reterr);
                if (r < 0)
                        goto out;
                if (holders > 0)
                        continue;
                json_t *row = NULL;
                struct problem p = { 0 };
                bool in_use = false;
                if (store_cert_get_json(c, name, &row, &p) >= 0)
                        in_use = json_is_true(json_object_get(row, "in_use"));
                json_decref(row);
                problem_done(&p);
                if (in_use) {
                        warn(warnings, "certificate_missing",
                             "the bound ACME certificate '%s' has no directory under %s any more",
                             name, cfg->acme_live_directory);
                        r = store_cert_set_missing(c, name, true, reterr);
                        json_array_append(missing, name_j);
                } else {
                        r = store_cert_delete(c, name, reterr);
                        json_array_append(removed, name_j);
                }
                if (r < 0)
                        goto out;
        }
        r = 0;
out:
        json_decref(known);
        if (r >= 0 && summary)
                *summary = json_pack("{s:O, s:O, s:O, s:O, s:O}", "added", added, "changed",
                                     changed, "removed", removed, "acme", seen, "missing", missing);
        json_decref(added);
        json_decref(changed);
        json_decref(seen);
        json_decref(removed);
        json_decref(missing);
        return r;
}
