/* verifier.c - the post-reload STARTTLS check (see verifier.h). Runs on its own thread so that a
 * write returns as soon as Postfix has its files; every wait is bounded. */
#include "apply/verifier.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "apply/mastercf.h"
#include "probe/probe_conn.h"
#include "probe/smtp_probe.h"
#include "changes.h"
#include "conf.h"
#include "event.h"
#include "log.h"
#include "store/db.h"
#include "store/nodes.h"
#include "util.h"

#define VERIFY_TIMEOUT_USEC  (15ull * 1000000)
#define VERIFY_INTERVAL_USEC (200ull * 1000)
/* Before the first handshake after a follower's reload: an smtpd started before the reload that
 * accepts a connection in the moments after it waits a second for the restarted tlsmgr and may
 * serve the old certificate (bench/fleet.py, bench/README.md); this check should not be that
 * connection, nor hold that smtpd while a client waits. After a write's own reload the check goes
 * at once, as it always did: a client that asks right after the reply finds the old smtpds gone
 * to this check rather than to it. */
#define VERIFY_SETTLE_USEC (250ull * 1000)
#define MAX_IDS            1024

struct check {
        int64_t ids[MAX_IDS];
        size_t n;
        bool expect_starttls;
        bool settle; /* VERIFY_SETTLE_USEC before the first handshake */
        struct verifier_expect expect[VERIFIER_EXPECT_MAX];
        size_t n_expect;
        struct verifier_service services[VERIFIER_SERVICES_MAX];
        size_t n_services;
};

struct verifier {
        const struct config *cfg;
        pthread_t thread;
        pthread_mutex_t lock;
        pthread_cond_t cond;
        bool stopping;
        /* Ends a check in progress: when stopping, or when a newer check is submitted (the
         * files it checked are gone; its jobs go with the newer one, which records them). */
        struct stop_event stop_probe;
        int cancel_fd; /* an eventfd, readable with stop_probe set: ends a handshake's waits */
        bool checking; /* a check is in progress (stop_probe cleared for it) */
        bool has_check;
        struct check next;
        /* status */
        char state[16];
        int matches;                           /* -1 unknown, 0 no, 1 yes */
        char served[VERIFIER_EXPECT_MAX * 96]; /* what smtpd served at the last check, ','
                                                * joined; "": none */
        char detail[1024];
};

/* host[:port] as a master.cf service name or smtp_probe_address spells it: the host (brackets
 * of an IPv6 address dropped; default_host when there is no ':', NULL: then refused) and the
 * port, a number or (named_port) a services(5) name. */
static int split_address(const char *s, const char *default_host, bool named_port, char *host,
                         size_t size, unsigned *port)
{
        const char *colon = strrchr(s, ':');
        if (colon) {
                const char *h = s;
                size_t len = (size_t)(colon - s);
                if (*h == '[' && len >= 2 && h[len - 1] == ']') {
                        h++;
                        len -= 2;
                }
                if (len == 0 || len >= size)
                        return -EINVAL;
                memcpy(host, h, len);
                host[len] = 0;
        } else if (!default_host || snprintf(host, size, "%s", default_host) >= (int)size) {
                return -EINVAL;
        }
        const char *p = colon ? colon + 1 : s;
        int64_t v;
        if (parse_int64(p, 1, 65535, &v) >= 0) {
                *port = (unsigned)v;
                return 0;
        }
        return named_port ? mastercf_port_number(p, port) : -EINVAL;
}

/* The outcome on the jobs the check was for, and what this node's smtpd served on its row in
 * the fleet's registry: on a connection of its own (the worker's is the worker's). */
static void record(const struct config *cfg, const struct check *c, bool ok, const char *served)
{
        char err[256];
        PGconn *pg = NULL;
        struct problem p = { 0 };
        if (db_connect(cfg, &pg, err, sizeof(err)) < 0) {
                log_debug("verification not recorded: %s", err);
                return;
        }
        if (c->n > 0) {
                size_t cap = c->n * 21 + 3, o = 0;
                _cleanup_free_ char *list = malloc(cap);
                if (list) {
                        list[o++] = '{';
                        for (size_t i = 0; i < c->n; i++)
                                o += (size_t)snprintf(list + o, cap - o, "%s%lld", i ? "," : "",
                                                      (long long)c->ids[i]);
                        list[o++] = '}';
                        list[o] = 0;
                        const char *params[] = { ok ? "t" : "f", list };
                        db_exec_pg(pg, NULL, &p,
                                   "UPDATE jobs SET verified = $1 WHERE id = ANY($2::bigint[])", 2,
                                   params);
                        problem_done(&p);
                }
        }
        store_node_served(pg, cfg->node_name, served, ok, &p);
        problem_done(&p);
        PQfinish(pg);
}

/* One expectation of check c (e NULL: no STARTTLS offered) within the time left until
 * deadline. Describes the outcome in detail; served receives what was served. */
static bool probe_one(struct verifier *v, const char *host, unsigned port, bool wrapper,
                      const struct check *c, const struct verifier_expect *e, uint64_t deadline,
                      char *detail, size_t size, char *served, size_t served_size)
{
        struct smtp_probe_result last = { 0 };
        uint64_t now = now_monotonic_usec();
        /* with two certificates, each handshake offers only its key type's algorithms */
        const char *sigalgs = e && c->n_expect > 1 ? smtp_probe_sigalgs(e->key_type) : NULL;
        int r = smtp_probe_expect_tls(host, port, wrapper, e ? e->fingerprint : NULL, sigalgs,
                                      deadline > now ? deadline - now : 0, VERIFY_INTERVAL_USEC,
                                      &last, &v->stop_probe);
        bool ok = r >= 0;
        char with[96] = "";
        if (sigalgs)
                snprintf(with, sizeof(with), " to a client offering only %s signatures",
                         e->key_type);
        if (ok && e)
                snprintf(detail, size, "%s:%u%s serves the bound certificate %s%s", host, port,
                         wrapper ? " (implicit TLS)" : "", e->fingerprint, with);
        else if (ok)
                snprintf(detail, size, "%s:%u offers no STARTTLS", host, port);
        else if (e)
                snprintf(detail, size, "%s:%u did not serve %s%s within %llu s (last seen: %s%s%s)",
                         host, port, e->fingerprint, with,
                         (unsigned long long)(VERIFY_TIMEOUT_USEC / 1000000),
                         last.sha256_fingerprint[0] ? last.sha256_fingerprint : "no certificate",
                         last.error[0] ? "; " : "", last.error);
        else if (last.error[0])
                snprintf(detail, size, "%s:%u could not be checked: %s", host, port, last.error);
        else
                snprintf(detail, size, "%s:%u still offers STARTTLS", host, port);
        snprintf(served, served_size, "%s", last.sha256_fingerprint);
        smtp_probe_result_done(&last);
        return ok;
}

/* Every expectation of c in turn, within one VERIFY_TIMEOUT_USEC; stops at the first failure,
 * whose detail is kept. */
static bool probe_all(struct verifier *v, const char *host, unsigned port, const struct check *c,
                      char *detail, size_t size, char *served, size_t served_size)
{
        uint64_t deadline = now_monotonic_usec() + VERIFY_TIMEOUT_USEC;
        /* no certificate expected with STARTTLS cannot match: the one probe says so */
        size_t per = c->expect_starttls && c->n_expect > 1 ? c->n_expect : 1, o = 0;
        /* then each submission service, which serves the bound certificates whatever the MX's
         * level (at least one is bound while one is enabled) */
        size_t n = per + (c->n_expect > 0 ? c->n_services * c->n_expect : 0);
        char one[96], part[1024];
        bool ok = true;
        served[0] = detail[0] = 0;
        for (size_t i = 0; ok && i < n; i++) {
                const struct verifier_service *svc =
                    i < per ? NULL : &c->services[(i - per) / c->n_expect];
                const struct verifier_expect *e = !svc ? (c->expect_starttls ? &c->expect[i] : NULL)
                                                       : &c->expect[(i - per) % c->n_expect];
                char svc_host[256];
                unsigned svc_port = 0;
                if (svc && split_address(svc->name, host, true, svc_host, sizeof(svc_host),
                                         &svc_port) < 0) {
                        snprintf(part, sizeof(part), "submission service %s: no such port",
                                 svc->name);
                        ok = false;
                } else {
                        ok = probe_one(v, svc ? svc_host : host, svc ? svc_port : port,
                                       svc && svc->wrapper, c, e, deadline, part, sizeof(part), one,
                                       sizeof(one));
                }
                if (!svc && one[0] && o < served_size)
                        o += (size_t)snprintf(served + o, served_size - o, "%s%s", o ? "," : "",
                                              one);
                /* the failure alone, or every success joined by "; " */
                size_t d = ok ? strlen(detail) : 0;
                if (d > 0 && d + 2 < size) {
                        memcpy(detail + d, "; ", 3);
                        d += 2;
                }
                strcpy_bounded(detail + d, size - d, part);
        }
        return ok;
}

/* Ends the check in progress: its pause between attempts (stop_probe) and the waits of the
 * handshake under way (the thread's cancel descriptor, probe_conn.h). Under the lock. */
static void end_check(struct verifier *v)
{
        uint64_t one = 1;
        stop_event_set(&v->stop_probe);
        if (write(v->cancel_fd, &one, sizeof(one)) < 0)
                log_errno(LOG_DEBUG, -errno, "verifier: cannot cancel the check in progress");
}

/* Hands the jobs of a check stopped by a newer one to the newer one (in front: older). Under
 * the lock. */
static void carry_jobs(struct verifier *v, const struct check *stopped)
{
        size_t keep = stopped->n < MAX_IDS ? stopped->n : MAX_IDS;
        size_t tail = v->next.n < MAX_IDS - keep ? v->next.n : MAX_IDS - keep;
        memmove(v->next.ids + keep, v->next.ids, tail * sizeof(v->next.ids[0]));
        memcpy(v->next.ids, stopped->ids, keep * sizeof(stopped->ids[0]));
        v->next.n = keep + tail;
}

static void *verifier_main(void *arg)
{
        struct verifier *v = arg;
        char host[256];
        unsigned port = 0;
        bool addr_ok =
            split_address(v->cfg->smtp_probe_address, NULL, false, host, sizeof(host), &port) >= 0;
        probe_set_cancel_fd(v->cancel_fd);

        pthread_mutex_lock(&v->lock);
        for (;;) {
                while (!v->has_check && !v->stopping)
                        pthread_cond_wait(&v->cond, &v->lock);
                if (v->stopping)
                        break;
                struct check c = v->next;
                v->has_check = false;
                v->checking = true;
                /* both set only while stopping or superseded */
                stop_event_clear(&v->stop_probe);
                uint64_t n;
                while (read(v->cancel_fd, &n, sizeof(n)) > 0)
                        ;
                snprintf(v->state, sizeof(v->state), "checking");
                changes_bump();
                pthread_mutex_unlock(&v->lock);

                char detail[1024] = "", served[sizeof(v->served)] = "";
                bool ok = false;
                if (!c.settle || stop_event_wait(&v->stop_probe, VERIFY_SETTLE_USEC) == 0)
                        ok = addr_ok && probe_all(v, host, port, &c, detail, sizeof(detail), served,
                                                  sizeof(served));

                pthread_mutex_lock(&v->lock);
                v->checking = false;
                if (v->stopping)
                        break;
                if (v->has_check) {
                        /* what it found is about files no longer live: nothing is recorded */
                        carry_jobs(v, &c);
                        continue;
                }
                pthread_mutex_unlock(&v->lock);

                if (!addr_ok)
                        snprintf(detail, sizeof(detail), "smtp_probe_address '%s' is not host:port",
                                 v->cfg->smtp_probe_address);
                if (!ok)
                        log_warning("verification failed: %s", detail);
                record(v->cfg, &c, ok, served);

                pthread_mutex_lock(&v->lock);
                if (v->has_check)
                        continue; /* a newer check came meanwhile: its outcome is the one shown */
                snprintf(v->state, sizeof(v->state), "%s", ok ? "verified" : "failed");
                v->matches = ok ? 1 : 0;
                snprintf(v->served, sizeof(v->served), "%s", served);
                snprintf(v->detail, sizeof(v->detail), "%s", detail);
                changes_bump(); /* /status shows it, and the job's verified */
        }
        pthread_mutex_unlock(&v->lock);
        return NULL;
}

int verifier_start(const struct config *cfg, struct verifier **ret)
{
        struct verifier *v = calloc(1, sizeof(*v));
        if (!v)
                return -ENOMEM;
        v->cfg = cfg;
        v->matches = -1;
        snprintf(v->state, sizeof(v->state), "idle");
        pthread_mutex_init(&v->lock, NULL);
        pthread_cond_init(&v->cond, NULL);
        int r = stop_event_init(&v->stop_probe);
        v->cancel_fd = r >= 0 ? eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC) : -1;
        if (r >= 0 && v->cancel_fd < 0)
                r = -errno;
        if (r >= 0)
                r = -pthread_create(&v->thread, NULL, verifier_main, v);
        if (r < 0) {
                if (v->cancel_fd >= 0)
                        close(v->cancel_fd);
                stop_event_destroy(&v->stop_probe);
                pthread_cond_destroy(&v->cond);
                pthread_mutex_destroy(&v->lock);
                free(v);
                return r;
        }
        *ret = v;
        return 0;
}

void verifier_stop(struct verifier *v)
{
        if (!v)
                return;
        pthread_mutex_lock(&v->lock);
        v->stopping = true;
        end_check(v);
        pthread_cond_signal(&v->cond);
        pthread_mutex_unlock(&v->lock);
        pthread_join(v->thread, NULL);
        close(v->cancel_fd);
        stop_event_destroy(&v->stop_probe);
        pthread_cond_destroy(&v->cond);
        pthread_mutex_destroy(&v->lock);
        free(v);
}

void verifier_submit(struct verifier *v, const int64_t *job_ids, size_t n, bool expect_starttls,
                     const struct verifier_expect *expect, size_t n_expect,
                     const struct verifier_service *services, size_t n_services, bool settle)
{
        pthread_mutex_lock(&v->lock);
        /* Jobs of a check that never started are verified by this newer one. */
        size_t keep = v->has_check ? v->next.n : 0;
        for (size_t i = 0; i < n && keep < MAX_IDS; i++)
                v->next.ids[keep++] = job_ids[i];
        v->next.n = keep;
        v->next.expect_starttls = expect_starttls;
        v->next.settle = settle;
        v->next.n_expect = 0;
        for (size_t i = 0; i < n_expect && i < VERIFIER_EXPECT_MAX; i++)
                v->next.expect[v->next.n_expect++] = expect[i];
        v->next.n_services = 0;
        for (size_t i = 0; i < n_services && i < VERIFIER_SERVICES_MAX; i++)
                v->next.services[v->next.n_services++] = services[i];
        v->has_check = true;
        if (v->checking)
                end_check(v); /* the check in progress is superseded */
        v->matches = -1;
        snprintf(v->state, sizeof(v->state), "checking");
        changes_bump();
        pthread_cond_signal(&v->cond);
        pthread_mutex_unlock(&v->lock);
}

void verifier_served(struct verifier *v, char *buf, size_t size)
{
        pthread_mutex_lock(&v->lock);
        snprintf(buf, size, "%s", v->served);
        pthread_mutex_unlock(&v->lock);
}

json_t *verifier_status(struct verifier *v)
{
        json_t *served = json_array();
        pthread_mutex_lock(&v->lock);
        /* what smtpd served at the last check: v->served is ','-joined (no ',' in a fingerprint) */
        for (const char *p = v->served; *p;) {
                size_t n = strcspn(p, ",");
                json_array_append_new(served, json_stringn(p, n));
                p += n + (p[n] == ',');
        }
        json_t *j =
            json_pack("{s:s, s:o, s:s, s:o}", "state", v->state, "served_fingerprint_matches",
                      v->matches < 0 ? json_null() : json_boolean(v->matches), "detail", v->detail,
                      "served_fingerprints", served);
        pthread_mutex_unlock(&v->lock);
        return j;
}
