# The command line as documented (issue 11): every command has its own --help (stdout, exit 0,
# neither the configuration nor the database touched; `token revoke --help` is never a token name),
# and a wrong invocation says what is wrong and where to look (stderr, exit 2).
import os
import socket
import subprocess
import threading

import pytest

from tests.harness.daemon import default_binary, sanitizer_env

# Every command and group, with the first line of the help it must print.
HELP = {
    (): "Usage: smtptlsd [-c FILE] [COMMAND] [ARGS]",
    ("serve",): "Usage: smtptlsd [-c FILE] serve",
    ("migrate",): "Usage: smtptlsd [-c FILE] migrate",
    ("config",): "Usage: smtptlsd [-c FILE] config",
    ("token",): "Usage: smtptlsd [-c FILE] token COMMAND [ARGS]",
    ("token", "add"): "Usage: smtptlsd [-c FILE] token add NAME --scope SCOPE",
    ("token", "create"): "Usage: smtptlsd [-c FILE] token add NAME --scope SCOPE",
    ("token", "list"): "Usage: smtptlsd [-c FILE] token list",
    ("token", "revoke"): "Usage: smtptlsd [-c FILE] token revoke NAME",
}


class Listener:
    """A TCP port that counts the connections made to it (a database that must not be asked)."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.done.is_set():
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            self.accepted += 1
            conn.close()

    def close(self):
        self.done.set()
        self.thread.join(5)
        self.sock.close()


@pytest.fixture
def db_trap(tmp_path):
    """(config path, listener): a valid configuration whose database_url is the listener."""
    lst = Listener()
    conf = tmp_path / "smtptlsd.conf"
    conf.write_text(f"database_url = postgresql://cli@127.0.0.1:{lst.port}/nothing"
                    "?connect_timeout=2\n")
    yield str(conf), lst
    lst.close()


def cli(args, env=None):
    full = dict(os.environ)
    full.update(sanitizer_env())
    for k in list(full):
        if k.startswith("SMTPTLSD_"):
            del full[k]
    full.update(env or {})
    proc = subprocess.run([default_binary()] + list(args), capture_output=True, text=True,
                          timeout=60, env=full)
    for stream in (proc.stdout, proc.stderr):
        assert "Sanitizer" not in stream and "runtime error:" not in stream, stream
    return proc


@pytest.mark.parametrize("words", sorted(HELP), ids=lambda w: " ".join(w) or "(global)")
@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_of_every_command(words, flag, db_trap):
    conf, lst = db_trap
    for argv in (["-c", conf, *words, flag], ["-c", "/nonexistent/smtptlsd.conf", *words, flag]):
        p = cli(argv)
        assert p.returncode == 0, f"{argv}: exit {p.returncode}, stderr {p.stderr!r}"
        assert p.stderr == "", f"{argv}: {p.stderr!r}"
        assert p.stdout.splitlines()[0] == HELP[words], f"{argv}: {p.stdout!r}"
        if words and words != ("token",):
            assert "--config FILE" in p.stdout and "--help" in p.stdout, p.stdout
    assert lst.accepted == 0, f"{words} --help connected to the database"


def test_help_never_taken_for_a_name(db_trap):
    conf, lst = db_trap
    for argv in (["token", "revoke", "--help"], ["token", "revoke", "ci", "--help"],
                 ["token", "add", "--help", "--scope", "read"], ["token", "add", "x", "-h"]):
        p = cli(["-c", conf, *argv])
        assert p.returncode == 0 and p.stdout.startswith("Usage: "), (argv, p)
        assert "revoked" not in p.stdout and "cannot connect" not in p.stderr, (argv, p)
    assert lst.accepted == 0, "a --help run connected to the database"


def test_command_list_in_global_help():
    out = cli(["--help"]).stdout
    for words in HELP:
        if words and words[-1] != "create" and words != ("token",):
            assert f"  {' '.join(words)}" in out, f"{words} missing from --help:\n{out}"


# (argv, what stderr's first line must say, the command whose help the hint names)
BAD = [
    (["token", "add", "x", "--scope", "superuser"],
     "smtptlsd token add: scope must be read, write or admin, not 'superuser'", "token add"),
    (["token", "add", "x", "--scope=root"],
     "smtptlsd token add: scope must be read, write or admin, not 'root'", "token add"),
    (["token", "add", "x", "--scope"],
     "smtptlsd token add: option --scope needs a value (SCOPE)", "token add"),
    (["token", "add", "x"], "smtptlsd token add: missing --scope SCOPE", "token add"),
    (["token", "add", "--scope", "read"], "smtptlsd token add: missing NAME", "token add"),
    (["token", "add", "x", "--scope", "read", "--x"], "smtptlsd token add: unknown option --x",
     "token add"),
    (["token", "add", "Bad Name", "--scope", "read"],
     "smtptlsd token add: 'Bad Name' is not a token name: names are [a-z0-9][a-z0-9._-]{0,63}",
     "token add"),
    (["token", "add", "x", "y", "--scope", "read"], "smtptlsd token add: unexpected argument 'y'",
     "token add"),
    (["token", "revoke"], "smtptlsd token revoke: missing NAME", "token revoke"),
    (["token", "revoke", "--all"], "smtptlsd token revoke: unknown option --all", "token revoke"),
    (["token", "list", "--x=1"], "smtptlsd token list: unknown option --x", "token list"),
    (["token"], "smtptlsd token: missing command (add, list, revoke)", "token"),
    (["token", "remove", "x"], "smtptlsd token: unknown command 'token remove'", "token"),
    (["serve", "--x"], "smtptlsd serve: unknown option --x", "serve"),
    (["serve", "now"], "smtptlsd serve: unexpected argument 'now'", "serve"),
    (["migrate", "-x"], "smtptlsd migrate: unknown option -x", "migrate"),
    (["config", "--help=yes"], "smtptlsd config: option --help takes no value", "config"),
    (["config", "--", "--help"], "smtptlsd config: unexpected argument '--help'", "config"),
    (["frobnicate"], "smtptlsd: unknown command 'frobnicate'", ""),
    (["--x"], "smtptlsd: unknown option --x", ""),
    (["-c"], "smtptlsd: option --config needs a value (FILE)", ""),
]


@pytest.mark.parametrize("argv,first,hint", BAD, ids=lambda v: " ".join(v) if isinstance(v, list)
                         else None)
def test_bad_invocation_says_what_is_wrong(argv, first, hint, db_trap):
    conf, lst = db_trap
    full = ["-c", conf, *argv] if argv != ["-c"] else argv
    p = cli(full)
    assert p.returncode == 2, f"{argv}: exit {p.returncode}: {p.stderr!r}"
    assert p.stdout == "", f"{argv}: stdout {p.stdout!r}"
    lines = p.stderr.splitlines()
    assert lines == [first, f"Try 'smtptlsd{' ' + hint if hint else ''} --help'."], \
        f"{argv}: {p.stderr!r}"
    assert lst.accepted == 0, f"{argv}: connected to the database"


def test_version_is_the_project_version():
    with open(os.path.join(os.path.dirname(__file__), "..", "..", "meson.build")) as f:
        text = f.read()
    import re
    version = re.search(r"version\s*:\s*'([^']+)'", text).group(1)
    for flag in ("--version", "-V"):
        p = cli([flag])
        assert p.returncode == 0 and p.stdout.splitlines()[0] == f"smtptlsd {version}", p


def test_token_create_is_token_add(daemon):
    """`token create` (the API's word) does what `token add` does, with the database."""
    tok = daemon.run_cli(["token", "create", "via-create", "--scope", "read"])
    assert tok.returncode == 0 and tok.stdout.startswith("stk_"), tok
    assert daemon.get("/metrics", token=tok.stdout.strip()).status == 200
    listed = daemon.run_cli(["token", "list"]).stdout
    assert any(line.split()[:2] == ["via-create", "read"] for line in listed.splitlines()), listed
    assert daemon.run_cli(["token", "revoke", "via-create"]).returncode == 0
