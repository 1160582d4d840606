# System-test fixtures: one private PostgreSQL per session (a fresh database per test), test certificates,
# lazily a Postfix sandbox, per-test DNS (knotd) and HTTPS (nginx) peers, and smtptlsd daemons started per
# test. After each test every daemon it started
# is checked, as NGINX Unit's harness does: still alive, open fds back to their count before the test, a
# clean exit 0 on SIGTERM, no <0>..<3> log line the test did not declare (daemon.expect_error(regex) or
# @pytest.mark.expect_errors(regex, ...)), and no sanitizer report (those come at exit: LeakSanitizer).
import itertools
import os
import shutil

import pytest

from tests.harness.browser import Browser
from tests.harness.certs import CertFactory
from tests.harness.daemon import Daemon
from tests.harness.dns import DnsServer
from tests.harness.https import HttpsServer
from tests.harness.pg import PostgresSandbox
from tests.harness.postfix import PostfixSandbox
from tests.harness.util import free_port, short_tempdir

_counter = itertools.count(1)
# The test daemons run 2 HTTP threads, so a pool of 4 plus the worker's and a listener's connections:
# more than this many connections to PostgreSQL after a test means connections leak.
MAX_DB_CONNECTIONS = 8


def pytest_configure(config):
    config.addinivalue_line("markers", "expect_errors(*regexes): daemon error lines this test expects")


@pytest.fixture(scope="session")
def session_dir(request):
    path = short_tempdir("stls-")
    yield path
    if request.session.testsfailed or os.environ.get("SMTPTLSD_KEEP_TMP"):
        print(f"\nsystem-test files kept in {path}")
    else:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def pg(session_dir):
    """The session's PostgreSQL (shared: tests that stop a database use private_pg instead)."""
    sandbox = PostgresSandbox(os.path.join(session_dir, "pg")).start()
    yield sandbox
    sandbox.destroy()


@pytest.fixture
def private_pg(session_dir):
    """A PostgreSQL of this test's own, initialized but NOT started (tests stop and start it)."""
    sandbox = PostgresSandbox(os.path.join(session_dir, f"pg{next(_counter)}"), port=free_port())
    sandbox.init()
    yield sandbox
    sandbox.destroy()


@pytest.fixture
def database(pg):
    """A fresh database in the session PostgreSQL: (name, url)."""
    name = f"t{next(_counter)}"
    url = pg.create_database(name)
    yield name, url
    pg.drop_database(name)


@pytest.fixture(scope="session")
def certs(session_dir):
    return CertFactory(os.path.join(session_dir, "certs"))


@pytest.fixture(scope="session")
def postfix(session_dir):
    """A running Postfix sandbox shared by the session (started on first use)."""
    sandbox = PostfixSandbox(os.path.join(session_dir, "postfix")).start()
    yield sandbox
    sandbox.destroy()


@pytest.fixture(scope="session")
def browser_process(session_dir):
    """Debian's chromium under playwright-core (tests/browser/bridge.mjs), started on first use and
    shared by the session."""
    workdir = os.path.join(session_dir, "browser")
    os.makedirs(workdir, exist_ok=True)
    b = Browser(workdir)
    yield b
    b.close()


@pytest.fixture
def browser(browser_process):
    """The session's browser for this test: browser.open(url, width, height) -> a page in a fresh
    context (its own cookies). After the test its pages are closed and any script error they had
    (an uncaught exception, a console.error) fails the test."""
    yield browser_process
    errors = browser_process.close_pages()
    if errors:
        pytest.fail("script errors in the console:\n  " + "\n  ".join(errors), pytrace=False)


@pytest.fixture
def make_postfix(session_dir):
    """Factory for Postfix instances of this test's own; make_postfix(remote=True, starttls=..., ...)."""
    made = []

    def make(remote=False, **kw):
        base = os.path.join(session_dir, f"pf{next(_counter)}")
        sandbox = PostfixSandbox.remote_mx(base, **kw) if remote else PostfixSandbox(base, **kw)
        made.append(sandbox)
        return sandbox.start()

    yield make
    for sandbox in made:
        sandbox.destroy()


@pytest.fixture
def make_dns(session_dir):
    """Factory: make_dns(address=..., port=...) -> a DnsServer of this test's own, not started (add
    zones, then start()). Stopped after the test; its files (knotd.log) stay with the session's."""
    made = []

    def make(**kw):
        server = DnsServer(os.path.join(session_dir, f"dns{next(_counter)}"), **kw)
        made.append(server)
        return server

    yield make
    for server in made:
        server.stop()


@pytest.fixture
def make_https(session_dir):
    """Factory: make_https(cert, key, address=None, port=443) -> a started HttpsServer of this test's
    own (default: port 443 of a free loopback address of its own). Stopped after the test."""
    made = []

    def make(cert, key, **kw):
        server = HttpsServer(os.path.join(session_dir, f"https{next(_counter)}"), cert, key, **kw)
        made.append(server)
        return server.start()

    yield make
    for server in made:
        server.stop()


def base_config(workdir, database_url, system_cert):
    """The configuration every test daemon starts from (tests override keys)."""
    return {
        "listen_address": "127.0.0.1",
        "listen_port": 0,
        "database_url": database_url,
        "database_connect_timeout": "2s",
        "http_threads": 2,
        "shutdown_timeout": "5s",
        "log_level": "info",
        "postfix_config_directory": os.path.join(workdir, "postfix-etc"),
        "certificate_directory": os.path.join(workdir, "certs"),
        "acme_live_directory": os.path.join(workdir, "letsencrypt", "live"),
        "system_certificate_file": system_cert.cert,
        "system_key_file": system_cert.key,
        "smtp_probe_address": "127.0.0.1:1",
        # no re-probing of the tests' made-up destinations (a watch test turns it on): a test
        # daemon reaches nothing beyond its own peers
        "probe_watch_interval": 0,
    }


@pytest.fixture
def make_daemon(request, session_dir, pg, certs):
    """Factory: make_daemon(config=None, start=True, tokens=True, database_url=None, db=None, env=None).

    A fresh database unless database_url is given; db = the PostgresSandbox behind it (default pg).
    tokens=True: after READY, adds CLI tokens `admin` (daemon.token, the http() default) and
    `reader` (daemon.read_token), then takes the fd baseline."""
    daemons = []
    databases = []
    expected = [rx for m in request.node.iter_markers("expect_errors") for rx in m.args]
    system_cert = certs.leaf("system", ("localhost",))

    def make(config=None, start=True, tokens=True, database_url=None, db=None, env=None):
        db = db or pg
        if database_url is None:
            name = f"t{next(_counter)}"
            database_url = db.create_database(name)
            databases.append((db, name))
        workdir = os.path.join(session_dir, f"d{next(_counter)}")
        os.makedirs(workdir)
        cfg = base_config(workdir, database_url, system_cert)
        cfg.update(config or {})
        d = Daemon(workdir, cfg, env=env, db_port=db.port)
        for rx in expected:
            d.expect_error(rx)
        daemons.append(d)
        if start:
            d.start()
            if tokens:
                setup_tokens(d)
        return d

    yield make

    problems = []
    for d in daemons:
        problems += check_daemon(d)
    for db, name in databases:
        if db.is_running():
            db.drop_database(name)
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


def setup_tokens(d):
    d.token = d.add_token("admin", "admin")
    d.read_token = d.add_token("reader", "read")
    d.mark_fd_baseline()


def check_daemon(d):
    """The after-test checks of one daemon; returns a list of problems (empty: fine)."""
    if d.proc is None:
        return [f"sanitizer report in a CLI run:\n{r}" for r in d.cli_reports]
    problems = []
    if not d.stopped:
        if not d.alive():
            problems.append(f"daemon died during the test (exit status {d.proc.returncode})")
        else:
            leaks = d.fd_leaks()
            if leaks:
                problems.append(f"{len(leaks)} file descriptor(s) opened during the test and still "
                                f"open: {leaks} (baseline {len(d.fd_baseline)} fds)")
            db_fds = len(d.fd_targets()) - len(d.fds_except_db())
            if db_fds > MAX_DB_CONNECTIONS:
                problems.append(f"{db_fds} connections to PostgreSQL open (more than "
                                f"{MAX_DB_CONNECTIONS}: a connection leak?)")
            try:
                rc = d.stop()
                if rc != 0:
                    problems.append(f"daemon exited with {rc} on SIGTERM at teardown (expected 0)")
            except Exception as e:  # a hang at stop is a finding, not a harness crash
                problems.append(str(e))
    errors = d.unexpected_errors()
    if errors:
        problems.append("unexpected error lines in the daemon log:\n  " + "\n  ".join(errors[:20]))
    reports = d.sanitizer_reports()
    if reports:
        problems.append("sanitizer report(s):\n  " + "\n  ".join(reports[:20]))
    d.close()
    if problems:
        problems.append(f"--- {d.log_path} (tail) ---\n{d.log_tail(80)}")
    return problems


@pytest.fixture
def daemon(make_daemon):
    """A started daemon on a fresh database, with admin and read tokens."""
    return make_daemon()
