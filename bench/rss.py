#!/usr/bin/python3
"""The daemon's resident memory (issue 17): idle, with N policies, with many idle keep-alive
connections.

Starts the same private PostgreSQL (no statement log), Postfix and daemon as bench/bulk_policies.py
(its bench_sandbox(), the release build by default; per_ip_connection_limit 0 and connection_limit
above --connections, since every connection comes from 127.0.0.1, and connection_timeout
--connection-timeout so that the idle connections stay; this process's RLIMIT_NOFILE, which the
daemon inherits, raised to fit them) and reads /proc/PID/status at each stage, once the worker is
idle (/metrics: smtptlsd_state{state="in_sync"} 1, smtptlsd_queue_depth 0):

  idle      right after the start
  seeded    after seeding as bench/compare.py does (three certificates, one bound, --policies
            policies by one bulk replace), then a GET of a page of 100 and of /api/v1/status
  clients   with --connections idle keep-alive HTTP/1.1 connections open to it, each having made
            one authenticated GET /api/v1/settings (checked: the daemon holds that many sockets on
            its port)
  closed    after the client closed them all (the daemon holds none)

Printed per stage: VmRSS, VmHWM (the peak so far: the seeding's bulk replace is in it), RssAnon,
RssFile, threads, open fds; for the clients stage the growth per connection; then, for the clients
stage, /proc/PID/smaps_rollup and the mappings holding the most resident memory (grouped by name,
[anon] for anonymous ones: malloc's arenas), to say where the memory is; and issue 17's goals, each
met or missed:

  VmRSS <= --goal-idle-mib (32) idle; <= --goal-loaded-mib (96) with the policies and the
  connections.

Exit status 1 when a goal is missed, a request fails, a connection was not held or the daemon
logged a <0>..<3> line; 2 on a set-up problem. Standard library only, run as root:

  /usr/bin/python3 bench/rss.py [--policies 100000] [--connections 1000] [--set KEY=VALUE]
                                [--binary build/smtptlsd] [--keep]
"""
import argparse
import collections
import datetime
import http.client
import os
import shlex
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bulk_policies import REPO_ROOT, bench_sandbox, daemon_binary  # noqa: E402
from compare import machine, seed  # noqa: E402
from concurrent_writes import metrics, raise_nofile, verdict  # noqa: E402
from tests.harness.daemon import _tcp_sockets  # noqa: E402
from tests.harness.util import run, wait_until  # noqa: E402

STATUS_KEYS = ("VmRSS", "VmHWM", "RssAnon", "RssFile", "Threads")


def log(msg):
    print(f"rss: {msg}", file=sys.stderr, flush=True)


def proc_status(pid):
    """{key: value} of /proc/PID/status for STATUS_KEYS (kB figures in KiB) and "fds"."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in STATUS_KEYS:
                out[k] = int(v.split()[0])
    out["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    return out


def smaps_rollup(pid):
    """The kB lines of /proc/PID/smaps_rollup: [(key, KiB)]."""
    rows = []
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3 and parts[2] == "kB":
                rows.append((parts[0].rstrip(":"), int(parts[1])))
    return rows


def smaps_top(pid, n=8):
    """The n names of /proc/PID/smaps holding the most Rss: [(name, Rss KiB, mappings)]; an
    anonymous mapping is [anon] ([heap], [stack] as the kernel names them)."""
    rss, count = collections.Counter(), collections.Counter()
    name = None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            first = line.split(None, 1)[0]
            if not first.endswith(":"):  # a mapping's header: range perms offset dev inode [path]
                parts = line.split(None, 5)
                name = parts[5].strip() if len(parts) > 5 else "[anon]"
                count[name] += 1
            elif first == "Rss:":
                rss[name] += int(line.split()[1])
    return [(k, v, count[k]) for k, v in rss.most_common(n)]


def client_sockets(d):
    """The daemon's TCP sockets on its HTTP port, the listening one left out."""
    tcp = _tcp_sockets(d.pid)
    n = 0
    for fd in os.listdir(f"/proc/{d.pid}/fd"):
        try:
            target = os.readlink(f"/proc/{d.pid}/fd/{fd}")
        except FileNotFoundError:
            continue
        if target.startswith("socket:["):
            ports = tcp.get(target[8:-1])
            if ports and ports[0] == d.port and ports[1] != 0:
                n += 1
    return n


def wait_idle(d, timeout=120):
    """Until the worker is idle: smtptlsd_state{state="in_sync"} 1 and smtptlsd_queue_depth 0."""
    def idle():
        m = metrics(d)
        return (m.get(("smtptlsd_state", '{state="in_sync"}')) == 1
                and m.get(("smtptlsd_queue_depth", "")) == 0)
    wait_until(idle, timeout, "the worker idle (in_sync, no queued job)", interval=0.2)


def mib(kib):
    return f"{kib / 1024:.1f}"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--policies", type=int, default=100000,
                    help="policies seeded (default 100000)")
    ap.add_argument("--connections", type=int, default=1000,
                    help="idle keep-alive connections held open (default 1000)")
    ap.add_argument("--connection-timeout", default="10m",
                    help="the daemon's connection_timeout (default 10m: the idle ones stay)")
    ap.add_argument("--goal-idle-mib", type=float, default=32, help="goal: idle VmRSS (32)")
    ap.add_argument("--goal-loaded-mib", type=float, default=96,
                    help="goal: VmRSS with the policies and the connections (96)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="one more daemon configuration key (repeatable), e.g. "
                         "connection_memory_limit=16K")
    ap.add_argument("--binary", default=None,
                    help="the daemon (default build/smtptlsd, else build-asan/smtptlsd)")
    ap.add_argument("--keep", action="store_true", help="keep the sandbox directory")
    args = ap.parse_args(argv)
    binary = daemon_binary(args.binary)
    extra = dict(kv.split("=", 1) for kv in args.set if "=" in kv)
    if not binary or args.policies < 1 or args.connections < 0 or len(extra) != len(args.set):
        return 2
    raise_nofile(2 * args.connections + 512)  # this process's end and the daemon's

    shown = os.path.relpath(binary, REPO_ROOT)
    print("$ " + shlex.join(["/usr/bin/python3", "bench/rss.py"] +
                            list(argv if argv is not None else sys.argv[1:])))
    print(f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; {machine()}")
    version = run([binary, "--version"], check=False).stdout.strip()
    print(f"daemon {binary if shown.startswith('..') else shown} ({version}, http_threads 2), "
          f"PostgreSQL 15 (fsync off); {args.policies} policies, {args.connections} idle "
          f"keep-alive connections"
          + "".join(f", {k} {v}" for k, v in extra.items()), flush=True)

    stages = []  # (name, what, proc_status)
    problems = []
    config = {"per_ip_connection_limit": 0, "connection_limit": args.connections + 64,
              "connection_timeout": args.connection_timeout, **extra}
    with bench_sandbox(binary, keep=args.keep, config=config,
                       statement_log=False) as (base, _pg, _pf, d):
        pid = d.pid
        wait_idle(d)
        stages.append(("idle", "after the start", proc_status(pid)))

        log(f"seeding 3 certificates and {args.policies} policies")
        seed(d, base, args.policies)
        for path in ("/api/v1/tls-policies?limit=100", "/api/v1/status"):
            r = d.get(path, timeout=60)
            if r.status != 200:
                problems.append(f"GET {path}: {r}")
        wait_idle(d)
        stages.append(("seeded", f"{args.policies} policies, a page and the status read",
                       proc_status(pid)))

        token = d.add_token("rss-read", "read")
        log(f"opening {args.connections} keep-alive connections")
        conns = []
        try:
            for i in range(args.connections):
                c = http.client.HTTPConnection(d.host, d.port, timeout=30)
                conns.append(c)
                c.request("GET", "/api/v1/settings", headers={"Authorization": f"Bearer {token}"})
                resp = c.getresponse()
                resp.read()
                if resp.status != 200 or resp.will_close:
                    problems.append(f"connection {i}: GET /api/v1/settings {resp.status}, "
                                    f"will_close {resp.will_close}")
                    break
            held = client_sockets(d)
            if held < args.connections:
                problems.append(f"the daemon holds {held} client connections, not "
                                f"{args.connections}")
            st = proc_status(pid)
            stages.append(("clients", f"{args.connections} idle keep-alive connections "
                           f"(the daemon holds {held})", st))
            rollup, top = smaps_rollup(pid), smaps_top(pid)
        finally:
            for c in conns:
                c.close()
        wait_until(lambda: client_sockets(d) == 0, 60,
                   "the daemon to close the connections")
        stages.append(("closed", "the connections closed by the client", proc_status(pid)))
        daemon_errors = d.unexpected_errors()
        alive = d.alive()

    print()
    print(f"{'stage':8} {'VmRSS MiB':>9} {'VmHWM MiB':>9} {'RssAnon':>8} {'RssFile':>8} "
          f"{'threads':>7} {'fds':>5}  what")
    for name, what, st in stages:
        print(f"{name:8} {mib(st['VmRSS']):>9} {mib(st['VmHWM']):>9} {mib(st['RssAnon']):>8} "
              f"{mib(st['RssFile']):>8} {st['Threads']:>7} {st['fds']:>5}  {what}")
    by = {name: st for name, _, st in stages}
    if args.connections:
        grow = by["clients"]["VmRSS"] - by["seeded"]["VmRSS"]
        print(f"per connection: {grow / args.connections:.1f} KiB of VmRSS "
              f"({mib(grow)} MiB for {args.connections})")
    print()
    print("smaps_rollup with the connections open (MiB): " + ", ".join(
        f"{k} {mib(v)}" for k, v in rollup if v))
    print("most resident mappings with the connections open (MiB, mappings):")
    for name, kib, n in top:
        print(f"  {mib(kib):>7}  {n:>4}  {name}")
    print()
    goals = [
        (f"idle VmRSS <= {args.goal_idle_mib:g} MiB", by["idle"]["VmRSS"],
         args.goal_idle_mib),
        (f"VmRSS <= {args.goal_loaded_mib:g} MiB with {args.policies} policies and "
         f"{args.connections} idle keep-alive connections", by["clients"]["VmRSS"],
         args.goal_loaded_mib),
    ]
    for what, kib, bound in goals:
        ok = kib <= bound * 1024
        diff = kib / 1024 - bound
        print(f"goal: {what}: {'met' if ok else 'MISSED'} ({mib(kib)} MiB, "
              f"{'by ' + f'{-diff:.1f}' + ' MiB to spare' if ok else f'{diff:.1f} MiB over'})")
        if not ok:
            problems.append(f"goal missed: {what} ({mib(kib)} MiB)")
    return verdict(problems, daemon_errors, alive)


if __name__ == "__main__":
    sys.exit(main())
