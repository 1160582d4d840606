/* main.c - the smtptlsd command: parses the command line, and for `serve` owns the start and stop
 * order (HTTP, database wait, migrations, worker, READY; then signals and the watchdog loop).
 * Main thread. */
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "api/pending.h"
#include "app.h"
#include "apply/acme_watch.h"
#include "apply/live_stamp.h"
#include "apply/follower.h"
#include "apply/probe_watch.h"
#include "apply/worker.h"
#include "cli.h"
#include "remote.h"
#include "conf.h"
#include "config.h"
#include "core/sealed.h"
#include "http/http.h"
#include "log.h"
#include "metrics.h"
#include "notify.h"
#include "probe/dns.h"
#include "probe/mtasts.h"
#include "probe/runner.h"
#include "store/db.h"
#include "store/migrate.h"
#include "store/tokens.h"
#include "watchdog.h"

#define DB_BACKOFF_MIN_USEC (500ull * 1000)
#define DB_BACKOFF_MAX_USEC (10ull * 1000000)
#define IDLE_TICK_USEC      (1000ull * 1000)

/* Waits up to usec for a termination signal on sfd. Returns 1 when one arrived. */
static int wait_signal(int sfd, uint64_t usec)
{
        struct pollfd p = { .fd = sfd, .events = POLLIN };
        int r = poll(&p, 1, (int)(usec / 1000));
        if (r <= 0)
                return 0;
        struct signalfd_siginfo si;
        if (read(sfd, &si, sizeof(si)) != (ssize_t)sizeof(si))
                return 0;
        if (si.ssi_signo == SIGHUP) {
                /* documented in docs/operations.md ("Signals"); the unit has no ExecReload= */
                log_notice("SIGHUP ignored: the configuration is read only at start (restart to "
                           "apply a change); certificates are rescanned by POST "
                           "/api/v1/certificates/rescan");
                return 0;
        }
        log_notice("received %s, stopping", strsignal((int)si.ssi_signo));
        return 1;
}

/* Connects and migrates, retrying with back-off until it works or a signal asks us to stop. */
static int wait_for_database(const struct config *cfg, int sfd)
{
        uint64_t backoff = DB_BACKOFF_MIN_USEC;
        uint64_t wd = notify_watchdog_usec();
        char err[512], last[512] = "";

        for (;;) {
                PGconn *pg = NULL;
                unsigned applied = 0;
                int r = db_connect(cfg, &pg, err, sizeof(err));
                if (r >= 0) {
                        notify_status("applying database migrations");
                        r = migrate_run(pg, &applied, err, sizeof(err));
                        PQfinish(pg);
                        if (r >= 0) {
                                if (applied)
                                        log_notice("applied %u database migration(s)", applied);
                                return 0;
                        }
                        if (r == -EPROTO) {
                                log_error("%s", err);
                                return r;
                        }
                }
                if (!streq(err, last)) {
                        log_warning("waiting for the database: %s", err);
                        snprintf(last, sizeof(last), "%s", err);
                }
                notify_status("waiting for database: %s (retrying in %.1f s)", err,
                              (double)backoff / 1e6);
                /* Keep systemd from killing a daemon that waits on purpose. */
                notify_extend_timeout(backoff + cfg->database_connect_timeout + 5000000);
                if (wd)
                        notify_watchdog();
                if (wait_signal(sfd, backoff))
                        return -ECANCELED;
                backoff = backoff * 2 > DB_BACKOFF_MAX_USEC ? DB_BACKOFF_MAX_USEC : backoff * 2;
        }
}

static int setup_signals(int *ret)
{
        sigset_t mask;
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGHUP);
        /* Blocked before any thread starts, so every thread inherits the mask. */
        if (pthread_sigmask(SIG_BLOCK, &mask, NULL) != 0)
                return -errno;
        signal(SIGPIPE, SIG_IGN);
        int fd = signalfd(-1, &mask, SFD_CLOEXEC);
        if (fd < 0)
                return -errno;
        *ret = fd;
        return 0;
}

static int run_serve(const struct config *cfg)
{
        struct app app = { .cfg = cfg,
                           .started_usec = now_monotonic_usec(),
                           .bulk_memo = ITEM_MEMO_SLOT_INIT };
        _cleanup_close_ int sfd = -1;
        int r;

        r = setup_signals(&sfd);
        if (r < 0)
                return log_errno(LOG_ERR, r, "cannot set up signal handling: %s", strerror(-r));
        struct dns_config dns = { .resolvers = cfg->probe_resolvers,
                                  .stub_zones = cfg->probe_stub_zones,
                                  .trust_anchor_file = cfg->probe_trust_anchor_file };
        /* the default anchor comes with Debian's dns-root-data: without it the probe runs, but
         * validates nothing (a file named in the configuration must be there) */
        if (streq(dns.trust_anchor_file, PROBE_DEFAULT_TRUST_ANCHOR) &&
            access(dns.trust_anchor_file, R_OK) < 0) {
                log_warning("%s cannot be read (%s): the destination probe validates no DNSSEC "
                            "and finds no DANE records; install dns-root-data",
                            dns.trust_anchor_file, strerror(errno));
                dns.trust_anchor_file = "";
        }
        char dns_err[256];
        if (dns_config_check(&dns, dns_err, sizeof(dns_err)) < 0) {
                log_error("the destination probe's resolver (probe_resolvers, probe_stub_zones, "
                          "probe_trust_anchor_file): %s",
                          dns_err);
                return -EINVAL;
        }
        if (mtasts_global_init() < 0)
                return log_errno(LOG_ERR, -ENOMEM, "cannot set up libcurl");
        r = db_pool_new(cfg, &app.db);
        if (r < 0)
                return log_errno(LOG_ERR, r, "out of memory");

        struct http_server_options o = {
                .address = cfg->listen_address,
                .port = (unsigned)cfg->listen_port,
                .threads = (unsigned)cfg->http_threads,
                .connection_timeout_sec = (unsigned)(cfg->connection_timeout / 1000000),
                .connection_limit = (unsigned)cfg->connection_limit,
                .per_ip_connection_limit = (unsigned)cfg->per_ip_connection_limit,
                .connection_memory_limit = (size_t)cfg->connection_memory_limit,
                .body_limit = (size_t)cfg->body_limit,
                .bulk_body_limit = (size_t)cfg->bulk_body_limit,
        };
        r = live_stamp_new(cfg, &app.live_stamp);
        if (r < 0) {
                db_pool_free(app.db);
                return log_errno(LOG_ERR, r, "out of memory");
        }
        struct http_server *http = NULL;
        r = http_server_start(&app, &o, &http);
        if (r < 0) {
                live_stamp_free(app.live_stamp);
                db_pool_free(app.db);
                return r;
        }
        unsigned port = http_server_port(http);
        bool v6 = strchr(cfg->listen_address, ':');
        char url[128];
        snprintf(url, sizeof(url), "http://%s%s%s:%u", v6 ? "[" : "", cfg->listen_address,
                 v6 ? "]" : "", port);
        log_info("smtptlsd %s listening on %s (%lld threads)", SMTPTLSD_VERSION, url,
                 (long long)cfg->http_threads);
        notify_status("listening on %s; connecting to the database", url);

        r = wait_for_database(cfg, sfd);
        if (r >= 0) {
                notify_status("reconciling Postfix's files with the committed state");
                notify_extend_timeout(2 * (uint64_t)cfg->command_timeout + 30000000);
                r = worker_start(&app, &app.worker);
        }
        if (r >= 0)
                r = pending_new(&app, &app.pending);
        struct probe_config probe_cfg = {
                .dns = dns,
                .https_ca_file =
                    isempty(cfg->probe_https_ca_file) ? NULL : cfg->probe_https_ca_file,
                .timeout_usec = (uint64_t)cfg->probe_timeout,
                .step_timeout_usec = (uint64_t)cfg->probe_step_timeout,
                .max_hosts = (unsigned)cfg->probe_max_hosts,
                .max_addresses = (unsigned)cfg->probe_max_addresses,
                .allow_private = streq(cfg->probe_private_networks, "allow"),
        };
        if (r >= 0) {
                r = probe_runner_new(&probe_cfg, (unsigned)cfg->probe_max_concurrent,
                                     (unsigned)cfg->probe_queue_limit,
                                     (uint64_t)cfg->probe_cache_time, &app.probes);
                if (r < 0)
                        log_errno(LOG_ERR, r, "cannot start the destination probe's threads");
        }
        struct follower *follower = NULL;
        if (r >= 0 && follower_start(&app, pending_nodes_changed, app.pending, &follower) < 0)
                log_warning("cannot start the fleet listener: generations other nodes commit are "
                            "applied at the next start");
        struct probe_watch *watch = NULL;
        if (r >= 0 && probe_watch_start(&app, &watch) < 0)
                log_warning("cannot start the probe watch: policies are not re-probed");
        struct acme_watch *acme = NULL;
        if (r >= 0 && acme_watch_start(&app, &acme) < 0)
                log_warning("cannot watch %s; renewals are picked up by POST "
                            "/api/v1/certificates/rescan",
                            cfg->acme_live_directory);
        if (r >= 0) {
                atomic_store(&app.ready, true);
                metrics_gauge_set(METRIC_READY, 1);
                log_info("ready");
                notify_ready("ready; listening on %s", url);

                uint64_t wd = notify_watchdog_usec();
                uint64_t tick = wd ? wd / 2 : IDLE_TICK_USEC;
                uint64_t probe_timeout = wd ? (wd / 4 < 2000000 ? wd / 4 : 2000000) : 0;
                /* The idle worker beats every 0.5 s: a limit below a few beats would call a
                 * healthy worker stuck. */
                uint64_t stuck = wd > 2000000 ? wd : 2000000;
                bool was_ok = true;
                while (!wait_signal(sfd, tick)) {
                        if (!wd)
                                continue;
                        char why[256];
                        bool ok = watchdog_check(&app, stuck, probe_timeout, why, sizeof(why));
                        if (ok)
                                notify_watchdog();
                        else if (was_ok)
                                log_error("watchdog: not pinging systemd: %s", why);
                        was_ok = ok;
                }
        }

        atomic_store(&app.stopping, true);
        atomic_store(&app.ready, false);
        notify_stopping();
        /* Stop accepting; the worker finishes the batch it holds (its requests get their reply),
         * waiting requests whose job had not started get 202 (the job is durable), then the
         * requests in progress finish and the HTTP threads stop. */
        http_server_quiesce(http);
        acme_watch_stop(acme);
        follower_stop(follower);
        worker_stop(app.worker);
        pending_stop(app.pending);     /* the requests still waiting get 202; no more wait */
        probe_runner_stop(app.probes); /* probes in flight cancelled; their requests get 503 */
        probe_watch_stop(watch);
        http_server_stop(http, (uint64_t)cfg->shutdown_timeout);
        pending_free(app.pending); /* no HTTP thread is left to call it */
        probe_runner_free(app.probes);
        worker_free(app.worker);
        item_memo_forget(&app.bulk_memo);
        live_stamp_free(app.live_stamp);
        db_pool_free(app.db);
        log_info("stopped");
        return r == -ECANCELED ? 0 : r;
}

static int open_db(const struct config *cfg, struct db_conn *c)
{
        char err[512];
        int r = db_connect(cfg, &c->pg, err, sizeof(err));
        if (r < 0) {
                fprintf(stderr, "smtptlsd: cannot connect to the database: %s\n", err);
                return r;
        }
        unsigned applied = 0;
        r = migrate_run(c->pg, &applied, err, sizeof(err));
        if (r < 0) {
                fprintf(stderr, "smtptlsd: %s\n", err);
                PQfinish(c->pg);
                c->pg = NULL;
        }
        return r;
}

/* A refused command (duplicate, unknown name, database down) is a runtime error: exit 1. */
static int print_problem(int r, struct problem *p)
{
        if (p->code != PROBLEM_NONE)
                fprintf(stderr, "smtptlsd: %s\n", p->detail);
        else
                fprintf(stderr, "smtptlsd: %s\n", strerror(-r));
        problem_done(p);
        return EXIT_FAILURE;
}

static int run_token_add(const struct config *cfg, const struct cli_invocation *inv)
{
        struct db_conn c = { 0 };
        struct problem p = { 0 };
        char token[TOKEN_SIZE];
        int r = open_db(cfg, &c);
        if (r < 0)
                return EXIT_FAILURE;
        r = tokens_add(&c, inv->name, inv->scope, token, NULL, &p);
        PQfinish(c.pg);
        if (r < 0)
                return print_problem(r, &p);
        printf("%s\n", token);
        return 0;
}

static int run_token_list(const struct config *cfg, _unused_ const struct cli_invocation *inv)
{
        struct db_conn c = { 0 };
        struct problem p = { 0 };
        json_t *items = NULL, *it;
        size_t i;
        int r = open_db(cfg, &c);
        if (r < 0)
                return EXIT_FAILURE;
        r = tokens_list(&c, true, &items, &p);
        PQfinish(c.pg);
        if (r < 0)
                return print_problem(r, &p);
        /* One line per token: NAME SCOPE CREATED [revoked] (easy to grep and awk). */
        json_array_foreach (items, i, it) {
                printf("%s %s %s%s\n", json_string_value(json_object_get(it, "name")),
                       json_string_value(json_object_get(it, "scope")),
                       json_string_value(json_object_get(it, "created_at")),
                       json_object_get(it, "revoked_at") ? " revoked" : "");
        }
        json_decref(items);
        return 0;
}

static int run_token_revoke(const struct config *cfg, const struct cli_invocation *inv)
{
        struct db_conn c = { 0 };
        struct problem p = { 0 };
        int r = open_db(cfg, &c);
        if (r < 0)
                return EXIT_FAILURE;
        r = tokens_revoke(&c, inv->name, &p);
        PQfinish(c.pg);
        if (r < 0)
                return print_problem(r, &p);
        printf("revoked %s\n", inv->name);
        return 0;
}

static int run_migrate(const struct config *cfg, _unused_ const struct cli_invocation *inv)
{
        struct db_conn conn = { 0 };
        int r = open_db(cfg, &conn);
        if (r < 0)
                return EXIT_FAILURE;
        printf("database schema at version %u\n", migrations_count);
        PQfinish(conn.pg);
        return 0;
}

static int run_config(const struct config *cfg, _unused_ const struct cli_invocation *inv)
{
        config_print(cfg, stdout);
        return 0;
}

static int run_serve_command(const struct config *cfg, _unused_ const struct cli_invocation *inv)
{
        return run_serve(cfg) < 0 ? EXIT_FAILURE : 0;
}

/* What each command of the table in cli.c runs, once the configuration is loaded; returns the
 * exit status. */
static int run_push(const struct config *cfg, const struct cli_invocation *inv)
{
        (void)cfg;
        return remote_push(inv, stdout, stderr);
}

static int run_pull(const struct config *cfg, const struct cli_invocation *inv)
{
        (void)cfg;
        return remote_pull(inv, stdout, stderr);
}

static int run_import(const struct config *cfg, const struct cli_invocation *inv)
{
        (void)cfg;
        return remote_import(inv, stdout, stderr);
}

static int (*const runners[_CLI_COMMAND_MAX])(const struct config *,
                                              const struct cli_invocation *) = {
        [CLI_SERVE] = run_serve_command,
        [CLI_MIGRATE] = run_migrate,
        [CLI_CONFIG] = run_config,
        [CLI_TOKEN_ADD] = run_token_add,
        [CLI_TOKEN_LIST] = run_token_list,
        [CLI_TOKEN_REVOKE] = run_token_revoke,
        [CLI_PUSH] = run_push,
        [CLI_PULL] = run_pull,
        [CLI_IMPORT] = run_import,
};

int main(int argc, char **argv)
{
        struct cli_invocation inv;
        struct config cfg;
        char err[512];

        /* Help and usage errors are answered before the configuration or the database is
         * touched. */
        int r = cli_parse(argc, argv, &inv, stdout, stderr);
        if (r != 0)
                return r > 0 ? 0 : CLI_EXIT_USAGE;

        /* push and pull talk to a daemon's API: no configuration, no database */
        if (!cli_needs_config(inv.command))
                return runners[inv.command](NULL, &inv);

        /* Upload bodies carry private keys: jansson frees through a wiping free there. */
        json_wipe_install();

        r = config_load(&cfg, inv.config_path ? inv.config_path : SMTPTLSD_DEFAULT_CONFIG,
                        inv.config_path != NULL, err, sizeof(err));
        if (r < 0) {
                fprintf(stderr, "smtptlsd: %s\n", err);
                config_free(&cfg);
                return CLI_EXIT_USAGE;
        }
        r = runners[inv.command](&cfg, &inv);
        config_free(&cfg);
        return r;
}
