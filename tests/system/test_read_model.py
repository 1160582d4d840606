# The read model (src/http/reply_cache.c): the hot GETs are served from replies kept under the
# daemon's change count - no database round trip while nothing changed - and never outlive a
# write this node acknowledged. Real daemon, real HTTP clients (several at once, keeping the
# replies hot), real Postfix.
import os
import shutil
import threading

import pytest

from tests.system.test_fleet import fleet_of_two  # noqa: F401 (a fixture)
from tests.system.test_policies import make_policy_site  # noqa: F401 (a fixture)
from tests.system.test_settings import make_site  # noqa: F401 (a fixture)

HOT = ["/api/v1/settings", "/api/v1/tls-policies", "/api/v1/tls-policies?level=encrypt",
       "/api/v1/tls-policies/rm.example", "/api/v1/certificates", "/api/v1/status",
       "/api/v1/config", "/api/v1/state"]


def upload(d, certs, name):
    leaf = certs.leaf(f"rm-{name}", ("mx.test.example",), kind="ec")
    return d.http("PUT", f"/api/v1/certificates/{name}", leaf.read("cert") + leaf.read("key"),
                  content_type="application/x-pem-file", timeout=60)


@pytest.fixture
def site(make_site, certs):
    s = make_site()
    assert upload(s.d, certs, "mx").status == 201
    s.put_ok({"mode": "may", "certificate": "mx"})
    r = s.d.http("PUT", "/api/v1/tls-policies/rm.example", {"level": "may"}, timeout=60)
    assert r.status == 201, r
    return s


def hits(site):
    return site.metric("smtptlsd_read_model_requests_total", result="hit") or 0


class Readers:
    """Threads GETting the hot paths without pause, so that every reply is kept and served from
    the read model while the test writes; they fail on any status but 200."""

    def __init__(self, d, n=3, paths=HOT):
        self.d, self.paths, self.stop, self.errors, self.count = d, paths, threading.Event(), [], 0
        self.threads = [threading.Thread(target=self.run, args=(i,)) for i in range(n)]

    def run(self, i):
        k = i
        while not self.stop.is_set():
            path = self.paths[k % len(self.paths)]
            k += 1
            r = self.d.get(path)
            if r.status != 200:
                self.errors.append((path, r.status))
            self.count += 1

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(30)
        assert not self.errors, self.errors[:5]


def test_a_repeated_get_is_served_from_the_read_model_with_its_tag(site):
    d = site.d
    for path in HOT:
        first = d.get(path)
        before = hits(site)
        again = d.get(path)
        assert again.status == 200 and again.raw == first.raw, path
        assert again.headers["ETag"] == first.headers["ETag"], path
        assert hits(site) == before + 1, f"{path} was not served from the read model"
        # If-None-Match answered from the kept tag
        nm = d.http("GET", path, headers={"If-None-Match": first.headers["ETag"]})
        assert nm.status == 304 and nm.raw == b"" and nm.headers["ETag"] == first.headers["ETag"]


def test_every_acknowledged_write_is_seen_by_the_next_read(site, certs):
    """Read-your-writes on the receiving node while readers keep every reply hot: after each
    write's reply, the next GET (and a conditional GET with the tag from before) shows it."""
    d = site.d
    with Readers(d) as readers:
        for i in range(12):
            level = ("encrypt", "may", "dane")[i % 3]
            tag = d.get("/api/v1/tls-policies/rm.example").headers["ETag"]
            r = d.http("PATCH", "/api/v1/tls-policies/rm.example", {"level": level},
                       content_type="application/merge-patch+json", timeout=60)
            assert r.status == 200, r
            one = d.get("/api/v1/tls-policies/rm.example")
            assert one.body["level"] == level, (i, one.body)
            assert d.http("GET", "/api/v1/tls-policies/rm.example",
                          headers={"If-None-Match": tag}).status == 200, i
            listed = {p["destination"]: p["level"] for p in d.get("/api/v1/tls-policies").body["items"]}
            assert listed["rm.example"] == level, (i, listed)
            enc = [p["destination"] for p in d.get("/api/v1/tls-policies?level=encrypt").body["items"]]
            assert ("rm.example" in enc) == (level == "encrypt"), (i, enc)
            state = d.get("/api/v1/state").body
            assert {p["destination"]: p["level"] for p in state["tls_policies"]}["rm.example"] == level

            # a new row and its removal
            name = f"new-{i}.example"
            r = d.http("PUT", f"/api/v1/tls-policies/{name}", {"level": "encrypt"}, timeout=60)
            assert r.status == 201, r
            assert d.get(f"/api/v1/tls-policies/{name}").status == 200
            r = d.http("DELETE", f"/api/v1/tls-policies/{name}", timeout=60)
            assert r.status == 204, r
            assert d.get(f"/api/v1/tls-policies/{name}").status == 404
            assert name not in {p["destination"] for p in d.get("/api/v1/tls-policies").body["items"]}

            # the settings, and what /status and /config say of them
            loglevel = 1 + i % 2
            site.patch_ok({"loglevel": loglevel})
            assert d.get("/api/v1/settings").body["loglevel"] == loglevel, i
            assert d.get("/api/v1/config").body["main_cf"]["smtpd_tls_loglevel"] == str(loglevel)
            assert d.get("/api/v1/status").body["last_job"]["action"] == "settings.patch"
        # a certificate uploaded, then deleted
        r = upload(d, certs, "uploaded")
        assert r.status == 201, r
        assert "uploaded" in {c["name"] for c in d.get("/api/v1/certificates").body["items"]}
        assert d.get("/api/v1/certificates/uploaded").status == 200
        assert d.http("DELETE", "/api/v1/certificates/uploaded", timeout=60).status == 204
        assert "uploaded" not in {c["name"] for c in d.get("/api/v1/certificates").body["items"]}
        assert d.get("/api/v1/certificates/uploaded").status == 404
    assert readers.count > 100, readers.count
    assert hits(site) > readers.count // 2, "the readers were not served from the read model"


def test_the_key_is_the_whole_url(site):
    """Two queries of one path are two replies; an unknown parameter is refused, not served."""
    d = site.d
    for _ in range(2):
        may = {p["destination"] for p in d.get("/api/v1/tls-policies?level=may").body["items"]}
        enc = {p["destination"] for p in d.get("/api/v1/tls-policies?level=encrypt").body["items"]}
        assert may == {"rm.example"} and enc == set(), (may, enc)
    assert d.get("/api/v1/tls-policies?level=may&bogus=1").status == 422
    # a read token gets the same bytes; no token gets nothing
    assert d.get("/api/v1/settings", token=d.read_token).raw == d.get("/api/v1/settings").raw
    assert d.get("/api/v1/settings", token=None).status == 401


def test_a_hand_edit_of_main_cf_shows_in_status_at_once(site):
    d = site.d
    for _ in range(3):
        assert d.get("/api/v1/status").body["drift"] == []
    with open(site.pf.main_cf, "a") as f:
        f.write("smtpd_tls_loglevel = 4\n")
    st = d.get("/api/v1/status").body
    assert [x["name"] for x in st["drift"]] == ["smtpd_tls_loglevel"], st["drift"]
    assert st["state"] == "degraded", st


def drift_names(d):
    return [x["name"] for x in d.get("/api/v1/status").body["drift"]]


def keep_hot(d, n=3):
    """The status reply is kept (and served from the read model) before the edit."""
    for _ in range(n):
        assert drift_names(d) == []


def test_a_hand_edit_by_rename_shows_in_status_at_once(site):
    """An editor that writes a new file and renames it over main.cf (a new inode, no write to
    the old one)."""
    d, main_cf = site.d, site.pf.main_cf
    keep_hot(d)
    text = open(main_cf).read()
    with open(main_cf + ".edit", "w") as f:
        f.write(text + "smtpd_tls_loglevel = 3\n")
    os.replace(main_cf + ".edit", main_cf)
    assert drift_names(d) == ["smtpd_tls_loglevel"]


def test_a_hand_edit_through_a_symlink_shows_in_status_at_once(site, tmp_path):
    """main.cf a symlink to a file in another directory: an edit of the target there, and the
    link pointed at another file, each show at the next read."""
    d, main_cf = site.d, site.pf.main_cf
    text = open(main_cf).read()
    elsewhere = tmp_path / "managed-elsewhere"
    elsewhere.mkdir()
    (elsewhere / "main.cf").write_text(text)
    os.replace(str(make_symlink(elsewhere / "main.cf", main_cf)), main_cf)
    keep_hot(d)
    with open(elsewhere / "main.cf", "a") as f:
        f.write("smtpd_tls_loglevel = 2\n")
    assert drift_names(d) == ["smtpd_tls_loglevel"]

    other = tmp_path / "other"
    other.mkdir()
    (other / "main.cf").write_text(text)
    keep_hot(d, n=0)
    os.replace(str(make_symlink(other / "main.cf", main_cf)), main_cf)
    assert drift_names(d) == []
    keep_hot(d)
    with open(other / "main.cf", "a") as f:
        f.write("smtpd_tls_loglevel = 4\n")
    assert drift_names(d) == ["smtpd_tls_loglevel"]


def test_a_symlinked_configuration_directory_pointed_elsewhere_shows_at_once(site, tmp_path):
    """postfix_config_directory a symlink (/etc/postfix -> a directory managed elsewhere): the
    link pointed at another copy of the configuration shows at the next read."""
    d, pf = site.d, site.pf
    link = str(tmp_path / "postfix")
    os.symlink(pf.config_dir, link)
    d.stop()
    d.config["postfix_config_directory"] = link
    d.write_config()
    d.start()
    d.mark_fd_baseline()
    keep_hot(d)
    other = str(tmp_path / "postfix-other")
    shutil.copytree(pf.config_dir, other, symlinks=True)
    with open(os.path.join(other, "main.cf"), "a") as f:
        f.write("smtpd_tls_loglevel = 3\n")
    os.symlink(other, link + ".new")
    os.replace(link + ".new", link)
    assert drift_names(d) == ["smtpd_tls_loglevel"]


def test_a_dangling_symlink_among_the_files_keeps_hand_edits_seen(site, tmp_path):
    """The policy map a dangling symlink: where its target will appear cannot be watched, so the
    files' identity is read at each request - and the map showing up there is seen at once."""
    d, pf = site.d, site.pf

    def map_drift():
        return d.get("/api/v1/config").body["tls_policy_map_drift"]

    path = os.path.join(pf.config_dir, "smtptlsd_tls_policy")
    text = open(path).read()
    assert "rm.example" in text
    for _ in range(3):
        assert map_drift() is False
    os.rename(path, path + ".saved")
    os.symlink(str(tmp_path / "not-yet" / "map"), path)
    for _ in range(3):
        assert map_drift() is True
    (tmp_path / "not-yet").mkdir()
    (tmp_path / "not-yet" / "map").write_text(text)
    assert map_drift() is False
    os.replace(path + ".saved", path)
    for _ in range(3):
        assert map_drift() is False
    with open(path, "a") as f:
        f.write("hand.example may\n")
    assert map_drift() is True


def test_a_symlink_further_along_main_cf_s_path_pointed_elsewhere_shows_at_once(site, tmp_path):
    """main.cf a symlink to a link in a third directory, and a symlink through a symlinked
    directory (a 'current' release link): either link pointed elsewhere shows at the next read,
    though nothing changed in the directory main.cf is in nor in the one it ends in."""
    d, main_cf = site.d, site.pf.main_cf
    text = open(main_cf).read()
    for name, extra in (("v1", ""), ("v2", "smtpd_tls_loglevel = 2\n")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "main.cf").write_text(text + extra)
    hop = tmp_path / "hop"
    hop.mkdir()
    os.symlink(str(tmp_path / "v1" / "main.cf"), hop / "main.cf")
    os.replace(make_symlink(hop / "main.cf", main_cf), main_cf)
    keep_hot(d)
    os.replace(make_symlink(tmp_path / "v2" / "main.cf", hop / "main.cf"), hop / "main.cf")
    assert drift_names(d) == ["smtpd_tls_loglevel"]

    os.symlink("v1", tmp_path / "current")
    os.replace(make_symlink(tmp_path / "current" / "main.cf", main_cf), main_cf)
    keep_hot(d)
    os.replace(make_symlink("v2", tmp_path / "current"), tmp_path / "current")
    assert drift_names(d) == ["smtpd_tls_loglevel"]


def test_a_hand_edit_through_a_hard_link_shows_at_once(site, tmp_path):
    """main.cf edited in place through another name of the same file (a hard link elsewhere, as a
    bind mount of the file would be): its events go to the other name's directory."""
    d, main_cf = site.d, site.pf.main_cf
    other = tmp_path / "main.cf"
    os.link(main_cf, other)
    keep_hot(d)
    with open(other, "a") as f:
        f.write("smtpd_tls_loglevel = 2\n")
    assert drift_names(d) == ["smtpd_tls_loglevel"]


def make_symlink(target, beside):
    link = f"{beside}.link"
    os.symlink(str(target), link)
    return link


def test_a_write_waiting_for_the_fleet_is_seen_by_the_next_read_on_every_node(fleet_of_two):
    """Node 2's readers keep its replies hot; a write on node 1 with ?wait=fleet returns once node
    2 applied it - from then on node 2's reads show it too (its listener heard the generation)."""
    a, b, _ = fleet_of_two
    r = a.d.http("PUT", "/api/v1/tls-policies/fleet-rm.example?wait=fleet", {"level": "may"},
                 timeout=60)
    assert r.status == 201, r
    paths = ["/api/v1/tls-policies/fleet-rm.example", "/api/v1/tls-policies", "/api/v1/status"]
    with Readers(b, n=2, paths=paths):
        for i, level in enumerate(("encrypt", "may", "encrypt", "dane")):
            r = a.d.http("PUT", "/api/v1/tls-policies/fleet-rm.example?wait=fleet",
                         {"level": level}, timeout=60)
            assert r.status == 200 and r.body["fleet"]["complete"], r
            assert b.get("/api/v1/tls-policies/fleet-rm.example").body["level"] == level, i
            listed = {p["destination"]: p["level"]
                      for p in b.get("/api/v1/tls-policies").body["items"]}
            assert listed["fleet-rm.example"] == level, (i, listed)
            st = b.get("/api/v1/status").body
            assert st["applied_generation"] == r.body["fleet"]["generation"], (i, st)
