#!/usr/bin/python3
"""The destination probe's time (issue 15): POST /api/v1/probe for one MX without TLS, one with
TLS, a domain through DNS (MX, A/AAAA, TLSA, MTA-STS; DNSSEC-validated), and 50 domains at once,
each beside its floor: the same SMTP conversation (EHLO, STARTTLS, handshake, QUIT) made by
Python's smtplib in this process, with no lookups.

Starts a private PostgreSQL, Postfix and daemon (bench_sandbox of bulk_policies.py, the release
build by default), a Knot DNS server with a signed zone of 50 domains (tests/harness/dns.py) and
two remote MXs on port 25 of their own loopback addresses (with and without STARTTLS). Every
probe asks `"fresh": true` (no cache). Prints median and 90th percentile of --rounds probes of
each kind, and for the 50 at once the wall time and each request's time. Run as root:

  /usr/bin/python3 bench/probe.py [--rounds 20] [--concurrent 50] [--binary build/smtptlsd] [--keep]
"""
import argparse
import os
import shlex
import smtplib
import ssl
import statistics
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bulk_policies import REPO_ROOT, bench_sandbox, daemon_binary  # noqa: E402
from tests.harness.certs import CertFactory  # noqa: E402
from tests.harness.dns import DnsServer, tlsa_311  # noqa: E402
from tests.harness.postfix import PostfixSandbox  # noqa: E402
from tests.harness.util import free_loopback_address, short_tempdir  # noqa: E402


def stats(samples):
    s = sorted(samples)
    return statistics.median(s), s[min(len(s) - 1, int(0.9 * len(s)))]


_FLOOR_TLS = ssl.create_default_context()
_FLOOR_TLS.check_hostname = False
_FLOOR_TLS.verify_mode = ssl.CERT_NONE


def floor_smtp(address, tls):
    """One conversation as the probe has it, in this process, with a TLS context made once (no
    chain check, no lookups): connect, EHLO, STARTTLS, the handshake, EHLO, QUIT."""
    t = time.monotonic()
    with smtplib.SMTP(address, 25, timeout=10) as s:
        s.ehlo("bench.test")
        if tls:
            s.starttls(context=_FLOOR_TLS)
            s.ehlo("bench.test")
    return time.monotonic() - t


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--concurrent", type=int, default=50)
    ap.add_argument("--binary", default=None)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args(argv)
    binary = daemon_binary(args.binary)
    if not binary:
        return 2
    base = short_tempdir("stls-bench-probe-")
    certs = CertFactory(os.path.join(base, "certs"))
    leaf = certs.leaf("bench-mx", ("mx.bench.test",))
    made = []
    try:
        tls_mx = PostfixSandbox.remote_mx(os.path.join(base, "mx-tls"), starttls=True,
                                          cert=leaf.cert, key=leaf.key,
                                          address=free_loopback_address(), myhostname="mx.bench.test")
        plain_mx = PostfixSandbox.remote_mx(os.path.join(base, "mx-plain"),
                                            address=free_loopback_address())
        for mx in (tls_mx, plain_mx):
            made.append(mx)
            mx.start()
        dns = DnsServer(os.path.join(base, "dns"))
        made.append(dns)
        records = [f"mx 300 IN A {tls_mx.address}",
                   f"_25._tcp.mx 300 IN TLSA 3 1 1 {tlsa_311(leaf.cert)}"]
        records += [f"d{i:02d} 300 IN MX 10 mx" for i in range(max(50, args.concurrent))]
        dns.add_zone("bench.test", records)
        dns.start()
        config = {"probe_resolvers": "root", "probe_stub_zones": dns.stub_zones(),
                  "probe_trust_anchor_file": dns.trust_anchor_file(), "log_level": "warning",
                  "probe_queue_limit": 1000, "per_ip_connection_limit": 0}
        with bench_sandbox(binary, keep=args.keep, config=config) as (_, _, _, d):
            def probe(dest):
                t = time.monotonic()
                r = d.http("POST", "/api/v1/probe", {"destination": dest, "fresh": True},
                           timeout=120)
                took = time.monotonic() - t
                assert r.status == 200, r
                return took, r.body

            rows = []
            for label, dest, floor_tls, floor_addr in (
                    ("one MX, no STARTTLS ([address]:25)", f"[{plain_mx.address}]:25", False,
                     plain_mx.address),
                    ("one MX, STARTTLS ([address]:25)", f"[{tls_mx.address}]:25", True,
                     tls_mx.address),
                    ("a domain: DNS (MX, A, AAAA, TLSA, MTA-STS) + STARTTLS + DANE", "d00.bench.test",
                     True, tls_mx.address)):
                _, body = probe(dest)  # warm: the first TLS context, the first lookups
                ours = [probe(dest)[0] for _ in range(args.rounds)]
                floor = [floor_smtp(floor_addr, floor_tls) for _ in range(args.rounds)]
                rows.append((label, stats(ours), stats(floor), body["recommended"]))

            results = [None] * args.concurrent

            errors = []

            def one(k):
                try:
                    results[k] = probe(f"d{k:02d}.bench.test")[0]
                except BaseException as e:  # noqa: B036 (reported below)
                    errors.append(repr(e))

            threads = [threading.Thread(target=one, args=(k,)) for k in range(args.concurrent)]
            t = time.monotonic()
            for th in threads:
                th.start()
            for th in threads:
                th.join()
            wall = time.monotonic() - t
            floor_wall = time.monotonic()
            floor_threads = [threading.Thread(target=floor_smtp, args=(tls_mx.address, True))
                             for _ in range(args.concurrent)]
            for th in floor_threads:
                th.start()
            for th in floor_threads:
                th.join()
            floor_wall = time.monotonic() - floor_wall

            print("$ " + " ".join(shlex.quote(a) for a in [sys.executable] + sys.argv))
            print(f"daemon: {binary}; {args.rounds} rounds each; probe_max_concurrent "
                  f"{d.config.get('probe_max_concurrent', 8)}")
            print(f"{'probe':66} {'median ms':>10} {'p90 ms':>8} {'floor median':>13} {'ratio':>6}")
            for label, (med, p90), (fmed, _), rec in rows:
                print(f"{label:66} {med * 1000:10.1f} {p90 * 1000:8.1f} {fmed * 1000:13.1f} "
                      f"{med / fmed:6.1f}  (recommended {rec})")
            if errors:
                print(f"{len(errors)} of the {args.concurrent} failed: {errors[0]}")
                return 1
            med, p90 = stats(results)
            print(f"{args.concurrent} domains at once (DNS + STARTTLS + DANE): wall {wall:.2f} s, "
                  f"per request median {med * 1000:.0f} ms, p90 {p90 * 1000:.0f} ms; floor "
                  f"({args.concurrent} smtplib STARTTLS conversations at once) {floor_wall:.2f} s")
    finally:
        for x in reversed(made):
            x.destroy() if hasattr(x, "destroy") else x.stop()
        if not args.keep:
            import shutil
            shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
