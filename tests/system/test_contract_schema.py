# The contract is the truth (issue 11): api/openapi.yaml against the daemon.
#  1. the validating client (tests/harness/contract.py) refuses what does not match the spec:
#     an undeclared status, a missing required header, a wrong Content-Type, a body off its schema
#     (a timestamp with milliseconds, an empty error field, a 202 that is not a whole job), and a
#     reply to an operation the spec does not have; and it passes what matches;
#  2. the route table (src/api/routes.c) and the spec's operations are the same set;
#  3. the spec passes Redocly's lint (tools/openapi-lint/, pinned by its lockfile) with no error
#     and no warning;
#  4. GET /api/v1/openapi.yaml serves the spec byte for byte, without a token, with a strong ETag
#     and If-None-Match -> 304;
#  5. the replies that drifted: a 202 is the whole job; a failed job has warnings [] and no empty
#     error.field; timestamps have whole seconds; /status has postfix.version and last_job is the
#     job as GET /api/v1/jobs/{id} shows it; /config has main_cf by name, tls_policy (the map
#     text) and tls_policy_map (the parameter); a rescan reports added and changed.
# Every reply in 4 and 5 also goes through the validating client.
import json
import os
import re
import subprocess

import pytest

from tests.harness import contract
from tests.harness.util import REPO_ROOT, wait_until
from tests.system.conftest import setup_tokens
from tests.system.test_certificates import Lineage, acme_leaf, make_site  # noqa: F401 (fixture)
from tests.system.test_policies import make_policy_site  # noqa: F401 (fixture)

SPEC = os.path.join(REPO_ROOT, "api", "openapi.yaml")
ROUTES = os.path.join(REPO_ROOT, "src", "api", "routes.c")
LINT_DIR = os.path.join(REPO_ROOT, "tools", "openapi-lint")
SECONDS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
JSON = {"Content-Type": "application/json"}


def job_body(**over):
    job = {"id": 7, "status": "queued", "actor": "admin", "action": "settings.put",
           "target": "settings", "created_at": "2026-11-22T10:00:00Z", "finished_at": None,
           "generation": None, "postmap": False, "reload": False, "error": None, "output": "",
           "verified": None, "warnings": [], "before": None, "after": None,
           "location": "/api/v1/jobs/7"}
    job.update(over)
    return json.dumps(job).encode()


def problem(status, code, **more):
    return json.dumps({"type": "about:blank", "status": status, "code": code, "title": "T",
                       **more}).encode()


# == 1. the validator refuses drift and passes the contract =======================================

@pytest.mark.parametrize("method,path,status,headers,raw,why", [
    ("GET", "/api/v1/jobs/7", 200, JSON, job_body(created_at="2026-11-22T10:00:00.123Z"),
     "does not match"),
    ("GET", "/api/v1/jobs/7", 200, JSON, job_body(warnings=None), "is not of type 'array'"),
    ("GET", "/api/v1/jobs/7", 200, JSON,
     job_body(status="failed", error={"code": "postfix_rejected", "detail": "x", "field": ""}),
     "is too short"),
    ("PUT", "/api/v1/settings?wait=0", 202, {**JSON, "Location": "/api/v1/jobs/7"},
     json.dumps({"id": 7, "status": "queued", "action": "settings.put",
                 "target": "settings"}).encode(), "is a required property"),
    ("PUT", "/api/v1/settings?wait=0", 202, JSON, job_body(), "header Location"),
    ("GET", "/api/v1/settings", 418, JSON, b"{}", "status 418 is not declared"),
    ("GET", "/api/v1/jobs/7", 200, {"Content-Type": "text/plain"}, b"x", "Content-Type text/plain"),
    ("GET", "/api/v1/jobs/7", 404, JSON, problem(404, "not_found"), "Content-Type application/json"),
    ("GET", "/api/v1/config", 200, JSON, json.dumps({
        "generation": 1, "managed": False, "main_cf": [], "tls_policy_map": None,
        "tls_policy": "", "drift": [], "tls_policy_map_drift": False}).encode(),
     "is not of type 'object'"),
    ("GET", "/api/v1/fleet", 200, JSON, b'{"items": [], "next": null}', "no operation"),
    ("DELETE", "/api/v1/status", 200, JSON, b"{}", "no operation"),
    ("GET", "/readyz", 503, {"Content-Type": "application/problem+json"},
     problem(503, "service_unavailable"), "header Retry-After is declared required"),
    ("GET", "/api/v1/openapi.yaml", 304, {}, b"", "header ETag is declared required"),
])
def test_validator_refuses_drift(method, path, status, headers, raw, why):
    with pytest.raises(contract.ContractError, match=re.escape(why)):
        contract.check(method, path, status, headers, raw)


@pytest.mark.parametrize("method,path,status,headers,raw", [
    ("GET", "/api/v1/jobs/7", 200, JSON, job_body()),
    ("GET", "/api/v1/jobs/7", 200, JSON,
     job_body(status="failed", error={"code": "postfix_rejected", "detail": "x"})),
    ("PUT", "/api/v1/settings?wait=0", 202, {**JSON, "Location": "/api/v1/jobs/7", "Job-Id": "7"},
     job_body()),
    ("GET", "/api/v1/jobs/x", 404, {"Content-Type": "application/problem+json"},
     problem(404, "not_found", detail="no job x")),
    ("GET", "/api/v1/fleet", 404, {"Content-Type": "application/problem+json"},
     problem(404, "not_found")),
    ("DELETE", "/api/v1/status", 405, {"Content-Type": "application/problem+json"},
     problem(405, "method_not_allowed")),
    ("HEAD", "/api/v1/settings", 200, {**JSON, "ETag": '"settings-1"'}, b""),
    ("GET", "/metrics", 200, {"Content-Type": "text/plain; version=0.0.4; charset=utf-8"},
     b"smtptlsd_up 1\n"),
])
def test_validator_passes_the_contract(method, path, status, headers, raw):
    contract.check(method, path, status, headers, raw)


def test_known_drift_names_its_owner():
    """Each allowed mismatch says whose work it is, so the lead can empty the list at merge."""
    ops = contract.contract().operations()
    for (method, template, status), why in contract.KNOWN_DRIFT.items():
        assert (method, template) in ops, f"KNOWN_DRIFT {method} {template}: no such operation"
        assert isinstance(status, int) and re.match(r"owner: \w+ - ", why), (method, template, why)


# == 2. the route table is the spec ===============================================================

def route_table():
    """{(METHOD, path)} of src/api/routes.c's api_routes[]."""
    with open(ROUTES) as f:
        text = f.read()
    text = re.sub(r"/\*.*?\*/|//[^\n]*", "", text, flags=re.S)
    table = text[text.index("api_routes[] = {"):]
    routes = set()
    for m in re.finditer(r'\{\s*"(/[^"]*)",\s*\{(.*?)\}\s*\},?\s*(?=\{\s*"/|\};)', table, re.S):
        for method in re.findall(r"\{\s*HTTP_([A-Z]+),", m.group(2)):
            routes.add((method, m.group(1)))
    return routes


def test_route_table_and_spec_are_the_same_set():
    routes = route_table()
    assert len(routes) >= 20, f"routes.c parsed to only {sorted(routes)}"
    spec = contract.contract().operations()
    assert routes - spec == set(), f"routes the spec does not declare: {sorted(routes - spec)}"
    assert spec - routes == set(), f"operations of the spec no route serves: {sorted(spec - routes)}"


# == 3. the lint ==================================================================================

def test_spec_lints_clean():
    redocly = os.path.join(LINT_DIR, "node_modules", ".bin", "redocly")
    assert os.path.exists(redocly), f"{redocly} missing: scripts/deps installs it (npm ci)"
    proc = subprocess.run([redocly, "lint", "--config", os.path.join(LINT_DIR, "redocly.yaml"),
                           "--format=stylish", SPEC], capture_output=True, text=True, timeout=300,
                          cwd=REPO_ROOT, env={**os.environ, "REDOCLY_TELEMETRY": "off",
                                              "REDOCLY_SUPPRESS_UPDATE_NOTICE": "true"})
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"redocly lint failed:\n{out}"
    problems = [line for line in out.splitlines() if re.search(r"\b(error|warning)\b", line)
                and not re.search(r"Deprecation warning|Node\.js", line)]
    assert problems == [], "redocly lint: " + "\n".join(problems)
    assert "valid" in out, out


# == 4. the daemon serves its spec ================================================================

def test_daemon_serves_its_own_spec(daemon):
    with open(SPEC, "rb") as f:
        spec = f.read()
    r = daemon.get("/api/v1/openapi.yaml", token=None)
    assert r.status == 200, r
    assert r.headers.get("Content-Type") == "application/yaml", r
    assert r.raw == spec, "the served spec is not api/openapi.yaml"
    tag = r.headers.get("ETag")
    assert re.fullmatch(r'"openapi-[0-9a-f]{16}"', tag), tag
    assert daemon.get("/api/v1/openapi.yaml").headers.get("ETag") == tag  # stable
    for none_match in (tag, f'"x", {tag}', f"W/{tag}", "*"):
        r = daemon.get("/api/v1/openapi.yaml", token=None, headers={"If-None-Match": none_match})
        assert r.status == 304 and r.raw == b"" and r.headers.get("ETag") == tag, (none_match, r)
    r = daemon.get("/api/v1/openapi.yaml", headers={"If-None-Match": '"openapi-0"'})
    assert r.status == 200 and r.raw == spec, r


# == 5. the replies that drifted ==================================================================

def assert_seconds(job):
    for key in ("created_at", "finished_at"):
        assert job[key] is None or SECONDS.match(job[key]), f"{key} {job[key]!r}: {job}"


def test_accepted_is_the_whole_job_and_failed_jobs_are_clean(make_policy_site):
    site = make_policy_site()
    d = site.d
    r = d.http("PUT", "/api/v1/tls-policies/.example.com?wait=0", {"level": "encrypt"})
    assert r.status == 202, r
    assert r.headers.get("Location") == f"/api/v1/jobs/{r.body['id']}", r
    assert r.body["status"] == "queued" and r.body["warnings"] == [], r
    assert_seconds(r.body)
    job = wait_until(lambda: (j := d.get(f"/api/v1/jobs/{r.body['id']}").body)["status"] == "applied"
                     and j, 60, "the job applied")
    same = ("id", "actor", "action", "target", "created_at")
    assert {k: job[k] for k in same} == {k: r.body[k] for k in same}, (job, r.body)
    assert job["action"] == "policies.put" and job["target"] == ".example.com", job
    assert_seconds(job)

    # a job that fails: a stale If-Match
    r = d.http("PUT", "/api/v1/tls-policies/.example.com", {"level": "may"},
               headers={"If-Match": '"policy-999999"'}, timeout=60)
    assert r.status == 412, r
    failed = d.get(f"/api/v1/jobs/{r.headers['Job-Id']}").body
    assert failed["status"] == "failed" and failed["warnings"] == [], failed
    assert failed["error"]["field"] == "If-Match", failed
    assert_seconds(failed)
    # a failure that names no field has no field member (not "")
    items = d.get("/api/v1/jobs?limit=1000").body["items"]
    for j in items:
        assert j["error"] is None or j["error"].get("field", "x") != "", j
        assert isinstance(j["warnings"], list), j
        assert_seconds(j)


def test_status_and_config_are_the_declared_shapes(make_policy_site):
    site = make_policy_site()
    d = site.d
    r = d.http("PUT", "/api/v1/tls-policies/.example.com", {"level": "encrypt"}, timeout=60)
    assert r.status in (200, 201), r
    job_id = int(r.headers["Job-Id"])

    st = d.get("/api/v1/status").body
    assert st["postfix"]["version"] == site.pf.param("mail_version"), st["postfix"]
    job = d.get(f"/api/v1/jobs/{job_id}").body
    # the same record (`verified` may be set meanwhile by the post-reload check)
    assert {**st["last_job"], "verified": None} == {**job, "verified": None}, (st["last_job"], job)

    cfg = d.get("/api/v1/config")
    # no version of its own (the drift is live): tagged by its bytes, as every GET is
    assert cfg.headers.get("ETag", "").startswith('"'), cfg
    body = cfg.body
    assert isinstance(body["main_cf"], dict), body
    assert body["tls_policy_map"] == body["main_cf"].get("smtp_tls_policy_maps"), body
    assert body["tls_policy_map"] and body["tls_policy_map"].split(":", 1)[0] in ("hash", "lmdb",
                                                                                    "cdb"), body
    assert re.search(r"^\.example\.com\s+encrypt", body["tls_policy"], re.M), body
    assert "tls_policy_map_drift" in body and "managed" in body, body


def test_rescan_reports_added_and_changed(make_site, certs):
    site = make_site(start=False)
    os.makedirs(site.live_dir)
    site.d.start()
    setup_tokens(site.d)
    mail = Lineage(site.live_dir, "mail")
    mail.create(acme_leaf(certs, "mail", 1))

    def rescans():
        # the watcher of the live directory may rescan first: count every rescan job
        return [j for j in site.jobs() if j["action"] == "certificates.rescan"
                and j["status"] == "applied"]

    def union(key):
        return sorted({n for j in rescans() for n in (j["after"] or {}).get(key, [])})

    summary = site.rescan()
    assert set(summary) >= {"added", "changed", "removed", "acme", "missing", "warnings"}, summary
    assert union("added") == ["mail"] and union("changed") == [], rescans()
    assert summary["changed"] == [] and summary["acme"] == ["mail"], summary

    mail.renew(acme_leaf(certs, "mail", 2))
    summary = site.rescan()
    assert summary["added"] == [], summary
    assert union("changed") == ["mail"], rescans()
    again = site.rescan()
    assert again["added"] == [] and again["changed"] == [], again
