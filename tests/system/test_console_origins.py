"""The console and the API seen from other origins, in Debian's chromium against the real daemon
and PostgreSQL. The other origins are pages served by a small HTTP server of the test's own (Python's
http.server) on other loopback ports and addresses; their script is ours (the daemon's CSP covers
only the daemon's pages).

  (a) CSRF: a page of another origin, in the browser that holds a console session, tries writes
      (fetch with credentials, a form POST). Which layer stops each is asserted, and that nothing
      was written: from 127.0.0.1:OTHER (same site, so SameSite=Strict lets the cookie go) the
      daemon refuses (csrf_refused) or the browser never sends it (a preflight that gets no CORS
      grant); from 127.0.0.2 (another site) the browser withholds the cookie and the daemon sees
      a request without credentials.
  (b) CORS: an origin listed in cors_allowed_origins calls the API with a bearer token (GET, a
      PUT with If-Match, reading ETag and Job-Id); an origin not listed is blocked by the browser;
      no cookie is ever sent across origins.
  (c) A read-scope session: every page of the navigation shows no write control enabled."""
import http.server
import threading

import pytest


ATTACKER_HTML = """<!doctype html>
<html><head><meta charset="utf-8"><title>another origin</title></head><body>
<form id="f" method="POST" enctype="text/plain" action="{daemon}/api/v1/tls-policies">
<input type="hidden" name='{{"destination": "form.example", "level": "none", "x": "' value='"}}'>
</form>
<script>
// What another site's page can try against the daemon (the test calls these).
const DAEMON = {daemon!r};
const BODY = JSON.stringify({{destination: 'fetch.example', level: 'none'}});
async function attempt(init) {{
  try {{
    const r = await fetch(DAEMON + '/api/v1/tls-policies', {{method: 'POST', credentials: 'include', body: BODY, ...init}});
    return {{sent: true, type: r.type, status: r.status}};
  }} catch (e) {{
    return {{sent: false, error: String(e)}};
  }}
}}
// the console's own request, header included: needs a preflight, which is never granted
window.jsonWrite = () => attempt({{headers: {{'Content-Type': 'application/json', 'X-Requested-With': 'smtptlsd'}}}});
// a "simple" request: no preflight, the browser sends it blind (mode no-cors)
window.simpleWrite = () => attempt({{mode: 'no-cors', headers: {{'Content-Type': 'text/plain'}}}});
window.formWrite = () => document.getElementById('f').submit();
// (b) a front end with a bearer token
window.api = async (method, path, token, init = {{}}) => {{
  try {{
    const headers = {{Authorization: 'Bearer ' + token, ...(init.headers || {{}})}};
    const r = await fetch(DAEMON + path, {{...init, method, headers}});
    let body = null;
    try {{ body = await r.json(); }} catch (e) {{ }}
    return {{ok: true, status: r.status, etag: r.headers.get('ETag'), jobId: r.headers.get('Job-Id'), body}};
  }} catch (e) {{
    return {{ok: false, error: String(e)}};
  }}
}};
</script></body></html>
"""


class Origin:
    """A tiny HTTP server on (host, a free port) serving ATTACKER_HTML at /: another origin. Its
    page names the daemon of `daemon_url`, which may be set after the server starts (a daemon
    whose cors_allowed_origins lists this origin starts after it)."""

    def __init__(self, host, daemon_url=None):
        self.daemon_url = daemon_url
        origin = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                page = ATTACKER_HTML.format(daemon=origin.daemon_url).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer((host, 0), Handler)
        self.url = f"http://{host}:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


@pytest.fixture
def origins():
    made = []

    def make(host, daemon_url=None):
        o = Origin(host, daemon_url)
        made.append(o)
        return o
    yield make
    for o in made:
        o.close()


def open_other(page, url):
    """A tab of `url` in the same browser context as page (its cookies); returns nothing, the
    code of later calls reaches it as context.pages()[1]."""
    page.run("const p = await context.newPage(); await p.goto(args.url);"
             "await p.waitForFunction(() => typeof window.api === 'function')", url=url)


# Watches the other tab's next request to the daemon: what the daemon answered, as the network saw
# it (the status of an opaque reply too). Whether the session cookie went with it shows in the
# answer: the daemon says 403 csrf_refused only to a request carrying the cookie (src/http/auth.c),
# and 401 to one without credentials.
WATCH = """
    const other = context.pages()[1];
    const seen = other.waitForResponse((r) => r.url().startsWith(args.daemon + '/api/'), { timeout: 10000 })
        .then(async (r) => ({ status: r.status(), method: r.request().method() }))
        .catch(() => null);
"""


def written(d):
    """Policies and jobs: what a write would leave behind."""
    return ([p["destination"] for p in d.get("/api/v1/tls-policies").body["items"]],
            [j["id"] for j in d.get("/api/v1/jobs").body["items"]])


def test_csrf_from_other_origins_writes_nothing(daemon, browser, origins):
    d = daemon
    before = written(d)
    page = browser.open(d.url)
    page.sign_in(d.token)
    # the console itself may write with its session (the same write goes through from there)
    assert page.run("""return await page.evaluate(async () => (await fetch('/api/v1/tls-policies?dry_run=true', {
        method: 'POST', headers: {'Content-Type': 'application/json', 'X-Requested-With': 'smtptlsd'},
        body: JSON.stringify({destination: 'fetch.example', level: 'none'})})).status)""") == 200

    layers = {}
    for host, site in (("127.0.0.1", "same-site"), ("127.0.0.2", "cross-site")):
        other = origins(host, d.url)
        open_other(page, other.url)
        # the console's JSON write with its header: the preflight is refused, the POST never leaves
        r = page.run("return await context.pages()[1].evaluate(() => window.jsonWrite())")
        assert not r["sent"] and "Failed to fetch" in r["error"], r
        layers[(site, "fetch json")] = "browser: CORS preflight refused (403 origin_not_allowed)"
        # a simple request, sent blind: the daemon answers it, and what stops it depends on the site
        seen = page.run(WATCH + """
            const r = await other.evaluate(() => window.simpleWrite());
            return { r, seen: await seen };""", daemon=d.url)
        assert seen["r"]["sent"] and seen["r"]["type"] == "opaque", seen
        s = seen["seen"]
        if site == "same-site":
            # SameSite=Strict lets the cookie go to another port of the same host: the daemon
            # refuses the request (Sec-Fetch-Site is not same-origin, no X-Requested-With)
            assert s["status"] == 403, s
            layers[(site, "fetch simple")] = "daemon: 403 csrf_refused (cookie sent)"
        else:
            # another site: the browser withholds the cookie; the daemon sees no credentials
            assert s["status"] == 401, s
            layers[(site, "fetch simple")] = "browser: SameSite=Strict withheld the cookie (401)"
        # a form POST (a top-level navigation to the daemon's reply)
        seen = page.run(WATCH + """
            await other.evaluate(() => window.formWrite());
            const s = await seen;
            await other.waitForURL(args.daemon + '/api/v1/tls-policies');
            return { ...s, shown: await other.locator('body').innerText() };""", daemon=d.url)
        assert seen["method"] == "POST", seen
        if site == "same-site":
            assert seen["status"] == 403 and '"csrf_refused"' in seen["shown"], seen
            assert "Sec-Fetch-Site is 'same-site'" in seen["shown"], seen
            layers[(site, "form")] = "daemon: 403 csrf_refused (cookie sent)"
        else:
            assert seen["status"] == 401 and '"unauthorized"' in seen["shown"], seen
            layers[(site, "form")] = "browser: SameSite=Strict withheld the cookie (401)"
        page.run("await context.pages()[1].close()")
        assert written(d) == before, (site, written(d))
    print("\nCSRF stopped by:\n" + "\n".join(f"  {k[0]:10} {k[1]:13} {v}" for k, v in layers.items()))
    # the session is still fine in the console
    page.goto("/console/overview")
    page.run("await page.getByRole('navigation', { name: 'Sections' }).waitFor()")


def test_cors_for_a_listed_origin_only(make_daemon, browser, origins):
    listed = origins("127.0.0.1")
    d = make_daemon({"cors_allowed_origins": listed.url})
    listed.daemon_url = d.url
    unlisted = origins("127.0.0.2", d.url)
    r = d.http("PUT", "/api/v1/tls-policies/partner.example", {"level": "may"})
    assert r.status == 201, r
    writer = d.add_token("frontend", "write")
    page = browser.open(d.url)
    page.sign_in(d.token)  # a console session in the same browser: its cookie must never go
    open_other(page, listed.url)
    got = page.run(WATCH + """
        const g = await other.evaluate((a) => window.api('GET', '/api/v1/tls-policies/partner.example', a.t), args);
        const s = await seen;
        return { g, s };""", daemon=d.url, t=writer)
    g = got["g"]
    assert got["s"]["status"] == 200, got
    assert g["ok"] and g["status"] == 200 and g["body"]["level"] == "may", g
    assert g["etag"] and g["etag"].startswith('"'), g
    put = page.run(WATCH + """
        const p = await other.evaluate((a) => window.api('PUT', '/api/v1/tls-policies/partner.example', a.t,
            {headers: {'Content-Type': 'application/json', 'If-Match': a.etag}, body: JSON.stringify({level: 'encrypt'})}), args);
        return { p, s: await seen };""", daemon=d.url, t=writer, etag=g["etag"])
    p = put["p"]
    assert p["ok"] and p["status"] == 200 and p["body"]["level"] == "encrypt", p
    assert p["jobId"] and p["etag"] and p["etag"] != g["etag"], p
    assert put["s"]["status"] == 200, put
    job = d.get(f"/api/v1/jobs/{p['jobId']}").body
    assert job["status"] == "applied" and job["actor"] == "frontend", job
    # a stale tag: 412, readable by the script, nothing changes
    stale = page.run("""return await context.pages()[1].evaluate((a) => window.api('PUT', '/api/v1/tls-policies/partner.example', a.t,
            {headers: {'Content-Type': 'application/json', 'If-Match': a.etag}, body: JSON.stringify({level: 'none'})}), args)""",
                     t=writer, etag=g["etag"])
    assert stale["status"] == 412 and stale["body"]["code"] == "precondition_failed", stale
    # no cookie goes with the front end's requests: without its token, the daemon sees no
    # credentials at all (401; a cookie would be 403 csrf_refused), and the script may read that
    r = page.run("""return await context.pages()[1].evaluate(async () => {
        const r = await fetch(DAEMON + '/api/v1/tls-policies'); return [r.status, (await r.json()).code]; })""")
    assert r == [401, "unauthorized"], r
    # asked for, the browser sends it (a same-site port) but refuses the reply to the script (no
    # Access-Control-Allow-Credentials), and the daemon refuses the cookie anyway
    r = page.run("""return await context.pages()[1].evaluate(async () => {
        try { await fetch(DAEMON + '/api/v1/tokens', {credentials: 'include'}); return 'read'; }
        catch (e) { return String(e); } })""")
    assert "Failed to fetch" in r, r
    page.run("await context.pages()[1].close()")

    # an origin not listed: the browser blocks the call (the preflight gets no grant)
    open_other(page, unlisted.url)
    for method, init in (("GET", {}), ("PUT", {"headers": {"Content-Type": "application/json",
                                                           "If-Match": "*"},
                                               "body": '{"level": "none"}'})):
        r = page.run("""return await context.pages()[1].evaluate((a) =>
            window.api(a.method, '/api/v1/tls-policies/partner.example', a.t, a.init), args)""",
                     method=method, t=writer, init=init)
        assert not r["ok"] and "Failed to fetch" in r["error"], (method, r)
    assert d.get("/api/v1/tls-policies/partner.example").body["level"] == "encrypt"


# Write controls a page may leave enabled for a read session: none (data-read-ok marks the few
# that only read, e.g. a search box).
READ_ONLY_CHECK = """
    await page.waitForLoadState('networkidle').catch(() => {});
    return await page.evaluate(() => {
        const bad = [], reasons = [];
        for (const c of document.querySelectorAll('main button[data-write], main input, main select, main textarea')) {
            if (c.dataset.readOk !== undefined || c.type === 'hidden') continue;
            if (!c.disabled) bad.push(c.outerHTML.slice(0, 160));
            else reasons.push(c.title);
        }
        return { bad, reasons, failed: document.querySelector('main .error[role=alert]')?.textContent || null,
                 text: document.querySelector('main').innerText };
    });
"""


def test_read_session_has_no_enabled_write_control_on_any_page(daemon, browser):
    d = daemon
    page = browser.open(d.url)
    page.sign_in(d.read_token)
    pages = page.run("""return await page.locator('nav a[data-page]').evaluateAll(
        (l) => l.filter((a) => a.offsetParent !== null).map((a) => a.dataset.page))""")
    assert pages[0] == "overview" and "tokens" not in pages, pages
    checked, absent = [], []
    for name in pages:
        # a page whose module is not on this branch yet is skipped; one that exists is checked
        if d.get(f"/console/page-{name}.js", token=None).status == 404:
            absent.append(name)
            continue
        page.run("""await page.locator(`nav a[data-page="${args.name}"]`).click();
                    await page.waitForFunction((n) => location.pathname === '/console/' + n
                        && document.documentElement.dataset.ready === 'yes', args.name)""", name=name)
        r = page.run(READ_ONLY_CHECK)
        assert r["failed"] is None, (name, r["failed"])
        assert r["bad"] == [], (name, r["bad"])
        for reason in r["reasons"]:
            assert "read scope" in reason, (name, reason)
        checked.append(name)
    assert "overview" in checked
    print(f"\nread-only pages checked: {checked}; not on this branch: {absent}")
    # the tokens page, opened by its address, says why instead of showing controls
    page.goto("/console/tokens")
    assert "Tokens are managed with an admin token" in page.text()
    # the API refuses a write from the read session all the same
    assert page.run("""return await page.evaluate(async () => (await fetch('/api/v1/tls-policies', {
        method: 'POST', headers: {'Content-Type': 'application/json', 'X-Requested-With': 'smtptlsd'},
        body: JSON.stringify({destination: 'x.example', level: 'none'})})).status)""") == 403
