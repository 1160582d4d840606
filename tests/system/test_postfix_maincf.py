# Issue 12 item 4: main.cf read and edited as Postfix reads it (logical lines after readllines():
# a line starting with whitespace continues the one before, comments and blank lines in between
# neither end nor join it). Judged by Postfix's own tools on scratch directories and by a daemon
# managing a sandbox Postfix whose main.cf defines a TLS parameter over several lines.
#
# The corpus (tests/data/maincf/): NAME.cf is an odd but valid main.cf, NAME.n what `postconf -n`
# prints for it, NAME.edited what smtptlsd makes of it when it sets the parameters of
# EDIT_PARAMS (the unit test tests/unit/test_maincf.c checks smtptlsd's reading against NAME.n
# and its edit against NAME.edited byte for byte; here the real postconf judges both files).
import os
import re
import shutil

import pytest

from tests.harness.postfix import ADMIN_LINES
from tests.harness.util import run
from tests.system.test_settings import smtp_observe
from tests.system.test_settings import make_site  # noqa: F401 (a fixture)

CORPUS = os.path.join(os.path.dirname(__file__), "..", "data", "maincf")
CASES = sorted(f[:-3] for f in os.listdir(CORPUS) if f.endswith(".cf"))
OVERRIDE = re.compile(r"overriding earlier entry: ([^=\s]+)=")
UNUSED = re.compile(r"unused parameter: ([^=\s]+)=(.*)")


def corpus(name, ext):
    with open(os.path.join(CORPUS, name + ext), "rb") as f:
        return f.read()


def edit_params():
    """EDIT_PARAMS: [(name, value or None = removed, merge)]: merge: the value is our map, put
    first in the live list (maincf_maps_merge)."""
    out = []
    for line in corpus("EDIT_PARAMS", "").decode().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        if line.startswith("-"):
            out.append((line[1:].strip(), None, False))
            continue
        merge = line.startswith("+")
        name, _, value = line.lstrip("+").partition("=")
        out.append((name.strip(), value.strip(), merge))
    return out


def postconf(text, *args):
    """postconf -c DIR ARGS on a scratch directory holding main.cf = text (bytes):
    (stdout lines without config_directory, stderr)."""
    d = scratch(text)
    try:
        r = run(["postconf", "-c", d, *args], check=False)
        assert r.returncode == 0, f"postconf {args} failed: {r.stderr}"
        lines = [x for x in r.stdout.splitlines() if not x.startswith("config_directory = ")]
        return lines, r.stderr
    finally:
        shutil.rmtree(d)


_scratch = [0]


def scratch(text):
    base = os.environ.get("TMPDIR", "/tmp")
    _scratch[0] += 1
    d = os.path.join(base, f"stls-maincf-{os.getpid()}-{_scratch[0]}")
    os.makedirs(d)
    with open(os.path.join(d, "main.cf"), "wb") as f:
        f.write(text)
    open(os.path.join(d, "master.cf"), "w").close()
    old = os.stat(d).st_mtime - 10  # not "hot": postconf reads it at once
    os.utime(os.path.join(d, "main.cf"), (old, old))
    return d


def as_dict(lines):
    out = {}
    for line in lines:
        name, _, value = line.partition(" =")
        out[name] = value[1:] if value.startswith(" ") else value
    return out


def overridden(stderr):
    return {m.group(1) for m in OVERRIDE.finditer(stderr)}


@pytest.mark.parametrize("case", CASES)
def test_corpus_read_as_postconf_reads_it(case):
    """NAME.n, which the unit test holds smtptlsd's reading to, is what postconf -n prints."""
    lines, _ = postconf(corpus(case, ".cf"), "-n")
    assert "\n".join(lines) + "\n" == corpus(case, ".n").decode(), \
        f"{case}.n is not what postconf -n prints for {case}.cf"


@pytest.mark.parametrize("case", CASES)
def test_corpus_edit_is_read_by_postconf_with_the_new_values(case):
    """After smtptlsd's edit (NAME.edited): no "overriding earlier entry" for an edited parameter,
    each has its new value, every other parameter means what it meant, and the result is the
    one postconf -e / -X (Postfix's own editor) gives for the same change."""
    before = as_dict(corpus(case, ".n").decode().splitlines())
    edited = corpus(case, ".edited")
    lines, stderr = postconf(edited, "-n")
    after = as_dict(lines)
    params = edit_params()
    names = {name for name, _, _ in params}
    assert not overridden(stderr) & names, f"{case}.edited: postconf warns:\n{stderr}"
    _, stderr_before = postconf(corpus(case, ".cf"), "-n")
    assert overridden(stderr) <= overridden(stderr_before), stderr

    want = {}
    for name, value, merge in params:
        if merge:
            live = [t for t in re.split(r"[,\s]+", before.get(name, "")) if t and t != value]
            value = ", ".join([value, *live])
        want[name] = value
    for name, value in want.items():
        assert after.get(name) == value, f"{case}: {name} = {after.get(name)!r}, want {value!r}"
        if value is not None:
            h, _ = postconf(edited, "-h", name)
            assert h == [value], (case, name, h)
    # a helper parameter only a replaced value referred to ($inbound_level) is still defined, but
    # now unused: postconf -n leaves it out and names it in a warning
    unused = dict(UNUSED.findall(stderr))
    others = {k: v for k, v in {**unused, **after}.items() if k not in names}
    assert others == {k: v for k, v in before.items() if k not in names}, case

    # Postfix's own editor, on the original file, gives the same reading
    d = scratch(corpus(case, ".cf"))
    try:
        sets = [f"{n}={v}" for n, v in want.items() if v is not None]
        drops = [n for n, v in want.items() if v is None]
        run(["postconf", "-c", d, "-e", *sets])
        if drops:
            run(["postconf", "-c", d, "-X", *drops])
        r = run(["postconf", "-c", d, "-n"])
        theirs = [x for x in r.stdout.splitlines() if not x.startswith("config_directory = ")]
    finally:
        shutil.rmtree(d)
    assert lines == theirs, f"{case}: smtptlsd's edit and postconf -e read differently"


# -- a daemon managing a Postfix whose TLS parameters are defined over several lines ---------------
ADMIN_CONTINUED = ADMIN_LINES + """\
# TLS as the administrator wrote it before smtptlsd: names and values on separate lines
smtpd_tls_security_level
    = none
smtpd_tls_loglevel =
# a comment inside the definition stays where it is
\t0
smtpd_tls_session_cache_timeout
\t=
\t3600s
"""


def postconf_n(pf):
    r = run(["postconf", "-c", pf.config_dir, "-n"], check=False)
    assert r.returncode == 0, r.stderr
    return as_dict(r.stdout.splitlines()), r.stderr


def test_continuation_definitions_are_taken_over_at_the_first_write(make_site):  # noqa: F811
    site = make_site(admin_lines=ADMIN_CONTINUED)
    live, _ = postconf_n(site.pf)
    assert live["smtpd_tls_security_level"] == "none" and live["smtpd_tls_loglevel"] == "0", live
    assert smtp_observe(site.pf.port) == (False, None), "the sandbox starts without TLS"
    fp = site.add_cert("mx")

    r = site.put_ok({"mode": "may", "certificate": "mx", "loglevel": 1})
    assert r.body["managed"] is True, r.body
    assert smtp_observe(site.pf.port) == (True, fp), "STARTTLS with mx right after the write"
    v = site.wait_verified()
    assert v["state"] == "verified" and v["served_fingerprint_matches"] is True, v

    text = site.main_cf().decode()
    live, stderr = postconf_n(site.pf)
    assert "warning:" not in stderr, stderr
    assert live["smtpd_tls_security_level"] == "may" and live["smtpd_tls_loglevel"] == "1", live
    assert live["smtpd_tls_session_cache_timeout"] == "3600s", live
    # each definition replaced where it was, with all its lines; every other byte kept
    assert text.startswith(ADMIN_LINES + """\
# TLS as the administrator wrote it before smtptlsd: names and values on separate lines
smtpd_tls_security_level = may
smtpd_tls_loglevel = 1
# a comment inside the definition stays where it is
smtpd_tls_session_cache_timeout
\t=
\t3600s
"""), text
    for name in ("smtpd_tls_security_level", "smtpd_tls_loglevel"):
        assert len(re.findall(rf"^{name}\b", text, re.M)) == 1, text
    st = site.status()
    assert st["state"] == "in_sync" and st["drift"] == [], st
    assert site.config()["drift"] == []

    # a second write applies as well, and Postfix still reads one definition of each
    r = site.put_ok({"mode": "encrypt", "certificate": "mx", "loglevel": 2})
    live, stderr = postconf_n(site.pf)
    assert "warning:" not in stderr, stderr
    assert live["smtpd_tls_security_level"] == "encrypt" and live["smtpd_tls_loglevel"] == "2"
    assert smtp_observe(site.pf.port) == (True, fp)


def test_drift_is_read_as_postfix_reads_it(make_site):  # noqa: F811
    """The drift report reads main.cf with the same parser: a hand edit that splits a managed
    definition over lines is no drift when Postfix reads the same value, and shows the value
    Postfix reads when it differs."""
    site = make_site()
    site.add_cert("mx")
    site.put_ok({"mode": "may", "certificate": "mx", "loglevel": 1})
    text = site.main_cf().decode()
    assert "smtpd_tls_security_level = may\n" in text and "smtpd_tls_loglevel = 1\n" in text
    text = text.replace("smtpd_tls_security_level = may\n",
                        "smtpd_tls_security_level\n# by hand\n   =\tmay\n")
    text = text.replace("smtpd_tls_loglevel = 1\n", "smtpd_tls_loglevel\n\t= 3\n")
    with open(site.pf.main_cf, "w") as f:
        f.write(text)
    live, stderr = postconf_n(site.pf)
    assert "warning:" not in stderr, stderr
    assert live["smtpd_tls_security_level"] == "may" and live["smtpd_tls_loglevel"] == "3", live

    drift = site.config()["drift"]
    assert drift == [{"name": "smtpd_tls_loglevel", "live": "3", "desired": "1"}], drift
    assert site.status()["drift"] == drift
    site.patch_ok({"loglevel": 2})
    live, stderr = postconf_n(site.pf)
    assert "warning:" not in stderr, stderr
    assert live["smtpd_tls_security_level"] == "may" and live["smtpd_tls_loglevel"] == "2", live
    assert site.config()["drift"] == []


def test_a_commented_out_path_keeps_no_certificate_version(make_site):  # noqa: F811
    """Pruning reads main.cf with the same parser: a version directory that only a comment names
    (the administrator kept the old line, commented out) is not in use, and its private key goes."""
    site = make_site()
    site.add_cert("a")
    fp_b = site.add_cert("b")
    site.put_ok({"mode": "may", "certificate": "a"})
    live, _ = postconf_n(site.pf)
    key_a, chain_a = re.split(r"[,\s]+", live["smtpd_tls_chain_files"])
    with open(site.pf.main_cf, "a") as f:
        f.write(f"#smtpd_tls_chain_files = {key_a},\n#    {chain_a}\n")
    site.put_ok({"mode": "may", "certificate": "b"})
    assert smtp_observe(site.pf.port) == (True, fp_b)
    assert f"#smtpd_tls_chain_files = {key_a},\n" in site.main_cf().decode()
    assert not os.path.exists(os.path.dirname(key_a)), \
        f"{os.path.dirname(key_a)} (private key included) is kept though only a comment names it"


def test_a_warning_about_a_longer_admin_name_is_not_ours(make_site):  # noqa: F811
    """postconf warns about the administrator's unused `smtpd_tls_loglevel_note`; that is not a
    warning about the managed `smtpd_tls_loglevel` (a substring match refused every apply)."""
    site = make_site(admin_lines="smtpd_tls_loglevel_note = kept by the administrator\n")
    _, stderr = postconf_n(site.pf)
    assert "unused parameter: smtpd_tls_loglevel_note" in stderr, stderr
    fp = site.add_cert("mx")
    r = site.put_ok({"mode": "may", "certificate": "mx", "loglevel": 1})
    assert r.body["managed"] is True, r.body
    assert smtp_observe(site.pf.port) == (True, fp)
    assert "smtpd_tls_loglevel_note = kept by the administrator\n" in site.main_cf().decode()
