# System tests of issue 17's bulk delta (core/item_memo.h): a bulk replace that repeats the last
# bulk applied on this node with a few rows changed reads, checks and writes only those rows.
# Whatever the path, what a bulk replace promises must hold: the unmanaged rows are exactly the
# items, the counts {added, changed, removed, unchanged} are what a comparison of the rows before
# with the items says, managed rows stay, the live map is the enabled rows; a duplicate across
# items the node knew and items it did not is refused as before, naming both; a problem found by
# the worker names the item's place in the body. Any write between two bulks (here, another
# node's would be the same), a change of main.cf's fingerprint digest or a restart makes the
# next one apply its items whole - the counter smtptlsd_bulk_replaces_total{how} shows which. The
# bytes of one format are never known as the other's, and a job an older binary recorded (items in
# request.body.policy, before migration 016) is applied by this one.
# Contract: api/openapi.yaml, docs/api.md; harness: tests/README.md.
import json
import random

from tests.harness.util import wait_until
from tests.system.test_foundation import assert_problem
from tests.system.test_policies import (  # noqa: F401 (fixtures)
    FP1, make_policy_site, site)

BULK = "/api/v1/tls-policies"
KEYS = ("level", "match", "protocols", "ciphers", "exclude", "servername", "tafile",
        "connection_reuse", "note", "enabled")
DEFAULTS = {"match": [], "protocols": None, "ciphers": None, "exclude": [], "servername": None,
            "tafile": None, "connection_reuse": None, "note": "", "enabled": True}
SHA512_FP = ":".join(["CD"] * 64)


def row_of(item):
    """An item as the row it makes (the members a bulk compares)."""
    return {k: item.get(k, DEFAULTS.get(k)) for k in KEYS}


def send(site, items, query="?wait=60", spacing=None):
    """PUT the items as one JSON body; spacing: per item, whether it is written with spaces (its
    bytes differ, its row does not)."""
    parts = []
    for i, item in enumerate(items):
        spaced = spacing and spacing.get(item["destination"])
        parts.append(json.dumps(item, separators=(", ", ": ") if spaced else (",", ":")))
    body = '{"items": [' + ",".join(parts) + "]}"
    return site.req("PUT", BULK + query, body)


def bulks(site):
    return {how: site.metric("smtptlsd_bulk_replaces_total", how=how)
            for how in ("delta", "whole")}


def expected_counts(rows, items):
    """{added, changed, removed, unchanged} of a bulk of items over unmanaged rows {dest: row}."""
    dests = {i["destination"] for i in items}
    added = sum(1 for i in items if i["destination"] not in rows)
    changed = sum(1 for i in items if i["destination"] in rows and
                  rows[i["destination"]] != row_of(i))
    return {"added": added, "changed": changed, "removed": len(set(rows) - dests),
            "unchanged": len(items) - added - changed}


def unmanaged_rows(site):
    return {p["destination"]: row_of(p) for p in site.policies() if not p.get("managed_by")}


def random_item(rng, dest):
    level = rng.choice(["may", "encrypt", "none", "dane", "secure", "fingerprint"])
    item = {"destination": dest, "level": level}
    if level == "secure":
        item["match"] = rng.choice([["nexthop"], ["hostname", "dot-nexthop"]])
    if level == "fingerprint":
        item["match"] = [FP1]
    if level in ("encrypt", "secure") and rng.random() < 0.3:
        item["protocols"] = ">=TLSv1.2"
    if rng.random() < 0.2:
        item["note"] = rng.choice(["partner", "ticket 42", ""])
    if rng.random() < 0.1:
        item["enabled"] = False
    return item


def test_a_bulk_repeated_with_changes_is_applied_as_its_delta(site):
    """Twelve bulks of a random set edited between them (rows added, removed, changed, written
    with other spacing, reordered), a single write and a managed row between some: after each,
    the counts and the rows are what a comparison says, the map is the enabled rows, and the
    delta was used exactly when nothing was written since the last bulk."""
    rng = random.Random(17)
    pool = [f"h{i:03d}.delta.example" for i in range(240)]
    items = [random_item(rng, d) for d in rng.sample(pool, 150)]
    spacing = {}
    assert site.put("managed.delta.example",
                    {"level": "encrypt", "managed_by": "ci"}).status == 201
    written_since = True  # the first bulk has no memo to read against
    for round_ in range(12):
        before, seen = unmanaged_rows(site), bulks(site)
        r = send(site, items, spacing=spacing)
        assert r.status == 200, r
        counts = {k: r.body[k] for k in ("added", "changed", "removed", "unchanged")}
        assert counts == expected_counts(before, items), f"round {round_}: {counts}"
        assert unmanaged_rows(site) == {i["destination"]: row_of(i) for i in items}, round_
        assert site.get("managed.delta.example").body["level"] == "encrypt"
        how = "whole" if written_since else "delta"
        after = bulks(site)
        assert after[how] == seen[how] + 1, f"round {round_}: {seen} -> {after}, expected {how}"
        if round_ % 3 == 2:
            site.assert_map_is_the_enabled_rows()
        # the next set: some gone, some changed, some new, some respaced, another order
        by_dest = {i["destination"]: i for i in items}
        for d in rng.sample(sorted(by_dest), 6):
            del by_dest[d]
        for d in rng.sample(sorted(by_dest), 5):
            by_dest[d] = random_item(rng, d)
        for d in rng.sample([d for d in pool if d not in by_dest], 4):
            by_dest[d] = random_item(rng, d)
        for d in rng.sample(sorted(by_dest), 8):
            spacing[d] = not spacing.get(d)
        items = list(by_dest.values())
        rng.shuffle(items)
        written_since = False
        if round_ in (3, 7):  # a single write between two bulks: the next is applied whole
            victim = items[0]["destination"]
            assert site.put(victim, {"level": "none", "note": "by hand"}).status in (200, 201)
            written_since = True
    site.assert_map_is_the_enabled_rows()


def test_duplicates_across_known_and_new_items_are_refused(site):
    """After a bulk, the same items with one of them twice, or a known item and a new one of its
    destination (either order): 409 duplicate_destination naming the second and the first, and
    nothing changes."""
    items = [{"destination": f"d{i}.dup.example", "level": "encrypt"} for i in range(5)]
    assert send(site, items).status == 200
    before = site.rows()
    cases = [
        (items + [items[1]], 5, 1, "known twice"),
        (items + [{"destination": "d2.dup.example", "level": "may"}], 5, 2, "known, then new"),
        ([{"destination": "d3.dup.example", "level": "may"}] + items, 4, 0, "new, then known"),
        (items[:2] + [{"destination": "new.dup.example", "level": "may"}] * 2, 3, 2,
         "new twice"),
    ]
    for body, at, first, what in cases:
        r = send(site, body)
        got = assert_problem(r, 409, "duplicate_destination", f"/items/{at}/destination")
        assert f"(first at /items/{first})" in got["detail"], (what, got)
        assert site.rows() == before, what
    # and the set itself still goes through as its delta
    seen = bulks(site)
    r = send(site, items[1:] + [{"destination": "d0.dup.example", "level": "may"}])
    assert r.status == 200 and r.body["changed"] == 1 and r.body["unchanged"] == 4, r
    assert bulks(site)["delta"] == seen["delta"] + 1


def test_a_problem_found_by_the_worker_names_the_item_in_the_body(make_policy_site):
    """main.cf's fingerprint digest is sha256: a SHA-512 fingerprint in a changed item, behind
    known ones, is refused with its place in the body (the delta gives way to the items whole);
    after main.cf's digest changes, the next bulk is checked whole again."""
    site = make_policy_site(extra={"smtp_tls_fingerprint_digest": "sha256"})
    items = [{"destination": f"f{i}.fp.example", "level": "fingerprint", "match": [FP1]}
             for i in range(4)]
    assert send(site, items).status == 200
    before = site.rows()
    bad = items[:2] + [{"destination": "f9.fp.example", "level": "fingerprint",
                        "match": [SHA512_FP]}] + items[2:]
    r = send(site, bad)
    got = assert_problem(r, 422, "invalid_value", "/items/2/match/0")
    assert "sha256" in got["detail"], got
    assert site.rows() == before
    # the same items under another digest: every known row is checked again (whole), and refused
    with open(f"{site.pf.config_dir}/main.cf", "a") as f:
        f.write("smtp_tls_fingerprint_digest = sha512\n")
    seen = bulks(site)
    r = send(site, items)
    assert_problem(r, 422, "invalid_value", "/items/0/match/0")
    assert bulks(site)["whole"] == seen["whole"] + 1
    assert site.rows() == before


def items_read(site):
    return {how: site.metric("smtptlsd_bulk_items_total", how=how) for how in ("known", "read")}


def test_dry_runs_map_files_and_a_restart(site):
    """Items the node knew are taken as known (smtptlsd_bulk_items_total): a dry run against the
    memo counts the delta and changes nothing (the next bulk still reads against the applied one);
    a map file (text/plain) after a JSON bulk is compared by rows, and the same file again is
    known entry by entry; after a restart the first bulk is applied whole, the next as its
    delta."""
    items = [{"destination": f"m{i}.file.example", "level": "encrypt"} for i in range(20)]
    assert send(site, items).status == 200
    assert items_read(site) == {"known": 0, "read": 20}
    before = site.rows()
    changed = items[:-1] + [{"destination": "m19.file.example", "level": "may"}]
    seen = bulks(site)
    r = send(site, changed, "?dry_run=true")
    assert r.status == 200, r
    assert {k: r.body[k] for k in ("added", "changed", "removed", "unchanged")} == \
        {"added": 0, "changed": 1, "removed": 0, "unchanged": 19}, r
    assert r.body["plan"]["tls_policy_diff"].count("m19.file.example") == 2, r.body["plan"]
    assert site.rows() == before
    assert bulks(site)["delta"] == seen["delta"] + 1
    assert items_read(site) == {"known": 19, "read": 21}
    r = send(site, changed)
    assert r.status == 200 and (r.body["changed"], r.body["unchanged"]) == (1, 19), r
    assert bulks(site)["delta"] == seen["delta"] + 2
    assert items_read(site) == {"known": 38, "read": 22}
    # the same set again: nothing to write, no new version, and still a delta next time
    r = send(site, changed)
    assert r.status == 200 and (r.body["changed"], r.body["unchanged"]) == (0, 20), r
    assert bulks(site)["delta"] == seen["delta"] + 3
    assert items_read(site) == {"known": 58, "read": 22}
    # the set as a map file, one row changed and one gone: compared by rows (its bytes are
    # not a JSON item's: read)
    text = "".join(f"{i['destination']}\t{i['level']}\n" for i in changed[1:])
    text = text.replace("m5.file.example\tencrypt", "m5.file.example\tnone")
    text += '#@note "kept"\nm0.file.example encrypt\n'
    for expect, known in (({"added": 0, "changed": 2, "removed": 0, "unchanged": 18}, 0),
                          ({"added": 0, "changed": 0, "removed": 0, "unchanged": 20}, 19)):
        was = items_read(site)
        r = site.req("PUT", BULK + "?wait=60", text, content_type="text/plain")
        assert r.status == 200, r
        assert {k: r.body[k] for k in ("added", "changed", "removed", "unchanged")} == expect, r
        # the entry with a note is never known by its bytes
        assert items_read(site) == {"known": was["known"] + known,
                                    "read": was["read"] + 20 - known}
    assert bulks(site)["delta"] == seen["delta"] + 5
    assert site.get("m0.file.example").body["note"] == "kept"
    # a file with a line twice: the second is named, with the first line
    r = site.req("PUT", BULK + "?wait=60", text + "m7.file.example encrypt\n",
                 content_type="text/plain")
    got = assert_problem(r, 409, "duplicate_destination", "/lines/22/destination")
    assert "(first at /lines/7)" in got["detail"], got
    site.d.stop()
    site.d.start()
    r = send(site, changed)
    assert r.status == 200 and (r.body["changed"], r.body["unchanged"]) == (2, 18), r
    assert bulks(site) == {"delta": 0, "whole": 1}
    assert items_read(site) == {"known": 0, "read": 20}
    r = send(site, items)
    assert r.status == 200 and (r.body["changed"], r.body["unchanged"]) == (1, 19), r
    assert bulks(site) == {"delta": 1, "whole": 1}
    assert unmanaged_rows(site) == {i["destination"]: row_of(i) for i in items}
    site.assert_map_is_the_enabled_rows()


def answer(r):
    """What a client hears of a bulk: the status and, for a problem, its code and field."""
    if r.status == 200:
        return (200, {k: r.body[k] for k in ("added", "changed", "removed", "unchanged")})
    return (r.status, r.body.get("code"), r.body.get("field"))


def test_a_json_items_bytes_sent_as_a_map_file_are_read_as_a_map_entry(site):
    """A JSON item of the last bulk, written with a blank in it, is also a map file's line:
    key '{"destination":', value the rest. Read as a map file that line is no policy (its key is
    no destination): the body is refused. After the JSON bulk the memo knows those very bytes,
    so the same text/plain body must still be refused, not taken as the JSON item's policy."""
    item = {"destination": "x.cross.example", "level": "encrypt"}
    line = json.dumps(item)  # '{"destination": "x.cross.example", "level": "encrypt"}'
    assert " " in line
    text = line + "\n"
    whole = site.req("PUT", BULK + "?wait=60", text, content_type="text/plain")
    assert whole.status != 200, whole  # no memo yet: read as a map file, refused
    before = site.rows()
    r = site.req("PUT", BULK + "?wait=60", '{"items": [' + line + "]}")
    assert r.status == 200 and r.body["added"] == 1, r
    # the state the text/plain body meets is the same but for the one row the JSON bulk made:
    # the answer must not depend on the memo
    r = site.req("PUT", BULK + "?wait=60", text, content_type="text/plain")
    assert answer(r) == answer(whole), f"with the memo: {r}, without: {whole}"
    assert before != site.rows()  # (the JSON bulk's row is there; nothing else matters here)


def test_a_bulk_job_an_older_node_queued_after_migration_016_is_applied(site):
    """docs/operations.md, "Upgrading a fleet": one node migrates while the others still run the
    older binary, which keeps writing with the queries it knows, then each is restarted with the
    new binary. A bulk job the older binary recorded after the migration has its items in
    request.body.policy (its jsonb_set) and none in the items column; the new binary resumes it at
    start. Before 016 such a row was applied; now the job must still apply (or the release must
    say the migration is not compatible with older nodes)."""
    items = [{"destination": "old.upgrade.example", "level": "encrypt"}]
    assert site.req("PUT", BULK + "?wait=60", {"items": items}).status == 200
    node = site.sql("SELECT node FROM jobs ORDER BY id DESC LIMIT 1").strip()
    site.d.stop()
    request = json.dumps({"body": {"policy": [dict(items[0], level="may")], "manager": None,
                                   "scope": "admin"}})
    jid = site.sql("INSERT INTO jobs (node, status, actor, action, target, request) VALUES "
                   f"('{node}', 'queued', 'test', 'policies.bulk', 'tls-policies', "
                   f"'{request}'::jsonb) RETURNING id").strip().splitlines()[0]
    site.d.start()

    def finished():
        status = site.sql(f"SELECT status FROM jobs WHERE id = {jid}").strip()
        return status if status in ("applied", "failed") else None
    status = wait_until(finished, 30, "the resumed job to finish", interval=0.1)
    error = site.sql(f"SELECT coalesce(error::text, '') FROM jobs WHERE id = {jid}").strip()
    assert status == "applied", f"job {jid}: {status} {error}"
    assert site.get("old.upgrade.example").body["level"] == "may"
