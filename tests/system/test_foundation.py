# System tests of the foundation (issue 2): start-up and sd_notify, authentication and scopes, the error
# replies of the HTTP layer, tokens through the CLI and the API, migrations, the database going away and
# coming back, shutdown, metrics, health, and the configuration. Black box: the real daemon, a real
# PostgreSQL, HTTP over loopback. Interfaces: /tmp/interface.md (issue 2) and shared/design/api.md.
import concurrent.futures
import http.client
import json
import os
import re
import signal
import socket
import time

import pytest

from tests.harness import contract
from tests.harness.daemon import Daemon
from tests.harness.util import free_port, wait_until
from tests.system.conftest import setup_tokens

RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
ALL_KEYS = {
    "listen_address", "listen_port", "database_url", "database_connect_timeout",
    "database_statement_timeout", "database_pool_size", "postfix_config_directory", "postfix_command",
    "postconf_command", "postmap_command", "command_timeout", "policy_map_type",
    "certificate_directory", "acme_live_directory", "system_certificate_file", "system_key_file",
    "system_ca_file", "smtp_probe_address", "node_name", "node_heartbeat_interval", "fleet_wait_timeout", "http_threads", "body_limit", "bulk_body_limit", "bulk_memo_limit",
    "connection_timeout", "connection_limit", "per_ip_connection_limit", "connection_memory_limit",
    "shutdown_timeout", "log_level", "key_encryption_key_file", "session_idle_timeout",
    "session_cookie_secure", "cors_allowed_origins", "console_manager_urls",
    "probe_resolvers", "probe_stub_zones", "probe_trust_anchor_file", "probe_https_ca_file", "probe_timeout",
    "probe_step_timeout", "probe_max_concurrent", "probe_queue_limit", "probe_max_hosts",
    "probe_max_addresses", "probe_cache_time", "probe_guard_limit", "probe_watch_interval",
    "probe_private_networks",
}
DB_ERRORS = r"(?i)database|postgres|connect|server closed|terminat"


# -- helpers ---------------------------------------------------------------------------------------
def assert_problem(resp, status, code, field=None):
    """resp is an RFC 9457 problem with this status and code (and field, a JSON pointer, if given)."""
    ctype = (resp.headers.get("Content-Type") or "").split(";")[0].strip()
    assert resp.status == status, f"expected {status} {code}, got {resp}"
    assert ctype == "application/problem+json", f"problem Content-Type: {ctype!r} in {resp}"
    body = resp.body
    assert isinstance(body, dict), f"problem body is not a JSON object: {resp}"
    assert body.get("type") == "about:blank", resp
    assert body.get("status") == status, resp
    assert body.get("code") == code, f"expected code {code!r}: {resp}"
    assert isinstance(body.get("title"), str) and body["title"], f"problem without a title: {resp}"
    assert isinstance(body.get("detail", ""), str), resp
    if field is not None:
        fields = [body.get("field")] + [e.get("field") for e in body.get("errors", [])]
        assert field in fields, f"expected field {field!r} named in {resp}"
    return body


def config_lines(text):
    """`key = value` lines -> {key: value} (value stripped; '' if empty)."""
    out = {}
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f"not a 'key = value' line: {line!r}"
            key = key.strip()
            assert key not in out, f"key {key} printed twice"
            out[key] = value.strip()
    return out


def seconds(value):
    """'30', '30s', '500ms', '5m', '1h' -> seconds (float)."""
    m = re.fullmatch(r"(\d+)\s*(ms|s|m|h)?", value)
    assert m, f"not a duration: {value!r}"
    return int(m.group(1)) * {None: 1, "s": 1, "ms": 0.001, "m": 60, "h": 3600}[m.group(2)]


def size_bytes(value):
    """'1048576', '1024K', '1M', '1G' -> bytes."""
    m = re.fullmatch(r"(\d+)\s*([KkMG])?", value)
    assert m, f"not a size: {value!r}"
    return int(m.group(1)) * {None: 1, "K": 1024, "k": 1024, "M": 1 << 20, "G": 1 << 30}[m.group(2)]


def parse_metrics(text):
    """Prometheus text 0.0.4 -> ({(name, frozenset(labels)): value}, {family: type}); checks syntax."""
    samples, types = {}, {}
    line_rx = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+-?\d+)?$')
    label_rx = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*(,|$)')
    for line in text.splitlines():
        if not line.strip():
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(None, 3)
            types[name] = kind
            continue
        if line.startswith("#"):
            continue
        m = line_rx.match(line)
        assert m, f"not a Prometheus sample line: {line!r}"
        labels, rest = {}, m.group(3) or ""
        while rest.strip():
            lm = label_rx.match(rest)
            assert lm, f"bad labels in {line!r}"
            labels[lm.group(1)] = lm.group(2)
            rest = rest[lm.end():]
        value = float(m.group(4))
        key = (m.group(1), frozenset(labels.items()))
        assert key not in samples, f"duplicate sample {line!r}"
        samples[key] = value
    return samples, types


def sample(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())), 0.0)


def raw_http(port, data, timeout=5):
    """Send raw bytes on a new connection; return what was read once the peer closed, or once a
    response's header block and Content-Length body are in, or when timeout runs out."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        got = b""
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                got += chunk
                head, sep, rest = got.partition(b"\r\n\r\n")
                m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
                if sep and m and len(rest) >= int(m.group(1)):
                    break
        except socket.timeout:
            pass
        return got


def status_of(raw):
    m = re.match(rb"HTTP/1\.[01] (\d{3})", raw)
    assert m, f"no HTTP status line in {raw[:200]!r}"
    return int(m.group(1))


# -- start-up and sd_notify ------------------------------------------------------------------------
def test_ready_after_migrations_with_status_lines(make_daemon):
    d = make_daemon(start=False)
    d.start()
    setup_tokens(d)
    msgs = d.notify.messages()
    ready_at = next(i for i, m in enumerate(msgs) if m.get("READY") == "1")
    before = [m["STATUS"] for m in msgs[:ready_at] if "STATUS" in m]
    assert before, f"no STATUS= line before READY=1: {msgs}"
    assert any("migration" in s.lower() for s in before), \
        f"a fresh database: expected a STATUS about migrations before READY=1, got {before}"
    assert [m.get("READY") for m in msgs].count("1") == 1, f"READY=1 sent more than once: {msgs}"
    after = [m["STATUS"] for m in msgs[ready_at:] if "STATUS" in m]
    assert any(f"listening on http://127.0.0.1:{d.port}" in s for s in after), \
        f"STATUS with READY=1 (or after) should say 'listening on http://127.0.0.1:{d.port}': {after}"
    assert d.port != 0
    assert re.search(rf"^<6>.*listening on http://127\.0\.0\.1:{d.port}\b", d.log_text(), re.M), \
        "the log should say (at info) where the daemon listens"


def test_every_log_line_has_a_priority_prefix(daemon):
    daemon.get("/healthz")
    daemon.get("/api/v1/tokens", token="wrong")
    lines = daemon.log_lines()
    assert lines, "the daemon logged nothing at info level"
    bad = [line for line in lines if not re.match(r"^<[0-7]>", line)]
    assert not bad, f"log lines without a <N> priority prefix: {bad}"


def test_no_token_or_secret_in_the_log(daemon):
    secret = daemon.token
    daemon.get("/metrics")
    daemon.get("/api/v1/tokens", token=secret + "x")
    r = daemon.http("POST", "/api/v1/tokens", {"name": "logged", "scope": "read"})
    assert r.status == 201, r
    for t in (secret, r.body["token"]):
        assert t not in daemon.log_text(), "a bearer token appears in the daemon log"


@pytest.mark.parametrize("usec", [400000, 1000000])
def test_watchdog_pings_when_watchdog_usec_is_set(make_daemon, usec):
    d = make_daemon(start=False, env={"WATCHDOG_USEC": str(usec)})
    d.start()
    setup_tokens(d)
    first = d.notify.count()
    period = usec / 2e6
    time.sleep(6 * period + 0.1)
    pings = [m for m in d.notify.messages()[first:] if m.get("WATCHDOG") == "1"]
    assert len(pings) >= 4, \
        f"WATCHDOG_USEC={usec}: expected a WATCHDOG=1 every {period}s, got {len(pings)} in {6 * period}s"


def test_no_watchdog_pings_without_watchdog_usec(daemon):
    time.sleep(0.5)
    assert not [m for m in daemon.notify.messages() if "WATCHDOG" in m]


# -- health ----------------------------------------------------------------------------------------
def test_healthz_needs_no_token(daemon):
    r = daemon.get("/healthz", token=None)
    assert r.status == 200, r
    assert r.headers.get("Content-Type", "").startswith("application/json"), r
    assert r.body == {"status": "ok"}


def test_readyz_when_ready(daemon):
    r = daemon.get("/readyz", token=None)
    assert r.status == 200, r
    assert r.body == {"status": "ready"}


def test_head_healthz_has_no_body(daemon):
    r = daemon.http("HEAD", "/healthz", token=None)
    assert r.status == 200 and r.raw == b"", r


# -- authentication and scopes ---------------------------------------------------------------------
@pytest.mark.parametrize("auth", [None, "Bearer wrong-token", "Bearer ", "Basic YWRtaW46YWRtaW4=",
                                  "bearer-less", "TOKEN"])
def test_401_without_a_valid_token(daemon, auth):
    if auth == "TOKEN":
        auth = daemon.token  # the right token without the "Bearer " scheme
    headers = {"Authorization": auth} if auth is not None else {}
    r = daemon.http("GET", "/api/v1/tokens", token=None, headers=headers)
    assert_problem(r, 401, "unauthorized")
    www = r.headers.get("WWW-Authenticate", "")
    assert re.match(r'^Bearer\b', www) and 'realm="smtptlsd"' in www, \
        f"401 needs WWW-Authenticate: Bearer realm=\"smtptlsd\", got {www!r}"


def test_401_for_a_token_with_an_extra_character(daemon):
    assert_problem(daemon.get("/api/v1/tokens", token=daemon.token + "a"), 401, "unauthorized")
    assert_problem(daemon.get("/api/v1/tokens", token=daemon.token[:-1]), 401, "unauthorized")


def test_401_on_metrics_without_token(daemon):
    assert_problem(daemon.get("/metrics", token=None), 401, "unauthorized")


def test_403_read_token_on_admin_route(daemon):
    assert_problem(daemon.get("/api/v1/tokens", token=daemon.read_token), 403, "forbidden")
    r = daemon.http("POST", "/api/v1/tokens", {"name": "sneaky", "scope": "admin"},
                    token=daemon.read_token)
    assert_problem(r, 403, "forbidden")
    assert "sneaky" not in [t["name"] for t in daemon.get("/api/v1/tokens").body["items"]]
    assert daemon.get("/metrics", token=daemon.read_token).status == 200


def test_write_scope_is_below_admin(daemon):
    writer = daemon.add_token("writer", "write")
    assert_problem(daemon.get("/api/v1/tokens", token=writer), 403, "forbidden")
    assert daemon.get("/metrics", token=writer).status == 200


def test_token_in_query_string_is_refused(daemon):
    r = daemon.get(f"/metrics?access_token={daemon.read_token}", token=None)
    assert r.status == 400, f"a token in the query string must be refused with 400: {r}"
    assert r.headers.get("Content-Type", "").startswith("application/problem+json"), r


# -- routing errors --------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/api/v1/nonexistent", "/api/v2/tokens", "/healthz/extra",
                                  "/api/v1/tokens/a/b"])
def test_404_not_found(daemon, path):
    assert_problem(daemon.get(path), 404, "not_found")


def test_405_with_allow_header(daemon):
    r = daemon.http("PUT", "/healthz", {"x": 1}, token=None)
    assert_problem(r, 405, "method_not_allowed")
    allow = {m.strip() for m in r.headers.get("Allow", "").split(",")}
    assert allow == {"GET", "HEAD"}, f"Allow for /healthz: {r.headers.get('Allow')!r}"


def test_405_on_the_tokens_collection(daemon):
    r = daemon.http("DELETE", "/api/v1/tokens")
    assert_problem(r, 405, "method_not_allowed")
    allow = {m.strip() for m in r.headers.get("Allow", "").split(",")}
    assert {"GET", "POST"} <= allow and "DELETE" not in allow, f"Allow: {r.headers.get('Allow')!r}"


# -- request bodies: limits, media types, JSON, fields ---------------------------------------------
def padded_body(size):
    """A JSON object of exactly `size` bytes: a valid token request plus an unknown field 'pad'."""
    base = json.dumps({"name": "padded", "scope": "read", "pad": ""})
    body = base[:-2] + "x" * (size - len(base)) + base[-2:]
    assert len(body) == size
    return body


def test_413_over_body_limit(make_daemon):
    d = make_daemon({"body_limit": "1K"})
    assert_problem(d.http("POST", "/api/v1/tokens", padded_body(1025)), 413, "payload_too_large")
    assert_problem(d.http("POST", "/api/v1/tokens", padded_body(8000)), 413, "payload_too_large")
    # At the limit the body is read and judged: here it has an unknown field.
    assert_problem(d.http("POST", "/api/v1/tokens", padded_body(1024)), 422, "unknown_field", "/pad")


def test_413_from_content_length_without_waiting_for_the_body(make_daemon):
    d = make_daemon({"body_limit": "1K"})
    head = (f"POST /api/v1/tokens HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {d.token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: 100000000\r\n\r\n").encode()
    start = time.monotonic()
    raw = raw_http(d.port, head, timeout=4)
    assert raw, "no reply within 4 s to a request announcing a 100 MB body (limit 1K)"
    assert status_of(raw) == 413, raw[:300]
    assert time.monotonic() - start < 4


def test_413_for_a_chunked_body_over_the_limit(make_daemon):
    d = make_daemon({"body_limit": "1K"})
    chunk = b"x" * 600
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(4)) + b"0\r\n\r\n"
    head = (f"POST /api/v1/tokens HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {d.token}\r\n"
            f"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
            f"Connection: close\r\n\r\n").encode()
    assert status_of(raw_http(d.port, head + body)) == 413


@pytest.mark.parametrize("ctype", ["text/plain", "application/x-www-form-urlencoded", None,
                                   "application/jsonx"])
def test_415_wrong_content_type(daemon, ctype):
    r = daemon.http("POST", "/api/v1/tokens", json.dumps({"name": "ctype", "scope": "read"}),
                    content_type=ctype)
    assert_problem(r, 415, "unsupported_media_type")


def test_json_with_charset_parameter_is_accepted(daemon):
    r = daemon.http("POST", "/api/v1/tokens", {"name": "charset", "scope": "read"},
                    content_type="application/json; charset=utf-8")
    assert r.status == 201, r


def test_400_invalid_json_names_line_and_column(daemon):
    r = daemon.http("POST", "/api/v1/tokens", '{\n  "name": "broken",\n  "scope": \n}')
    body = assert_problem(r, 400, "invalid_json")
    assert re.search(r"line\D{0,3}4", body.get("detail", "")), f"detail should name line 4: {body}"
    assert re.search(r"column", body.get("detail", ""), re.I), f"detail should name the column: {body}"


@pytest.mark.parametrize("text", ['{"name": "dup", "scope": "read", "scope": "admin"}',
                                  '{"name": "nul\\u0000", "scope": "read"}',
                                  '', '{"name": "x", "scope": "read"} trailing',
                                  b'{"name": "\xff\xfe", "scope": "read"}'])
def test_malformed_bodies_are_refused(daemon, text):
    r = daemon.http("POST", "/api/v1/tokens", text)
    assert r.status in (400, 422), f"{text!r}: {r}"
    assert r.headers.get("Content-Type", "").startswith("application/problem+json"), r
    names = {t["name"] for t in daemon.get("/api/v1/tokens").body["items"]}
    assert names == {"admin", "reader"}, f"a refused request created a token: {names}"


@pytest.mark.parametrize("body,code,field", [
    ({"name": "a", "scope": "read", "extra": 1}, "unknown_field", "/extra"),
    ({"name": "a"}, "missing_field", "/scope"),
    ({"scope": "read"}, "missing_field", "/name"),
    ({"name": 7, "scope": "read"}, "invalid_value", "/name"),
    ({"name": True, "scope": "read"}, "invalid_value", "/name"),
    ({"name": "ok", "scope": "root"}, "invalid_value", "/scope"),
    ({"name": "ok", "scope": None}, "invalid_value", "/scope"),
    ({"name": "ok", "scope": ["read"]}, "invalid_value", "/scope"),
])
def test_422_names_the_field(daemon, body, code, field):
    assert_problem(daemon.http("POST", "/api/v1/tokens", body), 422, code, field)
    names = {t["name"] for t in daemon.get("/api/v1/tokens").body["items"]}
    assert names == {"admin", "reader"}, f"a refused request created a token: {names}"


BAD_NAMES = ["Upper", "has space", "-leading-dash", "a" * 65, "", ".dot", "tab\there", "caf\u00e9",
             "new\nline", "slash/name", "x" * 1000]


def test_422_bad_names_all_get_the_same_code(daemon):
    """Name-pattern violations: invalid_name (api.md's code for names) or invalid_value (interface.md),
    but one code for all of them, with field /name."""
    codes = {}
    for name in BAD_NAMES:
        r = daemon.http("POST", "/api/v1/tokens", {"name": name, "scope": "read"})
        assert r.status == 422 and r.body.get("field") == "/name", f"{name!r}: {r}"
        codes[name] = r.body["code"]
        assert_problem(r, 422, codes[name], "/name")
    assert set(codes.values()) <= {"invalid_name", "invalid_value"}, codes
    assert len(set(codes.values())) == 1, f"bad names get different codes: {codes}"
    names = {t["name"] for t in daemon.get("/api/v1/tokens").body["items"]}
    assert names == {"admin", "reader"}, f"a refused request created a token: {names}"


def test_body_that_is_not_an_object_is_refused(daemon):
    for text in ("[]", '"name"', "42", "null"):
        r = daemon.http("POST", "/api/v1/tokens", text)
        assert r.status in (400, 422), f"{text}: {r}"
        assert r.headers.get("Content-Type", "").startswith("application/problem+json"), r


def test_longest_valid_name_is_accepted(daemon):
    name = "a" + "b-._9" * 12 + "xyz"  # 64 characters
    assert len(name) == 64
    r = daemon.http("POST", "/api/v1/tokens", {"name": name, "scope": "read"})
    assert r.status == 201, r


# -- tokens through the API ------------------------------------------------------------------------
def test_token_lifecycle_through_the_api(daemon):
    r = daemon.http("POST", "/api/v1/tokens", {"name": "ci-bot", "scope": "write"})
    assert r.status == 201, r
    assert r.headers.get("Location") == "/api/v1/tokens/ci-bot", r.headers.get("Location")
    assert set(r.body) >= {"name", "scope", "created_at", "token"}, r.body
    assert r.body["name"] == "ci-bot" and r.body["scope"] == "write"
    assert RFC3339_UTC.match(r.body["created_at"]), r.body["created_at"]
    new = r.body["token"]
    assert isinstance(new, str) and len(new) >= 32, "a token should carry at least 128 bits"
    assert new not in (daemon.token, daemon.read_token)

    listing = daemon.get("/api/v1/tokens")
    assert listing.status == 200, listing
    assert listing.body.get("next") is None and "next" in listing.body, listing.body
    items = {t["name"]: t for t in listing.body["items"]}
    assert set(items) == {"admin", "reader", "ci-bot"}, items
    for item in items.values():
        assert set(item) >= {"name", "scope", "created_at", "last_used_at"}, item
        assert "token" not in item and not any(new in json.dumps(v) for v in item.values()), \
            f"the token list must not reveal tokens: {item}"
    assert items["ci-bot"]["scope"] == "write" and items["ci-bot"]["last_used_at"] is None

    assert daemon.get("/metrics", token=new).status == 200
    wait_until(lambda: daemon.get("/api/v1/tokens").body["items"] and
               RFC3339_UTC.match({t["name"]: t for t in daemon.get("/api/v1/tokens").body["items"]}
                                 ["ci-bot"]["last_used_at"] or ""),
               5, "last_used_at of a used token to be set")

    assert_problem(daemon.http("POST", "/api/v1/tokens", {"name": "ci-bot", "scope": "read"}),
                   409, "duplicate_name")
    r = daemon.http("DELETE", "/api/v1/tokens/ci-bot")
    assert r.status == 204 and r.raw == b"", r
    assert_problem(daemon.get("/metrics", token=new), 401, "unauthorized")
    assert_problem(daemon.http("DELETE", "/api/v1/tokens/ci-bot"), 404, "not_found")
    assert_problem(daemon.http("DELETE", "/api/v1/tokens/never-existed"), 404, "not_found")


def test_admin_token_created_by_api_can_administer(daemon):
    r = daemon.http("POST", "/api/v1/tokens", {"name": "second-admin", "scope": "admin"})
    assert r.status == 201, r
    assert daemon.get("/api/v1/tokens", token=r.body["token"]).status == 200


def test_tokens_are_not_stored_in_clear(daemon, pg):
    r = daemon.http("POST", "/api/v1/tokens", {"name": "stored", "scope": "read"})
    assert r.status == 201, r
    dbname = daemon.config["database_url"].rsplit("/", 1)[1]
    dump = pg.dump(dbname, "--data-only")
    for t in (daemon.token, daemon.read_token, r.body["token"]):
        assert t not in dump, "a bearer token is stored in clear in the database"


# -- tokens through the CLI ------------------------------------------------------------------------
def token_rows(d):
    """`token list` as {name: [fields]} (a header line, if any, left out)."""
    listed = d.run_cli(["token", "list"])
    assert listed.returncode == 0, listed
    rows = [line.split() for line in listed.stdout.splitlines() if line.strip()]
    return {r[0]: r for r in rows if r[0] != "NAME"}


def test_cli_token_list_has_one_line_per_token(daemon):
    """interface.md: one line per token, `NAME SCOPE CREATED [revoked]` (no header)."""
    out = daemon.run_cli(["token", "list"]).stdout
    lines = [line.split() for line in out.splitlines() if line.strip()]
    assert sorted(l[0] for l in lines) == ["admin", "reader"], f"token list output: {out!r}"
    for row in lines:
        assert row[1] in ("read", "write", "admin") and RFC3339_UTC.match(row[2]), row


def test_cli_token_list_marks_revoked_tokens(daemon):
    """interface.md: `NAME SCOPE CREATED [revoked]`: a revoked token is listed, marked revoked."""
    daemon.add_token("gone", "write")
    assert daemon.run_cli(["token", "revoke", "gone"]).returncode == 0
    rows = token_rows(daemon)
    assert "gone" in rows, f"the revoked token is not listed: {rows}"
    assert rows["gone"][-1] == "revoked" and "revoked" not in rows["admin"], rows


def test_token_lifecycle_through_the_cli(daemon):
    tok = daemon.add_token("cli-reader", "read")
    listed = daemon.run_cli(["token", "list"])
    rows = token_rows(daemon)
    assert set(rows) == {"admin", "reader", "cli-reader"}, listed.stdout
    assert rows["cli-reader"][1] == "read" and "revoked" not in rows["cli-reader"], rows
    assert tok not in listed.stdout
    assert daemon.get("/metrics", token=tok).status == 200
    assert_problem(daemon.get("/api/v1/tokens", token=tok), 403, "forbidden")

    rv = daemon.run_cli(["token", "revoke", "cli-reader"])
    assert rv.returncode == 0, rv
    # the daemon authenticated it a moment ago and keeps that for at most a second: revoked by
    # another process (the CLI, another node), it is refused within that
    revoked = time.monotonic()
    wait_until(lambda: daemon.get("/metrics", token=tok).status == 401, 5, "the token refused")
    assert time.monotonic() - revoked < 1.5, "a revoked token worked for more than a second"
    assert_problem(daemon.get("/metrics", token=tok), 401, "unauthorized")
    row = token_rows(daemon).get("cli-reader")
    assert row is None or "revoked" in row, f"token list shows a revoked token as live: {row}"


def test_a_token_revoked_through_the_api_is_refused_at_once(daemon):
    tok = daemon.add_token("api-reader", "read")
    assert daemon.get("/metrics", token=tok).status == 200  # authenticated a moment ago
    r = daemon.http("DELETE", "/api/v1/tokens/api-reader")
    assert r.status == 204, r
    assert_problem(daemon.get("/metrics", token=tok), 401, "unauthorized")


def test_cli_token_errors(daemon):
    bad_scope = daemon.run_cli(["token", "add", "x1", "--scope", "root"])
    assert bad_scope.returncode == 2, bad_scope
    assert bad_scope.stdout == "", "nothing on stdout when no token was made"
    bad_name = daemon.run_cli(["token", "add", "Bad Name", "--scope", "read"])
    assert bad_name.returncode == 2, bad_name
    dup = daemon.run_cli(["token", "add", "reader", "--scope", "read"])
    assert dup.returncode != 0 and dup.stdout == "" and "reader" in dup.stderr, dup
    gone = daemon.run_cli(["token", "revoke", "no-such-token"])
    assert gone.returncode != 0 and "no-such-token" in gone.stderr, gone
    assert daemon.run_cli(["token"]).returncode == 2


def test_api_revocation_shows_in_cli(daemon):
    r = daemon.http("POST", "/api/v1/tokens", {"name": "via-api", "scope": "read"})
    assert r.status == 201
    assert daemon.http("DELETE", "/api/v1/tokens/via-api").status == 204
    row = token_rows(daemon).get("via-api")
    assert row is None or "revoked" in row, f"token list shows a deleted token as live: {row}"


# -- migrations ------------------------------------------------------------------------------------
def test_migrate_is_idempotent(make_daemon, pg):
    d = make_daemon(start=False)
    dbname = d.config["database_url"].rsplit("/", 1)[1]
    first = d.run_cli(["migrate"])
    assert first.returncode == 0, first
    schema = pg.dump(dbname, "--schema-only")
    rows = table_counts(pg, dbname)
    assert rows, "migrate created no table"
    second = d.run_cli(["migrate"])
    assert second.returncode == 0, second
    assert pg.dump(dbname, "--schema-only") == schema, "a second migrate changed the schema"
    assert table_counts(pg, dbname) == rows, "a second migrate changed the rows"
    d.start()
    setup_tokens_and_check(d)
    assert pg.dump(dbname, "--schema-only") == schema, "starting the daemon changed the schema"


# Rows a running daemon writes on purpose, not migration effects: each node registers itself, and
# the start-up scan lists the system certificate from its files.
RUNTIME_TABLES = {"public.nodes", "public.certificates"}


def table_counts(pg, dbname):
    tables = pg.psql("SELECT schemaname || '.' || tablename FROM pg_tables "
                     "WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1",
                     db=dbname).split()
    tables = [t for t in tables if t not in RUNTIME_TABLES]
    return {t: int(pg.psql(f"SELECT count(*) FROM {t}", db=dbname)) for t in tables}


def setup_tokens_and_check(d):
    setup_tokens(d)
    assert d.get("/api/v1/tokens").status == 200


def test_two_daemons_starting_at_once_on_a_fresh_database(make_daemon, pg):
    ref = make_daemon(start=False)
    ref_db = ref.config["database_url"].rsplit("/", 1)[1]
    assert ref.run_cli(["migrate"]).returncode == 0
    a = make_daemon(start=False)
    url = a.config["database_url"]
    b = make_daemon(start=False, database_url=url)
    a.start(wait_ready=False)
    b.start(wait_ready=False)
    a.wait_ready(60)
    b.wait_ready(60)
    dbname = url.rsplit("/", 1)[1]
    assert pg.dump(dbname, "--schema-only") == pg.dump(ref_db, "--schema-only"), \
        "two concurrent starts gave a different schema than one migrate"
    assert table_counts(pg, dbname) == table_counts(pg, ref_db), \
        "two concurrent starts recorded migrations twice (row counts differ from one migrate)"
    for d in (a, b):
        assert d.get("/readyz", token=None).status == 200
    setup_tokens_and_check(a)
    b.token = a.token
    b.mark_fd_baseline()
    assert b.get("/api/v1/tokens").status == 200, "the second daemon does not see the first's tokens"


# -- the database going away -----------------------------------------------------------------------
@pytest.mark.expect_errors(DB_ERRORS)
def test_database_restart_while_running(make_daemon, private_pg):
    private_pg.start()
    d = make_daemon(db=private_pg)
    assert d.get("/api/v1/tokens").status == 200
    private_pg.stop()
    for path in ("/api/v1/tokens", "/readyz"):
        start = time.monotonic()
        r = d.get(path, token=d.token if path != "/readyz" else None)
        elapsed = time.monotonic() - start
        assert_problem(r, 503, "service_unavailable")
        retry = r.headers.get("Retry-After", "")
        assert retry.isdigit() and 0 < int(retry) <= 300, f"Retry-After: {retry!r}"
        assert elapsed < 6, f"{path} took {elapsed:.1f}s with the database down (connect timeout 2s)"
    assert d.get("/healthz", token=None).status == 200, "healthz does not depend on the database"
    private_pg.start()
    wait_until(lambda: d.get("/api/v1/tokens").status == 200, 20,
               "the daemon to serve again after the database came back")
    assert d.get("/readyz", token=None).status == 200
    assert d.alive()
    bad = [line for line in d.log_lines() if not re.match(r"^<[0-7]>", line)]
    assert not bad, f"log lines without a <N> prefix (a multi-line libpq message?): {bad}"


@pytest.mark.expect_errors(DB_ERRORS)
def test_database_down_at_start_up(make_daemon, private_pg):
    d = make_daemon(start=False, db=private_pg, database_url=private_pg.url("postgres"))
    d.start(wait_ready=False)
    d.notify.wait_for(lambda m: "waiting for database" in m.get("STATUS", ""), timeout=15)
    time.sleep(1.0)
    assert "1" not in d.notify.values("READY"), "READY=1 before the database answered"
    assert d.alive(), "the daemon gave up instead of waiting for the database"
    if "listening on http://" in d.log_text():  # HTTP is up before READY: /readyz must say 503
        d.find_url()
        r = d.get("/readyz", token=None)
        assert_problem(r, 503, "service_unavailable")
        assert r.headers.get("Retry-After", "").isdigit(), r.headers
    private_pg.start()
    d.wait_ready(30)
    setup_tokens(d)
    assert d.get("/api/v1/tokens").status == 200


# -- shutdown --------------------------------------------------------------------------------------
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_cleanly(daemon, sig):
    code = daemon.stop(sig, timeout=10)
    assert code == 0, f"exit status {code} after {sig.name}"
    assert "1" in daemon.notify.values("STOPPING"), "no STOPPING=1 before exit"


def test_in_flight_request_finishes_on_sigterm(daemon):
    body = json.dumps({"name": "in-flight", "scope": "read"}).encode()
    head = (f"POST /api/v1/tokens HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {daemon.token}"
            f"\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            f"Connection: close\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=10) as s:
        s.sendall(head + body[:10])
        time.sleep(0.3)  # the daemon has the request and part of its body
        daemon.proc.send_signal(signal.SIGTERM)
        daemon.notify.wait_for("STOPPING=1", timeout=5)
        time.sleep(0.2)
        assert daemon.alive(), "the daemon exited with a request in flight"
        s.sendall(body[10:])
        reply = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            reply += chunk
    assert status_of(reply) == 201, reply[:400]
    assert daemon.stop(timeout=10) == 0
    listed = daemon.run_cli(["token", "list"]).stdout
    assert "in-flight" in listed, "the in-flight request's token was not committed"


def test_new_connections_refused_after_stop(daemon):
    port = daemon.port
    assert daemon.stop() == 0
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


# -- concurrency -----------------------------------------------------------------------------------
def test_concurrent_requests_and_keep_alive(daemon):
    def worker(i):
        conn = http.client.HTTPConnection("127.0.0.1", daemon.port, timeout=15)
        statuses = []
        try:
            for j in range(20):
                path, tok = [("/healthz", None), ("/api/v1/tokens", daemon.token),
                             ("/metrics", daemon.read_token), ("/api/v1/tokens", "bad"),
                             ("/api/v1/nope", daemon.token)][(i + j) % 5]
                conn.request("GET", path, headers={"Authorization": f"Bearer {tok}"} if tok else {})
                resp = conn.getresponse()
                contract.check("GET", path, resp.status, resp.headers, resp.read())
                statuses.append((path, tok == "bad", resp.status))
        finally:
            conn.close()
        return statuses

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = [r for rs in pool.map(worker, range(8)) for r in rs]
    expected = {("/healthz", False): 200, ("/api/v1/tokens", False): 200, ("/metrics", False): 200,
                ("/api/v1/tokens", True): 401, ("/api/v1/nope", False): 404}
    wrong = [r for r in results if expected[r[:2]] != r[2]]
    assert len(results) == 160 and not wrong, f"unexpected statuses: {wrong[:10]}"


# -- metrics ---------------------------------------------------------------------------------------
def test_metrics_format_and_counters(daemon):
    r = daemon.get("/metrics", token=daemon.read_token)
    assert r.status == 200, r
    ctype = r.headers.get("Content-Type", "")
    assert ctype.startswith("text/plain") and "version=0.0.4" in ctype, ctype
    before, types = parse_metrics(r.body)
    assert types.get("smtptlsd_http_requests_total") == "counter", types
    assert types.get("smtptlsd_http_request_duration_seconds") == "histogram", types

    for _ in range(3):
        assert daemon.get("/healthz", token=None).status == 200
    daemon.get("/api/v1/tokens", token="bad")
    after, _ = parse_metrics(daemon.get("/metrics", token=daemon.read_token).body)
    key = dict(route="/healthz", method="GET", code="200")
    assert sample(after, "smtptlsd_http_requests_total", **key) - \
        sample(before, "smtptlsd_http_requests_total", **key) == 3
    key = dict(route="/api/v1/tokens", method="GET", code="401")
    assert sample(after, "smtptlsd_http_requests_total", **key) - \
        sample(before, "smtptlsd_http_requests_total", **key) == 1

    buckets = sorted(((float(dict(k[1])["le"]), v) for k, v in after.items()
                      if k[0] == "smtptlsd_http_request_duration_seconds_bucket"
                      and dict(k[1]).get("route") == "/healthz"), key=lambda x: x[0])
    assert buckets and buckets[-1][0] == float("inf"), f"no le=\"+Inf\" bucket for /healthz: {buckets}"
    counts = [v for _, v in buckets]
    assert counts == sorted(counts), f"buckets are not cumulative: {buckets}"
    count = sample(after, "smtptlsd_http_request_duration_seconds_count", route="/healthz")
    assert count == counts[-1] >= 3, (count, buckets)
    assert sample(after, "smtptlsd_http_request_duration_seconds_sum", route="/healthz") >= 0


def test_metrics_has_no_smtptlsd_up(daemon):
    """A daemon cannot report itself down: liveness is Prometheus' own `up` (issue 11)."""
    samples, types = parse_metrics(daemon.get("/metrics", token=daemon.read_token).body)
    assert "smtptlsd_up" not in types, sorted(types)
    assert sample(samples, "smtptlsd_ready") == 1.0


def test_metrics_every_family_has_help_and_type(daemon):
    text = daemon.get("/metrics", token=daemon.read_token).body
    samples, types = parse_metrics(text)
    helps = set(re.findall(r"^# HELP (\S+) ", text, re.M))
    for name, _ in samples:
        family = re.sub(r"_(bucket|sum|count)$", "", name) if name not in types else name
        assert family in types and family in helps, f"{name}: no # TYPE / # HELP for {family}"


# -- configuration and command line ----------------------------------------------------------------
def cli(tmp_path, *args, conf_text="", env=None):
    """Run the CLI with a config file holding conf_text."""
    d = Daemon(str(tmp_path), {})
    d.write_config(conf_text)
    return d.run_cli(list(args), env=env)


def test_config_prints_every_key_with_defaults(tmp_path):
    p = cli(tmp_path, "config")
    assert p.returncode == 0, p
    cfg = config_lines(p.stdout)
    assert set(cfg) == ALL_KEYS, f"missing {ALL_KEYS - set(cfg)}, unexpected {set(cfg) - ALL_KEYS}"
    assert cfg["listen_address"] == "127.0.0.1"
    assert cfg["listen_port"] == "8480"
    assert cfg["database_url"] == "postgresql:///smtptlsd"
    assert seconds(cfg["database_connect_timeout"]) == 5
    assert seconds(cfg["database_statement_timeout"]) == 30
    assert cfg["postfix_config_directory"] == "/etc/postfix"
    assert cfg["postfix_command"] == "postfix" and cfg["postmap_command"] == "postmap"
    assert seconds(cfg["command_timeout"]) == 30
    assert cfg["policy_map_type"] == "hash"
    assert cfg["certificate_directory"] == "/var/lib/smtptlsd/certs"
    assert cfg["acme_live_directory"] == "/etc/letsencrypt/live"
    assert cfg["system_certificate_file"] == "/etc/ssl/certs/ssl-cert-snakeoil.pem"
    assert cfg["smtp_probe_address"] == "127.0.0.1:25"
    assert cfg["node_name"], "node_name '' should be printed as the effective hostname"
    assert int(cfg["http_threads"]) == max(1, len(os.sched_getaffinity(0)) - 1), cfg["http_threads"]
    assert size_bytes(cfg["body_limit"]) == 1 << 20
    assert size_bytes(cfg["bulk_body_limit"]) == 64 << 20
    assert seconds(cfg["connection_timeout"]) == 30
    assert cfg["connection_limit"] == "1024" and cfg["per_ip_connection_limit"] == "32"
    assert size_bytes(cfg["connection_memory_limit"]) == 32 << 10
    assert seconds(cfg["shutdown_timeout"]) == 10
    assert cfg["log_level"] == "info"
    assert seconds(cfg["session_idle_timeout"]) == 1800
    assert cfg["session_cookie_secure"] == "auto"
    assert cfg["cors_allowed_origins"] == "" and cfg["console_manager_urls"] == ""


def test_config_file_values_units_and_comments(tmp_path):
    text = ("# a comment\n\n   listen_port=9001\n"
            "shutdown_timeout = 500ms\ncommand_timeout = 2m\nconnection_timeout = 1h\n"
            "body_limit = 64K\nbulk_body_limit = 1G\npostmap_command =  postmap  -c  /x/y \n"
            "   # indented comment\nlog_level = debug\n")
    p = cli(tmp_path, "config", conf_text=text)
    assert p.returncode == 0, p
    cfg = config_lines(p.stdout)
    assert cfg["listen_port"] == "9001"
    assert seconds(cfg["shutdown_timeout"]) == 0.5
    assert seconds(cfg["command_timeout"]) == 120
    assert seconds(cfg["connection_timeout"]) == 3600
    assert size_bytes(cfg["body_limit"]) == 64 * 1024
    assert size_bytes(cfg["bulk_body_limit"]) == 1 << 30
    assert cfg["postmap_command"].split() == ["postmap", "-c", "/x/y"]
    assert cfg["log_level"] == "debug"


def test_env_overrides_file(tmp_path):
    env = {"SMTPTLSD_LISTEN_PORT": "18480", "SMTPTLSD_BODY_LIMIT": "2K",
           "SMTPTLSD_DATABASE_URL": "postgresql://u@h:5433/db", "SMTPTLSD_LOG_LEVEL": "warning"}
    p = cli(tmp_path, "config", conf_text="listen_port = 9000\nlog_level = debug\n", env=env)
    assert p.returncode == 0, p
    cfg = config_lines(p.stdout)
    assert cfg["listen_port"] == "18480"
    assert size_bytes(cfg["body_limit"]) == 2048
    assert cfg["database_url"] == "postgresql://u@h:5433/db"
    assert cfg["log_level"] == "warning"


@pytest.mark.parametrize("value", ["abc", "0x10", "70000", "-1", ""])
def test_bad_env_value_exits_2_naming_the_variable(tmp_path, value):
    p = cli(tmp_path, "config", env={"SMTPTLSD_LISTEN_PORT": value})
    assert p.returncode == 2, p
    assert "SMTPTLSD_LISTEN_PORT" in p.stderr, p.stderr
    assert p.stdout == "", "no configuration printed after an error"


@pytest.mark.parametrize("line", ["no_such_key = 1", "listen_port = 70000", "listen_port = 12ab",
                                  "just some words", "log_level = verbose", "body_limit = 1T",
                                  "database_connect_timeout = 5 s", "policy_map_type = texthash",
                                  "http_threads = 257", "postfix_command ="])
def test_bad_config_line_exits_2_naming_the_line(tmp_path, line):
    text = "# line 1\nlisten_address = 127.0.0.1\n" + line + "\nlog_level = info\n"
    p = cli(tmp_path, "config", conf_text=text)
    assert p.returncode == 2, f"{line!r}: {p}"
    assert re.search(r"smtptlsd\.conf:3:", p.stderr), f"{line!r}: error should name line 3: {p.stderr!r}"


def test_bad_config_stops_serve_before_ready(make_daemon):
    d = make_daemon(start=False)
    with open(d.conf_path, "a") as f:
        f.write("listen_port = not-a-port\n")
    d.start(wait_ready=False)
    code = d.proc.wait(10)
    d.stopped = True
    assert code == 2
    assert "1" not in d.notify.values("READY")
    assert re.search(r"smtptlsd\.conf:\d+:", d.log_text()), d.log_text()


def test_missing_config_file_is_an_error(tmp_path):
    d = Daemon(str(tmp_path), {})
    p = d.run_cli(["config"], config=str(tmp_path / "does-not-exist.conf"))
    assert p.returncode == 2, p
    assert "does-not-exist.conf" in p.stderr


def test_version_help_and_usage(tmp_path):
    d = Daemon(str(tmp_path), {})
    v = d.run_cli(["--version"], config=None)
    assert v.returncode == 0 and re.search(r"\d+\.\d+\.\d+", v.stdout), v
    h = d.run_cli(["--help"], config=None)
    assert h.returncode == 0 and "migrate" in h.stdout and "token" in h.stdout, h
    u = d.run_cli(["no-such-command"])
    assert u.returncode == 2, u


def test_listen_port_from_environment(make_daemon):
    port = free_port()
    d = make_daemon(start=False, env={"SMTPTLSD_LISTEN_PORT": str(port)})
    d.start()
    setup_tokens(d)
    assert d.port == port
    assert d.get("/healthz", token=None).status == 200
