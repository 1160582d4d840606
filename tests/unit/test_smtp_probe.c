/* test_smtp_probe.c - the SMTP STARTTLS probe against real servers on loopback, nothing mocked: a
 * private Postfix instance (shared/design/testing.md) serving STARTTLS with a test CA's leaf, then
 * reloaded with another leaf and without TLS; and TCP servers of our own that never speak, send an
 * endless line or too many lines, or follow a short script (multi-line greeting, STARTTLS refused,
 * data pipelined after STARTTLS, garbage instead of TLS). The Postfix cases are skipped when not
 * root or without Postfix. Postfix is stopped and its directory removed by the group teardown, and
 * by a guard process should this test die without it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#include "apply/fsutil.h"
#include "probe/smtp_probe.h"
#include "apply/spawn.h"
#include "event.h"
#include "util.h"

#define SEC 1000000ULL

/* MODE_DUAL: leaf1 (ECDSA) and leaf3 (RSA) from one smtpd_tls_chain_files list */
enum tls_mode { MODE_NONE, MODE_LEAF1, MODE_LEAF2, MODE_DUAL };

static struct {
        char dir[64];
        char etc[96];
        char ca[96];
        char fp1[96], fp2[96]; /* `openssl x509 -fingerprint -sha256` of leaf1 and leaf2 */
        char fp3[96];          /* of leaf3, the RSA one */
        bool postfix_ok;       /* false: the Postfix cases are skipped */
        bool started;
        unsigned port;
        enum tls_mode mode;
        int port_fd; /* keeps port reserved */
        pid_t guard;
        int guard_fd;
} fx = { .port_fd = -1, .guard = -1, .guard_fd = -1 };

/* ---- helpers ------------------------------------------------------------------------------- */

static void path_of(char *buf, size_t size, const char *name)
{
        snprintf(buf, size, "%s/%s", fx.dir, name);
}

/* Runs argv; returns its exit status (-1 when it could not run), printing its output on failure. */
static int run(const char *const argv[], char *out, size_t outsize)
{
        struct spawn_result res;
        int r = spawn_run(argv, 30 * SEC, &res);
        int status = r < 0 ? -1 : res.exit_status;
        if (status != 0)
                fprintf(stderr, "# %s %s: %s (%s)\n", argv[0], argv[1] ? argv[1] : "",
                        r < 0 ? strerror(-r) : "failed", res.output ? res.output : "");
        if (out && res.output)
                snprintf(out, outsize, "%s", res.output);
        spawn_result_done(&res);
        return status;
}

static int write_text(const char *name, const char *text)
{
        char p[160];
        path_of(p, sizeof(p), name);
        return fs_write_file(p, text, strlen(text), 0644);
}

/* Postfix commands wait while main.cf/master.cf look freshly written: date them back. */
static int backdate(const char *name)
{
        char p[160];
        struct timespec t[2];
        path_of(p, sizeof(p), name);
        clock_gettime(CLOCK_REALTIME, &t[0]);
        t[0].tv_sec -= 10;
        t[1] = t[0];
        return utimensat(AT_FDCWD, p, t, 0);
}

/* A free loopback port, kept reserved by a bound (never listening) SO_REUSEPORT socket: the Postfix
 * master (also SO_REUSEPORT, same user) can bind it too, while no other test that asks the kernel
 * for a free port can get it and share our connections. Returns the socket. */
static int reserve_port(unsigned *port)
{
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof(a);
        int one = 1;
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -1;
        if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0 ||
            bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
            getsockname(fd, (struct sockaddr *)&a, &len) < 0) {
                close(fd);
                return -1;
        }
        *port = ntohs(a.sin_port);
        return fd;
}

/* A loopback TCP socket bound to a free port, listening when backlog > 0; *port gets the port. */
static int loopback_socket(int backlog, unsigned *port)
{
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof(a);
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(fd >= 0);
        assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
        if (backlog > 0)
                assert_int_equal(listen(fd, backlog), 0);
        assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
        *port = ntohs(a.sin_port);
        return fd;
}

static uint64_t elapsed_since(uint64_t t0)
{
        return now_monotonic_usec() - t0;
}

/* ---- test certificates (openssl CLI) --------------------------------------------------------- */

/* rsa: an RSA 2048 key, else ECDSA P-256. */
static int make_leaf(const char *name, const char *serial, const char *cn, const char *sans,
                     bool rsa, char fp[96])
{
        char key[160], csr[160], crt[160], ext[160], cakey[160], subj[128], extname[64];
        char text[256], out[256];
        snprintf(extname, sizeof(extname), "%s.ext", name);
        snprintf(key, sizeof(key), "%s/%s.key", fx.dir, name);
        snprintf(csr, sizeof(csr), "%s/%s.csr", fx.dir, name);
        snprintf(crt, sizeof(crt), "%s/%s.crt", fx.dir, name);
        path_of(ext, sizeof(ext), extname);
        path_of(cakey, sizeof(cakey), "ca.key");
        snprintf(subj, sizeof(subj), "/CN=%s", cn);
        snprintf(text, sizeof(text),
                 "basicConstraints = critical, CA:FALSE\n"
                 "keyUsage = critical, digitalSignature\n"
                 "extendedKeyUsage = serverAuth\n"
                 "subjectAltName = %s\n",
                 sans);
        if (write_text(extname, text) < 0)
                return -1;
        const char *const req[] = { "openssl",
                                    "req",
                                    "-new",
                                    "-newkey",
                                    rsa ? "rsa" : "ec",
                                    "-pkeyopt",
                                    rsa ? "rsa_keygen_bits:2048" : "ec_paramgen_curve:prime256v1",
                                    "-nodes",
                                    "-keyout",
                                    key,
                                    "-out",
                                    csr,
                                    "-subj",
                                    subj,
                                    NULL };
        const char *const sign[] = { "openssl", "x509",     "-req", "-in",         csr,    "-CA",
                                     fx.ca,     "-CAkey",   cakey,  "-set_serial", serial, "-days",
                                     "2",       "-extfile", ext,    "-out",        crt,    NULL };
        const char *const fpr[] = { "openssl", "x509",         "-in",     crt,
                                    "-noout",  "-fingerprint", "-sha256", NULL };
        if (run(req, NULL, 0) != 0 || run(sign, NULL, 0) != 0 || run(fpr, out, sizeof(out)) != 0)
                return -1;
        /* "sha256 Fingerprint=AB:CD:...\n" */
        const char *eq = strchr(out, '=');
        if (!eq)
                return -1;
        snprintf(fp, 96, "%.95s", eq + 1);
        fp[strcspn(fp, "\r\n")] = 0;
        return strlen(fp) == 95 ? 0 : -1;
}

static int make_certs(void)
{
        char cakey[160];
        path_of(fx.ca, sizeof(fx.ca), "ca.crt");
        path_of(cakey, sizeof(cakey), "ca.key");
        const char *const ca[] = { "openssl",
                                   "req",
                                   "-x509",
                                   "-newkey",
                                   "ec",
                                   "-pkeyopt",
                                   "ec_paramgen_curve:prime256v1",
                                   "-nodes",
                                   "-keyout",
                                   cakey,
                                   "-out",
                                   fx.ca,
                                   "-subj",
                                   "/CN=smtptlsd test CA",
                                   "-days",
                                   "2",
                                   NULL };
        if (run(ca, NULL, 0) != 0)
                return -1;
        if (make_leaf("leaf1", "1001", "mx.test.example",
                      "DNS:mx.test.example, DNS:alt.test.example", false, fx.fp1) < 0)
                return -1;
        if (make_leaf("leaf3", "1003", "mx.test.example", "DNS:mx.test.example", true, fx.fp3) < 0)
                return -1;
        return make_leaf("leaf2", "1002", "mx2.test.example", "DNS:mx2.test.example", false,
                         fx.fp2);
}

/* ---- the private Postfix instance ----------------------------------------------------------- */

static int postfix(const char *what)
{
        const char *const argv[] = { "postfix", "-c", fx.etc, what, NULL };
        return run(argv, NULL, 0);
}

static int postconf(const char *a, const char *b)
{
        const char *const argv[] = { "postconf", "-c", fx.etc, a, b, NULL };
        return run(argv, NULL, 0);
}

static int write_main_cf(enum tls_mode mode)
{
        char tls[512] = "smtpd_tls_security_level = none\n";
        char text[2048];
        if (mode == MODE_DUAL) {
                /* each key directly followed by its certificate, one pair per key type */
                snprintf(tls, sizeof(tls),
                         "smtpd_tls_security_level = may\n"
                         "smtpd_tls_chain_files = %s/leaf1.key, %s/leaf1.crt, %s/leaf3.key, "
                         "%s/leaf3.crt\n",
                         fx.dir, fx.dir, fx.dir, fx.dir);
        } else if (mode != MODE_NONE) {
                const char *leaf = mode == MODE_LEAF1 ? "leaf1" : "leaf2";
                snprintf(tls, sizeof(tls),
                         "smtpd_tls_security_level = may\n"
                         "smtpd_tls_chain_files = %s/%s.key, %s/%s.crt\n",
                         fx.dir, leaf, fx.dir, leaf);
        }
        snprintf(text, sizeof(text),
                 "compatibility_level = 3.6\n"
                 "queue_directory = %s/spool\n"
                 "data_directory = %s/data\n"
                 "myhostname = mx.test.example\n"
                 "mydomain = test.example\n"
                 "inet_interfaces = 127.0.0.1\n"
                 "inet_protocols = ipv4\n"
                 "mydestination =\n"
                 "relayhost =\n"
                 "alias_maps =\n"
                 "alias_database =\n"
                 "local_recipient_maps =\n"
                 "maillog_file = %s/log/maillog\n"
                 "maillog_file_prefixes = %s/log\n"
                 "smtp_dns_support_level = disabled\n"
                 "smtpd_banner = $myhostname ESMTP smtptlsd probe test\n"
                 "%s",
                 fx.dir, fx.dir, fx.dir, fx.dir, tls);
        /* atomically: an smtpd started meanwhile must never read a half-written main.cf (it would
         * die, and the master would throttle the service for a minute) */
        char staged[160], target[160];
        path_of(staged, sizeof(staged), "etc/main.cf.new");
        path_of(target, sizeof(target), "etc/main.cf");
        if (write_text("etc/main.cf.new", text) < 0 || backdate("etc/main.cf.new") < 0 ||
            fs_replace(staged, target, NULL) < 0)
                return -1;
        fx.mode = mode;
        return 0;
}

static pid_t master_pid(void)
{
        char p[160];
        char *data = NULL;
        size_t len;
        path_of(p, sizeof(p), "spool/pid/master.pid");
        if (fs_read_file(p, 64, &data, &len) < 0)
                return -1;
        pid_t pid = (pid_t)atoi(data);
        free(data);
        return pid;
}

/* postfix stop, then wait (at most 5 s) until the master is gone. */
static void stop_postfix(void)
{
        pid_t pid = master_pid();
        postfix("stop");
        for (int i = 0; pid > 0 && i < 100 && kill(pid, 0) == 0; i++)
                usleep(50000);
}

static void print_maillog(void)
{
        char p[160];
        char *data = NULL;
        size_t len;
        path_of(p, sizeof(p), "log/maillog");
        if (fs_read_file(p, 1 << 20, &data, &len) == 0) {
                fprintf(stderr, "# --- maillog ---\n%s\n", len > 3000 ? data + len - 3000 : data);
                free(data);
        }
}

/* A child that waits for our end of a pipe to close (on any exit, even a crash) and then stops the
 * instance and removes the directory, unless the teardown already did. */
static int start_guard(void)
{
        int p[2];
        if (pipe2(p, O_CLOEXEC) < 0)
                return -1;
        pid_t pid = fork();
        if (pid < 0) {
                close(p[0]);
                close(p[1]);
                return -1;
        }
        if (pid == 0) {
                char c;
                signal(SIGINT, SIG_IGN);
                signal(SIGTERM, SIG_IGN);
                close(p[1]);
                while (read(p[0], &c, 1) < 0 && errno == EINTR)
                        ;
                if (access(fx.dir, F_OK) == 0) {
                        pid_t master = master_pid();
                        if (master > 0 && kill(master, 0) == 0)
                                stop_postfix();
                        fs_remove_tree(fx.dir);
                }
                _exit(0);
        }
        close(p[0]);
        fx.guard = pid;
        fx.guard_fd = p[1];
        return 0;
}

static int start_postfix(void)
{
        char p[160];
        struct passwd *pw = getpwnam("postfix");
        if (!pw)
                return -1;
        static const char *const dirs[] = { "etc", "spool", "log" };
        for (size_t i = 0; i < ARRAY_SIZE(dirs); i++) {
                path_of(p, sizeof(p), dirs[i]);
                if (mkdir(p, 0755) < 0)
                        return -1;
        }
        path_of(p, sizeof(p), "data");
        if (mkdir(p, 0700) < 0 || chown(p, pw->pw_uid, pw->pw_gid) < 0)
                return -1;

        char *dist = NULL;
        size_t len;
        if (fs_read_file("/usr/share/postfix/master.cf.dist", 1 << 20, &dist, &len) < 0)
                return -1;
        path_of(p, sizeof(p), "etc/master.cf");
        int r = fs_write_file(p, dist, len, 0644);
        free(dist);
        if (r < 0 || write_main_cf(MODE_LEAF1) < 0)
                return -1;

        char service[128];
        fx.port_fd = reserve_port(&fx.port);
        snprintf(service, sizeof(service), "127.0.0.1:%u/inet = 127.0.0.1:%u inet n - n - - smtpd",
                 fx.port, fx.port);
        if (fx.port_fd < 0 || postconf("-F", "*/*/chroot = n") != 0 ||
            postconf("-MX", "smtp/inet") != 0 || postconf("-M", service) != 0 ||
            backdate("etc/master.cf") < 0 || backdate("etc/main.cf") < 0)
                return -1;

        fx.started = true; /* from here on, teardown (or the guard) stops it */
        if (postfix("start") != 0) {
                print_maillog();
                return -1;
        }
        return 0;
}

static int group_teardown(void **state)
{
        if (fx.started) {
                stop_postfix();
                fx.started = false;
        }
        int r = fx.dir[0] ? fs_remove_tree(fx.dir) : 0;
        if (fx.port_fd >= 0)
                close(fx.port_fd);
        fx.port_fd = -1;
        if (fx.guard_fd >= 0)
                close(fx.guard_fd);
        if (fx.guard > 0)
                waitpid(fx.guard, NULL, 0);
        fx.guard = fx.guard_fd = -1;
        return r < 0 ? -1 : 0;
}

static int group_setup(void **state)
{
        strcpy(fx.dir, "/tmp/smtptlsd-probe-XXXXXX");
        if (!mkdtemp(fx.dir) || chmod(fx.dir, 0755) < 0)
                return -1;
        path_of(fx.etc, sizeof(fx.etc), "etc"); /* before the guard forks: it needs it */
        if (start_guard() < 0 || make_certs() < 0)
                goto fail;
        if (geteuid() != 0 || access("/usr/sbin/postfix", X_OK) != 0) {
                fprintf(stderr, "# not root or no Postfix: the Postfix cases are skipped\n");
                return 0;
        }
        if (start_postfix() < 0)
                goto fail;
        fx.postfix_ok = true;
        return 0;
fail:
        group_teardown(state);
        return -1;
}

/* Makes the instance serve mode: rewrite main.cf, reload and wait until a new connection shows it.
 */
static void use_mode(enum tls_mode mode)
{
        struct smtp_probe_result last;
        if (!fx.postfix_ok)
                skip();
        if (fx.mode == mode)
                return;
        assert_int_equal(write_main_cf(mode), 0);
        assert_int_equal(postfix("reload"), 0);
        const char *fp = mode == MODE_NONE ? NULL : mode == MODE_LEAF2 ? fx.fp2 : fx.fp1;
        const char *sigalgs = mode == MODE_DUAL ? smtp_probe_sigalgs("EC") : NULL;
        int r = smtp_probe_expect("127.0.0.1", fx.port, fp, sigalgs, 10 * SEC, 50000, &last, NULL);
        if (r != 0) {
                fprintf(stderr, "# still served: %s (%s)\n", last.sha256_fingerprint, last.error);
                print_maillog();
        }
        smtp_probe_result_done(&last);
        assert_int_equal(r, 0);
}

/* ---- a TCP server of our own ----------------------------------------------------------------- */

/* script: strings sent as they are, except "<" which reads one line from the client (recorded in
 * got, joined by '|') and "<hello" which reads whatever comes (a TLS ClientHello). endless: after
 * the script, this is sent again and again until the client goes away. */
struct fake {
        int lfd;
        unsigned port;
        const char *const *script;
        const char *endless;
        atomic_bool stop;
        char got[512];
        pthread_t thread;
        bool running;
};

static struct fake fake;

static int fake_read_line(int fd, char *line, size_t size)
{
        size_t n = 0;
        for (;;) {
                char c;
                ssize_t k = recv(fd, &c, 1, 0);
                if (k <= 0)
                        return -1;
                if (c == '\n')
                        break;
                if (c != '\r' && n + 1 < size)
                        line[n++] = c;
        }
        line[n] = 0;
        return 0;
}

static void *fake_main(void *arg)
{
        struct fake *f = arg;
        struct pollfd p = { .fd = f->lfd, .events = POLLIN };
        uint64_t end = now_monotonic_usec() + 20 * SEC;
        int fd = -1;

        while (!f->stop && now_monotonic_usec() < end) {
                if (poll(&p, 1, 50) == 1) {
                        fd = accept4(f->lfd, NULL, NULL, SOCK_CLOEXEC);
                        break;
                }
        }
        if (fd < 0)
                return NULL;
        struct timeval tv = { .tv_sec = 5 };
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        for (const char *const *s = f->script; s && *s && !f->stop; s++) {
                if (streq(*s, "<hello")) {
                        char buf[4096];
                        if (recv(fd, buf, sizeof(buf), 0) <= 0)
                                break;
                } else if (streq(*s, "<")) {
                        char line[256];
                        if (fake_read_line(fd, line, sizeof(line)) < 0)
                                break;
                        size_t n = strlen(f->got);
                        snprintf(f->got + n, sizeof(f->got) - n, "%s%s", n ? "|" : "", line);
                } else if (send(fd, *s, strlen(*s), MSG_NOSIGNAL) < 0) {
                        break;
                }
        }
        for (size_t sent = 0; f->endless && !f->stop && sent < (256u << 20);) {
                ssize_t k = send(fd, f->endless, strlen(f->endless), MSG_NOSIGNAL);
                if (k <= 0 || now_monotonic_usec() > end)
                        break;
                sent += (size_t)k;
        }
        close(fd);
        return NULL;
}

static void fake_start(const char *const *script, const char *endless)
{
        fake = (struct fake){ .script = script, .endless = endless };
        fake.lfd = loopback_socket(4, &fake.port);
        assert_int_equal(pthread_create(&fake.thread, NULL, fake_main, &fake), 0);
        fake.running = true;
}

static void fake_join(void)
{
        if (fake.running) {
                pthread_join(fake.thread, NULL);
                fake.running = false;
        }
}

static int fake_teardown(void **state)
{
        atomic_store(&fake.stop, true);
        fake_join();
        if (fake.lfd > 0)
                close(fake.lfd);
        fake.lfd = -1;
        return 0;
}

/* ---- Postfix cases -----------------------------------------------------------------------------
 */

static void test_starttls_served(void **state)
{
        struct smtp_probe_result res;
        use_mode(MODE_LEAF1);

        uint64_t t0 = now_monotonic_usec();
        assert_int_equal(smtp_probe("127.0.0.1", fx.port, "mx.test.example", fx.ca, 5 * SEC, &res),
                         0);
        print_message("# STARTTLS probe with verification: %.1f ms\n",
                      (double)elapsed_since(t0) / 1000);
        assert_true(res.connected);
        assert_true(res.starttls_offered);
        assert_true(res.handshake_ok);
        assert_string_equal(res.error, "");
        assert_string_equal(res.address, "127.0.0.1");
        assert_string_equal(res.banner, "220 mx.test.example ESMTP smtptlsd probe test");
        assert_string_equal(res.sha256_fingerprint, fx.fp1);
        assert_true(res.verified);
        assert_string_equal(res.verify_error, "");
        assert_non_null(strstr(res.protocol, "TLSv1."));
        assert_true(res.cipher[0] != 0);
        assert_string_equal(res.subject, "CN=mx.test.example");
        assert_string_equal(res.issuer, "CN=smtptlsd test CA");
        assert_int_equal(res.n_dns_names, 2);
        assert_string_equal(res.dns_names[0], "mx.test.example");
        assert_string_equal(res.dns_names[1], "alt.test.example");
        time_t now = time(NULL);
        assert_true(res.not_after > now + 86400 && res.not_after <= now + 2 * 86400 + 60);
        smtp_probe_result_done(&res);

        /* the other SAN verifies too */
        assert_int_equal(smtp_probe("127.0.0.1", fx.port, "alt.test.example", fx.ca, 5 * SEC, &res),
                         0);
        assert_true(res.verified);
        smtp_probe_result_done(&res);

        /* a name the certificate does not have: same certificate, not verified */
        assert_int_equal(
            smtp_probe("127.0.0.1", fx.port, "wrong.test.example", fx.ca, 5 * SEC, &res), 0);
        assert_true(res.handshake_ok);
        assert_string_equal(res.sha256_fingerprint, fx.fp1);
        assert_false(res.verified);
        assert_string_equal(res.verify_error, "hostname mismatch");
        assert_string_equal(res.error, "");
        smtp_probe_result_done(&res);

        /* an IP address as the server name: checked against IP SANs (there are none) */
        assert_int_equal(smtp_probe("127.0.0.1", fx.port, "127.0.0.1", fx.ca, 5 * SEC, &res), 0);
        assert_true(res.handshake_ok);
        assert_false(res.verified);
        assert_string_equal(res.verify_error, "IP address mismatch");
        smtp_probe_result_done(&res);

        /* the system trust store does not know the test CA */
        assert_int_equal(smtp_probe("127.0.0.1", fx.port, NULL, NULL, 5 * SEC, &res), 0);
        assert_true(res.handshake_ok);
        assert_string_equal(res.sha256_fingerprint, fx.fp1);
        assert_false(res.verified);
        assert_true(res.verify_error[0] != 0);
        smtp_probe_result_done(&res);

        /* a host name, resolved with getaddrinfo */
        assert_int_equal(smtp_probe("localhost", fx.port, "mx.test.example", fx.ca, 5 * SEC, &res),
                         0);
        assert_string_equal(res.address, "127.0.0.1");
        assert_string_equal(res.sha256_fingerprint, fx.fp1);
        assert_true(res.verified);
        smtp_probe_result_done(&res);

        /* a CA file that cannot be loaded is refused before any connection */
        assert_int_equal(smtp_probe("127.0.0.1", fx.port, NULL, "/nonexistent/ca.crt", SEC, &res),
                         -EINVAL);
        assert_false(res.connected);
        assert_non_null(strstr(res.error, "CA file"));
        smtp_probe_result_done(&res);
}

struct worker_arg {
        int ok;
};

static void *probe_worker(void *arg)
{
        struct worker_arg *w = arg;
        for (int i = 0; i < 5; i++) {
                struct smtp_probe_result res;
                int r = smtp_probe("127.0.0.1", fx.port, "mx.test.example", fx.ca, 5 * SEC, &res);
                if (r == 0 && res.verified && streq(res.sha256_fingerprint, fx.fp1))
                        w->ok++;
                smtp_probe_result_done(&res);
        }
        return NULL;
}

/* No shared state: probes on several threads at once all see the same verified certificate. */
static void test_concurrent_probes(void **state)
{
        pthread_t t[4];
        struct worker_arg w[4] = { { 0 } };
        use_mode(MODE_LEAF1);
        for (size_t i = 0; i < ARRAY_SIZE(t); i++)
                assert_int_equal(pthread_create(&t[i], NULL, probe_worker, &w[i]), 0);
        for (size_t i = 0; i < ARRAY_SIZE(t); i++) {
                pthread_join(t[i], NULL);
                assert_int_equal(w[i].ok, 5);
        }
}

static void test_reload_serves_new_certificate(void **state)
{
        struct smtp_probe_result last;
        use_mode(MODE_LEAF1);

        assert_int_equal(write_main_cf(MODE_LEAF2), 0);
        assert_int_equal(postfix("reload"), 0);
        uint64_t t0 = now_monotonic_usec();
        assert_int_equal(
            smtp_probe_expect("127.0.0.1", fx.port, fx.fp2, NULL, 10 * SEC, 50000, &last, NULL), 0);
        print_message("# new certificate served %.1f ms after the reload returned\n",
                      (double)elapsed_since(t0) / 1000);
        assert_string_equal(last.sha256_fingerprint, fx.fp2);
        assert_string_equal(last.subject, "CN=mx2.test.example");
        smtp_probe_result_done(&last);

        /* the old one is not coming back: -ETIMEDOUT in time, last holds what is served */
        t0 = now_monotonic_usec();
        assert_int_equal(
            smtp_probe_expect("127.0.0.1", fx.port, fx.fp1, NULL, 800000, 100000, &last, NULL),
            -ETIMEDOUT);
        assert_true(elapsed_since(t0) >= 800000 && elapsed_since(t0) < 1800000);
        assert_string_equal(last.sha256_fingerprint, fx.fp2);
        assert_false(last.verified);
        assert_string_equal(last.verify_error, "not checked");
        smtp_probe_result_done(&last);

        /* the expected fingerprint may be given in lower case without colons */
        char plain[65] = "";
        for (const char *p = fx.fp2; *p; p++)
                if (*p != ':')
                        plain[strlen(plain)] = (char)(*p >= 'A' && *p <= 'F' ? *p + 32 : *p);
        assert_int_equal(
            smtp_probe_expect("127.0.0.1", fx.port, plain, NULL, 5 * SEC, 50000, &last, NULL), 0);
        smtp_probe_result_done(&last);
        /* and without one to keep */
        assert_int_equal(
            smtp_probe_expect("127.0.0.1", fx.port, fx.fp2, NULL, 5 * SEC, 50000, NULL, NULL), 0);
}

/* One smtpd with an ECDSA and an RSA certificate: a client offering only one key type's
 * signature algorithms is served that type's certificate, in TLS 1.3 and 1.2 alike. */
static void test_sigalgs_choose_the_certificate(void **state)
{
        struct smtp_probe_result last;
        use_mode(MODE_DUAL);
        assert_non_null(smtp_probe_sigalgs("RSA"));
        assert_non_null(smtp_probe_sigalgs("EC"));
        assert_null(smtp_probe_sigalgs("DSA"));
        assert_null(smtp_probe_sigalgs(NULL));

        assert_int_equal(smtp_probe_expect("127.0.0.1", fx.port, fx.fp3, smtp_probe_sigalgs("RSA"),
                                           10 * SEC, 50000, &last, NULL),
                         0);
        assert_string_equal(last.key_type, "RSA");
        smtp_probe_result_done(&last);
        assert_int_equal(smtp_probe_expect("127.0.0.1", fx.port, fx.fp1, smtp_probe_sigalgs("EC"),
                                           10 * SEC, 50000, &last, NULL),
                         0);
        assert_string_equal(last.key_type, "EC");
        smtp_probe_result_done(&last);
        /* never the other one: the RSA certificate is not served to an ECDSA-only client */
        assert_int_equal(smtp_probe_expect("127.0.0.1", fx.port, fx.fp3, smtp_probe_sigalgs("EC"),
                                           600000, 100000, &last, NULL),
                         -ETIMEDOUT);
        assert_string_equal(last.sha256_fingerprint, fx.fp1);
        smtp_probe_result_done(&last);
        /* a list OpenSSL refuses is an argument error, before any waiting */
        assert_int_equal(smtp_probe_expect("127.0.0.1", fx.port, fx.fp3, "no_such_sigalg", 5 * SEC,
                                           50000, &last, NULL),
                         -EINVAL);
        assert_non_null(strstr(last.error, "signature algorithms"));
        smtp_probe_result_done(&last);
}

static void test_tls_disabled(void **state)
{
        struct smtp_probe_result res;
        use_mode(MODE_LEAF1);

        assert_int_equal(write_main_cf(MODE_NONE), 0);
        assert_int_equal(postfix("reload"), 0);
        assert_int_equal(
            smtp_probe_expect("127.0.0.1", fx.port, NULL, NULL, 10 * SEC, 50000, &res, NULL), 0);
        assert_false(res.starttls_offered);
        smtp_probe_result_done(&res);

        assert_int_equal(smtp_probe("127.0.0.1", fx.port, "mx.test.example", fx.ca, 5 * SEC, &res),
                         0);
        assert_true(res.connected);
        assert_false(res.starttls_offered);
        assert_false(res.handshake_ok);
        assert_false(res.verified);
        assert_string_equal(res.error, "");
        assert_string_equal(res.sha256_fingerprint, "");
        assert_null(res.dns_names);
        assert_string_equal(res.banner, "220 mx.test.example ESMTP smtptlsd probe test");
        smtp_probe_result_done(&res);

        /* waiting for a certificate on a server without TLS ends with -ETIMEDOUT */
        assert_int_equal(
            smtp_probe_expect("127.0.0.1", fx.port, fx.fp1, NULL, 800000, 100000, &res, NULL),
            -ETIMEDOUT);
        assert_true(res.connected);
        assert_false(res.starttls_offered);
        smtp_probe_result_done(&res);
}

/* ---- servers of our own ---------------------------------------------------------------------- */

static void test_nothing_listening(void **state)
{
        struct smtp_probe_result res;
        unsigned port;
        /* bound but not listening: the port stays ours and refuses connections */
        _cleanup_close_ _unused_ int fd = loopback_socket(0, &port);

        uint64_t t0 = now_monotonic_usec();
        assert_int_equal(smtp_probe("127.0.0.1", port, NULL, NULL, 5 * SEC, &res), -ECONNREFUSED);
        assert_true(elapsed_since(t0) < SEC);
        assert_false(res.connected);
        assert_non_null(strstr(res.error, "connect to 127.0.0.1 port"));
        smtp_probe_result_done(&res);

        /* IPv6 loopback, when there is one */
        int fd6 = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in6 a6 = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT };
        socklen_t len = sizeof(a6);
        if (fd6 >= 0 && bind(fd6, (struct sockaddr *)&a6, sizeof(a6)) == 0 &&
            getsockname(fd6, (struct sockaddr *)&a6, &len) == 0) {
                t0 = now_monotonic_usec();
                assert_int_equal(smtp_probe("::1", ntohs(a6.sin6_port), NULL, NULL, 5 * SEC, &res),
                                 -ECONNREFUSED);
                assert_true(elapsed_since(t0) < SEC);
                assert_string_equal(res.address, "::1");
                smtp_probe_result_done(&res);
        }
        if (fd6 >= 0)
                close(fd6);

        /* a name that does not resolve: an error within the time limit */
        t0 = now_monotonic_usec();
        int r = smtp_probe("no-such-host.invalid", 25, NULL, NULL, 2 * SEC, &res);
        assert_true(r == -EHOSTUNREACH || r == -ETIMEDOUT);
        assert_true(elapsed_since(t0) < 3 * SEC);
        assert_non_null(strstr(res.error, "resolve no-such-host.invalid"));
        smtp_probe_result_done(&res);

        /* arguments */
        assert_int_equal(smtp_probe("", 25, NULL, NULL, SEC, &res), -EINVAL);
        smtp_probe_result_done(&res);
        assert_int_equal(smtp_probe("127.0.0.1", 70000, NULL, NULL, SEC, &res), -EINVAL);
        smtp_probe_result_done(&res);
        assert_int_equal(smtp_probe_expect("127.0.0.1", 25, "AB:CD", NULL, SEC, 1000, &res, NULL),
                         -EINVAL);
        smtp_probe_result_done(&res);
}

static void test_silent_server(void **state)
{
        struct smtp_probe_result res;
        unsigned port;
        /* listening, never accepting: the kernel completes the connection, nobody speaks */
        _cleanup_close_ _unused_ int fd = loopback_socket(4, &port);

        uint64_t t0 = now_monotonic_usec();
        assert_int_equal(smtp_probe("127.0.0.1", port, NULL, NULL, 500000, &res), -ETIMEDOUT);
        uint64_t took = elapsed_since(t0);
        print_message("# silent server: gave up after %.1f ms (limit 500 ms)\n",
                      (double)took / 1000);
        assert_true(took >= 490000 && took < 500000 + SEC);
        assert_true(res.connected);
        assert_string_equal(res.error, "greeting: timed out");
        smtp_probe_result_done(&res);

        /* smtp_probe_expect keeps to its own limit as well */
        t0 = now_monotonic_usec();
        assert_int_equal(
            smtp_probe_expect("127.0.0.1", port, NULL, NULL, 300000, 100000, &res, NULL),
            -ETIMEDOUT);
        assert_true(elapsed_since(t0) < 300000 + SEC);
        smtp_probe_result_done(&res);
}

struct stopper {
        struct stop_event *stop;
        uint64_t after_usec;
};

static void *stop_later(void *arg)
{
        const struct stopper *st = arg;
        struct timespec ts = { .tv_sec = (time_t)(st->after_usec / SEC),
                               .tv_nsec = (long)(st->after_usec % SEC) * 1000 };
        nanosleep(&ts, NULL);
        stop_event_set(st->stop);
        return NULL;
}

/* The wait between two observations of smtp_probe_expect ends as soon as stop is set: no further
 * attempt is made (each would take its share of the timeout against a server that never speaks). */
static void test_expect_stops_at_once(void **state)
{
        struct smtp_probe_result res;
        unsigned port;
        struct stop_event stop;
        assert_int_equal(stop_event_init(&stop), 0);
        /* listening, never accepting: each attempt waits for the greeting for its whole share */
        _cleanup_close_ _unused_ int fd = loopback_socket(4, &port);
        /* a timeout of 8 s: attempts of 2 s, then a wait of the 30 s interval (capped at what is
         * left); stop comes half a second into that wait */
        struct stopper st = { &stop, 2 * SEC + SEC / 2 };
        pthread_t t;
        assert_int_equal(pthread_create(&t, NULL, stop_later, &st), 0);
        uint64_t t0 = now_monotonic_usec();
        assert_int_equal(
            smtp_probe_expect("127.0.0.1", port, NULL, NULL, 8 * SEC, 30 * SEC, &res, &stop),
            -ETIMEDOUT);
        uint64_t took = elapsed_since(t0);
        pthread_join(t, NULL);
        print_message("# stopped after %.1f ms (stop set at 2500 ms)\n", (double)took / 1000);
        assert_true(took >= 2 * SEC + SEC / 2);
        assert_true(took < 3 * SEC + SEC / 2); /* a further attempt would end at 4.5 s */
        assert_string_equal(res.error, "greeting: timed out");
        smtp_probe_result_done(&res);
        stop_event_destroy(&stop);
}

static void test_endless_line(void **state)
{
        struct smtp_probe_result res;
        static const char *const script[] = { "220 ", NULL };
        fake_start(script, "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");

        uint64_t t0 = now_monotonic_usec();
        assert_int_equal(smtp_probe("127.0.0.1", fake.port, NULL, NULL, 5 * SEC, &res), -EMSGSIZE);
        assert_true(elapsed_since(t0) < 5 * SEC + SEC);
        assert_true(res.connected);
        assert_string_equal(res.error, "greeting: reply line longer than 4096 bytes");
        smtp_probe_result_done(&res);
        fake_join();
}

static void test_too_many_lines(void **state)
{
        struct smtp_probe_result res;
        static const char *const script[] = { "220-welcome\r\n", NULL };
        fake_start(script, "220-and more\r\n");

        uint64_t t0 = now_monotonic_usec();
        assert_int_equal(smtp_probe("127.0.0.1", fake.port, NULL, NULL, 5 * SEC, &res), -EMSGSIZE);
        assert_true(elapsed_since(t0) < 5 * SEC + SEC);
        assert_string_equal(res.error, "greeting: reply longer than 100 lines");
        smtp_probe_result_done(&res);
        fake_join();
}

static void test_server_hangs_up(void **state)
{
        struct smtp_probe_result res;
        static const char *const script[] = { "220 fake.test.example ESMTP\r\n", NULL };
        fake_start(script, NULL);

        /* EHLO goes to a closed connection: an error, and no SIGPIPE for us */
        assert_int_equal(smtp_probe("127.0.0.1", fake.port, NULL, NULL, 5 * SEC, &res),
                         -ECONNRESET);
        assert_string_equal(res.banner, "220 fake.test.example ESMTP");
        assert_string_equal(res.error, "EHLO: connection closed by the server");
        smtp_probe_result_done(&res);
        fake_join();
}

static void test_multiline_greeting_no_starttls(void **state)
{
        struct smtp_probe_result res;
        static const char *const script[] = {
                "220-fake.test.example first line\r\n220-second\r\n220 third\r\n",
                "<",
                "250-fake.test.example\r\n250-PIPELINING\r\n250-STARTTLSX\r\n250 8BITMIME\r\n",
                "<",
                "221 2.0.0 Bye\r\n",
                NULL,
        };
        fake_start(script, NULL);

        assert_int_equal(smtp_probe("127.0.0.1", fake.port, NULL, NULL, 5 * SEC, &res), 0);
        assert_true(res.connected);
        assert_string_equal(res.banner, "220-fake.test.example first line");
        assert_false(res.starttls_offered);
        assert_string_equal(res.error, "");
        smtp_probe_result_done(&res);
        fake_join();
        /* EHLO with an address literal or a FQDN, then a polite QUIT */
        assert_true(strncmp(fake.got, "EHLO ", 5) == 0);
        assert_non_null(strstr(fake.got, "|QUIT"));
}

static void test_starttls_refused(void **state)
{
        struct smtp_probe_result res;
        static const char *const script[] = {
                "220 fake.test.example ESMTP\r\n",
                "<",
                "250-fake.test.example\r\n250-SIZE 1000\r\n250 starttls\r\n",
                "<",
                "454 4.7.0 TLS not available due to local problem\r\n",
                "<",
                "221 2.0.0 Bye\r\n",
                NULL,
        };
        fake_start(script, NULL);

        assert_int_equal(smtp_probe("127.0.0.1", fake.port, NULL, NULL, 5 * SEC, &res), 0);
        assert_true(res.starttls_offered);
        assert_false(res.handshake_ok);
        assert_string_equal(res.error,
                            "STARTTLS: 454 4.7.0 TLS not available due to local problem");
        smtp_probe_result_done(&res);
        fake_join();
        assert_non_null(strstr(fake.got, "|STARTTLS|QUIT"));
}

static void test_data_after_starttls_reply(void **state)
{
        struct smtp_probe_result res;
        static const char *const script[] = {
                "220 fake.test.example ESMTP\r\n",
                "<",
                "250-fake.test.example\r\n250 STARTTLS\r\n",
                "<",
                "220 2.0.0 Ready to start TLS\r\n250 injected\r\n",
                NULL,
        };
        fake_start(script, NULL);

        assert_int_equal(smtp_probe("127.0.0.1", fake.port, NULL, NULL, 5 * SEC, &res), -EPROTO);
        assert_false(res.handshake_ok);
        assert_string_equal(res.error, "STARTTLS: unexpected data after the 220 reply");
        smtp_probe_result_done(&res);
        fake_join();
}

static void test_not_tls_after_starttls(void **state)
{
        struct smtp_probe_result res;
        static const char *const script[] = {
                "220 fake.test.example ESMTP\r\n",
                "<",
                "250-fake.test.example\r\n250 STARTTLS\r\n",
                "<",
                "220 2.0.0 Ready to start TLS\r\n",
                "<hello", /* wait for the ClientHello, then answer with plain text */
                "this is not TLS\r\n",
                NULL,
        };
        fake_start(script, NULL);

        uint64_t t0 = now_monotonic_usec();
        assert_int_equal(smtp_probe("127.0.0.1", fake.port, NULL, NULL, 5 * SEC, &res), 0);
        assert_true(elapsed_since(t0) < SEC);
        assert_true(res.starttls_offered);
        assert_false(res.handshake_ok);
        assert_false(res.verified);
        assert_string_equal(res.sha256_fingerprint, "");
        assert_non_null(strstr(res.error, "TLS handshake: "));
        print_message("# %s\n", res.error);
        smtp_probe_result_done(&res);
        fake_join();
}

static void test_fingerprint_equal(void **state)
{
        const char *a = "53:44:EA:51:8E:26:B0:16:06:A8:FA:D6:50:D8:3D:40:DA:07:AC:B3:AB:74:27:D7:"
                        "EA:05:DE:1D:47:4C:22:AB";
        assert_true(smtp_probe_fingerprint_equal(a, a));
        assert_true(smtp_probe_fingerprint_equal(
            a, "5344ea518e26b01606a8fad650d83d40da07acb3ab7427d7ea05de1d474c22ab"));
        assert_false(smtp_probe_fingerprint_equal(
            a, "5344ea518e26b01606a8fad650d83d40da07acb3ab7427d7ea05de1d474c22ac"));
        assert_false(smtp_probe_fingerprint_equal(a, "5344ea"));
        assert_false(smtp_probe_fingerprint_equal(a, ""));
        assert_false(smtp_probe_fingerprint_equal(a, NULL));
        assert_false(smtp_probe_fingerprint_equal(
            a, "5344ea518e26b01606a8fad650d83d40da07acb3ab7427d7ea05de1d474c22ab00"));
        assert_false(smtp_probe_fingerprint_equal(
            a, "5344ea518e26b01606a8fad650d83d40da07acb3ab7427d7ea05de1d474c22aZ"));
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_starttls_served),
                cmocka_unit_test(test_concurrent_probes),
                cmocka_unit_test(test_reload_serves_new_certificate),
                cmocka_unit_test(test_sigalgs_choose_the_certificate),
                cmocka_unit_test(test_tls_disabled),
                cmocka_unit_test(test_nothing_listening),
                cmocka_unit_test(test_silent_server),
                cmocka_unit_test(test_expect_stops_at_once),
                cmocka_unit_test_teardown(test_endless_line, fake_teardown),
                cmocka_unit_test_teardown(test_too_many_lines, fake_teardown),
                cmocka_unit_test_teardown(test_server_hangs_up, fake_teardown),
                cmocka_unit_test_teardown(test_multiline_greeting_no_starttls, fake_teardown),
                cmocka_unit_test_teardown(test_starttls_refused, fake_teardown),
                cmocka_unit_test_teardown(test_data_after_starttls_reply, fake_teardown),
                cmocka_unit_test_teardown(test_not_tls_after_starttls, fake_teardown),
                cmocka_unit_test(test_fingerprint_equal),
        };
        return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
