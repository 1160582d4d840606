# System tests of the settings resource and the reconcile worker (issue 3), against a real Postfix
# sandbox: what STARTTLS Postfix really offers and which certificate it really serves after a write,
# the administrator's main.cf lines surviving byte for byte, refusals that change nothing (database and
# files), writes that Postfix would not load, 200 concurrent writes coalesced into few reloads, drift,
# ETag/If-Match, ?wait=0, ?dry_run and the audit trail. Contract: shared/design/api.md ("Writes are
# jobs", "Settings", jobs, status, config) and shared/design/postfix.md.
#
# Until the certificates API exists (issue 4), certificate rows are inserted into the daemon's
# database directly (Site.add_cert). The kill -9 test is in test_crash.py and uses the helpers here.
import datetime
import hashlib
import http.client
import json
import os
import re
import smtplib
import ssl
import statistics
import threading
import time

import pytest

from tests.harness import contract
from tests.harness.postfix import ADMIN_LINES
from tests.harness.util import free_port, run, wait_until
from tests.system.test_foundation import assert_problem, parse_metrics, sample

HOST = "mx.test.example"  # the sandbox's myhostname
# Every main.cf parameter the daemon may write or remove (postfix.md); everything else is the admin's.
MANAGED = (
    "smtpd_tls_security_level", "smtp_tls_security_level", "smtpd_tls_chain_files",
    "smtpd_tls_cert_file", "smtpd_tls_key_file", "smtpd_tls_protocols",
    "smtpd_tls_mandatory_protocols", "smtp_tls_protocols", "smtp_tls_mandatory_protocols",
    "smtpd_tls_mandatory_ciphers", "smtp_tls_mandatory_ciphers", "smtpd_tls_exclude_ciphers",
    "smtp_tls_exclude_ciphers", "smtpd_tls_mandatory_exclude_ciphers",
    "smtp_tls_mandatory_exclude_ciphers", "smtpd_tls_auth_only", "smtpd_tls_received_header",
    "smtpd_tls_loglevel", "smtp_tls_loglevel", "smtp_tls_policy_maps", "smtp_tls_CAfile",
)
SETTINGS_FIELDS = ("mode", "inbound_mode", "outbound_mode", "certificate", "profile", "auth_only",
                   "received_header", "loglevel")
DEFAULTS = {"inbound_mode": None, "outbound_mode": None, "certificate": None,
            "profile": "intermediate", "auth_only": True, "received_header": False, "loglevel": 1}
RELOADS = "smtptlsd_postfix_reloads_total"


# -- observing Postfix -----------------------------------------------------------------------------
def fingerprint_of_der(der):
    return ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())


def fingerprint_of_pem(pem):
    """SHA-256 fingerprint (AA:BB:..) of the first certificate in pem."""
    m = re.search(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", pem, re.S)
    assert m, "no certificate in the PEM text"
    return fingerprint_of_der(ssl.PEM_cert_to_DER_cert(m.group(0)))


def smtp_observe(port, timeout=5):
    """One NEW SMTP connection: (starttls offered, SHA-256 fingerprint served or None)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with smtplib.SMTP("127.0.0.1", port, timeout=timeout) as s:
        s.ehlo("client.test.example")
        if not s.has_extn("starttls"):
            return False, None
        s.starttls(context=ctx)
        return True, fingerprint_of_der(s.sock.getpeercert(binary_form=True))


def served(port):
    return smtp_observe(port)[1]


def describe_served(port):
    """What a new connection sees, as text, for failure messages (never raises)."""
    try:
        offered, fp = smtp_observe(port)
        return f"STARTTLS serving {fp}" if offered else "no STARTTLS offered"
    except (OSError, smtplib.SMTPException, ssl.SSLError) as e:
        return f"STARTTLS offered but failing: {e}"


def wait_served(port, fingerprint, timeout=10):
    """Poll with new connections until `fingerprint` (None: no STARTTLS) is served; returns the
    number of seconds it took and the number of connections."""
    start = time.monotonic()
    tries = 0
    last = None
    while True:
        tries += 1
        try:
            last = served(port)
        except (OSError, smtplib.SMTPException, ssl.SSLError) as e:
            last = f"error: {e}"
        if last == fingerprint:
            return time.monotonic() - start, tries
        if time.monotonic() - start > timeout:
            raise AssertionError(f"127.0.0.1:{port} still serves {last} {timeout}s after the write "
                                 f"returned (expected {fingerprint})")
        time.sleep(0.01)


def parse_main_cf(text):
    """main.cf text -> {name: value} after Postfix's rules (continuation lines joined, comments and
    blank lines skipped; a duplicate: the last wins, as in Postfix)."""
    params, current = {}, None
    for line in text.split("\n"):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if line[0] in " \t":
            assert current, f"continuation line without a parameter: {line!r}"
            params[current] = (params[current] + " " + stripped).strip()
            continue
        name, sep, value = line.partition("=")
        assert sep, f"main.cf line is not 'name = value': {line!r}"
        current = name.strip()
        params[current] = value.strip()
    return params


def strip_managed(text):
    """main.cf text without the logical lines of managed parameters (a managed parameter's line and
    its continuation lines); everything else, comments and blank lines included, byte for byte."""
    out, skipping = [], False
    for line in text.splitlines(keepends=True):
        starts = line[:1] not in (" ", "\t", "#", "\n", "\r", "")
        blank_or_comment = not line.strip() or line.lstrip().startswith("#")
        if starts:
            name = line.split("=", 1)[0].strip()
            skipping = name in MANAGED
        elif not blank_or_comment and skipping:
            continue  # a continuation of a managed parameter
        if starts and skipping:
            continue
        out.append(line)
    return "".join(out)


def tree(*roots):
    """{path: (kind, mode, size, mtime_ns, sha256)} of every file and directory under roots."""
    out = {}
    for root in roots:
        if not os.path.exists(root):
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            st = os.lstat(dirpath)
            out[dirpath] = ("dir", st.st_mode, 0, None, None)
            for f in filenames:
                p = os.path.join(dirpath, f)
                st = os.lstat(p)
                with open(p, "rb") as fh:
                    digest = hashlib.sha256(fh.read()).hexdigest()
                out[p] = ("file", st.st_mode, st.st_size, st.st_mtime_ns, digest)
    return out


def snapshot_diff(before, after):
    """Human-readable differences between two Site.snapshot()s ([] when equal)."""
    out = []
    for key in before:
        a, b = before[key], after[key]
        if a == b:
            continue
        if key == "files":
            for path in sorted(set(a) | set(b)):
                if a.get(path) != b.get(path):
                    out.append(f"file {path}: {a.get(path, 'absent')} -> {b.get(path, 'absent')}")
        elif key == "main.cf":
            out.append(f"main.cf: {'bytes' if a[0] != b[0] else ''} "
                       f"{'mtime' if a[1] != b[1] else ''} {'inode' if a[2] != b[2] else ''} changed")
        else:
            out.append(f"{key}: {a} -> {b}")
    return out


def openssl_key_matches(key_path, chain_path):
    """OpenSSL loads chain_path and key_path as a server does (SSL_CTX_use_certificate_chain_file,
    SSL_CTX_use_PrivateKey_file, SSL_CTX_check_private_key): the key matches the leaf."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        ctx.load_cert_chain(chain_path, key_path, password=lambda: b"")
        return True
    except (OSError, ssl.SSLError):
        return False


def settings_view(body):
    """The settings fields of a reply / GET / job before-after (no generation, updated_at, ...)."""
    return {k: body.get(k) for k in SETTINGS_FIELDS}


def expected_state(body, patch=False, base=None):
    """What a PUT (defaults for missing fields) or PATCH (merged onto base) of body leaves."""
    state = dict(base) if patch else {"mode": None, **DEFAULTS}
    state.update(body)
    if state.get("mode") == "":
        state["mode"] = "none"
    for k in ("inbound_mode", "outbound_mode"):
        if state.get(k) == "":
            state[k] = "none"
    return {k: state.get(k) for k in SETTINGS_FIELDS}


# -- one daemon managing one Postfix ---------------------------------------------------------------
class Site:
    """A daemon (self.d) managing a Postfix sandbox (self.pf) through a database in the session's
    PostgreSQL (self.pg / self.db)."""

    def __init__(self, d, pf, pg, certs):
        self.d, self.pf, self.pg, self.certs = d, pf, pg, certs
        self.db = d.config["database_url"].rsplit("/", 1)[1]
        self.cert_dir = d.config["certificate_directory"]
        self.state_dir = os.path.join(pf.config_dir, ".smtptlsd")
        self.fingerprints = {}

    # database
    def sql(self, query):
        return self.pg.psql(query, db=self.db).strip()

    def add_cert(self, name, cert=None, system=False, key_pem=None, not_after=None, dns=(HOST,)):
        """Insert a certificate row as the certificates API will (issue 4): type imported (or system
        with system=true); cert: a tests.harness.certs.Cert (default: a fresh EC leaf for dns).
        key_pem overrides the private key (a mismatched pair). Returns the SHA-256 fingerprint."""
        cert = cert or self.certs.leaf(f"leaf-{name}", dns, kind="ec")
        pem, chain = cert.read("cert"), (cert.read("chain") if cert.chain else "")
        key = key_pem if key_pem is not None else cert.read("key")
        fp = cert.fingerprint()
        end = run(["openssl", "x509", "-in", cert.cert, "-noout", "-enddate"]).stdout
        end = datetime.datetime.strptime(end.strip().split("=", 1)[1], "%b %d %H:%M:%S %Y %Z")
        not_after = not_after or end.strftime("%Y-%m-%d %H:%M:%S+00")
        kind = "system" if system else "imported"
        for text in (pem, chain, key):
            assert "$pem$" not in text
        self.sql("INSERT INTO certificates (name, type, system, certificate_pem, chain_pem, "
                 "private_key_pem, sha256_fingerprint, not_after) VALUES "
                 f"('{name}', '{kind}', {'true' if system else 'false'}, $pem${pem}$pem$, "
                 f"$pem${chain}$pem$, $pem${key}$pem$, '{fp}', '{not_after}')")
        self.fingerprints[name] = fp
        return fp

    def generation(self):
        return int(self.sql("SELECT generation FROM config_state"))

    def settings_row(self):
        return self.sql("SELECT row_to_json(s)::text FROM settings s")

    def jobs(self):
        """Every job, oldest first, from the API (the audit trail), following the cursor."""
        items, after = [], None
        while True:
            r = self.d.get("/api/v1/jobs?limit=1000" + (f"&after={after}" if after else ""))
            assert r.status == 200, r
            items += r.body["items"]
            after = r.body.get("next")
            if not after:
                return sorted(items, key=lambda j: j["id"])

    # HTTP
    def write(self, method, body, query="", headers=None, content_type=None, token=None, timeout=60):
        kw = {}
        if content_type is not None:
            kw["content_type"] = content_type
        if token is not None:
            kw["token"] = token
        return self.d.http(method, "/api/v1/settings" + query, body, headers=headers,
                           timeout=timeout, **kw)

    def put(self, body, **kw):
        return self.write("PUT", body, **kw)

    def patch(self, body, **kw):
        return self.write("PATCH", body, **kw)

    def put_ok(self, body, **kw):
        r = self.put(body, **kw)
        assert r.status == 200, f"PUT {body}: {r}"
        return r

    def patch_ok(self, body, **kw):
        r = self.patch(body, **kw)
        assert r.status == 200, f"PATCH {body}: {r}"
        return r

    def settings(self):
        r = self.d.get("/api/v1/settings")
        assert r.status == 200, r
        return r.body

    def status(self):
        r = self.d.get("/api/v1/status")
        assert r.status == 200, r
        return r.body

    def config(self):
        r = self.d.get("/api/v1/config")
        assert r.status == 200, r
        return r.body

    def metric(self, name, **labels):
        r = self.d.get("/metrics")
        assert r.status == 200, r
        return sample(parse_metrics(r.body)[0], name, **labels)

    # files
    def main_cf(self):
        with open(self.pf.main_cf, "rb") as f:
            return f.read()

    def live_params(self):
        return parse_main_cf(self.main_cf().decode())

    def managed_params(self):
        return {k: v for k, v in self.live_params().items() if k in MANAGED}

    def snapshot(self):
        """What a refused write must leave exactly as it was."""
        st = os.stat(self.pf.main_cf)
        db = json.loads(self.sql(
            "SELECT json_build_object('settings row', (SELECT row_to_json(s) FROM settings s), "
            "'generation', (SELECT generation FROM config_state), "
            "'certificates', (SELECT json_agg(c ORDER BY id) FROM certificates c))::text"))
        return {
            **db,
            "main.cf": (self.main_cf(), st.st_mtime_ns, st.st_ino),
            "files": tree(self.cert_dir, self.pf.config_dir),
            "reloads": self.metric(RELOADS, result="ok"),
        }

    def served(self):
        return served(self.pf.port)

    def wait_served(self, fingerprint, timeout=10):
        return wait_served(self.pf.port, fingerprint, timeout)

    def wait_verified(self, timeout=20):
        """The background STARTTLS verification of the last reload has finished: its status."""
        def done():
            v = self.status().get("verification") or {}
            return v if v.get("state") not in (None, "checking", "pending") else None
        return wait_until(done, timeout, "the background verification to finish")

    def assert_in_sync(self):
        """status in_sync, applied == desired, no drift, main.cf == the rendering of the DB state."""
        st = self.status()
        assert st["state"] == "in_sync", st
        assert st["applied_generation"] == st["desired_generation"] == self.generation(), st
        assert st["drift"] == [], st
        cfg = self.config()
        assert cfg["drift"] == [], cfg
        want = {k: v for k, v in cfg["main_cf"].items() if v is not None}
        assert self.managed_params() == want, \
            f"main.cf's managed parameters differ from the rendering of the database state:\n" \
            f"live {self.managed_params()}\nrendered {want}"

    def assert_renders(self, state):
        """main.cf's managed parameters say what `state` (settings fields) says."""
        p = self.live_params()
        inbound = state["inbound_mode"] or state["mode"]
        outbound = state["outbound_mode"] or state["mode"]
        assert p.get("smtpd_tls_security_level") == inbound, (state, p)
        assert p.get("smtp_tls_security_level") == outbound, (state, p)
        assert p.get("smtpd_tls_loglevel") == str(state["loglevel"]), (state, p)
        assert p.get("smtp_tls_loglevel") == str(state["loglevel"]), (state, p)
        assert p.get("smtpd_tls_auth_only") == ("yes" if state["auth_only"] else "no"), (state, p)
        assert p.get("smtpd_tls_received_header") == ("yes" if state["received_header"] else "no")
        assert "smtpd_tls_cert_file" not in p and "smtpd_tls_key_file" not in p, p
        if state["certificate"]:
            key, chain = self.chain_files()
            fp = self.fingerprints[state["certificate"]]
            version = fp.replace(":", "").lower()[:16]
            assert key == os.path.join(self.cert_dir, state["certificate"], version, "privkey.pem")
            assert chain == os.path.join(self.cert_dir, state["certificate"], version,
                                         "fullchain.pem")
            assert openssl_key_matches(key, chain), f"{key} does not match {chain}"
            with open(chain) as f:
                assert fingerprint_of_pem(f.read()) == fp
            assert os.stat(key).st_mode & 0o777 == 0o600, oct(os.stat(key).st_mode)
        else:
            assert "smtpd_tls_chain_files" not in p, p
        # opportunistic TLS at Postfix's defaults in every profile; mandatory TLS >= 1.2 but in
        # legacy (test_postfix_profiles.py checks the whole table)
        assert "smtpd_tls_protocols" not in p and "smtp_tls_protocols" not in p, p
        if state["profile"] == "legacy":
            assert "smtpd_tls_mandatory_protocols" not in p, p
        else:
            assert p.get("smtpd_tls_mandatory_protocols") == ">=TLSv1.2", p

    def chain_files(self):
        value = self.live_params().get("smtpd_tls_chain_files")
        assert value, "no smtpd_tls_chain_files in main.cf"
        parts = [x.strip() for x in re.split(r"[,\s]+", value) if x.strip()]
        assert len(parts) == 2, f"smtpd_tls_chain_files = {value!r}: expected key, fullchain"
        return parts


@pytest.fixture
def make_site(make_daemon, make_postfix, pg, certs):
    """make_site(config=None, start=True, **postfix_kw): a Postfix sandbox of the test's own and a
    daemon managing it (postfix_config_directory, the commands, smtp_probe_address)."""
    def make(config=None, start=True, **postfix_kw):
        pf = make_postfix(**postfix_kw)
        cfg = {"postfix_config_directory": pf.config_dir, **pf.argv_prefixes,
               "smtp_probe_address": f"127.0.0.1:{pf.port}"}
        cfg.update(config or {})
        return Site(make_daemon(cfg, start=start), pf, pg, certs)
    return make


@pytest.fixture
def site(make_site):
    return make_site()


def fail_reload_wrapper(directory):
    """A postfix_command that passes everything to postfix, except `reload` while FLAG exists.
    Returns (wrapper path, flag path)."""
    path = os.path.join(directory, "postfix-wrapper")
    flag = os.path.join(directory, "fail-reload")
    with open(path, "w") as f:
        f.write("#!/bin/sh\n"
                f"if [ -e '{flag}' ]; then\n"
                "  for a in \"$@\"; do\n"
                "    if [ \"$a\" = reload ]; then\n"
                "      echo 'postfix/postfix-script: fatal: simulated reload failure' >&2\n"
                "      exit 1\n"
                "    fi\n"
                "  done\n"
                "fi\n"
                "exec postfix \"$@\"\n")
    os.chmod(path, 0o755)
    return path, flag


# == 1. what Postfix serves ========================================================================
def test_initial_state_is_unmanaged_and_touches_nothing(site):
    before = site.snapshot()
    s = site.settings()
    assert s["managed"] is False, s
    assert settings_view(s) == {"mode": "none", **DEFAULTS}, s
    st = site.status()
    assert st["state"] == "in_sync", st
    # a restart of an unmanaged daemon does not touch main.cf either
    site.d.stop()
    site.d.start()
    site.d.mark_fd_baseline()
    assert site.snapshot() == before


def test_mode_none_offers_no_starttls_and_may_serves_the_bound_certificate(site, certs):
    fp_a = site.add_cert("mx-a")
    assert smtp_observe(site.pf.port) == (False, None), "the sandbox starts without TLS"

    r = site.put_ok({"mode": "may", "certificate": "mx-a"})
    assert r.headers.get("Job-Id", "").isdigit(), r.headers
    assert settings_view(r.body) == expected_state({"mode": "may", "certificate": "mx-a"})
    assert r.body["managed"] is True and r.body["generation"] == site.generation() == 1, r.body
    # the first new connection after the write returns must already serve it
    assert smtp_observe(site.pf.port) == (True, fp_a), "STARTTLS with mx-a right after the write"
    assert site.pf.served_certificate(servername=HOST, cafile=certs.ca().cert) == fp_a, \
        "openssl s_client -starttls smtp does not see the bound certificate"
    site.assert_renders(r.body)
    site.assert_in_sync()
    v = site.wait_verified()
    assert v["state"] == "verified" and v["served_fingerprint_matches"] is True, v
    st = site.status()
    assert st["certificate"]["name"] == "mx-a" and st["certificate"]["served_fingerprint_matches"]
    assert st["postfix"]["running"] is True, st
    job = site.d.get(f"/api/v1/jobs/{r.headers['Job-Id']}").body
    assert job["status"] == "applied" and job["reload"] is True and job["verified"] is True, job

    for mode in ("none", ""):
        r = site.put_ok({"mode": mode, "certificate": "mx-a"})
        assert r.body["mode"] == "none", r.body
        assert site.live_params()["smtpd_tls_security_level"] == "none"
        assert smtp_observe(site.pf.port) == (False, None), \
            f"mode {mode!r}: EHLO still offers STARTTLS on the first new connection"
    v = site.wait_verified()
    assert v["state"] == "verified", f"mode none: the verifier should see no STARTTLS: {v}"

    r = site.put_ok({"mode": "none"})  # no certificate at all
    assert r.body["certificate"] is None
    assert "smtpd_tls_chain_files" not in site.live_params()
    assert smtp_observe(site.pf.port) == (False, None)
    site.assert_in_sync()


def test_switching_certificates_serves_the_new_one_on_the_next_connection(site):
    names = [f"sw{i}" for i in range(4)]
    fps = {n: site.add_cert(n) for n in names}
    site.put_ok({"mode": "may", "certificate": names[0]})
    site.wait_served(fps[names[0]])
    latencies, first_try, write_times = [], 0, []
    for i in range(1, 11):
        name = names[i % len(names)]
        t0 = time.monotonic()
        r = site.patch_ok({"certificate": name})
        write_times.append(time.monotonic() - t0)
        assert r.body["certificate"] == name
        took, tries = site.wait_served(fps[name], timeout=10)
        latencies.append(took)
        first_try += tries == 1
    print(f"\nwrite -> new certificate served on a new connection, 10 switches: "
          f"min {min(latencies) * 1000:.0f} ms, median {statistics.median(latencies) * 1000:.0f} ms, "
          f"max {max(latencies) * 1000:.0f} ms; served on the first connection in {first_try}/10; "
          f"write (PATCH, reload included) median {statistics.median(write_times) * 1000:.0f} ms")
    assert first_try == 10, \
        f"the new certificate was not served on the first new connection after the write returned " \
        f"in {10 - first_try}/10 switches (latencies {[round(x, 3) for x in latencies]})"
    site.assert_in_sync()
    # superseded version directories are pruned: at most the live one and the last-known-good one
    versions = [os.path.join(n, v) for n in os.listdir(site.cert_dir)
                for v in os.listdir(os.path.join(site.cert_dir, n))]
    assert len(versions) <= 2, f"certificate versions left behind: {versions}"


def test_status_does_not_run_postfix_status_per_request(make_site, tmp_path):
    """GET /api/v1/status reports whether Postfix runs from a check at most 2 s old: 40 requests
    from 4 clients in about a second start `postfix status` at most twice (once per 2 s, plus
    the worker's own), not 40 times on the HTTP threads."""
    calls = tmp_path / "status-calls"
    wrapper = tmp_path / "postfix-counting"
    wrapper.write_text("#!/bin/sh\n"
                       "for a in \"$@\"; do [ \"$a\" = status ] && echo x >> '%s'; done\n"
                       "exec postfix \"$@\"\n" % calls)
    wrapper.chmod(0o755)
    site = make_site({"postfix_command": str(wrapper)})
    site.status()
    time.sleep(2.1)
    before = len(calls.read_text().splitlines()) if calls.exists() else 0
    answers = []

    def client():
        for _ in range(10):
            answers.append(site.status()["postfix"]["running"])
            time.sleep(0.08)

    t0 = time.monotonic()
    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    elapsed = time.monotonic() - t0
    made = len(calls.read_text().splitlines()) - before
    assert answers == [True] * 40, answers
    assert made <= 2 + int(elapsed / 2), f"{made} `postfix status` runs for 40 requests in {elapsed:.1f} s"
    site.pf.stop()
    try:
        wait_until(lambda: site.status()["postfix"]["running"] is False, 5,
                   "/status to see Postfix stopped")
    finally:
        site.pf.start()


def test_warnings_on_the_reply(site, certs):
    site.add_cert("good")
    site.add_cert("other-host", dns=("other.test.example",))
    site.add_cert("expiring", cert=certs.expiring(10))
    r = site.put_ok({"mode": "may", "certificate": "good"})
    assert r.body.get("warnings", []) == [], r.body
    codes = lambda r: {w["code"] for w in r.body.get("warnings", [])}  # noqa: E731
    r = site.patch_ok({"mode": "encrypt"})
    assert codes(r) == {"mandatory_inbound", "mandatory_outbound"}, r.body
    assert all(w.get("detail") for w in r.body["warnings"]), r.body
    r = site.put_ok({"mode": "may", "certificate": "other-host"})
    assert codes(r) == {"hostname_mismatch"}, r.body
    r = site.put_ok({"mode": "may", "certificate": "expiring"})
    assert "certificate_expiring" in codes(r), r.body
    assert any(w["code"] == "certificate_expiring" for w in site.status()["warnings"])
    # Postfix stopped: the valid files stay, the job is applied with a warning
    site.pf.stop()
    r = site.put_ok({"mode": "may", "certificate": "good", "loglevel": 2})
    assert "postfix_not_running" in codes(r), r.body
    assert site.live_params()["smtpd_tls_loglevel"] == "2"
    site.pf.start()
    site.wait_served(site.fingerprints["good"])


def test_inbound_and_outbound_overrides(site):
    site.add_cert("mx")
    r = site.put_ok({"mode": "may", "outbound_mode": "encrypt", "certificate": "mx"})
    site.assert_renders(r.body)
    assert site.live_params()["smtp_tls_security_level"] == "encrypt"
    r = site.put_ok({"mode": "encrypt", "inbound_mode": "may", "outbound_mode": "",
                     "certificate": "mx"})
    assert r.body["outbound_mode"] == "none" and r.body["inbound_mode"] == "may", r.body
    p = site.live_params()
    assert (p["smtpd_tls_security_level"], p["smtp_tls_security_level"]) == ("may", "none"), p
    # inbound none needs no certificate even when mode says encrypt
    r = site.put_ok({"mode": "encrypt", "inbound_mode": "none"})
    assert site.live_params()["smtpd_tls_security_level"] == "none"
    assert site.live_params()["smtp_tls_security_level"] == "encrypt"
    assert smtp_observe(site.pf.port) == (False, None)
    site.assert_in_sync()


# == 2. the administrator's lines ==================================================================
ADMIN_WITH_TLS = ADMIN_LINES + """\
# TLS settings the administrator had before smtptlsd (managed from the first write on)
smtpd_tls_cert_file = /etc/ssl/certs/ssl-cert-snakeoil.pem
smtpd_tls_key_file = /etc/ssl/private/ssl-cert-snakeoil.key
#smtpd_tls_security_level = encrypt
smtpd_tls_exclude_ciphers =
\taNULL,
    eNULL
# a parameter smtptlsd does not manage, between managed ones
smtpd_tls_session_cache_timeout = 3600s
smtp_tls_loglevel = 2
header_checks =
    regexp:/dev/null
\t
delay_warning_time = 4h
"""


def test_admin_lines_survive_byte_for_byte_across_many_writes(make_site):
    site = make_site(admin_lines=ADMIN_WITH_TLS)
    original = site.main_cf().decode()
    keep = strip_managed(original)
    assert "smtpd_tls_session_cache_timeout = 3600s\n" in keep and "    regexp:/dev/null\n" in keep
    assert "#smtpd_tls_security_level = encrypt\n" in keep and "\taNULL" not in keep
    for name in ("a", "b", "c"):
        site.add_cert(name)
    bodies = [
        {"mode": "may", "certificate": "a"},
        {"mode": "may", "certificate": "b", "profile": "modern"},
        {"mode": "encrypt", "certificate": "b", "loglevel": 3, "received_header": True},
        {"mode": "none"},
        {"mode": "may", "certificate": "c", "profile": "legacy", "auth_only": False},
        {"mode": "may", "outbound_mode": "encrypt", "certificate": "a", "loglevel": 0},
        {"mode": "", "certificate": "c"},
        {"mode": "may", "inbound_mode": "encrypt", "outbound_mode": "none", "certificate": "b"},
    ]
    for i in range(2 * len(bodies)):
        body = bodies[i % len(bodies)]
        r = site.put_ok(body)
        assert settings_view(r.body) == expected_state(body)
        text = site.main_cf().decode()
        assert strip_managed(text) == keep, \
            f"write {i} ({body}) changed the administrator's lines:\n--- before\n{keep}\n--- after\n" \
            f"{strip_managed(text)}"
        site.assert_renders(expected_state(body))
        names = [line.split("=", 1)[0].strip() for line in text.splitlines()
                 if line[:1] not in ("", " ", "\t", "#") and "=" in line]
        dups = {n for n in names if names.count(n) > 1}
        assert not dups, f"parameters defined twice in main.cf after write {i}: {dups}"
    r = run(["postconf", "-c", site.pf.config_dir, "-n"], check=False)
    assert r.returncode == 0 and "warning:" not in r.stderr, r.stderr
    r = run(["postfix", "-c", site.pf.config_dir, "check"], check=False)
    assert r.returncode == 0 and "warning:" not in r.stderr, r.stderr
    site.assert_in_sync()
    # the administrator's parameters still mean what they meant to Postfix
    assert site.pf.param("message_size_limit") == "20480000"
    assert site.pf.param("smtpd_tls_session_cache_timeout") == "3600s"
    assert site.pf.param("header_checks") == "regexp:/dev/null"


# == 3. refusals change nothing ====================================================================
def _refusal_cases():
    """(id, method, body, query, headers, content_type, status, code, field, decided_by_worker)."""
    return [
        ("certificate_required-put", "PUT", {"mode": "may"}, "", None, None, 422,
         "certificate_required", "/certificate", False),
        ("certificate_required-patch-null", "PATCH", {"certificate": None}, "", None, None, 422,
         "certificate_required", "/certificate", False),
        ("certificate_required-inbound", "PATCH",
         {"mode": "none", "inbound_mode": "encrypt", "certificate": None}, "", None, None, 422,
         "certificate_required", "/certificate", False),
        ("certificate_not_found", "PUT", {"mode": "may", "certificate": "nosuch"}, "", None, None,
         422, "certificate_not_found", "/certificate", True),
        ("certificate_not_found-bad-name", "PUT", {"mode": "may", "certificate": "Not A Name!"}, "",
         None, None, 422, "certificate_not_found", "/certificate", False),
        ("system_certificate_refused", "PUT", {"mode": "may", "certificate": "snakeoil"}, "", None,
         None, 422, "system_certificate_refused", "/certificate", True),
        ("system_certificate_refused-mode-none", "PATCH", {"mode": "none", "certificate": "snakeoil"},
         "", None, None, 422, "system_certificate_refused", "/certificate", True),
        ("certificate_unusable-expired", "PUT", {"mode": "may", "certificate": "expired"}, "", None,
         None, 422, "certificate_unusable", "/certificate", True),
        ("certificate_unusable-key-mismatch", "PATCH", {"certificate": "mismatched"}, "", None, None,
         422, "certificate_unusable", None, True),
        ("precondition_failed", "PATCH", {"loglevel": 2}, "", {"If-Match": '"settings-0"'}, None,
         412, "precondition_failed", None, True),
        ("unknown_field", "PATCH", {"loglevel": 2, "ciphers": "high"}, "", None, None, 422,
         "unknown_field", "/ciphers", False),
        ("invalid_value-mode", "PUT", {"mode": "sometimes", "certificate": "good"}, "", None, None,
         422, "invalid_value", "/mode", False),
        ("invalid_value-loglevel", "PATCH", {"loglevel": 5}, "", None, None, 422, "invalid_value",
         "/loglevel", False),
        ("invalid_value-type", "PATCH", {"auth_only": "yes"}, "", None, None, 422, "invalid_value",
         "/auth_only", False),
        ("invalid_value-profile", "PATCH", {"profile": "paranoid"}, "", None, None, 422,
         "invalid_value", "/profile", False),
        ("invalid_value-wait", "PATCH", {"loglevel": 2}, "?wait=forever", None, None, 422,
         "invalid_value", None, False),
        ("missing_field", "PUT", {"certificate": "good"}, "", None, None, 422, "missing_field",
         "/mode", False),
        ("invalid_json", "PUT", '{"mode": "may", "certificate": "good"', "", None, None, 400,
         "invalid_json", None, False),
        ("invalid_json-duplicate-key", "PUT", '{"mode": "may", "mode": "none"}', "", None, None, 400,
         "invalid_json", None, False),
        ("unsupported_media_type", "PUT", '{"mode": "none"}', "", None, "text/plain", 415,
         "unsupported_media_type", None, False),
    ]


def test_refused_writes_change_nothing(site, certs):
    """Every refusal code of the settings section, one after the other against one site: each leaves
    the settings row, the generation, the certificates, main.cf (bytes, mtime, inode), every file
    under the certificate and Postfix configuration directories and the reload count as they were,
    Postfix serving the same certificate and the status in_sync. All cases run; all failures are
    reported together."""
    site.add_cert("good")
    site.add_cert("spare")
    site.add_cert("snakeoil", cert=certs.leaf("system", ("localhost",)), system=True)
    site.add_cert("expired", cert=certs.expired())
    site.add_cert("mismatched", cert=certs.leaf("mm", (HOST,), kind="ec"),
                  key_pem=certs.rsa_leaf().read("key"))
    assert int(site.sql("SELECT id FROM certificates WHERE name = 'snakeoil'")) != 1, \
        "the system certificate must not be id 1 here: the flag decides, never the id"
    site.put_ok({"mode": "may", "certificate": "good"})
    site.wait_verified()
    failures = []
    for case in _refusal_cases():
        name, method, body, query, headers, ctype, status, code, field, by_worker = case
        before = site.snapshot()
        jobs_before = site.jobs()
        state_before = site.status()["state"]
        r = site.write(method, body, query=query, headers=headers, content_type=ctype)
        try:
            problem = assert_problem(r, status, code, field)
            assert problem.get("detail"), r
        except AssertionError as e:
            failures.append(f"{name}: {e}")
            continue
        changed = snapshot_diff(before, site.snapshot())
        if changed:
            failures.append(f"{name}: the refused write changed: " + "; ".join(changed))
        if site.served() != site.fingerprints["good"]:
            failures.append(f"{name}: Postfix no longer serves 'good'")
        st = site.status()
        if st["state"] != state_before or st["applied_generation"] != st["desired_generation"]:
            failures.append(f"{name}: /api/v1/status went from state {state_before!r} to "
                            f"{st['state']!r} (applied {st['applied_generation']}, desired "
                            f"{st['desired_generation']}) after a refused write that changed "
                            f"nothing")
        jobs = site.jobs()
        old_ids = {x["id"] for x in jobs_before}
        if [j for j in jobs if j["id"] in old_ids] != jobs_before:
            failures.append(f"{name}: earlier jobs changed")
        new = [j for j in jobs if j["id"] not in old_ids]
        if by_worker:
            if len(new) != 1:
                failures.append(f"{name}: expected one failed job, got {new}")
                continue
            job = new[0]
            if r.headers.get("Job-Id") != str(job["id"]):
                failures.append(f"{name}: Job-Id {r.headers.get('Job-Id')} != job {job['id']}")
            if job["status"] != "failed" or (job["error"] or {}).get("code") != code \
                    or job["generation"] is not None or job["reload"]:
                failures.append(f"{name}: job not recorded as failed with {code}: {job}")
        elif new:
            failures.append(f"{name}: a request refused before its job left a job: {new}")
    # after all that, a good write still works
    site.patch_ok({"certificate": "spare"})
    site.wait_served(site.fingerprints["spare"])
    assert not failures, f"{len(failures)} of {len(_refusal_cases())} refusals:\n  " + \
        "\n  ".join(failures)


def test_sigterm_during_a_verification_exits_within_shutdown_timeout(make_site):
    """The background STARTTLS verification may poll for 15 s (here: nothing listens at
    smtp_probe_address); SIGTERM must still end the daemon within shutdown_timeout (5 s here)."""
    site = make_site(config={"smtp_probe_address": f"127.0.0.1:{free_port()}"})
    site.add_cert("mx")
    site.put_ok({"mode": "may", "certificate": "mx"})
    assert site.status()["verification"]["state"] == "checking", site.status()["verification"]
    t0 = time.monotonic()
    rc = site.d.stop(timeout=30)
    took = time.monotonic() - t0
    assert rc == 0, rc
    assert took < 6, f"SIGTERM during a verification: the daemon took {took:.1f} s to exit " \
        f"(shutdown_timeout 5 s)"


def test_read_token_cannot_write(site):
    before = site.snapshot()
    r = site.put({"mode": "none"}, token=site.d.read_token)
    assert_problem(r, 403, "forbidden")
    r = site.put({"mode": "none"}, token="not-a-token")
    assert_problem(r, 401, "unauthorized")
    assert site.snapshot() == before
    assert site.jobs() == []


# == 4. files that Postfix would not load ==========================================================
def test_key_not_matching_its_certificate_is_refused_and_the_old_certificate_stays(site, certs):
    fp_a = site.add_cert("a")
    site.add_cert("mismatched", cert=certs.leaf("mm2", (HOST,), kind="ec"),
                  key_pem=certs.ec_leaf().read("key"))
    site.put_ok({"mode": "may", "certificate": "a"})
    site.wait_served(fp_a)
    site.wait_verified()
    before = site.snapshot()
    r = site.patch({"certificate": "mismatched", "loglevel": 2})
    assert_problem(r, 422, "certificate_unusable")
    assert "match" in r.body["detail"], r.body
    assert smtp_observe(site.pf.port) == (True, fp_a)
    changed = snapshot_diff(before, site.snapshot())
    assert not changed, "a certificate_unusable write changed: " + "; ".join(changed)


@pytest.mark.expect_errors(r"(?i)reload.*fail")
def test_failed_reload_restores_main_cf_and_the_old_certificate_stays(make_site, tmp_path):
    wrapper, flag = fail_reload_wrapper(str(tmp_path))
    site = make_site(config={"postfix_command": wrapper})
    fp_a = site.add_cert("a")
    fp_b = site.add_cert("b")
    site.put_ok({"mode": "may", "certificate": "a"})
    site.wait_served(fp_a)
    site.wait_verified()

    before = site.snapshot()
    open(flag, "w").close()
    r = site.patch({"certificate": "b", "loglevel": 2})
    assert_problem(r, 422, "postfix_rejected")
    assert "simulated reload failure" in r.body["detail"], r.body
    assert site.main_cf() == before["main.cf"][0], "main.cf not restored after the failed reload"
    assert json.loads(site.settings_row()) == before["settings row"]
    assert site.generation() == before["generation"]
    job = site.d.get(f"/api/v1/jobs/{r.headers['Job-Id']}").body
    assert job["status"] == "failed" and job["error"]["code"] == "postfix_rejected", job
    assert "simulated reload failure" in job["output"] + json.dumps(job["error"]), job
    assert smtp_observe(site.pf.port) == (True, fp_a), "the old certificate is no longer served"
    assert site.metric(RELOADS, result="ok") == before["reloads"], "a failed reload counted as a reload"
    staged = [p for p in tree(site.cert_dir, site.state_dir)
              if p.endswith((".new", ".restore", ".tmp")) or "/check/" in p]
    assert not staged, f"staged files left behind: {staged}"
    st = site.status()
    assert st["applied_generation"] == st["desired_generation"] == before["generation"], st
    # Postfix works again: the same write goes through
    os.unlink(flag)
    site.patch_ok({"certificate": "b", "loglevel": 2})
    assert smtp_observe(site.pf.port) == (True, fp_b)
    site.assert_in_sync()
    # what the failed write left, apart from main.cf's restore (a new inode, same bytes)
    changed = [c for c in snapshot_diff(before, site.snapshot()) if "/b/" in c]
    assert changed, "b's files should exist now"


def test_certificate_files_damaged_behind_the_daemons_back(site):
    """The live certificate's rendered files are damaged by hand; the next write that changes main.cf
    must either render them again from the database or refuse (certificate_unusable, main.cf as it
    was): never a 200 with a main.cf that points at files Postfix cannot load."""
    fp = site.add_cert("a")
    site.put_ok({"mode": "may", "certificate": "a"})
    site.wait_served(fp)
    site.wait_verified()
    key, chain = site.chain_files()
    with open(key) as f:
        good_key = f.read()
    with open(site.certs.rsa_leaf().key) as f:
        other_key = f.read()

    def check(what, r, main_before):
        if r.status == 200:
            k, c = site.chain_files()
            if not (os.path.exists(k) and openssl_key_matches(k, c)):
                time.sleep(0.5)
                seen = describe_served(site.pf.port)
                verification = site.wait_verified()
                pytest.fail(f"{what}: PATCH loglevel answered 200, but main.cf points at {k} "
                            f"(exists: {os.path.exists(k)}, matches {c}: "
                            f"{os.path.exists(k) and openssl_key_matches(k, c)}); a new SMTP "
                            f"connection now sees: {seen} (a is {fp}); status state "
                            f"{site.status()['state']!r}, verification {verification}")
            assert smtp_observe(site.pf.port) == (True, fp)
        else:
            assert_problem(r, 422, "certificate_unusable")
            assert site.main_cf() == main_before, f"{what}: main.cf changed"

    # (1) privkey.pem replaced by another key
    with open(key, "w") as f:
        f.write(other_key)
    main_before = site.main_cf()
    check("privkey.pem replaced by another key", site.patch({"loglevel": 2}), main_before)
    with open(key, "w") as f:
        f.write(good_key)
    site.patch_ok({"loglevel": 1})
    assert smtp_observe(site.pf.port) == (True, fp)

    # (2) privkey.pem deleted
    key, chain = site.chain_files()
    os.unlink(key)
    main_before = site.main_cf()
    check("privkey.pem deleted", site.patch({"loglevel": 3}), main_before)


# == 5. 200 concurrent writes ======================================================================
def test_200_concurrent_writes_coalesce(site):
    names = ["c0", "c1", "c2", "c3"]
    fps = {n: site.add_cert(n) for n in names}
    site.put_ok({"mode": "may", "certificate": "c0"})
    site.wait_verified()
    reloads_before = site.metric(RELOADS, result="ok")
    applied_before = site.metric("smtptlsd_jobs_total", result="applied")
    profiles = ["modern", "intermediate", "legacy"]
    results = []  # (thread, job id, status, body sent, reply)
    lock = threading.Lock()
    errors = []

    def client(t):
        conn = http.client.HTTPConnection("127.0.0.1", site.d.port, timeout=120)
        headers = {"Authorization": f"Bearer {site.d.token}", "Content-Type": "application/json"}
        try:
            for j in range(10):
                k = t * 10 + j  # every write a different state, neighbours differing in each field
                body = {"mode": "may", "certificate": names[k % 4],
                        "profile": profiles[(k // 4) % 3], "loglevel": (k // 12) % 5,
                        "received_header": bool((k // 60) % 2), "auth_only": (k // 120) % 2 == 0}
                conn.request("PUT", "/api/v1/settings", body=json.dumps(body), headers=headers)
                resp = conn.getresponse()
                raw = resp.read()
                contract.check("PUT", "/api/v1/settings", resp.status, resp.headers, raw)
                with lock:
                    results.append((t, resp.headers.get("Job-Id"), resp.status, body, raw))
        except Exception as e:  # reported below
            with lock:
                errors.append(f"client {t}: {e!r}")
        finally:
            conn.close()

    t0 = time.monotonic()
    threads = [threading.Thread(target=client, args=(t,)) for t in range(20)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(180)
    elapsed = time.monotonic() - t0
    assert not errors, errors
    assert len(results) == 200
    bad = [(t, jid, st, raw[:300]) for t, jid, st, _, raw in results if st != 200]
    assert not bad, f"{len(bad)} writes did not succeed: {bad[:5]}"
    for t, jid, st, body, raw in results:
        reply = json.loads(raw)
        assert settings_view(reply) == expected_state(body), (jid, body, reply)
    reloads = site.metric(RELOADS, result="ok") - reloads_before
    applied = site.metric("smtptlsd_jobs_total", result="applied") - applied_before
    print(f"\n200 concurrent writes by 20 clients in {elapsed:.1f} s: {int(reloads)} Postfix reloads, "
          f"{int(applied)} jobs applied")

    problems = []
    sent = {int(jid): body for _, jid, _, body, _ in results}
    assert len(sent) == 200, "Job-Id repeated across replies"
    jobs = [j for j in site.jobs() if j["id"] in sent]
    assert len(jobs) == 200
    not_applied = [j for j in jobs if j["status"] != "applied"]
    if not_applied:
        problems.append(f"{len(not_applied)} jobs not applied: {not_applied[:3]}")
    if applied != 200:
        problems.append(f"smtptlsd_jobs_total{{result=applied}} grew by {int(applied)} for 200 writes: some "
                        f"jobs ran more than once")
    resumed = re.findall(r"resuming job (\d+)", site.d.log_text())
    if resumed:
        problems.append(f"jobs 'resumed ... left by a previous run' although the daemon never "
                        f"stopped: {resumed}")
    for j in jobs:
        if settings_view(j["after"]) != expected_state(sent[j["id"]]):
            problems.append(f"job {j['id']}: after {settings_view(j['after'])} != what it wrote")
    last = max(jobs, key=lambda j: j["id"])
    final = site.settings()
    if settings_view(final) != expected_state(sent[last["id"]]):
        problems.append(f"the final settings {settings_view(final)} are not those written by the "
                        f"job with the highest id ({last['id']}: {expected_state(sent[last['id']])})")
    # the audit trail is a chain in id order: each job's before is the previous job's after
    chain = sorted(jobs, key=lambda j: j["id"])
    broken = [(a["id"], b["id"]) for a, b in zip(chain, chain[1:])
              if settings_view(b["before"]) != settings_view(a["after"])]
    if broken:
        # every write is a distinct state: a job's before names the job that really ran before it
        by_after = {json.dumps(settings_view(j["after"]), sort_keys=True): j["id"] for j in jobs}
        really = [f"{b} ran after {by_after.get(json.dumps(settings_view(chain_b['before']), sort_keys=True))}"
                  for _, b in broken[:8] for chain_b in [next(j for j in jobs if j['id'] == b)]]
        problems.append(f"the audit trail is not a chain in id order (job.before != the previous "
                        f"job's after) at {len(broken)} places: {broken[:8]}; i.e. job {really}")
    if reloads >= 100:
        problems.append(f"{reloads} reloads for 200 writes")
    assert not problems, "\n  ".join(problems)
    site.assert_in_sync()
    site.assert_renders(settings_view(final))
    site.wait_served(fps[final["certificate"]])


# == 7. drift =======================================================================================
def edit_main_cf(site, replacements):
    """Edit managed lines by hand: {name: new value or None (delete the line)}."""
    lines = site.main_cf().decode().splitlines(keepends=True)
    out = []
    for line in lines:
        name = line.split("=", 1)[0].strip() if line[:1] not in (" ", "\t", "#") else None
        if name in replacements:
            if replacements[name] is not None:
                out.append(f"{name} = {replacements[name]}\n")
            continue
        out.append(line)
    with open(site.pf.main_cf, "w") as f:
        f.write("".join(out))
    old = time.time() - 10  # as an editor that finished a while ago
    os.utime(site.pf.main_cf, (old, old))


def test_drift_corrected_at_start_up_before_ready(site):
    fp = site.add_cert("mx")
    site.put_ok({"mode": "may", "certificate": "mx", "loglevel": 1})
    good = site.main_cf()
    site.d.stop()
    edit_main_cf(site, {"smtpd_tls_security_level": "none", "smtpd_tls_loglevel": "3",
                        "smtpd_tls_mandatory_ciphers": None})
    site.pf.reload()
    wait_until(lambda: smtp_observe(site.pf.port) == (False, None), 10, "the hand edit to take")
    edited_ino = os.stat(site.pf.main_cf).st_ino

    site.d.start()
    ready_mono = next(t for t, m in site.d.notify._messages if m.get("READY") == "1")
    ready_wall = ready_mono + (time.time() - time.monotonic())
    site.d.mark_fd_baseline()
    st = os.stat(site.pf.main_cf)
    want = {k: v for k, v in parse_main_cf(good.decode()).items() if k in MANAGED}
    assert site.managed_params() == want, "the start-up reconcile did not restore main.cf"
    assert strip_managed(site.main_cf().decode()) == strip_managed(good.decode())
    assert st.st_ino != edited_ino, "main.cf was edited in place, not replaced"
    assert st.st_ctime <= ready_wall + 0.01, \
        f"main.cf was corrected {st.st_ctime - ready_wall:.3f} s after READY=1"
    site.assert_in_sync()
    assert smtp_observe(site.pf.port) == (True, fp), "Postfix not reloaded after the correction"


def test_drift_while_running_is_reported_and_corrected_by_the_next_write(site):
    site.add_cert("mx")
    site.put_ok({"mode": "may", "certificate": "mx"})
    site.wait_verified()
    edit_main_cf(site, {"smtpd_tls_loglevel": "4", "smtpd_tls_auth_only": None})
    with open(site.pf.main_cf, "a") as f:  # the administrator also adds a line of their own
        f.write("# added by hand\ndelay_warning_time = 2h\n")
    keep = strip_managed(site.main_cf().decode())

    cfg = site.config()
    drift = {d["name"]: d for d in cfg["drift"]}
    assert set(drift) == {"smtpd_tls_loglevel", "smtpd_tls_auth_only"}, cfg["drift"]
    assert drift["smtpd_tls_loglevel"]["live"] == "4" and drift["smtpd_tls_loglevel"]["desired"] == "1"
    assert drift["smtpd_tls_auth_only"]["live"] is None
    assert drift["smtpd_tls_auth_only"]["desired"] == "yes"
    st = site.status()
    assert {d["name"] for d in st["drift"]} == set(drift), \
        f"/api/v1/status does not report the drift that /api/v1/config shows: {st}"

    site.patch_ok({"received_header": True})
    p = site.live_params()
    assert p["smtpd_tls_loglevel"] == "1" and p["smtpd_tls_auth_only"] == "yes", p
    assert p["smtpd_tls_received_header"] == "yes"
    assert strip_managed(site.main_cf().decode()) == keep
    site.assert_in_sync()


# == 8. ETag / If-Match, ?wait=0, dry_run, merge-patch, the audit trail ===========================
def test_etag_and_if_match(site):
    site.add_cert("mx")
    r = site.d.get("/api/v1/settings")
    tag = r.headers.get("ETag")
    assert re.fullmatch(r'"settings-\d+"', tag or ""), r.headers
    r = site.put({"mode": "may", "certificate": "mx"}, headers={"If-Match": tag})
    assert r.status == 200, r
    new_tag = site.d.get("/api/v1/settings").headers.get("ETag")
    assert new_tag != tag
    assert r.headers.get("ETag") == new_tag, "the write's reply carries the new ETag"
    gen, row = site.generation(), site.settings_row()
    main = site.main_cf()
    r = site.patch({"loglevel": 3}, headers={"If-Match": tag})  # stale
    assert_problem(r, 412, "precondition_failed")
    assert (site.generation(), site.settings_row(), site.main_cf()) == (gen, row, main)
    assert site.d.get("/api/v1/settings").headers.get("ETag") == new_tag
    r = site.patch({"loglevel": 2}, headers={"If-Match": new_tag})
    assert r.status == 200, r
    assert r.headers.get("ETag") == site.d.get("/api/v1/settings").headers.get("ETag")
    r = site.patch({"loglevel": 1}, headers={"If-Match": "*"})
    assert r.status == 200, r


def test_wait_zero_answers_202_and_the_job_is_applied(site):
    fp = site.add_cert("mx")
    r = site.put({"mode": "may", "certificate": "mx"}, query="?wait=0")
    assert r.status == 202, r
    loc = r.headers.get("Location", "")
    m = re.fullmatch(r"/api/v1/jobs/(\d+)", loc)
    assert m, r.headers
    assert r.headers.get("Job-Id") == m.group(1), r.headers
    assert r.body["id"] == int(m.group(1)) and r.body["status"] in ("queued", "running", "applied")

    job = wait_until(lambda: (lambda j: j if j["status"] in ("applied", "failed") else None)(
        site.d.get(loc).body), 30, f"job {loc} to finish")
    assert job["status"] == "applied", job
    assert job["generation"] == site.generation() and job["error"] is None, job
    assert job["actor"] == "admin" and job["action"] == "settings.put", job
    assert site.settings()["certificate"] == "mx"
    site.wait_served(fp)
    site.assert_in_sync()
    assert_problem(site.d.get("/api/v1/jobs/999999"), 404, "not_found")


def test_dry_run_changes_nothing_and_shows_the_diff(site):
    site.add_cert("mx")
    fp_new = site.add_cert("mx-new")
    site.put_ok({"mode": "may", "certificate": "mx"})
    site.wait_verified()
    before = site.snapshot()
    jobs_before = site.jobs()

    r = site.patch({"profile": "modern", "loglevel": 2, "certificate": "mx-new"},
                   query="?dry_run=true")
    assert r.status == 200, r
    plan = r.body.get("plan")
    assert plan and plan["valid"] is True and plan["errors"] == [] and plan["reload"] is True, r.body
    diff = {c["name"]: (c["old"], c["new"]) for c in plan["main_cf"]}
    assert diff["smtpd_tls_loglevel"] == ("1", "2"), diff
    # intermediate -> modern: the same TLS 1.2 floor, stronger mandatory ciphers
    assert diff["smtpd_tls_mandatory_ciphers"] == ("medium", "high"), diff
    assert "smtpd_tls_mandatory_protocols" not in diff, diff
    old_chain, new_chain = diff["smtpd_tls_chain_files"]
    assert old_chain == site.live_params()["smtpd_tls_chain_files"]
    assert fp_new.replace(":", "").lower()[:16] in new_chain and "/mx-new/" in new_chain
    assert "smtpd_tls_security_level" not in diff, "unchanged parameters are not in the diff"
    assert isinstance(plan["warnings"], list) and "tls_policy_diff" in plan
    assert site.snapshot() == before, "a dry run changed something"
    assert site.jobs() == jobs_before, "a dry run left a job in the audit trail"

    # a dry run that the worker would refuse: 200 with valid false and the error
    r = site.put({"mode": "may", "certificate": "nosuch"}, query="?dry_run=true")
    assert r.status == 200, r
    assert r.body["plan"]["valid"] is False, r.body
    assert [e["code"] for e in r.body["plan"]["errors"]] == ["certificate_not_found"], r.body
    # a dry run of what is already live: no change, no reload
    r = site.patch({"loglevel": 1}, query="?dry_run=true")
    assert r.status == 200 and r.body["plan"]["main_cf"] == [] and r.body["plan"]["reload"] is False
    assert site.snapshot() == before


def test_unchanged_write_does_not_reload(site):
    site.add_cert("mx")
    site.put_ok({"mode": "may", "certificate": "mx"})
    reloads, main = site.metric(RELOADS, result="ok"), os.stat(site.pf.main_cf)
    r = site.put_ok({"mode": "may", "certificate": "mx"})
    job = site.d.get(f"/api/v1/jobs/{r.headers['Job-Id']}").body
    assert job["status"] == "applied" and job["reload"] is False, job
    assert site.metric(RELOADS, result="ok") == reloads
    now = os.stat(site.pf.main_cf)
    assert (now.st_ino, now.st_mtime_ns) == (main.st_ino, main.st_mtime_ns), "main.cf rewritten"


def test_patch_merge_patch_and_the_audit_trail(site):
    site.add_cert("mx")
    ci = site.d.add_token("ci-pipeline", "write")
    site.d.mark_fd_baseline()
    r1 = site.put_ok({"mode": "may", "certificate": "mx"}, token=ci)
    r2 = site.patch({"inbound_mode": "encrypt", "loglevel": 2}, token=ci,
                    content_type="application/merge-patch+json")
    assert r2.status == 200, r2
    assert settings_view(r2.body) == {**settings_view(r1.body), "inbound_mode": "encrypt",
                                      "loglevel": 2}
    assert site.live_params()["smtpd_tls_security_level"] == "encrypt"
    assert site.live_params()["smtp_tls_security_level"] == "may"
    # RFC 7396: null removes the member, i.e. the override goes back to "follow mode"
    r3 = site.patch({"inbound_mode": None}, content_type="application/merge-patch+json")
    assert r3.status == 200 and r3.body["inbound_mode"] is None, r3
    assert site.live_params()["smtpd_tls_security_level"] == "may"
    r4 = site.patch({"loglevel": 1}, content_type="application/merge-patch+json; charset=utf-8")
    assert r4.status == 200, r4

    r = site.d.get("/api/v1/jobs")
    assert r.status == 200, r
    items = r.body["items"]
    assert [j["id"] for j in items] == sorted((j["id"] for j in items), reverse=True), \
        "the audit trail is not newest first"
    by_id = {j["id"]: j for j in items}
    j1, j2, j3 = (by_id[int(x.headers["Job-Id"])] for x in (r1, r2, r3))
    assert (j1["actor"], j1["action"], j1["target"]) == ("ci-pipeline", "settings.put", "settings")
    assert (j2["actor"], j2["action"]) == ("ci-pipeline", "settings.patch"), j2
    assert j3["actor"] == "admin", j3
    assert j1["before"]["managed"] is False and settings_view(j1["after"]) == settings_view(r1.body)
    assert settings_view(j2["before"]) == settings_view(r1.body)
    assert settings_view(j2["after"]) == settings_view(r2.body)
    assert settings_view(j3["before"]) == settings_view(r2.body)
    for j in (j1, j2, j3):
        assert j["status"] == "applied" and j["error"] is None and j["generation"], j
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", j["created_at"]), j
        assert j["finished_at"] and j["finished_at"] >= j["created_at"], j
        assert j["reload"] is True, j
    assert j2["generation"] > j1["generation"]
    page = site.d.get("/api/v1/jobs?limit=1")
    assert len(page.body["items"]) == 1 and page.body["next"], page.body
    rest = site.d.get(f"/api/v1/jobs?limit=1000&after={page.body['next']}").body["items"]
    assert [j["id"] for j in page.body["items"] + rest] == [j["id"] for j in items]
    # the request (which may carry secrets in later resources) is not part of the audit trail
    assert "request" not in j1
