/* destination.c - the destination grammar (destination.h, policy.h): what a policy may be keyed
 * by, checked byte by byte, and its one normalized spelling. Postfix 3.7 looks the next-hop up as
 * the delivery request writes it (smtp_tls_policy.c: [host]:port, [host], host:port exactly; a
 * domain, then its parents as ".parent"); host names follow valid_hostname() ('_' allowed),
 * bracketed addresses host_port() ("ipv6:" prefix optional), internationalized names
 * midna_domain.c (UTS #46 non-transitional: libidn2 here). Pure; any thread. */
#include "core/destination.h"

#include <arpa/inet.h>
#include <errno.h>
#include <idn2.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/chars.h"
#include "core/policy.h"

#define DEST PROBLEM_INVALID_DESTINATION
#define FORMS                                                                                      \
        "a destination is a domain (example.com), .domain, host:port, [host], [host]:port, "       \
        "[192.0.2.1]:port or [ipv6:2001:db8::1]:port"

static int refuse(struct problem *reterr, const char *field, const char *fmt, ...) _printf_(3, 4);
static int refuse(struct problem *reterr, const char *field, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        problem_setv(reterr, DEST, field, fmt, ap);
        va_end(ap);
        return -EINVAL;
}

/* ---- names ---- */

int destination_check_name(const char *s, size_t n, const char *what, unsigned flags,
                           enum problem_code code, const char *field, struct problem *reterr)
{
        char cb[8];
        bool underscore = flags & NAME_UNDERSCORE;
        if (n == 0)
                return problem_set(reterr, code, field, "%s has no name", what);
        for (size_t i = 0; i < n; i++)
                if (!is_alnum((unsigned char)s[i]) && s[i] != '-' && s[i] != '.' &&
                    !(underscore && s[i] == '_'))
                        return problem_set(reterr, code, field,
                                           "%s contains %s: a name is letters, digits, '-'%s and "
                                           "'.'",
                                           what, problem_byte_name((unsigned char)s[i], cb),
                                           underscore ? ", '_'" : "");
        size_t start = 0, last = 0;
        for (size_t i = 0; i <= n; i++) {
                if (i < n && s[i] != '.')
                        continue;
                last = start;
                size_t l = i - start;
                if (l == 0 && i == n)
                        return problem_set(reterr, code, field,
                                           "%s ends with a dot: write the name without the "
                                           "trailing dot",
                                           what);
                if (l == 0)
                        return problem_set(reterr, code, field, "%s has an empty label ('..')",
                                           what);
                if (l > 63)
                        return problem_set(reterr, code, field,
                                           "%s has a label of %zu characters; at most 63 are "
                                           "allowed",
                                           what, l);
                if (s[start] == '-' || s[i - 1] == '-')
                        return problem_set(reterr, code, field,
                                           "%s has a label that starts or ends with '-'", what);
                start = i + 1;
        }
        if (n > 253)
                return problem_set(reterr, code, field,
                                   "%s is a name of %zu characters; at most 253 are allowed", what,
                                   n);
        bool numeric = true;
        for (size_t i = last; i < n && numeric; i++)
                numeric = is_digit((unsigned char)s[i]);
        if (numeric)
                return problem_set(reterr, code, field,
                                   flags & NAME_BRACKETED
                                       ? "%s ends in an all-digit label, which is not a host name"
                                       : "%s ends in an all-digit label: an IP address must be "
                                         "bracketed, as in [192.0.2.1]",
                                   what);
        return 0;
}

static bool has_a_label(const char *s, size_t n)
{
        for (size_t i = 0; i + 4 <= n; i++)
                if ((i == 0 || s[i - 1] == '.') && strncasecmp(s + i, "xn--", 4) == 0)
                        return true;
        return false;
}

static bool all_ascii(const char *s, size_t n)
{
        for (size_t i = 0; i < n; i++)
                if ((unsigned char)s[i] >= 0x80)
                        return false;
        return true;
}

/* A host name into out at *o, lower case: ASCII as written (valid_hostname(), whatever its
 * "xn--" labels hold: Postfix compares ASCII next-hops as text), a name with non-ASCII bytes as
 * its A-label (IDNA). */
static int host_name(const char *s, size_t n, unsigned flags, char *out, size_t *o,
                     const char *field, struct problem *reterr)
{
        const char *what = "the destination";
        if (all_ascii(s, n)) {
                int r = destination_check_name(s, n, what, flags | NAME_UNDERSCORE, DEST, field,
                                               reterr);
                if (r < 0)
                        return r;
                if (*o + n > DESTINATION_KEY_MAX)
                        return -E2BIG;
                for (size_t i = 0; i < n; i++)
                        out[(*o)++] = to_lower(s[i]);
                return 0;
        }
        if (n > DESTINATION_UKEY_MAX)
                return -E2BIG;
        char in[DESTINATION_UKEY_MAX + 1];
        memcpy(in, s, n);
        in[n] = 0;
        char *a = NULL;
        int r = idn2_lookup_u8((const uint8_t *)in, (uint8_t **)&a,
                               IDN2_NONTRANSITIONAL | IDN2_NFC_INPUT);
        if (r != IDN2_OK) {
                free(a);
                if (r == IDN2_MALLOC)
                        return problem_set_errno(reterr, -ENOMEM, PROBLEM_INTERNAL_ERROR, NULL,
                                                 "out of memory");
                return refuse(reterr, field,
                              "the destination's internationalized name is not valid IDNA (UTS #46 "
                              "non-transitional, as Postfix converts it): %s",
                              idn2_strerror(r));
        }
        size_t an = strlen(a);
        r = destination_check_name(a, an, "the destination (as its A-label)",
                                   flags | NAME_UNDERSCORE, DEST, field, reterr);
        if (r >= 0 && *o + an > DESTINATION_KEY_MAX)
                r = -E2BIG;
        if (r >= 0)
                for (size_t i = 0; i < an; i++)
                        out[(*o)++] = to_lower(a[i]);
        free(a);
        return r;
}

/* ---- addresses and ports ---- */

static int ipv4(const char *s, size_t n, char *out, size_t *o, const char *field,
                struct problem *reterr)
{
        size_t i = 0;
        int parts = 0;
        for (;;) {
                size_t st = i;
                unsigned v = 0;
                while (i < n && is_digit((unsigned char)s[i]) && i - st < 4)
                        v = v * 10 + (unsigned)(s[i++] - '0');
                size_t l = i - st;
                if (l == 0 || l > 3 || v > 255)
                        break;
                if (l > 1 && s[st] == '0')
                        return refuse(reterr, field,
                                      "the destination's IPv4 address has a part with a leading "
                                      "zero");
                parts++;
                if (i == n) {
                        if (parts != 4)
                                return refuse(reterr, field,
                                              "the destination's IPv4 address does not have four "
                                              "parts");
                        memcpy(out + *o, s, n);
                        *o += n;
                        return 0;
                }
                if (s[i] != '.' || parts == 4)
                        break;
                i++;
        }
        return refuse(reterr, field,
                      "the destination's IPv4 address is not a dotted quad of numbers 0..255");
}

/* An IPv6 address as Postfix's valid_ipv6_hostaddr() and inet_pton() both take it: hex fields
 * of at most 4 digits, at most 7 ':' and one "::", an optional dotted-quad tail. */
static int ipv6(const char *s, size_t n, char *out, size_t *o, const char *field,
                struct problem *reterr)
{
        char a[INET6_ADDRSTRLEN + 1];
        unsigned char bin[16];
        size_t colons = 0;
        bool ok = n > 0 && n < sizeof(a);
        for (size_t i = 0; ok && i < n; i++) {
                unsigned char c = (unsigned char)s[i];
                colons += c == ':';
                ok = is_digit(c) || (to_lower((char)c) >= 'a' && to_lower((char)c) <= 'f') ||
                     c == ':' || c == '.';
        }
        if (ok) {
                memcpy(a, s, n);
                a[n] = 0;
                ok = colons <= 7 && inet_pton(AF_INET6, a, bin) == 1;
        }
        if (!ok)
                return refuse(reterr, field,
                              "the destination's IPv6 address is not valid: hex fields of up to 4 "
                              "digits separated by ':', as in [ipv6:2001:db8::1]");
        for (size_t i = 0; i < n; i++)
                out[(*o)++] = to_lower(s[i]);
        return 0;
}

/* A decimal port 1..65535 without leading zeros, or a service name (RFC 6335: letters, digits
 * and '-', starting with a letter, at most 15, no '--', no '-' at the end), which Postfix looks
 * up as written and resolves with getservbyname(). */
static int port(const char *s, char *out, size_t *o, const char *field, struct problem *reterr)
{
        size_t n = strlen(s);
        if (n == 0)
                return refuse(reterr, field, "the destination has ':' but no port after it");
        if (is_digit((unsigned char)s[0])) {
                for (size_t i = 0; i < n; i++)
                        if (!is_digit((unsigned char)s[i]))
                                return refuse(reterr, field,
                                              "the destination's port must be a decimal number "
                                              "1..65535 or a service name");
                if (n > 1 && s[0] == '0')
                        return refuse(reterr, field,
                                      "the destination's port must not have leading zeros");
                unsigned long v = n <= 5 ? strtoul(s, NULL, 10) : 0;
                if (v < 1 || v > 65535)
                        return refuse(reterr, field,
                                      "the destination's port must be between 1 and 65535");
        } else {
                bool ok =
                    is_alpha((unsigned char)s[0]) && n <= 15 && s[n - 1] != '-' && !strstr(s, "--");
                for (size_t i = 0; ok && i < n; i++)
                        ok = is_alnum((unsigned char)s[i]) || s[i] == '-';
                if (!ok)
                        return refuse(reterr, field,
                                      "the destination's port must be a decimal number 1..65535 "
                                      "or a service name (letters, digits and '-', starting with a "
                                      "letter, at most 15 characters, as in submission)");
        }
        if (*o + 1 + n > DESTINATION_KEY_MAX)
                return -E2BIG;
        out[(*o)++] = ':';
        for (size_t i = 0; i < n; i++)
                out[(*o)++] = to_lower(s[i]);
        return 0;
}

/* ---- the whole destination ---- */

/* Every byte of the input: what can reach the map at all, with a detail for the rest. */
static int check_bytes(const char *in, const char *field, struct problem *reterr)
{
        char cb[8];
        for (size_t n = 0; in[n]; n++) {
                unsigned char c = (unsigned char)in[n];
                if (is_alnum(c) || c >= 0x80 || strchr(".-_[]:", c))
                        continue;
                if (c == '*')
                        return refuse(reterr, field,
                                      "the destination contains '*': a policy map has no wildcard; "
                                      "every destination without a policy of its own gets the "
                                      "outbound mode (outbound_mode in /api/v1/settings)");
                if (c == ' ' || c == '\t')
                        return refuse(reterr, field, "the destination contains whitespace");
                if (c == '\n' || c == '\r')
                        return refuse(reterr, field, "the destination contains a line break");
                if (c < 0x20 || c == 0x7f)
                        return refuse(reterr, field,
                                      "the destination contains a control character (0x%02x)", c);
                if (c == '#')
                        return refuse(reterr, field,
                                      "the destination contains '#', which starts a comment in a "
                                      "Postfix map");
                if (c == ',')
                        return refuse(reterr, field,
                                      "the destination contains ',': one destination per policy");
                return refuse(reterr, field, "the destination contains %s; " FORMS,
                              problem_byte_name(c, cb));
        }
        return 0;
}

static int bracketed(const char *in, char *out, size_t *o, const char *field,
                     struct problem *reterr)
{
        const char *close = strchr(in, ']');
        if (!close)
                return refuse(reterr, field, "the destination has an unclosed '['");
        const char *host = in + 1;
        size_t hn = (size_t)(close - host);
        int r;
        if (memchr(host, '[', hn))
                return refuse(reterr, field, "the destination has a '[' inside brackets");
        if (hn == 0)
                return refuse(reterr, field, "the destination has empty brackets");
        out[(*o)++] = '[';
        if (hn >= 5 && strncasecmp(host, "ipv6:", 5) == 0) {
                memcpy(out + *o, "ipv6:", 5);
                *o += 5;
                r = ipv6(host + 5, hn - 5, out, o, field, reterr);
        } else if (memchr(host, ':', hn)) {
                r = ipv6(host, hn, out, o, field, reterr);
        } else if (host[0] == '.') {
                return refuse(reterr, field,
                              "a bracketed next-hop is one host: it cannot start with '.'");
        } else if (strspn(host, "0123456789.") >= hn) {
                r = ipv4(host, hn, out, o, field, reterr);
        } else {
                r = host_name(host, hn, NAME_BRACKETED, out, o, field, reterr);
        }
        if (r < 0)
                return r;
        out[(*o)++] = ']';
        if (close[1] == ':')
                return port(close + 2, out, o, field, reterr);
        if (close[1])
                return refuse(reterr, field,
                              "the destination has text after ']'; only :port may follow");
        return 0;
}

static int unbracketed(const char *in, char *out, size_t *o, const char *field,
                       struct problem *reterr)
{
        if (strchr(in, '[') || strchr(in, ']'))
                return refuse(reterr, field,
                              "brackets must enclose the whole next-hop host: [host] or "
                              "[host]:port");
        const char *colon = strchr(in, ':'), *host = in;
        if (colon && strchr(colon + 1, ':'))
                return refuse(reterr, field,
                              "the destination has more than one ':'; an IPv6 next-hop is "
                              "bracketed: [ipv6:2001:db8::1] or [ipv6:2001:db8::1]:25");
        if (in[0] == '.') {
                if (!in[1])
                        return refuse(reterr, field,
                                      "'.' alone is not a destination; write .example.com for the "
                                      "subdomains of example.com");
                if (colon)
                        return refuse(reterr, field,
                                      ".domain takes no port: Postfix tries parent domains only "
                                      "for a plain domain; write host:port or [host]:port");
                out[(*o)++] = '.';
                host++;
        }
        size_t hn = colon ? (size_t)(colon - host) : strlen(host);
        if (hn == 0)
                return refuse(reterr, field, "the destination has no host before ':'");
        int r = host_name(host, hn, 0, out, o, field, reterr);
        if (r >= 0 && colon)
                r = port(colon + 1, out, o, field, reterr);
        return r;
}

/* U-labels that Postfix's UTF-8 case folding changes (RFC 5892's two PVALID exceptions that are
 * not fold-stable): the map would hold the folded name, not this one. */
static bool fold_unstable(const char *u)
{
        return strstr(u, "\xc3\x9f") || strstr(u, "\xcf\x82");
}

enum ukey_result {
        UKEY_NONE,    /* no A-label */
        UKEY_OK,      /* out holds the U-label spelling */
        UKEY_NO_IDNA, /* the A-labels are no IDNA name that converts back to them */
        UKEY_FOLDED,  /* the U-label has a character Postfix's case folding changes */
        UKEY_NO_MEMORY,
};

static enum ukey_result unicode_key(const char *key, char out[static DESTINATION_UKEY_MAX + 1])
{
        const char *host = key, *end;
        out[0] = 0;
        if (key[0] == '[') {
                host++;
                if (strncmp(host, "ipv6:", 5) == 0 || !(end = strchr(host, ']')))
                        return UKEY_NONE;
        } else {
                if (key[0] == '.')
                        host++;
                end = host + strcspn(host, ":");
        }
        size_t hn = (size_t)(end - host);
        if (!has_a_label(host, hn) || hn > DESTINATION_KEY_MAX)
                return UKEY_NONE;
        char a[DESTINATION_KEY_MAX + 1];
        memcpy(a, host, hn);
        a[hn] = 0;
        char *u = NULL, *back = NULL;
        enum ukey_result res = UKEY_OK;
        int r = idn2_to_unicode_8z8z(a, &u, 0);
        if (r == IDN2_OK)
                r = idn2_lookup_u8((const uint8_t *)u, (uint8_t **)&back,
                                   IDN2_NONTRANSITIONAL | IDN2_NFC_INPUT);
        if (r == IDN2_MALLOC)
                res = UKEY_NO_MEMORY;
        else if (r != IDN2_OK || strcasecmp(back, a) != 0 || all_ascii(u, strlen(u)))
                res = UKEY_NO_IDNA;
        else if (fold_unstable(u))
                res = UKEY_FOLDED;
        size_t pre = (size_t)(host - key), un = u ? strlen(u) : 0, post = strlen(end);
        if (res == UKEY_OK && pre + un + post > DESTINATION_UKEY_MAX)
                res = UKEY_NO_IDNA;
        if (res == UKEY_OK) {
                memcpy(out, key, pre);
                memcpy(out + pre, u, un);
                memcpy(out + pre + un, end, post + 1);
        }
        free(u);
        free(back);
        return res;
}

int destination_unicode_key(const char *key, char out[static DESTINATION_UKEY_MAX + 1])
{
        enum ukey_result r = unicode_key(key, out);
        if (r != UKEY_OK)
                out[0] = 0;
        return r == UKEY_OK ? 1 : r == UKEY_NO_MEMORY ? -ENOMEM : 0;
}

/* Whether a key holds an API token's shape: itself, after a leading '.', or inside brackets. */
static bool token_shaped(const char *key)
{
        char core[DESTINATION_KEY_MAX + 1];
        const char *k = key[0] == '.' ? key + 1 : key;
        if (k[0] != '[')
                return token_is_well_formed(k);
        const char *end = strchr(k, ']');
        if (!end || (size_t)(end - k - 1) >= sizeof(core))
                return false;
        snprintf(core, sizeof(core), "%.*s", (int)(end - k - 1), k + 1);
        return token_is_well_formed(core);
}

int policy_destination_normalize(const char *in, char out[static POLICY_DESTINATION_MAX + 1],
                                 const char *field, struct problem *reterr)
{
        char key[DESTINATION_KEY_MAX + 64], ukey[DESTINATION_UKEY_MAX + 1];
        size_t o = 0;

        _Static_assert(POLICY_DESTINATION_MAX == DESTINATION_KEY_MAX, "one limit");
        out[0] = 0;
        if (isempty(in))
                return refuse(reterr, field, "the destination is empty");
        int r = check_bytes(in, field, reterr);
        if (r < 0)
                return r;
        /* "stk_" + 43 base64url characters is a valid host name now that '_' is: a token pasted
         * into the wrong field must not end up in the map, the jobs and the database */
        if (token_is_well_formed(in))
                return refuse(
                    reterr, field,
                    "the destination has the shape of an smtptlsd API token; a token never "
                    "belongs in a policy (revoke it if it was shared by mistake)");
        size_t n = strlen(in);
        if (n <= DESTINATION_UKEY_MAX)
                r = in[0] == '[' ? bracketed(in, key, &o, field, reterr)
                                 : unbracketed(in, key, &o, field, reterr);
        if (n > DESTINATION_UKEY_MAX || r == -E2BIG || (r >= 0 && o > DESTINATION_KEY_MAX))
                return refuse(reterr, field,
                              "the destination is %zu characters long%s; at most %d are allowed",
                              r >= 0 || r == -E2BIG ? (o > n ? o : n) : n,
                              all_ascii(in, n) ? "" : " (as its A-label)", DESTINATION_KEY_MAX);
        if (r < 0)
                return r;
        key[o] = 0;
        /* and in the form it is kept in: "Stk_..." is lower-cased into that shape (found by
         * fuzz_destination: the normal form must be one normalize accepts again), also as a
         * parent domain (".stk_...") or a bracketed next-hop ("[stk_...]:25") */
        if (token_shaped(key))
                return refuse(
                    reterr, field,
                    "the destination has the shape of an smtptlsd API token; a token never "
                    "belongs in a policy (revoke it if it was shared by mistake)");
        /* a name written with U-labels must get its U-label key, or it would match nothing */
        enum ukey_result u = all_ascii(in, n) ? UKEY_NONE : unicode_key(key, ukey);
        if (u == UKEY_NO_MEMORY)
                return problem_set_errno(reterr, -ENOMEM, PROBLEM_INTERNAL_ERROR, NULL,
                                         "out of memory");
        if (u == UKEY_FOLDED)
                return refuse(reterr, field,
                              "the destination's name has 'ß' or final 'ς', which Postfix folds to "
                              "'ss' or 'σ' before it looks a UTF-8 name up: not supported (its "
                              "A-label %s is, for ASCII next-hops)",
                              key);
        if (u == UKEY_NONE && !all_ascii(in, n))
                return refuse(reterr, field,
                              "the destination's name is the ASCII name %s under IDNA mapping (UTS "
                              "#46): write that, as Postfix would look the name up as written",
                              key);
        if (u == UKEY_NO_IDNA)
                return refuse(reterr, field,
                              "the destination's internationalized name does not convert back to "
                              "itself through its A-label");
        memcpy(out, key, o + 1);
        return 0;
}
