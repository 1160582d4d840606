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


def test_md5_host_defers_a_sha256_fingerprint_and_delivers_once_the_digest_is_set(
        make_policy_site, make_postfix, certs):
    """What Postfix does, which is why the write is refused: on a compatibility_level 2 host a
    SHA-256 fingerprint entry (the administrator's own map here) defers the mail; smtptlsd
    refuses the same entry; once main.cf sets smtp_tls_fingerprint_digest = sha256, smtptlsd's
    entry (its map comes first) delivers the held message over TLS."""
    leaf = certs.leaf("md5-peer", ("remote.test.example",))
    mx = make_postfix(remote=True, starttls=True, cert=leaf.cert, key=leaf.key)
    nexthop = f"[127.0.0.1]:{mx.port}"
    fp = fingerprint(leaf, "sha256")
    site = make_policy_site(extra={
        "compatibility_level": "2", "smtp_tls_loglevel": "1",
        "transport_maps": f"inline:{{ md5.test=smtp:{nexthop} }}",
        "smtp_tls_policy_maps": f"inline:{{ {{{nexthop}=fingerprint match={fp}}} }}"})
    pf = site.pf
    pf.send_mail("held@md5.test")
    m = pf.wait_maillog(r"to=<held@md5\.test>, relay=.*status=deferred \((.*)\)", timeout=60)
    assert "certificate not verified" in m.group(1).lower(), m.group(1)

    assert_problem(site.put(nexthop, {"level": "fingerprint", "match": [fp]}), 422,
                   "invalid_value", "/match/0")
    append_main_cf(pf, "smtp_tls_fingerprint_digest = sha256")
    pf.reload()
    site.put_ok(nexthop, {"level": "fingerprint", "match": [fp]}, status=201)
    assert pf.param("smtp_tls_policy_maps").startswith(f"hash:{site.map_path}")
    run(["postqueue", "-c", pf.config_dir, "-f"])
    pf.wait_maillog(r"to=<held@md5\.test>, relay=.*status=sent", timeout=60)
    assert re.search(r"Verified TLS connection established to 127\.0\.0\.1\[", pf.maillog())


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
    # the row written under sha256 never matches now: the status says so
    got = wait_until(lambda: status_warnings(site).get("fingerprint_digest_mismatch"), 10,
                     "the status warning fingerprint_digest_mismatch")
    assert "'fp.example'" in got and "sha512" in got, got
    assert site.delete("fp.example").status == 204
    wait_until(lambda: "fingerprint_digest_mismatch" not in status_warnings(site), 10,
               "the status warning to go")


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


# == 3. trust anchors of verify and secure ==========================================================
def settings(site, body, method="PATCH"):
    ctype = {"content_type": "application/merge-patch+json"} if method == "PATCH" else {}
    return site.d.http(method, "/api/v1/settings", body, timeout=60, **ctype)


def status_warnings(site):
    r = site.d.get("/api/v1/status")
    assert r.status == 200, r
    return {w["code"]: w["detail"] for w in r.body["warnings"]}


def jailed_smtp(pf):
    """The pids of smtp processes whose root is pf's queue directory."""
    jail = os.path.realpath(pf.queue_dir)
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/comm") as f:
                if f.read().strip() != "smtp":
                    continue
            if os.readlink(f"/proc/{pid}/root") == jail:
                found.append(int(pid))
        except OSError:
            continue
    return found


def test_outbound_ca_is_a_setting_checked_byte_by_byte(make_policy_site, certs, tmp_path):
    """outbound_ca: "system" by default (rendered as the daemon's system_ca_file), or the path of
    a file of CA certificates; a path Postfix would read otherwise, or a file that does not load,
    is refused and changes nothing."""
    site = make_policy_site()
    r = site.d.get("/api/v1/settings")
    assert r.status == 200 and r.body["outbound_ca"] == "system", r
    r = settings(site, {"mode": "none"})
    assert r.status == 200 and r.body["outbound_ca"] == "system", r
    assert site.pf.param("smtp_tls_CAfile") == "/etc/ssl/certs/ca-certificates.crt"

    not_pem = tmp_path / "not-pem.txt"
    not_pem.write_text("no certificate here\n")
    for bad in ("relative/ca.pem", "/etc/ssl/../ssl/certs/ca-certificates.crt", "/etc/./ca.pem",
                "/etc//ca.pem", "/etc/ssl/certs/", "/a b.pem", "/a$b.pem", "/a\nb.pem",
                "/a,b.pem", "", "/" + "a" * 1024, "System", 7, None):
        r = settings(site, {"outbound_ca": bad})
        assert_problem(r, 422, "invalid_value", "/outbound_ca")
    for missing in ("/nonexistent/ca.pem", str(not_pem), str(tmp_path)):
        r = settings(site, {"outbound_ca": missing})
        body = assert_problem(r, 422, "invalid_value", "/outbound_ca")
        assert missing in body["detail"], body
    assert site.pf.param("smtp_tls_CAfile") == "/etc/ssl/certs/ca-certificates.crt"
    assert site.d.get("/api/v1/settings").body["outbound_ca"] == "system"

    ca = certs.ca().cert
    r = settings(site, {"outbound_ca": ca})
    assert r.status == 200 and r.body["outbound_ca"] == ca, r
    assert site.pf.param("smtp_tls_CAfile") == ca
    state = site.d.get("/api/v1/state").body
    assert state["settings"]["outbound_ca"] == ca, state["settings"]
    # PUT: omitted takes the default
    r = settings(site, {"mode": "none"}, method="PUT")
    assert r.status == 200 and r.body["outbound_ca"] == "system", r
    assert site.pf.param("smtp_tls_CAfile") == "/etc/ssl/certs/ca-certificates.crt"


def test_missing_system_bundle_renders_no_cafile_and_status_warns(make_policy_site, tmp_path):
    """A system bundle that cannot be read is not rendered (a CAfile Postfix cannot load turns
    TLS off in its smtp client); a verify policy then warns, and so does /status while it
    exists."""
    site = make_policy_site(config={"system_ca_file": str(tmp_path / "no-such-bundle.crt")})
    r = settings(site, {"mode": "none"})
    assert r.status == 200, r
    assert site.pf.param("smtp_tls_CAfile") == ""
    r = site.put_ok("verify.example", {"level": "verify"}, status=201)
    w = warning(r, "no_trust_anchors")
    assert w and "smtp_tls_CAfile" in w["detail"] and "verify.example" in w["detail"], r
    r = site.put_ok("secure.example", {"level": "secure", "match": ["nexthop"]}, status=201)
    assert warning(r, "no_trust_anchors"), r
    r = site.put_ok("may.example", {"level": "may"}, status=201)
    assert not warning(r, "no_trust_anchors"), r
    got = wait_until(lambda: status_warnings(site).get("no_trust_anchors"), 10,
                     "the status warning no_trust_anchors")
    assert "smtp_tls_CAfile" in got, got
    # the policies gone: no warning
    for dest in ("verify.example", "secure.example"):
        assert site.delete(dest).status == 204
    wait_until(lambda: "no_trust_anchors" not in status_warnings(site), 10,
               "the status warning to go")


def test_verify_delivery_needs_the_ca_store_even_with_smtp_chrooted(make_policy_site, make_postfix,
                                                                   certs):
    """A remote MX with a certificate of the test CA, a verify policy for its next hop. Without
    trust anchors (Postfix 3.7's defaults) the message is deferred; with outbound_ca naming the
    test CA file it goes out over TLS - with smtp chrooted (master.cf chroot y, Debian's default)
    and the CA file outside the jail: Postfix reads smtp_tls_CAfile before it enters the jail."""
    leaf = certs.leaf("ca-peer", ("remote.test.example",))
    mx = make_postfix(remote=True, starttls=True, cert=leaf.cert, key=leaf.key)
    nexthop = f"[127.0.0.1]:{mx.port}"
    site = make_policy_site(extra={"transport_maps": f"inline:{{ ca.test=smtp:{nexthop} }}",
                                   "smtp_tls_loglevel": "1"})
    pf = site.pf
    pf.postconf("-F", "smtp/unix/chroot = y")
    old = time.time() - 10
    os.utime(pf.master_cf, (old, old))
    pf.reload()
    ca = certs.ca().cert
    assert not os.path.realpath(ca).startswith(os.path.realpath(pf.queue_dir) + "/")
    assert pf.param("smtp_tls_CAfile") == "" and pf.param("smtp_tls_CApath") == ""

    r = site.put_ok(nexthop, {"level": "verify", "match": ["remote.test.example"]}, status=201)
    assert warning(r, "no_trust_anchors"), r
    pf.send_mail("held@ca.test")
    m = pf.wait_maillog(r"to=<held@ca\.test>, relay=.*status=deferred \((.*)\)", timeout=60)
    assert "certificate" in m.group(1).lower(), m.group(1)
    assert re.search(r"unable to get local issuer certificate|untrusted issuer",
                     pf.maillog()), "the log does not say why the certificate was not trusted"
    assert "held@ca.test" not in mx.maillog()
    assert "no_trust_anchors" in status_warnings(site)

    r = settings(site, {"mode": "none", "outbound_mode": "may", "outbound_ca": ca})
    assert r.status == 200, r
    assert pf.param("smtp_tls_CAfile") == ca
    assert pf.postconf("-F", "smtp/unix/chroot").strip() == "smtp/unix/chroot = y"
    run(["postqueue", "-c", pf.config_dir, "-f"])
    pf.wait_maillog(r"to=<held@ca\.test>, relay=.*status=sent", timeout=60)
    mx.wait_maillog(r"to=<held@ca\.test>, relay=none, .*status=sent", timeout=30)
    assert re.search(r"smtp\[(\d+)\]: Verified TLS connection established to 127\.0\.0\.1\[",
                     pf.maillog()), "the delivery was not verified"
    # and the smtp process that delivered it ran in the jail (it lingers, idle, max_idle)
    assert jailed_smtp(pf), "no smtp process of this instance runs chrooted in its queue directory"
    wait_until(lambda: "no_trust_anchors" not in status_warnings(site), 10,
               "the status warning to go")
