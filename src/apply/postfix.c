/* postfix.c - running postfix and postconf for the worker (see postfix.h). Worker thread; the
 * cached running-state (postfix_running_recent) also HTTP threads. */
#include "smtptlsd/postfix.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtptlsd/conf.h"
#include "smtptlsd/log.h"
#include "smtptlsd/recent.h"
#include "smtptlsd/util.h"

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

/* mail_version, refreshed with the running answer; under version.lock */
static struct {
        pthread_mutex_t lock;
        bool known;
        char value[32];
} version = { .lock = PTHREAD_MUTEX_INITIALIZER };

static void version_refresh(const struct config *cfg)
{
        _cleanup_free_ char *v = NULL;
        if (postconf_value(cfg, "mail_version", &v) < 0)
                v = NULL;
        pthread_mutex_lock(&version.lock);
        snprintf(version.value, sizeof(version.value), "%s", v ? v : "");
        version.known = true;
        pthread_mutex_unlock(&version.lock);
}

static bool ask_running(void *cfg)
{
        version_refresh(cfg);
        return postfix_is_running(cfg);
}

void postfix_version_recent(const struct config *cfg, char *buf, size_t size)
{
        pthread_mutex_lock(&version.lock);
        bool known = version.known;
        pthread_mutex_unlock(&version.lock);
        if (!known)
                version_refresh(cfg);
        pthread_mutex_lock(&version.lock);
        snprintf(buf, size, "%s", version.value);
        pthread_mutex_unlock(&version.lock);
}

bool postfix_running_recent(const struct config *cfg)
{
        return recent_get(&running, ask_running, (void *)cfg);
}

int postfix_reload(const struct config *cfg, struct spawn_result *res)
{
        const char *const args[] = { "-c", cfg->postfix_config_directory, "reload", NULL };
        int r = run(cfg->postfix_command, args, (uint64_t)cfg->command_timeout, res);
        if (r < 0)
                return r;
        return res->exit_status == 0 ? 0 : -EPROTO;
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
                                if (memmem(line, len, names[i], strlen(names[i])))
                                        return -EPROTO;
                line = end ? end + 1 : NULL;
        }
        return 0;
}

int postconf_value(const struct config *cfg, const char *name, char **ret)
{
        struct spawn_result res;
        const char *const args[] = { "-c", cfg->postfix_config_directory, "-h", name, NULL };
        /* the value is stdout alone: "postconf: warning: ..." lines (about any parameter of
         * main.cf) come on stderr and are logged, never taken for the value */
        const struct spawn_options o = { .stderr_apart = true };
        int r = run_opts(cfg->postconf_command, args, (uint64_t)cfg->command_timeout, &o, &res);
        if (r >= 0 && res.errors_len)
                log_info("postconf -h %s: %s", name, res.errors);
        if (r >= 0 && res.exit_status != 0)
                r = -EPROTO;
        if (r >= 0) {
                size_t n = res.output_len;
                while (n > 0 && (res.output[n - 1] == '\n' || res.output[n - 1] == ' '))
                        n--;
                res.output[n] = 0;
                *ret = TAKE_PTR(res.output);
        }
        spawn_result_done(&res);
        return r;
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
