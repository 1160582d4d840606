# System tests of ETags and If-Match on TLS policies and certificates, black box against the real
# daemon, PostgreSQL and a Postfix sandbox:
#  1. every GET (row, collection: whatever the filter or page), HEAD and 200/201 write reply has an
#     ETag; a tag changes when, and only when, its row or collection changes (an unchanged PUT or
#     bulk push changes no tag, not even updated_at; a changed row changes its own tag and the
#     collection's, no other row's);
#  2. a stale If-Match (row, collection, weak, a row's tag where the collection's is due), and
#     If-Match on a row that does not exist (`*` or a tag), is 412 precondition_failed naming
#     If-Match, with a failed job (an unquoted tag is malformed: 422, no job), and changes nothing (rows, generation, the map files, main.cf,
#     postmap runs, reloads); a current tag, `*` on an existing row, or a list holding the current
#     tag is applied; ?dry_run reports a stale tag in its plan;
#  3. writers racing with the same If-Match: exactly one wins;
#  4. delete and re-create never gives a tag that was given before;
#  5. the same for certificates (binding and unbinding is a change of the certificate: in_use),
#     POST and rescan with the collection's tag;
#  6. a database of the previous schema, with rows, is migrated: every row gets a tag.
# Contract: api/openapi.yaml ("Concurrency"), shared/design/api.md ("Conventions").
import os
import re
import threading

import pytest

from tests.harness.util import REPO_ROOT, wait_until
from tests.system.test_certificates import json_body, make_site  # noqa: F401 (fixture)
from tests.system.test_foundation import assert_problem
from tests.system.test_policies import make_policy_site, policy_cursor, qd  # noqa: F401 (fixture)

POLICY_TAG = re.compile(r'"policy-\d+"')
POLICIES_TAG = re.compile(r'"policies-\d+"')
CERT_TAG = re.compile(r'"certificate-\d+"')
CERTS_TAG = re.compile(r'"certificates-\d+"')
COLLECTION = "/api/v1/tls-policies"
CERTS = "/api/v1/certificates"


def etag(r, pattern):
    tag = r.headers.get("ETag")
    assert tag and pattern.fullmatch(tag), f"ETag {tag!r} is not {pattern.pattern}: {r}"
    return tag


@pytest.fixture
def site(make_policy_site):
    return make_policy_site()


def row_tag(site, dest):
    r = site.get(dest)
    assert r.status == 200, r
    return etag(r, POLICY_TAG)


def coll_tag(site, query=""):
    r = site.d.get(COLLECTION + query)
    assert r.status == 200, r
    return etag(r, POLICIES_TAG)


def row_tags(site, dests):
    return {d: row_tag(site, d) for d in dests}


def updated_at(site, dest):
    r = site.get(dest)
    assert r.status == 200, r
    return r.body["updated_at"]


def assert_412(site, r, before, what):
    """r is 412 precondition_failed naming If-Match, its job failed so, and nothing changed."""
    assert_problem(r, 412, "precondition_failed", field="If-Match")
    job = site.job(r)
    assert job["status"] == "failed" and job["error"]["code"] == "precondition_failed", job
    after = site.snapshot()
    changed = {k: (before[k], after[k]) for k in before if before[k] != after[k]}
    assert not changed, f"{what}: a refused write changed {changed}"


# == 1. tags on every reply, changing when and only when the resource changes =====================
def test_policy_tags_on_every_reply_change_only_with_the_resource(site):
    empty = coll_tag(site)
    r = site.d.http("HEAD", COLLECTION)
    assert r.status == 200 and r.headers.get("ETag") == empty, r

    r = site.put(".example.com", {"level": "encrypt", "note": "one"})
    assert r.status == 201, r
    t1 = etag(r, POLICY_TAG)
    assert row_tag(site, ".example.com") == t1
    r = site.d.http("HEAD", f"{COLLECTION}/{qd('.example.com')}")
    assert r.status == 200 and r.headers.get("ETag") == t1, r
    c1 = coll_tag(site)
    assert c1 != empty

    r = site.post({"destination": "partner.example", "level": "may"})
    assert r.status == 201, r
    p1 = etag(r, POLICY_TAG)
    assert p1 != t1 and row_tag(site, "partner.example") == p1
    assert row_tag(site, ".example.com") == t1, "creating a row changed another row's tag"
    c2 = coll_tag(site)
    assert c2 not in (empty, c1)
    # the collection's tag is the whole collection's, whatever the filter or the page
    page = site.d.get(COLLECTION + "?limit=1")
    assert page.status == 200 and page.body["next"], page
    for query in ("?limit=1", "?level=may", "?q=nothing-matches", "?managed=true",
                  "?limit=1&after=" + page.body["next"],
                  "?after=" + policy_cursor("zzz.example")):  # past the end: an empty page
        assert coll_tag(site, query) == c2, query

    # the same content again: nothing changes, not even updated_at
    stamp = updated_at(site, ".example.com")
    r = site.put(".example.com", {"level": "encrypt", "note": "one"})
    assert r.status == 200 and etag(r, POLICY_TAG) == t1, r
    r = site.patch(".example.com", {"note": "one"})
    assert r.status == 200 and etag(r, POLICY_TAG) == t1, r
    assert updated_at(site, ".example.com") == stamp
    assert coll_tag(site) == c2

    # a change: that row's tag and the collection's, no other
    r = site.patch(".example.com", {"note": "two"})
    assert r.status == 200, r
    t2 = etag(r, POLICY_TAG)
    assert t2 != t1 and row_tag(site, ".example.com") == t2
    assert row_tag(site, "partner.example") == p1
    c3 = coll_tag(site)
    assert c3 not in (empty, c1, c2)
    r = site.put(".example.com", {"level": "verify", "match": ["nexthop"]})
    assert r.status == 200, r
    t3 = etag(r, POLICY_TAG)
    assert t3 not in (t1, t2) and row_tag(site, ".example.com") == t3
    c4 = coll_tag(site)
    assert c4 not in (c1, c2, c3)

    # a refused write and a dry run change no tag
    r = site.put(".example.com", {"level": "fingerprint"})  # needs match
    assert r.status == 422, r
    r = site.patch(".example.com", {"note": "dry"}, query="?dry_run=true")
    assert r.status == 200 and r.body["plan"]["valid"] is True, r
    assert row_tag(site, ".example.com") == t3 and coll_tag(site) == c4

    r = site.delete("partner.example")
    assert r.status == 204, r
    c5 = coll_tag(site)
    assert c5 not in (c1, c2, c3, c4)
    assert row_tag(site, ".example.com") == t3


def test_bulk_push_takes_the_collection_tag_and_keeps_unchanged_rows_tags(site):
    items = [{"destination": f"d{i}.example", "level": "encrypt" if i % 2 else "may"}
             for i in range(20)]
    r = site.bulk(items)
    assert r.status == 200 and r.body["added"] == 20, r
    c1 = etag(r, POLICIES_TAG)
    assert coll_tag(site) == c1
    dests = [i["destination"] for i in items]
    tags = row_tags(site, dests)
    assert len(set(tags.values())) == 20, "two rows share a tag"
    stamps = {d: updated_at(site, d) for d in dests}

    # the same set again, with the collection's tag: nothing changes, no tag either
    before = site.snapshot()
    r = site.bulk(items, headers={"If-Match": c1})
    assert r.status == 200 and r.body["unchanged"] == 20, r
    assert etag(r, POLICIES_TAG) == c1, "an unchanged bulk push changed the collection's tag"
    assert coll_tag(site) == c1
    assert row_tags(site, dests) == tags, "an unchanged bulk push changed row tags"
    assert {d: updated_at(site, d) for d in dests} == stamps
    assert site.rows() == before["rows"]

    # one row changed: its tag and the collection's change, no other row's
    items[7] = {"destination": "d7.example", "level": "encrypt", "note": "changed"}
    r = site.bulk(items, headers={"If-Match": c1})
    assert r.status == 200 and (r.body["changed"], r.body["unchanged"]) == (1, 19), r
    c2 = etag(r, POLICIES_TAG)
    assert c2 != c1 and coll_tag(site) == c2
    now = row_tags(site, dests)
    assert {d for d in dests if now[d] != tags[d]} == {"d7.example"}

    # the old collection tag, a row's tag, a weak tag, a tag of the other kind: 412
    items2 = items[:5]
    before = site.snapshot()
    for tag in (c1, now["d1.example"], "W/" + c2, c2.replace("policies", "certificates"),
                '"*"'):
        r = site.bulk(items2, headers={"If-Match": tag})
        assert_412(site, r, before, f"bulk with If-Match {tag}")
    # an unquoted tag is malformed: 422 at once, no job
    r = site.bulk(items2, headers={"If-Match": "policies-0"})
    assert_problem(r, 422, "invalid_value", field="If-Match")
    assert "Job-Id" not in r.headers and site.snapshot() == before, r
    # If-Match: * (the collection always exists) and a list holding the current tag: applied
    r = site.bulk(items, headers={"If-Match": "*"})
    assert r.status == 200 and r.body["unchanged"] == 20 and etag(r, POLICIES_TAG) == c2, r
    r = site.bulk(items2, headers={"If-Match": f'"policies-1", {c2}'})
    assert r.status == 200 and r.body["removed"] == 15, r
    c3 = etag(r, POLICIES_TAG)
    assert c3 != c2 and coll_tag(site) == c3
    assert row_tags(site, dests[:5]) == {d: now[d] for d in dests[:5]}

    # a single-row write changes the collection: the bulk push holding the old tag is refused
    r = site.put("d0.example", {"level": "encrypt"})
    assert r.status == 200, r
    before = site.snapshot()
    r = site.bulk(items, headers={"If-Match": c3})
    assert_412(site, r, before, "bulk after a single-row write")
    site.assert_map_is_the_enabled_rows()

    # a dry run honours If-Match too, and says so in its plan
    r = site.bulk(items, query="?dry_run=true", headers={"If-Match": c3})
    assert r.status == 200, r
    plan = r.body["plan"]
    assert plan["valid"] is False and [e["code"] for e in plan["errors"]] == \
        ["precondition_failed"], plan
    assert plan["errors"][0]["field"] == "If-Match", plan
    r = site.bulk(items, query="?dry_run=true", headers={"If-Match": coll_tag(site)})
    assert r.status == 200 and r.body["plan"]["valid"] is True, r
    assert site.snapshot() == before


# == 2. If-Match on one row ========================================================================
def test_stale_or_missing_if_match_on_a_policy_is_412_and_changes_nothing(site):
    r = site.put("a.example", {"level": "encrypt"})
    assert r.status == 201, r
    old = etag(r, POLICY_TAG)
    r = site.patch("a.example", {"note": "someone else"})
    assert r.status == 200, r
    cur = etag(r, POLICY_TAG)
    r = site.put("b.example", {"level": "may"})
    assert r.status == 201, r
    coll = coll_tag(site)
    before = site.snapshot()

    refused = [
        ("PUT stale", lambda h: site.put("a.example", {"level": "may"}, headers=h), old),
        ("PATCH stale", lambda h: site.patch("a.example", {"enabled": False}, headers=h), old),
        ("DELETE stale", lambda h: site.delete("a.example", headers=h), old),
        ("PUT weak", lambda h: site.put("a.example", {"level": "may"}, headers=h), "W/" + cur),
        ("PUT other row's", lambda h: site.put("a.example", {"level": "may"}, headers=h),
         row_tag(site, "b.example")),
        ("PUT collection's", lambda h: site.put("a.example", {"level": "may"}, headers=h), coll),
        # a row that does not exist: neither `*` nor any tag holds
        ("PUT * missing", lambda h: site.put("new.example", {"level": "may"}, headers=h), "*"),
        ("PATCH * missing", lambda h: site.patch("new.example", {"note": "x"}, headers=h), "*"),
        ("DELETE * missing", lambda h: site.delete("new.example", headers=h), "*"),
        ("PUT tag missing", lambda h: site.put("new.example", {"level": "may"}, headers=h), cur),
        ("PATCH tag missing", lambda h: site.patch("new.example", {"note": "x"}, headers=h), cur),
        ("DELETE tag missing", lambda h: site.delete("new.example", headers=h), cur),
        # POST creates in the collection: its If-Match is the collection's tag
        ("POST stale", lambda h: site.post({"destination": "new.example", "level": "may"},
                                           headers=h), '"policies-1"'),
        ("POST row tag", lambda h: site.post({"destination": "new.example", "level": "may"},
                                             headers=h), cur),
    ]
    for what, call, tag in refused:
        r = call({"If-Match": tag})
        assert_412(site, r, before, what)
        assert "If-Match" in r.body["field"]
    assert row_tag(site, "a.example") == cur and coll_tag(site) == coll
    # an unquoted tag is malformed, not stale: 422 naming If-Match, no job, nothing changed
    r = site.put("a.example", {"level": "may"}, headers={"If-Match": cur.strip('"')})
    assert_problem(r, 422, "invalid_value", field="If-Match")
    assert "malformed" in r.body["detail"] and "Job-Id" not in r.headers, r
    assert site.snapshot() == before
    # without If-Match a missing row is still 404
    assert_problem(site.patch("new.example", {"note": "x"}), 404, "not_found")
    assert_problem(site.delete("new.example"), 404, "not_found")

    # a dry run reports the stale tag in its plan and changes nothing
    r = site.patch("a.example", {"note": "dry"}, query="?dry_run=true", headers={"If-Match": old})
    assert r.status == 200 and r.body["plan"]["valid"] is False, r
    assert [(e["code"], e["field"]) for e in r.body["plan"]["errors"]] == \
        [("precondition_failed", "If-Match")], r.body
    assert site.snapshot() == before

    # the current tag, a list holding it, `*` on an existing row: applied
    r = site.patch("a.example", {"note": "mine"}, headers={"If-Match": cur})
    assert r.status == 200 and r.body["note"] == "mine", r
    t2 = etag(r, POLICY_TAG)
    assert t2 != cur and row_tag(site, "a.example") == t2
    r = site.put("a.example", {"level": "may"}, headers={"If-Match": f'W/{t2}, "x", {t2}'})
    assert r.status == 200 and r.body["level"] == "may", r
    t3 = etag(r, POLICY_TAG)
    r = site.patch("a.example", {"enabled": False}, headers={"If-Match": "*"})
    assert r.status == 200 and r.body["enabled"] is False, r
    t4 = etag(r, POLICY_TAG)
    assert len({cur, t2, t3, t4}) == 4
    r = site.post({"destination": "c.example", "level": "may"},
                  headers={"If-Match": coll_tag(site)})
    assert r.status == 201, r
    r = site.delete("a.example", headers={"If-Match": t4})
    assert r.status == 204, r
    assert site.get("a.example").status == 404
    site.assert_map_is_the_enabled_rows(absent=("a.example",))


def test_delete_and_recreate_never_reuses_a_tag(site):
    seen_rows, seen_colls = [], [coll_tag(site)]
    for i in range(4):
        r = site.put("again.example", {"level": "encrypt"})
        assert r.status == 201, r
        seen_rows.append(etag(r, POLICY_TAG))
        seen_colls.append(coll_tag(site))
        r = site.delete("again.example", headers={"If-Match": seen_rows[-1]})
        assert r.status == 204, r
        seen_colls.append(coll_tag(site))
    assert len(set(seen_rows)) == len(seen_rows), f"a re-created row got an old tag: {seen_rows}"
    assert len(set(seen_colls)) == len(seen_colls), f"a collection tag came back: {seen_colls}"
    r = site.put("again.example", {"level": "encrypt"})
    assert r.status == 201, r
    before = site.snapshot()
    for tag in seen_rows:  # the same content, but not the same row
        r = site.put("again.example", {"level": "may"}, headers={"If-Match": tag})
        assert_412(site, r, before, "If-Match of a deleted incarnation")
    seen_rows.append(row_tag(site, "again.example"))
    # the same through bulk: remove, then add the same item again
    for _ in range(2):
        r = site.bulk([])
        assert r.status == 200 and r.body["removed"] == 1, r
        seen_colls.append(etag(r, POLICIES_TAG))
        r = site.bulk([{"destination": "again.example", "level": "encrypt"}])
        assert r.status == 200 and r.body["added"] == 1, r
        seen_colls.append(etag(r, POLICIES_TAG))
        seen_rows.append(row_tag(site, "again.example"))
    assert len(set(seen_rows)) == len(seen_rows), seen_rows
    assert len(set(seen_colls)) == len(seen_colls), seen_colls


# == 3. racing writers ============================================================================
def race(n, call):
    """n threads start call(i) at once; returns the responses in order."""
    barrier = threading.Barrier(n)
    out = [None] * n

    def run(i):
        barrier.wait()
        out[i] = call(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert all(r is not None for r in out), "a writer did not finish"
    return out


def test_racing_writers_with_the_same_if_match_exactly_one_wins(site):
    n = 8
    r = site.put("race.example", {"level": "may", "note": "start"})
    assert r.status == 201, r
    for rnd in range(3):
        tag = row_tag(site, "race.example")
        out = race(n, lambda i: site.patch("race.example", {"note": f"writer {rnd}.{i}"},
                                           headers={"If-Match": tag}))
        won = [i for i, r in enumerate(out) if r.status == 200]
        assert len(won) == 1, f"round {rnd}: {len(won)} writers won: {[r.status for r in out]}"
        for i, r in enumerate(out):
            if i not in won:
                assert_problem(r, 412, "precondition_failed", field="If-Match")
        got = site.get("race.example")
        assert got.body["note"] == f"writer {rnd}.{won[0]}", got.body
        assert etag(got, POLICY_TAG) == etag(out[won[0]], POLICY_TAG)

    # bulk pushes racing with the collection's tag, each a different set: one bulk at a time, so
    # a loser is refused 503 while the winner is in progress (issue 10), or 412 after it
    coll = coll_tag(site)
    out = race(n, lambda i: site.bulk([{"destination": f"bulk{i}-{k}.example", "level": "may"}
                                       for k in range(3)], headers={"If-Match": coll}))
    won = [i for i, r in enumerate(out) if r.status == 200]
    assert len(won) == 1, [r.status for r in out]
    for i, r in enumerate(out):
        if i in won:
            continue
        if r.status == 503:
            assert_problem(r, 503, "service_unavailable")
            assert int(r.headers["Retry-After"]) > 0, r
        else:
            assert_problem(r, 412, "precondition_failed", field="If-Match")
    assert sorted(p["destination"] for p in site.policies()) == \
        [f"bulk{won[0]}-{k}.example" for k in range(3)]
    site.assert_map_is_the_enabled_rows()

    # POST of distinct rows racing with the collection's tag
    coll = coll_tag(site)
    out = race(n, lambda i: site.post({"destination": f"post{i}.example", "level": "may"},
                                      headers={"If-Match": coll}))
    assert sorted(r.status for r in out) == [201] + [412] * (n - 1), [r.status for r in out]
    assert len(site.policies()) == 4


# == 5. certificates ==============================================================================
def cert_tag(site, name):
    r = site.d.get(f"{CERTS}/{name}")
    assert r.status == 200, r
    return etag(r, CERT_TAG)


def certs_tag(site, query=""):
    r = site.d.get(CERTS + query)
    assert r.status == 200, r
    return etag(r, CERTS_TAG)


def cert_412(site, r, before, what):
    assert_problem(r, 412, "precondition_failed", field="If-Match")
    job = site.job(r.headers["Job-Id"])
    assert job["status"] == "failed" and job["error"]["code"] == "precondition_failed", job
    after = site.snapshot()
    changed = {k: (before[k], after[k]) for k in before if before[k] != after[k]}
    assert not changed, f"{what}: a refused write changed {changed}"


def test_certificate_tags_and_if_match(make_site, certs):
    site = make_site()
    system = site.system_name
    c0 = certs_tag(site)
    s0 = cert_tag(site, system)
    for query in ("?q=nothing", "?type=acme", f"?q={system}"):
        assert certs_tag(site, query) == c0, query
    r = site.d.http("HEAD", f"{CERTS}/{system}")
    assert r.status == 200 and r.headers.get("ETag") == s0, r

    a, b = certs.leaf("etag-a"), certs.leaf("etag-b")
    r = site.put("mx", json_body(a))
    assert r.status == 201, r
    t1 = etag(r, CERT_TAG)
    assert cert_tag(site, "mx") == t1 and t1 != s0
    c1 = certs_tag(site)
    assert c1 != c0
    # the same certificate again changes nothing; a rescan that finds nothing new neither
    r = site.put("mx", json_body(a))
    assert r.status == 200 and etag(r, CERT_TAG) == t1, r
    r = site.d.http("POST", f"{CERTS}/rescan", timeout=60)
    assert r.status == 200 and etag(r, CERTS_TAG) == c1, r
    assert certs_tag(site) == c1 and cert_tag(site, system) == s0

    # binding is a change of the certificate (in_use) and of the collection
    site.bind("mx")
    t2 = cert_tag(site, "mx")
    assert t2 != t1 and site.get("mx")["in_use"] is True
    c2 = certs_tag(site)
    assert c2 != c1 and cert_tag(site, system) == s0

    # stale, weak, missing: 412 and nothing changed (no rotation, no reload, no file)
    before = site.snapshot()
    for what, call, tag in [
        ("PUT stale", lambda h: site.put("mx", json_body(b), headers=h), t1),
        ("PUT weak", lambda h: site.put("mx", json_body(b), headers=h), "W/" + t2),
        ("PUT collection's", lambda h: site.put("mx", json_body(b), headers=h), c2),
        ("PUT * missing", lambda h: site.put("new", json_body(b), headers=h), "*"),
        ("PUT tag missing", lambda h: site.put("new", json_body(b), headers=h), t2),
        ("PEM PUT stale", lambda h: site.put("mx", b.read("key") + b.read("cert"), headers=h),
         t1),
        ("DELETE * missing", lambda h: site.d.http("DELETE", f"{CERTS}/new", headers=h), "*"),
        ("DELETE stale", lambda h: site.d.http("DELETE", f"{CERTS}/{system}", headers=h),
         '"certificate-1"'),
        ("POST stale", lambda h: site.post(dict(json_body(b), name="new"), headers=h), c1),
        ("rescan stale", lambda h: site.d.http("POST", f"{CERTS}/rescan", headers=h,
                                               timeout=60), c1),
    ]:
        r = call({"If-Match": tag})
        cert_412(site, r, before, what)
    assert cert_tag(site, "mx") == t2 and certs_tag(site) == c2

    # the current tag: applied (rotation), a new tag
    served = site.served()
    r = site.put("mx", json_body(b), headers={"If-Match": t2})
    assert r.status == 200, r
    t3 = etag(r, CERT_TAG)
    assert t3 not in (t1, t2) and cert_tag(site, "mx") == t3
    wait_until(lambda: site.served() != served, 10, "the rotated certificate to be served")
    r = site.post(dict(json_body(a), name="other"), headers={"If-Match": certs_tag(site)})
    assert r.status == 201, r
    o1 = etag(r, CERT_TAG)
    r = site.d.http("POST", f"{CERTS}/rescan", headers={"If-Match": certs_tag(site)}, timeout=60)
    assert r.status == 200 and etag(r, CERTS_TAG) == certs_tag(site), r

    # unbinding: a change of mx; then delete with its tag; re-create: never an old tag
    site.bind(None, mode="none")
    t4 = cert_tag(site, "mx")
    assert t4 != t3
    before = site.snapshot()
    r = site.d.http("DELETE", f"{CERTS}/mx", headers={"If-Match": t3})
    cert_412(site, r, before, "DELETE stale")
    r = site.d.http("DELETE", f"{CERTS}/mx", headers={"If-Match": t4}, timeout=60)
    assert r.status == 204, r
    r = site.put("mx", json_body(b))
    assert r.status == 201, r
    t5 = etag(r, CERT_TAG)
    tags = [s0, t1, t2, t3, t4, t5, o1]
    assert len(set(tags)) == len(tags), tags
    r = site.put("mx", json_body(a), headers={"If-Match": t4})
    assert_problem(r, 412, "precondition_failed", field="If-Match")
    assert site.get("mx")["sha256_fingerprint"] == b.fingerprint()
    r = site.d.http("DELETE", f"{CERTS}/other", headers={"If-Match": "*"}, timeout=60)
    assert r.status == 204, r


def test_certificate_writers_racing_with_the_same_if_match(make_site, certs):
    site = make_site(postfix=False)
    leaves = [certs.leaf(f"race{i}") for i in range(6)]
    r = site.put("mx", json_body(leaves[0]))
    assert r.status == 201, r
    tag = etag(r, CERT_TAG)
    out = race(len(leaves) - 1, lambda i: site.put("mx", json_body(leaves[i + 1]),
                                                   headers={"If-Match": tag}))
    won = [i for i, r in enumerate(out) if r.status == 200]
    assert len(won) == 1, [r.status for r in out]
    for i, r in enumerate(out):
        if i not in won:
            assert_problem(r, 412, "precondition_failed", field="If-Match")
    assert site.get("mx")["sha256_fingerprint"] == leaves[won[0] + 1].fingerprint()


# == 6. a database of the previous schema ==========================================================
def test_a_database_with_rows_is_migrated_and_every_row_gets_a_tag(make_policy_site, database,
                                                                   pg, certs):
    name, url = database
    sql_dir = os.path.join(os.path.dirname(__file__), "..", "..", "src", "store", "sql")
    for f in ("001_initial.sql", "002_certificate_details.sql"):
        with open(os.path.join(sql_dir, f)) as fh:
            pg.psql(fh.read(), db=name)
    system = os.path.basename(certs.leaf("system", ("localhost",)).cert).rsplit(".", 1)[0]
    pg.psql("CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL, "
            "applied_at timestamptz NOT NULL DEFAULT now()); "
            "INSERT INTO schema_migrations (version, name) VALUES (1, 'initial'), "
            "(2, 'certificate_details'); "
            "INSERT INTO tls_policies (destination, level, note) VALUES "
            "('old1.example', 'encrypt', 'kept'), ('old2.example', 'may', ''), "
            "('[relay.example]:587', 'encrypt', ''); "
            f"INSERT INTO certificates (name, type, system) VALUES ('{system}', 'system', true)",
            db=name)
    site = make_policy_site(config={"database_url": url})
    sql_dir = os.path.join(REPO_ROOT, "src", "store", "sql")
    newest = max(int(f[:3]) for f in os.listdir(sql_dir) if re.match(r"\d{3}_.*\.sql$", f))
    assert site.sql("SELECT max(version) FROM schema_migrations") == str(newest)
    dests = ["old1.example", "old2.example", "[relay.example]:587"]
    tags = row_tags(site, dests)
    assert len(set(tags.values())) == 3, tags
    assert site.get("old1.example").body["note"] == "kept"
    coll = coll_tag(site)
    before = site.snapshot()
    r = site.patch("old1.example", {"note": "x"}, headers={"If-Match": '"policy-0"'})
    assert_412(site, r, before, "stale If-Match after the migration")
    r = site.patch("old1.example", {"note": "x"}, headers={"If-Match": tags["old1.example"]})
    assert r.status == 200 and etag(r, POLICY_TAG) not in tags.values(), r
    assert row_tags(site, dests[1:]) == {d: tags[d] for d in dests[1:]}
    assert coll_tag(site) != coll
    site.assert_map_is_the_enabled_rows()
    r = site.d.get(f"{CERTS}/{system}")
    assert r.status == 200, r
    etag(r, CERT_TAG)
    certs_tag(site)
