# System tests of the certificate store (issue 4), black box against the real daemon under ASan, a
# real PostgreSQL and a real Postfix sandbox: upload (JSON, and application/x-pem-file bundles in any
# order), details checked against the openssl CLI, bind and what STARTTLS really serves, rotation by
# PUT on the same name, every refusal of api.md with its field (and that a refused upload changes
# nothing), q/type filters, delete refusals, the system certificate, ACME lineages laid out the way
# certbot lays them out (renewal picked up by the inotify watch with no API call, removed directories),
# the expiry metric and the certificate_expiring warning. Contract: shared/design/api.md
# ("Certificates", "Writes are jobs", "Settings", status, metrics).
import datetime
import hashlib
import itertools
import json
import os
import re
import select
import shutil
import smtplib
import socket
import ssl
import subprocess
import threading
import time
import urllib.parse

import pytest

from tests.harness.daemon import Daemon
from tests.harness.postfix import PostfixSandbox
from tests.harness.util import run, wait_until
from tests.system.conftest import base_config, check_daemon, setup_tokens
from tests.system.test_foundation import assert_problem, parse_metrics, sample

HOST = "mx.test.example"  # the Postfix sandbox's myhostname
RELOADS = "smtptlsd_postfix_reloads_total"
EXPIRY = "smtptlsd_certificate_expiry_seconds"
RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
DETAIL_FIELDS = {"name", "type", "subject", "issuer", "serial", "not_before", "not_after",
                 "days_left", "dns_names", "key", "sha256_fingerprint", "spki_sha256", "chain",
                 "chain_verified", "self_signed", "system", "in_use", "files"}
_ids = itertools.count(1)


# -- openssl, the reference ------------------------------------------------------------------------
def openssl_x509(path, *args):
    return run(["openssl", "x509", "-in", path, "-noout", *args]).stdout.strip()


def openssl_fingerprint(path):
    return openssl_x509(path, "-fingerprint", "-sha256").split("=", 1)[1]


def openssl_spki_sha256(path):
    """`openssl x509 -pubkey | openssl pkey -pubin -outform DER | sha256sum` (hex)."""
    pub = run(["openssl", "x509", "-in", path, "-noout", "-pubkey"]).stdout
    der = run_bytes(["openssl", "pkey", "-pubin", "-outform", "DER"], pub.encode())
    return hashlib.sha256(der).hexdigest()


def run_bytes(argv, data):
    proc = subprocess.run(argv, input=data, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=30, check=True)
    return proc.stdout


def openssl_time(path, which):
    """-startdate / -enddate as an aware datetime."""
    text = openssl_x509(path, f"-{which}").split("=", 1)[1]
    return datetime.datetime.strptime(text, "%b %d %H:%M:%S %Y %Z").replace(
        tzinfo=datetime.timezone.utc)


def rfc3339(value):
    assert isinstance(value, str) and RFC3339_UTC.match(value), f"not RFC 3339 UTC: {value!r}"
    return datetime.datetime.strptime(value[:19], "%Y-%m-%dT%H:%M:%S").replace(
        tzinfo=datetime.timezone.utc)


def fingerprint_of_der(der):
    return ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())


def version_of(fingerprint):
    """The version directory name of an imported certificate: 16 hex digits of its fingerprint."""
    return fingerprint.replace(":", "").lower()[:16]


def days_left(not_after, now):
    """Whole days from now (whole seconds, as time(2) gives them) to not_after, floored."""
    return (int(not_after.timestamp()) - int(now.timestamp())) // 86400


# -- observing Postfix -----------------------------------------------------------------------------
def served(port, timeout=5):
    """One NEW SMTP connection with STARTTLS: the SHA-256 fingerprint served, or None without
    STARTTLS."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with smtplib.SMTP("127.0.0.1", port, timeout=timeout) as s:
        s.ehlo("client.test.example")
        if not s.has_extn("starttls"):
            return None
        s.starttls(context=ctx)
        return fingerprint_of_der(s.sock.getpeercert(binary_form=True))


def poll_served(port, fingerprint, timeout):
    """Poll with new connections until `fingerprint` is served: seconds it took (AssertionError on
    timeout, naming what was served)."""
    start = time.monotonic()
    last = None
    while True:
        try:
            last = served(port)
        except (OSError, smtplib.SMTPException, ssl.SSLError) as e:
            last = f"error: {e}"
        if last == fingerprint:
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise AssertionError(f"127.0.0.1:{port} serves {last} after {timeout}s, "
                                 f"expected {fingerprint}")
        time.sleep(0.05)


def main_cf_params(path):
    """main.cf -> {name: value} (continuation lines joined, comments skipped, the last one wins)."""
    params, current = {}, None
    with open(path) as f:
        for line in f.read().split("\n"):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            if line[0] in " \t" and current:
                params[current] += " " + line.strip()
                continue
            name, _, value = line.partition("=")
            current = name.strip()
            params[current] = value.strip()
    return params


def tree(*roots):
    """{path: (kind, mode, uid, size, mtime_ns, sha256 or link target)} under roots."""
    out = {}
    for root in roots:
        if not root or not os.path.exists(root):
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            st = os.lstat(dirpath)
            out[dirpath] = ("dir", st.st_mode, st.st_uid, 0, None, None)
            for f in filenames:
                p = os.path.join(dirpath, f)
                st = os.lstat(p)
                if os.path.islink(p):
                    out[p] = ("link", st.st_mode, st.st_uid, 0, None, os.readlink(p))
                    continue
                with open(p, "rb") as fh:
                    digest = hashlib.sha256(fh.read()).hexdigest()
                out[p] = ("file", st.st_mode, st.st_uid, st.st_size, st.st_mtime_ns, digest)
    return out


def http_large(d, method, path, body, content_type):
    """A request whose body may be refused before it is all sent (413 from Content-Length): send
    the head, read the reply if one comes at once, else send the body (the peer may close early)
    and read the reply. Returns (status, headers text, parsed JSON body or raw bytes)."""
    data = body.encode() if isinstance(body, str) else body
    head = (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {d.token}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {len(data)}\r\n"
            f"Connection: close\r\n\r\n").encode()
    got = b""
    with socket.create_connection(("127.0.0.1", d.port), timeout=30) as s:
        s.sendall(head)
        if not select.select([s], [], [], 2.0)[0]:
            try:
                s.sendall(data)
            except (BrokenPipeError, ConnectionResetError):
                pass
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                got += chunk
        except ConnectionResetError:
            pass
    status_line, _, rest = got.partition(b"\r\n")
    m = re.match(rb"HTTP/1\.[01] (\d{3})", status_line)
    assert m, f"no HTTP reply to a {len(data)}-byte {method} {path}: {got[:300]!r}"
    headers, _, payload = rest.partition(b"\r\n\r\n")
    try:
        payload = json.loads(payload)
    except ValueError:
        pass
    return int(m.group(1)), headers.decode(errors="replace"), payload


# -- request material ------------------------------------------------------------------------------
def pem(*certs_or_paths):
    """Concatenate PEM files (Cert objects: their cert; strings: paths)."""
    out = ""
    for c in certs_or_paths:
        path = c if isinstance(c, str) else c.cert
        with open(path) as f:
            out += f.read()
    return out


def read(path):
    with open(path) as f:
        return f.read()


def json_body(cert, key=None, chain=None, **extra):
    """{"certificate", "private_key", "chain"?} from a tests.harness.certs.Cert."""
    body = {"certificate": cert.read("cert"),
            "private_key": key if key is not None else cert.read("key")}
    if chain is not None:
        body["chain"] = chain
    elif cert.chain:
        body["chain"] = cert.read("chain")
    body.update(extra)
    return body


# -- one daemon (and usually one Postfix) ---------------------------------------------------------
class Site:
    def __init__(self, d, pf, certs):
        self.d, self.pf, self.certs = d, pf, certs
        self.cert_dir = d.config["certificate_directory"]
        self.live_dir = d.config["acme_live_directory"]
        self.system_name = os.path.basename(d.config["system_certificate_file"]).rsplit(".", 1)[0]

    # certificates
    def put(self, name, body, query="", **kw):
        path = f"/api/v1/certificates/{name}{query}"
        if isinstance(body, dict):
            return self.d.http("PUT", path, body, timeout=60, **kw)
        return self.d.http("PUT", path, body, content_type="application/x-pem-file", timeout=60,
                           **kw)

    def put_ok(self, name, body, status=201, query=""):
        r = self.put(name, body, query=query)
        assert r.status == status, f"PUT /api/v1/certificates/{name}: expected {status}, got {r}"
        return r

    def post(self, body, **kw):
        return self.d.http("POST", "/api/v1/certificates", body, timeout=60, **kw)

    def delete(self, name):
        return self.d.http("DELETE", f"/api/v1/certificates/{name}", timeout=60)

    def rescan(self):
        r = self.d.http("POST", "/api/v1/certificates/rescan", timeout=60)
        assert r.status == 200, f"rescan: {r}"
        return r.body

    def get(self, name):
        r = self.d.get(f"/api/v1/certificates/{name}")
        assert r.status == 200, f"GET /api/v1/certificates/{name}: {r}"
        return r.body

    def listing(self, query=""):
        r = self.d.get("/api/v1/certificates" + query)
        assert r.status == 200, f"GET /api/v1/certificates{query}: {r}"
        assert set(r.body) >= {"items", "next"} and r.body["next"] is None, r.body
        return r.body["items"]

    def names(self, query=""):
        return [c["name"] for c in self.listing(query)]

    # settings, status, jobs, metrics
    def bind(self, name, mode="may"):
        r = self.d.http("PUT", "/api/v1/settings", {"mode": mode, "certificate": name}, timeout=60)
        assert r.status == 200, f"binding {name}: {r}"
        return r

    def status(self):
        r = self.d.get("/api/v1/status")
        assert r.status == 200, r
        return r.body

    def jobs(self):
        r = self.d.get("/api/v1/jobs?limit=1000")
        assert r.status == 200, r
        return r.body["items"]

    def job(self, job_id):
        r = self.d.get(f"/api/v1/jobs/{job_id}")
        assert r.status == 200, r
        return r.body

    def metrics(self):
        r = self.d.get("/metrics")
        assert r.status == 200, r
        return parse_metrics(r.body)[0]

    def metric(self, name, **labels):
        return sample(self.metrics(), name, **labels)

    # Postfix
    def chain_files(self):
        value = main_cf_params(self.pf.main_cf).get("smtpd_tls_chain_files", "")
        parts = [p for p in re.split(r"[,\s]+", value) if p]
        assert len(parts) == 2, f"smtpd_tls_chain_files = {value!r}: expected 'key, fullchain'"
        return parts

    def served(self):
        return served(self.pf.port)

    def versions(self, name):
        d = os.path.join(self.cert_dir, name)
        return sorted(os.listdir(d)) if os.path.isdir(d) else []

    def snapshot(self):
        """What a refused write must leave as it was."""
        st = self.status()
        jobs = self.jobs()
        self.last_job_ids = [j["id"] for j in jobs]
        # days_left is the clock's, not the store's: it may tick between two snapshots
        listing = [{k: v for k, v in c.items() if k != "days_left"} for c in self.listing()]
        out = {
            "list": listing,
            "applied jobs": [j["id"] for j in jobs if j["status"] == "applied"],
            "generation": (st["desired_generation"], st["applied_generation"]),
            "files": tree(self.cert_dir, self.live_dir),
            "reloads": self.metric(RELOADS, result="ok"),
        }
        if self.pf:
            out["postfix files"] = tree(self.pf.config_dir)
        return out


@pytest.fixture
def make_site(make_daemon, make_postfix, certs):
    """make_site(postfix=True, start=True, config=None): a daemon, managing a Postfix sandbox of the
    test's own unless postfix=False."""
    def make(postfix=True, start=True, config=None):
        pf, cfg = None, {}
        if postfix:
            pf = make_postfix()
            cfg = {"postfix_config_directory": pf.config_dir, **pf.argv_prefixes,
                   "smtp_probe_address": f"127.0.0.1:{pf.port}"}
        cfg.update(config or {})
        return Site(make_daemon(cfg, start=start), pf, certs)
    return make


def assert_key_file(path):
    st = os.stat(path)
    assert st.st_mode & 0o777 == 0o600, f"{path}: mode {oct(st.st_mode & 0o777)}, expected 0600"
    assert st.st_uid == 0, f"{path}: owner uid {st.st_uid}, expected root"


def assert_rendered(site, name, cert, key_path, chain_path):
    """key/fullchain under <certificate_directory>/<name>/<16 hex>/, key 0600 root, fullchain =
    leaf + chain, the key belongs to the leaf."""
    fp = cert.fingerprint()
    vdir = os.path.join(site.cert_dir, name, version_of(fp))
    assert key_path == os.path.join(vdir, "privkey.pem"), (key_path, vdir)
    assert chain_path == os.path.join(vdir, "fullchain.pem"), (chain_path, vdir)
    assert_key_file(key_path)
    assert os.stat(vdir).st_mode & 0o077 == 0, f"{vdir}: mode {oct(os.stat(vdir).st_mode)}"
    blocks = re.findall(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", read(chain_path),
                        re.S)
    want = re.findall(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----",
                      read(cert.fullchain), re.S)
    assert [b.split() for b in blocks] == [b.split() for b in want], \
        f"{chain_path} is not the leaf followed by its chain"
    pub_key = run(["openssl", "pkey", "-in", key_path, "-pubout"]).stdout
    pub_cert = run(["openssl", "x509", "-in", chain_path, "-noout", "-pubkey"]).stdout
    assert pub_key == pub_cert, f"{key_path} does not belong to the leaf in {chain_path}"


# == upload, details, bind, serve ==================================================================
def test_json_upload_details_match_openssl_and_bind_serves_it(make_site, certs):
    site = make_site()
    c, inter, ca = certs.chained_leaf(), certs.intermediate(), certs.ca()
    fp = c.fingerprint()
    assert site.names() == [site.system_name], "a fresh daemon lists only the system certificate"

    r = site.put_ok("mx", json_body(c))
    assert r.headers.get("Location") == "/api/v1/certificates/mx", r.headers
    assert r.headers.get("Job-Id", "").isdigit(), r.headers
    assert r.body["name"] == "mx" and r.body["sha256_fingerprint"] == fp, r.body
    job = site.job(r.headers["Job-Id"])
    assert job["status"] == "applied" and job["action"] in ("certificates.put",), job
    # imported files are rendered only for the bound certificate
    assert site.versions("mx") == [], f"an unbound certificate was rendered: {site.versions('mx')}"

    now = datetime.datetime.now(datetime.timezone.utc)
    g = site.get("mx")
    later = datetime.datetime.now(datetime.timezone.utc)
    assert set(g) >= DETAIL_FIELDS | {"missing"}, f"missing fields {DETAIL_FIELDS - set(g)}"
    assert g["name"] == "mx" and g["type"] == "imported", g
    assert g["subject"] == "CN=mx.test.example", g["subject"]
    assert g["issuer"] == "CN=smtptlsd Test Intermediate", g["issuer"]
    serial = openssl_x509(c.cert, "-serial").split("=", 1)[1]
    assert re.fullmatch(r"[0-9A-Fa-f]+", g["serial"]) and int(g["serial"], 16) == int(serial, 16), \
        (g["serial"], serial)
    nb, na = openssl_time(c.cert, "startdate"), openssl_time(c.cert, "enddate")
    assert rfc3339(g["not_before"]) == nb and rfc3339(g["not_after"]) == na, (g, nb, na)
    # The daemon counts with time(2), which reads the coarse clock and may lag datetime.now() by a
    # few milliseconds: at a second boundary it can still be in the previous second.
    lagging = now - datetime.timedelta(milliseconds=50)
    assert g["days_left"] in (days_left(na, lagging), days_left(na, now), days_left(na, later)), \
        (g["days_left"], na)
    assert g["dns_names"] == ["mx.test.example"], g["dns_names"]
    assert g["key"] == {"type": "RSA", "bits": 2048}, g["key"]
    assert g["sha256_fingerprint"] == fp == openssl_fingerprint(c.cert), g["sha256_fingerprint"]
    assert re.fullmatch(r"[0-9a-fA-F]{64}", g["spki_sha256"]), g["spki_sha256"]
    assert g["spki_sha256"].lower() == openssl_spki_sha256(c.cert), \
        "spki_sha256 is not sha256 of the DER SubjectPublicKeyInfo (TLSA 3 1 1)"
    assert [(e["subject"], e["issuer"]) for e in g["chain"]] == \
        [("CN=smtptlsd Test Intermediate", "CN=smtptlsd Test CA")], g["chain"]
    assert rfc3339(g["chain"][0]["not_after"]) == openssl_time(inter.cert, "enddate")
    assert g["chain_verified"] is False, "the test CA is not in the system trust store"
    assert g["self_signed"] is False and g["system"] is False and g["in_use"] is False, g
    assert g["missing"] is False, g
    vdir = os.path.join(site.cert_dir, "mx", version_of(fp))
    assert g["files"] == {"chain": os.path.join(vdir, "fullchain.pem"),
                          "key": os.path.join(vdir, "privkey.pem")}, g["files"]
    for secret in ("private_key", "BEGIN PRIVATE KEY", "BEGIN RSA PRIVATE KEY"):
        assert secret not in json.dumps(g), f"the details reveal the private key ({secret})"
    listed = {x["name"]: x for x in site.listing()}
    assert listed["mx"]["sha256_fingerprint"] == fp and listed["mx"]["type"] == "imported"

    # bind: rendered, main.cf switched, served (with its chain: s_client verifies against the CA)
    assert served(site.pf.port) is None, "the sandbox starts without STARTTLS"
    r = site.bind("mx")
    key, chain = site.chain_files()
    assert_rendered(site, "mx", c, key, chain)
    assert (key, chain) == (g["files"]["key"], g["files"]["chain"])
    assert site.served() == fp, "STARTTLS on the first new connection after the bind"
    assert site.pf.served_certificate(servername=HOST, cafile=ca.cert) == fp, \
        "openssl s_client -starttls smtp -CAfile ca does not verify the served certificate (chain?)"
    assert site.get("mx")["in_use"] is True
    st = wait_until(lambda: (lambda s: s if s["certificate"] and
                             s["certificate"].get("served_fingerprint_matches") is True else None)(
        site.status()), 20, "status.certificate.served_fingerprint_matches to become true")
    assert st["certificate"]["name"] == "mx", st
    assert st["certificate"]["days_left"] in (g["days_left"], g["days_left"] - 1), st


def test_ec_key_and_fullchain_in_the_certificate_field(make_site, certs):
    site = make_site(postfix=False)
    ec = certs.ec_leaf()
    site.put_ok("ec", json_body(ec))
    assert site.get("ec")["key"] == {"type": "EC", "bits": 256}
    # the chain may come inside the certificate field (a fullchain.pem as is)
    c = certs.chained_leaf()
    site.put_ok("full", {"certificate": read(c.fullchain), "private_key": c.read("key")})
    g = site.get("full")
    assert g["sha256_fingerprint"] == c.fingerprint(), "the leaf is the first certificate"
    assert [e["subject"] for e in g["chain"]] == ["CN=smtptlsd Test Intermediate"], g["chain"]
    # a chain out of order (root before intermediate) is accepted and stored in order
    ca, inter = certs.ca(), certs.intermediate()
    r = site.put_ok("ooo", json_body(c, chain=pem(ca, inter)))
    assert [e["subject"] for e in r.body["chain"]] == \
        ["CN=smtptlsd Test Intermediate", "CN=smtptlsd Test CA"], r.body["chain"]
    assert [e["subject"] for e in site.get("ooo")["chain"]] == \
        ["CN=smtptlsd Test Intermediate", "CN=smtptlsd Test CA"]


BUNDLE_ORDERS = {
    "key-leaf-chain": ("key", "leaf", "inter"),
    "chain-leaf-key": ("inter", "leaf", "key"),
    "leaf-key-chain": ("leaf", "key", "inter"),
    "chain-key-leaf": ("inter", "key", "leaf"),
    "root-inter-key-leaf": ("ca", "inter", "key", "leaf"),  # chain out of order, leaf last
}


def test_pem_bundle_in_any_order(make_site, certs):
    site = make_site(postfix=False)
    c, inter, ca = certs.chained_leaf(), certs.intermediate(), certs.ca()
    parts = {"key": c.read("key"), "leaf": c.read("cert"), "inter": inter.read("cert"),
             "ca": ca.read("cert")}
    for i, (label, order) in enumerate(BUNDLE_ORDERS.items()):
        name = f"bundle{i}"
        r = site.put_ok(name, "".join(parts[p] for p in order))
        assert r.headers.get("Location") == f"/api/v1/certificates/{name}", (label, r.headers)
        g = site.get(name)
        assert g["sha256_fingerprint"] == c.fingerprint(), f"{label}: wrong leaf {g}"
        chain = [e["subject"] for e in g["chain"]]
        assert chain[0] == "CN=smtptlsd Test Intermediate", f"{label}: chain {chain}"
        assert chain == ["CN=smtptlsd Test Intermediate"] + (["CN=smtptlsd Test CA"] if "ca" in order
                                                             else []), (label, chain)
    # a bundle with text before the first block (what `cat` of commented files gives) and CRLFs
    text = "# my certificate\r\n" + (parts["leaf"] + parts["key"]).replace("\n", "\r\n")
    site.put_ok("crlf", text)
    assert site.get("crlf")["sha256_fingerprint"] == c.fingerprint()
    # a bundle PUT on an existing name replaces it: 200, no Location needed
    site.put_ok("bundle0", parts["leaf"] + parts["inter"] + parts["key"], status=200)
    # charset parameter on the media type
    r = site.d.http("PUT", "/api/v1/certificates/charset", parts["key"] + parts["leaf"],
                    content_type="application/x-pem-file; charset=us-ascii")
    assert r.status == 201, r


def test_post_creates_and_refuses_a_duplicate_and_wait_zero(make_site, certs):
    site = make_site(postfix=False)
    c = certs.rsa_leaf()
    r = site.post(json_body(c, name="posted"))
    assert r.status == 201, r
    assert r.headers.get("Location") == "/api/v1/certificates/posted", r.headers
    assert site.get("posted")["sha256_fingerprint"] == c.fingerprint()
    before = site.snapshot()
    assert_problem(site.post(json_body(certs.ec_leaf(), name="posted")), 409, "duplicate_name",
                   "/name")
    after = site.snapshot()
    assert after == before, "a refused POST changed something"
    assert site.get("posted")["sha256_fingerprint"] == c.fingerprint()

    longest = "a" + "b-._9" * 12 + "xyz"  # 64 characters
    assert site.post(json_body(c, name=longest)).status == 201
    assert site.get(longest)["name"] == longest

    # ?wait=0: 202 with the job; the certificate appears once the job is applied
    r = site.put("later", json_body(certs.ec_leaf()), query="?wait=0")
    assert r.status == 202, r
    loc = r.headers.get("Location", "")
    assert re.fullmatch(r"/api/v1/jobs/\d+", loc) and r.headers.get("Job-Id") == loc.rsplit("/")[-1]
    job = wait_until(lambda: (lambda j: j if j["status"] in ("applied", "failed") else None)(
        site.d.get(loc).body), 30, f"job {loc}")
    assert job["status"] == "applied", job
    assert site.get("later")["sha256_fingerprint"] == certs.ec_leaf().fingerprint()


# == rotation ======================================================================================
def test_rotation_by_put_on_the_same_name(make_site, certs):
    site = make_site()
    v1 = certs.leaf("rot-v1", (HOST,), kind="ec")
    v2 = certs.leaf("rot-v2", (HOST, "mail.test.example"))
    v3 = certs.chained_leaf()
    site.put_ok("mx", json_body(v1))
    site.bind("mx")
    key1, chain1 = site.chain_files()
    assert_rendered(site, "mx", v1, key1, chain1)
    assert site.served() == v1.fingerprint()
    dir1 = os.path.dirname(key1)

    for old, new in ((v1, v2), (v2, v3)):
        old_dir = os.path.dirname(site.chain_files()[0])
        reloads = site.metric(RELOADS, result="ok")
        r = site.put_ok("mx", json_body(new), status=200)  # replaced, not created
        assert r.body["sha256_fingerprint"] == new.fingerprint(), r.body
        assert "Location" not in r.headers or r.headers["Location"] == "/api/v1/certificates/mx"
        job = site.job(r.headers["Job-Id"])
        assert job["status"] == "applied" and job["reload"] is True, job
        assert site.metric(RELOADS, result="ok") - reloads == 1, "a rotation is exactly one reload"
        key, chain = site.chain_files()
        assert_rendered(site, "mx", new, key, chain)
        assert os.path.dirname(key) != old_dir, "a rotation must render into a new directory"
        assert site.served() == new.fingerprint(), \
            "the rotated certificate is not served on the first new connection"
        assert site.get("mx")["sha256_fingerprint"] == new.fingerprint()
        # the job's verification of the served fingerprint
        job = wait_until(lambda: (lambda j: j if j["verified"] is not None else None)(
            site.job(r.headers["Job-Id"])), 20, "the rotation job to be verified")
        assert job["verified"] is True, job
        # superseded versions go: at most the live one and the one the last-known-good main.cf
        # names (test_rotation_removes_the_old_private_key asks for more)
        assert len(site.versions("mx")) <= 2, site.versions("mx")
    assert not os.path.exists(dir1), f"two rotations later, {dir1} is still there"

    # PUT with the same PEM again: no new files, no reload
    reloads = site.metric(RELOADS, result="ok")
    site.put_ok("mx", json_body(v3), status=200)
    assert site.metric(RELOADS, result="ok") == reloads, "re-uploading the bound certificate reloaded Postfix"
    assert site.served() == v3.fingerprint()


def test_rotation_removes_the_old_private_key(make_site, certs):
    """A rotation (often: the old key leaked) leaves no copy of the old private key on disk."""
    site = make_site()
    v1, v2 = certs.leaf("rot-v1", (HOST,), kind="ec"), certs.leaf("rot-v2", (HOST, "mail.test.example"))
    site.put_ok("mx", json_body(v1))
    site.bind("mx")
    old_dir = os.path.dirname(site.chain_files()[0])
    assert os.path.isfile(os.path.join(old_dir, "privkey.pem"))
    site.put_ok("mx", json_body(v2), status=200)
    assert site.served() == v2.fingerprint()
    lkg = os.path.join(site.pf.config_dir, ".smtptlsd", "main.cf.lkg")
    named = os.path.exists(lkg) and old_dir in read(lkg)
    assert site.versions("mx") == [version_of(v2.fingerprint())], \
        f"after the rotation the old version directory, old private key included, is still " \
        f"there: {old_dir} (versions {site.versions('mx')}; " \
        f"{'named by' if named else 'not named by'} {lkg})"


# == refusals ======================================================================================
@pytest.fixture(scope="module")
def shared(session_dir, pg, certs):
    """One site for the refusal matrix: Postfix serving `mx` (bound) and `spare` (unbound). Every
    refusal is checked against it; the after-test checks of the conftest run at the module's end."""
    n = next(_ids)
    pf = PostfixSandbox(os.path.join(session_dir, f"pfcert{n}")).start()
    dbname = f"certs{n}"
    url = pg.create_database(dbname)
    workdir = os.path.join(session_dir, f"dcert{n}")
    os.makedirs(workdir)
    cfg = base_config(workdir, url, certs.leaf("system", ("localhost",)))
    cfg.update({"postfix_config_directory": pf.config_dir, **pf.argv_prefixes,
                "smtp_probe_address": f"127.0.0.1:{pf.port}"})
    d = Daemon(workdir, cfg, db_port=pg.port)
    try:
        d.start()
        setup_tokens(d)
        site = Site(d, pf, certs)
        site.put_ok("mx", json_body(certs.rsa_leaf()))
        site.put_ok("spare", json_body(certs.ec_leaf()))
        site.bind("mx")
        assert site.served() == certs.rsa_leaf().fingerprint()
        wait_until(lambda: site.status()["state"] == "in_sync", 10, "in_sync")
        d.mark_fd_baseline()
        yield site
    finally:
        problems = check_daemon(d)
        pf.destroy()
        if pg.is_running():
            pg.drop_database(dbname)
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


def _bundle(*parts):
    return "".join(parts)


def refusal_cases():
    """(id, request(certs) -> (method, path, body, kwargs), status, code, field or None)."""
    J = "application/json"
    P = "application/x-pem-file"
    cases = []

    def add(case_id, status, code, field, make):
        cases.append(pytest.param(make, status, code, field, id=case_id))

    def put(name, body_fn, ctype=None):
        return lambda c: ("PUT", f"/api/v1/certificates/{name}", body_fn(c), ctype)

    def post(body_fn):
        return lambda c: ("POST", "/api/v1/certificates", body_fn(c), None)

    good = lambda c: c.rsa_leaf()  # noqa: E731
    # -- JSON, replacing the bound certificate (a rotation attempt) and creating a new one
    for target in ("mx", "fresh"):
        add(f"{target}-garbage-after-pem", 422, "invalid_pem", "/certificate",
            put(target, lambda c: json_body(good(c)) | {"certificate": good(c).read() + "garbage\n"}))
        add(f"{target}-expired", 422, "certificate_expired", "/certificate",
            put(target, lambda c: json_body(c.expired())))
        add(f"{target}-mismatched", 422, "key_mismatch", "/private_key",
            put(target, lambda c: json_body(c.mismatched())))
    add("not-pem", 422, "invalid_pem", "/certificate",
        put("mx", lambda c: json_body(good(c)) | {"certificate": "hello, world\n"}))
    add("bad-base64", 422, "invalid_pem", "/certificate",
        put("mx", lambda c: json_body(good(c)) | {
            "certificate": "-----BEGIN CERTIFICATE-----\nAAAA!!!!\n-----END CERTIFICATE-----\n"}))
    add("truncated-pem", 422, "invalid_pem", "/certificate",
        put("mx", lambda c: json_body(good(c)) | {"certificate": good(c).read()[:400]}))
    add("garbage-after-key", 422, "invalid_pem", "/private_key",
        put("mx", lambda c: json_body(good(c)) | {"private_key": good(c).read("key") + "junk\n"}))
    add("garbage-chain", 422, "invalid_pem", "/chain",
        put("mx", lambda c: json_body(good(c)) | {"chain": "not a chain\n"}))
    add("key-in-chain", 422, "invalid_pem", "/chain",
        put("mx", lambda c: json_body(good(c)) | {"chain": good(c).read("key")}))
    add("empty-certificate", 422, "no_certificate", "/certificate",
        put("mx", lambda c: json_body(good(c)) | {"certificate": ""}))
    add("empty-everything", 422, "no_certificate", "/certificate",
        put("mx", lambda c: {"certificate": "", "private_key": ""}))
    add("whitespace-certificate", 422, "no_certificate", "/certificate",
        put("mx", lambda c: json_body(good(c)) | {"certificate": " \n\t\n"}))
    add("empty-key", 422, "no_private_key", "/private_key",
        put("mx", lambda c: json_body(good(c)) | {"private_key": ""}))
    add("certificate-as-key", 422, "no_private_key", "/private_key",
        put("mx", lambda c: json_body(good(c)) | {"private_key": good(c).read()}))
    add("encrypted-pkcs8", 422, "encrypted_private_key", "/private_key",
        put("mx", lambda c: json_body(c.encrypted_pkcs8())))
    add("encrypted-legacy", 422, "encrypted_private_key", "/private_key",
        put("mx", lambda c: json_body(c.encrypted_legacy())))
    add("not-yet-valid", 422, "certificate_not_yet_valid", "/certificate",
        put("mx", lambda c: json_body(c.not_yet_valid())))
    add("foreign-chain", 422, "chain_mismatch", "/chain",
        put("mx", lambda c: json_body(c.wrong_chain())))
    add("weak-rsa-1024", 422, "weak_key", "/private_key",
        put("mx", lambda c: json_body(c.weak_rsa())))
    add("ca-as-leaf", 422, "not_a_server_certificate", "/certificate",
        put("mx", lambda c: json_body(c.ca_as_leaf())))
    add("field-over-256k", 413, "payload_too_large", "/certificate",
        put("mx", lambda c: json_body(good(c)) | {"certificate": good(c).read() + "\n" * 300_000}))
    add("body-2mib", 413, "payload_too_large", None,
        put("mx", lambda c: json_body(good(c)) | {"chain": "A" * (2 << 20)}))
    add("unknown-field", 422, "unknown_field", "/extra",
        put("mx", lambda c: json_body(good(c)) | {"extra": 1}))
    add("missing-private-key", 422, "missing_field", "/private_key",
        put("mx", lambda c: {"certificate": good(c).read()}))
    add("post-expired", 422, "certificate_expired", "/certificate",
        post(lambda c: json_body(c.expired(), name="fresh")))
    add("post-weak", 422, "weak_key", "/private_key",
        post(lambda c: json_body(c.weak_rsa(), name="fresh")))

    # -- application/x-pem-file bundles
    def bundle(target, fn):
        return put(target, fn, P)
    add("bundle-garbage-after-pem", 422, "invalid_pem", None,
        bundle("mx", lambda c: _bundle(good(c).read("key"), good(c).read(), "trailing garbage\n")))
    add("bundle-empty", 422, "no_certificate", None, bundle("mx", lambda c: ""))
    add("bundle-key-only", 422, "no_certificate", None,
        bundle("fresh", lambda c: good(c).read("key")))
    add("bundle-no-key", 422, "no_private_key", None,
        bundle("fresh", lambda c: _bundle(c.chained_leaf().read(), c.intermediate().read())))
    add("bundle-two-keys", 422, "invalid_pem", None,
        bundle("mx", lambda c: _bundle(good(c).read("key"), good(c).read(), c.ec_leaf().read("key"))))
    add("bundle-encrypted-pkcs8", 422, "encrypted_private_key", None,
        bundle("mx", lambda c: _bundle(c.encrypted_pkcs8().read(), c.encrypted_pkcs8().read("key"))))
    add("bundle-encrypted-legacy", 422, "encrypted_private_key", None,
        bundle("mx", lambda c: _bundle(c.encrypted_legacy().read("key"), c.encrypted_legacy().read())))
    add("bundle-mismatched", 422, "key_mismatch", None,
        bundle("mx", lambda c: _bundle(c.mismatched().read(), c.mismatched().read("key"))))
    add("bundle-expired", 422, "certificate_expired", None,
        bundle("mx", lambda c: _bundle(c.expired().read("key"), c.expired().read())))
    add("bundle-not-yet-valid", 422, "certificate_not_yet_valid", None,
        bundle("fresh", lambda c: _bundle(c.not_yet_valid().read(), c.not_yet_valid().read("key"))))
    add("bundle-foreign-chain", 422, "chain_mismatch", None,
        bundle("mx", lambda c: _bundle(c.wrong_chain().read("key"), read(c.wrong_chain().fullchain))))
    add("bundle-weak", 422, "weak_key", None,
        bundle("mx", lambda c: _bundle(c.weak_rsa().read(), c.weak_rsa().read("key"))))
    add("bundle-ca-as-leaf", 422, "not_a_server_certificate", None,
        bundle("mx", lambda c: _bundle(c.ca_as_leaf().read("key"), c.ca_as_leaf().read())))
    add("bundle-2mib", 413, "payload_too_large", None,
        bundle("mx", lambda c: _bundle(good(c).read("key"), good(c).read()) + "\n" * (2 << 20)))
    add("bundle-30-certificates", 422, ("invalid_pem", "payload_too_large"), None,
        bundle("mx", lambda c: _bundle(good(c).read("key"), good(c).read(),
                                       c.intermediate().read() * 29)))

    # -- names
    for bad in ("Upper", "-dash", ".dot", "a" * 65, "has%20space", "caf%C3%A9", "semi%3Bcolon"):
        add(f"put-name-{bad[:12]}", 422, "invalid_name", None, put(bad, lambda c: json_body(good(c))))
    for bad in ("Bad Name", "rescan", "", "a" * 65, "x/y"):
        add(f"post-name-{bad[:12] or 'empty'}", 422, "invalid_name", "/name",
            post(lambda c, bad=bad: json_body(good(c), name=bad)))

    # -- media types
    add("put-text-plain", 415, "unsupported_media_type", None,
        put("fresh", lambda c: json.dumps(json_body(good(c))), "text/plain"))
    add("post-pem-bundle", 415, "unsupported_media_type", None,
        lambda c: ("POST", "/api/v1/certificates", _bundle(good(c).read("key"), good(c).read()), P))

    # -- refused by the worker (a failed job, nothing applied)
    add("post-duplicate", 409, "duplicate_name", "/name",
        post(lambda c: json_body(c.ec_leaf(), name="spare")))
    add("delete-in-use", 409, "certificate_in_use", None,
        lambda c: ("DELETE", "/api/v1/certificates/mx", None, None))
    add("delete-system", 409, "system_certificate", None,
        lambda c: ("DELETE", "/api/v1/certificates/system", None, None))
    add("put-over-system", 409, "system_certificate", None, put("system", lambda c: json_body(good(c))))
    add("delete-unknown", 404, "not_found", None,
        lambda c: ("DELETE", "/api/v1/certificates/never-was", None, None))
    add("bind-system", 422, "system_certificate_refused", "/certificate",
        lambda c: ("PATCH", "/api/v1/settings", {"certificate": "system"}, None))
    return cases


@pytest.mark.parametrize("make,status,code,field", refusal_cases())
def test_refused_upload_changes_nothing(shared, certs, make, status, code, field):
    site = shared
    method, path, body, ctype = make(certs)
    before = site.snapshot()
    jobs_before = set(site.last_job_ids)
    kw = {"content_type": ctype} if ctype else {}
    codes = code if isinstance(code, tuple) else (code,)
    data = "" if body is None else body if isinstance(body, str) else json.dumps(body)
    big = status == 413 and len(data) > (1 << 20)  # over body_limit: may be refused mid-send
    if big:
        got, headers, problem = http_large(site.d, method, path, data, ctype or "application/json")
        assert got == 413 and isinstance(problem, dict), \
            f"{method} {path} with {len(data)} bytes: expected 413, got {got} {problem!r:.300}"
        assert problem.get("code") == "payload_too_large", problem
        assert re.search(r"(?im)^content-type:\s*application/problem\+json", headers), headers
        if field:
            assert problem.get("field") == field, problem
        assert not re.search(r"(?im)^job-id:", headers), "a refused upload made a job"
    else:
        r = site.d.http(method, path, body, timeout=60, **kw)
    if big:
        pass
    elif isinstance(code, tuple):  # either of two codes is right (then its own status)
        got = r.body.get("code") if isinstance(r.body, dict) else None
        assert got in codes, f"{method} {path}: expected one of {codes}, got {r}"
        assert_problem(r, 413 if got == "payload_too_large" else 422, got, field)
    else:
        assert_problem(r, status, code, field)
    new_jobs = [j for j in site.jobs() if j["id"] not in jobs_before]
    for j in new_jobs:
        assert j["status"] == "failed" and (j["error"] or {}).get("code") in codes, \
            f"a refused write left a job that is not failed with {code}: {j}"
    after = site.snapshot()
    for k in before:
        assert after[k] == before[k], f"the refused {method} {path} changed {k}:\n" \
                                      f"before {before[k]}\nafter  {after[k]}"
    assert site.served() == certs.rsa_leaf().fingerprint(), "Postfix no longer serves the bound one"
    assert site.d.alive(), "the daemon died"
    assert not site.d.sanitizer_reports(), site.d.sanitizer_reports()


def test_put_on_the_rescan_path_creates_nothing(shared, certs):
    r = shared.put("rescan", json_body(certs.ec_leaf()))
    assert r.status in (405, 422), f"PUT /api/v1/certificates/rescan: {r}"
    assert_problem(r, r.status, "method_not_allowed" if r.status == 405 else "invalid_name")
    assert "rescan" not in shared.names()


def test_read_token_cannot_upload_or_delete(shared, certs):
    before = shared.snapshot()
    r = shared.d.http("PUT", "/api/v1/certificates/fresh", json_body(certs.ec_leaf()),
                      token=shared.d.read_token)
    assert_problem(r, 403, "forbidden")
    assert_problem(shared.d.http("DELETE", "/api/v1/certificates/spare", token=shared.d.read_token),
                   403, "forbidden")
    assert_problem(shared.d.http("POST", "/api/v1/certificates/rescan", token=shared.d.read_token),
                   403, "forbidden")
    assert shared.d.get("/api/v1/certificates", token=shared.d.read_token).status == 200
    assert shared.snapshot() == before


# == list filters (autocomplete) ===================================================================
def test_q_and_type_filters(make_site, certs):
    site = make_site(postfix=False)
    alpha = certs.leaf("q-alpha", ("alpha.test.example", "smtp.alpha.test.example"))
    beta = certs.leaf("q-beta", ("beta.test.example",), kind="ec")
    gamma = certs.leaf("q-gamma", ("relay.other.example",))
    site.put_ok("alpha", json_body(alpha))
    site.put_ok("b2-beta", json_body(beta))
    site.put_ok("gamma.cert", json_body(gamma))
    sysname = site.system_name

    def q(text, type_=None):
        query = "?q=" + urllib.parse.quote(text, safe="")
        if type_:
            query += "&type=" + type_
        return sorted(site.names(query))

    assert sorted(site.names()) == sorted(["alpha", "b2-beta", "gamma.cert", sysname])
    assert site.names() == sorted(site.names()), "the list is ordered by name"
    assert q("alp") == ["alpha"], "name substring"
    assert q("ALPHA") == ["alpha"], "case-insensitive"
    assert q("smtp.alpha") == ["alpha"], "a DNS name (the second SAN)"
    assert q("relay.other") == ["gamma.cert"], "a DNS name that is not in the name"
    assert q("CN=beta.test") == ["b2-beta"], "the subject"
    assert q("test.example") == ["alpha", "b2-beta"], q("test.example")
    assert q("localhost") == [sysname], "the system certificate's DNS name"
    assert q("nothing-like-this") == []
    for wildcard in ("%", "_", "a%a", "b_", "\\", "%%"):
        assert q(wildcard) == [], f"q={wildcard!r}: LIKE wildcards must match literally"
    assert q("") == sorted(site.names()), "an empty q is no filter"
    assert sorted(site.names("?type=imported")) == ["alpha", "b2-beta", "gamma.cert"]
    assert site.names("?type=system") == [sysname]
    assert site.names("?type=acme") == []
    assert q("alpha", "imported") == ["alpha"] and q("alpha", "system") == []
    assert q("localhost", "system") == [sysname]
    for bad in ("bogus", "IMPORTED", "imported,acme"):
        r = site.d.get("/api/v1/certificates?type=" + urllib.parse.quote(bad))
        assert_problem(r, 422, "invalid_value")
        assert r.body.get("field") in ("type", "/type", "?type"), r.body
    # every list item carries the details of GET /certificates/{name}
    items = {c["name"]: c for c in site.listing("?q=alpha")}
    full = site.get("alpha")
    assert set(items["alpha"]) >= DETAIL_FIELDS, set(DETAIL_FIELDS) - set(items["alpha"])
    assert items["alpha"]["sha256_fingerprint"] == full["sha256_fingerprint"] == alpha.fingerprint()
    assert items["alpha"]["dns_names"] == ["alpha.test.example", "smtp.alpha.test.example"]
    assert_problem(site.d.get("/api/v1/certificates/nope"), 404, "not_found")


# == delete ========================================================================================
def test_delete(make_site, certs):
    site = make_site()
    a, b = certs.leaf("del-a", (HOST,), kind="ec"), certs.leaf("del-b", (HOST,), kind="ec")
    site.put_ok("a", json_body(a))
    site.put_ok("b", json_body(b))
    site.bind("a")
    assert_problem(site.delete("a"), 409, "certificate_in_use")
    assert site.get("a")["in_use"] is True
    r = site.delete("b")
    assert r.status == 204 and r.raw == b"", r
    assert "b" not in site.names()
    assert_problem(site.d.get("/api/v1/certificates/b"), 404, "not_found")
    assert_problem(site.delete("b"), 404, "not_found")
    # bind another, then the first can go; Postfix still serves the bound one
    site.put_ok("b", json_body(b))
    site.bind("b")
    assert site.served() == b.fingerprint()
    r = site.delete("a")
    assert r.status == 204, r
    assert site.names("?type=imported") == ["b"]
    assert site.served() == b.fingerprint()
    jobs = [j for j in site.jobs() if j["action"] == "certificates.delete" and j["target"] == "a"]
    assert [j["status"] for j in jobs] == ["applied", "failed"], jobs  # newest first
    assert jobs[0]["before"]["name"] == "a" and jobs[0].get("after") is None, jobs[0]


def test_deleted_certificate_leaves_no_private_key(make_site, certs):
    """DELETE of a certificate that was bound before removes its rendered files, key included."""
    site = make_site()
    a, b = certs.leaf("del-a", (HOST,), kind="ec"), certs.leaf("del-b", (HOST,), kind="ec")
    site.put_ok("a", json_body(a))
    site.put_ok("b", json_body(b))
    site.bind("a")
    a_dir = os.path.dirname(site.chain_files()[0])
    site.bind("b")
    assert site.delete("a").status == 204
    assert "a" not in site.names()
    lkg = os.path.join(site.pf.config_dir, ".smtptlsd", "main.cf.lkg")
    named = os.path.exists(lkg) and a_dir in read(lkg)
    assert not os.path.exists(a_dir), \
        f"the deleted certificate's files, private key included, are still there: {a_dir} " \
        f"({'named by' if named else 'not named by'} {lkg})"


# == system certificate ============================================================================
def test_system_certificate_is_listed_never_bindable_never_deletable(make_site, certs):
    site = make_site()
    sysc = certs.leaf("system", ("localhost",))
    name = os.path.basename(sysc.cert)
    name = re.sub(r"\.(pem|crt)$", "", name)
    g = site.get(name)
    assert g["type"] == "system" and g["system"] is True, g
    assert g["sha256_fingerprint"] == sysc.fingerprint(), g
    assert g["files"] == {"chain": sysc.cert, "key": sysc.key}, g["files"]
    assert g["in_use"] is False
    assert site.names("?type=system") == [name]

    site.put_ok("mx", json_body(certs.ec_leaf()))
    site.bind("mx")
    before = site.snapshot()
    r = site.d.http("PATCH", "/api/v1/settings", {"certificate": name})
    assert_problem(r, 422, "system_certificate_refused", "/certificate")
    r = site.d.http("PUT", "/api/v1/settings", {"mode": "may", "certificate": name})
    assert_problem(r, 422, "system_certificate_refused", "/certificate")
    assert_problem(site.delete(name), 409, "system_certificate")
    assert_problem(site.put(name, json_body(certs.rsa_leaf())), 409, "system_certificate")
    assert site.snapshot() == before
    assert site.d.get("/api/v1/settings").body["certificate"] == "mx"
    assert site.served() == certs.ec_leaf().fingerprint()
    assert site.get(name)["sha256_fingerprint"] == sysc.fingerprint()


# == expiry: metric, status, warnings ==============================================================
def expiry(samples, name):
    """The smtptlsd_certificate_expiry_seconds sample of one certificate (None: absent)."""
    found = [v for (metric, labels), v in samples.items()
             if metric == EXPIRY and dict(labels).get("name") == name]
    assert len(found) <= 1, f"{EXPIRY}: {len(found)} samples of {name!r}"
    return found[0] if found else None


def test_expiry_metric_and_certificate_expiring_warning(make_site, certs):
    site = make_site()
    soon, later = certs.expiring(10), certs.leaf("exp-later", (HOST,), kind="ec")
    wild = certs.leaf("exp-wild", ("*.test.example",), kind="ec")
    other = certs.leaf("exp-other", ("other.test.example",), kind="ec")
    for name, c in (("soon", soon), ("later", later), ("wild", wild), ("other", other)):
        site.put_ok(name, json_body(c))

    samples = site.metrics()
    now = time.time()
    system = certs.leaf("system", ("localhost",))
    for name, c in (("soon", soon), ("later", later), ("system", system)):
        want = openssl_time(c.cert, "enddate").timestamp() - now
        got = expiry(samples, name)
        assert got is not None and abs(got - want) < 120, \
            f"{EXPIRY}{{name={name!r}}} = {got}, expected ~{want:.0f}"
    assert sorted(dict(k[1])["name"] for k in samples if k[0] == EXPIRY) == \
        sorted(site.names()), "one expiry sample per certificate"
    t0 = datetime.datetime.now(datetime.timezone.utc)
    soon_days = site.get("soon")["days_left"]
    t1 = datetime.datetime.now(datetime.timezone.utc)
    na = openssl_time(soon.cert, "enddate")
    assert soon_days in (days_left(na, t0), days_left(na, t1)) and soon_days in (9, 10), soon_days

    r = site.bind("soon")
    codes = {w["code"] for w in r.body.get("warnings", [])}
    assert "certificate_expiring" in codes, f"binding a 10-day certificate: warnings {r.body}"
    st = site.status()
    assert st["certificate"]["name"] == "soon", st
    assert st["certificate"]["days_left"] in (soon_days, soon_days - 1), st
    assert "certificate_expiring" in {w["code"] for w in st["warnings"]}, st["warnings"]

    r = site.bind("later")
    assert "certificate_expiring" not in {w["code"] for w in r.body.get("warnings", [])}, r.body
    st = site.status()
    assert "certificate_expiring" not in {w["code"] for w in st["warnings"]}, st["warnings"]
    assert "hostname_mismatch" not in {w["code"] for w in r.body.get("warnings", [])}, r.body
    r = site.bind("wild")
    assert "hostname_mismatch" not in {w["code"] for w in r.body.get("warnings", [])}, \
        f"*.test.example covers {HOST} (RFC 6125): {r.body}"
    r = site.bind("other")
    assert "hostname_mismatch" in {w["code"] for w in r.body.get("warnings", [])}, \
        f"other.test.example does not cover {HOST}: {r.body}"
    assert site.delete("soon").status == 204
    assert expiry(site.metrics(), "soon") is None, \
        "a deleted certificate keeps its expiry sample"


# == ACME ==========================================================================================
KINDS = ("cert", "privkey", "chain", "fullchain")


class Lineage:
    """A certbot lineage: <root>/archive/<name>/{cert,chain,fullchain,privkey}N.pem and
    <root>/live/<name>/*.pem symlinks to ../../archive/<name>/...N.pem."""

    def __init__(self, live_dir, name):
        self.name = name
        self.live = os.path.join(live_dir, name)
        self.archive = os.path.join(os.path.dirname(live_dir), "archive", name)
        self.version = 0

    def _write_archive(self, c):
        n = self.version + 1
        os.makedirs(self.archive, mode=0o700, exist_ok=True)
        texts = {"cert": c.read("cert"), "chain": c.read("chain") if c.chain else "",
                 "fullchain": read(c.fullchain), "privkey": c.read("key")}
        for kind in KINDS:
            path = os.path.join(self.archive, f"{kind}{n}.pem")
            with open(path, "w") as f:
                f.write(texts[kind])
            os.chmod(path, 0o600 if kind == "privkey" else 0o644)
        self.version = n
        return n

    def target(self, kind):
        return f"../../archive/{self.name}/{kind}{self.version}.pem"

    def create(self, c):
        self._write_archive(c)
        os.makedirs(self.live)
        for kind in KINDS:
            os.symlink(self.target(kind), os.path.join(self.live, f"{kind}.pem"))
        with open(os.path.join(self.live, "README"), "w") as f:
            f.write("This directory contains your keys and certificates.\n")

    def renew(self, c, atomic=True):
        """New archive files N+1, then the live symlinks switched: by a temporary symlink renamed
        over the old one (atomic) or, as certbot's storage.py does, unlink + symlink."""
        self._write_archive(c)
        for kind in KINDS:
            link = os.path.join(self.live, f"{kind}.pem")
            if atomic:
                tmp = os.path.join(self.live, f".{kind}.pem.tmp")
                os.symlink(self.target(kind), tmp)
                os.rename(tmp, link)
            else:
                os.unlink(link)
                os.symlink(self.target(kind), link)


def acme_leaf(certs, name, n):
    return certs.leaf(f"acme-{name}-{n}", (HOST, f"{name}.test.example"), kind="ec",
                      issuer=certs.intermediate())


def test_acme_lineage_rescan_bind_renew_and_remove(make_site, certs):
    site = make_site(start=False)
    os.makedirs(site.live_dir)  # certbot's live/ exists before the daemon starts
    site.d.start()
    setup_tokens(site.d)
    a1, a2, a3 = (acme_leaf(certs, "mail", n) for n in (1, 2, 3))
    b1 = acme_leaf(certs, "other", 1)
    mail, other = Lineage(site.live_dir, "mail"), Lineage(site.live_dir, "other")
    mail.create(a1)
    other.create(b1)

    summary = site.rescan()
    assert sorted(summary.get("acme", [])) == ["mail", "other"], summary
    assert site.names("?type=acme") == ["mail", "other"]
    g = site.get("mail")
    assert g["type"] == "acme" and g["system"] is False and g["missing"] is False, g
    assert g["sha256_fingerprint"] == a1.fingerprint(), g
    assert g["dns_names"] == [HOST, "mail.test.example"], g
    assert [e["subject"] for e in g["chain"]] == ["CN=smtptlsd Test Intermediate"], g["chain"]
    assert g["files"] == {"chain": os.path.join(mail.live, "fullchain.pem"),
                          "key": os.path.join(mail.live, "privkey.pem")}, g["files"]
    assert site.names("?q=other.test&type=acme") == ["other"]

    # the ACME certificates are read-only here
    assert_problem(site.put("other", json_body(certs.ec_leaf())), 409, "acme_certificate")
    assert_problem(site.delete("other"), 409, "acme_certificate")
    assert site.get("other")["sha256_fingerprint"] == b1.fingerprint()

    # bind: Postfix uses the live files in place (no copy under the certificate directory)
    site.bind("mail")
    assert site.chain_files() == [os.path.join(mail.live, "privkey.pem"),
                                  os.path.join(mail.live, "fullchain.pem")]
    assert not os.path.exists(os.path.join(site.cert_dir, "mail")), "an ACME certificate was copied"
    assert site.served() == a1.fingerprint()
    assert_problem(site.delete("mail"), 409, "certificate_in_use")

    # renewal, the certbot way: no API call until the renewed certificate is served
    for renewed, atomic in ((a2, True), (a3, False)):
        reloads = site.metric(RELOADS, result="ok")
        last_job = max((j["id"] for j in site.jobs()), default=0)
        t0 = time.monotonic()
        mail.renew(renewed, atomic=atomic)
        # only SMTP connections until it is served: no API call at all
        took = poll_served(site.pf.port, renewed.fingerprint(), timeout=20)

        def reloaded_by_watch():
            return [j for j in site.jobs() if j["id"] > last_job and j["actor"] == "acme-watch"
                    and j["action"] == "certificates.rescan" and j["status"] == "applied"
                    and j["reload"] is True]
        wait_until(reloaded_by_watch, 10, "an applied acme-watch rescan job with reload=true "
                   "in the audit trail")
        job_seen = time.monotonic() - t0
        print(f"\nACME renewal ({'temp symlink + rename' if atomic else 'unlink + symlink'}): "
              f"renewed certificate served on a new connection after {took:.2f} s; the acme-watch "
              f"rescan job (reload) seen applied after {job_seen:.2f} s; no API call")
        for _ in range(5):  # every smtpd process now has it, not only a freshly started one
            assert site.served() == renewed.fingerprint(), "an smtpd still serves the old one"
        jobs = [j for j in site.jobs() if j["id"] > last_job]
        assert all(j["actor"] == "acme-watch" for j in jobs), f"jobs not by the watch: {jobs}"
        assert site.metric(RELOADS, result="ok") - reloads == 1, "a renewal is exactly one reload"
        g = site.get("mail")
        assert g["sha256_fingerprint"] == renewed.fingerprint() and g["in_use"] is True, g
        assert site.chain_files() == [os.path.join(mail.live, "privkey.pem"),
                                      os.path.join(mail.live, "fullchain.pem")]

    # an unbound lineage removed: gone from the list (the watch, no API call)
    shutil.rmtree(other.live)
    wait_until(lambda: "other" not in site.names(), 10, "the removed ACME certificate to go")
    assert_problem(site.d.get("/api/v1/certificates/other"), 404, "not_found")

    # the bound one removed: kept, flagged missing, reported; the daemon lives on
    shutil.rmtree(mail.live)
    wait_until(lambda: site.get("mail")["missing"] is True, 10, "the bound certificate missing")
    assert "mail" in site.names("?type=acme")
    assert site.get("mail")["in_use"] is True
    st = site.status()
    assert "certificate_missing" in {w["code"] for w in st["warnings"]}, st["warnings"]
    assert site.d.get("/healthz", token=None).status == 200
    assert site.d.get("/readyz", token=None).status == 200
    assert site.d.alive()
    summary = site.rescan()
    assert summary.get("missing") == ["mail"], summary
    assert "certificate_missing" in {w["code"] for w in summary.get("warnings", [])}, summary
    assert site.status()["state"] != "failed"
    # moving away from the missing certificate works; moving back to it is refused
    fallback = certs.leaf("acme-fallback", (HOST,), kind="ec")
    site.put_ok("fallback", json_body(fallback))
    site.bind("fallback")
    assert site.served() == fallback.fingerprint()
    r = site.d.http("PATCH", "/api/v1/settings", {"certificate": "mail"}, timeout=60)
    assert_problem(r, 422, "certificate_unusable")  # its field is checked at the end
    unusable = r
    assert site.served() == fallback.fingerprint()
    # and back (certbot restored from backup): listed again, bindable again
    os.makedirs(mail.live)
    for kind in KINDS:
        os.symlink(mail.target(kind), os.path.join(mail.live, f"{kind}.pem"))
    wait_until(lambda: (lambda c: c and c[0]["missing"] is False)(site.listing("?q=mail&type=acme")),
               10, "the restored directory to be listed, not missing")
    site.bind("mail")
    assert site.served() == a3.fingerprint()
    assert_problem(unusable, 422, "certificate_unusable", "/certificate")


class GatedProxy:
    """A TCP relay in front of the sandbox's smtpd for the daemon's verification: while the gate
    is closed, the connections it accepts wait (as to an smtpd that does not answer yet)."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.upstream, self.gate, self.closing = None, threading.Event(), False
        self.gave_up = []  # when a client closed a connection the gate held (monotonic)
        self.held = 0  # connections that found the gate closed
        self.gate.set()
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while not self.closing:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.relay, args=(conn,), daemon=True).start()

    def relay(self, conn):
        with conn:
            deadline = time.monotonic() + 60
            if not self.gate.is_set():
                self.held += 1
            while not self.gate.is_set() and time.monotonic() < deadline:
                if select.select([conn], [], [], 0.05)[0] and not conn.recv(1, socket.MSG_PEEK):
                    self.gave_up.append(time.monotonic())
                    return
            if self.upstream is None:
                return
            with socket.create_connection(("127.0.0.1", self.upstream), timeout=30) as up:
                pair = {conn: up, up: conn}
                while True:
                    ready, _, _ = select.select(list(pair), [], [], 30)
                    if not ready:
                        return
                    for s in ready:
                        try:
                            data = s.recv(65536)
                        except OSError:
                            return
                        if not data:
                            return
                        pair[s].sendall(data)

    def close(self):
        self.closing = True
        self.gate.set()
        self.sock.close()


def test_a_verification_superseded_by_a_newer_one_records_nothing(make_site, certs):
    """Two binds in a row while smtpd does not answer yet: the first bind's check, which could
    only ever see the second certificate, stops when the second's is submitted - it records
    nothing (no `verified: false`, no warning) and its job gets the second check's outcome."""
    proxy = GatedProxy()
    try:
        site = make_site(config={"smtp_probe_address": f"127.0.0.1:{proxy.port}"})
        proxy.upstream = site.pf.port
        a = certs.leaf("sup-a", (HOST,), kind="ec")
        b = certs.leaf("sup-b", (HOST,))
        site.put_ok("a", json_body(a))
        site.put_ok("b", json_body(b))
        first = site.bind("a")
        wait_until(lambda: site.job(first.headers["Job-Id"])["verified"] is not None, 20,
                   "the first bind's verification")
        assert site.job(first.headers["Job-Id"])["verified"] is True

        proxy.gate.clear()
        r_a = site.bind("b")
        wait_until(lambda: proxy.held, 10, "the first bind's check held by the relay")
        r_b = site.bind("a")
        t_b = time.monotonic()
        # the superseded check hangs up at once, in the middle of its handshake's wait
        wait_until(lambda: proxy.gave_up, 10, "the superseded check to hang up")
        assert proxy.gave_up[0] - t_b < 1.0, proxy.gave_up[0] - t_b
        proxy.gate.set()
        jobs = [r.headers["Job-Id"] for r in (r_a, r_b)]

        def verified():
            v = [site.job(j)["verified"] for j in jobs]
            assert False not in v, f"a superseded check recorded its failure: {v}"
            return v if None not in v else None
        assert wait_until(verified, 30, "both binds verified") == [True, True]
        st = site.status()["verification"]
        assert st["state"] == "verified" and st["served_fingerprint_matches"] is True, st
        assert "verification failed" not in site.d.log_text(), "a superseded check warned"
    finally:
        proxy.close()
