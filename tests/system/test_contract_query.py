# System tests of the query side of the contract (issue 11), black box against the real daemon,
# PostgreSQL and a Postfix sandbox:
#  1. the route table (src/api/routes.c) and api/openapi.yaml declare the same query parameters
#     for every operation;
#  2. a query parameter an operation does not take (a typo, ?probe, one of another route) is 422
#     unknown_parameter naming it and what the route takes, a repeated one 422 invalid_value, and
#     neither changes anything;
#  3. ?dry_run=true on POST /api/v1/tokens and DELETE /api/v1/tokens/{name} answers a plan and
#     creates or revokes nothing;
#  4. paging cursors are opaque and checked: a made-up, edited, old-form or other list's cursor is
#     422 invalid_value on `after`; one past the end is an empty page;
#  5. If-Match: malformed is 422 invalid_value naming If-Match (no job); weak tags are 412 saying
#     they never match; `*` and the current tag go through;
#  6. GET /api/v1/jobs filters (status, actor, action, target, since), validated and combined
#     with paging.
# Contract: api/openapi.yaml ("Conventions", "Concurrency", the parameters of each operation).
import base64
import os
import re
import urllib.parse

import pytest
import yaml

from tests.harness.util import REPO_ROOT
from tests.system.test_foundation import assert_problem
from tests.system.test_policies import make_policy_site, policy_cursor, qd  # noqa: F401 (fixture)

POLICIES = "/api/v1/tls-policies"
JOBS = "/api/v1/jobs"
TOKENS = "/api/v1/tokens"


@pytest.fixture
def site(make_policy_site):
    return make_policy_site()


def job_count(site):
    return int(site.sql("SELECT count(*) FROM jobs"))


# == 1. the route table and the spec take the same parameters ======================================
def table_parameters():
    """{(path, method): {query parameter names}} from routes.c, http.h's macros and router.c's
    table of names."""
    src = lambda p: open(os.path.join(REPO_ROOT, p)).read()  # noqa: E731
    names = dict(re.findall(r'\{ (QUERY_[A-Z_]+), "([a-z_]+)", (?:true|false) \}',
                            src("src/http/router.c")))
    assert len(names) >= 14, names
    macros = {m: set(re.findall(r"QUERY_[A-Z_]+", v)) for m, v in
              re.findall(r"#define (QUERY_[A-Z]+) \(([^)]*)\)", src("src/http/http.h"))}

    def expand(expr):
        out = set()
        for bit in re.findall(r"QUERY_[A-Z_]+", expr):
            out |= {names[b] for b in macros[bit]} if bit in macros else {names[bit]}
        return out

    table = {}
    text = re.sub(r"\s+", " ", src("src/api/routes.c"))
    for path, ops in re.findall(r'\{ "(/[^"]*)", \{ (.*?) \} \}', text):
        # { HTTP_GET, handler, scope, body, query, cached stamp }
        for method, query in re.findall(
                r"\{ HTTP_([A-Z]+), \w+, \w+, [A-Z_| ]+?, ([A-Z_| 0]+?), \w+ \}", ops + " }"):
            table[(path, method.lower())] = expand(query)
    assert ("/api/v1/jobs", "get") in table and len(table) >= 20, table
    return table


def spec_parameters(spec, path, method):
    def resolve(p):
        while "$ref" in p:
            node = spec
            for part in p["$ref"].lstrip("#/").split("/"):
                node = node[part]
            p = node
        return p

    item = spec["paths"][path]
    params = [resolve(p) for p in item.get("parameters", []) + item[method].get("parameters", [])]
    return {p["name"] for p in params if p["in"] == "query"}


def test_route_table_and_spec_declare_the_same_query_parameters():
    with open(os.path.join(REPO_ROOT, "api", "openapi.yaml")) as f:
        spec = yaml.safe_load(f)
    differ = {}
    for (path, method), accepted in table_parameters().items():
        if path not in spec["paths"] or method not in spec["paths"][path]:
            continue  # the set of paths is another test's (the route table vs the spec)
        declared = spec_parameters(spec, path, method)
        if declared != accepted:
            differ[f"{method.upper()} {path}"] = {"route table": sorted(accepted),
                                                  "spec": sorted(declared)}
    assert not differ, differ


def test_job_action_filter_takes_the_actions_the_spec_declares():
    with open(os.path.join(REPO_ROOT, "api", "openapi.yaml")) as f:
        spec = yaml.safe_load(f)
    # the worker's table of actions is the one list of them (api/jobs.c checks ?action= by it)
    with open(os.path.join(REPO_ROOT, "src", "apply", "action.c")) as f:
        table = re.findall(r'^\s*\{ "([a-z_.]+)", action_', f.read(), re.M)
    declared = spec["components"]["schemas"]["Job"]["properties"]["action"]["enum"]
    param = [p for p in spec["paths"]["/api/v1/jobs"]["get"]["parameters"]
             if p.get("name") == "action"][0]["schema"]["enum"]
    assert table == declared == param


# == 2. unknown and repeated parameters are refused, changing nothing ==============================
def test_unknown_or_repeated_query_parameters_are_refused_and_change_nothing(site):
    d = site.d
    site.put_ok("a.example", {"level": "may"})
    before, jobs = site.rows(), job_count(site)
    gen = site.generation()

    refused = [
        # the typo of issue 11: it used to be a real write
        ("PUT", f"{POLICIES}/{qd('b.example')}?dryrun=true", {"level": "encrypt"}, "dryrun"),
        # the probe guard is the policy writes' (PUT, POST, PATCH): a delete has nothing to probe
        ("DELETE", f"{POLICIES}/{qd('a.example')}?probe=true", None, "probe"),
        ("PATCH", "/api/v1/settings?force=true", {"mode": "may"}, "force"),
        ("DELETE", f"{POLICIES}/{qd('a.example')}?dry-run=true", None, "dry-run"),
        # a parameter of another operation
        ("PUT", f"{POLICIES}?manager=domains", {"items": []}, "manager"),
        ("PUT", f"{POLICIES}/{qd('a.example')}?limit=5", {"level": "encrypt"}, "limit"),
        ("PATCH", "/api/v1/settings?q=x", {"mode": "may"}, "q"),
        # escaped or differently cased names are not the parameter
        ("PUT", f"{POLICIES}/{qd('b.example')}?dry%5Frun=true", {"level": "encrypt"}, "dry%5Frun"),
        ("PUT", f"{POLICIES}/{qd('b.example')}?DRY_RUN=true", {"level": "encrypt"}, "DRY_RUN"),
        ("POST", f"{TOKENS}?wait=0", {"name": "x1", "scope": "read"}, "wait"),
        ("DELETE", f"{TOKENS}/reader?wait=0", None, "wait"),
        # reads too
        ("GET", f"{POLICIES}?levle=may", None, "levle"),
        ("GET", f"{JOBS}?state=failed", None, "state"),
        ("GET", "/api/v1/settings?dry_run=true", None, "dry_run"),
        ("GET", "/api/v1/certificates?limit=1", None, "limit"),
        ("GET", "/api/v1/status?verbose=1", None, "verbose"),
    ]
    for method, path, body, name in refused:
        r = d.http(method, path, body)
        assert_problem(r, 422, "unknown_parameter", field=name)
        assert f"'{name}'" in r.body["detail"], r
        assert "Job-Id" not in r.headers, r
    # the detail says what the operation takes
    r = d.http("PUT", f"{POLICIES}/{qd('b.example')}?dryrun=true", {"level": "encrypt"})
    assert "accepts wait, dry_run, manager, probe, force" in r.body["detail"], r
    r = d.get("/api/v1/status?x=1")
    assert "accepts none" in r.body["detail"], r
    # /healthz takes none either (and needs no token)
    assert_problem(d.get("/healthz?x=1", token=None), 422, "unknown_parameter", field="x")
    assert d.get("/healthz", token=None).status == 200
    # authentication comes first
    assert_problem(d.get(f"{POLICIES}?levle=may", token=None), 401, "unauthorized")

    # a parameter twice: refused, whatever the values
    for method, path, body, name in [
        ("GET", f"{POLICIES}?limit=1&limit=2", None, "limit"),
        ("GET", f"{POLICIES}?limit=1&limit=1", None, "limit"),
        ("PUT", f"{POLICIES}/{qd('b.example')}?dry_run=true&dry_run=false", {"level": "may"},
         "dry_run"),
        ("PUT", f"{POLICIES}/{qd('b.example')}?wait=5&dry_run=true&wait=0", {"level": "may"},
         "wait"),
    ]:
        r = d.http(method, path, body)
        assert_problem(r, 422, "invalid_value", field=name)
        assert "more than once" in r.body["detail"], r

    assert site.rows() == before and job_count(site) == jobs and site.generation() == gen
    assert d.get(f"{POLICIES}/{qd('b.example')}").status == 404
    assert d.get(f"{TOKENS}").status == 200 and \
        [t["name"] for t in d.get(TOKENS).body["items"]] == ["admin", "reader"]

    # what the operations declare still works
    r = d.get(f"{POLICIES}?limit=1&level=may&managed=false&q=a")
    assert r.status == 200 and [p["destination"] for p in r.body["items"]] == ["a.example"], r
    r = site.put("b.example", {"level": "encrypt"}, query="?dry_run=true&wait=5")
    assert r.status // 100 == 2 and "plan" in r.body, r  # the status is helper "versions"'s
    r = site.put("b.example", {"level": "encrypt"}, query="?wait=30")
    assert r.status == 201, r


# == 3. ?dry_run=true on tokens ====================================================================
def test_token_dry_runs_create_and_revoke_nothing(site):
    d = site.d
    tokens = site.sql("SELECT count(*) || ':' || count(revoked_at) FROM tokens")

    r = d.http("POST", f"{TOKENS}?dry_run=true", {"name": "ci", "scope": "write"})
    assert r.status == 200, r
    assert r.body == {"plan": {"valid": True, "main_cf": [], "tls_policy_diff": "",
                               "reload": False, "postmap": False, "warnings": [], "errors": [],
                               "action": "token.create",
                               "token": {"name": "ci", "scope": "write"}}}, r
    assert b"stk_" not in r.raw and "Location" not in r.headers, r
    # the same refusals as the real thing
    assert_problem(d.http("POST", f"{TOKENS}?dry_run=true", {"name": "reader", "scope": "read"}),
                   409, "duplicate_name", field="/name")
    assert_problem(d.http("POST", f"{TOKENS}?dry_run=true", {"name": "Bad Name", "scope": "read"}),
                   422, "invalid_name", field="/name")
    assert_problem(d.http("POST", f"{TOKENS}?dry_run=true", {"name": "x", "scope": "root"}),
                   422, "invalid_value", field="/scope")
    assert_problem(d.http("POST", f"{TOKENS}?dry_run=maybe", {"name": "x", "scope": "read"}),
                   422, "invalid_value", field="dry_run")

    r = d.http("DELETE", f"{TOKENS}/reader?dry_run=true")
    assert r.status == 200, r
    assert r.body["plan"]["action"] == "token.revoke" and \
        r.body["plan"]["token"] == {"name": "reader", "scope": "read"}, r
    assert_problem(d.http("DELETE", f"{TOKENS}/nobody?dry_run=true"), 404, "not_found")

    # nothing was written: the reader token still works, no token "ci" exists
    assert site.sql("SELECT count(*) || ':' || count(revoked_at) FROM tokens") == tokens
    assert d.get("/api/v1/settings", token=d.read_token).status == 200
    assert [t["name"] for t in d.get(TOKENS).body["items"]] == ["admin", "reader"]
    # without dry_run they do what they say
    r = d.http("POST", TOKENS, {"name": "ci", "scope": "write"})
    assert r.status == 201 and r.body["token"].startswith("stk_"), r
    assert d.http("DELETE", f"{TOKENS}/ci?dry_run=false").status == 204


# == 4. opaque, checked cursors =====================================================================
def test_paging_cursors_are_opaque_and_checked(site):
    d = site.d
    dests = [f"p{i}.example" for i in range(5)]
    r = site.bulk([{"destination": x, "level": "may"} for x in dests[1:]])
    assert r.status == 200, r
    site.put_ok(dests[0], {"level": "may"})  # a second job, for a jobs cursor

    seen, after, cursors = [], None, []
    while True:
        r = d.get(f"{POLICIES}?limit=2" + (f"&after={after}" if after else ""))
        assert r.status == 200, r
        seen += [p["destination"] for p in r.body["items"]]
        after = r.body["next"]
        if not after:
            break
        assert re.fullmatch(r"[A-Za-z0-9_-]+", after) and "example" not in after, after
        cursors.append(after)
    assert seen == dests and len(cursors) == 2
    # the form src/core/cursor.c documents
    assert cursors[0] == policy_cursor("p1.example")

    raw = base64.urlsafe_b64decode(cursors[0] + "==")
    edited = base64.urlsafe_b64encode(raw.replace(b"p1.", b"p3.")).decode().rstrip("=")
    for bad in ["zzz", "", "p1.example",  # made up, empty, the old form (the raw destination)
                cursors[0][:-3],  # cut short
                edited,  # edited
                policy_cursor("not a destination"),  # checked, but not a destination
                policy_cursor("P1.EXAMPLE"),  # not the stored (lowercase) form
                "%2B%2F"]:
        r = d.get(f"{POLICIES}?after={bad}")
        assert_problem(r, 422, "invalid_value", field="after")
        assert "cursor" in r.body["detail"], r
    # a cursor of another list
    jobs = d.get(f"{JOBS}?limit=1")
    assert jobs.status == 200 and jobs.body["next"], jobs
    r = d.get(f"{POLICIES}?after={jobs.body['next']}")
    assert_problem(r, 422, "invalid_value", field="after")
    assert "another list" in r.body["detail"], r
    assert_problem(d.get(f"{JOBS}?after={cursors[0]}"), 422, "invalid_value", field="after")
    assert_problem(d.get(f"{JOBS}?after=1"), 422, "invalid_value", field="after")
    # past the end: an empty page
    r = d.get(f"{POLICIES}?after={policy_cursor('zzz.example')}")
    assert r.status == 200 and r.body == {"items": [], "next": None}, r


# == 5. If-Match: malformed, weak, current ==========================================================
def test_malformed_if_match_is_422_and_weak_tags_never_match(site):
    d = site.d
    r = site.put_ok("a.example", {"level": "may"})
    tag = r.headers["ETag"]
    before, jobs = site.rows(), job_count(site)
    for bad in [tag.strip('"'), '"' + tag.strip('"'), "W/" + tag.strip('"'), f"*, {tag}",
                f"{tag} {tag}", "garbage", ","]:
        for call in (lambda h: site.put("a.example", {"level": "encrypt"}, headers=h),
                     lambda h: site.patch("a.example", {"level": "encrypt"}, headers=h),
                     lambda h: site.delete("a.example", headers=h),
                     lambda h: site.bulk([], headers=h),
                     lambda h: d.http("PATCH", "/api/v1/settings", {"mode": "none"}, headers=h)):
            r = call({"If-Match": bad})
            assert_problem(r, 422, "invalid_value", field="If-Match")
            assert "malformed" in r.body["detail"] and '"policy-42"' in r.body["detail"], r
            assert "Job-Id" not in r.headers, r
    assert site.rows() == before and job_count(site) == jobs

    # a well-formed weak tag: 412, saying weak tags never match (the job records it)
    r = site.put("a.example", {"level": "encrypt"}, headers={"If-Match": "W/" + tag})
    assert_problem(r, 412, "precondition_failed", field="If-Match")
    assert "weak" in r.body["detail"] and "never match" in r.body["detail"], r
    assert "changed since" not in r.body["detail"], r
    # a stale tag still says it changed
    r = site.put("a.example", {"level": "encrypt"}, headers={"If-Match": '"policy-1"'})
    assert_problem(r, 412, "precondition_failed", field="If-Match")
    assert "changed since" in r.body["detail"], r
    assert site.rows() == before
    # `*`, the current tag, and a list holding it (with a weak one) go through
    r = site.put("a.example", {"level": "encrypt"}, headers={"If-Match": "*"})
    assert r.status == 200, r
    tag = r.headers["ETag"]
    r = site.patch("a.example", {"note": "x"}, headers={"If-Match": f'W/"x", {tag}'})
    assert r.status == 200, r


# == 6. job list filters =============================================================================
def jobs_of(d, query):
    """Every job the filter gives, following `next` with pages of 1 (the filter must hold on
    every page)."""
    out, after = [], None
    while True:
        r = d.get(f"{JOBS}?limit=1&{query}" + (f"&after={after}" if after else ""))
        assert r.status == 200, r
        out += r.body["items"]
        after = r.body["next"]
        if not after:
            return out


def test_job_list_filters_combine_with_paging(site):
    d = site.d
    ci = d.add_token("ci", "write")
    site.put_ok("a.example", {"level": "may"})
    site.put_ok("b.example", {"level": "may"}, token=ci)
    r = site.patch("a.example", {"note": "x"}, token=ci)
    assert r.status == 200, r
    r = site.put("a.example", {"level": "may"}, headers={"If-Match": '"policy-1"'}, token=ci)
    assert r.status == 412, r
    every = d.get(f"{JOBS}?limit=1000").body["items"]
    assert len(every) == 4, every
    ids = lambda jobs: [j["id"] for j in jobs]  # noqa: E731

    by_ci = jobs_of(d, "actor=ci")
    assert ids(by_ci) == ids([j for j in every if j["actor"] == "ci"]) and len(by_ci) == 3
    on_a = jobs_of(d, "target=" + urllib.parse.quote(every[-1]["target"]))
    assert ids(on_a) == ids([j for j in every if j["target"] == every[-1]["target"]])
    assert len(on_a) == 3
    failed = jobs_of(d, "status=failed")
    assert len(failed) == 1 and failed[0]["error"]["code"] == "precondition_failed", failed
    assert ids(jobs_of(d, "status=applied&actor=ci")) == ids(by_ci[1:])
    # action takes Job.action's names, the names the jobs are recorded under
    assert len(jobs_of(d, "action=policies.put")) == 3
    assert ids(jobs_of(d, "action=policies.patch&actor=ci")) == [by_ci[1]["id"]]
    assert jobs_of(d, "action=policies.delete") == []
    # since: at or after; any offset
    first = every[-1]["created_at"]
    assert len(jobs_of(d, "since=" + urllib.parse.quote(first))) == 4
    assert jobs_of(d, "since=2999-01-01T00:00:00Z") == []
    assert len(jobs_of(d, "since=2000-01-01T02:00:00%2B02:00")) == 4

    for name, value in [("status", "done"), ("status", "Applied"), ("action", "tls_policy.put"),
                        ("action", "x"), ("since", "yesterday"), ("since", "2026-11-22"),
                        ("since", "2026-11-22T10:00:00"), ("since", "2026-02-30T00:00:00Z"),
                        ("actor", "Not%20A%20Name"), ("target", ""), ("status", ""),
                        ("since", "1960-01-01T00:00:00Z")]:
        r = d.get(f"{JOBS}?{name}={value}")
        assert_problem(r, 422, "invalid_value", field=name)
        assert name in r.body["detail"], r
