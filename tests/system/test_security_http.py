# Security findings of issue 10 in the HTTP layer: the watchdog's liveness check cannot be silenced
# from the network (1), no work before the token's shape is checked and /readyz is cheap (7), query
# values that do not fit are refused rather than ignored (9), and new connections during the shutdown
# drain are refused instead of accepted and reset (14).
import errno
import re
import socket
import time

import pytest

from tests.harness.util import wait_until
from tests.system.test_foundation import DB_ERRORS, assert_problem
from tests.system.test_hostile import assert_unchanged, exchange, final, hostile, request, \
    split_replies  # noqa: F401 (hostile: a fixture)


def connect_from(source, port, timeout=5.0):
    """A TCP connection to the daemon on 127.0.0.1 whose source address is `source`."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    return s


def get_from(source, port, path, timeout=5.0):
    """GET path from a client bound to `source`; returns the parsed final reply."""
    s = connect_from(source, port, timeout)
    got = b""
    try:
        s.sendall(request("GET", path))
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
    finally:
        s.close()
    return final(split_replies(got))


# -- 1. the watchdog cannot be silenced by idle connections ---------------------------------------
def test_idle_connections_from_one_address_do_not_silence_the_watchdog(make_daemon):
    """300 idle connections from 127.0.0.1 (more than the old per-address default of 256, the
    address the old self-check came from) for three times WatchdogSec: WATCHDOG=1 keeps coming,
    and a client from 127.0.0.2 is still served."""
    d = make_daemon(start=False, env={"WATCHDOG_USEC": "1000000"})
    d.start()
    idle = []
    try:
        for _ in range(300):
            try:
                idle.append(connect_from("127.0.0.1", d.port))
            except OSError:
                break  # the backlog is full: the limit did its job
        assert len(idle) >= 256, f"only {len(idle)} connections opened"
        since = time.monotonic()
        time.sleep(3.2)
        pings = [t for t, m in d.notify.timed_messages() if t >= since and m.get("WATCHDOG") == "1"]
        assert len(pings) >= 4, \
            f"{len(pings)} WATCHDOG=1 in 3.2 s (WatchdogSec 1 s) with 300 idle connections open"
        r = get_from("127.0.0.2", d.port, "/healthz")
        assert r.status == 200, f"a client from another address was not served: {r}"
    finally:
        for s in idle:
            s.close()
    assert not [line for line in d.log_lines() if "watchdog: not pinging" in line]


def test_per_address_connection_limit_defaults_to_32(make_daemon):
    d = make_daemon(start=False)
    proc = d.run_cli(["config"])
    assert proc.returncode == 0, proc
    assert "per_ip_connection_limit = 32" in proc.stdout, proc.stdout


def test_a_full_connection_limit_is_not_a_liveness_failure(make_daemon):
    """connection_limit filled with idle connections (from many addresses): the daemon refuses
    more, which is not a hang; the watchdog keeps pinging."""
    d = make_daemon(start=False, config={"connection_limit": 8, "log_level": "debug"},
                    env={"WATCHDOG_USEC": "1000000"})
    d.start()
    idle = []
    try:
        for i in range(12):
            idle.append(connect_from(f"127.0.1.{i + 1}", d.port))
        since = time.monotonic()
        time.sleep(3.2)
        pings = [t for t, m in d.notify.timed_messages() if t >= since and m.get("WATCHDOG") == "1"]
        assert len(pings) >= 4, f"{len(pings)} WATCHDOG=1 in 3.2 s at connection_limit"
    finally:
        for s in idle:
            s.close()
    assert not [line for line in d.log_lines() if "watchdog: not pinging" in line]
    assert "connection_limit reached" in d.log_text(), "the limit was not reached"


# -- 14. no connection is accepted during the shutdown drain and then reset -----------------------
def test_new_connections_during_the_shutdown_drain_are_refused(make_daemon):
    """A request in progress (its body half sent) holds the drain; SIGTERM; every new connection
    is refused (ECONNREFUSED) or answered 503 with Retry-After, never accepted and left unanswered
    or reset. The held request is still answered and the daemon exits 0."""
    d = make_daemon(config={"shutdown_timeout": "8s"})
    body = b'{"level": "may"}'
    held = socket.create_connection(("127.0.0.1", d.port), timeout=10)
    held.sendall(request("PUT", "/api/v1/tls-policies/held.example", d.token,
                         ["Content-Type: application/json"], body)[:-len(body) + 3])
    time.sleep(0.3)  # the headers are in: the request is in flight
    d.proc.send_signal(15)
    d.stopped = True
    d.notify.wait_for("STOPPING=1", timeout=5)
    time.sleep(0.2)
    outcomes = []
    for _ in range(5):
        try:
            s = connect_from("127.0.0.1", d.port, timeout=3)
        except ConnectionRefusedError:
            outcomes.append("refused")
            continue
        got = b""
        try:
            s.sendall(request("GET", "/healthz"))
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                got += chunk
        except socket.timeout:
            outcomes.append(f"accepted, no answer in 3 s ({got!r})")
            continue
        except OSError as e:
            outcomes.append(f"accepted, then {errno.errorcode.get(e.errno, e)}")
            continue
        finally:
            s.close()
            replies = split_replies(got)
        ok = len(replies) == 1 and replies[0].status == 503 and \
            replies[0].headers.get("retry-after", "").isdigit()
        outcomes.append("503" if ok else f"answered {replies or got!r}")
        time.sleep(0.1)
    assert d.alive(), "the daemon exited before the held request finished: nothing was tested"
    bad = [o for o in outcomes if o not in ("refused", "503")]
    assert not bad, f"new connections during the drain: {outcomes}"
    held.sendall(body[3:])
    held.settimeout(10)
    reply = b""
    try:
        while True:
            chunk = held.recv(65536)
            if not chunk:
                break
            reply += chunk
    finally:
        held.close()
    assert reply.startswith(b"HTTP/1.1 "), f"the request in flight got no reply: {reply!r}"
    d.proc.wait(15)
    assert d.proc.returncode == 0


# -- 9. query values that do not fit or cannot be read are refused --------------------------------
POLICY = "/api/v1/tls-policies/hostile.example"
# Every query parameter the API reads, with a request that reads it (writes would change something
# if the parameter were ignored).
QUERY_CASES = [
    ("dry_run", "PUT", POLICY, {"level": "dane"}),
    ("dry_run", "PATCH", "/api/v1/settings", {"loglevel": 3}),
    ("wait", "PUT", POLICY, {"level": "dane"}),
    ("manager", "PUT", POLICY, {"level": "dane"}),
    ("limit", "GET", "/api/v1/jobs", None),
    ("limit", "GET", "/api/v1/tls-policies", None),
    ("after", "GET", "/api/v1/jobs", None),
    ("after", "GET", "/api/v1/tls-policies", None),
    ("q", "GET", "/api/v1/tls-policies", None),
    ("level", "GET", "/api/v1/tls-policies", None),
    ("managed", "GET", "/api/v1/tls-policies", None),
    ("q", "GET", "/api/v1/certificates", None),
    ("type", "GET", "/api/v1/certificates", None),
]
BAD_VALUES = {
    "over-long": "1" * 5000,
    "bad escape": "%zz",
    "NUL": "true%00",
}


@pytest.mark.parametrize("name,method,path,body", QUERY_CASES,
                         ids=[f"{c[0]}-{c[1]}-{c[2].rsplit('/', 1)[1]}" for c in QUERY_CASES])
def test_query_values_that_do_not_fit_are_refused_naming_the_parameter(hostile, pg, name, method,
                                                                      path, body):
    d, before = hostile
    for what, value in BAD_VALUES.items():
        r = d.http(method, f"{path}?{name}={value}", body)
        assert_problem(r, 422, "invalid_value", field=name)
        assert name in r.body.get("detail", ""), f"{what}: {r}"
    if name == "manager":
        assert_problem(d.http(method, f"{path}?manager=Not%20A%20Name", body), 422,
                       "invalid_value", field="manager")
    assert_unchanged(d, pg, before)


# -- 7. no work before authentication; /readyz is cheap; stray bodies are capped ------------------
MALFORMED_TOKENS = ["wrong-token", "stk_short", "stk_" + "A" * 42 + "!", "stk_" + "A" * 44,
                    "x" * 4000]


@pytest.mark.expect_errors(DB_ERRORS)
def test_a_malformed_token_is_refused_without_the_database(make_daemon, private_pg):
    """With PostgreSQL stopped, a token that cannot be one of ours is 401 at once: its shape is
    checked before a database connection is taken. A well-formed unknown token still needs the
    database (503)."""
    private_pg.start()
    d = make_daemon(db=private_pg)
    assert d.get("/api/v1/tokens").status == 200
    private_pg.stop()
    for token in MALFORMED_TOKENS:
        start = time.monotonic()
        r = d.get("/api/v1/settings", token=token)
        assert_problem(r, 401, "unauthorized")
        assert time.monotonic() - start < 2, f"{token[:20]}: {time.monotonic() - start:.1f}s"
    assert_problem(d.get("/api/v1/settings", token="stk_" + "A" * 43), 503, "service_unavailable")


def select_ones(pg):
    """How many `SELECT 1` PostgreSQL has logged (log_statement = all)."""
    with open(pg.logfile, errors="replace") as f:
        return sum(1 for line in f if re.search(r"(statement|execute [^:]*): SELECT 1\s*$", line))


@pytest.mark.expect_errors(DB_ERRORS)
def test_readyz_asks_the_database_at_most_once_a_second(make_daemon, private_pg):
    """40 GET /readyz within about a second cost at most two SELECT 1 (PostgreSQL's own log,
    log_statement = all); and a /readyz right after PostgreSQL stopped says 503 (the cached
    answer is dropped at once)."""
    private_pg.start()
    private_pg.psql("ALTER SYSTEM SET log_statement = 'all'")
    private_pg.psql("SELECT pg_reload_conf()")
    d = make_daemon(db=private_pg)
    assert d.get("/readyz", token=None).status == 200
    time.sleep(1.1)
    wait_until(lambda: select_ones(private_pg) >= 1, 5, "PostgreSQL to log the first SELECT 1")
    before = select_ones(private_pg)
    start = time.monotonic()
    for _ in range(40):
        r = d.get("/readyz", token=None)
        assert r.status == 200, r
    elapsed = time.monotonic() - start
    time.sleep(0.5)  # the log is written asynchronously
    asked = select_ones(private_pg) - before
    assert asked <= 1 + int(elapsed), \
        f"40 /readyz in {elapsed:.2f}s ran {asked} SELECT 1 (at most one a second expected)"
    private_pg.stop()
    assert_problem(d.get("/readyz", token=None), 503, "service_unavailable")
    private_pg.start()
    wait_until(lambda: d.get("/readyz", token=None).status == 200, 20,
               "/readyz to say ready again after PostgreSQL came back")


@pytest.mark.parametrize("method,path", [("GET", "/api/v1/settings"),
                                         ("DELETE", "/api/v1/tls-policies/stray.example"),
                                         ("GET", "/healthz")])
def test_a_body_to_a_route_that_takes_none_is_refused_unread(daemon, method, path):
    """A 100 MB Content-Length, or a chunked body, to a route that takes no body: 413 at once,
    before the body is sent, and the connection closed; a small stray body ("{}") is ignored."""
    big = request(method, path, daemon.token, ["Content-Length: 104857600"], None) + b"x" * 4096
    replies, closed = exchange(daemon.port, big, 3)
    assert replies and replies[-1].status == 413, f"{method} {path} with 100 MB announced: {replies}"
    assert closed, "the connection stays open for the rest of the body"
    chunked_req = request(method, path, daemon.token, ["Transfer-Encoding: chunked"], None)
    replies, closed = exchange(daemon.port, chunked_req + b"1000\r\n" + b"x" * 4096, 3)
    assert replies and replies[-1].status == 413, f"{method} {path} chunked: {replies}"
    assert closed
    small = request(method, path, daemon.token, ["Content-Type: application/json"], b"{}")
    replies, _ = exchange(daemon.port, small, 5)
    assert replies and replies[-1].status in (200, 404), f"{method} {path} with {{}}: {replies}"


@pytest.mark.parametrize("method,path,body", [("PUT", POLICY, {"level": "dane"}),
                                              ("PATCH", "/api/v1/settings", {"loglevel": 3})])
def test_a_bare_dry_run_flag_is_a_dry_run(hostile, pg, method, path, body):
    """`?dry_run` without `=` is `?dry_run=` (true), never an absent parameter: nothing changes."""
    d, before = hostile
    r = d.http(method, f"{path}?dry_run", body)
    assert r.status in (200, 422), r
    assert "Job-Id" not in r.headers, f"a job was recorded for a dry run: {r}"
    assert_unchanged(d, pg, before)
