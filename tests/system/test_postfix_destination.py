# System tests of the destination grammar (issue 12 item 9) against the real Postfix tools.
# Postfix's smtp looks the next-hop up as the delivery request spells it (Postfix 3.7
# src/smtp/smtp_tls_policy.c): a policy must be stored under exactly the key Postfix will ask for.
#  1. Each accepted form: PUT, the stored key, the Location, GET by another spelling, and
#     `postmap -q` of the key Postfix looks up (case folded, UTF-8 folded for U-labels) finds
#     the row's value, while other spellings of the same host/port do not.
#  2. Refusals: 422 invalid_destination naming the field, with a clear detail; nothing changes.
#  3. Spellings that normalize to one key are one row (409 duplicate_destination, bulk too);
#     paging with cursors, the job location and the state document carry the new forms.
#  4. Real deliveries through a sandbox Postfix to a remote MX without STARTTLS: next-hops
#     `localhost:PORT` (unbracketed host:port), `[127.0.0.1]:<service name>` and
#     `[ipv6:::1]:PORT`, each with an encrypt policy, are deferred "TLS is required"; the same
#     peers named by the port number or as `[::1]:PORT` (no policy under that spelling) get the
#     mail in clear.
import os
import socket
import urllib.parse

import pytest

from tests.harness.postfix import PostfixSandbox
from tests.harness.util import free_port
from tests.system.test_foundation import assert_problem
from tests.system.test_policies import (  # noqa: F401 (fixtures)
    TLS_NOT_OFFERED, Outbound, add_listeners, assert_unchanged, make_policy_site, map_keys, qd,
    site)

UBUCHER = "b\u00fccher.example"
ABUCHER = "xn--bcher-kva.example"

# (as written in the request, the stored key, keys Postfix looks up that must find it)
FORMS = [
    ("Relay.Example:587", "relay.example:587", ["relay.example:587", "RELAY.example:587"]),
    ("relay.example:submission", "relay.example:submission", ["relay.example:submission"]),
    ("[MX.example]:Submission", "[mx.example]:submission", ["[mx.example]:submission"]),
    ("[mx2.example]:465", "[mx2.example]:465", ["[MX2.example]:465"]),
    ("[192.0.2.7]:smtp", "[192.0.2.7]:smtp", ["[192.0.2.7]:smtp"]),
    ("[IPv6:2001:DB8::1]:25", "[ipv6:2001:db8::1]:25",
     ["[ipv6:2001:db8::1]:25", "[IPv6:2001:db8::1]:25"]),
    ("[2001:db8::2]", "[2001:db8::2]", ["[2001:db8::2]"]),
    ("[ipv6:::ffff:192.0.2.9]", "[ipv6:::ffff:192.0.2.9]", ["[ipv6:::ffff:192.0.2.9]"]),
    ("_smtp._tcp.example", "_smtp._tcp.example", ["_smtp._tcp.example"]),
    (".a_b.example", ".a_b.example", [".a_b.example"]),
    ("[relay_1.example]:2525", "[relay_1.example]:2525", ["[relay_1.example]:2525"]),
    (UBUCHER, ABUCHER, [ABUCHER, "XN--BCHER-KVA.example", UBUCHER, "B\u00dcCHER.example"]),
    (".B\u00dccher.example", "." + ABUCHER, ["." + ABUCHER, "." + UBUCHER]),
    ("[b\u00fccher.example]:25", f"[{ABUCHER}]:25", [f"[{ABUCHER}]:25", f"[{UBUCHER}]:25"]),
    ("xn--mnchen-3ya.example:587", "xn--mnchen-3ya.example:587",
     ["xn--mnchen-3ya.example:587", "m\u00fcnchen.example:587"]),
]
# keys Postfix may look up for the same hosts that must NOT find those rows: it compares text
NOT_MATCHED = ["relay.example", "[relay.example]:587", "relay.example:25", "[mx.example]:587",
               "[mx.example]", "[192.0.2.7]:25", "[2001:db8::1]:25", "[ipv6:2001:db8::2]",
               "[ipv6:2001:db8:0::1]:25", "a_b.example", "bucher.example", ".example"]


def test_each_form_is_stored_under_the_key_postfix_looks_up(site):
    for i, (written, key, _) in enumerate(FORMS):
        r = site.put(written, {"level": "encrypt", "note": f"form {i}"})
        assert r.status == 201, f"PUT {written!r}: {r}"
        assert r.body["destination"] == key, r
        assert r.headers.get("Location") == "/api/v1/tls-policies/" + qd(key), r.headers
        assert site.job(r)["location"] == "/api/v1/tls-policies/" + qd(key)
        g = site.get(written)  # any spelling reads the row
        assert g.status == 200 and g.body["destination"] == key, g
        assert site.get(key).body["note"] == f"form {i}"
    site.assert_map_is_the_enabled_rows()
    for written, key, lookups in FORMS:
        for k in lookups:
            assert site.map_query(k) == "encrypt", f"postmap -q {k!r} (policy {written!r})"
    found = site.map_query(*NOT_MATCHED)
    assert found == {}, f"other spellings found entries: {found}"
    # the U-label entry is the A-label's twin in the map source, in UTF-8
    text = site.map_text()
    assert f"\n{ABUCHER}\tencrypt\n{UBUCHER}\tencrypt\n" in text, text
    # a change of the row changes both keys; disabling takes both out
    site.put_ok(UBUCHER, {"level": "may"})
    assert site.map_query(ABUCHER, UBUCHER) == {ABUCHER: "may", UBUCHER: "may"}
    r = site.patch(ABUCHER, {"enabled": False})
    assert r.status == 200, r
    assert site.map_query(ABUCHER, UBUCHER) == {}
    site.assert_map_is_the_enabled_rows()
    r = site.delete(f"[{UBUCHER}]:25")
    assert r.status == 204, r
    assert site.map_query(f"[{ABUCHER}]:25", f"[{UBUCHER}]:25") == {}
    site.assert_map_is_the_enabled_rows()


REFUSED = [
    # (destination, words the detail must have)
    ("*", "outbound_mode"),
    ("*.example.com", "outbound_mode"),
    (".example.com:25", "takes no port"),
    ("relay.example:", "no port"),
    ("relay.example:0", "between 1 and 65535"),
    ("relay.example:sub--mission", "service name"),
    ("[mx.example]:submissionsubmission", "service name"),
    ("relay.example:25:25", "more than one ':'"),
    ("2001:db8::1", "more than one ':'"),
    ("192.0.2.1:25", "bracketed"),
    ("[ipv6:2001:db8::1::2]", "IPv6 address is not valid"),
    ("[ipv6:1:2:3:4:5:6:7::]", "IPv6 address is not valid"),
    ("[2001:db8::g]", "IPv6 address is not valid"),
    ("[ipv6:192.0.2.1]", "IPv6 address is not valid"),
    ("[fe80::1%eth0]", "'%'"),
    ("\u2603.example", "not valid IDNA"),
    ("a-be\u00ba.example", "ASCII name a-beo.example"),
    ("stra\u00dfe.example", "folds"),
    ("_a-.example", "starts or ends with '-'"),
    ("a_b.example.", "trailing dot"),
]


def test_invalid_forms_are_refused_with_the_field_and_change_nothing(site):
    site.put_ok("relay.example:587", {"level": "encrypt"})
    before = site.snapshot()
    for dest, words in REFUSED:
        r = site.post({"destination": dest, "level": "may"})
        assert_problem(r, 422, "invalid_destination", "/destination")
        assert words in r.body.get("detail", ""), f"{dest!r}: {r.body}"
        r = site.bulk([{"destination": "ok.example", "level": "may"},
                       {"destination": dest, "level": "may"}])
        assert_problem(r, 422, "invalid_destination", "/items/1/destination")
        r = site.put(dest, {"level": "may"})
        assert r.status == 422 and r.body["code"] == "invalid_destination", f"PUT {dest!r}: {r}"
        assert words in r.body.get("detail", ""), f"PUT {dest!r}: {r.body}"
        # a read of a malformed destination finds nothing
        assert site.get(dest).status == 404
    assert_unchanged(site, before, "the refused destinations")


def test_spellings_of_one_key_are_one_destination(site):
    r = site.post({"destination": UBUCHER, "level": "encrypt"})
    assert r.status == 201 and r.body["destination"] == ABUCHER, r
    before = site.snapshot()
    for other in (ABUCHER, "XN--BCHER-KVA.EXAMPLE", "B\u00dcCHER.example"):
        r = site.post({"destination": other, "level": "may"})
        assert_problem(r, 409, "duplicate_destination")
    for a, b in ((UBUCHER, ABUCHER), ("[IPv6:2001:db8::1]:25", "[ipv6:2001:DB8::1]:25"),
                 ("Relay.example:Submission", "relay.example:submission")):
        r = site.bulk([{"destination": a, "level": "may"}, {"destination": b, "level": "may"}])
        assert_problem(r, 409, "duplicate_destination", "/items/1/destination")
    assert_unchanged(site, before, "duplicates")
    # a PUT by the other spelling replaces the one row; a body naming the same key is accepted
    r = site.put(ABUCHER, {"destination": UBUCHER, "level": "may"})
    assert r.status == 200 and r.body["destination"] == ABUCHER, r
    assert [p["destination"] for p in site.policies()] == [ABUCHER]
    # different spellings of one address are different keys, as Postfix looks them up
    for dest in ("[ipv6:2001:db8::1]", "[2001:db8::1]", "[mx.example]:587",
                 "[mx.example]:submission"):
        r = site.post({"destination": dest, "level": "may"})
        assert r.status == 201, f"{dest}: {r}"
    site.assert_map_is_the_enabled_rows()


def test_paging_state_and_locations_carry_the_new_forms(site):
    keys = sorted([key for _, key, _ in FORMS], key=lambda k: k.encode())
    r = site.bulk([{"destination": written, "level": "may"} for written, _, _ in FORMS])
    assert r.status == 200 and r.body["added"] == len(FORMS), r
    # two at a time, following `next`
    got, after = [], None
    while True:
        path = "/api/v1/tls-policies?limit=2"
        if after:
            path += "&after=" + urllib.parse.quote(after, safe="")
        r = site.d.get(path)
        assert r.status == 200, r
        got += [p["destination"] for p in r.body["items"]]
        after = r.body["next"]
        if not after:
            break
    assert got == keys
    # the filter: '_' is a character, not a LIKE wildcard; the stored (A-label) form is searched
    for q, want in (("_tcp", ["_smtp._tcp.example"]), ("a_b", [".a_b.example"]),
                    ("xn--bcher", ["." + ABUCHER, f"[{ABUCHER}]:25", ABUCHER]),
                    (":submission", ["[mx.example]:submission", "relay.example:submission"])):
        r = site.d.get("/api/v1/tls-policies?q=" + urllib.parse.quote(q, safe=""))
        assert r.status == 200 and [p["destination"] for p in r.body["items"]] == want, (q, r)
    # the state document round-trips them (one PUT of what GET gave changes nothing)
    s = site.d.get("/api/v1/state")
    assert s.status == 200, s
    assert [p["destination"] for p in s.body["tls_policies"]] == keys
    before = site.map_dump()
    r = site.d.http("PUT", "/api/v1/state?wait=120", s.body, headers={"If-Match": s.headers["ETag"]})
    assert r.status == 200, r
    assert site.map_dump() == before
    assert set(before) == {k for key in keys for k in map_keys(key)}
    site.assert_map_is_the_enabled_rows()


# == 4. real deliveries ============================================================================
# A service name from /etc/services whose port is free here, for the peer to listen on.
SERVICES = ("sieve", "svn", "xmpp-client", "amanda", "git", "zabbix-agent", "hkp")


def free_named_port():
    for name in SERVICES:
        try:
            port = socket.getservbyname(name, "tcp")
        except OSError:
            continue
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return name, port
    pytest.skip("no named port in /etc/services is free here")


@pytest.fixture
def delivery(make_policy_site, session_dir):  # noqa: F811
    """A remote MX without STARTTLS listening on a random port, on a named port and on ::1, and
    a managed site relaying hp.example to localhost:PORT, svc.example to [127.0.0.1]:<service>,
    num.example to [127.0.0.1]:<the same port as a number>, v6.example to [ipv6:::1]:PORT6 and
    v6b.example to [::1]:PORT6."""
    plain = PostfixSandbox.remote_mx(os.path.join(session_dir, "dest-plain"))
    plain.extra.update({"inet_protocols": "all", "mynetworks": "127.0.0.0/8 [::1]/128"})
    plain.setup()
    ports = add_listeners(plain, ["hp"])
    service, sport = free_named_port()
    p6 = free_port()
    plain.postconf("-M", f"127.0.0.1:{sport}/inet = 127.0.0.1:{sport} inet n - n - - smtpd")
    plain.postconf("-M", f"[::1]:{p6}/inet = [::1]:{p6} inet n - n - - smtpd")
    os.utime(plain.master_cf, (0, 0))
    plain.start()
    try:
        hops = {"hp": f"localhost:{ports['hp']}", "svc": f"[127.0.0.1]:{service}",
                "num": f"[127.0.0.1]:{sport}", "v6": f"[ipv6:::1]:{p6}", "v6b": f"[::1]:{p6}"}
        s = make_policy_site(extra={"inet_protocols": "all"},
                             transport={f"{case}.example": f"smtp:{hop}"
                                        for case, hop in hops.items()})
        o = Outbound(s, plain, plain, ports, None)
        o.hops = hops
        yield o
    finally:
        plain.stop()


def test_delivery_matches_host_port_service_name_and_ipv6_next_hops(delivery):
    o, site = delivery, delivery.site
    matched = ("hp", "svc", "v6")
    # written as an administrator might (upper case); stored and looked up folded
    r = site.bulk([{"destination": o.hops[case].upper(), "level": "encrypt"} for case in matched])
    assert r.status == 200 and r.body["added"] == 3, r
    for case in matched:
        assert site.map_query(o.hops[case]) == "encrypt", case
    assert site.map_query(o.hops["num"], o.hops["v6b"]) == {}
    rcpts = {case: o.send(case) for case in o.hops}
    outcome = {case: o.wait_attempt(rcpt) for case, rcpt in rcpts.items()}
    for case in matched:  # the policy under the next-hop as written matched
        status, reason = outcome[case]
        assert status == "deferred" and TLS_NOT_OFFERED in reason, (case, outcome[case])
        assert f"to=<{rcpts[case]}>" not in o.plain.maillog(), f"{case}: the peer got it"
    # the same peers and ports spelt otherwise (a port number, [::1] without "ipv6:"): no policy
    # under those keys, delivered in clear
    for case in ("num", "v6b"):
        assert outcome[case][0] == "sent", (case, outcome[case])
        assert o.received(rcpts[case]) is False
    # the policy changed to may: the deferred mail goes out (Postfix sees the map change)
    r = site.bulk([{"destination": o.hops[case], "level": "may"} for case in matched])
    assert r.status == 200, r
    o.flush()
    for case in matched:
        status, _ = o.wait_attempt(rcpts[case], after=1, timeout=60)
        assert status == "sent", (case, o.attempts(rcpts[case]))
