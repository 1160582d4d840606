/* managed.c - the table of managed main.cf parameters and its look-ups (see managed.h). Pure,
 * constant; any thread. */
#include "core/managed.h"

#include <stdbool.h>
#include <string.h>

#include "util.h"

#define LEGACY (MANAGED_RELOAD | MANAGED_LEGACY)

const struct managed_param managed_params[] = {
        { "smtpd_tls_security_level", MANAGED_INBOUND_LEVEL, MANAGED_RELOAD },
        { "smtp_tls_security_level", MANAGED_OUTBOUND_LEVEL, MANAGED_RELOAD },
        { "smtpd_tls_chain_files", MANAGED_CHAIN_FILES,
          MANAGED_RELOAD | MANAGED_CERT_FILES | MANAGED_KEY_FILE },
        /* the legacy pairs (settings_legacy_pairs): RSA first, always removed */
        { "smtpd_tls_cert_file", MANAGED_POSTFIX_DEFAULT, LEGACY | MANAGED_CERT_FILES },
        { "smtpd_tls_key_file", MANAGED_POSTFIX_DEFAULT, LEGACY | MANAGED_KEY_FILE },
        { "smtpd_tls_eccert_file", MANAGED_POSTFIX_DEFAULT,
          LEGACY | MANAGED_WITH_CHAIN | MANAGED_CERT_FILES },
        { "smtpd_tls_eckey_file", MANAGED_POSTFIX_DEFAULT,
          LEGACY | MANAGED_WITH_CHAIN | MANAGED_KEY_FILE },
        { "smtpd_tls_dcert_file", MANAGED_POSTFIX_DEFAULT,
          LEGACY | MANAGED_WITH_CHAIN | MANAGED_CERT_FILES },
        { "smtpd_tls_dkey_file", MANAGED_POSTFIX_DEFAULT,
          LEGACY | MANAGED_WITH_CHAIN | MANAGED_KEY_FILE },
        { "smtpd_tls_auth_only", MANAGED_AUTH_ONLY, MANAGED_RELOAD },
        { "smtpd_tls_received_header", MANAGED_RECEIVED_HEADER, MANAGED_RELOAD },
        { "smtpd_tls_loglevel", MANAGED_LOGLEVEL, MANAGED_RELOAD },
        { "smtp_tls_loglevel", MANAGED_LOGLEVEL, MANAGED_RELOAD },
        /* opportunistic TLS: Postfix's defaults in every profile (settings.c, profiles[]) */
        { "smtpd_tls_protocols", MANAGED_POSTFIX_DEFAULT, MANAGED_RELOAD },
        { "smtp_tls_protocols", MANAGED_POSTFIX_DEFAULT, MANAGED_RELOAD },
        { "smtpd_tls_exclude_ciphers", MANAGED_POSTFIX_DEFAULT, MANAGED_RELOAD },
        { "smtp_tls_exclude_ciphers", MANAGED_POSTFIX_DEFAULT, MANAGED_RELOAD },
        { "smtpd_tls_mandatory_protocols", MANAGED_MANDATORY_PROTOCOLS, MANAGED_RELOAD },
        { "smtp_tls_mandatory_protocols", MANAGED_MANDATORY_PROTOCOLS, MANAGED_RELOAD },
        { "smtpd_tls_mandatory_ciphers", MANAGED_MANDATORY_CIPHERS, MANAGED_RELOAD },
        { "smtp_tls_mandatory_ciphers", MANAGED_MANDATORY_CIPHERS, MANAGED_RELOAD },
        { "smtpd_tls_mandatory_exclude_ciphers", MANAGED_MANDATORY_EXCLUDE, MANAGED_RELOAD },
        { "smtp_tls_mandatory_exclude_ciphers", MANAGED_MANDATORY_EXCLUDE, MANAGED_RELOAD },
        { "smtp_tls_CAfile", MANAGED_CA_FILE, MANAGED_RELOAD | MANAGED_CA },
        { "smtp_tls_policy_maps", MANAGED_POLICY_MAPS, MANAGED_RELOAD },
        { NULL, 0, 0 },
};

const struct managed_param *managed_param_find(const char *name)
{
        for (const struct managed_param *m = managed_params; m->name; m++)
                if (streq(m->name, name))
                        return m;
        return NULL;
}

bool managed_param_has(const char *name, size_t name_len, unsigned flags)
{
        for (const struct managed_param *m = managed_params; m->name; m++)
                if (strlen(m->name) == name_len && strncmp(m->name, name, name_len) == 0)
                        return (m->flags & flags) == flags;
        return false;
}

size_t managed_checked_names(const char *out[MANAGED_PARAMS_MAX + 1])
{
        size_t n = 0;
        for (const struct managed_param *m = managed_params; m->name && n < MANAGED_PARAMS_MAX; m++)
                if (!(m->flags & MANAGED_LEGACY))
                        out[n++] = m->name;
        out[n] = NULL;
        return n;
}
