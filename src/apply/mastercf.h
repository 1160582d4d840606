/* mastercf.h - the submission services settings manage, in master.cf: their edits made by
 * `postconf -M`/`-P`/`-M#` on a copy (never by editing the text), read back and compared, giving
 * the plan's new master.cf. Worker thread and start-up. */
#pragma once

#include "apply/plan.h"
#include "core/problem.h"

struct config;

/* With settings s managed and a submission service managed in them: copies main.cf (the plan's
 * new one) and the live master.cf into a scratch directory, makes each service what s says there
 * (enabled: the entry, created when missing with the chroot column of the MX's smtpd, and the
 * -o parameters of core/submission.h; disabled: the entry commented out), reads every edit back
 * (postconf -P only warns about a service it does not find), and sets p->master_cf_old/new,
 * master_cf_changed (then p->reload too) and p->services. Refuses with service_conflict (field
 * /submission/service or /submissions/service) the MX's port (smtp_probe_address's), a name
 * whose entry runs another command than smtpd, or whose port another inet service of master.cf
 * binds on an overlapping address. */
/* A master.cf port's number: decimal (1-65535), or a services(5) name for tcp (-ENOENT when
 * there is no such service). */
int mastercf_port_number(const char *port, unsigned *ret);

int mastercf_plan(const struct config *cfg, const struct settings *s, struct plan *p,
                  struct problem *reterr);
