/* fuzz_common.h - what the libFuzzer harnesses share: the property failure (a message on stderr,
 * then a trap, which libFuzzer records as a crash with the input as reproducer), UTF-8 and JSON
 * pointer checks, and the checks every struct problem must pass. Header only: each harness is
 * one translation unit. */
#pragma once

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "core/problem.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A broken property: say which, then trap. Nothing is printed while properties hold. */
__attribute__((noreturn, format(printf, 1, 2))) static void fuzz_fail(const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        fputs("PROPERTY VIOLATED: ", stderr);
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
        va_end(ap);
        fflush(stderr);
        __builtin_trap();
}

#define FUZZ_ASSERT(cond, ...)                                                                     \
        do {                                                                                       \
                if (!(cond))                                                                       \
                        fuzz_fail(__VA_ARGS__);                                                    \
        } while (0)

/* Strict UTF-8 (what jansson accepts in a string): no overlongs, no surrogates, <= U+10FFFF. */
static inline bool fuzz_utf8_valid(const char *s, size_t n)
{
        const unsigned char *p = (const unsigned char *)s;
        size_t i = 0;
        while (i < n) {
                unsigned char c = p[i];
                size_t k;
                uint32_t cp;
                if (c < 0x80) {
                        i++;
                        continue;
                } else if (c >= 0xc2 && c <= 0xdf) {
                        k = 1;
                        cp = c & 0x1f;
                } else if (c >= 0xe0 && c <= 0xef) {
                        k = 2;
                        cp = c & 0x0f;
                } else if (c >= 0xf0 && c <= 0xf4) {
                        k = 3;
                        cp = c & 0x07;
                } else {
                        return false;
                }
                if (n - i <= k)
                        return false;
                for (size_t j = 1; j <= k; j++) {
                        if ((p[i + j] & 0xc0) != 0x80)
                                return false;
                        cp = cp << 6 | (p[i + j] & 0x3f);
                }
                if ((k == 2 && cp < 0x800) || (k == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
                    (cp >= 0xd800 && cp <= 0xdfff))
                        return false;
                i += k + 1;
        }
        return true;
}

static inline bool fuzz_has_control(const char *s)
{
        for (; *s; s++)
                if ((unsigned char)*s < 0x20 || *s == 0x7f)
                        return true;
        return false;
}

/* RFC 6901: "" or "/" segments, '~' only as ~0 or ~1; printable; valid UTF-8 (it goes into a JSON
 * problem body, where jansson drops an invalid string silently). */
static inline bool fuzz_json_pointer_ok(const char *f)
{
        size_t n = strlen(f);
        if (n == 0)
                return true;
        if (f[0] != '/' || fuzz_has_control(f) || !fuzz_utf8_valid(f, n))
                return false;
        for (size_t i = 0; i < n; i++)
                if (f[i] == '~' && (i + 1 >= n || (f[i + 1] != '0' && f[i + 1] != '1')))
                        return false;
        return true;
}

/* Every refusal: a code, a JSON pointer (under prefix when prefix is not NULL), a detail that a
 * problem+json body can carry. */
static inline void fuzz_check_problem(const struct problem *p, const char *prefix, const char *what)
{
        FUZZ_ASSERT(p->code > PROBLEM_NONE && p->code < _PROBLEM_MAX, "%s: refused with code %d",
                    what, (int)p->code);
        FUZZ_ASSERT(memchr(p->field, 0, sizeof(p->field)) &&
                        memchr(p->detail, 0, sizeof(p->detail)),
                    "%s: unterminated problem", what);
        FUZZ_ASSERT(fuzz_json_pointer_ok(p->field), "%s: field '%s' (%s) is not a JSON pointer",
                    what, p->field, problem_code_name(p->code));
        FUZZ_ASSERT(p->detail[0], "%s: %s without a detail", what, problem_code_name(p->code));
        FUZZ_ASSERT(fuzz_utf8_valid(p->detail, strlen(p->detail)),
                    "%s: %s detail is not UTF-8 (field '%s')", what, problem_code_name(p->code),
                    p->field);
        if (prefix && prefix[0]) {
                size_t n = strlen(prefix);
                FUZZ_ASSERT(strncmp(p->field, prefix, n) == 0 &&
                                (p->field[n] == 0 || p->field[n] == '/'),
                            "%s: field '%s' is not under '%s'", what, p->field, prefix);
        }
}
