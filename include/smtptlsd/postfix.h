/* postfix.h - the Postfix commands the worker runs, each with `-c <postfix_config_directory>`
 * (or a check directory), through spawn (argv, no shell, bounded by command_timeout). Worker
 * thread and start-up; postfix_running_recent any thread. */
#pragma once

#include <stdbool.h>

#include "smtptlsd/spawn.h"

struct config;

/* `postfix -c DIR status`: whether the master runs. */
bool postfix_is_running(const struct config *cfg);
/* The answer of a check at most POSTFIX_RUNNING_MAX_AGE_USEC old (the worker's own checks count),
 * else a new check; while another thread checks, its predecessor's answer. For HTTP handlers: a
 * GET /status must not spawn `postfix status` per request (50-300 ms each, on an HTTP thread). */
#define POSTFIX_RUNNING_MAX_AGE_USEC (2 * 1000000ULL)
bool postfix_running_recent(const struct config *cfg);
/* Postfix's mail_version (e.g. "3.7.11") into buf, "" when postconf cannot tell: asked at the
 * first call and then whenever postfix_running_recent asks anew (a package upgrade shows within
 * POSTFIX_RUNNING_MAX_AGE_USEC of /status being read). Any thread. */
void postfix_version_recent(const struct config *cfg, char *buf, size_t size);
/* `postfix -c DIR reload`; the output goes to res (caller frees with spawn_result_done). */
int postfix_reload(const struct config *cfg, struct spawn_result *res);
/* `postconf -c DIR -n` on a staged configuration: fails (-EPROTO) when postconf fails or warns
 * about one of the names given; res holds the output. */
int postconf_check(const struct config *cfg, const char *dir, const char *const *names,
                   struct spawn_result *res);
/* `postmap -c DIR TYPE:PATH`: builds the indexed map next to PATH. */
int postmap_build(const struct config *cfg, const char *type, const char *path,
                  struct spawn_result *res);
/* `postmap -c DIR -s TYPE:PATH`: every entry of the built map, "key value" per line. */
int postmap_dump(const struct config *cfg, const char *type, const char *path,
                 struct spawn_result *res);
/* `postconf -c DIR -h NAME`: the effective value (defaults included) of one parameter. */
int postconf_value(const struct config *cfg, const char *name, char **ret);
/* `postconf -c DIR -M NAME/TYPE`: whether master.cf defines the service (not commented out). */
int postconf_service(const struct config *cfg, const char *service, bool *ret);
