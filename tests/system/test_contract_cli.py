# The command line as documented (issue 11): every command has its own --help (stdout, exit 0,
# neither the configuration nor the database touched; `token revoke --help` is never a token name),
# and a wrong invocation says what is wrong and where to look (stderr, exit 2).
import os
import re
import socket
import subprocess
import threading
import time

import pytest

from tests.harness.daemon import default_binary, sanitizer_env
from tests.system.test_foundation import parse_metrics
from tests.system.test_settings import fail_reload_wrapper, make_site  # noqa: F401 (a fixture)

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
    ("push",): "Usage: smtptlsd [-c FILE] push FILE [--dry-run] [--allow-empty]",
    ("pull",): "Usage: smtptlsd [-c FILE] pull",
    ("import",): "Usage: smtptlsd [-c FILE] import [--dry-run] [--settings]",
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


# == /metrics: what docs/operations.md lists, the Prometheus way ==================================

REPO = os.path.join(os.path.dirname(__file__), "..", "..")
METRIC_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"'
VALUE = r"([-+]?(?:[0-9]+(?:\.[0-9]*)?(?:[eE][-+]?[0-9]+)?|\.[0-9]+(?:[eE][-+]?[0-9]+)?)|[-+]?Inf|NaN)"


def documented_metrics():
    """{name: (type, {labels})} from the metrics table of docs/operations.md."""
    with open(os.path.join(REPO, "docs", "operations.md")) as f:
        text = f.read()
    out = {}
    for m in re.finditer(r"^\| `(smtptlsd_[a-z_]+)` \| (counter|gauge|histogram) \|([^|]*)\|",
                         text, re.M):
        out[m.group(1)] = (m.group(2), set(re.findall(r"`([a-z_]+)`", m.group(3))))
    assert len(out) >= 10, f"no metrics table in docs/operations.md: {out}"
    return out


def strict_exposition(text):
    """Checks every line of a Prometheus text 0.0.4 exposition: HELP then TYPE before each
    family's samples, each family once and its samples together, label values escaped, values
    numbers. Returns {family: {"type", "samples": [(name, {labels}, value)]}}."""
    assert text.endswith("\n"), "the exposition does not end with a line feed"
    families, current, seen_order = {}, None, []
    sample_rx = re.compile(rf"^({METRIC_NAME})(?:\{{((?:{LABEL})(?:,{LABEL})*)?\}})? {VALUE}$")
    for n, line in enumerate(text.split("\n")[:-1], 1):
        where = f"line {n}: {line!r}"
        if line.startswith("# HELP "):
            parts = line.split(" ", 3)
            assert len(parts) == 4 and re.fullmatch(METRIC_NAME, parts[2]) and parts[3], where
            name = parts[2]
            assert name not in families, f"{where}: family {name} twice"
            families[name] = {"help": parts[3], "type": None, "samples": []}
            current = name
            seen_order.append(name)
            continue
        if line.startswith("# TYPE "):
            parts = line.split(" ")
            assert len(parts) == 4 and parts[2] == current, f"{where}: TYPE not right after HELP"
            assert families[current]["type"] is None, f"{where}: TYPE twice"
            assert parts[3] in ("counter", "gauge", "histogram", "summary", "untyped"), where
            families[current]["type"] = parts[3]
            continue
        assert not line.startswith("#"), f"{where}: a comment that is neither HELP nor TYPE"
        m = sample_rx.match(line)
        assert m, f"{where}: not a sample line"
        name = m.group(1)
        fam = families.get(current)
        assert fam and fam["type"], f"{where}: a sample before its family's HELP and TYPE"
        if fam["type"] == "histogram":
            assert name in (current + "_bucket", current + "_sum", current + "_count"), where
        else:
            assert name == current, f"{where}: a sample of {name} inside family {current}"
        labels = {}
        for lm in re.finditer(LABEL, m.group(2) or ""):
            assert lm.group(1) not in labels, f"{where}: label {lm.group(1)} twice"
            labels[lm.group(1)] = re.sub(r"\\(.)", lambda e: "\n" if e.group(1) == "n"
                                         else e.group(1), lm.group(2))
        value = line.rsplit(" ", 1)[1]
        fam["samples"].append((name, labels, float(value.replace("Inf", "inf"))))
    for name, fam in families.items():
        assert fam["type"], f"{name}: no TYPE"
    return families


def scrape(d):
    r = d.get("/metrics", token=d.read_token)
    assert r.status == 200, r
    assert r.headers.get("Content-Type") == "text/plain; version=0.0.4; charset=utf-8", r.headers
    fams = strict_exposition(r.body)
    samples, _ = parse_metrics(r.body)
    return fams, samples


def one(fams, name, **labels):
    """The value of the one sample of family name with exactly these labels (None: absent)."""
    found = [v for n, lab, v in fams[name]["samples"] if n == name and lab == labels]
    assert len(found) <= 1, (name, labels, found)
    return found[0] if found else None


def test_strict_parser_refuses_what_prometheus_refuses():
    """The checker above must be able to fail (a test that cannot fail proves nothing)."""
    good = '# HELP a_total A.\n# TYPE a_total counter\na_total{x="q\\"\\\\\\n"} 1\n'
    assert strict_exposition(good)["a_total"]["samples"][0][1] == {"x": 'q"\\\n'}
    for bad in ('a_total 1\n',                                            # no HELP/TYPE
                '# HELP a_total A.\n# TYPE a_total counter\na_total{x="a"b"} 1\n',  # quote
                '# HELP a_total A.\n# TYPE a_total counter\na_total{x="\\q"} 1\n',  # escape
                '# HELP a_total A.\n# TYPE a_total counter\na_total one\n',
                '# HELP a A.\n# TYPE a gauge\na 1\n# HELP a A.\n# TYPE a gauge\na 2\n',
                '# HELP a A.\n# TYPE a gauge\nb 1\n',
                '# HELP a A.\n# TYPE a gauge\na 1'):
        with pytest.raises(AssertionError):
            strict_exposition(bad)


def test_metrics_are_the_documented_ones(make_site, tmp_path):
    """Every family docs/operations.md lists is exported with its type and labels, every exported
    family is listed, and they move as the docs say after a write, a failed reload and drift."""
    docs = documented_metrics()
    wrapper, flag = fail_reload_wrapper(str(tmp_path))
    site = make_site(config={"postfix_command": wrapper})
    d = site.d
    d.expect_error(r"(?i)reload.*fail")
    fp_a, fp_b = site.add_cert("a"), site.add_cert("b")

    fams, _ = scrape(d)
    exported = {n for n in fams if n.startswith("smtptlsd_")}
    assert exported == set(docs), (f"exported but not documented: {sorted(exported - set(docs))}; "
                                   f"documented but not exported: {sorted(set(docs) - exported)}")
    assert "smtptlsd_up" not in fams
    with open(os.path.join(REPO, "api", "openapi.yaml")) as f:
        spec = f.read()
    for name, (kind, labels) in docs.items():
        assert fams[name]["type"] == kind, (name, fams[name]["type"], kind)
        assert f"`{name}" in spec, f"{name} missing from the /metrics description in the spec"
        for _, lab, _ in fams[name]["samples"]:
            got = set(lab) - ({"le"} if kind == "histogram" else set())
            assert got == labels, f"{name}: labels {sorted(got)}, documented {sorted(labels)}"
    version = re.search(r"version\s*:\s*'([^']+)'", open(os.path.join(REPO, "meson.build")).read())
    assert one(fams, "smtptlsd_build_info", version=version.group(1)) == 1
    assert one(fams, "smtptlsd_database_up") == 1
    assert {lab["state"]: v for _, lab, v in fams["smtptlsd_state"]["samples"]} == \
        {"in_sync": 1, "applying": 0, "degraded": 0}
    certs = {lab["name"]: lab for _, lab, _ in fams["smtptlsd_certificate_expiry_seconds"]["samples"]}
    assert certs["a"]["type"] == "imported" and certs["a"]["in_use"] == "false", certs
    system = [lab for lab in certs.values() if lab["type"] == "system"]
    assert system and all(lab["in_use"] == "false" for lab in system), certs
    before = {"applied": one(fams, "smtptlsd_jobs_total", result="applied"),
              "failed": one(fams, "smtptlsd_jobs_total", result="failed"),
              "ok": one(fams, "smtptlsd_postfix_reloads_total", result="ok"),
              "rfailed": one(fams, "smtptlsd_postfix_reloads_total", result="failed")}
    assert None not in before.values(), before

    # a write that binds a: applied +1, one reload, a is the one in use, smtpd serves it
    site.put_ok({"mode": "may", "certificate": "a"})
    site.wait_served(fp_a)
    site.wait_verified()
    fams, _ = scrape(d)
    assert one(fams, "smtptlsd_jobs_total", result="applied") == before["applied"] + 1
    assert one(fams, "smtptlsd_postfix_reloads_total", result="ok") == before["ok"] + 1
    in_use = [lab["name"] for _, lab, _ in fams["smtptlsd_certificate_expiry_seconds"]["samples"]
              if lab["in_use"] == "true"]
    assert in_use == ["a"], in_use
    served = [lab["fingerprint"] for _, lab, v in
              fams["smtptlsd_served_certificate_info"]["samples"] if v == 1]
    assert [f.upper() for f in served] == [fp_a.upper()], (served, fp_a)

    # a reload Postfix refuses: failed job, failed reload, degraded, a still served
    open(flag, "w").close()
    r = site.patch({"certificate": "b"})
    assert r.status == 422, r
    os.unlink(flag)
    fams, _ = scrape(d)
    assert one(fams, "smtptlsd_jobs_total", result="failed") == before["failed"] + 1
    assert one(fams, "smtptlsd_jobs_total", result="applied") == before["applied"] + 1
    assert one(fams, "smtptlsd_postfix_reloads_total", result="failed") == before["rfailed"] + 1
    assert one(fams, "smtptlsd_postfix_reloads_total", result="ok") == before["ok"] + 1
    state = site.status()["state"]
    assert {lab["state"]: v for _, lab, v in fams["smtptlsd_state"]["samples"]} == \
        {s: int(s == state) for s in ("in_sync", "applying", "degraded")}, state
    assert state == "degraded", state

    # drift: a managed parameter edited by hand shows in the gauge as in /status
    with open(site.pf.main_cf, "a") as f:
        f.write("smtpd_tls_loglevel = 3\n")
    drift = site.status()["drift"]
    fams, _ = scrape(d)
    assert len(drift) >= 1 and one(fams, "smtptlsd_drift_parameters") == len(drift), drift

    # the next good write: in_sync, no drift, b in use
    site.put_ok({"mode": "may", "certificate": "b"})
    site.wait_served(fp_b)
    site.wait_verified()
    deadline = time.monotonic() + 20
    while True:
        fams, _ = scrape(d)
        served = [lab["fingerprint"].upper() for _, lab, _ in
                  fams["smtptlsd_served_certificate_info"]["samples"]]
        if served == [fp_b.upper()] or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert served == [fp_b.upper()], served
    assert one(fams, "smtptlsd_state", state="in_sync") == 1
    assert one(fams, "smtptlsd_drift_parameters") == 0
    assert [lab["name"] for _, lab, _ in fams["smtptlsd_certificate_expiry_seconds"]["samples"]
            if lab["in_use"] == "true"] == ["b"]


def test_documented_alert_rules_use_exported_metrics():
    """Every metric an alert of docs/operations.md uses is exported (or is Prometheus' `up`), and
    no alert relies on a daemon reporting itself down."""
    docs = documented_metrics()
    with open(os.path.join(REPO, "docs", "operations.md")) as f:
        text = f.read()
    exprs = re.findall(r"^\s*expr: (.*)$", text, re.M)
    assert exprs, "no alert rules in docs/operations.md"
    for e in exprs:
        for name in re.findall(r"\b(smtptlsd_[a-z_]+)", e):
            assert name in docs, f"alert uses {name}, which is not exported: {e}"
    assert any(re.search(r'\bup\{job="smtptlsd"\} == 0', e) for e in exprs), exprs
    expiry = [e for e in exprs if "certificate_expiry_seconds" in e]
    assert expiry and all('in_use="true"' in e for e in expiry), expiry
