#!/usr/bin/python3
"""GET /api/v1/state at N policies: wall time and the daemon's memory (issue 11, the whole state).

The same sandbox as bench/bulk_policies.py (release build by default). Pushes N policies with one
bulk replace, resets the daemon's peak RSS (`echo 5 > /proc/PID/clear_refs`), then GETs the whole
state (--rounds times) and prints the size of the document, each GET's wall time, VmRSS before and
VmHWM after; then writes the document back (PUT, no change: no new generation) and times that.
Standard library only, run as root:

  /usr/bin/python3 bench/state.py [--policies 100000] [--rounds 3] [--binary build/smtptlsd]
                                  [--keep]
"""
import argparse
import json
import os
import shlex
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bulk_memory import reset_peak  # noqa: E402
from bulk_policies import bench_sandbox, daemon_binary  # noqa: E402
from tests.harness.util import proc_status_kib  # noqa: E402


def cpu_seconds(pid):
    """utime + stime of a process (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--policies", type=int, default=100000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--binary")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args(argv)
    binary = daemon_binary(args.binary)
    if not binary:
        return 2
    print("$ " + shlex.join([sys.executable] + sys.argv))
    items = [{"destination": f"s{i:07d}.example", "level": "encrypt" if i % 2 else "may",
              "note": f"row {i}"} for i in range(args.policies)]
    config = {"bulk_body_limit": "256M"}
    with bench_sandbox(binary, keep=args.keep, config=config) as (_, _pg, _pf, d):
        r = d.http("PUT", "/api/v1/tls-policies?wait=300", {"items": items}, timeout=600)
        assert r.status == 200, r
        pid = d.pid
        rss = proc_status_kib(pid, "VmRSS")
        reset_peak(pid)
        for i in range(args.rounds):
            t, cpu = time.monotonic(), cpu_seconds(pid)
            g = d.http("GET", "/api/v1/state", timeout=600)
            dt, cpu = time.monotonic() - t, cpu_seconds(pid) - cpu
            assert g.status == 200 and len(g.body["tls_policies"]) == args.policies, g.status
            print(f"GET /api/v1/state #{i + 1}: {len(g.raw) / 1e6:.1f} MB in {dt:.2f} s wall, "
                  f"{cpu:.2f} s CPU of the daemon (load average {os.getloadavg()[0]:.1f})")
        hwm = proc_status_kib(pid, "VmHWM")
        print(f"daemon VmRSS before {rss / 1024:.1f} MiB, VmHWM after {hwm / 1024:.1f} MiB "
              f"(+{(hwm - rss) / 1024:.1f} MiB for a {len(g.raw) / 1e6:.1f} MB document)")
        gen = g.body["generation"]
        t = time.monotonic()
        p = d.http("PUT", "/api/v1/state?wait=300", g.raw, timeout=600)
        dt = time.monotonic() - t
        assert p.status == 200 and p.body["generation"] == gen, (p.status, p.body)
        print(f"PUT /api/v1/state (the same document, no change): {dt:.2f} s, "
              f"generation stays {gen}; tls_policies {json.dumps(p.body['tls_policies'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
