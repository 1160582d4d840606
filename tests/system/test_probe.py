# The destination probe (POST /api/v1/probe) against real peers, nothing mocked: a Knot DNS server
# with signed and unsigned test zones (MX, A, TLSA, _mta-sts TXT; the daemon's libunbound validates
# them from the zones' own trust anchors), Postfix instances on port 25 of their own loopback
# addresses as the remote MXs (STARTTLS with a test-CA certificate, no STARTTLS, a wrong name, an
# expired certificate), and nginx serving an MTA-STS policy with a test-CA certificate. What the
# probe says each level would do is checked against what a real Postfix then does for the same
# next-hop (deliver or defer).
import os
import subprocess

import pytest

from tests.harness.dns import DnsServer, tlsa_311
from tests.harness.https import HttpsServer
from tests.harness.postfix import PostfixSandbox
from tests.harness.util import free_loopback_address, wait_until
from tests.system.test_foundation import assert_problem
from tests.system.test_policies import make_policy_site  # noqa: F401 (a fixture)

LEVELS = ["none", "may", "encrypt", "dane", "dane-only", "fingerprint", "verify", "secure"]
STS_POLICY = b"version: STSv1\r\nmode: enforce\r\nmx: mx1.good.sec.test\r\nmax_age: 86400\r\n"


class Peers:
    """The remote side of every probe test: DNS, four MXs, the MTA-STS web server."""

    def __init__(self, base, certs):
        self.base = base
        self.made = []
        self.ca = certs.ca().cert
        self.good_cert = certs.leaf("probe-good", ("mx1.good.sec.test",))
        wrong = certs.leaf("probe-wrong", ("somebody.else.example",))
        expired = certs.leaf("probe-expired", ("mx.expired.ins.test",), start_days=-400,
                             end_days=-30)
        self.mx = {}
        for name, starttls, cert, host in (("good", True, self.good_cert, "mx1.good.sec.test"),
                                           ("plain", False, None, "mx.plain.ins.test"),
                                           ("wrong", True, wrong, "mx.wrong.ins.test"),
                                           ("expired", True, expired, "mx.expired.ins.test")):
            pf = PostfixSandbox.remote_mx(os.path.join(base, f"mx-{name}"), starttls=starttls,
                                          cert=cert and cert.cert, key=cert and cert.key,
                                          address=free_loopback_address(), myhostname=host)
            self.made.append(pf)
            pf.start()
            self.mx[name] = pf
        sts = certs.leaf("probe-sts", ("mta-sts.good.sec.test",), kind="ec")
        self.web = HttpsServer(os.path.join(base, "web"), sts.cert, sts.key)
        self.made.append(self.web)
        self.web.start()
        self.web.put("/.well-known/mta-sts.txt", STS_POLICY)

        good = self.mx["good"].address
        tlsa = tlsa_311(self.good_cert.cert)
        self.dns = DnsServer(os.path.join(base, "dns"))
        self.made.append(self.dns)
        self.dns.add_zone("sec.test", [
            "good 300 IN MX 10 mx1.good", f"mx1.good 300 IN A {good}",
            f"_25._tcp.mx1.good 300 IN TLSA 3 1 1 {tlsa}",
            '_mta-sts.good 300 IN TXT "v=STSv1; id=20261204"', f"mta-sts.good 300 IN A {self.web.address}",
            f"nomx 300 IN A {good}",
            "nullmx 300 IN MX 0 .",
            "half 300 IN MX 10 down.half", f"down.half 300 IN A {free_loopback_address()}",
            "half 300 IN MX 20 mx1.good",
            "danebad 300 IN MX 10 mx.danebad", f"mx.danebad 300 IN A {good}",
            "_25._tcp.mx.danebad 300 IN TLSA 3 1 1 " + "00" * 32,
        ])
        self.dns.add_zone("ins.test", [
            "plain 300 IN MX 10 mx.plain", f"mx.plain 300 IN A {self.mx['plain'].address}",
            "wrong 300 IN MX 10 mx.wrong", f"mx.wrong 300 IN A {self.mx['wrong'].address}",
            "expired 300 IN MX 10 mx.expired", f"mx.expired 300 IN A {self.mx['expired'].address}",
            "two 300 IN MX 10 mx.plain", "two 300 IN MX 20 mx.wrong",
        ], signed=False)
        self.dns.start()
        # the sending Postfix of the comparisons: trusts the test CA, as the daemon's does
        self.sender = PostfixSandbox(os.path.join(base, "sender"),
                                     extra={"smtp_tls_CAfile": self.ca})
        self.made.append(self.sender)
        self.sender.start()

    def config(self):
        """The daemon's probe keys: only the test zones, their anchors, the test CA for HTTPS."""
        return {"probe_resolvers": "root", "probe_stub_zones": self.dns.stub_zones(),
                "probe_trust_anchor_file": self.dns.trust_anchor_file(),
                "probe_https_ca_file": self.ca, "probe_timeout": "20s",
                "probe_step_timeout": "8s"}

    def destroy(self):
        for x in reversed(self.made):
            x.destroy() if hasattr(x, "destroy") else x.stop()


@pytest.fixture(scope="module")
def peers(session_dir, certs):
    p = Peers(os.path.join(session_dir, "probe-peers"), certs)
    yield p
    p.destroy()


@pytest.fixture
def site(make_policy_site, peers):
    """A daemon managing a Postfix whose smtp client trusts the test CA (so verify and secure
    can pass), probing through the test zones."""
    return make_policy_site(config=peers.config(), extra={"smtp_tls_CAfile": peers.ca})


def probe(site, body, status=200, **kw):
    r = site.req("POST", "/api/v1/probe", body, **kw)
    assert r.status == status, r
    return r.body


def only_address(report):
    [host] = report["hosts"]
    [address] = host["addresses"]
    return host, address


def test_a_dane_domain_with_mta_sts_passes_every_level_but_fingerprint(site, peers):
    r = probe(site, {"destination": "good.sec.test"})
    assert (r["destination"], r["kind"], r["nexthop"], r["port"]) == \
        ("good.sec.test", "domain", "good.sec.test", 25)
    assert r["mx"] == {"dnssec": "secure", "implicit": False} and r["error"] is None, r
    host, a = only_address(r)
    assert (host["name"], host["preference"], host["dnssec"]) == ("mx1.good.sec.test", 10, "secure")
    assert host["tlsa"]["dane"] == "usable" and host["tlsa"]["dnssec"] == "secure", host
    assert host["tlsa"]["records"] == [f"3 1 1 {tlsa_311(peers.good_cert.cert)}"]
    assert a["address"] == peers.mx["good"].address and a["connected"] and a["starttls"], a
    assert a["banner"].startswith("220 ") and a["tls"]["protocol"].startswith("TLSv1.")
    cert = a["certificate"]
    assert cert["dns_names"] == ["mx1.good.sec.test"]
    assert cert["sha256_fingerprint"] == peers.good_cert.fingerprint()
    [leaf] = cert["chain"]  # the peer sends its certificate alone
    assert leaf["sha256_fingerprint"] == cert["sha256_fingerprint"] and "mx1.good.sec.test" in \
        leaf["subject"] and "Test CA" in leaf["issuer"] and leaf["not_after"] == cert["not_after"]
    assert a["trusted"] is True and a["trust_error"] is None
    assert a["dane_verified"] is True and a["dane_error"] is None
    expect = {lv: lv != "fingerprint" for lv in LEVELS}
    assert a["would_pass"] == expect and r["would_pass"] == expect, r
    assert list(r["reasons"]) == ["fingerprint"] and "no fingerprint" in r["reasons"]["fingerprint"]
    assert r["recommended"] == "dane-only" and r["level"] is None and r["passes"] is None
    sts = r["mta_sts"]
    assert (sts["record"], sts["id"], sts["dnssec"], sts["error"]) == \
        ("v=STSv1; id=20261204", "20261204", "secure", None), sts
    assert sts["policy"] == {"mode": "enforce", "max_age": 86400, "mx": ["mx1.good.sec.test"]}
    assert host["mta_sts_match"] is True
    assert r["cached"] is False and r["duration_ms"] >= 0

    # asked about a level, with a match list: the same evidence, from the cache
    fp = probe(site, {"destination": "GOOD.sec.test", "level": "fingerprint",
                      "match": [peers.good_cert.fingerprint().replace(":", "").lower()]})
    assert fp["cached"] is True and fp["level"] == "fingerprint" and fp["passes"] is True, fp
    bad = probe(site, {"destination": "good.sec.test", "level": "secure",
                       "match": ["other.example"]})
    assert bad["passes"] is False and "no certificate name matches" in bad["reasons"]["secure"]
    fresh = probe(site, {"destination": "good.sec.test", "fresh": True})
    assert fresh["cached"] is False and fresh["id"] > bad["id"]


@pytest.mark.parametrize("domain,recommended,fails", [
    ("plain.ins.test", "may", {"encrypt": "STARTTLS not offered"}),
    ("wrong.ins.test", "encrypt", {"verify": "no certificate name matches hostname",
                                   "secure": "no certificate name matches nexthop, dot-nexthop"}),
    ("expired.ins.test", "encrypt", {"verify": "not trusted", "secure": "not trusted"}),
    ("danebad.sec.test", "encrypt", {"dane": "TLSA", "dane-only": "TLSA",
                                     "secure": "no certificate name matches"}),
])
def test_what_each_peer_fails_and_why(site, domain, recommended, fails):
    r = probe(site, {"destination": domain, "level": "encrypt"})
    assert r["recommended"] == recommended, r
    for level, words in fails.items():
        assert r["would_pass"][level] is False, (level, r)
        assert words in r["reasons"][level], (level, r["reasons"])
    assert r["would_pass"]["may"] is True and r["would_pass"]["none"] is True
    assert r["passes"] is (recommended != "may")
    if domain == "expired.ins.test":
        _, a = only_address(r)
        assert "expired" in a["trust_error"], a
    if domain.endswith(".ins.test"):
        host, _ = only_address(r)
        assert r["mx"]["dnssec"] == "insecure" and host["tlsa"]["dane"] == "none", host


def test_domains_without_mail_hosts_are_findings_not_errors(site, peers):
    nomx = probe(site, {"destination": "nomx.sec.test"})
    host, a = only_address(nomx)
    assert nomx["mx"] == {"dnssec": "secure", "implicit": True} and host["name"] == "nomx.sec.test"
    assert a["address"] == peers.mx["good"].address and nomx["would_pass"]["encrypt"] is True
    for dest, words in (("nullmx.sec.test", "null MX"), ("missing.sec.test", "does not exist")):
        r = probe(site, {"destination": dest, "level": "may"})
        assert r["hosts"] == [] and words in r["error"], r
        assert r["would_pass"] == {lv: False for lv in LEVELS} and r["recommended"] is None
        assert r["passes"] is False


def test_a_host_that_does_not_answer_is_skipped_as_postfix_skips_it(site):
    r = probe(site, {"destination": "half.sec.test", "level": "encrypt"})
    down, up = r["hosts"]
    assert down["name"] == "down.half.sec.test" and up["name"] == "mx1.good.sec.test", r
    assert down["addresses"][0]["connected"] is False
    assert "Connection refused" in down["addresses"][0]["error"], down
    assert up["addresses"][0]["would_pass"]["encrypt"] is True
    assert r["passes"] is True and r["would_pass"]["none"] is True, r
    assert r["recommended"] == "dane-only", r


def test_two_mx_hosts_the_destination_passes_only_what_both_pass(site):
    r = probe(site, {"destination": "two.ins.test"})
    assert [(h["name"], h["preference"]) for h in r["hosts"]] == \
        [("mx.plain.ins.test", 10), ("mx.wrong.ins.test", 20)]
    assert r["would_pass"]["encrypt"] is False and r["reasons"]["encrypt"].startswith(
        "mx.plain.ins.test ")
    assert r["hosts"][1]["addresses"][0]["would_pass"]["encrypt"] is True
    assert r["recommended"] == "may"


def test_a_bogus_tlsa_answer_makes_dane_defer(site, peers):
    peers.dns.break_signatures("sec.test", "_25._tcp.mx1.good", "TLSA")
    try:
        r = probe(site, {"destination": "good.sec.test", "fresh": True})
        host, a = only_address(r)
        assert host["tlsa"]["dane"] == "failed" and host["tlsa"]["dnssec"] == "bogus", host
        assert r["would_pass"]["dane"] is False and r["would_pass"]["dane-only"] is False
        assert r["would_pass"]["secure"] is True and r["recommended"] == "secure"
    finally:
        peers.dns.set_records("sec.test", peers.dns.zones["sec.test."].records)


def test_requests_are_checked_scoped_and_recorded(site):
    d = site.d
    assert_problem(site.req("POST", "/api/v1/probe", {}), 422, "missing_field", "/destination")
    assert_problem(site.req("POST", "/api/v1/probe", {"destination": "a..b"}), 422,
                   "invalid_destination", "/destination")
    r = site.req("POST", "/api/v1/probe", {"destination": "relay.example:2525"})
    assert_problem(r, 422, "invalid_destination", "/destination")
    assert "[host]:2525" in r.body["detail"], r
    assert_problem(site.req("POST", "/api/v1/probe", {"destination": "x.test", "match": ["a"]}),
                   422, "invalid_value", "/match")
    assert_problem(site.req("POST", "/api/v1/probe", {"destination": "x.test", "level": "bogus"}),
                   422, "invalid_value", "/level")
    assert_problem(site.req("POST", "/api/v1/probe", {"destination": "x.test", "port": 25}), 422,
                   "unknown_field", "/port")
    assert_problem(site.req("POST", "/api/v1/probe", {"destination": "plain.ins.test"},
                            token=d.read_token), 403, "forbidden")
    assert site.req("GET", "/api/v1/probes").body == {"items": []}, "nothing refused was recorded"

    r = probe(site, {"destination": "plain.ins.test", "level": "encrypt"})
    listed = site.req("GET", "/api/v1/probes", token=d.read_token).body["items"]
    assert [(p["id"], p["actor"], p["destination"], p["level"], p["reason"], p["outcome"],
             p["recommended"]) for p in listed] == \
        [(r["id"], "admin", "plain.ins.test", "encrypt", "request", "failed", "may")]
    one = site.req("GET", "/api/v1/probes?destination=PLAIN.ins.test").body["items"]
    assert one[0]["result"]["hosts"][0]["name"] == "mx.plain.ins.test"
    metrics = site.req("GET", "/metrics").raw.decode()
    assert 'smtptlsd_probes_total{outcome="failed"} 1' in metrics, metrics


def test_private_networks_can_be_refused(make_policy_site, peers):
    s = make_policy_site(config={**peers.config(), "probe_private_networks": "deny"})
    r = probe(s, {"destination": "plain.ins.test"})
    _, a = only_address(r)
    assert a["connected"] is False and "probe_private_networks = deny" in a["error"], a
    assert r["would_pass"]["none"] is False and r["recommended"] is None


@pytest.mark.parametrize("mx", ["good", "plain", "wrong", "expired"])
def test_would_pass_is_what_postfix_then_does(site, peers, mx):
    """The same next-hop in three spellings, each with its own level (Postfix looks the next-hop
    up as written): what the probe says of may, encrypt and secure (match = the good host's name)
    is whether the real Postfix delivers or defers."""
    addr = peers.mx[mx].address
    name = "mx1.good.sec.test"
    hops = {"may": f"[{addr}]", "encrypt": f"[{addr}]:25", "secure": f"[{addr}]:smtp"}
    pf = peers.sender
    transport = ", ".join(f"{lv}-{mx}.test=smtp:{hop}" for lv, hop in hops.items())
    policy_map = (f"{hops['may']}=may, {hops['encrypt']}=encrypt, "
                  f"{{ {hops['secure']} = secure match={name} }}")
    pf.postconf("-e", f"transport_maps=inline:{{ {transport} }}",
                f"smtp_tls_policy_maps=inline:{{ {policy_map} }}")
    pf.reload()
    asked = probe(site, {"destination": f"[{addr}]:25", "level": "secure", "match": [name]})
    said = {"may": asked["would_pass"]["may"], "encrypt": asked["would_pass"]["encrypt"],
            "secure": asked["passes"]}
    done = {}
    for level in ("may", "encrypt", "secure"):
        start = len(pf.maillog())
        pf.send_mail(f"user@{level}-{mx}.test")
        m = pf.wait_maillog(rf"to=<user@{level}-{mx}\.test>, relay=.*status=(sent|deferred)",
                            timeout=40, start=start)
        done[level] = m.group(1) == "sent"
    assert said == done, (said, done, asked["reasons"])
    assert done == {"may": True, "encrypt": mx != "plain", "secure": mx == "good"}


def test_the_guard_refuses_a_level_the_destination_fails_and_force_writes_it(site):
    # a level at or below may is not probed
    assert site.put("plain.ins.test", {"level": "may"}, "?probe=true").status == 201
    assert site.req("GET", "/api/v1/probes").body["items"] == []
    # encrypt for a peer without STARTTLS: refused, nothing written
    r = site.put("plain.ins.test", {"level": "encrypt"}, "?probe=true")
    assert_problem(r, 422, "destination_fails_probe", "/level")
    assert "STARTTLS not offered" in r.body["detail"] and "force=true" in r.body["detail"], r
    [report] = r.body["probes"]
    assert report["destination"] == "plain.ins.test" and report["passes"] is False
    assert site.get("plain.ins.test").body["level"] == "may"
    assert site.map_query("plain.ins.test") == "may"
    # a peer that passes is written
    assert site.put("good.sec.test", {"level": "secure"}, "?probe=true").status == 201
    assert site.map_query("good.sec.test") == "secure"
    # a patch is judged by what the row becomes
    site.put_ok("wrong.ins.test", {"level": "encrypt"})
    r = site.patch("wrong.ins.test", {"level": "verify"}, "?probe=true")
    assert_problem(r, 422, "destination_fails_probe", "/level")
    assert site.map_query("wrong.ins.test") == "encrypt"
    # force writes it and the audit trail says so
    r = site.put("plain.ins.test", {"level": "encrypt"}, "?probe=true&force=true")
    assert r.status == 200, r
    assert site.map_query("plain.ins.test") == "encrypt"
    trail = site.req("GET", "/api/v1/probes?destination=plain.ins.test").body["items"]
    assert [(p["reason"], p["outcome"], p["forced"]) for p in trail] == \
        [("guard", "failed", True), ("guard", "failed", False)], trail
    assert_problem(site.put("x.ins.test", {"level": "encrypt"}, "?force=true"), 422,
                   "invalid_value", "force")


def test_the_guard_probes_each_item_of_a_bulk_above_may(site):
    items = [{"destination": "good.sec.test", "level": "dane-only"},
             {"destination": "plain.ins.test", "level": "encrypt"},
             {"destination": "wrong.ins.test", "level": "may"}]
    r = site.bulk(items, "?probe=true")
    assert_problem(r, 422, "destination_fails_probe", "/items")
    assert [p["destination"] for p in r.body["probes"]] == ["good.sec.test", "plain.ins.test"]
    assert [p["passes"] for p in r.body["probes"]] == [True, False]
    assert site.policies() == []
    r = site.bulk(items, "?probe=true&force=true")
    assert r.status == 200, r
    assert site.map_query("good.sec.test", "plain.ins.test", "wrong.ins.test") == {
        "good.sec.test": "dane-only", "plain.ins.test": "encrypt", "wrong.ins.test": "may"}
    too_many = [{"destination": f"d{i}.ins.test", "level": "encrypt"} for i in range(21)]
    assert_problem(site.bulk(too_many, "?probe=true"), 422, "invalid_value", "probe")


def test_the_watch_warns_when_a_mandatory_destination_stops_offering_starttls(
        make_policy_site, peers, certs):
    """A peer of this test's own, under a zone of its own: encrypt passes while it offers
    STARTTLS; once it stops, the watch's next probe fails, and /status, the metric and the log
    say so before any mail defers."""
    leaf = certs.leaf("probe-watch", ("mx.watch.ins2.test",))
    mx = PostfixSandbox.remote_mx(os.path.join(peers.base, f"mx-watch-{os.getpid()}"),
                                  starttls=True, cert=leaf.cert, key=leaf.key,
                                  address=free_loopback_address(), myhostname="mx.watch.ins2.test")
    mx.start()
    try:
        zone = f"z{os.getpid()}.test"
        if f"{zone}." not in peers.dns.zones:
            peers.dns.add_zone(zone, ["watch 60 IN MX 10 mx.watch", f"mx.watch 60 IN A {mx.address}"],
                               signed=False)
        s = make_policy_site(config={**peers.config(), "probe_watch_interval": "2s",
                                     "probe_stub_zones": peers.dns.stub_zones()})
        d = s.d
        dest = f"watch.{zone}"
        s.put_ok(dest, {"level": "encrypt"})

        def last():
            items = s.req("GET", f"/api/v1/probes?destination={dest}").body["items"]
            done = [p for p in items if p["reason"] == "watch" and p["outcome"]]
            return done[0] if done else None

        first = wait_until(last, 30, "the watch's first probe")
        assert (first["actor"], first["level"], first["outcome"]) == ("watch", "encrypt", "passed")
        status = s.req("GET", "/api/v1/status").body
        assert not [w for w in status["warnings"] if w["code"] == "destination_fails_probe"]

        mx.postconf("-e", "smtpd_tls_security_level=none")
        mx.reload()
        failed = wait_until(lambda: (p := last()) and p["outcome"] == "failed" and p, 30,
                            "the watch's probe after STARTTLS went away")
        assert failed["recommended"] == "may", failed
        warnings = [w for w in s.req("GET", "/api/v1/status").body["warnings"]
                    if w["code"] == "destination_fails_probe"]
        assert len(warnings) == 1 and dest in warnings[0]["detail"], warnings
        assert "STARTTLS not offered" in warnings[0]["detail"]
        assert s.metric("smtptlsd_policies_failing_probe") == 1
        assert [p["destination"] for p in s.req("GET", "/api/v1/probes?latest=true").body["items"]
                if p["outcome"] == "failed"] == [dest]
        wait_until(lambda: any(f"{dest} now fails its level encrypt" in line
                               for line in d.log_lines()), 10, "the watch's warning in the log")
    finally:
        mx.destroy()


def test_fingerprint_is_matched_with_postfix_s_digest(make_policy_site, peers):
    """smtp_tls_fingerprint_digest = sha512: a fingerprint policy's match holds SHA-512 digests,
    and the probe compares with the same digest (the report shows both)."""
    s = make_policy_site(config=peers.config(), extra={"smtp_tls_CAfile": peers.ca,
                                                       "smtp_tls_fingerprint_digest": "sha512"})
    out = subprocess.run(["openssl", "x509", "-noout", "-fingerprint", "-sha512", "-in",
                          peers.good_cert.cert], capture_output=True, text=True, check=True)
    sha512 = out.stdout.strip().split("=", 1)[1]
    dest = f"[{peers.mx['good'].address}]:25"
    r = probe(s, {"destination": dest, "level": "fingerprint", "match": [sha512]})
    _, a = only_address(r)
    assert a["certificate"]["postfix_digest"]["digest"] == "sha512", a["certificate"]
    assert a["certificate"]["postfix_digest"]["fingerprint"] == sha512.upper()
    assert r["passes"] is True, r["reasons"]
    sha256 = probe(s, {"destination": dest, "level": "fingerprint",
                       "match": [peers.good_cert.fingerprint()]})
    assert sha256["passes"] is False, "Postfix compares SHA-512 digests: a SHA-256 never matches"
