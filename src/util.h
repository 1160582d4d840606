/* util.h - small helpers every module uses: cleanup attributes for ownership, monotonic time,
 * bounded string copies. No state; safe on any thread. */
#pragma once

#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Ownership: a local marked _cleanup_xxx_ is released when it leaves scope; TAKE_PTR hands it on.
 */
#define _cleanup_(f)    __attribute__((cleanup(f)))
#define _cleanup_free_  _cleanup_(freep)
#define _cleanup_close_ _cleanup_(closep)
#define _unused_        __attribute__((unused))
#define _printf_(a, b)  __attribute__((format(printf, a, b)))

#define TAKE_PTR(p)                                                                                \
        __extension__({                                                                            \
                __typeof__(p) _p_ = (p);                                                           \
                (p) = NULL;                                                                        \
                _p_;                                                                               \
        })

#define TAKE_FD(fd)                                                                                \
        __extension__({                                                                            \
                int _fd_ = (fd);                                                                   \
                (fd) = -1;                                                                         \
                _fd_;                                                                              \
        })

/* Declares a cleanup function name##p that calls func(*p) when *p is not NULL. */
#define DEFINE_TRIVIAL_CLEANUP_FUNC(type, func)                                                    \
        static inline void func##p(type *p)                                                        \
        {                                                                                          \
                if (*p)                                                                            \
                        func(*p);                                                                  \
        }

static inline void freep(void *p)
{
        free(*(void **)p);
}

static inline void closep(int *fd)
{
        if (*fd >= 0) {
                int saved = errno;
                close(*fd);
                errno = saved;
        }
}

static inline bool streq(const char *a, const char *b)
{
        return strcmp(a, b) == 0;
}

static inline bool streq_ptr(const char *a, const char *b)
{
        if (!a || !b)
                return a == b;
        return strcmp(a, b) == 0;
}

static inline bool isempty(const char *s)
{
        return !s || !*s;
}

/* The monotonic clock in microseconds. */
uint64_t now_monotonic_usec(void);
/* Parses an RFC 3339 date-time ("2026-11-22T10:00:00Z", "2026-11-22t10:00:00.5+02:00") into
 * seconds since the epoch (fractions dropped): 0, or -EINVAL for anything else (a date or a time
 * alone, a missing offset, a field out of range). */
int parse_rfc3339(const char *s, int64_t *ret);

/* strlcpy-like: always terminates, returns -ENAMETOOLONG when truncated. */
int strcpy_bounded(char *dst, size_t size, const char *src);

/* Parses a whole decimal number in [min, max]; returns -EINVAL or -ERANGE. */
int parse_int64(const char *s, int64_t min, int64_t max, int64_t *ret);
/* Whether the If-None-Match value `list` ("*" or a comma-separated list of entity tags) holds
 * etag, by the weak comparison of RFC 9110 13.1.2 (W/ is ignored). */
bool etag_list_has_weak(const char *list, const char *etag);

/* FNV-1a of n bytes, the offset basis xored with seed (0: the standard hash). Not for anything
 * an attacker may choose against a fixed seed. */
uint64_t hash_fnv1a(uint64_t seed, const void *data, size_t n);

/* A growable byte string, kept NUL-terminated: p is malloc'ed (free it), cap its size. */
struct strbuf {
        char *p;
        size_t len, cap;
};
/* Appends n bytes, doubling cap as needed (a first cap may be set before p is allocated);
 * -ENOMEM leaves b as it was. */
int strbuf_add(struct strbuf *b, const void *s, size_t n);

/* Hex encoding of bytes, lower case; out must hold 2*n+1 bytes. */
void hex_encode(const unsigned char *in, size_t n, char *out);
/* The SHA-256 of data as 64 lower-case hex digits into out ("" when OpenSSL fails). */
void sha256_hex(const void *data, size_t len, char out[65]);
/* The value of one hex digit (either case), -1 for anything else. */
int hex_digit_value(char c);

/* The base64url alphabet (RFC 4648 section 5). */
extern const char base64url_alphabet[];
/* base64url of n bytes, without padding; out must hold BASE64URL_SIZE(n) bytes. */
#define BASE64URL_SIZE(n) (((n)*4 + 2) / 3 + 1)
void base64url_encode(const unsigned char *in, size_t n, char *out);
/* Decodes unpadded base64url text into out (up to size bytes): the number of bytes, or -EINVAL
 * for a character outside the alphabet, an impossible length or non-zero trailing bits (so each
 * byte string has one text), -ENOBUFS when it does not fit. */
ssize_t base64url_decode(const char *in, unsigned char *out, size_t size);
