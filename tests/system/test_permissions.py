# What the daemon writes is owned by the user it runs as (root in production and in CI), never group-
# or other-writable, private keys 0600 and their directories 0700 — even when the daemon is started
# with umask 000; `postfix check` has nothing to say about our files; the systemd unit's exposure
# score stays at 2.5 or below (docs/operations.md explains what remains).
import os
import re
import shutil
import stat

import pytest

from tests.harness.util import REPO_ROOT, run
from tests.system.conftest import setup_tokens
from tests.system.test_settings import make_site  # noqa: F401  (a fixture)


def walk(root):
    """root itself and everything below it, as paths."""
    yield root
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            yield os.path.join(dirpath, name)


def ours(site):
    """Every path the daemon wrote: main.cf, the policy map, its state directory, the certificates."""
    cfg = site.pf.config_dir
    paths = [site.pf.main_cf]
    paths += [os.path.join(cfg, n) for n in os.listdir(cfg) if n.startswith("smtptlsd_")]
    paths += list(walk(site.state_dir)) + list(walk(site.cert_dir))
    return paths


def test_files_are_private_and_owned_even_with_umask_000(make_site):
    site = make_site(start=False)
    old = os.umask(0)  # inherited by the daemon; restored at once for the test process
    try:
        site.d.start()
    finally:
        os.umask(old)
    setup_tokens(site.d)
    for name in ("k0", "k1"):
        site.add_cert(name)
    site.put_ok({"mode": "may", "certificate": "k0"})
    site.patch_ok({"certificate": "k1"})  # a second version directory, main.cf.lkg
    for dest in ("example.org", ".example.net"):
        r = site.d.http("PUT", "/api/v1/tls-policies/" + dest, {"level": "encrypt"})
        assert r.status in (200, 201), r
    r = site.d.http("PUT", "/api/v1/tls-policies/example.org", {"level": "verify"})
    assert r.status == 200, r  # the map's last-known-good copy
    site.assert_in_sync()

    paths = ours(site)
    keys = [p for p in paths if os.path.basename(p) == "privkey.pem"]
    assert keys, "no private key written"
    assert any(p.endswith("smtptlsd_tls_policy.db") for p in paths), paths
    problems = []
    for path in paths:
        st = os.lstat(path)
        if st.st_uid != os.geteuid() or st.st_gid != os.getegid():
            problems.append(f"{path}: owned by {st.st_uid}:{st.st_gid}")
        if stat.S_ISLNK(st.st_mode):
            problems.append(f"{path}: a symbolic link")
        if st.st_mode & 0o022:
            problems.append(f"{path}: group/other writable ({oct(st.st_mode & 0o777)})")
        if stat.S_ISREG(st.st_mode) and st.st_mode & 0o111:
            problems.append(f"{path}: executable ({oct(st.st_mode & 0o777)})")
    for key in keys:
        mode = os.stat(key).st_mode & 0o777
        if mode != 0o600:
            problems.append(f"{key}: {oct(mode)}, expected 0600")
        version_dir = os.path.dirname(key)
        for d in (version_dir, os.path.dirname(version_dir), site.state_dir):
            mode = os.stat(d).st_mode & 0o777
            if mode & 0o077:
                problems.append(f"{d}: {oct(mode)}, expected no access for group/other")
    assert os.stat(site.pf.main_cf).st_mode & 0o777 == 0o644
    assert not problems, "\n".join(problems)

    # Postfix's own check: nothing about any file of ours (the whole output is shown if it fails)
    r = run(["postfix", "-c", site.pf.config_dir, "check"], check=False)
    assert r.returncode == 0, r.stderr
    ours_named = [line for line in (r.stdout + r.stderr).splitlines()
                  if any(s in line for s in ("smtptlsd", site.cert_dir, "main.cf"))]
    assert not ours_named and "warning:" not in r.stderr, r.stdout + r.stderr
    r = run(["postconf", "-c", site.pf.config_dir, "-n"], check=False)
    assert r.returncode == 0 and "warning:" not in r.stderr, r.stderr


def test_systemd_unit_exposure_score():
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze is not installed")
    unit = os.path.join(REPO_ROOT, "systemd", "smtptlsd.service")
    r = run(["systemd-analyze", "security", "--offline=true", unit], check=False)
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", r.stdout + r.stderr)
    assert m, r.stdout + r.stderr
    assert float(m.group(1)) <= 2.5, r.stdout
