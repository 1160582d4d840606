#!/usr/bin/python3
"""Where the time of a bulk replace of N TLS policies goes (issue 17): a timeline of each step.

The sandbox of bench/bulk_policies.py (private PostgreSQL logging every statement's duration with
millisecond timestamps, sandbox Postfix) and a daemon at log_level debug. Steps, one request each:

  dry run      PUT /api/v1/tls-policies?dry_run=true of N rows (empty table)
  (a) replace  the same, applied: N rows inserted
  (b) one row  the same N with one row changed
  (c) nothing  the same N again
  (d) renamed  N rows of other names: N removed, N added

For each step it prints the request's wall time and every statement PostgreSQL logged meanwhile
(parse + bind + execute of one PQexecParams summed, on the backend that ran it: H = the HTTP
thread's connection (the job row), W = the worker's), with its start relative to the request and
the gaps on the worker's connection (time spent in the daemon, or in Postfix's tools, between two
statements), then the daemon's debug lines of the step (the bulk's parse/items/submit times, the
batch's phases). Standard library only:

  /usr/bin/python3 bench/bulk_profile.py [--size 100000] [--binary build/smtptlsd] [--keep]
                                         [--steps dry,a,b,c,d] [--min-ms 1]
"""
import argparse
import datetime
import json
import os
import re
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

from bench.bulk_policies import bench_sandbox, daemon_binary  # noqa: E402

# '%m [%p] ' (PostgreSQL 15's default log_line_prefix, set explicitly below)
LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) (\w+) \[(\d+)\] LOG:  duration: "
                  r"([0-9.]+) ms  (statement|parse|bind|execute)[^:]*: (.*)$")


def parse_log(text):
    """[(end, pid, ms, kind, sql)] of the duration lines in text; end in epoch seconds."""
    out = []
    for line in text.splitlines():
        m = LINE.match(line)
        if not m:
            continue
        end = datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S.%f").replace(
            tzinfo=datetime.timezone.utc).timestamp()
        out.append((end, int(m.group(3)), float(m.group(4)), m.group(5), m.group(6)))
    return out


def statements(entries):
    """parse + bind + execute of one statement merged: [(start, end, pid, ms, sql)]."""
    merged, open_ = [], {}
    for end, pid, ms, kind, sql in entries:
        if kind == "statement":
            merged.append([end - ms / 1000, end, pid, ms, sql])
            continue
        cur = open_.get(pid)
        if kind == "parse" or cur is None or cur[4] != sql:
            cur = [end - ms / 1000, end, pid, 0.0, sql]
            open_[pid] = cur
            merged.append(cur)
        cur[1] = end
        cur[3] += ms
        if kind == "execute":
            open_.pop(pid, None)
    return [tuple(x) for x in merged]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=100000)
    ap.add_argument("--binary", default=None)
    ap.add_argument("--steps", default="dry,a,b,c,d")
    ap.add_argument("--min-ms", type=float, default=1.0,
                    help="statements and gaps shorter than this are summed, not listed")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args(argv)
    binary = daemon_binary(args.binary)
    if not binary:
        return 2
    n = args.size
    items = [{"destination": f"d{i:06d}.example", "level": "encrypt" if i % 2 else "may"}
             for i in range(n)]
    full = json.dumps({"items": items})
    items[n // 2] = {"destination": items[n // 2]["destination"], "level": "secure",
                     "match": ["nexthop"]}
    one = json.dumps({"items": items})
    renamed = json.dumps({"items": [{"destination": f"r{i:06d}.example", "level": "may"}
                                    for i in range(n)]})
    plan = {"dry": ("dry run", "?dry_run=true&wait=300", full),
            "a": ("(a) replace all", "?wait=300", full),
            "b": ("(b) one row changed", "?wait=300", one),
            "c": ("(c) nothing changed", "?wait=300", one),
            "d": ("(d) all renamed", "?wait=300", renamed)}
    wanted = [s.strip() for s in args.steps.split(",") if s.strip()]
    print(f"$ /usr/bin/python3 bench/bulk_profile.py {' '.join(argv or sys.argv[1:])}")
    print(f"daemon {binary}, N={n}, body {len(full)} bytes, "
          f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC")
    with bench_sandbox(binary, keep=args.keep, config={"log_level": "debug"}) as (
            base, pg, pf, d):
        pg.psql("ALTER SYSTEM SET log_line_prefix = '%m [%p] '")
        pg.psql("SELECT pg_reload_conf()")
        time.sleep(0.3)
        for key in wanted:
            name, query, body = plan[key]
            pg_off = os.path.getsize(pg.logfile)
            d_off = os.path.getsize(d.log_path)
            t0 = time.time()
            r = d.http("PUT", "/api/v1/tls-policies" + query, body, timeout=600)
            t1 = time.time()
            time.sleep(0.5)  # the log is written by another process
            with open(pg.logfile, errors="replace") as f:
                f.seek(pg_off)
                st = statements(parse_log(f.read()))
            with open(d.log_path, errors="replace") as f:
                f.seek(d_off)
                dlog = [ln for ln in f.read().splitlines()
                        if "bulk replace of" in ln or "batch of" in ln or "-> " in ln]
            counts = {k: r.body.get(k) for k in ("added", "changed", "removed", "unchanged")} \
                if isinstance(r.body, dict) else {}
            print(f"\n== {name}: HTTP {r.status}, {(t1 - t0) * 1000:.0f} ms wall, {counts}")
            if r.status != 200:
                print(f"   {r}")
            st = [s for s in st if s[1] >= t0 - 0.01 and s[0] <= t1 + 0.01]
            pids = {}
            for s in st:
                if s[4].startswith("INSERT INTO jobs"):
                    pids[s[2]] = "H"
            for s in st:
                pids.setdefault(s[2], "W" if any(x[4].startswith("SAVEPOINT") and x[2] == s[2]
                                                 for x in st) else "?")
            total = sum(s[3] for s in st)
            small = [0, 0.0]
            prev_end = {}
            gaps = 0.0
            print(f"   {'start':>8} {'ms':>8}  who  statement (first 110 chars)")
            for start, end, pid, ms, sql in st:
                who = pids[pid]
                if who == "W" and pid in prev_end:
                    gap = (start - prev_end[pid]) * 1000
                    if gap >= args.min_ms:
                        print(f"   {(prev_end[pid] - t0) * 1000:>8.0f} {gap:>8.1f}   W   "
                              f"-- gap: in the daemon (no statement) --")
                    gaps += max(gap, 0)
                prev_end[pid] = end
                if ms < args.min_ms:
                    small[0] += 1
                    small[1] += ms
                    continue
                print(f"   {(start - t0) * 1000:>8.0f} {ms:>8.1f}   {who}   {sql[:110]}")
            wend = max((s[1] for s in st if pids[s[2]] == "W"), default=t1)
            print(f"   {small[0]} statements under {args.min_ms} ms: {small[1]:.1f} ms")
            print(f"   statements in all: {total:.0f} ms; worker gaps {gaps:.0f} ms; "
                  f"request -> first statement "
                  f"{((st[0][0] if st else t0) - t0) * 1000:.0f} ms; last worker statement -> "
                  f"reply {(t1 - wend) * 1000:.0f} ms")
            for ln in dlog:
                print(f"   daemon: {ln}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
