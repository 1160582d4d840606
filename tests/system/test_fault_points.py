# kill -9 at every step of the worker, through the test-only fault points of the ASan build
# (src/fault.h; $SMTPTLSD_FAULT_FILE says "<point> kill" or "<point> stall <ms>"), and a
# stuck worker silencing the systemd watchdog. For each point: the files Postfix reads are exactly
# the old or exactly the new version at the moment of the kill (which one is fixed by the point),
# and after a restart without the fault the accepted job is applied, the files are the database
# state, no staged or temporary file is left and Postfix serves the result.
import os
import subprocess
import threading
import time

import pytest

from tests.harness.util import run, wait_until
from tests.system.conftest import setup_tokens
from tests.system.test_crash import leftover_problems, settle
from tests.system.test_settings import make_site  # noqa: F401  (a fixture)

POLICY = "/api/v1/tls-policies/"


def fault_build(binary):
    out = run([binary, "--version"], check=False).stdout
    return "fault injection compiled in" in out


def arm(site, text):
    with open(site.fault_file, "w") as f:
        f.write(text + "\n")


def disarm(site):
    if os.path.exists(site.fault_file):
        os.unlink(site.fault_file)


@pytest.fixture
def fsite(make_site):
    """A site whose daemon reads a fault file (not armed yet), bound to k0 with one policy."""
    site = make_site(start=False)
    if not fault_build(site.d.binary):
        pytest.skip(f"{site.d.binary} has no fault points (build-asan has: scripts/build)")
    site.fault_file = os.path.join(site.d.workdir, "fault")
    site.d.extra_env["SMTPTLSD_FAULT_FILE"] = site.fault_file
    site.d.start()
    setup_tokens(site.d)
    for name in ("k0", "k1"):
        site.add_cert(name)
    site.put_ok({"mode": "may", "certificate": "k0"})
    r = site.d.http("PUT", POLICY + "example.org", {"level": "encrypt"})
    assert r.status in (200, 201), r
    site.map_path = os.path.join(site.pf.config_dir, "smtptlsd_tls_policy")
    return site


def read(path):
    with open(path, "rb") as f:
        return f.read()


def files(site):
    """The bytes Postfix reads: main.cf, the policy map's text and index, the served key/chain."""
    out = {"main.cf": read(site.pf.main_cf), "map": read(site.map_path),
           "map.db": read(site.map_path + ".db")}
    for path in site.chain_files():
        out[os.path.basename(path)] = read(path)
    return out


def map_keys(site):
    proc = run(["postmap", "-c", site.pf.config_dir, "-s", "hash:" + site.map_path])
    return sorted(line.split()[0] for line in proc.stdout.splitlines() if line.strip())


# point -> (the write that passes it, which version main.cf and the map must be at the kill)
POINTS = {
    "after_stage": ("settings", "old", "old"),
    "after_rename": ("settings", "new", "old"),
    "after_reload": ("settings", "new", "old"),
    "before_commit": ("settings", "new", "old"),
    "after_commit": ("settings", "new", "old"),
    "after_postmap": ("policy", "old", "old"),
    "after_map_rename": ("policy", "old", "new"),
    "before_commit/policy": ("policy", "old", "new"),
}


@pytest.mark.parametrize("point", list(POINTS))
def test_kill9_at_each_worker_step(fsite, point):
    site = fsite
    what, maincf_at_kill, map_at_kill = POINTS[point]
    old = files(site)
    old_keys = map_keys(site)
    jobs_before = max(j["id"] for j in site.jobs())
    reloads_before = site.metric("smtptlsd_postfix_reloads_total", result="ok")
    assert reloads_before >= 1

    arm(site, f"{point.split('/')[0]} kill")
    try:
        if what == "settings":
            r = site.d.http("PATCH", "/api/v1/settings", {"certificate": "k1"}, timeout=30)
        else:
            r = site.d.http("PUT", POLICY + "example.net", {"level": "verify"}, timeout=30)
        answer = r.status
    except OSError as e:  # the daemon died under the request: no reply
        answer = repr(e)
    try:
        site.d.proc.wait(20)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the daemon was not killed at {point}; the write answered {answer}\n"
                    f"{site.d.log_tail(30)}")
    site.d.stopped = True
    assert site.d.proc.returncode == -9, site.d.proc.returncode
    assert isinstance(answer, str), f"the write got an answer ({answer}) before the kill"
    assert f"fault injection: SIGKILL at {point.split('/')[0]}" in site.d.log_text()

    # the files as the kill left them: complete, and the version the point fixes
    at_kill = files(site)
    if maincf_at_kill == "old":
        assert at_kill["main.cf"] == old["main.cf"], "main.cf changed before the switch point"
        assert at_kill["fullchain.pem"] == old["fullchain.pem"]
    else:
        assert at_kill["main.cf"] != old["main.cf"], "main.cf not switched at " + point
        assert b"/k1/" in at_kill["main.cf"]
    if map_at_kill == "old":
        assert (at_kill["map"], at_kill["map.db"]) == (old["map"], old["map.db"])
        assert map_keys(site) == old_keys
    else:
        assert map_keys(site) == sorted(old_keys + ["example.net"])
    proc = run(["postconf", "-c", site.pf.config_dir, "-n"], check=False)
    assert proc.returncode == 0 and "warning" not in proc.stderr, proc.stderr

    # restart without the fault: the job accepted before the kill is resumed and applied
    disarm(site)
    site.d.start()
    site.d.mark_fd_baseline()
    jobs = settle(site)
    new_jobs = [j for j in jobs if j["id"] > jobs_before]
    assert len(new_jobs) == 1, new_jobs
    assert new_jobs[0]["status"] == "applied", new_jobs[0]
    site.assert_in_sync()
    assert leftover_problems(site) == []
    after = files(site)
    if what == "settings":
        assert site.settings()["certificate"] == "k1"
        assert b"/k1/" in after["main.cf"]
        if maincf_at_kill == "new":
            assert after["main.cf"] == at_kill["main.cf"], "the restart rendered another main.cf"
        site.wait_served(site.fingerprints["k1"])
        assert map_keys(site) == old_keys
    else:
        assert after["main.cf"] == old["main.cf"]
        assert map_keys(site) == sorted(old_keys + ["example.net"])
        r = site.d.get(POLICY + "example.net")
        assert r.status == 200 and r.body["level"] == "verify", r
        site.wait_served(site.fingerprints["k0"])


@pytest.mark.expect_errors(r"watchdog: not pinging systemd: the worker has shown no progress")
def test_stuck_worker_stops_the_watchdog_pings(make_site):
    """A worker stalled (5 s at after_stage) past the watchdog limit (WATCHDOG_USEC 1 s; the
    daemon's limit is max(WatchdogSec, 2 s)) silences WATCHDOG=1; the pings come back once it
    moves again, and the write completes."""
    site = make_site(start=False)
    if not fault_build(site.d.binary):
        pytest.skip(f"{site.d.binary} has no fault points")
    site.fault_file = os.path.join(site.d.workdir, "fault")
    site.d.extra_env.update({"SMTPTLSD_FAULT_FILE": site.fault_file, "WATCHDOG_USEC": "1000000"})
    site.d.start()
    setup_tokens(site.d)
    site.add_cert("k0")
    notify = site.d.notify

    def ping_times(since):
        return [t for t, m in notify.timed_messages() if t >= since and m.get("WATCHDOG") == "1"]

    t0 = time.monotonic()
    time.sleep(2)
    assert len(ping_times(t0)) >= 3, "no regular pings before the stall"

    arm(site, "after_stage stall 5000")
    result = {}

    def write():
        result["r"] = site.d.http("PUT", "/api/v1/settings", {"mode": "may", "certificate": "k0"},
                                  timeout=30)

    t = threading.Thread(target=write)
    t.start()
    site.d.wait_log(r"fault injection: stalling 5000 ms at after_stage", timeout=10)
    # the stall began at or before this moment (the worker may reach after_stage late on a
    # loaded machine: the thread's start is no bound)
    stall_seen = time.monotonic()
    disarm(site)  # read once per pass: the stall in progress goes on
    site.d.wait_log(r"fault injection: after_stage resumes", timeout=15)
    stall_end = time.monotonic()
    t.join(30)
    assert result["r"].status == 200, result["r"]

    # no ping from (stall start + limit + one tick) to the end of the stall
    silent_from = stall_seen + 2.0 + 0.6
    assert stall_end - 0.1 - silent_from > 1.0, "the silent window is too short to judge"
    during = [p for p in ping_times(silent_from) if p < stall_end - 0.1]
    assert not during, f"{len(during)} WATCHDOG=1 while the worker was stuck"
    assert site.d.wait_log(r"watchdog: not pinging systemd: the worker has shown no progress")
    wait_until(lambda: len(ping_times(stall_end)) >= 2, 5, "the pings to resume")
    site.assert_in_sync()


def test_a_write_caught_by_the_stop_gets_503_and_runs_at_the_next_start(fsite):
    """SIGTERM while an HTTP thread holds a recorded write it has not handed over yet (stalled at
    submit_before_wait): the stop finishes the worker and the waiting list first, and the write
    still arrives after them. It gets 503 (recorded, runs at the next start), the daemon exits 0
    (it crashed on the freed waiting list), and the next start applies it."""
    site = fsite
    arm(site, "submit_before_wait stall 3000")
    replies = []
    t = threading.Thread(target=lambda: replies.append(
        site.d.http("PUT", POLICY + "caught.example", {"level": "encrypt"}, timeout=30)))
    t.start()
    site.d.wait_log(r"fault injection: stalling 3000 ms at submit_before_wait", timeout=15)
    disarm(site)
    assert site.d.stop(timeout=30) == 0, site.d.log_tail()
    t.join(30)
    assert replies, "the write got no reply"
    r = replies[0]
    assert r.status == 503 and r.body["code"] == "service_unavailable", r
    assert "recorded and runs at the next start" in r.body["detail"], r
    assert r.headers.get("Retry-After") == "2", r.headers
    assert site.sql("SELECT status FROM jobs WHERE target = 'caught.example'") == "queued"
    site.d.start()
    wait_until(lambda: site.sql("SELECT status FROM jobs WHERE target = 'caught.example'")
               == "applied", timeout=30, what="the caught write applied at the next start")
    assert "caught.example\tencrypt" in read(site.map_path).decode()
