# A fleet of three: three daemons (mx1, mx2, mx3), each managing a Postfix sandbox of its own, on
# one PostgreSQL of this module's own (not the session's: the last test restarts it). One fleet
# serves every test of the module (module-scoped, to keep the file quick); the tests run in file
# order: the first expects sandboxes without STARTTLS, the database restart comes last. It owns:
#  1. certificates: a settings write on node 1 binding an imported certificate (inbound may) is
#     served by every node's smtpd (STARTTLS, SHA-256 fingerprint); a second one bound replaces it
#     everywhere;
#  2. a policy written on node 2 is in every node's map, and every node lists all three nodes in
#     sync at one generation;
#  3. PostgreSQL restarted under the running fleet: a write while it is away is 503 and changes no
#     node; once it is back, without a daemon restart, a write on one node converges on all three.
# The two-node registry and follower cases are tests/system/test_fleet.py's. Every wait is bounded
# (FAST: a 1 s heartbeat; a listener connects again after ~2 s). After each test every node is
# alive with no undeclared error line and no sanitizer report; the conftest's full after-test
# checks (fds, exit 0 on SIGTERM, ...) run once at the module's end.
import collections
import os

import pytest

from tests.harness.daemon import Daemon
from tests.harness.pg import PostgresSandbox
from tests.harness.postfix import PostfixSandbox
from tests.harness.util import free_port, wait_until
from tests.system.conftest import base_config, check_daemon, setup_tokens
from tests.system.test_certificates import poll_served, served
from tests.system.test_contract_state import put_cert
from tests.system.test_fleet import map_query, node_config, nodes, share_tokens
from tests.system.test_foundation import DB_ERRORS, assert_problem

HOST = "mx.test.example"  # the sandboxes' myhostname
NAMES = ("mx1", "mx2", "mx3")
FOLLOW = 15  # seconds for the other nodes to follow a committed write (NOTIFY, the 1 s poll)

Node = collections.namedtuple("Node", "name d pf")


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


# == 3. the database restarted =====================================================================
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
