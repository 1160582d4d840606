# Tests of the test harness itself (no daemon): what later system tests take for granted about the
# PostgreSQL and Postfix sandboxes, the test certificates and the sd_notify listener.
import os
import socket
import subprocess

import pytest

from tests.harness.notify import NotifyListener
from tests.harness.postfix import ADMIN_LINES


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
