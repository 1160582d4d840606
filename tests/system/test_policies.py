# System tests of the TLS policy resource (issue 5) against real Postfix instances. Black box: the
# daemon, a real PostgreSQL, a managed Postfix and two more Postfix instances playing remote MXs.
#  1. What Postfix does with each rendered entry: peers with and without STARTTLS reached through
#     the managed instance at next hops [127.0.0.1]:PORT (encrypt defers "TLS is required, but was
#     not offered", may delivers, fingerprint right/wrong, TLS seen in the peer's log), a policy
#     change reaching running Postfix processes without a reload, and the time that takes.
#  2. The live map is exactly the enabled rows the API lists (postmap -s / -q, the text source)
#     after create, replace, patch, disable, delete and bulk; no reload for a policy write; hash,
#     lmdb and cdb.
#  3. Refusals (an injection corpus of destinations and attributes) change nothing: database,
#     map files, main.cf, metrics.
#  4. Managed rows; 5. list filters, pagination, bulk dry run and one bad item; 6. bulk of 100,000
#     rows on the release build, with timings (bench/bulk_policies.py breaks them down).
# Contract: shared/design/api.md ("TLS policies", "Writes are jobs"); facts:
# shared/design/postfix.md ("The policy map"); harness: tests/README.md.
import base64
import datetime
import hashlib
import itertools
import json
import os
import re
import select
import smtplib
import statistics
import struct
import subprocess
import time
import urllib.parse

import pytest

from tests.harness.daemon import Daemon
from tests.harness.pg import PG_BIN
from tests.harness.postfix import PostfixSandbox
from tests.harness.util import REPO_ROOT, free_port, run, wait_until
from tests.system.conftest import base_config, check_daemon, setup_tokens
from tests.system.test_foundation import assert_problem, parse_metrics, sample

MAP_NAME = "smtptlsd_tls_policy"  # <postfix_config_directory>/smtptlsd_tls_policy (+ index)
INDEX_SUFFIX = {"hash": ".db", "btree": ".db", "lmdb": ".lmdb", "cdb": ".cdb"}
RELOADS = "smtptlsd_postfix_reloads_total"
POSTMAPS = "smtptlsd_postmap_runs_total"
RELEASE_BIN = os.path.join(REPO_ROOT, "build", "smtptlsd")
TLS_NOT_OFFERED = "TLS is required, but was not offered"
_counter = itertools.count(1)


def qd(destination):
    """A destination as a URL path segment."""
    return urllib.parse.quote(destination, safe="")


def map_keys(destination):
    """The keys a stored destination has in the map: itself, and for an internationalized one
    (A-labels, xn--...) its U-label spelling too (docs/api.md "Destinations")."""
    m = re.match(r"(\[|\.)?([^\]:]*)(.*)$", destination)
    if destination.startswith("[ipv6:") or not re.search(r"(^|\.)xn--", m.group(2)):
        return [destination]
    labels = [lb[4:].encode().decode("punycode") if lb.startswith("xn--") else lb
              for lb in m.group(2).split(".")]
    return [destination, (m.group(1) or "") + ".".join(labels) + m.group(3)]


def expected_value(p):
    """The map value the API row `p` stands for, in Postfix's terms: (level, {attribute: value})."""
    attrs = {}
    if p.get("match"):
        attrs["match"] = ("|" if p["level"] == "fingerprint" else ":").join(p["match"])
    if p.get("protocols"):
        attrs["protocols"] = p["protocols"]
    if p.get("ciphers"):
        attrs["ciphers"] = p["ciphers"]
    if p.get("exclude"):
        attrs["exclude"] = ":".join(p["exclude"])
    for name in ("servername", "tafile"):
        if p.get(name):
            attrs[name] = p[name]
    if p.get("connection_reuse") is not None:
        attrs["connection_reuse"] = "yes" if p["connection_reuse"] else "no"
    return p["level"], attrs


def parse_value(value):
    """A map value 'level attr=v attr=v' -> (level, {attr: v}); an attribute twice is an error."""
    words = value.split()
    assert words, f"empty map value {value!r}"
    attrs = {}
    for w in words[1:]:
        name, sep, v = w.partition("=")
        assert sep and v, f"map value {value!r}: {w!r} is not name=value"
        assert name not in attrs, f"map value {value!r}: {name} twice"
        attrs[name] = v
    return words[0], attrs


def parse_map_source(text):
    """Map source text read as postmap(1) reads it -> [(key, value)] in file order, plus the
    comment lines. Continuation lines (leading whitespace) are reported as entries of their own
    so that a test sees them (the daemon must never write one)."""
    entries, comments = [], []
    for line in text.split("\n"):
        if not line.strip():
            continue
        if line.lstrip().startswith("#"):
            comments.append(line)
            continue
        if line[0] in " \t":
            entries.append(("<continuation>", line))
            continue
        m = re.match(r"(\S+)[ \t]+(.*)$", line)
        key, value = (m.group(1), m.group(2)) if m else (line, "")
        entries.append((key, value.strip()))
    return entries, comments


class Psql:
    """One psql session kept open (a query costs ~2 ms instead of a new psql's ~100 ms): the
    refusal tests look at the database after every request."""

    def __init__(self, pg, db):
        self.proc = subprocess.Popen(
            [f"{PG_BIN}/psql", "-X", "-q", "-A", "-t", "-h", "127.0.0.1", "-p", str(pg.port),
             "-U", "postgres", "-d", db], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, env=dict(os.environ, PGCONNECT_TIMEOUT="5"))
        self.n = itertools.count(1)

    def query(self, sql, timeout=30):
        """The output of one statement (stripped); an ERROR fails the test."""
        marker = f"--end-of-query-{next(self.n)}--\n".encode()
        self.proc.stdin.write(sql.rstrip().rstrip(";").encode() + b";\n\\echo " + marker)
        self.proc.stdin.flush()
        fd, out = self.proc.stdout.fileno(), b""
        deadline = time.monotonic() + timeout
        while not (out == marker or out.endswith(b"\n" + marker)):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise TimeoutError(f"psql: no answer to {sql!r} within {timeout}s")
            chunk = os.read(fd, 1 << 20)
            assert chunk, f"psql exited: {out.decode(errors='replace')}"
            out += chunk
        text = out[:-len(marker)].decode().strip()
        assert "ERROR:" not in text, f"{sql}: {text}"
        return text

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc.stdout.close()


def cdb_records(path):
    """[(key, value)] of a cdb file (D. J. Bernstein's format: a 2048-byte header of 256 (position,
    length) hash-table pointers, then records klen, dlen (32-bit LE), key, data, then the
    tables). Postfix may store a trailing NUL: it is removed."""
    with open(path, "rb") as f:
        data = f.read()
    end = min(struct.unpack_from("<II", data, i * 8)[0] for i in range(256))
    pos, out = 2048, []
    while pos < end:
        klen, dlen = struct.unpack_from("<II", data, pos)
        pos += 8
        key, value = data[pos:pos + klen], data[pos + klen:pos + klen + dlen]
        pos += klen + dlen
        out.append((key.rstrip(b"\0").decode(), value.rstrip(b"\0").decode()))
    return out


def policy_cursor(destination):
    """The cursor the policy list gives as `next` for a page ending at destination
    (src/core/cursor.c: base64url of "p1:" + position + 6 bytes of SHA-256 over that)."""
    raw = b"p1:" + destination.encode()
    raw += hashlib.sha256(raw).digest()[:6]
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


# -- one daemon managing one Postfix ---------------------------------------------------------------
class PolicySite:
    """A daemon (self.d) managing a Postfix sandbox (self.pf) with a database in the session's
    PostgreSQL (self.pg / self.db)."""

    def __init__(self, d, pf, pg, map_type="hash"):
        self.d, self.pf, self.pg = d, pf, pg
        self.db = d.config["database_url"].rsplit("/", 1)[1]
        self.psql = Psql(pg, self.db)
        self.map_type = map_type
        self.map_path = os.path.join(pf.config_dir, MAP_NAME)
        self.index_path = self.map_path + INDEX_SUFFIX[map_type]

    # HTTP
    def req(self, method, path, body=None, timeout=60, **kw):
        return self.d.http(method, path, body, timeout=timeout, **kw)

    def put(self, dest, body, query="", **kw):
        return self.req("PUT", f"/api/v1/tls-policies/{qd(dest)}{query}", body, **kw)

    def patch(self, dest, body, query="", **kw):
        return self.req("PATCH", f"/api/v1/tls-policies/{qd(dest)}{query}", body, **kw)

    def delete(self, dest, query="", **kw):
        return self.req("DELETE", f"/api/v1/tls-policies/{qd(dest)}{query}", **kw)

    def post(self, body, query="", **kw):
        return self.req("POST", f"/api/v1/tls-policies{query}", body, **kw)

    def bulk(self, items, query="", **kw):
        return self.req("PUT", f"/api/v1/tls-policies{query}", {"items": items}, **kw)

    def get(self, dest, **kw):
        return self.d.get(f"/api/v1/tls-policies/{qd(dest)}", **kw)

    def put_ok(self, dest, body, status=(200, 201), **kw):
        r = self.put(dest, body, **kw)
        assert r.status in ((status,) if isinstance(status, int) else status), \
            f"PUT {dest} {body}: {r}"
        return r

    def policies(self, query=""):
        """Every row through the API (following the cursor)."""
        items, after = [], None
        while True:
            sep = "&" if query else ""
            path = f"/api/v1/tls-policies?limit=1000{sep}{query}"
            if after:
                path += "&after=" + urllib.parse.quote(after, safe="")
            r = self.d.get(path, timeout=60)
            assert r.status == 200, r
            items += r.body["items"]
            after = r.body["next"]
            if not after:
                return items

    def job(self, r_or_id):
        jid = r_or_id if isinstance(r_or_id, (int, str)) else r_or_id.headers.get("Job-Id")
        assert jid, f"no Job-Id header on {r_or_id}"
        r = self.d.get(f"/api/v1/jobs/{jid}")
        assert r.status == 200, r
        return r.body

    def metric(self, name, **labels):
        r = self.d.get("/metrics")
        assert r.status == 200, r
        return sample(parse_metrics(r.body)[0], name, **labels)

    # database
    def sql(self, query):
        return self.psql.query(query)

    def rows(self):
        return self.sql("SELECT coalesce(json_agg(p ORDER BY destination)::text, '[]') "
                        "FROM tls_policies p")

    def generation(self):
        return int(self.sql("SELECT generation FROM config_state"))

    # files and Postfix
    def map_text(self):
        try:
            with open(self.map_path, "rb") as f:
                return f.read().decode()
        except FileNotFoundError:
            return None

    def map_dump(self):
        """Every entry of the LIVE index -> {key: value} (None when there is none): `postmap -s`,
        or for cdb (no sequence operation) the records read from the file itself; a key twice
        is an error."""
        if not os.path.exists(self.index_path):
            return None
        if self.map_type == "cdb":
            pairs = cdb_records(self.index_path)
        else:
            out = self.pf.postmap("-s", f"{self.map_type}:{self.map_path}")
            pairs = [(re.split(r"[ \t]+", line, maxsplit=1) + [""])[:2]
                     for line in out.splitlines()]
        got = {}
        for key, value, *_ in pairs:
            assert key not in got, f"the index holds {key!r} twice"
            got[key] = value.strip()
        return got

    def map_query(self, *keys):
        """`postmap -q - TYPE:map` for keys: {key: value} of those found (one key: its value
        or None)."""
        proc = run(["postmap", "-c", self.pf.config_dir, "-q", "-",
                    f"{self.map_type}:{self.map_path}"], check=False, input="".join(
                        k + "\n" for k in keys))
        assert proc.returncode in (0, 1) and not proc.stderr.strip(), \
            f"postmap -q: exit {proc.returncode} {proc.stderr}"
        found = {}
        for line in proc.stdout.splitlines():
            m = re.match(r"(\S+)[ \t]+(.*)$", line)
            assert m, f"postmap -q -: {line!r}"
            found[m.group(1)] = m.group(2).strip()
        return found.get(keys[0]) if len(keys) == 1 else found

    def file_state(self, path):
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return None
        with open(path, "rb") as f:
            return (hashlib.sha256(f.read()).hexdigest(), st.st_ino, st.st_mtime_ns)

    def snapshot(self):
        """What a refused write must leave exactly as it was."""
        return {
            "rows": self.rows(),
            "generation": self.generation(),
            "map text": self.file_state(self.map_path),
            "map index": self.file_state(self.index_path),
            "main.cf": self.file_state(self.pf.main_cf),
            "postmap runs": self.metric(POSTMAPS),
            "reloads": self.metric(RELOADS, result="ok"),
        }

    def reload_lines(self):
        """How many times Postfix's master logged a reload."""
        return len(re.findall(r"postfix/master\[\d+\]: reload ", self.pf.maillog()))

    def main_cf_param(self, name):
        return self.pf.param(name)

    # the central check
    def assert_map_is_the_enabled_rows(self, absent=()):
        """main.cf names the map (unless there is no policy at all), the live index holds exactly
        the enabled rows the API lists (postmap -s, and postmap -q for every row and for each
        `absent` key), and the text source beside it says the same, sorted, one line per entry,
        with nothing else than comments."""
        rows = self.policies()
        enabled = {k: expected_value(p) for p in rows if p["enabled"]
                   for k in map_keys(p["destination"])}
        disabled = [k for p in rows if not p["enabled"] for k in map_keys(p["destination"])]
        assert int(self.sql("SELECT count(*) FROM tls_policies")) == len(rows)
        param = self.main_cf_param("smtp_tls_policy_maps")
        if not rows and not param:
            return rows  # no policy at all: Postfix consults no policy map
        assert param == f"{self.map_type}:{self.map_path}", \
            f"main.cf: smtp_tls_policy_maps = {param!r} while {len(rows)} policies exist"
        dump = self.map_dump()
        assert dump is not None, f"no live index {self.index_path}"
        got = {k: parse_value(v) for k, v in dump.items()}
        extra = sorted(set(got) - set(enabled))
        missing = sorted(set(enabled) - set(got))
        assert not extra and not missing, \
            f"the live map differs from the enabled rows: extra {extra}, missing {missing}"
        wrong = {k: (got[k], enabled[k]) for k in enabled if got[k] != enabled[k]}
        assert not wrong, f"map values differ from the rows (map, row): {wrong}"
        others = list(disabled) + list(absent)
        found = self.map_query(*enabled, *others, "no-such-destination.example")
        for key, want in enabled.items():
            value = found.get(key)
            assert value is not None and parse_value(value) == want, \
                f"postmap -q {key}: {value!r}, expected {want}"
        for key in others:
            assert key not in found, f"postmap -q {key} finds {found[key]!r} but the row is " \
                f"{'disabled' if key in disabled else 'absent'}"
        assert "no-such-destination.example" not in found
        text = self.map_text()
        assert text is not None, f"no map source {self.map_path}"
        assert text.endswith("\n"), "the map source does not end with a newline"
        entries, comments = parse_map_source(text)
        assert comments and text.startswith("#"), "the map source should start with a comment"
        keys = [k for k, _ in entries]
        assert "<continuation>" not in keys, f"continuation line in the map source: {entries}"
        rows_order = [k for k in keys if k.isascii()]  # a U-label key follows its A-label's
        assert rows_order == sorted(rows_order, key=lambda k: k.encode()), \
            "the map source is not sorted"
        assert len(keys) == len(set(keys)), "a key twice in the map source"
        assert {k: parse_value(v) for k, v in entries} == enabled, \
            "the map source beside the index does not hold the enabled rows"
        return rows


@pytest.fixture
def make_policy_site(make_daemon, session_dir, pg):
    """make_policy_site(config=None, map_type="hash", extra=None, transport=None): a Postfix of the
    test's own (more main.cf parameters `extra`; a transport map {domain: nexthop}) and a daemon
    managing it."""
    made = []

    def make(config=None, map_type="hash", extra=None, transport=None):
        base = os.path.join(session_dir, f"pol{next(_counter)}")
        extra = dict(extra or {})
        if transport:
            extra["transport_maps"] = f"hash:{os.path.join(base, 'etc', 'transport')}"
        pf = PostfixSandbox(base, extra=extra)
        made.append(pf)
        pf.setup()
        if transport:
            path = os.path.join(pf.config_dir, "transport")
            with open(path, "w") as f:
                f.writelines(f"{k}\t{v}\n" for k, v in transport.items())
            pf.postmap(f"hash:{path}")
        pf.start()
        cfg = {"postfix_config_directory": pf.config_dir, **pf.argv_prefixes,
               "smtp_probe_address": f"127.0.0.1:{pf.port}"}
        if map_type != "hash":
            cfg["policy_map_type"] = map_type
        cfg.update(config or {})
        site = PolicySite(make_daemon(cfg), pf, pg, map_type)
        made.append(site)
        return site

    yield make
    for x in made:
        if isinstance(x, PolicySite):
            x.psql.close()
        else:
            x.stop()  # the files stay: session_dir is removed after a passing run


@pytest.fixture
def site(make_policy_site):
    return make_policy_site()


# == 1. what Postfix does with each entry ==========================================================
# Two remote MXs: one without STARTTLS, one with it (a test-CA certificate, smtpd_tls_loglevel 1).
# Each listens on several ports, so that every case has a next hop [127.0.0.1]:PORT of its own; the
# managed instance relays <case>.example to its case's next hop through a transport map.
PLAIN_CASES = ("plain-encrypt", "plain-may", "plain-disabled", "plain-change")
TLS_CASES = ("tls-encrypt", "tls-none", "tls-fp", "tls-fp-wrong", "tls-fp-multi", "tls-change")


def add_listeners(pf, names, taken=()):
    """More smtpd listeners on a (set-up, not started) sandbox: {name: port}, none of them one of
    taken's (free_port can hand out a port twice while nothing binds it yet)."""
    ports = {}
    for name in names:
        port = free_port()
        while port in ports.values() or port in taken or port == pf.port:
            port = free_port()
        pf.postconf("-M", f"127.0.0.1:{port}/inet = 127.0.0.1:{port} inet n - n - - smtpd")
        ports[name] = port
    old = time.time() - 10  # Postfix waits while its configuration looks freshly written
    os.utime(pf.master_cf, (old, old))
    return ports


def offers_starttls(port):
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
        s.ehlo("client.test.example")
        return s.has_extn("starttls")


class Outbound:
    def __init__(self, site, plain, tls, ports, peer_cert):
        self.site, self.plain, self.tls, self.ports, self.peer_cert = \
            site, plain, tls, ports, peer_cert
        self.n = itertools.count(1)

    def hop(self, case):
        return f"[127.0.0.1]:{self.ports[case]}"

    def peer(self, case):
        return self.plain if case.startswith("plain") else self.tls

    def send(self, case):
        """Submit a message for <case>.example to the managed instance: its recipient."""
        rcpt = f"m{next(self.n)}-{int(time.time() * 1000) % 100000}@{case}.example"
        self.site.pf.send_mail(rcpt)
        return rcpt

    def attempts(self, rcpt):
        """The managed instance's delivery attempts for rcpt: [(status, reason)]."""
        return re.findall(rf"to=<{re.escape(rcpt)}>, relay=.*? status=(\w+) \((.*)\)$",
                          self.site.pf.maillog(), re.M)

    def wait_attempt(self, rcpt, after=0, timeout=30):
        """Wait until rcpt has more than `after` delivery attempts: the last one."""
        wait_until(lambda: len(self.attempts(rcpt)) > after, timeout,
                   f"delivery attempt {after + 1} to {rcpt}", interval=0.01)
        return self.attempts(rcpt)[-1]

    def flush(self):
        run(["postqueue", "-c", self.site.pf.config_dir, "-f"])

    def queue(self):
        """postqueue -j: {recipient: (queue_name, delay_reason)}."""
        out = run(["postqueue", "-c", self.site.pf.config_dir, "-j"]).stdout
        got = {}
        for line in out.splitlines():
            msg = json.loads(line)
            for r in msg.get("recipients", []):
                got[r["address"]] = (msg["queue_name"], r.get("delay_reason", ""))
        return got

    def received(self, rcpt, timeout=15):
        """Wait until rcpt's peer accepted (and discarded) the message; whether that SMTP session
        was TLS (the peer's smtpd logs 'TLS connection established' between 'connect from' and
        the queue id's 'client=' line, all under one process id)."""
        peer = self.peer(rcpt.split("@")[1][:-len(".example")])
        m = peer.wait_maillog(rf"\]: ([0-9A-F]+): to=<{re.escape(rcpt)}>, relay=none, .*"
                              rf"status=sent", timeout)
        lines = peer.maillog().splitlines()
        client = [i for i, line in enumerate(lines)
                  if re.search(rf"postfix/smtpd\[\d+\]: {m.group(1)}: client=", line)]
        assert len(client) == 1, f"no single smtpd 'client=' line for {m.group(1)}"
        pid = re.search(r"smtpd\[(\d+)\]", lines[client[0]]).group(1)
        for line in reversed(lines[:client[0]]):
            if f"smtpd[{pid}]: " not in line:
                continue
            if "TLS connection established from" in line:
                return True
            if "]: connect from " in line:
                return False
        raise AssertionError(f"no 'connect from' before the message for {rcpt} in the peer log")

    def put(self, case, body):
        r = self.site.put(self.hop(case), body)
        assert r.status in (200, 201), f"PUT {self.hop(case)} {body}: {r}"
        return r


@pytest.fixture
def outbound(make_policy_site, session_dir, certs):
    peer_cert = certs.leaf("policy-peer", ("remote.test.example",))
    plain = PostfixSandbox.remote_mx(os.path.join(session_dir, f"pol-plain{next(_counter)}"))
    tls = PostfixSandbox.remote_mx(os.path.join(session_dir, f"pol-tls{next(_counter)}"),
                                   starttls=True, cert=peer_cert.cert, key=peer_cert.key)
    tls.extra["smtpd_tls_loglevel"] = "1"
    ports = {}
    started = []
    try:
        for peer, cases in ((plain, PLAIN_CASES), (tls, TLS_CASES)):
            peer.setup()
            ports.update(add_listeners(peer, cases, set(ports.values()) | {plain.port, tls.port}))
            started.append(peer)
            peer.start()
        site = make_policy_site(transport={f"{case}.example": f"smtp:[127.0.0.1]:{port}"
                                           for case, port in ports.items()})
        o = Outbound(site, plain, tls, ports, peer_cert)
        assert not offers_starttls(ports["plain-encrypt"])
        assert offers_starttls(ports["tls-encrypt"])
        yield o
    finally:
        for peer in started:
            peer.stop()


def test_postfix_enforces_each_level_at_the_next_hop(outbound, certs):
    """One bulk write sets a policy per next hop; then one message per case shows what Postfix
    does with each rendered entry."""
    o, site = outbound, outbound.site
    right = o.peer_cert.fingerprint()
    wrong = certs.ec_leaf().fingerprint()
    assert right != wrong
    policies = {
        "plain-encrypt": {"level": "encrypt"},
        "plain-may": {"level": "may"},
        "plain-disabled": {"level": "encrypt", "enabled": False},
        "tls-encrypt": {"level": "encrypt", "protocols": ">=TLSv1.2"},
        "tls-none": {"level": "none"},
        "tls-fp": {"level": "fingerprint", "match": [right]},
        "tls-fp-wrong": {"level": "fingerprint", "match": [wrong]},
        "tls-fp-multi": {"level": "fingerprint", "match": [wrong, right.lower()]},
    }
    r = site.bulk([{"destination": o.hop(case), **body} for case, body in policies.items()])
    assert r.status == 200 and r.body["added"] == len(policies), r
    assert site.main_cf_param("smtp_tls_policy_maps") == f"hash:{site.map_path}"
    site.assert_map_is_the_enabled_rows()
    rcpts = {case: o.send(case) for case in policies}
    outcome = {case: o.wait_attempt(rcpt) for case, rcpt in rcpts.items()}

    # encrypt to a peer without STARTTLS: deferred, and the message stays in the queue
    status, reason = outcome["plain-encrypt"]
    assert status == "deferred" and TLS_NOT_OFFERED in reason, outcome["plain-encrypt"]
    queued = o.queue()
    held = rcpts["plain-encrypt"]
    assert queued.get(held, ("",))[0] == "deferred" and TLS_NOT_OFFERED in queued[held][1], queued
    # may, and a disabled encrypt row (left out of the map): delivered in clear
    for case in ("plain-may", "plain-disabled"):
        assert outcome[case][0] == "sent", (case, outcome[case])
        assert o.received(rcpts[case]) is False, case
    # encrypt, fingerprint with the right digest (alone, or after a wrong one): delivered over TLS
    for case in ("tls-encrypt", "tls-fp", "tls-fp-multi"):
        assert outcome[case][0] == "sent", (case, outcome[case])
        assert o.received(rcpts[case]) is True, f"{case}: the peer logged no TLS session"
    # none to the STARTTLS peer: delivered without TLS
    assert outcome["tls-none"][0] == "sent", outcome["tls-none"]
    assert o.received(rcpts["tls-none"]) is False, "level none, but the session used TLS"
    # fingerprint with a wrong digest: deferred, and the log says why
    status, reason = outcome["tls-fp-wrong"]
    assert status == "deferred" and "certificate not verified" in reason.lower(), (status, reason)
    assert o.queue().get(rcpts["tls-fp-wrong"], ("",))[0] == "deferred"
    for case in ("plain-encrypt", "tls-fp-wrong"):
        assert f"to=<{rcpts[case]}>" not in o.peer(case).maillog(), f"{case}: the peer got it"
    assert set(o.queue()) == {rcpts["plain-encrypt"], rcpts["tls-fp-wrong"]}, o.queue()


def test_a_policy_change_reaches_running_postfix_without_a_reload(outbound, certs):
    """Change the policy of a next hop that Postfix has just used: the next delivery follows the
    new policy (Postfix reopens an indexed map that changed; no reload)."""
    o, site = outbound, outbound.site
    o.put("plain-change", {"level": "may"})  # the first policy: main.cf gains the map (reload)
    rcpt = o.send("plain-change")
    assert o.wait_attempt(rcpt)[0] == "sent"
    reloads = site.reload_lines()
    assert reloads >= 1

    # encrypt to the peer without STARTTLS: deferred, held in the queue
    o.put("plain-change", {"level": "encrypt"})
    held = o.send("plain-change")
    status, reason = o.wait_attempt(held)
    assert status == "deferred" and TLS_NOT_OFFERED in reason, \
        f"after the write to encrypt, the next message was {status} ({reason})"
    assert o.queue().get(held, ("",))[0] == "deferred"
    # may: the held message goes out at the next queue run
    o.put("plain-change", {"level": "may"})
    o.flush()
    status, reason = o.wait_attempt(held, after=1)
    assert status == "sent", f"after the write to may, the held message was {status} ({reason})"
    assert o.received(held) is False

    # the STARTTLS peer: encrypt, then a wrong fingerprint, then the right one
    right, wrong = o.peer_cert.fingerprint(), certs.ec_leaf().fingerprint()
    o.put("tls-change", {"level": "encrypt"})
    rcpt = o.send("tls-change")
    assert o.wait_attempt(rcpt)[0] == "sent" and o.received(rcpt) is True
    o.put("tls-change", {"level": "fingerprint", "match": [wrong]})
    rcpt = o.send("tls-change")
    status, reason = o.wait_attempt(rcpt)
    assert status == "deferred" and "certificate not verified" in reason.lower(), \
        f"after the write to a wrong fingerprint, the next message was {status} ({reason})"
    o.put("tls-change", {"level": "fingerprint", "match": [right]})
    o.flush()
    status, reason = o.wait_attempt(rcpt, after=1)
    assert status == "sent", f"after the write to the right fingerprint: {status} ({reason})"
    assert o.received(rcpt) is True
    assert site.reload_lines() == reloads, "Postfix was reloaded for a policy change"
    assert o.queue() == {}, o.queue()


def test_time_from_write_to_postfix_using_the_policy(outbound, capsys):
    """Measure (and print) how long after the API write returns Postfix applies the new entry, over
    a few trials: encrypt -> the next message is deferred; may -> a flush delivers it."""
    o = outbound
    o.put("plain-change", {"level": "may"})
    rcpt = o.send("plain-change")
    assert o.wait_attempt(rcpt)[0] == "sent"
    to_encrypt, to_may, failures = [], [], []
    for trial in range(3):
        o.put("plain-change", {"level": "encrypt", "note": f"trial {trial}"})
        t0 = time.monotonic()
        rcpt = o.send("plain-change")
        status, reason = o.wait_attempt(rcpt)
        if status != "deferred":
            failures.append(f"trial {trial}: first message after the write to encrypt: {status}")
            continue
        to_encrypt.append(time.monotonic() - t0)

        o.put("plain-change", {"level": "may", "note": f"trial {trial}"})
        t0 = time.monotonic()
        o.flush()
        status, reason = o.wait_attempt(rcpt, after=1)
        if status != "sent":
            failures.append(f"trial {trial}: the held message after the write to may: {status}")
            break
        to_may.append(time.monotonic() - t0)

    def fmt(v):
        if not v:
            return "-"
        return (", ".join(f"{x * 1000:.0f}" for x in v) +
                f" (median {statistics.median(v) * 1000:.0f})")
    with capsys.disabled():
        print(f"\nwrite returned -> Postfix used the new policy, ms: encrypt [send, deferred] "
              f"{fmt(to_encrypt)}; may [flush, delivered] {fmt(to_may)}")
    assert not failures, "; ".join(failures)
    assert max(to_encrypt + to_may) < 10, "Postfix took more than 10 s to use a new policy"


# == 2. the live map is exactly the enabled rows ==================================================
FP1 = ":".join(["AB"] * 32)
FP2 = ":".join(f"{i:02X}" for i in range(32))


def test_map_holds_exactly_the_enabled_rows_and_no_write_reloads(site):
    # the first policy puts smtp_tls_policy_maps into main.cf (a main.cf change: a reload)
    r = site.put_ok("first.example", {"level": "may"}, status=201)
    assert r.headers.get("Location") == "/api/v1/tls-policies/first.example", r
    assert site.main_cf_param("smtp_tls_policy_maps") == f"hash:{site.map_path}"
    site.assert_map_is_the_enabled_rows()
    assert site.job(r)["reload"] is True, "smtp_tls_policy_maps was added to main.cf: a reload"
    wait_until(lambda: site.reload_lines() >= 1, 10, "Postfix to log the reload")
    main_cf = site.file_state(site.pf.main_cf)
    reloads, reload_lines = site.metric(RELOADS, result="ok"), site.reload_lines()
    postmaps = site.metric(POSTMAPS)

    def write(method, dest, body=None, status=200, query="", map_changes=True, absent=()):
        nonlocal postmaps
        path = f"/api/v1/tls-policies/{qd(dest)}" if dest else "/api/v1/tls-policies"
        r = site.req(method, path + query, body)
        assert r.status == status, f"{method} {dest} {body}: {r}"
        job = site.job(r)
        assert job["status"] == "applied", job
        assert job["reload"] is False, f"{method} {dest}: a policy write reloaded Postfix: {job}"
        assert job["postmap"] is map_changes, f"{method} {dest}: job postmap {job['postmap']}"
        postmaps += map_changes
        assert site.metric(POSTMAPS) == postmaps, f"{method} {dest}: postmap runs"
        site.assert_map_is_the_enabled_rows(absent=absent)
        return r

    write("PUT", "[127.0.0.1]:2525", {"level": "encrypt", "protocols": ">=TLSv1.2",
                                      "ciphers": "high", "exclude": ["aNULL", "RC4"]}, 201)
    write("POST", None, {"destination": ".Partner.Example", "level": "verify",
                         "match": ["hostname", "nexthop", "dot-nexthop"]}, 201)
    # (a SHA-512 digest is refused under the sandbox's sha256 smtp_tls_fingerprint_digest: it
    # could never match; test_postfix_postconf.py)
    write("PUT", "[mx.bank.example]", {"level": "fingerprint", "match": [FP1, FP2.lower()]}, 201)
    write("PUT", "[mx.bank.example]:465", {"level": "secure", "match": ["mx.bank.example"],
                                           "protocols": "!SSLv2:!SSLv3"}, 201)
    write("PUT", "dane.example", {"level": "dane"}, 201)
    write("PUT", "only.example", {"level": "dane-only", "protocols": ">=TLSv1.3"}, 201)
    write("PUT", "off.example", {"level": "none"}, 201)
    # the note is stored, never rendered: a newline in it smuggles nothing
    write("PUT", "noted.example", {"level": "may", "note": "partner\nvictim.example none"}, 201,
          absent=("victim.example",))
    # a disabled row is kept and left out of the map; creating one renders the same map
    write("PUT", "disabled.example", {"level": "encrypt", "enabled": False}, 201,
          map_changes=False, absent=("disabled.example",))
    # replace (PUT 200), patch (both media types), a note-only patch renders the same map
    write("PUT", "[127.0.0.1]:2525", {"level": "may"})
    write("PATCH", "[mx.bank.example]", {"match": [FP2]})
    r = site.req("PATCH", f"/api/v1/tls-policies/{qd('dane.example')}",
                 {"level": "encrypt", "ciphers": "medium"},
                 content_type="application/merge-patch+json")
    assert r.status == 200, r
    assert site.job(r)["reload"] is False
    postmaps += 1
    site.assert_map_is_the_enabled_rows()
    write("PATCH", "dane.example", {"ciphers": None})
    write("PATCH", "only.example", {"note": "only a note"}, map_changes=False)
    # disable and enable again
    write("PATCH", "first.example", {"enabled": False}, absent=("first.example",))
    write("PATCH", "disabled.example", {"enabled": True})
    # delete (204), an enabled and a disabled one
    write("DELETE", "off.example", status=204, absent=("off.example",))
    write("PATCH", "noted.example", {"enabled": False})
    write("DELETE", "noted.example", status=204, map_changes=False, absent=("noted.example",))
    assert site.get("off.example").status == 404
    # bulk: a set with changes, removals and additions
    items = [{"destination": d, "level": "encrypt"} for d in ("b1.example", "b2.example")]
    items += [{"destination": "[mx.bank.example]", "level": "fingerprint", "match": [FP2]},
              {"destination": ".partner.example", "level": "verify",
               "match": ["hostname", "nexthop", "dot-nexthop"]},
              {"destination": "b3.example", "level": "may", "enabled": False}]
    r = write("PUT", None, {"items": items}, absent=("first.example", "dane.example",
                                                    "b3.example"))
    assert {k: r.body.get(k) for k in ("added", "changed", "removed", "unchanged")} == \
        {"added": 3, "changed": 0, "removed": 6, "unchanged": 2}, r
    # the same set again: nothing to do, no postmap
    r = write("PUT", None, {"items": items}, map_changes=False)
    assert {k: r.body.get(k) for k in ("added", "changed", "removed", "unchanged")} == \
        {"added": 0, "changed": 0, "removed": 0, "unchanged": 5}, r

    assert site.metric(RELOADS, result="ok") == reloads, "a policy write reloaded Postfix (metric)"
    assert site.reload_lines() == reload_lines, "Postfix logged a reload after a policy write"
    assert site.file_state(site.pf.main_cf) == main_cf, "main.cf changed for a policy write"
    assert site.d.get("/api/v1/status").body["state"] == "in_sync"


def test_deleting_the_last_policies_takes_them_out_of_postfix(site):
    """With no policy left (settings unmanaged), Postfix must not keep enforcing the deleted ones:
    either main.cf no longer names the map, or the map is empty."""
    site.put_ok("a.example", {"level": "encrypt"})
    assert site.delete("a.example").status == 204
    site.assert_map_is_the_enabled_rows(absent=("a.example",))
    r = site.bulk([{"destination": "b.example", "level": "encrypt"}])
    assert r.status == 200 and r.body["added"] == 1, r
    site.assert_map_is_the_enabled_rows(absent=("a.example",))
    r = site.bulk([])
    assert r.status == 200 and r.body["removed"] == 1, r
    site.assert_map_is_the_enabled_rows(absent=("a.example", "b.example"))


def assert_postfix_sees_the_change(site, write):
    """Run write() (a policy write that changes the map) holding the live index open, as a running
    smtp(8) does, and check what Postfix's dict_changed() (util/dict.c) checks before it serves the
    next request: the open file has no link left (st_nlink 0) or a new st_mtime. Otherwise the
    running processes keep using the OLD policy until they exit (max_idle, max_use) or a reload."""
    with open(site.index_path, "rb") as f:
        old = os.fstat(f.fileno())
        write()
        now = os.fstat(f.fileno())
        holders = [os.path.join(dirpath, name)
                   for dirpath, _, names in os.walk(site.pf.config_dir) for name in names
                   if os.stat(os.path.join(dirpath, name)).st_ino == old.st_ino]
        assert now.st_nlink == 0 or now.st_mtime != old.st_mtime, \
            f"after the policy write, the index Postfix has open is still linked " \
            f"(st_nlink {now.st_nlink}, as {holders}) with the same mtime: running Postfix " \
            f"processes do not see that the map changed and keep the old policy"


def test_running_postfix_processes_see_each_policy_write(site):
    site.put_ok("a.example", {"level": "may"})
    for level in ("encrypt", "may", "none"):
        assert_postfix_sees_the_change(site, lambda: site.put_ok("a.example", {"level": level}))
    assert_postfix_sees_the_change(site, lambda: site.bulk([{"destination": "b.example",
                                                             "level": "may"}]))


def test_config_shows_the_rendered_map(site):
    """GET /api/v1/config shows the policy map text of the desired state (api.md, "State and
    operations"): it is the text of the live map source once applied."""
    site.put_ok("a.example", {"level": "encrypt"})
    site.put_ok("[127.0.0.1]:2525", {"level": "may"})
    cfg = site.d.get("/api/v1/config").body
    assert cfg["main_cf"].get("smtp_tls_policy_maps") == f"hash:{site.map_path}", cfg
    assert cfg["tls_policy"] == site.map_text(), \
        f"/api/v1/config tls_policy {cfg['tls_policy']!r} is not the map text " \
        f"{site.map_text()!r}"


@pytest.mark.parametrize("map_type", ["lmdb", "cdb"])
def test_other_map_types(make_policy_site, map_type):
    site = make_policy_site(map_type=map_type)
    assert map_type in site.pf.postconf("-m").split(), f"postfix-{map_type} is not installed"
    site.put_ok("a.example", {"level": "encrypt"})
    site.put_ok("[127.0.0.1]:2525", {"level": "fingerprint", "match": [FP1]})
    site.put_ok("b.example", {"level": "may", "enabled": False})
    assert site.main_cf_param("smtp_tls_policy_maps") == f"{map_type}:{site.map_path}"
    site.assert_map_is_the_enabled_rows(absent=("b.example",))
    r = site.patch("a.example", {"level": "may"})
    assert r.status == 200 and site.job(r)["reload"] is False, r
    site.assert_map_is_the_enabled_rows(absent=("b.example",))
    assert_postfix_sees_the_change(site, lambda: site.delete("[127.0.0.1]:2525"))
    site.assert_map_is_the_enabled_rows(absent=("[127.0.0.1]:2525",))
    assert not os.path.exists(site.map_path + ".db"), "a hash index beside the " + map_type


# == 3. refusals change nothing ====================================================================
LABEL63 = "a" * 63
NAME253 = ".".join([LABEL63, LABEL63, LABEL63, "b" * 61])
NAME254 = ".".join([LABEL63, LABEL63, LABEL63, "b" * 62])
BAD_DESTINATIONS = [
    "bank.example none\nvictim.example", "bank.example\n", "bank.example\r", "bank\r\n.example",
    "bank.example\tnone", "bank .example", " bank.example", "bank.example ", "#bank.example",
    "bank.example#x", "bank,victim.example", "{bank}.example", "bank.example}", "bank/x.example",
    "$bank.example", "bank.$example", ".", "..bank.example", "bank.example.", "bank..example",
    LABEL63 + "a.example", NAME254, "\u2603.example", "[mx.example]:0", "[mx.example]:65536",
    "[mx.example]:", "[mx.example]:2x", "[mx.example", "[mx.example:25", "mx.example]",
    "[::1::2]:25", ".host:25", "", "[]", "[]:25", "-bank.example", "[127.0.0.1]:25:25", "*",
]


def assert_unchanged(site, before, what):
    after = site.snapshot()
    diff = {k: (before[k], after[k]) for k in before if before[k] != after[k]}
    assert not diff, f"{what} changed something: {diff}"


def test_injection_destinations_are_refused_and_change_nothing(site):
    site.put_ok("bank.example", {"level": "secure", "match": ["mx.bank.example"]})
    site.put_ok("[127.0.0.1]:2525", {"level": "encrypt"})
    before = site.snapshot()
    assert before["map index"] is not None
    for dest in BAD_DESTINATIONS:
        r = site.post({"destination": dest, "level": "none"})
        assert_problem(r, 422, "invalid_destination", "/destination")
        assert_unchanged(site, before, f"POST {dest!r}")
        r = site.bulk([{"destination": "good.example", "level": "may"},
                       {"destination": dest, "level": "none"}])
        assert_problem(r, 422, "invalid_destination", "/items/1/destination")
        assert_unchanged(site, before, f"a bulk with {dest!r}")
        if dest:
            r = site.put(dest, {"level": "none"})
            assert r.status == 422 and r.body.get("code") == "invalid_destination", \
                f"PUT /api/v1/tls-policies/{qd(dest)}: {r}"
            assert_unchanged(site, before, f"PUT /api/v1/tls-policies/{qd(dest)}")
            r = site.put("x.example", {"destination": dest, "level": "none"})
            assert r.status == 422, f"PUT x.example with destination {dest!r} in the body: {r}"
            assert_unchanged(site, before, f"PUT x.example with destination {dest!r}")
    # NUL: refused by the JSON layer (\u0000) or as a destination, never stored
    r = site.post({"destination": "bank.example\u0000victim.example", "level": "none"})
    assert r.status in (400, 422), r
    r = site.put("bank.example\u0000victim.example", {"level": "none"})
    assert r.status in (400, 404, 422), r
    assert_unchanged(site, before, "the refusals")
    site.assert_map_is_the_enabled_rows(absent=("victim.example",))
    # the edges that are accepted
    for dest in (LABEL63 + ".example", NAME253, "[mx.example]:1", "[mx.example]:65535",
                 "[192.0.2.1]", "xn--bcher-kva.example", ".sub.example", "relay.example:587",
                 "[ipv6:2001:db8::1]:25", "_dmarc.example"):
        r = site.put(dest, {"level": "may"})
        assert r.status == 201, f"PUT {dest!r}: {r}"
    site.assert_map_is_the_enabled_rows()


def test_upper_case_is_folded_and_duplicates_refused(site):
    r = site.post({"destination": "Mixed.EXAMPLE", "level": "may"})
    assert r.status == 201 and r.body["destination"] == "mixed.example", r
    assert r.headers.get("Location") == "/api/v1/tls-policies/mixed.example", r
    before = site.snapshot()
    r = site.post({"destination": "MIXED.example", "level": "encrypt"})
    assert_problem(r, 409, "duplicate_destination")
    assert_unchanged(site, before, "a POST of an existing destination in another case")
    r = site.bulk([{"destination": "a.example", "level": "may"},
                   {"destination": "Dup.example", "level": "may"},
                   {"destination": "dup.EXAMPLE", "level": "encrypt"}])
    body = assert_problem(r, 409, "duplicate_destination", "/items/2/destination")
    assert "dup.example" in body.get("detail", ""), body
    assert_unchanged(site, before, "a bulk with a duplicate")
    # GET and PUT by another case reach the same row
    assert site.get("MIXED.Example").body["destination"] == "mixed.example"
    r = site.put("MIXED.Example", {"level": "encrypt"})
    assert r.status == 200 and r.body["destination"] == "mixed.example", r
    site.assert_map_is_the_enabled_rows()


BAD_ATTRIBUTES = [
    ({"level": "may", "match": [FP1]}, ("invalid_attribute",), "/match"),
    ({"level": "encrypt", "match": ["hostname"]}, ("invalid_attribute",), "/match"),
    ({"level": "none", "protocols": ">=TLSv1.2"}, ("invalid_attribute",), "/protocols"),
    ({"level": "fingerprint"}, ("invalid_attribute",), "/match"),
    ({"level": "fingerprint", "match": []}, ("invalid_attribute",), "/match"),
    ({"level": "fingerprint", "match": ["AB:CD:EF"]}, ("invalid_value",), "/match"),
    ({"level": "fingerprint", "match": [FP1[:-1] + "G"]}, ("invalid_value",), "/match"),
    ({"level": "fingerprint", "match": [FP1 + ":AB"]}, ("invalid_value",), "/match"),
    ({"level": "fingerprint", "match": [FP1 + "|" + FP2]}, ("invalid_value",), "/match"),
    ({"level": "fingerprint", "match": [FP1 + " victim.example none"]}, ("invalid_value",),
     "/match"),
    ({"level": "verify", "match": ["hostname\nvictim.example none"]}, ("invalid_value",),
     "/match"),
    ({"level": "verify", "match": ["hostname victim.example"]}, ("invalid_value",), "/match"),
    ({"level": "encrypt", "protocols": "!SSLv2 victim.example none"}, ("invalid_value",),
     "/protocols"),
    ({"level": "encrypt", "protocols": ">=TLSv1.2\nvictim.example none"}, ("invalid_value",),
     "/protocols"),
    ({"level": "encrypt", "protocols": "TLSv9"}, ("invalid_value",), "/protocols"),
    ({"level": "encrypt", "ciphers": "ultra"}, ("invalid_value",), "/ciphers"),
    ({"level": "encrypt", "ciphers": "high victim.example"}, ("invalid_value",), "/ciphers"),
    ({"level": "encrypt", "exclude": ["RC4 victim.example none"]}, ("invalid_value",),
     "/exclude"),
    ({"level": "encrypt", "exclude": ["RC4\nvictim.example"]}, ("invalid_value",), "/exclude"),
    ({"level": "bogus"}, ("invalid_value",), "/level"),
    ({"level": "ENCRYPT"}, ("invalid_value",), "/level"),
    ({"level": "may", "sni": "x"}, ("unknown_field",), "/sni"),
    ({"level": "may", "servername": "x victim.example none"}, ("invalid_value",), "/servername"),
    ({"level": "verify", "tafile": "/etc/ta.pem\nvictim.example none"}, ("invalid_value",),
     "/tafile"),
    ({"level": "encrypt", "tafile": "/etc/ta.pem"}, ("invalid_attribute",), "/tafile"),
    ({"level": "may", "enabled": "yes"}, ("invalid_value",), "/enabled"),
    ({"level": "may", "note": "x" * 5000}, ("invalid_value",), "/note"),
]


def test_invalid_attributes_are_refused_and_change_nothing(site):
    site.put_ok("target.example", {"level": "may"})
    before = site.snapshot()
    for body, codes, field in BAD_ATTRIBUTES:
        for method, call in (("PUT", lambda b: site.put("target.example", b)),
                             ("POST", lambda b: site.post({"destination": "new.example", **b})),
                             ("PATCH", lambda b: site.patch("target.example", b)),
                             ("bulk", lambda b: site.bulk([{"destination": "target.example",
                                                            **b}]))):
            r = call(body)
            prefix = "/items/0" if method == "bulk" else ""
            assert r.status == 422, f"{method} {body}: {r}"
            assert r.body.get("code") in codes, f"{method} {body}: expected {codes}: {r}"
            fields = [r.body.get("field")] + [e.get("field") for e in r.body.get("errors", [])]
            assert any(f and f.startswith(prefix + field) for f in fields), \
                f"{method} {body}: expected field {prefix + field}: {r}"
            assert_unchanged(site, before, f"{method} {body}")
    site.assert_map_is_the_enabled_rows(absent=("victim.example",))


# == 4. managed rows ==============================================================================
def test_managed_rows_belong_to_their_manager(site):
    dest = "[smtp.sasl.example]:587"
    writer = site.d.add_token("writer", "write")
    r = site.put(dest, {"level": "encrypt", "managed_by": "domains"}, token=writer)
    assert_problem(r, 403, "forbidden")
    r = site.put_ok(dest, {"level": "encrypt", "managed_by": "domains"}, status=201)
    assert r.body["managed_by"] == "domains", r
    site.put_ok("plain.example", {"level": "may"}, status=201)
    before = site.snapshot()

    for r, what in ((site.put(dest, {"level": "may"}), "PUT"),
                    (site.patch(dest, {"level": "may"}), "PATCH"),
                    (site.delete(dest), "DELETE"),
                    (site.put(dest, {"level": "may"}, "?manager=other"), "PUT ?manager=other")):
        body = assert_problem(r, 409, "managed_row")
        assert "domains" in body.get("detail", ""), f"{what}: the detail names no manager: {body}"
        assert_unchanged(site, before, f"{what} of a managed row")
    r = site.patch(dest, {"level": "may"}, "?manager=domains", token=writer)
    assert_problem(r, 403, "forbidden")
    assert_unchanged(site, before, "?manager with a write token")

    # bulk leaves it alone; an item naming it is refused
    r = site.bulk([{"destination": "plain.example", "level": "encrypt"}])
    assert r.status == 200, r
    assert {k: r.body[k] for k in ("added", "changed", "removed", "unchanged")} == \
        {"added": 0, "changed": 1, "removed": 0, "unchanged": 0}, r
    assert site.get(dest).body["level"] == "encrypt"
    r = site.bulk([])
    assert r.status == 200 and r.body["removed"] == 1, r
    assert [p["destination"] for p in site.policies()] == [dest]
    assert [p["destination"] for p in site.policies("managed=true")] == [dest]
    assert site.policies("managed=false") == []
    before = site.snapshot()
    r = site.bulk([{"destination": dest, "level": "may"}])
    body = assert_problem(r, 409, "managed_row")
    assert "domains" in body.get("detail", ""), body
    assert_unchanged(site, before, "a bulk item naming a managed row")
    site.assert_map_is_the_enabled_rows()

    # naming the manager works, and the row stays managed
    r = site.put(dest, {"level": "secure", "match": ["nexthop"]}, "?manager=domains")
    assert r.status == 200 and r.body["managed_by"] == "domains", r
    r = site.patch(dest, {"protocols": ">=TLSv1.2"}, "?manager=domains")
    assert r.status == 200 and r.body["managed_by"] == "domains", r
    site.assert_map_is_the_enabled_rows()
    r = site.delete(dest, "?manager=domains")
    assert r.status == 204, r
    assert site.get(dest).status == 404
    site.assert_map_is_the_enabled_rows(absent=(dest,))


# == 5. the API around it: list filters, pagination, dry run, one bad item ========================
def test_list_filters_and_pagination(site):
    items = [{"destination": f"p{i:02d}.example", "level": "encrypt" if i % 3 else "may",
              "note": "partner" if i % 5 == 0 else ""} for i in range(25)]
    r = site.bulk(items)
    assert r.status == 200 and r.body["added"] == 25, r
    site.put_ok("[m.example]", {"level": "may", "managed_by": "domains"})
    every = site.policies()
    assert [p["destination"] for p in every] == sorted(
        [i["destination"] for i in items] + ["[m.example]"], key=str.encode)
    pages, after = [], None
    while True:
        r = site.d.get("/api/v1/tls-policies?limit=7" + (f"&after={qd(after)}" if after else ""))
        assert r.status == 200 and len(r.body["items"]) <= 7, r
        pages.append([p["destination"] for p in r.body["items"]])
        after = r.body["next"]
        if not after:
            break
    assert [d for page in pages for d in page] == [p["destination"] for p in every]
    assert len(pages) == 4, pages
    assert {p["level"] for p in site.policies("level=may")} == {"may"}
    assert len(site.policies("level=may")) == 10
    assert [p["destination"] for p in site.policies("q=p1")] == [f"p1{i}.example"
                                                                for i in range(10)]
    assert len(site.policies("q=partner")) == 5
    assert [p["destination"] for p in site.policies("managed=true")] == ["[m.example]"]
    assert len(site.policies("managed=false")) == 25
    r = site.d.get("/api/v1/tls-policies?level=bogus")
    assert_problem(r, 422, "invalid_value")
    r = site.d.get("/api/v1/tls-policies", token=site.d.read_token)
    assert r.status == 200, r
    r = site.put("x.example", {"level": "may"}, token=site.d.read_token)
    assert_problem(r, 403, "forbidden")


def test_bulk_dry_run_and_one_bad_item(site):
    site.put_ok("keep.example", {"level": "may"})
    site.put_ok("gone.example", {"level": "encrypt"})
    before = site.snapshot()
    items = [{"destination": "keep.example", "level": "may"},
             {"destination": "new.example", "level": "encrypt"}]
    r = site.bulk(items, "?dry_run=true")
    assert r.status == 200, r
    assert {k: r.body[k] for k in ("added", "changed", "removed", "unchanged")} == \
        {"added": 1, "changed": 0, "removed": 1, "unchanged": 1}, r
    plan = r.body["plan"]
    assert plan["valid"] is True and plan["reload"] is False and plan["postmap"] is True, plan
    diff = plan["tls_policy_diff"]
    assert "+new.example\tencrypt" in diff.splitlines(), diff
    assert "-gone.example\tencrypt" in diff.splitlines(), diff
    assert not [line for line in diff.splitlines() if "keep.example" in line], diff
    assert_unchanged(site, before, "a bulk dry run")
    # one bad item refuses them all, naming it
    bad = items + [{"destination": "ok.example", "level": "fingerprint", "match": ["AB"]}]
    r = site.bulk(bad)
    assert r.status == 422 and r.body.get("field", "").startswith("/items/2/match"), r
    r = site.bulk(items + [{"destination": "ok.example", "level": "may", "bogus": 1}])
    assert_problem(r, 422, "unknown_field", "/items/2/bogus")
    r = site.bulk(items + [{"level": "may"}])
    assert_problem(r, 422, "missing_field", "/items/2/destination")
    r = site.req("PUT", "/api/v1/tls-policies", {"items": items, "extra": 1})
    assert_problem(r, 422, "unknown_field")
    r = site.req("PUT", "/api/v1/tls-policies", {"policies": items})
    assert r.status == 422, r
    # The body is read item by item, but judged as a whole: bad JSON or a bad shape after a bad
    # item is what the reply says, as is a bad query parameter before any item.
    bad_item = json.dumps({"destination": "a.example", "level": "bogus"})
    for body, status, code in [
            ('{"items":[%s],"extra":1}' % bad_item, 422, "unknown_field"),
            ('{"items":[%s],"items":[]}' % bad_item, 400, "invalid_json"),
            ('{"items":[%s], ' % bad_item, 400, "invalid_json"),
            ('{"items":[%s]}' % bad_item, 422, "invalid_value"),
            ('3', 400, "invalid_json"),
            ('[1]', 422, "invalid_value")]:
        r = site.req("PUT", "/api/v1/tls-policies", body)
        assert_problem(r, status, code)
    r = site.req("PUT", "/api/v1/tls-policies?probe=bogus", '{"items":')
    assert_problem(r, 400, "invalid_json")
    assert_unchanged(site, before, "refused bulk writes")
    r = site.bulk(items)
    assert r.status == 200, r
    site.assert_map_is_the_enabled_rows(absent=("gone.example",))


def test_job_record_says_when_the_job_finished(site):
    """A job's finished_at is when it finished (api.md "Writes are jobs"), not when its
    transaction began: a bulk of 20,000 rows spends a while between the two."""
    items = [{"destination": f"j{i:05d}.example", "level": "may"} for i in range(20000)]
    r = site.bulk(items, "?wait=120", timeout=180)
    replied = time.time()
    assert r.status == 200 and r.body["added"] == 20000, r
    job = site.job(r)
    finished = datetime.datetime.fromisoformat(job["finished_at"].replace("Z", "+00:00"))
    # timestamps have whole seconds (api/openapi.yaml Timestamp): finished_at is the second the
    # job finished in, up to 1 s before the moment itself
    late = replied - finished.timestamp()
    assert -0.5 < late < 1.3, \
        f"job finished_at {job['finished_at']} is {late:.2f} s before the reply came " \
        f"(created_at {job['created_at']}): it records when the job's transaction began"


# == 6. bulk at 100,000 rows =======================================================================
@pytest.fixture
def make_release_site(session_dir, pg, certs):
    """Like make_policy_site, but the daemon is the RELEASE build (build/smtptlsd) when it exists
    (the 100,000-row test would spend most of its time in ASan); the same after-test checks as
    make_daemon's."""
    made, sites = [], []
    system_cert = certs.leaf("system", ("localhost",))

    def make(config=None):
        n = next(_counter)
        pf = PostfixSandbox(os.path.join(session_dir, f"polr{n}"))
        made.append((pf, None, None))
        pf.start()
        name = f"polr{n}"
        url = pg.create_database(name)
        workdir = os.path.join(session_dir, f"polr{n}-d")
        cfg = base_config(workdir, url, system_cert)
        cfg.update({"postfix_config_directory": pf.config_dir, **pf.argv_prefixes,
                    "smtp_probe_address": f"127.0.0.1:{pf.port}"})
        cfg.update(config or {})
        # The release build when there is one: 100,000 rows under ASan measure ASan. The bulk
        # path itself runs under ASan in the smaller bulk tests.
        binary = RELEASE_BIN if os.path.exists(RELEASE_BIN) else None
        d = Daemon(workdir, cfg, binary=binary, db_port=pg.port)
        made[-1] = (pf, d, name)
        d.start()
        setup_tokens(d)
        site = PolicySite(d, pf, pg)
        sites.append(site)
        return site

    yield make
    for site in sites:
        site.psql.close()
    problems = []
    for pf, d, name in made:
        if d is not None:
            problems += check_daemon(d)
        if name:
            pg.drop_database(name)
        pf.stop()
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


def job_seconds(job):
    """finished_at - created_at of a job record, in seconds."""
    def ts(s):
        return datetime.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()
    return ts(job["finished_at"]) - ts(job["created_at"])


def timed(fn):
    t0 = time.monotonic()
    r = fn()
    return r, time.monotonic() - t0


def postmap_seconds(site, text, map_type="hash"):
    """How long postmap (build, then -s) takes for this map text here: the postmap part of a
    job (the daemon records no phases)."""
    path = os.path.join(site.pf.basedir, "bench_map")
    with open(path, "w") as f:
        f.write(text)
    t0 = time.monotonic()
    site.pf.postmap(f"{map_type}:{path}")
    site.pf.postmap("-s", f"{map_type}:{path}")
    return time.monotonic() - t0


N_BULK = 100_000


def test_bulk_100000_policies(make_release_site, capsys):
    site = make_release_site()
    t_start = time.monotonic()
    items = [{"destination": f"d{i:06d}.example", "level": "encrypt" if i % 2 else "may"}
             for i in range(N_BULK)]
    body = json.dumps({"items": items})
    lines = [f"bulk of {N_BULK:,} policies ({len(body) / 1e6:.1f} MB), daemon "
             f"{os.path.relpath(site.d.binary, REPO_ROOT)}: request = wall time of the request; "
             f"daemon = its own latency metric; job = the job record's created_at -> finished_at"]

    def step(name, method, path, body, route="/api/v1/tls-policies"):
        metric = "smtptlsd_http_request_duration_seconds_sum"
        before = site.metric(metric, route=route)
        r, wall = timed(lambda: site.req(method, path, body, timeout=180))
        daemon = site.metric(metric, route=route) - before
        job = site.job(r) if r.headers.get("Job-Id") else None
        j = f"job {job_seconds(job) * 1000:6.0f} ms" if job else ""
        lines.append(f"  {name:24s} HTTP {r.status}  request {wall * 1000:6.0f} ms  "
                     f"daemon {daemon * 1000:6.0f} ms  {j}")
        return r, job

    try:
        before = site.snapshot()
        r, _ = step("dry run", "PUT", "/api/v1/tls-policies?dry_run=true&wait=120", body)
        assert r.status == 200, r
        assert {k: r.body[k] for k in ("added", "changed", "removed", "unchanged")} == \
            {"added": N_BULK, "changed": 0, "removed": 0, "unchanged": 0}, r.body
        plan = r.body["plan"]
        assert plan["valid"] is True and plan["postmap"] is True, \
            {k: plan[k] for k in plan if k != "tls_policy_diff"}
        diff = plan["tls_policy_diff"]
        assert diff.count("\n+d") == N_BULK, "the dry-run diff should add every entry"
        assert "+d000000.example\tmay" in diff and "+d099999.example\tencrypt" in diff
        assert_unchanged(site, before, "the dry run")
        assert site.map_text() is None

        postmaps = site.metric(POSTMAPS)
        r, job = step("real: 100,000 added", "PUT", "/api/v1/tls-policies?wait=120", body)
        assert r.status == 200, r
        assert {k: r.body[k] for k in ("added", "changed", "removed", "unchanged")} == \
            {"added": N_BULK, "changed": 0, "removed": 0, "unchanged": 0}, r.body
        assert job["status"] == "applied" and job["postmap"] is True, job
        assert site.metric(POSTMAPS) == postmaps + 1
        assert int(site.sql("SELECT count(*) FROM tls_policies")) == N_BULK
        dump = site.map_dump()
        assert len(dump) == N_BULK, len(dump)
        assert dump["d000000.example"] == "may" and dump["d099999.example"] == "encrypt"
        assert site.map_query("d054321.example") == "encrypt"
        entries, _ = parse_map_source(site.map_text())
        assert len(entries) == N_BULK and entries[0] == ("d000000.example", "may"), entries[:3]
        reloads = site.metric(RELOADS, result="ok")
        main_cf = site.file_state(site.pf.main_cf)

        # one row changed through bulk, then the same set again
        items[12345] = {"destination": "d012345.example", "level": "fingerprint", "match": [FP1]}
        body = json.dumps({"items": items})
        r, job = step("bulk, one row changed", "PUT", "/api/v1/tls-policies?wait=120", body)
        assert r.status == 200, r
        assert {k: r.body[k] for k in ("added", "changed", "removed", "unchanged")} == \
            {"added": 0, "changed": 1, "removed": 0, "unchanged": N_BULK - 1}, r.body
        assert job["reload"] is False and job["postmap"] is True, job
        assert site.map_query("d012345.example") == f"fingerprint match={FP1}"
        r, job = step("bulk, nothing changed", "PUT", "/api/v1/tls-policies?wait=120", body)
        assert r.status == 200, r
        assert r.body["unchanged"] == N_BULK and job["postmap"] is False, (r.body, job)

        # one row changed through a single PUT; one page read
        r, job = step("single PUT of one row", "PUT",
                      f"/api/v1/tls-policies/{qd('d000001.example')}", {"level": "may"},
                      route="/api/v1/tls-policies/{destination}")
        assert r.status == 200, r
        assert job["reload"] is False and job["postmap"] is True, job
        assert site.map_query("d000001.example") == "may"
        r, _ = step("GET a page of 1000", "GET",
                    "/api/v1/tls-policies?limit=1000&after=" + policy_cursor("d050000.example"),
                    None)
        assert r.status == 200 and r.body["items"][0]["destination"] == "d050001.example", r

        assert site.metric(RELOADS, result="ok") == reloads
        assert site.file_state(site.pf.main_cf) == main_cf
        pm = postmap_seconds(site, site.map_text())
        lines.append(f"  postmap + postmap -s of the 100,000-entry map, timed apart: "
                     f"{pm * 1000:.0f} ms (the rest of a write is HTTP, JSON, database, render); "
                     f"a breakdown with database time: bench/bulk_policies.py")
        assert len(site.map_dump()) == N_BULK
    finally:
        lines.append(f"  test total {time.monotonic() - t_start:.1f} s")
        with capsys.disabled():
            print("\n" + "\n".join(lines))
    assert time.monotonic() - t_start < 90, "the 100,000-row bulk test took over 90 s"


# == 9. one HTTP thread =============================================================================
def test_one_http_thread_serves_waiting_writes_reads_and_a_stop(make_policy_site):
    """http_threads 1 - the default on 2 cores (one less than the cores), where libmicrohttpd runs
    one thread of its own instead of a pool: writes waiting for their job (?wait: suspended
    connections, resumed by the worker) are answered once applied while the thread answers reads
    meanwhile; a ?wait=0 write is 202 and applied; /status answers; a stop with a request
    waiting exits cleanly."""
    import concurrent.futures
    site = make_policy_site(config={"http_threads": 1})
    assert site.d.get("/metrics").status == 200
    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        writes = [ex.submit(site.put, f"w{i}.one.example", {"level": "may"}, "?wait=60")
                  for i in range(8)]
        reads = 0
        while not all(f.done() for f in writes):
            assert site.d.get("/api/v1/settings").status == 200
            reads += 1
        assert [f.result().status for f in writes] == [201] * 8
    assert reads > 0
    r = site.put("x.one.example", {"level": "encrypt"}, "?wait=0")
    assert r.status == 202, r
    wait_until(lambda: site.job(r)["status"] == "applied", 30, "the 202 write applied")
    st = site.d.get("/api/v1/status")
    assert st.status == 200 and st.body["postfix"]["running"] is True, st
    site.assert_map_is_the_enabled_rows()
    # a write waiting when the stop comes: its reply (202 or the result) before the exit
    with concurrent.futures.ThreadPoolExecutor(1) as ex:
        waiting = ex.submit(site.put, "y.one.example", {"level": "may"}, "?wait=60")
        wait_until(lambda: site.sql("SELECT count(*) FROM jobs WHERE target = 'y.one.example'")
                   .strip() == "1", 30, "the waiting write recorded")
        assert site.d.stop() == 0
        assert waiting.result().status in (201, 202)


def test_a_read_waits_for_a_pooled_connection_a_bounded_time(make_policy_site, pg):
    """database_pool_size 1 and two HTTP threads: while the one connection waits on a lock, a
    read that needs the database waits for it - 503 with Retry-After once the pool's 5 s are
    over, and answered as soon as the connection comes back when that is sooner."""
    import concurrent.futures
    site = make_policy_site(config={"http_threads": 2, "database_pool_size": 1})
    for name in ("held", "late", "woken"):
        assert site.put(f"{name}.pool.example", {"level": "may"}).status == 201
    assert site.d.get("/api/v1/settings").status == 200  # the token is known: no round trip
    lock = Psql(pg, site.db)
    try:
        lock.query("BEGIN")
        lock.query("LOCK TABLE tls_policies IN ACCESS EXCLUSIVE MODE")
        with concurrent.futures.ThreadPoolExecutor(2) as ex:
            held = ex.submit(site.d.get, "/api/v1/tls-policies/held.pool.example")
            wait_until(lambda: lock.query("SELECT count(*) FROM pg_stat_activity WHERE "
                                          "wait_event_type = 'Lock'") == "1", 20,
                       "the first read waiting on the lock")
            t0 = time.monotonic()
            late = site.d.get("/api/v1/tls-policies/late.pool.example")
            waited = time.monotonic() - t0
            assert late.status == 503 and late.headers.get("Retry-After") == "1", late
            assert "connections are busy" in late.body["detail"], late.body
            assert 4.5 <= waited < 8, waited
            woken = ex.submit(site.d.get, "/api/v1/tls-policies/woken.pool.example")
            time.sleep(0.5)
            assert not woken.done()
            t0 = time.monotonic()
            lock.query("ROLLBACK")
            assert held.result(20).status == 200
            assert woken.result(20).status == 200
            assert time.monotonic() - t0 < 2, "the waiting read was not woken by the release"
    finally:
        lock.close()
