# The TLS policies as a Postfix map source file (src/core/policy_map_text.c, api/policies.c):
# GET /api/v1/tls-policies with Accept: text/plain gives the unmanaged policies as one file,
# PUT with Content-Type: text/plain takes a file as a bulk replace - Postfix's own syntax
# (comments, continuation lines, commas, braces, any case), the same validation, dry run and
# counts, and a bad line refused by its number. Real daemon, real Postfix (postmap -q answers for
# what a file said), real PostgreSQL.
import random
import re

from tests.system.test_policies import make_policy_site  # noqa: F401 (a fixture)

TEXT = "text/plain"
LEVELS = ["none", "may", "encrypt", "dane", "dane-only", "verify", "secure"]


def get_file(site, headers=None, query=""):
    return site.req("GET", f"/api/v1/tls-policies{query}",
                    headers={"Accept": TEXT, **(headers or {})})


def put_file(site, text, query="", **kw):
    return site.req("PUT", f"/api/v1/tls-policies{query}", text, content_type=TEXT, **kw)


def random_items(n, seed):
    rng = random.Random(seed)
    items = []
    for i in range(n):
        level = rng.choice(LEVELS)
        item = {"destination": f"h{i:05}.example" if i % 7 else f".sub{i:05}.example",
                "level": level}
        if level in ("verify", "secure") and rng.random() < 0.5:
            item["match"] = rng.choice([["nexthop"], ["nexthop", "dot-nexthop"], [".example"]])
        if level not in ("none",) and rng.random() < 0.3:
            item["protocols"] = rng.choice([">=TLSv1.2", "!SSLv2:!SSLv3"])
        if level not in ("none",) and rng.random() < 0.1:
            item["ciphers"] = "high"
        if rng.random() < 0.05:
            item["note"] = rng.choice(["partner relay", "ticket #42: \"strict\"\nsecond line",
                                       "caf\u00e9 \u2014 \U0001F512"])
        if rng.random() < 0.05:
            item["enabled"] = False
        items.append(item)
    return items


def test_the_map_file_round_trips_ten_thousand_policies(make_policy_site):
    site = make_policy_site()
    items = random_items(10000, 7)
    r = site.bulk(items)
    assert r.status == 200, r
    # a managed row is no part of the file, and a PUT of the file leaves it alone
    r = site.put("managed.example", {"level": "secure", "managed_by": "mta-sts"},
                 query="?manager=mta-sts")
    assert r.status in (200, 201), r
    before = site.policies()

    f = get_file(site)
    assert f.status == 200, f
    assert f.headers["Content-Type"].startswith("text/plain"), f.headers
    assert re.fullmatch(r'"policies-\d+\.map"', f.headers["ETag"]), f.headers["ETag"]
    assert "Accept" in f.headers.get("Vary", ""), f.headers
    text = f.raw.decode()
    assert "managed.example" not in text
    lines = [ln for ln in text.splitlines() if ln and not ln.startswith("# ")]
    entries = [ln.split("\t")[0].replace("#@disabled ", "") for ln in lines
               if not ln.startswith("#@note ")]
    assert entries == sorted(entries, key=lambda s: s.encode()) and len(entries) == 10000
    assert sum(ln.startswith("#@disabled ") for ln in lines) == \
        sum(1 for i in items if i.get("enabled") is False)

    # back, unchanged: nothing added, changed or removed, the same rows, the same file
    r = put_file(site, text)
    assert r.status == 200, r
    assert {k: r.body[k] for k in ("added", "changed", "removed", "unchanged")} == \
        {"added": 0, "changed": 0, "removed": 0, "unchanged": 10000}, r.body
    assert site.policies() == before
    again = get_file(site)
    assert again.raw == f.raw and again.headers["ETag"] == f.headers["ETag"]
    # a conditional GET of the file
    r = get_file(site, headers={"If-None-Match": f.headers["ETag"]})
    assert r.status == 304, r
    # JSON stays the default and the read model never answers a file request with JSON
    j = site.req("GET", "/api/v1/tls-policies?limit=1", headers={"Accept": f"application/json, {TEXT}"})
    assert j.status == 200 and j.headers["Content-Type"].startswith("application/json"), j
    assert get_file(site).headers["Content-Type"].startswith("text/plain")


def test_postfix_syntax_is_read_as_postfix_reads_it(make_policy_site):
    site = make_policy_site()
    text = (
        "# comments and blank lines\n"
        "\n"
        "A.Example   ENCRYPT, Protocols=>=TLSv1.2\n"
        "b.example\tsecure match=nexthop\n"
        "  match=dot-nexthop\n"                      # a continuation line
        "# a comment inside an entry does not end it\n"
        "\tciphers=high\n"
        "[relay.example.net]:587 verify { match = hostname:nexthop }\n"
        "c.example may,connection_reuse=no,CONNECTION_REUSE=yes\n"  # the last one wins
        "#@note \"kept\"\n"
        "d.example dane-only\n"
        "#@disabled e.example none\n"
    )
    r = put_file(site, text)
    assert r.status == 200, r
    assert r.body["added"] == 6, r.body
    got = {p["destination"]: p for p in site.policies()}
    assert got["a.example"]["level"] == "encrypt" and got["a.example"]["protocols"] == ">=TLSv1.2"
    assert got["b.example"]["match"] == ["nexthop", "dot-nexthop"], got["b.example"]
    assert got["b.example"]["ciphers"] == "high"
    assert got["[relay.example.net]:587"]["match"] == ["hostname", "nexthop"]
    assert got["c.example"]["connection_reuse"] is True
    assert got["d.example"]["note"] == "kept"
    assert got["e.example"]["enabled"] is False
    # Postfix answers for what the file said (and not for the disabled one)
    assert site.map_query("b.example") == "secure match=nexthop:dot-nexthop ciphers=high"
    assert site.map_query("a.example") == "encrypt protocols=>=TLSv1.2"
    assert site.map_query("e.example") is None
    # what GET gives is read back to the same rows
    r = put_file(site, get_file(site).raw.decode())
    assert r.status == 200 and r.body["unchanged"] == 6, r


def test_a_bad_line_refuses_the_whole_file_by_its_number(make_policy_site):
    site = make_policy_site()
    site.bulk([{"destination": "kept.example", "level": "encrypt"}])
    before = site.snapshot()
    good = [f"g{i:02}.example may" for i in range(20)]
    cases = [
        (6, "x.example may colour=blue", "invalid_value", "/lines/6"),
        (9, "x.example sometimes", "invalid_value", "/lines/9/level"),
        (3, "x.example may match=nexthop", "invalid_attribute", "/lines/3/match"),
        (12, "x.example secure match=a:b protocols=x protocols=y", "invalid_value", "/lines/12"),
        (4, "bad..example may", "invalid_destination", "/lines/4/destination"),
        (15, "g02.example encrypt", "duplicate_destination", "/lines/15/destination"),
        (7, "x.example may {match=nexthop", "invalid_value", "/lines/7"),
    ]
    for line, bad, code, field in cases:
        lines = list(good)
        lines.insert(line - 1, bad)
        r = put_file(site, "\n".join(lines) + "\n")
        assert r.status in (409, 422), (bad, r)
        assert r.body["code"] == code and r.body["field"].startswith(field), (bad, r.body)
    # a note that no policy follows
    r = put_file(site, "a.example may\n#@note \"orphan\"\n")
    assert r.status == 422 and r.body["field"] == "/lines/2", r.body
    assert site.snapshot() == before


def test_dry_run_if_match_and_negotiation(make_policy_site):
    site = make_policy_site()
    site.bulk([{"destination": "one.example", "level": "may"}])
    f = get_file(site)
    tag = f.headers["ETag"]
    before = site.snapshot()
    r = put_file(site, "two.example encrypt\n", query="?dry_run=true")
    assert r.status == 200 and r.body.get("added") == 1 and r.body.get("removed") == 1, r.body
    assert site.snapshot() == before
    # If-Match takes the file's tag (and the JSON list's), a stale one is 412
    r = put_file(site, "two.example encrypt\n", headers={"If-Match": tag})
    assert r.status == 200, r
    r = put_file(site, "three.example encrypt\n", headers={"If-Match": tag})
    assert r.status == 412, r
    # no filter applies to the file
    for q in ("?limit=5", "?q=x", "?level=may", "?managed=false"):
        r = get_file(site, query=q)
        assert r.status == 422 and r.body["field"] == q[1:].split("=")[0], (q, r)
    # text/plain elsewhere is refused as a media type
    r = site.req("PUT", "/api/v1/tls-policies/x.example", "may", content_type=TEXT)
    assert r.status == 415, r
