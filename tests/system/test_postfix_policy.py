# Issue 12, the policy attributes (items 5, 7, 8): what smtptlsd accepts in a TLS policy must mean
# to Postfix what the administrator thinks it means. Judged by Postfix itself (Postfix 3.7 and
# OpenSSL 3 of Debian 12): real deliveries from a sandbox instance to sandbox peers, and
# `postmap -q` of the rendered map.
#  1. servername (sent as SNI: the peer picks its certificate by it), tafile (trust anchors at
#     verify) and connection_reuse (through tlsproxy) reach the map, the bulk and the state, and
#     Postfix delivers with them where it did not without.
#  2. What Postfix does with the combinations smtptlsd refuses or warns about (a hand-made map):
#     the reasons for the rules of src/core/policy.c.
#  3. The refusals change nothing; the warnings are on the reply and in the dry run's plan.
#  4. ".example.com" covers subdomains only: parent_domain_not_covered on single, bulk and state
#     writes, disables and deletes, and their dry runs.
import itertools
import os
import re
import time

import pytest

from tests.harness.postfix import PostfixSandbox
from tests.harness.util import free_port, run, wait_until
from tests.system.test_foundation import assert_problem
from tests.system.test_policies import (  # noqa: F401 (fixtures)
    add_listeners, assert_unchanged, make_policy_site, qd, site)

_n = itertools.count(1)
NOT_VERIFIED = "certificate not verified"


def attempts(pf, rcpt):
    return re.findall(rf"to=<{re.escape(rcpt)}>, relay=.*? status=(\w+) \((.*)\)$", pf.maillog(),
                      re.M)


def deliver(pf, domain, timeout=40):
    """Send one message to u@domain through pf: (status, reason) of its first attempt."""
    rcpt = f"m{next(_n)}-{int(time.time() * 1000) % 100000}@{domain}"
    pf.send_mail(rcpt)
    wait_until(lambda: attempts(pf, rcpt), timeout, f"a delivery attempt to {rcpt}", interval=0.05)
    return attempts(pf, rcpt)[0]


def codes(warnings):
    return [w["code"] for w in warnings or []]


def tls_peer(session_dir, certs, cases, sni_cert=None, options=None):
    """A remote MX with STARTTLS (remote.test.example), one listener per case ({case: port});
    with sni_cert it serves that certificate to clients that ask for sni.test.example."""
    leaf = certs.leaf("p12-peer", ("remote.test.example",))
    peer = PostfixSandbox.remote_mx(os.path.join(session_dir, f"p12-peer{next(_n)}"),
                                    starttls=True, cert=leaf.cert, key=leaf.key)
    peer.extra["smtpd_tls_loglevel"] = "1"
    if sni_cert:
        peer.extra["tls_server_sni_maps"] = f"hash:{peer.basedir}/sni"
    peer.setup()
    if sni_cert:
        with open(f"{peer.basedir}/sni", "w") as f:
            f.write(f"sni.test.example {sni_cert.key} {sni_cert.cert}\n")
        peer.postmap("-F", f"hash:{peer.basedir}/sni")
    ports = {}
    for case in cases:
        port = free_port()
        opts = (options or {}).get(case, "")
        peer.postconf("-M", f"127.0.0.1:{port}/inet = 127.0.0.1:{port} inet n - n - - smtpd {opts}"
                      .rstrip())
        ports[case] = port
    old = time.time() - 10
    os.utime(peer.master_cf, (old, old))
    peer.start()
    return peer, leaf, ports


def add_tlsproxy(pf):
    pf.postconf("-M", "tlsproxy/unix = tlsproxy unix - - n - 0 tlsproxy")
    old = time.time() - 10
    os.utime(pf.master_cf, (old, old))
    pf.reload()


# == 1. the new attributes, end to end ==============================================================
def test_servername_tafile_connection_reuse_reach_postfix(make_policy_site, session_dir, certs):
    sni = certs.leaf("p12-sni", ("sni.test.example",))
    ca = certs.ca().cert
    cases = ("sni", "no-sni", "ta", "no-ta", "reuse")
    peer, leaf, ports = tls_peer(session_dir, certs, cases, sni_cert=sni)
    try:
        site = make_policy_site(transport={f"{c}.example": f"smtp:[127.0.0.1]:{p}"
                                           for c, p in ports.items()})
        hop = {c: f"[127.0.0.1]:{p}" for c, p in ports.items()}
        sni_fp = sni.fingerprint()
        bodies = {
            "sni": {"level": "fingerprint", "match": [sni_fp], "servername": "SNI.test.example"},
            "no-sni": {"level": "fingerprint", "match": [sni_fp]},
            "ta": {"level": "verify", "match": ["remote.test.example"], "tafile": ca},
            "no-ta": {"level": "verify", "match": ["remote.test.example"]},
            "reuse": {"level": "encrypt", "connection_reuse": True},
        }
        for case, body in bodies.items():
            r = site.put_ok(hop[case], body)
            want = body["servername"].lower() if "servername" in body else None
            assert (r.body["servername"], r.body["tafile"]) == (want, body.get("tafile")), r
        # what the map holds, as Postfix's own lookup returns it
        assert site.map_query(hop["sni"]) == \
            f"fingerprint match={sni_fp} servername=sni.test.example"
        assert site.map_query(hop["ta"]) == f"verify match=remote.test.example tafile={ca}"
        assert site.map_query(hop["reuse"]) == "encrypt connection_reuse=yes"
        site.assert_map_is_the_enabled_rows()
        # the managed Postfix has no tlsproxy (master.cf.dist has it commented out): warned
        r = site.put_ok(hop["reuse"], bodies["reuse"])
        assert "connection_reuse_without_tlsproxy" in codes(r.body.get("warnings")), r
        status, reason = deliver(site.pf, "reuse.example")
        assert status == "deferred", (status, reason)
        add_tlsproxy(site.pf)
        r = site.put_ok(hop["reuse"], bodies["reuse"])
        assert "connection_reuse_without_tlsproxy" not in codes(r.body.get("warnings")), r

        outcome = {c: deliver(site.pf, f"{c}.example") for c in cases}
        # SNI sent: the peer served the certificate of sni.test.example, whose digest matches
        assert outcome["sni"][0] == "sent", outcome
        assert outcome["no-sni"][0] == "deferred" and NOT_VERIFIED in outcome["no-sni"][1].lower()
        # the trust anchor verifies the peer's chain; without it nothing does
        assert outcome["ta"][0] == "sent", outcome
        assert outcome["no-ta"][0] == "deferred" and NOT_VERIFIED in outcome["no-ta"][1].lower()
        # reuse through tlsproxy
        assert outcome["reuse"][0] == "sent", outcome
        assert re.search(r"postfix/tlsproxy\[\d+\]", site.pf.maillog()), "tlsproxy never ran"

        # PATCH null clears; false renders no
        r = site.patch(hop["reuse"], {"connection_reuse": False})
        assert r.status == 200 and r.body["connection_reuse"] is False, r
        assert site.map_query(hop["reuse"]) == "encrypt connection_reuse=no"
        r = site.patch(hop["sni"], {"servername": None})
        assert r.status == 200 and r.body["servername"] is None, r
        assert site.map_query(hop["sni"]) == f"fingerprint match={sni_fp}"
        site.assert_map_is_the_enabled_rows()
    finally:
        peer.stop()


def test_new_attributes_in_bulk_and_state(site):
    items = [
        {"destination": "a.example", "level": "secure", "match": ["nexthop"],
         "servername": "hostname", "tafile": "/etc/ssl/certs/ca-certificates.crt",
         "connection_reuse": False},
        {"destination": "b.example", "level": "may", "servername": "nexthop",
         "connection_reuse": True},
        {"destination": "c.example", "level": "dane", "servername": "mx.c.example"},
    ]
    r = site.bulk(items)
    assert r.status == 200 and r.body["added"] == 3, r
    assert site.map_query("a.example", "b.example", "c.example") == {
        "a.example": "secure match=nexthop servername=hostname "
                     "tafile=/etc/ssl/certs/ca-certificates.crt connection_reuse=no",
        "b.example": "may servername=nexthop connection_reuse=yes",
        "c.example": "dane servername=mx.c.example",
    }
    site.assert_map_is_the_enabled_rows()
    # the same bulk again changes nothing; one attribute less is a change
    r = site.bulk(items)
    assert r.status == 200 and r.body["unchanged"] == 3 and r.body["changed"] == 0, r
    r = site.bulk([items[0], {k: v for k, v in items[1].items() if k != "connection_reuse"},
                   items[2]])
    assert r.status == 200 and r.body["changed"] == 1, r
    assert site.map_query("b.example") == "may servername=nexthop"
    # the state carries them, and a state written back changes nothing
    st = site.d.get("/api/v1/state")
    assert st.status == 200, st
    a = next(p for p in st.body["tls_policies"] if p["destination"] == "a.example")
    assert (a["servername"], a["tafile"], a["connection_reuse"]) == \
        ("hostname", "/etc/ssl/certs/ca-certificates.crt", False)
    before = site.map_text()
    r = site.d.http("PUT", "/api/v1/state", st.body, headers={"If-Match": st.headers["ETag"]})
    assert r.status == 200, r
    assert r.body["tls_policies"]["unchanged"] == 3, r
    assert site.map_text() == before
    # a bad item in a bulk: named, nothing changes
    snap = site.snapshot()
    r = site.bulk(items + [{"destination": "d.example", "level": "encrypt",
                            "tafile": "/etc/ssl/ca.pem"}])
    assert_problem(r, 422, "invalid_attribute", "/items/3/tafile")
    r = site.bulk(items + [{"destination": "d.example", "level": "may",
                            "servername": "d.example none"}])
    assert_problem(r, 422, "invalid_value", "/items/3/servername")
    assert_unchanged(site, snap, "refused bulks")


# == 2. what Postfix does with each combination (the reasons for the rules) =========================
def test_what_postfix_does_with_the_combinations(make_postfix, session_dir, certs):
    """A hand-written map (smtptlsd would refuse some of these): each entry's fate in a real
    delivery to a STARTTLS peer, TLSv1.3 or (the -12 cases) TLSv1.2 at most."""
    ca = certs.ca().cert
    entries = {
        "enc-null": "encrypt ciphers=null",                       # refused: no cipher left
        "ver-null": "verify ciphers=null match=remote.test.example tafile=" + ca,  # warning
        "ver-null-12": "verify ciphers=null match=remote.test.example tafile=" + ca,
        "fp-tls11": "fingerprint protocols=<=TLSv1.1 match={fp}",  # refused: security level 1
        "ver-tls11": "verify protocols=<=TLSv1.1 match=remote.test.example tafile=" + ca,
        "enc-tls11": "encrypt protocols=<=TLSv1.1",               # warning: level 0, works
        "enc-tafile": "encrypt tafile=" + ca,                     # refused: tafile not at encrypt
        "may-sni-ip": "may servername=192.0.2.1",                 # refused: not a host name
        "enc-reuse": "encrypt connection_reuse=yes",              # warning: no tlsproxy here
    }
    peer, leaf, ports = tls_peer(session_dir, certs, entries,
                                 options={"ver-null-12": "-o smtpd_tls_protocols=<=TLSv1.2"})
    try:
        pf = PostfixSandbox(os.path.join(session_dir, f"p12-sender{next(_n)}"), extra={
            "smtp_tls_loglevel": "1",
            "transport_maps": "inline:{ " + ", ".join(
                f"{c}.example=smtp:[127.0.0.1]:{p}" for c, p in ports.items()) + " }",
            "smtp_tls_policy_maps": "texthash:${config_directory}/policy"})
        pf.setup()
        with open(os.path.join(pf.config_dir, "policy"), "w") as f:
            for c, v in entries.items():
                f.write(f"[127.0.0.1]:{ports[c]} {v.format(fp=leaf.fingerprint())}\n")
        pf.start()
        try:
            got = {c: deliver(pf, f"{c}.example") for c in entries}
        finally:
            pf.stop()
        log = pf.maillog()
        status = {c: s for c, (s, _) in got.items()}
        assert status == {
            "enc-null": "deferred", "ver-null": "sent", "ver-null-12": "deferred",
            "fp-tls11": "deferred", "ver-tls11": "deferred", "enc-tls11": "sent",
            "enc-tafile": "deferred", "may-sni-ip": "deferred", "enc-reuse": "deferred",
        }, got
        assert "no cipher match" in log
        assert re.search(r"TLS connection established to 127\.0\.0\.1\[127\.0\.0\.1\]:"
                         rf"{ports['enc-tls11']}: TLSv1\.1 ", log), "encrypt <=TLSv1.1 used TLSv1.1"
        assert re.search(r"TLS connection established to 127\.0\.0\.1\[127\.0\.0\.1\]:"
                         rf"{ports['ver-null']}: TLSv1\.3 ", log), "verify ciphers=null: TLSv1.3"
        assert 'attribute "tafile" invalid at security level "encrypt"' in log
        assert '"servername=192.0.2.1" specifies an invalid hostname' in log
        assert "connect to private/tlsproxy service" in log
    finally:
        peer.stop()


# == 3. refusals change nothing; warnings on the reply and in the plan ==============================
REFUSED = [
    ({"level": "encrypt", "ciphers": "null"}, "invalid_attribute", "/ciphers"),
    ({"level": "verify", "protocols": "<=TLSv1.1"}, "invalid_attribute", "/protocols"),
    ({"level": "dane", "protocols": "!TLSv1.2:!TLSv1.3"}, "invalid_attribute", "/protocols"),
    ({"level": "encrypt", "tafile": "/etc/ssl/ca.pem"}, "invalid_attribute", "/tafile"),
    ({"level": "dane-only", "tafile": "/etc/ssl/ca.pem"}, "invalid_attribute", "/tafile"),
    ({"level": "none", "servername": "hostname"}, "invalid_attribute", "/servername"),
    ({"level": "none", "connection_reuse": False}, "invalid_attribute", "/connection_reuse"),
    ({"level": "may", "servername": "mx.example\nvictim.example none"}, "invalid_value",
     "/servername"),
    ({"level": "may", "servername": "192.0.2.1"}, "invalid_value", "/servername"),
    ({"level": "may", "servername": "a b"}, "invalid_value", "/servername"),
    ({"level": "verify", "tafile": "/etc/ssl/ca.pem victim.example"}, "invalid_value", "/tafile"),
    ({"level": "verify", "tafile": "/etc/../etc/shadow"}, "invalid_value", "/tafile"),
    ({"level": "verify", "tafile": "ca.pem"}, "invalid_value", "/tafile"),
    ({"level": "verify", "tafile": "/etc/ssl/ca.pem,x"}, "invalid_value", "/tafile"),
    ({"level": "may", "connection_reuse": "yes"}, "invalid_value", "/connection_reuse"),
]


def test_refused_attributes_change_nothing(site):
    site.put_ok("row.example", {"level": "may"})
    before = site.snapshot()
    for body, code, field in REFUSED:
        r = site.put("x.example", body)
        assert_problem(r, 422, code, field)
        r = site.post({"destination": "x.example", **body})
        assert_problem(r, 422, code, field)
        r = site.bulk([{"destination": "x.example", **body}])
        assert_problem(r, 422, code, "/items/0" + field)
        r = site.patch("row.example", body)
        assert_problem(r, 422, code, field)
        r = site.put("x.example", body, query="?dry_run=true")
        assert_problem(r, 422, code, field)
        assert_unchanged(site, before, f"{body}")
    site.assert_map_is_the_enabled_rows(absent=("x.example", "victim.example"))


def test_warnings_on_the_reply_and_in_the_dry_run(make_policy_site, tmp_path):
    site = make_policy_site(extra={"smtp_tls_exclude_ciphers": "aNULL, RC4, MD5",
                                   "smtp_tls_mandatory_exclude_ciphers": "3DES"})
    cases = [
        ("w1.example", {"level": "encrypt", "protocols": "<=TLSv1.1"}, "weak_protocols"),
        ("w2.example", {"level": "verify", "ciphers": "null"}, "null_ciphers"),
        ("w3.example", {"level": "dane", "servername": "mx.w3.example"}, "servername_ignored"),
        ("w4.example", {"level": "verify", "tafile": str(tmp_path / "missing.pem")},
         "tafile_unusable"),
        ("w5.example", {"level": "encrypt", "connection_reuse": True},
         "connection_reuse_without_tlsproxy"),
        ("w6.example", {"level": "encrypt", "exclude": ["RC4"]}, "exclude_replaces_main_cf"),
    ]
    for dest, body, code in cases:
        dry = site.put(dest, body, query="?dry_run=true")
        assert dry.status == 200, dry
        assert code in codes(dry.body["plan"]["warnings"]), (dest, dry)
        r = site.put_ok(dest, body)
        w = [x for x in r.body.get("warnings", []) if x["code"] == code]
        assert len(w) == 1 and dest in w[0]["detail"], (dest, r)
        assert code in codes(site.job(r)["warnings"])
    w6 = [x for x in site.put_ok("w6.example", cases[5][1]).body["warnings"]
          if x["code"] == "exclude_replaces_main_cf"][0]["detail"]
    # dropped: aNULL (Postfix adds only eNULL at encrypt), MD5, and 3DES of the mandatory list
    assert "smtp_tls_exclude_ciphers (aNULL, MD5)" in w6, w6
    assert "smtp_tls_mandatory_exclude_ciphers (3DES)" in w6 and "RC4" not in w6, w6
    # clean rows get none of these
    ok = {"level": "encrypt", "exclude": ["aNULL", "RC4", "MD5", "3DES"],
          "protocols": ">=TLSv1.2"}
    r = site.put_ok("w6.example", ok)
    assert not set(codes(r.body.get("warnings"))) & {c for _, _, c in cases}, r
    # the row that warns still renders and is what Postfix gets
    assert site.map_query("w1.example") == "encrypt protocols=<=TLSv1.1"
    site.assert_map_is_the_enabled_rows()


def test_tafile_that_loads_gives_no_warning(site, certs, tmp_path):
    ca = certs.ca().cert
    r = site.put_ok("ta.example", {"level": "secure", "tafile": ca})
    assert "tafile_unusable" not in codes(r.body.get("warnings")), r
    empty = tmp_path / "empty.pem"
    empty.write_text("not a certificate\n")
    r = site.put_ok("ta.example", {"level": "secure", "tafile": str(empty)})
    assert "tafile_unusable" in codes(r.body.get("warnings")), r


# == 4. ".example.com" is subdomains only ============================================================
def parent_warnings(body):
    return [w for w in (body or {}).get("warnings", []) if w["code"] == "parent_domain_not_covered"]


def test_dot_domain_without_the_domain_is_warned(site):
    # dry run first: the plan says it, nothing is written
    dry = site.put(".example.com", {"level": "encrypt"}, query="?dry_run=true")
    assert dry.status == 200, dry
    w = parent_warnings(dry.body["plan"])
    assert len(w) == 1 and "'.example.com'" in w[0]["detail"] and "example.com" in w[0]["detail"]
    assert site.get(".example.com").status == 404
    r = site.put_ok(".example.com", {"level": "encrypt"})
    assert len(parent_warnings(r.body)) == 1, r
    assert site.map_query(".example.com") == "encrypt"
    assert site.map_query("example.com") is None  # the map itself: no entry for the domain
    # the domain itself: no warning for either
    r = site.put_ok("example.com", {"level": "encrypt"})
    assert not parent_warnings(r.body), r
    r = site.put_ok(".example.com", {"level": "verify"})
    assert not parent_warnings(r.body), r
    # disabling or deleting the domain leaves the .domain alone: warned
    r = site.patch("example.com", {"enabled": False})
    assert r.status == 200 and len(parent_warnings(r.body)) == 1, r
    r = site.patch("example.com", {"enabled": True})
    assert r.status == 200 and not parent_warnings(r.body), r
    dry = site.delete("example.com", query="?dry_run=true")
    assert dry.status == 200 and len(parent_warnings(dry.body["plan"])) == 1, dry
    r = site.delete("example.com")
    assert r.status == 204, r
    assert len(parent_warnings(site.job(r))) == 1
    # a disabled .domain covers nothing: no warning; a next-hop or a plain domain: none
    r = site.patch(".example.com", {"enabled": False})
    assert r.status == 200 and not parent_warnings(r.body), r
    for dest in ("[mx.example.net]:25", "other.example"):
        assert not parent_warnings(site.put_ok(dest, {"level": "may"}).body)


def test_bulk_and_state_name_each_dot_domain_without_its_domain(site):
    items = [{"destination": f".d{i}.example", "level": "encrypt"} for i in range(12)]
    items += [{"destination": "d0.example", "level": "encrypt"},
              {"destination": "d1.example", "level": "may", "enabled": False}]
    r = site.bulk(items, query="?dry_run=true")
    assert r.status == 200, r
    w = parent_warnings(r.body["plan"])
    r = site.bulk(items)
    assert r.status == 200, r
    assert parent_warnings(r.body) == w
    names = [re.match(r"'([^']+)'", x["detail"]).group(1) for x in w if x["detail"][0] == "'"]
    # d0 covered; d1 disabled (not in the map) is not; the first 10 by name, then "more"
    assert names == sorted(f".d{i}.example" for i in range(1, 12))[:10], names
    assert w[-1]["detail"].startswith("more "), w
    st = site.d.get("/api/v1/state")
    r = site.d.http("PUT", "/api/v1/state", st.body, headers={"If-Match": st.headers["ETag"]})
    assert r.status == 200 and parent_warnings(r.body) == w, r
