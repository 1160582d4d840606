/* settings.h - the global TLS settings: modes, the bound certificate's name, the protocol/cipher
 * profile; their JSON form and validation (table-driven), and the main.cf parameters they render
 * to. Pure; HTTP threads validate, the worker renders. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/maincf_param.h"
#include "core/managed.h"
#include "core/problem.h"

enum tls_mode {
        MODE_UNSET = -1, /* for inbound_mode/outbound_mode: follow mode */
        MODE_NONE = 0,
        MODE_MAY,
        MODE_ENCRYPT,
};

enum tls_profile {
        PROFILE_MODERN,
        PROFILE_INTERMEDIATE,
        PROFILE_LEGACY,
};

/* The client-facing services in master.cf that settings may manage: submission (STARTTLS
 * required, RFC 6409, port 587) and submissions (implicit TLS, RFC 8314, port 465). */
enum submission_kind {
        SUBMISSION_STARTTLS,
        SUBMISSION_IMPLICIT,
        SUBMISSION_KINDS,
};
/* A master.cf service name: [host:]port, at most this many bytes. */
#define SUBMISSION_SERVICE_MAX 64
struct submission_service {
        bool managed; /* false (null in JSON): master.cf's entry is the administrator's alone */
        bool enabled;
        char service[SUBMISSION_SERVICE_MAX + 1]; /* "submission", "127.0.0.1:10587" */
};
/* The JSON member and the default service name of each kind: "submission", "submissions". */
const char *submission_kind_name(enum submission_kind k);
/* Whether s is a master.cf inet service name settings take: [host:]port, the host an IPv4
 * address, a bracketed IPv6 address or a host name, the port a number (1-65535) or a service
 * name of /etc/services ([a-z][a-z0-9-]{0,31}); not the MX's port (smtp, 25). */
bool submission_service_is_valid(const char *s);

/* outbound_ca: "system" (the system's CA bundle, config system_ca_file) or an absolute path. */
#define OUTBOUND_CA_SYSTEM "system"
#define OUTBOUND_CA_MAX    1024

struct settings {
        bool managed;
        enum tls_mode mode, inbound_mode, outbound_mode;
        char certificate[65]; /* "" = none bound */
        /* a second certificate of another key type (RSA beside ECDSA); "" = none. Needs
         * certificate; Postfix serves the one the client's signature algorithms support */
        char additional_certificate[65];
        enum tls_profile profile;
        bool auth_only;
        bool received_header;
        int loglevel;
        char outbound_ca[OUTBOUND_CA_MAX + 1]; /* rendered as smtp_tls_CAfile */
        struct submission_service services[SUBMISSION_KINDS];
        int64_t generation;
        char updated_at[32];
};

const char *tls_mode_to_string(enum tls_mode m);
int tls_mode_from_string(const char *s, enum tls_mode *ret); /* "" is none */
const char *tls_profile_to_string(enum tls_profile p);
int tls_profile_from_string(const char *s, enum tls_profile *ret);

void settings_defaults(struct settings *s);
enum tls_mode settings_inbound(const struct settings *s);
enum tls_mode settings_outbound(const struct settings *s);

/* Applies a PUT (replace: missing fields take their defaults) or PATCH (merge) body onto *s.
 * Refuses unknown fields, bad values, and a non-none inbound level without a certificate. The
 * certificate's existence and usability are the worker's to check. Read-only members
 * (generation, updated_at, managed) must equal *s's, the current settings. */
int settings_apply_json(struct settings *s, json_t *body, bool patch, struct problem *reterr);
json_t *settings_to_json(const struct settings *s);
/* The settings as desired state (/api/v1/state): settings_to_json without what the daemon keeps
 * (generation, updated_at); managed stays (whether smtptlsd has taken over main.cf). */
json_t *settings_desired_json(const struct settings *s);

/* Appends the warnings that s (managed) earns as state, for a write's reply, its dry run and
 * /status: legal combinations that are likely wrong, each naming its field. sasl_auth_enabled:
 * the administrator's smtpd_sasl_auth_enable is yes (auth_only matters only then). */
void settings_state_warnings(const struct settings *s, bool sasl_auth_enabled, json_t *warnings);

/* Refuses (422 certificate_required, field /certificate) settings without a bound certificate
 * while a master.cf service needs main.cf's: one that sets `-o smtpd_tls_security_level=encrypt`
 * (a submission service; or the obsolete smtpd_enforce_tls = yes) or smtpd_tls_wrappermode = yes
 * (smtps) without a certificate of its own (smtpd_tls_chain_files, _cert_file, _eccert_file,
 * _dcert_file): with none it could not do TLS and would refuse every client. service_params:
 * `postconf -P` output ("service/type/name = value" lines), NULL when unknown. */
int settings_check_services(const struct settings *s, const char *service_params,
                            struct problem *reterr);

/* Whether s is a path outbound_ca takes: absolute, at most OUTBOUND_CA_MAX bytes of
 * [A-Za-z0-9._+@/-], no empty, "." or ".." component, no trailing '/' (nothing Postfix would
 * expand, split or read as a second line). */
bool outbound_ca_path_is_valid(const char *s);

/* Where a bound certificate's files are, for rendering. */
struct cert_files {
        const char *key;
        const char *chain;
};
/* At most this many bound certificates: certificate and additional_certificate. */
#define SETTINGS_CERTS_MAX 2

#define SETTINGS_PARAMS_MAX MANAGED_PARAMS_MAX
/* The managed main.cf parameters for s (the rows of managed_params, in their order, but
 * smtp_tls_policy_maps: the plan's), with the files of the n_certs bound certificates
 * (certificate first) in smtpd_tls_chain_files and ca_file as smtp_tls_CAfile: the file
 * outbound_ca names (system_ca_file for "system"), NULL when it cannot be read (a CAfile
 * Postfix cannot load disables TLS in its smtp client altogether). With s->managed false
 * there are none: smtptlsd leaves main.cf alone until the first settings write. Returns how
 * many were written to out. */
size_t settings_render(const struct settings *s, const struct cert_files *certs, size_t n_certs,
                       const char *ca_file, char *chain_buf, size_t chain_buf_size,
                       struct maincf_param out[SETTINGS_PARAMS_MAX]);
/* The legacy certificate parameters that Postfix ignores once smtpd_tls_chain_files is set, as
 * {certificate file, its key file, the key type it is for}; the key file defaults to the
 * certificate file. NULL-terminated. */
struct settings_legacy_pair {
        const char *cert_param, *key_param, *key_type;
};
extern const struct settings_legacy_pair settings_legacy_pairs[];
