# The submission services settings manage in master.cf (settings `submission`: STARTTLS required,
# 587; `submissions`: implicit TLS, 465), against a real Postfix and real clients: `openssl
# s_client -connect` sees the bound certificate from the first byte on the submissions port, and
# after `-starttls smtp` on the submission port, right after the write's reply; EHLO there offers
# AUTH only after STARTTLS (Cyrus SASL); the master.cf edits are postconf's (read back with
# postconf -M/-P), shown by a dry run first, refused by name when a service would clash, and old
# or new after a kill -9 between master.cf's swap and main.cf's.
import os
import re
import smtplib
import socket
import ssl
import subprocess

import pytest

from tests.harness.util import free_port, port_is_open, run, wait_until
from tests.system.conftest import setup_tokens
from tests.system.test_crash import leftover_problems, settle
from tests.system.test_fault_points import arm, disarm, fault_build
from tests.system.test_settings import fingerprint_of_pem, make_site  # noqa: F401 (a fixture)

SASL = {"smtpd_sasl_type": "cyrus"}  # the administrator's SASL (Debian's default type)


def master_cf(site):
    with open(site.pf.master_cf, "rb") as f:
        return f.read()


def entry(site, service):
    """postconf -M of one service ("" when master.cf has none)."""
    return site.pf.postconf("-M", f"{service}/inet", check=False).strip()


def params(site, service):
    """postconf -P of one service: {name: value}."""
    out = site.pf.postconf("-P", f"{service}/inet", check=False)
    return dict(line.split("/", 2)[2].split(" = ", 1) for line in out.splitlines() if " = " in line)


def served_by_openssl(port, starttls):
    """The SHA-256 fingerprint `openssl s_client` sees on 127.0.0.1:port (TLS at once, or after
    -starttls smtp), or None when there is no handshake."""
    args = ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-showcerts"]
    if starttls:
        args += ["-starttls", "smtp"]
    proc = subprocess.run(args, input="", capture_output=True, text=True, timeout=20)
    if "-----BEGIN CERTIFICATE-----" not in proc.stdout:
        return None
    return fingerprint_of_pem(proc.stdout)


def ehlo(port, implicit=False, starttls=False):
    """(AUTH offered, STARTTLS offered) in the EHLO reply (after STARTTLS with starttls=True)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    cls = smtplib.SMTP_SSL if implicit else smtplib.SMTP
    kw = {"context": ctx} if implicit else {}
    with cls("127.0.0.1", port, timeout=10, **kw) as s:
        s.ehlo("client.test.example")
        if starttls:
            s.starttls(context=ctx)
            s.ehlo("client.test.example")
        return s.has_extn("auth"), s.has_extn("starttls")


def services(sub, subs, sub_on=True, subs_on=True):
    return {"submission": {"enabled": sub_on, "service": f"127.0.0.1:{sub}"},
            "submissions": {"enabled": subs_on, "service": f"127.0.0.1:{subs}"}}


def test_submission_services_serve_the_bound_certificate(make_site):  # noqa: F811
    site = make_site(extra=SASL)
    sub, subs = free_port(), free_port()
    fp = site.add_cert("mx")
    fp2 = site.add_cert("mx-next")
    body = {"mode": "may", "certificate": "mx", **services(sub, subs)}
    before = master_cf(site)

    # the dry run shows master.cf's change and changes nothing
    r = site.put(body, query="?dry_run=true")
    assert r.status == 200 and r.body["plan"]["valid"] is True, r
    diff = r.body["plan"]["master_cf_diff"]
    assert f"+127.0.0.1:{sub} inet n" in diff and f"+127.0.0.1:{subs} inet n" in diff, diff
    assert "smtpd_tls_wrappermode=yes" in diff and "smtpd_tls_auth_only=yes" in diff, diff
    assert r.body["plan"]["reload"] is True
    assert master_cf(site) == before and not port_is_open(sub)

    r = site.put_ok(body)
    assert r.body["submission"] == {"enabled": True, "service": f"127.0.0.1:{sub}"}, r.body
    assert r.body["submissions"] == {"enabled": True, "service": f"127.0.0.1:{subs}"}, r.body
    # the first connections after the reply: the bound certificate on both
    assert served_by_openssl(subs, starttls=False) == fp, "465-like: implicit TLS"
    assert served_by_openssl(sub, starttls=True) == fp, "587-like: after STARTTLS"
    # submission: STARTTLS offered, AUTH only after it; submissions: AUTH over TLS
    assert ehlo(sub) == (False, True), "AUTH offered before STARTTLS (or no STARTTLS)"
    assert ehlo(sub, starttls=True)[0] is True, "no AUTH after STARTTLS (Cyrus SASL)"
    assert ehlo(subs, implicit=True)[0] is True, "no AUTH on the implicit TLS port"
    # postconf's entries, read back as Postfix reads them
    assert entry(site, f"127.0.0.1:{sub}").split()[1:8] == \
        ["inet", "n", "-", "n", "-", "-", "smtpd"], "the MX's chroot column (n in the sandbox)"
    assert params(site, f"127.0.0.1:{sub}") == {
        "syslog_name": "postfix/submission", "smtpd_tls_security_level": "encrypt",
        "smtpd_tls_auth_only": "yes", "smtpd_sasl_auth_enable": "yes"}
    assert params(site, f"127.0.0.1:{subs}") == {
        "syslog_name": "postfix/submissions", "smtpd_tls_wrappermode": "yes",
        "smtpd_sasl_auth_enable": "yes"}
    assert run(["postfix", "-c", site.pf.config_dir, "check"]).returncode == 0
    v = site.wait_verified()
    assert v["state"] == "verified", v
    assert f"127.0.0.1:{subs} (implicit TLS) serves" in v["detail"], v
    assert f"127.0.0.1:{sub} serves" in v["detail"], v
    site.assert_in_sync()
    # the same again changes nothing: no reload, master.cf as it is
    now = master_cf(site)
    r = site.put(body, query="?dry_run=true")
    assert r.body["plan"]["master_cf_diff"] == "" and r.body["plan"]["reload"] is False, r.body
    site.put_ok(body)
    assert master_cf(site) == now

    # another certificate: both services serve it right after the reply
    site.patch_ok({"certificate": "mx-next"})
    assert served_by_openssl(subs, starttls=False) == fp2
    assert served_by_openssl(sub, starttls=True) == fp2

    # the bound certificate rotated (a certificate write, not a settings one): the check after
    # its reload covers the services too
    rotated = site.certs.leaf("mx-next-2", ("mx.test.example",), kind="ec")
    r = site.d.http("PUT", "/api/v1/certificates/mx-next",
                    {"certificate": rotated.read("cert"), "private_key": rotated.read("key")},
                    timeout=60)
    assert r.status == 200, r
    assert served_by_openssl(subs, starttls=False) == rotated.fingerprint()
    v = site.wait_verified()
    assert v["state"] == "verified" and "(implicit TLS) serves" in v["detail"], v
    fp2 = rotated.fingerprint()

    # disabled: commented out (the administrator sees what was there), the port closes
    r = site.patch_ok({"submissions": {"enabled": False}})
    assert r.body["submissions"] == {"enabled": False, "service": f"127.0.0.1:{subs}"}
    assert entry(site, f"127.0.0.1:{subs}") == ""
    assert re.search(rf"^#127\.0\.0\.1:{subs} +inet", master_cf(site).decode(), re.M)
    wait_until(lambda: not port_is_open(subs), 10, "the submissions port to close")
    assert served_by_openssl(sub, starttls=True) == fp2
    # null: smtptlsd leaves the entry as it is (no edit, no reload)
    now = master_cf(site)
    r = site.patch_ok({"submission": None})
    assert r.body["submission"] is None and master_cf(site) == now
    assert served_by_openssl(sub, starttls=True) == fp2
    # enabled again: a new entry (postconf cannot uncomment), serving at once
    r = site.patch_ok({"submissions": {"enabled": True}})
    assert served_by_openssl(subs, starttls=False) == fp2
    site.assert_in_sync()


def test_an_existing_service_is_taken_over_keeping_the_administrators_options(make_site):  # noqa: F811
    """A submission entry the administrator wrote (with a restriction of theirs and a weaker level)
    keeps its columns and options; smtptlsd's parameters replace only their own. An smtpd entry
    that is no submission service (a content filter's reinjection port: not on 587, no
    syslog_name postfix/submission) is not smtptlsd's to change or comment out."""
    site = make_site(extra=SASL)
    port = free_port()
    name = f"127.0.0.1:{port}"
    site.pf.postconf("-M", f"{name}/inet = {name} inet n - n - 7 smtpd "
                     "-o syslog_name=postfix/submission -o smtpd_tls_security_level=may "
                     "-o smtpd_client_restrictions=permit_sasl_authenticated,reject")
    site.add_cert("mx")
    site.put_ok({"mode": "may", "certificate": "mx",
                 "submission": {"enabled": True, "service": name}})
    assert entry(site, name).split()[6] == "7", "the administrator's maxproc column"
    p = params(site, name)
    assert p["smtpd_client_restrictions"] == "permit_sasl_authenticated,reject", p
    assert p["smtpd_tls_security_level"] == "encrypt", p
    assert master_cf(site).decode().count(f"{name} ") == 1, "one entry, not a second"
    assert ehlo(port) == (False, True)

    reinject = free_port()
    rname = f"127.0.0.1:{reinject}"
    site.pf.postconf("-M", f"{rname}/inet = {rname} inet n - n - - smtpd "
                     "-o content_filter= -o receive_override_options=no_header_body_checks")
    before = master_cf(site)
    for enabled in (True, False):
        r = site.patch({"submissions": {"enabled": enabled, "service": rname}})
        assert r.status == 409 and r.body["code"] == "service_conflict", r
        assert r.body["field"] == "/submissions/service" and "not a submission service" in \
            r.body["detail"], r.body
        assert master_cf(site) == before


def postconf_wrapper(directory):
    """A postconf_command that passes everything to postconf, but makes `-P name=value` edits
    only warn and exit 0 - as postconf does for a service it does not find."""
    path = os.path.join(directory, "postconf-wrapper")
    with open(path, "w") as f:
        f.write("#!/bin/sh\n"
                "edit=0; for a in \"$@\"; do case \"$a\" in -P) p=1;; *=*) [ \"$p\" = 1 ] && edit=1;; esac; done\n"
                "if [ $edit = 1 ]; then echo 'postconf: warning: unmatched service_name/type' >&2; exit 0; fi\n"
                "exec postconf \"$@\"\n")
    os.chmod(path, 0o755)
    return path


def test_refusals_name_the_field_and_change_nothing(make_site, tmp_path):  # noqa: F811
    site = make_site(extra=SASL)
    site.add_cert("mx")
    site.put_ok({"mode": "may", "certificate": "mx"})
    other = free_port()
    site.pf.postconf("-M", f"127.0.0.1:{other}/inet = 127.0.0.1:{other} inet n - n - - qmqpd")
    before, settings_before = master_cf(site), site.settings()

    def refused(body, status, code, field, contains=""):
        r = site.patch(body)
        assert (r.status, r.body.get("code"), r.body.get("field")) == (status, code, field), r
        assert contains in r.body.get("detail", ""), r.body
        assert master_cf(site) == before and site.settings() == settings_before
        return r

    refused({"submission": {"service": "smtp"}}, 422, "invalid_value", "/submission/service")
    refused({"submission": {"service": "587 -o smtpd_tls_security_level=none"}}, 422,
            "invalid_value", "/submission/service")
    refused({"submissions": {"service": "127.0.0.1:10465\n"}}, 422, "invalid_value",
            "/submissions/service")
    refused({"submissions": True}, 422, "invalid_value", "/submissions")
    refused({"submission": {"enabled": True, "port": 587}}, 422, "unknown_field",
            "/submission/port")
    refused({"certificate": None, "mode": "none", "submission": {}}, 422,
            "certificate_required", "/certificate")
    # the MX's own port, and another service's entry: 409 from the worker, naming the field
    refused({"submission": {"service": f"127.0.0.1:{site.pf.port}"}}, 409, "service_conflict",
            "/submission/service", "the MX's smtpd")
    refused({"submissions": {"service": str(site.pf.port), "enabled": False}}, 409,
            "service_conflict", "/submissions/service", "the MX's smtpd")
    refused({"submission": {"service": f"127.0.0.1:{other}"}}, 409, "service_conflict",
            "/submission/service", "runs qmqpd")
    refused({"submission": {"service": str(other)}}, 409, "service_conflict",
            "/submission/service", "takes the port")
    # what would stop Postfix's master at the reload: a port name /etc/services lacks, an
    # address of another host, a port another program holds
    refused({"submission": {"service": "nosuchport"}}, 422, "invalid_value",
            "/submission/service", "/etc/services")
    refused({"submission": {"service": f"192.0.2.1:{free_port()}"}}, 422, "invalid_value",
            "/submission/service", "no address of this host")
    refused({"submission": {"service": "mail.example:10587"}}, 422, "invalid_value",
            "/submission/service")
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        refused({"submissions": {"service": f"127.0.0.1:{held.getsockname()[1]}"}}, 409,
                "service_conflict", "/submissions/service", "another program holds")
    # an enabled service keeps its name (the old entry would stay, enabled, unmanaged)
    port = free_port()
    site.patch_ok({"submissions": {"service": f"127.0.0.1:{port}"}})
    before, settings_before = master_cf(site), site.settings()
    refused({"submissions": {"service": f"127.0.0.1:{free_port()}"}}, 409, "service_conflict",
            "/submissions/service", "disable it first")
    site.patch_ok({"submissions": {"enabled": False}})
    site.patch_ok({"submissions": {"service": f"127.0.0.1:{free_port()}", "enabled": True}})
    assert entry(site, f"127.0.0.1:{port}") == "", "the old entry is commented out"
    before, settings_before = master_cf(site), site.settings()
    # a dry run says so as its plan's error
    r = site.patch({"submission": {"service": f"127.0.0.1:{site.pf.port}"}}, query="?dry_run=true")
    assert r.status == 200 and r.body["plan"]["valid"] is False, r
    assert [(e["code"], e["field"]) for e in r.body["plan"]["errors"]] == \
        [("service_conflict", "/submission/service")], r.body
    assert master_cf(site) == before
    site.assert_in_sync()

    # postconf -P only warns about a service it does not find: the read-back catches an edit
    # that did not take
    wrapped = make_site(extra=SASL, config={"postconf_command": postconf_wrapper(str(tmp_path))})
    wrapped.add_cert("mx")
    master = master_cf(wrapped)
    r = wrapped.put({"mode": "may", "certificate": "mx",
                     "submission": {"service": f"127.0.0.1:{free_port()}"}})
    assert r.status == 422 and r.body["code"] == "postfix_rejected", r
    assert r.body["field"] == "/submission/service" and "postconf -P did not set" in \
        r.body["detail"], r.body
    assert master_cf(wrapped) == master and wrapped.settings()["managed"] is False


@pytest.mark.parametrize("with_certificate", [True, False], ids=["and-main.cf", "master.cf-only"])
def test_kill9_between_master_cf_and_main_cf(make_site, with_certificate):  # noqa: F811
    """A write that enables a service (and binds another certificate, or not), killed after
    master.cf's swap and before main.cf's: master.cf new and whole, main.cf old and whole; the
    restart puts the last-known-good master.cf back, applies the accepted job again - which
    reloads Postfix although master.cf then reads as the job left it - and the service serves."""
    site = make_site(start=False, extra=SASL)
    if not fault_build(site.d.binary):
        pytest.skip(f"{site.d.binary} has no fault points (build-asan has: scripts/build)")
    site.fault_file = os.path.join(site.d.workdir, "fault")
    site.d.extra_env["SMTPTLSD_FAULT_FILE"] = site.fault_file
    site.d.start()
    setup_tokens(site.d)
    fp0 = site.add_cert("k0")
    fp1 = site.add_cert("k1")
    site.put_ok({"mode": "may", "certificate": "k0"})
    port = free_port()
    old_master, old_main = master_cf(site), site.main_cf()
    jobs_before = max(j["id"] for j in site.jobs())

    arm(site, "after_master_rename kill")
    try:
        body = {"submissions": {"service": f"127.0.0.1:{port}"}}
        if with_certificate:
            body["certificate"] = "k1"
        answer = site.d.http("PATCH", "/api/v1/settings", body, timeout=30).status
    except OSError as e:
        answer = repr(e)
    site.d.proc.wait(20)
    site.d.stopped = True
    assert site.d.proc.returncode == -9 and isinstance(answer, str), answer
    assert site.main_cf() == old_main, "main.cf changed before its swap"
    assert master_cf(site) != old_master and entry(site, f"127.0.0.1:{port}"), "master.cf old"
    assert run(["postfix", "-c", site.pf.config_dir, "check"]).returncode == 0

    disarm(site)
    site.d.start()
    site.d.mark_fd_baseline()
    new_jobs = [j for j in settle(site) if j["id"] > jobs_before]
    assert [j["status"] for j in new_jobs] == ["applied"], new_jobs
    assert site.settings()["submissions"] == {"enabled": True, "service": f"127.0.0.1:{port}"}
    want = fp1 if with_certificate else fp0
    wait_until(lambda: served_by_openssl(port, starttls=False) == want, 20,
               "the submissions port to serve the bound certificate")
    site.wait_served(want)
    site.assert_in_sync()
    assert leftover_problems(site) == []
