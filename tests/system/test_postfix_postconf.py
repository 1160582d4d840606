# Issue 12, items 1-3 and 7 (dane): what smtptlsd reads from postconf, and what Postfix then does.
# - fingerprint policies against the EFFECTIVE smtp_tls_fingerprint_digest (`postconf -x`): md5
#   below compatibility_level 3.6, sha256 above; a digest of another length never matches: 422.
# - postconf's warnings (stderr) are never read as a value (dnssec, myhostname).
# - verify/secure need trust anchors: the `outbound_ca` setting renders smtp_tls_CAfile, and real
#   deliveries to a peer with a test-CA certificate show deferred without it, sent with it (with
#   smtp chrooted, as on Debian: Postfix reads the CAfile before it enters the jail).
# - dane without smtp_dns_support_level = dnssec is opportunistic: warned, as dane-only is.
import os
import re
import time

import pytest

from tests.harness.postfix import PostfixSandbox
from tests.harness.util import run, wait_until
from tests.system.test_foundation import assert_problem
from tests.system.test_policies import make_policy_site  # noqa: F401 (a fixture)

SHA256_LEN, SHA512_LEN = 95, 191


def fingerprint(cert, digest):
    out = run(["openssl", "x509", "-in", cert.cert, "-noout", "-fingerprint", f"-{digest}"]).stdout
    return out.strip().split("=", 1)[1]


def append_main_cf(pf, line):
    """An administrator's edit of main.cf, dated back: Postfix waits while main.cf looks freshly
    written."""
    with open(pf.main_cf, "a") as f:
        f.write(line + "\n")
    old = time.time() - 10
    os.utime(pf.main_cf, (old, old))


def codes(reply):
    return [w["code"] for w in (reply.body or {}).get("warnings", [])]


def warning(reply, code):
    found = [w for w in (reply.body or {}).get("warnings", []) if w["code"] == code]
    return found[0] if found else None


# == 1. fingerprint digests =========================================================================
def test_fingerprint_policy_refused_under_md5_default_of_old_compatibility_level(make_policy_site,
                                                                                 certs):
    """compatibility_level = 2: Postfix computes md5 fingerprints (`postconf -h` shows the
    unexpanded ${{$compatibility_level} <level {3.6} ? {md5} : {sha256}}). A SHA-256 match can
    never equal an md5 digest: refused, naming the field and the main.cf parameter; nothing
    written. Once the administrator sets the digest, the same policy is accepted."""
    site = make_policy_site(extra={"compatibility_level": "2"})
    assert site.pf.postconf("-x", "-h", "smtp_tls_fingerprint_digest").strip() == "md5"
    peer = certs.leaf("fp-peer", ("remote.test.example",))
    fp = fingerprint(peer, "sha256")
    assert len(fp) == SHA256_LEN
    r = site.put("fp.example", {"level": "fingerprint", "match": [fp]})
    body = assert_problem(r, 422, "invalid_value", "/match/0")
    assert "smtp_tls_fingerprint_digest" in body["detail"] and "md5" in body["detail"], body
    r = site.bulk([{"destination": "ok.example", "level": "may"},
                   {"destination": "fp.example", "level": "fingerprint", "match": [fp]}])
    body = assert_problem(r, 422, "invalid_value", "/items/1/match/0")
    assert "smtp_tls_fingerprint_digest" in body["detail"], body
    assert site.policies() == [], "a refused write changed the policies"

    append_main_cf(site.pf, "smtp_tls_fingerprint_digest = sha256")
    site.put_ok("fp.example", {"level": "fingerprint", "match": [fp]}, status=201)


def test_fingerprint_digest_length_must_be_the_effective_digest(make_policy_site, certs):
    """smtp_tls_fingerprint_digest = sha256 (explicit): a SHA-512 fingerprint is refused, also as
    the second of several; SHA-256 is accepted. With sha512, the other way round."""
    site = make_policy_site(extra={"smtp_tls_fingerprint_digest": "sha256"})
    peer = certs.leaf("fp-peer2", ("remote.test.example",))
    f256, f512 = fingerprint(peer, "sha256"), fingerprint(peer, "sha512")
    assert len(f512) == SHA512_LEN
    r = site.put("fp.example", {"level": "fingerprint", "match": [f256, f512]})
    body = assert_problem(r, 422, "invalid_value", "/match/1")
    assert "sha256" in body["detail"] and "smtp_tls_fingerprint_digest" in body["detail"], body
    r = site.put("fp.example", {"level": "fingerprint", "match": [f256]})
    assert r.status == 201 and "fingerprint_digest_mismatch" not in codes(r), r

    append_main_cf(site.pf, "smtp_tls_fingerprint_digest = ${{$compatibility_level} <level {3.6} "
                   "? {md5} : {sha512}}")
    r = site.put("fp2.example", {"level": "fingerprint", "match": [f256]})
    body = assert_problem(r, 422, "invalid_value", "/match/0")
    assert "sha512" in body["detail"], body
    site.put_ok("fp2.example", {"level": "fingerprint", "match": [f512]}, status=201)


# == 2. postconf's warnings are not values ===========================================================
UNUSED = "smtptlsd_test_unused_parameter"


def test_postconf_warnings_are_not_read_as_values(make_policy_site, certs):
    """One unused parameter in main.cf makes every `postconf` warn on stderr. The values read
    (smtp_dns_support_level, myhostname) must stay the values: no false dane_without_dnssec, no
    false hostname_mismatch."""
    site = make_policy_site(extra={UNUSED: "1", "smtp_dns_support_level": "dnssec"})
    assert "unused parameter" in run(["postconf", "-c", site.pf.config_dir, "-h",
                                      "myhostname"]).stderr
    r = site.put_ok("dane.example", {"level": "dane-only"}, status=201)
    assert "dane_without_dnssec" not in codes(r), r
    leaf = certs.leaf("pc-mx", ("mx.test.example",))
    r = site.d.http("PUT", "/api/v1/certificates/pc-mx",
                    {"certificate": leaf.read("cert"), "private_key": leaf.read("key")},
                    timeout=60)
    assert r.status == 201, r
    r = site.d.http("PUT", "/api/v1/settings", {"mode": "may", "certificate": "pc-mx"},
                    timeout=60)
    assert r.status == 200, r
    assert "hostname_mismatch" not in codes(r), r


# == 7 (part). dane without DNSSEC ===================================================================
def test_dane_without_dnssec_is_warned(make_policy_site):
    """dane with smtp_dns_support_level other than dnssec: Postfix looks up no TLSA record and the
    level works as may. Warned, naming the parameter; with dnssec, no warning."""
    site = make_policy_site()  # the sandbox has smtp_dns_support_level = disabled
    r = site.put_ok("dane.example", {"level": "dane"}, status=201)
    w = warning(r, "dane_without_dnssec")
    assert w and "smtp_dns_support_level" in w["detail"] and "may" in w["detail"], r
    r = site.put_ok("dane-only.example", {"level": "dane-only"}, status=201)
    assert warning(r, "dane_without_dnssec"), r
