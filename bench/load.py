#!/usr/bin/python3
"""Load test of smtptlsd: GET-heavy traffic (wrk) and concurrent writes for a bounded time.

Starts its own private PostgreSQL and sandbox Postfix (tests/harness, under /tmp/stls-load-*)
and the release daemon (build/smtptlsd; build it with `bash scripts/build build`), uploads two
certificates, binds one, seeds 1000 policies, warms up with the same load, then for --seconds
runs at the same time:

  GETs    wrk -t2 -c32 --latency -s bench/load.lua with a read token, rotating over settings,
          TLS policies (filters, a second page, one row, one missing row: 404), certificates,
          status, config, jobs, healthz, readyz and metrics (keep-alive connections)
  writes  a thread pool (http.client, a new connection per request):
          - policy writers (admin token): PUT/POST/PATCH/DELETE of their own managed rows, a
            GET + If-Match PUT, and a ?wait=0 PUT (202) whose job is polled until applied
          - settings writers (write token): GET the ETag, PATCH /api/v1/settings with If-Match
            (mode, inbound mode, profile, bound certificate, loglevel, auth_only; 412 is
            expected when the two race), now and then a re-upload (rotation) of a certificate
          - one bulk writer (write token): every --bulk-every seconds a bulk replace of the seed
            rows plus --bulk-size rows that move by half from one push to the next, checking
            the added/removed counts, and single writes of unmanaged rows in between
  samples the daemon's VmRSS, open fds and threads every --sample-interval seconds

and prints GET requests/s and latency p50/p90/p99/p99.9/max, each write kind's count, statuses,
p50/p99/max, jobs applied/failed, postmap runs and Postfix reloads (/metrics deltas), the
server-side time per route, RSS, fds and threads at start (after the warm-up, quiescent) / max /
end (quiescent), the daemon log's error lines, and contract gaps noticed on the way (reported,
not failing). Exit status 1 on any 5xx, transport error, unexpected status (only 412 from a
racing If-Match and 404 from the path that names no row are expected), <0>..<3> log line, fd,
thread or RSS growth beyond the bounds in growth_check(), jobs applied/failed that do not match
the replies, or an end state that differs from what the writers know (status, drift, rows);
2 on a set-up problem; 130 when interrupted. Every process and the directory are removed on
exit, Ctrl-C and SIGTERM included. Standard library only:

  /usr/bin/python3 bench/load.py [--seconds 60] [--threads 2] [--connections 32]
                                 [--skip-path REGEX] [--keep] ...   (--help lists all)
"""
import argparse
import collections
import datetime
import http.client
import json
import math
import os
import random
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.parse

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

from tests.harness.certs import CertFactory  # noqa: E402
from tests.harness.daemon import Daemon  # noqa: E402
from tests.harness.pg import PostgresSandbox  # noqa: E402
from tests.harness.postfix import PostfixSandbox  # noqa: E402
from tests.harness.util import run, short_tempdir  # noqa: E402

WRK = "/usr/bin/wrk"
LUA = os.path.join(REPO_ROOT, "bench", "load.lua")
MANAGER = "loadtest"
FINGERPRINT = ":".join(f"{b:02X}" for b in range(0x3D, 0x3D + 32))
# Policy bodies the writers choose from (each checked once with ?dry_run=true before the run).
POLICY_BODIES = [
    {"level": "may"},
    {"level": "encrypt"},
    {"level": "encrypt", "protocols": ">=TLSv1.2"},
    {"level": "encrypt", "ciphers": "high", "note": "partner relay"},
    {"level": "secure", "match": ["nexthop", "dot-nexthop"]},
    {"level": "verify", "match": ["hostname"]},
    {"level": "dane"},
    {"level": "none"},
    {"level": "fingerprint", "match": [FINGERPRINT]},
]
SETTINGS_PATCHES = [
    lambda r: {"profile": r.choice(["modern", "intermediate", "legacy"])},
    lambda r: {"mode": r.choice(["none", "may", "may", "encrypt"])},
    lambda r: {"inbound_mode": r.choice([None, "may", "encrypt"])},
    lambda r: {"certificate": r.choice(["mx1", "mx2"])},
    lambda r: {"loglevel": r.randint(0, 2), "auth_only": r.choice([True, False])},
    lambda r: {"mode": "may", "profile": r.choice(["modern", "intermediate"]),
               "certificate": r.choice(["mx1", "mx2"])},
]
METRIC_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+([0-9.eE+-]+|NaN)\s*$")


class Interrupted(Exception):
    pass


def on_signal(signum, frame):
    raise Interrupted(f"signal {signum}")


# -- small helpers --------------------------------------------------------------------------------
def q(dest):
    return urllib.parse.quote(dest, safe="")


def pct(values, p):
    """The p-th percentile (nearest rank) of a list of numbers, or None."""
    if not values:
        return None
    v = sorted(values)
    return v[max(0, min(len(v) - 1, math.ceil(p / 100 * len(v)) - 1))]


def ms(x):
    return "-" if x is None else f"{x * 1000:.0f}"


def proc_status(pid):
    """(VmRSS in KiB, Threads) of pid."""
    rss = threads = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("Threads:"):
                threads = int(line.split()[1])
    return rss, threads


def proc_cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def parse_metrics(text):
    """{name: total over all label sets} and {(name, labels): value}."""
    totals, series = collections.defaultdict(float), {}
    for line in text.splitlines():
        m = METRIC_LINE.match(line)
        if m:
            try:
                v = float(m.group(3))
            except ValueError:
                continue
            totals[m.group(1)] += v
            series[(m.group(1), m.group(2) or "")] = v
    return totals, series


class Api:
    """One request per fresh connection (so the accept/close path is exercised too)."""

    def __init__(self, host, port):
        self.host, self.port = host, port

    def call(self, method, path, body=None, token=None, headers=None, timeout=90,
             ctype="application/json"):
        hdrs = {"Accept": "application/json"}
        if token:
            hdrs["Authorization"] = f"Bearer {token}"
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
        if isinstance(body, str):
            body = body.encode()
        if body is not None:
            hdrs["Content-Type"] = ctype
        hdrs.update(headers or {})
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        t0 = time.monotonic()
        try:
            conn.request(method, path, body=body, headers=hdrs)
            resp = conn.getresponse()
            raw = resp.read()
            return resp.status, resp.headers, raw, time.monotonic() - t0
        finally:
            conn.close()


def body_json(raw):
    try:
        return json.loads(raw)
    except ValueError:
        return None


# -- write statistics -----------------------------------------------------------------------------
class WriteStats:
    def __init__(self):
        self.lock = threading.Lock()
        self.latency = collections.defaultdict(list)    # op -> [seconds]
        self.status = collections.defaultdict(collections.Counter)   # op -> Counter(status)
        self.unexpected = []                             # (op, method, path, status, body)
        self.transport_errors = []                       # (op, method, path, error)
        self.checks = []                                 # failed consistency checks (text)
        self.notes = collections.Counter()               # contract gaps seen (not load faults)
        self.enabled = True

    def record(self, op, status, secs, expected, method, path, raw=b""):
        ok = status in expected
        with self.lock:
            if not self.enabled:
                return ok
            self.status[op][status] += 1
            self.latency[op].append(secs)
            if not ok:
                self.unexpected.append((op, method, path, status,
                                        raw[:400].decode(errors="replace")))
        return ok

    def error(self, op, method, path, exc):
        with self.lock:
            if self.enabled:
                self.transport_errors.append((op, method, path, repr(exc)))

    def note(self, text):
        with self.lock:
            if self.enabled:
                self.notes[text] += 1

    def check_failed(self, text):
        with self.lock:
            if self.enabled:
                self.checks.append(text)


class Writer(threading.Thread):
    """Base of the write threads: a loop until stop is set, one op per iteration."""

    def __init__(self, name, api, stats, stop, seed):
        super().__init__(name=name, daemon=True)
        self.api, self.stats, self.stop = api, stats, stop
        self.rng = random.Random(seed)
        self.crash = None

    def req(self, op, method, path, body=None, token=None, expected=(200,), headers=None,
            ctype="application/json"):
        """Returns (status, headers, raw) or None on a transport error (recorded)."""
        try:
            status, hdrs, raw, secs = self.api.call(method, path, body, token, headers,
                                                    ctype=ctype)
        except (OSError, http.client.HTTPException) as e:
            self.stats.error(op, method, path, e)
            time.sleep(0.2)
            return None
        self.stats.record(op, status, secs, set(expected), method, path, raw)
        return status, hdrs, raw

    def run(self):
        try:
            while not self.stop.is_set():
                self.step()
        except Exception as e:  # a bug in this script: report it, do not hide it
            self.crash = repr(e)
            self.stats.check_failed(f"{self.name} crashed: {e!r}")


class PolicyWriter(Writer):
    """Owns managed rows w<K>-*.load.example (managed_by loadtest, admin token), so it knows
    exactly whether each exists: every reply is predictable."""

    def __init__(self, k, api, stats, stop, token, seed):
        super().__init__(f"policy-writer-{k}", api, stats, stop, seed)
        self.token = token
        self.dests = ([f"w{k}-{i:03d}.load.example" for i in range(40)] +
                      [f".w{k}-sub{i}.load.example" for i in range(5)] +
                      [f"[relay{i}.w{k}.load.example]:587" for i in range(5)])
        self.exists = {d: False for d in self.dests}
        self.enabled = {d: True for d in self.dests}

    def body(self):
        return dict(self.rng.choice(POLICY_BODIES))

    def step(self):
        rng, dest = self.rng, self.rng.choice(self.dests)
        path = f"/api/v1/tls-policies/{q(dest)}?manager={MANAGER}"
        if not self.exists[dest]:
            b = self.body()
            b["managed_by"] = MANAGER
            if rng.random() < 0.5:
                r = self.req("policy PUT (create)", "PUT", path, b, self.token, (201,))
            else:
                b["destination"] = dest
                r = self.req("policy POST", "POST", "/api/v1/tls-policies", b, self.token, (201,))
            if r and r[0] == 201:
                self.exists[dest], self.enabled[dest] = True, True
            return
        x = rng.random()
        if x < 0.35:
            r = self.req("policy PUT (replace)", "PUT", path, self.body(), self.token, (200,))
            if r and r[0] == 200:
                self.enabled[dest] = True
        elif x < 0.55:
            if rng.random() < 0.5:
                patch = {"enabled": not self.enabled[dest]}
            else:
                patch = {"note": f"load {rng.randint(0, 1 << 30)}"}
            r = self.req("policy PATCH", "PATCH", path, patch, self.token, (200,),
                         ctype="application/merge-patch+json")
            if r and r[0] == 200 and "enabled" in patch:
                self.enabled[dest] = patch["enabled"]
        elif x < 0.70:
            r = self.req("policy DELETE", "DELETE", path, None, self.token, (204,))
            if r and r[0] == 204:
                self.exists[dest] = False
        elif x < 0.85:
            r = self.req("policy GET (for If-Match)", "GET", path, None, self.token, (200,))
            if r and r[0] == 200:
                etag = r[1].get("ETag")
                if not etag:
                    # api/openapi.yaml promises one; the row is ours and exists, so "*" holds
                    self.stats.note("GET /api/v1/tls-policies/{destination} has no ETag "
                                    "(api/openapi.yaml: every resource reply has one); "
                                    "If-Match: * sent instead")
                    etag = "*"
                r = self.req("policy PUT If-Match", "PUT", path, self.body(), self.token, (200,),
                             headers={"If-Match": etag})
                if r and r[0] == 200:
                    self.enabled[dest] = True
        else:
            self.async_put(dest, path)

    def async_put(self, dest, path):
        t0 = time.monotonic()
        r = self.req("policy PUT ?wait=0 (202)", "PUT", path + "&wait=0", self.body(), self.token,
                     (202,))
        if not r or r[0] != 202:
            return
        loc = r[1].get("Location")
        if not loc or not loc.startswith("/api/v1/jobs/"):
            self.stats.check_failed(f"202 without a job Location: {r[1].items()}")
            return
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            r = self.req("job GET (poll)", "GET", loc, None, self.token, (200,))
            if r and r[0] == 200:
                job = body_json(r[2]) or {}
                if job.get("status") == "applied":
                    secs = time.monotonic() - t0
                    self.stats.record("policy PUT ?wait=0 -> applied", 200, secs, {200}, "PUT",
                                      path)
                    self.enabled[dest] = True
                    return
                if job.get("status") == "failed":
                    self.stats.check_failed(f"job {loc} failed: {job.get('error')}")
                    return
            time.sleep(0.05)
        self.stats.check_failed(f"job {loc} not applied within 90 s")


class SettingsWriter(Writer):
    """PATCH /api/v1/settings with the If-Match of a fresh GET; the other settings writer races it,
    so 412 precondition_failed is an expected answer."""

    def __init__(self, k, api, stats, stop, token, seed, pause, bundles):
        super().__init__(f"settings-writer-{k}", api, stats, stop, seed)
        self.token, self.pause, self.bundles = token, pause, bundles

    def step(self):
        rng = self.rng
        if rng.random() < 0.04:
            name = rng.choice(sorted(self.bundles))
            self.req("certificate PUT (rotate)", "PUT", f"/api/v1/certificates/{name}",
                     self.bundles[name], self.token, (200,), ctype="application/x-pem-file")
        else:
            patch = rng.choice(SETTINGS_PATCHES)(rng)
            if rng.random() < 0.1:
                self.req("settings PATCH", "PATCH", "/api/v1/settings", patch, self.token, (200,),
                         ctype="application/merge-patch+json")
            else:
                r = self.req("settings GET (for If-Match)", "GET", "/api/v1/settings", None,
                             self.token, (200,))
                if r and r[0] == 200:
                    etag = r[1].get("ETag")
                    if not etag:
                        self.stats.check_failed("GET /api/v1/settings: no ETag")
                        return
                    self.req("settings PATCH If-Match", "PATCH", "/api/v1/settings", patch,
                             self.token, (200, 412), headers={"If-Match": etag},
                             ctype="application/merge-patch+json")
        self.stop.wait(self.pause)


class BulkWriter(Writer):
    """The only writer of unmanaged rows: bulk replaces (seed + a window of bulk rows that moves
    by half its size each push) and single writes of those rows in between. It checks the
    added/removed counts of each push against what it knows is there."""

    def __init__(self, api, stats, stop, token, seed, seed_items, size, every):
        super().__init__("bulk-writer", api, stats, stop, seed)
        self.token, self.seed_items, self.size, self.every = token, seed_items, size, every
        self.present = {it["destination"] for it in seed_items}  # unmanaged rows in the table
        self.gen = 0
        self.next_bulk = time.monotonic() + every / 2
        self.singles = 0

    def window(self, gen):
        start = gen * (self.size // 2)
        return [{"destination": f"b{i:06d}.bulk.example",
                 **self.rng.choice(POLICY_BODIES)} for i in range(start, start + self.size)]

    def step(self):
        if time.monotonic() >= self.next_bulk:
            self.bulk()
            self.next_bulk = time.monotonic() + self.every
            return
        rng = self.rng
        mine = sorted(d for d in self.present if not d.startswith("seed-"))
        x = rng.random()
        if x < 0.3 or not mine:
            self.singles += 1
            dest = f"s{self.singles:06d}.single.example"
            if rng.random() < 0.5:
                r = self.req("unmanaged PUT (create)", "PUT", f"/api/v1/tls-policies/{q(dest)}",
                             dict(rng.choice(POLICY_BODIES)), self.token, (201,))
            else:
                r = self.req("unmanaged POST", "POST", "/api/v1/tls-policies",
                             {"destination": dest, **rng.choice(POLICY_BODIES)}, self.token,
                             (201,))
            if r and r[0] == 201:
                self.present.add(dest)
        elif x < 0.6:
            dest = rng.choice(mine)
            self.req("unmanaged PUT (replace)", "PUT", f"/api/v1/tls-policies/{q(dest)}",
                     dict(rng.choice(POLICY_BODIES)), self.token, (200,))
        elif x < 0.8:
            dest = rng.choice(mine)
            self.req("unmanaged PATCH", "PATCH", f"/api/v1/tls-policies/{q(dest)}",
                     {"enabled": rng.choice([True, False])}, self.token, (200,),
                     ctype="application/merge-patch+json")
        else:
            dest = rng.choice(mine)
            r = self.req("unmanaged DELETE", "DELETE", f"/api/v1/tls-policies/{q(dest)}", None,
                         self.token, (204,))
            if r and r[0] == 204:
                self.present.discard(dest)
        self.stop.wait(0.05)

    def bulk(self):
        self.gen += 1
        items = self.seed_items + self.window(self.gen)
        new = {it["destination"] for it in items}
        headers, expected = None, (200,)
        if self.gen % 2 == 0:
            r = self.req("collection GET (for If-Match)", "GET", "/api/v1/tls-policies?limit=1",
                         None, self.token, (200,))
            if r and r[0] == 200 and r[1].get("ETag"):
                headers, expected = {"If-Match": r[1]["ETag"]}, (200, 412)
            elif r and r[0] == 200:
                self.stats.note("GET /api/v1/tls-policies has no ETag (api/openapi.yaml: the "
                                "collection's ETag goes with a bulk replace); If-Match: * sent")
                headers = {"If-Match": "*"}
        r = self.req("bulk PUT" + (" If-Match" if headers else ""), "PUT",
                     "/api/v1/tls-policies?wait=120", {"items": items}, self.token, expected,
                     headers=headers)
        if not r or r[0] != 200:
            return
        got = body_json(r[2]) or {}
        want_added, want_removed = len(new - self.present), len(self.present - new)
        if (got.get("added"), got.get("removed")) != (want_added, want_removed) or \
                got.get("added", 0) + got.get("changed", 0) + got.get("unchanged", 0) != len(new):
            self.stats.check_failed(f"bulk push {self.gen}: got {got}, expected added "
                                    f"{want_added} removed {want_removed} of {len(new)} items")
        self.present = new


# -- the daemon's process -----------------------------------------------------------------------
class Sampler(threading.Thread):
    def __init__(self, pid, interval):
        super().__init__(name="sampler", daemon=True)
        self.pid, self.interval = pid, interval
        self.samples = []       # (t, rss KiB, fds, threads)
        self.stop = threading.Event()

    def sample(self):
        rss, threads = proc_status(self.pid)
        fds = len(os.listdir(f"/proc/{self.pid}/fd"))
        s = (time.monotonic(), rss, fds, threads)
        self.samples.append(s)
        return s

    def run(self):
        while not self.stop.wait(self.interval):
            try:
                self.sample()
            except OSError:
                return  # the daemon is gone: the main thread reports it


def fd_breakdown(d):
    """(non-database fds, database connections) of the daemon."""
    all_fds = d.fd_targets()
    other = d.fds_except_db()
    return len(other), len(all_fds) - len(other)


# -- the run --------------------------------------------------------------------------------------
class LoadRun:
    def __init__(self, args, argv_used, binary, seed):
        self.args, self.argv_used, self.binary, self.seed = args, argv_used, binary, seed
        self.base = short_tempdir("stls-load-")
        self.pg = PostgresSandbox(os.path.join(self.base, "pg"))
        self.pf = PostfixSandbox(os.path.join(self.base, "postfix"))
        self.d = None
        self.api = None
        self.wrk = None
        self.writers = []
        self.stop = threading.Event()
        self.sampler = None
        self.stats = None
        self.tokens = {}
        self.bundles = {}
        self.seed_items = []
        self.bulk_writer = None
        self.policy_writers = []

    # -- clean-up: every process this run started, then the directory -----------------------------
    def cleanup(self):
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(s, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up short
        self.stop.set()
        if self.stats:
            self.stats.enabled = False
        if self.sampler:
            self.sampler.stop.set()
        if self.wrk is not None and self.wrk.returncode is None:
            try:
                os.killpg(self.wrk.pid, signal.SIGKILL)  # wrk runs in a session of its own
            except ProcessLookupError:
                pass
            try:
                self.wrk.wait(10)
            except (subprocess.TimeoutExpired, ChildProcessError):
                pass
        problems = []
        if self.d is not None:
            try:
                self.d.stop(timeout=20)
            except Exception as e:
                problems.append(f"daemon stop: {e}")
            self.d.close()
        for w in self.writers:
            w.join(10)  # their connections failed with the daemon gone
        for what, fn in (("postfix", self.pf.stop), ("postgresql", self.pg.stop)):
            try:
                fn()
            except Exception as e:
                problems.append(f"{what} stop: {e}")
        if self.args.keep:
            print(f"load: sandbox kept in {self.base}", file=sys.stderr)
        else:
            shutil.rmtree(self.base, ignore_errors=True)
        for p in problems:
            print(f"load: clean-up: {p}", file=sys.stderr)

    # -- set-up --------------------------------------------------------------------------------
    def must(self, method, path, body=None, token=None, expected=(200,), **kw):
        status, hdrs, raw, _ = self.api.call(method, path, body, token or self.tokens["admin"],
                                             **kw)
        if status not in expected:
            raise RuntimeError(f"set-up: {method} {path} -> {status} {raw[:500]!r}")
        return status, hdrs, body_json(raw)

    def setup(self):
        a = self.args
        log("starting PostgreSQL and Postfix sandboxes")
        self.pg.start()
        url = self.pg.create_database("load")
        self.pf.start()
        certs = CertFactory(os.path.join(self.base, "certs"))
        system = certs.leaf("system", ("localhost",))
        for name in ("mx1", "mx2"):
            c = certs.leaf(name, ("mx.test.example", f"{name}.test.example"))
            self.bundles[name] = c.read("key") + c.read("fullchain")
        workdir = os.path.join(self.base, "daemon")
        cfg = {
            "listen_address": "127.0.0.1", "listen_port": 0, "database_url": url,
            "http_threads": a.http_threads, "log_level": a.log_level,
            "postfix_config_directory": self.pf.config_dir, **self.pf.argv_prefixes,
            "certificate_directory": os.path.join(workdir, "certs"),
            "acme_live_directory": os.path.join(workdir, "letsencrypt", "live"),
            "system_certificate_file": system.cert, "system_key_file": system.key,
            "smtp_probe_address": f"127.0.0.1:{self.pf.port}",
            # every client of the bench is 127.0.0.1: wrk's connections alone can fill the
            # default per-address limit (32)
            "per_ip_connection_limit": 0,
        }
        self.d = Daemon(workdir, cfg, binary=self.binary, db_port=self.pg.port)
        log(f"starting {os.path.relpath(self.binary, REPO_ROOT)}")
        self.d.start()
        self.api = Api(self.d.host, self.d.port)
        for scope in ("read", "write", "admin"):
            self.tokens[scope] = self.d.add_token(f"load-{scope}", scope)

        log("uploading certificates mx1, mx2; binding mx1; seeding policies")
        for name, pem in self.bundles.items():
            self.must("PUT", f"/api/v1/certificates/{name}", pem, expected=(201,),
                      ctype="application/x-pem-file")
        self.must("PATCH", "/api/v1/settings", {"mode": "may", "certificate": "mx1"},
                  ctype="application/merge-patch+json")
        for i, b in enumerate(POLICY_BODIES):  # the writers' bodies must all be valid
            self.must("PUT", f"/api/v1/tls-policies/check{i}.load.example?dry_run=true", b,
                      expected=(200, 201))
        # Contract probe (api/openapi.yaml "Concurrency"): a stale If-Match on a policy write
        # must be 412 and change nothing. Reported as a note: it is not a load fault.
        self.contract_notes = []
        self.must("PUT", "/api/v1/tls-policies/etag-probe.load.example", {"level": "may"},
                  expected=(201,))
        st, _, _ = self.must("PUT", "/api/v1/tls-policies/etag-probe.load.example",
                             {"level": "encrypt"}, expected=(200, 412),
                             headers={"If-Match": '"stale-tag"'})
        if st != 412:
            self.contract_notes.append(
                f"PUT /api/v1/tls-policies/{{destination}} with a stale If-Match answered {st} "
                f"and applied the write (api/openapi.yaml: 412 precondition_failed, nothing "
                f"changed); the worker checks If-Match for settings only")
        self.must("DELETE", "/api/v1/tls-policies/etag-probe.load.example", expected=(204,))
        self.seed_items = [{"destination": f"seed-d{i:06d}.example",
                            **POLICY_BODIES[i % len(POLICY_BODIES)]}
                           for i in range(a.seed_policies)]
        self.must("PUT", "/api/v1/tls-policies?wait=120", {"items": self.seed_items})
        _, _, page = self.must("GET", "/api/v1/tls-policies?limit=100")
        cursor = page.get("next") or ""
        paths = [
            "/api/v1/settings",
            "/api/v1/settings",
            "/api/v1/tls-policies",
            "/api/v1/tls-policies?limit=50",
            "/api/v1/tls-policies?limit=100&after=" + q(cursor) if cursor else
            "/api/v1/tls-policies?limit=100",
            "/api/v1/tls-policies?level=encrypt&limit=20",
            "/api/v1/tls-policies?q=example&managed=false&limit=100",
            "/api/v1/tls-policies?managed=true",
            "/api/v1/tls-policies?q=load&level=secure",
            f"/api/v1/tls-policies/{q(self.seed_items[1]['destination'])}",
            "/api/v1/tls-policies/" + q("nosuch.example"),   # 404: an expected answer
            "/api/v1/certificates",
            "/api/v1/certificates?type=imported",
            "/api/v1/certificates/mx1",
            "/api/v1/status",
            "/api/v1/config",
            "/api/v1/jobs",
            "/api/v1/jobs?limit=20",
            "/healthz",
            "/readyz",
            "/metrics",
        ]
        for rx in self.args.skip_path:
            paths = [p for p in paths if not re.search(rx, p)]
        if not paths:
            raise RuntimeError("--skip-path left no GET path")
        self.paths_file = os.path.join(self.base, "paths.txt")
        with open(self.paths_file, "w") as f:
            f.write("# GET paths for bench/load.lua, one request each per rotation\n")
            f.write("\n".join(paths) + "\n")
        self.n_paths = len(paths)
        self.n_404_paths = sum(1 for p in paths if "nosuch" in p)

    # -- one phase of load (warm-up or measured) -------------------------------------------------
    def phase(self, seconds, measured):
        a = self.args
        self.stop = threading.Event()
        self.stats = WriteStats()
        rnd = random.Random(self.seed + (1000 if measured else 0))
        self.policy_writers = [PolicyWriter(k, self.api, self.stats, self.stop,
                                            self.tokens["admin"], rnd.random())
                               for k in range(a.policy_writers)]
        # the writers' rows outlive a phase: carry what exists over from the warm-up
        for w in self.policy_writers:
            prev = getattr(self, "_exists", {}).get(w.name)
            if prev:
                w.exists, w.enabled = prev
        settings = [SettingsWriter(k, self.api, self.stats, self.stop, self.tokens["write"],
                                   rnd.random(), a.settings_pause, self.bundles)
                    for k in range(a.settings_writers)]
        if self.bulk_writer is None:
            self.bulk_writer = BulkWriter(self.api, self.stats, self.stop, self.tokens["write"],
                                          rnd.random(), self.seed_items, a.bulk_size,
                                          a.bulk_every)
        else:  # same rows, new thread
            old = self.bulk_writer
            self.bulk_writer = BulkWriter(self.api, self.stats, self.stop, self.tokens["write"],
                                          rnd.random(), self.seed_items, a.bulk_size,
                                          a.bulk_every)
            self.bulk_writer.present, self.bulk_writer.gen = old.present, old.gen
            self.bulk_writer.singles = old.singles
        self.writers = self.policy_writers + settings + [self.bulk_writer]

        out_path = os.path.join(self.base, f"wrk-{'run' if measured else 'warmup'}.txt")
        argv = [WRK, f"-t{a.threads}", f"-c{a.connections}", f"-d{seconds}s", "--latency",
                "--timeout", "10s", "-s", LUA, f"http://{self.d.host}:{self.d.port}", "--",
                self.tokens["read"], self.paths_file]
        self.wrk_argv = argv
        cpu0 = proc_cpu_seconds(self.d.pid)
        load0 = os.getloadavg()
        t0 = time.monotonic()
        if measured:
            self.sampler = Sampler(self.d.pid, a.sample_interval)
            self.sampler.start()
        for w in self.writers:
            w.start()
        with open(out_path, "w") as out:
            self.wrk = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + seconds + 60
        wrk_ru = None
        while True:
            pid, status, ru = os.wait4(self.wrk.pid, os.WNOHANG)
            if pid:
                self.wrk.returncode = os.waitstatus_to_exitcode(status)
                wrk_ru = ru
                break
            if not self.d.alive():
                raise RuntimeError(f"the daemon exited during the load "
                                   f"({self.d.proc.returncode})\n{self.d.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"wrk still running {seconds + 60} s after its start")
            time.sleep(0.1)
        wall = time.monotonic() - t0
        self.stop.set()
        for w in self.writers:
            w.join(150)
            if w.is_alive():
                raise RuntimeError(f"{w.name} did not finish its last request within 150 s")
        if measured:
            self.sampler.stop.set()
            self.sampler.join(5)
        self._exists = {w.name: (w.exists, w.enabled) for w in self.policy_writers}
        with open(out_path) as f:
            wrk_text = f.read()
        if self.wrk.returncode != 0 or "LOAD summary" not in wrk_text:
            raise RuntimeError(f"wrk failed (exit {self.wrk.returncode}):\n{wrk_text}")
        return {"wrk_text": wrk_text, "wall": wall, "wrk_cpu": wrk_ru.ru_utime + wrk_ru.ru_stime,
                "daemon_cpu": proc_cpu_seconds(self.d.pid) - cpu0, "loadavg0": load0,
                "loadavg1": os.getloadavg()}

    # -- quiescence and measurements ------------------------------------------------------------
    def metrics(self):
        _, _, raw, _ = self.api.call("GET", "/metrics", token=self.tokens["read"])
        return parse_metrics(raw.decode())

    def quiesce(self, timeout=60):
        """Wait until the queue is empty and applied == desired generation, then a moment more
        for the closing connections to be reaped."""
        deadline = time.monotonic() + timeout
        while True:
            totals, _ = self.metrics()
            if (totals.get("smtptlsd_queue_depth", 0) == 0 and
                    totals.get("smtptlsd_applied_generation") ==
                    totals.get("smtptlsd_desired_generation")):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"not quiescent within {timeout} s: queue "
                                   f"{totals.get('smtptlsd_queue_depth')}, generations "
                                   f"{totals.get('smtptlsd_applied_generation')}/"
                                   f"{totals.get('smtptlsd_desired_generation')}")
            time.sleep(0.2)
        time.sleep(1.0)

    def point(self, settle_fds_to=None, settle=5.0):
        """A quiescent sample: RSS, all fds, non-database fds, database connections, threads.
        settle_fds_to: wait (bounded) for the non-database fds to come down to that count."""
        deadline = time.monotonic() + settle
        while True:
            other, db = fd_breakdown(self.d)
            if settle_fds_to is None or other <= settle_fds_to or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        rss, threads = proc_status(self.d.pid)
        fds = len(os.listdir(f"/proc/{self.d.pid}/fd"))
        return {"rss": rss, "fds": fds, "other_fds": other, "db_fds": db, "threads": threads,
                "fd_targets": self.d.fds_except_db()}

    def final_state_checks(self):
        """The daemon's view after the run agrees with what the writers know is there."""
        problems = []
        _, _, st = self.must("GET", "/api/v1/status")
        if st.get("state") != "in_sync" or st.get("drift"):
            problems.append(f"status after the run: state {st.get('state')}, drift "
                            f"{st.get('drift')}, warnings {st.get('warnings')}")
        _, _, cf = self.must("GET", "/api/v1/config")
        if cf.get("drift") or cf.get("tls_policy_map_drift"):
            problems.append(f"config after the run: drift {cf.get('drift')}, "
                            f"tls_policy_map_drift {cf.get('tls_policy_map_drift')}")
        have, after = set(), None
        for _ in range(1000):
            path = "/api/v1/tls-policies?limit=1000" + (f"&after={q(after)}" if after else "")
            _, _, page = self.must("GET", path)
            have.update(it["destination"] for it in page["items"])
            after = page.get("next")
            if not after:
                break
        want = set(self.bulk_writer.present)
        for w in self.policy_writers:
            want.update(dst for dst, e in w.exists.items() if e)
        if have != want:
            problems.append(f"policies after the run: {len(have)} rows, expected {len(want)}; "
                            f"missing {sorted(want - have)[:5]}, extra {sorted(have - want)[:5]}")
        return st, problems


def log(msg):
    print(f"load: {msg}", file=sys.stderr, flush=True)


def parse_wrk(text):
    out = {"status": {}, "bad": []}
    for line in text.splitlines():
        if line.startswith("LOAD bad "):
            out["bad"].append(line[9:])
        elif line.startswith("LOAD status"):
            out["status"] = {int(k): int(v) for k, v in
                             (kv.split("=") for kv in line.split()[2:])}
        elif line.startswith("LOAD "):
            kind = line.split()[1]
            out[kind] = {k: float(v) for k, v in (kv.split("=") for kv in line.split()[2:])}
    return out


def growth_check(samples, start, end, a):
    """Bounds for 'grows without bound', on the quiescent start and end points and the samples.

    RSS: glibc malloc keeps freed memory in per-thread arenas (up to 8 per core: 16 here; the
    daemon has its HTTP pool threads, the worker, the watchdog and the ACME watcher) and returns
    the top of an arena only above M_TRIM_THRESHOLD, which glibc raises dynamically (up to 64 MiB)
    after a large block is freed - a bulk push parses a ~100 KB body into a JSON tree and renders
    the whole map. So a few MiB per arena may stay resident after the warm-up without being a leak,
    and libpq keeps per-connection result buffers. --rss-growth-mib (48) bounds start->end; a leak
    of 256 bytes per request trips it after ~200 000 requests, i.e. within this test. A leak grows
    linearly while arena fragmentation levels off, so --rss-late-growth-mib (12) also bounds the
    growth over the second half of the run (between the samples at the middle and the last one).
    fds: at a quiescent end every client connection is closed, so the non-database fds must be
    back to the start count (+ --fd-slack: e.g. a connection the kernel has not reaped yet); the
    database connections are a pool that opens lazily, bounded by its size + the worker's."""
    problems = []
    growth = (end["rss"] - start["rss"]) / 1024
    if growth > a.rss_growth_mib:
        problems.append(f"RSS grew {growth:.1f} MiB from start to end (bound {a.rss_growth_mib})")
    if len(samples) >= 4:
        mid = samples[len(samples) // 2][1]
        late = (samples[-1][1] - mid) / 1024
        if late > a.rss_late_growth_mib:
            problems.append(f"RSS grew {late:.1f} MiB over the second half of the run "
                            f"(bound {a.rss_late_growth_mib})")
    if end["other_fds"] > start["other_fds"] + a.fd_slack:
        new = {fd: t for fd, t in end["fd_targets"].items()
               if start["fd_targets"].get(fd) != t}
        problems.append(f"non-database fds {start['other_fds']} -> {end['other_fds']} "
                        f"(slack {a.fd_slack}); new: {new}")
    threads = a.http_threads or max(1, len(os.sched_getaffinity(0)) - 1)  # the daemon's default
    pool = threads + 2
    if end["db_fds"] > pool + 4:
        problems.append(f"{end['db_fds']} database connections (pool {pool} + worker and "
                        f"listener)")
    if end["threads"] > start["threads"]:
        problems.append(f"threads {start['threads']} -> {end['threads']}")
    return problems


def report(lr, res, start, end, m0, m1, st, state_problems):
    a = lr.args
    w = parse_wrk(res["wrk_text"])
    stats = lr.stats
    samples = lr.sampler.samples if lr.sampler else []
    problems = []
    cmd = " ".join(shlex.quote(x) for x in ["/usr/bin/python3", "bench/load.py"] + lr.argv_used)
    version = run(["postconf", "-c", lr.pf.config_dir, "-h", "mail_version"]).stdout.strip()
    print()
    print(f"$ {cmd}")
    print(f"daemon {os.path.relpath(lr.binary, REPO_ROOT)} (http_threads "
          f"{threads}, log_level {a.log_level}), Postfix {version}, "
          f"PostgreSQL 15 (fsync off), {os.cpu_count()} CPUs, "
          f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, seed {lr.seed}")
    print(f"load: {a.seconds} s after a {a.warmup} s warm-up; wrk -t{a.threads} "
          f"-c{a.connections} (keep-alive) over {lr.n_paths} GET paths; writers: "
          f"{a.policy_writers} policy, {a.settings_writers} settings "
          f"(pause {a.settings_pause} s), 1 bulk ({a.seed_policies} seed + {a.bulk_size} rows "
          f"every {a.bulk_every:g} s); all on the same {os.cpu_count()} CPUs")
    print(f"load average before/after the run: {res['loadavg0'][0]:.2f} / "
          f"{res['loadavg1'][0]:.2f} (other work on this machine skews the figures)")
    print(f"CPU during the run: daemon {res['daemon_cpu']:.1f} s "
          f"({res['daemon_cpu'] / res['wall'] * 100:.0f}% of one CPU), wrk {res['wrk_cpu']:.1f} s "
          f"({res['wrk_cpu'] / res['wall'] * 100:.0f}%); the rest goes to PostgreSQL, Postfix's "
          f"tools and this script")

    # GETs
    s, lat = w["summary"], w["latency_us"]
    secs = s["duration_us"] / 1e6
    codes = w["status"]
    total = sum(codes.values())
    print()
    print(f"GETs (wrk): {int(s['requests'])} requests in {secs:.1f} s = "
          f"{s['requests'] / secs:.0f} requests/s, {s['bytes'] / secs / 1e6:.1f} MB/s")
    print(f"  latency p50 {lat['p50'] / 1000:.2f} ms, p90 {lat['p90'] / 1000:.2f} ms, "
          f"p99 {lat['p99'] / 1000:.2f} ms, p99.9 {lat['p999'] / 1000:.2f} ms, "
          f"max {lat['max'] / 1000:.2f} ms (mean {lat['mean'] / 1000:.2f})")
    print(f"  statuses {dict(sorted(codes.items()))}; socket errors connect {int(s['connect'])} "
          f"read {int(s['read'])} write {int(s['write'])} timeout {int(s['timeout'])}")
    get_5xx = sum(n for c, n in codes.items() if c >= 500)
    # 404 comes only from the one path that names no row (1 in n_paths); everything else is 200
    allowed_404 = int(total * lr.n_404_paths / lr.n_paths) + a.connections + 2
    bad_get = {c: n for c, n in codes.items() if c not in (200, 404)}
    if bad_get:
        problems.append(f"GET statuses other than 200/404: {bad_get}; samples: {w['bad'][:5]}")
    if codes.get(404, 0) > allowed_404:
        problems.append(f"{codes.get(404)} GET 404s, expected about {allowed_404} "
                        f"(the nosuch path)")
    if any(s[k] for k in ("connect", "read", "write", "timeout")):
        problems.append("wrk socket errors: " + ", ".join(
            f"{k} {int(s[k])}" for k in ("connect", "read", "write", "timeout") if s[k]))

    # writes
    print()
    all_lat = [x for op, v in stats.latency.items() for x in v
               if not op.startswith(("job GET", "settings GET", "policy GET", "collection GET"))
               and "-> applied" not in op]
    print(f"writes: {len(all_lat)} write requests, p50 {ms(pct(all_lat, 50))} ms, "
          f"p99 {ms(pct(all_lat, 99))} ms, max {ms(max(all_lat) if all_lat else None)} ms "
          f"(each waits for its job; the one worker runs them in turn)")
    print(f"  {'operation':34} {'count':>6}  {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7}  statuses")
    for op in sorted(stats.status):
        v = stats.latency[op]
        print(f"  {op:34} {len(v):>6}  {ms(pct(v, 50)):>7} {ms(pct(v, 99)):>7} "
              f"{ms(max(v)):>7}  {dict(sorted(stats.status[op].items()))}")
    write_5xx = sum(n for c in stats.status.values() for code, n in c.items() if code >= 500)
    for op, method, path, status, body in stats.unexpected[:10]:
        problems.append(f"unexpected {status} for {op}: {method} {path}: {body}")
    if len(stats.unexpected) > 10:
        problems.append(f"... {len(stats.unexpected) - 10} more unexpected write statuses")
    for op, method, path, err in stats.transport_errors[:10]:
        problems.append(f"transport error in {op}: {method} {path}: {err}")
    problems += stats.checks
    # the warm-up is held to the same rules (its figures are not shown)
    wstats, wwrk = lr.warm
    wbad = {c: n for c, n in wwrk["status"].items() if c not in (200, 404)}
    if wbad:
        problems.append(f"warm-up GET statuses other than 200/404: {wbad}: {wwrk['bad'][:5]}")
    for op, method, path, status, body in wstats.unexpected[:5]:
        problems.append(f"warm-up: unexpected {status} for {op}: {method} {path}: {body}")
    for op, method, path, err in wstats.transport_errors[:5]:
        problems.append(f"warm-up: transport error in {op}: {method} {path}: {err}")
    problems += [f"warm-up: {c}" for c in wstats.checks]

    # jobs, Postfix, metrics
    APPLIED, FAILED, RELOAD_OK = '{result="applied"}', '{result="failed"}', '{result="ok"}'

    def delta(name, labels=""):
        """Of one family (all its label sets), or of one series with labels '{k="v"}'."""
        if labels:
            return int(m1[1].get((name, labels), 0) - m0[1].get((name, labels), 0))
        return int(m1[0].get(name, 0) - m0[0].get(name, 0))
    metric_5xx = int(sum(v - m0[1].get(k, 0) for k, v in m1[1].items()
                         if k[0] == "smtptlsd_http_requests_total" and
                         re.search(r'code="(5|other)', k[1])))
    print()
    print(f"jobs applied {delta('smtptlsd_jobs_total', APPLIED)}, failed/refused "
          f"{delta('smtptlsd_jobs_total', FAILED)}; postmap runs "
          f"{delta('smtptlsd_postmap_runs_total')}; Postfix reloads "
          f"{delta('smtptlsd_postfix_reloads_total', RELOAD_OK)}; reconciles "
          f"{delta('smtptlsd_reconciles_total')}; database reconnects "
          f"{delta('smtptlsd_database_reconnects_total')}  (deltas of /metrics over the run)")
    print("server-side time per route over the run (smtptlsd_http_request_duration_seconds; a "
          "route's writes count with their wait for the job):")
    rows = []
    for (name, labels), v in m1[1].items():
        if name == "smtptlsd_http_request_duration_seconds_count":
            n = v - m0[1].get((name, labels), 0)
            sm = (m1[1].get(("smtptlsd_http_request_duration_seconds_sum", labels), 0) -
                  m0[1].get(("smtptlsd_http_request_duration_seconds_sum", labels), 0))
            if n:
                rows.append((re.sub(r'^\{route="(.*)"\}$', r"\1", labels), int(n), sm / n))
    for route, n, mean in sorted(rows, key=lambda r: -r[1] * r[2]):
        print(f"  {route:34} {n:>7} requests, mean {mean * 1000:8.2f} ms, busy {n * mean:6.1f} s")
    print(f"5xx: {get_5xx} GET (wrk), {write_5xx} write (pool), {metric_5xx} in "
          f"smtptlsd_http_requests_total")
    ok_writes = sum(n for op, c in stats.status.items() for code, n in c.items()
                    if 200 <= code < 300 and not op.startswith(("job GET", "settings GET",
                                                                "policy GET", "collection GET"))
                    and "-> applied" not in op)
    n412 = sum(c.get(412, 0) for c in stats.status.values())
    if delta('smtptlsd_jobs_total', APPLIED) != ok_writes:
        problems.append(f"jobs applied {delta('smtptlsd_jobs_total', APPLIED)} != 2xx writes "
                        f"{ok_writes}")
    if delta('smtptlsd_jobs_total', FAILED) != n412:
        problems.append(f"jobs failed/refused {delta('smtptlsd_jobs_total', FAILED)} != 412 "
                        f"answers {n412}")
    if get_5xx or write_5xx or metric_5xx:
        problems.append(f"5xx replies: {get_5xx} GET, {write_5xx} write, {metric_5xx} counted "
                        f"by the daemon")
    if delta("smtptlsd_database_reconnects_total"):
        problems.append("the daemon reconnected to PostgreSQL during the run")

    # process
    rss = [x[1] for x in samples] + [start["rss"], end["rss"]]
    fds = [x[2] for x in samples] + [start["fds"], end["fds"]]
    thr = [x[3] for x in samples] + [start["threads"], end["threads"]]
    print()
    print(f"RSS   start {start['rss'] / 1024:.1f} MiB, max {max(rss) / 1024:.1f} MiB, end "
          f"{end['rss'] / 1024:.1f} MiB  ({len(samples)} samples every "
          f"{a.sample_interval:g} s; start/end quiescent)")
    if len(samples) >= 4:
        print(f"      during the run: first sample {samples[0][1] / 1024:.1f}, middle "
              f"{samples[len(samples) // 2][1] / 1024:.1f}, last {samples[-1][1] / 1024:.1f} MiB")
    print(f"fds   start {start['fds']}, max {max(fds)}, end {end['fds']}  (non-database "
          f"{start['other_fds']} -> {end['other_fds']}, database connections {start['db_fds']} "
          f"-> {end['db_fds']}; max includes wrk's {a.connections} connections)")
    print(f"threads start {start['threads']}, max {max(thr)}, end {end['threads']}")
    problems += growth_check(samples, start, end, a)

    # log
    errors = lr.d.unexpected_errors()
    warnings = [ln for ln in lr.d.log_lines() if ln.startswith("<4>")]
    print()
    print(f"daemon log: {len(errors)} error lines (<0>..<3>), {len(warnings)} warnings (<4>), "
          f"{lr.d.log_path if a.keep else 'log removed with the sandbox (--keep keeps it)'}")
    for ln in errors[:10]:
        print(f"  {ln}")
    for ln in sorted(set(re.sub(r"\d+", "N", x) for x in warnings))[:10]:
        print(f"  warning kind: {ln}")
    if errors:
        problems.append(f"{len(errors)} error lines in the daemon log")
    notes = list(lr.contract_notes) + [f"{t} ({n}x)" for t, n in stats.notes.items()]
    if notes:
        print("contract gaps seen (not load faults; they do not fail the run):")
        for n in notes:
            print(f"  - {n}")
    print(f"final status: state {st.get('state')}, generation {st.get('applied_generation')}/"
          f"{st.get('desired_generation')}, certificate {st.get('certificate')}")
    problems += state_problems

    print()
    if problems:
        print(f"FAIL ({len(problems)} problems):")
        for p in problems:
            print(f"  - {p}")
    else:
        print("PASS: no 5xx, no unexpected status, no error line, fds back to the start count, "
              "RSS within bounds, final state in sync")
    print()
    print("wrk's own report:")
    for line in res["wrk_text"].splitlines():
        if not line.startswith("LOAD "):
            print(f"  {line}")
    return 1 if problems else 0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--seconds", type=int, default=60, help="length of the measured run")
    ap.add_argument("--warmup", type=int, default=8, help="length of the warm-up (same load)")
    ap.add_argument("--binary", default=os.path.join(REPO_ROOT, "build", "smtptlsd"),
                    help="the daemon (release build)")
    ap.add_argument("--threads", type=int, default=2, help="wrk threads")
    ap.add_argument("--connections", type=int, default=32, help="wrk connections")
    ap.add_argument("--http-threads", type=int, default=0,
                    help="daemon http_threads (0 = one less than the CPUs, the daemon's default)")
    ap.add_argument("--policy-writers", type=int, default=3)
    ap.add_argument("--settings-writers", type=int, default=2)
    ap.add_argument("--settings-pause", type=float, default=0.25,
                    help="seconds a settings writer waits between two writes")
    ap.add_argument("--seed-policies", type=int, default=1000,
                    help="unmanaged rows present throughout (every bulk push keeps them)")
    ap.add_argument("--bulk-size", type=int, default=300, help="rows a bulk push changes")
    ap.add_argument("--bulk-every", type=float, default=10, help="seconds between bulk pushes")
    ap.add_argument("--sample-interval", type=float, default=1.0)
    ap.add_argument("--fd-slack", type=int, default=2,
                    help="non-database fds allowed above the start count at the end")
    ap.add_argument("--rss-growth-mib", type=float, default=48,
                    help="RSS growth allowed from start to end (see growth_check)")
    ap.add_argument("--rss-late-growth-mib", type=float, default=12,
                    help="RSS growth allowed over the second half of the run")
    ap.add_argument("--skip-path", action="append", default=[], metavar="REGEX",
                    help="leave the GET paths matching REGEX out of wrk's rotation (repeatable)")
    ap.add_argument("--log-level", default="info", help="daemon log_level")
    ap.add_argument("--random-seed", type=int, default=None)
    ap.add_argument("--keep", action="store_true", help="keep the sandbox directory")
    args = ap.parse_args(argv)
    argv_used = list(argv if argv is not None else sys.argv[1:])

    binary = os.path.abspath(args.binary)
    for path, hint in ((binary, "build it: bash scripts/build build"), (WRK, "apt-get install wrk"),
                       (LUA, "bench/load.lua is missing")):
        if not os.path.exists(path):
            print(f"load: {path} not found ({hint})", file=sys.stderr)
            return 2
    seed = args.random_seed if args.random_seed is not None else int(time.time())
    for s in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, on_signal)
    # also when started from a non-interactive shell with &, which leaves SIGINT ignored
    signal.signal(signal.SIGINT, signal.default_int_handler)
    lr = LoadRun(args, argv_used, binary, seed)
    try:
        try:
            lr.setup()
        except Exception as e:
            print(f"load: set-up failed: {e}", file=sys.stderr)
            if lr.d is not None:
                print(lr.d.log_tail(), file=sys.stderr)
            return 2
        log(f"warm-up: {args.warmup} s")
        warm = lr.phase(args.warmup, measured=False)
        lr.warm = (lr.stats, parse_wrk(warm["wrk_text"]))
        lr.quiesce()
        start = lr.point()
        m0 = lr.metrics()
        log(f"start: RSS {start['rss'] / 1024:.1f} MiB, {start['fds']} fds, "
            f"{start['threads']} threads; running {args.seconds} s")
        lr.sampler = None
        res = lr.phase(args.seconds, measured=True)
        lr.quiesce()
        end = lr.point(settle_fds_to=start["other_fds"])
        m1 = lr.metrics()
        st, state_problems = lr.final_state_checks()
        return report(lr, res, start, end, m0, m1, st, state_problems)
    except (KeyboardInterrupt, Interrupted) as e:
        print(f"load: interrupted ({str(e) or 'Ctrl-C'}); cleaning up", file=sys.stderr)
        return 130
    except Exception as e:
        print(f"load: FAIL: {e}", file=sys.stderr)
        if lr.d is not None and lr.d.proc is not None:
            print(f"--- daemon log tail ---\n{lr.d.log_tail()}", file=sys.stderr)
        return 1
    finally:
        lr.cleanup()


if __name__ == "__main__":
    sys.exit(main())
