"""The console's sign-in (POST/GET/DELETE /api/v1/session), cookie authentication with its
same-origin proof (CSRF), and CORS for the origins of cors_allowed_origins - with real HTTP
clients (http.client) against the real daemon and PostgreSQL.

A browser test of CORS from a second local origin belongs to the browser infrastructure (issue
13's playwright tests) and is not here yet."""
import hashlib
import http.client
import re
import time

CSRF = {"X-Requested-With": "smtptlsd"}
COOKIE_RE = re.compile(r"^smtptlsd_session=([A-Za-z0-9_-]{43}); Path=/; HttpOnly; "
                       r"SameSite=Strict(; Secure)?$")
CLEARED = "smtptlsd_session=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict"


def db_name(d):
    return d.config["database_url"].rsplit("/", 1)[1]


def sign_in(d, token, headers=None):
    """POST /api/v1/session as the console does; returns (response, session id or None)."""
    r = d.http("POST", "/api/v1/session", {"token": token}, token=None,
               headers={**CSRF, **(headers or {})})
    m = COOKIE_RE.match(r.headers.get("Set-Cookie", "")) if r.status == 204 else None
    return r, (m.group(1) if m else None)


def with_cookie(sid, **more):
    return {"Cookie": f"smtptlsd_session={sid}", **more}


def test_session_life_cycle(daemon, pg):
    d = daemon
    r, sid = sign_in(d, d.token)
    assert r.status == 204 and r.raw == b"", r
    assert sid, r.headers.get("Set-Cookie")
    assert len(r.headers.get_all("Set-Cookie")) == 1, r.headers
    # only the id's hash is stored; neither the id nor the token is in the log or a body
    rows = pg.psql("SELECT s.sha256, t.name FROM sessions s JOIN tokens t ON t.id = s.token_id",
                   db=db_name(d)).split()
    assert rows == [hashlib.sha256(sid.encode()).hexdigest() + "|admin"], rows
    r = d.get("/api/v1/session", token=None, headers=with_cookie(sid))
    assert r.status == 200, r
    assert r.body == {"token_name": "admin", "scope": "admin", "idle_timeout": 1800,
                      "manager_urls": {}}, r
    assert sid.encode() not in r.raw and d.token.encode() not in r.raw
    # last_used_at is not a write per request: at most once a minute with a 30 min idle time
    used = "SELECT last_used_at = created_at FROM sessions"
    assert pg.psql(used, db=db_name(d)).strip() == "t"
    for _ in range(3):
        assert d.get("/api/v1/session", token=None, headers=with_cookie(sid)).status == 200
    assert pg.psql(used, db=db_name(d)).strip() == "t"
    # the cookie authenticates every operation with the token's scope
    r = d.get("/api/v1/tokens", token=None, headers=with_cookie(sid))
    assert r.status == 200 and {t["name"] for t in r.body["items"]} == {"admin", "reader"}, r
    # signing out is a write: it needs the header
    r = d.http("DELETE", "/api/v1/session", token=None, headers=with_cookie(sid))
    assert r.status == 403 and r.body["code"] == "csrf_refused", r
    assert "X-Requested-With: smtptlsd" in r.body["detail"], r
    assert d.get("/api/v1/session", token=None, headers=with_cookie(sid)).status == 200
    r = d.http("DELETE", "/api/v1/session", token=None, headers=with_cookie(sid, **CSRF))
    assert r.status == 204 and r.headers.get("Set-Cookie") == CLEARED, r
    assert pg.psql("SELECT count(*) FROM sessions", db=db_name(d)).strip() == "0"
    r = d.get("/api/v1/session", token=None, headers=with_cookie(sid))
    assert r.status == 401 and r.body["code"] == "unauthorized", r
    assert d.get("/api/v1/tokens", token=None, headers=with_cookie(sid)).status == 401
    log = d.log_text()
    assert sid not in log and d.token not in log


def test_sign_in_refusals(daemon, pg):
    d = daemon
    r, _ = sign_in(d, "stk_" + "A" * 43)
    assert r.status == 401 and r.body["field"] == "/token", r
    assert "Set-Cookie" not in r.headers, r
    r, _ = sign_in(d, "not a token")
    assert r.status == 401 and r.body["field"] == "/token", r
    r = d.http("POST", "/api/v1/session", {}, token=None, headers=CSRF)
    assert r.status == 422 and r.body["code"] == "missing_field" and r.body["field"] == "/token"
    r = d.http("POST", "/api/v1/session", {"token": d.token, "x": 1}, token=None, headers=CSRF)
    assert r.status == 422 and r.body["code"] == "unknown_field", r
    # without the console's header, or from another origin: no session (login CSRF)
    r = d.http("POST", "/api/v1/session", {"token": d.token}, token=None)
    assert r.status == 403 and r.body["code"] == "csrf_refused", r
    r, _ = sign_in(d, d.token, {"Origin": "http://evil.example"})
    assert r.status == 403 and r.body["code"] == "csrf_refused", r
    r, _ = sign_in(d, d.token, {"Sec-Fetch-Site": "cross-site"})
    assert r.status == 403 and r.body["code"] == "csrf_refused", r
    assert pg.psql("SELECT count(*) FROM sessions", db=db_name(d)).strip() == "0"
    # a bearer token is not a session
    r = d.get("/api/v1/session")
    assert r.status == 401, r
    r = d.get("/api/v1/session", token=None)
    assert r.status == 401, r
    # a garbage cookie costs nothing and gets 401
    r = d.get("/api/v1/jobs", token=None, headers=with_cookie("x" * 43))
    assert r.status == 401, r
    r = d.get("/api/v1/jobs", token=None, headers=with_cookie("AAAA"))
    assert r.status == 401, r


def test_same_origin_browser_headers_pass(daemon):
    """What a browser sends on the console's own page is accepted."""
    d = daemon
    origin = f"http://{d.host}:{d.port}"
    r, sid = sign_in(d, d.token, {"Origin": origin, "Sec-Fetch-Site": "same-origin"})
    assert r.status == 204 and sid, r
    r = d.http("POST", "/api/v1/tokens", {"name": "ci", "scope": "read"}, token=None,
               headers=with_cookie(sid, Origin=origin, **{"Sec-Fetch-Site": "same-origin"},
                                   **CSRF))
    assert r.status == 201, r
    r = d.get("/api/v1/session", token=None, headers=with_cookie(sid, **{"Sec-Fetch-Site": "none"}))
    assert r.status == 200, r


def test_csrf_refused_and_nothing_changes(daemon):
    d = daemon
    _, sid = sign_in(d, d.token)
    before = d.get("/api/v1/tokens").body["items"]
    body = {"name": "sneaky", "scope": "admin"}
    refusals = [
        with_cookie(sid),  # no header
        with_cookie(sid, **{"X-Requested-With": "XMLHttpRequest"}),
        with_cookie(sid, Origin="http://evil.example", **CSRF),
        with_cookie(sid, Origin="null", **CSRF),
        with_cookie(sid, **{"Sec-Fetch-Site": "cross-site"}, **CSRF),
        with_cookie(sid, **{"Sec-Fetch-Site": "same-site"}, **CSRF),
        with_cookie(sid, **{"Sec-Fetch-Site": "none"}, **CSRF),
    ]
    for headers in refusals:
        r = d.http("POST", "/api/v1/tokens", body, token=None, headers=headers)
        assert r.status == 403 and r.body["code"] == "csrf_refused", (headers, r)
        r = d.http("DELETE", "/api/v1/tokens/reader", token=None, headers=headers)
        assert r.status == 403 and r.body["code"] == "csrf_refused", (headers, r)
    # a cookie read from another origin is refused too (CORS never grants it credentials)
    r = d.get("/api/v1/tokens", token=None, headers=with_cookie(sid, Origin="http://evil.example"))
    assert r.status == 403 and r.body["code"] == "csrf_refused", r
    assert d.get("/api/v1/tokens").body["items"] == before
    # with the header the same write goes through
    r = d.http("POST", "/api/v1/tokens", body, token=None, headers=with_cookie(sid, **CSRF))
    assert r.status == 201 and r.body["name"] == "sneaky", r
    # bearer requests are not affected: no header needed, whatever Origin says
    r = d.http("DELETE", "/api/v1/tokens/sneaky", headers={"Origin": "http://evil.example"})
    assert r.status == 204, r


def test_read_session_cannot_write(daemon):
    d = daemon
    _, sid = sign_in(d, d.read_token)
    r = d.get("/api/v1/session", token=None, headers=with_cookie(sid))
    assert r.body["scope"] == "read" and r.body["token_name"] == "reader", r
    r = d.http("POST", "/api/v1/tokens", {"name": "x", "scope": "read"}, token=None,
               headers=with_cookie(sid, **CSRF))
    assert r.status == 403 and r.body["code"] == "forbidden", r


def test_revoking_the_token_ends_its_sessions(daemon, pg):
    d = daemon
    _, sid = sign_in(d, d.read_token)
    _, sid2 = sign_in(d, d.read_token)
    _, admin_sid = sign_in(d, d.token)
    assert sid != sid2
    assert d.get("/api/v1/jobs", token=None, headers=with_cookie(sid)).status == 200
    assert d.http("DELETE", "/api/v1/tokens/reader").status == 204
    for s in (sid, sid2):
        r = d.get("/api/v1/jobs", token=None, headers=with_cookie(s))
        assert r.status == 401 and "revoked" in r.body["detail"], r
    n = pg.psql("SELECT count(*) FROM sessions s JOIN tokens t ON t.id = s.token_id "
                "WHERE t.name = 'reader'", db=db_name(d)).strip()
    assert n == "0", n
    assert d.get("/api/v1/jobs", token=None, headers=with_cookie(admin_sid)).status == 200
    # a new token of the same name does not revive them
    d.add_token("reader", "read")
    assert d.get("/api/v1/jobs", token=None, headers=with_cookie(sid)).status == 401


def test_idle_expiry(make_daemon, pg):
    d = make_daemon({"session_idle_timeout": "3s"})
    _, sid = sign_in(d, d.token)
    r = d.get("/api/v1/session", token=None, headers=with_cookie(sid))
    assert r.body["idle_timeout"] == 3, r
    # used every second, it lives past its idle time (last_used_at is refreshed)
    start = time.monotonic()
    while time.monotonic() - start < 5:
        r = d.get("/api/v1/jobs", token=None, headers=with_cookie(sid))
        assert r.status == 200, (time.monotonic() - start, r)
        time.sleep(1)
    # left alone, it ends
    time.sleep(4)
    r = d.get("/api/v1/jobs", token=None, headers=with_cookie(sid))
    assert r.status == 401 and r.body["code"] == "unauthorized", r
    # the next sign-in sweeps the expired row away
    _, sid2 = sign_in(d, d.token)
    hashes = pg.psql("SELECT sha256 FROM sessions", db=db_name(d)).split()
    assert hashes == [hashlib.sha256(sid2.encode()).hexdigest()], hashes


def test_cookie_secure_attribute(make_daemon):
    d = make_daemon()  # session_cookie_secure = auto
    origin = f"https://{d.host}:{d.port}"
    for headers, secure in (({}, False), ({"Origin": origin}, True),
                            ({"X-Forwarded-Proto": "https"}, True),
                            ({"Forwarded": "for=192.0.2.1;proto=https"}, True),
                            ({"X-Forwarded-Proto": "http"}, False)):
        r, sid = sign_in(d, d.token, headers)
        assert r.status == 204, (headers, r)
        want = f"smtptlsd_session={sid}; Path=/; HttpOnly; SameSite=Strict" + \
            ("; Secure" if secure else "")
        assert r.headers.get("Set-Cookie") == want, (headers, r.headers.get("Set-Cookie"))
    r = d.http("DELETE", "/api/v1/session", token=None,
               headers=with_cookie(sid, **{"X-Forwarded-Proto": "https"}, **CSRF))
    assert r.headers.get("Set-Cookie") == CLEARED + "; Secure", r

    yes = make_daemon({"session_cookie_secure": "yes"})
    r, _ = sign_in(yes, yes.token)
    assert r.headers.get("Set-Cookie").endswith("; SameSite=Strict; Secure"), r
    no = make_daemon({"session_cookie_secure": "no"})
    r, _ = sign_in(no, no.token, {"X-Forwarded-Proto": "https"})
    assert r.headers.get("Set-Cookie").endswith("; SameSite=Strict"), r


def raw(d, method, path, headers):
    """A request outside the spec's operations (OPTIONS): (status, headers, body bytes)."""
    conn = http.client.HTTPConnection(d.host, d.port, timeout=15)
    try:
        conn.request(method, path, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.headers, resp.read()
    finally:
        conn.close()


ALLOWED = "https://admin.example"


def test_cors(make_daemon):
    d = make_daemon({"cors_allowed_origins": f"http://127.0.0.1:1, {ALLOWED}"})
    pre = {"Origin": ALLOWED, "Access-Control-Request-Method": "PUT",
           "Access-Control-Request-Headers": "authorization, content-type, if-match"}
    status, h, body = raw(d, "OPTIONS", "/api/v1/settings", pre)
    assert status == 204 and body == b"", (status, h, body)
    assert h.get("Access-Control-Allow-Origin") == ALLOWED
    assert h.get("Access-Control-Allow-Methods") == "GET, HEAD, PUT, PATCH"
    assert h.get("Access-Control-Allow-Headers") == \
        "Authorization, If-Match, If-None-Match, Content-Type"
    assert h.get("Access-Control-Max-Age") == "600"
    assert h.get("Vary") == "Origin"
    assert h.get("Access-Control-Allow-Credentials") is None
    assert len(h.get_all("Access-Control-Allow-Origin")) == 1
    status, h, _ = raw(d, "OPTIONS", "/api/v1/tls-policies/{}".format("example.com"), pre)
    assert status == 204 and h.get("Access-Control-Allow-Methods") == \
        "GET, HEAD, PUT, PATCH, DELETE", h
    # the actual request: the origin, the headers its script may read, never credentials
    r = d.get("/api/v1/settings", headers={"Origin": ALLOWED})
    assert r.status == 200, r
    assert r.headers.get("Access-Control-Allow-Origin") == ALLOWED
    assert r.headers.get("Access-Control-Expose-Headers") == "ETag, Location, Job-Id, Retry-After"
    assert r.headers.get("Vary") == "Origin"
    assert r.headers.get("Access-Control-Allow-Credentials") is None
    r = d.http("POST", "/api/v1/tokens", {"name": "cors", "scope": "read"},
               headers={"Origin": ALLOWED})
    assert r.status == 201 and r.headers.get("Access-Control-Allow-Origin") == ALLOWED, r
    # problems carry them too (the script must be able to read the refusal)
    r = d.http("POST", "/api/v1/tokens", {"name": "Bad!", "scope": "read"},
               headers={"Origin": ALLOWED})
    assert r.status == 422 and r.headers.get("Access-Control-Allow-Origin") == ALLOWED, r
    # the session cookie never works from there
    _, sid = sign_in(d, d.token)
    r = d.get("/api/v1/settings", token=None, headers=with_cookie(sid, Origin=ALLOWED))
    assert r.status == 403 and r.body["code"] == "csrf_refused", r
    # another origin: its preflight fails (403, no CORS headers), its replies carry none
    for other in ("https://evil.example", "https://admin.example.evil", "null"):
        status, h, body = raw(d, "OPTIONS", "/api/v1/settings", {**pre, "Origin": other})
        assert status == 403 and b'"origin_not_allowed"' in body, (other, status, body)
        assert h.get("Access-Control-Allow-Origin") is None, h
        r = d.get("/api/v1/settings", headers={"Origin": other})
        assert r.status == 200 and r.headers.get("Access-Control-Allow-Origin") is None, r
        assert r.headers.get("Vary") == "Origin", r
    # a preflight of a path that does not exist is a 404 problem
    status, h, _ = raw(d, "OPTIONS", "/api/v1/nothing", pre)
    assert status == 404 and h.get("Access-Control-Allow-Origin") is None
    # OPTIONS that is not a preflight stays 405 with Allow
    for headers in ({}, {"Origin": ALLOWED}):
        status, h, body = raw(d, "OPTIONS", "/api/v1/settings", headers)
        assert status == 405 and h.get("Allow") == "GET, HEAD, PUT, PATCH", (status, h, body)


def test_cors_off_by_default(daemon):
    d = daemon
    status, h, body = raw(d, "OPTIONS", "/api/v1/settings",
                          {"Origin": ALLOWED, "Access-Control-Request-Method": "GET"})
    assert status == 403 and b"cors_allowed_origins" in body, (status, body)
    assert h.get("Access-Control-Allow-Origin") is None
    r = d.get("/api/v1/settings", headers={"Origin": ALLOWED})
    assert r.status == 200 and r.headers.get("Access-Control-Allow-Origin") is None, r
    assert r.headers.get("Vary") is None, r
