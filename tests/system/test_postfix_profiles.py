# System tests of the TLS profiles and of the settings combinations that are legal but likely wrong
# (issue 12, items 6 and 7), against real Postfix instances and real TLS peers:
#  - what each profile renders into main.cf is docs/api.md's table, and Postfix reads it so;
#  - outbound: the managed Postfix delivers at `encrypt` to a TLS 1.2-only and to a TLS 1.3 remote
#    MX (two more sandbox instances) under every profile, and the session used the peer's version;
#  - inbound: `openssl s_client -starttls smtp -tls1_2 / -tls1_3` (and an anonymous-cipher client)
#    against the managed smtpd at `may` and at `encrypt` (the level of a submission service with
#    `-o smtpd_tls_security_level=encrypt`) succeed or fail as the profile table says;
#  - warnings: a global outbound `encrypt` (mandatory_outbound) and auth_only with inbound none
#    while SASL AUTH is on (auth_without_tls, proven with a real EHLO), in the write's reply, the
#    dry run's plan and /status, each naming its field.
import os
import re
import smtplib
import ssl
from urllib.parse import quote

import pytest

from tests.harness.util import REPO_ROOT, free_port, port_is_open, run, wait_until
from tests.system.test_settings import make_site  # noqa: F401 (a fixture)

PROFILES = ("modern", "intermediate", "legacy")
PEER_HOST = "remote.test.example"
# What each profile renders (None: the parameter is removed from main.cf, Postfix's default):
# docs/api.md shows this very table (test_docs_show_what_each_profile_renders).
STRONG = "aNULL, eNULL, EXPORT, DES, RC4, MD5, PSK, SRP, 3DES"
RENDERS = {
    "modern": {"mandatory_protocols": ">=TLSv1.2", "mandatory_ciphers": "high",
               "mandatory_exclude_ciphers": STRONG},
    "intermediate": {"mandatory_protocols": ">=TLSv1.2", "mandatory_ciphers": "medium",
                     "mandatory_exclude_ciphers": "aNULL, eNULL, EXPORT, DES, RC4, MD5"},
    "legacy": {"mandatory_protocols": None, "mandatory_ciphers": None,
               "mandatory_exclude_ciphers": None},
}
# opportunistic TLS: Postfix's defaults in every profile
for _r in RENDERS.values():
    _r.update({"protocols": None, "exclude_ciphers": None})
# Postfix 3.7's defaults, for what postconf -x reads back when a parameter is removed
POSTFIX_DEFAULTS = {"protocols": ">=TLSv1", "mandatory_protocols": ">=TLSv1",
                    "mandatory_ciphers": "medium", "exclude_ciphers": "",
                    "mandatory_exclude_ciphers": ""}


def main_cf_params(profile):
    """{main.cf parameter: rendered value or None} of one profile, both sides."""
    return {f"{side}_tls_{k}": v for k, v in RENDERS[profile].items() for side in ("smtpd", "smtp")}


def codes(body):
    return {w["code"] for w in body.get("warnings", [])}


def warning(body, code):
    found = [w for w in body.get("warnings", []) if w["code"] == code]
    assert len(found) == 1, f"expected one {code} warning: {body.get('warnings')}"
    return found[0]


# -- what a profile renders ------------------------------------------------------------------------
def test_each_profile_renders_its_table_and_postfix_reads_it(make_site):  # noqa: F811
    site = make_site()
    site.add_cert("mx")
    for profile in PROFILES:
        site.put_ok({"mode": "may", "certificate": "mx", "profile": profile})
        live = site.live_params()
        for name, value in main_cf_params(profile).items():
            assert live.get(name) == value, f"{profile}: main.cf {name} = {live.get(name)!r}, " \
                f"the table says {value!r}"
            short = name.split("_tls_", 1)[1]
            want = value if value is not None else POSTFIX_DEFAULTS[short]
            got = site.pf.postconf("-x", "-h", name).rstrip("\n")
            assert got == want, f"{profile}: postconf -x -h {name} = {got!r}, expected {want!r}"
        # postconf -n has no word about any of them (an unknown name would warn)
        out = run(["postconf", "-c", site.pf.config_dir, "-n"])
        assert "warning" not in out.stderr, out.stderr
        site.assert_in_sync()


def docs_profile_table():
    """docs/api.md's table of what each profile renders: {profile: {parameter: value or None}}."""
    with open(os.path.join(REPO_ROOT, "docs", "api.md")) as f:
        text = f.read()
    m = re.search(r"<!-- profile-table -->\n(.*?)\n<!-- /profile-table -->", text, re.S)
    assert m, "docs/api.md has no <!-- profile-table --> section"
    rows = [line for line in m.group(1).splitlines() if line.startswith("|")]
    header = [c.strip().strip("`") for c in rows[0].strip("|").split("|")]
    assert header[1:] == list(PROFILES), header
    table = {p: {} for p in PROFILES}
    for row in rows[2:]:
        cells = [c.strip() for c in row.strip("|").split("|")]
        param = cells[0].strip("`")  # written once for smtpd_ and smtp_
        for profile, cell in zip(PROFILES, cells[1:]):
            v = re.match(r"^`([^`]*)`$", cell)
            for side in ("smtpd", "smtp"):  # "removed (default)" = None
                table[profile][f"{side}_{param}"] = v.group(1) if v else None
    return table


def test_docs_show_what_each_profile_renders():
    table = docs_profile_table()
    for profile in PROFILES:
        assert table[profile] == main_cf_params(profile), \
            f"docs/api.md's row for {profile} differs from what the daemon renders"


# -- outbound: real deliveries at encrypt to a TLS 1.2-only and a TLS 1.3 peer -----------------------
def sender_attempt(pf, rcpt):
    """(status, TLS protocol of that session or None, reason) of the managed instance's last
    delivery attempt for rcpt; None before there is one."""
    log = pf.maillog()
    m = list(re.finditer(rf"postfix/smtp\[(\d+)\]: \w+: to=<{re.escape(rcpt)}>, .*? status=(\w+)"
                         rf" \((.*)\)$", log, re.M))
    if not m:
        return None
    last = m[-1]
    pid, status = last.group(1), last.group(2)
    # this session only: after the same process's previous delivery
    before = log[:last.start()]
    prev = list(re.finditer(rf"postfix/smtp\[{pid}\]: \w+: to=<.*status=", before))
    session = before[prev[-1].end():] if prev else before
    tls = re.findall(rf"postfix/smtp\[{pid}\]: .*TLS connection established to [^:]+:\d+: "
                     rf"(TLSv[\d.]+) ", session)
    return status, (tls[-1] if tls else None), last.group(3)


def test_outbound_encrypt_reaches_tls12_and_tls13_peers_under_every_profile(make_site, make_postfix,  # noqa: F811
                                                                             certs):
    peer_cert = certs.leaf("profile-peer", (PEER_HOST,))
    tls12 = make_postfix(remote=True, starttls=True, cert=peer_cert.cert, key=peer_cert.key)
    # the TLS 1.2-only MX: neither opportunistic nor mandatory TLS above 1.2
    tls12.postconf("-e", "smtpd_tls_protocols = <=TLSv1.2",
                   "smtpd_tls_mandatory_protocols = <=TLSv1.2", "smtpd_tls_loglevel = 1")
    # a second next hop on the same TLS 1.2-only MX, for a fingerprint policy
    fp_port = free_port()
    tls12.postconf("-M", f"127.0.0.1:{fp_port}/inet = 127.0.0.1:{fp_port} inet n - n - - smtpd")
    tls12.reload()
    wait_until(lambda: port_is_open(fp_port), 20, "the TLS 1.2-only MX's second listener")
    tls13 = make_postfix(remote=True, starttls=True, cert=peer_cert.cert, key=peer_cert.key)
    hops = {"tls12": tls12.port, "tls13": tls13.port, "fp12": fp_port}
    transport = ", ".join(f"{name}.example=smtp:[127.0.0.1]:{port}" for name, port in hops.items())
    site = make_site(extra={"transport_maps": f"inline:{{ {transport} }}"})
    site.add_cert("mx")
    r = site.d.http("PUT", f"/api/v1/tls-policies/{quote(f'[127.0.0.1]:{fp_port}', safe='')}",
                    {"level": "fingerprint", "match": [peer_cert.fingerprint()]})
    assert r.status == 201, r
    n = 0
    failures, replies = [], []
    for profile in PROFILES:
        r = site.put_ok({"mode": "may", "outbound_mode": "encrypt", "certificate": "mx",
                         "profile": profile})
        assert site.live_params()["smtp_tls_security_level"] == "encrypt"
        replies.append(r.body)
        for name in hops:  # encrypt (the global level) to tls12/tls13, fingerprint to fp12
            n += 1
            rcpt = f"p{n}-{profile}@{name}.example"
            site.pf.send_mail(rcpt)
            got = wait_until(lambda: sender_attempt(site.pf, rcpt), 60, f"delivery of {rcpt}",
                             interval=0.05)
            status, proto, reason = got
            want = "TLSv1.3" if name == "tls13" else "TLSv1.2"
            if status != "sent" or proto != want:
                failures.append(f"{profile} -> {name}: {status} over {proto} ({reason})")
    assert not failures, "deliveries at encrypt that the profile's intent allows:\n" + \
        "\n".join(failures)
    for body in replies:  # a global encrypt is legal, but every write says what it costs
        assert warning(body, "mandatory_outbound")["field"] == "/outbound_mode", body


# -- inbound: openssl s_client against the managed smtpd --------------------------------------------
# (client, profile, inbound level) -> handshake succeeds; from the profile table: every profile
# takes TLS 1.2 and 1.3 at both levels; an anonymous-cipher client (aNULL, TLS 1.2) is served by
# opportunistic TLS in every profile, and refused at encrypt where the profile excludes aNULL
# from mandatory TLS.
CLIENTS = {"tls1_2": ["-tls1_2"], "tls1_3": ["-tls1_3"],
           "anon": ["-tls1_2", "-cipher", "aNULL:@SECLEVEL=0"]}


def expect_inbound(client, profile, level):
    if client == "anon" and level == "encrypt":
        return "aNULL" not in (RENDERS[profile]["mandatory_exclude_ciphers"] or "")
    return True


def handshake(port, args):
    """One `openssl s_client -starttls smtp`: (succeeded, protocol or the error)."""
    proc = run(["openssl", "s_client", "-starttls", "smtp", "-connect", f"127.0.0.1:{port}",
                "-brief", *args], timeout=20, check=False, input="")
    m = re.search(r"Protocol version: (\S+)", proc.stderr)
    if proc.returncode == 0 and m:
        return True, m.group(1)
    return False, (proc.stderr.strip().splitlines() or ["?"])[-1]


def test_inbound_handshakes_follow_the_profile_table(make_site):  # noqa: F811
    """The managed smtpd at the settings' level (may, then encrypt), and a submission-like
    service of the administrator's (master.cf `-o smtpd_tls_security_level=encrypt`) beside it."""
    site = make_site()
    submission = free_port()
    site.pf.postconf("-M", f"127.0.0.1:{submission}/inet = 127.0.0.1:{submission} inet n - n - - "
                     "smtpd -o smtpd_tls_security_level=encrypt")
    site.pf.reload()
    wait_until(lambda: port_is_open(submission), 20, "the submission-like service")
    site.add_cert("mx")
    wrong = []
    for profile in PROFILES:
        for level in ("may", "encrypt"):
            site.put_ok({"mode": level, "outbound_mode": "may", "certificate": "mx",
                         "profile": profile})
            site.wait_served(site.fingerprints["mx"])
            services = [(f"smtpd at {level}", site.pf.port, level)]
            if level == "may":
                services.append(("submission (-o ...=encrypt)", submission, "encrypt"))
            for service, port, effective in services:
                for client, args in CLIENTS.items():
                    ok, what = handshake(port, args)
                    if ok != expect_inbound(client, profile, effective):
                        wrong.append(f"{profile}, {service}, client {client}: "
                                     f"{'succeeded' if ok else 'failed'} ({what})")
                    elif ok and client != "anon":
                        assert what == ("TLSv1.2" if client == "tls1_2" else "TLSv1.3"), what
    assert not wrong, "handshakes that differ from the profile table:\n" + "\n".join(wrong)


# -- warnings ------------------------------------------------------------------------------------------
def test_global_outbound_encrypt_warns_naming_the_field(make_site):  # noqa: F811
    site = make_site()
    site.add_cert("mx")
    r = site.put_ok({"mode": "may", "certificate": "mx"})
    assert "mandatory_outbound" not in codes(r.body), r.body
    assert "mandatory_outbound" not in codes(site.status())
    # the dry run says it first, and changes nothing
    r = site.patch({"outbound_mode": "encrypt"}, query="?dry_run=true")
    assert r.status == 200, r
    w = warning(r.body["plan"], "mandatory_outbound")
    assert w["field"] == "/outbound_mode" and "smtp_tls_security_level" in w["detail"], w
    assert site.live_params()["smtp_tls_security_level"] == "may"
    r = site.patch_ok({"outbound_mode": "encrypt"})
    assert warning(r.body, "mandatory_outbound")["field"] == "/outbound_mode"
    # it is state: /status says it while it lasts
    assert warning(site.status(), "mandatory_outbound")["field"] == "/outbound_mode"
    # set by mode: the field is /mode (and inbound encrypt has its own warning)
    r = site.put_ok({"mode": "encrypt", "certificate": "mx"})
    assert warning(r.body, "mandatory_outbound")["field"] == "/mode", r.body
    assert warning(r.body, "mandatory_inbound")["field"] == "/mode", r.body
    r = site.put_ok({"mode": "encrypt", "outbound_mode": "may", "certificate": "mx"})
    assert "mandatory_outbound" not in codes(r.body), r.body
    assert "mandatory_outbound" not in codes(site.status())


def ehlo_offers_auth(port, starttls=False):
    """Whether smtpd lists AUTH in its EHLO reply (after STARTTLS with starttls=True)."""
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
        s.ehlo("client.test.example")
        if starttls:
            ctx = ssl.create_default_context()
            ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
            s.starttls(context=ctx)
            s.ehlo("client.test.example")
        return s.has_extn("auth")


def test_auth_only_with_inbound_none_warns_where_sasl_is_on(make_site):  # noqa: F811
    """smtpd_tls_auth_only = yes offers AUTH only after STARTTLS; with the inbound level none
    there is no STARTTLS, so no AUTH at all: a real smtpd with Cyrus SASL on shows it. A warning,
    not a refusal: without SASL (the default) auth_only changes nothing, and services that set
    their own level in master.cf still offer AUTH after STARTTLS."""
    plain = make_site()
    r = plain.put_ok({"mode": "none", "auth_only": True})
    assert "auth_without_tls" not in codes(r.body), r.body  # no SASL: nothing to say

    site = make_site(extra={"smtpd_sasl_auth_enable": "yes", "smtpd_sasl_type": "cyrus"})
    r = site.patch({"mode": "none", "auth_only": True}, query="?dry_run=true")
    assert r.status == 200 and warning(r.body["plan"], "auth_without_tls")["field"] == "/auth_only"
    r = site.put_ok({"mode": "none", "auth_only": True})
    w = warning(r.body, "auth_without_tls")
    assert w["field"] == "/auth_only" and "smtpd_sasl_auth_enable" in w["detail"], w
    assert warning(site.status(), "auth_without_tls")["field"] == "/auth_only"
    assert site.live_params()["smtpd_tls_auth_only"] == "yes"
    assert not ehlo_offers_auth(site.pf.port), "AUTH offered without TLS despite auth_only"
    # what the warning advises: auth_only false offers AUTH again (in clear: the admin's choice)
    r = site.put_ok({"mode": "none", "auth_only": False})
    assert "auth_without_tls" not in codes(r.body), r.body
    wait_until(lambda: ehlo_offers_auth(site.pf.port), 10, "AUTH in the EHLO reply")
    assert "auth_without_tls" not in codes(site.status())
    # or inbound TLS: AUTH after STARTTLS, no warning
    site.add_cert("mx")
    r = site.put_ok({"mode": "may", "certificate": "mx", "auth_only": True})
    assert "auth_without_tls" not in codes(r.body), r.body
    site.wait_served(site.fingerprints["mx"])
    assert not ehlo_offers_auth(site.pf.port) and ehlo_offers_auth(site.pf.port, starttls=True)


# -- refusal: a master.cf service that needs main.cf's certificate --------------------------------------
def add_service(pf, options):
    """One more smtpd on a free port of the running sandbox, with master.cf `-o` options."""
    port = free_port()
    pf.postconf("-M", f"127.0.0.1:{port}/inet = 127.0.0.1:{port} inet n - n - - smtpd {options}")
    pf.reload()
    wait_until(lambda: port_is_open(port), 20, f"the service at 127.0.0.1:{port}")
    return port


def test_no_certificate_is_refused_while_a_submission_service_needs_it(make_site, certs):  # noqa: F811
    """A submission service at `-o smtpd_tls_security_level=encrypt` takes main.cf's certificate:
    a write leaving none bound (inbound none needs none for port 25) would make that service
    refuse every client, so it is refused, naming /certificate, and changes nothing. A service
    with a certificate of its own does not count."""
    site = make_site()
    submission = add_service(site.pf, "-o smtpd_tls_security_level=encrypt")
    before = site.main_cf()
    for body in ({"mode": "none"}, {"mode": "may", "inbound_mode": "none", "certificate": None}):
        r = site.put(body)
        assert r.status == 422 and r.body["code"] == "certificate_required", r
        assert r.body["field"] == "/certificate" and f"127.0.0.1:{submission}/inet" in \
            r.body["detail"], r.body
        assert site.main_cf() == before and site.settings()["managed"] is False
    # the dry run says so too (its plan is not valid)
    r = site.put({"mode": "none"}, query="?dry_run=true")
    assert r.status == 200 and r.body["plan"]["valid"] is False, r
    assert [(e["code"], e.get("field")) for e in r.body["plan"]["errors"]] == \
        [("certificate_required", "/certificate")], r.body
    # bound, the certificate serves the submission service although port 25 has no TLS
    site.add_cert("mx")
    r = site.put_ok({"mode": "none", "certificate": "mx"})
    assert handshake(submission, ["-tls1_2"])[0] and handshake(submission, ["-tls1_3"])[0]
    # unbinding it again is refused while the service is there
    r = site.patch({"certificate": None})
    assert r.status == 422 and r.body["field"] == "/certificate", r
    assert handshake(submission, ["-tls1_2"])[0]

    # a service with its own certificate (smtps with a chain of its own) needs nothing of ours
    other = make_site()
    own = certs.leaf("smtps-own", ("mx.test.example",))
    add_service(other.pf, f"-o smtpd_tls_wrappermode=yes -o smtpd_tls_chain_files={own.key},{own.cert}")
    other.put_ok({"mode": "none"})
