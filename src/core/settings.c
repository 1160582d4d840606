/* settings.c - the settings resource's rules and its rendering into main.cf parameters (see
 * settings.h). Pure; any thread. */
#include "core/settings.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "core/json_spec.h"
#include "core/managed.h"
#include "core/name_code.h"
#include "core/names.h"

static const struct name_code mode_names[] = {
        { "none", MODE_NONE },
        { "may", MODE_MAY },
        { "encrypt", MODE_ENCRYPT },
};
static const struct name_code profile_names[] = {
        { "modern", PROFILE_MODERN },
        { "intermediate", PROFILE_INTERMEDIATE },
        { "legacy", PROFILE_LEGACY },
};
/* The JSON fields' choices (json_spec.h): the names above, and "" for none. */
static const char *const modes_with_empty[] = { "none", "may", "encrypt", "", NULL };
static const char *const profile_choices[] = { "modern", "intermediate", "legacy", NULL };

const char *tls_mode_to_string(enum tls_mode m)
{
        return code_to_name(mode_names, ARRAY_SIZE(mode_names), (int)m);
}

int tls_mode_from_string(const char *s, enum tls_mode *ret)
{
        int m;
        if (isempty(s)) {
                *ret = MODE_NONE; /* the reference admin page's "" (Disabled) */
                return 0;
        }
        if (name_to_code(mode_names, ARRAY_SIZE(mode_names), s, &m) < 0)
                return -EINVAL;
        *ret = (enum tls_mode)m;
        return 0;
}

const char *tls_profile_to_string(enum tls_profile p)
{
        return code_to_name(profile_names, ARRAY_SIZE(profile_names), (int)p);
}

int tls_profile_from_string(const char *s, enum tls_profile *ret)
{
        int p;
        if (name_to_code(profile_names, ARRAY_SIZE(profile_names), s, &p) < 0)
                return -EINVAL;
        *ret = (enum tls_profile)p;
        return 0;
}

void settings_defaults(struct settings *s)
{
        int64_t gen = s->generation;
        *s = (struct settings){
                .mode = MODE_NONE,
                .inbound_mode = MODE_UNSET,
                .outbound_mode = MODE_UNSET,
                .profile = PROFILE_INTERMEDIATE,
                .auth_only = true,
                .received_header = false,
                .loglevel = 1,
                .outbound_ca = OUTBOUND_CA_SYSTEM,
                .generation = gen,
        };
}

enum tls_mode settings_inbound(const struct settings *s)
{
        return s->inbound_mode == MODE_UNSET ? s->mode : s->inbound_mode;
}

enum tls_mode settings_outbound(const struct settings *s)
{
        return s->outbound_mode == MODE_UNSET ? s->mode : s->outbound_mode;
}

struct settings_body {
        const char *mode;
        const char *inbound_mode;
        const char *outbound_mode;
        const char *certificate;
        const char *additional_certificate;
        const char *profile;
        bool auth_only;
        bool received_header;
        int64_t loglevel;
        const char *outbound_ca;
        json_t *services[SUBMISSION_KINDS];
        json_t *ignored;
};

static const char *const kind_names[SUBMISSION_KINDS] = {
        [SUBMISSION_STARTTLS] = "submission",
        [SUBMISSION_IMPLICIT] = "submissions",
};

const char *submission_kind_name(enum submission_kind k)
{
        return k < SUBMISSION_KINDS ? kind_names[k] : "";
}

static bool is_lower_alnum(char c)
{
        return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

/* A port: 1-65535 without a leading zero, or an /etc/services name [a-z][a-z0-9-]{0,31}. */
static bool port_is_valid(const char *p, size_t n)
{
        if (n == 0)
                return false;
        if (p[0] >= '0' && p[0] <= '9') {
                if (n > 5 || p[0] == '0')
                        return false;
                unsigned long v = 0;
                for (size_t i = 0; i < n; i++) {
                        if (p[i] < '0' || p[i] > '9')
                                return false;
                        v = v * 10 + (unsigned long)(p[i] - '0');
                }
                return v >= 1 && v <= 65535;
        }
        if (n > 32 || !(p[0] >= 'a' && p[0] <= 'z') || p[n - 1] == '-')
                return false;
        for (size_t i = 0; i < n; i++)
                if (!is_lower_alnum(p[i]) && p[i] != '-')
                        return false;
        return true;
}

/* A host: an IPv4 address (four decimal octets) or a bracketed IPv6 address ([0-9A-Fa-f:.], at
 * least one ':'): a literal, so that the worker can tell whether it is local (a name could
 * resolve elsewhere at every reload). */
static bool host_is_valid(const char *h, size_t n)
{
        if (n >= 2 && h[0] == '[') {
                if (h[n - 1] != ']' || n < 4)
                        return false;
                bool colon = false;
                for (size_t i = 1; i + 1 < n; i++) {
                        char c = h[i];
                        colon = colon || c == ':';
                        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
                              (c >= 'A' && c <= 'F') || c == ':' || c == '.'))
                                return false;
                }
                return colon;
        }
        unsigned octets = 0, value = 0, digits = 0;
        for (size_t i = 0; i <= n; i++) {
                if (i == n || h[i] == '.') {
                        if (digits == 0 || value > 255 || ++octets > 4)
                                return false;
                        value = digits = 0;
                        continue;
                }
                if (h[i] < '0' || h[i] > '9' || (digits == 1 && value == 0) || ++digits > 3)
                        return false;
                value = value * 10 + (unsigned)(h[i] - '0');
        }
        return octets == 4;
}

bool submission_service_is_valid(const char *s)
{
        size_t n = s ? strlen(s) : 0;
        if (n == 0 || n > SUBMISSION_SERVICE_MAX)
                return false;
        const char *colon = strrchr(s, ':');
        /* a bracketed IPv6 host has colons of its own: the port's is after the ']' */
        if (colon && s[0] == '[' && (colon == s || colon[-1] != ']'))
                return false;
        const char *port = colon ? colon + 1 : s;
        size_t port_len = n - (size_t)(port - s);
        if (colon && !host_is_valid(s, (size_t)(colon - s)))
                return false;
        if (!port_is_valid(port, port_len))
                return false;
        /* the MX's smtpd: submission belongs on a port of its own */
        return !(port_len == 4 && memcmp(port, "smtp", 4) == 0) &&
               !(port_len == 2 && memcmp(port, "25", 2) == 0);
}

struct service_body {
        bool enabled;
        const char *service;
};

static int check_service_name(const struct json_spec *spec, json_t *v, const char *field,
                              struct problem *reterr)
{
        const char *s = json_string_value(v);
        if (strlen(s) == json_string_length(v) && submission_service_is_valid(s))
                return 0;
        return problem_set(reterr, PROBLEM_INVALID_VALUE, field,
                           "service is a master.cf inet service name, [host:]port: the port a "
                           "number or an /etc/services name ([a-z][a-z0-9-]{0,31}), the host an "
                           "IPv4 address or a [bracketed] IPv6 address of this host; at most %d "
                           "bytes; not the MX's port (smtp, 25)",
                           SUBMISSION_SERVICE_MAX);
}

enum { FS_ENABLED, FS_SERVICE };
#define SV(f) offsetof(struct service_body, f)
static const struct json_spec service_spec[] = {
        /* null: the default (RFC 7396 removes a member a merge patch sets to null) */
        [FS_ENABLED] = { "enabled", JS_BOOL, JS_NULLABLE, SV(enabled), .choices = NULL },
        [FS_SERVICE] = { "service", JS_STRING, JS_NULLABLE, SV(service),
                         .max = SUBMISSION_SERVICE_MAX, .check = check_service_name },
        { 0 },
};

/* A submission service member: null, or an object of service_spec (checked in full here, so
 * that the field named is the member's: /submission/service). */
static int check_service(const struct json_spec *spec, json_t *v, const char *field,
                         struct problem *reterr)
{
        struct service_body b = { 0 };
        uint64_t present = 0;
        if (!json_is_object(v))
                return problem_set(reterr, PROBLEM_INVALID_VALUE, field,
                                   "%s is null (master.cf's entry is left alone) or an object "
                                   "{\"enabled\": true|false, \"service\": \"[host:]port\"}",
                                   spec->name);
        return json_dispatch(v, service_spec, &b, &present, 0, field, reterr);
}

/* Onto *svc (of kind k): the member's value v (NULL: null, unmanaged); with patch, an object
 * merges into a managed service (RFC 7396: members not sent keep their values). */
static void apply_service(struct submission_service *svc, enum submission_kind k, json_t *v,
                          bool patch)
{
        struct service_body b = { 0 };
        uint64_t present = 0;
        struct problem ignore = { 0 };
        if (!v) {
                *svc = (struct submission_service){ 0 };
                return;
        }
        (void)json_dispatch(v, service_spec, &b, &present, JSON_DISPATCH_PATCH, "", &ignore);
        problem_done(&ignore);
        if (!patch || !svc->managed) {
                /* an object asks for the service: enabled unless it says otherwise */
                *svc = (struct submission_service){ .managed = true, .enabled = true };
                snprintf(svc->service, sizeof(svc->service), "%s", kind_names[k]);
        }
        json_t *enabled = json_object_get(v, "enabled");
        if (enabled)
                svc->enabled = json_is_null(enabled) || json_is_true(enabled);
        if (present & (UINT64_C(1) << FS_SERVICE))
                snprintf(svc->service, sizeof(svc->service), "%s",
                         b.service ? b.service : kind_names[k]);
}

static int check_certificate_name(const struct json_spec *spec, json_t *v, const char *field,
                                  struct problem *reterr)
{
        if (!name_is_valid(json_string_value(v)))
                return problem_set(reterr, PROBLEM_CERTIFICATE_NOT_FOUND, field,
                                   "'%s' cannot be a certificate name (names are "
                                   "[a-z0-9][a-z0-9._-]{0,63})",
                                   json_string_value(v));
        return 0;
}

bool outbound_ca_path_is_valid(const char *s)
{
        size_t n = s ? strlen(s) : 0;
        if (n < 2 || n > OUTBOUND_CA_MAX || s[0] != '/' || s[n - 1] == '/')
                return false;
        for (size_t i = 0; i < n; i++) {
                char c = s[i];
                bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                          (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '+' || c == '@' ||
                          c == '-' || c == '/';
                if (!ok)
                        return false;
        }
        /* each component after a '/': not empty, ".", or ".." */
        for (const char *c = s; c; c = strchr(c + 1, '/')) {
                size_t len = strcspn(c + 1, "/");
                if (len == 0 || (len == 1 && c[1] == '.') ||
                    (len == 2 && c[1] == '.' && c[2] == '.'))
                        return false;
        }
        return true;
}

static int check_outbound_ca(const struct json_spec *spec, json_t *v, const char *field,
                             struct problem *reterr)
{
        const char *s = json_string_value(v);
        if (streq(s, OUTBOUND_CA_SYSTEM) ||
            (strlen(s) == json_string_length(v) && outbound_ca_path_is_valid(s)))
                return 0;
        return problem_set(reterr, PROBLEM_INVALID_VALUE, field,
                           "outbound_ca is \"system\" or the absolute path of a PEM file of CA "
                           "certificates (at most %d bytes of A-Z a-z 0-9 . _ + @ - /, no \".\" "
                           "or \"..\" component)",
                           OUTBOUND_CA_MAX);
}

enum {
        F_MODE,
        F_INBOUND,
        F_OUTBOUND,
        F_CERTIFICATE,
        F_ADDITIONAL,
        F_PROFILE,
        F_AUTH_ONLY,
        F_RECEIVED_HEADER,
        F_LOGLEVEL,
        F_OUTBOUND_CA,
        F_SUBMISSION,
        F_SUBMISSIONS,
        F_GENERATION,
        F_UPDATED_AT,
        F_MANAGED,
};

#define SB(f) offsetof(struct settings_body, f)
/* Read-only fields (generation, updated_at, managed) are accepted so that a client can PUT back
 * what it got from GET, when they are the current values (json_check_read_only). */
static const struct json_spec settings_spec[] = {
        [F_MODE] = { "mode", JS_CHOICE, JS_REQUIRED, SB(mode), .choices = modes_with_empty },
        [F_INBOUND] = { "inbound_mode", JS_CHOICE, JS_NULLABLE, SB(inbound_mode),
                        .choices = modes_with_empty },
        [F_OUTBOUND] = { "outbound_mode", JS_CHOICE, JS_NULLABLE, SB(outbound_mode),
                         .choices = modes_with_empty },
        [F_CERTIFICATE] = { "certificate", JS_STRING, JS_NULLABLE, SB(certificate), .max = 64,
                            .check = check_certificate_name },
        [F_ADDITIONAL] = { "additional_certificate", JS_STRING, JS_NULLABLE,
                           SB(additional_certificate), .max = 64, .check = check_certificate_name },
        [F_PROFILE] = { "profile", JS_CHOICE, 0, SB(profile), .choices = profile_choices },
        [F_AUTH_ONLY] = { "auth_only", JS_BOOL, 0, SB(auth_only), .choices = NULL },
        [F_RECEIVED_HEADER] = { "received_header", JS_BOOL, 0, SB(received_header),
                                .choices = NULL },
        [F_LOGLEVEL] = { "loglevel", JS_INT, 0, SB(loglevel), .min = 0, .max = 4 },
        [F_OUTBOUND_CA] = { "outbound_ca", JS_STRING, 0, SB(outbound_ca), .max = OUTBOUND_CA_MAX,
                            .check = check_outbound_ca },
        [F_SUBMISSION] = { "submission", JS_ANY, JS_NULLABLE, SB(services[SUBMISSION_STARTTLS]),
                           .check = check_service },
        [F_SUBMISSIONS] = { "submissions", JS_ANY, JS_NULLABLE, SB(services[SUBMISSION_IMPLICIT]),
                            .check = check_service },
        [F_GENERATION] = { "generation", JS_ANY, JS_READ_ONLY, SB(ignored), .choices = NULL },
        [F_UPDATED_AT] = { "updated_at", JS_ANY, JS_READ_ONLY, SB(ignored), .choices = NULL },
        [F_MANAGED] = { "managed", JS_ANY, JS_READ_ONLY, SB(ignored), .choices = NULL },
        { 0 },
};

#define HAS(f) (present & (UINT64_C(1) << (f)))

int settings_apply_json(struct settings *s, json_t *body, bool patch, struct problem *reterr)
{
        struct settings_body b = { 0 };
        uint64_t present = 0;
        struct settings n = *s;
        int r;

        r = json_dispatch(body, settings_spec, &b, &present, patch ? JSON_DISPATCH_PATCH : 0, "",
                          reterr);
        if (r < 0)
                return r;
        json_t *current = settings_to_json(s);
        r = json_check_read_only(body, settings_spec, current, "", reterr);
        json_decref(current);
        if (r < 0)
                return r;
        if (!patch) {
                /* PUT replaces: what is not sent takes its default. */
                settings_defaults(&n);
                n.generation = s->generation;
        }
        if (HAS(F_MODE))
                tls_mode_from_string(b.mode, &n.mode);
        if (HAS(F_INBOUND)) {
                n.inbound_mode = MODE_UNSET;
                if (b.inbound_mode)
                        tls_mode_from_string(b.inbound_mode, &n.inbound_mode);
        }
        if (HAS(F_OUTBOUND)) {
                n.outbound_mode = MODE_UNSET;
                if (b.outbound_mode)
                        tls_mode_from_string(b.outbound_mode, &n.outbound_mode);
        }
        if (HAS(F_CERTIFICATE))
                snprintf(n.certificate, sizeof(n.certificate), "%s",
                         b.certificate ? b.certificate : "");
        if (HAS(F_ADDITIONAL))
                snprintf(n.additional_certificate, sizeof(n.additional_certificate), "%s",
                         b.additional_certificate ? b.additional_certificate : "");
        if (HAS(F_PROFILE))
                tls_profile_from_string(b.profile, &n.profile);
        if (HAS(F_AUTH_ONLY))
                n.auth_only = b.auth_only;
        if (HAS(F_RECEIVED_HEADER))
                n.received_header = b.received_header;
        if (HAS(F_LOGLEVEL))
                n.loglevel = (int)b.loglevel;
        if (HAS(F_OUTBOUND_CA))
                snprintf(n.outbound_ca, sizeof(n.outbound_ca), "%s", b.outbound_ca);
        for (int k = 0; k < SUBMISSION_KINDS; k++)
                if (HAS(F_SUBMISSION + k))
                        apply_service(&n.services[k], (enum submission_kind)k, b.services[k],
                                      patch);

        if (settings_inbound(&n) != MODE_NONE && !n.certificate[0])
                return problem_set(reterr, PROBLEM_CERTIFICATE_REQUIRED, "/certificate",
                                   "a certificate is required when the inbound mode is '%s'",
                                   tls_mode_to_string(settings_inbound(&n)));
        /* The additional certificate serves beside the first one, never alone (PATCH null on
         * certificate must clear both). */
        if (n.additional_certificate[0] && !n.certificate[0])
                return problem_set(reterr, PROBLEM_CERTIFICATE_REQUIRED, "/certificate",
                                   "additional_certificate '%s' is served beside certificate, "
                                   "which is not set: bind it as certificate instead",
                                   n.additional_certificate);
        const struct submission_service *sub = &n.services[SUBMISSION_STARTTLS],
                                        *subs = &n.services[SUBMISSION_IMPLICIT];
        if (sub->managed && subs->managed && streq(sub->service, subs->service))
                return problem_set(reterr, PROBLEM_INVALID_VALUE, "/submissions/service",
                                   "submission and submissions both name master.cf service "
                                   "'%s': implicit TLS (465) and STARTTLS (587) need a port "
                                   "each",
                                   subs->service);
        /* an enabled service keeps its name: another would leave the old entry in master.cf,
         * enabled and no longer managed (disable it first: it is commented out) */
        for (int k = 0; k < SUBMISSION_KINDS; k++) {
                const struct submission_service *was = &s->services[k], *now = &n.services[k];
                char field[32];
                snprintf(field, sizeof(field), "/%s/service", kind_names[k]);
                if (was->managed && was->enabled && now->managed &&
                    !streq(was->service, now->service))
                        return problem_set(reterr, PROBLEM_SERVICE_CONFLICT, field,
                                           "%s is enabled as master.cf service '%s': disable it "
                                           "first (its entry is commented out), then name "
                                           "another",
                                           kind_names[k], was->service);
        }
        /* an enabled service does TLS with main.cf's certificate, whatever the inbound level */
        for (int k = 0; k < SUBMISSION_KINDS; k++)
                if (n.services[k].managed && n.services[k].enabled && !n.certificate[0])
                        return problem_set(reterr, PROBLEM_CERTIFICATE_REQUIRED, "/certificate",
                                           "%s is enabled: its clients must get TLS, so a "
                                           "certificate must be bound",
                                           kind_names[k]);
        if (n.additional_certificate[0] && streq(n.additional_certificate, n.certificate))
                return problem_set(reterr, PROBLEM_DUPLICATE_KEY_TYPE, "/additional_certificate",
                                   "'%s' is already bound as certificate: the additional "
                                   "certificate must have another key type",
                                   n.certificate);
        n.managed = true;
        *s = n;
        return 0;
}

/* The field that decides one side's level: its override when set, else mode. */
static const char *side_field(enum tls_mode side, const char *override)
{
        return side == MODE_UNSET ? "/mode" : override;
}

void settings_state_warnings(const struct settings *s, bool sasl_auth_enabled, json_t *warnings)
{
        if (!s->managed)
                return;
        if (settings_inbound(s) == MODE_ENCRYPT)
                warnings_add_field(warnings, "mandatory_inbound",
                                   side_field(s->inbound_mode, "/inbound_mode"),
                                   "inbound TLS is mandatory: a public MX then refuses mail from "
                                   "every sender that cannot do STARTTLS");
        if (settings_outbound(s) == MODE_ENCRYPT)
                warnings_add_field(warnings, "mandatory_outbound",
                                   side_field(s->outbound_mode, "/outbound_mode"),
                                   "outbound TLS is mandatory for every destination "
                                   "(smtp_tls_security_level = encrypt): mail to any MX that "
                                   "does not offer STARTTLS is deferred and finally bounced; "
                                   "prefer 'may' and encrypt policies for the destinations "
                                   "that need it");
        /* smtpd_tls_auth_only = yes offers AUTH only after STARTTLS; at level none STARTTLS is
         * never offered, so AUTH never is (on every smtpd that keeps main.cf's level). That
         * matters only where SASL AUTH is on (smtpd_sasl_auth_enable, default no). */
        if (s->auth_only && settings_inbound(s) == MODE_NONE && sasl_auth_enabled)
                warnings_add_field(warnings, "auth_without_tls", "/auth_only",
                                   "smtpd_sasl_auth_enable = yes, but with auth_only and the "
                                   "inbound level none AUTH is never offered "
                                   "(smtpd_tls_auth_only = yes needs STARTTLS first): clients "
                                   "cannot authenticate; set auth_only to false or enable "
                                   "inbound TLS");
}

/* One service's -o parameters, from consecutive `postconf -P` lines (grouped by service). */
struct service_tls {
        char name[128];
        const char *needs; /* "smtpd_tls_security_level = encrypt" or the like; NULL: no TLS need */
        bool own_cert;
};

static int service_verdict(const struct service_tls *svc, struct problem *reterr)
{
        if (!svc->name[0] || !svc->needs || svc->own_cert)
                return 0;
        return problem_set(reterr, PROBLEM_CERTIFICATE_REQUIRED, "/certificate",
                           "master.cf service '%s' sets %s and uses main.cf's certificate: "
                           "without a bound certificate it cannot do TLS and refuses every "
                           "client; bind a certificate (it is rendered whatever the inbound level)",
                           svc->name, svc->needs);
}

int settings_check_services(const struct settings *s, const char *service_params,
                            struct problem *reterr)
{
        static const struct {
                const char *name, *value, *needs;
        } needs[] = {
                { "smtpd_tls_security_level", "encrypt", "smtpd_tls_security_level = encrypt" },
                { "smtpd_enforce_tls", "yes", "smtpd_enforce_tls = yes" },
                { "smtpd_tls_wrappermode", "yes", "smtpd_tls_wrappermode = yes" },
        };
        struct service_tls svc = { 0 };
        if (s->certificate[0] || !service_params)
                return 0;
        for (const char *line = service_params; *line;) {
                const char *end = strchrnul(line, '\n');
                /* service/type/name = value (names have neither '/' nor spaces; values may) */
                const char *eq = memmem(line, (size_t)(end - line), " = ", 3);
                const char *slash = eq ? memrchr(line, '/', (size_t)(eq - line)) : NULL;
                if (slash) {
                        size_t svc_len = (size_t)(slash - line);
                        if (svc_len != strlen(svc.name) || strncmp(svc.name, line, svc_len) != 0) {
                                int r = service_verdict(&svc, reterr);
                                if (r < 0)
                                        return r;
                                svc = (struct service_tls){ 0 };
                                snprintf(svc.name, sizeof(svc.name), "%.*s", (int)svc_len, line);
                        }
                        size_t name_len = (size_t)(eq - slash - 1);
                        const char *value = eq + 3;
                        size_t value_len = (size_t)(end - value);
                        for (size_t i = 0; i < ARRAY_SIZE(needs); i++)
                                if (strlen(needs[i].name) == name_len &&
                                    strncmp(needs[i].name, slash + 1, name_len) == 0 &&
                                    strlen(needs[i].value) == value_len &&
                                    strncasecmp(needs[i].value, value, value_len) == 0)
                                        svc.needs = needs[i].needs;
                        /* a certificate of its own: a managed parameter naming certificate
                         * files (smtpd_tls_chain_files, the legacy *_cert_file) */
                        if (value_len > 0 &&
                            managed_param_has(slash + 1, name_len, MANAGED_CERT_FILES))
                                svc.own_cert = true;
                }
                line = *end ? end + 1 : end;
        }
        return service_verdict(&svc, reterr);
}

static json_t *mode_or_null(enum tls_mode m)
{
        return m == MODE_UNSET ? json_null() : json_string(tls_mode_to_string(m));
}

json_t *settings_to_json(const struct settings *s)
{
        json_t *j = json_object();
        json_object_set_new(j, "mode", json_string(tls_mode_to_string(s->mode)));
        json_object_set_new(j, "inbound_mode", mode_or_null(s->inbound_mode));
        json_object_set_new(j, "outbound_mode", mode_or_null(s->outbound_mode));
        json_object_set_new(j, "certificate",
                            s->certificate[0] ? json_string(s->certificate) : json_null());
        json_object_set_new(j, "additional_certificate",
                            s->additional_certificate[0] ? json_string(s->additional_certificate)
                                                         : json_null());
        json_object_set_new(j, "profile", json_string(tls_profile_to_string(s->profile)));
        json_object_set_new(j, "auth_only", json_boolean(s->auth_only));
        json_object_set_new(j, "received_header", json_boolean(s->received_header));
        json_object_set_new(j, "loglevel", json_integer(s->loglevel));
        json_object_set_new(j, "outbound_ca", json_string(s->outbound_ca));
        for (int k = 0; k < SUBMISSION_KINDS; k++) {
                const struct submission_service *svc = &s->services[k];
                json_object_set_new(j, kind_names[k],
                                    svc->managed ? json_pack("{s:b, s:s}", "enabled", svc->enabled,
                                                             "service", svc->service)
                                                 : json_null());
        }
        json_object_set_new(j, "managed", json_boolean(s->managed));
        json_object_set_new(j, "generation", json_integer(s->generation));
        json_object_set_new(j, "updated_at",
                            s->updated_at[0] ? json_string(s->updated_at) : json_null());
        return j;
}

json_t *settings_desired_json(const struct settings *s)
{
        json_t *j = settings_to_json(s);
        json_object_del(j, "generation");
        json_object_del(j, "updated_at");
        return j;
}

/* Protocol and cipher presets. Only mandatory TLS differs between them: opportunistic TLS
 * (`*_tls_protocols`, `*_tls_exclude_ciphers`, which postconf(5) applies "at all TLS security
 * levels") stays at Postfix's defaults in every profile, because a peer it refused would talk in
 * cleartext instead: opportunistic TLS is never made stricter than cleartext. Exclusions go to
 * `*_tls_mandatory_exclude_ciphers` ("at mandatory TLS security levels").
 * Mandatory TLS (inbound encrypt, such as a submission service with `-o
 * smtpd_tls_security_level=encrypt`; outbound encrypt, dane, fingerprint, verify, secure) takes
 * TLS 1.2 or later in modern and intermediate, Mozilla's floor for servers that must still serve
 * TLS 1.2 clients: a TLSv1.3 floor would defer mail to every TLS 1.2-only MX. NULL = removed,
 * Postfix's default. docs/api.md shows this table. */
static const struct profile {
        const char *mandatory_protocols, *mandatory_ciphers, *mandatory_exclude_ciphers;
} profiles[] = {
        [PROFILE_MODERN] = { ">=TLSv1.2", "high",
                             "aNULL, eNULL, EXPORT, DES, RC4, MD5, PSK, SRP, 3DES" },
        [PROFILE_INTERMEDIATE] = { ">=TLSv1.2", "medium", "aNULL, eNULL, EXPORT, DES, RC4, MD5" },
        [PROFILE_LEGACY] = { NULL, NULL, NULL },
};

const struct settings_legacy_pair settings_legacy_pairs[] = {
        { "smtpd_tls_cert_file", "smtpd_tls_key_file", "RSA" },
        { "smtpd_tls_eccert_file", "smtpd_tls_eckey_file", "EC" },
        { "smtpd_tls_dcert_file", "smtpd_tls_dkey_file", "DSA" },
        { NULL, NULL, NULL },
};

/* "key1, chain1, key2, chain2": each key directly followed by its chain (postconf(5),
 * smtpd_tls_chain_files; Postfix >= 3.4). NULL when there is none or it does not fit. */
static const char *chain_files(const struct cert_files *certs, size_t n, char *buf, size_t size)
{
        size_t o = 0;
        for (size_t i = 0; i < n; i++) {
                if (!certs[i].key || !certs[i].chain)
                        return NULL;
                int w = snprintf(buf + o, size - o, "%s%s, %s", i ? ", " : "", certs[i].key,
                                 certs[i].chain);
                if (w < 0 || (size_t)w >= size - o)
                        return NULL;
                o += (size_t)w;
        }
        return o ? buf : NULL;
}

size_t settings_render(const struct settings *s, const struct cert_files *certs, size_t n_certs,
                       const char *ca_file, char *chain_buf, size_t chain_buf_size,
                       struct maincf_param out[SETTINGS_PARAMS_MAX])
{
        static const char *const yes_no[] = { "no", "yes" };
        static const char *const levels[] = { "0", "1", "2", "3", "4" };
        const struct profile *p = &profiles[s->profile];
        size_t n = 0;

        if (!s->managed)
                return 0;
        const char *chain = chain_files(certs, n_certs, chain_buf, chain_buf_size);
        /* NULL = removed, Postfix's default */
        const char *value[MANAGED_SOURCES_MAX] = {
                [MANAGED_INBOUND_LEVEL] = tls_mode_to_string(settings_inbound(s)),
                [MANAGED_OUTBOUND_LEVEL] = tls_mode_to_string(settings_outbound(s)),
                [MANAGED_CHAIN_FILES] = chain,
                [MANAGED_AUTH_ONLY] = yes_no[s->auth_only],
                [MANAGED_RECEIVED_HEADER] = yes_no[s->received_header],
                [MANAGED_LOGLEVEL] = levels[s->loglevel],
                [MANAGED_MANDATORY_PROTOCOLS] = p->mandatory_protocols,
                [MANAGED_MANDATORY_CIPHERS] = p->mandatory_ciphers,
                [MANAGED_MANDATORY_EXCLUDE] = p->mandatory_exclude_ciphers,
                [MANAGED_CA_FILE] = ca_file,
        };
        for (const struct managed_param *m = managed_params; m->name; m++) {
                /* smtp_tls_policy_maps is the plan's: it merges ours with the administrator's */
                if (m->source == MANAGED_POLICY_MAPS)
                        continue;
                /* The legacy RSA pair would be ignored beside chain_files; remove it so that
                 * nobody reads a stale path (Debian's default main.cf points it at the snakeoil
                 * pair). The ECDSA and DSA pairs go too once chain_files is set (Postfix ignores
                 * them then); the worker refuses a write that would drop a key type they serve
                 * (worker.c, legacy_pairs). */
                if ((m->flags & MANAGED_WITH_CHAIN) && !chain)
                        continue;
                out[n++] = (struct maincf_param){ m->name, value[m->source] };
        }
        return n;
}
