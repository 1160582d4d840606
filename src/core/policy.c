/* policy.c - TLS policies: JSON validation (one spec table for the single-row
 * and bulk paths), Postfix's level/attribute rules, whitelisted rendering of the map, and a reader
 * of map source text (see policy.h). Pure; any thread. */
#include "smtptlsd/policy.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <strings.h>

#include "smtptlsd/destination.h"
#include "smtptlsd/json_spec.h"

static const char *const level_names[] = {
        [TLS_LEVEL_NONE] = "none",
        [TLS_LEVEL_MAY] = "may",
        [TLS_LEVEL_ENCRYPT] = "encrypt",
        [TLS_LEVEL_DANE] = "dane",
        [TLS_LEVEL_DANE_ONLY] = "dane-only",
        [TLS_LEVEL_FINGERPRINT] = "fingerprint",
        [TLS_LEVEL_VERIFY] = "verify",
        [TLS_LEVEL_SECURE] = "secure",
        [_TLS_LEVEL_MAX] = NULL,
};

static const char *const cipher_grades[] = { "export", "low", "medium", "high", "null", NULL };

/* Indexes into proto_names are also the bit numbers of a protocol set. */
static const char *const proto_names[] = { "SSLv2",   "SSLv3",   "TLSv1", "TLSv1.1",
                                           "TLSv1.2", "TLSv1.3", NULL };
#define PROTO_ALL    0x3fu
#define PROTO_TLS    0x3cu /* what OpenSSL 3 can still negotiate: TLSv1 .. TLSv1.3 */
#define PROTO_STRONG 0x30u /* TLSv1.2, TLSv1.3: what OpenSSL 3 negotiates at security level 1 */

/* The attributes smtptlsd renders, in rendering order, and which level takes which (after
 * Postfix 3.7 src/smtp/smtp_tls_policy.c: every attribute is ignored at "none", which we refuse
 * instead; "match" only at fingerprint, verify and secure; fingerprint needs at least one;
 * "tafile" only where trust is PKIX (verify, secure); servername and connection_reuse at every
 * level that has TLS). */
enum attr {
        ATTR_MATCH,
        ATTR_PROTOCOLS,
        ATTR_CIPHERS,
        ATTR_EXCLUDE,
        ATTR_SERVERNAME,
        ATTR_TAFILE,
        ATTR_REUSE,
        _ATTR_MAX,
};
static const char *const attr_names[_ATTR_MAX] = {
        "match", "protocols", "ciphers", "exclude", "servername", "tafile", "connection_reuse",
};
#define A(x)       (1u << ATTR_##x)
#define ATTRS_TLS  (A(PROTOCOLS) | A(CIPHERS) | A(EXCLUDE) | A(SERVERNAME) | A(REUSE))
#define ATTRS_FPR  (A(MATCH) | ATTRS_TLS)
#define ATTRS_PKIX (A(TAFILE) | ATTRS_FPR)

/* weak_tls_ok: the security level Postfix gives OpenSSL is 0 (may, encrypt), so TLSv1 and
 * TLSv1.1 can still be negotiated; at the levels that authenticate the peer it is 1, where
 * OpenSSL 3 refuses them (Postfix's tls_client.c, TLS_MUST_MATCH). */
static const struct level_rule {
        unsigned allowed, required;
        bool weak_tls_ok;
} level_rules[_TLS_LEVEL_MAX] = {
        [TLS_LEVEL_NONE] = { 0, 0, true },
        [TLS_LEVEL_MAY] = { ATTRS_TLS, 0, true },
        [TLS_LEVEL_ENCRYPT] = { ATTRS_TLS, 0, true },
        [TLS_LEVEL_DANE] = { ATTRS_TLS, 0, false },
        [TLS_LEVEL_DANE_ONLY] = { ATTRS_TLS, 0, false },
        [TLS_LEVEL_FINGERPRINT] = { ATTRS_FPR, A(MATCH), false },
        [TLS_LEVEL_VERIFY] = { ATTRS_PKIX, 0, false },
        [TLS_LEVEL_SECURE] = { ATTRS_PKIX, 0, false },
};

void policy_etag(int64_t version, char *buf, size_t size)
{
        snprintf(buf, size, "\"policy-%lld\"", (long long)version);
}

void policies_etag(int64_t version, char *buf, size_t size)
{
        snprintf(buf, size, "\"policies-%lld\"", (long long)version);
}

const char *tls_level_to_string(enum tls_level l)
{
        return (unsigned)l < _TLS_LEVEL_MAX ? level_names[l] : NULL;
}

int tls_level_from_string(const char *s, enum tls_level *ret)
{
        if (!s)
                return -EINVAL;
        for (unsigned i = 0; i < _TLS_LEVEL_MAX; i++)
                if (streq(level_names[i], s)) {
                        *ret = (enum tls_level)i;
                        return 0;
                }
        return -EINVAL;
}

/* ---- small helpers ---- */

static inline bool is_digit(unsigned char c)
{
        return c >= '0' && c <= '9';
}

static inline bool is_alnum(unsigned char c)
{
        return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static inline bool is_hex(unsigned char c)
{
        return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static inline char to_lower(char c)
{
        return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

static inline char to_upper(char c)
{
        return c >= 'a' && c <= 'z' ? (char)(c - 'a' + 'A') : c;
}

/* Postfix's ISSPACE (isspace() in the C locale). */
static inline bool is_space(unsigned char c)
{
        return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* A readable name for a byte in a detail: 'x' or 0x0a. */
static const char *byte_name(unsigned char c, char buf[static 8])
{
        if (c > 0x20 && c < 0x7f)
                snprintf(buf, 8, "'%c'", c);
        else
                snprintf(buf, 8, "0x%02x", c);
        return buf;
}

static int bad(struct problem *reterr, enum problem_code code, const char *field, const char *fmt,
               ...) _printf_(4, 5);
static int bad(struct problem *reterr, enum problem_code code, const char *field, const char *fmt,
               ...)
{
        va_list ap;
        va_start(ap, fmt);
        problem_setv(reterr, code, field, fmt, ap);
        va_end(ap);
        return -EINVAL;
}

static int oom(struct problem *reterr)
{
        problem_set(reterr, PROBLEM_INTERNAL_ERROR, NULL, "out of memory");
        return -ENOMEM;
}

static void strv_free(char **v, size_t n)
{
        if (!v)
                return;
        for (size_t i = 0; i < n; i++)
                free(v[i]);
        free(v);
}

static int strv_copy(char *const *v, size_t n, char ***ret)
{
        *ret = NULL;
        if (n == 0)
                return 0;
        char **c = calloc(n + 1, sizeof(char *));
        if (!c)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++)
                if (!(c[i] = strdup(v[i] ? v[i] : ""))) {
                        strv_free(c, i);
                        return -ENOMEM;
                }
        *ret = c;
        return 0;
}

/* ---- struct policy ---- */

void policy_init(struct policy *p)
{
        *p = (struct policy){ .level = TLS_LEVEL_NONE, .enabled = true };
}

void policy_done(struct policy *p)
{
        if (!p)
                return;
        strv_free(p->match, p->n_match);
        strv_free(p->exclude, p->n_exclude);
        free(p->note);
        *p = (struct policy){ 0 };
}

int policy_copy(struct policy *dst, const struct policy *src)
{
        struct policy n = *src;
        n.match = n.exclude = NULL;
        n.note = NULL;
        if (strv_copy(src->match, src->n_match, &n.match) < 0)
                goto fail;
        if (strv_copy(src->exclude, src->n_exclude, &n.exclude) < 0)
                goto fail;
        if (src->note && !(n.note = strdup(src->note)))
                goto fail;
        *dst = n;
        return 0;
fail:
        n.n_match = n.match ? n.n_match : 0;
        n.n_exclude = n.exclude ? n.n_exclude : 0;
        policy_done(&n);
        return -ENOMEM;
}

/* ---- names: destinations and verify patterns ---- */

/* A DNS name of LDH labels (destination.h); `what` starts the detail. */
static int check_domain(const char *s, size_t n, const char *what, bool bracketed,
                        enum problem_code code, const char *field, struct problem *reterr)
{
        return destination_check_name(s, n, what, bracketed ? NAME_BRACKETED : 0, code, field,
                                      reterr);
}

/* verify/secure "match" patterns: hostname, nexthop, dot-nexthop, a domain, or .domain. */
static int pattern_normalize(const char *in, char out[static 256], const char *field,
                             struct problem *reterr)
{
        size_t n = strlen(in);
        out[0] = 0;
        if (n == 0 || n > 254)
                return bad(reterr, PROBLEM_INVALID_VALUE, field,
                           "a match pattern is hostname, nexthop, dot-nexthop, a domain or "
                           ".domain");
        const char *d = in[0] == '.' ? in + 1 : in;
        int r = check_domain(d, n - (size_t)(d - in), "the match pattern", true,
                             PROBLEM_INVALID_VALUE, field, reterr);
        if (r < 0)
                return r;
        for (size_t i = 0; i <= n; i++)
                out[i] = to_lower(in[i]);
        return 0;
}

#define FPR_MAX POLICY_FINGERPRINT_MAX

int policy_fingerprint_normalize(const char *in, char out[static FPR_MAX], const char *field,
                                 struct problem *reterr)
{
        size_t n = strlen(in), bytes = 0, o = 0;
        bool colons = strchr(in, ':') != NULL;
        out[0] = 0;
        if (colons ? (n + 1) % 3 == 0 : n % 2 == 0) {
                bytes = colons ? (n + 1) / 3 : n / 2;
                for (size_t i = 0; i < n && bytes; i++) {
                        bool sep = colons && i % 3 == 2;
                        if (sep ? in[i] != ':' : !is_hex((unsigned char)in[i]))
                                bytes = 0;
                }
        }
        if (bytes != 32 && bytes != 64)
                return bad(reterr, PROBLEM_INVALID_VALUE, field,
                           "a fingerprint is a SHA-256 or SHA-512 digest: 32 or 64 hex byte "
                           "pairs separated by ':'");
        for (size_t i = 0; i < bytes; i++) {
                const char *h = in + (colons ? 3 * i : 2 * i);
                if (i)
                        out[o++] = ':';
                out[o++] = to_upper(h[0]);
                out[o++] = to_upper(h[1]);
        }
        out[o] = 0;
        return 0;
}

/* ---- protocols ---- */

static int proto_lookup(const char *s, size_t n)
{
        for (int i = 0; proto_names[i]; i++)
                if (strlen(proto_names[i]) == n && strncasecmp(proto_names[i], s, n) == 0)
                        return i;
        return -1;
}

/* *set (may be NULL) receives the protocols left enabled, as bits of proto_names. */
static int protocols_normalize(const char *in, char out[static 128], unsigned *set_out,
                               const char *field, struct problem *reterr)
{
        const enum problem_code C = PROBLEM_INVALID_VALUE;
        unsigned include = 0, exclude = 0;
        int lo = -1, hi = -1;
        size_t o = 0, ntok = 0;
        char cb[8];

        out[0] = 0;
        if (!in || !*in)
                return 0;
        for (const char *c = in; *c; c++)
                if (!is_alnum((unsigned char)*c) && !strchr(".!<>=:, ", *c))
                        return bad(reterr, C, field,
                                   "protocols contains %s; it is a list such as '>=TLSv1.2' or "
                                   "'!SSLv2:!SSLv3'",
                                   byte_name((unsigned char)*c, cb));
        for (const char *s = in; *s;) {
                size_t tl = strcspn(s, ":, ");
                if (tl == 0) {
                        s++;
                        continue;
                }
                const char *name = s;
                char kind = 0; /* '>' floor, '<' ceiling, '!' exclude, 0 include */
                if (tl >= 2 && (s[0] == '>' || s[0] == '<') && s[1] == '=') {
                        kind = s[0];
                        name += 2;
                } else if (s[0] == '!') {
                        kind = '!';
                        name++;
                }
                size_t nl = tl - (size_t)(name - s);
                int idx = proto_lookup(name, nl);
                if (idx < 0)
                        return bad(reterr, C, field,
                                   "protocols: '%.*s' is not one of SSLv2, SSLv3, TLSv1, "
                                   "TLSv1.1, TLSv1.2, TLSv1.3 (optionally after '!', '>=' or "
                                   "'<=')",
                                   (int)(tl > 40 ? 40 : tl), s);
                unsigned bit = 1u << idx;
                if (kind == '>' || kind == '<') {
                        int *lim = kind == '>' ? &lo : &hi;
                        if (*lim >= 0)
                                return bad(reterr, C, field, "protocols has more than one '%c='",
                                           kind);
                        *lim = idx;
                } else {
                        if ((include | exclude) & bit)
                                return bad(reterr, C, field, "protocols names %s twice",
                                           proto_names[idx]);
                        if (kind == '!')
                                exclude |= bit;
                        else
                                include |= bit;
                }
                int w = snprintf(out + o, 128 - o, "%s%s%s", o ? ":" : "",
                                 kind == '>'   ? ">="
                                 : kind == '<' ? "<="
                                 : kind == '!' ? "!"
                                               : "",
                                 proto_names[idx]);
                if (w < 0 || (size_t)w >= 128 - o) {
                        out[0] = 0;
                        return bad(reterr, C, field, "protocols is too long");
                }
                o += (size_t)w;
                ntok++;
                s += tl;
        }
        if (ntok == 0)
                return bad(reterr, C, field, "protocols names no protocol; send null to clear it");
        if (lo >= 0 && hi >= 0 && lo > hi) {
                out[0] = 0;
                return bad(reterr, C, field, "protocols has its '>=' above its '<='");
        }
        unsigned set = (include ? include : PROTO_ALL) & ~exclude;
        for (int i = 0; proto_names[i]; i++)
                if ((lo >= 0 && i < lo) || (hi >= 0 && i > hi))
                        set &= ~(1u << i);
        if (!(set & PROTO_TLS)) {
                out[0] = 0;
                return bad(reterr, C, field,
                           "protocols leaves no usable protocol (TLSv1 to TLSv1.3) enabled");
        }
        if (set_out)
                *set_out = set;
        return 0;
}

int policy_protocols_normalize(const char *in, char out[static 128], const char *field,
                               struct problem *reterr)
{
        int r = protocols_normalize(in, out, NULL, field, reterr);
        if (r < 0)
                out[0] = 0;
        return r;
}

/* ---- attribute items ---- */

static int check_exclude_item(const char *s, const char *field, struct problem *reterr)
{
        size_t n = strlen(s);
        if (n == 0 || n > POLICY_EXCLUDE_ITEM || !is_alnum((unsigned char)s[0]))
                return bad(reterr, PROBLEM_INVALID_VALUE, field,
                           "an exclude item is one OpenSSL cipher name or alias: 1 to %d of "
                           "[A-Za-z0-9._+-], starting with a letter or digit",
                           POLICY_EXCLUDE_ITEM);
        for (size_t i = 0; i < n; i++) {
                char cb[8];
                unsigned char c = (unsigned char)s[i];
                if (!is_alnum(c) && !strchr("._+-", c))
                        return bad(reterr, PROBLEM_INVALID_VALUE, field,
                                   "an exclude item contains %s; send each cipher name as its "
                                   "own item (characters [A-Za-z0-9._+-])",
                                   byte_name(c, cb));
        }
        return 0;
}

/* servername: Postfix 3.7 takes a valid_hostname() (sent as SNI), or the keyword "hostname" (the
 * MX host's name) or "nexthop" (the next-hop domain). We take LDH names, a subset, lower case. */
static int servername_normalize(const char *in, char out[static POLICY_SERVERNAME_MAX + 1],
                                const char *field, struct problem *reterr)
{
        size_t n = strlen(in);
        out[0] = 0;
        if (n == 0 || n > POLICY_SERVERNAME_MAX)
                return bad(reterr, PROBLEM_INVALID_VALUE, field,
                           "servername is a host name of 1 to %d characters, or hostname or "
                           "nexthop",
                           POLICY_SERVERNAME_MAX);
        int r = check_domain(in, n, "servername", true, PROBLEM_INVALID_VALUE, field, reterr);
        if (r < 0)
                return r;
        for (size_t i = 0; i <= n; i++)
                out[i] = to_lower(in[i]);
        return 0;
}

/* tafile: an absolute path of [A-Za-z0-9._+-] components, no '.' or '..' component, no empty
 * one: nothing that could split the map value (Postfix splits attributes at commas and spaces)
 * and nothing that hides where the file is. Whether the file loads is the worker's check. */
static int check_tafile(const char *s, const char *field, struct problem *reterr)
{
        size_t n = strlen(s);
        char cb[8];
        if (n < 2 || n > POLICY_TAFILE_MAX || s[0] != '/')
                return bad(reterr, PROBLEM_INVALID_VALUE, field,
                           "tafile is the absolute path of a PEM file of trust anchors (at most "
                           "%d characters)",
                           POLICY_TAFILE_MAX);
        for (size_t i = 0; i < n; i++) {
                unsigned char c = (unsigned char)s[i];
                if (!is_alnum(c) && !strchr("._+-/", c))
                        return bad(reterr, PROBLEM_INVALID_VALUE, field,
                                   "tafile contains %s; a path here is made of [A-Za-z0-9._+-] "
                                   "and '/'",
                                   byte_name(c, cb));
        }
        for (const char *c = s; *c;) {
                const char *e = strchrnul(c + 1, '/');
                size_t l = (size_t)(e - c - 1);
                if (l == 0 || (l == 1 && c[1] == '.') || (l == 2 && c[1] == '.' && c[2] == '.'))
                        return bad(reterr, PROBLEM_INVALID_VALUE, field,
                                   "tafile has an empty, '.' or '..' path component");
                c = e;
        }
        return 0;
}

bool policy_manager_is_valid(const char *s)
{
        size_t n = strlen(s);
        if (n == 0 || n > POLICY_MANAGER_MAX)
                return false;
        for (size_t i = 0; i < n; i++) {
                char c = s[i];
                bool ok = (c >= 'a' && c <= 'z') || is_digit((unsigned char)c) ||
                          (i > 0 && (c == '.' || c == '_' || c == '-'));
                if (!ok)
                        return false;
        }
        return true;
}

static const char *digest_of_length(size_t len)
{
        return len == 95 ? "SHA-256" : len == 191 ? "SHA-512" : "other";
}

int policy_check_fingerprint_digest(const struct fingerprint_digest *d, const char *fpr,
                                    const char *field, struct problem *reterr)
{
        size_t n = strlen(fpr);
        if (!d->len || n == d->len)
                return 0;
        const char *fits = n == 191 ? "sha512" : "sha256";
        if (d->len != 95 && d->len != 191)
                return bad(reterr, PROBLEM_INVALID_VALUE, field,
                           "a %s fingerprint never matches: Postfix computes %s fingerprints "
                           "(smtp_tls_fingerprint_digest = %s%s), and smtptlsd takes SHA-256 and "
                           "SHA-512 ones only; set smtp_tls_fingerprint_digest = %s in main.cf",
                           digest_of_length(n), d->name, d->name,
                           streq(d->name, "md5") ? ", the default below compatibility_level 3.6"
                                                 : "",
                           fits);
        return bad(reterr, PROBLEM_INVALID_VALUE, field,
                   "a %s fingerprint never matches: Postfix computes %s fingerprints "
                   "(smtp_tls_fingerprint_digest = %s); send the %s digest instead, or set "
                   "smtp_tls_fingerprint_digest = %s in main.cf (one digest for every policy)",
                   digest_of_length(n), d->name, d->name, digest_of_length(d->len), fits);
}

/* match items whatever the level: one fingerprint or one pattern, nothing that could split. */
static int check_match_item(const char *s, const char *field, struct problem *reterr)
{
        size_t n = strlen(s);
        if (n == 0 || n > 254)
                return bad(reterr, PROBLEM_INVALID_VALUE, field,
                           "a match item is 1 to 254 characters: one fingerprint or one name "
                           "pattern");
        for (size_t i = 0; i < n; i++) {
                char cb[8];
                unsigned char c = (unsigned char)s[i];
                if (!is_alnum(c) && c != '.' && c != ':' && c != '-')
                        return bad(reterr, PROBLEM_INVALID_VALUE, field,
                                   "a match item contains %s; send each fingerprint or pattern "
                                   "as its own item",
                                   byte_name(c, cb));
        }
        return 0;
}

/* The normalized form of one match item at level l (fingerprint, verify or secure). */
static int match_item_normalize(enum tls_level l, const char *s, char out[static FPR_MAX],
                                const char *field, struct problem *reterr)
{
        int r = check_match_item(s, field, reterr);
        if (r < 0)
                return r;
        if (l == TLS_LEVEL_FINGERPRINT)
                return policy_fingerprint_normalize(s, out, field, reterr);
        return pattern_normalize(s, out, field, reterr);
}

/* ---- the JSON body ---- */

static bool has_nul(json_t *v)
{
        return strlen(json_string_value(v)) != json_string_length(v);
}

static int check_destination(const struct json_spec *spec, json_t *v, const char *field,
                             struct problem *reterr)
{
        char key[POLICY_DESTINATION_MAX + 1];
        if (has_nul(v))
                return bad(reterr, PROBLEM_INVALID_DESTINATION, field,
                           "the destination contains a NUL byte");
        return policy_destination_normalize(json_string_value(v), key, field, reterr);
}

static int check_items(json_t *v, const char *field, struct problem *reterr,
                       int (*item)(const char *, const char *, struct problem *))
{
        size_t i;
        json_t *it;
        char f[320];
        json_array_foreach (v, i, it) {
                snprintf(f, sizeof(f), "%s/%zu", field, i);
                if (has_nul(it))
                        return bad(reterr, PROBLEM_INVALID_VALUE, f,
                                   "the item contains a NUL byte");
                int r = item(json_string_value(it), f, reterr);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int check_match(const struct json_spec *spec, json_t *v, const char *field,
                       struct problem *reterr)
{
        return check_items(v, field, reterr, check_match_item);
}

static int check_exclude(const struct json_spec *spec, json_t *v, const char *field,
                         struct problem *reterr)
{
        return check_items(v, field, reterr, check_exclude_item);
}

static int check_protocols(const struct json_spec *spec, json_t *v, const char *field,
                           struct problem *reterr)
{
        char out[128];
        if (has_nul(v))
                return bad(reterr, PROBLEM_INVALID_VALUE, field, "protocols contains a NUL byte");
        return policy_protocols_normalize(json_string_value(v), out, field, reterr);
}

static int check_servername(const struct json_spec *spec, json_t *v, const char *field,
                            struct problem *reterr)
{
        char out[POLICY_SERVERNAME_MAX + 1];
        if (has_nul(v))
                return bad(reterr, PROBLEM_INVALID_VALUE, field, "servername contains a NUL byte");
        return servername_normalize(json_string_value(v), out, field, reterr);
}

static int check_tafile_json(const struct json_spec *spec, json_t *v, const char *field,
                             struct problem *reterr)
{
        if (has_nul(v))
                return bad(reterr, PROBLEM_INVALID_VALUE, field, "tafile contains a NUL byte");
        return check_tafile(json_string_value(v), field, reterr);
}

static int check_reuse(const struct json_spec *spec, json_t *v, const char *field,
                       struct problem *reterr)
{
        if (!json_is_boolean(v))
                return bad(reterr, PROBLEM_INVALID_VALUE, field,
                           "connection_reuse must be true, false or null");
        return 0;
}

static int check_note(const struct json_spec *spec, json_t *v, const char *field,
                      struct problem *reterr)
{
        if (has_nul(v))
                return bad(reterr, PROBLEM_INVALID_VALUE, field, "note contains a NUL byte");
        return 0;
}

static int check_manager(const struct json_spec *spec, json_t *v, const char *field,
                         struct problem *reterr)
{
        if (has_nul(v))
                return bad(reterr, PROBLEM_INVALID_VALUE, field, "managed_by contains a NUL byte");
        if (!policy_manager_is_valid(json_string_value(v)))
                return bad(reterr, PROBLEM_INVALID_VALUE, field,
                           "managed_by is a manager name, [a-z0-9][a-z0-9._-]{0,63}");
        return 0;
}

struct policy_body {
        const char *destination;
        const char *level;
        json_t *match;
        const char *protocols;
        const char *ciphers;
        json_t *exclude;
        const char *servername;
        const char *tafile;
        json_t *connection_reuse;
        const char *note;
        bool enabled;
        const char *managed_by;
        json_t *ignored;
};

enum {
        F_DESTINATION,
        F_LEVEL,
        F_MATCH,
        F_PROTOCOLS,
        F_CIPHERS,
        F_EXCLUDE,
        F_SERVERNAME,
        F_TAFILE,
        F_REUSE,
        F_NOTE,
        F_ENABLED,
        F_MANAGED_BY,
        F_CREATED_AT,
        F_UPDATED_AT,
        F_GENERATION,
        F_WARNINGS,
};

#define PB(f) offsetof(struct policy_body, f)
/* "destination" is required unless the URL names it or a patch is applied: checked in
 * policy_apply_json(). Read-only created_at, updated_at and generation (a write's reply) are
 * accepted, so a client may PUT back what it got, when they are the row's current values:
 * policy_check_read_only(); the reply's warnings are accepted and ignored. The level/attribute
 * rules need the merged result: policy_check(). */
static const struct json_spec policy_spec[] = {
        [F_DESTINATION] = { "destination", JS_STRING, 0, PB(destination),
                            .max = POLICY_DESTINATION_MAX, .check = check_destination,
                            .invalid_code = PROBLEM_INVALID_DESTINATION },
        [F_LEVEL] = { "level", JS_CHOICE, JS_REQUIRED, PB(level), .choices = level_names },
        [F_MATCH] = { "match", JS_STRING_ARRAY, JS_NULLABLE, PB(match), .max = POLICY_MATCH_MAX,
                      .check = check_match },
        [F_PROTOCOLS] = { "protocols", JS_STRING, JS_NULLABLE, PB(protocols), .max = 256,
                          .check = check_protocols },
        [F_CIPHERS] = { "ciphers", JS_CHOICE, JS_NULLABLE, PB(ciphers), .choices = cipher_grades },
        [F_EXCLUDE] = { "exclude", JS_STRING_ARRAY, JS_NULLABLE, PB(exclude),
                        .max = POLICY_EXCLUDE_MAX, .check = check_exclude },
        [F_SERVERNAME] = { "servername", JS_STRING, JS_NULLABLE, PB(servername),
                           .max = POLICY_SERVERNAME_MAX, .check = check_servername },
        [F_TAFILE] = { "tafile", JS_STRING, JS_NULLABLE, PB(tafile), .max = POLICY_TAFILE_MAX,
                       .check = check_tafile_json },
        [F_REUSE] = { "connection_reuse", JS_ANY, JS_NULLABLE, PB(connection_reuse),
                      .check = check_reuse },
        [F_NOTE] = { "note", JS_STRING, JS_NULLABLE, PB(note), .max = POLICY_NOTE_MAX,
                     .check = check_note },
        [F_ENABLED] = { "enabled", JS_BOOL, 0, PB(enabled), .choices = NULL },
        [F_MANAGED_BY] = { "managed_by", JS_STRING, JS_NULLABLE, PB(managed_by),
                           .max = POLICY_MANAGER_MAX, .check = check_manager },
        [F_CREATED_AT] = { "created_at", JS_ANY, JS_READ_ONLY, PB(ignored), .choices = NULL },
        [F_UPDATED_AT] = { "updated_at", JS_ANY, JS_READ_ONLY, PB(ignored), .choices = NULL },
        [F_GENERATION] = { "generation", JS_ANY, JS_READ_ONLY, PB(ignored), .choices = NULL },
        [F_WARNINGS] = { "warnings", JS_ANY, JS_REPLY_ONLY, PB(ignored), .choices = NULL },
        { 0 },
};

#define HAS(f) (present & (UINT64_C(1) << (f)))

static int strv_from_json(json_t *a, char ***ret, size_t *n)
{
        size_t i, k = json_array_size(a);
        json_t *it;
        *ret = NULL;
        *n = 0;
        if (k == 0)
                return 0;
        char **v = calloc(k + 1, sizeof(char *));
        if (!v)
                return -ENOMEM;
        json_array_foreach (a, i, it)
                if (!(v[i] = strdup(json_string_value(it)))) {
                        strv_free(v, i);
                        return -ENOMEM;
                }
        *ret = v;
        *n = k;
        return 0;
}

/* Rewrites match items into their normalized form for the level that takes them. */
static int normalize_match(struct policy *p, const char *prefix, struct problem *reterr)
{
        char buf[FPR_MAX], f[320];
        if (!(level_rules[p->level].allowed & A(MATCH)))
                return 0; /* policy_check() refuses the attribute itself */
        for (size_t i = 0; i < p->n_match; i++) {
                snprintf(f, sizeof(f), "%s/match/%zu", prefix, i);
                int r = match_item_normalize(p->level, p->match[i], buf, f, reterr);
                if (r < 0)
                        return r;
                if (!streq(buf, p->match[i])) {
                        char *s = strdup(buf);
                        if (!s)
                                return oom(reterr);
                        free(p->match[i]);
                        p->match[i] = s;
                }
        }
        return 0;
}

int policy_check_read_only(json_t *body, json_t *current, const char *prefix,
                           struct problem *reterr)
{
        return json_check_read_only(body, policy_spec, current, prefix ? prefix : "", reterr);
}

void policy_copy_read_only(json_t *body, json_t *normalized)
{
        json_copy_read_only(body, policy_spec, normalized);
}

static int check_combination(const struct policy *p, const char *prefix, struct problem *reterr);

int policy_apply_json(struct policy *p, json_t *body, bool patch, const char *url_destination,
                      const char *prefix, struct problem *reterr)
{
        struct policy_body b = { 0 };
        uint64_t present = 0;
        char key[POLICY_DESTINATION_MAX + 1], other[POLICY_DESTINATION_MAX + 1], field[300];
        struct policy n;
        int r;

        if (!prefix)
                prefix = "";
        r = json_dispatch(body, policy_spec, &b, &present, patch ? JSON_DISPATCH_PATCH : 0, prefix,
                          reterr);
        if (r < 0)
                return r;

        snprintf(field, sizeof(field), "%s/destination", prefix);
        if (url_destination) {
                r = policy_destination_normalize(url_destination, key, "", reterr);
                if (r < 0)
                        return r;
                if (HAS(F_DESTINATION)) {
                        r = policy_destination_normalize(b.destination, other, field, reterr);
                        if (r < 0)
                                return r;
                        if (!streq(key, other))
                                return bad(reterr, PROBLEM_INVALID_VALUE, field,
                                           "the destination '%s' is not the one in the URL ('%s')",
                                           other, key);
                }
        } else if (HAS(F_DESTINATION)) {
                r = policy_destination_normalize(b.destination, key, field, reterr);
                if (r < 0)
                        return r;
                if (patch && p->destination[0] && !streq(key, p->destination))
                        return bad(reterr, PROBLEM_INVALID_VALUE, field,
                                   "a policy's destination cannot be changed ('%s' is not '%s')",
                                   key, p->destination);
        } else if (patch && p->destination[0]) {
                memcpy(key, p->destination, sizeof(key));
        } else {
                return bad(reterr, PROBLEM_MISSING_FIELD, field, "destination is required");
        }

        if (patch) {
                if (policy_copy(&n, p) < 0)
                        return oom(reterr);
        } else {
                /* PUT replaces: what is not sent takes its default; the manager is the caller's */
                policy_init(&n);
                memcpy(n.managed_by, p->managed_by, sizeof(n.managed_by));
                n.managed_by[sizeof(n.managed_by) - 1] = 0;
        }
        memcpy(n.destination, key, sizeof(n.destination));
        if (HAS(F_LEVEL))
                tls_level_from_string(b.level, &n.level);
        if (HAS(F_MATCH)) {
                strv_free(n.match, n.n_match);
                n.match = NULL;
                n.n_match = 0;
                if (b.match && strv_from_json(b.match, &n.match, &n.n_match) < 0)
                        goto nomem;
        }
        if (HAS(F_PROTOCOLS)) {
                n.protocols[0] = 0;
                if (b.protocols &&
                    policy_protocols_normalize(b.protocols, n.protocols, "", NULL) < 0)
                        n.protocols[0] = 0; /* cannot happen: checked by the spec */
        }
        if (HAS(F_CIPHERS))
                snprintf(n.ciphers, sizeof(n.ciphers), "%s", b.ciphers ? b.ciphers : "");
        if (HAS(F_EXCLUDE)) {
                strv_free(n.exclude, n.n_exclude);
                n.exclude = NULL;
                n.n_exclude = 0;
                if (b.exclude && strv_from_json(b.exclude, &n.exclude, &n.n_exclude) < 0)
                        goto nomem;
        }
        if (HAS(F_SERVERNAME)) {
                n.servername[0] = 0;
                if (b.servername && servername_normalize(b.servername, n.servername, "", NULL) < 0)
                        n.servername[0] = 0; /* cannot happen: checked by the spec */
        }
        if (HAS(F_TAFILE))
                snprintf(n.tafile, sizeof(n.tafile), "%s", b.tafile ? b.tafile : "");
        if (HAS(F_REUSE))
                n.connection_reuse = !b.connection_reuse                ? POLICY_REUSE_UNSET
                                     : json_is_true(b.connection_reuse) ? POLICY_REUSE_YES
                                                                        : POLICY_REUSE_NO;
        if (HAS(F_NOTE)) {
                free(n.note);
                n.note = NULL;
                if (b.note && !(n.note = strdup(b.note)))
                        goto nomem;
        }
        if (HAS(F_ENABLED))
                n.enabled = b.enabled;
        if (HAS(F_MANAGED_BY))
                snprintf(n.managed_by, sizeof(n.managed_by), "%s",
                         b.managed_by ? b.managed_by : "");

        r = normalize_match(&n, prefix, reterr);
        if (r >= 0)
                r = policy_check(&n, prefix, reterr);
        if (r >= 0)
                r = check_combination(&n, prefix, reterr);
        if (r < 0) {
                policy_done(&n);
                return r;
        }
        policy_done(p);
        *p = n;
        return 0;
nomem:
        policy_done(&n);
        return oom(reterr);
}

/* The JSON pointer prefix/name[/i] (i < 0: none), built only when a problem is reported. */
static const char *fld(char f[static 320], const char *prefix, const char *name, ssize_t i)
{
        if (i >= 0)
                snprintf(f, 320, "%s/%s/%zd", prefix, name, i);
        else
                snprintf(f, 320, "%s/%s", prefix, name);
        return f;
}

int policy_check_manager_change(const char *was, const char *now, enum scope scope,
                                const char *prefix, struct problem *reterr)
{
        char f[320];
        was = was ? was : "";
        now = now ? now : "";
        if (scope >= SCOPE_ADMIN || streq(was, now))
                return 0;
        if (!*was)
                return problem_set(reterr, PROBLEM_FORBIDDEN, fld(f, prefix, "managed_by", -1),
                                   "making a row managed (by \"%s\") needs a token with scope "
                                   "'admin'",
                                   now);
        return problem_set(reterr, PROBLEM_FORBIDDEN, fld(f, prefix, "managed_by", -1),
                           "changing the manager of a row managed by \"%s\" needs a token with "
                           "scope 'admin'",
                           was);
}

/* Runs a check quietly first (the fast path), and again naming the field only if it fails. */
#define CHECK_QUIET(call_quiet, call_loud)                                                         \
        do {                                                                                       \
                if ((call_quiet) < 0) {                                                            \
                        (void)(call_loud);                                                         \
                        return -EINVAL;                                                            \
                }                                                                                  \
        } while (0)

/* The protocols a policy leaves enabled (bits of proto_names): its own list, or every one when it
 * sets none (main.cf decides; not ours to judge here). */
static unsigned policy_protocol_set(const struct policy *p)
{
        char buf[128];
        unsigned set = PROTO_ALL;
        if (p->protocols[0] && protocols_normalize(p->protocols, buf, &set, "", NULL) < 0)
                set = PROTO_ALL;
        return set;
}

/* Combinations Postfix accepts in the map but that cannot deliver a message, checked on every
 * write (not on rows read back: a row stored before this check keeps rendering as it was). Seen
 * with Postfix 3.7 and OpenSSL 3.0 (tests/system/test_postfix_policy.py):
 * - ciphers=null at encrypt: Postfix adds eNULL to the exclusions at encrypt, so no cipher is
 *   left ("no cipher match"; every delivery deferred, whatever the peer).
 * - protocols that leave neither TLSv1.2 nor TLSv1.3 at a level that authenticates the peer:
 *   Postfix runs OpenSSL at security level 1 there, where OpenSSL 3 refuses TLSv1 and TLSv1.1. */
static int check_combination(const struct policy *p, const char *prefix, struct problem *reterr)
{
        char f[320];
        const char *level = level_names[p->level];
        if (p->level == TLS_LEVEL_ENCRYPT && streq(p->ciphers, "null"))
                return bad(reterr, PROBLEM_INVALID_ATTRIBUTE, fld(f, prefix, "ciphers", -1),
                           "ciphers null at level encrypt leaves no cipher (Postfix excludes "
                           "eNULL at encrypt): every delivery to this destination would be "
                           "deferred; use may for unencrypted TLS or another grade");
        if (!level_rules[p->level].weak_tls_ok && !(policy_protocol_set(p) & PROTO_STRONG))
                return bad(reterr, PROBLEM_INVALID_ATTRIBUTE, fld(f, prefix, "protocols", -1),
                           "protocols leaves only TLS versions below TLSv1.2, which OpenSSL 3 "
                           "refuses at level %s (Postfix authenticates the peer at OpenSSL "
                           "security level 1): every delivery would be deferred",
                           level);
        return 0;
}

void policy_warnings_add(const struct policy *p, json_t *warnings)
{
        const char *level = tls_level_to_string(p->level);
        if (!level || p->level == TLS_LEVEL_NONE)
                return;
        if (streq(p->ciphers, "null") && p->level != TLS_LEVEL_ENCRYPT)
                warnings_add(warnings, "null_ciphers",
                             "%s: ciphers null offers TLSv1.2 and older peers only ciphers without "
                             "encryption, which OpenSSL refuses: only TLSv1.3 (whose ciphers the "
                             "grade does not restrict) can work",
                             p->destination);
        if (level_rules[p->level].weak_tls_ok && !(policy_protocol_set(p) & PROTO_STRONG))
                warnings_add(warnings, "weak_protocols",
                             "%s: protocols leaves only TLS versions below TLSv1.2 (deprecated, "
                             "RFC 8996); peers that speak only TLSv1.2 or TLSv1.3 fail the "
                             "handshake",
                             p->destination);
        if (p->servername[0] && (p->level == TLS_LEVEL_DANE || p->level == TLS_LEVEL_DANE_ONLY))
                warnings_add(warnings, "servername_ignored",
                             "%s: at level %s Postfix sends the TLSA base domain as SNI: "
                             "servername is ignored",
                             p->destination, level);
}

void policy_exclude_dropped(const struct policy *p, const char *list, char *out, size_t size)
{
        size_t o = 0;
        out[0] = 0;
        if (!p->n_exclude)
                return; /* no exclude of its own: main.cf's lists apply */
        for (const char *s = list; *s;) {
                size_t n = strcspn(s, ", \t:");
                bool kept = n == 0;
                for (size_t i = 0; !kept && i < p->n_exclude; i++)
                        kept = strlen(p->exclude[i]) == n && strncmp(p->exclude[i], s, n) == 0;
                /* Postfix adds these itself whatever the policy says (set_cipher_grade) */
                if (!kept && p->level == TLS_LEVEL_ENCRYPT && n == 5 && !strncmp(s, "eNULL", 5))
                        kept = true;
                if (!kept && p->level > TLS_LEVEL_ENCRYPT && n == 5 && !strncmp(s, "aNULL", 5))
                        kept = true;
                if (!kept) {
                        int w = snprintf(out + o, size - o, "%s%.*s", o ? ", " : "", (int)n, s);
                        if (w < 0 || (size_t)w >= size - o) {
                                out[o] = 0; /* what fits, never a cut item */
                                break;
                        }
                        o += (size_t)w;
                }
                s += n;
                s += strspn(s, ", \t:");
        }
}

int policy_check(const struct policy *p, const char *prefix, struct problem *reterr)
{
        char f[320], buf[FPR_MAX];
        char key[POLICY_DESTINATION_MAX + 1];

        if (!prefix)
                prefix = "";
        if ((unsigned)p->level >= _TLS_LEVEL_MAX)
                return bad(reterr, PROBLEM_INVALID_VALUE, fld(f, prefix, "level", -1),
                           "unknown level");
        const char *level = level_names[p->level];

        if (!memchr(p->destination, 0, sizeof(p->destination)))
                return bad(reterr, PROBLEM_INVALID_DESTINATION, fld(f, prefix, "destination", -1),
                           "the destination is too long");
        CHECK_QUIET(policy_destination_normalize(p->destination, key, "", NULL),
                    policy_destination_normalize(p->destination, key,
                                                 fld(f, prefix, "destination", -1), reterr));
        if (!streq(key, p->destination))
                return bad(reterr, PROBLEM_INVALID_DESTINATION, fld(f, prefix, "destination", -1),
                           "the destination is not in lower case");

        /* Which level takes which attribute: Postfix defers all mail on a violation. */
        unsigned have = (p->n_match ? A(MATCH) : 0) | (p->protocols[0] ? A(PROTOCOLS) : 0) |
                        (p->ciphers[0] ? A(CIPHERS) : 0) | (p->n_exclude ? A(EXCLUDE) : 0) |
                        (p->servername[0] ? A(SERVERNAME) : 0) | (p->tafile[0] ? A(TAFILE) : 0) |
                        (p->connection_reuse != POLICY_REUSE_UNSET ? A(REUSE) : 0);
        const struct level_rule *rule = &level_rules[p->level];
        for (unsigned a = 0; a < _ATTR_MAX; a++) {
                if (!(have & (1u << a)) || (rule->allowed & (1u << a)))
                        continue;
                fld(f, prefix, attr_names[a], -1);
                if (p->level == TLS_LEVEL_NONE)
                        return bad(reterr, PROBLEM_INVALID_ATTRIBUTE, f,
                                   "level none takes no attributes (TLS is off); remove %s",
                                   attr_names[a]);
                return bad(reterr, PROBLEM_INVALID_ATTRIBUTE, f,
                           "%s is not valid at level %s (Postfix would defer all mail to this "
                           "destination)%s",
                           attr_names[a], level,
                           a == ATTR_MATCH    ? "; match is for fingerprint, verify and secure"
                           : a == ATTR_TAFILE ? "; tafile is for verify and secure"
                                              : "");
        }
        if (rule->required & ~have)
                return bad(reterr, PROBLEM_INVALID_ATTRIBUTE, fld(f, prefix, "match", -1),
                           "level %s requires match: the SHA-256 or SHA-512 fingerprints of the "
                           "server certificates",
                           level);

        /* Each attribute in its normalized, whitelisted form. */
        if (p->n_match > POLICY_MATCH_MAX || (p->n_match && !p->match))
                return bad(reterr, PROBLEM_INVALID_VALUE, fld(f, prefix, "match", -1),
                           "match takes at most %d items", POLICY_MATCH_MAX);
        for (size_t i = 0; i < p->n_match; i++) {
                if (!p->match[i])
                        return bad(reterr, PROBLEM_INVALID_VALUE,
                                   fld(f, prefix, "match", (ssize_t)i), "empty match item");
                CHECK_QUIET(match_item_normalize(p->level, p->match[i], buf, "", NULL),
                            match_item_normalize(p->level, p->match[i], buf,
                                                 fld(f, prefix, "match", (ssize_t)i), reterr));
                if (!streq(buf, p->match[i]))
                        return bad(reterr, PROBLEM_INVALID_VALUE,
                                   fld(f, prefix, "match", (ssize_t)i),
                                   "match item not normalized");
        }
        if (!memchr(p->protocols, 0, sizeof(p->protocols)))
                return bad(reterr, PROBLEM_INVALID_VALUE, fld(f, prefix, "protocols", -1),
                           "protocols is too long");
        if (p->protocols[0]) {
                CHECK_QUIET(policy_protocols_normalize(p->protocols, buf, "", NULL),
                            policy_protocols_normalize(p->protocols, buf,
                                                       fld(f, prefix, "protocols", -1), reterr));
                if (!streq(buf, p->protocols))
                        return bad(reterr, PROBLEM_INVALID_VALUE, fld(f, prefix, "protocols", -1),
                                   "protocols is not normalized");
        }
        if (p->ciphers[0]) {
                size_t i;
                for (i = 0; cipher_grades[i]; i++)
                        if (strncmp(cipher_grades[i], p->ciphers, sizeof(p->ciphers)) == 0)
                                break;
                if (!cipher_grades[i])
                        return bad(reterr, PROBLEM_INVALID_VALUE, fld(f, prefix, "ciphers", -1),
                                   "ciphers must be one of: export, low, medium, high, null");
        }
        if (p->n_exclude > POLICY_EXCLUDE_MAX || (p->n_exclude && !p->exclude))
                return bad(reterr, PROBLEM_INVALID_VALUE, fld(f, prefix, "exclude", -1),
                           "exclude takes at most %d items", POLICY_EXCLUDE_MAX);
        for (size_t i = 0; i < p->n_exclude; i++) {
                if (!p->exclude[i])
                        return bad(reterr, PROBLEM_INVALID_VALUE,
                                   fld(f, prefix, "exclude", (ssize_t)i), "empty exclude item");
                CHECK_QUIET(check_exclude_item(p->exclude[i], "", NULL),
                            check_exclude_item(p->exclude[i], fld(f, prefix, "exclude", (ssize_t)i),
                                               reterr));
        }
        if (p->servername[0]) {
                char sn[POLICY_SERVERNAME_MAX + 1];
                if (!memchr(p->servername, 0, sizeof(p->servername)))
                        return bad(reterr, PROBLEM_INVALID_VALUE, fld(f, prefix, "servername", -1),
                                   "servername is too long");
                CHECK_QUIET(servername_normalize(p->servername, sn, "", NULL),
                            servername_normalize(p->servername, sn,
                                                 fld(f, prefix, "servername", -1), reterr));
                if (!streq(sn, p->servername))
                        return bad(reterr, PROBLEM_INVALID_VALUE, fld(f, prefix, "servername", -1),
                                   "servername is not in lower case");
        }
        if (p->tafile[0]) {
                if (!memchr(p->tafile, 0, sizeof(p->tafile)))
                        return bad(reterr, PROBLEM_INVALID_VALUE, fld(f, prefix, "tafile", -1),
                                   "tafile is too long");
                CHECK_QUIET(check_tafile(p->tafile, "", NULL),
                            check_tafile(p->tafile, fld(f, prefix, "tafile", -1), reterr));
        }
        if ((unsigned)p->connection_reuse > POLICY_REUSE_YES)
                return bad(reterr, PROBLEM_INVALID_VALUE, fld(f, prefix, "connection_reuse", -1),
                           "connection_reuse must be true, false or null");
        if (p->note && strlen(p->note) > POLICY_NOTE_MAX)
                return bad(reterr, PROBLEM_INVALID_VALUE, fld(f, prefix, "note", -1),
                           "note is longer than %d bytes", POLICY_NOTE_MAX);
        if (!memchr(p->managed_by, 0, sizeof(p->managed_by)) ||
            (p->managed_by[0] && !policy_manager_is_valid(p->managed_by)))
                return bad(reterr, PROBLEM_INVALID_VALUE, fld(f, prefix, "managed_by", -1),
                           "managed_by is a manager name, [a-z0-9][a-z0-9._-]{0,63}");
        return 0;
}

static json_t *strv_json(char *const *v, size_t n)
{
        json_t *a = json_array();
        for (size_t i = 0; a && i < n; i++)
                json_array_append_new(a, json_string(v[i] ? v[i] : ""));
        return a;
}

json_t *policy_to_json(const struct policy *p)
{
        json_t *j = json_object();
        if (!j)
                return NULL;
        const char *level = tls_level_to_string(p->level);
        json_object_set_new(j, "destination", json_string(p->destination));
        json_object_set_new(j, "level", level ? json_string(level) : json_null());
        json_object_set_new(j, "match", strv_json(p->match, p->n_match));
        json_object_set_new(j, "protocols",
                            p->protocols[0] ? json_string(p->protocols) : json_null());
        json_object_set_new(j, "ciphers", p->ciphers[0] ? json_string(p->ciphers) : json_null());
        json_object_set_new(j, "exclude", strv_json(p->exclude, p->n_exclude));
        json_object_set_new(j, "servername",
                            p->servername[0] ? json_string(p->servername) : json_null());
        json_object_set_new(j, "tafile", p->tafile[0] ? json_string(p->tafile) : json_null());
        json_object_set_new(j, "connection_reuse",
                            p->connection_reuse == POLICY_REUSE_UNSET
                                ? json_null()
                                : json_boolean(p->connection_reuse == POLICY_REUSE_YES));
        json_object_set_new(j, "note", json_string(p->note ? p->note : ""));
        json_object_set_new(j, "enabled", json_boolean(p->enabled));
        json_object_set_new(j, "managed_by",
                            p->managed_by[0] ? json_string(p->managed_by) : json_null());
        return j;
}

/* ---- rendering ---- */

static int buf_add(struct strbuf *b, const char *s, size_t n)
{
        return strbuf_add(b, s, n);
}

static int buf_adds(struct strbuf *b, const char *s)
{
        return strbuf_add(b, s, strlen(s));
}

/* Bytes >= 0x80 come only from the U-label spelling of a key (destination.h): never
 * whitespace, '#' or a control to Postfix, whose ctype macros are ASCII-only. */
static bool key_byte_ok(unsigned char c)
{
        return (c >= 'a' && c <= 'z') || is_digit(c) || c >= 0x80 || c == '.' || c == '-' ||
               c == '_' || c == '[' || c == ']' || c == ':';
}

static bool value_byte_ok(unsigned char c)
{
        return is_alnum(c) || (c && strchr(".:!|<>=+_-/", c));
}

/* The last word on what reaches the map: "key<TAB>token[ token]...", each byte whitelisted. */
static bool entry_bytes_ok(const char *s, size_t n)
{
        size_t i = 0;
        while (i < n && key_byte_ok((unsigned char)s[i]))
                i++;
        if (i == 0 || i >= n || s[i] != '\t')
                return false;
        i++;
        bool token = false; /* inside a token */
        for (; i < n; i++) {
                if (s[i] == ' ') {
                        if (!token)
                                return false; /* leading or double space */
                        token = false;
                } else if (value_byte_ok((unsigned char)s[i])) {
                        token = true;
                } else {
                        return false;
                }
        }
        return token;
}

static int join_attr(struct strbuf *b, const char *name, char *const *v, size_t n, const char *sep)
{
        int r = buf_adds(b, " ");
        if (r >= 0)
                r = buf_adds(b, name);
        if (r >= 0)
                r = buf_adds(b, "=");
        for (size_t i = 0; r >= 0 && i < n; i++) {
                if (i)
                        r = buf_adds(b, sep);
                if (r >= 0)
                        r = buf_adds(b, v[i]);
        }
        return r;
}

static int add_attr(struct strbuf *b, const char *name, const char *value)
{
        int r = buf_adds(b, " ");
        if (r >= 0)
                r = buf_adds(b, name);
        if (r >= 0)
                r = buf_adds(b, "=");
        if (r >= 0)
                r = buf_adds(b, value);
        return r;
}

static int render_into(struct strbuf *b, const struct policy *p)
{
        struct problem ignore = { 0 };
        size_t start = b->len;
        int r;

        if (policy_check(p, "", &ignore) < 0) {
                problem_done(&ignore);
                return -EINVAL;
        }
        problem_done(&ignore);
        r = buf_adds(b, p->destination);
        if (r >= 0)
                r = buf_adds(b, "\t");
        if (r >= 0)
                r = buf_adds(b, level_names[p->level]);
        if (r >= 0 && p->n_match)
                r = join_attr(b, "match", p->match, p->n_match,
                              p->level == TLS_LEVEL_FINGERPRINT ? "|" : ":");
        if (r >= 0 && p->protocols[0])
                r = add_attr(b, "protocols", p->protocols);
        if (r >= 0 && p->ciphers[0])
                r = add_attr(b, "ciphers", p->ciphers);
        if (r >= 0 && p->n_exclude)
                r = join_attr(b, "exclude", p->exclude, p->n_exclude, ":");
        if (r >= 0 && p->servername[0])
                r = add_attr(b, "servername", p->servername);
        if (r >= 0 && p->tafile[0])
                r = add_attr(b, "tafile", p->tafile);
        if (r >= 0 && p->connection_reuse != POLICY_REUSE_UNSET)
                r = add_attr(b, "connection_reuse",
                             p->connection_reuse == POLICY_REUSE_YES ? "yes" : "no");
        if (r >= 0 && !entry_bytes_ok(b->p + start, b->len - start))
                r = -EINVAL;
        if (r < 0) {
                b->len = start;
                if (b->p)
                        b->p[start] = 0;
        }
        return r;
}

int policy_render_entry(const struct policy *p, char **line)
{
        struct strbuf b = { 0 };
        int r = render_into(&b, p);
        if (r < 0) {
                free(b.p);
                return r;
        }
        *line = b.p;
        return 0;
}

static int cmp_destination(const void *a, const void *b)
{
        const struct policy *x = *(const struct policy *const *)a;
        const struct policy *y = *(const struct policy *const *)b;
        return strcmp(x->destination, y->destination);
}

/* An internationalized destination is looked up as Postfix finds it in the delivery request:
 * the A-label, or the U-label of SMTPUTF8 mail. The entry just rendered at `line` (its key, an
 * A-label spelling) is repeated under the U-label key; the two keys never collide with another
 * row's (the U-label has bytes >= 0x80, keys of rows have none). */
static int render_unicode_key(struct strbuf *b, size_t line)
{
        char ukey[DESTINATION_UKEY_MAX + 1];
        char *tab = memchr(b->p + line, '\t', b->len - line);
        if (!tab)
                return -EINVAL;
        size_t kl = (size_t)(tab - (b->p + line));
        char key[POLICY_DESTINATION_MAX + 1];
        if (kl > POLICY_DESTINATION_MAX)
                return -EINVAL;
        memcpy(key, b->p + line, kl);
        key[kl] = 0;
        int r = destination_unicode_key(key, ukey);
        if (r <= 0)
                return r;
        size_t start = b->len;
        _cleanup_free_ char *value = strndup(tab, b->len - line - kl); /* "\t...\n" */
        if (!value)
                return -ENOMEM;
        r = buf_adds(b, ukey);
        if (r >= 0)
                r = buf_adds(b, value);
        if (r >= 0 && !entry_bytes_ok(b->p + start, b->len - start - 1))
                r = -EINVAL;
        return r;
}

int policy_map_render(const struct policy *const *items, size_t n, char **text, size_t *len)
{
        const struct policy **v = malloc((n ? n : 1) * sizeof(*v));
        struct strbuf b = { 0 };
        size_t m = 0;
        int r;

        if (!v)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++)
                if (items[i] && items[i]->enabled)
                        v[m++] = items[i];
        qsort(v, m, sizeof(*v), cmp_destination);
        r = buf_adds(&b, POLICY_MAP_HEADER);
        for (size_t i = 0; r >= 0 && i < m; i++) {
                if (i && streq(v[i - 1]->destination, v[i]->destination))
                        r = -EEXIST;
                size_t line = b.len;
                if (r >= 0)
                        r = render_into(&b, v[i]);
                if (r >= 0)
                        r = buf_adds(&b, "\n");
                if (r >= 0)
                        r = render_unicode_key(&b, line);
        }
        free(v);
        if (r < 0) {
                free(b.p);
                return r;
        }
        *text = b.p;
        if (len)
                *len = b.len;
        return 0;
}

/* ---- reading map source text ---- */

void policy_map_entries_free(struct policy_map_entry *e, size_t n)
{
        if (!e)
                return;
        for (size_t i = 0; i < n; i++) {
                free(e[i].key);
                free(e[i].value);
        }
        free(e);
}

static int cmp_entry(const void *a, const void *b)
{
        const struct policy_map_entry *x = a, *y = b;
        int c = strcmp(x->key, y->key);
        if (c)
                return c;
        return x->line < y->line ? -1 : x->line > y->line;
}

void policy_map_entries_sort(struct policy_map_entry *e, size_t n)
{
        if (n > 1)
                qsort(e, n, sizeof(*e), cmp_entry);
}

struct key_ref {
        const char *key;
        size_t idx;
};

static int cmp_key_ref(const void *a, const void *b)
{
        const struct key_ref *x = a, *y = b;
        int c = strcmp(x->key, y->key);
        if (c)
                return c;
        return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* Drops every entry whose key an earlier entry has (postmap keeps the first), keeping order. */
static int drop_duplicates(struct policy_map_entry *e, size_t *n)
{
        if (*n < 2)
                return 0;
        struct key_ref *refs = malloc(*n * sizeof(*refs));
        bool *dup = calloc(*n, sizeof(bool));
        if (!refs || !dup) {
                free(refs);
                free(dup);
                return -ENOMEM;
        }
        for (size_t i = 0; i < *n; i++)
                refs[i] = (struct key_ref){ e[i].key, i };
        qsort(refs, *n, sizeof(*refs), cmp_key_ref);
        for (size_t i = 1; i < *n; i++)
                if (streq(refs[i - 1].key, refs[i].key))
                        dup[refs[i].idx] = true;
        size_t o = 0;
        for (size_t i = 0; i < *n; i++) {
                if (dup[i]) {
                        free(e[i].key);
                        free(e[i].value);
                } else {
                        e[o++] = e[i];
                }
        }
        *n = o;
        free(refs);
        free(dup);
        return 0;
}

static char *strndup_trim(const char *s, size_t n)
{
        while (n > 0 && is_space((unsigned char)s[n - 1]))
                n--;
        return strndup(s, n);
}

/* One logical line (as Postfix's readllines()) into *line; returns false at the end of text. */
static int read_logical_line(const char *text, size_t len, size_t *pos, size_t *lineno,
                             struct strbuf *line, size_t *first_line, bool *got)
{
        *got = false;
        line->len = 0;
        if (line->p)
                line->p[0] = 0;
        if (*pos >= len)
                return 0;
        *got = true;
        for (;;) {
                size_t start = line->len, from = *pos, eol = *pos;
                while (eol < len && text[eol] != '\n')
                        eol++;
                bool newline = eol < len;
                if (buf_add(line, text + from, eol - from) < 0)
                        return -ENOMEM;
                *pos = newline ? eol + 1 : eol;
                if (newline || eol > from)
                        (*lineno)++;
                /* Comment lines, blank lines and whitespace-only lines go, even mid-entry. */
                size_t k = start;
                while (k < line->len && is_space((unsigned char)line->p[k]))
                        k++;
                if (k == line->len || line->p[k] == '#') {
                        line->len = start;
                        line->p[start] = 0;
                } else if (start == 0) {
                        *first_line = *lineno;
                }
                if (!newline || *pos >= len)
                        break;
                if (line->len > 0) {
                        char next = text[*pos];
                        if (next != '#' && !is_space((unsigned char)next))
                                break;
                }
        }
        return 0;
}

int policy_map_parse(const char *text, size_t len, struct policy_map_entry **ret, size_t *n_ret)
{
        struct policy_map_entry *e = NULL;
        size_t n = 0, cap = 0, pos = 0, lineno = 0;
        struct strbuf line = { 0 };
        int r = 0;

        *ret = NULL;
        *n_ret = 0;
        for (;;) {
                size_t first = 0;
                bool got;
                r = read_logical_line(text, len, &pos, &lineno, &line, &first, &got);
                if (r < 0 || !got)
                        break;
                if (line.len == 0 || is_space((unsigned char)line.p[0]))
                        continue; /* nothing, or continuation text without a first line */
                size_t ln = strnlen(line.p, line.len); /* text after a NUL is lost */
                const char *s = line.p;
                size_t kl = 0;
                while (kl < ln && !strchr(" \t\r\n", s[kl]))
                        kl++;
                size_t v = kl < ln ? kl + 1 : kl;
                while (v < ln && is_space((unsigned char)s[v]))
                        v++;
                size_t vl = ln - v;
                while (vl > 0 && is_space((unsigned char)s[v + vl - 1]))
                        vl--;
                size_t kt = kl;
                while (kt > 0 && is_space((unsigned char)s[kt - 1]))
                        kt--;
                if (kt == 0 || vl == 0)
                        continue; /* "expected format: key whitespace value" */
                if (n == cap) {
                        size_t nc = cap ? 2 * cap : 64;
                        struct policy_map_entry *ne = realloc(e, nc * sizeof(*e));
                        if (!ne) {
                                r = -ENOMEM;
                                break;
                        }
                        e = ne;
                        cap = nc;
                }
                char *key = strndup(s, kt), *value = strndup_trim(s + v, vl);
                if (!key || !value) {
                        free(key);
                        free(value);
                        r = -ENOMEM;
                        break;
                }
                for (char *c = key; *c; c++)
                        *c = to_lower(*c);
                e[n++] = (struct policy_map_entry){ key, value, first };
        }
        free(line.p);
        if (r >= 0)
                r = drop_duplicates(e, &n);
        if (r < 0) {
                policy_map_entries_free(e, n);
                return r;
        }
        *ret = e;
        *n_ret = n;
        return 0;
}
