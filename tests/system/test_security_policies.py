# Security findings of issue 10 about TLS policies, against a real PostgreSQL and Postfix:
#  2. managed_by changes need a token with scope 'admin' on every path that writes policies (PUT,
#     POST, PATCH, bulk replace), checked by the API (403 naming the field, nothing recorded) and
#     again by the worker from the scope recorded in the job (a queued job run at start-up).
# 12. Taking over a Postfix whose main.cf already lists policy maps keeps them: smtptlsd's map goes
#     first in smtp_tls_policy_maps, the administrator's follow in their order, untouched, after a
#     policy write, a settings write and the deletion of the last policy; every key smtptlsd has no
#     entry for answers the same through Postfix's lookup order (postmap -q over the maps
#     `postconf -hx` lists, first match wins), and a real delivery still obeys the admin's encrypt.
import json
import os
import re

import pytest

from tests.harness.postfix import PostfixSandbox
from tests.harness.util import run, wait_until
from tests.system.test_foundation import assert_problem
from tests.system.test_policies import (  # noqa: F401 (fixtures)
    MAP_NAME, TLS_NOT_OFFERED, PolicySite, _counter, assert_unchanged, make_policy_site, site)


# == 2. managed_by below admin scope ================================================================
def jobs_count(site):
    return int(site.sql("SELECT count(*) FROM jobs"))


def assert_refused(site, r, field, what):
    body = assert_problem(r, 403, "forbidden", field)
    assert "admin" in body.get("detail", ""), f"{what}: the detail does not say why: {body}"


def test_managed_by_needs_admin_on_every_path(site):
    writer = site.d.add_token("writer", "write")
    site.put_ok("victim.example", {"level": "encrypt"}, status=201)
    site.put_ok("other.example", {"level": "may"}, status=201)
    before, jobs, row = site.snapshot(), jobs_count(site), site.get("victim.example").body
    attempts = [
        ("PATCH", lambda: site.patch("victim.example", {"managed_by": "domains"}, token=writer),
         "/managed_by"),
        ("PATCH with other fields",
         lambda: site.patch("victim.example", {"level": "may", "managed_by": "x"}, token=writer),
         "/managed_by"),
        ("PUT", lambda: site.put("victim.example", {"level": "encrypt", "managed_by": "domains"},
                                 token=writer), "/managed_by"),
        ("PUT of a new row", lambda: site.put("new.example", {"level": "may",
                                                              "managed_by": "domains"},
                                              token=writer), "/managed_by"),
        ("POST", lambda: site.post({"destination": "new.example", "level": "may",
                                    "managed_by": "domains"}, token=writer), "/managed_by"),
        ("bulk", lambda: site.bulk([{"destination": "victim.example", "level": "encrypt"},
                                    {"destination": "other.example", "level": "may",
                                     "managed_by": "domains"}], token=writer),
         "/items/1/managed_by"),
    ]
    for what, call, field in attempts:
        assert_refused(site, call(), field, what)
        assert_unchanged(site, before, f"{what} of managed_by with a write token")
        assert jobs_count(site) == jobs, f"{what}: a job was recorded for a refused write"
        assert site.get("victim.example").body == row, what
        assert site.get("new.example").status == 404, what

    # what the write token may still do: write unmanaged rows, with managed_by null or absent
    r = site.patch("victim.example", {"level": "may", "managed_by": None}, token=writer)
    assert r.status == 200 and r.body["managed_by"] is None, r
    r = site.bulk([{"destination": "victim.example", "level": "encrypt", "managed_by": None},
                   {"destination": "other.example", "level": "may"}], token=writer)
    assert r.status == 200, r

    # admin: allowed on PATCH, PUT, POST
    r = site.patch("victim.example", {"managed_by": "domains"})
    assert r.status == 200 and r.body["managed_by"] == "domains", r
    r = site.put("new.example", {"level": "may", "managed_by": "domains"})
    assert r.status == 201 and r.body["managed_by"] == "domains", r
    r = site.post({"destination": "post.example", "level": "may", "managed_by": "domains"})
    assert r.status == 201 and r.body["managed_by"] == "domains", r
    # ... and the manager can hand its row back
    r = site.patch("new.example", {"managed_by": None}, "?manager=domains")
    assert r.status == 200 and r.body["managed_by"] is None, r
    # bulk replace sets unmanaged rows only, whatever the scope: the item is named
    before = site.snapshot()
    r = site.bulk([{"destination": "x.example", "level": "may", "managed_by": "domains"}])
    assert_problem(r, 422, "invalid_value", "/items/0/managed_by")
    assert_unchanged(site, before, "a bulk item with managed_by")
    site.assert_map_is_the_enabled_rows()


def test_worker_checks_the_scope_recorded_in_the_job(site):
    """A job row that says scope 'write' and changes managed_by fails in the worker, whoever put
    it there (here: inserted into PostgreSQL as the API would, then run by the start-up
    recovery)."""
    site.put_ok("victim.example", {"level": "encrypt"}, status=201)
    site.put_ok("held.example", {"level": "encrypt", "managed_by": "domains"}, status=201)
    node = site.sql("SELECT node FROM jobs ORDER BY id LIMIT 1")
    assert node, "no job row to take the node name from"
    site.d.stop()
    jobs = [  # (action, target, request body, the field the failure names)
        ("policies.patch", "victim.example",
         {"policy": {"managed_by": "domains"}, "manager": None, "scope": "write"}, "/managed_by"),
        ("policies.put", "victim.example",
         {"policy": {"destination": "victim.example", "level": "encrypt",
                     "managed_by": "domains"}, "manager": None, "scope": "write"}, "/managed_by"),
        # no scope recorded at all counts as below admin
        ("policies.post", "new.example",
         {"policy": {"destination": "new.example", "level": "may", "managed_by": "domains"},
          "manager": None}, "/managed_by"),
        ("policies.bulk", "tls-policies",
         {"policy": [{"destination": "victim.example", "level": "encrypt", "managed_by": None},
                     {"destination": "bulk.example", "level": "may", "managed_by": "domains"}],
          "manager": None, "scope": "write"}, "/items/1/managed_by"),
        # acting as a manager (?manager=) needs admin too
        ("policies.patch", "held.example",
         {"policy": {"level": "may"}, "manager": "domains", "scope": "write"}, "manager"),
    ]
    ids = []
    for action, target, body, field in jobs:
        req = json.dumps({"body": body}).replace("'", "''")
        ids.append((action, target, field, site.sql(
            "INSERT INTO jobs (node, status, actor, action, target, request) VALUES "
            f"('{node}', 'queued', 'writer', '{action}', '{target}', '{req}'::jsonb) RETURNING id"
        ).splitlines()[0]))
    site.d.start()
    site.d.mark_fd_baseline()
    for action, target, field, jid in ids:
        wait_until(lambda: site.sql(f"SELECT status FROM jobs WHERE id = {jid}")
                   in ("applied", "failed"), 60, f"job {jid} to run")
        job = site.job(jid)
        assert job["status"] == "failed", f"{action} {target}: {job}"
        err = job["error"]
        assert err and err.get("code") == "forbidden" and err.get("field") == field, \
            f"{action} {target}: {job}"
    assert site.get("victim.example").body["managed_by"] is None
    assert site.get("held.example").body["level"] == "encrypt"
    assert site.get("new.example").status == 404
    assert site.get("bulk.example").status == 404
    assert [p["destination"] for p in site.policies("managed=true")] == ["held.example"]
    site.assert_map_is_the_enabled_rows()


# == 12. the administrator's own policy maps ========================================================
def split_maps(value):
    """A map list as Postfix's mystrtokq() splits it: separators are commas and whitespace,
    `{ ... }` groups (nested) are part of the token they are in."""
    tokens, cur, depth = [], "", 0
    for ch in value:
        if depth == 0 and ch in ", \t\r\n":
            if cur:
                tokens.append(cur)
            cur = ""
            continue
        depth += ch == "{"
        depth -= ch == "}" and depth > 0
        cur += ch
    if cur:
        tokens.append(cur)
    return tokens


def maps_in_force(pf):
    return split_maps(pf.postconf("-hx", "smtp_tls_policy_maps").strip())


def lookup(pf, key):
    """What Postfix's smtp client finds for key: the first map in smtp_tls_policy_maps that has
    it (postmap -q), or None."""
    for m in maps_in_force(pf):
        proc = run(["postmap", "-c", pf.config_dir, "-q", key, m], check=False)
        assert proc.returncode in (0, 1) and not proc.stderr.strip(), \
            f"postmap -q {key} {m}: exit {proc.returncode} {proc.stderr}"
        if proc.returncode == 0:
            return " ".join(proc.stdout.split())
    return None


@pytest.fixture
def admin_site(make_daemon, session_dir, pg):
    """A Postfix whose administrator has two policy maps of their own (hash: with 53 entries,
    texthash:) and an inline map, listed over a continuation line; a plain remote MX (no
    STARTTLS) that the admin's map says needs encrypt; a daemon managing it all."""
    plain = PostfixSandbox.remote_mx(os.path.join(session_dir, f"secpol-mx{next(_counter)}"))
    plain.start()
    base = os.path.join(session_dir, f"secpol{next(_counter)}")
    etc = os.path.join(base, "etc")
    admin_map, second_map = os.path.join(etc, "admin_policy"), os.path.join(etc, "second_policy")
    hop = f"[127.0.0.1]:{plain.port}"
    maps = (f"hash:{admin_map}, texthash:{second_map}\n"
            "    inline:{ { inline.example = encrypt }, { inline-may.example = may } }")
    pf = PostfixSandbox(base, extra={"smtp_tls_policy_maps": maps,
                                     "transport_maps": f"hash:{etc}/transport"})
    pf.setup()
    entries = {"bank.example": "encrypt", hop: "encrypt", "shared.example": "encrypt",
               "[mx.bank.example]:25": "secure match=mx.bank.example"}
    entries.update({f"k{i:02d}.example": ("may", "encrypt", "none")[i % 3] for i in range(49)})
    assert len(entries) == 53
    with open(admin_map, "w") as f:
        f.writelines(f"{k}\t{v}\n" for k, v in entries.items())
    pf.postmap(f"hash:{admin_map}")
    with open(second_map, "w") as f:
        f.write("second.example encrypt\nbank.example none\nk01.example dane\n")
    with open(os.path.join(etc, "transport"), "w") as f:
        f.write(f"bank.example\tsmtp:{hop}\n")
    pf.postmap(f"hash:{etc}/transport")
    pf.start()
    keys = sorted(set(entries) | {"second.example", "inline.example", "inline-may.example",
                                  "nothing.example"})
    theirs = split_maps(maps)
    baseline = {k: lookup(pf, k) for k in keys}
    assert baseline["bank.example"] == "encrypt" and baseline["second.example"] == "encrypt"
    assert baseline["inline.example"] == "encrypt" and baseline["nothing.example"] is None
    cfg = {"postfix_config_directory": pf.config_dir, **pf.argv_prefixes,
           "smtp_probe_address": f"127.0.0.1:{pf.port}"}
    site = PolicySite(make_daemon(cfg), pf, pg)
    site.theirs, site.baseline, site.plain, site.hop = theirs, baseline, plain, hop
    yield site
    site.psql.close()
    pf.stop()
    plain.stop()


def assert_theirs_kept(site, ours=None, what=""):
    """smtptlsd's map first, then the administrator's in their order (once each); every key
    smtptlsd has no entry for answers as before; those it has answer its value."""
    ours = ours or {}
    mine = f"hash:{os.path.join(site.pf.config_dir, MAP_NAME)}"
    got = maps_in_force(site.pf)
    assert got == [mine] + site.theirs, f"{what}: smtp_tls_policy_maps = {got}"
    wrong = {}
    for key, want in site.baseline.items():
        want = ours.get(key, want)
        value = lookup(site.pf, key)
        if value != want:
            wrong[key] = (value, want)
    assert not wrong, f"{what}: keys answer differently (now, expected): {wrong}"


def assert_bank_mail_needs_tls(site):
    """A real delivery: the admin's `[127.0.0.1]:PORT encrypt` still makes Postfix refuse to send
    to the plain MX in cleartext."""
    rcpt = f"m{next(_counter)}@bank.example"
    site.pf.send_mail(rcpt)
    m = site.pf.wait_maillog(rf"(?m)to=<{re.escape(rcpt)}>, relay=.*? status=(\w+) \((.*)\)$", 30)
    assert m.group(1) == "deferred" and TLS_NOT_OFFERED in m.group(2), m.group(0)


@pytest.mark.parametrize("first", ["settings", "policy"])
def test_taking_over_keeps_the_administrators_policy_maps(admin_site, first):
    site = admin_site
    writes = {
        "settings": lambda: site.d.http("PUT", "/api/v1/settings", {"mode": "none"}),
        "policy": lambda: site.put("shared.example", {"level": "may"}),
    }
    ours = {}
    for step in (first, "settings" if first == "policy" else "policy"):
        r = writes[step]()
        assert r.status in (200, 201), f"{step} write: {r}"
        if step == "policy":
            ours["shared.example"] = "may"
        assert_theirs_kept(site, ours, f"after the {step} write")
    text = site.pf.main_cf_text()
    # idempotent: a second write of each kind changes nothing in main.cf
    assert site.d.http("PUT", "/api/v1/settings", {"mode": "none"}).status == 200
    assert site.put("shared.example", {"level": "may"}).status == 200
    assert site.pf.main_cf_text() == text, "a repeated write changed main.cf"
    assert_bank_mail_needs_tls(site)

    # the last policy deleted: smtptlsd's (empty) map stays first, theirs stay after it
    r = site.delete("shared.example")
    assert r.status == 204, r
    assert_theirs_kept(site, {}, "after deleting the last policy")
    assert_bank_mail_needs_tls(site)
