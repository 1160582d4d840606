/* prune.c - housekeeping of the rendered files: at start-up, the staged leftovers of an
 * interrupted apply; after a commit, the certificate version directories the live main.cf no
 * longer names. Worker thread (and start-up, before the worker runs). */
#include "apply/prune.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "apply/fsutil.h"
#include "apply/layout.h"
#include "apply/maincf.h"
#include "conf.h"
#include "util.h"

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
                                     (n > 4 && streq(de->d_name + n - 4, ".new")) ||
                                     strncmp(de->d_name, "tls_policy.new", 14) == 0 ||
                                     streq(de->d_name, "tls_policy.input");
                        bool scratch = streq(de->d_name, "master.check") ||
                                       streq(de->d_name, "takeover.check");
                        if ((stale || scratch) &&
                            layout_join(state, de->d_name, path, sizeof(path)) >= 0) {
                                if (scratch)
                                        fs_remove_tree(path);
                                else
                                        unlink(path);
                        }
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
        if (fs_read_file(main_cf, LAYOUT_MAIN_CF_MAX, &text, &len) < 0)
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
