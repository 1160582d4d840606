# Security findings of issue 10 about certificates, black box against the real daemon (ASan), a real
# PostgreSQL and a real Postfix sandbox:
#  3. a FIFO (or any non-regular file) in the ACME live directory must not hang the worker, neither
#     in a rescan nor in the start-up scan; certbot's layout (live/NAME/*.pem -> ../../archive/...)
#     keeps working; an ACME directory writable by someone else than root is refused.
#  4. certificate rows are re-validated when loaded from the database: a hostile name or fingerprint
#     written straight into PostgreSQL never reaches a path or main.cf.
# 11. an ACME renewal is exactly one `postfix reload`, and the policy write after it none.
import os
import re
import shutil
import stat
import threading
import time

import pytest

from tests.harness.util import wait_until
from tests.system.conftest import setup_tokens
from tests.system.test_certificates import (HOST, RELOADS, Lineage, acme_leaf, json_body,
                                            main_cf_params, make_site, poll_served, tree)

assert make_site  # a fixture, used by name


def policy_put(site, dest, note):
    r = site.d.http("PUT", f"/api/v1/tls-policies/{dest}", {"level": "encrypt", "note": note},
                    timeout=60)
    assert r.status in (200, 201), f"PUT policy {dest}: {r}"
    return r


def acme_site(make_site, certs, name="mail"):
    """A daemon + Postfix with a certbot lineage `name` bound (mode may) and one policy."""
    site = make_site(start=False)
    os.makedirs(site.live_dir)
    site.d.start()
    setup_tokens(site.d)
    lineage = Lineage(site.live_dir, name)
    first = acme_leaf(certs, name, 1)
    lineage.create(first)
    assert name in site.rescan().get("acme", [])
    site.bind(name)
    assert site.served() == first.fingerprint()
    policy_put(site, "first.example", "before")
    return site, lineage


# -- 11. one renewal, one reload -----------------------------------------------------------------
ROUNDS = 20


def test_acme_renewal_is_one_reload_and_the_next_policy_write_none(make_site, certs):
    site, mail = acme_site(make_site, certs)
    leaves = [acme_leaf(certs, "mail", n) for n in range(2, ROUNDS + 2)]
    for i, renewed in enumerate(leaves):
        reloads = site.metric(RELOADS, result="ok")
        last_job = max(j["id"] for j in site.jobs())
        mail.renew(renewed, atomic=bool(i % 2))
        poll_served(site.pf.port, renewed.fingerprint(), timeout=30)

        def watch_job():
            return [j for j in site.jobs() if j["id"] > last_job and j["actor"] == "acme-watch"
                    and j["status"] in ("applied", "failed")]
        jobs = wait_until(watch_job, 15, "the acme-watch rescan job to finish")
        assert all(j["status"] == "applied" for j in jobs), jobs
        after_renewal = site.metric(RELOADS, result="ok")
        assert after_renewal - reloads == 1, \
            f"round {i}: the renewal made {after_renewal - reloads} reloads (jobs {jobs})"
        # a policy write right after: never a reload
        r = policy_put(site, "first.example", f"round {i}")
        job = site.job(int(r.headers["Job-Id"]))
        assert job["reload"] is False, f"round {i}: the policy write reloaded Postfix: {job}"
        assert site.metric(RELOADS, result="ok") == after_renewal, f"round {i}: a policy write reloaded"
    assert site.served() == leaves[-1].fingerprint()


MASTER_RELOAD = re.compile(r"postfix(?:/[\w.-]+)?/master\[\d+\]: reload -- ")


def test_renewal_batch_that_loses_the_database_after_the_reload_is_not_reloaded_again(
        make_site, certs, pg):
    """The renewal's batch reloads Postfix, then loses the database before COMMIT: it is put back
    and retried. Postfix already has the renewed files, so neither the retry nor the policy write
    after it may reload again (the worker used to remember the reload only on COMMIT)."""
    site, mail = acme_site(make_site, certs)
    if "fault injection compiled in" not in site.d.run_cli(["--version"]).stdout:
        pytest.skip("no fault points in this build (build-asan has them)")
    fault = os.path.join(site.d.workdir, "fault")
    site.d.stop()
    site.d.extra_env["SMTPTLSD_FAULT_FILE"] = fault
    site.d.start()
    site.d.mark_fd_baseline()
    db = site.d.config["database_url"].rsplit("/", 1)[1]
    for n in range(2, 5):
        renewed = acme_leaf(certs, "mail", n)
        last_job = max(j["id"] for j in site.jobs())
        start = len(site.pf.maillog())
        with open(fault, "w") as f:
            f.write("before_commit stall 3000\n")
        mail.renew(renewed)
        site.d.wait_log(r"fault injection: stalling 3000 ms at before_commit", timeout=20)
        os.unlink(fault)
        pg.psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                f"WHERE datname = '{db}' AND pid <> pg_backend_pid()", db=db)
        poll_served(site.pf.port, renewed.fingerprint(), timeout=30)

        def watch_job():
            return [j for j in site.jobs() if j["id"] > last_job and j["actor"] == "acme-watch"
                    and j["status"] == "applied"]
        wait_until(watch_job, 30, "the renewal's rescan job, retried, applied")
        r = policy_put(site, "first.example", f"after renewal {n}")
        assert site.job(int(r.headers["Job-Id"]))["reload"] is False
        time.sleep(1)
        reloads = MASTER_RELOAD.findall(site.pf.maillog()[start:])
        assert len(reloads) == 1, \
            f"renewal {n}: Postfix was reloaded {len(reloads)} times (maillog), expected once"
    assert site.get("mail")["sha256_fingerprint"] == renewed.fingerprint()


# -- 3. what the ACME directory holds is not trusted blindly ---------------------------------------
def warnings_of(summary, code):
    return [w["detail"] for w in summary.get("warnings", []) if w["code"] == code]


def timed(fn, *args, **kw):
    t0 = time.monotonic()
    out = fn(*args, **kw)
    return out, time.monotonic() - t0


def test_fifo_in_the_acme_directory_never_blocks_the_worker(make_site, certs):
    site, mail = acme_site(make_site, certs)
    # an unbound lineage whose fullchain.pem is a FIFO: the rescan reads it
    trap = os.path.join(site.live_dir, "trap")
    os.makedirs(trap)
    os.mkfifo(os.path.join(trap, "fullchain.pem"))
    os.mkfifo(os.path.join(trap, "privkey.pem"))
    r, took = timed(site.d.http, "POST", "/api/v1/certificates/rescan", timeout=10)
    assert r.status == 200, r
    details = warnings_of(r.body, "acme_certificate_unreadable")
    assert any(os.path.join(trap, "") in d or "live/trap" in d for d in details), r.body
    assert "trap" not in site.names("?type=acme")
    # and every later write goes through at once
    r, took = timed(policy_put, site, "first.example", "after the fifo")
    print(f"\npolicy write after a FIFO rescan: {took:.3f} s")
    assert took < 5, f"a write took {took:.2f} s after the FIFO rescan"
    assert site.status()["state"] == "in_sync"

    # the bound lineage's private key becomes a FIFO: a write that validates it is refused at once
    key = os.path.join(mail.live, "privkey.pem")
    os.unlink(key)
    os.mkfifo(key)
    r, took = timed(site.d.http, "PATCH", "/api/v1/settings", {"loglevel": 2}, timeout=10)
    assert r.status == 422 and r.body["code"] == "certificate_unusable", r
    assert "privkey.pem" in r.body["detail"] and "regular file" in r.body["detail"], r.body
    r, took = timed(policy_put, site, "first.example", "still fine")
    assert took < 5, f"a write took {took:.2f} s"
    assert site.served() is not None


@pytest.mark.expect_errors(r"start-up reconcile failed: .*privkey\.pem is not a regular file")
def test_daemon_started_with_a_fifo_in_the_acme_directory_gets_ready(make_site, certs):
    site, mail = acme_site(make_site, certs)
    site.d.stop()
    trap = os.path.join(site.live_dir, "trap")
    os.makedirs(trap)
    os.mkfifo(os.path.join(trap, "fullchain.pem"))
    shutil.copy(mail.live + "/privkey.pem", os.path.join(trap, "privkey.pem"))
    key = os.path.join(mail.live, "privkey.pem")
    os.unlink(key)
    os.mkfifo(key)
    t0 = time.monotonic()
    site.d.start(timeout=30)  # READY=1
    print(f"\nREADY after {time.monotonic() - t0:.2f} s with FIFOs in the ACME directory")
    site.d.mark_fd_baseline()
    assert "trap" not in site.names("?type=acme")
    assert site.d.get("/readyz", token=None).status == 200
    assert any("live/trap/fullchain.pem is not a regular file" in line
               for line in site.d.log_lines()), site.d.log_tail()
    # put right: the next write applies
    os.unlink(key)
    os.symlink(mail.target("privkey"), key)
    policy_put(site, "first.example", "repaired")
    r = site.d.http("PATCH", "/api/v1/settings", {"loglevel": 2}, timeout=60)
    assert r.status == 200, r


def test_certbot_symlinks_are_followed_inside_the_tree_only(make_site, certs):
    site, mail = acme_site(make_site, certs)
    g = site.get("mail")  # certbot's relative links into ../../archive/mail/ work
    assert g["files"]["chain"] == os.path.join(mail.live, "fullchain.pem"), g
    assert os.path.islink(g["files"]["chain"])
    # a lineage whose links lead out of the ACME client's tree (absolute, or ../ too far)
    outside = os.path.join(os.path.dirname(os.path.dirname(site.live_dir)), "outside")
    os.makedirs(outside)
    leaf = acme_leaf(certs, "escape", 1)
    shutil.copy(leaf.fullchain, os.path.join(outside, "fullchain.pem"))
    shutil.copy(leaf.key, os.path.join(outside, "privkey.pem"))
    for name, target in (("absolute", outside), ("dotdot", "../../../outside")):
        d = os.path.join(site.live_dir, name)
        os.makedirs(d)
        for f in ("fullchain.pem", "privkey.pem"):
            os.symlink(os.path.join(target, f), os.path.join(d, f))
    summary = site.rescan()
    details = warnings_of(summary, "acme_certificate_unreadable")
    for name in ("absolute", "dotdot"):
        assert any(f"live/{name}/" in d and "leads out of" in d for d in details), summary
        assert name not in site.names("?type=acme")
    assert site.names("?type=acme") == ["mail"]


def test_acme_tree_reached_through_a_symlink_works(make_site, certs):
    """/etc/letsencrypt may itself be a symlink (to another disk): the checks are made on the tree
    as the kernel resolves it, and certbot's layout below it still works."""
    site = make_site(start=False)
    le = os.path.dirname(site.live_dir)
    real = le + "-real"
    os.makedirs(os.path.join(real, "live"))
    os.symlink(real, le)
    site.d.start()
    setup_tokens(site.d)
    leaf = acme_leaf(certs, "linked", 1)
    Lineage(site.live_dir, "linked").create(leaf)
    summary = site.rescan()
    assert summary.get("warnings") == [], summary
    assert site.get("linked")["sha256_fingerprint"] == leaf.fingerprint()
    site.bind("linked")
    assert site.served() == leaf.fingerprint()


@pytest.mark.parametrize("how", ["group-writable live dir", "archive owned by nobody",
                                 "other-writable key"])
def test_acme_directory_another_user_can_change_is_refused(make_site, certs, how):
    site, mail = acme_site(make_site, certs)
    lineage = Lineage(site.live_dir, "weak")
    lineage.create(acme_leaf(certs, "weak", 1))
    if how == "group-writable live dir":
        os.chmod(lineage.live, 0o775)
        culprit = lineage.live
    elif how == "archive owned by nobody":
        os.chown(lineage.archive, 65534, 65534)
        culprit = lineage.archive
    else:
        culprit = os.path.join(lineage.archive, "privkey1.pem")
        os.chmod(culprit, 0o606)
    summary = site.rescan()
    details = warnings_of(summary, "acme_certificate_unreadable")
    assert any(culprit in d and "not trusted" in d for d in details), summary
    assert "weak" not in site.names("?type=acme")
    assert any(culprit in line and "not trusted" in line for line in site.d.log_lines())
    # mended: imported
    os.chmod(lineage.live, 0o755)
    os.chown(lineage.archive, 0, 0)
    os.chmod(os.path.join(lineage.archive, "privkey1.pem"), 0o600)
    site.rescan()
    assert "weak" in site.names("?type=acme")


# -- 4. certificate rows are checked when loaded ------------------------------------------------------
HOSTILE_ROWS = [
    ("fingerprint", "sha256_fingerprint = '../../evil-fp-xx'"),
    ("fingerprint", "sha256_fingerprint = lower(sha256_fingerprint)"),
    ("name", "name = 'good/../../evil-name'"),
    ("name", "name = 'good, /etc/ssl/private/evil.pem'"),
    ("name", "name = 'good' || chr(10) || 'smtpd_tls_security_level = none'"),
    ("name", "name = 'good /tmp/evil'"),
]


@pytest.mark.parametrize("column,assignment", HOSTILE_ROWS,
                         ids=["fp-path", "fp-lower", "name-dotdot", "name-comma", "name-newline",
                              "name-space"])
def test_hostile_certificate_row_is_refused_when_loaded(make_site, certs, pg, column, assignment):
    site = make_site()
    leaf = certs.leaf("hostile-row", (HOST,), kind="ec")
    site.put_ok("good", json_body(leaf))
    site.bind("good")
    assert site.served() == leaf.fingerprint()
    db = site.d.config["database_url"].rsplit("/", 1)[1]
    workdir = os.path.dirname(site.cert_dir)
    main_cf = open(site.pf.main_cf, "rb").read()
    # the row, written around the API (the name's CHECK constraint dropped first: a restored dump,
    # a hand edit, another tool with the table's privileges)
    if column == "name":
        pg.psql("ALTER TABLE certificates DROP CONSTRAINT certificates_name_check", db=db)
    # the version directory is gone (pruned, or a new host): the worker would render it again
    shutil.rmtree(os.path.join(site.cert_dir, "good"))
    before = tree(site.cert_dir, site.pf.config_dir)
    pg.psql(f"UPDATE certificates SET {assignment} WHERE name = 'good'", db=db)

    r = site.d.http("PATCH", "/api/v1/settings", {"loglevel": 2}, timeout=60)
    assert r.status == 422 and r.body["code"] == "certificate_unusable", r
    assert "is refused" in r.body["detail"] and column in r.body["detail"], r.body
    assert any(re.search(r"certificates row id \d+ refused: its (sha256_)?" + column, line)
               for line in site.d.log_lines()), site.d.log_tail()
    # nothing written anywhere, main.cf byte for byte as it was
    assert open(site.pf.main_cf, "rb").read() == main_cf
    after = tree(site.cert_dir, site.pf.config_dir)
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    assert changed == [], f"written by the refused apply: {changed}"
    assert not os.path.exists(os.path.join(workdir, "evil-fp-xx"))
    assert not os.path.exists(os.path.join(workdir, "evil-name"))
    assert site.served() == leaf.fingerprint()
