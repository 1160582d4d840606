# `smtptlsd push` and `smtptlsd pull` (src/remote.c), as a CI job runs them: the real binary
# against a running daemon's API (SMTPTLSD_API_URL, SMTPTLSD_API_TOKEN[_FILE]), with no
# configuration file and no database of its own. Exit statuses a pipeline branches on: 0 applied
# or nothing to change, 1 refused (the line named), 2 unreachable; the diff on stdout.
import os
import socket
import subprocess

from tests.harness.daemon import sanitizer_env
from tests.system.test_policies import make_policy_site  # noqa: F401 (a fixture)

MAP = ("# partners\n"
       ".example.com            encrypt protocols=>=TLSv1.2\n"
       "[relay.example.net]:587 secure,\n"
       "    match=nexthop:dot-nexthop\n")


def cli(site, *args, stdin=None, env=None, url=None, token=None):
    e = {k: v for k, v in os.environ.items() if not k.startswith("SMTPTLSD_")}
    e.update(sanitizer_env())
    e["SMTPTLSD_API_URL"] = url or site.d.url
    if token is not False:
        e["SMTPTLSD_API_TOKEN"] = token or site.d.token
    e.update(env or {})
    # a configuration file that does not exist: push and pull must not read one
    return subprocess.run([site.d.binary, "-c", "/nonexistent/smtptlsd.conf", *args],
                          input=stdin, capture_output=True, text=True, env=e, timeout=120)


def test_push_applies_a_map_file_and_pull_gives_it_back(make_policy_site, tmp_path):
    site = make_policy_site()
    f = tmp_path / "tls_policy"
    f.write_text(MAP)
    # a dry run: the diff, nothing changed
    r = cli(site, "push", "--dry-run", str(f))
    assert r.returncode == 0, r
    assert "+.example.com\tencrypt protocols=>=TLSv1.2" in r.stdout.splitlines(), r.stdout
    assert "dry run" in r.stderr and site.policies() == [], r
    # applied: the diff, the job's outcome; Postfix answers
    r = cli(site, "push", str(f))
    assert r.returncode == 0, r
    assert "applied (job " in r.stderr and "added 2" in r.stderr, r.stderr
    assert site.map_query("[relay.example.net]:587") == "secure match=nexthop:dot-nexthop"
    # again: nothing to change, no job
    jobs = site.d.get("/api/v1/jobs?limit=1").body["items"][0]["id"]
    r = cli(site, "push", str(f))
    assert r.returncode == 0 and "nothing to change" in r.stderr and r.stdout == "", r
    assert site.d.get("/api/v1/jobs?limit=1").body["items"][0]["id"] == jobs
    # pull | push - (standard input) changes nothing; the token from a file
    token_file = tmp_path / "ci.token"
    token_file.write_text(site.d.token + "\n")
    pulled = cli(site, "pull", token=False, env={"SMTPTLSD_API_TOKEN_FILE": str(token_file)})
    assert pulled.returncode == 0 and ".example.com\tencrypt" in pulled.stdout, pulled
    r = cli(site, "push", "-", stdin=pulled.stdout)
    assert r.returncode == 0 and "nothing to change" in r.stderr, r
    # JSON too
    r = cli(site, "push", "-", stdin='{"items": [{"destination": "json.example", "level": "may"}]}')
    assert r.returncode == 0 and "removed 2" in r.stderr, r


def test_push_exit_statuses(make_policy_site, tmp_path):
    site = make_policy_site()
    site.bulk([{"destination": "kept.example", "level": "encrypt"}])
    before = site.snapshot()
    bad = tmp_path / "bad"
    bad.write_text("a.example may\nb.example may colour=red\n")
    r = cli(site, "push", str(bad))
    assert r.returncode == 1, r
    assert "/lines/2" in r.stderr and "colour" in r.stderr, r.stderr
    # a token the daemon does not know: refused (401), 1
    r = cli(site, "push", str(bad), token="not-a-token")
    assert r.returncode == 1 and "401" in r.stderr, r
    # nobody listening: 2
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = cli(site, "push", str(bad), url=f"http://127.0.0.1:{port}")
    assert r.returncode == 2 and "connect" in r.stderr.lower(), r
    # no token at all: 2, said
    r = cli(site, "pull", token=False)
    assert r.returncode == 2 and "no token" in r.stderr, r
    # a file without one policy would remove them all: refused unless meant
    r = cli(site, "push", "-", stdin="# nothing here\n\n")
    assert r.returncode == 1 and "holds no policy" in r.stderr, r
    assert site.snapshot() == before
    r = cli(site, "push", "--allow-empty", "-", stdin="# nothing here\n")
    assert r.returncode == 0 and "removed 1" in r.stderr, r
    assert site.policies() == []
    site.bulk([{"destination": "kept.example", "level": "encrypt"}])
    before = site.snapshot()
    # a file that is not there
    r = cli(site, "push", str(tmp_path / "missing"))
    assert r.returncode == 2 and "cannot open" in r.stderr, r
    assert site.snapshot() == before
