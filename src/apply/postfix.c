/* postfix.c - running postfix and postconf for the worker (see postfix.h). Worker thread; the
 * cached running-state (postfix_running_recent) also HTTP threads. */
#include "apply/postfix.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <openssl/evp.h>

#include "apply/cdb.h"
#include "apply/fsutil.h"
#include "apply/layout.h"
#include "conf.h"
#include "core/policy_map_read.h"
#include "core/policy.h"
#include "log.h"
#include "probe/probe.h"
#include "recent.h"
#include "util.h"

static int run_opts(char *const *cmd, const char *const *args, uint64_t timeout,
                    const struct spawn_options *o, struct spawn_result *res)
{
        const char **argv = NULL;
        int r = spawn_argv(cmd, args, &argv);
        if (r < 0) {
                *res = (struct spawn_result){ 0 };
                return r;
        }
        r = spawn_run_opts(argv, timeout, o, res);
        free((void *)argv);
        return r;
}

static int run(char *const *cmd, const char *const *args, uint64_t timeout,
               struct spawn_result *res)
{
        return run_opts(cmd, args, timeout, NULL, res);
}

int postconf_in(const struct config *cfg, const char *dir, const char *const *args,
                struct spawn_result *res)
{
        const char *argv[16] = { "-c", dir };
        size_t n = 2;
        for (size_t i = 0; args[i]; i++) {
                if (n + 1 >= ARRAY_SIZE(argv)) {
                        *res = (struct spawn_result){ 0 };
                        return -E2BIG;
                }
                argv[n++] = args[i];
        }
        argv[n] = NULL;
        const struct spawn_options o = { .stderr_apart = true };
        int r = run_opts(cfg->postconf_command, argv, (uint64_t)cfg->command_timeout, &o, res);
        if (r >= 0 && res->exit_status != 0)
                r = -EPROTO;
        return r;
}

int postfix_scratch_dir(const struct config *cfg, const char *name, const char *main_cf,
                        size_t main_len, const char *master, size_t master_len, char *dir,
                        size_t size)
{
        char state[PATH_MAX], path[PATH_MAX];
        dir[0] = 0;
        int r = layout_state_dir(cfg, state, sizeof(state));
        if (r >= 0)
                r = layout_join(state, name, dir, size);
        if (r >= 0)
                r = fs_remove_tree(dir);
        if (r >= 0)
                r = fs_mkdir_p(dir, 0700);
        const struct {
                const char *name, *data;
                size_t len;
        } files[] = { { "main.cf", main_cf, main_len }, { "master.cf", master, master_len } };
        for (size_t i = 0; r >= 0 && i < ARRAY_SIZE(files); i++) {
                r = layout_join(dir, files[i].name, path, sizeof(path));
                if (r >= 0)
                        r = fs_write_file(path, files[i].data, files[i].len, 0644);
                if (r >= 0)
                        r = fs_set_mtime_ago(path, 2);
        }
        if (r < 0 && dir[0])
                fs_remove_tree(dir);
        return r;
}

int postconf_expanded_all(const struct config *cfg, const char *dir, char **ret)
{
        const char *const args[] = { "-c", dir, "-x", NULL };
        const struct spawn_options o = { .stderr_apart = true, .output_max = 4u << 20 };
        struct spawn_result res;
        int r = run_opts(cfg->postconf_command, args, (uint64_t)cfg->command_timeout, &o, &res);
        if (r >= 0 && res.errors_len)
                log_info("postconf -x: %s", res.errors);
        if (r >= 0 && (res.exit_status != 0 || res.output_len >= res.output_max))
                r = -EPROTO;
        if (r >= 0)
                *ret = TAKE_PTR(res.output);
        spawn_result_done(&res);
        return r;
}

int postfix_check(const struct config *cfg, const char *dir, struct spawn_result *res)
{
        const char *const args[] = { "-c", dir, "check", NULL };
        int r = run(cfg->postfix_command, args, (uint64_t)cfg->command_timeout, res);
        if (r < 0)
                return r;
        /* its warnings go to the mail log, not to us: the exit status says what it refuses
         * (the submission services' own checks are mastercf.c's) */
        return res->exit_status == 0 ? 0 : -EPROTO;
}

/* A dump of a map with 100,000 entries is about 10 MiB; 1,000,000 fit in this. */
#define MAP_DUMP_MAX (256u << 20)

int postmap_build(const struct config *cfg, const char *type, const char *path,
                  struct spawn_result *res)
{
        char map[4200];
        snprintf(map, sizeof(map), "%s:%s", type, path);
        const char *const args[] = { "-c", cfg->postfix_config_directory, map, NULL };
        int r = run(cfg->postmap_command, args, (uint64_t)cfg->command_timeout, res);
        if (r < 0)
                return r;
        return res->exit_status == 0 ? 0 : -EPROTO;
}

/* postmap with its input from a file: -i -r (put), -d - (delete) or -q - (query). */
static int postmap_input(const struct config *cfg, const char *op, const char *type,
                         const char *path, const char *input, struct spawn_result *res)
{
        char map[4200];
        snprintf(map, sizeof(map), "%s:%s", type, path);
        bool put = streq(op, "-i");
        const char *const args[] = { "-c", cfg->postfix_config_directory, op, put ? "-r" : "-", map,
                                     NULL };
        /* a query's stdout is parsed: a warning on stderr must not become an entry */
        const struct spawn_options o = { .output_max = MAP_DUMP_MAX,
                                         .stderr_apart = true,
                                         .stdin_path = input };
        int r = run_opts(cfg->postmap_command, args, (uint64_t)cfg->command_timeout, &o, res);
        if (r < 0)
                return r;
        /* -d and -q exit 1 when no key was there - and on any fatal error, which says so on
         * stderr ("postmap: fatal: ..."; a warning, say of main.cf, is no failure): the caller
         * checks what it asked */
        const char *err = res->errors ? res->errors : "";
        bool none_found =
            !put && res->exit_status == 1 && !strstr(err, ": fatal: ") && !strstr(err, ": panic: ");
        return res->exit_status == 0 || none_found ? 0 : -EPROTO;
}

int postmap_put(const struct config *cfg, const char *type, const char *path, const char *input,
                struct spawn_result *res)
{
        return postmap_input(cfg, "-i", type, path, input, res);
}

int postmap_delete(const struct config *cfg, const char *type, const char *path, const char *input,
                   struct spawn_result *res)
{
        return postmap_input(cfg, "-d", type, path, input, res);
}

int postmap_query(const struct config *cfg, const char *type, const char *path, const char *input,
                  struct spawn_result *res)
{
        return postmap_input(cfg, "-q", type, path, input, res);
}

int postmap_dump(const struct config *cfg, const char *type, const char *path,
                 struct spawn_result *res)
{
        char map[4200];
        snprintf(map, sizeof(map), "%s:%s", type, path);
        const char *const args[] = { "-c", cfg->postfix_config_directory, "-s", map, NULL };
        /* the entries are parsed: a warning on stderr must not become one */
        const struct spawn_options o = { .output_max = MAP_DUMP_MAX, .stderr_apart = true };
        int r = run_opts(cfg->postmap_command, args, (uint64_t)cfg->command_timeout, &o, res);
        if (r >= 0 && res->errors_len)
                log_info("postmap -s %s: %s", map, res->errors);
        if (r < 0)
                return r;
        return res->exit_status == 0 ? 0 : -EPROTO;
}

/* The last answer of `postfix status`, for readers that may not wait for one of their own. */
static struct recent_answer running = RECENT_ANSWER_INIT(POSTFIX_RUNNING_MAX_AGE_USEC);

bool postfix_is_running(const struct config *cfg)
{
        struct spawn_result res;
        const char *const args[] = { "-c", cfg->postfix_config_directory, "status", NULL };
        int r = run(cfg->postfix_command, args, (uint64_t)cfg->command_timeout, &res);
        bool is_running = r >= 0 && res.exit_status == 0;
        spawn_result_done(&res);
        recent_store(&running, is_running);
        return is_running;
}

/* What /status shows of Postfix, refreshed with the running answer; under facts.lock */
static struct {
        pthread_mutex_t lock;
        bool known;
        char version[32];
        int trust; /* postfix_outbound_trust's answer */
        char trust_why[POSTFIX_TRUST_WHY_MAX];
        struct fingerprint_digest digest; /* len 0: unknown */
        struct postfix_smtp_tls smtp;     /* the smtp client's trust and match lists */
        bool smtp_known;                  /* postconf answered */
} facts = { .lock = PTHREAD_MUTEX_INITIALIZER };

enum {
        V_VERSION,
        V_CAFILE,
        V_CAPATH,
        V_APPEND,
        V_DIGEST,
        V_VERIFY_MATCH,
        V_SECURE_MATCH,
        V_INET_PROTOCOLS,
        V_MAX
};
static const char *const fact_names[] = { "mail_version",
                                          "smtp_tls_CAfile",
                                          "smtp_tls_CApath",
                                          "tls_append_default_CA",
                                          "smtp_tls_fingerprint_digest",
                                          "smtp_tls_verify_cert_match",
                                          "smtp_tls_secure_cert_match",
                                          "inet_protocols",
                                          NULL };

/* The digest named v (Postfix asks OpenSSL for it by name, tls_validate_digest). */
static int digest_from(const char *v, struct fingerprint_digest *ret)
{
        *ret = (struct fingerprint_digest){ 0 };
        const EVP_MD *md = v ? EVP_get_digestbyname(v) : NULL;
        if (!md || EVP_MD_get_size(md) <= 0 || strlen(v) >= sizeof(ret->name))
                return -EINVAL;
        snprintf(ret->name, sizeof(ret->name), "%s", v);
        ret->len = 3 * (size_t)EVP_MD_get_size(md) - 1;
        return 0;
}

/* Trust anchors of the smtp client from the values of fact_names (expanded). */
static int trust_from(char *const *v, char *why, size_t size)
{
        *why = 0;
        if (!isempty(v[V_CAFILE])) {
                /* read before smtp enters its chroot jail: the file as named here */
                if (access(v[V_CAFILE], R_OK) == 0)
                        return 1;
                snprintf(why, size,
                         "smtp_tls_CAfile (%s) cannot be read: Postfix then disables TLS in the "
                         "smtp client (%s)",
                         v[V_CAFILE], strerror(errno));
                return 0;
        }
        if (!isempty(v[V_CAPATH]) || streq(v[V_APPEND], "yes"))
                return 1;
        snprintf(why, size,
                 "no trust anchors for verify and secure: smtp_tls_CAfile and smtp_tls_CApath are "
                 "empty and tls_append_default_CA = no (set the settings' outbound_ca)");
        return 0;
}

static void facts_refresh(const struct config *cfg)
{
        char *v[V_MAX] = { 0 };
        char why[POSTFIX_TRUST_WHY_MAX] = "";
        struct fingerprint_digest digest;
        int trust = postconf_values(cfg, fact_names, v);
        if (trust >= 0)
                trust = trust_from(v, why, sizeof(why));
        digest_from(v[V_DIGEST], &digest);
        pthread_mutex_lock(&facts.lock);
        facts.digest = digest;
        snprintf(facts.version, sizeof(facts.version), "%s", v[V_VERSION] ? v[V_VERSION] : "");
        facts.trust = trust;
        snprintf(facts.trust_why, sizeof(facts.trust_why), "%s", why);
        struct postfix_smtp_tls *t = &facts.smtp;
        facts.smtp_known = v[V_APPEND] != NULL;
        snprintf(t->ca_file, sizeof(t->ca_file), "%s", v[V_CAFILE] ? v[V_CAFILE] : "");
        snprintf(t->ca_path, sizeof(t->ca_path), "%s", v[V_CAPATH] ? v[V_CAPATH] : "");
        t->ca_default = v[V_APPEND] && streq(v[V_APPEND], "yes");
        snprintf(t->verify_match, sizeof(t->verify_match), "%s",
                 v[V_VERIFY_MATCH] ? v[V_VERIFY_MATCH] : "");
        snprintf(t->secure_match, sizeof(t->secure_match), "%s",
                 v[V_SECURE_MATCH] ? v[V_SECURE_MATCH] : "");
        snprintf(t->inet_protocols, sizeof(t->inet_protocols), "%s",
                 v[V_INET_PROTOCOLS] ? v[V_INET_PROTOCOLS] : "all");
        snprintf(t->fingerprint_digest, sizeof(t->fingerprint_digest), "%s",
                 digest.len ? digest.name : "");
        facts.known = true;
        pthread_mutex_unlock(&facts.lock);
        for (size_t i = 0; i < V_MAX; i++)
                free(v[i]);
}

static bool ask_running(void *cfg)
{
        facts_refresh(cfg);
        return postfix_is_running(cfg);
}

static void facts_known(const struct config *cfg)
{
        pthread_mutex_lock(&facts.lock);
        bool known = facts.known;
        pthread_mutex_unlock(&facts.lock);
        if (!known)
                facts_refresh(cfg);
}

void postfix_version_recent(const struct config *cfg, char *buf, size_t size)
{
        facts_known(cfg);
        pthread_mutex_lock(&facts.lock);
        snprintf(buf, size, "%s", facts.version);
        pthread_mutex_unlock(&facts.lock);
}

int postfix_outbound_trust_recent(const struct config *cfg, char *why, size_t size)
{
        facts_known(cfg);
        pthread_mutex_lock(&facts.lock);
        int r = facts.trust;
        snprintf(why, size, "%s", facts.trust_why);
        pthread_mutex_unlock(&facts.lock);
        return r;
}

void postfix_fingerprint_digest_recent(const struct config *cfg, struct fingerprint_digest *ret)
{
        facts_known(cfg);
        pthread_mutex_lock(&facts.lock);
        *ret = facts.digest;
        pthread_mutex_unlock(&facts.lock);
}

int postfix_outbound_trust(const struct config *cfg, char *why, size_t size)
{
        char *v[V_MAX] = { 0 };
        int r = postconf_values(cfg, fact_names, v);
        if (r >= 0)
                r = trust_from(v, why, size);
        for (size_t i = 0; i < V_MAX; i++)
                free(v[i]);
        return r;
}

bool postfix_running_recent(const struct config *cfg)
{
        return recent_get_ahead(&running, ask_running, (void *)cfg);
}

void postfix_recent_refresh(const struct config *cfg)
{
        recent_refresh(&running, ask_running, (void *)cfg);
}

/* The smtpd processes the master of cfg's Postfix runs now: children of the pid in
 * <queue_directory>/pid/master.pid named smtpd (none when that master is not ours to see: a
 * container's). At most max. */
#define OLD_SMTPD_MAX 64
static size_t running_smtpds(const struct config *cfg, pid_t *pids, size_t max)
{
        _cleanup_free_ char *qdir = NULL, *text = NULL;
        char path[PATH_MAX];
        size_t len = 0, n = 0;
        long master = 0;
        if (postconf_value(cfg, "queue_directory", &qdir) < 0 ||
            snprintf(path, sizeof(path), "%s/pid/master.pid", qdir) >= (int)sizeof(path) ||
            fs_read_file(path, 64, &text, &len) < 0 || (master = strtol(text, NULL, 10)) <= 1)
                return 0;
        DIR *d = opendir("/proc");
        struct dirent *de;
        while (d && n < max && (de = readdir(d))) {
                char stat[512], comm[64];
                long pid = strtol(de->d_name, NULL, 10), ppid = 0;
                if (pid <= 1 ||
                    snprintf(path, sizeof(path), "/proc/%ld/stat", pid) >= (int)sizeof(path))
                        continue;
                FILE *f = fopen(path, "re");
                if (!f)
                        continue;
                bool ok = fgets(stat, sizeof(stat), f) != NULL;
                fclose(f);
                /* "pid (comm) state ppid ...": comm has no ')' for smtpd */
                if (ok && sscanf(stat, "%*d (%63[^)]) %*c %ld", comm, &ppid) == 2 &&
                    ppid == master && streq(comm, "smtpd"))
                        pids[n++] = (pid_t)pid;
        }
        if (d)
                closedir(d);
        return n;
}

/* Waits until each of pids has exited, at most limit_usec: one pidfd each, polled together. */
static void wait_exited(const pid_t *pids, size_t n, uint64_t limit_usec)
{
        struct pollfd fds[OLD_SMTPD_MAX];
        size_t open_fds = 0;
        for (size_t i = 0; i < n && i < OLD_SMTPD_MAX; i++) {
                int fd = (int)syscall(SYS_pidfd_open, pids[i], 0);
                if (fd >= 0)
                        fds[open_fds++] = (struct pollfd){ .fd = fd, .events = POLLIN };
        }
        uint64_t deadline = now_monotonic_usec() + limit_usec;
        size_t left = open_fds;
        while (left > 0) {
                uint64_t now = now_monotonic_usec();
                if (now >= deadline)
                        break;
                int k = poll(fds, open_fds, (int)((deadline - now + 999) / 1000));
                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0)
                        break;
                for (size_t i = 0; i < open_fds; i++)
                        if (fds[i].fd >= 0 && fds[i].revents) {
                                close(fds[i].fd);
                                fds[i].fd = -1; /* poll skips it */
                                left--;
                        }
        }
        for (size_t i = 0; i < open_fds; i++)
                if (fds[i].fd >= 0)
                        close(fds[i].fd);
}

/* How long a reload waits for the smtpd processes from before it: an idle one exits at once,
 * one in the middle of a session when the session ends (not waited for). */
#define RELOAD_OLD_SMTPD_WAIT_USEC (1000ull * 1000)

int postfix_reload(const struct config *cfg, struct spawn_result *res)
{
        /* The smtpds from before the reload may each still take a connection in the moments
         * after it, and serve it with the old configuration: the write's reply waits until they
         * are gone (bounded), so that a client asking right after it is served the new one. */
        pid_t old[OLD_SMTPD_MAX];
        size_t n_old = running_smtpds(cfg, old, OLD_SMTPD_MAX);
        const char *const args[] = { "-c", cfg->postfix_config_directory, "reload", NULL };
        int r = run(cfg->postfix_command, args, (uint64_t)cfg->command_timeout, res);
        if (r < 0)
                return r;
        if (res->exit_status != 0)
                return -EPROTO;
        uint64_t t0 = now_monotonic_usec();
        wait_exited(old, n_old, RELOAD_OLD_SMTPD_WAIT_USEC);
        if (n_old > 0)
                log_debug("postfix reload: %zu smtpd process(es) from before it, gone in %.1f ms",
                          n_old, (double)(now_monotonic_usec() - t0) / 1000.0);
        return 0;
}

static bool name_char(char c)
{
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '_';
}

/* Whether the line names the parameter as a whole word (smtpd_tls_security_level is not named
 * by a warning about smtpd_tls_security_level_x). */
static bool names_parameter(const char *line, size_t len, const char *name)
{
        size_t n = strlen(name);
        for (const char *p = line; (p = memmem(p, len - (size_t)(p - line), name, n)); p++) {
                bool start = p == line || !name_char(p[-1]);
                bool end = (size_t)(p - line) + n == len || !name_char(p[n]);
                if (start && end)
                        return true;
                if ((size_t)(p - line) + n >= len)
                        break;
        }
        return false;
}

int postconf_check(const struct config *cfg, const char *dir, const char *const *names,
                   struct spawn_result *res)
{
        const char *const args[] = { "-c", dir, "-n", NULL };
        int r = run(cfg->postconf_command, args, (uint64_t)cfg->command_timeout, res);
        if (r < 0)
                return r;
        if (res->exit_status != 0)
                return -EPROTO;
        /* Warnings about the administrator's own parameters are theirs; ours must be clean. */
        for (const char *line = res->output; line && *line;) {
                const char *end = strchr(line, '\n');
                size_t len = end ? (size_t)(end - line) : strlen(line);
                if (memmem(line, len, "warning:", 8))
                        for (size_t i = 0; names[i]; i++)
                                if (names_parameter(line, len, names[i]))
                                        return -EPROTO;
                line = end ? end + 1 : NULL;
        }
        return 0;
}

static int postconf_list(const struct config *cfg, const char *flag, const char *const *names,
                         char **ret);

int postconf_values(const struct config *cfg, const char *const *names, char **ret)
{
        return postconf_list(cfg, "-x", names, ret);
}

int postconf_defaults(const struct config *cfg, const char *const *names, char **ret)
{
        return postconf_list(cfg, "-d", names, ret);
}

static int postconf_list(const struct config *cfg, const char *flag, const char *const *names,
                         char **ret)
{
        struct spawn_result res;
        size_t n = 0;
        while (names[n])
                n++;
        /* -x: the values as Postfix uses them ("${{$compatibility_level} <level {3.6} ? {md5}
         * : {sha256}}" is md5 or sha256, $myhostname its value) */
        const char *const head[] = { "-c", cfg->postfix_config_directory, flag, "-h", NULL };
        _cleanup_free_ const char **args = calloc(n + 5, sizeof(char *));
        if (!args)
                return -ENOMEM;
        memcpy(args, head, 4 * sizeof(char *));
        memcpy(args + 4, names, n * sizeof(char *));
        /* the values are stdout alone: "postconf: warning: ..." lines (about any parameter of
         * main.cf) come on stderr and are logged, never taken for a value */
        const struct spawn_options o = { .stderr_apart = true };
        int r = run_opts(cfg->postconf_command, args, (uint64_t)cfg->command_timeout, &o, &res);
        if (r >= 0 && res.errors_len)
                log_info("postconf %s -h %s%s: %s", flag, names[0], n > 1 ? " ..." : "",
                         res.errors);
        if (r >= 0 && res.exit_status != 0)
                r = -EPROTO;
        /* one line a name, in order */
        const char *line = res.output ? res.output : "";
        for (size_t i = 0; r >= 0 && i < n; i++) {
                const char *end = strchr(line, '\n');
                if (!end) {
                        r = -EPROTO;
                        break;
                }
                size_t len = (size_t)(end - line);
                while (len > 0 && line[len - 1] == ' ')
                        len--;
                ret[i] = strndup(line, len);
                if (!ret[i])
                        r = -ENOMEM;
                line = end + 1;
        }
        if (r < 0)
                for (size_t i = 0; i < n; i++) {
                        free(ret[i]);
                        ret[i] = NULL;
                }
        spawn_result_done(&res);
        return r;
}

int postconf_value(const struct config *cfg, const char *name, char **ret)
{
        const char *const names[] = { name, NULL };
        return postconf_values(cfg, names, ret);
}

int postconf_service_params(const struct config *cfg, char **ret)
{
        /* master.cf's -o parameters: stdout alone (warnings are logged), as postconf prints it */
        const char *const args[] = { "-c", cfg->postfix_config_directory, "-P", NULL };
        struct spawn_result res;
        const struct spawn_options o = { .stderr_apart = true };
        int r = run_opts(cfg->postconf_command, args, (uint64_t)cfg->command_timeout, &o, &res);
        if (r >= 0 && res.errors_len)
                log_info("postconf -P: %s", res.errors);
        if (r >= 0 && res.exit_status != 0)
                r = -EPROTO;
        if (r >= 0)
                *ret = TAKE_PTR(res.output);
        spawn_result_done(&res);
        return r;
}

int postfix_fingerprint_digest(const struct config *cfg, struct fingerprint_digest *ret)
{
        _cleanup_free_ char *v = NULL;
        *ret = (struct fingerprint_digest){ 0 };
        int r = postconf_value(cfg, "smtp_tls_fingerprint_digest", &v);
        return r < 0 ? r : digest_from(v, ret);
}

int postconf_service(const struct config *cfg, const char *service, bool *ret)
{
        struct spawn_result res;
        const char *const args[] = { "-c", cfg->postfix_config_directory, "-M", service, NULL };
        const struct spawn_options o = { .stderr_apart = true };
        int r = run_opts(cfg->postconf_command, args, (uint64_t)cfg->command_timeout, &o, &res);
        if (r >= 0 && res.exit_status != 0)
                r = -EPROTO;
        if (r >= 0) {
                /* "tlsproxy   unix  -  -  y  -  0  tlsproxy": a line that names the service */
                size_t n = strlen(service);
                const char *slash = strchr(service, '/');
                size_t name = slash ? (size_t)(slash - service) : n;
                *ret = res.output && strncmp(res.output, service, name) == 0 &&
                       (res.output[name] == ' ' || res.output[name] == '\t');
        }
        spawn_result_done(&res);
        return r;
}

int postfix_smtp_tls_recent(const struct config *cfg, struct postfix_smtp_tls *ret)
{
        /* asked anew when the running answer is (POSTFIX_RUNNING_MAX_AGE_USEC): a probe costs
         * no postconf run, and a settings write shows within that time */
        postfix_running_recent(cfg);
        facts_known(cfg);
        pthread_mutex_lock(&facts.lock);
        int r = facts.smtp_known ? 0 : -EIO;
        *ret = facts.smtp;
        pthread_mutex_unlock(&facts.lock);
        return r;
}

void postfix_smtp_for_probe(const struct config *cfg, struct probe_destination *d)
{
        struct postfix_smtp_tls t;
        if (postfix_smtp_tls_recent(cfg, &t) < 0) {
                log_warning("probe: postconf cannot tell smtp's trust anchors: the system's are "
                            "used");
                probe_destination_set_smtp(d, NULL, NULL, true, NULL, NULL, NULL, NULL);
                return;
        }
        probe_destination_set_smtp(d, t.ca_file, t.ca_path, t.ca_default, t.verify_match,
                                   t.secure_match, t.inet_protocols, t.fingerprint_digest);
}

/* "COUNT:SUM" of a digest (policy_map_digest), in text. */
static void digest_text(const struct policy_map_digest *d, char out[static POSTMAP_DIGEST_MAX])
{
        snprintf(out, POSTMAP_DIGEST_MAX, "%zu:%016llx%016llx%016llx%016llx", d->count,
                 (unsigned long long)d->sum[0], (unsigned long long)d->sum[1],
                 (unsigned long long)d->sum[2], (unsigned long long)d->sum[3]);
}

int postmap_content_digest_text(const char *text, size_t len, char out[static POSTMAP_DIGEST_MAX])
{
        struct policy_map_digest d;
        int r = policy_map_digest(text, len, &d);
        if (r >= 0)
                digest_text(&d, out);
        return r;
}

int postmap_content_digest(const struct config *cfg, const char *spec,
                           char out[static POSTMAP_DIGEST_MAX])
{
        char file[PATH_MAX], type[32];
        const char *colon = strchr(spec, ':');
        int r = layout_map_file(spec, file, sizeof(file));
        if (r < 0)
                return r;
        snprintf(type, sizeof(type), "%.*s", (int)(colon - spec), spec);
        if (streq(type, "texthash")) {
                _cleanup_free_ char *text = NULL;
                size_t len = 0;
                r = fs_read_file(file, 256u << 20, &text, &len);
                return r < 0 ? r : postmap_content_digest_text(text, len, out);
        }
        if (streq(type, "cdb")) {
                struct policy_map_entry *e = NULL;
                size_t n = 0;
                struct strbuf t = { 0 };
                r = cdb_read_entries(file, &e, &n);
                for (size_t i = 0; r >= 0 && i < n; i++)
                        if (strbuf_add(&t, e[i].key, strlen(e[i].key)) < 0 ||
                            strbuf_add(&t, "\t", 1) < 0 ||
                            strbuf_add(&t, e[i].value, strlen(e[i].value)) < 0 ||
                            strbuf_add(&t, "\n", 1) < 0)
                                r = -ENOMEM;
                if (r >= 0)
                        r = postmap_content_digest_text(t.p ? t.p : "", t.len, out);
                policy_map_entries_free(e, n);
                free(t.p);
                return r;
        }
        struct spawn_result res = { 0 };
        r = postmap_dump(cfg, type, colon + 1, &res);
        if (r >= 0)
                r = postmap_content_digest_text(res.output, res.output_len, out);
        spawn_result_done(&res);
        return r;
}
