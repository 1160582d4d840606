/* browser.h - what the API decides about browsers, as pure functions: the session cookie's text,
 * origin comparisons (same origin, the CORS allowlist) and whether a request came through HTTPS.
 * http/browser.c; any thread. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#define SESSION_COOKIE_NAME "smtptlsd_session"
/* The header the console sends with every write authenticated by its cookie: a page of another
 * origin cannot send it without a CORS preflight, which never grants credentials. */
#define CSRF_HEADER       "X-Requested-With"
#define CSRF_HEADER_VALUE "smtptlsd"

/* The Set-Cookie value for session id (NULL: one that clears the cookie, Max-Age=0):
 * "smtptlsd_session=<id>; Path=/; HttpOnly; SameSite=Strict[; Secure]". Returns the length, or
 * -ENOBUFS when it does not fit in size. */
int session_cookie_format(char *buf, size_t size, const char *id, bool secure);
/* Whether the Origin header value names the origin whose authority is host (the request's Host
 * header): "https://mx.example:8480" and "mx.example:8480". "null" and malformed origins never
 * match. */
bool origin_is_same(const char *origin, const char *host);
/* Whether origin is one of list (origins separated by spaces, tabs or commas; ASCII
 * case-insensitive; a trailing '/' in the list is tolerated). "null" is never listed. */
bool origin_is_listed(const char *list, const char *origin);
/* Whether a request came through HTTPS by what the daemon can see: an https Origin, or
 * X-Forwarded-Proto: https, or Forwarded: proto=https (any may be NULL). */
bool request_came_through_https(const char *origin, const char *x_forwarded_proto,
                                const char *forwarded);
