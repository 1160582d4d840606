/* browser.c - pure decisions about browsers (browser.h): the session cookie's text and origin
 * comparisons. No I/O; any thread. */
#include "http/browser.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

int session_cookie_format(char *buf, size_t size, const char *id, bool secure)
{
        int n =
            snprintf(buf, size, "%s=%s; Path=/;%s HttpOnly; SameSite=Strict%s", SESSION_COOKIE_NAME,
                     id ? id : "", id ? "" : " Max-Age=0;", secure ? "; Secure" : "");
        if (n < 0 || (size_t)n >= size)
                return -ENOBUFS;
        return n;
}

/* The authority of "scheme://authority" with scheme http or https and nothing after it. */
static const char *origin_authority(const char *origin)
{
        const char *a;
        if (strncasecmp(origin, "https://", 8) == 0)
                a = origin + 8;
        else if (strncasecmp(origin, "http://", 7) == 0)
                a = origin + 7;
        else
                return NULL;
        if (*a == 0 || strpbrk(a, "/?#@ \t"))
                return NULL;
        return a;
}

bool origin_is_same(const char *origin, const char *host)
{
        const char *a = origin ? origin_authority(origin) : NULL;
        return a && host && *host && strcasecmp(a, host) == 0;
}

bool origin_is_listed(const char *list, const char *origin)
{
        size_t olen;
        if (!list || !origin || !origin_authority(origin))
                return false;
        olen = strlen(origin);
        for (const char *p = list; *p;) {
                p += strspn(p, " \t,");
                size_t n = strcspn(p, " \t,");
                size_t m = n > 0 && p[n - 1] == '/' ? n - 1 : n;
                if (m > 0 && m == olen && strncasecmp(p, origin, m) == 0)
                        return true;
                p += n;
        }
        return false;
}

bool request_came_through_https(const char *origin, const char *x_forwarded_proto,
                                const char *forwarded)
{
        if (origin && strncasecmp(origin, "https://", 8) == 0)
                return true;
        if (x_forwarded_proto && strncasecmp(x_forwarded_proto, "https", 5) == 0 &&
            (x_forwarded_proto[5] == 0 || x_forwarded_proto[5] == ','))
                return true;
        /* Forwarded: for=...;proto=https (RFC 7239); the first hop's element is the client's. */
        if (forwarded) {
                size_t first = strcspn(forwarded, ",");
                for (const char *p = forwarded; p < forwarded + first; p++)
                        if ((p == forwarded || p[-1] == ';' || p[-1] == ' ') &&
                            strncasecmp(p, "proto=https", 11) == 0 &&
                            (p[11] == 0 || p[11] == ';' || p[11] == ',' || p[11] == ' '))
                                return true;
        }
        return false;
}
