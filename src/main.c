/* main.c - the smtptlsd command: parses the command line, and for `serve` owns the start and stop
 * order (HTTP, database wait, migrations, worker, READY; then signals and the watchdog loop).
 * Main thread. */
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/signalfd.h>

#include "config.h"
#include "smtptlsd/acme_watch.h"
#include "smtptlsd/app.h"
#include "smtptlsd/conf.h"
#include "smtptlsd/db.h"
#include "smtptlsd/fault.h"
#include "smtptlsd/http.h"
#include "smtptlsd/log.h"
#include "smtptlsd/metrics.h"
#include "smtptlsd/migrate.h"
#include "smtptlsd/sealed.h"
#include "smtptlsd/notify.h"
#include "smtptlsd/pending.h"
#include "smtptlsd/tokens.h"
#include "smtptlsd/watchdog.h"
#include "smtptlsd/worker.h"

#define EXIT_USAGE          2
#define DB_BACKOFF_MIN_USEC (500ull * 1000)
#define DB_BACKOFF_MAX_USEC (10ull * 1000000)
#define IDLE_TICK_USEC      (1000ull * 1000)

static void usage(FILE *f)
{
        fprintf(f,
                "Usage: smtptlsd [-c FILE] [COMMAND]\n"
                "\n"
                "Owns the TLS part of a Postfix server and serves it as a JSON REST API.\n"
                "\n"
                "Commands:\n"
                "  serve                          run the daemon (the default)\n"
                "  migrate                        apply database migrations and exit\n"
                "  token add NAME --scope SCOPE   create an API token (read, write or admin);\n"
                "                                 the token is printed once\n"
                "  token list                     list active tokens\n"
                "  token revoke NAME              revoke a token\n"
                "  config                         print the effective configuration\n"
                "\n"
                "Options:\n"
                "  -c, --config FILE   configuration file (default %s)\n"
                "  -h, --help          show this help\n"
                "  -V, --version       show the version\n"
                "\n"
                "Every configuration key can be overridden by SMTPTLSD_<KEY> in the environment.\n",
                SMTPTLSD_DEFAULT_CONFIG);
}

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
        struct app app = { .cfg = cfg, .started_usec = now_monotonic_usec() };
        _cleanup_close_ int sfd = -1;
        int r;

        r = setup_signals(&sfd);
        if (r < 0)
                return log_errno(LOG_ERR, r, "cannot set up signal handling: %s", strerror(-r));
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
        struct http_server *http = NULL;
        r = http_server_start(&app, &o, &http);
        if (r < 0) {
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
                r = pending_start();
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
        worker_stop(app.worker);
        pending_stop();
        http_server_stop(http, (uint64_t)cfg->shutdown_timeout);
        worker_free(app.worker);
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

static int run_token(const struct config *cfg, int argc, char **argv)
{
        struct db_conn c = { 0 };
        struct problem p = { 0 };
        int r;

        if (argc < 1) {
                usage(stderr);
                return -EINVAL;
        }
        const char *verb = argv[0];
        if (streq(verb, "add")) {
                const char *name = NULL, *scope_s = NULL;
                for (int i = 1; i < argc; i++) {
                        if (streq(argv[i], "--scope") && i + 1 < argc)
                                scope_s = argv[++i];
                        else if (strncmp(argv[i], "--scope=", 8) == 0)
                                scope_s = argv[i] + 8;
                        else if (!name && argv[i][0] != '-')
                                name = argv[i];
                        else {
                                fprintf(stderr, "smtptlsd: unexpected argument '%s'\n", argv[i]);
                                return -EINVAL;
                        }
                }
                enum scope scope;
                if (name && !name_is_valid(name)) {
                        fprintf(stderr, "smtptlsd: token names are [a-z0-9][a-z0-9._-]{0,63}\n");
                        return -EINVAL;
                }
                if (!name || !scope_s || scope_from_string(scope_s, &scope) < 0) {
                        fprintf(stderr,
                                "Usage: smtptlsd token add NAME --scope read|write|admin\n");
                        return -EINVAL;
                }
                char token[TOKEN_SIZE];
                r = open_db(cfg, &c);
                if (r < 0)
                        return EXIT_FAILURE;
                r = tokens_add(&c, name, scope, token, NULL, &p);
                PQfinish(c.pg);
                if (r < 0)
                        return print_problem(r, &p);
                printf("%s\n", token);
                return 0;
        }
        if (streq(verb, "list") && argc == 1) {
                json_t *items = NULL, *it;
                size_t i;
                r = open_db(cfg, &c);
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
        if (streq(verb, "revoke") && argc == 2) {
                r = open_db(cfg, &c);
                if (r < 0)
                        return EXIT_FAILURE;
                r = tokens_revoke(&c, argv[1], &p);
                PQfinish(c.pg);
                if (r < 0)
                        return print_problem(r, &p);
                printf("revoked %s\n", argv[1]);
                return 0;
        }
        usage(stderr);
        return -EINVAL;
}

int main(int argc, char **argv)
{
        static const struct option options[] = {
                { "config", required_argument, NULL, 'c' },
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, 'V' },
                { 0 },
        };
        const char *config_path = NULL;
        struct config cfg;
        char err[512];
        int c, r;

        /* Upload bodies carry private keys: jansson frees through a wiping free there. */
        json_wipe_install();

        /* '+': stop at the first non-option so that `token add x --scope y` reaches run_token. */
        while ((c = getopt_long(argc, argv, "+c:hV", options, NULL)) >= 0) {
                switch (c) {
                case 'c':
                        config_path = optarg;
                        break;
                case 'h':
                        usage(stdout);
                        return 0;
                case 'V':
                        printf("smtptlsd %s\n", SMTPTLSD_VERSION);
                        if (fault_injection_compiled_in())
                                printf("fault injection compiled in (a test build)\n");
                        return 0;
                default:
                        usage(stderr);
                        return EXIT_USAGE;
                }
        }
        const char *cmd = optind < argc ? argv[optind] : "serve";

        r = config_load(&cfg, config_path ? config_path : SMTPTLSD_DEFAULT_CONFIG,
                        config_path != NULL, err, sizeof(err));
        if (r < 0) {
                fprintf(stderr, "smtptlsd: %s\n", err);
                config_free(&cfg);
                return EXIT_USAGE;
        }

        if (streq(cmd, "serve") && optind + 1 >= argc) {
                r = run_serve(&cfg);
        } else if (streq(cmd, "migrate") && optind + 1 >= argc) {
                struct db_conn conn = { 0 };
                r = open_db(&cfg, &conn);
                if (r >= 0) {
                        printf("database schema at version %u\n", migrations_count);
                        PQfinish(conn.pg);
                }
        } else if (streq(cmd, "token")) {
                r = run_token(&cfg, argc - optind - 1, argv + optind + 1);
                if (r == -EINVAL) {
                        config_free(&cfg);
                        return EXIT_USAGE;
                }
        } else if (streq(cmd, "config") && optind + 1 >= argc) {
                config_print(&cfg, stdout);
                r = 0;
        } else {
                usage(stderr);
                config_free(&cfg);
                return EXIT_USAGE;
        }
        config_free(&cfg);
        return r < 0 ? EXIT_FAILURE : r;
}
