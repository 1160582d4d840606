/* chars.h - the character classes of the grammars (destinations, policy values, map text), in
 * the C locale whatever the process's: ASCII only. Pure; any thread. */
#pragma once

#include <stdbool.h>

static inline bool is_digit(unsigned char c)
{
        return c >= '0' && c <= '9';
}

static inline bool is_alpha(unsigned char c)
{
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static inline bool is_alnum(unsigned char c)
{
        return is_digit(c) || is_alpha(c);
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
