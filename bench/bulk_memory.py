#!/usr/bin/python3
"""Peak memory of the daemon for one bulk replace of a body of --mib MiB (issue 10, item 6).

Starts the same private PostgreSQL, Postfix and daemon as bench/bulk_policies.py (its
bench_sandbox(), the release build by default), makes a valid bulk body of about --mib MiB (short
destinations; each item's note is --note-bytes long, so that the body fits ~100,000 rows rather than
a million: the note is stored but never rendered into the map), resets the daemon's peak RSS
(`echo 5 > /proc/PID/clear_refs`: VmHWM := VmRSS), pushes the body with --concurrent parallel
requests (more than one: all but one are refused before their bodies are sent) and prints
VmRSS before, VmHWM after, the growth and its ratio to the body size. Standard library only, run as
root:

  /usr/bin/python3 bench/bulk_memory.py [--mib 64] [--note-bytes 600] [--concurrent 1]
                                        [--binary build/smtptlsd] [--keep]
"""
import argparse
import datetime
import json
import os
import select
import shlex
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bulk_policies import REPO_ROOT, bench_sandbox, daemon_binary  # noqa: E402
from tests.harness.daemon import RawRequest  # noqa: E402
from tests.harness.util import proc_status_kib  # noqa: E402


def bulk_body(mib, note_bytes, prefix="m"):
    """(body bytes, number of items): a valid bulk replace of about mib MiB."""
    note = "n" * note_bytes
    items = []
    size, target, i = 12, mib << 20, 0
    while True:
        item = {"destination": f"{prefix}{i:07d}.example", "level": "encrypt" if i % 2 else "may",
                "note": note}
        n = len(json.dumps(item)) + 2
        if size + n > target:
            break
        items.append(item)
        size += n
        i += 1
    return json.dumps({"items": items}).encode(), len(items)


def reset_peak(pid):
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")


def print_timeline(d, results, samples, t0):
    """VmRSS's peak per half second since the push began, and the job's marks on the same clock
    (its row's created_at, started_at, finished_at: HTTP thread before created_at, worker after)."""
    marks = []
    for status, _, _, what in results:
        job = (what or {}).get("job") if isinstance(what, dict) else None
        if job:
            row = d.get(f"/api/v1/jobs/{job}").body
            for k in ("created_at", "started_at", "finished_at"):
                if row.get(k):
                    at = datetime.datetime.fromisoformat(row[k].replace("Z", "+00:00"))
                    marks.append((at.timestamp() - t0, f"job {job} {k.split('_')[0]}"))
    step, rows = 0.5, {}
    for t, kib in samples:
        k = int((t - t0) / step)
        rows[k] = max(rows.get(k, 0), kib)
    for k in sorted(rows):
        here = [m for at, m in marks if k * step <= at < (k + 1) * step]
        print(f"  {k * step:6.1f} s  VmRSS {rows[k] / 1024:6.0f} MiB  {' '.join(here)}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mib", type=int, default=64, help="body size in MiB (default 64)")
    ap.add_argument("--note-bytes", type=int, default=600,
                    help="length of each item's note, at most 1024 (default 600)")
    ap.add_argument("--concurrent", type=int, default=1,
                    help="bulk requests sent at the same time (default 1)")
    ap.add_argument("--binary", default=None,
                    help="the daemon (default build/smtptlsd, else build-asan/smtptlsd)")
    ap.add_argument("--keep", action="store_true", help="keep the sandbox directory")
    ap.add_argument("--timeline", action="store_true",
                    help="also print VmRSS every 0.5 s and when the job was created, started and "
                         "finished (which side of the queue holds the peak)")
    args = ap.parse_args(argv)
    binary = daemon_binary(args.binary)
    if not binary:
        return 2
    body, n_items = bulk_body(args.mib, args.note_bytes)
    # the body limit must let the body in, whatever the default is
    config = {"bulk_body_limit": max(64 << 20, len(body) + (1 << 20))}

    with bench_sandbox(binary, keep=args.keep, config=config) as (base, pg, pf, d):
        pid = d.proc.pid
        time.sleep(1)
        rss0 = proc_status_kib(pid, "VmRSS")
        reset_peak(pid)
        results = [None] * args.concurrent

        def push(k):
            # headers first: a refused bulk is answered before its body, which is then not sent
            req = RawRequest(d, "PUT", "/api/v1/tls-policies?wait=300", len(body))
            try:
                refused = select.select([req.sock], [], [], 3)[0]
                t0 = time.monotonic()  # the time of the body, not of the wait for a refusal
                if not refused:
                    req.send(body)
                status, headers, raw = req.response(timeout=900)
            finally:
                req.close()
            got = json.loads(raw)
            results[k] = (status, headers.get("retry-after"), time.monotonic() - t0,
                          got if status != 200 else {x: got.get(x) for x in
                                                     ("added", "changed", "removed")}
                          | {"job": headers.get("job-id")})

        samples, done = [], threading.Event()

        def sample():
            while not done.is_set():
                samples.append((time.time(), proc_status_kib(pid, "VmRSS")))
                done.wait(0.02)

        sampler = threading.Thread(target=sample)
        sampler.start()
        t_start = time.time() + 3  # the wait for a refusal
        threads = [threading.Thread(target=push, args=(k,)) for k in range(args.concurrent)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        done.set()
        sampler.join()
        hwm = proc_status_kib(pid, "VmHWM")
        rss1 = proc_status_kib(pid, "VmRSS")

        cmd = " ".join(shlex.quote(a) for a in ["/usr/bin/python3", "bench/bulk_memory.py"] +
                       list(argv if argv is not None else sys.argv[1:]))
        print(f"$ {cmd}")
        print(f"daemon {os.path.relpath(binary, REPO_ROOT)}, body {len(body) / 2**20:.1f} MiB, "
              f"{n_items} items, {args.concurrent} concurrent request(s)")
        for k, (status, retry, secs, what) in enumerate(results):
            print(f"  request {k}: HTTP {status} in {secs:.1f} s"
                  + (f", Retry-After {retry}" if retry else "") + f": {json.dumps(what)[:200]}")
        if args.timeline:
            print_timeline(d, results, samples, t_start)
        grew = (hwm - rss0) / 1024
        print(f"VmRSS before {rss0 / 1024:.0f} MiB, peak (VmHWM) {hwm / 1024:.0f} MiB, "
              f"after {rss1 / 1024:.0f} MiB; peak - before = {grew:.0f} MiB = "
              f"{grew * 2**20 / len(body):.1f} x the body")
        return 0


if __name__ == "__main__":
    sys.exit(main())
