/* conf.h - the daemon's own configuration: one table of keys {name, type, default, bounds, offset}.
 * Loaded once by the main thread before any other thread starts; read-only afterwards. */
#pragma once

#include <stdint.h>
#include <stdio.h>

struct kek;

enum conf_type {
        CONF_STRING,
        CONF_INT,
        CONF_DURATION, /* stored in microseconds; written as 30, 30s, 500ms, 5m, 1h */
        CONF_SIZE,     /* stored in bytes; written as 1048576, 1024K, 1M, 1G */
        CONF_ARGV,     /* whitespace-separated words, spawned without a shell */
        CONF_CHOICE,   /* one of the key's choices */
};

/* probe_trust_anchor_file's default (Debian's dns-root-data) */
#define PROBE_DEFAULT_TRUST_ANCHOR "/usr/share/dns/root.key"

struct config {
        char *listen_address;
        int64_t listen_port;
        char *database_url;
        int64_t database_connect_timeout;
        int64_t database_statement_timeout;
        int64_t database_pool_size;
        char *postfix_config_directory;
        char **postfix_command;
        char **postconf_command;
        char **postmap_command;
        int64_t command_timeout;
        char *policy_map_type;
        char *certificate_directory;
        char *acme_live_directory;
        char *system_certificate_file;
        char *system_key_file;
        char *system_ca_file;
        char *key_encryption_key_file;
        char *smtp_probe_address;
        char *node_name;
        int64_t node_heartbeat_interval;
        int64_t fleet_wait_timeout;
        int64_t http_threads;
        int64_t body_limit;
        int64_t bulk_body_limit;
        int64_t bulk_memo_limit;
        int64_t connection_timeout;
        int64_t connection_limit;
        int64_t per_ip_connection_limit;
        int64_t connection_memory_limit;
        int64_t shutdown_timeout;
        int64_t session_idle_timeout;
        char *session_cookie_secure;
        char *cors_allowed_origins;
        char *console_manager_urls;
        char *probe_resolvers;
        char *probe_stub_zones;
        char *probe_trust_anchor_file;
        char *probe_https_ca_file;
        int64_t probe_timeout;
        int64_t probe_step_timeout;
        int64_t probe_max_concurrent;
        int64_t probe_queue_limit;
        int64_t probe_max_hosts;
        int64_t probe_max_addresses;
        int64_t probe_cache_time;
        int64_t probe_guard_limit;
        int64_t probe_watch_interval;
        char *probe_private_networks;
        char *log_level;
        /* not a key: what key_encryption_key_file holds, read by config_load (NULL: none) */
        struct kek *kek;
};

struct conf_key {
        const char *name;
        enum conf_type type;
        const char *def;
        int64_t min, max; /* for INT, DURATION (usec) and SIZE (bytes) */
        size_t offset;
        const char *const *choices; /* for CHOICE */
        const char *help;
        /* for STRING: refuses a value at load (err names the problem), or NULL */
        int (*check)(const char *value, char *err, size_t errsize);
};

extern const struct conf_key conf_keys[];
extern const size_t conf_keys_count;

/* Defaults, then the file (a missing file is an error only when required), then SMTPTLSD_<KEY>
 * environment variables, then derived values (http_threads 0 = cores - 1, node_name "" = hostname).
 * On error returns a negative errno and a message naming the line or variable in err. */
int config_load(struct config *c, const char *path, int required, char *err, size_t errsize);
/* Sets one key from text; used by config_load and by tests. */
int config_set(struct config *c, const char *key, const char *value, char *err, size_t errsize);
void config_free(struct config *c);
/* console_manager_urls: `manager=URL-template` pairs separated by whitespace; the manager a
 * policy manager name (policy_manager_is_valid), each once; the template an http:// or https://
 * URL of printable ASCII that may hold {destination} (no other braces, quotes or angle
 * brackets). Calls fn (NULL: only checks) with each pair, not NUL-terminated; returns 0, what fn
 * returned when negative, or -EINVAL with err naming the bad pair. */
typedef int (*manager_url_fn)(const char *name, size_t name_len, const char *url, size_t url_len,
                              void *userdata);
int config_manager_urls_foreach(const char *value, manager_url_fn fn, void *userdata, char *err,
                                size_t errsize);
/* Prints the effective configuration as `key = value` lines. */
void config_print(const struct config *c, FILE *f);
