# System tests of issue 10 (security findings), the process side: what the daemon's children
# inherit, how long a stop may take, what /api/v1/status says while jobs wait, what a failed job
# and SIGHUP leave in the log.
#  8. postfix, postconf and postmap start clean: no SMTPTLSD_* (a database URL with a password),
#     no NOTIFY_SOCKET, no blocked or ignored signals, no descriptor but 0-2, a process group of
#     their own; the daemon's own descriptors are all close-on-exec; a `postconf -h` value is
#     stdout alone (a warning on stderr does not end up in it).
# 13. SIGTERM while `postfix reload` hangs: the daemon exits within shutdown_timeout (plus a
#     margin), the hanging command and what it started are killed, the files are the committed
#     ones, the job is neither applied nor failed, and the next start applies it.
# 15. Jobs left queued by a previous run: from READY on, /status is never in_sync and shows the
#     backlog (desired_generation > applied_generation, queued_jobs) until they are applied.
# 16. A failed job: exactly one warning line naming it. SIGHUP: the documented line, nothing else.
# The wrappers below are the TEST's shell scripts standing in for Postfix's commands; the daemon
# itself runs no shell. Contract: docs/operations.md ("Signals", "The service", "Monitoring"),
# docs/api.md (status), api/openapi.yaml (Status).
import json
import os
import re
import signal
import socket
import time

import pytest

from tests.harness.util import REPO_ROOT, wait_until
from tests.system.test_faults import FaultSite, hold_reload_wrapper, write_script
from tests.system.test_settings import fail_reload_wrapper

PASSWORD = "s3cret-in-the-url"
STDERR_WARNING = "postconf: warning: /etc/postfix/main.cf: unused parameter: smtptlsd_test=1"
GLIBC_INTERNAL_SIGNALS = 3 << 31  # 32, 33: glibc's posix_spawn leaves them ignored (spawn.c)


@pytest.fixture
def make_site(make_daemon, make_postfix, pg, certs):
    """make_site(config=None, env=None, start=True): a daemon managing a Postfix of its own."""
    def make(config=None, env=None, start=True):
        pf = make_postfix()
        cfg = {"postfix_config_directory": pf.config_dir, **pf.argv_prefixes,
               "smtp_probe_address": f"127.0.0.1:{pf.port}"}
        cfg.update(config or {})
        return FaultSite(make_daemon(cfg, env=env, start=start), pf, pg, certs)
    return make


def recording_wrapper(directory, tool, record):
    """A <tool>_command that appends what it was given to RECORD (argv, environment, descriptors,
    signal state, process group), then execs the real tool. postconf -h also prints a warning on
    stderr, as postconf does about a main.cf it does not like."""
    warn = (f"case \" $* \" in *\" -h \"*) echo '{STDERR_WARNING}' >&2 ;; esac\n"
            if tool == "postconf" else "")
    return write_script(os.path.join(directory, f"{tool}-recorder"),
                        "#!/bin/sh\n"
                        "{\n"
                        f"  echo \"=== {tool} $*\"\n"
                        "  echo \"pid $$\"\n"
                        "  echo '--- env'; env\n"
                        "  echo '--- fds'; ls /proc/self/fd\n"
                        "  echo '--- status'; cat /proc/self/status\n"
                        "  echo '--- stat'; cat /proc/self/stat; echo\n"
                        f"}} >> '{record}' 2>&1\n"
                        + warn +
                        f"exec {tool} \"$@\"\n")


def parse_record(path):
    """[(tool, args, {section: text}, wrapper pid)] per run."""
    runs = []
    with open(path) as f:
        text = f.read()
    for block in text.split("=== ")[1:]:
        head, rest = block.split("\n", 1)
        tool, _, args = head.partition(" ")
        pid = int(re.match(r"pid (\d+)\n", rest).group(1))
        sections = dict(re.findall(r"--- (\w+)\n(.*?)(?=\n--- |\Z)", rest, re.S))
        runs.append((tool, args, sections, pid))
    return runs


def pgrp_of(stat_text):
    return int(stat_text[stat_text.rindex(")") + 2:].split()[2])


# == 8. what the children inherit ==================================================================
def test_tools_start_clean_and_a_postconf_value_is_stdout_only(make_site, tmp_path):
    record = str(tmp_path / "record")
    wrappers = {f"{t}_command": recording_wrapper(str(tmp_path), t, record)
                for t in ("postfix", "postconf", "postmap")}
    site = make_site(config=wrappers, start=False)
    url = site.d.config["database_url"].replace("postgres@", f"postgres:{PASSWORD}@", 1)
    site.d.extra_env["SMTPTLSD_DATABASE_URL"] = url  # the environment wins over the file
    site.d.start()
    site.d.token = site.d.add_token("admin", "admin")
    site.d.mark_fd_baseline()

    site.put_ok({"mode": "none"})  # takes main.cf over: postconf -n, postfix status, reload
    r = site.put_policy("dane.example", {"level": "dane-only"})  # postmap, postmap -s, postconf -x -h
    assert r.status == 201, r
    warnings = {w["code"]: w["detail"] for w in r.body.get("warnings", [])}
    # smtp_dns_support_level is `disabled` in the test Postfix: the warning quotes the value,
    # which is postconf's stdout alone, not its stderr warning
    assert "dane_without_dnssec" in warnings, r.body
    assert "(they are 'disabled' and" in warnings["dane_without_dnssec"], warnings

    runs = parse_record(record)
    seen = {(tool, re.sub(r"-c \S+ ?", "", args).split(" ")[0]) for tool, args, _, _ in runs}
    for want in [("postfix", "status"), ("postfix", "reload"), ("postconf", "-n"),
                 ("postconf", "-x"), ("postmap", "-s")]:
        assert want in seen, f"{want} not run: {sorted(seen)}"
    daemon_pgrp = os.getpgid(site.d.pid)
    for tool, args, sec, pid in runs:
        what = f"{tool} {args}"
        env = dict(line.split("=", 1) for line in sec["env"].splitlines() if "=" in line)
        assert PASSWORD not in sec["env"], f"{what}: the database password in its environment"
        assert not [k for k in env if k.startswith("SMTPTLSD_")], f"{what}: {sorted(env)}"
        assert "NOTIFY_SOCKET" not in env, f"{what}: {sorted(env)}"
        assert env.get("LANG") == "C" and env.get("LC_ALL") == "C", f"{what}: {env}"
        assert env.get("PATH"), f"{what}: {env}"
        status = dict(line.split(":\t", 1) for line in sec["status"].splitlines() if ":\t" in line)
        assert int(status["SigBlk"], 16) == 0, f"{what}: blocked signals {status['SigBlk']}"
        assert int(status["SigIgn"], 16) & ~GLIBC_INTERNAL_SIGNALS == 0, \
            f"{what}: ignored signals {status['SigIgn']}"
        # ls's own directory is 3
        assert sec["fds"].split() == ["0", "1", "2", "3"], f"{what}: descriptors {sec['fds']}"
        assert pgrp_of(sec["stat"]) == pid != daemon_pgrp, \
            f"{what}: process group {pgrp_of(sec['stat'])}, its pid {pid}, ours {daemon_pgrp}"

    # every descriptor of the daemon is close-on-exec (libpq's sockets, MHD's, inotify, signalfd,
    # the spawn eventfd, files): a child started any other way would not inherit them either.
    # A connection held half-sent gives MHD an accepted socket to show.
    held = socket.create_connection((site.d.host, site.d.port), timeout=5)
    held.sendall(b"GET /healthz HTTP/1.1\r\n")
    wait_until(lambda: len(site.d.fds_except_db()) > len(site.d.fd_baseline), timeout=5,
               what="the held connection to be accepted")
    pid = site.d.pid
    for fd in os.listdir(f"/proc/{pid}/fd"):
        if int(fd) <= 2:
            continue
        try:
            with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                flags = int(re.search(r"^flags:\s+(\d+)", f.read(), re.M).group(1), 8)
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except FileNotFoundError:
            continue  # closed meanwhile
        assert flags & os.O_CLOEXEC, f"daemon fd {fd} ({target}) is not close-on-exec"
    held.close()


# == 13. SIGTERM while a reload hangs ==============================================================
def hanging_reload_wrapper(directory):
    """A postfix_command that runs postfix; while HOLD exists, `reload` writes its pid and its
    child's to PIDS and hangs (sleep 60 in a child, as a tool waiting on something would).
    Returns (wrapper, hold, pids)."""
    hold = os.path.join(directory, "hold-reload")
    pids = os.path.join(directory, "reload-pids")
    path = write_script(os.path.join(directory, "postfix-hang-wrapper"),
                        "#!/bin/sh\n"
                        "for a in \"$@\"; do\n"
                        f"  if [ \"$a\" = reload ] && [ -e '{hold}' ]; then\n"
                        "    sleep 60 &\n"
                        f"    echo $$ $! > '{pids}.tmp'; mv '{pids}.tmp' '{pids}'\n"
                        "    wait\n"
                        "  fi\n"
                        "done\n"
                        "exec postfix \"$@\"\n")
    return path, hold, pids


def gone(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def job_status(site, jid):
    return site.sql(f"SELECT status FROM jobs WHERE id = {int(jid)}")


SHUTDOWN = 3.0
STOP_BOUND = SHUTDOWN + 2.0


def test_sigterm_during_a_hanging_reload_exits_within_shutdown_timeout(make_site, tmp_path):
    wrapper, hold, pids = hanging_reload_wrapper(str(tmp_path))
    site = make_site(config={"postfix_command": wrapper, "shutdown_timeout": f"{SHUTDOWN:g}s",
                             "command_timeout": "30s"})
    before = site.live_files()
    generation = site.generation()

    open(hold, "w").close()
    r = site.write("PUT", {"mode": "none"}, query="?wait=0")
    assert r.status == 202, r
    jid = r.headers["Job-Id"]
    wait_until(lambda: os.path.exists(pids), timeout=30, what="the reload to start")
    shell, sleeper = (int(p) for p in open(pids).read().split())

    t0 = time.monotonic()
    rc = site.d.stop(timeout=30)
    took = time.monotonic() - t0
    assert rc == 0
    assert took < STOP_BOUND, f"the stop took {took:.1f} s (shutdown_timeout {SHUTDOWN} s)"
    # the hanging command and what it started are gone
    wait_until(lambda: gone(shell) and gone(sleeper), timeout=3, what="the reload's processes to die")
    # nothing torn, nothing committed, nothing acknowledged
    # (a policy map that did not exist before may stay: the restored main.cf does not name it,
    # as after any failed first write)
    assert site.main_cf() == before["main.cf"], "main.cf is not the committed one"
    assert before["map"] is None or site.live_files() == before
    assert site.staged_leftovers() == [], site.staged_leftovers()
    assert site.generation() == generation
    assert job_status(site, jid) in ("queued", "running")
    assert not [l for l in site.d.log_lines() if re.match(rf"<[0-4]>.*job {jid} .*failed", l)]
    assert any("killing its running command" in l for l in site.d.log_lines())

    # the next start (reloads work again) applies the job
    os.unlink(hold)
    site.d.start()
    site.d.mark_fd_baseline()
    wait_until(lambda: job_status(site, jid) == "applied", timeout=30, what=f"job {jid} applied")
    wait_until(lambda: site.status()["state"] == "in_sync", timeout=10, what="in_sync")
    site.assert_in_sync()
    assert site.settings()["managed"] is True


# == 15. the backlog is visible from READY on ======================================================
def test_status_shows_queued_jobs_from_ready_until_applied(make_site, tmp_path):
    wrapper, hold, _ = hold_reload_wrapper(str(tmp_path))
    site = make_site(config={"postfix_command": wrapper, "node_name": "mx-test"}, start=False)
    d = site.d
    assert d.run_cli(["migrate"]).returncode == 0
    d.token = d.add_token("admin", "admin")
    bodies = [("settings.put", {"mode": "none"}), ("settings.patch", {"loglevel": 1}),
              ("settings.patch", {"loglevel": 2})]
    for action, body in bodies:
        site.sql("INSERT INTO jobs (node, status, actor, action, target, request) VALUES "
                 f"('mx-test', 'queued', 'test', '{action}', 'settings', "
                 f"'{json.dumps({'body': body})}'::jsonb)")
    ids = site.sql("SELECT string_agg(id::text, ' ' ORDER BY id) FROM jobs").split()
    open(hold, "w").close()  # the jobs' reload waits until the test lets it go

    d.start(wait_ready=True)
    d.mark_fd_baseline()
    seen = []
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:  # from READY on, while the reload is held
        st = site.status()
        seen.append((st["state"], st["desired_generation"], st["applied_generation"],
                     st.get("queued_jobs")))
    assert all(s[0] == "applying" for s in seen), f"status while jobs were queued: {seen[:5]}"
    assert all(s[1] > s[2] for s in seen), f"desired not ahead of applied: {seen[:5]}"
    assert all(s[3] == len(ids) for s in seen), f"queued_jobs: {seen[:5]}"
    metrics = d.get("/metrics").body
    gauges = {m.group(1): int(m.group(2)) for m in
              re.finditer(r"^smtptlsd_(desired|applied)_generation (\d+)$", metrics, re.M)}
    assert gauges["desired"] > gauges["applied"], gauges

    os.unlink(hold)
    wait_until(lambda: site.sql(f"SELECT count(*) FROM jobs WHERE status = 'applied'") == str(len(ids)),
               timeout=30, what="the jobs applied")
    wait_until(lambda: site.status()["state"] == "in_sync", timeout=10, what="in_sync")
    st = site.status()
    assert st["queued_jobs"] == 0 and st["desired_generation"] == st["applied_generation"], st
    site.assert_in_sync()
    assert site.settings()["loglevel"] == 2


# == 16. a failed job in the log; SIGHUP ============================================================
@pytest.mark.expect_errors(r"(?i)reload.*fail")
def test_a_failed_job_logs_one_warning_naming_it(make_site, tmp_path):
    wrapper, flag = fail_reload_wrapper(str(tmp_path))
    site = make_site(config={"postfix_command": wrapper})
    open(flag, "w").close()
    r = site.put({"mode": "none"})
    assert r.status == 422, r
    jid = r.headers["Job-Id"]
    lines = [l for l in site.d.log_lines() if re.search(rf"\bjob {jid}\b", l)]
    warnings = [l for l in lines if re.match(r"<[0-4]>", l)]
    assert len(warnings) == 1, f"warning lines about job {jid}: {lines}"
    assert warnings[0].startswith("<4>") and "postfix_rejected" in warnings[0], warnings
    assert "simulated reload failure" not in warnings[0], "the tool's words belong in the job"


def documented_sighup_line():
    """The log line docs/operations.md quotes for SIGHUP (its "Signals" section)."""
    with open(os.path.join(REPO_ROOT, "docs", "operations.md")) as f:
        text = f.read()
    m = re.search(r"^## Signals\n(.*?)(?=^## )", text, re.M | re.S)
    assert m, "docs/operations.md has no Signals section"
    line = re.search(r"`(SIGHUP ignored:[^`]*)`", m.group(1))
    assert line, "the Signals section quotes no SIGHUP log line"
    return m.group(1), line.group(1)


def test_sighup_does_what_the_documentation_says(make_site):
    section, line = documented_sighup_line()
    assert "ExecReload" in section
    with open(os.path.join(REPO_ROOT, "systemd", "smtptlsd.service")) as f:
        assert not re.search(r"^ExecReload=", f.read(), re.M), "the unit reloads: document what"
    site = make_site()
    st = site.status()
    os.kill(site.d.pid, signal.SIGHUP)
    site.d.wait_log(re.escape(line), timeout=10)
    assert sum(line in l for l in site.d.log_lines()) == 1
    assert site.d.alive() and site.d.get("/readyz").status == 200
    after = site.status()
    assert (after["state"], after["applied_generation"]) == (st["state"], st["applied_generation"])
