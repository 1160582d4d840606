/* managed.h - the one table of the main.cf parameters smtptlsd manages: each row names a
 * parameter, what the settings render into it, and what a change of it needs (flags), the way
 * Knot's schema items carry theirs. settings_render writes the rows in table order; the plan adds
 * smtp_tls_policy_maps; the apply has postconf check the rows it sets; the master.cf service check
 * reads which rows name certificate files. Pure, constant; any thread. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

/* What the settings render into a row (settings_render fills one value of each). */
enum managed_source {
        MANAGED_INBOUND_LEVEL,       /* tls_mode of settings_inbound */
        MANAGED_OUTBOUND_LEVEL,      /* tls_mode of settings_outbound */
        MANAGED_CHAIN_FILES,         /* "key, chain[, key, chain]" of the bound certificates */
        MANAGED_AUTH_ONLY,           /* yes/no */
        MANAGED_RECEIVED_HEADER,     /* yes/no */
        MANAGED_LOGLEVEL,            /* 0..4 */
        MANAGED_MANDATORY_PROTOCOLS, /* the profile's */
        MANAGED_MANDATORY_CIPHERS,   /* the profile's */
        MANAGED_MANDATORY_EXCLUDE,   /* the profile's */
        MANAGED_CA_FILE,             /* the file outbound_ca names, when readable */
        MANAGED_POSTFIX_DEFAULT,     /* always removed: Postfix's default */
        MANAGED_POLICY_MAPS,         /* ours first, then the administrator's: the plan's */
        MANAGED_SOURCES_MAX
};

enum managed_flag {
        /* Postfix reads it at start or reload only: a change of it needs `postfix reload` (the
         * content of the policy map does not: Postfix notices a new indexed file by itself) */
        MANAGED_RELOAD = 1u << 0,
        /* its value names certificate files: a master.cf service that sets it has a certificate
         * of its own (settings_check_services) */
        MANAGED_CERT_FILES = 1u << 1,
        /* its value names a private key file */
        MANAGED_KEY_FILE = 1u << 2,
        /* a legacy certificate parameter Postfix ignores beside smtpd_tls_chain_files: only ever
         * removed, and not checked by postconf (its warnings are the administrator's) */
        MANAGED_LEGACY = 1u << 3,
        /* removed only while smtpd_tls_chain_files is set (else left as the administrator has it:
         * the RSA pair goes in any case, Debian's default points it at the snakeoil pair) */
        MANAGED_WITH_CHAIN = 1u << 4,
        /* names a file the smtp client reads before it enters a chroot jail */
        MANAGED_CA = 1u << 5,
};

struct managed_param {
        const char *name;
        enum managed_source source;
        unsigned flags;
};

/* The rows, in the order settings_render writes them (smtp_tls_policy_maps, the plan's, last);
 * terminated by a row whose name is NULL. */
extern const struct managed_param managed_params[];
#define MANAGED_PARAMS_MAX 32

/* The row of a parameter, NULL when smtptlsd does not manage it. */
const struct managed_param *managed_param_find(const char *name);
/* Whether name is a managed parameter with every flag of flags; its length is name_len (a name
 * inside a longer line). */
bool managed_param_has(const char *name, size_t name_len, unsigned flags);
/* The names of the rows that postconf must not warn about (every row but the legacy ones),
 * NULL-terminated, into out[MANAGED_PARAMS_MAX + 1]. Returns how many. */
size_t managed_checked_names(const char *out[MANAGED_PARAMS_MAX + 1]);
