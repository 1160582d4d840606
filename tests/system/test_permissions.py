# What the daemon writes is owned by the user it runs as (root in production and in CI), never group-
# or other-writable, private keys 0600 and their directories 0700 — even when the daemon is started
# with umask 000; `postfix check` has nothing to say about our files; the systemd unit's exposure
# score stays at 1.8 or below (docs/operations.md explains what remains).
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
    assert float(m.group(1)) <= 1.8, r.stdout


def unit_settings(name):
    """Every value of NAME= in the shipped unit, split into words, in order."""
    unit = os.path.join(REPO_ROOT, "systemd", "smtptlsd.service")
    words = []
    with open(unit) as f:
        for line in f:
            if line.startswith(name + "="):
                words += line.split("=", 1)[1].split()
    return words


def under(path, roots):
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


def test_unit_executes_only_what_the_daemon_runs(make_site, tmp_path):
    """ExecPaths= of the unit (everything else noexec) covers every program and shared library that
    the daemon's commands really execute: each command is run under strace for a certificate
    binding (postconf, reload), a rotation and a policy write (postmap)."""
    if not shutil.which("strace"):
        pytest.skip("strace is not installed")
    assert unit_settings("NoExecPaths") == ["/"]
    allowed = [os.path.realpath(p.lstrip("-")) for p in unit_settings("ExecPaths")]
    traces = tmp_path / "traces"
    traces.mkdir()
    wrap = f"strace -f -qq -e trace=execve,openat -o {traces}/t -ff"
    site = make_site(config={"postfix_command": f"{wrap} postfix",
                             "postconf_command": f"{wrap} postconf",
                             "postmap_command": f"{wrap} postmap"})
    for name in ("k0", "k1"):
        site.add_cert(name)
    site.put_ok({"mode": "may", "certificate": "k0"})
    site.patch_ok({"certificate": "k1"})
    r = site.d.http("PUT", "/api/v1/tls-policies/example.org", {"level": "encrypt"})
    assert r.status in (200, 201), r
    site.assert_in_sync()

    executed, libraries = set(), set()
    for trace in traces.iterdir():
        for line in trace.read_text().splitlines():
            m = re.match(r'execve\("([^"]+)".* = 0$', line)
            if m:
                executed.add(os.path.realpath(m.group(1)))
            m = re.match(r'openat\(AT_FDCWD, "([^"]+\.so[.0-9]*)".* = \d+$', line)
            if m:
                libraries.add(os.path.realpath(m.group(1)))
    names = {os.path.basename(p) for p in executed}
    # the trace saw what it must: otherwise this test would pass vacuously
    assert {"postfix", "postconf", "postmap", "postsuper", "master"} <= names, executed
    assert any("libc.so" in p for p in libraries), libraries
    outside = sorted(p for p in executed | libraries if not under(p, allowed))
    assert not outside, f"executed but not in ExecPaths= of the unit: {outside}"
    assert os.path.realpath("/usr/sbin/smtptlsd") in allowed or "/usr/sbin/smtptlsd" in allowed


def test_unit_network_is_loopback_and_the_api_port():
    """IP traffic only with this host, binds only the API's default port (docs/operations.md
    "Network" explains the drop-in for a remote database or management network)."""
    assert unit_settings("IPAddressDeny") == ["any"]
    assert unit_settings("IPAddressAllow") == ["localhost"]
    assert unit_settings("SocketBindDeny") == ["any"]
    port = re.search(r'KEY\(listen_port, CONF_INT, "(\d+)"',
                     open(os.path.join(REPO_ROOT, "src", "conf.c")).read()).group(1)
    assert unit_settings("SocketBindAllow") == [f"tcp:{port}"]
