/* mastercf.c - the submission services in master.cf (see mastercf.h): postconf edits on a copy,
 * read back. Worker thread and start-up. */
#include "apply/mastercf.h"

#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>

#include "apply/fsutil.h"
#include "apply/layout.h"
#include "apply/postfix.h"
#include "conf.h"
#include "core/submission.h"
#include "util.h"

int mastercf_port_number(const char *port, unsigned *ret)
{
        int64_t v;
        if (parse_int64(port, 1, 65535, &v) >= 0) {
                *ret = (unsigned)v;
                return 0;
        }
        struct servent se, *found = NULL;
        char buf[1024];
        if (getservbyname_r(port, "tcp", &se, buf, sizeof(buf), &found) != 0 || !found)
                return -ENOENT;
        *ret = ntohs((uint16_t)found->s_port);
        return 0;
}

/* Whether two inet services bind the same port on an overlapping address (no host: every
 * address). An unknown port is compared by its name. */
static bool services_overlap(const char *a, const char *b)
{
        char host_a[SUBMISSION_SERVICE_MAX + 1], port_a[SUBMISSION_SERVICE_MAX + 1];
        char host_b[SUBMISSION_SERVICE_MAX + 1], port_b[SUBMISSION_SERVICE_MAX + 1];
        if (strlen(a) > SUBMISSION_SERVICE_MAX || strlen(b) > SUBMISSION_SERVICE_MAX)
                return false; /* not a name settings take: not ours to judge */
        submission_service_split(a, host_a, port_a);
        submission_service_split(b, host_b, port_b);
        unsigned na = 0, nb = 0;
        (void)mastercf_port_number(port_a, &na);
        (void)mastercf_port_number(port_b, &nb);
        bool same_port = na && nb ? na == nb : streq(port_a, port_b);
        return same_port && (!host_a[0] || !host_b[0] || strcasecmp(host_a, host_b) == 0);
}

struct service_ctx {
        const struct config *cfg;
        const char *dir;
        const char *listing; /* postconf -M: every entry, one a line */
        enum submission_kind kind;
        const struct submission_service *svc;
        char field[48]; /* /submission/service */
};

static int run_postconf(const struct service_ctx *c, const char *const *args, char **output,
                        struct problem *reterr)
{
        struct spawn_result res = { 0 };
        int r = postconf_in(c->cfg, c->dir, args, &res);
        if (r < 0)
                problem_set(reterr, PROBLEM_POSTFIX_REJECTED, c->field, "postconf %s %s failed: %s",
                            args[0], args[1] ? args[1] : "",
                            res.errors && res.errors[0] ? res.errors
                            : res.output                ? res.output
                                                        : strerror(-r));
        else if (output)
                *output = TAKE_PTR(res.output);
        spawn_result_done(&res);
        return r;
}

/* The entry named c->svc->service (type inet) into e; -ENOENT when master.cf has none. Refuses a
 * conflict: that entry running another command, another entry on the same port (enabling). */
static int find_entry(const struct service_ctx *c, struct master_entry *e, char chroot[8],
                      struct problem *reterr)
{
        int r = -ENOENT;
        snprintf(chroot, 8, "n");
        bool chroot_found = false;
        for (const char *line = c->listing; line && *line;) {
                struct master_entry cur;
                size_t len = strcspn(line, "\n");
                bool parsed = master_entry_parse(line, &cur) >= 0;
                line += len + (line[len] == '\n');
                if (!parsed || !streq(cur.field[ME_TYPE], "inet"))
                        continue;
                /* a new entry takes the chroot column of the MX's smtpd (Debian chroots it) */
                if (!chroot_found && streq(cur.field[ME_COMMAND], "smtpd") &&
                    strlen(cur.field[ME_CHROOT]) < 8) {
                        snprintf(chroot, 8, "%s", cur.field[ME_CHROOT]);
                        chroot_found = true;
                }
                if (streq(cur.field[ME_SERVICE], c->svc->service)) {
                        if (!streq(cur.field[ME_COMMAND], "smtpd"))
                                return problem_set(reterr, PROBLEM_SERVICE_CONFLICT, c->field,
                                                   "master.cf's service %s/inet runs %s, not "
                                                   "smtpd: it is not a submission service; name "
                                                   "another",
                                                   c->svc->service, cur.field[ME_COMMAND]);
                        *e = cur;
                        r = 0;
                } else if (c->svc->enabled &&
                           services_overlap(cur.field[ME_SERVICE], c->svc->service)) {
                        return problem_set(reterr, PROBLEM_SERVICE_CONFLICT, c->field,
                                           "master.cf's service %s/inet (%s) binds the port of "
                                           "%s: Postfix's master could not bind both; name a "
                                           "free port, or disable that service",
                                           cur.field[ME_SERVICE], cur.field[ME_COMMAND],
                                           c->svc->service);
                }
        }
        return r;
}

static int enable_service(const struct service_ctx *c, bool exists, const char *chroot,
                          struct problem *reterr)
{
        const char *name = c->svc->service;
        char spec[SUBMISSION_SERVICE_MAX + 16], entry[SUBMISSION_SERVICE_MAX + 64];
        char assign[SUBMISSION_SERVICE_MAX + 96];
        snprintf(spec, sizeof(spec), "%s/inet", name);
        int r;
        if (!exists) {
                if (submission_entry(name, chroot, entry, sizeof(entry)) < 0 ||
                    snprintf(assign, sizeof(assign), "%s=%s", spec, entry) >= (int)sizeof(assign))
                        return problem_set(reterr, PROBLEM_INVALID_VALUE, c->field,
                                           "service name too long");
                const char *const args[] = { "-M", assign, NULL };
                r = run_postconf(c, args, NULL, reterr);
                if (r < 0)
                        return r;
        }
        const char *args[8] = { "-P" };
        char params[6][SUBMISSION_SERVICE_MAX + 96];
        size_t n = 1;
        for (const struct submission_param *p = submission_params(c->kind);
             p->name && n <= ARRAY_SIZE(params); p++, n++) {
                snprintf(params[n - 1], sizeof(params[0]), "%s/%s=%s", spec, p->name, p->value);
                args[n] = params[n - 1];
        }
        args[n] = NULL;
        r = run_postconf(c, args, NULL, reterr);
        if (r < 0)
                return r;
        /* read back: postconf -P only warns about a service it does not find */
        _cleanup_free_ char *now = NULL;
        const char *const read[] = { "-P", spec, NULL };
        char missing[128];
        r = run_postconf(c, read, &now, reterr);
        if (r >= 0 && !submission_params_present(name, c->kind, now, missing, sizeof(missing)))
                r = problem_set(reterr, PROBLEM_POSTFIX_REJECTED, c->field,
                                "postconf -P did not set %s on master.cf's %s (it reads: %s)",
                                missing, spec, now && now[0] ? now : "nothing");
        return r;
}

static int disable_service(const struct service_ctx *c, struct problem *reterr)
{
        char spec[SUBMISSION_SERVICE_MAX + 16];
        snprintf(spec, sizeof(spec), "%s/inet", c->svc->service);
        const char *const args[] = { "-M#", spec, NULL };
        int r = run_postconf(c, args, NULL, reterr);
        _cleanup_free_ char *now = NULL;
        const char *const read[] = { "-M", spec, NULL };
        if (r >= 0)
                r = run_postconf(c, read, &now, reterr);
        if (r >= 0 && now && now[0])
                r = problem_set(reterr, PROBLEM_POSTFIX_REJECTED, c->field,
                                "postconf -M# left master.cf's %s in place: %s", spec, now);
        return r;
}

static int edit_one(struct service_ctx *c, struct plan *p, struct problem *reterr)
{
        struct master_entry e;
        char chroot[8];
        /* the MX's smtpd (the address smtptlsd checks after a reload) is never a submission
         * service, enabled or commented out: its name in master.cf may be anything */
        if (services_overlap(c->cfg->smtp_probe_address, c->svc->service))
                return problem_set(reterr, PROBLEM_SERVICE_CONFLICT, c->field,
                                   "%s binds the port of the MX's smtpd (smtp_probe_address %s): "
                                   "a submission service needs a port of its own",
                                   c->svc->service, c->cfg->smtp_probe_address);
        int r = find_entry(c, &e, chroot, reterr);
        if (r < 0 && r != -ENOENT)
                return r;
        bool exists = r == 0;
        if (c->svc->enabled) {
                r = enable_service(c, exists, chroot, reterr);
                if (r < 0)
                        return r;
                struct plan_service *ps = &p->services[p->n_services++];
                ps->kind = c->kind;
                snprintf(ps->service, sizeof(ps->service), "%s", c->svc->service);
                return 0;
        }
        return exists ? disable_service(c, reterr) : 0;
}

int mastercf_plan(const struct config *cfg, const struct settings *s, struct plan *p,
                  struct problem *reterr)
{
        bool any = false;
        for (int k = 0; k < SUBMISSION_KINDS; k++)
                any = any || (s->managed && s->services[k].managed);
        if (!any)
                return 0;
        char dir[PATH_MAX] = "", path[PATH_MAX], live[PATH_MAX];
        int r = layout_master_cf(cfg, live, sizeof(live));
        if (r >= 0)
                r = fs_read_file(live, LAYOUT_MAIN_CF_MAX, &p->master_cf_old, &p->master_old_len);
        /* postconf reads main.cf beside master.cf: the one this plan makes */
        if (r >= 0)
                r = postfix_scratch_dir(cfg, "master.check",
                                        p->main_cf_new ? p->main_cf_new : p->main_cf_old,
                                        p->main_cf_new ? p->new_len : p->old_len, p->master_cf_old,
                                        p->master_old_len, dir, sizeof(dir));
        if (r >= 0)
                r = layout_join(dir, "master.cf", path, sizeof(path));
        if (r < 0) {
                if (dir[0])
                        fs_remove_tree(dir);
                return problem_set(reterr, PROBLEM_INTERNAL_ERROR, NULL,
                                   "cannot stage master.cf: %s", strerror(-r));
        }
        _cleanup_free_ char *listing = NULL;
        struct service_ctx c = { .cfg = cfg, .dir = dir };
        snprintf(c.field, sizeof(c.field), "/submission/service");
        const char *const list[] = { "-M", NULL };
        r = run_postconf(&c, list, &listing, reterr);
        for (int k = 0; r >= 0 && k < SUBMISSION_KINDS; k++) {
                if (!s->services[k].managed)
                        continue;
                c.kind = (enum submission_kind)k;
                c.svc = &s->services[k];
                c.listing = listing;
                snprintf(c.field, sizeof(c.field), "/%s/service",
                         submission_kind_name((enum submission_kind)k));
                r = edit_one(&c, p, reterr);
                if (r >= 0 && k + 1 < SUBMISSION_KINDS) {
                        /* the next service sees this one's entry */
                        free(listing);
                        listing = NULL;
                        r = run_postconf(&c, list, &listing, reterr);
                }
        }
        if (r >= 0)
                r = fs_read_file(path, LAYOUT_MAIN_CF_MAX, &p->master_cf_new, &p->master_new_len);
        fs_remove_tree(dir);
        if (r < 0)
                return reterr && reterr->code
                           ? r
                           : problem_set(reterr, PROBLEM_INTERNAL_ERROR, NULL,
                                         "cannot read the staged master.cf: %s", strerror(-r));
        p->master_cf_changed = p->master_new_len != p->master_old_len ||
                               memcmp(p->master_cf_new, p->master_cf_old, p->master_new_len) != 0;
        p->reload = p->reload || p->master_cf_changed;
        return 0;
}
