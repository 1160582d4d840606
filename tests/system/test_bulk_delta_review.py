# Review of commit 4b3f1d2 (bulk delta, core/item_memo.h): cases where a bulk replace that meets
# the node's memo of the last bulk does not answer what the same body answers without it. Each
# test first records the answer of the body with no memo to read against (the whole path), then
# sends it again after a bulk that left a memo, and expects the same answer.
# Contract: docs/api.md ("Pushing the same set again": nothing changes in what the bulk means or
# answers); harness: tests/README.md.
import json

from tests.harness.util import wait_until

from tests.system.test_policies import (  # noqa: F401 (fixtures)
    make_policy_site, site)

BULK = "/api/v1/tls-policies"


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
