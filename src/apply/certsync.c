/* certsync.c - scanning the ACME live directory and the system pair into the certificates table
 * (see certsync.h). Worker thread. */
#include "smtptlsd/certsync.h"

#include <dirent.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <time.h>

#include "smtptlsd/cert.h"
#include "smtptlsd/conf.h"
#include "smtptlsd/fsutil.h"
#include "smtptlsd/layout.h"
#include "smtptlsd/log.h"
#include "smtptlsd/store.h"
#include "smtptlsd/tokens.h"

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

/* Parses a fullchain file (following symlinks, as Postfix does) into info. */
static int read_info(const char *path, struct cert_info *info, struct problem *reterr)
{
        _cleanup_free_ char *pem = NULL;
        size_t len = 0;
        int r = fs_read_file(path, PEM_FILE_MAX, &pem, &len);
        if (r < 0)
                return problem_set(reterr, PROBLEM_CERTIFICATE_UNUSABLE, NULL, "cannot read %s: %s",
                                   path, strerror(-r));
        return cert_info_from_pem(pem, len, info, reterr);
}

static bool chain_verified(const char *path)
{
        _cleanup_free_ char *pem = NULL;
        size_t len = 0;
        bool ok = false;
        if (fs_read_file(path, PEM_FILE_MAX, &pem, &len) < 0)
                return false;
        if (cert_verify_chain(pem, len, NULL, 0, NULL, time(NULL), &ok) < 0)
                return false;
        return ok;
}

static int sync_system(const struct config *cfg, struct db_conn *c, json_t *warnings,
                       struct problem *reterr)
{
        char name[65];
        struct cert_info info = { 0 };
        struct problem p = { 0 };

        certsync_system_name(cfg, name);
        if (access(cfg->system_certificate_file, R_OK) < 0)
                return 0; /* no bootstrap pair on this machine: nothing to list */
        if (read_info(cfg->system_certificate_file, &info, &p) < 0) {
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
                        warn(warnings, "invalid_name",
                             "ACME directory '%s' is not a valid certificate name; skipped",
                             de->d_name);
                        continue;
                }
                struct cert_info info = { 0 };
                struct problem p = { 0 };
                if (read_info(chain, &info, &p) < 0) {
                        warn(warnings, "acme_certificate_unreadable", "ACME certificate '%s': %s",
                             de->d_name, p.detail);
                        problem_done(&p);
                        json_array_append_new(seen, json_string(de->d_name)); /* keep its row */
                        continue;
                }
                r = store_cert_put_file_backed(c, de->d_name, "acme", &info, chain_verified(chain),
                                               reterr);
                cert_info_done(&info);
                if (r == -EEXIST) {
                        warn(warnings, "name_taken",
                             "ACME certificate '%s' has the name of an imported certificate; "
                             "skipped",
                             de->d_name);
                        continue;
                }
                if (r < 0) {
                        closedir(d);
                        goto out;
                }
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
                *summary = json_pack("{s:O, s:O, s:O}", "acme", seen, "removed", removed, "missing",
                                     missing);
        json_decref(seen);
        json_decref(removed);
        json_decref(missing);
        return r;
}
