/* conf.c - the configuration table and its parser (main.cf-like `key = value` lines, then
 * SMTPTLSD_<KEY> overrides). Main thread, at start-up only. */
#include "conf.h"

#include <ctype.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <unistd.h>
#include <openssl/crypto.h>
#include <sys/stat.h>

#include "core/policy.h"
#include "core/sealed.h"
#include "log.h"
#include "util.h"

#define SEC INT64_C(1000000)
#define KEY(n, t, d, lo, hi, h)                                                                    \
        {                                                                                          \
                .name = #n, .type = t, .def = d, .min = lo, .max = hi,                             \
                .offset = offsetof(struct config, n), .help = h                                    \
        }

static const char *const map_types[] = { "hash", "btree", "lmdb", "cdb", NULL };
static const char *const secure_choices[] = { "auto", "yes", "no", NULL };
static const char *const allow_deny[] = { "allow", "deny", NULL };
static const char *const log_levels[] = { "err", "warning", "notice", "info", "debug", NULL };

static int check_manager_urls(const char *value, char *err, size_t errsize);

const struct conf_key conf_keys[] = {
        KEY(listen_address, CONF_STRING, "127.0.0.1", 0, 0, "address the HTTP API listens on"),
        KEY(listen_port, CONF_INT, "8480", 0, 65535, "TCP port of the HTTP API (0: any free port)"),
        KEY(database_url, CONF_STRING, "postgresql:///smtptlsd", 0, 0,
            "libpq connection URI or conninfo string"),
        KEY(database_connect_timeout, CONF_DURATION, "5s", SEC, 300 * SEC,
            "bound on one connection attempt to PostgreSQL"),
        KEY(database_statement_timeout, CONF_DURATION, "30s", SEC, 3600 * SEC,
            "bound on one SQL statement"),
        KEY(database_pool_size, CONF_INT, "0", 0, 64,
            "PostgreSQL connections shared by the HTTP threads (0: http_threads + 2)"),
        KEY(postfix_config_directory, CONF_STRING, "/etc/postfix", 0, 0,
            "the Postfix configuration directory that smtptlsd manages"),
        KEY(postfix_command, CONF_ARGV, "postfix", 0, 0, "the postfix command (argv, no shell)"),
        KEY(postconf_command, CONF_ARGV, "postconf", 0, 0, "the postconf command (argv, no shell)"),
        KEY(postmap_command, CONF_ARGV, "postmap", 0, 0, "the postmap command (argv, no shell)"),
        KEY(command_timeout, CONF_DURATION, "30s", SEC, 3600 * SEC,
            "bound on one postfix/postconf/postmap run"),
        { .name = "policy_map_type",
          .type = CONF_CHOICE,
          .def = "hash",
          .offset = offsetof(struct config, policy_map_type),
          .choices = map_types,
          .help = "Postfix map type of the TLS policy map" },
        KEY(certificate_directory, CONF_STRING, "/var/lib/smtptlsd/certs", 0, 0,
            "where the files of imported certificates are rendered"),
        KEY(acme_live_directory, CONF_STRING, "/etc/letsencrypt/live", 0, 0,
            "ACME (certbot) live directory scanned for certificates"),
        KEY(system_certificate_file, CONF_STRING, "/etc/ssl/certs/ssl-cert-snakeoil.pem", 0, 0,
            "the bootstrap self-signed certificate (never bindable)"),
        KEY(system_key_file, CONF_STRING, "/etc/ssl/private/ssl-cert-snakeoil.key", 0, 0,
            "the key of the bootstrap self-signed certificate"),
        KEY(system_ca_file, CONF_STRING, "/etc/ssl/certs/ca-certificates.crt", 0, 0,
            "the system's CA bundle: smtp_tls_CAfile when the settings' outbound_ca is system"),
        KEY(key_encryption_key_file, CONF_STRING, "", 0, 0,
            "file of the key that encrypts private keys in the database (empty: not encrypted)"),
        KEY(smtp_probe_address, CONF_STRING, "127.0.0.1:25", 0, 0,
            "host:port of the local smtpd checked after a reload"),
        KEY(node_name, CONF_STRING, "", 0, 0, "this node's name in fleet mode (empty: hostname)"),
        KEY(node_heartbeat_interval, CONF_DURATION, "5s", SEC, 300 * SEC,
            "how often a node says it is alive (nodes.last_contact); three missed: unreachable"),
        KEY(fleet_wait_timeout, CONF_DURATION, "10s", SEC, 300 * SEC,
            "how long a write with ?wait=fleet waits for the other nodes once applied here"),
        KEY(http_threads, CONF_INT, "0", 0, 256,
            "HTTP worker threads (0: one less than the CPU cores, at least one)"),
        KEY(body_limit, CONF_SIZE, "1M", 1024, INT64_C(1) << 30, "largest request body"),
        KEY(bulk_body_limit, CONF_SIZE, "64M", 1024, INT64_C(4) << 30,
            "largest body of a bulk policy replace"),
        KEY(bulk_memo_limit, CONF_SIZE, "16M", 0, INT64_C(1) << 30,
            "largest bulk body whose items are kept for the next bulk's delta (0: none)"),
        KEY(connection_timeout, CONF_DURATION, "30s", SEC, 3600 * SEC,
            "idle time after which a connection is closed"),
        KEY(connection_limit, CONF_INT, "1024", 1, 1000000, "concurrent HTTP connections"),
        KEY(per_ip_connection_limit, CONF_INT, "32", 0, 1000000,
            "concurrent HTTP connections from one address (0: no limit)"),
        KEY(connection_memory_limit, CONF_SIZE, "32K", 8192, 16 << 20,
            "memory for one connection's headers and buffers"),
        KEY(shutdown_timeout, CONF_DURATION, "10s", 0, 600 * SEC,
            "how long a stop waits for in-flight requests"),
        KEY(session_idle_timeout, CONF_DURATION, "30m", SEC, 30 * 86400 * SEC,
            "a console session ends after this long without a request"),
        { .name = "session_cookie_secure",
          .type = CONF_CHOICE,
          .def = "auto",
          .offset = offsetof(struct config, session_cookie_secure),
          .choices = secure_choices,
          .help = "Secure attribute of the session cookie: yes, no, or auto (when the request "
                  "came through HTTPS: an https Origin or X-Forwarded-Proto/Forwarded proto)" },
        KEY(cors_allowed_origins, CONF_STRING, "", 0, 0,
            "origins (scheme://host[:port], separated by spaces or commas) whose pages may call "
            "the API with a bearer token (empty: none)"),
        { .name = "console_manager_urls",
          .type = CONF_STRING,
          .def = "",
          .offset = offsetof(struct config, console_manager_urls),
          .check = check_manager_urls,
          .help = "manager=URL pairs (separated by spaces): the console links a row managed by "
                  "that manager to the URL, {destination} replaced (empty: no links)" },
        KEY(probe_resolvers, CONF_STRING, "resolv.conf", 0, 0,
            "where the destination probe resolves: resolv.conf (the resolvers of "
            "/etc/resolv.conf, as Postfix), root (from the root servers), or addresses "
            "(address[@port], separated by spaces) to forward to; DNSSEC is validated locally"),
        KEY(probe_stub_zones, CONF_STRING, "", 0, 0,
            "zone=address[@port] pairs (separated by spaces): zones the probe asks those "
            "servers for (split DNS, test zones)"),
        KEY(probe_trust_anchor_file, CONF_STRING, PROBE_DEFAULT_TRUST_ANCHOR, 0, 0,
            "DNSSEC trust anchors (DS or DNSKEY records) of the probe's validation (empty: no "
            "validation, no DANE)"),
        KEY(probe_https_ca_file, CONF_STRING, "", 0, 0,
            "CA certificates that verify MTA-STS policy hosts (empty: the system's)"),
        KEY(probe_timeout, CONF_DURATION, "30s", SEC, 600 * SEC,
            "bound on one destination probe (lookups and every conversation)"),
        KEY(probe_step_timeout, CONF_DURATION, "10s", SEC, 300 * SEC,
            "bound on the conversation with one address"),
        KEY(probe_max_concurrent, CONF_INT, "8", 1, 64, "destination probes run at once"),
        KEY(probe_queue_limit, CONF_INT, "64", 0, 100000,
            "destination probes waiting for a free slot beyond those (more: 503)"),
        KEY(probe_max_hosts, CONF_INT, "5", 1, 50,
            "MX hosts probed per destination (the most "
            "preferred)"),
        KEY(probe_max_addresses, CONF_INT, "10", 1, 32, "addresses probed per destination"),
        KEY(probe_watch_interval, CONF_DURATION, "1h", 0, 30 * 86400 * SEC,
            "how often the watch re-probes each enabled policy above may (0: no watch)"),
        KEY(probe_guard_limit, CONF_INT, "20", 1, 1000,
            "destinations above may one guarded write (?probe=true) may set"),
        KEY(probe_cache_time, CONF_DURATION, "5m", 0, 86400 * SEC,
            "how long a probe's report answers again for the same destination (0: never)"),
        { .name = "probe_private_networks",
          .type = CONF_CHOICE,
          .def = "allow",
          .offset = offsetof(struct config, probe_private_networks),
          .choices = allow_deny,
          .help = "whether the probe connects to loopback, private and link-local addresses "
                  "(deny: refused and reported)" },
        { .name = "log_level",
          .type = CONF_CHOICE,
          .def = "info",
          .offset = offsetof(struct config, log_level),
          .choices = log_levels,
          .help = "least important message logged" },
};
const size_t conf_keys_count = ARRAY_SIZE(conf_keys);

static void *field(struct config *c, const struct conf_key *k)
{
        return (char *)c + k->offset;
}

static const void *cfield(const struct config *c, const struct conf_key *k)
{
        return (const char *)c + k->offset;
}

static const struct conf_key *find_key(const char *name)
{
        for (size_t i = 0; i < conf_keys_count; i++)
                if (streq(conf_keys[i].name, name))
                        return &conf_keys[i];
        return NULL;
}

static void strv_free(char **v)
{
        if (!v)
                return;
        for (char **p = v; *p; p++)
                free(*p);
        free(v);
}

static int split_argv(const char *s, char ***ret)
{
        size_t n = 0, cap = 4;
        char **v = calloc(cap, sizeof(char *));
        if (!v)
                return -ENOMEM;
        while (*s) {
                while (*s && isspace((unsigned char)*s))
                        s++;
                if (!*s)
                        break;
                const char *b = s;
                while (*s && !isspace((unsigned char)*s))
                        s++;
                if (n + 2 > cap) {
                        char **nv = realloc(v, (cap *= 2) * sizeof(char *));
                        if (!nv) {
                                strv_free(v);
                                return -ENOMEM;
                        }
                        v = nv;
                }
                v[n] = strndup(b, (size_t)(s - b));
                if (!v[n]) {
                        strv_free(v);
                        return -ENOMEM;
                }
                v[++n] = NULL;
        }
        if (n == 0) {
                free(v);
                return -EINVAL;
        }
        *ret = v;
        return 0;
}

/* Parses "<number><suffix>" where the suffix picks a multiplier from units (NULL-terminated). */
static int parse_scaled(const char *s, const char *const *units, const int64_t *mult, int64_t def,
                        int64_t *ret)
{
        char num[32];
        size_t i = 0;
        while (s[i] && isdigit((unsigned char)s[i]) && i < sizeof(num) - 1) {
                num[i] = s[i];
                i++;
        }
        num[i] = 0;
        if (i == 0)
                return -EINVAL;
        int64_t v, m = def;
        int r = parse_int64(num, 0, INT64_MAX, &v);
        if (r < 0)
                return r;
        if (s[i]) {
                size_t u;
                for (u = 0; units[u]; u++)
                        if (streq(units[u], s + i))
                                break;
                if (!units[u])
                        return -EINVAL;
                m = mult[u];
        }
        if (v > INT64_MAX / m)
                return -ERANGE;
        *ret = v * m;
        return 0;
}

int config_set(struct config *c, const char *key, const char *value, char *err, size_t errsize)
{
        static const char *const dunits[] = { "ms", "s", "m", "h", NULL };
        static const int64_t dmult[] = { 1000, SEC, 60 * SEC, 3600 * SEC };
        static const char *const sunits[] = { "K", "M", "G", "k", NULL };
        static const int64_t smult[] = { 1024, 1 << 20, 1 << 30, 1024 };
        const struct conf_key *k = find_key(key);
        int64_t v;
        int r;

        if (!k) {
                snprintf(err, errsize, "unknown key '%s'", key);
                return -ENOENT;
        }
        switch (k->type) {
        case CONF_STRING:
        case CONF_CHOICE: {
                if (k->type == CONF_CHOICE) {
                        size_t i;
                        for (i = 0; k->choices[i]; i++)
                                if (streq(k->choices[i], value))
                                        break;
                        if (!k->choices[i]) {
                                snprintf(err, errsize, "%s: '%s' is not one of the choices", key,
                                         value);
                                return -EINVAL;
                        }
                }
                if (k->check) {
                        char msg[384];
                        r = k->check(value, msg, sizeof(msg));
                        if (r < 0) {
                                snprintf(err, errsize, "%s: %s", key, msg);
                                return r;
                        }
                }
                char *d = strdup(value);
                if (!d)
                        return -ENOMEM;
                char **p = field(c, k);
                free(*p);
                *p = d;
                return 0;
        }
        case CONF_ARGV: {
                char **v2 = NULL;
                r = split_argv(value, &v2);
                if (r < 0) {
                        snprintf(err, errsize, "%s: a command needs at least one word", key);
                        return r;
                }
                char ***p = field(c, k);
                strv_free(*p);
                *p = v2;
                return 0;
        }
        case CONF_INT:
                r = parse_int64(value, k->min, k->max, &v);
                break;
        case CONF_DURATION:
                r = parse_scaled(value, dunits, dmult, SEC, &v);
                break;
        case CONF_SIZE:
                r = parse_scaled(value, sunits, smult, 1, &v);
                break;
        default:
                r = -EINVAL;
        }
        if (r >= 0 && (v < k->min || v > k->max))
                r = -ERANGE;
        if (r < 0) {
                if (r == -ERANGE)
                        snprintf(err, errsize, "%s: '%s' is out of range", key, value);
                else
                        snprintf(err, errsize, "%s: '%s' is not a valid %s", key, value,
                                 k->type == CONF_DURATION ? "duration (e.g. 30s, 500ms)"
                                 : k->type == CONF_SIZE   ? "size (e.g. 1M, 64K)"
                                                          : "number");
                return r;
        }
        *(int64_t *)field(c, k) = v;
        return 0;
}

#define MANAGER_URL_MAX 2048
#define URL_PLACEHOLDER "{destination}"

/* A URL template: http:// or https://, a host, then printable ASCII without quotes, angle
 * brackets, backslash, caret, backquote, '|' or braces other than {destination}. */
static bool manager_url_is_valid(const char *u, size_t n)
{
        size_t scheme = n >= 7 && !strncmp(u, "http://", 7)    ? 7
                        : n >= 8 && !strncmp(u, "https://", 8) ? 8
                                                               : 0;
        if (!scheme || n > MANAGER_URL_MAX || scheme == n || strchr("/?#", u[scheme]))
                return false;
        for (size_t i = 0; i < n; i++) {
                unsigned char ch = (unsigned char)u[i];
                if (ch == '{' && n - i >= strlen(URL_PLACEHOLDER) &&
                    !strncmp(u + i, URL_PLACEHOLDER, strlen(URL_PLACEHOLDER))) {
                        i += strlen(URL_PLACEHOLDER) - 1;
                        continue;
                }
                if (ch <= 0x20 || ch >= 0x7f || strchr("\"<>\\^`{|}", ch))
                        return false;
        }
        return true;
}

int config_manager_urls_foreach(const char *value, manager_url_fn fn, void *userdata, char *err,
                                size_t errsize)
{
        char name[POLICY_MANAGER_MAX + 1];
        for (const char *s = value;;) {
                s += strspn(s, " \t");
                if (!*s)
                        return 0;
                size_t len = strcspn(s, " \t");
                const char *eq = memchr(s, '=', len);
                size_t nl = eq ? (size_t)(eq - s) : 0;
                if (!eq || nl > POLICY_MANAGER_MAX) {
                        snprintf(err, errsize,
                                 "'%.*s' is not manager=URL (e.g. "
                                 "domains=https://admin.example.net/domains?d={destination})",
                                 (int)(len > 80 ? 80 : len), s);
                        return -EINVAL;
                }
                memcpy(name, s, nl);
                name[nl] = 0;
                if (!policy_manager_is_valid(name)) {
                        snprintf(err, errsize,
                                 "'%s' is not a manager name ([a-z0-9][a-z0-9._-]{0,63})", name);
                        return -EINVAL;
                }
                for (const char *o = value; o < s;) {
                        o += strspn(o, " \t");
                        if (o >= s)
                                break;
                        size_t ol = strcspn(o, " \t");
                        if (ol > nl && o[nl] == '=' && !strncmp(o, name, nl)) {
                                snprintf(err, errsize, "manager '%s' is named twice", name);
                                return -EINVAL;
                        }
                        o += ol;
                }
                const char *url = eq + 1;
                size_t ul = len - nl - 1;
                if (!manager_url_is_valid(url, ul)) {
                        snprintf(err, errsize,
                                 "the URL of '%s' must be http:// or https:// with a host, at "
                                 "most %d printable characters without quotes, spaces, angle "
                                 "brackets or braces other than " URL_PLACEHOLDER,
                                 name, MANAGER_URL_MAX);
                        return -EINVAL;
                }
                if (fn) {
                        int r = fn(s, nl, url, ul, userdata);
                        if (r < 0)
                                return r;
                }
                s += len;
        }
}

static int check_manager_urls(const char *value, char *err, size_t errsize)
{
        return config_manager_urls_foreach(value, NULL, NULL, err, errsize);
}

static char *strip(char *s)
{
        while (isspace((unsigned char)*s))
                s++;
        char *e = s + strlen(s);
        while (e > s && isspace((unsigned char)e[-1]))
                *--e = 0;
        return s;
}

static int load_file(struct config *c, const char *path, int required, char *err, size_t errsize)
{
        FILE *f = fopen(path, "re");
        char line[4096], msg[512];
        unsigned lineno = 0;
        int r = 0;

        if (!f) {
                if (errno == ENOENT && !required)
                        return 0;
                r = -errno;
                snprintf(err, errsize, "%s: %s", path, strerror(errno));
                return r;
        }
        while (fgets(line, sizeof(line), f)) {
                lineno++;
                if (!strchr(line, '\n') && !feof(f)) {
                        snprintf(err, errsize, "%s:%u: line too long", path, lineno);
                        r = -E2BIG;
                        break;
                }
                char *s = strip(line);
                if (!*s || *s == '#')
                        continue;
                char *eq = strchr(s, '=');
                if (!eq) {
                        snprintf(err, errsize, "%s:%u: expected 'key = value'", path, lineno);
                        r = -EINVAL;
                        break;
                }
                *eq = 0;
                char *key = strip(s), *value = strip(eq + 1);
                r = config_set(c, key, value, msg, sizeof(msg));
                if (r < 0) {
                        snprintf(err, errsize, "%s:%u: %s", path, lineno, msg);
                        break;
                }
        }
        fclose(f);
        return r;
}

static int load_env(struct config *c, char *err, size_t errsize)
{
        char msg[512];
        for (size_t i = 0; i < conf_keys_count; i++) {
                char var[96] = "SMTPTLSD_";
                size_t n = strlen(var);
                for (const char *p = conf_keys[i].name; *p && n < sizeof(var) - 1; p++)
                        var[n++] = (char)toupper((unsigned char)*p);
                var[n] = 0;
                const char *v = getenv(var);
                if (!v)
                        continue;
                int r = config_set(c, conf_keys[i].name, v, msg, sizeof(msg));
                if (r < 0) {
                        snprintf(err, errsize, "%s: %s", var, msg);
                        return r;
                }
        }
        return 0;
}

/* key_encryption_key_file: a regular file (not a symbolic link) of root, or of the user the
 * daemon runs as, that nobody else may read or write, holding 64 hex digits. */
static int load_kek(struct config *c, char *err, size_t errsize)
{
        const char *path = c->key_encryption_key_file;
        char buf[2 * KEK_SIZE + 2];
        struct stat st;
        ssize_t n = 0;
        int r = 0;
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
        if (fd < 0 || fstat(fd, &st) < 0) {
                r = -errno;
                snprintf(err, errsize, "key_encryption_key_file %s: %s%s", path, strerror(errno),
                         errno == ELOOP ? " (a symbolic link is refused)" : "");
                return r;
        }
        if (!S_ISREG(st.st_mode)) {
                snprintf(err, errsize, "key_encryption_key_file %s: not a regular file", path);
                return -EINVAL;
        }
        if (st.st_uid != 0 && st.st_uid != geteuid()) {
                snprintf(err, errsize,
                         "key_encryption_key_file %s: owned by uid %u; it must belong to root",
                         path, (unsigned)st.st_uid);
                return -EPERM;
        }
        if (st.st_mode & 077) {
                snprintf(err, errsize,
                         "key_encryption_key_file %s: mode %04o lets others read or write it; "
                         "it must be readable by its owner only (chmod 600)",
                         path, (unsigned)(st.st_mode & 07777));
                return -EPERM;
        }
        n = read(fd, buf, sizeof(buf));
        c->kek = malloc(sizeof(*c->kek));
        if (!c->kek)
                r = -ENOMEM;
        else if (n < 0 || (size_t)n == sizeof(buf) || kek_parse(buf, (size_t)n, c->kek) < 0)
                r = -EINVAL;
        OPENSSL_cleanse(buf, sizeof(buf));
        if (r < 0) {
                free_wiped(TAKE_PTR(c->kek));
                snprintf(err, errsize, "key_encryption_key_file %s: %s", path,
                         r == -ENOMEM ? "out of memory"
                                      : "it must hold 64 hex digits, 32 random bytes "
                                        "(openssl rand -hex 32)");
        }
        return r;
}

int config_load(struct config *c, const char *path, int required, char *err, size_t errsize)
{
        int r;

        memset(c, 0, sizeof(*c));
        for (size_t i = 0; i < conf_keys_count; i++) {
                r = config_set(c, conf_keys[i].name, conf_keys[i].def, err, errsize);
                if (r < 0)
                        return r;
        }
        if (path) {
                r = load_file(c, path, required, err, errsize);
                if (r < 0)
                        return r;
        }
        r = load_env(c, err, errsize);
        if (r < 0)
                return r;

        if (c->http_threads == 0) {
                /* the cores this process may run on (systemd's CPUAffinity, taskset), less one
                 * for what shares the host with it: Postfix, PostgreSQL, the worker. On two
                 * cores one thread answers the read model's replies with a shorter tail than
                 * two contending with everything else (docs/performance.md). */
                cpu_set_t set;
                long n = sched_getaffinity(0, sizeof(set), &set) == 0
                             ? CPU_COUNT(&set)
                             : sysconf(_SC_NPROCESSORS_ONLN);
                c->http_threads = n > 256 ? 255 : n > 1 ? n - 1 : 1;
        }
        if (c->database_pool_size == 0)
                c->database_pool_size = c->http_threads + 2 > 64 ? 64 : c->http_threads + 2;
        if (isempty(c->node_name)) {
                char host[256] = "";
                if (gethostname(host, sizeof(host) - 1) < 0 || !*host)
                        strcpy(host, "localhost");
                free(c->node_name);
                c->node_name = strdup(host);
                if (!c->node_name)
                        return -ENOMEM;
        }
        if (!isempty(c->key_encryption_key_file)) {
                r = load_kek(c, err, errsize);
                if (r < 0)
                        return r;
        }
        log_max_level = log_level_from_string(c->log_level);
        return 0;
}

void config_free(struct config *c)
{
        free_wiped(TAKE_PTR(c->kek));
        for (size_t i = 0; i < conf_keys_count; i++) {
                const struct conf_key *k = &conf_keys[i];
                if (k->type == CONF_STRING || k->type == CONF_CHOICE) {
                        char **p = field(c, k);
                        free(*p);
                        *p = NULL;
                } else if (k->type == CONF_ARGV) {
                        char ***p = field(c, k);
                        strv_free(*p);
                        *p = NULL;
                }
        }
}

void config_print(const struct config *c, FILE *f)
{
        for (size_t i = 0; i < conf_keys_count; i++) {
                const struct conf_key *k = &conf_keys[i];
                const void *p = cfield(c, k);
                fprintf(f, "%s =", k->name);
                switch (k->type) {
                case CONF_STRING:
                case CONF_CHOICE:
                        fprintf(f, " %s", *(char *const *)p);
                        break;
                case CONF_ARGV:
                        for (char *const *w = *(char **const *)p; *w; w++)
                                fprintf(f, " %s", *w);
                        break;
                case CONF_INT:
                case CONF_SIZE:
                        fprintf(f, " %" PRId64, *(const int64_t *)p);
                        break;
                case CONF_DURATION: {
                        int64_t us = *(const int64_t *)p;
                        if (us % SEC == 0)
                                fprintf(f, " %" PRId64 "s", us / SEC);
                        else
                                fprintf(f, " %" PRId64 "ms", us / 1000);
                        break;
                }
                }
                fputc('\n', f);
        }
}
