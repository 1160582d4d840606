# System tests of issue 11 (the contract is the truth), helper "state":
#  - GET /api/v1/state: the whole desired state as one document (generation, settings,
#    certificates without keys unless an admin asks ?include_keys=true, tls_policies) with a strong
#    ETag of its generation; ACME/system certificates listed by reference.
#  - PUT /api/v1/state: one job, one transaction, one generation; ?dry_run=true answers the plan;
#    If-Match on the state ETag; bad input 422 naming the field by JSON pointer, nothing changed;
#    a document equal to the state changes nothing and makes no generation; restore into a fresh
#    site serves the same.
#  - jobs carry `location`, the resource the job wrote (null for a deletion or a failed job).
# Contract: api/openapi.yaml (State, Job.location), docs/api.md "Backup and restore".
import copy
import os
import urllib.parse

import pytest

from tests.harness.util import wait_until
from tests.system.test_policies import make_policy_site  # noqa: F401
from tests.system.test_security_bulk import fault_site  # noqa: F401

HOST = "mx.test.example"  # the Postfix sandbox's myhostname
STATE = "/api/v1/state"


def put_cert(d, name, cert):
    r = d.http("PUT", f"/api/v1/certificates/{name}",
               {"certificate": cert.read("cert"), "private_key": cert.read("key")})
    assert r.status in (200, 201), r
    return r


def populate(site, certs):
    """An imported certificate bound by managed settings, three policies (one managed)."""
    d = site.d
    put_cert(d, "mx", certs.leaf("mx", (HOST,)))
    r = d.http("PUT", "/api/v1/settings", {"mode": "may", "certificate": "mx"})
    assert r.status == 200, r
    for dest, body in (("a.example", {"level": "encrypt"}),
                       ("[10.0.0.1]:25", {"level": "may", "note": "relay"}),
                       (".b.example", {"level": "verify", "match": ["nexthop"]})):
        site.put_ok(dest, body)
    r = d.http("PUT", "/api/v1/tls-policies/m.example?manager=ops",
               {"level": "encrypt", "managed_by": "ops"})
    assert r.status in (200, 201), r


def get_state(d, query="", **kw):
    r = d.get(STATE + query, **kw)
    assert r.status == 200, r
    return r


def without_generation(doc):
    doc = copy.deepcopy(doc)
    doc.pop("generation")
    return doc


@pytest.fixture
def site(make_policy_site):
    return make_policy_site()


def test_get_state_is_the_whole_desired_state_without_keys(site, certs):
    d = site.d
    populate(site, certs)
    r = get_state(d, token=d.read_token)
    doc = r.body
    assert set(doc) == {"generation", "settings", "certificates", "tls_policies"}, doc
    assert doc["generation"] == site.generation()
    assert r.headers["ETag"] == f'"state-{doc["generation"]}"', r.headers
    assert doc["settings"]["certificate"] == "mx" and doc["settings"]["managed"] is True
    assert "generation" not in doc["settings"] and "updated_at" not in doc["settings"]
    by_name = {c["name"]: c for c in doc["certificates"]}
    mx = by_name["mx"]
    assert mx["type"] == "imported" and "BEGIN CERTIFICATE" in mx["certificate"]
    assert mx["sha256_fingerprint"] == certs.leaf("mx", (HOST,)).fingerprint()
    assert "private_key" not in mx and "PRIVATE KEY" not in r.raw.decode()
    system = [c for c in doc["certificates"] if c["type"] == "system"]
    assert system and set(system[0]) == {"name", "type", "sha256_fingerprint"}, system
    dests = [p["destination"] for p in doc["tls_policies"]]
    assert dests == sorted(dests) and len(dests) == 4, dests
    managed = [p for p in doc["tls_policies"] if p["managed_by"]]
    assert [p["destination"] for p in managed] == ["m.example"]
    assert all("created_at" not in p and "updated_at" not in p for p in doc["tls_policies"])

    # keys: an admin who asks; a reader who asks is refused, naming the parameter
    r = d.get(STATE + "?include_keys=true", token=d.read_token)
    assert r.status == 403 and r.body["field"] == "include_keys", r
    keyed = get_state(d, "?include_keys=true").body
    mx = {c["name"]: c for c in keyed["certificates"]}["mx"]
    assert "PRIVATE KEY" in mx["private_key"], mx.keys()
    assert without_generation(keyed)["settings"] == without_generation(doc)["settings"]


def test_put_state_round_trip_changes_nothing_and_makes_no_generation(site, certs):
    d = site.d
    populate(site, certs)
    r = get_state(d)
    gen, etag, doc = r.body["generation"], r.headers["ETag"], r.body
    before = site.snapshot()
    writer = d.add_token("writer", "write")
    # write scope: the document carries a managed row -> 403 naming it
    r = d.http("PUT", STATE, doc, token=writer)
    assert r.status == 403, r
    idx = [p["destination"] for p in doc["tls_policies"]].index("m.example")
    assert r.body["field"] == f"/tls_policies/{idx}/managed_by", r.body
    # admin, with If-Match, no keys: the imported certificate is stored with the same
    # fingerprint and keeps its key
    r = d.http("PUT", STATE + "?wait=60", doc, headers={"If-Match": etag})
    assert r.status == 200, r
    assert r.body["generation"] == gen, r.body
    assert r.headers["ETag"] == etag
    assert sorted(r.body["certificates"]["unchanged"]) == \
        sorted(c["name"] for c in doc["certificates"]), r.body
    assert r.body["tls_policies"] == {"added": 0, "changed": 0, "removed": 0, "unchanged": 4}
    assert r.body["settings"] == {"changed": False}
    assert site.snapshot() == before
    job = site.job(r)
    assert job["action"] == "state.put" and job["status"] == "applied"
    assert job["location"] == STATE, job
    assert job["generation"] is None, job  # it made none
    assert get_state(d).body == doc


def test_put_state_dry_run_if_match_and_refusals_change_nothing(site, certs):
    d = site.d
    populate(site, certs)
    r = get_state(d)
    doc, etag = r.body, r.headers["ETag"]
    before = site.snapshot()
    new = copy.deepcopy(doc)
    new["tls_policies"] = [p for p in new["tls_policies"] if p["destination"] != "a.example"]
    new["tls_policies"].append({"destination": "c.example", "level": "encrypt"})
    for p in new["tls_policies"]:
        if p["destination"] == ".b.example":
            p["level"] = "secure"
    new["settings"]["mode"] = "encrypt"

    r = d.http("PUT", STATE + "?dry_run=true", new)
    assert r.status == 200, r
    assert r.body["tls_policies"] == \
        {"added": 1, "changed": 1, "removed": 1, "unchanged": 2}, r.body
    assert r.body["settings"] == {"changed": True}
    assert "plan" in r.body and "generation" not in r.body
    assert site.snapshot() == before

    # stale If-Match: 412
    r = d.http("PUT", STATE, new, headers={"If-Match": '"state-1"'})
    assert r.status == 412, r
    assert site.snapshot() == before

    # bad input: 422 naming the field by JSON pointer
    bad = copy.deepcopy(new)
    bad["tls_policies"][1]["level"] = "bogus"
    r = d.http("PUT", STATE, bad)
    assert r.status == 422 and r.body["field"] == "/tls_policies/1/level", r
    bad = copy.deepcopy(new)
    bad["settings"]["mode"] = "sometimes"
    r = d.http("PUT", STATE, bad)
    assert r.status == 422 and r.body["field"] == "/settings/mode", r
    bad = copy.deepcopy(new)
    bad["certificates"].append({"name": "ghost", "type": "acme"})
    r = d.http("PUT", STATE, bad)
    assert r.status == 422 and r.body["code"] == "certificate_not_found", r
    assert r.body["field"] == f"/certificates/{len(bad['certificates']) - 1}/name", r
    bad = copy.deepcopy(new)
    other = certs.leaf("other", (HOST,))
    bad["certificates"].append({"name": "other", "type": "imported",
                                "certificate": other.read("cert")})
    r = d.http("PUT", STATE, bad)
    assert r.status == 422, r
    assert r.body["field"] == f"/certificates/{len(bad['certificates']) - 1}/private_key", r
    bad = copy.deepcopy(new)
    bad["unknown"] = 1
    r = d.http("PUT", STATE, bad)
    assert r.status == 422 and r.body["code"] == "unknown_field", r
    assert site.snapshot() == before

    # the real write: one job, one generation
    r = d.http("PUT", STATE + "?wait=60", new, headers={"If-Match": etag})
    assert r.status == 200, r
    assert r.body["generation"] == before["generation"] + 1, r.body
    assert r.headers["ETag"] == f'"state-{before["generation"] + 1}"'
    after = get_state(d).body
    assert after["generation"] == before["generation"] + 1
    assert {p["destination"]: p["level"] for p in after["tls_policies"]} == {
        ".b.example": "secure", "[10.0.0.1]:25": "may", "c.example": "encrypt",
        "m.example": "encrypt"}
    assert after["settings"]["mode"] == "encrypt"
    assert site.map_query("a.example") is None
    assert site.map_query("c.example") == "encrypt"


def test_restore_into_a_fresh_site_serves_the_same(make_policy_site, certs):
    a = make_policy_site()
    populate(a, certs)
    # a second imported certificate, not bound, and a disabled policy
    put_cert(a.d, "spare", certs.ec_leaf())
    a.put_ok("off.example", {"level": "encrypt", "enabled": False})
    backup = get_state(a.d, "?include_keys=true").body

    b = make_policy_site()
    r = b.d.http("PUT", STATE + "?wait=120", backup)
    assert r.status == 200, r
    assert sorted(r.body["certificates"]["added"]) == ["mx", "spare"], r.body
    assert r.body["settings"] == {"changed": True}

    keys = [p["destination"] for p in backup["tls_policies"]] + ["none.example"]
    assert b.map_query(*keys) == a.map_query(*keys)
    assert b.pf.served_certificate(servername=HOST, cafile=certs.ca().cert) == \
        a.pf.served_certificate(servername=HOST, cafile=certs.ca().cert)
    # the system certificates of the two sites are the same files here: the documents are equal
    assert without_generation(get_state(b.d, "?include_keys=true").body) == \
        without_generation(backup)


def test_jobs_location_leads_to_the_resource_written(site, certs):
    d = site.d
    r = site.put_ok("[10.0.0.1]:25", {"level": "may"})
    loc = site.job(r)["location"]
    assert loc == "/api/v1/tls-policies/%5B10.0.0.1%5D%3A25", loc
    g = d.get(loc)
    assert g.status == 200 and g.body["destination"] == "[10.0.0.1]:25", g
    r = site.delete("[10.0.0.1]:25")
    assert r.status == 204, r
    assert site.job(r)["location"] is None
    r = put_cert(d, "mx", certs.leaf("mx", (HOST,)))
    assert site.job(r)["location"] == "/api/v1/certificates/mx"
    r = d.http("PUT", "/api/v1/settings", {"mode": "may", "certificate": "mx"})
    assert site.job(r)["location"] == "/api/v1/settings"
    # a failed job wrote nothing
    r = d.http("PUT", "/api/v1/settings", {"mode": "may", "certificate": "nosuch"})
    assert r.status == 422, r
    jobs = d.get("/api/v1/jobs?limit=1").body["items"]
    assert jobs[0]["status"] == "failed" and jobs[0]["location"] is None, jobs[0]
    r = site.bulk([{"destination": "x.example", "level": "may"}])
    assert site.job(r)["location"] == "/api/v1/tls-policies"
    listed = {j["id"]: j for j in d.get("/api/v1/jobs").body["items"]}
    assert all("location" in j for j in listed.values())
    assert loc.endswith(urllib.parse.quote("[10.0.0.1]:25", safe=""))


def test_put_state_below_admin_leaves_keys_and_managed_rows_alone(site, certs):
    d = site.d
    populate(site, certs)
    writer = d.add_token("writer", "write")
    doc = get_state(d).body
    before = site.snapshot()
    # a document without the managed row would remove it: not below admin
    unmanaged = copy.deepcopy(doc)
    unmanaged["tls_policies"] = [p for p in doc["tls_policies"] if not p["managed_by"]]
    r = d.http("PUT", STATE, unmanaged, token=writer)
    assert r.status == 409 and r.body["code"] == "managed_row", r
    assert "m.example" in r.body["detail"], r.body
    # keys come in only from an admin
    keyed = get_state(d, "?include_keys=true").body
    keyed["tls_policies"] = unmanaged["tls_policies"]
    r = d.http("PUT", STATE, keyed, token=writer)
    idx = [c["name"] for c in keyed["certificates"]].index("mx")
    assert r.status == 403 and r.body["field"] == f"/certificates/{idx}/private_key", r
    assert site.snapshot() == before
    # an admin may: the managed row goes, in a new generation
    r = d.http("PUT", STATE + "?wait=60", unmanaged)
    assert r.status == 200, r
    assert r.body["tls_policies"]["removed"] == 1, r.body
    assert r.body["generation"] == before["generation"] + 1, r.body
    assert site.get("m.example").status == 404


def test_a_restore_killed_before_commit_is_resumed_with_its_keys_outside_the_job_row(
        make_policy_site, fault_site, certs):
    """The document's keys wait in pending_keys (never in the job row), its policies in the row:
    a restore acknowledged with 202 whose daemon is killed before the commit is applied at the
    next start, keys included."""
    a = make_policy_site()
    populate(a, certs)
    backup = get_state(a.d, "?include_keys=true").body
    b = fault_site
    with open(b.fault_file, "w") as f:
        f.write("before_commit kill\n")
    r = b.d.http("PUT", STATE + "?wait=0", backup, timeout=60)
    assert r.status == 202, r
    job = r.headers["Job-Id"]
    b.d.proc.wait(60)
    b.d.stopped = True
    assert b.d.proc.returncode == -9, b.d.proc.returncode
    assert b.psql.query(f"SELECT position('PRIVATE KEY' in request::text) FROM jobs "
                        f"WHERE id = {job}") == "0"
    assert b.psql.query(f"SELECT count(*) FROM pending_keys WHERE job_id = {job}") == "1"
    os.unlink(b.fault_file)
    b.d.start()
    b.d.mark_fd_baseline()
    wait_until(lambda: b.d.get(f"/api/v1/jobs/{job}").body["status"] == "applied",
               timeout=120, what="the resumed restore applied")
    assert b.d.get(f"/api/v1/jobs/{job}").body["location"] == STATE
    assert without_generation(get_state(b.d, "?include_keys=true").body) == \
        without_generation(backup)
    assert b.pf.served_certificate(servername=HOST, cafile=certs.ca().cert) == \
        certs.leaf("mx", (HOST,)).fingerprint()
