#!/usr/bin/python3
"""Benchmark of the TLS-policy bulk replace (issue 5): N policies in one PUT /api/v1/tls-policies.

Starts its own private PostgreSQL and Postfix (tests/harness, under /tmp/stls-bench-*) and a daemon
(the release build by default), then for each N: a dry run, the real push, a push that changes one
row, a push that changes nothing, the same rows as a map file (text/plain, as `smtptlsd push`
sends it), that file with one row changed, and a single PUT of one row. The pushes after the first
read against the items the node kept of the last bulk (docs/performance.md: the bulk delta). For
every step it prints the wall time of the request and where it went:

  database  the sum of the statement durations PostgreSQL logged meanwhile
            (log_min_duration_statement = 0 on the private cluster: parse, bind, execute)
  postmap   postmap + postmap -s of the map as it is after the step, timed here with the same
            commands the daemon runs (only for steps whose job says postmap: true and whose map
            was built whole: an edit of a few rows - smtptlsd_policy_map_updates_total{how="edit"}
            - is not re-timed, it is in "rest")
  rest      wall - database - postmap: HTTP, JSON parsing and validation, rendering, the diff, files

plus the job record (postmap, reload, created_at -> finished_at). Standard library only:

  /usr/bin/python3 bench/bulk_policies.py [--sizes 10000,100000] [--binary build/smtptlsd]
                                          [--map-type hash] [--keep]
"""
import argparse
import contextlib
import datetime
import json
import os
import re
import shlex
import shutil
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

from tests.harness.certs import CertFactory  # noqa: E402
from tests.harness.daemon import Daemon  # noqa: E402
from tests.harness.pg import PostgresSandbox  # noqa: E402
from tests.harness.postfix import PostfixSandbox  # noqa: E402
from tests.harness.util import run, short_tempdir  # noqa: E402

INDEX_SUFFIX = {"hash": ".db", "btree": ".db", "lmdb": ".lmdb", "cdb": ".cdb"}
DURATION = re.compile(r"duration: ([0-9.]+) ms")


class PgLog:
    """Statement durations from the private cluster's log, between two marks."""

    def __init__(self, path):
        self.path = path
        self.offset = 0

    def mark(self):
        self.offset = os.path.getsize(self.path)

    def seconds_since_mark(self):
        with open(self.path, errors="replace") as f:
            f.seek(self.offset)
            text = f.read()
        return sum(float(m.group(1)) for m in DURATION.finditer(text)) / 1000


def job_seconds(job):
    def ts(s):
        return datetime.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()
    if not job or not job.get("finished_at"):
        return None
    return ts(job["finished_at"]) - ts(job["created_at"])


def postmap_seconds(pf, map_type, text, workdir):
    """postmap TYPE:copy, then postmap -s TYPE:copy (what the daemon runs before the swap)."""
    path = os.path.join(workdir, "bench_map")
    with open(path, "w") as f:
        f.write(text)
    t0 = time.monotonic()
    pf.postmap(f"{map_type}:{path}")
    if map_type != "cdb":  # cdb has no sequence operation
        pf.postmap("-s", f"{map_type}:{path}")
    return time.monotonic() - t0



def daemon_binary(arg):
    """The daemon to run: arg, else build/smtptlsd, else build-asan/smtptlsd (absolute), or None
    (with a message)."""
    binary = arg or next(
        (p for p in (os.path.join(REPO_ROOT, "build", "smtptlsd"),
                     os.path.join(REPO_ROOT, "build-asan", "smtptlsd")) if os.path.exists(p)), None)
    if not binary or not os.path.exists(binary):
        print("no daemon binary: build it (scripts/build) or pass --binary", file=sys.stderr)
        return None
    return os.path.abspath(binary)


def daemon_config(workdir, url, pf, system, map_type="hash", config=None):
    """The benchmarks' daemon configuration: files under workdir, the database url, Postfix
    sandbox pf, the system certificate (a tests.harness.certs.Cert); config: more keys."""
    return {
        "listen_address": "127.0.0.1", "listen_port": 0, "database_url": url,
        "http_threads": 2, "log_level": "notice",
        "postfix_config_directory": pf.config_dir, **pf.argv_prefixes,
        "policy_map_type": map_type,
        "certificate_directory": os.path.join(workdir, "certs"),
        "acme_live_directory": os.path.join(workdir, "letsencrypt", "live"),
        "system_certificate_file": system.cert, "system_key_file": system.key,
        "smtp_probe_address": f"127.0.0.1:{pf.port}",
        # the benchmarks' made-up destinations are not re-probed (bench/probe.py asks itself)
        "probe_watch_interval": 0,
        **(config or {}),
    }


@contextlib.contextmanager
def bench_sandbox(binary, map_type="hash", keep=False, config=None, statement_log=True):
    """A private PostgreSQL (statement durations logged unless statement_log is false) and Postfix
    under /tmp/stls-bench-*, and the daemon with an admin token (d.token); yields (base, pg, pf, d)
    and removes it all after. config: more daemon configuration keys."""
    base = short_tempdir("stls-bench-")
    pg = PostgresSandbox(os.path.join(base, "pg"))
    pf = PostfixSandbox(os.path.join(base, "postfix"))
    d = None
    try:
        pg.start()
        if statement_log:  # bulk_policies.py reads the durations; costly for many small writes
            pg.psql("ALTER SYSTEM SET log_min_duration_statement = 0")
            pg.psql("ALTER SYSTEM SET log_parameter_max_length = 0")
            pg.psql("SELECT pg_reload_conf()")
        url = pg.create_database("bench")
        pf.start()
        system = CertFactory(os.path.join(base, "certs")).leaf("system", ("localhost",))
        workdir = os.path.join(base, "daemon")
        cfg = daemon_config(workdir, url, pf, system, map_type, config)
        d = Daemon(workdir, cfg, binary=binary, db_port=pg.port)
        d.start()
        d.token = d.add_token("bench", "admin")
        yield base, pg, pf, d
    finally:
        if d is not None:
            d.stop()
            d.close()
        pf.stop()
        pg.stop()
        if keep:
            print(f"sandbox kept in {base}", file=sys.stderr)
        else:
            shutil.rmtree(base, ignore_errors=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="10000,100000",
                    help="comma-separated numbers of policies (default 10000,100000)")
    ap.add_argument("--binary", default=None,
                    help="the daemon (default build/smtptlsd, else build-asan/smtptlsd)")
    ap.add_argument("--map-type", default="hash", choices=sorted(INDEX_SUFFIX))
    ap.add_argument("--keep", action="store_true", help="keep the sandbox directory")
    args = ap.parse_args(argv)
    sizes = [int(x.replace("_", "")) for x in args.sizes.split(",") if x.strip()]
    binary = daemon_binary(args.binary)
    if not binary:
        return 2

    rows = []
    with bench_sandbox(binary, args.map_type, args.keep) as (base, pg, pf, d):
        log = PgLog(pg.logfile)
        map_path = os.path.join(pf.config_dir, "smtptlsd_tls_policy")

        def updates():
            text = d.get("/metrics").raw.decode()
            return {how: float(m.group(1)) if (m := re.search(
                rf'smtptlsd_policy_map_updates_total{{how="{how}"}} (\S+)', text)) else 0.0
                for how in ("edit", "build")}

        def step(n, name, method, path, body, expect=200, content_type="application/json"):
            before = updates()
            log.mark()
            t0 = time.monotonic()
            r = d.http(method, path, body, timeout=600, content_type=content_type)
            wall = time.monotonic() - t0
            time.sleep(0.2)  # the log is written by another process
            db = log.seconds_since_mark()
            if r.status != expect:
                raise RuntimeError(f"{method} {path}: {r}")
            job = None
            if r.headers.get("Job-Id"):
                job = d.get(f"/api/v1/jobs/{r.headers['Job-Id']}").body
            pm = 0.0
            how = {k: v - before[k] for k, v in updates().items()}
            if job is not None:
                job["how"] = "edit" if how["edit"] else "build" if how["build"] else "-"
            if job and job.get("postmap") and how["build"]:
                with open(map_path) as f:
                    pm = postmap_seconds(pf, args.map_type, f.read(), base)
            counts = ""
            if isinstance(r.body, dict) and "added" in r.body:
                counts = "/".join(str(r.body[k]) for k in ("added", "changed", "removed",
                                                           "unchanged"))
            rows.append((n, name, r.status, wall, db, pm, wall - db - pm, job, counts))
            print(f"  N={n} {name}: {wall:.2f} s", file=sys.stderr)
            return r

        for n in sizes:
            prefix = f"n{n}-"
            items = [{"destination": f"{prefix}d{i:06d}.example",
                      "level": "encrypt" if i % 2 else "may"} for i in range(n)]
            body = json.dumps({"items": items})
            step(n, "dry run", "PUT", "/api/v1/tls-policies?dry_run=true&wait=300", body)
            step(n, "push (replace all)", "PUT", "/api/v1/tls-policies?wait=300", body)
            items[n // 2] = {"destination": items[n // 2]["destination"], "level": "secure",
                             "match": ["nexthop"]}
            body = json.dumps({"items": items})
            step(n, "push, one row changed", "PUT", "/api/v1/tls-policies?wait=300", body)
            step(n, "push, nothing changed", "PUT", "/api/v1/tls-policies?wait=300", body)
            # the same rows as a map file (smtptlsd push), then with one row changed
            lines = [f"{i['destination']}\t{i['level']}" +
                     (" match=" + ":".join(i["match"]) if "match" in i else "") for i in items]
            text = "\n".join(lines) + "\n"
            step(n, "map file, same rows", "PUT", "/api/v1/tls-policies?wait=300", text,
                 content_type="text/plain")
            lines[n // 3] = lines[n // 3].replace("\tmay", "\tnone").replace("\tencrypt",
                                                                             "\tnone")
            step(n, "map file, one row changed", "PUT", "/api/v1/tls-policies?wait=300",
                 "\n".join(lines) + "\n", content_type="text/plain")
            step(n, "single PUT of one row", "PUT",
                 f"/api/v1/tls-policies/{prefix}d000001.example?wait=300", {"level": "may"})

        version = run(["postconf", "-c", pf.config_dir, "-h", "mail_version"]).stdout.strip()
        cmd = " ".join(shlex.quote(a) for a in ["/usr/bin/python3", "bench/bulk_policies.py"] +
                       list(argv if argv is not None else sys.argv[1:]))
        print(f"$ {cmd}")
        print(f"daemon {os.path.relpath(binary, REPO_ROOT)}, map type {args.map_type}, "
              f"Postfix {version}, PostgreSQL 15 (fsync off), {os.cpu_count()} CPUs, "
              f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC")
        print(f"{'N':>7}  {'step':24} {'HTTP':>4} {'total':>8} {'database':>9} {'postmap':>8} "
              f"{'rest':>8}  {'job record':>16}  added/changed/removed/unchanged")
        for n, name, status, wall, db, pm, rest, job, counts in rows:
            js = job_seconds(job)
            jr = "-" if job is None else (f"pm={'y' if job.get('postmap') else 'n'} "
                                          f"rl={'y' if job.get('reload') else 'n'} "
                                          f"{job['how']}")
            print(f"{n:>7}  {name:24} {status:>4} {wall * 1000:>6.0f}ms {db * 1000:>7.0f}ms "
                  f"{pm * 1000:>6.0f}ms {rest * 1000:>6.0f}ms  {jr:>16}  {counts}"
                  + (f"  (created->finished {js * 1000:.0f} ms)" if js is not None else ""))
        print("database: statement time PostgreSQL logged during the request; postmap: build + "
              "-s of the resulting map, timed apart (whole builds only); rest: HTTP, JSON, "
              "validation, rendering, diff and files (an edit's postmap -i/-d/-q too). job "
              "record: postmap, reload, edit or build. created->finished: the job record's "
              "timestamps.")
        return 0


if __name__ == "__main__":
    sys.exit(main())
