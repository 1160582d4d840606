/* postfix.h - the Postfix commands the worker runs, each with `-c <postfix_config_directory>`
 * (or a check directory), through spawn (argv, no shell, bounded by command_timeout). Worker
 * thread and start-up; postfix_running_recent any thread. */
#pragma once

#include <stdbool.h>

#include "apply/spawn.h"

struct config;
struct fingerprint_digest;

/* `postfix -c DIR status`: whether the master runs. */
bool postfix_is_running(const struct config *cfg);
/* The answer of a check at most POSTFIX_RUNNING_MAX_AGE_USEC old (the worker's own checks count),
 * else a new check; while another thread checks, its predecessor's answer. For HTTP handlers: a
 * GET /status must not spawn `postfix status` per request (50-300 ms each, on an HTTP thread),
 * nor, while it is read steadily, every POSTFIX_RUNNING_MAX_AGE_USEC (the read model's tail): a
 * reader that finds the answer a quarter that old wants it checked again, and the worker's idle
 * round does (postfix_recent_refresh). */
#define POSTFIX_RUNNING_MAX_AGE_USEC (2 * 1000000ULL)
bool postfix_running_recent(const struct config *cfg);
/* The check postfix_running_recent's readers asked for, if any (the worker, when idle). */
void postfix_recent_refresh(const struct config *cfg);
/* Postfix's mail_version (e.g. "3.7.11") into buf, "" when postconf cannot tell: asked at the
 * first call and then whenever postfix_running_recent asks anew (a package upgrade shows within
 * about POSTFIX_RUNNING_MAX_AGE_USEC of /status being read). Any thread. */
void postfix_version_recent(const struct config *cfg, char *buf, size_t size);
/* `postfix -c DIR reload`; the output goes to res (caller frees with spawn_result_done). */
int postfix_reload(const struct config *cfg, struct spawn_result *res);
/* `postconf -c DIR -n` on a staged configuration: fails (-EPROTO) when postconf fails or warns
 * about one of the names given; res holds the output. */
int postconf_check(const struct config *cfg, const char *dir, const char *const *names,
                   struct spawn_result *res);
/* `postconf -c DIR ARGS...` (a master.cf edit or read on a staged copy: -M, -P, -M#): stdout in
 * res->output, stderr (warnings) apart in res->errors; -EPROTO when it exits non-zero. */
int postconf_in(const struct config *cfg, const char *dir, const char *const *args,
                struct spawn_result *res);
/* A scratch configuration directory <postfix_dir>/.smtptlsd/<name> (emptied first) that postconf
 * -c can read: main.cf (main_cf, dated back so that Postfix reads it at once) and master.cf
 * (master). Its path into dir; the caller removes it (fs_remove_tree). */
int postfix_scratch_dir(const struct config *cfg, const char *name, const char *main_cf,
                        size_t main_len, const char *master, size_t master_len, char *dir,
                        size_t size);
/* `postconf -c DIR -x`: every parameter, $names expanded, as "name = value" lines (stdout; its
 * warnings are logged). */
int postconf_expanded_all(const struct config *cfg, const char *dir, char **ret);
/* `postfix -c DIR check` on a staged configuration: -EPROTO when it fails (res holds what it
 * said; its warnings go to the mail log). */
int postfix_check(const struct config *cfg, const char *dir, struct spawn_result *res);
/* `postmap -c DIR TYPE:PATH`: builds the indexed map next to PATH. */
int postmap_build(const struct config *cfg, const char *type, const char *path,
                  struct spawn_result *res);
/* An incremental edit of a built map (hash, btree, lmdb: not cdb), its input read from the file
 * input: `postmap -c DIR -i -r TYPE:PATH` adds its "key<TAB>value" lines, a key's new value
 * replacing the old; `postmap -c DIR -d - TYPE:PATH` removes its keys (one per line);
 * `postmap -c DIR -q - TYPE:PATH` prints "key<TAB>value" (stdout) for each of its keys found.
 * -EPROTO when postmap failed (for -d and -q: other than "no key found", exit status 1 without
 * a fatal error on stderr: look at res->exit_status). */
int postmap_put(const struct config *cfg, const char *type, const char *path, const char *input,
                struct spawn_result *res);
int postmap_delete(const struct config *cfg, const char *type, const char *path, const char *input,
                   struct spawn_result *res);
int postmap_query(const struct config *cfg, const char *type, const char *path, const char *input,
                  struct spawn_result *res);
/* `postmap -c DIR -s TYPE:PATH`: every entry of the built map, "key value" per line. */
int postmap_dump(const struct config *cfg, const char *type, const char *path,
                 struct spawn_result *res);
/* `postconf -c DIR -x -h NAME`: the effective value of one parameter, defaults included and
 * expanded ($name, ${{...} <level {...} ? ...}) as Postfix uses it; postconf's warnings (stderr)
 * are logged, never part of it. */
int postconf_value(const struct config *cfg, const char *name, char **ret);
/* `postconf -c DIR -P`: master.cf's `-o` parameters as Postfix reads them (continuation lines,
 * `-o { name = value }`), one "service/type/name = value" per line (stdout alone). */
int postconf_service_params(const struct config *cfg, char **ret);
/* The same for the NULL-terminated names at once (one postconf): ret[i] for names[i], each
 * freed by the caller (all NULL on failure). */
int postconf_values(const struct config *cfg, const char *const *names, char **ret);
/* The same, Postfix's defaults (`postconf -d -h`). */
int postconf_defaults(const struct config *cfg, const char *const *names, char **ret);

/* What a policy map holds, whatever its file's bytes (postmap writes an unchanged source into
 * another .db): "COUNT:SUM" of its entries (policy_map_digest), read as Postfix would - the
 * index with postmap -s, a cdb file, a texthash source. -EINVAL for a map of another type. */
#define POSTMAP_DIGEST_MAX 96
int postmap_content_digest(const struct config *cfg, const char *spec,
                           char out[static POSTMAP_DIGEST_MAX]);
/* The same digest of entries already read (map source or postmap -s text). */
int postmap_content_digest_text(const char *text, size_t len, char out[static POSTMAP_DIGEST_MAX]);
/* What the destination probe judges by as Postfix's smtp client would: its trust anchors
 * (smtp_tls_CAfile, smtp_tls_CApath: "" none; tls_append_default_CA: the system's besides) and
 * the default match lists of verify and secure, and inet_protocols, as postconf expanded them. */
struct postfix_smtp_tls {
        char ca_file[256];
        char ca_path[256];
        bool ca_default;
        char verify_match[256]; /* smtp_tls_verify_cert_match */
        char secure_match[256]; /* smtp_tls_secure_cert_match */
        char inet_protocols[64];
        char fingerprint_digest[32];
        /* smtp_tls_fingerprint_digest ("" unknown) */ /* the address families smtp connects
                                                          over */
};
/* As of the last postfix_running_recent check (asked anew when that is stale). -EIO when
 * postconf could not tell. Any thread. */
int postfix_smtp_tls_recent(const struct config *cfg, struct postfix_smtp_tls *ret);
/* The same into a probe's destination (probe_destination_set_smtp); when postconf cannot tell,
 * the system's trust anchors and Postfix's defaults (logged). For the API and the watch. */
struct probe_destination;
void postfix_smtp_for_probe(const struct config *cfg, struct probe_destination *d);
/* The effective smtp_tls_fingerprint_digest and the length of its fingerprints; -EINVAL for a
 * name OpenSSL does not know (then Postfix refuses it too). */
int postfix_fingerprint_digest(const struct config *cfg, struct fingerprint_digest *ret);
/* Whether the smtp client has trust anchors for the verify and secure levels (`postconf -x`):
 * 1 when smtp_tls_CAfile names a readable file, or smtp_tls_CApath is set, or
 * tls_append_default_CA = yes; 0 when not, with why (naming the parameter); negative when postconf
 * cannot tell. Worker thread. */
#define POSTFIX_TRUST_WHY_MAX 512
int postfix_outbound_trust(const struct config *cfg, char *why, size_t size);
/* The same as of the last postfix_running_recent check (for /status). Any thread. */
int postfix_outbound_trust_recent(const struct config *cfg, char *why, size_t size);
/* postfix_fingerprint_digest as of the last postfix_running_recent check (len 0: unknown). */
void postfix_fingerprint_digest_recent(const struct config *cfg, struct fingerprint_digest *ret);
/* `postconf -c DIR -M NAME/TYPE`: whether master.cf defines the service (not commented out). */
int postconf_service(const struct config *cfg, const char *service, bool *ret);
