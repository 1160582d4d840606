# Tests of the test harness itself (no daemon): what later system tests take for granted about the
# PostgreSQL and Postfix sandboxes, the test certificates, the sd_notify listener, and the destination
# probe's peers: the DNS server (knotd, validated with unbound-host = libunbound), the HTTPS server (nginx)
# and remote MXs on port 25 of an address of their own.
import os
import smtplib
import socket
import ssl
import subprocess

import pytest

from tests.harness.dns import tlsa_311
from tests.harness.notify import NotifyListener
from tests.harness.postfix import ADMIN_LINES
from tests.harness.util import free_loopback_address, listening_sockets


def openssl_verify(certs, cert, untrusted=None):
    argv = ["openssl", "verify", "-CAfile", certs.ca().cert, "-purpose", "sslserver"]
    if untrusted:
        argv += ["-untrusted", untrusted]
    proc = subprocess.run(argv + [cert], capture_output=True, text=True, timeout=30)
    proc.stdout += proc.stderr
    return proc


def test_certificate_catalogue(certs):
    assert openssl_verify(certs, certs.rsa_leaf().cert).returncode == 0
    assert openssl_verify(certs, certs.ec_leaf().cert).returncode == 0
    chained = certs.chained_leaf()
    assert openssl_verify(certs, chained.cert, chained.chain).returncode == 0
    assert openssl_verify(certs, chained.cert).returncode != 0, "the intermediate should be needed"
    assert "certificate has expired" in openssl_verify(certs, certs.expired().cert).stdout
    assert "not yet valid" in openssl_verify(certs, certs.not_yet_valid().cert).stdout
    assert openssl_verify(certs, certs.wrong_chain().cert, certs.wrong_chain().chain).returncode != 0
    text = subprocess.run(["openssl", "x509", "-in", certs.ca_as_leaf().cert, "-noout", "-text"],
                          capture_output=True, text=True, timeout=30).stdout
    assert "CA:TRUE" in text
    text = subprocess.run(["openssl", "pkey", "-in", certs.weak_rsa().key, "-noout", "-text"],
                          capture_output=True, text=True, timeout=30).stdout
    assert "1024 bit" in text
    assert certs.encrypted_pkcs8().read("key").startswith("-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert "Proc-Type: 4,ENCRYPTED" in certs.encrypted_legacy().read("key")
    mismatched = certs.mismatched()
    pub_cert = subprocess.run(["openssl", "x509", "-in", mismatched.cert, "-noout", "-pubkey"],
                              capture_output=True, text=True, timeout=30).stdout
    pub_key = subprocess.run(["openssl", "pkey", "-in", mismatched.key, "-pubout"],
                             capture_output=True, text=True, timeout=30).stdout
    assert pub_cert and pub_key and pub_cert != pub_key


def test_notify_listener_collects_datagrams(session_dir):
    with NotifyListener(os.path.join(session_dir, "n.sock")) as n:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.sendto(b"STATUS=waiting for database: refused", n.path)
            s.sendto(b"READY=1\nSTATUS=listening on http://127.0.0.1:1", n.path)
        assert n.wait_for("READY=1", timeout=5)["STATUS"] == "listening on http://127.0.0.1:1"
        assert n.values("STATUS")[0].startswith("waiting for database")
        with pytest.raises(TimeoutError):
            n.wait_for("STOPPING=1", timeout=0.3)


def test_postgres_restart_keeps_the_port(private_pg):
    private_pg.start()
    port = private_pg.port
    private_pg.create_database("keep")
    private_pg.restart()
    assert private_pg.port == port
    assert private_pg.psql("SELECT 1", db="keep").strip() == "1"


def test_postfix_sandbox_keeps_admin_lines_and_serves_starttls(make_postfix, certs):
    leaf = certs.rsa_leaf()
    pf = make_postfix(starttls=True, cert=leaf.cert, key=leaf.key)
    assert pf.main_cf_text().startswith(ADMIN_LINES)
    assert pf.param("message_size_limit") == "20480000"
    assert pf.param("inet_interfaces") == "127.0.0.1"
    assert "smtp/inet" not in pf.postconf("-M")
    assert pf.served_certificate(cafile=certs.ca().cert) == leaf.fingerprint()
    assert "warning" not in pf.postconf("-n", check=False)


@pytest.mark.parametrize("starttls,level,outcome", [
    (False, "may", "status=sent"),
    (False, "encrypt", "status=deferred.*TLS is required, but was not offered"),
    (True, "encrypt", "status=sent"),
])
def test_remote_mx_shows_what_postfix_does_with_a_level(make_postfix, certs, starttls, level,
                                                        outcome):
    leaf = certs.rsa_leaf()
    mx = make_postfix(remote=True, starttls=starttls, cert=leaf.cert, key=leaf.key)
    nexthop = f"[127.0.0.1]:{mx.port}"
    pf = make_postfix(extra={"transport_maps": f"inline:{{ remote.test=smtp:{nexthop} }}",
                             "smtp_tls_policy_maps": f"inline:{{ {nexthop}={level} }}"})
    pf.send_mail("user@remote.test")
    pf.wait_maillog(rf"to=<user@remote\.test>, relay=.*{outcome}", timeout=30)


def only_on(address, sockets):
    """Every listening socket of a process is on `address` (nothing beyond loopback)."""
    return sockets and all(proto in ("tcp", "udp") and a == address for proto, a, _ in sockets)


def probe_zones(dns, mx_cert):
    """The zones a probe test would use: signed, unsigned and bogus siblings under test. (no parent
    zone, so the unsigned one has no anchor above it)."""
    tlsa = tlsa_311(mx_cert)
    dns.add_zone("secure.test", ["@ 300 IN MX 10 mx1", "mx1 300 IN A 127.0.5.7",
                                 f"_25._tcp.mx1 300 IN TLSA 3 1 1 {tlsa}",
                                 '_mta-sts 300 IN TXT "v=STSv1; id=1"'])
    dns.add_zone("insecure.test", ["@ 300 IN MX 10 mx1", "mx1 300 IN A 127.0.5.8"], signed=False)
    dns.add_zone("bogus.test", ["@ 300 IN MX 10 mx1", "mx1 300 IN A 127.0.5.9"], bogus_anchor=True)
    return tlsa


def test_dns_server_zones_come_out_secure_insecure_and_bogus(make_dns, certs):
    dns = make_dns()
    tlsa = probe_zones(dns, certs.rsa_leaf().cert)
    dns.start()
    assert dns.stub_zones() == " ".join(f"{z}=127.0.0.1@{dns.port}"
                                        for z in ("secure.test", "insecure.test", "bogus.test"))
    assert only_on("127.0.0.1", listening_sockets(dns.proc.pid))
    anchors = open(dns.trust_anchor_file()).read()
    assert "secure.test. IN DNSKEY 257 3 13 " in anchors and "insecure.test." not in anchors

    mx = dns.resolve("secure.test", "MX")
    assert (mx.security, mx.records) == ("secure", ["10 mx1.secure.test."]), mx.text
    a = dns.resolve("mx1.secure.test", "A")
    assert (a.security, a.records) == ("secure", ["127.0.5.7"]), a.text
    r = dns.resolve("_25._tcp.mx1.secure.test", "TLSA")
    assert r.security == "secure" and len(r.records) == 1, r.text
    assert dns.query("_25._tcp.mx1.secure.test", "TLSA")[0].lower().endswith(f"3 1 1 {tlsa}")
    txt = dns.resolve("_mta-sts.secure.test", "TXT")
    assert txt.security == "secure" and "v=STSv1; id=1" in txt.text, txt.text
    missing = dns.resolve("nothing.secure.test", "A")  # a signed denial (NSEC)
    assert (missing.security, missing.records) == ("secure", []), missing.text

    insecure = dns.resolve("insecure.test", "MX")
    assert (insecure.security, insecure.records) == ("insecure", ["10 mx1.insecure.test."]), \
        insecure.text
    bogus = dns.resolve("mx1.bogus.test", "A")
    assert bogus.security == "bogus", bogus.text

    dns.break_signatures("secure.test", "_25._tcp.mx1", "TLSA")  # one RRset bogus, the rest secure
    r = dns.resolve("_25._tcp.mx1.secure.test", "TLSA")
    assert r.security == "bogus", r.text
    for name, rtype in (("secure.test", "MX"), ("mx1.secure.test", "A"), ("mx1.secure.test", "AAAA")):
        r = dns.resolve(name, rtype)
        assert r.security == "secure", r.text
    dns.set_records("secure.test", ["@ 300 IN MX 10 mx1", "mx1 300 IN A 127.0.5.7",
                                    f"_25._tcp.mx1 300 IN TLSA 3 1 1 {tlsa}"])  # signed anew
    r = dns.resolve("_25._tcp.mx1.secure.test", "TLSA")
    assert r.security == "secure", r.text


def test_dns_server_set_records_and_late_zones(make_dns):
    dns = make_dns()
    dns.add_zone("secure.test", ["@ 300 IN MX 10 mx1", "mx1 300 IN A 127.0.5.7"])
    dns.add_zone("insecure.test", ["mx1 300 IN A 127.0.5.8"], signed=False)
    dns.start()
    dns.set_records("secure.test", ["@ 300 IN MX 20 mx2", "mx2 300 IN AAAA ::1"])
    assert dns.query("secure.test", "MX") == ["secure.test. 300 IN MX 20 mx2.secure.test."]
    mx = dns.resolve("secure.test", "MX")
    assert (mx.security, mx.records) == ("secure", ["20 mx2.secure.test."]), mx.text
    aaaa = dns.resolve("mx2.secure.test", "AAAA")
    assert (aaaa.security, aaaa.records) == ("secure", ["::1"]), aaaa.text
    assert dns.resolve("mx1.secure.test", "A").records == []
    dns.set_records("insecure.test", ["mx1 300 IN A 127.0.5.18"])
    assert dns.resolve("mx1.insecure.test", "A").records == ["127.0.5.18"]
    dns.add_zone("late.test", ["www 300 IN A 127.0.5.19"])  # on the running server: signed at once
    late = dns.resolve("www.late.test", "A")
    assert (late.security, late.records) == ("secure", ["127.0.5.19"]), late.text
    assert f"late.test=127.0.0.1@{dns.port}" in dns.stub_zones().split()


def test_https_server_serves_a_policy_with_the_test_ca(make_https, certs):
    leaf = certs.leaf("mta-sts", ("mta-sts.secure.test",), kind="ec")
    web = make_https(leaf.cert, leaf.key)
    assert web.address.startswith("127.") and web.address != "127.0.0.1" and web.port == 443
    assert only_on(web.address, listening_sockets(web.proc.pid))
    policy = b"version: STSv1\r\nmode: enforce\r\nmx: mx1.secure.test\r\nmax_age: 86400\r\n"
    web.put("/.well-known/mta-sts.txt", policy)

    def curl(cafile, path="/.well-known/mta-sts.txt"):
        return subprocess.run(["curl", "-sS", "-D", "-", "--max-time", "10", "--cacert", cafile,
                               "--resolve", f"mta-sts.secure.test:443:{web.address}",
                               f"https://mta-sts.secure.test{path}"],
                              capture_output=True, timeout=30)

    got = curl(certs.ca().cert)
    assert got.returncode == 0, got.stderr
    head, body = got.stdout.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200") and b"\r\nContent-Type: text/plain\r\n" in head
    assert body == policy
    assert curl(certs.other_ca().cert).returncode == 60, "a CA that did not sign it must not verify"
    web.put("/.well-known/mta-sts.txt", b"{}", content_type="application/json")
    assert b"\r\nContent-Type: application/json\r\n" in curl(certs.ca().cert).stdout
    web.remove("/.well-known/mta-sts.txt")
    assert curl(certs.ca().cert).stdout.startswith(b"HTTP/1.1 404")
    web.redirect("/.well-known/mta-sts.txt", "https://elsewhere.test/policy")
    assert b"\r\nLocation: https://elsewhere.test/policy\r\n" in curl(certs.ca().cert).stdout
    web.put("/.well-known/mta-sts.txt", policy)
    assert curl(certs.ca().cert).stdout.endswith(b"\r\n\r\n" + policy)


def test_remote_mx_on_port_25_of_its_own_address(make_postfix, certs):
    leaf = certs.leaf("mx1-secure", ("mx1.secure.test",))
    address = free_loopback_address()
    mx = make_postfix(remote=True, starttls=True, cert=leaf.cert, key=leaf.key, address=address,
                      myhostname="mx1.secure.test")
    assert (mx.address, mx.port) == (address, 25)
    assert f"{address}:25" in mx.postconf("-M")
    with smtplib.SMTP(address, 25, timeout=20) as s:
        code, _ = s.ehlo("probe.test")
        assert code == 250 and s.has_extn("starttls")
        context = ssl.create_default_context(cafile=certs.ca().cert)
        context.check_hostname = False  # smtplib would check the address it connected to
        s.starttls(context=context)
        assert ("DNS", "mx1.secure.test") in s.sock.getpeercert()["subjectAltName"]
        assert s.ehlo("probe.test")[0] == 250
    assert mx.served_certificate(cafile=certs.ca().cert) == leaf.fingerprint()
    with open(os.path.join(mx.queue_dir, "pid", "master.pid")) as f:
        assert listening_sockets(int(f.read())) == {("tcp", address, 25)}
