/* submission.c - the submission services' master.cf forms (see submission.h). Pure; any
 * thread. */
#include "core/submission.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

/* RFC 6409 / RFC 8314 as Postfix's own master.cf examples write them: STARTTLS required and
 * AUTH only over TLS on submission, TLS from the first byte on submissions; SASL on for both. */
static const struct submission_param starttls_params[] = {
        { "syslog_name", "postfix/submission" },
        { "smtpd_tls_security_level", "encrypt" },
        { "smtpd_tls_auth_only", "yes" },
        { "smtpd_sasl_auth_enable", "yes" },
        { NULL, NULL },
};
static const struct submission_param implicit_params[] = {
        { "syslog_name", "postfix/submissions" },
        { "smtpd_tls_wrappermode", "yes" },
        { "smtpd_sasl_auth_enable", "yes" },
        { NULL, NULL },
};

const struct submission_param *submission_params(enum submission_kind k)
{
        return k == SUBMISSION_IMPLICIT ? implicit_params : starttls_params;
}

void master_entry_done(struct master_entry *e)
{
        free(e->buf);
        *e = (struct master_entry){ 0 };
}

int master_entry_parse(const char *line, struct master_entry *e)
{
        *e = (struct master_entry){ 0 };
        e->buf = strndup(line, strcspn(line, "\n"));
        if (!e->buf)
                return -ENOMEM;
        size_t n = 0;
        char *save = NULL;
        for (char *f = strtok_r(e->buf, " \t", &save); f && n < ARRAY_SIZE(e->field);
             f = strtok_r(NULL, " \t", &save))
                e->field[n++] = f;
        return n == ARRAY_SIZE(e->field) ? 0 : -EINVAL;
}

void submission_service_split(const char *service, char *host, size_t host_size, char *port,
                              size_t port_size)
{
        const char *colon = strrchr(service, ':');
        if (colon && service[0] == '[' && (colon == service || colon[-1] != ']'))
                colon = NULL; /* "[::1]" alone: no port (refused before it gets here) */
        if (!colon) {
                host[0] = 0;
                snprintf(port, port_size, "%s", service);
                return;
        }
        snprintf(host, host_size, "%.*s", (int)(colon - service), service);
        snprintf(port, port_size, "%s", colon + 1);
}

int submission_entry(const char *service, const char *chroot, char *buf, size_t size)
{
        int w = snprintf(buf, size, "%s inet n - %s - - smtpd", service, chroot);
        return w < 0 || (size_t)w >= size ? -ENAMETOOLONG : 0;
}

bool submission_params_present(const char *service, enum submission_kind k, const char *params,
                               char *missing, size_t size)
{
        char want[SUBMISSION_SERVICE_MAX + 256];
        for (const struct submission_param *p = submission_params(k); p->name; p++) {
                bool found = false;
                int w = snprintf(want, sizeof(want), "%s/inet/%s = %s", service, p->name, p->value);
                size_t n = w > 0 ? (size_t)w : 0;
                for (const char *line = params; line && *line && !found;) {
                        size_t len = strcspn(line, "\n");
                        found = len == n && memcmp(line, want, n) == 0;
                        line += len + (line[len] == '\n');
                }
                if (!found) {
                        snprintf(missing, size, "%s=%s", p->name, p->value);
                        return false;
                }
        }
        if (size)
                missing[0] = 0;
        return true;
}
