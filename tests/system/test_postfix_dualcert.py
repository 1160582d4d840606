# System tests of dual certificates (issue 12 item 10): settings bind an RSA and an ECDSA
# certificate (`certificate` + `additional_certificate`), Postfix serves both from one
# smtpd_tls_chain_files list and picks by the client's signature algorithms. Every claim about
# what Postfix serves is a real STARTTLS handshake (`openssl s_client -starttls smtp -sigalgs`,
# TLS 1.3 and 1.2) against a Postfix sandbox. Also: refusals that change nothing, in_use and
# deletion, round trips (GET -> PUT settings, GET -> PUT state), the post-reload verifier, the
# expiry metrics and status, an ACME renewal of the second certificate, and the takeover of a
# main.cf whose ECDSA certificate comes from smtpd_tls_eccert_file (ignored by Postfix once
# smtpd_tls_chain_files is set: never silently dropped).
import os
import re

import pytest

from tests.harness.util import run, wait_until
from tests.system.test_certificates import (HOST, RELOADS, Lineage, Site, acme_leaf, json_body,
                                            main_cf_params)
from tests.system.conftest import setup_tokens
from tests.system.test_foundation import assert_problem
from tests.system.test_settings import fingerprint_of_pem

# what `openssl s_client -sigalgs` offers to be served one key type's certificate
RSA_ONLY = "RSA-PSS+SHA256:rsa_pkcs1_sha256"
ECDSA_ONLY = "ECDSA+SHA256"
VERSIONS = ("-tls1_3", "-tls1_2")


def served_with(port, sigalgs, version="-tls1_3"):
    """The SHA-256 fingerprint of the certificate a new STARTTLS handshake offering only sigalgs
    is served, or None when the handshake fails."""
    p = run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-starttls", "smtp",
             "-sigalgs", sigalgs, version], input="", timeout=30, check=False)
    m = re.search(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", p.stdout, re.S)
    return fingerprint_of_pem(m.group(0)) if m else None


def assert_serves(port, rsa_fp, ec_fp):
    for version in VERSIONS:
        got = (served_with(port, RSA_ONLY, version), served_with(port, ECDSA_ONLY, version))
        assert got == (rsa_fp, ec_fp), \
            f"{version}: an RSA-only client got {got[0]}, an ECDSA-only one {got[1]}; " \
            f"expected {rsa_fp} and {ec_fp}"


def settings(site, method, body, query=""):
    return site.d.http(method, "/api/v1/settings" + query, body, timeout=60)


def put_settings_ok(site, body):
    r = settings(site, "PUT", body)
    assert r.status == 200, f"PUT settings {body}: {r}"
    return r


def chain_parts(site):
    value = main_cf_params(site.pf.main_cf).get("smtpd_tls_chain_files", "")
    return [p for p in re.split(r"[,\s]+", value) if p]


def rendered(site, name, fp):
    vdir = os.path.join(site.cert_dir, name, fp.replace(":", "").lower()[:16])
    return [os.path.join(vdir, "privkey.pem"), os.path.join(vdir, "fullchain.pem")]


def wait_verified(site, job_id):
    def done():
        j = site.job(job_id)
        return j if j.get("verified") is not None else None
    return wait_until(done, 30, f"job {job_id} to be verified")


@pytest.fixture
def dual(make_daemon, make_postfix, certs):
    """dual(extra=None): a daemon managing a Postfix sandbox of the test's own (extra: main.cf
    parameters of the administrator's, as before smtptlsd), and an RSA and an ECDSA leaf."""
    def make(extra=None, start=True, pf_start=True):
        pf = make_postfix(extra=extra or {})
        cfg = {"postfix_config_directory": pf.config_dir, **pf.argv_prefixes,
               "smtp_probe_address": f"127.0.0.1:{pf.port}"}
        return Site(make_daemon(cfg, start=start), pf, certs)
    return make


def leaves(certs, tag):
    return (certs.leaf(f"dual-{tag}-rsa", (HOST,)),
            certs.leaf(f"dual-{tag}-ec", (HOST,), kind="ec"))


# == bound, rendered, served, verified, reported ====================================================
def test_rsa_and_ecdsa_served_by_signature_algorithms(dual, certs):
    site = dual()
    rsa, ec = leaves(certs, "serve")
    rsa2 = certs.leaf("dual-serve-rsa2", (HOST,))
    for name, c in (("rsa", rsa), ("ec", ec), ("rsa2", rsa2)):
        site.put_ok(name, json_body(c))
    reloads = site.metric(RELOADS, result="ok")

    r = put_settings_ok(site, {"mode": "may", "certificate": "rsa", "additional_certificate": "ec"})
    assert (r.body["certificate"], r.body["additional_certificate"]) == ("rsa", "ec"), r.body
    assert site.metric(RELOADS, result="ok") == reloads + 1, "one write, one reload"
    # each key directly followed by its chain, `certificate` first (postconf(5))
    assert chain_parts(site) == rendered(site, "rsa", rsa.fingerprint()) + \
        rendered(site, "ec", ec.fingerprint()), chain_parts(site)
    assert_serves(site.pf.port, rsa.fingerprint(), ec.fingerprint())

    # the post-reload check made one handshake per key type, each offering only its algorithms
    job = wait_verified(site, r.headers["Job-Id"])
    assert job["verified"] is True, job
    st = site.status()
    detail = st["verification"]["detail"]
    assert rsa.fingerprint() in detail and ec.fingerprint() in detail, detail
    assert "only RSA signatures" in detail and "only EC signatures" in detail, detail
    assert st["certificate"]["name"] == "rsa" and st["additional_certificate"]["name"] == "ec", st
    assert st["certificate"]["served_fingerprint_matches"] is True, st
    assert isinstance(st["additional_certificate"]["days_left"], int), st

    # in_use for both; neither can be deleted while bound
    assert site.get("rsa")["in_use"] is True and site.get("ec")["in_use"] is True
    assert site.get("rsa2")["in_use"] is False
    for name in ("rsa", "ec"):
        assert_problem(site.delete(name), 409, "certificate_in_use")
    m = site.metrics()
    expiry = {dict(labels)["name"]: dict(labels)["in_use"] for (name, labels) in m
              if name == "smtptlsd_certificate_expiry_seconds"}
    assert (expiry["rsa"], expiry["ec"], expiry["rsa2"]) == ("true", "true", "false"), expiry
    served_info = {dict(labels)["fingerprint"] for (name, labels) in m
                   if name == "smtptlsd_served_certificate_info"}
    assert served_info == {rsa.fingerprint(), ec.fingerprint()}, served_info

    # GET -> PUT round trip: accepted, nothing changes, no reload
    g = site.d.get("/api/v1/settings")
    before = site.metric(RELOADS, result="ok")
    r = settings(site, "PUT", g.body)
    assert r.status == 200 and r.body["generation"] == g.body["generation"], r
    assert site.metric(RELOADS, result="ok") == before

    # PATCH keeps what it does not name
    r = settings(site, "PATCH", {"certificate": "rsa2"})
    assert r.status == 200 and r.body["additional_certificate"] == "ec", r
    assert_serves(site.pf.port, rsa2.fingerprint(), ec.fingerprint())
    assert site.get("rsa")["in_use"] is False
    assert site.delete("rsa").status == 204

    # unbinding the second: one pair again, and it may go
    r = settings(site, "PATCH", {"additional_certificate": None})
    assert r.status == 200 and r.body["additional_certificate"] is None, r
    assert chain_parts(site) == rendered(site, "rsa2", rsa2.fingerprint())
    assert served_with(site.pf.port, RSA_ONLY) == rsa2.fingerprint()
    assert site.delete("ec").status == 204


# == refusals ========================================================================================
def test_refusals_name_the_field_and_change_nothing(dual, certs):
    site = dual()
    rsa, ec = leaves(certs, "refuse")
    site.put_ok("rsa", json_body(rsa))
    site.put_ok("rsa2", json_body(certs.leaf("dual-refuse-rsa2", (HOST,))))
    site.put_ok("ec", json_body(ec))
    put_settings_ok(site, {"mode": "may", "certificate": "rsa", "additional_certificate": "ec"})
    before = site.snapshot()
    cases = [
        ("PUT", {"mode": "may", "certificate": "rsa", "additional_certificate": "rsa2"}, 422,
         "duplicate_key_type", "/additional_certificate"),
        ("PUT", {"mode": "may", "certificate": "ec", "additional_certificate": "ec"}, 422,
         "duplicate_key_type", "/additional_certificate"),
        ("PATCH", {"additional_certificate": "rsa2"}, 422, "duplicate_key_type",
         "/additional_certificate"),
        ("PUT", {"mode": "none", "additional_certificate": "ec"}, 422, "certificate_required",
         "/certificate"),
        ("PATCH", {"mode": "none", "certificate": None}, 422, "certificate_required",
         "/certificate"),
        ("PUT", {"mode": "may", "certificate": "rsa", "additional_certificate": site.system_name},
         422, "system_certificate_refused", "/additional_certificate"),
        ("PUT", {"mode": "may", "certificate": "rsa", "additional_certificate": "nope"}, 422,
         "certificate_not_found", "/additional_certificate"),
        ("PUT", {"mode": "may", "certificate": "rsa", "additional_certificate": "Bad Name"}, 422,
         "certificate_not_found", "/additional_certificate"),
    ]
    for method, body, status, code, field in cases:
        r = settings(site, method, body)
        assert_problem(r, status, code)
        assert r.body.get("field") == field, (body, r.body)
        # a dry run reports the same problem
        if method == "PUT":
            dry = settings(site, method, body, query="?dry_run=true")
            assert dry.status in (200, 422), dry
    assert site.snapshot() == before, "a refused write changed something"
    assert_serves(site.pf.port, rsa.fingerprint(), ec.fingerprint())


def test_state_round_trip_keeps_the_second_certificate(dual, certs):
    site = dual()
    rsa, ec = leaves(certs, "state")
    site.put_ok("rsa", json_body(rsa))
    site.put_ok("ec", json_body(ec))
    put_settings_ok(site, {"mode": "may", "certificate": "rsa", "additional_certificate": "ec"})
    g = site.d.get("/api/v1/state")
    assert g.status == 200 and g.body["settings"]["additional_certificate"] == "ec", g
    reloads = site.metric(RELOADS, result="ok")
    r = site.d.http("PUT", "/api/v1/state", g.body, timeout=60)
    assert r.status == 200 and r.body["settings"]["changed"] is False, r
    assert site.metric(RELOADS, result="ok") == reloads
    doc = dict(g.body, settings=dict(g.body["settings"], additional_certificate=None))
    r = site.d.http("PUT", "/api/v1/state", doc, timeout=60)
    assert r.status == 200 and r.body["settings"]["changed"] is True, r
    assert site.d.get("/api/v1/settings").body["additional_certificate"] is None
    assert chain_parts(site) == rendered(site, "rsa", rsa.fingerprint())


# == ACME renewal of the second certificate =========================================================
def test_acme_renewal_of_the_additional_certificate_reloads(dual, certs):
    site = dual(start=False)
    os.makedirs(site.live_dir)
    site.d.start()
    setup_tokens(site.d)
    rsa = certs.leaf("dual-acme-rsa", (HOST,))
    e1, e2 = acme_leaf(certs, "dualec", 1), acme_leaf(certs, "dualec", 2)
    lineage = Lineage(site.live_dir, "mail-ec")
    lineage.create(e1)
    site.rescan()
    site.put_ok("rsa", json_body(rsa))
    put_settings_ok(site, {"mode": "may", "certificate": "rsa",
                           "additional_certificate": "mail-ec"})
    assert chain_parts(site)[2:] == [os.path.join(lineage.live, "privkey.pem"),
                                     os.path.join(lineage.live, "fullchain.pem")]
    assert_serves(site.pf.port, rsa.fingerprint(), e1.fingerprint())
    assert_problem(site.delete("mail-ec"), 409, "certificate_in_use")

    reloads = site.metric(RELOADS, result="ok")
    last = max(j["id"] for j in site.jobs())
    lineage.renew(e2)
    wait_until(lambda: served_with(site.pf.port, ECDSA_ONLY) == e2.fingerprint(), 30,
               "the renewed ECDSA certificate to be served")
    wait_until(lambda: [j for j in site.jobs() if j["id"] > last and j["actor"] == "acme-watch"
                        and j["status"] == "applied" and j["reload"] is True], 15,
               "the acme-watch rescan job that reloaded")
    assert site.metric(RELOADS, result="ok") == reloads + 1
    assert_serves(site.pf.port, rsa.fingerprint(), e2.fingerprint())


# == takeover of a main.cf with smtpd_tls_eccert_file ===============================================
def test_takeover_never_drops_the_eccert_file_certificate(dual, certs):
    rsa, ec = leaves(certs, "takeover")
    legacy = {"smtpd_tls_security_level": "may",
              "smtpd_tls_cert_file": rsa.fullchain, "smtpd_tls_key_file": rsa.key,
              "smtpd_tls_eccert_file": ec.fullchain, "smtpd_tls_eckey_file": ec.key}
    site = dual(extra=legacy)
    # what the administrator's Postfix serves before smtptlsd writes anything
    assert_serves(site.pf.port, rsa.fingerprint(), ec.fingerprint())
    original = open(site.pf.main_cf, "rb").read()

    # binding only the RSA certificate would drop the ECDSA one: refused, naming the parameter
    site.put_ok("rsa", json_body(rsa))
    r = settings(site, "PUT", {"mode": "may", "certificate": "rsa"})
    assert_problem(r, 409, "legacy_certificate")
    assert r.body["field"] == "/additional_certificate", r.body
    assert "smtpd_tls_eccert_file" in r.body["detail"] and ec.fullchain in r.body["detail"], r.body
    dry = settings(site, "PUT", {"mode": "may", "certificate": "rsa"}, query="?dry_run=true")
    assert dry.status == 200 and dry.body["plan"]["valid"] is False, dry
    assert "legacy_certificate" in {e["code"] for e in dry.body["plan"]["errors"]}, dry.body
    assert open(site.pf.main_cf, "rb").read() == original, "a refused write touched main.cf"
    assert site.d.get("/api/v1/settings").body["managed"] is False
    assert_serves(site.pf.port, rsa.fingerprint(), ec.fingerprint())

    # handled: the same files imported and bound as the second certificate
    site.put_ok("ec", json_body(ec))
    put_settings_ok(site, {"mode": "may", "certificate": "rsa", "additional_certificate": "ec"})
    params = main_cf_params(site.pf.main_cf)
    for gone in ("smtpd_tls_cert_file", "smtpd_tls_key_file", "smtpd_tls_eccert_file",
                 "smtpd_tls_eckey_file"):
        assert gone not in params, f"{gone} left beside smtpd_tls_chain_files: {params}"
    assert_serves(site.pf.port, rsa.fingerprint(), ec.fingerprint())
    warnings = run(["postconf", "-c", site.pf.config_dir, "-n"]).stderr
    assert "warning" not in warnings, warnings


def test_takeover_binding_an_ecdsa_certificate_replaces_the_eccert_file(dual, certs):
    """A write that binds a certificate of the legacy pair's key type is a deliberate choice."""
    rsa, ec = leaves(certs, "replace")
    ec2 = certs.leaf("dual-replace-ec2", (HOST,), kind="ec")
    site = dual(extra={"smtpd_tls_security_level": "may",
                       "smtpd_tls_eccert_file": ec.fullchain, "smtpd_tls_eckey_file": ec.key})
    assert served_with(site.pf.port, ECDSA_ONLY) == ec.fingerprint()
    site.put_ok("ec2", json_body(ec2))
    put_settings_ok(site, {"mode": "may", "certificate": "ec2"})
    assert "smtpd_tls_eccert_file" not in main_cf_params(site.pf.main_cf)
    assert served_with(site.pf.port, ECDSA_ONLY) == ec2.fingerprint()


# == the post-reload check sees what each key type is served ========================================
def drop_second_pair_wrapper(directory):
    """A postfix_command that, on `reload` while FLAG exists, first cuts smtpd_tls_chain_files down
    to its first pair (Postfix then serves RSA only, whatever the daemon wrote). Returns (path,
    flag)."""
    path, flag = os.path.join(directory, "postfix-cut"), os.path.join(directory, "cut-second")
    with open(path, "w") as f:
        f.write("#!/bin/sh\n"
                "dir=\n"
                "prev=\n"
                "for a in \"$@\"; do\n"
                "  [ \"$prev\" = -c ] && dir=$a\n"
                "  prev=$a\n"
                "done\n"
                f"if [ -e '{flag}' ] && [ \"$prev\" = reload ]; then\n"
                "  chain=$(postconf -c \"$dir\" -h smtpd_tls_chain_files | cut -d, -f1,2)\n"
                "  postconf -c \"$dir\" -e \"smtpd_tls_chain_files = $chain\"\n"
                "fi\n"
                "exec postfix \"$@\"\n")
    os.chmod(path, 0o755)
    return path, flag


def test_verifier_fails_when_one_key_type_is_not_served(make_daemon, make_postfix, certs):
    pf = make_postfix()
    wrapper, flag = drop_second_pair_wrapper(pf.basedir)
    site = Site(make_daemon({"postfix_config_directory": pf.config_dir, **pf.argv_prefixes,
                             "postfix_command": wrapper,
                             "smtp_probe_address": f"127.0.0.1:{pf.port}"}), pf, certs)
    rsa, ec = leaves(certs, "verify")
    site.put_ok("rsa", json_body(rsa))
    site.put_ok("ec", json_body(ec))
    open(flag, "w").close()
    r = put_settings_ok(site, {"mode": "may", "certificate": "rsa", "additional_certificate": "ec"})
    # what Postfix really serves now: RSA to both kinds of client
    assert served_with(site.pf.port, RSA_ONLY) == rsa.fingerprint()
    assert served_with(site.pf.port, ECDSA_ONLY) != ec.fingerprint()
    job = wait_verified(site, r.headers["Job-Id"])
    assert job["verified"] is False, job
    v = site.status()["verification"]
    assert v["state"] == "failed" and v["served_fingerprint_matches"] is False, v
    assert f"did not serve {ec.fingerprint()} to a client offering only EC signatures" \
        in v["detail"], v

    # Postfix serving both again: the next reload verifies
    os.unlink(flag)
    r = settings(site, "PATCH", {"loglevel": 2})
    assert r.status == 200, r
    assert wait_verified(site, r.headers["Job-Id"])["verified"] is True
    assert_serves(site.pf.port, rsa.fingerprint(), ec.fingerprint())
