/* console.c (api) - the web console: GET / and GET /console/{path}, served from the files of
 * console/ compiled into the daemon (scripts/embed-console.py), so an installed daemon needs no
 * asset directory. Each reply has a strong ETag (If-None-Match -> 304), Cache-Control: no-cache
 * (revalidated each load, a 304 when unchanged) and the security headers below. A {path} that
 * names no asset and has no dot is a view of the page (/console/certificates) and gets the
 * index; a missing file (a dot in the name) is a 404 problem. No token: the page signs in
 * through /api/v1/session. HTTP threads. */
#include <string.h>

#include "api/api.h"

/* No inline script or style, nothing from another origin, never framed. */
#define CONSOLE_CSP                                                                                \
        "default-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "             \
        "frame-ancestors 'none'"

const struct console_asset *console_asset_find(const char *name)
{
        for (size_t i = 0; i < console_assets_count; i++)
                if (streq(console_assets[i].name, name))
                        return &console_assets[i];
        return NULL;
}

static int console_reply(struct request *req, const struct console_asset *a, struct problem *reterr)
{
        static const struct {
                const char *name, *value;
        } headers[] = {
                { "Cache-Control", "no-cache" }, /* revalidated: a 304 while unchanged */
                { "Content-Security-Policy", CONSOLE_CSP },
                { "Referrer-Policy", "no-referrer" },
                { "X-Frame-Options", "DENY" },
                /* X-Content-Type-Options: nosniff is on every reply (http/server.c) */
        };
        for (size_t i = 0; i < ARRAY_SIZE(headers); i++)
                if (reply_header(req, headers[i].name, "%s", headers[i].value) < 0)
                        return problem_set_errno(reterr, -EIO, PROBLEM_INTERNAL_ERROR, NULL,
                                                 "too many headers");
        return reply_static(req, a->media_type, a->data, a->len, a->etag, reterr);
}

int api_console_index(struct request *req, struct problem *reterr)
{
        return console_reply(req, &console_assets[0], reterr);
}

int api_console_asset(struct request *req, struct problem *reterr)
{
        const char *name = req->params[0];
        const struct console_asset *a = console_asset_find(name);
        if (!a && strchr(name, '.'))
                return problem_set_errno(reterr, -ENOENT, PROBLEM_NOT_FOUND, NULL,
                                         "the console has no file named '%.64s'", name);
        return console_reply(req, a ? a : &console_assets[0], reterr);
}
