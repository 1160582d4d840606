#!/usr/bin/python3
"""smtptlsd's reads beside their floor (issue 17): nginx serving the very same response bytes.

Starts the same private PostgreSQL, Postfix and daemon as bench/bulk_policies.py (its
bench_sandbox(), the release build by default, at its default http_threads - one less than the
cores, 1 on the 2-core machine - where the other benchmarks pin 2; per_ip_connection_limit 0,
since every wrk connection comes from 127.0.0.1) and seeds the state of issue 17's table: three imported
certificates, one bound by the settings, and --policies policies (1000; a page of 100 is ~30 KB:
every row renders all its members, ~300 bytes, so issue 17's "22 KB" is not reached). For each
request (GET settings, a policy page of 100, the certificate list, one policy, status, /healthz)
it fetches the reply once with a read token and writes its exact body to a file that
Debian's nginx serves at the same URL path (one worker process, --nginx-workers to change it,
plain HTTP on a random loopback port, a configuration of its own under the sandbox, access_log
off, keepalive_requests 10000000, the daemon's Content-Type). Then, per mode - keep-alive, and
one request per connection (wrk's -H 'Connection: close') - and per request, it runs

  wrk -t2 -c64 -d10s --latency --timeout 10s -s bench/compare.lua -H 'Authorization: Bearer T' URL

against the daemon and then against nginx (each after a --warmup run that is not counted), and
prints one table: mode, request, body bytes, smtptlsd req/s and p99, nginx req/s and p99, and the
ratio smtptlsd/nginx of the req/s; then per run the bytes per reply on the wire (headers
included) and the CPU of the daemon, PostgreSQL, nginx and wrk (% of one core), the daemon's
VmRSS before and after (and VmHWM), socket errors, and the daemon's error lines. The command and
the machine (CPUs, load average) are printed first.

A/B: --variant LABEL=BINARY[,KEY=VALUE...] (repeatable) runs each request against every variant in
turn in the same sandbox (the daemon restarted with that binary and those configuration keys when
the variant changes; the database, tokens and seed stay), --rounds times (A B A B ...), nginx once
per round beside them, so that a difference is measured within one window of the shared machine;
a summary then gives each one's median req/s, p99 (and every round's) and p99.9.

Exit status 1 when an answer outside 2xx was counted or a run got none (bench/compare.lua counts
every status in the warm-up runs; in the measured ones wrk's own count of those above 399, so
that the client spends no Lua per reply, unless --count-statuses), 2 on a set-up problem.
Standard library only, run as root:

  /usr/bin/python3 bench/compare.py [--seconds 10] [--connections 64] [--threads 2]
                                    [--policies 1000] [--only REQUEST] [--warmup 2]
                                    [--mode keep-alive|close] [--count-statuses]
                                    [--binary build/smtptlsd] [--nginx-workers 1] [--keep]
  /usr/bin/python3 bench/compare.py --variant A=/tmp/a --variant B=/tmp/b,http_threads=1 \
                                    --rounds 3 --only policies
"""
import argparse
import datetime
import http.client
import os
import platform
import re
import resource
import shlex
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bulk_policies import REPO_ROOT, bench_sandbox, daemon_binary  # noqa: E402
from load import POLICY_BODIES, q  # noqa: E402
from tests.harness.certs import CertFactory  # noqa: E402
from tests.harness.util import (HarnessError, free_port, port_is_open,  # noqa: E402
                                proc_status_kib, run, stop_group, tail, wait_until)

WRK = "/usr/bin/wrk"
NGINX = "/usr/sbin/nginx"
LUA = os.path.join(REPO_ROOT, "bench", "compare.lua")
# (name for --only, path; {one}: a seeded policy's destination), issue 17's table
REQUESTS = [
    ("settings", "/api/v1/settings"),
    ("policies", "/api/v1/tls-policies?limit=100"),
    ("certificates", "/api/v1/certificates"),
    ("policy", "/api/v1/tls-policies/{one}"),
    ("status", "/api/v1/status"),
    ("healthz", "/healthz"),
]
MODES = [("keep-alive", []), ("close", ["-H", "Connection: close"])]
WRK_LINE = re.compile(r"^COMPARE (\w+) ?(.*)$")


class Interrupted(Exception):
    pass


def on_signal(signum, frame):
    raise Interrupted(f"signal {signum}")


def log(msg):
    print(f"compare: {msg}", file=sys.stderr, flush=True)


class FileServer:
    """Debian's nginx (foreground, `workers` worker processes) serving fixed bytes at exact URL
    paths over plain HTTP on 127.0.0.1 at a free port; its configuration, pid, log and files under
    basedir. The query string is ignored (an exact `location` with `alias` to the file), so the
    request line sent to it is the one sent to the daemon."""

    def __init__(self, basedir, workers=1):
        self.basedir = os.path.abspath(basedir)
        self.workers = workers
        self.root = os.path.join(self.basedir, "www")
        self.conf_path = os.path.join(self.basedir, "nginx.conf")
        self.error_log = os.path.join(self.basedir, "error.log")
        self.files = {}  # URL path (no query) -> (file, content type)
        self.port = None
        self.proc = None

    def put(self, path, data, content_type):
        """Serve the bytes data at URL path (its query, if any, is ignored)."""
        os.makedirs(self.root, exist_ok=True)
        target = os.path.join(self.root, f"r{len(self.files)}")
        with open(target, "wb") as f:
            f.write(data)
        os.chmod(target, 0o644)
        self.files[path.split("?", 1)[0]] = (target, content_type)

    def _write_config(self):
        temp = os.path.join(self.basedir, "temp")
        os.makedirs(temp, exist_ok=True)
        locations = "".join(
            f'        location = "{p}" {{\n            alias {f};\n            types {{ }}\n'
            f'            default_type "{t}";\n        }}\n' for p, (f, t) in self.files.items())
        with open(self.conf_path, "w") as f:
            f.write(f"""\
# nginx of bench/compare.py: the floor, the daemon's response bytes served from files
daemon off;
master_process on;
worker_processes {self.workers};
user root root;
pid {self.basedir}/nginx.pid;
error_log {self.error_log} warn;
worker_rlimit_nofile 16384;
events {{
    worker_connections 8192;
}}
http {{
    access_log off;
    client_body_temp_path {temp}/client;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    types {{ }}
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_requests 10000000;
    keepalive_timeout 75s;
    server_tokens off;
    server {{
        listen 127.0.0.1:{self.port} default_server;
        server_name _;
{locations}    }}
}}
""")

    def _argv(self, *args):
        return [NGINX, "-p", self.basedir, "-c", self.conf_path, "-e", self.error_log, *args]

    def start(self, timeout=20):
        """Start nginx on a free port and wait (bounded) until it accepts connections; a port taken
        meanwhile by another process is retried with another one (5 times)."""
        for _ in range(5):
            self.port = free_port()
            self._write_config()
            run(self._argv("-t"), timeout=30)
            self._out = open(os.path.join(self.basedir, "nginx.out"), "ab")
            self.proc = subprocess.Popen(self._argv(), stdin=subprocess.DEVNULL, stdout=self._out,
                                         stderr=subprocess.STDOUT, start_new_session=True)
            wait_until(lambda: self.proc.poll() is not None or port_is_open(self.port), timeout,
                       f"nginx on 127.0.0.1:{self.port}")
            if self.proc.poll() is None:
                return self
            self.proc = None
            self._out.close()
        raise HarnessError(f"nginx did not start:\n{tail(self.error_log)}")

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def worker_pids(self):
        try:
            with open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children") as f:
                return [int(p) for p in f.read().split()]
        except FileNotFoundError:
            return []

    def stop(self, timeout=15):
        """SIGTERM to the process group (master and worker), SIGKILL after timeout seconds."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        stop_group(proc, timeout)
        self._out.close()


def cpu_seconds(pids):
    """utime + stime of processes (all their threads) that still exist, in seconds."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def postgres_pids(pg):
    """The postmaster and its children (the backends, among them the daemon's pooled ones)."""
    with open(os.path.join(pg.datadir, "postmaster.pid")) as f:
        master = int(f.readline())
    try:
        with open(f"/proc/{master}/task/{master}/children") as f:
            return [master] + [int(p) for p in f.read().split()]
    except FileNotFoundError:
        return [master]


def parse_wrk(text):
    """COMPARE lines of bench/compare.lua -> {"summary": {...}, "latency_us": {...},
    "status": {code: n}}."""
    out = {"status": {}}
    for line in text.splitlines():
        m = WRK_LINE.match(line)
        if not m:
            continue
        pairs = [kv.split("=") for kv in m.group(2).split()]
        if m.group(1) == "status":
            out["status"] = {int(k): int(v) for k, v in pairs}
        else:
            out[m.group(1)] = {k: float(v) for k, v in pairs}
    return out


def wrk(url, token, args, extra, seconds, counted, count):
    """One wrk run; returns the parsed COMPARE lines with "cpu" {part: share of one core} of the
    pids in counted {part: callable returning pids} and of wrk. count: bench/compare.lua counts
    every status (else only wrk's own count of statuses above 399 is there)."""
    argv = [WRK, f"-t{args.threads}", f"-c{args.connections}", f"-d{seconds}s", "--latency",
            "--timeout", "10s", "-s", LUA, "-H", f"Authorization: Bearer {token}", *extra, url,
            *(["--", "count"] if count else [])]
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    pids = {part: f() for part, f in counted.items()}
    cpu0 = {part: cpu_seconds(p) for part, p in pids.items()}
    t0 = time.monotonic()
    proc = run(argv, timeout=seconds + 60, check=False)
    wall = time.monotonic() - t0
    cpu = {part: (cpu_seconds(p) - cpu0[part]) / wall for part, p in pids.items()}
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    res = parse_wrk(proc.stdout)
    if proc.returncode != 0 or "summary" not in res:
        raise RuntimeError(f"wrk failed (exit {proc.returncode}): {shlex.join(argv[:-1])} "
                           f"{url}\n{proc.stdout}\n{proc.stderr}")
    res["cpu"] = cpu
    res["cpu"]["wrk"] = (ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime) / wall
    res["text"] = proc.stdout
    return res


def seed(d, base, policies):
    """Three imported certificates (mx1 bound by the settings) and `policies` policies; returns
    the destination of one of them."""
    certs = CertFactory(os.path.join(base, "certs"))
    for name in ("mx1", "mx2", "mx3"):
        c = certs.leaf(name, ("mx.test.example", f"{name}.test.example"))
        r = d.http("PUT", f"/api/v1/certificates/{name}", c.read("key") + c.read("fullchain"),
                   content_type="application/x-pem-file", timeout=60)
        assert r.status == 201, r
    r = d.http("PATCH", "/api/v1/settings", {"mode": "may", "certificate": "mx1"},
               content_type="application/merge-patch+json", timeout=60)
    assert r.status == 200, r
    items = [{"destination": f"seed-d{i:06d}.example", **POLICY_BODIES[i % len(POLICY_BODIES)]}
             for i in range(policies)]
    r = d.http("PUT", "/api/v1/tls-policies?wait=300", {"items": items}, timeout=600)
    assert r.status == 200, r
    return items[min(1, policies - 1)]["destination"]


def machine():
    """One line: CPUs, model, kernel, load average."""
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f
                          if line.startswith("model name")), "?")
    except OSError:
        pass
    la = os.getloadavg()
    return (f"{os.cpu_count()} CPUs ({model}), Linux {platform.release()}, load average "
            f"{la[0]:.2f} {la[1]:.2f} {la[2]:.2f}")


def rate(res):
    return res["summary"]["requests"] / (res["summary"]["duration_us"] / 1e6)


def bad_statuses(res):
    """Answers outside 2xx: {status: n} when counted, else wrk's own count of those above 399."""
    bad = {c: n for c, n in res["status"].items() if not 200 <= c <= 299}
    if res["summary"]["status"] and not bad:
        bad[">399"] = int(res["summary"]["status"])
    return bad


def socket_errors(res):
    s = res["summary"]
    return {k: int(s[k]) for k in ("connect", "read", "write", "timeout") if s[k]}


def parse_variant(spec):
    """LABEL=BINARY[,KEY=VALUE...] -> (label, absolute binary, {key: value}), or None."""
    label, _, rest = spec.partition("=")
    binary, *sets = rest.split(",")
    extra = dict(kv.split("=", 1) for kv in sets if "=" in kv)
    if not label or not binary or len(extra) != len(sets):
        print(f"--variant {spec!r}: LABEL=BINARY[,KEY=VALUE...]", file=sys.stderr)
        return None
    binary = daemon_binary(binary)
    return (label, binary, extra) if binary else None


class Variants:
    """The daemon d of the sandbox as one of the variants: use(i) restarts it with variant i's
    binary and configuration keys unless it already runs them; its error lines of each run are
    collected before the stop (the log is read from the latest start)."""

    def __init__(self, d, variants, base_config):
        self.d, self.variants, self.base_config = d, variants, dict(base_config)
        self.current = 0 if not variants[0][2] else None  # the sandbox started variant 0's binary
        self.errors = []

    def use(self, i):
        if i == self.current:
            return
        d = self.d
        self.errors += d.unexpected_errors()
        d.stop()
        _, d.binary, extra = self.variants[i]
        d.config = {**self.base_config, **extra}
        d.write_config()
        d.start()
        self.current = i


def median(xs):
    xs = sorted(xs)
    n = len(xs)
    return (xs[n // 2] + xs[(n - 1) // 2]) / 2


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=int, default=10, help="each measured wrk run (default 10)")
    ap.add_argument("--warmup", type=int, default=2,
                    help="an uncounted wrk run before each measured one, seconds (default 2; 0: "
                         "none)")
    ap.add_argument("--connections", type=int, default=64, help="wrk -c (default 64)")
    ap.add_argument("--threads", type=int, default=2, help="wrk -t (default 2)")
    ap.add_argument("--policies", type=int, default=1000, help="policies seeded (default 1000)")
    ap.add_argument("--only", action="append", metavar="REQUEST",
                    choices=[name for name, _ in REQUESTS],
                    help="only this request (repeatable): " + ", ".join(n for n, _ in REQUESTS))
    ap.add_argument("--count-statuses", action="store_true",
                    help="count every status in the measured runs too (Lua per reply: costs the "
                         "client CPU); by default only the warm-up counts every status and the "
                         "measured runs count those above 399 (wrk's own count)")
    ap.add_argument("--mode", action="append", choices=[m for m, _ in MODES],
                    help="only this mode (repeatable; default both)")
    ap.add_argument("--binary", default=None,
                    help="the daemon (default build/smtptlsd, else build-asan/smtptlsd)")
    ap.add_argument("--variant", action="append", default=[], metavar="LABEL=BINARY[,KEY=VALUE]",
                    help="A/B: a daemon binary with configuration keys of its own (repeatable; "
                         "replaces --binary); each request runs against each variant in turn")
    ap.add_argument("--rounds", type=int, default=1,
                    help="runs of each variant per request and mode, alternating (default 1)")
    ap.add_argument("--nginx-workers", type=int, default=1,
                    help="nginx's worker processes (default 1, as the daemon's HTTP threads on 2 cores)")
    ap.add_argument("--keep", action="store_true", help="keep the sandbox directory")
    args = ap.parse_args(argv)
    if args.variant:
        variants = [parse_variant(v) for v in args.variant]
        if None in variants or len({v[0] for v in variants}) != len(variants):
            return 2
    else:
        b = daemon_binary(args.binary)
        variants = [("smtptlsd", b, {})] if b else [None]
    if variants[0] is None or args.rounds < 1 or args.nginx_workers < 1:
        return 2
    binary = variants[0][1]
    for path, hint in ((WRK, "apt-get install wrk (scripts/deps)"),
                       (NGINX, "apt-get install nginx (scripts/deps)")):
        if not os.path.exists(path):
            print(f"no {path}: {hint}", file=sys.stderr)
            return 2
    if args.policies < 1:
        return 2
    signal.signal(signal.SIGTERM, on_signal)
    requests = [(n, p) for n, p in REQUESTS if not args.only or n in args.only]
    modes = [(m, h) for m, h in MODES if not args.mode or m in args.mode]

    def shown(binary):
        rel = os.path.relpath(binary, REPO_ROOT)
        return binary if rel.startswith("..") else rel

    print("$ " + shlex.join(["/usr/bin/python3", "bench/compare.py"] +
                            list(argv if argv is not None else sys.argv[1:])))
    nginx_version = run([NGINX, "-v"]).stderr.strip().split("/", 1)[-1]
    wrk_version = run([WRK, "-v"], check=False).stdout.split()[1]
    print(f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; {machine()} at "
          f"the start")
    # the daemon's default thread count (http_threads 0): one less than the cores it may use
    default_threads = max(1, len(os.sched_getaffinity(0)) - 1)
    for label, b, extra in variants:
        version = run([b, "--version"], check=False).stdout.strip()
        sets = "".join(f", {k} {v}" for k, v in extra.items())
        print(f"{'daemon' if len(variants) == 1 else 'variant ' + label}: {shown(b)} ({version}"
              f"{'' if 'http_threads' in extra else f', http_threads 0 = {default_threads}'}"
              f"{sets})")
    rounds = f"{args.rounds} rounds of each, alternating; " if args.rounds > 1 else ""
    print(f"{rounds}PostgreSQL 15 (fsync off), nginx {nginx_version} ({args.nginx_workers} "
          f"worker{'s' if args.nginx_workers > 1 else ''}), wrk "
          f"{wrk_version}: -t{args.threads} -c{args.connections} -d{args.seconds}s --latency "
          f"--timeout 10s -s bench/compare.lua -H 'Authorization: Bearer <read token>' "
          f"[-H 'Connection: close'] URL, after a "
          f"{args.warmup} s warm-up of the same; {args.policies} policies, 3 certificates",
          flush=True)

    ngx = None
    results = []  # (mode, name, path, body bytes, variant label, daemon result, nginx result)
    try:
        # the daemon as installed: its default thread count (the other benchmarks pin 2)
        config = {"per_ip_connection_limit": 0, "http_threads": 0}
        with bench_sandbox(binary, keep=args.keep, config=config,
                           statement_log=False) as (base, pg, _pf, d):
            log(f"seeding 3 certificates and {args.policies} policies")
            one = seed(d, base, args.policies)
            token = d.add_token("compare-read", "read")
            ngx = FileServer(os.path.join(base, "nginx"), args.nginx_workers)
            bodies = {}
            for name, path in requests:
                path = path.format(one=q(one))
                r = d.http("GET", path, token=token, timeout=60)
                if r.status != 200:
                    raise RuntimeError(f"GET {path}: {r}")
                ngx.put(path, r.raw, r.headers.get("Content-Type"))
                bodies[name] = (path, len(r.raw))
            ngx.start()
            for name, _ in requests:  # the floor answers the very same bytes
                path = bodies[name][0]
                conn = http.client.HTTPConnection("127.0.0.1", ngx.port, timeout=10)
                try:
                    conn.request("GET", path)
                    resp = conn.getresponse()
                    got = resp.read()
                finally:
                    conn.close()
                with open(ngx.files[path.split("?", 1)[0]][0], "rb") as f:
                    if resp.status != 200 or got != f.read():
                        raise RuntimeError(f"nginx does not answer the daemon's bytes for {path}")
            vs = Variants(d, variants, d.config)
            vs.use(0)
            rss0 = proc_status_kib(d.pid, "VmRSS")
            counted_d = {"smtptlsd": lambda: [d.pid], "postgres": lambda: postgres_pids(pg)}
            counted_n = {"nginx": ngx.worker_pids}

            def measure(url, counted, extra):
                warm = None
                if args.warmup:
                    warm = wrk(url, token, args, extra, args.warmup, {}, True)
                res = wrk(url, token, args, extra, args.seconds, counted, args.count_statuses)
                res["warm"] = warm
                return res

            for mode, extra in modes:
                for name, _ in requests:
                    path, size = bodies[name]
                    for _round in range(args.rounds):
                        runs = []
                        for i, (label, _, _) in enumerate(variants):
                            vs.use(i)
                            runs.append((label, measure(f"http://{d.host}:{d.port}{path}",
                                                        counted_d, extra)))
                        rn = measure(ngx.url + path, counted_n, extra)
                        for label, rd in runs:
                            results.append((mode, name, path, size, label, rd, rn))
                        for who, res in runs + [("nginx", rn)]:
                            log(f"{mode} {name} {who}: {rate(res):,.0f} req/s, p99 "
                                f"{res['latency_us']['p99'] / 1000:.1f} ms")
            rss1 = proc_status_kib(d.pid, "VmRSS")
            hwm = proc_status_kib(d.pid, "VmHWM")
            daemon_errors = vs.errors + d.unexpected_errors()
            alive = d.alive()
    except Interrupted as e:
        log(f"interrupted ({e})")
        return 130
    finally:
        if ngx is not None:
            ngx.stop()

    print(f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; {machine()} at "
          f"the end")
    print()
    w = max(len(f"GET {r[2]}") for r in results) if results else 20
    several = len(variants) > 1
    v = max(len(label) for label, _, _ in variants) + 1 if several else 0
    head = (f"{'mode':10} {'request':{w}} {'bytes':>6} {'variant' if several else '':{v}} "
            f"{'smtptlsd req/s':>14} {'p99 ms':>7}  {'nginx req/s':>11} {'p99 ms':>7}  "
            f"{'ratio':>6}")
    print(head)
    print("-" * len(head))
    for mode, name, path, size, label, rd, rn in results:
        print(f"{mode:10} {'GET ' + path:{w}} {size:>6} {label if several else '':{v}} "
              f"{rate(rd):>14,.0f} {rd['latency_us']['p99'] / 1000:>7.1f}  {rate(rn):>11,.0f} "
              f"{rn['latency_us']['p99'] / 1000:>7.1f}  {rate(rd) / rate(rn):>5.2f}x")
    print()
    if several or args.rounds > 1:
        print(f"median of {args.rounds} round(s): req/s, p99 ms (each round's p99), p99.9 ms")
        for mode, _ in modes:
            for name, _ in requests:
                for label in [label for label, _, _ in variants] + ["nginx"]:
                    rs = [r[5] if label != "nginx" else r[6] for r in results
                          if r[0] == mode and r[1] == name and (label == "nginx" or r[4] == label)]
                    if label == "nginx":
                        rs = rs[::len(variants)]
                    p99s = [r["latency_us"]["p99"] / 1000 for r in rs]
                    print(f"  {mode:10} {name:12} {label:{max(v, 6)}} "
                          f"{median([rate(r) for r in rs]):>9,.0f} req/s  p99 {median(p99s):5.1f} "
                          f"({' '.join(f'{x:.1f}' for x in p99s)})  p99.9 "
                          f"{median([r['latency_us']['p999'] / 1000 for r in rs]):5.1f}")
        print()
    print("per run: bytes per reply on the wire (headers + body), p50 / p99.9 / max latency (ms), "
          "CPU (% of one core):")
    for mode, name, path, size, label, rd, rn in results:
        parts = []
        for who, res in (("smtptlsd", rd), ("nginx", rn)):
            s, lat = res["summary"], res["latency_us"]
            wire = s["bytes"] / s["requests"] if s["requests"] else 0
            cpu = ", ".join(f"{k} {v * 100:.0f}%" for k, v in res["cpu"].items())
            parts.append(f"{who} {wire:,.0f} B, {lat['p50'] / 1000:.1f} / "
                         f"{lat['p999'] / 1000:.1f} / {lat['max'] / 1000:.1f} ms, {cpu}")
        print(f"  {mode:10} {name:12} {label + ' ' if several else ''}" + "; ".join(parts))
    print()
    print(f"daemon VmRSS {rss0 / 1024:.1f} MiB before the runs (seeded, idle), "
          f"{rss1 / 1024:.1f} MiB after; VmHWM {hwm / 1024:.1f} MiB"
          + (f" (variant {variants[0][0]} before, {variants[vs.current][0]} after: each "
             f"variant's daemon starts anew)" if several else ""))

    problems = []
    seen = set()  # a round's nginx run is in the row of each variant
    for mode, name, path, size, label, rd, rn in results:
        for who, res in ((label, rd), ("nginx", rn)):
            if id(res) in seen:
                continue
            seen.add(id(res))
            for what, r in (("warm-up", res["warm"]), ("measured", res)):
                if r is None:
                    continue
                bad = bad_statuses(r)
                if bad or not r["summary"]["requests"]:
                    problems.append(f"{mode} GET {path} ({who}, {what}): answers outside 2xx "
                                    f"{bad}, all counted {r['status']}, "
                                    f"{int(r['summary']['requests'])} requests")
            errs = socket_errors(res)
            if errs:
                print(f"note: {mode} GET {path} ({who}): wrk socket errors {errs}")
    for line in daemon_errors:
        print(f"note: daemon log: {line}")
    if not alive:
        problems.append("the daemon exited during the runs")
    for p in problems:
        print(f"FAIL: {p}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
