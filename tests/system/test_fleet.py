# The fleet's registry: several daemons on one PostgreSQL, each naming itself (node_name),
# registering at start (its version, its Postfix's, when it started), keeping a heartbeat; any node
# lists all of them (GET /api/v1/nodes), one that stops its heartbeat becomes unreachable, and
# /api/v1/status sums the fleet up. Real daemons, one real database.
import pytest

from tests.harness.util import wait_until

FAST = {"node_heartbeat_interval": "1s"}


@pytest.fixture
def two_nodes(make_daemon):
    one = make_daemon(config={**FAST, "node_name": "mx1"})
    two = make_daemon(config={**FAST, "node_name": "mx2"},
                      database_url=one.config["database_url"], tokens=False)
    two.token, two.read_token = one.token, one.read_token  # one database: the same tokens
    two.mark_fd_baseline()
    return one, two


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
