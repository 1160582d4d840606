# System tests of what a write answers and which versions it changes (issue 11, "the contract is
# the truth"), black box against the real daemon, PostgreSQL and a Postfix sandbox:
#  1. a dry run is always 200 with the plan, on every write route (a PUT or POST of something new
#     is not 201, has no Location; a DELETE is not 204), changes nothing, and its plan carries the
#     warnings the real write gets (dane_without_dnssec, hostname_mismatch, certificate_expiring);
#     a dry run whose wait runs out is 503 (no job to follow), never 202;
#  2. a write that changes nothing (PUT/PATCH of a policy or the settings, a bulk replace with
#     added = changed = removed = 0) changes no version: not the ETag, not updated_at, not the
#     generation (nor the collection's tag); no postmap, no reload; the job is applied with
#     generation null and changed false;
#  3. round trip: the body of a GET (or of a write reply), edited, is accepted by PUT/PATCH; a
#     read-only member that differs from the current value is 422 naming it.
# Contract: api/openapi.yaml ("Writes are jobs", "Concurrency", read-only members).
from tests.system.test_certificates import HOST, json_body, make_site  # noqa: F401 (fixture)
from tests.system.test_foundation import assert_problem
from tests.system.test_policies import Psql, make_policy_site  # noqa: F401 (fixture)

POSTMAPS = "smtptlsd_postmap_runs_total"
RELOADS = "smtptlsd_postfix_reloads_total"
POLICIES = "/api/v1/tls-policies"
CERTS = "/api/v1/certificates"


def codes(warnings):
    return sorted(w["code"] for w in warnings or [])


def assert_plan(r, what):
    """r is a dry run's reply: 200, a plan, no Location, no job."""
    assert r.status == 200, f"{what}: a dry run answered {r}"
    assert "Location" not in r.headers, f"{what}: a dry run has a Location: {r.headers}"
    assert "Job-Id" not in r.headers, f"{what}: a dry run has a Job-Id: {r.headers}"
    assert "ETag" not in r.headers, f"{what}: a dry run has an ETag: {r.headers}"
    plan = r.body.get("plan")
    assert isinstance(plan, dict), f"{what}: no plan in {r.body}"
    assert set(plan) >= {"valid", "main_cf", "tls_policy_diff", "reload", "warnings",
                         "errors"}, plan
    assert "warnings" not in r.body, f"{what}: warnings beside the plan: {r.body}"
    return plan


# == 1. dry runs ====================================================================================
def test_dry_run_is_200_with_the_plan_on_every_write_route(make_policy_site, certs):
    site = make_policy_site()
    d = site.d
    before = site.snapshot()
    jobs = d.get("/api/v1/jobs").body["items"]

    plan = assert_plan(site.put("new.example", {"level": "encrypt"}, "?dry_run=true"),
                       "PUT of a new policy")
    assert plan["valid"] is True and "new.example" in plan["tls_policy_diff"], plan
    assert_plan(site.post({"destination": "new.example", "level": "may"}, "?dry_run=true"),
                "POST of a new policy")
    cert = certs.leaf("dry", (HOST,), kind="ec")
    assert_plan(d.http("PUT", f"{CERTS}/dry?dry_run=true", json_body(cert), timeout=60),
                "PUT of a new certificate")
    assert_plan(d.http("POST", f"{CERTS}?dry_run=true", json_body(cert, name="dry2"),
                       timeout=60), "POST of a new certificate")
    assert_plan(site.bulk([{"destination": "a.example", "level": "may"}], "?dry_run=true"),
                "bulk replace")
    assert_plan(d.http("PUT", "/api/v1/settings?dry_run=true", {"mode": "none"}, timeout=60),
                "PUT of the settings")
    assert site.snapshot() == before, "a dry run changed something"
    assert d.get(f"{CERTS}/dry").status == 404 and d.get(f"{CERTS}/dry2").status == 404
    assert d.get("/api/v1/jobs").body["items"] == jobs, "a dry run recorded a job"

    # DELETE: 200 with the plan (the row would go from the map), not 204; the row stays
    site.put_ok("gone.example", {"level": "encrypt"})
    assert d.http("PUT", f"{CERTS}/dry", json_body(cert), timeout=60).status == 201
    before = site.snapshot()
    plan = assert_plan(site.delete("gone.example", "?dry_run=true"), "DELETE of a policy")
    assert plan["valid"] is True and "-gone.example" in plan["tls_policy_diff"], plan
    assert_plan(d.http("DELETE", f"{CERTS}/dry?dry_run=true", timeout=60),
                "DELETE of a certificate")
    assert site.snapshot() == before, "a dry-run DELETE changed something"
    assert site.get("gone.example").status == 200 and d.get(f"{CERTS}/dry").status == 200

    # a refusal is in the plan, still 200 (DELETE of what does not exist)
    plan = assert_plan(site.delete("nothing.example", "?dry_run=true"), "DELETE of nothing")
    assert plan["valid"] is False and plan["errors"][0]["code"] == "not_found", plan


def test_dry_run_that_waits_too_long_is_503_never_202(make_policy_site, pg):
    """A dry run is not recorded: when its wait runs out there is no job to follow, so the answer
    is 503 (ask again), never a 202 naming job 0."""
    site = make_policy_site()
    lock = Psql(pg, site.db)
    try:
        lock.query("BEGIN")
        lock.query("SELECT generation FROM config_state FOR UPDATE")  # the worker's lock
        r = site.put("busy.example", {"level": "may"}, "?dry_run=true&wait=1")
        assert_problem(r, 503, "service_unavailable", field="wait")
        assert r.headers.get("Retry-After"), r.headers
        assert "Location" not in r.headers and "Job-Id" not in r.headers, r.headers
    finally:
        lock.query("ROLLBACK")
        lock.close()
    plan = assert_plan(site.put("busy.example", {"level": "may"}, "?dry_run=true"), "after")
    assert plan["valid"] is True, plan


def test_dry_run_plan_has_the_warnings_of_the_real_write(make_policy_site, certs):
    site = make_policy_site()
    d = site.d
    # the bound certificate's: it does not cover myhostname and expires in 10 days
    other = certs.leaf("other-host", ("other.test.example",), kind="ec")
    for name, c in (("other", other), ("soon", certs.expiring(10))):
        assert d.http("PUT", f"{CERTS}/{name}", json_body(c), timeout=60).status == 201
        body = {"mode": "may", "certificate": name}
        r = d.http("PUT", "/api/v1/settings?dry_run=true", body, timeout=60)
        dry = assert_plan(r, f"binding {name}")["warnings"]
        real = d.http("PUT", "/api/v1/settings", body, timeout=60)
        assert real.status == 200, real
        want = "hostname_mismatch" if name == "other" else "certificate_expiring"
        assert want in codes(real.body.get("warnings")), real.body
        assert codes(dry) == codes(real.body["warnings"]), \
            f"binding {name}: dry run {codes(dry)}, real write {codes(real.body['warnings'])}"

    # a policy's own warning
    r = site.put("dane.example", {"level": "dane-only"}, "?dry_run=true")
    dry = assert_plan(r, "dane-only")["warnings"]
    real = site.put_ok("dane.example", {"level": "dane-only"})
    assert codes(real.body.get("warnings")) == ["dane_without_dnssec"], real.body
    assert codes(dry) == codes(real.body["warnings"]), (dry, real.body)


# == 2. a write that changes nothing changes no version ============================================
def versions(site, dest):
    r = site.get(dest)
    assert r.status == 200, r
    coll = site.d.get(POLICIES)
    return {"etag": r.headers["ETag"], "updated_at": r.body["updated_at"],
            "collection": coll.headers["ETag"], "generation": site.generation(),
            "postmap runs": site.metric(POSTMAPS), "reloads": site.metric(RELOADS)}


def assert_unchanged_job(site, r, what):
    job = site.job(r)
    assert job["status"] == "applied", f"{what}: {job}"
    assert job["generation"] is None and job["changed"] is False, f"{what}: {job}"
    assert job["postmap"] is False and job["reload"] is False, f"{what}: {job}"


def test_policy_write_that_changes_nothing_changes_no_version(make_policy_site):
    site = make_policy_site()
    first = site.put_ok(".example.com", {"level": "encrypt", "note": "one"})
    was = versions(site, ".example.com")
    for what, r in (
            ("PATCH, same note", site.patch(".example.com", {"note": "one"})),
            ("PATCH, empty", site.patch(".example.com", {})),
            ("PUT, same body", site.put(".example.com", {"level": "encrypt", "note": "one"}))):
        assert r.status == 200, f"{what}: {r}"
        assert r.headers["ETag"] == was["etag"], f"{what}: the ETag changed: {r.headers}"
        assert r.body["updated_at"] == was["updated_at"], f"{what}: {r.body}"
        assert r.body["generation"] == was["generation"], f"{what}: {r.body}"
        assert versions(site, ".example.com") == was, f"{what} changed a version"
        assert_unchanged_job(site, r, what)
    # a real change after them still bumps everything
    r = site.patch(".example.com", {"note": "two"})
    assert r.status == 200 and r.body["generation"] == was["generation"] + 1, r
    assert site.job(r)["changed"] is True
    job = site.job(first)
    assert job["changed"] is True and job["generation"] == was["generation"], job


def test_bulk_that_changes_nothing_changes_no_version(make_policy_site):
    site = make_policy_site()
    items = [{"destination": f"d{i}.example", "level": "encrypt"} for i in range(3)]
    r = site.bulk(items)
    assert r.status == 200 and r.body["added"] == 3, r
    was = versions(site, "d0.example")
    r = site.bulk(items)
    assert r.status == 200, r
    assert (r.body["added"], r.body["changed"], r.body["removed"], r.body["unchanged"]) == \
        (0, 0, 0, 3), r.body
    assert r.headers["ETag"] == was["collection"], r.headers
    assert r.body["generation"] == was["generation"], r.body
    assert versions(site, "d0.example") == was, "an unchanged bulk changed a version"
    assert_unchanged_job(site, r, "unchanged bulk")


def test_settings_write_that_changes_nothing_changes_no_version(make_site, certs):
    site = make_site()
    d = site.d
    site.put_ok("mx", json_body(certs.leaf("mx-same", (HOST,), kind="ec")))
    bound = site.bind("mx")

    def state():
        g = d.get("/api/v1/settings")
        return {"etag": g.headers["ETag"], "body": g.body,
                "generation": site.status()["desired_generation"],
                "reloads": site.metric(RELOADS), "main.cf": open(site.pf.main_cf).read()}

    was = state()
    for what, method, body in (("PUT, same", "PUT", {"mode": "may", "certificate": "mx"}),
                               ("PATCH, same mode", "PATCH", {"mode": "may"}),
                               ("PATCH, empty", "PATCH", {})):
        r = d.http(method, "/api/v1/settings", body, timeout=60)
        assert r.status == 200, f"{what}: {r}"
        assert r.headers["ETag"] == was["etag"], f"{what}: {r.headers['ETag']} != {was['etag']}"
        assert {k: r.body[k] for k in was["body"]} == was["body"], f"{what}: {r.body}"
        assert state() == was, f"{what} changed a version"
        job = site.job(r.headers["Job-Id"])
        assert job["status"] == "applied" and job["changed"] is False, f"{what}: {job}"
        assert job["generation"] is None and job["reload"] is False, f"{what}: {job}"
    job = site.job(bound.headers["Job-Id"])
    assert job["changed"] is True and job["generation"] is not None, job


# == 3. round trip: GET -> edit -> PUT ============================================================
def test_settings_round_trip_and_read_only_members(make_site, certs):
    site = make_site()
    d = site.d
    site.put_ok("mx", json_body(certs.leaf("mx-rt", (HOST,), kind="ec")))
    got = d.get("/api/v1/settings").body
    assert {"generation", "updated_at", "managed"} <= set(got), got
    # the GET body, edited, goes back with PUT (managed false: the current value) ...
    r = d.http("PUT", "/api/v1/settings", {**got, "mode": "may", "certificate": "mx"}, timeout=60)
    assert r.status == 200 and r.body["mode"] == "may" and r.body["managed"] is True, r
    # ... and the write's reply with PATCH
    r = d.http("PATCH", "/api/v1/settings", {**r.body, "loglevel": 2}, timeout=60)
    assert r.status == 200 and r.body["loglevel"] == 2, r
    now = d.get("/api/v1/settings")
    for member, value in (("generation", now.body["generation"] - 1),
                          ("updated_at", "2000-01-01T00:00:00Z"), ("managed", False)):
        for method in ("PUT", "PATCH"):
            body = {**now.body, member: value}
            r = d.http(method, "/api/v1/settings", body, timeout=60)
            assert_problem(r, 422, "invalid_value", field=f"/{member}")
            assert "read-only" in r.body["detail"], r.body
    assert d.get("/api/v1/settings").headers["ETag"] == now.headers["ETag"], \
        "a refused round trip changed the settings"


def test_policy_round_trip_and_read_only_members(make_policy_site):
    site = make_policy_site()
    r = site.put_ok(".example.com", {"level": "encrypt", "note": "one"})
    reply = r.body
    assert "generation" in reply, reply
    # the write's reply, edited, goes back with PUT and PATCH
    r = site.put(".example.com", {**reply, "note": "two"})
    assert r.status == 200 and r.body["note"] == "two", r
    got = site.get(".example.com").body
    r = site.patch(".example.com", {**got, "note": "three"})
    assert r.status == 200 and r.body["note"] == "three", r
    got = site.get(".example.com")
    stale = {"created_at": "2000-01-01T00:00:00Z", "updated_at": "2000-01-01T00:00:00Z",
             "generation": r.body["generation"] + 5}
    for member, value in stale.items():
        for write in (site.put, site.patch):
            r = write(".example.com", {**got.body, member: value, "note": "four"})
            assert_problem(r, 422, "invalid_value", field=f"/{member}")
            assert site.job(r)["status"] == "failed", r
    after = site.get(".example.com")
    assert after.headers["ETag"] == got.headers["ETag"] and after.body["note"] == "three", after
    # a create has nothing to compare with: a body copied from elsewhere is taken
    r = site.put("copy.example", {**got.body, "destination": "copy.example"})
    assert r.status == 201, r
    r = site.post({**got.body, "destination": "post.example"})
    assert r.status == 201, r
    # a dry run reports a stale read-only member in its plan
    r = site.put(".example.com", {**got.body, "generation": 0}, "?dry_run=true")
    plan = assert_plan(r, "stale generation")
    assert plan["valid"] is False and plan["errors"][0]["field"] == "/generation", plan


def test_certificate_round_trip_and_read_only_members(make_site, certs):
    site = make_site()
    d = site.d
    one, two = certs.leaf("rt-one", (HOST,), kind="ec"), certs.leaf("rt-two", (HOST,), kind="ec")
    r = site.put_ok("mx", json_body(one))
    assert "generation" in r.body, r.body
    got = site.get("mx")
    # the GET reply with new PEM (its chain array is the read-only member) replaces it
    body = {**got, **json_body(two)}
    if "chain" not in json_body(two):
        body["chain"] = got["chain"]
    r = site.put("mx", body)
    assert r.status == 200 and r.body["sha256_fingerprint"] == two.fingerprint(), r
    # ... and so does the write's reply
    r = site.put("mx", {**r.body, **json_body(one)})
    assert r.status == 200 and r.body["sha256_fingerprint"] == one.fingerprint(), r
    now = d.get(f"{CERTS}/mx")
    for member, value in (("sha256_fingerprint", two.fingerprint()), ("in_use", True),
                          ("updated_at", "2000-01-01T00:00:00Z"), ("chain", [{"x": 1}])):
        r = site.put("mx", {**now.body, **json_body(two), member: value})
        assert_problem(r, 422, "invalid_value", field=f"/{member}")
    r = site.put("mx", {**json_body(two), "name": "other"})
    assert_problem(r, 422, "invalid_value", field="/name")
    r = site.put("mx", {**json_body(two), "name": "mx", "sha256_fingerprint": one.fingerprint()})
    assert r.status == 200 and r.body["sha256_fingerprint"] == two.fingerprint(), r
    assert d.get(f"{CERTS}/mx").headers["ETag"] != now.headers["ETag"]
    # unknown members stay refused
    r = site.put("mx", {**json_body(one), "fingerprint": "x"})
    assert_problem(r, 422, "unknown_field", field="/fingerprint")
