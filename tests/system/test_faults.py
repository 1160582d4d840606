# System tests of faults (issue 6), each against a real Postfix and PostgreSQL:
#  1. PostgreSQL stopped for 3 s and started again while client threads write (policy PUTs and
#     settings PATCHes with ?wait) and read; the outage begins while the worker is inside an apply.
#  2. postmap failing; 3. `postfix reload` failing (beyond test_settings.py's
#     test_failed_reload_restores_main_cf_and_the_old_certificate_stays); the tools' words in a
#     failed job.
#  4. The Postfix configuration directory (a tmpfs of its own) full before a write, and filling up
#     during a failed reload.
# In every case: only documented replies (503 service_unavailable with Retry-After while the
# database is away; never a 500 or a hang there), no acknowledged write lost, every job ends applied
# or failed with its reason, the live main.cf and policy map byte for byte the last good ones
# after a failed write, no staged file left behind, /api/v1/status not in_sync while the last
# apply failed, and the next write converges. The defects these tests found (jobs of a batch that
# lost the database left queued and applied at the next start; a failed job without the tools'
# output; staged files left on a full disk; a restore that needed free space) are checked last in
# their tests, with a message that names what came back.
# Contract: docs/api.md ("Jobs", "State", "Errors you will meet"), docs/operations.md ("What the
# daemon writes where", Troubleshooting), docs/architecture.md ("Why crashes leave old-or-new
# files").
import errno
import http.client
import json
import os
import re
import shutil
import subprocess
import threading
import time

import pytest

from tests.harness import contract
from tests.harness.blackhole import Blackhole
from tests.harness.postfix import PostfixSandbox
from tests.harness.util import run, wait_until
from tests.system.test_foundation import DB_ERRORS, assert_problem
from tests.system.test_policies import MAP_NAME, expected_value, parse_map_source, parse_value, qd
from tests.system.test_settings import HOST, Site, fail_reload_wrapper, smtp_observe, tree

FINAL = ("applied", "failed")
# Files the worker stages under <postfix_config_directory>/.smtptlsd/ and must not leave behind
# (main.cf.lkg and tls_policy.lkg(.db) are the last-known-good copies: they stay).
STAGED = re.compile(r"(^|/)(check(/|$)|tls_policy\.new|[^/]*\.(tmp|restore)$|[^/]*\.new$)")
POSTMAP_FAILURE = "simulated postmap failure"
RELOAD_FAILURE = "simulated reload failure"  # fail_reload_wrapper's message


# -- one daemon managing one Postfix, on a database that may go away -------------------------------
class FaultSite(Site):
    """test_settings.Site (settings, certificates, status, main.cf) plus the policy map. Every SQL
    query runs in a new psql, so the site survives a restart of its PostgreSQL."""

    def __init__(self, d, pf, pg, certs):
        super().__init__(d, pf, pg, certs)
        self.map_path = os.path.join(pf.config_dir, MAP_NAME)
        self.index_path = self.map_path + ".db"

    # policies
    def put_policy(self, dest, body, query="", timeout=60):
        return self.d.http("PUT", f"/api/v1/tls-policies/{qd(dest)}{query}", body, timeout=timeout)

    def put_policy_ok(self, dest, body, query=""):
        r = self.put_policy(dest, body, query)
        assert r.status in (200, 201), f"PUT {dest} {body}: {r}"
        return r

    def bulk(self, items, query="", timeout=60):
        return self.d.http("PUT", f"/api/v1/tls-policies{query}", {"items": items}, timeout=timeout)

    def job(self, jid):
        r = self.d.get(f"/api/v1/jobs/{jid}")
        assert r.status == 200, r
        return r.body

    def policy_rows(self):
        """{destination: (level, attrs)} of the enabled rows in the database."""
        text = self.sql("SELECT coalesce(json_agg(p)::text, '[]') FROM tls_policies p")
        return {p["destination"]: expected_value(p) for p in json.loads(text) if p["enabled"]}

    # files
    def read(self, path):
        try:
            with open(path, "rb") as f:
                return f.read()
        except FileNotFoundError:
            return None

    def live_files(self):
        """The bytes of what Postfix reads: main.cf, the map source, its index."""
        return {"main.cf": self.main_cf(), "map": self.read(self.map_path),
                "map.db": self.read(self.index_path)}

    def map_entries(self):
        """The live map source -> {key: (level, attrs)} (None when there is none)."""
        text = self.read(self.map_path)
        if text is None:
            return None
        entries, _ = parse_map_source(text.decode())
        return {k: parse_value(v) for k, v in entries}

    def map_query(self, keys):
        """`postmap -q -` against the LIVE index: {key: (level, attrs)} of the keys found."""
        proc = run(["postmap", "-c", self.pf.config_dir, "-q", "-", f"hash:{self.map_path}"],
                   check=False, input="".join(k + "\n" for k in keys))
        assert proc.returncode in (0, 1) and not proc.stderr.strip(), proc
        found = {}
        for line in proc.stdout.splitlines():
            key, _, value = line.partition("\t")
            found[key] = parse_value(value)
        return found

    def staged_leftovers(self):
        return sorted(p for p in tree(self.state_dir)
                      if STAGED.search(os.path.relpath(p, self.state_dir)))

    def assert_map_is_the_rows(self):
        """The live map (text and index) holds exactly the enabled rows of the database."""
        rows = self.policy_rows()
        assert self.map_entries() == rows, \
            f"the map source differs from the rows:\n{self.map_entries()}\n{rows}"
        got = self.map_query(list(rows) + ["absent.example"])
        assert got == rows, f"postmap -q on the live index differs from the rows: {got} vs {rows}"
        return rows

    def assert_converged(self):
        self.assert_in_sync()
        self.assert_map_is_the_rows()
        assert self.staged_leftovers() == [], self.staged_leftovers()


@pytest.fixture
def make_fault_site(make_daemon, make_postfix, pg, certs):
    """make_fault_site(config=None, db=None, pf=None): a daemon on db (default: the session's
    PostgreSQL) managing pf (default: a new running Postfix of the test's own)."""
    def make(config=None, db=None, pf=None):
        pf = pf or make_postfix()
        cfg = {"postfix_config_directory": pf.config_dir, **pf.argv_prefixes,
               "smtp_probe_address": f"127.0.0.1:{pf.port}"}
        cfg.update(config or {})
        return FaultSite(make_daemon(cfg, db=db), pf, db or pg, certs)
    return make


def write_script(path, text):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o755)
    return path


def postmap_wrapper(directory):
    """A postmap_command that runs postmap, except that while FLAG exists a map BUILD (not `-s`,
    not `-q`) prints an error naming the map and exits 1. Returns (wrapper, flag)."""
    flag = os.path.join(directory, "fail-postmap")
    path = write_script(os.path.join(directory, "postmap-wrapper"),
                        "#!/bin/sh\n"
                        f"if [ -e '{flag}' ]; then\n"
                        "  build=yes\n"
                        "  for a in \"$@\"; do\n"
                        "    case \"$a\" in -s|-q) build=no ;; esac\n"
                        "  done\n"
                        "  if [ $build = yes ]; then\n"
                        "    eval last=\\${$#}\n"
                        f"    echo \"postmap: fatal: $last: {POSTMAP_FAILURE}\" >&2\n"
                        "    exit 1\n"
                        "  fi\n"
                        "fi\n"
                        "exec postmap \"$@\"\n")
    return path, flag


def hold_reload_wrapper(directory):
    """A postfix_command that runs postfix; while HOLD exists, `reload` first creates STARTED and
    then waits (at most 20 s) until HOLD is removed. Returns (wrapper, hold, started)."""
    hold = os.path.join(directory, "hold-reload")
    started = os.path.join(directory, "reload-started")
    path = write_script(os.path.join(directory, "postfix-hold-wrapper"),
                        "#!/bin/sh\n"
                        "for a in \"$@\"; do\n"
                        "  if [ \"$a\" = reload ] && [ -e '" + hold + "' ]; then\n"
                        f"    : > '{started}'\n"
                        "    i=0\n"
                        f"    while [ -e '{hold}' ] && [ $i -lt 400 ]; do\n"
                        "      sleep 0.05; i=$((i+1))\n"
                        "    done\n"
                        "  fi\n"
                        "done\n"
                        "exec postfix \"$@\"\n")
    return path, hold, started


def assert_not_in_sync_after_failure(site, job_id):
    """/api/v1/status while the last apply failed: not in_sync (the code says `degraded`; the docs
    describe this case as `failed`: either is accepted), its last_job is the failed job, and the
    generations did not move."""
    st = site.status()
    assert st["state"] in ("degraded", "failed"), f"status after a failed apply: {st}"
    assert st["last_job"] and st["last_job"]["id"] == int(job_id), st
    assert st["last_job"]["status"] == "failed", st
    assert st["applied_generation"] == st["desired_generation"] == site.generation(), st
    return st


# == 1. PostgreSQL stopped and started again under load ============================================
READ_PATHS = ("/api/v1/settings", "/api/v1/tls-policies?limit=5", "/readyz", "/api/v1/status",
              "/api/v1/jobs?limit=5", "/readyz")
WRITE_WAIT = 8        # ?wait= of the load's writes
READ_BOUND = 6.0      # seconds a read may take with the database gone (connect timeout 2 s)
WRITE_BOUND = WRITE_WAIT + 4.0
OUTAGE = 3.0          # seconds PostgreSQL stays down
RECOVERY_BOUND = 10.0  # seconds after PostgreSQL is back within which reads and writes work again
SETTLE = 2.0          # seconds after the load within which every job must be applied or failed


def timed_request(d, method, path, body=None, token=True):
    """One request on a new connection: a record {method, path, t0, t1, status, code, retry_after,
    job_id, body, exc} (exc: a connection error or timeout, which the test counts as a failure)."""
    rec = {"method": method, "path": path, "t0": time.monotonic(), "status": None, "code": None,
           "retry_after": None, "job_id": None, "body": None, "exc": None}
    headers = {"Authorization": f"Bearer {d.token}"} if token else {}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    conn = http.client.HTTPConnection(d.host, d.port, timeout=30)
    try:
        conn.request(method, path, body=data, headers=headers)
        resp = conn.getresponse()
        raw = resp.read()
        contract.check(method, path, resp.status, resp.headers, raw)
        rec["status"] = resp.status
        rec["retry_after"] = resp.getheader("Retry-After")
        rec["job_id"] = resp.getheader("Job-Id")
        rec["ctype"] = (resp.getheader("Content-Type") or "").split(";")[0]
        try:
            rec["body"] = json.loads(raw) if raw else None
        except ValueError:
            rec["body"] = raw[:300].decode(errors="replace")
        if isinstance(rec["body"], dict):
            rec["code"] = rec["body"].get("code")
    except (OSError, http.client.HTTPException) as e:
        rec["exc"] = repr(e)
    finally:
        conn.close()
        rec["t1"] = time.monotonic()
    return rec


class Load:
    """Client threads: `writers` policy writers (each PUTs destinations of its own, once each),
    one settings writer (PATCH loglevel, so every batch of it rewrites main.cf and reloads) and
    one reader. Every request is recorded."""

    def __init__(self, site, writers=2):
        self.site, self.records, self.lock = site, [], threading.Lock()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.policy_writer, args=(n,), daemon=True)
                        for n in range(writers)]
        self.threads += [threading.Thread(target=self.settings_writer, daemon=True),
                         threading.Thread(target=self.reader, daemon=True)]

    def record(self, rec, **kw):
        rec.update(kw)
        with self.lock:
            self.records.append(rec)
        if rec["status"] == 503 or rec["exc"]:
            time.sleep(0.1)  # a client backing off a little (Retry-After says 1-2 s)

    def policy_writer(self, n):
        i = 0
        while not self.stop.is_set():
            dest, level = f"w{n}-{i:04d}.load.example", ("may", "encrypt")[i % 2]
            rec = timed_request(self.site.d, "PUT",
                                f"/api/v1/tls-policies/{qd(dest)}?wait={WRITE_WAIT}",
                                {"level": level})
            self.record(rec, kind="policy", dest=dest, level=level)
            i += 1
            time.sleep(0.02)

    def settings_writer(self):
        i = 0
        while not self.stop.is_set():
            i += 1
            rec = timed_request(self.site.d, "PATCH", f"/api/v1/settings?wait={WRITE_WAIT}",
                                {"loglevel": i % 5})
            self.record(rec, kind="settings", loglevel=i % 5)
            time.sleep(0.05)

    def reader(self):
        i = 0
        while not self.stop.is_set():
            path = READ_PATHS[i % len(READ_PATHS)]
            rec = timed_request(self.site.d, "GET", path, token=path != "/readyz")
            self.record(rec, kind="read")
            i += 1
            time.sleep(0.02)

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def finish(self, timeout=WRITE_BOUND + 20):
        self.stop.set()
        deadline = time.monotonic() + timeout
        for t in self.threads:
            t.join(max(0.1, deadline - time.monotonic()))
        alive = [t.name for t in self.threads if t.is_alive()]
        assert not alive, f"client threads still blocked {timeout}s after the load stopped: {alive}"
        return sorted(self.records, key=lambda r: r["t0"])


def describe(rec, origin):
    return (f"{rec['method']} {rec['path']} at +{rec['t0'] - origin:.2f}s "
            f"({rec['t1'] - rec['t0']:.2f}s): {rec['status']} {rec['code']} "
            f"Job-Id {rec['job_id']} {rec['exc'] or ''} {str(rec['body'])[:200]}")


def jobs_table(site):
    text = site.sql("SELECT coalesce(json_agg(json_build_object('id', id, 'status', status, "
                    "'action', action, 'target', target, 'error', error, 'after', after, "
                    "'generation', generation) ORDER BY id)::text, '[]') FROM jobs")
    return {j["id"]: j for j in json.loads(text)}


@pytest.mark.expect_errors(DB_ERRORS)
def test_database_outage_under_load(private_pg, make_fault_site, tmp_path):
    private_pg.start()
    wrapper, hold, started = hold_reload_wrapper(str(tmp_path))
    site = make_fault_site(db=private_pg, config={"postfix_command": wrapper})
    fp = site.add_cert("a")
    site.put_ok({"mode": "may", "certificate": "a"})
    site.put_policy_ok("base.example", {"level": "may"})
    site.wait_served(fp)

    load = Load(site, writers=4).start()
    origin = time.monotonic()
    time.sleep(1.5)
    # The outage starts while the worker is inside an apply: a settings batch held in its reload.
    open(hold, "w").close()
    wait_until(lambda: os.path.exists(started), 15, "a settings write to reach its reload")
    private_pg.stop()
    t_down = time.monotonic()
    os.unlink(hold)
    # Writes of our own while it is down (the load's writers may all be waiting for jobs queued
    # before the outage): each answered 503 at once, without a job.
    for kind, method, path, body in (
            ("read", "GET", "/readyz", None),
            ("policy", "PUT", f"/api/v1/tls-policies/outage.example?wait={WRITE_WAIT}",
             {"level": "encrypt"}),
            ("settings", "PATCH", f"/api/v1/settings?wait={WRITE_WAIT}", {"loglevel": 4})):
        rec = timed_request(site.d, method, path, body, token=path != "/readyz")
        assert rec["status"] == 503 and rec["code"] == "service_unavailable" and \
            rec["job_id"] is None and rec["t1"] - rec["t0"] < READ_BOUND, describe(rec, origin)
        load.record(rec, kind=kind, dest="outage.example", level="encrypt", loglevel=4)
    time.sleep(max(0.0, t_down + OUTAGE - time.monotonic()))
    t_up0 = time.monotonic()
    private_pg.start()
    t_up = time.monotonic()
    wait_until(lambda: site.d.get("/readyz", token=None, timeout=READ_BOUND).status == 200,
               RECOVERY_BOUND, "/readyz to say ready after PostgreSQL came back")
    t_ready = time.monotonic()

    def write_ok_since_up():
        with load.lock:
            return [r for r in load.records if r["kind"] != "read" and r["t0"] >= t_up
                    and r["status"] in (200, 201)]
    wait_until(write_ok_since_up, RECOVERY_BOUND, "a write to succeed after PostgreSQL came back")
    t_write = min(r["t1"] for r in write_ok_since_up())
    time.sleep(1.5)
    records = load.finish()
    t_end = time.monotonic()

    # -- every reply: bounded, documented, never a 500 --------------------------------------------
    broken = [describe(r, origin) for r in records if r["exc"]]
    assert not broken, "requests that failed without an HTTP reply:\n" + "\n".join(broken)
    slow = [describe(r, origin) for r in records
            if r["t1"] - r["t0"] > (READ_BOUND if r["kind"] == "read" else WRITE_BOUND)]
    assert not slow, "requests over their time bound:\n" + "\n".join(slow)
    allowed = {"read": {200, 503}, "policy": {200, 201, 202, 503}, "settings": {200, 202, 503}}
    wrong = [describe(r, origin) for r in records if r["status"] not in allowed[r["kind"]]]
    assert not wrong, "unexpected statuses:\n" + "\n".join(wrong)
    for r in records:
        if r["status"] == 503:
            assert r["code"] == "service_unavailable", describe(r, origin)
            assert r["ctype"] == "application/problem+json", describe(r, origin)
            assert (r["retry_after"] or "").isdigit() and 0 < int(r["retry_after"]) <= 300, \
                describe(r, origin)
    during = [r for r in records if r["t0"] >= t_down and r["t1"] <= t_up0]
    # the read model and the token cache answer a hot read rendered less than a second before
    # the outage (REPLY_CACHE_TTL_USEC): nothing can change while the database is down
    kept = [r for r in during if r["kind"] == "read" and r["status"] == 200 and
            r["t0"] - t_down < 1.0]
    not_503 = [describe(r, origin) for r in during if r["status"] != 503 and r not in kept]
    assert not not_503, "answered otherwise than 503 while PostgreSQL was down:\n" + \
        "\n".join(not_503)
    kinds = {k: sum(1 for r in during if r["kind"] == k) for k in ("read", "policy", "settings")}
    assert kinds["read"] >= 3 and kinds["policy"] >= 1 and kinds["settings"] >= 1, \
        f"too few requests in the outage: {kinds}"
    assert any(r["path"] == "/readyz" for r in during), "no /readyz during the outage"
    assert t_ready - t_up < RECOVERY_BOUND and t_write - t_up < RECOVERY_BOUND

    # -- after recovery: every job final, every acknowledged write in the database and on disk --
    def pending():
        return [j for j in jobs_table(site).values() if j["status"] not in FINAL]
    try:
        wait_until(lambda: not pending(), SETTLE, "every job to reach applied or failed")
        stuck = []
    except TimeoutError:
        stuck = pending()
    jobs = jobs_table(site)
    rows = site.policy_rows()
    entries = site.map_entries()
    load_dests = sorted({r["dest"] for r in records if r["kind"] == "policy"})
    index = site.map_query(load_dests)
    want = {k: rows[k] for k in load_dests if k in rows}
    assert index == want, f"the live index and the rows differ for the load's destinations: " \
        f"index {index}, rows {want}"
    lost, contradicted, known = [], [], []
    for r in records:
        job = jobs.get(int(r["job_id"])) if r["job_id"] else None
        if r["kind"] == "settings":
            if r["status"] == 200 and not (job and job["status"] == "applied"):
                lost.append(f"{describe(r, origin)} -> job {job}")
            elif r["status"] in (202, 503) and job and job["status"] not in FINAL:
                known.append(f"{describe(r, origin)}: job {job['id']} is {job['status']!r}")
            continue
        if r["kind"] != "policy":
            continue
        in_db = rows.get(r["dest"]) == (r["level"], {})
        on_disk = (entries or {}).get(r["dest"]) == (r["level"], {}) and r["dest"] in index
        if r["status"] in (200, 201):
            if not (job and job["status"] == "applied" and in_db and on_disk):
                lost.append(f"{describe(r, origin)} -> job {job}, row {in_db}, map {on_disk}")
        elif r["status"] == 202:
            if job and job["status"] == "applied" and not (in_db and on_disk):
                lost.append(f"{describe(r, origin)} -> job applied, row {in_db}, map {on_disk}")
            elif job and job["status"] == "failed" and (in_db or not job["error"]):
                contradicted.append(f"{describe(r, origin)} -> failed job {job}, row {in_db}")
            elif not job or job["status"] not in FINAL:
                known.append(f"{describe(r, origin)}: accepted, job now {job}")
        elif r["status"] == 503:
            if in_db or on_disk:
                contradicted.append(f"{describe(r, origin)} but the write is in the "
                                    f"{'database' if in_db else 'map'}")
            elif job and job["status"] != "failed":
                known.append(f"{describe(r, origin)}: 503 'nothing changed', but job "
                             f"{job['id']} is {job['status']!r}")
    assert not lost, "acknowledged writes lost:\n" + "\n".join(lost)
    assert not contradicted, "replies the outcome contradicts:\n" + "\n".join(contradicted)
    for j in jobs.values():
        if j["status"] == "failed":
            assert j["error"] and j["error"].get("code") and j["error"].get("detail"), j
        if j["action"] == "policies.put" and j["status"] == "applied":
            assert j["target"] in rows and j["target"] in entries, f"applied job not on disk: {j}"
        if j["action"] == "policies.put" and j["status"] == "failed":
            assert j["target"] not in rows, f"failed job's row exists: {j}"
    last = max((j for j in jobs.values()
                if j["action"] == "settings.patch" and j["status"] == "applied"),
               key=lambda j: j["id"])
    assert site.settings()["loglevel"] == last["after"]["loglevel"], (site.settings(), last)
    site.assert_converged()
    assert smtp_observe(site.pf.port) == (True, fp)
    # ready (a pooled connection found dead since the outage may cost a retry: Retry-After)
    assert site.d.alive()
    wait_until(lambda: site.d.get("/readyz", token=None).status == 200, 5, "/readyz at the end")

    def count(recs):
        out = {}
        for r in recs:
            out[f"{r['kind']} {r['status']}"] = out.get(f"{r['kind']} {r['status']}", 0) + 1
        return out
    acked = sum(1 for r in records if r["kind"] != "read" and r["status"] in (200, 201))
    print(f"\nPostgreSQL down {t_up0 - t_down:.2f}s (+{t_up - t_up0:.2f}s to start); ready "
          f"{t_ready - t_up:.2f}s and first write {t_write - t_up:.2f}s after it was back; "
          f"{len(records)} requests in {t_end - origin:.1f}s {count(records)}; {acked} "
          f"acknowledged writes checked; {len(jobs)} jobs; during the outage {count(during)}; "
          f"slowest read {max(r['t1'] - r['t0'] for r in records if r['kind'] == 'read'):.2f}s, "
          f"slowest write {max(r['t1'] - r['t0'] for r in records if r['kind'] != 'read'):.2f}s")
    if stuck or known:
        # What the next start does with them: it runs every job still queued.
        site.d.stop()
        site.d.start()
        site.d.mark_fd_baseline()
        ids = [j["id"] for j in stuck]
        try:
            wait_until(lambda: all(jobs_table(site)[i]["status"] in FINAL for i in ids), 15,
                       "the resumed jobs to finish")
        except TimeoutError:
            pass
        again = jobs_table(site)
        rows = site.policy_rows()
        raise AssertionError(
            f"{len(stuck)} job(s) still queued/running {SETTLE}s after the load ended: "
            f"{[(j['id'], j['action'], j['target'], j['status']) for j in stuck]}; after a "
            f"daemon restart: {[(i, again[i]['status']) for i in ids]}, policy rows now present "
            f"{[j['target'] for j in stuck if j['target'] in rows]}, settings "
            f"{site.settings()['loglevel']}\n" + "\n".join(known))


# == 2. postmap failing ============================================================================
def test_postmap_failure_keeps_the_live_map_and_the_next_write_converges(make_fault_site, tmp_path):
    wrapper, flag = postmap_wrapper(str(tmp_path))
    site = make_fault_site(config={"postmap_command": wrapper})
    site.put_policy_ok("one.example", {"level": "may"})
    site.put_policy_ok(".two.example", {"level": "encrypt", "protocols": ">=TLSv1.2"})
    site.assert_converged()
    good = site.live_files()
    rows_before = site.policy_rows()
    gen = site.generation()
    assert good["map"] and good["map.db"], "no live map after two policy writes"

    open(flag, "w").close()
    r = site.put_policy("three.example", {"level": "encrypt"})
    body = assert_problem(r, 422, "postfix_rejected")
    assert POSTMAP_FAILURE in body["detail"], body
    job = site.job(r.headers["Job-Id"])
    assert job["status"] == "failed" and job["error"]["code"] == "postfix_rejected", job
    assert job["finished_at"] and job["generation"] is None, job
    assert POSTMAP_FAILURE in job["output"] + job["error"]["detail"], job
    assert site.live_files() == good, "the live main.cf or policy map changed after postmap failed"
    assert site.policy_rows() == rows_before and site.generation() == gen, \
        "the refused policy reached the database"
    assert site.staged_leftovers() == [], f"staged files left: {site.staged_leftovers()}"
    assert_not_in_sync_after_failure(site, r.headers["Job-Id"])
    # a second write while postmap still fails: refused the same way, nothing moves
    r = site.put_policy("one.example", {"level": "encrypt"})
    assert_problem(r, 422, "postfix_rejected")
    assert site.live_files() == good
    assert site.map_query(["one.example", "three.example"]) == {"one.example": ("may", {})}

    os.unlink(flag)
    r = site.put_policy_ok("four.example", {"level": "encrypt", "ciphers": "high"})
    job = site.job(r.headers["Job-Id"])
    assert job["status"] == "applied" and job["postmap"] is True, job
    rows = site.assert_map_is_the_rows()
    assert rows == {**rows_before, "four.example": ("encrypt", {"ciphers": "high"})}, rows
    assert "three.example" not in rows, "the refused write was applied after all"
    site.assert_converged()
    assert site.read(site.pf.main_cf) == good["main.cf"], "a policy write changed main.cf"


# == 3. postfix reload failing =====================================================================
# test_settings.py::test_failed_reload_restores_main_cf_and_the_old_certificate_stays covers the
# restored main.cf, the rolled-back row and the old certificate still served; here: the status while
# reloads fail, the wrapper's words in the job, and a later, different write converging.
@pytest.mark.expect_errors(r"(?i)reload.*fail")
def test_reload_failure_degrades_the_status_until_a_later_write_converges(make_fault_site, tmp_path,
                                                                          certs):
    wrapper, flag = fail_reload_wrapper(str(tmp_path))
    site = make_fault_site(config={"postfix_command": wrapper})
    fp_a, fp_b = site.add_cert("a"), site.add_cert("b")
    site.put_ok({"mode": "may", "certificate": "a"})
    site.put_policy_ok("one.example", {"level": "may"})
    site.wait_served(fp_a)
    site.assert_converged()
    good = site.live_files()

    open(flag, "w").close()
    r = site.patch({"certificate": "b", "loglevel": 2})
    body = assert_problem(r, 422, "postfix_rejected")
    assert RELOAD_FAILURE in body["detail"], body
    jid = r.headers["Job-Id"]
    job = site.job(jid)
    assert job["status"] == "failed" and job["error"]["code"] == "postfix_rejected", job
    assert RELOAD_FAILURE in job["output"] + job["error"]["detail"], job
    assert site.live_files() == good, "main.cf or the map is not the last good one after a failure"
    assert site.staged_leftovers() == [], site.staged_leftovers()
    st = assert_not_in_sync_after_failure(site, jid)
    assert st["certificate"]["name"] == "a", st
    assert smtp_observe(site.pf.port) == (True, fp_a)
    # reads still work and say the committed state
    assert site.settings()["certificate"] == "a" and site.settings()["loglevel"] == 1
    # a policy write needs no reload: it goes through while reloads fail, and the map converges
    r = site.put_policy_ok("two.example", {"level": "encrypt"})
    assert site.job(r.headers["Job-Id"])["reload"] is False
    site.assert_map_is_the_rows()

    os.unlink(flag)
    r = site.patch_ok({"certificate": "b", "loglevel": 3})
    job = site.job(r.headers["Job-Id"])
    assert job["status"] == "applied" and job["reload"] is True, job
    site.wait_served(fp_b)
    assert site.pf.served_certificate(servername=HOST, cafile=certs.ca().cert) == fp_b, \
        "openssl s_client -starttls smtp does not see the new certificate"
    v = site.wait_verified()
    assert v["state"] == "verified" and v["served_fingerprint_matches"] is True, v
    site.assert_converged()
    st = site.status()
    assert st["certificate"]["name"] == "b" and st["certificate"]["served_fingerprint_matches"], st
    assert st["last_job"]["id"] == int(r.headers["Job-Id"]), st
    assert st["last_job"]["status"] == "applied", st
    assert site.live_params()["smtpd_tls_loglevel"] == "3"


# == the tools' words in a failed job ==============================================================
@pytest.mark.expect_errors(r"(?i)reload.*fail")
def test_a_failed_job_keeps_what_the_tools_printed_in_output(make_fault_site, tmp_path):
    pwrap, pflag = postmap_wrapper(str(tmp_path))
    rwrap, rflag = fail_reload_wrapper(str(tmp_path))
    site = make_fault_site(config={"postmap_command": pwrap, "postfix_command": rwrap})
    open(pflag, "w").close()
    r = site.put_policy("two.example", {"level": "encrypt"})
    os.unlink(pflag)
    assert_problem(r, 422, "postfix_rejected")
    postmap_job = site.job(r.headers["Job-Id"])
    open(rflag, "w").close()
    r = site.patch({"loglevel": 2})
    os.unlink(rflag)
    assert_problem(r, 422, "postfix_rejected")
    reload_job = site.job(r.headers["Job-Id"])
    for job, words in ((postmap_job, POSTMAP_FAILURE), (reload_job, RELOAD_FAILURE)):
        assert job["status"] == "failed" and words in job["error"]["detail"], job
        assert isinstance(job["output"], str), job
    problems = []
    if POSTMAP_FAILURE not in postmap_job["output"]:
        problems.append(f"postmap job: output {postmap_job['output']!r}")
    if postmap_job["postmap"] is not True:
        problems.append(f"postmap job: postmap {postmap_job['postmap']}")
    if RELOAD_FAILURE not in reload_job["output"]:
        problems.append(f"reload job: output {reload_job['output']!r}")
    if reload_job["reload"] is not True:
        problems.append(f"reload job: reload {reload_job['reload']}")
    if problems:
        raise AssertionError("; ".join(problems))


# == 4. the Postfix configuration directory full ===================================================
NO_SPACE = "No space left on device"


def unmount(path):
    for argv in (["umount", path], ["umount", path], ["umount", "-l", path]):
        if subprocess.run(argv, capture_output=True).returncode == 0:
            return
        time.sleep(0.2)
    raise AssertionError(f"cannot unmount {path}")


@pytest.fixture
def tmpfs_postfix(session_dir):
    """A (not started) Postfix sandbox whose configuration directory is a 4 MiB tmpfs of its own;
    skipped when this process may not mount. Teardown stops Postfix and unmounts, always."""
    base = os.path.join(session_dir, f"enospc{os.getpid()}-{time.monotonic_ns()}")
    pf = PostfixSandbox(base)
    os.makedirs(pf.config_dir)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0755", "tmpfs",
                           pf.config_dir], capture_output=True, text=True)
    if proc.returncode != 0:
        shutil.rmtree(base, ignore_errors=True)
        pytest.skip(f"cannot mount a tmpfs for the ENOSPC test (needs root with CAP_SYS_ADMIN): "
                    f"{proc.stderr.strip()}")
    try:
        yield pf
    finally:
        try:
            pf.stop()
        finally:
            unmount(pf.config_dir)
            shutil.rmtree(base, ignore_errors=True)


def fill(directory, leave=0):
    """Fill the file system of `directory` with a file, then give back `leave` bytes; returns the
    filler's path."""
    path = os.path.join(directory, "filler")
    chunk = b"\0" * (1 << 16)
    with open(path, "wb", buffering=0) as f:
        for size in (len(chunk), 4096, 1):
            try:
                while f.write(chunk[:size]):
                    pass
            except OSError as e:
                assert e.errno == errno.ENOSPC, e
    if leave:
        os.truncate(path, max(0, os.path.getsize(path) - leave))
    return path


def free_bytes(directory):
    st = os.statvfs(directory)
    return st.f_bavail * st.f_frsize


def fill_on_reload_wrapper(directory, config_dir):
    """A postfix_command that runs postfix, except that while FLAG exists `reload` fills
    config_dir's file system (CONFIG_DIR/filler2) and fails: the disk runs full in the middle of an
    apply, after the swap. Returns (wrapper, flag, filler)."""
    flag = os.path.join(directory, "fill-on-reload")
    filler = os.path.join(config_dir, "filler2")
    path = write_script(os.path.join(directory, "postfix-fill-wrapper"),
                        "#!/bin/sh\n"
                        "for a in \"$@\"; do\n"
                        f"  if [ \"$a\" = reload ] && [ -e '{flag}' ]; then\n"
                        f"    cat /dev/zero > '{filler}' 2>/dev/null\n"
                        "    echo 'postfix/postfix-script: fatal: "
                        f"{RELOAD_FAILURE} (disk full)' >&2\n"
                        "    exit 1\n"
                        "  fi\n"
                        "done\n"
                        "exec postfix \"$@\"\n")
    return path, flag, filler


def remove(paths):
    for p in sorted(paths, reverse=True):
        if os.path.isdir(p):
            shutil.rmtree(p, ignore_errors=True)
        elif os.path.exists(p):
            os.unlink(p)


@pytest.mark.expect_errors(r"the disk holding the Postfix or certificate files is full",
                           r"(?i)reload.*fail")
def test_full_configuration_directory_changes_nothing_and_the_next_write_converges(
        tmpfs_postfix, make_fault_site, tmp_path):
    wrapper, flag, filler2 = fill_on_reload_wrapper(str(tmp_path), tmpfs_postfix.config_dir)
    pf = tmpfs_postfix.start()
    site = make_fault_site(pf=pf, config={"postfix_command": wrapper})
    fp = site.add_cert("a")
    site.put_ok({"mode": "may", "certificate": "a"})
    site.put_policy_ok("one.example", {"level": "may"})
    site.wait_served(fp)
    site.assert_converged()
    good = site.live_files()
    db_before = (site.generation(), site.policy_rows(), site.settings_row())
    items = [{"destination": f"d{i:04d}.bulk.example", "level": ("may", "encrypt")[i % 2]}
             for i in range(400)]
    text_size = sum(len(f"{p['destination']}\t{p['level']}\n") for p in items) + 4096
    known, seen = [], []

    def refused(what, r, words=NO_SPACE, clean=True):
        """r failed naming `words` and changed nothing in the database, the map or Postfix;
        main.cf (compared by the caller for the restore case) too."""
        assert r.status >= 400 and r.headers.get("Content-Type", "").startswith(
            "application/problem+json"), f"{what}: {r}"
        assert words in r.body.get("detail", ""), f"{what}: the problem does not say {words!r}: " \
            f"{r.body}"
        job = site.job(r.headers["Job-Id"])
        assert job["status"] == "failed" and words in job["error"]["detail"], job
        live = site.live_files()
        assert (live["map"], live["map.db"]) == (good["map"], good["map.db"]), \
            f"{what}: the live policy map changed"
        assert (site.generation(), site.policy_rows(), site.settings_row()) == db_before, \
            f"{what}: the database changed"
        assert_not_in_sync_after_failure(site, r.headers["Job-Id"])
        assert smtp_observe(pf.port) == (True, fp), "Postfix no longer serves the certificate"
        seen.append(f"{what}: {r.status} {r.body['code']}: {r.body['detail'][:100]!r}")
        left = site.staged_leftovers()
        if left:
            known.append(f"staged files left after {what}: {left}")
        if clean:
            remove(left)  # they hold space: keep the next step's arithmetic exact
        return live

    # a) the disk is full: neither the map text nor the staged main.cf can be written
    filler = fill(pf.config_dir)
    assert free_bytes(pf.config_dir) == 0
    r = site.bulk(items)
    assert_problem(r, 507, "insufficient_storage")
    assert refused("a bulk push on a full disk", r)["main.cf"] == good["main.cf"]
    r = site.patch({"loglevel": 2})
    assert_problem(r, 507, "insufficient_storage")
    live = refused("a settings write on a full disk", r)
    assert live["main.cf"] == good["main.cf"], "main.cf changed"
    # b) room for the map text but not for its index: the index - built by postmap, or the copy
    # of the live one an edit of a few rows makes - runs out of space
    os.unlink(filler)
    filler = fill(pf.config_dir, leave=text_size + 8192)
    r = site.bulk(items)
    detail = r.body.get("detail", "")
    assert "postmap" in detail or "copy of the policy map" in detail, \
        f"expected the index to run out of space: {r}"
    assert refused("a bulk push with room for the text only", r)["main.cf"] == good["main.cf"]
    os.unlink(filler)
    # c) the disk fills up during the apply (after the swap) and the reload fails
    open(flag, "w").close()
    r = site.patch({"loglevel": 3})
    os.unlink(flag)
    assert free_bytes(pf.config_dir) == 0, "the wrapper did not fill the disk"
    live = refused("a reload failing on a disk that filled up", r, words=RELOAD_FAILURE,
                   clean=False)
    if live["main.cf"] != good["main.cf"]:
        known.append(f"main.cf not restored after the failed reload on a full disk: live "
                     f"smtpd_tls_loglevel {site.live_params().get('smtpd_tls_loglevel')}, "
                     f"database 1; status drift {site.status()['drift']}")
    os.unlink(filler2)

    # room again: the next writes converge
    r = site.bulk(items)
    assert r.status == 200 and r.body["added"] == 400 and r.body["removed"] == 1, r
    site.patch_ok({"loglevel": 2})
    site.assert_in_sync()
    rows = site.assert_map_is_the_rows()
    assert len(rows) == 400 and rows["d0001.bulk.example"] == ("encrypt", {})
    assert site.live_params()["smtpd_tls_loglevel"] == "2"
    assert smtp_observe(pf.port) == (True, fp)
    left = site.staged_leftovers()
    if left:
        known.append(f"staged files left after the next successful write: {left}")
    print("\n" + "\n".join(seen))
    if known:
        raise AssertionError("\n".join(known))


@pytest.mark.expect_errors(DB_ERRORS)
def test_a_database_behind_a_network_that_drops_packets(private_pg, make_fault_site):
    """PostgreSQL's packets dropped (nftables), not refused, under one HTTP thread (the default
    on 2 cores): a request that needs the database is answered 503 within twice the connect
    timeout - its query unacknowledged, then one connect - not after TCP's own quarter of an
    hour; while the pool backs off (4 x what the failed connect took) the others are answered at
    once, /healthz too; once packets flow again, writes work."""
    private_pg.start()
    connect = 2.0
    site = make_fault_site(db=private_pg, config={"http_threads": 1,
                                                  "database_connect_timeout": f"{connect:g}s"})
    site.put_policy_ok("base.example", {"level": "may"})

    def timed(path, token=True):
        t0 = time.monotonic()
        r = site.d.http("GET", path, token=site.d.token if token else None, timeout=60)
        return r, time.monotonic() - t0

    with Blackhole(private_pg.port):
        r, took = timed("/api/v1/tls-policies/base.example")
        assert r.status == 503 and r.body["code"] == "service_unavailable", r
        assert took < 2 * connect + 1.5, f"the first read took {took:.1f} s"
        t_failed = time.monotonic()
        # the back-off after a connect that took `connect`: 4 x that
        while time.monotonic() - t_failed < 3 * connect:
            for path in ("/api/v1/tls-policies?level=encrypt", "/api/v1/certificates"):
                r, took = timed(path)
                assert r.status == 503 and took < 0.5, (path, r.status, took)
            r, took = timed("/healthz", token=False)
            assert r.status == 200 and took < 0.5, (r.status, took)
            time.sleep(0.2)
    t_up = time.monotonic()

    def written():
        r = site.put_policy("after.example", {"level": "encrypt"})
        return r if r.status in (200, 201) else None
    wait_until(written, 4 * connect + connect + 15, "a write after the packets flow again")
    assert time.monotonic() - t_up < 4 * connect + connect + 15
    assert site.d.get("/api/v1/tls-policies/after.example").body["level"] == "encrypt"
