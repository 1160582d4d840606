# Conditional reads: every 200 JSON reply to a GET has a strong ETag - the resource's version
# where it has one, else a hash of its bytes - and If-None-Match with the current tag answers 304
# without a body; a change makes the tag move (and the next GET a 200). Real daemon, real HTTP.
import pytest

from tests.system.test_settings import make_site  # noqa: F401 (a fixture)

GETS = ["/api/v1/settings", "/api/v1/certificates", "/api/v1/tls-policies",
        "/api/v1/tls-policies/cond.example", "/api/v1/status", "/api/v1/jobs", "/api/v1/nodes",
        "/api/v1/config", "/api/v1/tokens", "/api/v1/state"]


@pytest.fixture
def site(make_site):
    s = make_site()
    r = s.d.http("PUT", "/api/v1/tls-policies/cond.example", {"level": "may"}, timeout=60)
    assert r.status == 201, r
    return s


def test_every_get_has_a_strong_etag_and_answers_304_while_it_is_current(site):
    d = site.d
    for path in GETS:
        # /status may still move right after the fixture's write (the node's own row catching up
        # with the generation): a 200 with another tag is a change, and the pair is asked again;
        # a 200 with the same tag never is
        for _ in range(20):
            first = d.get(path)
            assert first.status == 200, (path, first)
            tag = first.headers.get("ETag")
            assert tag and tag.startswith('"') and tag.endswith('"'), (path, first.headers)
            again = d.http("GET", path, headers={"If-None-Match": tag})
            assert again.status in (200, 304), (path, again)
            if again.status == 304:
                break
            assert again.headers.get("ETag") != tag, (path, "200 with the tag asked", again)
        assert again.status == 304 and again.raw == b"", (path, again)
        assert again.headers.get("ETag") == tag, (path, again.headers)
        # a list of tags with it, and the weak form, match too; another tag does not
        assert d.http("GET", path, headers={"If-None-Match": f'"x", W/{tag}'}).status == 304
        assert d.http("GET", path, headers={"If-None-Match": '"other"'}).status == 200


def test_a_node_following_the_settings_has_no_binding_to_tag(site):
    """GET /api/v1/nodes/{name}/settings of a node without a binding of its own: no ETag - a
    write's If-Match could name no version of it."""
    me = [n["name"] for n in site.d.get("/api/v1/nodes").body["items"] if n["self"]][0]
    r = site.d.get(f"/api/v1/nodes/{me}/settings")
    assert r.status == 200 and r.body["certificate"] is None and "ETag" not in r.headers, r


def test_a_change_moves_the_tag(site):
    d = site.d
    tags = {p: d.get(p).headers["ETag"] for p in ("/api/v1/tls-policies",
                                                  "/api/v1/tls-policies/cond.example",
                                                  "/api/v1/settings")}
    r = d.http("PATCH", "/api/v1/tls-policies/cond.example", {"level": "encrypt"},
               content_type="application/merge-patch+json", timeout=60)
    assert r.status == 200, r
    for path in ("/api/v1/tls-policies", "/api/v1/tls-policies/cond.example"):
        after = d.http("GET", path, headers={"If-None-Match": tags[path]})
        assert after.status == 200 and after.headers["ETag"] != tags[path], (path, after)
    # the settings did not change: still 304
    assert d.http("GET", "/api/v1/settings",
                  headers={"If-None-Match": tags["/api/v1/settings"]}).status == 304
