"""The console's shell: its files as the daemon serves them (headers, ETags, the page's paths),
and in Debian's chromium: sign in and out, what the page script can see, the layout at 390 px."""
import hashlib
import os

from tests.harness.browser import PHONE
from tests.harness.util import REPO_ROOT

CSP = ("default-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
       "frame-ancestors 'none'")
SECURITY_HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
                    "Referrer-Policy": "no-referrer", "Cache-Control": "no-cache",
                    "X-Frame-Options": "DENY"}


def console_file(name):
    with open(os.path.join(REPO_ROOT, "console", name), "rb") as f:
        return f.read()


def test_files_are_served_with_strong_etags_and_security_headers(daemon):
    d = daemon
    index = console_file("index.html")
    for path, name, media in (("/", "index.html", "text/html"),
                              ("/console/app.js", "app.js", "text/javascript"),
                              ("/console/style.css", "style.css", "text/css"),
                              ("/console/icon.svg", "icon.svg", "image/svg+xml")):
        r = d.get(path, token=None)
        assert r.status == 200, (path, r)
        assert r.raw == console_file(name), path
        assert r.headers["Content-Type"].split(";")[0] == media, (path, r.headers)
        for k, v in SECURITY_HEADERS.items():
            assert r.headers.get(k) == v, (path, k, r.headers.get(k))
        etag = r.headers["ETag"]
        assert etag.startswith('"') and not etag.startswith("W/"), etag
        assert hashlib.sha256(r.raw).hexdigest()[:16] in etag, (path, etag)
        again = d.get(path, token=None, headers={"If-None-Match": etag})
        assert again.status == 304 and again.raw == b"" and again.headers["ETag"] == etag, again
        assert d.get(path, token=None, headers={"If-None-Match": '"other"'}).status == 200
    # every page of the console is the index (a reload or a bookmark of /console/certificates)
    for path in ("/console/certificates", "/console/policies", "/console/no-such-page"):
        r = d.get(path, token=None)
        assert r.status == 200 and r.raw == index, (path, r)
    # a missing file is a 404 problem, not the index; /api/ keeps its problems
    r = d.get("/console/nope.js", token=None)
    assert r.status == 404 and r.body["code"] == "not_found", r
    r = d.get("/api/v1/nope", token=None)
    assert r.status == 404 and r.headers["Content-Type"] == "application/problem+json", r
    assert d.get("/console/../api/v1/tokens", token=None).status in (400, 401, 404)


def test_sign_in_sign_out_and_nothing_for_page_script(daemon, browser):
    d = daemon
    page = browser.open(d.url)
    page.goto("/")
    # a wrong token: said in words next to the form, no session
    page.run("""
        await page.getByLabel('API token').fill('stk_' + 'A'.repeat(43));
        await page.getByRole('button', { name: 'Sign in' }).click();
        await page.getByRole('alert').filter({ hasText: 'not valid' }).waitFor();
    """)
    page.sign_in(d.token)
    assert "admin (admin)" in page.text("header")
    # the page script never sees the token or the session id
    seen = page.run("""return await page.evaluate(() => ({
        cookie: document.cookie, local: JSON.stringify(localStorage),
        session: JSON.stringify(sessionStorage), html: document.documentElement.outerHTML }))""")
    assert seen["cookie"] == "" and seen["local"] == "{}" and seen["session"] == "{}", seen
    assert d.token not in seen["html"]
    cookies = page.run("return await context.cookies()")
    assert [(c["name"], c["httpOnly"], c["sameSite"]) for c in cookies] == \
        [("smtptlsd_session", True, "Strict")], cookies
    # a reload keeps the session (the cookie), a bookmark of a page opens that page
    page.goto("/console/overview")
    page.run("await page.getByRole('heading', { name: 'Overview', level: 1 }).waitFor()")
    assert page.run("return await page.locator('nav a[aria-current=page]').innerText()") == \
        "Overview"
    # sign out: the session is gone on the server, and a reload asks for the token again
    page.run("await page.getByRole('button', { name: 'Sign out' }).click();"
             "await page.getByLabel('API token').waitFor()")
    assert d.get("/api/v1/session", token=None,
                 headers={"Cookie": f"smtptlsd_session={cookies[0]['value']}"}).status == 401
    page.goto("/console/overview")
    page.run("await page.getByLabel('API token').waitFor()")


def test_a_revoked_token_ends_the_session_in_the_page(daemon, browser):
    d = daemon
    token = d.add_token("temp", "admin")
    page = browser.open(d.url)
    page.sign_in(token)
    assert d.http("DELETE", "/api/v1/tokens/temp").status == 204
    # the next request of the page is refused: it says so and shows the form again. That request
    # is the click's, or the overview's own poll if it comes first (then the link is gone)
    page.run("""
        const ended = page.getByText('Your session has ended');
        try {
            await page.getByRole('link', { name: 'Overview' }).click({ timeout: 5000 });
        } catch (e) {
            if (!(await ended.isVisible()))
                throw e;
        }
        await ended.waitFor();
    """)


def test_keyboard_only_sign_in_and_phone_layout(daemon, browser):
    d = daemon
    page = browser.open(d.url, *PHONE)
    page.goto("/")
    page.screenshot("signin")
    page.run("""
        // the token field has the focus when the page opens; Tab goes on to the button
        if (await page.evaluate(() => document.activeElement.id) !== 'token')
            throw new Error('the token field does not have the focus');
        await page.keyboard.type(args.token);
        await page.keyboard.press('Tab');
        if (await page.evaluate(() => document.activeElement.textContent) !== 'Sign in')
            throw new Error('Tab from the token field does not reach Sign in');
        await page.keyboard.press('Enter');
        await page.getByRole('navigation', { name: 'Sections' }).waitFor();
    """, token=d.token)
    assert page.no_horizontal_scroll()
