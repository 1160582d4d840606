/* fuzz_probe_parsers.c - what the destination probe reads from the network: the RDATA readers of
 * core/dns_wire.h (MX, A, AAAA, TLSA, TXT, a name at an offset) and the MTA-STS parsers of
 * core/mtasts.h (the TXT record, the policy file, mx matching).
 *
 * Input: byte 0 chooses the parser (its value % 9: MX, A, AAAA, TLSA, TXT, name, STS record,
 * policy, mx matching) and a variant (its value / 9: the output or error buffer size, another
 * record type for A/AAAA); the rest is the data, copied into a heap buffer of exactly its length
 * (a C string of exactly its length for the record and the host) so that AddressSanitizer sees
 * any read past it. The name takes its start offset from the first data byte; mx matching takes
 * a host (the first line) and patterns (the next lines, one each, at most MTASTS_MX_MAX).
 *
 * Properties (any violation traps), against references written here from the headers:
 *  - dns_wire_name() accepts exactly a sequence of uncompressed labels (lengths 1..63, no
 *    pointer or extended label type) ending in the root within len, at most 255 wire bytes from
 *    the offset; then *pos is just past the root and the text (NUL-terminated in
 *    DNS_NAME_TEXT_MAX) decodes back, unescaping \DDD and \., to the same labels, in the one
 *    form the header gives (letters, digits, '-' and '_' as they are, '.' as \., others \DDD,
 *    the root "."); refused: -EBADMSG, "" and *pos unchanged;
 *  - dns_wire_mx(): a preference and such a name ending exactly at len, or -EBADMSG, 0 and "";
 *  - dns_wire_address(): 4 (A) or 16 (AAAA) bytes exactly, whose text inet_pton() reads back to
 *    them; -EBADMSG for another length, -EINVAL for another type, "" then;
 *  - dns_wire_tlsa(): the three fields and len - 3 bytes of data, -EBADMSG under 4 bytes,
 *    -EMSGSIZE over DNS_TLSA_DATA_MAX bytes of data, fields and length 0 then;
 *  - dns_wire_txt(): the character-strings concatenated when they cover len exactly and hold no
 *    NUL (else -EBADMSG) and fit out with the NUL (else -EMSGSIZE), "" then (out has any size);
 *  - mtasts_txt_parse() agrees with the grammar of RFC 8461 3.1 (-ENOENT: not "v=STSv1" then
 *    ';', whitespace or the end; the first sts-id is the id), "" and a non-empty err when refused;
 *  - mtasts_policy_parse() agrees with a reference parser of 3.2 as mtasts.h words it (mode,
 *    max_age, every mx in order, the first MTASTS_MX_MAX kept, unknown keys ignored); accepted:
 *    mode and max_age in range, n_mx <= MTASTS_MX_MAX, patterns non-empty and NUL-terminated,
 *    enforce and testing with an mx; refused: -EINVAL with a non-empty err;
 *  - mtasts_mx_matches() agrees with 4.1: the same name (ASCII case-insensitive), or "*.d" and a
 *    name of exactly one more label under d, the host's first label ending at its first dot that
 *    is not escaped (the text form of dns_wire_name(), "a\.b" is one label); checked on the
 *    policies accepted and on hosts and patterns of the input. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>

#include "core/dns_wire.h"
#include "core/mtasts.h"
#include "fuzz_common.h"

enum kind { K_MX, K_A, K_AAAA, K_TLSA, K_TXT, K_NAME, K_STS_RECORD, K_POLICY, K_MX_MATCH, K_N };

#define JUNK 0x5a /* what outputs hold before a call, so that an unwritten one shows */

static bool is_alnum_c(unsigned char c)
{
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static bool is_wsp_c(char c)
{
        return c == ' ' || c == '\t';
}

static unsigned char lower(unsigned char c)
{
        return c >= 'A' && c <= 'Z' ? (unsigned char)(c - 'A' + 'a') : c;
}

static bool ascii_caseeq(const char *a, const char *b)
{
        for (; *a && *b; a++, b++)
                if (lower((unsigned char)*a) != lower((unsigned char)*b))
                        return false;
        return *a == *b;
}

static void *xmalloc(size_t n)
{
        void *p = malloc(n);
        if (!p && n)
                abort();
        return p;
}

static bool terminated(const char *s, size_t size)
{
        return memchr(s, 0, size) != NULL;
}

/* ---- names: a reference reader and a decoder of the text form ---- */

#define REF_LABELS 128 /* a label costs at least 2 of the 255 wire bytes */

struct ref_name {
        size_t n;                /* labels, the root not counted */
        size_t off[REF_LABELS];  /* where each label's bytes start in data */
        uint8_t len[REF_LABELS]; /* and their number */
        size_t end;              /* just past the root */
};

static bool ref_name(const uint8_t *data, size_t len, size_t start, struct ref_name *r)
{
        size_t p = start, wire = 0;
        r->n = 0;
        while (p < len) {
                uint8_t b = data[p];
                if (b & 0xc0) /* 11: a pointer; 01 and 10: extended label types */
                        return false;
                if ((wire += 1u + b) > 255 || len - p - 1 < b)
                        return false;
                if (b == 0) {
                        r->end = p + 1;
                        return true;
                }
                r->off[r->n] = p + 1;
                r->len[r->n++] = b;
                p += 1u + b;
        }
        return false; /* ran past len before the root */
}

static bool literal_byte(unsigned char c)
{
        return is_alnum_c(c) || c == '-' || c == '_';
}

/* Decodes text (the form of dns_wire.h, strictly: nothing escaped that is written as it is, and
 * nothing written as it is that is escaped) and compares it with r's labels. */
static bool name_text_matches(const char *text, const uint8_t *data, const struct ref_name *r)
{
        if (strcmp(text, ".") == 0)
                return r->n == 0;
        const char *t = text;
        for (size_t i = 0; i < r->n; i++) {
                if (i > 0 && *t++ != '.')
                        return false;
                for (size_t j = 0; j < r->len[i]; j++) {
                        unsigned char want = data[r->off[i] + j], got;
                        if (t[0] == '\\' && t[1] == '.') {
                                got = '.';
                                t += 2;
                        } else if (t[0] == '\\') {
                                unsigned v = 0;
                                for (int k = 1; k <= 3; k++) {
                                        if (t[k] < '0' || t[k] > '9')
                                                return false;
                                        v = v * 10 + (unsigned)(t[k] - '0');
                                }
                                if (v > 255 || literal_byte((unsigned char)v) || v == '.')
                                        return false; /* not the one form */
                                got = (unsigned char)v;
                                t += 4;
                        } else if (literal_byte((unsigned char)t[0])) {
                                got = (unsigned char)*t++;
                        } else {
                                return false;
                        }
                        if (got != want)
                                return false;
                }
        }
        return *t == 0 && r->n > 0;
}

static char name_out[DNS_NAME_TEXT_MAX];

static void check_name_result(const char *what, int rc, bool want, const char *text,
                              const uint8_t *data, const struct ref_name *r)
{
        FUZZ_ASSERT(terminated(text, DNS_NAME_TEXT_MAX), "%s: text not NUL-terminated", what);
        if (!want) {
                FUZZ_ASSERT(rc == -EBADMSG, "%s: %d for a malformed name, want -EBADMSG", what, rc);
                FUZZ_ASSERT(text[0] == 0, "%s: refused with a partial name '%s'", what, text);
                return;
        }
        FUZZ_ASSERT(rc == 0, "%s: %d for a well-formed name of %zu labels", what, rc, r->n);
        FUZZ_ASSERT(name_text_matches(text, data, r),
                    "%s: text '%s' does not decode to the %zu labels on the wire", what, text,
                    r->n);
}

static void check_name(const uint8_t *in, size_t n)
{
        if (n == 0)
                return;
        size_t start = in[0], len = n - 1;
        uint8_t *data = xmalloc(len);
        memcpy(data, in + 1, len);
        static struct ref_name r;
        bool want = ref_name(data, len, start, &r);
        size_t pos = start;
        memset(name_out, JUNK, sizeof(name_out));
        int rc = dns_wire_name(data, len, &pos, name_out);
        check_name_result("dns_wire_name", rc, want, name_out, data, &r);
        FUZZ_ASSERT(pos == (rc == 0 ? r.end : start), "dns_wire_name: *pos %zu, want %zu", pos,
                    rc == 0 ? r.end : start);
        free(data);
}

static void check_mx(const uint8_t *in, size_t n)
{
        uint8_t *data = xmalloc(n);
        memcpy(data, in, n);
        static struct ref_name r;
        bool want = n >= 2 && ref_name(data, n, 2, &r) && r.end == n;
        unsigned pref = 4242;
        memset(name_out, JUNK, sizeof(name_out));
        int rc = dns_wire_mx(data, n, &pref, name_out);
        check_name_result("dns_wire_mx", rc, want, name_out, data, &r);
        unsigned want_pref = want ? (unsigned)data[0] << 8 | data[1] : 0;
        FUZZ_ASSERT(pref == want_pref, "dns_wire_mx: preference %u, want %u", pref, want_pref);
        free(data);
}

/* ---- A, AAAA, TLSA, TXT ---- */

static void check_address(int type, const uint8_t *in, size_t n)
{
        uint8_t *data = xmalloc(n);
        memcpy(data, in, n);
        char out[DNS_ADDRESS_MAX];
        memset(out, JUNK, sizeof(out));
        int rc = dns_wire_address(type, data, n, out);
        FUZZ_ASSERT(terminated(out, sizeof(out)), "dns_wire_address: text not NUL-terminated");
        size_t want_len = type == DNS_TYPE_A ? 4 : type == DNS_TYPE_AAAA ? 16 : 0;
        if (want_len == 0) {
                FUZZ_ASSERT(rc == -EINVAL && !out[0], "dns_wire_address(type %d): %d '%s'", type,
                            rc, out);
        } else if (n != want_len) {
                FUZZ_ASSERT(rc == -EBADMSG && !out[0],
                            "dns_wire_address(type %d, %zu bytes): %d '%s'", type, n, rc, out);
        } else {
                uint8_t back[16];
                FUZZ_ASSERT(rc == 0, "dns_wire_address(type %d, %zu bytes): %d", type, n, rc);
                FUZZ_ASSERT(strspn(out, "0123456789abcdef.:") == strlen(out) && out[0],
                            "dns_wire_address: text '%s'", out);
                FUZZ_ASSERT(inet_pton(type == DNS_TYPE_A ? AF_INET : AF_INET6, out, back) == 1 &&
                                memcmp(back, data, n) == 0,
                            "dns_wire_address: '%s' does not read back to the bytes", out);
        }
        free(data);
}

static void check_tlsa(const uint8_t *in, size_t n)
{
        static struct dns_tlsa t;
        uint8_t *data = xmalloc(n);
        memcpy(data, in, n);
        memset(&t, JUNK, sizeof(t));
        int rc = dns_wire_tlsa(data, n, &t);
        int want = n < 4 ? -EBADMSG : n - 3 > DNS_TLSA_DATA_MAX ? -EMSGSIZE : 0;
        FUZZ_ASSERT(rc == want, "dns_wire_tlsa(%zu bytes): %d, want %d", n, rc, want);
        if (rc == 0) {
                FUZZ_ASSERT(t.usage == data[0] && t.selector == data[1] && t.mtype == data[2] &&
                                t.len == n - 3 && memcmp(t.data, data + 3, n - 3) == 0,
                            "dns_wire_tlsa(%zu bytes): fields or data differ", n);
        } else {
                FUZZ_ASSERT(t.usage == 0 && t.selector == 0 && t.mtype == 0 && t.len == 0,
                            "dns_wire_tlsa: refused (%d) with fields left", rc);
        }
        free(data);
}

/* The output sizes tried (variants 0..27 for this selector): small ones around the short
 * records, then the probe's 256, then room for any record. */
static size_t txt_size(unsigned variant)
{
        return variant >= 27 ? 8192 : variant == 26 ? 256 : (size_t)variant * variant;
}

static void check_txt(unsigned variant, const uint8_t *in, size_t n)
{
        size_t size = txt_size(variant), total = 0;
        uint8_t *data = xmalloc(n);
        memcpy(data, in, n);
        /* reference: strings that cover len exactly, no NUL, then the size */
        bool wellformed = n > 0;
        for (size_t p = 0; wellformed && p < n;) {
                size_t l = data[p++];
                wellformed = l <= n - p && !memchr(data + p, 0, l);
                total += l;
                p += l;
        }
        int want = !wellformed ? -EBADMSG : total >= size ? -EMSGSIZE : 0;
        char *out = xmalloc(size);
        memset(out, JUNK, size);
        int rc = dns_wire_txt(data, n, out, size);
        FUZZ_ASSERT(rc == want, "dns_wire_txt(%zu bytes, size %zu): %d, want %d", n, size, rc,
                    want);
        if (rc == 0) {
                FUZZ_ASSERT(out[total] == 0, "dns_wire_txt: not %zu bytes then NUL", total);
                for (size_t p = 0, o = 0; p < n;) {
                        size_t l = data[p++];
                        FUZZ_ASSERT(memcmp(out + o, data + p, l) == 0,
                                    "dns_wire_txt: bytes %zu..%zu are not the string's", o, o + l);
                        o += l;
                        p += l;
                }
        } else if (size > 0) {
                FUZZ_ASSERT(out[0] == 0, "dns_wire_txt: refused (%d) with text left", rc);
        }
        free(out);
        free(data);
}

/* ---- MTA-STS record (RFC 8461 3.1) ---- */

static bool ref_ext_name(const char *s, size_t n)
{
        if (n < 1 || n > 32 || !is_alnum_c((unsigned char)s[0]))
                return false;
        for (size_t i = 1; i < n; i++)
                if (!is_alnum_c((unsigned char)s[i]) && !strchr("_-.", s[i]))
                        return false;
        return true;
}

/* sts-field: sts-id ("id=" 1*32 ALPHA/DIGIT, *is_id) or sts-extension (sts-ext-name "="
 * 1*(%x21-3A / %x3C / %x3E-7E)). */
static bool ref_sts_field(const char *s, size_t n, bool *is_id)
{
        *is_id = false;
        const char *eq = memchr(s, '=', n);
        if (!eq)
                return false;
        size_t k = (size_t)(eq - s), v = n - k - 1;
        if (k == 2 && memcmp(s, "id", 2) == 0 && v >= 1 && v <= MTASTS_ID_MAX) {
                *is_id = true;
                for (size_t i = 0; i < v; i++)
                        *is_id = *is_id && is_alnum_c((unsigned char)eq[1 + i]);
                if (*is_id)
                        return true;
        }
        if (!ref_ext_name(s, k) || v == 0)
                return false;
        for (size_t i = 0; i < v; i++) {
                unsigned char c = (unsigned char)eq[1 + i];
                if (c < 0x21 || c > 0x7e || c == '=' || c == ';')
                        return false;
        }
        return true;
}

/* sts-text-record = sts-version 1*(sts-field-delim sts-field) [sts-field-delim], the delimiter
 * *WSP ";" *WSP. */
static int ref_sts_record(const char *s, char id[MTASTS_ID_MAX + 1])
{
        id[0] = 0;
        if (strncmp(s, "v=STSv1", 7) != 0 || (s[7] && s[7] != ';' && !is_wsp_c(s[7])))
                return -ENOENT;
        const char *p = s + 7;
        while (*p) {
                while (is_wsp_c(*p))
                        p++;
                if (*p++ != ';') {
                        id[0] = 0;
                        return -EINVAL;
                }
                while (is_wsp_c(*p))
                        p++;
                if (!*p)
                        break; /* the trailing delimiter */
                size_t n = strcspn(p, " \t;");
                bool is_id;
                if (!ref_sts_field(p, n, &is_id)) {
                        id[0] = 0;
                        return -EINVAL;
                }
                if (is_id && !id[0]) {
                        memcpy(id, p + 3, n - 3);
                        id[n - 3] = 0;
                }
                p += n;
        }
        return id[0] ? 0 : -EINVAL;
}

/* Error buffer sizes: 2 to 198 (a refusal always says something). */
static size_t err_size(unsigned variant)
{
        return 2 + (size_t)variant * 7;
}

static void check_sts_record(unsigned variant, const uint8_t *in, size_t n)
{
        size_t len = strnlen((const char *)in, n), esz = err_size(variant);
        char *txt = xmalloc(len + 1), *err = xmalloc(esz);
        memcpy(txt, in, len);
        txt[len] = 0;
        char id[MTASTS_ID_MAX + 1], want_id[MTASTS_ID_MAX + 1];
        memset(id, JUNK, sizeof(id));
        memset(err, JUNK, esz);
        err[0] = 0;
        int want = ref_sts_record(txt, want_id);
        int rc = mtasts_txt_parse(txt, id, err, esz);
        FUZZ_ASSERT(rc == want, "mtasts_txt_parse('%s'): %d, want %d", txt, rc, want);
        FUZZ_ASSERT(terminated(id, sizeof(id)), "mtasts_txt_parse: id not NUL-terminated");
        FUZZ_ASSERT(strcmp(id, want_id) == 0, "mtasts_txt_parse('%s'): id '%s', want '%s'", txt, id,
                    want_id);
        if (rc == -EINVAL)
                FUZZ_ASSERT(terminated(err, esz) && err[0],
                            "mtasts_txt_parse('%s'): refused without a NUL-terminated err", txt);
        free(err);
        free(txt);
}

/* ---- mx matching (4.1) ---- */

static bool ref_matches(const char *const *pats, size_t n, const char *host)
{
        /* the host's first label: up to its first dot that no backslash escapes */
        size_t i = 0;
        while (host[i] && host[i] != '.')
                i += host[i] == '\\' && host[i + 1] ? 2 : 1;
        for (size_t k = 0; k < n; k++) {
                if (ascii_caseeq(pats[k], host))
                        return true;
                if (pats[k][0] == '*' && pats[k][1] == '.' && pats[k][2] && host[i] == '.' &&
                    i > 0 && ascii_caseeq(host + i + 1, pats[k] + 2))
                        return true;
        }
        return false;
}

static void check_match(const struct mtasts_policy *p, const char *host, size_t hlen)
{
        const char *pats[MTASTS_MX_MAX];
        for (size_t k = 0; k < p->n_mx; k++)
                pats[k] = p->mx[k];
        char *h = xmalloc(hlen + 1); /* exactly its length */
        memcpy(h, host, hlen);
        h[hlen] = 0;
        bool want = ref_matches(pats, p->n_mx, h), got = mtasts_mx_matches(p, h);
        FUZZ_ASSERT(got == want,
                    "mtasts_mx_matches('%s') over %zu patterns (first '%s'): %d, want %d", h,
                    p->n_mx, p->n_mx ? p->mx[0] : "", got, want);
        free(h);
}

/* Host: the first line; patterns: the next lines (none with a NUL byte, at most
 * MTASTS_NAME_MAX bytes), whatever their form. */
static void check_mx_match(const uint8_t *in, size_t n)
{
        static struct mtasts_policy p;
        const char *s = (const char *)in;
        const char *nl = memchr(s, '\n', n);
        size_t hlen = nl ? (size_t)(nl - s) : n;
        if (memchr(s, 0, hlen))
                return;
        p.mode = MTASTS_MODE_ENFORCE;
        p.max_age = 1;
        p.n_mx = 0;
        for (size_t i = hlen + 1; i < n && p.n_mx < MTASTS_MX_MAX;) {
                const char *e = memchr(s + i, '\n', n - i);
                size_t l = e ? (size_t)(e - (s + i)) : n - i;
                if (l <= MTASTS_NAME_MAX && !memchr(s + i, 0, l)) {
                        memcpy(p.mx[p.n_mx], s + i, l);
                        p.mx[p.n_mx++][l] = 0;
                }
                i += l + 1;
        }
        check_match(&p, s, hlen);
}

/* ---- policy file (3.2) ---- */

struct ref_policy {
        enum mtasts_mode mode;
        long max_age;
        size_t n_mx; /* every mx line; the first MTASTS_MX_MAX recorded */
        const char *mx[MTASTS_MX_MAX];
        size_t mx_len[MTASTS_MX_MAX];
};

/* ["*."] Domain of RFC 5321: labels of letters, digits and inner '-', at most MTASTS_NAME_MAX
 * bytes in all. */
static bool ref_mx_pattern(const char *v, size_t n)
{
        if (n > MTASTS_NAME_MAX)
                return false;
        if (n >= 2 && v[0] == '*' && v[1] == '.')
                v += 2, n -= 2;
        size_t start = 0;
        for (size_t i = 0; i <= n; i++) {
                if (i == n || v[i] == '.') {
                        if (i == start || v[start] == '-' || v[i - 1] == '-')
                                return false;
                        start = i + 1;
                } else if (!is_alnum_c((unsigned char)v[i]) && v[i] != '-') {
                        return false;
                }
        }
        return true;
}

static bool value_is(const char *v, size_t n, const char *s)
{
        return n == strlen(s) && memcmp(v, s, n) == 0;
}

static int ref_policy(const char *t, size_t len, struct ref_policy *r)
{
        bool version = false, mode = false, max_age = false;
        *r = (struct ref_policy){ .mode = MTASTS_MODE_NONE };
        if (memchr(t, 0, len))
                return -EINVAL;
        for (size_t i = 0; i < len;) {
                const char *line = t + i, *nl = memchr(line, '\n', len - i);
                size_t n = nl ? (size_t)(nl - line) : len - i;
                i += n + 1;
                if (n > 0 && line[n - 1] == '\r')
                        n--;
                if (n == 0)
                        continue; /* blank */
                const char *colon = memchr(line, ':', n);
                if (!colon || !ref_ext_name(line, (size_t)(colon - line)))
                        return -EINVAL;
                size_t k = (size_t)(colon - line);
                const char *v = colon + 1, *ve = line + n;
                while (v < ve && is_wsp_c(*v))
                        v++;
                while (ve > v && is_wsp_c(ve[-1]))
                        ve--;
                size_t vn = (size_t)(ve - v);
                if (value_is(line, k, "version")) {
                        if (!value_is(v, vn, "STSv1"))
                                return -EINVAL;
                        version = true;
                } else if (value_is(line, k, "mode")) {
                        if (value_is(v, vn, "enforce"))
                                r->mode = MTASTS_MODE_ENFORCE;
                        else if (value_is(v, vn, "testing"))
                                r->mode = MTASTS_MODE_TESTING;
                        else if (value_is(v, vn, "none"))
                                r->mode = MTASTS_MODE_NONE;
                        else
                                return -EINVAL;
                        mode = true;
                } else if (value_is(line, k, "max_age")) {
                        if (vn < 1 || vn > 10)
                                return -EINVAL;
                        long a = 0;
                        for (size_t j = 0; j < vn; j++) {
                                if (v[j] < '0' || v[j] > '9')
                                        return -EINVAL;
                                a = a * 10 + (v[j] - '0');
                        }
                        if (a > MTASTS_MAX_AGE_MAX)
                                return -EINVAL;
                        r->max_age = a;
                        max_age = true;
                } else if (value_is(line, k, "mx")) {
                        if (!ref_mx_pattern(v, vn))
                                return -EINVAL;
                        if (r->n_mx < MTASTS_MX_MAX) {
                                r->mx[r->n_mx] = v;
                                r->mx_len[r->n_mx] = vn;
                        }
                        r->n_mx++;
                } else {
                        /* an extension, ignored: 1* of %x20 (inside) and sts-policy-vchar
                         * (printable ASCII and the bytes of UTF-8, not checked further) */
                        if (vn == 0)
                                return -EINVAL;
                        for (size_t j = 0; j < vn; j++)
                                if ((unsigned char)v[j] < 0x20 || v[j] == 0x7f)
                                        return -EINVAL;
                }
        }
        if (!version || !mode || !max_age)
                return -EINVAL;
        if (r->mode != MTASTS_MODE_NONE && r->n_mx == 0)
                return -EINVAL;
        return 0;
}

static void check_policy(unsigned variant, const uint8_t *in, size_t n)
{
        static struct mtasts_policy p;
        static struct ref_policy r;
        size_t esz = err_size(variant);
        char *text = xmalloc(n), *err = xmalloc(esz);
        memcpy(text, in, n);
        memset(&p, JUNK, sizeof(p));
        memset(err, JUNK, esz);
        int want = ref_policy(text, n, &r);
        int rc = mtasts_policy_parse(text, n, &p, err, esz);
        FUZZ_ASSERT(rc == want, "mtasts_policy_parse(%zu bytes): %d (%.*s), want %d", n, rc,
                    terminated(err, esz) ? (int)strlen(err) : 0, err, want);
        if (rc < 0) {
                FUZZ_ASSERT(terminated(err, esz) && err[0],
                            "mtasts_policy_parse: refused without a NUL-terminated err");
                goto out;
        }
        FUZZ_ASSERT(p.mode == r.mode && p.max_age == r.max_age && p.max_age >= 0 &&
                        p.max_age <= MTASTS_MAX_AGE_MAX,
                    "mtasts_policy_parse: mode %d max_age %ld, want %d %ld", (int)p.mode, p.max_age,
                    (int)r.mode, r.max_age);
        size_t want_n = r.n_mx < MTASTS_MX_MAX ? r.n_mx : MTASTS_MX_MAX;
        FUZZ_ASSERT(p.n_mx == want_n, "mtasts_policy_parse: %zu mx, want %zu", p.n_mx, want_n);
        FUZZ_ASSERT(p.mode == MTASTS_MODE_NONE || p.n_mx > 0,
                    "mtasts_policy_parse: mode %s without an mx", mtasts_mode_name(p.mode));
        for (size_t k = 0; k < p.n_mx; k++)
                FUZZ_ASSERT(terminated(p.mx[k], sizeof(p.mx[k])) && p.mx[k][0] &&
                                strlen(p.mx[k]) == r.mx_len[k] &&
                                memcmp(p.mx[k], r.mx[k], r.mx_len[k]) == 0,
                            "mtasts_policy_parse: mx %zu is '%.*s', want '%.*s'", k,
                            terminated(p.mx[k], sizeof(p.mx[k])) ? (int)strlen(p.mx[k]) : 0,
                            p.mx[k], (int)r.mx_len[k], r.mx[k]);
        /* the patterns against hosts made from them: themselves in upper case, and for "*.d"
         * d, "x.d" and "y.x.d" */
        char host[MTASTS_NAME_MAX + 8];
        for (size_t k = 0; k < p.n_mx && k < 4; k++) {
                const char *pat = p.mx[k];
                size_t l = strlen(pat);
                for (size_t j = 0; j <= l; j++)
                        host[j] = (char)(pat[j] >= 'a' && pat[j] <= 'z' ? pat[j] - 32 : pat[j]);
                check_match(&p, host, l);
                if (pat[0] != '*')
                        continue;
                check_match(&p, pat + 2, l - 2);
                memcpy(host, "y.x", 3);
                memcpy(host + 3, pat + 1, l);
                check_match(&p, host + 2, l);
                check_match(&p, host, l + 2);
        }
out:
        free(err);
        free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        if (size == 0)
                return 0;
        enum kind k = (enum kind)(data[0] % K_N);
        unsigned variant = data[0] / K_N;
        const uint8_t *d = data + 1;
        size_t n = size - 1;
        switch (k) {
        case K_MX:
                check_mx(d, n);
                break;
        case K_A:
        case K_AAAA:
                /* variants 3, 7, ...: a type that is neither */
                check_address(variant % 4 == 3 ? DNS_TYPE_MX + (int)(variant / 4)
                              : k == K_A       ? DNS_TYPE_A
                                               : DNS_TYPE_AAAA,
                              d, n);
                break;
        case K_TLSA:
                check_tlsa(d, n);
                break;
        case K_TXT:
                check_txt(variant, d, n);
                break;
        case K_NAME:
                check_name(d, n);
                break;
        case K_STS_RECORD:
                check_sts_record(variant, d, n);
                break;
        case K_POLICY:
                check_policy(variant, d, n);
                break;
        case K_MX_MATCH:
        case K_N:
                check_mx_match(d, n);
                break;
        }
        return 0;
}
