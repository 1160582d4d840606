/* util.c - helpers declared in util.h: clocks, bounded copies, number parsing. Any thread. */
#include "util.h"

#include <inttypes.h>
#include <stdio.h>
#include <time.h>
#include <openssl/evp.h>

uint64_t now_monotonic_usec(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* n digits at *s as a number within [min, max], advancing *s; -1 when not so. */
static int digits(const char **s, int n, int min, int max)
{
        int v = 0;
        for (int i = 0; i < n; i++, (*s)++) {
                if (**s < '0' || **s > '9')
                        return -1;
                v = v * 10 + (**s - '0');
        }
        return v < min || v > max ? -1 : v;
}

int parse_rfc3339(const char *s, int64_t *ret)
{
        static const int mdays[] = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
        struct tm tm = { 0 };
        int y = digits(&s, 4, 0, 9999);
        int mo = *s++ == '-' ? digits(&s, 2, 1, 12) : -1;
        int d = mo > 0 && *s++ == '-' ? digits(&s, 2, 1, mdays[mo - 1]) : -1;
        if (y < 0 || d < 0 || (*s != 'T' && *s != 't'))
                return -EINVAL;
        s++;
        int h = digits(&s, 2, 0, 23);
        int mi = h >= 0 && *s++ == ':' ? digits(&s, 2, 0, 59) : -1;
        int sec = mi >= 0 && *s++ == ':' ? digits(&s, 2, 0, 60) : -1;
        if (sec < 0)
                return -EINVAL;
        if (mo == 2 && d == 29 && !(y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)))
                return -EINVAL;
        if (*s == '.') {
                s++;
                if (*s < '0' || *s > '9')
                        return -EINVAL;
                while (*s >= '0' && *s <= '9')
                        s++;
        }
        int64_t offset = 0;
        if (*s == 'Z' || *s == 'z') {
                s++;
        } else if (*s == '+' || *s == '-') {
                int sign = *s++ == '-' ? -1 : 1;
                int oh = digits(&s, 2, 0, 23);
                int om = oh >= 0 && *s++ == ':' ? digits(&s, 2, 0, 59) : -1;
                if (om < 0)
                        return -EINVAL;
                offset = sign * (oh * 3600 + om * 60);
        } else {
                return -EINVAL;
        }
        if (*s)
                return -EINVAL;
        tm.tm_year = y - 1900;
        tm.tm_mon = mo - 1;
        tm.tm_mday = d;
        tm.tm_hour = h;
        tm.tm_min = mi;
        tm.tm_sec = sec == 60 ? 59 : sec; /* a leap second counts as the one before it */
        *ret = (int64_t)timegm(&tm) - offset;
        return 0;
}

int strcpy_bounded(char *dst, size_t size, const char *src)
{
        size_t n = strlen(src);
        if (size == 0)
                return -ENAMETOOLONG;
        if (n >= size) {
                memcpy(dst, src, size - 1);
                dst[size - 1] = 0;
                return -ENAMETOOLONG;
        }
        memcpy(dst, src, n + 1);
        return 0;
}

bool etag_list_has_weak(const char *list, const char *etag)
{
        const char *p = list + strspn(list, " \t");
        if (p[0] == '*' && p[1 + strspn(p + 1, " \t")] == 0)
                return true;
        size_t want = strlen(etag);
        while (*(p += strspn(p, " \t,"))) {
                const char *tag = strncmp(p, "W/", 2) == 0 ? p + 2 : p;
                const char *end = *tag == '"' ? strchr(tag + 1, '"') : NULL;
                if (!end)
                        return false; /* not a list of entity tags */
                if ((size_t)(end + 1 - tag) == want && strncmp(tag, etag, want) == 0)
                        return true;
                p = end + 1;
        }
        return false;
}

int parse_int64(const char *s, int64_t min, int64_t max, int64_t *ret)
{
        char *end;
        long long v;

        if (isempty(s))
                return -EINVAL;
        errno = 0;
        v = strtoll(s, &end, 10);
        if (errno == ERANGE)
                return -ERANGE;
        if (*end || end == s)
                return -EINVAL;
        if (v < min || v > max)
                return -ERANGE;
        *ret = v;
        return 0;
}

uint64_t hash_fnv1a(uint64_t seed, const void *data, size_t n)
{
        const unsigned char *p = data;
        uint64_t h = 14695981039346656037ull ^ seed;
        for (size_t i = 0; i < n; i++) {
                h ^= p[i];
                h *= 1099511628211ull;
        }
        return h;
}

int strbuf_add(struct strbuf *b, const void *s, size_t n)
{
        if (!b->p || b->len + n + 1 > b->cap) {
                size_t cap = b->cap ? b->cap : 256;
                while (cap < b->len + n + 1)
                        cap *= 2;
                char *p = realloc(b->p, cap);
                if (!p)
                        return -ENOMEM;
                b->p = p;
                b->cap = cap;
        }
        memcpy(b->p + b->len, s, n);
        b->len += n;
        b->p[b->len] = 0;
        return 0;
}

void hex_encode(const unsigned char *in, size_t n, char *out)
{
        static const char digits[] = "0123456789abcdef";
        for (size_t i = 0; i < n; i++) {
                out[2 * i] = digits[in[i] >> 4];
                out[2 * i + 1] = digits[in[i] & 0xf];
        }
        out[2 * n] = 0;
}

const char base64url_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

void base64url_encode(const unsigned char *in, size_t n, char *out)
{
        size_t o = 0;
        for (size_t i = 0; i < n; i += 3) {
                uint32_t v = (uint32_t)in[i] << 16;
                if (i + 1 < n)
                        v |= (uint32_t)in[i + 1] << 8;
                if (i + 2 < n)
                        v |= in[i + 2];
                out[o++] = base64url_alphabet[(v >> 18) & 63];
                out[o++] = base64url_alphabet[(v >> 12) & 63];
                if (i + 1 < n)
                        out[o++] = base64url_alphabet[(v >> 6) & 63];
                if (i + 2 < n)
                        out[o++] = base64url_alphabet[v & 63];
        }
        out[o] = 0;
}

ssize_t base64url_decode(const char *in, unsigned char *out, size_t size)
{
        size_t len = strlen(in), n = 0;
        uint32_t acc = 0;
        unsigned bits = 0;
        if (len % 4 == 1)
                return -EINVAL;
        for (size_t i = 0; i < len; i++) {
                const char *p = strchr(base64url_alphabet, in[i]);
                if (!p || !in[i])
                        return -EINVAL;
                acc = acc << 6 | (uint32_t)(p - base64url_alphabet);
                bits += 6;
                if (bits >= 8) {
                        bits -= 8;
                        if (n >= size)
                                return -ENOBUFS;
                        out[n++] = (unsigned char)(acc >> bits);
                        acc &= (1u << bits) - 1;
                }
        }
        if (acc != 0)
                return -EINVAL;
        return (ssize_t)n;
}

int hex_digit_value(char c)
{
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}

void sha256_hex(const void *data, size_t len, char out[65])
{
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int mdlen = 0;
        out[0] = 0;
        if (EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL) == 1 && mdlen == 32)
                hex_encode(md, 32, out);
}
