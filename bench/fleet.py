#!/usr/bin/python3
"""Fleet convergence (issue 16): from a write's HTTP reply to "served by every node".

Starts one private PostgreSQL and --nodes daemons (mx01, mx02, ...; the release build by default),
each with its own Postfix sandbox (tests/harness), all on the one database, with a short
node_heartbeat_interval. Two certificates are imported and bound once (warm-up), then --writes
writes of each kind, one at a time, each timed from its reply until every node serves it:

  settings  PUT /api/v1/settings {mode: may, certificate: the other one}; a node serves it when a
            new SMTP connection with STARTTLS to its smtpd gets that certificate (SHA-256)
  policy    PUT /api/v1/tls-policies/dN.fleet.example {level: encrypt}; a node serves it when
            `postmap -q dN.fleet.example hash:<its map>` answers encrypt

Even writes go to mx01, odd ones to mx02, mx03, ... in turn (--receiver mx01: all to mx01). Every
node is watched by a thread of its own: it stats the file the write changes (main.cf, the map's
index) every 5 ms and checks (handshake, postmap -q) every 5 ms once that file changed, and every
100 ms regardless, so that 10 nodes polled at once do not starve the daemons of the 2 CPUs; a
node's time is the end of its first successful check. A thread reads every daemon log
(log_level info) and Postfix maillog every 5 ms and stamps a follower's "generation N was
committed by another node: applying it" and its master's "reload --" line: with the time main.cf
or the map's index was replaced, that says where a follower's time goes (wake, files, reload,
served). A check of 0.5 s or more is counted: Postfix makes a connection that comes during a
reload wait ~1 s (bench/README.md). Prints p50, p99 and max per kind and receiver, per node p50
with that split, the goal line, and the floor: one `postfix reload`, one postmap (+ postmap -s) of
the map, one STARTTLS handshake, one postmap -q, and a Postfix alone reloading to another
certificate while watched the same way. Exits 1 when the goal (--goal, p99 <= 1 s) is missed or a
daemon logged an error. Standard library only, run as root:

  /usr/bin/python3 bench/fleet.py [--nodes 10] [--writes 20] [--heartbeat 1s]
                                  [--receiver alternate|mx01] [--binary build/smtptlsd] [--keep]
"""
import argparse
import datetime
import hashlib
import math
import os
import re
import shlex
import shutil
import smtplib
import ssl
import statistics
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bulk_policies import (REPO_ROOT, daemon_config, daemon_binary,  # noqa: E402
                           postmap_seconds)
from tests.harness.certs import CertFactory  # noqa: E402
from tests.harness.daemon import Daemon  # noqa: E402
from tests.harness.pg import PostgresSandbox  # noqa: E402
from tests.harness.postfix import PostfixSandbox  # noqa: E402
from tests.harness.util import run, short_tempdir  # noqa: E402

POLL = 0.005          # between two stats, or two checks, of one node
FORCED = 0.1          # a check at least this often, changed file or not
MAP = "smtptlsd_tls_policy"  # src/apply/layout.h LAYOUT_POLICY_MAP; hash: its index is MAP.db
WAKE = re.compile(r"generation (\d+) was committed by another node: applying it")
RELOAD = re.compile(r"postfix/master\[\d+\]: reload -- ")  # the master re-read main.cf
STALL = 0.5           # a check at least this long waited for Postfix (see the README)
UNCHECKED = "bench: the reply is timed, not checked against the contract"

_TLS = ssl.create_default_context()
_TLS.check_hostname = False
_TLS.verify_mode = ssl.CERT_NONE


def served(port, timeout=5):
    """A new SMTP connection with STARTTLS to 127.0.0.1:port: the SHA-256 fingerprint served
    (AA:BB:..), or None (no STARTTLS, or any error)."""
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=timeout) as s:
            s.ehlo("bench.fleet.example")
            if not s.has_extn("starttls"):
                return None
            s.starttls(context=_TLS)
            der = s.sock.getpeercert(binary_form=True)
            return ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())
    except (OSError, smtplib.SMTPException, ssl.SSLError):
        return None


def file_key(path):
    """What changes when a file is replaced or rewritten: (inode, mtime ns, size), or None."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


def pct(samples, p):
    """Nearest-rank percentile (p in 0..100); inf when a sample is missing."""
    s = sorted(samples)
    return s[max(0, math.ceil(p / 100 * len(s)) - 1)] if s else float("nan")


def ms(x):
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else \
        ("never" if math.isinf(x) else f"{x * 1000:.0f}")


class Node:
    """One daemon with its Postfix sandbox."""

    def __init__(self, name, pf, d):
        self.name, self.pf, self.d = name, pf, d
        self.main_cf = pf.main_cf
        self.map_text = os.path.join(pf.config_dir, MAP)
        self.map_index = self.map_text + ".db"

    def map_answer(self, key):
        return self.pf.postmap("-q", key, f"hash:{self.map_text}", check=False).strip() or None


class LogStamps(threading.Thread):
    """Reads every node's daemon log and Postfix maillog every POLL seconds; stamps each
    follower's wake line and each master's reload line with the monotonic time it was read
    (resolution POLL; the maillog line goes through postlogd first)."""

    def __init__(self, nodes):
        super().__init__(daemon=True)
        self.logs = [(i, path, rx) for i, n in enumerate(nodes)
                     for path, rx in ((n.d.log_path, WAKE), (n.pf.maillog_file, RELOAD))]
        self.offsets = {path: os.path.getsize(path) for _, path, _ in self.logs}
        self.seen = {rx: [[] for _ in nodes] for rx in (WAKE, RELOAD)}  # rx: per node [time]
        self.stop = threading.Event()

    def run(self):
        while not self.stop.wait(POLL):
            for i, path, rx in self.logs:
                size = os.path.getsize(path)
                if size <= self.offsets[path]:
                    continue
                now = time.monotonic()
                with open(path, "rb") as f:
                    f.seek(self.offsets[path])
                    text = f.read(size - self.offsets[path]).decode(errors="replace")
                self.offsets[path] = size
                self.seen[rx][i] += [now] * len(rx.findall(text))

    def first(self, rx, i, since):
        """The first stamp of rx on node i at or after since, or None."""
        return next((t for t in self.seen[rx][i] if t >= since), None)


def converge(nodes, watched, baselines, check, t0, timeout):
    """Watch every node at once from t0 (the reply): per node (files changed, served) as
    monotonic times (served None if not within timeout) and, for each of its checks that took
    STALL or longer, whether it passed."""
    out = [(None, None, [])] * len(nodes)

    def watch(i):
        path, base = watched(nodes[i]), baselines[i]
        t_file, forced, deadline, stalls = None, t0, t0 + timeout, []
        while True:
            now = time.monotonic()
            if t_file is None and file_key(path) != base:
                t_file = now
            if t_file is not None or now >= forced:
                ok, done = check(nodes[i]), time.monotonic()
                if done - now >= STALL:
                    stalls.append(bool(ok))
                if ok:
                    out[i] = (t_file, done, stalls)
                    return
                forced = done + FORCED
            if now > deadline:
                out[i] = (t_file, None, stalls)
                return
            time.sleep(POLL)

    threads = [threading.Thread(target=watch, args=(i,)) for i in range(len(nodes))]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return out


def start_fleet(base, binary, count, heartbeat, made):
    """PostgreSQL, then count Postfix sandboxes and daemons mx01.. on one database; returns the
    nodes (the admin token is node 1's, shared: one database)."""
    pg = PostgresSandbox(os.path.join(base, "pg"))
    made.append(pg)
    pg.start()
    if count > 9:  # each node holds http_threads + 2 pooled sessions, the worker's, the listener's
        pg.psql(f"ALTER SYSTEM SET max_connections = {12 * count}")
        pg.restart()
    url = pg.create_database("fleet")
    system = CertFactory(os.path.join(base, "certs")).leaf("system", ("localhost",))
    nodes = []
    for k in range(1, count + 1):
        name = f"mx{k:02d}"
        pf = PostfixSandbox(os.path.join(base, f"postfix-{name}"))
        made.append(pf)
        pf.start()
        workdir = os.path.join(base, f"daemon-{name}")
        cfg = daemon_config(workdir, url, pf, system, config={
            "node_name": name, "node_heartbeat_interval": heartbeat, "log_level": "info"})
        d = Daemon(workdir, cfg, binary=binary, db_port=pg.port)
        made.append(d)
        d.start()
        d.token = nodes[0].d.token if nodes else d.add_token("bench", "admin")
        nodes.append(Node(name, pf, d))
        print(f"  {name} up (smtpd 127.0.0.1:{pf.port}, API {d.url})", file=sys.stderr)
    return nodes


def floors(node, base, rounds=5):
    """Medians on this machine: postfix reload, postmap + postmap -s of node's map, one STARTTLS
    handshake, one postmap -q."""
    def med(fn):
        out = []
        for _ in range(rounds):
            t = time.monotonic()
            fn()
            out.append(time.monotonic() - t)
        return statistics.median(out)
    with open(node.map_text) as f:
        text = f.read()
    return {"postfix reload": med(node.pf.reload),
            f"postmap + postmap -s of the map ({text.count(chr(10))} rows)":
                statistics.median(postmap_seconds(node.pf, "hash", text, base)
                                  for _ in range(rounds)),
            "STARTTLS handshake (new SMTP connection)": med(lambda: served(node.pf.port)),
            "postmap -q of one key": med(lambda: node.map_answer("d0.fleet.example"))}


def reload_floor(base, pair, made, rounds=10):
    """One Postfix sandbox serving STARTTLS, no daemon: switch smtpd_tls_chain_files between the
    pair (main.cf dated back 2 s, as the daemon does: Postfix waits for a fresher one) and `postfix
    reload`, while the same check as a node's runs every POLL from before the reload (as on a
    follower, whose watch runs while its daemon applies) until a new connection gets the new
    certificate. Returns (median, max) in seconds from the reload and how many rounds had a check
    of STALL or more."""
    pf = PostfixSandbox(os.path.join(base, "postfix-floor"), starttls=True, cert=pair[0].cert,
                        key=pair[0].key)
    made.append(pf)
    pf.start()
    node, took, stalled = Node("floor", pf, None), [], 0
    for k in range(rounds):
        c = pair[(k + 1) % 2]
        fp = c.fingerprint()
        pf.postconf("-e", f"smtpd_tls_chain_files = {c.key}, {c.cert}")
        old = time.time() - 2
        os.utime(pf.main_cf, (old, old))
        got = []
        t0 = time.monotonic()
        watch = threading.Thread(target=lambda: got.extend(converge(
            [node], lambda n: n.main_cf, [None], lambda n: served(n.pf.port) == fp, t0, 10)))
        watch.start()
        time.sleep(0.05)  # the watch is polling when the reload comes
        t_reload = time.monotonic()
        pf.reload()
        watch.join()
        _, done, stalls = got[0]
        took.append(math.inf if done is None else done - t_reload)
        stalled += bool(stalls)
    pf.stop()
    return statistics.median(took), max(took), stalled


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", type=int, default=10)
    ap.add_argument("--writes", type=int, default=20, help="writes of each kind (default 20)")
    ap.add_argument("--heartbeat", default="1s", help="node_heartbeat_interval (default 1s)")
    ap.add_argument("--receiver", default="alternate", choices=("alternate", "mx01"),
                    help="alternate: even writes to mx01, odd ones to the others in turn")
    ap.add_argument("--timeout", type=float, default=30,
                    help="seconds a write may take to converge (default 30)")
    ap.add_argument("--goal", type=float, default=1.0, help="p99 goal in seconds (default 1)")
    ap.add_argument("--binary", default=None)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args(argv)
    binary = daemon_binary(args.binary)
    if not binary or args.nodes < 2:
        return 2
    base = short_tempdir("stls-bench-fleet-")
    made = []
    stamps = None
    try:
        nodes = start_fleet(base, binary, args.nodes, args.heartbeat, made)
        one = nodes[0]
        certs = CertFactory(os.path.join(base, "certs"))
        pair = [certs.leaf(f"fleet-{x}", ("mx.fleet.example",)) for x in "ab"]
        for c in pair:
            r = one.d.http("PUT", f"/api/v1/certificates/{c.name}",
                           {"certificate": c.read(), "private_key": c.read("key")}, timeout=60)
            assert r.status in (200, 201), r
        fps = [c.fingerprint() for c in pair]
        stamps = LogStamps(nodes)
        stamps.start()

        def receiver(k):
            if args.receiver == "mx01" or k % 2 == 0:
                return 0
            return 1 + (k // 2) % (len(nodes) - 1)

        def write(kind, k, timed=True):
            """One write of kind; returns (receiver index, per node (wake, files, reload,
            served, slow checks (passed or not))), times in seconds from the reply (served None: not
            converged)."""
            at = receiver(k)
            if kind == "settings":
                cert = pair[(k + 1) % 2]
                method, path, body, ok = ("PUT", "/api/v1/settings",
                                          {"mode": "may", "certificate": cert.name}, 200)

                def watched(n):
                    return n.main_cf

                def check(n, fp=fps[(k + 1) % 2]):
                    return served(n.pf.port) == fp
            else:
                dest = f"d{k}.fleet.example"
                method, path, body, ok = ("PUT", f"/api/v1/tls-policies/{dest}",
                                          {"level": "encrypt"}, 201)

                def watched(n):
                    return n.map_index

                def check(n, dest=dest):
                    return n.map_answer(dest) == "encrypt"
            baselines = [file_key(watched(n)) for n in nodes]
            t_send = time.monotonic()
            r = nodes[at].d.http(method, path, body, timeout=60, unchecked=UNCHECKED)
            t0 = time.monotonic()
            assert r.status == ok, (kind, nodes[at].name, r)
            got = converge(nodes, watched, baselines, check, t0, args.timeout)
            def since(t):
                return None if t is None else t - t0
            rel = [(None if i == at else since(stamps.first(WAKE, i, t_send)), since(f),
                    since(stamps.first(RELOAD, i, t_send)), since(s), stalls)
                   for i, (f, s, stalls) in enumerate(got)]
            if timed:
                last = max(range(len(nodes)),
                           key=lambda i: math.inf if rel[i][3] is None else rel[i][3])
                w, f, rl, s, stalls = rel[last]
                print(f"  {kind} #{k + 1} via {nodes[at].name}: everywhere in {ms(s)} ms; the "
                      f"last, {nodes[last].name}: wake {ms(w)}, files {ms(f)}, reload {ms(rl)}, "
                      f"checks of {STALL * 1000:.0f} ms or more {len(stalls)} ({sum(stalls)} "
                      f"passed)", file=sys.stderr)
            return at, rel

        # warm-up, not timed: the first binding, the first map
        write("settings", 1, timed=False)
        write("policy", args.writes, timed=False)
        results = {"settings": [], "policy": []}
        for k in range(args.writes):
            for kind in results:
                results[kind].append(write(kind, k))
        stamps.stop.set()
        floor = floors(one, base)
        rfloor = reload_floor(base, pair, made)
        load = os.getloadavg()
        errors = [f"{n.name}: {line}" for n in nodes for line in n.d.unexpected_errors()]
        version = run(["postconf", "-c", one.pf.config_dir, "-h", "mail_version"]).stdout.strip()

        print("$ " + shlex.join(["/usr/bin/python3", "bench/fleet.py"] +
                                list(argv if argv is not None else sys.argv[1:])))
        shown = os.path.relpath(binary, REPO_ROOT)
        print(f"daemon {binary if shown.startswith('..') else shown}, {args.nodes} nodes (each "
              f"its own Postfix {version}), one PostgreSQL 15 (fsync off), node_heartbeat_interval "
              f"{args.heartbeat}, {os.cpu_count()} CPUs, load average {load[0]:.1f} at the end, "
              f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC")
        print(f"receiver: {args.receiver}; time from the write's reply until every node serves it "
              f"(ms)")
        print(f"{'write':38} {'via':6} {'n':>3} {'p50':>7} {'p99':>7} {'max':>7}")
        everywhere, stalled = {}, {}
        for kind, label in (("settings", "settings: bind the other certificate"),
                            ("policy", "policy: PUT tls-policies/dN encrypt")):
            rows = []
            for at, rel in results[kind]:
                last = max(rel, key=lambda x: math.inf if x[3] is None else x[3])
                rows.append((at, math.inf if last[3] is None else last[3], bool(last[4])))
            stalled[kind] = sum(r[2] for r in rows)
            everywhere[kind] = [r[1] for r in rows]
            for text, via, sel in (
                    (label, "any", rows), ("", "mx01", [r for r in rows if r[0] == 0]),
                    ("", "others", [r for r in rows if r[0] != 0]),
                    (f"  the last node's checks < {STALL * 1000:.0f} ms", "any",
                     [r for r in rows if not r[2]])):
                if not sel:
                    continue
                t = [r[1] for r in sel]
                print(f"{text:38} {via:6} {len(t):>3} {ms(pct(t, 50)):>7} {ms(pct(t, 99)):>7} "
                      f"{ms(max(t)):>7}")
        print("per node, p50 ms from the reply: served = its check passed (all writes); as a "
              "follower (writes received by another node): wake = its log says it applies, "
              f"files = main.cf / the map's index replaced, reload = its master logged a reload, "
              f"served; stalls = its checks that took {STALL * 1000:.0f} ms or more")
        cols = ("served", "wake", "files", "reload", "served", "stalls")
        print(f"{'':6} | {'settings':^{7 * len(cols) - 1}} | {'policy':^{7 * len(cols) - 1}}")
        print(f"{'node':6} | " + " ".join(f"{c:>6}" for c in cols) + " | " +
              " ".join(f"{c:>6}" for c in cols))
        for i, n in enumerate(nodes):
            cells = []
            for kind in ("settings", "policy"):
                allserved = [math.inf if rel[i][3] is None else rel[i][3]
                             for _, rel in results[kind]]
                follow = [rel[i] for at, rel in results[kind] if at != i]
                cells.append(ms(pct(allserved, 50)))
                for j in range(4):
                    xs = [x[j] for x in follow if x[j] is not None]
                    cells.append(ms(pct(xs, 50)) if xs else "-")
                cells.append(str(sum(len(rel[i][4]) for _, rel in results[kind])))
            print(f"{n.name:6} | " + " ".join(f"{c:>6}" for c in cells[:6]) + " | " +
                  " ".join(f"{c:>6}" for c in cells[6:]))
        slow = [x for _, rel in results["settings"] for r in rel for x in r[4]]
        print(f"writes whose last node had a check of {STALL * 1000:.0f} ms or more: " +
              ", ".join(f"{k} {v} of {len(results[k])}" for k, v in stalled.items()) +
              f"; of the {len(slow)} such settings checks {sum(slow)} got the new certificate "
              f"(waited while another connection held an smtpd from before the reload), "
              f"{len(slow) - sum(slow)} the old one or none (were that connection)")
        print("floor on this machine (median of 5, node mx01): " +
              "; ".join(f"{k} {v * 1000:.0f} ms" for k, v in floor.items()))
        print(f"floor, one Postfix without a daemon: the other certificate in main.cf, postfix "
              f"reload while watched as a node: served after median {ms(rfloor[0])} ms, max "
              f"{ms(rfloor[1])} ms; {rfloor[2]} of 10 rounds had a check of "
              f"{STALL * 1000:.0f} ms or more")
        worst = {k: pct(v, 99) for k, v in everywhere.items()}
        passed = all(v <= args.goal for v in worst.values())
        print(f"goal: p99 <= {args.goal:g} s (settings {ms(worst['settings'])} ms, policy "
              f"{ms(worst['policy'])} ms): {'PASS' if passed else 'FAIL'}")
        for line in errors:
            print(f"daemon log error: {line}")
        return 0 if passed and not errors else 1
    finally:
        if stamps:
            stamps.stop.set()
        for x in reversed(made):
            try:
                if isinstance(x, Daemon):
                    x.stop()
                    x.close()
                else:
                    x.stop()
            except Exception as e:  # noqa: BLE001 (the rest still stop)
                print(f"stopping {x}: {e}", file=sys.stderr)
        if args.keep:
            print(f"sandbox kept in {base}", file=sys.stderr)
        else:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
