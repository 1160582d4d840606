/* policy_grammar.c - the words of a policy entry: the level names and cipher grades, which level
 * takes which attribute (after Postfix 3.7 src/smtp/smtp_tls_policy.c), and the grammar of each
 * attribute's value: match patterns and fingerprints, protocols, exclude items, servername,
 * tafile, manager names (policy_grammar.h, policy.h). Pure; any thread. */
#include "core/policy_grammar.h"

#include <stdio.h>
#include <strings.h>

#include "core/destination.h"

const char *const policy_level_names[_TLS_LEVEL_MAX + 1] = {
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

const char *const policy_cipher_grades[] = { "export", "low", "medium", "high", "null", NULL };

/* Indexes into proto_names are also the bit numbers of a protocol set. */
static const char *const proto_names[] = { "SSLv2",   "SSLv3",   "TLSv1", "TLSv1.1",
                                           "TLSv1.2", "TLSv1.3", NULL };

const char *const policy_attr_names[_ATTR_MAX] = {
        "match", "protocols", "ciphers", "exclude", "servername", "tafile", "connection_reuse",
};

#define ATTRS_TLS  (A(PROTOCOLS) | A(CIPHERS) | A(EXCLUDE) | A(SERVERNAME) | A(REUSE))
#define ATTRS_FPR  (A(MATCH) | ATTRS_TLS)
#define ATTRS_PKIX (A(TAFILE) | ATTRS_FPR)

/* weak_tls_ok: the security level Postfix gives OpenSSL is 0 (may, encrypt), so TLSv1 and
 * TLSv1.1 can still be negotiated; at the levels that authenticate the peer it is 1, where
 * OpenSSL 3 refuses them (Postfix's tls_client.c, TLS_MUST_MATCH). */
const struct level_rule policy_level_rules[_TLS_LEVEL_MAX] = {
        [TLS_LEVEL_NONE] = { 0, 0, true },
        [TLS_LEVEL_MAY] = { ATTRS_TLS, 0, true },
        [TLS_LEVEL_ENCRYPT] = { ATTRS_TLS, 0, true },
        [TLS_LEVEL_DANE] = { ATTRS_TLS, 0, false },
        [TLS_LEVEL_DANE_ONLY] = { ATTRS_TLS, 0, false },
        [TLS_LEVEL_FINGERPRINT] = { ATTRS_FPR, A(MATCH), false },
        [TLS_LEVEL_VERIFY] = { ATTRS_PKIX, 0, false },
        [TLS_LEVEL_SECURE] = { ATTRS_PKIX, 0, false },
};

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
                                   problem_byte_name((unsigned char)*c, cb));
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

int policy_check_exclude_item(const char *s, const char *field, struct problem *reterr)
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
                                   problem_byte_name(c, cb));
        }
        return 0;
}

/* servername: Postfix 3.7 takes a valid_hostname() (sent as SNI), or the keyword "hostname" (the
 * MX host's name) or "nexthop" (the next-hop domain). We take LDH names, a subset, lower case. */
int policy_servername_normalize(const char *in, char out[static POLICY_SERVERNAME_MAX + 1],
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
int policy_check_tafile(const char *s, const char *field, struct problem *reterr)
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
                                   problem_byte_name(c, cb));
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
        _Static_assert(POLICY_MANAGER_MAX == NAME_LEN_MAX, "a manager is named like a token");
        return name_is_valid(s);
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
int policy_check_match_item(const char *s, const char *field, struct problem *reterr)
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
                                   problem_byte_name(c, cb));
        }
        return 0;
}

/* The normalized form of one match item at level l (fingerprint, verify or secure). */
int policy_match_item_normalize(enum tls_level l, const char *s, char out[static FPR_MAX],
                                const char *field, struct problem *reterr)
{
        int r = policy_check_match_item(s, field, reterr);
        if (r < 0)
                return r;
        if (l == TLS_LEVEL_FINGERPRINT)
                return policy_fingerprint_normalize(s, out, field, reterr);
        return pattern_normalize(s, out, field, reterr);
}

/* The protocols a policy leaves enabled (bits of proto_names): its own list, or every one when it
 * sets none (main.cf decides; not ours to judge here). */
unsigned policy_protocol_set(const struct policy *p)
{
        char buf[128];
        unsigned set = PROTO_ALL;
        if (p->protocols[0] && protocols_normalize(p->protocols, buf, &set, "", NULL) < 0)
                set = PROTO_ALL;
        return set;
}
