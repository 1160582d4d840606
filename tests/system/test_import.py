# Moving a live Postfix's TLS policy maps in (POST /api/v1/import, src/api/import.c): the maps
# smtp_tls_policy_maps lists are read as Postfix reads them, a map whose every entry can be a
# policy is adopted (its entries become policies, main.cf no longer lists it), anything else stays
# after smtptlsd's map - and for every key Postfix answers after the import, and after the next
# write, exactly what it answered before (postmap -q through the live list, first match wins),
# and smtpd serves the same certificate.
# Real daemon, real Postfix, real PostgreSQL.
import json
import os
import subprocess

from tests.harness.util import free_port
from tests.system.test_cli_push_pull import cli
from tests.system.test_policies import make_policy_site  # noqa: F401 (a fixture)
from tests.system.test_settings import served

LEVELS = ["encrypt", "may", "none", "secure match=nexthop:dot-nexthop", "dane",
          "verify match=hostname", "encrypt protocols=>=TLSv1.2"]


def write_map(site, name, entries, index=True):
    path = os.path.join(site.pf.config_dir, name)
    with open(path, "w") as f:
        f.write("# the administrator's own map\n")
        f.writelines(f"{k}\t{v}\n" for k, v in entries)
    if index:
        site.pf.postmap(f"hash:{path}")
    return path


def listed_maps(site):
    """The live list as Postfix splits it: commas and blanks, a { } group in its token."""
    value = site.pf.postconf("-h", "smtp_tls_policy_maps").strip()
    maps, token, depth = [], "", 0
    for c in value + ",":
        if depth == 0 and c in ", \t":
            if token:
                maps.append(token)
            token = ""
            continue
        depth += (c == "{") - (c == "}")
        token += c
    return maps


def answers(site, keys):
    """{key: value} as Postfix's smtp client finds them: each map of the live list in order,
    the first that has the key."""
    maps = listed_maps(site)
    got = {}
    for key in keys:
        for m in maps:
            r = subprocess.run(["postmap", "-c", site.pf.config_dir, "-q", key, m],
                               capture_output=True, text=True, timeout=30)
            if r.returncode == 0:
                got[key] = r.stdout.strip()
                break
    return got


def wait_job(site, r, timeout=60):
    """The job of a 202, once it is done."""
    from tests.harness.util import wait_until
    return wait_until(lambda: (lambda j: j if j["status"] in ("applied", "failed") else None)(
        site.job(r)), timeout, "the job to finish")


def set_maps(site, value):
    site.pf.postconf("-e", f"smtp_tls_policy_maps = {value}")


def test_import_adopts_the_maps_it_can_and_every_key_answers_as_before(make_policy_site, certs):
    # the administrator's own certificate, in main.cf by hand: an import leaves it served
    leaf = certs.leaf("import-own", ("mx.test.example",), kind="ec")
    site = make_policy_site(extra={"smtpd_tls_security_level": "may",
                                   "smtp_tls_security_level": "may",
                                   "smtp_tls_CApath": "/etc/ssl/certs",
                                   "smtpd_tls_chain_files": f"{leaf.key}, {leaf.cert}"})
    tls_params = ["smtpd_tls_security_level", "smtp_tls_security_level", "smtpd_tls_auth_only",
                  "smtpd_tls_loglevel", "smtp_tls_loglevel", "smtpd_tls_received_header",
                  "smtpd_tls_mandatory_protocols", "smtp_tls_mandatory_protocols",
                  "smtpd_tls_mandatory_ciphers", "smtp_tls_mandatory_ciphers",
                  "smtpd_tls_protocols", "smtp_tls_protocols"]
    tls_before = site.pf.postconf("-x", "-h", *tls_params)
    served_before = served(site.pf.port)
    assert served_before, "the sandbox serves the administrator's certificate"
    first = [(f"bank{i:02}.example", LEVELS[i % len(LEVELS)]) for i in range(50)]
    first.append(("[relay.example.net]:587", "secure match=nexthop"))
    second = [("bank03.example", "none"),            # shadowed: the first map answers
              ("ours.example", "may"),               # smtptlsd has it already: ours answers
              ("only-second.example", "encrypt")]
    a = write_map(site, "admin_policy", first)
    b = write_map(site, "second_policy", second)
    inline = "inline:{ inline.example=encrypt }"
    set_maps(site, f"hash:{a}, hash:{b}, {inline}")
    keys = [k for k, _ in first + second] + ["inline.example"]
    # smtptlsd's first write: its map first, the administrator's after (nothing lost)
    site.put_ok("ours.example", {"level": "secure"})
    before = answers(site, keys)
    assert before["bank03.example"] == first[3][1] and before["ours.example"] == "secure"
    # /status says what an import would look at
    assert site.d.get("/api/v1/status").body["takeover"] == \
        {"settings": True, "policy_maps": [f"hash:{a}", f"hash:{b}", inline]}
    assert len(before) == len(set(keys))
    state = site.snapshot()

    # the dry run: the report and the plan, nothing changes
    r = site.req("POST", "/api/v1/import?dry_run=true")
    assert r.status == 200, r
    rep = r.body
    maps = {m["map"]: m for m in rep["maps"]}
    assert maps[f"hash:{a}"]["action"] == "adopt" and maps[f"hash:{a}"]["entries"] == 51
    assert maps[f"hash:{b}"]["action"] == "adopt", maps
    assert maps[f"hash:{b}"]["shadowed"] == 1 and maps[f"hash:{b}"]["already"] == 1, maps
    assert maps[inline]["action"] == "keep" and maps[inline]["reason"], maps
    assert rep["imported"] == 52 and rep["refused"] == [], rep
    assert [(c["action"], c["name"]) for c in rep["certificates"]] == \
        [("import", "imported-import-own")], rep["certificates"]
    # main.cf's TLS parameters are exactly what some settings render: the report says which
    # (the import does not write them: the administrator does, after a dry run)
    assert rep["settings"]["action"] == "match", rep["settings"]
    candidate = rep["settings"]["settings"]
    assert candidate["certificate"] == "imported-import-own", candidate
    change = {c["name"]: c for c in rep["plan"]["main_cf"]}["smtp_tls_policy_maps"]
    assert f"hash:{a}" in change["old"] and f"hash:{a}" not in change["new"], change
    assert change["new"].endswith(inline), change
    assert "+bank00.example\tencrypt" in rep["plan"]["tls_policy_diff"].splitlines()
    assert site.snapshot() == state

    # the import: the maps adopted, the inline map after ours, every key as before
    r = site.req("POST", "/api/v1/import")
    assert r.status == 200, r
    assert r.body["added"] == 52 and r.body["adopted"] == 2, r.body
    live = listed_maps(site)
    assert len(live) == 2 and live[1] == inline, live
    assert site.d.get("/api/v1/status").body["takeover"]["policy_maps"] == [inline]
    assert answers(site, keys) == before
    assert served(site.pf.port) == served_before
    # the certificate main.cf names is in the store, unbound; the settings are not written
    cert = site.d.get("/api/v1/certificates/imported-import-own").body
    assert cert["sha256_fingerprint"] == served_before and cert["in_use"] is False, cert
    assert site.d.get("/api/v1/settings").body["managed"] is False
    assert site.pf.postconf("-x", "-h", *tls_params) == tls_before
    # the next write keeps it so; a policy deleted through smtptlsd does not come back from
    # the old file
    site.put_ok("new.example", {"level": "encrypt"})
    assert answers(site, keys) == before
    r = site.delete("bank05.example")
    assert r.status in (200, 204), r
    assert "bank05.example" not in answers(site, ["bank05.example"])
    # a second import has nothing left to take
    r = site.req("POST", "/api/v1/import")
    assert r.status == 200 and r.body["imported"] == 0 and r.body["kept"] == 1, r.body
    assert r.body["certificates"][0]["action"] == "already", r.body
    # configuration management writes the adopted map back, rebuilt from the same source (postmap
    # writes other bytes): dropped again at the next write, and the deleted policy stays deleted;
    # a changed one (entries never imported) stays listed, after ours
    site.pf.postmap(f"hash:{a}")
    set_maps(site, f"{listed_maps(site)[0]}, hash:{a}, {inline}")
    site.put_ok("again.example", {"level": "may"})
    assert f"hash:{a}" not in listed_maps(site), listed_maps(site)
    assert "bank05.example" not in answers(site, ["bank05.example"])
    write_map(site, "admin_policy", first + [("late.example", "secure")])
    set_maps(site, f"{listed_maps(site)[0]}, hash:{a}, {inline}")
    site.put_ok("again2.example", {"level": "may"})
    assert listed_maps(site)[1:] == [f"hash:{a}", inline], listed_maps(site)
    assert answers(site, ["late.example"]) == {"late.example": "secure"}
    assert f"hash:{a}" in site.d.get("/api/v1/status").body["takeover"]["policy_maps"]
    # the administrator writes the settings the report named: every TLS parameter Postfix uses
    # keeps its value, and the same certificate is served
    r = site.req("PUT", "/api/v1/settings?wait=30", candidate)
    assert r.status == 200, r
    assert site.pf.postconf("-x", "-h", *tls_params) == tls_before
    assert served(site.pf.port) == served_before
    r = site.req("POST", "/api/v1/import?dry_run=true")
    assert r.body["settings"]["action"] == "managed", r.body


def test_a_map_with_an_entry_that_cannot_be_a_policy_stays_and_so_do_those_after(
        make_policy_site):
    site = make_policy_site()
    a = write_map(site, "admin_policy", [("good.example", "encrypt"),
                                         ("odd.example", "may ciphers=high foo=bar")])
    b = write_map(site, "second_policy", [("later.example", "encrypt")])
    set_maps(site, f"hash:{a}, hash:{b}")
    site.put_ok("ours.example", {"level": "secure"})
    keys = ["good.example", "odd.example", "later.example", "ours.example"]
    before = answers(site, keys)
    r = site.req("POST", "/api/v1/import")
    assert r.status == 200, r
    maps = {m["map"]: m for m in r.body["maps"]}
    assert maps[f"hash:{a}"]["action"] == "keep" and maps[f"hash:{a}"]["refused"] == 1, maps
    assert maps[f"hash:{b}"]["action"] == "keep", maps
    assert r.body["refused"][0]["key"] == "odd.example", r.body
    assert "foo" in r.body["refused"][0]["detail"], r.body
    assert r.body["added"] == 0 and r.body["adopted"] == 0
    assert listed_maps(site)[1:] == [f"hash:{a}", f"hash:{b}"]
    # no CA named for verify and secure: no settings render this main.cf (said why)
    assert r.body["settings"]["action"] == "differs" and r.body["settings"]["reason"], r.body
    assert site.d.get("/api/v1/settings").body["managed"] is False
    assert answers(site, keys) == before


def test_the_import_command(make_policy_site):
    """`smtptlsd import [--dry-run]` as an administrator runs it: the report per map, the main.cf
    change; an admin token needed (exit 1 without), nothing changed by the dry run."""
    site = make_policy_site()
    a = write_map(site, "admin_policy", [("one.example", "encrypt"), ("two.example", "may")])
    set_maps(site, f"hash:{a}, inline:{{ x.example=none }}")
    write = site.d.add_token("ci", scope="write")
    r = cli(site, "import", token=write)
    assert r.returncode == 1 and "403" in r.stderr, r
    r = cli(site, "import", "--dry-run")
    assert r.returncode == 0, r
    assert f"adopt hash:{a}: 2 entries, 2 imported" in r.stdout, r.stdout
    assert "keep  inline:{ x.example=none }" in r.stdout and "it stays" in r.stdout, r.stdout
    assert "main.cf smtp_tls_policy_maps:" in r.stdout and "+one.example\tencrypt" in r.stdout
    assert site.policies() == []
    r = cli(site, "import")
    assert r.returncode == 0 and "2 policies added, 1 map(s) adopted" in r.stderr, r
    assert [p["destination"] for p in site.policies()] == ["one.example", "two.example"]


def test_an_entry_whose_keys_would_answer_otherwise_is_refused(make_policy_site):
    """Every key smtptlsd would render for an imported policy must answer the same today, and
    every key of an adopted map must answer after: a map with one spelling of an
    internationalized name only (smtptlsd answers for both), two spellings with two values, or a
    key smtptlsd keeps otherwise ("example.com." as "example.com") stays."""
    site = make_policy_site()
    both = write_map(site, "both", [("b\u00fccher.example", "encrypt"),
                                    ("xn--bcher-kva.example", "encrypt")])
    one = write_map(site, "one", [("m\u00fcnchen.example", "encrypt")])
    differ = write_map(site, "differ", [("k\u00f6ln.example", "encrypt"),
                                        ("xn--kln-sna.example", "may")])
    dot = write_map(site, "dot", [("trailing.example.", "may")])
    for path, adopted in [(both, True), (one, False), (differ, False), (dot, False)]:
        set_maps(site, f"hash:{path}")
        r = site.req("POST", "/api/v1/import?dry_run=true")
        assert r.status == 200, r
        m = r.body["maps"][0]
        assert (m["action"] == "adopt") == adopted, (path, r.body)
        if not adopted:
            assert r.body["refused"] and r.body["refused"][0]["detail"], r.body
    set_maps(site, f"hash:{both}")
    keys = ["b\u00fccher.example", "xn--bcher-kva.example"]
    before = answers(site, keys)
    r = site.req("POST", "/api/v1/import")
    assert r.status == 200 and r.body["added"] == 1 and r.body["adopted"] == 1, r.body
    assert answers(site, keys) == before


def test_a_map_changed_between_the_read_and_the_job_is_not_adopted(make_policy_site, tmp_path):
    """The import reads the maps on the HTTP thread and its job runs later (here: behind a job
    held in postmap): a map edited in between is not dropped from main.cf with an entry the
    import never saw - the job fails (412) and the map stays."""
    hold = tmp_path / "hold"
    wrapper = tmp_path / "postmap-wrapper"
    wrapper.write_text("#!/bin/sh\n"
                       "for a in \"$@\"; do case \"$a\" in -s|-q) exec postmap \"$@\";; esac; done\n"
                       f"while [ -e '{hold}' ]; do sleep 0.05; done\n"
                       "exec postmap \"$@\"\n")
    wrapper.chmod(0o755)
    site = make_policy_site(config={"postmap_command": str(wrapper)})
    a = write_map(site, "admin_policy", [("one.example", "encrypt")])
    set_maps(site, f"hash:{a}")
    site.put_ok("first.example", {"level": "may"})
    hold.write_text("")
    held = site.put("held.example", {"level": "may"}, query="?wait=0")
    assert held.status == 202, held
    r = site.req("POST", "/api/v1/import?wait=0")
    assert r.status == 202, r
    # the administrator adds an entry meanwhile (the real postmap: the wrapper holds builds)
    write_map(site, "admin_policy", [("one.example", "encrypt"), ("late.example", "secure")])
    hold.unlink()
    job = wait_job(site, r)
    assert job["status"] == "failed", job
    assert "changed since the import read it" in json.dumps(job["error"]), job
    assert f"hash:{a}" in listed_maps(site)
    assert answers(site, ["late.example"]) == {"late.example": "secure"}


def test_the_console_jobs_page_shows_an_import(make_policy_site, browser):
    """The Jobs page (console/page-jobs.js) in Chromium: an import is one of its action filters,
    and its job shows its counts (rows added, maps adopted, certificates added)."""
    site = make_policy_site()
    a = write_map(site, "admin_policy", [("one.example", "encrypt"), ("two.example", "may")])
    set_maps(site, f"hash:{a}")
    r = site.req("POST", "/api/v1/import")
    assert r.status == 200 and r.body["added"] == 2, r
    page = browser.open(site.d.url)
    page.sign_in(site.d.read_token, "/console/jobs#action=policies.import")
    counts = page.run("""
        await page.getByText('1 job shown').waitFor();
        if (await page.getByLabel('Action').inputValue() !== 'policies.import')
            throw new Error('the action filter does not offer policies.import');
        const job = page.locator('details.job').first();
        await job.locator('> summary').click();
        await job.locator('dl.counts').waitFor();
        return await job.locator('dl.counts').innerText();
    """)
    words = counts.split()
    assert words[words.index("added") + 1] == "2" and words[words.index("adopted") + 1] == "1", \
        counts


def test_import_with_settings_takes_them_over_when_postfix_reads_every_parameter_as_before(
        make_policy_site, certs):
    """?settings=true (smtptlsd import --settings): the settings whose rendering main.cf's TLS
    parameters are, written by the import's job once `postconf -x` of main.cf rendered with them
    reads as the live one (certificate files aside): afterwards every parameter Postfix uses -
    all of `postconf -x`, not a list - is what it was and the same certificate is served. Not
    written while another node runs, nor when a parameter naming a managed one would change
    ($smtpd_tls_cert_file); the policies are imported all the same."""
    leaf = certs.leaf("takeover-own", ("mx.test.example",), kind="ec")
    tls = {"smtpd_tls_security_level": "may", "smtp_tls_security_level": "may",
           "smtp_tls_CApath": "/etc/ssl/certs", "smtpd_tls_chain_files": f"{leaf.key}, {leaf.cert}",
           "smtpd_tls_mandatory_protocols": ">=TLSv1.2", "smtp_tls_mandatory_protocols": ">=TLSv1.2",
           "smtpd_tls_mandatory_exclude_ciphers": "aNULL, eNULL, EXPORT, DES, RC4, MD5",
           "smtp_tls_mandatory_exclude_ciphers": "aNULL, eNULL, EXPORT, DES, RC4, MD5",
           "smtpd_tls_auth_only": "yes", "smtpd_tls_loglevel": "1", "smtp_tls_loglevel": "1"}
    site = make_policy_site(extra=tls)
    a = write_map(site, "admin_policy", [("bank.example", "encrypt")])
    set_maps(site, f"hash:{a}")

    def every_parameter():
        """postconf -x, but the certificate files (smtptlsd's copies; also where they are named
        through $smtpd_tls_chain_files: the served certificate is compared apart) and the policy
        map lists (moved by design, the maps' answers are compared apart), the
        CA files (the CA directory's certificates as one file: checked below) and postconf's
        own process id."""
        skip = ("smtp_tls_CAfile", "lmtp_tls_CAfile", "tlsproxy_client_CAfile", "process_id")
        return [line for line in site.pf.postconf("-x").splitlines()
                if not line.startswith(skip) and "_policy" not in line and
                not any(f in line.split(" = ")[0] for f in ("_chain_files", "_cert_file",
                                                             "_key_file"))]

    before, served_before = every_parameter(), served(site.pf.port)

    # another node alive: reported, not written
    site.sql("INSERT INTO nodes (name, state) VALUES ('mx-other', 'in_sync')")
    r = site.req("POST", "/api/v1/import?dry_run=true&settings=true")
    assert r.status == 200 and r.body["settings"]["action"] == "match", r
    assert r.body["settings"]["written"] is False, r.body["settings"]
    assert "other nodes" in r.body["settings"]["reason"], r.body["settings"]
    site.sql("DELETE FROM nodes WHERE name = 'mx-other'")

    # the dry run: written (would be), main.cf's change shown, nothing changed
    state = site.snapshot()
    r = site.req("POST", "/api/v1/import?dry_run=true&settings=true")
    assert r.status == 200 and r.body["settings"]["written"] is True, r.body["settings"]
    assert r.body["settings"]["differs"] == [], r.body["settings"]
    changed = {c["name"] for c in r.body["plan"]["main_cf"]}
    assert "smtpd_tls_chain_files" in changed and "smtp_tls_policy_maps" in changed, changed
    assert site.snapshot() == state

    # the import, through the command
    r = cli(site, "import", "--settings")
    assert r.returncode == 0 and "settings: written, match" in r.stdout, (r.stdout, r.stderr)
    s = site.d.get("/api/v1/settings").body
    assert s["managed"] is True and s["certificate"] == "imported-takeover-own", s
    assert s["mode"] == "may" and s["outbound_ca"] == "system", s
    assert site.d.get("/api/v1/status").body["takeover"]["settings"] is False
    assert every_parameter() == before
    ca = site.pf.postconf("-x", "-h", "smtp_tls_CAfile", "lmtp_tls_CAfile",
                          "tlsproxy_client_CAfile").split()
    assert ca and set(ca) == {"/etc/ssl/certs/ca-certificates.crt"}, ca  # the CApath's CAs, as one file
    assert served(site.pf.port) == served_before
    assert answers(site, ["bank.example"]) == {"bank.example": "encrypt"}

    # a parameter of the administrator's naming a managed one: it would read otherwise, so the
    # settings are not written (and say which), the maps are imported all the same
    other = make_policy_site(extra={**{k: v for k, v in tls.items() if k != "smtpd_tls_chain_files"},
                                    "smtpd_tls_cert_file": leaf.cert, "smtpd_tls_key_file": leaf.key,
                                    "lmtp_tls_cert_file": "$smtpd_tls_cert_file"})
    b = write_map(other, "admin_policy", [("bank.example", "encrypt")])
    set_maps(other, f"hash:{b}")
    # and in master.cf, where postconf -x does not look: a transport naming it through $, and a
    # service with a legacy certificate of its own (ignored once smtpd_tls_chain_files is set)
    other.pf.postconf("-M", "relay2/unix = relay2 unix - - n - - smtp "
                      "-o smtp_tls_cert_file=$smtpd_tls_cert_file")
    own = free_port()
    other.pf.postconf("-M", f"127.0.0.1:{own}/inet = 127.0.0.1:{own} inet n - n - - smtpd "
                      f"-o smtpd_tls_cert_file={leaf.cert} -o smtpd_tls_key_file={leaf.key}")
    r = other.req("POST", "/api/v1/import?settings=true")
    assert r.status == 200 and r.body["added"] == 1, r
    st = r.body["settings"]
    assert st["written"] is False and st["action"] == "differs", st
    assert {d["name"] for d in st["differs"]} == {
        "lmtp_tls_cert_file", "relay2/unix/smtp_tls_cert_file",
        f"127.0.0.1:{own}/inet/smtpd_tls_cert_file",
        f"127.0.0.1:{own}/inet/smtpd_tls_key_file"}, st["differs"]
    assert other.d.get("/api/v1/settings").body["managed"] is False
    assert other.pf.postconf("-x", "-h", "lmtp_tls_cert_file").strip() == leaf.cert
