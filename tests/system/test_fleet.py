# The fleet's registry: several daemons on one PostgreSQL, each naming itself (node_name),
# registering at start (its version, its Postfix's, when it started), keeping a heartbeat; any node
# lists all of them (GET /api/v1/nodes), one that stops its heartbeat becomes unreachable, and
# /api/v1/status sums the fleet up. Real daemons, one real database.
import itertools
import os

import pytest

from tests.harness.postfix import PostfixSandbox
from tests.harness.util import wait_until
from tests.system.test_contract_state import put_cert
from tests.system.test_foundation import DB_ERRORS, assert_problem
from tests.system.test_policies import MAP_NAME, make_policy_site  # noqa: F401 (a fixture)

FAST = {"node_heartbeat_interval": "1s", "fleet_wait_timeout": "2s"}
_serial = itertools.count(1)


@pytest.fixture
def two_nodes(make_daemon):
    one = make_daemon(config={**FAST, "node_name": "mx1"})
    two = make_daemon(config={**FAST, "node_name": "mx2"},
                      database_url=one.config["database_url"], tokens=False)
    share_tokens(two, one)
    return one, two


def node_config(name, pf):
    """The configuration keys of fleet node `name` managing Postfix sandbox pf (FAST heartbeat)."""
    return {**FAST, "node_name": name, "postfix_config_directory": pf.config_dir,
            **pf.argv_prefixes, "smtp_probe_address": f"127.0.0.1:{pf.port}"}


def share_tokens(d, first):
    """Node d uses the tokens the first node made (one database: the same tokens); takes d's fd
    baseline."""
    d.token, d.read_token = first.token, first.read_token
    d.mark_fd_baseline()


def nodes(d, **kw):
    r = d.get("/api/v1/nodes", **kw)
    assert r.status == 200, r
    return {n["name"]: n for n in r.body["items"]}


def test_every_node_lists_every_node(two_nodes):
    one, two = two_nodes
    for d, me in ((one, "mx1"), (two, "mx2")):
        listed = wait_until(lambda d=d: nodes(d) if len(nodes(d)) == 2 else None, 20,
                            "both nodes registered")  # noqa: F841
        assert [n["self"] for n in listed.values()] == [me == "mx1", me == "mx2"], listed
        for n in listed.values():
            assert n["state"] != "unreachable" and n["version"] and n["started_at"], n
    mx2 = two.get("/api/v1/nodes/mx2", token=two.read_token)
    assert mx2.status == 200 and mx2.body["name"] == "mx2" and mx2.body["self"] is True, mx2
    assert one.get("/api/v1/nodes/mx3").status == 404
    fleet = one.get("/api/v1/status").body["fleet"]
    assert fleet["nodes"] == 2 and fleet["unreachable"] == 0, fleet


def test_a_node_binding_before_any_settings_write_says_nobody_serves_it(two_nodes, certs):
    one, two = two_nodes
    wait_until(lambda: len(nodes(one)) == 2, 20, "both nodes registered")
    put_cert(one, "mx2-early", certs.leaf("mx2-early", ("mx2.test.example",)))
    r = two.http("PUT", "/api/v1/nodes/mx2/settings", {"certificate": "mx2-early"}, timeout=60)
    assert r.status == 201 and r.body["certificate"] == "mx2-early", r
    assert "settings_not_managed" in {w["code"] for w in r.body["warnings"]}, r.body
    assert nodes(one)["mx2"]["settings"]["certificate"] == "mx2-early"
    # the system certificate is never bound; a node gone from the registry has no settings
    system = [c["name"] for c in one.get("/api/v1/certificates").body["items"] if c["system"]][0]
    assert_problem(two.http("PUT", "/api/v1/nodes/mx1/settings", {"certificate": system}), 422,
                   "system_certificate_refused", "/certificate")
    assert_problem(two.http("PUT", "/api/v1/nodes/mx1/settings",
                            {"certificate": "mx2-early", "node": "mx2"}), 422, "invalid_value",
                   "/node")


def test_only_a_node_that_is_gone_can_be_deleted(two_nodes):
    one, two = two_nodes
    wait_until(lambda: len(nodes(one)) == 2, 20, "both nodes registered")
    assert_problem(one.http("DELETE", "/api/v1/nodes/mx2"), 409, "node_alive")
    assert_problem(one.http("DELETE", "/api/v1/nodes/mx2", token=one.read_token), 403,
                   "forbidden")
    assert_problem(one.http("DELETE", "/api/v1/nodes/mx9"), 404, "not_found")
    two.stop()
    wait_until(lambda: nodes(one)["mx2"]["state"] == "unreachable", 20, "mx2 unreachable")
    r = one.http("DELETE", "/api/v1/nodes/mx2")
    assert r.status == 204, r
    assert list(nodes(one)) == ["mx1"]
    assert one.get("/api/v1/status").body["fleet"]["nodes"] == 1
    two.start()  # a node that starts again registers again
    two.mark_fd_baseline()
    wait_until(lambda: len(nodes(one)) == 2, 20, "mx2 registered again")


def test_a_node_that_stops_is_unreachable_and_back_when_it_starts(two_nodes):
    one, two = two_nodes
    wait_until(lambda: len(nodes(one)) == 2, 20, "both nodes registered")
    first = nodes(one)["mx2"]["started_at"]
    two.stop()
    wait_until(lambda: nodes(one)["mx2"]["state"] == "unreachable", 20,
               "mx2 unreachable after three missed heartbeats")
    assert one.get("/api/v1/status").body["fleet"]["unreachable"] == 1
    assert nodes(one)["mx1"]["state"] != "unreachable", "the answering node keeps its heartbeat"
    two.start()
    two.mark_fd_baseline()
    back = wait_until(lambda: (n := nodes(one)["mx2"])["state"] != "unreachable" and n, 20,
                      "mx2 back")
    assert back["started_at"] >= first, back


@pytest.fixture
def fleet_of_two(make_policy_site, make_daemon, session_dir):
    """Two nodes, each with a Postfix of its own, on one database: node 1 is a PolicySite (a.d,
    a.pf), node 2 a daemon with its own sandbox."""
    a = make_policy_site(config={**FAST, "node_name": "mx1"})
    pf = PostfixSandbox(os.path.join(session_dir, f"fleet-pf-{next(_serial)}")).start()
    b = make_daemon(node_config("mx2", pf), database_url=a.d.config["database_url"], tokens=False)
    share_tokens(b, a.d)
    yield a, b, pf
    pf.stop()


def map_query(pf, key):
    path = os.path.join(pf.config_dir, MAP_NAME)
    r = pf.postmap("-q", key, f"hash:{path}", check=False)
    return r.strip() or None


def test_a_write_on_one_node_is_applied_by_the_other(fleet_of_two):
    a, b, pf2 = fleet_of_two
    a.put_ok("partner.example", {"level": "encrypt"})
    assert map_query(a.pf, "partner.example") == "encrypt"
    wait_until(lambda: map_query(pf2, "partner.example") == "encrypt", 10,
               "the policy in node 2's map")
    gen = a.generation()
    listed = wait_until(lambda: (n := nodes(b))["mx2"]["applied_generation"] == gen and n, 10,
                        "node 2 reports the generation applied")
    assert listed["mx1"]["applied_generation"] == gen and listed["mx2"]["state"] == "in_sync"
    # a write on node 2 goes the other way
    r = b.http("PUT", "/api/v1/tls-policies/other.example", {"level": "may"})
    assert r.status == 201, r
    wait_until(lambda: map_query(a.pf, "other.example") == "may", 10, "node 1 follows node 2")


def test_a_node_that_was_down_catches_up_when_it_starts(fleet_of_two):
    a, b, pf2 = fleet_of_two
    b.stop()
    a.put_ok("while-away.example", {"level": "encrypt"})
    assert map_query(pf2, "while-away.example") is None
    b.start()
    b.mark_fd_baseline()
    assert map_query(pf2, "while-away.example") == "encrypt", "caught up before READY"


def refusing_postmap(directory):
    """A postmap_command that runs postmap, except while FLAG exists: then it prints
    'postmap: fatal: simulated refusal' and fails. Returns (wrapper path, flag path)."""
    wrapper = os.path.join(directory, "postmap-wrapper")
    flag = os.path.join(directory, "refuse")
    with open(wrapper, "w") as f:
        f.write("#!/bin/sh\n"
                f"if [ -e '{flag}' ]; then echo 'postmap: fatal: simulated refusal' >&2; exit 1; fi\n"
                "exec postmap \"$@\"\n")
    os.chmod(wrapper, 0o755)
    return wrapper, flag


def test_a_node_whose_postfix_refuses_is_degraded_alone_and_recovers_on_retry_or_next_generation(
        make_policy_site, make_daemon, session_dir):
    """Node 2's postmap refuses (a wrapper, while a flag file exists): node 1 applies, node 2
    keeps its last good map and says degraded with the tool's words (a write waiting for the
    fleet says failed for it at once); once the cause is gone, a retry asked of it brings it back
    in sync without a new generation, and a refusal again is cured by the next generation."""
    a = make_policy_site(config={**FAST, "node_name": "mx1"})
    pf = PostfixSandbox(os.path.join(session_dir, f"fleet-pf-{next(_serial)}")).start()
    wrapper, flag = refusing_postmap(pf.basedir)
    b = make_daemon({**node_config("mx2", pf), "postmap_command": wrapper},
                    database_url=a.d.config["database_url"], tokens=False)
    share_tokens(b, a.d)
    b.expect_error(r"(?i)(fleet|retry) reconcile failed|postmap|simulated refusal")
    try:
        a.put_ok("first.example", {"level": "encrypt"})
        wait_until(lambda: map_query(pf, "first.example") == "encrypt", 10, "node 2 follows")
        open(flag, "w").close()
        r = a.d.http("PUT", "/api/v1/tls-policies/second.example?wait=fleet",
                     {"level": "encrypt"}, timeout=60)
        assert r.status == 201, r
        outcome = {n["name"]: n for n in r.body["fleet"]["nodes"]}
        assert r.body["fleet"]["complete"] is True, r.body["fleet"]
        assert outcome["mx1"]["outcome"] == "applied", outcome
        assert outcome["mx2"]["outcome"] == "failed", outcome
        assert "simulated refusal" in outcome["mx2"]["detail"], outcome
        failed = nodes(a.d)["mx2"]
        assert failed["state"] == "degraded" and "simulated refusal" in failed["detail"], failed
        assert failed["failed_generation"] == r.body["generation"], failed
        assert nodes(a.d)["mx1"]["state"] == "in_sync"
        assert map_query(pf, "first.example") == "encrypt", "node 2 keeps its last good map"
        assert map_query(pf, "second.example") is None
        os.unlink(flag)
        # the cause removed: a retry, and no new write
        r = a.d.http("POST", "/api/v1/nodes/mx2/retry")
        assert r.status == 202 and r.body["name"] == "mx2", r
        assert_problem(a.d.http("POST", "/api/v1/nodes/mx9/retry"), 404, "not_found")
        wait_until(lambda: nodes(a.d)["mx2"]["state"] == "in_sync", 10, "node 2 retried")
        assert map_query(pf, "second.example") == "encrypt"
        assert "failed_generation" not in nodes(a.d)["mx2"]
        # refused again; the next generation (the cause gone) brings it back as well
        open(flag, "w").close()
        a.put_ok("fourth.example", {"level": "encrypt"})
        wait_until(lambda: nodes(a.d)["mx2"]["state"] == "degraded", 10, "node 2 degraded")
        os.unlink(flag)
        a.put_ok("third.example", {"level": "may"})
        wait_until(lambda: nodes(a.d)["mx2"]["state"] == "in_sync", 10, "node 2 in sync again")
        assert map_query(pf, "fourth.example") == "encrypt" and map_query(pf, "third.example") == \
            "may"
    finally:
        pf.stop()


def test_the_listening_sessions_cut_the_nodes_still_converge(fleet_of_two):
    """Every listener's session terminated by the server (as a failover or a pooler would): the
    listeners connect again and read the generation, so a write made meanwhile still reaches the
    other node."""
    a, b, pf2 = fleet_of_two
    a.put_ok("before.example", {"level": "encrypt"})
    wait_until(lambda: map_query(pf2, "before.example") == "encrypt", 10, "node 2 follows")
    cut = a.psql.query("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                       "WHERE application_name = 'smtptlsd-listener'")
    assert cut.strip() == "2", cut
    a.put_ok("after.example", {"level": "encrypt"})
    wait_until(lambda: map_query(pf2, "after.example") == "encrypt", 15,
               "node 2 follows after its listener came back")


def test_a_write_waiting_for_the_fleet_says_pending_then_unreachable_and_the_job_keeps_up(
        fleet_of_two):
    """Node 2 stopped: a write with ?wait=fleet gives up after fleet_wait_timeout with node 2
    pending (it was alive a moment ago); once it is silent for three heartbeats, the next such
    write is complete at once with node 2 unreachable; node 2 started again catches up, and the
    first write's job then shows it applied everywhere."""
    a, b, pf2 = fleet_of_two
    a.put_ok("before.example", {"level": "may"})
    wait_until(lambda: map_query(pf2, "before.example") == "may", 10, "node 2 follows")
    b.stop()
    r = a.d.http("PUT", "/api/v1/tls-policies/pending.example?wait=fleet", {"level": "encrypt"},
                 timeout=60)
    assert r.status == 201, r
    first_job = r.headers["Job-Id"]
    outcome = {n["name"]: n["outcome"] for n in r.body["fleet"]["nodes"]}
    assert r.body["fleet"]["complete"] is False and outcome == \
        {"mx1": "applied", "mx2": "pending"}, r.body["fleet"]
    wait_until(lambda: nodes(a.d)["mx2"]["state"] == "unreachable", 20, "mx2 unreachable")
    r = a.d.http("PUT", "/api/v1/tls-policies/unreachable.example?wait=fleet", {"level": "may"},
                 timeout=60)
    assert r.status == 201 and r.body["fleet"]["complete"] is True, r
    assert {n["name"]: n["outcome"] for n in r.body["fleet"]["nodes"]} == \
        {"mx1": "applied", "mx2": "unreachable"}, r.body["fleet"]
    b.start()
    b.mark_fd_baseline()
    assert map_query(pf2, "pending.example") == "encrypt", "caught up before READY"
    job = a.d.get(f"/api/v1/jobs/{first_job}").body
    assert job["fleet"]["complete"] and \
        {n["name"]: n["outcome"] for n in job["fleet"]["nodes"]} == \
        {"mx1": "applied", "mx2": "applied"}, job
    # a wait that is not a number nor fleet is refused before anything is recorded
    r = a.d.http("PUT", "/api/v1/tls-policies/x.example?wait=everyone", {"level": "may"})
    assert_problem(r, 422, "invalid_value", "wait")


def test_a_node_refuses_to_start_against_a_schema_newer_than_it_knows(make_daemon, pg):
    """Mixed versions: a newer node migrated the database; this older binary says what to do and
    exits 1 rather than run against a schema it does not know."""
    d = make_daemon(start=False)
    assert d.run_cli(["migrate"]).returncode == 0
    dbname = d.config["database_url"].rsplit("/", 1)[1]
    pg.psql("INSERT INTO schema_migrations (version, name) VALUES (999, '999_from_the_future')",
            db=dbname)
    for args in ([], ["migrate"]):
        proc = d.run_cli(args, timeout=60)
        assert proc.returncode == 1, (args, proc)
        said = proc.stdout + proc.stderr
        assert "newer than this smtptlsd knows" in said and "upgrade smtptlsd" in said, said


def test_a_generation_that_goes_back_is_applied_again_and_its_number_reused(fleet_of_two):
    """A failover to a replica that had not received the last commit: that write is gone and the
    generation is one lower, every connection dropped. Both nodes apply the committed state again
    (the lost policy leaves their maps), and the next write - which makes the lost generation's
    number again, with other content - is followed, not taken for applied already."""
    a, b, pf2 = fleet_of_two
    for d in (a.d, b):
        d.expect_error(DB_ERRORS)
    a.put_ok("kept.example", {"level": "may"})
    a.put_ok("lost.example", {"level": "encrypt"})
    wait_until(lambda: map_query(pf2, "lost.example") == "encrypt", 10, "node 2 follows")
    gen = a.generation()
    a.psql.query("DELETE FROM tls_policies WHERE destination = 'lost.example'; "
                 f"UPDATE config_state SET generation = {gen - 1}")
    a.psql.query("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                 "WHERE datname = current_database() AND pid <> pg_backend_pid()")
    for pf in (a.pf, pf2):
        wait_until(lambda pf=pf: map_query(pf, "lost.example") is None, 20,
                   "the lost policy out of the map")
        assert map_query(pf, "kept.example") == "may"
    listed = wait_until(lambda: (n := nodes(a.d)) and all(
        x["applied_generation"] == gen - 1 for x in n.values()) and n, 10, "both at gen - 1")
    assert all(x["state"] == "in_sync" for x in listed.values()), listed
    a.put_ok("after-failover.example", {"level": "encrypt"})
    assert a.generation() == gen
    wait_until(lambda: map_query(pf2, "after-failover.example") == "encrypt", 10,
               "node 2 follows the generation number it had applied before")


def test_an_import_on_one_node_leaves_the_other_nodes_maps_listed(fleet_of_two, tmp_path):
    """An import reads the main.cf and map files of the node it runs on: the maps it adopts are
    that node's. Node 2, listing the same map path (here: the very same file), keeps it listed
    after its own - its next apply of the imported rows changes nothing it answers."""
    a, b, pf2 = fleet_of_two
    shared = tmp_path / "shared_policy"
    shared.write_text("partner.example encrypt\n")
    a.pf.postmap(f"hash:{shared}")
    for pf in (a.pf, pf2):
        pf.postconf("-e", f"smtp_tls_policy_maps = hash:{shared}")
    r = a.req("POST", "/api/v1/import?wait=fleet")
    assert r.status == 200 and r.body["adopted"] == 1, r
    # node 1 no longer lists it; node 2 does, after its own map, once it applied the generation
    assert f"hash:{shared}" not in a.pf.postconf("-h", "smtp_tls_policy_maps")
    gen = a.generation()
    wait_until(lambda: nodes(b)["mx2"]["applied_generation"] == gen, 10, "node 2 applies")
    listed = pf2.postconf("-h", "smtp_tls_policy_maps")
    assert listed.strip().endswith(f"hash:{shared}"), listed
    assert map_query(pf2, "partner.example") == "encrypt"
