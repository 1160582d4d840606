/* fuzz_json_bodies.c - request bodies of the write API, from the bytes a client sends to the text
 * Postfix reads: json_parse_body(), then settings_apply_json() (PUT/PATCH) or policy_apply_json()
 * (PUT, POST, PATCH, and every item of a bulk {"items": [...]}), then settings_render() +
 * maincf_edit() or policy_map_render(), read back with maincf_get() and policy_map_parse().
 *
 * Input: byte 0 picks the request (low 3 bits mod 6: settings PUT, settings PATCH, policy PUT,
 * policy POST, policy PATCH, bulk PUT) and, in its high bits, the stored row or settings the body
 * applies to; the rest is the body.
 *
 * Properties (any violation traps):
 *  - a refusal carries a code, a JSON pointer (under /items/N for bulk items) and a detail, and
 *    leaves the target unchanged;
 *  - an accepted body holds exactly the values sent (an oracle written from api.md, independent of
 *    the spec tables), takes the documented defaults for what it omits, and survives a round trip
 *    through its JSON form;
 *  - what it renders is whitelisted bytes only: one map entry per enabled policy, "key<TAB>level
 *    attr=value..." built here independently, and a main.cf where every line is either an
 *    unmanaged line of the input, kept in order, or "name = value" of a managed parameter, each
 *    exactly once, reading back (maincf_get) to the rendered values. */
#include <jansson.h>
#include <stdlib.h>

#include "apply/maincf.h"
#include "core/destination.h"
#include "core/json_spec.h"
#include "core/policy.h"
#include "core/settings.h"
#include "fuzz_common.h"

/* ---- small helpers ---- */

static char *xstrdup(const char *s)
{
        char *c = strdup(s);
        if (!c)
                abort();
        return c;
}

static void lower_into(char *dst, size_t size, const char *src)
{
        size_t i;
        for (i = 0; src[i] && i + 1 < size; i++)
                dst[i] = src[i] >= 'A' && src[i] <= 'Z' ? (char)(src[i] - 'A' + 'a') : src[i];
        dst[i] = 0;
}

/* The key a destination is stored under. ASCII: the input in lower case; a name written with
 * U-labels is judged by libidn2 in policy_destination_normalize (fuzz_destination covers it):
 * its result, when it accepts. */
static void destination_into(char *dst, size_t size, const char *src)
{
        bool idn = false;
        for (size_t i = 0; src[i]; i++)
                idn = idn || (unsigned char)src[i] >= 0x80;
        char key[POLICY_DESTINATION_MAX + 1];
        struct problem p = { 0 };
        if (idn && size > POLICY_DESTINATION_MAX &&
            policy_destination_normalize(src, key, "", &p) == 0)
                memcpy(dst, key, strlen(key) + 1);
        else
                lower_into(dst, size, src);
        problem_done(&p);
}

static bool str_is_one_of(const char *s, const char *const *names)
{
        for (size_t i = 0; names[i]; i++)
                if (strcmp(s, names[i]) == 0)
                        return true;
        return false;
}

static int index_of(const char *s, const char *const *names)
{
        for (int i = 0; names[i]; i++)
                if (strcmp(s, names[i]) == 0)
                        return i;
        return -1;
}

/* A growing string. */
struct sbuf {
        char *p;
        size_t len, cap;
};

static void sb_add(struct sbuf *b, const char *s)
{
        size_t n = strlen(s);
        if (b->len + n + 1 > b->cap) {
                size_t cap = b->cap ? b->cap : 256;
                while (cap < b->len + n + 1)
                        cap *= 2;
                char *np = realloc(b->p, cap);
                if (!np)
                        abort();
                b->p = np;
                b->cap = cap;
        }
        memcpy(b->p + b->len, s, n + 1);
        b->len += n;
}

/* ================================================================================================
 * Settings
 * ============================================================================================== */

static const char *const settings_keys[] = {
        "mode",       "inbound_mode", "outbound_mode",   "certificate", "additional_certificate",
        "profile",    "auth_only",    "received_header", "loglevel",    "outbound_ca",
        "submission", "submissions",  "generation",      "updated_at",  "managed",
        NULL
};

/* api.md: a submission service's name is [host:]port - the port 1-65535 or a services(5) name
 * [a-z][a-z0-9-]{0,31}, the host an IPv4 address, a [bracketed] IPv6 address or a host name - at
 * most 64 bytes, never smtp or 25. Written apart from settings.c's check, from the documentation
 * (looser on the host: only its characters). */
static bool service_name_ok(json_t *v)
{
        if (!json_is_string(v))
                return false;
        const char *s = json_string_value(v);
        size_t n = json_string_length(v);
        if (strlen(s) != n || n == 0 || n > 64)
                return false;
        for (size_t i = 0; i < n; i++)
                if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:[]",
                            s[i]))
                        return false;
        const char *colon = strrchr(s, ':');
        if (s[0] == '[' && (!colon || colon[-1] != ']'))
                return false;
        const char *port = colon ? colon + 1 : s;
        if (strcmp(port, "smtp") == 0 || strcmp(port, "25") == 0 || !port[0])
                return false;
        if (port[0] >= '0' && port[0] <= '9') {
                long v_ = 0;
                for (const char *c = port; *c; c++) {
                        if (*c < '0' || *c > '9' || c - port >= 5)
                                return false;
                        v_ = v_ * 10 + (*c - '0');
                }
                return port[0] != '0' && v_ <= 65535;
        }
        if (strlen(port) > 32 || port[0] < 'a' || port[0] > 'z')
                return false;
        for (const char *c = port; *c; c++)
                if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '-'))
                        return false;
        return true;
}

/* api.md: outbound_ca is "system" or an absolute path of A-Z a-z 0-9 . _ + @ - / whose
 * components are neither empty, "." nor "..", at most 1024 bytes. Written apart from
 * settings.c's check, from the documentation. */
static bool outbound_ca_ok(json_t *v)
{
        if (!json_is_string(v))
                return false;
        const char *s = json_string_value(v);
        size_t n = json_string_length(v);
        if (strlen(s) != n)
                return false;
        if (strcmp(s, "system") == 0)
                return true;
        if (n < 2 || n > 1024 || s[0] != '/')
                return false;
        const char *start = s + 1;
        for (size_t i = 1; i <= n; i++) {
                if (i < n && s[i] != '/') {
                        if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                                    "._+@-",
                                    s[i]))
                                return false;
                        continue;
                }
                size_t len = (size_t)(s + i - start);
                if (len == 0 || (len == 1 && start[0] == '.') ||
                    (len == 2 && start[0] == '.' && start[1] == '.'))
                        return false;
                start = s + i + 1;
        }
        return true;
}
static const char *const mode_strings[] = { "none", "may", "encrypt", "", NULL };
static const char *const profile_strings[] = { "modern", "intermediate", "legacy", NULL };

static enum tls_mode mode_of(const char *s)
{
        if (!s[0] || strcmp(s, "none") == 0)
                return MODE_NONE;
        return strcmp(s, "may") == 0 ? MODE_MAY : MODE_ENCRYPT;
}

static bool cert_name_ok(const char *s)
{
        size_t n = strlen(s);
        if (n == 0 || n > 64)
                return false;
        for (size_t i = 0; i < n; i++) {
                char c = s[i];
                bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                          (i > 0 && (c == '.' || c == '_' || c == '-'));
                if (!ok)
                        return false;
        }
        return true;
}

/* What an accepted body must have produced, from api.md alone. */
static void settings_oracle(json_t *body, bool patch, const struct settings *before,
                            const struct settings *got)
{
        struct settings want = *before;
        const char *key;
        json_t *v;

        json_object_foreach (body, key, v)
                FUZZ_ASSERT(str_is_one_of(key, settings_keys), "settings: accepted unknown '%s'",
                            key);
        if (!patch) {
                FUZZ_ASSERT(json_object_get(body, "mode"), "settings PUT: accepted without mode");
                /* api.md: the defaults of a PUT */
                want.mode = MODE_NONE;
                want.inbound_mode = want.outbound_mode = MODE_UNSET;
                want.certificate[0] = 0;
                want.additional_certificate[0] = 0;
                snprintf(want.outbound_ca, sizeof(want.outbound_ca), "system");
                want.profile = PROFILE_INTERMEDIATE;
                want.auth_only = true;
                want.received_header = false;
                want.loglevel = 1;
                memset(want.services, 0, sizeof(want.services));
        }
        if ((v = json_object_get(body, "mode"))) {
                FUZZ_ASSERT(json_is_string(v) && str_is_one_of(json_string_value(v), mode_strings),
                            "settings: accepted a bad mode");
                want.mode = mode_of(json_string_value(v));
        }
        static const char *const dir_keys[] = { "inbound_mode", "outbound_mode" };
        enum tls_mode *dirs[] = { &want.inbound_mode, &want.outbound_mode };
        for (size_t i = 0; i < 2; i++) {
                if (!(v = json_object_get(body, dir_keys[i])))
                        continue;
                if (json_is_null(v)) {
                        *dirs[i] = MODE_UNSET;
                        continue;
                }
                FUZZ_ASSERT(json_is_string(v) && str_is_one_of(json_string_value(v), mode_strings),
                            "settings: accepted a bad %s", dir_keys[i]);
                *dirs[i] = mode_of(json_string_value(v));
        }
        if ((v = json_object_get(body, "certificate"))) {
                if (json_is_null(v)) {
                        want.certificate[0] = 0;
                } else {
                        FUZZ_ASSERT(json_is_string(v) && cert_name_ok(json_string_value(v)) &&
                                        strlen(json_string_value(v)) == json_string_length(v),
                                    "settings: accepted a bad certificate name");
                        snprintf(want.certificate, sizeof(want.certificate), "%s",
                                 json_string_value(v));
                }
        }
        if ((v = json_object_get(body, "additional_certificate"))) {
                if (json_is_null(v)) {
                        want.additional_certificate[0] = 0;
                } else {
                        FUZZ_ASSERT(json_is_string(v) && cert_name_ok(json_string_value(v)) &&
                                        strlen(json_string_value(v)) == json_string_length(v),
                                    "settings: accepted a bad additional_certificate name");
                        snprintf(want.additional_certificate, sizeof(want.additional_certificate),
                                 "%s", json_string_value(v));
                }
        }
        if ((v = json_object_get(body, "outbound_ca"))) {
                FUZZ_ASSERT(outbound_ca_ok(v), "settings: accepted a bad outbound_ca");
                snprintf(want.outbound_ca, sizeof(want.outbound_ca), "%s", json_string_value(v));
        }
        if ((v = json_object_get(body, "profile"))) {
                FUZZ_ASSERT(json_is_string(v) &&
                                index_of(json_string_value(v), profile_strings) >= 0,
                            "settings: accepted a bad profile");
                want.profile = (enum tls_profile)index_of(json_string_value(v), profile_strings);
        }
        if ((v = json_object_get(body, "auth_only"))) {
                FUZZ_ASSERT(json_is_boolean(v), "settings: accepted a non-boolean auth_only");
                want.auth_only = json_is_true(v);
        }
        if ((v = json_object_get(body, "received_header"))) {
                FUZZ_ASSERT(json_is_boolean(v), "settings: accepted a non-boolean received_header");
                want.received_header = json_is_true(v);
        }
        if ((v = json_object_get(body, "loglevel"))) {
                FUZZ_ASSERT(json_is_integer(v) && json_integer_value(v) >= 0 &&
                                json_integer_value(v) <= 4,
                            "settings: accepted a bad loglevel");
                want.loglevel = (int)json_integer_value(v);
        }
        static const char *const service_keys[] = { "submission", "submissions" };
        for (size_t k = 0; k < 2; k++) {
                struct submission_service *svc = &want.services[k];
                if (!(v = json_object_get(body, service_keys[k])))
                        continue;
                if (json_is_null(v)) {
                        memset(svc, 0, sizeof(*svc));
                        continue;
                }
                FUZZ_ASSERT(json_is_object(v), "settings: accepted a %s that is no object",
                            service_keys[k]);
                const char *member;
                json_t *m;
                json_object_foreach (v, member, m)
                        FUZZ_ASSERT(strcmp(member, "enabled") == 0 ||
                                        strcmp(member, "service") == 0,
                                    "settings: accepted %s/%s", service_keys[k], member);
                /* api.md: a new member is enabled on its default port; a PATCH merges */
                if (!patch || !svc->managed) {
                        memset(svc, 0, sizeof(*svc));
                        svc->managed = svc->enabled = true;
                        snprintf(svc->service, sizeof(svc->service), "%s", service_keys[k]);
                }
                if ((m = json_object_get(v, "enabled"))) {
                        FUZZ_ASSERT(json_is_boolean(m), "settings: accepted a non-boolean enabled");
                        svc->enabled = json_is_true(m);
                }
                if ((m = json_object_get(v, "service"))) {
                        FUZZ_ASSERT(service_name_ok(m), "settings: accepted a bad service name");
                        snprintf(svc->service, sizeof(svc->service), "%s", json_string_value(m));
                }
        }
        want.managed = true;

        enum tls_mode in = want.inbound_mode == MODE_UNSET ? want.mode : want.inbound_mode;
        FUZZ_ASSERT(in == MODE_NONE || want.certificate[0],
                    "settings: accepted inbound TLS without a certificate");
        FUZZ_ASSERT(
            !want.additional_certificate[0] ||
                (want.certificate[0] && strcmp(want.additional_certificate, want.certificate) != 0),
            "settings: accepted an additional_certificate without a certificate, or the "
            "same one twice");
        for (size_t k = 0; k < 2; k++)
                FUZZ_ASSERT(
                    !want.services[k].managed || !want.services[k].enabled || want.certificate[0],
                    "settings: accepted an enabled %s without a certificate", service_keys[k]);
        FUZZ_ASSERT(!want.services[0].managed || !want.services[1].managed ||
                        strcmp(want.services[0].service, want.services[1].service) != 0,
                    "settings: accepted one service name for both");
        for (size_t k = 0; k < 2; k++)
                FUZZ_ASSERT(got->services[k].managed == want.services[k].managed &&
                                got->services[k].enabled == want.services[k].enabled &&
                                strcmp(got->services[k].service, want.services[k].service) == 0,
                            "settings: %s differs from the body", service_keys[k]);
        FUZZ_ASSERT(got->managed == want.managed && got->mode == want.mode &&
                        got->inbound_mode == want.inbound_mode &&
                        got->outbound_mode == want.outbound_mode &&
                        strcmp(got->certificate, want.certificate) == 0 &&
                        strcmp(got->additional_certificate, want.additional_certificate) == 0 &&
                        strcmp(got->outbound_ca, want.outbound_ca) == 0 &&
                        got->profile == want.profile && got->auth_only == want.auth_only &&
                        got->received_header == want.received_header &&
                        got->loglevel == want.loglevel && got->generation == before->generation,
                    "settings: accepted values differ from the body (mode %d/%d in %d/%d out %d/%d "
                    "cert '%s'/'%s' profile %d/%d loglevel %d/%d)",
                    got->mode, want.mode, got->inbound_mode, want.inbound_mode, got->outbound_mode,
                    want.outbound_mode, got->certificate, want.certificate, got->profile,
                    want.profile, got->loglevel, want.loglevel);
}

/* main.cf as found: each line with the managed parameter whose definition it belongs to. */
static const struct cf_line {
        const char *text;
        const char *owner; /* NULL: not part of any smtptlsd parameter's definition */
} main_cf[] = {
        { "# See /usr/share/postfix/main.cf.dist for a commented, more complete version\n", NULL },
        { "smtpd_banner = $myhostname ESMTP $mail_name (Debian/GNU)\n", NULL },
        { "biff = no\n", NULL },
        { "\n", NULL },
        { "# TLS parameters\n", NULL },
        { "smtpd_tls_cert_file=/etc/ssl/certs/ssl-cert-snakeoil.pem\n", "smtpd_tls_cert_file" },
        { "smtpd_tls_key_file=/etc/ssl/private/ssl-cert-snakeoil.key\n", "smtpd_tls_key_file" },
        { "smtpd_tls_security_level=may\n", "smtpd_tls_security_level" },
        { "   \n", NULL },
        { "smtp_tls_CApath=/etc/ssl/certs\n", NULL },
        { "smtp_tls_security_level = may\n", "smtp_tls_security_level" },
        { "smtp_tls_session_cache_database = btree:${data_directory}/smtp_scache\n", NULL },
        { "smtpd_tls_exclude_ciphers =\n", "smtpd_tls_exclude_ciphers" },
        { "    aNULL,\n", "smtpd_tls_exclude_ciphers" },
        { "# a comment inside a definition is kept\n", NULL },
        { "\teNULL\n", "smtpd_tls_exclude_ciphers" },
        { "smtpd_tls_loglevel_x = 9\n", NULL },
        /* the name alone, its "= value" on a continuation line (issue 12 item 4) */
        { "smtpd_tls_received_header\n", "smtpd_tls_received_header" },
        { "# between the name and '='\n", NULL },
        { "    = no\n", "smtpd_tls_received_header" },
        { "smtpd_relay_restrictions = permit_mynetworks permit_sasl_authenticated "
          "defer_unauth_destination\n",
          NULL },
        { "myhostname = mx.example.com\n", NULL },
        { "mydestination = $myhostname, localhost\n", NULL },
        { "  localhost.localdomain\n", NULL },
        { "smtp_tls_loglevel = 1\n", "smtp_tls_loglevel" },
        { "smtp_tls_loglevel\t= 2\n", "smtp_tls_loglevel" },
        { "  # smtp_tls_loglevel = 3\n", NULL },
        { "relayhost =\n", NULL },
        { "smtp_tls_policy_maps = hash:/etc/postfix/tls_policy\n", "smtp_tls_policy_maps" },
        { "inet_interfaces = all", NULL }, /* no final newline */
};

static bool value_byte_ok_cf(unsigned char c)
{
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               (c && strchr(" ,.:/_!=<>-", c));
}

static void check_rendered_main_cf(const struct maincf_param *params, size_t n)
{
        struct sbuf in = { 0 };
        char *out = NULL, *v = NULL;
        size_t outlen = 0;
        size_t seen[SETTINGS_PARAMS_MAX + 1] = { 0 };

        for (size_t i = 0; i < n; i++) {
                FUZZ_ASSERT(params[i].name, "main.cf: parameter %zu without a name", i);
                for (size_t j = 0; j < i; j++)
                        FUZZ_ASSERT(strcmp(params[i].name, params[j].name) != 0,
                                    "main.cf: %s rendered twice", params[i].name);
                if (!params[i].value)
                        continue;
                for (const char *c = params[i].value; *c; c++)
                        FUZZ_ASSERT(value_byte_ok_cf((unsigned char)*c),
                                    "main.cf: %s = '%s' has byte 0x%02x", params[i].name,
                                    params[i].value, (unsigned char)*c);
        }
        for (size_t i = 0; i < ARRAY_SIZE(main_cf); i++)
                sb_add(&in, main_cf[i].text);
        int r = maincf_edit(in.p, in.len, params, n, &out, &outlen);
        FUZZ_ASSERT(r == 0, "maincf_edit: %d", r);
        FUZZ_ASSERT(strlen(out) == outlen && outlen > 0 && out[outlen - 1] == '\n',
                    "maincf_edit: bad output length or no final newline");

        /* Line by line: an unmanaged input line (in order) or one managed parameter. */
        size_t next = 0;
        for (const char *l = out; *l;) {
                const char *nl = strchr(l, '\n');
                size_t len = (size_t)(nl - l);
                size_t k;
                for (k = 0; k < n; k++) {
                        size_t nn = strlen(params[k].name);
                        if (len > nn && strncmp(l, params[k].name, nn) == 0 &&
                            (l[nn] == ' ' || l[nn] == '\t' || l[nn] == '='))
                                break;
                }
                if (k < n) {
                        FUZZ_ASSERT(params[k].value, "main.cf: removed parameter %s is there",
                                    params[k].name);
                        size_t nn = strlen(params[k].name), vn = strlen(params[k].value);
                        FUZZ_ASSERT(len == nn + 3 + vn && memcmp(l + nn, " = ", 3) == 0 &&
                                        memcmp(l + nn + 3, params[k].value, vn) == 0,
                                    "main.cf: line '%.*s' is not '%s = %s'", (int)len, l,
                                    params[k].name, params[k].value);
                        seen[k]++;
                } else {
                        /* the next input line that is not part of a managed definition */
                        while (next < ARRAY_SIZE(main_cf) && main_cf[next].owner) {
                                for (k = 0; k < n; k++)
                                        if (strcmp(main_cf[next].owner, params[k].name) == 0)
                                                break;
                                if (k == n)
                                        break; /* owned by a parameter not rendered: kept */
                                next++;
                        }
                        FUZZ_ASSERT(next < ARRAY_SIZE(main_cf),
                                    "main.cf: line '%.*s' did not come from the input", (int)len,
                                    l);
                        const char *want = main_cf[next].text;
                        size_t wn = strcspn(want, "\n");
                        FUZZ_ASSERT(wn == len && memcmp(want, l, len) == 0,
                                    "main.cf: line '%.*s' did not come from the input (expected "
                                    "'%.*s')",
                                    (int)len, l, (int)wn, want);
                        next++;
                }
                l = nl + 1;
        }
        for (; next < ARRAY_SIZE(main_cf); next++) {
                size_t k = n;
                if (main_cf[next].owner)
                        for (k = 0; k < n; k++)
                                if (strcmp(main_cf[next].owner, params[k].name) == 0)
                                        break;
                FUZZ_ASSERT(k < n, "main.cf: input line '%s' was lost", main_cf[next].text);
        }
        for (size_t k = 0; k < n; k++) {
                FUZZ_ASSERT(seen[k] == (params[k].value ? 1u : 0u), "main.cf: %s written %zu times",
                            params[k].name, seen[k]);
                r = maincf_get(out, outlen, params[k].name, &v);
                if (!params[k].value) {
                        FUZZ_ASSERT(r == -ENOENT, "maincf_get(%s): %d for a removed parameter",
                                    params[k].name, r);
                        continue;
                }
                FUZZ_ASSERT(r == 0 && strcmp(v, params[k].value) == 0,
                            "maincf_get(%s) = '%s', rendered '%s'", params[k].name,
                            r == 0 ? v : "(none)", params[k].value);
                free(v);
                v = NULL;
        }
        free(out);
        free(in.p);
}

static const char *param_value(const struct maincf_param *params, size_t n, const char *name)
{
        for (size_t i = 0; i < n; i++)
                if (strcmp(params[i].name, name) == 0)
                        return params[i].value;
        fuzz_fail("settings_render: no %s", name);
}

static void check_settings_render(const struct settings *s, bool with_map)
{
        static const char *const modes[] = { "none", "may", "encrypt" };
        struct maincf_param params[SETTINGS_PARAMS_MAX + 1];
        char key[2][160], chain[2][160], chain_buf[800];
        const char *names[2] = { s->certificate, s->additional_certificate };
        struct cert_files files[2] = { 0 };
        size_t n_files = 0;

        for (; n_files < 2 && names[n_files][0]; n_files++) {
                snprintf(key[n_files], sizeof(key[0]),
                         "/etc/postfix/smtptlsd/certs/%s/0a1b2c/privkey.pem", names[n_files]);
                snprintf(chain[n_files], sizeof(chain[0]),
                         "/etc/postfix/smtptlsd/certs/%s/0a1b2c/fullchain.pem", names[n_files]);
                files[n_files] = (struct cert_files){ key[n_files], chain[n_files] };
        }
        size_t n = settings_render(s, files, n_files, "/etc/ssl/certs/ca-certificates.crt",
                                   chain_buf, sizeof(chain_buf), params);
        FUZZ_ASSERT(n > 0 && n <= SETTINGS_PARAMS_MAX, "settings_render: %zu parameters", n);
        if (with_map && n < SETTINGS_PARAMS_MAX)
                params[n++] = (struct maincf_param){ "smtp_tls_policy_maps",
                                                     "lmdb:/etc/postfix/smtptlsd_tls_policy" };

        /* the rendered values say what was accepted */
        enum tls_mode in = s->inbound_mode == MODE_UNSET ? s->mode : s->inbound_mode;
        enum tls_mode out = s->outbound_mode == MODE_UNSET ? s->mode : s->outbound_mode;
        const char *v = param_value(params, n, "smtpd_tls_security_level");
        FUZZ_ASSERT(v && strcmp(v, modes[in]) == 0, "smtpd_tls_security_level '%s'", v);
        v = param_value(params, n, "smtp_tls_security_level");
        FUZZ_ASSERT(v && strcmp(v, modes[out]) == 0, "smtp_tls_security_level '%s'", v);
        v = param_value(params, n, "smtpd_tls_chain_files");
        if (n_files > 0) {
                /* each key directly followed by its chain, certificate first */
                char want[800];
                int w = snprintf(want, sizeof(want), "%s, %s", key[0], chain[0]);
                if (n_files > 1)
                        snprintf(want + w, sizeof(want) - (size_t)w, ", %s, %s", key[1], chain[1]);
                FUZZ_ASSERT(v && strcmp(v, want) == 0, "smtpd_tls_chain_files '%s'", v);
        } else {
                FUZZ_ASSERT(!v, "smtpd_tls_chain_files '%s' without a certificate", v);
        }
        FUZZ_ASSERT(!param_value(params, n, "smtpd_tls_cert_file") &&
                        !param_value(params, n, "smtpd_tls_key_file"),
                    "the legacy cert/key pair is rendered");
        v = param_value(params, n, "smtpd_tls_auth_only");
        FUZZ_ASSERT(v && strcmp(v, s->auth_only ? "yes" : "no") == 0, "smtpd_tls_auth_only");
        v = param_value(params, n, "smtpd_tls_received_header");
        FUZZ_ASSERT(v && strcmp(v, s->received_header ? "yes" : "no") == 0,
                    "smtpd_tls_received_header");
        char lv[2] = { (char)('0' + s->loglevel), 0 };
        v = param_value(params, n, "smtpd_tls_loglevel");
        FUZZ_ASSERT(v && strcmp(v, lv) == 0, "smtpd_tls_loglevel");
        v = param_value(params, n, "smtp_tls_loglevel");
        FUZZ_ASSERT(v && strcmp(v, lv) == 0, "smtp_tls_loglevel");

        check_rendered_main_cf(params, n);
}

/* updated_at is the store's (set on every write), not the body's: not compared. */
static bool settings_equal(const struct settings *a, const struct settings *b)
{
        return a->managed == b->managed && a->mode == b->mode &&
               a->inbound_mode == b->inbound_mode && a->outbound_mode == b->outbound_mode &&
               strcmp(a->certificate, b->certificate) == 0 && a->profile == b->profile &&
               a->auth_only == b->auth_only && a->received_header == b->received_header &&
               a->loglevel == b->loglevel && a->generation == b->generation;
}

static void settings_base(struct settings *s, unsigned variant)
{
        settings_defaults(s);
        s->generation = 41;
        /* as loaded from the store, where updated_at is NOT NULL (settings_to_json() would write
         * null for an empty one, which the spec refuses on the way back in) */
        snprintf(s->updated_at, sizeof(s->updated_at), "2026-11-22T09:00:00Z");
        switch (variant % 4) {
        case 0: /* never written: main.cf untouched so far */
                break;
        case 1:
                s->managed = true;
                s->mode = MODE_MAY;
                snprintf(s->certificate, sizeof(s->certificate), "mx1");
                snprintf(s->updated_at, sizeof(s->updated_at), "2026-11-22T10:00:00Z");
                break;
        case 2:
                s->managed = true;
                s->mode = MODE_ENCRYPT;
                s->inbound_mode = MODE_NONE;
                s->profile = PROFILE_MODERN;
                s->loglevel = 4;
                s->auth_only = false;
                break;
        default:
                s->managed = true;
                s->mode = MODE_NONE;
                s->outbound_mode = MODE_ENCRYPT;
                s->inbound_mode = MODE_MAY;
                snprintf(s->certificate, sizeof(s->certificate), "le.example-2_x");
                s->profile = PROFILE_LEGACY;
                s->received_header = true;
                break;
        }
}

static void fuzz_settings(json_t *body, bool patch, unsigned variant)
{
        struct settings s, before, again;
        struct problem p = { 0 };

        settings_base(&s, variant);
        before = s;
        int r = settings_apply_json(&s, body, patch, &p);
        if (r < 0) {
                fuzz_check_problem(&p, "", patch ? "settings PATCH" : "settings PUT");
                FUZZ_ASSERT(settings_equal(&s, &before), "settings: refused but changed");
                problem_done(&p);
                return;
        }
        FUZZ_ASSERT(r == 0 && p.code == PROBLEM_NONE, "settings: accepted with a problem set");
        settings_oracle(body, patch, &before, &s);

        /* GET then PUT back gives the same settings (the store stamps updated_at on write) */
        struct settings stored = s;
        snprintf(stored.updated_at, sizeof(stored.updated_at), "2026-11-22T10:00:01Z");
        json_t *j = settings_to_json(&stored);
        FUZZ_ASSERT(j, "settings_to_json: NULL");
        settings_base(&again, variant + 1);
        /* the same stored state the GET read: read-only members are compared with it */
        again.generation = s.generation;
        memcpy(again.updated_at, stored.updated_at, sizeof(again.updated_at));
        again.managed = s.managed;
        r = settings_apply_json(&again, j, false, &p);
        FUZZ_ASSERT(r == 0, "settings: own JSON refused: %s at %s", p.detail, p.field);
        FUZZ_ASSERT(settings_equal(&again, &s), "settings: JSON round trip differs");
        json_decref(j);

        check_settings_render(&s, variant & 4);
        problem_done(&p);
}

/* ================================================================================================
 * Policies
 * ============================================================================================== */

static const char *const policy_keys[] = { "destination", "level",      "match",
                                           "protocols",   "ciphers",    "exclude",
                                           "servername",  "tafile",     "connection_reuse",
                                           "note",        "enabled",    "managed_by",
                                           "created_at",  "updated_at", "generation",
                                           "warnings",    "fleet",      NULL };
static const char *const level_strings[] = { "none",   "may",       "encrypt",
                                             "dane",   "dane-only", "fingerprint",
                                             "verify", "secure",    NULL };
static const char *const cipher_strings[] = { "export", "low", "medium", "high", "null", NULL };

#define FP32                                                                                       \
        "0a:1b:2c:3d:4e:5f:60:71:82:93:a4:b5:c6:d7:e8:f9:0a:1b:2c:3d:4e:5f:60:71:82:93:a4:b5:c6:"  \
        "d7:e8:f9"

/* The stored rows a PUT or PATCH applies to (and the URL that names them). */
static const char *const policy_bases[] = {
        "{\"destination\":\"a.example\",\"level\":\"may\"}",
        "{\"destination\":\"[mx.example.net]:25\",\"level\":\"fingerprint\",\"match\":[\"" FP32
        "\"],\"protocols\":\"TLSv1.2 TLSv1.3\"}",
        "{\"destination\":\".example.com\",\"level\":\"verify\",\"match\":[\"hostname\","
        "\".example.com\"],\"protocols\":\">=TLSv1.2\",\"ciphers\":\"high\",\"exclude\":"
        "[\"aNULL\",\"MD5\"],\"note\":\"managed by ci\",\"managed_by\":\"ci.pipeline\"}",
        "{\"destination\":\"[192.0.2.1]\",\"level\":\"none\",\"enabled\":false,\"note\":\"off\"}",
};
static const char *const policy_urls[] = { "a.example", "[MX.example.net]:25", ".Example.COM",
                                           "[192.0.2.1]" };

static void policy_base(struct policy *p, unsigned variant)
{
        struct problem pr = { 0 };
        json_error_t e;
        json_t *j = json_loads(policy_bases[variant % ARRAY_SIZE(policy_bases)], 0, &e);
        memset(p, 0, sizeof(*p));
        if (!j || policy_apply_json(p, j, false, NULL, "", &pr) < 0)
                fuzz_fail("base policy %u refused: %s", variant, pr.detail);
        json_decref(j);
        problem_done(&pr);
}

static bool strv_equal(char *const *a, size_t na, char *const *b, size_t nb)
{
        if (na != nb)
                return false;
        for (size_t i = 0; i < na; i++)
                if (strcmp(a[i], b[i]) != 0)
                        return false;
        return true;
}

static const char *str_or_empty(const char *s)
{
        return s ? s : "";
}

static bool policy_equal(const struct policy *a, const struct policy *b)
{
        return strcmp(a->destination, b->destination) == 0 && a->level == b->level &&
               strv_equal(a->match, a->n_match, b->match, b->n_match) &&
               strcmp(a->protocols, b->protocols) == 0 && strcmp(a->ciphers, b->ciphers) == 0 &&
               strv_equal(a->exclude, a->n_exclude, b->exclude, b->n_exclude) &&
               strcmp(a->servername, b->servername) == 0 && strcmp(a->tafile, b->tafile) == 0 &&
               a->connection_reuse == b->connection_reuse &&
               strcmp(str_or_empty(a->note), str_or_empty(b->note)) == 0 &&
               a->enabled == b->enabled && strcmp(a->managed_by, b->managed_by) == 0;
}

/* A fingerprint's normal form, written here: hex pairs, upper case, joined with ':'. */
static void fingerprint_form(const char *in, char *out, size_t size)
{
        size_t o = 0, digits = 0;
        for (const char *c = in; *c && o + 3 < size; c++) {
                if (*c == ':')
                        continue;
                if (digits && digits % 2 == 0)
                        out[o++] = ':';
                out[o++] = *c >= 'a' && *c <= 'f' ? (char)(*c - 'a' + 'A') : *c;
                digits++;
        }
        out[o] = 0;
}

static void strv_set_from_json(json_t *a, char ***v, size_t *n)
{
        size_t i;
        json_t *it;
        for (i = 0; i < *n; i++)
                free((*v)[i]);
        free(*v);
        *v = NULL;
        *n = 0;
        if (!a || json_is_null(a) || json_array_size(a) == 0)
                return;
        *v = calloc(json_array_size(a) + 1, sizeof(char *));
        if (!*v)
                abort();
        json_array_foreach (a, i, it) {
                FUZZ_ASSERT(json_is_string(it) &&
                                json_string_length(it) == strlen(json_string_value(it)),
                            "policy: accepted a non-string or NUL list item");
                (*v)[i] = xstrdup(json_string_value(it));
        }
        *n = json_array_size(a);
}

/* What an accepted policy body must have produced, from api.md. */
static void policy_oracle(json_t *body, bool patch, const char *url, const struct policy *before,
                          const struct policy *got)
{
        struct policy want;
        const char *key;
        json_t *v;

        json_object_foreach (body, key, v)
                FUZZ_ASSERT(str_is_one_of(key, policy_keys), "policy: accepted unknown '%s'", key);
        if (patch) {
                if (policy_copy(&want, before) < 0)
                        abort();
        } else {
                FUZZ_ASSERT(json_object_get(body, "level"), "policy PUT: accepted without level");
                policy_init(&want);
                memcpy(want.managed_by, before->managed_by, sizeof(want.managed_by));
        }
        /* the destination: the URL's, or the body's; the same when both are sent */
        v = json_object_get(body, "destination");
        if (v)
                FUZZ_ASSERT(json_is_string(v) &&
                                json_string_length(v) == strlen(json_string_value(v)),
                            "policy: accepted a non-string destination");
        if (url) {
                destination_into(want.destination, sizeof(want.destination), url);
                if (v) {
                        char b[POLICY_DESTINATION_MAX + 2];
                        destination_into(b, sizeof(b), json_string_value(v));
                        FUZZ_ASSERT(strcmp(b, want.destination) == 0,
                                    "policy: accepted body destination '%s' for URL '%s'", b,
                                    want.destination);
                }
        } else if (v) {
                destination_into(want.destination, sizeof(want.destination), json_string_value(v));
        } else {
                FUZZ_ASSERT(patch && before->destination[0],
                            "policy: accepted without a destination");
        }
        if ((v = json_object_get(body, "level"))) {
                FUZZ_ASSERT(json_is_string(v) && index_of(json_string_value(v), level_strings) >= 0,
                            "policy: accepted a bad level");
                want.level = (enum tls_level)index_of(json_string_value(v), level_strings);
        }
        if ((v = json_object_get(body, "match")))
                strv_set_from_json(v, &want.match, &want.n_match);
        if ((v = json_object_get(body, "exclude")))
                strv_set_from_json(v, &want.exclude, &want.n_exclude);
        if ((v = json_object_get(body, "protocols"))) {
                want.protocols[0] = 0;
                if (!json_is_null(v)) {
                        FUZZ_ASSERT(json_is_string(v), "policy: accepted non-string protocols");
                        char out[128];
                        struct problem pr = { 0 };
                        FUZZ_ASSERT(
                            policy_protocols_normalize(json_string_value(v), out, "", &pr) == 0,
                            "policy: accepted protocols that do not normalize");
                        memcpy(want.protocols, out, sizeof(out));
                }
        }
        if ((v = json_object_get(body, "ciphers"))) {
                want.ciphers[0] = 0;
                if (!json_is_null(v)) {
                        FUZZ_ASSERT(json_is_string(v) &&
                                        str_is_one_of(json_string_value(v), cipher_strings),
                                    "policy: accepted bad ciphers");
                        snprintf(want.ciphers, sizeof(want.ciphers), "%s", json_string_value(v));
                }
        }
        if ((v = json_object_get(body, "note"))) {
                free(want.note);
                want.note = NULL;
                if (!json_is_null(v)) {
                        FUZZ_ASSERT(json_is_string(v) &&
                                        json_string_length(v) == strlen(json_string_value(v)) &&
                                        json_string_length(v) <= POLICY_NOTE_MAX,
                                    "policy: accepted a bad note");
                        want.note = xstrdup(json_string_value(v));
                }
        }
        if ((v = json_object_get(body, "servername"))) {
                want.servername[0] = 0;
                if (!json_is_null(v)) {
                        const char *sv = json_is_string(v) ? json_string_value(v) : "";
                        size_t sn = strlen(sv);
                        FUZZ_ASSERT(sn > 0 && sn <= POLICY_SERVERNAME_MAX &&
                                        sn == json_string_length(v) &&
                                        strspn(sv, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstu"
                                                   "vwxyz0123456789.-_") == sn,
                                    "policy: accepted a bad servername");
                        for (size_t i = 0; i <= sn; i++)
                                want.servername[i] =
                                    (char)(sv[i] >= 'A' && sv[i] <= 'Z' ? sv[i] - 'A' + 'a'
                                                                        : sv[i]);
                }
        }
        if ((v = json_object_get(body, "tafile"))) {
                want.tafile[0] = 0;
                if (!json_is_null(v)) {
                        const char *tv = json_is_string(v) ? json_string_value(v) : "";
                        size_t tn = strlen(tv);
                        FUZZ_ASSERT(tn > 1 && tn <= POLICY_TAFILE_MAX && tv[0] == '/' &&
                                        tn == json_string_length(v) &&
                                        strspn(tv, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstu"
                                                   "vwxyz0123456789._+-/") == tn &&
                                        !strstr(tv, "//") && !strstr(tv, "/./") &&
                                        !strstr(tv, "/../"),
                                    "policy: accepted a bad tafile");
                        snprintf(want.tafile, sizeof(want.tafile), "%s", tv);
                }
        }
        if ((v = json_object_get(body, "connection_reuse"))) {
                FUZZ_ASSERT(json_is_null(v) || json_is_boolean(v),
                            "policy: accepted a bad connection_reuse");
                want.connection_reuse = json_is_null(v)   ? POLICY_REUSE_UNSET
                                        : json_is_true(v) ? POLICY_REUSE_YES
                                                          : POLICY_REUSE_NO;
        }
        if ((v = json_object_get(body, "enabled"))) {
                FUZZ_ASSERT(json_is_boolean(v), "policy: accepted a non-boolean enabled");
                want.enabled = json_is_true(v);
        }
        if ((v = json_object_get(body, "managed_by"))) {
                want.managed_by[0] = 0;
                if (!json_is_null(v)) {
                        FUZZ_ASSERT(json_is_string(v) && cert_name_ok(json_string_value(v)),
                                    "policy: accepted a bad managed_by");
                        snprintf(want.managed_by, sizeof(want.managed_by), "%s",
                                 json_string_value(v));
                }
        }
        /* match items are rewritten into their normal form at the levels that take them */
        for (size_t i = 0; i < want.n_match; i++) {
                char form[300];
                if (want.level == TLS_LEVEL_FINGERPRINT)
                        fingerprint_form(want.match[i], form, sizeof(form));
                else
                        lower_into(form, sizeof(form), want.match[i]);
                free(want.match[i]);
                want.match[i] = xstrdup(form);
        }
        FUZZ_ASSERT(policy_equal(&want, got),
                    "policy: accepted values differ from the body (destination '%s'/'%s', level "
                    "%d/%d, match %zu/%zu, protocols '%s'/'%s', exclude %zu/%zu, managed_by "
                    "'%s'/'%s')",
                    got->destination, want.destination, got->level, want.level, got->n_match,
                    want.n_match, got->protocols, want.protocols, got->n_exclude, want.n_exclude,
                    got->managed_by, want.managed_by);
        policy_done(&want);
}

/* The map entry, built here from the struct: "key<TAB>level[ attr=value]...". */
static char *expected_entry(const struct policy *p)
{
        struct sbuf b = { 0 };
        sb_add(&b, p->destination);
        sb_add(&b, "\t");
        sb_add(&b, level_strings[p->level]);
        if (p->n_match) {
                sb_add(&b, " match=");
                for (size_t i = 0; i < p->n_match; i++) {
                        if (i)
                                sb_add(&b, p->level == TLS_LEVEL_FINGERPRINT ? "|" : ":");
                        sb_add(&b, p->match[i]);
                }
        }
        if (p->protocols[0]) {
                sb_add(&b, " protocols=");
                sb_add(&b, p->protocols);
        }
        if (p->ciphers[0]) {
                sb_add(&b, " ciphers=");
                sb_add(&b, p->ciphers);
        }
        if (p->n_exclude) {
                sb_add(&b, " exclude=");
                for (size_t i = 0; i < p->n_exclude; i++) {
                        if (i)
                                sb_add(&b, ":");
                        sb_add(&b, p->exclude[i]);
                }
        }
        if (p->servername[0]) {
                sb_add(&b, " servername=");
                sb_add(&b, p->servername);
        }
        if (p->tafile[0]) {
                sb_add(&b, " tafile=");
                sb_add(&b, p->tafile);
        }
        if (p->connection_reuse != POLICY_REUSE_UNSET) {
                sb_add(&b, " connection_reuse=");
                sb_add(&b, p->connection_reuse == POLICY_REUSE_YES ? "yes" : "no");
        }
        return b.p;
}

static bool key_byte_ok(unsigned char c)
{
        return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || (c && strchr("._-[]:", c));
}

static bool value_byte_ok(unsigned char c)
{
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               (c && strchr(".:!|<>=+_-", c));
}

/* One entry: whitelisted key, one TAB, tokens of whitelisted bytes separated by single spaces. */
static void check_entry_bytes(const char *line)
{
        size_t i = 0, n = strlen(line);
        while (i < n && key_byte_ok((unsigned char)line[i]))
                i++;
        FUZZ_ASSERT(i > 0 && i < n && line[i] == '\t', "map entry '%s': bad key", line);
        bool token = false;
        for (i++; i < n; i++) {
                if (line[i] == ' ') {
                        FUZZ_ASSERT(token, "map entry '%s': empty token", line);
                        token = false;
                } else {
                        FUZZ_ASSERT(value_byte_ok((unsigned char)line[i]),
                                    "map entry '%s': byte 0x%02x", line, (unsigned char)line[i]);
                        token = true;
                }
        }
        FUZZ_ASSERT(token, "map entry '%s': no value", line);
}

/* Renders the accepted policies as the worker does and reads the map back as postmap does. */
static void check_map(struct policy *const *items, size_t n)
{
        char **want = calloc(n ? n : 1, sizeof(char *));
        size_t *order = calloc(n ? n : 1, sizeof(size_t));
        size_t m = 0;
        if (!want || !order)
                abort();

        for (size_t i = 0; i < n; i++) {
                char *line = NULL;
                struct problem pr = { 0 };
                FUZZ_ASSERT(policy_check(items[i], "", &pr) == 0,
                            "policy_check refuses an accepted policy: %s at %s", pr.detail,
                            pr.field);
                int r = policy_render_entry(items[i], &line);
                FUZZ_ASSERT(r == 0, "policy_render_entry: %d for an accepted policy", r);
                char *exp = expected_entry(items[i]);
                FUZZ_ASSERT(strcmp(line, exp) == 0, "rendered '%s', expected '%s'", line, exp);
                check_entry_bytes(line);
                free(exp);
                if (items[i]->enabled) {
                        want[i] = line;
                        /* insertion into destination order */
                        size_t k = m++;
                        while (k > 0 && strcmp(items[order[k - 1]]->destination,
                                               items[i]->destination) > 0) {
                                order[k] = order[k - 1];
                                k--;
                        }
                        order[k] = i;
                } else {
                        free(line);
                }
                problem_done(&pr);
        }

        char *text = NULL;
        size_t len = 0;
        int r = policy_map_render((const struct policy *const *)items, n, &text, &len);
        FUZZ_ASSERT(r == 0, "policy_map_render: %d", r);
        FUZZ_ASSERT(strlen(text) == len, "policy_map_render: NUL in the map");

        /* the text: the header, then exactly the expected lines, in destination order (an
         * internationalized row's line is followed by the same entry under its U-label key) */
        size_t hl = strlen(POLICY_MAP_HEADER), entries = m;
        FUZZ_ASSERT(len >= hl && memcmp(text, POLICY_MAP_HEADER, hl) == 0, "map: no header");
        const char *t = text + hl;
        char ukey[DESTINATION_UKEY_MAX + 1];
        for (size_t k = 0; k < m; k++) {
                const char *line = want[order[k]], *tab = strchr(line, '\t');
                size_t ln = strlen(line);
                FUZZ_ASSERT(strncmp(t, line, ln) == 0 && t[ln] == '\n', "map: line %zu is not '%s'",
                            k + 2, line);
                t += ln + 1;
                if (destination_unicode_key(items[order[k]]->destination, ukey) > 0) {
                        size_t ul = strlen(ukey), vl = strlen(tab);
                        FUZZ_ASSERT(strncmp(t, ukey, ul) == 0 && strncmp(t + ul, tab, vl) == 0 &&
                                        t[ul + vl] == '\n',
                                    "map: no U-label entry '%s' after '%s'", ukey, line);
                        t += ul + vl + 1;
                        entries++;
                }
        }
        FUZZ_ASSERT(*t == 0, "map: extra text '%.40s'", t);

        /* read back: the same keys and values, nothing more */
        struct policy_map_entry *e = NULL;
        size_t ne = 0;
        r = policy_map_parse(text, len, &e, &ne);
        FUZZ_ASSERT(r == 0, "policy_map_parse: %d", r);
        FUZZ_ASSERT(ne == entries, "map: %zu entries read back, %zu expected", ne, entries);
        for (size_t k = 0, j = 0; k < m; k++, j++) {
                const struct policy *p = items[order[k]];
                const char *tab = strchr(want[order[k]], '\t');
                FUZZ_ASSERT(strcmp(e[j].key, p->destination) == 0 &&
                                strcmp(e[j].value, tab + 1) == 0,
                            "map: entry %zu reads back as '%s' '%s', rendered '%s'", j, e[j].key,
                            e[j].value, want[order[k]]);
                FUZZ_ASSERT(e[j].line == j + 2, "map: entry %zu on line %zu", j, e[j].line);
                if (destination_unicode_key(p->destination, ukey) > 0) {
                        j++;
                        FUZZ_ASSERT(strcmp(e[j].key, ukey) == 0 && strcmp(e[j].value, tab + 1) == 0,
                                    "map: entry %zu reads back as '%s', want the U-label '%s'", j,
                                    e[j].key, ukey);
                }
        }
        policy_map_entries_free(e, ne);
        free(text);
        for (size_t i = 0; i < n; i++)
                free(want[i]);
        free(want);
        free(order);
}

/* GET then PUT back (the worker re-applies the API's normalized JSON): the same policy. */
static void check_policy_round_trip(const struct policy *p)
{
        struct policy again = { 0 };
        struct problem pr = { 0 };
        json_t *j = policy_to_json(p);
        FUZZ_ASSERT(j, "policy_to_json: NULL");
        int r = policy_apply_json(&again, j, false, NULL, "", &pr);
        FUZZ_ASSERT(r == 0, "policy: own JSON refused: %s at %s", pr.detail, pr.field);
        FUZZ_ASSERT(policy_equal(&again, p), "policy: JSON round trip differs");
        json_decref(j);
        policy_done(&again);
        problem_done(&pr);
}

enum policy_op {
        OP_PUT,
        OP_POST,
        OP_PATCH,
};

static void fuzz_policy(json_t *body, enum policy_op op, unsigned variant)
{
        struct policy p, before;
        struct problem pr = { 0 };
        const char *url = op == OP_POST ? NULL : policy_urls[variant % ARRAY_SIZE(policy_urls)];
        bool patch = op == OP_PATCH;

        if (op == OP_POST)
                memset(&p, 0, sizeof(p));
        else
                policy_base(&p, variant);
        if (policy_copy(&before, &p) < 0)
                abort();
        int r = policy_apply_json(&p, body, patch, url, "", &pr);
        if (r < 0) {
                fuzz_check_problem(&pr, "", "policy");
                FUZZ_ASSERT(policy_equal(&p, &before), "policy: refused but changed");
        } else {
                FUZZ_ASSERT(r == 0 && pr.code == PROBLEM_NONE,
                            "policy: accepted with a problem set");
                policy_oracle(body, patch, url, &before, &p);
                check_policy_round_trip(&p);
                struct policy *one = &p;
                check_map(&one, 1);
        }
        policy_done(&p);
        policy_done(&before);
        problem_done(&pr);
}

/* PUT /api/v1/tls-policies: every item validated with prefix /items/N, as the API does; the
 * accepted set must render one entry per enabled item and read back identically. */
static void fuzz_bulk(json_t *body)
{
        const char *key;
        json_t *v, *items, *item;
        size_t i;

        json_object_foreach (body, key, v)
                if (strcmp(key, "items") != 0)
                        return; /* refused by the API before any item is read */
        items = json_object_get(body, "items");
        if (!json_is_array(items))
                return;
        size_t n = json_array_size(items), ok = 0;
        struct policy *v_items = calloc(n ? n : 1, sizeof(struct policy));
        struct policy **ptrs = calloc(n ? n : 1, sizeof(struct policy *));
        if (!v_items || !ptrs)
                abort();
        json_array_foreach (items, i, item) {
                char prefix[48];
                struct problem pr = { 0 };
                struct policy empty = { 0 };
                snprintf(prefix, sizeof(prefix), "/items/%zu", i);
                int r = policy_apply_json(&v_items[i], item, false, NULL, prefix, &pr);
                if (r < 0) {
                        fuzz_check_problem(&pr, prefix, "bulk item");
                        FUZZ_ASSERT(policy_equal(&v_items[i], &empty),
                                    "bulk: refused item changed");
                        problem_done(&pr);
                        break;
                }
                FUZZ_ASSERT(r == 0 && pr.code == PROBLEM_NONE, "bulk: accepted with a problem");
                policy_oracle(item, false, NULL, &empty, &v_items[i]);
                problem_done(&pr);
                ok++;
                if (v_items[i].managed_by[0])
                        break; /* the API refuses managed rows in a bulk replace */
                bool dup = false;
                for (size_t k = 0; k < i && !dup; k++)
                        dup = strcmp(v_items[k].destination, v_items[i].destination) == 0;
                if (dup)
                        break; /* duplicate_destination */
                ptrs[i] = &v_items[i];
        }
        if (ok == n && (n == 0 || ptrs[n - 1])) {
                for (size_t k = 0; k < n; k++)
                        check_policy_round_trip(ptrs[k]);
                check_map(ptrs, n);
        }
        for (size_t k = 0; k < n; k++)
                policy_done(&v_items[k]);
        free(v_items);
        free(ptrs);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        json_t *body = NULL;
        struct problem pr = { 0 };

        if (size < 1)
                return 0;
        unsigned sel = data[0], kind = (sel & 7) % 6, variant = sel >> 3;
        const char *text = (const char *)data + 1;
        size_t len = size - 1;

        int r = json_parse_body(text, len, &body, &pr);
        if (r < 0) {
                fuzz_check_problem(&pr, "", "json_parse_body");
                FUZZ_ASSERT(pr.code == PROBLEM_INVALID_JSON || pr.code == PROBLEM_INVALID_VALUE,
                            "json_parse_body: %s", problem_code_name(pr.code));
                FUZZ_ASSERT(pr.field[0] == 0, "json_parse_body: field '%s'", pr.field);
                problem_done(&pr);
                return 0;
        }
        FUZZ_ASSERT(r == 0 && json_is_object(body), "json_parse_body: accepted a non-object");

        switch (kind) {
        case 0:
        case 1:
                fuzz_settings(body, kind == 1, variant);
                break;
        case 2:
                fuzz_policy(body, OP_PUT, variant);
                break;
        case 3:
                fuzz_policy(body, OP_POST, variant);
                break;
        case 4:
                fuzz_policy(body, OP_PATCH, variant);
                break;
        default:
                fuzz_bulk(body);
                break;
        }
        json_decref(body);
        problem_done(&pr);
        return 0;
}
