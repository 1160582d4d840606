/* fuzz_destination.c - the URL path and the destination decoder: http_percent_decode(),
 * router_match() against the real route table, policy_destination_normalize(), and the map entry
 * a destination renders to.
 *
 * Input: a path segment as libmicrohttpd hands it over (a C string: the input up to its first NUL
 * byte). It is decoded on its own (with and without '+' as space), matched as
 * /api/v1/tls-policies/<input>, /api/v1/certificates/<input> and /<input>, and normalized as a
 * destination both raw and decoded.
 *
 * Properties (any violation traps):
 *  - http_percent_decode() and router_match() agree with reference implementations written here
 *    from http.h (segments split before decoding, first matching pattern wins, %00 and bad
 *    escapes refused);
 *  - policy_destination_normalize() accepts exactly the grammar of destination.h for ASCII input
 *    without A-labels (domain, .domain, host:port, [host], [host]:port, [IPv4], [IPv4]:port,
 *    [ipv6:IPv6], [IPv6], with :port; labels of 1..63 letters, digits, '_' and inner '-', names
 *    of at most 253, keys of at most 255, no all-digit last label; ports 1..65535 without leading
 *    zeros or RFC 6335 service names; IPv6 as Postfix's valid_hostaddr() and an address), also
 *    written here (ASCII "xn--" labels are kept as written); input with U-labels is judged by
 *    libidn2, not here, and when accepted has a U-label key;
 *  - a refusal is invalid_destination at the field given, with nothing left in the output;
 *  - an accepted destination is ASCII [a-z0-9._-[]:] (the input in lower case unless written
 *    with U-labels), a fixed point of the normalizer, the key of a policy_apply_json() with it
 *    in the URL, and renders into one map entry read back identically, plus its U-label entry
 *    when its A-labels convert back and forth (a key that normalizes back to it). */
#include <stdlib.h>
#include <strings.h>

#include "core/destination.h"
#include "core/policy.h"
#include "fuzz_common.h"
#include "http/http.h"

/* ---- reference percent decoding ---- */

static int hexv(char c)
{
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}

/* out holds at least n + 1 bytes. Returns false for a truncated or non-hex escape, or %00. */
static bool ref_decode(const char *s, size_t n, bool plus, char *out, size_t *outlen)
{
        size_t o = 0;
        for (size_t i = 0; i < n; i++) {
                if (s[i] != '%') {
                        out[o++] = plus && s[i] == '+' ? ' ' : s[i];
                        continue;
                }
                if (n - i < 3 || hexv(s[i + 1]) < 0 || hexv(s[i + 2]) < 0)
                        return false;
                int v = hexv(s[i + 1]) * 16 + hexv(s[i + 2]);
                if (v == 0)
                        return false;
                out[o++] = (char)v;
                i += 2;
        }
        out[o] = 0;
        *outlen = o;
        return true;
}

static void check_decode(const char *s, size_t n, bool plus)
{
        char *want = malloc(n + 1), *got = NULL;
        size_t wn = 0;
        if (!want)
                abort();
        bool ok = ref_decode(s, n, plus, want, &wn);
        int r = http_percent_decode(s, n, plus, &got);
        FUZZ_ASSERT((r == 0) == ok && (r == 0 || r == -EINVAL),
                    "http_percent_decode('%s', plus=%d): %d, reference %s", s, plus, r,
                    ok ? "decodes" : "refuses");
        if (r == 0) {
                FUZZ_ASSERT(strlen(got) == wn && memcmp(got, want, wn) == 0,
                            "http_percent_decode('%s'): '%s', reference '%s'", s, got, want);
                free(got);
        }
        free(want);
}

/* ---- reference router: split into segments, then compare; {x} takes one non-empty segment ---- */

static int ref_route(const char *path, char **params, bool *bad_escape)
{
        *bad_escape = false;
        for (size_t i = 0; i < api_routes_count; i++) {
                const char *p = api_routes[i].pattern, *s = path;
                size_t np = 0;
                const char *seg[ROUTE_MAX_PARAMS];
                size_t segn[ROUTE_MAX_PARAMS];
                bool ok = true;
                /* both start with '/': walk segment by segment */
                while (ok) {
                        if (*p != '/' || *s != '/') {
                                ok = *p == 0 && *s == 0;
                                break;
                        }
                        p++;
                        s++;
                        size_t pl = strcspn(p, "/"), sl = strcspn(s, "/");
                        if (p[0] == '{') {
                                if (sl == 0 || np >= ROUTE_MAX_PARAMS) {
                                        ok = false;
                                        break;
                                }
                                seg[np] = s;
                                segn[np++] = sl;
                        } else if (pl != sl || memcmp(p, s, pl) != 0) {
                                ok = false;
                                break;
                        }
                        p += pl;
                        s += sl;
                }
                if (!ok)
                        continue;
                for (size_t k = 0; k < np; k++) {
                        size_t dn;
                        params[k] = malloc(segn[k] + 1);
                        if (!params[k])
                                abort();
                        if (!ref_decode(seg[k], segn[k], false, params[k], &dn)) {
                                for (size_t j = 0; j <= k; j++) {
                                        free(params[j]);
                                        params[j] = NULL;
                                }
                                *bad_escape = true;
                                return (int)i;
                        }
                }
                return (int)i;
        }
        return -1;
}

/* Returns the decoded first parameter when path matched a route with one (owned), else NULL. */
static char *check_route(const char *path)
{
        char *params[ROUTE_MAX_PARAMS] = { NULL, NULL };
        char *want[ROUTE_MAX_PARAMS] = { NULL, NULL };
        bool bad_escape;
        int r = router_match(api_routes, api_routes_count, path, params);
        int w = ref_route(path, want, &bad_escape);
        if (w < 0)
                FUZZ_ASSERT(r == -ENOENT, "router_match('%s'): %d, reference: no route", path, r);
        else if (bad_escape)
                FUZZ_ASSERT(r == -EINVAL, "router_match('%s'): %d, reference: bad escape", path, r);
        else
                FUZZ_ASSERT(r == w, "router_match('%s'): %d, reference: %s", path, r,
                            api_routes[w].pattern);
        if (r < 0) {
                FUZZ_ASSERT(!params[0] && !params[1], "router_match: params left on failure");
                return NULL;
        }
        for (size_t k = 0; k < ROUTE_MAX_PARAMS; k++) {
                FUZZ_ASSERT((params[k] == NULL) == (want[k] == NULL) &&
                                (!params[k] || strcmp(params[k], want[k]) == 0),
                            "router_match('%s'): param %zu '%s', reference '%s'", path, k,
                            params[k] ? params[k] : "(none)", want[k] ? want[k] : "(none)");
                free(want[k]);
        }
        free(params[1]);
        return params[0];
}

/* ---- reference destination grammar (destination.h, docs/api.md "Destinations") ---- */

static bool is_digit(char c)
{
        return c >= '0' && c <= '9';
}

static bool is_alpha(char c)
{
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_hex(char c)
{
        return is_digit(c) || (c >= 'a' && c <= 'f');
}

/* Postfix's valid_hostname() (with '_'), plus our limits: 253 bytes, no all-digit last label. */
static bool ref_domain(const char *s, size_t n)
{
        if (n == 0 || n > 253)
                return false;
        size_t start = 0;
        for (size_t i = 0; i <= n; i++) {
                if (i < n && s[i] != '.') {
                        char c = s[i];
                        if (!((c >= 'a' && c <= 'z') || is_digit(c) || c == '-' || c == '_'))
                                return false;
                        continue;
                }
                size_t l = i - start;
                if (l == 0 || l > 63 || s[start] == '-' || s[i - 1] == '-')
                        return false;
                if (i == n) {
                        bool digits = true;
                        for (size_t k = start; k < n; k++)
                                digits = digits && is_digit(s[k]);
                        if (digits)
                                return false; /* an all-digit last label is no host name */
                }
                start = i + 1;
        }
        return true;
}

static bool ref_ipv4(const char *s, size_t n)
{
        size_t parts = 0, i = 0;
        while (i <= n) {
                size_t st = i;
                unsigned v = 0;
                while (i < n && is_digit(s[i]) && i - st < 4)
                        v = v * 10 + (unsigned)(s[i++] - '0');
                size_t l = i - st;
                if (l == 0 || l > 3 || v > 255 || (l > 1 && s[st] == '0'))
                        return false;
                parts++;
                if (i == n)
                        return parts == 4;
                if (s[i] != '.')
                        return false;
                i++;
        }
        return false;
}

/* Postfix 3.7's valid_ipv6_hostaddr(), restated: at most 7 ':' and one "::", hex fields of 1..4
 * digits, no lone ':' at either end, an IPv4 tail after 2..6 ':'; and it must be an address. */
static bool ref_ipv6(const char *s, size_t n)
{
        size_t colons = 0, field = 0, doubles = 0;
        for (size_t i = 0; i < n; i++)
                if (s[i] == ':')
                        colons++;
        if (n == 0 || colons < 2 || colons > 7)
                return false;
        if ((s[0] == ':' && s[1] != ':') || (s[n - 1] == ':' && s[n - 2] != ':'))
                return false;
        for (size_t i = 0; i < n;) {
                if (s[i] == ':') {
                        if (i + 1 < n && s[i + 1] == ':') {
                                if (++doubles > 1 || (i + 2 < n && s[i + 2] == ':'))
                                        return false;
                                i += 2;
                        } else {
                                i++;
                        }
                        field++;
                        continue;
                }
                size_t st = i;
                while (i < n && is_hex(s[i]))
                        i++;
                if (i < n && s[i] == '.') { /* the dotted tail: the rest is one IPv4 address */
                        size_t seen = 0;
                        for (size_t k = 0; k < st; k++)
                                seen += s[k] == ':';
                        return seen >= 2 && seen <= 6 && ref_ipv4(s + st, n - st) &&
                               (doubles || seen == 6);
                }
                if (i - st == 0 || i - st > 4)
                        return false;
        }
        /* eight fields, or fewer with "::" */
        size_t groups = 0;
        for (size_t i = 0; i < n; i++)
                if (is_hex(s[i]) && (i == 0 || s[i - 1] == ':'))
                        groups++;
        return doubles ? groups <= 7 : groups == 8;
}

/* A decimal port 1..65535 without leading zeros, or a service name of RFC 6335. */
static bool ref_port(const char *s)
{
        size_t n = strlen(s);
        if (n == 0)
                return false;
        if (is_alpha(s[0])) {
                if (n > 15 || s[n - 1] == '-' || strstr(s, "--"))
                        return false;
                for (size_t i = 0; i < n; i++)
                        if (!is_alpha(s[i]) && !is_digit(s[i]) && s[i] != '-')
                                return false;
                return true;
        }
        if (n > 5 || s[0] == '0')
                return false;
        unsigned long v = 0;
        for (size_t i = 0; i < n; i++) {
                if (!is_digit(s[i]))
                        return false;
                v = v * 10 + (unsigned long)(s[i] - '0');
        }
        return v >= 1 && v <= 65535;
}

/* Whether the input is for the IDNA code (non-ASCII): the reference does not judge those; the
 * properties below still hold for what is accepted. */
static bool idn_input(const char *s)
{
        for (size_t i = 0; s[i]; i++)
                if ((unsigned char)s[i] >= 0x80)
                        return true;
        return false;
}

/* Whether an ASCII key has a label that starts "xn--". */
static bool has_a_label(const char *s)
{
        for (size_t i = 0; s[i]; i++)
                if ((i == 0 || strchr(".[", s[i - 1])) && strncasecmp(s + i, "xn--", 4) == 0)
                        return true;
        return false;
}

static bool ref_destination(const char *in)
{
        char l[POLICY_DESTINATION_MAX + 1];
        size_t n = strlen(in);
        if (n == 0 || n > POLICY_DESTINATION_MAX)
                return false;
        /* an API token ("stk_" + 43 base64url characters, case as issued) is never a destination,
         * nor is anything whose lower-case form (what would be kept) has that shape */
        if (n == 47 && strncmp(in, "stk_", 4) == 0 &&
            strspn(in + 4, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") ==
                43)
                return false;
        for (size_t i = 0; i <= n; i++)
                l[i] = in[i] >= 'A' && in[i] <= 'Z' ? (char)(in[i] - 'A' + 'a') : in[i];
        {
                /* ... as a parent domain or inside brackets too */
                const char *k = l[0] == '.' ? l + 1 : l;
                size_t kn = strlen(k);
                if (k[0] == '[') {
                        const char *e = strchr(k, ']');
                        kn = e ? (size_t)(e - k - 1) : 0;
                        k++;
                }
                if (kn == 47 && strncmp(k, "stk_", 4) == 0 &&
                    strspn(k + 4, "abcdefghijklmnopqrstuvwxyz0123456789-_") >= 43)
                        return false;
        }
        if (l[0] == '[') {
                const char *close = strchr(l, ']');
                if (!close)
                        return false;
                const char *host = l + 1;
                size_t hn = (size_t)(close - host);
                if (close[1] && (close[1] != ':' || !ref_port(close + 2)))
                        return false;
                if (hn >= 5 && strncmp(host, "ipv6:", 5) == 0)
                        return ref_ipv6(host + 5, hn - 5);
                if (memchr(host, ':', hn))
                        return ref_ipv6(host, hn);
                bool dotted = hn > 0;
                for (size_t i = 0; i < hn; i++)
                        dotted = dotted && (is_digit(host[i]) || host[i] == '.');
                return dotted ? ref_ipv4(host, hn) : ref_domain(host, hn);
        }
        if (l[0] == '.')
                return !strchr(l, ':') && ref_domain(l + 1, n - 1);
        const char *colon = strchr(l, ':');
        if (!colon)
                return ref_domain(l, n);
        return ref_port(colon + 1) && ref_domain(l, (size_t)(colon - l));
}

/* ---- the destination under test ---- */

/* The map entries of one policy: its key, and for an internationalized one its U-label too. */
static void check_map(const struct policy *pol, const char *out)
{
        char *line = NULL, *text = NULL, want_line[POLICY_DESTINATION_MAX + 40];
        char ukey[DESTINATION_UKEY_MAX + 1];
        size_t len = 0;
        int has_u = destination_unicode_key(out, ukey);
        FUZZ_ASSERT(has_u == 0 || has_u == 1, "destination_unicode_key('%s'): %d", out, has_u);
        FUZZ_ASSERT(!has_u || has_a_label(out),
                    "destination_unicode_key('%s'): %d without an A-label", out, has_u);
        if (has_u) {
                char back[POLICY_DESTINATION_MAX + 1];
                struct problem p = { 0 };
                int r = policy_destination_normalize(ukey, back, "", &p);
                FUZZ_ASSERT(r == 0 && strcmp(back, out) == 0,
                            "the U-label key '%s' of '%s' normalizes to '%s' (%s)", ukey, out,
                            r == 0 ? back : "", p.detail);
                problem_done(&p);
                for (const char *c = ukey; *c; c++)
                        FUZZ_ASSERT((unsigned char)*c >= 0x80 || (*c >= 'a' && *c <= 'z') ||
                                        is_digit(*c) || strchr("._-[]:", *c),
                                    "U-label key '%s': byte 0x%02x", ukey, (unsigned char)*c);
        }
        snprintf(want_line, sizeof(want_line), "%s\tencrypt protocols=>=TLSv1.2", out);
        int r = policy_render_entry(pol, &line);
        FUZZ_ASSERT(r == 0 && strcmp(line, want_line) == 0, "render('%s'): %d '%s'", out, r,
                    r == 0 ? line : "");
        FUZZ_ASSERT(!strchr(line, '\n') && !strchr(line, '\r'), "render: a line break");
        const struct policy *one = pol;
        r = policy_map_render(&one, 1, &text, &len);
        FUZZ_ASSERT(r == 0, "policy_map_render('%s'): %d", out, r);
        struct policy_map_entry *e = NULL;
        size_t ne = 0;
        r = policy_map_parse(text, len, &e, &ne);
        FUZZ_ASSERT(r == 0 && ne == (size_t)(1 + has_u) && strcmp(e[0].key, out) == 0 &&
                        strcmp(e[0].value, "encrypt protocols=>=TLSv1.2") == 0,
                    "map of '%s' reads back as %zu entries ('%s')", out, ne, ne ? e[0].key : "");
        if (has_u)
                FUZZ_ASSERT(strcmp(e[1].key, ukey) == 0 &&
                                strcmp(e[1].value, "encrypt protocols=>=TLSv1.2") == 0,
                            "map of '%s': second entry '%s', want '%s'", out, e[1].key, ukey);
        policy_map_entries_free(e, ne);
        free(text);
        free(line);
}

static void check_destination(const char *in)
{
        char out[POLICY_DESTINATION_MAX + 1], again[POLICY_DESTINATION_MAX + 1];
        struct problem p = { 0 };

        memset(out, 'x', sizeof(out));
        int r = policy_destination_normalize(in, out, "/items/7/destination", &p);
        bool idn = idn_input(in);
        bool want = !idn && ref_destination(in);
        if (idn && r == 0) { /* written with U-labels: an A-label key with its U-label twin */
                char ukey[DESTINATION_UKEY_MAX + 1];
                FUZZ_ASSERT(destination_unicode_key(out, ukey) == 1,
                            "'%s' accepted as '%s' without a U-label key", in, out);
        }
        FUZZ_ASSERT(idn || (r == 0) == want,
                    "policy_destination_normalize('%s'): %s, reference: %s (%s)", in,
                    r == 0 ? "accepted" : "refused", want ? "valid" : "invalid", p.detail);
        if (r < 0) {
                fuzz_check_problem(&p, "/items/7/destination", "policy_destination_normalize");
                FUZZ_ASSERT(p.code == PROBLEM_INVALID_DESTINATION &&
                                strcmp(p.field, "/items/7/destination") == 0,
                            "policy_destination_normalize: %s at '%s'", problem_code_name(p.code),
                            p.field);
                FUZZ_ASSERT(out[0] == 0, "policy_destination_normalize: refused but wrote '%.20s'",
                            out);
                problem_done(&p);
                return;
        }
        FUZZ_ASSERT(r == 0 && p.code == PROBLEM_NONE, "normalize: accepted with a problem");
        size_t n = strlen(in), on = strlen(out);
        FUZZ_ASSERT(on > 0 && on <= POLICY_DESTINATION_MAX, "normalize: length %zu", on);
        for (size_t i = 0; i < on; i++) {
                char c = out[i];
                FUZZ_ASSERT((c >= 'a' && c <= 'z') || is_digit(c) || strchr("._-[]:", c),
                            "normalize('%s') = '%s': byte 0x%02x", in, out, (unsigned char)c);
        }
        if (!idn) { /* ASCII: the input in lower case */
                FUZZ_ASSERT(on == n, "normalize: length changed");
                for (size_t i = 0; i < n; i++) {
                        char lc = in[i] >= 'A' && in[i] <= 'Z' ? (char)(in[i] + 32) : in[i];
                        FUZZ_ASSERT(out[i] == lc,
                                    "normalize('%s') = '%s': not the input in lower "
                                    "case",
                                    in, out);
                }
        }
        r = policy_destination_normalize(out, again, "", &p);
        FUZZ_ASSERT(r == 0 && strcmp(again, out) == 0, "normalize('%s') is not a fixed point", out);

        /* the destination named by a URL: the key of the policy written there */
        struct policy pol = { 0 };
        json_t *body = json_pack("{s:s, s:s}", "level", "encrypt", "protocols", ">=TLSv1.2");
        if (!body)
                abort();
        r = policy_apply_json(&pol, body, false, in, "", &p);
        FUZZ_ASSERT(r == 0 && strcmp(pol.destination, out) == 0,
                    "policy_apply_json with URL '%s': %d '%s' (%s)", in, r, pol.destination,
                    p.detail);
        json_decref(body);
        check_map(&pol, out);
        policy_done(&pol);
        problem_done(&p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        /* what libmicrohttpd hands over: a C string */
        char *seg = malloc(size + 1);
        if (!seg)
                abort();
        memcpy(seg, data, size);
        seg[size] = 0;
        size_t n = strlen(seg);

        check_decode(seg, n, false);
        check_decode(seg, n, true);

        static const char *const prefixes[] = { "/api/v1/tls-policies/", "/api/v1/certificates/",
                                                "/" };
        for (size_t i = 0; i < ARRAY_SIZE(prefixes); i++) {
                size_t pl = strlen(prefixes[i]);
                char *path = malloc(pl + n + 1);
                if (!path)
                        abort();
                memcpy(path, prefixes[i], pl);
                memcpy(path + pl, seg, n + 1);
                char *param = check_route(path);
                if (param && i == 0)
                        check_destination(param);
                free(param);
                free(path);
        }
        check_destination(seg);
        free(seg);
        return 0;
}
