# The policy map edited, not rebuilt (src/apply/map_state.c, core/map_merge.c, stage.c): a write
# among many rows takes only the rows changed since the live map was rendered, puts and deletes
# them in a copy of the live index and swaps it in. After any sequence of writes the live map is
# exactly what a whole rebuild gives; anything that puts the record in doubt (a hand edit, a
# restart, cdb) builds it whole. Real daemon, real Postfix (postmap -s, postmap -q), real
# PostgreSQL.
import os
import random

import pytest

from tests.system.test_policies import make_policy_site  # noqa: F401 (a fixture)

UPDATES = "smtptlsd_policy_map_updates_total"
LEVELS = ["may", "encrypt", "dane", "none", "verify", "secure"]
# plain, a port, brackets, a parent-domain key, internationalized (two keys: A- and U-label)
NAMES = [f"d{i:02}.example" for i in range(12)] + \
        [f"[mx{i}.example]:25" for i in range(4)] + \
        [f".sub{i}.example" for i in range(4)] + \
        [f"m{i}.xn--bcher-kva.example" for i in range(4)]


def updates(site):
    return {how: site.metric(UPDATES, how=how) or 0 for how in ("edit", "build")}


def whole_map(site):
    """The map as a whole render of the database gives it (GET /api/v1/config renders the rows
    anew for each generation)."""
    return site.d.get("/api/v1/config").body["tls_policy"]


def assert_same_as_whole(site):
    site.assert_map_is_the_enabled_rows()
    assert site.map_text() == whole_map(site), "the edited map text differs from a whole render"


def random_write(site, rng, present):
    """One random write through the API; returns what it did."""
    name = rng.choice(NAMES)
    kind = rng.choice(["put", "put", "patch", "disable", "delete", "bulk"])
    if kind == "put" or (name not in present and kind in ("patch", "disable", "delete")):
        level = rng.choice(LEVELS)
        body = {"level": level}
        if level in ("verify", "secure") and rng.random() < 0.5:
            body["match"] = ["nexthop", "dot-nexthop"]
        site.put_ok(name, body)
        present.add(name)
        return f"put {name} {body}"
    if kind == "patch":
        r = site.patch(name, {"level": rng.choice(LEVELS[:4]), "enabled": True},
                       content_type="application/merge-patch+json")
        assert r.status == 200, r
        return f"patch {name}"
    if kind == "disable":
        r = site.patch(name, {"enabled": False}, content_type="application/merge-patch+json")
        assert r.status == 200, r
        return f"disable {name}"
    if kind == "delete":
        r = site.delete(name)
        assert r.status == 204, r
        present.discard(name)
        return f"delete {name}"
    # a bulk replace of what is there, one row changed and one left out
    items = [{k: v for k, v in p.items() if k in ("destination", "level", "match", "enabled")}
             for p in site.policies()]
    if items:
        items[rng.randrange(len(items))]["level"] = rng.choice(LEVELS[:4])
        gone = items.pop(rng.randrange(len(items)))["destination"]
        present.discard(gone)
    r = site.bulk(items)
    assert r.status == 200, r
    return "bulk"


@pytest.mark.parametrize("map_type", ["hash", "lmdb"])
def test_any_sequence_of_writes_leaves_the_map_a_whole_build_would_make(make_policy_site,
                                                                        map_type):
    site = make_policy_site(map_type=map_type)
    # enough rows that the writes below are a few among many
    site.bulk([{"destination": f"seed{i:04}.example", "level": "may"} for i in range(300)])
    present = set()
    before = updates(site)
    rng = random.Random(17)
    done = []
    for _ in range(40):
        done.append(random_write(site, rng, present))
        try:
            assert_same_as_whole(site)
        except AssertionError as e:
            raise AssertionError(f"after {done}: {e}") from e
    after = updates(site)
    edits, builds = after["edit"] - before["edit"], after["build"] - before["build"]
    assert edits >= 30, f"the writes were not edits: {edits} edits, {builds} builds ({done})"
    assert builds == 0, f"{builds} whole builds for writes of a few rows ({done})"


def test_a_hand_edit_builds_the_map_whole_and_a_restart_adopts_it(make_policy_site):
    site = make_policy_site()
    site.bulk([{"destination": f"h{i:03}.example", "level": "encrypt"} for i in range(50)])
    site.put_ok("first.example", {"level": "may"})
    before = updates(site)
    # a line added by hand: the record no longer describes the file
    with open(site.map_path, "a") as f:
        f.write("byhand.example encrypt\n")
    site.put_ok("second.example", {"level": "may"})
    after = updates(site)
    assert after["build"] == before["build"] + 1 and after["edit"] == before["edit"], after
    assert site.map_query("byhand.example") is None
    assert_same_as_whole(site)
    # an edit again, then a restart: the first apply after it builds, the next write edits
    site.put_ok("third.example", {"level": "dane"})
    assert updates(site)["edit"] == after["edit"] + 1
    site.d.stop()
    site.d.start()
    site.put_ok("fourth.example", {"level": "may"})
    # the start found the live index right (postmap -s) and recorded it: no build at all
    assert updates(site) == {"edit": 1, "build": 0}, updates(site)
    assert_same_as_whole(site)


def test_a_cdb_map_is_built_whole_every_time_and_stays_right(make_policy_site):
    """cdb cannot be edited in place (postmap -i refuses it): the merged text is built whole."""
    site = make_policy_site(map_type="cdb")
    site.bulk([{"destination": f"c{i:03}.example", "level": "may"} for i in range(40)])
    before = updates(site)
    rng = random.Random(5)
    present = set()
    for _ in range(8):
        random_write(site, rng, present)
        assert_same_as_whole(site)
    after = updates(site)
    assert after["edit"] == before["edit"] and after["build"] > before["build"], after


def failing_postmap(directory, options):
    """A postmap_command that fails like a fatal Postfix error (exit 1, 'fatal:' on stderr) when
    called with any of `options` while FLAG exists (a broken main.cf fails them all), else runs
    postmap. Returns (wrapper path, flag)."""
    wrapper = os.path.join(directory, "postmap-wrapper")
    flag = os.path.join(directory, "fail")
    cases = "|".join(options)
    with open(wrapper, "w") as f:
        f.write("#!/bin/sh\n"
                f"if [ -e '{flag}' ]; then for a in \"$@\"; do case \"$a\" in {cases})\n"
                "  echo 'postmap: fatal: simulated failure' >&2; exit 1;; esac; done; fi\n"
                "exec postmap \"$@\"\n")
    os.chmod(wrapper, 0o755)
    return wrapper, flag


@pytest.mark.expect_errors(r"simulated failure", r"failed")
@pytest.mark.parametrize("write, options", [("delete", ["-d", "-q"]), ("put", ["-i"]),
                                            ("put", ["-q"])])
def test_a_postmap_that_dies_during_an_edit_changes_nothing(make_policy_site, tmp_path, write,
                                                            options):
    """postmap exits 1 both for 'no key found' (-d, -q) and for any fatal error: a fatal one
    fails the write (even a delete whose check dies too), the live map stays as it was, and the
    next write converges."""
    wrapper, flag = failing_postmap(str(tmp_path), options)
    site = make_policy_site(config={"postmap_command": wrapper})
    site.bulk([{"destination": f"f{i:03}.example", "level": "may"} for i in range(50)])
    site.put_ok("gone.example", {"level": "secure"})
    before = site.snapshot()
    open(flag, "w").close()
    if write == "delete":
        r = site.delete("gone.example")
    else:
        r = site.put("gone.example", {"level": "encrypt"})
    assert r.status in (422, 500, 507) and "simulated failure" in \
        r.body.get("detail", "") + (site.job(r)["output"] or ""), r
    after = site.snapshot()
    assert after["map text"] == before["map text"] and after["map index"] == before["map index"]
    assert site.map_query("gone.example") == "secure"
    os.unlink(flag)
    site.put_ok("next.example", {"level": "may"})
    assert_same_as_whole(site)


@pytest.mark.expect_errors(r"entries", r"failed")
@pytest.mark.parametrize("lie", ["value", "drop", "swap"])
def test_a_built_map_whose_dump_differs_is_refused_by_name(make_policy_site, tmp_path, lie):
    """The whole build is checked against its text by digests of both sides (order-free, nothing
    kept); when they differ, entry by entry, which names the first difference. A `postmap -s`
    that changes one value, drops an entry, or swaps two entries' values (same keys, same values
    overall: only the pairs differ) fails the write, and Postfix keeps the old map."""
    wrapper = os.path.join(str(tmp_path), "postmap-wrapper")
    flag = os.path.join(str(tmp_path), "lie")
    edit = {"value": "sed 's/^f007.example\\tmay$/f007.example\\tencrypt/'",
            "drop": "grep -v '^f007.example\\b'",
            "swap": "sed 's/^f007.example\\tmay$/f007.example\\tX/; "
                    "s/^lie.example\\tsecure$/lie.example\\tmay/; s/\\tX$/\\tsecure/'"}[lie]
    with open(wrapper, "w") as f:
        f.write("#!/bin/sh\n"
                f"if [ -e '{flag}' ]; then for a in \"$@\"; do case \"$a\" in -s)\n"
                f"  postmap \"$@\" | {edit}; exit 0;; esac; done; fi\n"
                "exec postmap \"$@\"\n")
    os.chmod(wrapper, 0o755)
    site = make_policy_site(config={"postmap_command": wrapper})
    site.put_ok("first.example", {"level": "may"})
    # a comment added by hand: the record no longer describes the file, the next write builds
    with open(site.map_path, "a") as f:
        f.write("# by hand\n")
    before = site.snapshot()
    open(flag, "w").close()
    r = site.bulk([{"destination": f"f{i:03}.example", "level": "may"} for i in range(50)]
                  + [{"destination": "lie.example", "level": "secure"}])
    detail = r.body.get("detail", "") + (site.job(r)["output"] or "")
    assert r.status in (422, 500), r
    assert "first difference at f007.example" in detail, detail
    after = site.snapshot()
    assert after["map text"] == before["map text"] and after["map index"] == before["map index"]
    assert site.map_query("lie.example") is None
    os.unlink(flag)
    site.put_ok("next.example", {"level": "may"})
    assert_same_as_whole(site)
