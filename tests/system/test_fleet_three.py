# A fleet of three: three daemons (mx1, mx2, mx3), each managing a Postfix sandbox of its own, on
# one PostgreSQL of this module's own (not the session's: the last test restarts it). One fleet
# serves every test of the module (module-scoped, to keep the file quick); the tests run in file
# order: the first expects sandboxes without STARTTLS, the database restart comes last. It owns:
#  1. certificates: a settings write on node 1 binding an imported certificate (inbound may) is
#     served by every node's smtpd (STARTTLS, SHA-256 fingerprint); a second one bound replaces it
#     everywhere;
#  2. a policy written on node 2 is in every node's map, and every node lists all three nodes in
#     sync at one generation;
#  3. per node: a certificate bound on one node only (PUT /api/v1/nodes/{name}/settings) is served
#     there only, and an ACME certificate (per node) is bound only where it is;
#  4. PostgreSQL restarted under the running fleet: a write while it is away is 503 and changes no
#     node; once it is back, without a daemon restart, a write on one node converges on all three.
# The two-node registry and follower cases are tests/system/test_fleet.py's. Every wait is bounded
# (FAST: a 1 s heartbeat; a listener connects again after ~2 s). After each test every node is
# alive with no undeclared error line and no sanitizer report; the conftest's full after-test
# checks (fds, exit 0 on SIGTERM, ...) run once at the module's end.
import collections
import os
import time

import pytest

from tests.harness.daemon import Daemon
from tests.harness.pg import PostgresSandbox
from tests.harness.postfix import PostfixSandbox
from tests.harness.util import free_port, wait_until
from tests.system.conftest import base_config, check_daemon, setup_tokens
from tests.system.test_certificates import Lineage, acme_leaf, poll_served, served
from tests.system.test_contract_state import put_cert
from tests.system.test_fleet import map_query, node_config, nodes, share_tokens
from tests.system.test_foundation import DB_ERRORS, assert_problem, parse_metrics

HOST = "mx.test.example"  # the sandboxes' myhostname
NAMES = ("mx1", "mx2", "mx3")
FOLLOW = 15  # seconds for the other nodes to follow a committed write (NOTIFY, the 1 s poll)

Node = collections.namedtuple("Node", "name d pf")

# one fleet, one worker, file order: the tests build on each other's state (scripts/test runs
# pytest-xdist with --dist loadgroup)
pytestmark = pytest.mark.xdist_group("fleet_three")


@pytest.fixture(scope="module")
def fleet_pg(session_dir):
    """This module's PostgreSQL (the database-restart test stops it)."""
    sandbox = PostgresSandbox(os.path.join(session_dir, "fleet3-pg"), port=free_port())
    sandbox.start()
    yield sandbox
    sandbox.destroy()


@pytest.fixture(scope="module")
def fleet(session_dir, fleet_pg, certs):
    """Three started nodes [Node(name, d, pf)] on one database, all registered and in sync. The
    conftest's after-test checks of each daemon run at the module's end."""
    url = fleet_pg.create_database("fleet3")
    system_cert = certs.leaf("system", ("localhost",))
    made = []
    try:
        for name in NAMES:
            pf = PostfixSandbox(os.path.join(session_dir, f"fleet3-{name}-pf"))
            made.append(Node(name, None, pf))
            pf.start()
            workdir = os.path.join(session_dir, f"fleet3-{name}")
            cfg = base_config(workdir, url, system_cert)
            cfg.update(node_config(name, pf))
            d = Daemon(workdir, cfg, db_port=fleet_pg.port)
            made[-1] = Node(name, d, pf)
            d.start()
            if made[0].d is d:
                setup_tokens(d)
            else:
                share_tokens(d, made[0].d)
        wait_in_sync(made, generation=None, timeout=FOLLOW)
        yield made
    finally:
        problems = []
        for n in made:
            if n.d is not None:
                problems += [f"{n.name}: {p}" for p in check_daemon(n.d)]
            n.pf.stop()  # the files stay: session_dir is removed after a passing run
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture(autouse=True)
def nodes_fine(fleet):
    """After each test: every node still runs, with no undeclared <0>..<3> line and no sanitizer
    report in its log (the rest of the checks wait for the module's end)."""
    yield
    problems = []
    for n in fleet:
        mine = []
        if not n.d.alive():
            mine.append(f"{n.name} died (exit status {n.d.proc.returncode})")
        bad = n.d.unexpected_errors() + n.d.sanitizer_reports()
        if bad:
            mine.append(f"{n.name}: unexpected log lines:\n  " + "\n  ".join(bad[:20]))
        if mine:
            problems += mine + [f"--- {n.d.log_path} (tail) ---\n{n.d.log_tail(60)}"]
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


def generation(d):
    """The generation node d applied, which must be the one it desires (after its own write)."""
    st = d.get("/api/v1/status").body
    assert st["desired_generation"] == st["applied_generation"], st
    return st["applied_generation"]


def wait_in_sync(fleet, generation, timeout=FOLLOW):
    """Wait until every node lists all three nodes, each in_sync at `generation` (None: at one
    generation, whichever); returns the listing of the last node asked."""
    listing = None
    for n in fleet:
        def agreed(d=n.d, me=n.name):
            listed = nodes(d)
            gens = {x["applied_generation"] for x in listed.values()}
            ok = (sorted(listed) == sorted(NAMES)
                  and all(x["state"] == "in_sync" for x in listed.values())
                  and len(gens) == 1 and (generation is None or gens == {generation})
                  and [x["name"] for x in listed.values() if x["self"]] == [me])
            return listed if ok else None
        try:
            listing = wait_until(agreed, timeout, f"{n.name} to list the fleet in sync")
        except TimeoutError:
            raise AssertionError(f"{n.name} lists {nodes(n.d)} {timeout}s after the write "
                                 f"(expected all three in_sync at generation {generation})")
    return listing


def wait_map(fleet, key, value, timeout=FOLLOW):
    """Wait until `postmap -q key` gives value in every node's policy map."""
    for n in fleet:
        try:
            wait_until(lambda pf=n.pf: map_query(pf, key) == value, timeout,
                       f"{key} in {n.name}'s map")
        except TimeoutError:
            raise AssertionError(f"{n.name}'s map has {key} -> {map_query(n.pf, key)!r} "
                                 f"{timeout}s after the write (expected {value!r})")


def put_policy(d, destination, body):
    r = d.http("PUT", f"/api/v1/tls-policies/{destination}", body, timeout=60)
    assert r.status in (200, 201), r
    return r


def reloads_of(d):
    samples, _ = parse_metrics(d.get("/metrics").body)
    return samples.get(("smtptlsd_postfix_reloads_total", frozenset({("result", "ok")})), 0)


# == 1. certificates ===============================================================================
def test_a_certificate_bound_on_node_1_is_served_by_every_node(fleet, certs):
    one, two, three = fleet
    first, second = certs.leaf("fleet-a", (HOST,)), certs.leaf("fleet-b", (HOST,))
    assert {served(n.pf.port) for n in fleet} == {None}, "the sandboxes start without STARTTLS"

    put_cert(one.d, "fleet-a", first)
    r = one.d.http("PUT", "/api/v1/settings",
                   {"mode": "none", "inbound_mode": "may", "certificate": "fleet-a"}, timeout=60)
    assert r.status == 200, r
    assert served(one.pf.port) == first.fingerprint(), "node 1 serves it when the write returns"
    for n in (two, three):
        poll_served(n.pf.port, first.fingerprint(), FOLLOW)
    wait_in_sync(fleet, r.body["generation"])

    # the second certificate imported on node 3, bound on node 1 by a merge patch
    put_cert(three.d, "fleet-b", second)
    r = one.d.http("PATCH", "/api/v1/settings", {"certificate": "fleet-b"}, timeout=60,
                   content_type="application/merge-patch+json")
    assert r.status == 200, r
    assert r.body["certificate"] == "fleet-b" and r.body["inbound_mode"] == "may", r.body
    for n in fleet:
        poll_served(n.pf.port, second.fingerprint(), FOLLOW)
        # and a verifying client of its own (openssl s_client, the test CA) agrees
        assert n.pf.served_certificate(servername=HOST, cafile=certs.ca().cert) == \
            second.fingerprint(), n.name
    wait_in_sync(fleet, r.body["generation"])


# == 2. policies ===================================================================================
def test_a_policy_written_on_node_2_is_in_every_map_and_every_node_lists_the_fleet_in_sync(fleet):
    one, two, three = fleet
    put_policy(two.d, "three.example", {"level": "encrypt"})
    assert map_query(two.pf, "three.example") == "encrypt", "node 2 applied before answering"
    gen = generation(two.d)
    wait_map(fleet, "three.example", "encrypt")
    listing = wait_in_sync(fleet, gen)
    assert all(x["version"] and x["started_at"] and x["detail"] == "" for x in listing.values()), \
        listing
    for n in fleet:
        fleet_status = n.d.get("/api/v1/status").body["fleet"]
        assert fleet_status["nodes"] == 3 and fleet_status["unreachable"] == 0, \
            (n.name, fleet_status)


# == 3. per node ===================================================================================
def test_a_node_binds_a_certificate_of_its_own_served_there_only(fleet, certs):
    """PUT /api/v1/nodes/mx2/settings on node 1 (?wait=fleet): node 2 serves its own certificate,
    the others the settings'; the hostname warning is computed against node 2's myhostname; the
    registry shows the binding and what node 2 serves; the job says where it is live; DELETE puts
    node 2 back on the settings' certificate."""
    one, two, three = fleet
    bound = one.d.get("/api/v1/settings").body["certificate"]
    shared = one.d.get(f"/api/v1/certificates/{bound}").body["sha256_fingerprint"]
    own = certs.leaf("mx2-own", ("mx2.test.example",))
    put_cert(one.d, "mx2-own", own)
    r = one.d.http("PUT", "/api/v1/nodes/mx2/settings?wait=fleet", {"certificate": "mx2-own"},
                   timeout=60)
    assert r.status == 201 and r.headers["Location"] == "/api/v1/nodes/mx2/settings", r
    assert r.body["certificate"] == "mx2-own" and r.body["additional_certificate"] is None, r.body
    etag = r.headers["ETag"]
    assert one.d.get("/api/v1/nodes/mx2/settings").headers["ETag"] == etag
    assert any(w["code"] == "hostname_mismatch" and "mx2" in w["detail"] and HOST in w["detail"]
               for w in r.body.get("warnings", [])), r.body
    fleet_outcome = r.body["fleet"]
    assert fleet_outcome["complete"] is True, fleet_outcome
    assert {n["name"]: n["outcome"] for n in fleet_outcome["nodes"]} == \
        dict.fromkeys(NAMES, "applied"), fleet_outcome
    # applied everywhere when the reply came: node 2 serves its own, the others the settings'
    poll_served(two.pf.port, own.fingerprint(), FOLLOW)
    assert served(one.pf.port) == shared and served(three.pf.port) == shared
    # (a check of the generation before, run after this one's files were live, may be recorded
    # first: it saw the new certificate where it expected the old, verified false; this
    # generation's check follows it)
    mx2 = wait_until(lambda: (n := nodes(three.d)["mx2"])["served"]["fingerprint"] ==
                     own.fingerprint() and n["served"]["verified"] is True and n, FOLLOW,
                     "mx2's verifier saw its own certificate, verified")
    assert mx2["settings"] == {"certificate": "mx2-own", "additional_certificate": None}, mx2
    assert mx2["myhostname"] == HOST, mx2
    assert nodes(three.d)["mx1"]["settings"] is None
    job = one.d.get(f"/api/v1/jobs/{r.headers['Job-Id']}").body
    assert job["action"] == "nodes.settings.put" and job["fleet"]["complete"], job
    # bound on a node: in use, so not deletable
    assert one.d.get("/api/v1/certificates/mx2-own").body["in_use"] is True
    assert_problem(one.d.http("DELETE", "/api/v1/certificates/mx2-own"), 409,
                   "certificate_in_use")
    # bad bindings change nothing
    assert_problem(one.d.http("PUT", "/api/v1/nodes/mx2/settings", {"certificate": "nope"}),
                   422, "certificate_not_found", "/certificate")
    assert_problem(one.d.http("PUT", "/api/v1/nodes/mx2/settings", {}), 422, "missing_field",
                   "/certificate")
    assert_problem(one.d.http("PUT", "/api/v1/nodes/mx9/settings", {"certificate": "mx2-own"}),
                   404, "not_found")
    assert one.d.get("/api/v1/nodes/mx2/settings").body["certificate"] == "mx2-own"
    # the same binding again: applied, unchanged (no generation, the same ETag)
    r = one.d.http("PUT", "/api/v1/nodes/mx2/settings", {"certificate": "mx2-own"},
                   headers={"If-Match": etag})
    assert r.status == 200 and r.headers["ETag"] == etag, r
    assert_problem(one.d.http("DELETE", "/api/v1/nodes/mx2/settings",
                              headers={"If-Match": '"node-settings-1"'}), 412,
                   "precondition_failed")
    # back to the settings' certificate; the wait for the fleet ends when every node applied it
    started = time.monotonic()
    r = three.d.http("DELETE", "/api/v1/nodes/mx2/settings?wait=fleet", timeout=60,
                     headers={"If-Match": etag})
    assert r.status == 204, r
    assert time.monotonic() - started < 5, "a deletion waited for the fleet's timeout"
    job = three.d.get(f"/api/v1/jobs/{r.headers['Job-Id']}").body
    assert job["fleet"]["complete"] is True, job
    poll_served(two.pf.port, shared, FOLLOW)
    assert one.d.get("/api/v1/nodes/mx2/settings").body == \
        {"node": "mx2", "certificate": None, "additional_certificate": None}
    assert one.d.get("/api/v1/certificates/mx2-own").body["in_use"] is False
    wait_in_sync(fleet, None)  # every node at one generation: no lag anywhere
    samples, _ = parse_metrics(one.d.get("/metrics").body)
    assert samples[("smtptlsd_fleet_nodes", frozenset({("state", "in_sync")}))] == 3, samples
    assert samples[("smtptlsd_fleet_nodes", frozenset({("state", "unreachable")}))] == 0
    for name in NAMES:
        assert samples[("smtptlsd_fleet_node_generation_lag",
                        frozenset({("node", name)}))] == 0, (name, samples)


def test_an_acme_certificate_is_bound_only_where_it_is(fleet, certs):
    """An ACME lineage in node 1's live directory only: the list says so, binding it for every
    node is refused naming the nodes that lack it, binding it on node 2 is refused, binding it
    on node 1 alone is served there."""
    one, two, three = fleet
    acme = acme_leaf(certs, "fleet", 1)
    Lineage(one.d.config["acme_live_directory"], "fleet-acme").create(acme)
    assert one.d.http("POST", "/api/v1/certificates/rescan", timeout=60).status == 200
    for n in fleet:
        assert n.d.get("/api/v1/certificates/fleet-acme").body["nodes"] == ["mx1"]
    r = one.d.http("PATCH", "/api/v1/settings", {"certificate": "fleet-acme"},
                   content_type="application/merge-patch+json", timeout=60)
    assert_problem(r, 409, "certificate_not_on_node", "/certificate")
    assert "mx2, mx3" in r.body["detail"], r.body
    assert_problem(two.d.http("PUT", "/api/v1/nodes/mx2/settings", {"certificate": "fleet-acme"}),
                   409, "certificate_not_on_node", "/certificate")
    # a rescan on a node without it keeps it (it is still node 1's)
    assert three.d.http("POST", "/api/v1/certificates/rescan", timeout=60).status == 200
    assert one.d.get("/api/v1/certificates/fleet-acme").body["nodes"] == ["mx1"]
    r = two.d.http("PUT", "/api/v1/nodes/mx1/settings?wait=fleet", {"certificate": "fleet-acme"},
                   timeout=60)
    assert r.status == 201 and r.body["fleet"]["complete"], r
    poll_served(one.pf.port, acme.fingerprint(), FOLLOW)
    # a policy written elsewhere: node 1 follows it without reloading for its ACME certificate
    reloads = reloads_of(one.d)
    put_policy(two.d, "acme-follow.example?wait=fleet", {"level": "may"})
    assert map_query(one.pf, "acme-follow.example") == "may"
    assert reloads_of(one.d) == reloads, "a policy made node 1 reload"
    r = two.d.http("DELETE", "/api/v1/nodes/mx1/settings?wait=fleet", timeout=60)
    assert r.status == 204, r
    bound = one.d.get("/api/v1/settings").body["certificate"]
    poll_served(one.pf.port, one.d.get(f"/api/v1/certificates/{bound}").body["sha256_fingerprint"],
                FOLLOW)

    # the settings may bind it once every node that follows them has it: nodes 2 and 3 bind their
    # own; then node 2 cannot go back to the settings' binding, and other settings writes go on
    for name in ("mx2", "mx3"):
        r = one.d.http("PUT", f"/api/v1/nodes/{name}/settings", {"certificate": bound},
                       timeout=60)
        assert r.status == 201, r
    r = one.d.http("PATCH", "/api/v1/settings?wait=fleet", {"certificate": "fleet-acme"},
                   content_type="application/merge-patch+json", timeout=60)
    assert r.status == 200 and r.body["fleet"]["complete"], r
    poll_served(one.pf.port, acme.fingerprint(), FOLLOW)
    assert_problem(one.d.http("DELETE", "/api/v1/nodes/mx2/settings"), 409,
                   "certificate_not_on_node", "/certificate")
    r = three.d.http("PATCH", "/api/v1/settings", {"loglevel": 2}, timeout=60,
                     content_type="application/merge-patch+json")
    assert r.status == 200, r
    # back as it was
    r = one.d.http("PATCH", "/api/v1/settings", {"certificate": bound, "loglevel": 1},
                   content_type="application/merge-patch+json", timeout=60)
    assert r.status == 200, r
    for name in ("mx2", "mx3"):
        assert one.d.http("DELETE", f"/api/v1/nodes/{name}/settings?wait=fleet",
                          timeout=60).status == 204

    # node 2 gets a lineage of that name of its own (each node runs certbot): both have it, each
    # watches its own copy's expiry, and a scan on node 1 does not take the row back to its copy
    assert 'name="fleet-acme"' in one.d.get("/metrics").body
    assert 'name="fleet-acme"' not in two.d.get("/metrics").body, "not node 2's to watch"
    own = acme_leaf(certs, "fleet", 2)
    Lineage(two.d.config["acme_live_directory"], "fleet-acme").create(own)
    summary = two.d.http("POST", "/api/v1/certificates/rescan", timeout=60).body
    assert summary["changed"] == ["fleet-acme"], summary
    assert one.d.get("/api/v1/certificates/fleet-acme").body["nodes"] == ["mx1", "mx2"]
    # each node's own copy, as its scan found it
    copies = {c["node"]: c for c in one.d.get("/api/v1/certificates/fleet-acme").body["copies"]}
    assert set(copies) == {"mx1", "mx2"}, copies
    assert copies["mx1"]["sha256_fingerprint"] == acme.fingerprint(), copies
    assert copies["mx2"]["sha256_fingerprint"] == own.fingerprint(), copies
    assert all(c["not_after"] and c["not_after"].endswith("Z") for c in copies.values()), copies
    summary = one.d.http("POST", "/api/v1/certificates/rescan", timeout=60).body
    assert summary["changed"] == [] and summary["added"] == [], summary
    assert one.d.get("/api/v1/certificates/fleet-acme").body["sha256_fingerprint"] == \
        own.fingerprint(), "the row follows the copy that changed last"
    assert 'name="fleet-acme"' in two.d.get("/metrics").body


# == 4. the database restarted =====================================================================
def test_after_a_database_restart_a_write_converges_without_restarting_a_daemon(fleet, fleet_pg):
    one, two, three = fleet
    pids = [n.d.pid for n in fleet]
    for n in fleet:
        n.d.expect_error(DB_ERRORS)  # while the database is away: connections fail, and say so
    put_policy(one.d, "before-restart.example", {"level": "may"})
    wait_map(fleet, "before-restart.example", "may")

    fleet_pg.stop()
    r = two.d.http("PUT", "/api/v1/tls-policies/during-outage.example", {"level": "encrypt"})
    assert_problem(r, 503, "service_unavailable")
    assert all(map_query(n.pf, "before-restart.example") == "may" for n in fleet), \
        "a node changed its Postfix while the database was away"
    fleet_pg.start(keep_port=True)

    for n in fleet:
        wait_until(lambda d=n.d: d.get("/readyz", token=None).status == 200, 20,
                   f"{n.name} ready again after the database came back")
    put_policy(three.d, "after-restart.example", {"level": "encrypt"})
    gen = generation(three.d)
    wait_map(fleet, "after-restart.example", "encrypt")
    wait_in_sync(fleet, gen)
    assert all(map_query(n.pf, "during-outage.example") is None for n in fleet), \
        "the write refused while the database was away was applied after all"
    assert [n.d.pid for n in fleet] == pids and all(n.d.alive() for n in fleet), \
        "a daemon was restarted"
