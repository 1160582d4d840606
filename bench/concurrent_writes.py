#!/usr/bin/python3
"""A burst of single policy writes at once (issue 17): how the one worker batches them.

Starts the same private PostgreSQL (no statement log), Postfix and daemon as bench/bulk_policies.py
(its bench_sandbox(), the release build by default; per_ip_connection_limit 0 and a
connection_limit above --clients, since every connection comes from 127.0.0.1), seeds --policies
rows with one bulk replace (PUT /api/v1/tls-policies, as bulk_policies.py does), then sends --writes
single writes

  PUT /api/v1/tls-policies/cw-dNNNNN.example  {"level": "encrypt"}

each to a destination of its own, with the default wait (the reply comes when the job is applied),
each on a new connection (Connection: close). The client is one selector loop, not threads: it
opens --clients connections (all of them by default) before the clock starts, then writes every
request back to back, so the requests really are in flight together and the client's own cost stays
small beside the daemon's on a 2-CPU machine; with --clients below --writes a connection is opened
for the next write as soon as a reply is in. Printed: the command and the machine; the time from
the first request sent until the last reply, and until `postmap -q` answers every destination
written with its level in the sandbox's map (polled only after the last reply); p50/p99/max reply
latency (from the request's send to its whole reply); the statuses; the deltas over the burst of
smtptlsd_postmap_runs_total, smtptlsd_postfix_reloads_total{result="ok"},
smtptlsd_jobs_total{result="applied"} and smtptlsd_reconciles_total (/metrics before and after);
the batches (the jobs' generations, from /api/v1/jobs); the CPU of the daemon, of the children it
waited for (postmap...) and of PostgreSQL meanwhile (--statement-log: the statements that took the
most, from PostgreSQL's log; --perf FILE: the daemon's most sampled symbols, linux-perf); and issue
17's goals, each met or missed:

  all --writes applied within --goal-seconds (3), at most --goal-map-builds (20) postmap runs,
  at most --goal-reloads (0) Postfix reloads.

Exit status 1 when a goal is missed, a request failed (no reply, a status other than 200/201, a
202 whose wait ran out), the map does not answer every destination, the jobs applied do not match,
or the daemon logged a <0>..<3> line; 2 on a set-up problem. Standard library only, run as root:

  /usr/bin/python3 bench/concurrent_writes.py [--writes 1000] [--clients N] [--policies 100000]
                                              [--level encrypt] [--wait S] [--statement-log]
                                              [--perf FILE] [--binary build/smtptlsd] [--keep]
"""
import argparse
import collections
import datetime
import json
import os
import resource
import selectors
import re
import shlex
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bulk_policies import REPO_ROOT, PgLog, bench_sandbox, daemon_binary  # noqa: E402
from compare import cpu_seconds, machine, postgres_pids  # noqa: E402
from load import ms, parse_metrics, pct, q  # noqa: E402
from tests.harness.util import run  # noqa: E402

PERF = "/usr/bin/perf"
STATEMENT = re.compile(r"duration: ([0-9.]+) ms  (statement|parse|bind|execute)[^:]*: (.*)")

MAP = "smtptlsd_tls_policy"  # src/apply/layout.h LAYOUT_POLICY_MAP (hash: bench_sandbox's default)
COUNTERS = [  # (label printed, metric name, labels as /metrics writes them)
    ("postmap runs", "smtptlsd_postmap_runs_total", ""),
    ("Postfix reloads ok", "smtptlsd_postfix_reloads_total", '{result="ok"}'),
    ("jobs applied", "smtptlsd_jobs_total", '{result="applied"}'),
    ("jobs failed", "smtptlsd_jobs_total", '{result="failed"}'),
    ("reconciles", "smtptlsd_reconciles_total", ""),
]


def log(msg):
    print(f"concurrent_writes: {msg}", file=sys.stderr, flush=True)


def raise_nofile(need):
    """Raise this process's RLIMIT_NOFILE (the daemon, started by it, inherits it) to at least
    need, as far as the hard limit allows (root may raise that too)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= need:
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(need, soft), max(need, hard)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class Write:
    """One request on its own connection: its bytes, socket, times, status and raw reply."""

    def __init__(self, dest, request):
        self.dest, self.request = dest, request
        self.sock = None
        self.sent_at = self.done_at = None
        self.status = None
        self.error = None
        self.buf = b""

    def reply_complete(self):
        """The status once the whole reply (headers and Content-Length bytes) is in, else None."""
        head, sep, body = self.buf.partition(b"\r\n\r\n")
        if not sep:
            return None
        lines = head.decode("latin-1").split("\r\n")
        length = 0
        for line in lines[1:]:
            k, _, v = line.partition(":")
            if k.strip().lower() == "content-length":
                length = int(v.strip())
        if len(body) < length:
            return None
        return int(lines[0].split()[1])


def burst(host, port, writes, clients, timeout):
    """Send the writes, at most clients connections at a time (connected before the clock starts);
    returns the first send time. Each Write gets sent_at, done_at, status or error."""
    sel = selectors.DefaultSelector()
    pending = list(reversed(writes))

    def connect(w):
        w.sock = socket.create_connection((host, port), timeout=10)
        w.sock.setblocking(False)

    def send(w):
        w.sent_at = time.monotonic()
        w.sock.sendall(w.request)  # small: fits the socket buffer of a fresh connection
        sel.register(w.sock, selectors.EVENT_READ, w)

    def finish(w, error=None):
        sel.unregister(w.sock)
        w.sock.close()
        w.done_at = time.monotonic()
        if error:
            w.error = error
        if pending:
            nxt = pending.pop()
            try:
                connect(nxt)
                send(nxt)
            except OSError as e:
                nxt.error = f"connect/send: {e}"

    first = [pending.pop() for _ in range(min(clients, len(pending)))]
    for w in first:
        connect(w)
    t0 = time.monotonic()
    for w in first:
        send(w)
    deadline = t0 + timeout
    while sel.get_map():
        left = deadline - time.monotonic()
        if left <= 0:
            for key in list(sel.get_map().values()):
                finish(key.data, f"no reply within {timeout} s")
            pending.clear()
            break
        for key, _ in sel.select(min(left, 1.0)):
            w = key.data
            try:
                chunk = w.sock.recv(65536)
            except BlockingIOError:
                continue
            except OSError as e:
                finish(w, f"recv: {e}")
                continue
            w.buf += chunk
            status = w.reply_complete()
            if status is not None:
                w.status = status
                finish(w)
            elif not chunk:
                finish(w, f"connection closed, partial reply {w.buf[:200]!r}")
    for w in pending:
        w.error = w.error or "never sent"
    return t0


def map_answers(pf, dests, level):
    """The destinations `postmap -q - hash:MAP` does not answer with level (all in one run)."""
    path = os.path.join(pf.config_dir, MAP)
    out = run(["postmap", "-c", pf.config_dir, "-q", "-", f"hash:{path}"],
              input="".join(d + "\n" for d in dests), check=False, timeout=60).stdout
    found = {}
    for line in out.splitlines():
        k, _, v = line.partition("\t")
        found[k] = v.split()[0] if v.split() else ""
    return [d for d in dests if found.get(d) != level]


def metrics(d):
    r = d.get("/metrics", timeout=60)
    if r.status != 200:
        raise RuntimeError(f"GET /metrics: {r}")
    return parse_metrics(r.body if isinstance(r.body, str) else r.raw.decode())[1]


def our_jobs(d, since_id):
    """The policies.put jobs with an id above since_id: [job], paging with limit=1000."""
    jobs, after = [], None
    while True:
        path = "/api/v1/jobs?action=policies.put&limit=1000" + (f"&after={after}" if after else "")
        r = d.get(path, timeout=60)
        if r.status != 200:
            raise RuntimeError(f"GET {path}: {r}")
        page = [j for j in r.body["items"] if j["id"] > since_id]
        jobs += page
        after = r.body.get("next")
        if not after or len(page) < len(r.body["items"]):
            return jobs


def children_cpu_seconds(pid):
    """cutime + cstime of pid: the CPU of the children it waited for (postmap, postconf...)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")


def cpu_snapshot(d, pg):
    return {"daemon": cpu_seconds([d.pid]), "daemon's children": children_cpu_seconds(d.pid),
            "PostgreSQL": cpu_seconds(postgres_pids(pg))}


def statements_top(pglog, n=12):
    """From the private cluster's log since pglog's mark: the n statements (the first 100
    characters of their first line) with the most time (parse + bind + execute): [(ms, calls,
    text)], and the total ms."""
    with open(pglog.path, errors="replace") as f:
        f.seek(pglog.offset)
        text = f.read()
    total, calls = collections.Counter(), collections.Counter()
    for m in STATEMENT.finditer(text):
        key = " ".join(m.group(3).split())[:100]
        total[key] += float(m.group(1))
        calls[key] += m.group(2) in ("statement", "execute")
    return [(v, calls[k], k) for k, v in total.most_common(n)], sum(total.values())


def perf_top(data, n=15):
    """The n symbols with the most samples in perf's data file: [line of perf report]."""
    out = run([PERF, "report", "-i", data, "--stdio", "--no-children", "--sort", "dso,sym",
               "--percent-limit", "0.5"], timeout=120, check=False).stdout
    return [line for line in out.splitlines() if line.strip() and not line.startswith("#")][:n]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--writes", type=int, default=1000, help="single writes (default 1000)")
    ap.add_argument("--clients", type=int, default=None,
                    help="connections in flight at once (default: --writes, all at once)")
    ap.add_argument("--policies", type=int, default=100000,
                    help="rows seeded by one bulk replace first (default 100000; 0: none)")
    ap.add_argument("--level", default="encrypt", help="the level each write sets (default "
                    "encrypt)")
    ap.add_argument("--wait", default=None,
                    help="?wait= of the writes (default: none given, the daemon's 30 s)")
    ap.add_argument("--timeout", type=float, default=300,
                    help="bound on the whole burst, seconds (default 300)")
    ap.add_argument("--goal-seconds", type=float, default=3.0,
                    help="goal: every write applied within this (default 3)")
    ap.add_argument("--goal-map-builds", type=int, default=20,
                    help="goal: at most this many postmap runs (default 20)")
    ap.add_argument("--goal-reloads", type=int, default=0,
                    help="goal: at most this many Postfix reloads (default 0)")
    ap.add_argument("--binary", default=None,
                    help="the daemon (default build/smtptlsd, else build-asan/smtptlsd)")
    ap.add_argument("--perf", metavar="FILE", default=None,
                    help="record the daemon with perf (linux-perf) during the burst into FILE and "
                         "print its most sampled symbols")
    ap.add_argument("--statement-log", action="store_true",
                    help="log every statement's duration in PostgreSQL (costs time itself) and "
                         "print the statements that took the most during the burst")
    ap.add_argument("--keep", action="store_true", help="keep the sandbox directory")
    args = ap.parse_args(argv)
    if args.perf and not os.path.exists(PERF):
        print(f"no {PERF}: apt-get install linux-perf", file=sys.stderr)
        return 2
    binary = daemon_binary(args.binary)
    clients = args.clients or args.writes
    if not binary or args.writes < 1 or clients < 1 or args.policies < 0:
        return 2
    raise_nofile(clients + 256)

    shown = os.path.relpath(binary, REPO_ROOT)
    print("$ " + shlex.join(["/usr/bin/python3", "bench/concurrent_writes.py"] +
                            list(argv if argv is not None else sys.argv[1:])))
    print(f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; {machine()} at "
          f"the start")
    version = run([binary, "--version"], check=False).stdout.strip()
    print(f"daemon {binary if shown.startswith('..') else shown} ({version}, http_threads 2), "
          f"PostgreSQL 15 (fsync off), map hash; {args.policies} policies seeded, {args.writes} "
          f"writes {{\"level\": \"{args.level}\"}}, {clients} connections at once, a new one "
          f"per write", flush=True)

    problems = []
    config = {"per_ip_connection_limit": 0, "connection_limit": max(1024, clients + 64)}
    with bench_sandbox(binary, keep=args.keep, config=config,
                       statement_log=args.statement_log) as (_base, pg, pf, d):
        if args.policies:
            log(f"seeding {args.policies} policies")
            items = [{"destination": f"seed-d{i:06d}.example",
                      "level": "encrypt" if i % 2 else "may"} for i in range(args.policies)]
            t = time.monotonic()
            r = d.http("PUT", "/api/v1/tls-policies?wait=300", {"items": items}, timeout=600)
            if r.status != 200:
                raise RuntimeError(f"seeding: {r}")
            log(f"seeded in {time.monotonic() - t:.1f} s")
        r = d.get("/api/v1/jobs?limit=1", timeout=60)
        last_job = r.body["items"][0]["id"] if r.body["items"] else 0
        m0 = metrics(d)

        body = json.dumps({"level": args.level}).encode()
        query = f"?wait={args.wait}" if args.wait is not None else ""
        writes = []
        for i in range(args.writes):
            dest = f"cw-d{i:05d}.example"
            head = (f"PUT /api/v1/tls-policies/{q(dest)}{query} HTTP/1.1\r\n"
                    f"Host: {d.host}:{d.port}\r\nAuthorization: Bearer {d.token}\r\n"
                    f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                    f"Connection: close\r\n\r\n")
            writes.append(Write(dest, head.encode() + body))
        log(f"{args.writes} writes, {clients} connections at once")
        perf = None
        if args.perf:
            perf = subprocess.Popen([PERF, "record", "-F", "999", "-p", str(d.pid), "-o",
                                     args.perf], stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL, start_new_session=True)
            time.sleep(0.5)  # perf attaches to the threads
        pglog = PgLog(pg.logfile)
        pglog.mark()
        cpu0 = cpu_snapshot(d, pg)
        t0 = burst(d.host, d.port, writes, clients, args.timeout)
        cpu1 = cpu_snapshot(d, pg)
        if perf is not None:
            perf.send_signal(signal.SIGINT)
            perf.wait(60)
        done = [w for w in writes if w.done_at is not None and w.status is not None]
        t_replies = max((w.done_at for w in writes if w.done_at), default=t0) - t0
        log(f"last reply after {t_replies:.2f} s; checking the map")

        missing, t_map = [w.dest for w in writes], None
        check_deadline = time.monotonic() + 30
        while missing and time.monotonic() < check_deadline:
            missing = map_answers(pf, [w.dest for w in writes], args.level)
            if not missing:
                t_map = time.monotonic() - t0
            else:
                time.sleep(0.05)
        time.sleep(0.2)  # the log is written by another process
        statements = statements_top(pglog) if args.statement_log else None
        m1 = metrics(d)
        jobs = our_jobs(d, last_job)
        daemon_errors = d.unexpected_errors()
        alive = d.alive()

    print(f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; {machine()} at "
          f"the end")
    print()
    lat = [w.done_at - w.sent_at for w in done]
    statuses = {}
    for w in writes:
        key = w.status if w.status is not None else "no reply"
        statuses[key] = statuses.get(key, 0) + 1
    print(f"{'writes':<44} {args.writes}")
    print(f"{'first request sent -> every reply in':<44} {t_replies:.2f} s")
    print(f"{'first request sent -> postmap -q answers all':<44} "
          + (f"{t_map:.2f} s" if t_map is not None else f"never ({len(missing)} missing after "
             "30 s of checks)"))
    print(f"{'reply latency min / p50 / p99 / max':<44} {ms(min(lat) if lat else None)} / "
          f"{ms(pct(lat, 50))} / {ms(pct(lat, 99))} / {ms(max(lat) if lat else None)} ms")
    print(f"{'statuses':<44} " + ", ".join(f"{k}: {v}" for k, v in sorted(
        statuses.items(), key=lambda kv: str(kv[0]))))
    deltas = {}
    for label, name, labels in COUNTERS:
        deltas[label] = m1.get((name, labels), 0) - m0.get((name, labels), 0)
        print(f"{label:<19} {name + labels:<44} +{deltas[label]:.0f}")
    gens = {}
    for j in jobs:
        gens.setdefault(j.get("generation"), []).append(j)
    sizes = sorted(len(v) for g, v in gens.items() if g is not None)
    print(f"{'batches (distinct generations of the jobs)':<44} {len(sizes)}"
          + (f": sizes {', '.join(map(str, sizes))}" if len(sizes) <= 40 else
             f": sizes min {sizes[0]}, median {sizes[len(sizes) // 2]}, max {sizes[-1]}")
          + (f"; {len(gens[None])} jobs without a generation" if None in gens else ""))
    print("CPU from the first request to the last reply: " + ", ".join(
        f"{k} {cpu1[k] - cpu0[k]:.2f} s" for k in cpu0) + f" (wall {t_replies:.2f} s)")
    if statements:
        top, total = statements
        print(f"PostgreSQL statement time from the first request on: {total:.0f} ms in all; most:")
        for t, n, text in top:
            print(f"  {t:>8.0f} ms {n:>6} x  {text}")
    if args.perf:
        print(f"perf record -F 999 -p PID during the burst ({args.perf}), most sampled:")
        for line in perf_top(args.perf):
            print(f"  {line.strip()}")
    print()

    applied_all = (t_map is not None and statuses.get(200, 0) + statuses.get(201, 0)
                   == args.writes)
    goals = [
        (f"all {args.writes} applied <= {args.goal_seconds:g} s",
         applied_all and t_replies <= args.goal_seconds,
         f"{t_replies:.2f} s" + ("" if applied_all else ", not all applied")),
        (f"<= {args.goal_map_builds} map builds", deltas["postmap runs"] <= args.goal_map_builds,
         f"{deltas['postmap runs']:.0f}"),
        (f"<= {args.goal_reloads} reloads", deltas["Postfix reloads ok"] <= args.goal_reloads,
         f"{deltas['Postfix reloads ok']:.0f}"),
    ]
    for what, ok, got in goals:
        print(f"goal: {what}: {'met' if ok else 'MISSED'} ({got})")
        if not ok:
            problems.append(f"goal missed: {what} ({got})")

    for w in writes:
        if w.error or w.status not in (200, 201):
            problems.append(f"PUT {w.dest}: " + (w.error or f"status {w.status}: "
                                                  f"{w.buf[-300:]!r}"))
            if len(problems) > 20:
                problems.append("(more failed writes left out)")
                break
    if missing:
        problems.append(f"postmap -q does not answer {len(missing)} destinations with "
                        f"{args.level}, e.g. {missing[:3]}")
    if deltas["jobs applied"] != args.writes:
        problems.append(f"jobs applied +{deltas['jobs applied']:.0f}, not {args.writes}")
    return verdict(problems, daemon_errors, alive)


def verdict(problems, daemon_errors, alive):
    """Prints every problem of the run (and the daemon's error lines, and its death) as FAIL:
    lines; the exit status: 1 with any, else 0."""
    problems = problems + [f"daemon log: {line}" for line in daemon_errors]
    if not alive:
        problems.append("the daemon exited during the run")
    for p in problems:
        print(f"FAIL: {p}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
