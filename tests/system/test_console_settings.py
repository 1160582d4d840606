"""The console's TLS settings page (console/page-settings.js) in Debian's chromium, against the real
daemon, PostgreSQL and a Postfix sandbox of the test's own: the mode hides and shows the certificate
picker, a certificate typed, picked and saved is what Postfix then serves (openssl s_client), the
system certificate cannot be picked and says why, a refusal sits next to its field, Preview changes
nothing, a concurrent change is a conflict offered to reload, keyboard-only use of the autocomplete,
a read-only session, 390 px without horizontal scrolling, and the screenshots of docs/console.md."""
from tests.harness.browser import PHONE
from tests.system.test_settings import HOST, make_site  # noqa: F401 (the fixture)

# The page's own mark: the settings are loaded and the picker is usable.
USABLE = ("await page.waitForFunction(() => "
          "performance.getEntriesByName('settings-usable').length > 0)")
# The controls by their accessible names (docs: the names of issue 13).
JS_CONTROLS = """
const mode = page.getByLabel('TLS mode', { exact: true });
const picker = page.getByRole('combobox', { name: 'SMTP TLS certificate', exact: true });
const pickerError = page.locator('.field:has([data-field="/certificate"]) + .field-error');
const picked = page.getByRole('definition');
const save = page.getByRole('button', { name: 'Save', exact: true });
const preview = page.getByRole('button', { name: 'Preview', exact: true });
const check = (ok, what) => { if (!ok) throw new Error(what); };
// the open list shows exactly these certificates (the search for what was typed has answered)
const listed = (names) => page.waitForFunction((want) => {
  const got = [...document.querySelectorAll('[role=listbox]:not([hidden]) [role=option] .opt-name')];
  return got.map((e) => e.textContent).join(' ') === want.join(' ');
}, names);
"""
SYSTEM_REASON = "You cannot select the system self-signed certificate for SMTP TLS"


def upload(d, name, cert):
    body = {"certificate": cert.read("cert"), "private_key": cert.read("key")}
    r = d.http("PUT", f"/api/v1/certificates/{name}", body, timeout=60)
    assert r.status == 201, r
    return r.body


def settings_page(d, browser, token, size=()):
    page = browser.open(d.url, *size)
    page.sign_in(token, "/console/settings")
    page.run(USABLE)
    return page


def test_bind_a_certificate_through_the_page_and_postfix_serves_it(make_site, certs, browser):
    site = make_site()
    d, pf = site.d, site.pf
    mx = certs.leaf("console-mx", (HOST, "mail.test.example"))
    info = upload(d, "mx-primary", mx)
    upload(d, "other-ec", certs.leaf("console-other", ("other.test.example",), kind="ec"))
    main_cf = site.main_cf()
    generation = site.generation()
    page = settings_page(d, browser, d.token)

    # Disabled (a fresh installation) hides the picker; Opportunistic shows it, with its advice
    page.run(JS_CONTROLS + """
        check(await mode.inputValue() === 'none', 'a fresh installation is not Disabled');
        await picker.waitFor({ state: 'hidden' });
        await mode.selectOption('may');
        await picker.waitFor({ state: 'visible' });
        const labels = await mode.locator('option').allInnerTexts();
        check(labels.join('|') === 'Disabled|Opportunistic TLS (may) — Recommended|'
              + 'Mandatory TLS (encrypt) — not recommended for Internet-facing servers', labels.join('|'));
        await page.getByText('peers that don\\'t fall back to cleartext', { exact: false }).waitFor();
        // it slides (a CSS transition) unless the user prefers reduced motion
        await page.emulateMedia({ reducedMotion: 'no-preference' });
        const part = page.locator('#settings-certificate');
        check(await part.evaluate((e) => getComputedStyle(e).transitionDuration) !== '0s', 'no transition');
        await part.evaluate((e) => {
          e.seen = [];
          new MutationObserver(() => e.seen.push({ hidden: e.hidden, collapsed: e.classList.contains('collapsed'),
                                                   at: performance.now() })).observe(e, { attributes: true });
        });
        await mode.selectOption('none');
        await page.waitForFunction(() => document.getElementById('settings-certificate').hidden);
        const seen = await part.evaluate((e) => e.seen);
        const out = seen.find((x) => x.collapsed && !x.hidden), gone = seen.find((x) => x.hidden);
        check(out && gone && gone.at - out.at >= 200, 'it did not slide out: ' + JSON.stringify(seen));
        await mode.selectOption('may');
        await picker.waitFor({ state: 'visible' });
        await page.emulateMedia({ reducedMotion: 'reduce' });
        check(await part.evaluate((e) => getComputedStyle(e).transitionDuration) === '0s',
              'it moves although the user prefers reduced motion');
    """)

    # Opportunistic without a certificate: the refusal, in words, next to the certificate field
    text = page.run(JS_CONTROLS + """
        await save.click();
        await pickerError.waitFor();
        check(await picker.getAttribute('aria-invalid') === 'true', 'the picker is not marked invalid');
        return await pickerError.innerText();
    """)
    assert "a certificate is required" in text and "certificate_required" not in text, text
    assert site.main_cf() == main_cf and site.generation() == generation

    # the system certificate is listed, cannot be picked, and the seed's reason is on screen
    text = page.run(JS_CONTROLS + """
        await picker.fill('sys');
        await listed(['system']);
        const option = page.getByRole('option', { name: /^system/ });
        await option.waitFor();
        check(await option.getAttribute('aria-disabled') === 'true', 'system is not marked unavailable');
        await option.click({ force: true });  // a click, as a user may try
        await page.getByText('system cannot be picked').waitFor();
        check(await page.getByRole('definition').count() === 0, 'system was picked');
        return await option.innerText();
    """)
    assert SYSTEM_REASON in text and "Import a real certificate" in text, text

    # type part of the name, pick: Subject, Issuer, Serial, Type and expiry shown read-only
    facts = page.run(JS_CONTROLS + """
        await picker.fill('');
        await picker.pressSequentially('mx-pr');
        await page.getByRole('option', { name: /^mx-primary/ }).click();
        check(await picker.inputValue() === 'mx-primary', 'not picked');
        const dl = page.getByRole('definition').first();
        await dl.waitFor();
        return await page.locator('#settings-certificate dl.cert-details').innerText();
    """)
    for fact in ("Subject", f"CN={HOST}", "Issuer", info["issuer"], "Serial", info["serial"],
                 "Type", "Imported", "Expires", info["not_after"][:10], "days"):
        assert fact in facts, (fact, facts)

    # the warnings of a legal but likely wrong choice, in words
    plan = page.run(JS_CONTROLS + """
        await mode.selectOption('encrypt');
        await preview.click();
        const warning = page.locator('.plan .warnings li').first();
        await warning.waitFor();
        const text = await page.locator('.plan').innerText();
        await mode.selectOption('may');
        return text;
    """)
    assert "Warning: " in plan and "mandatory_inbound" not in plan, plan
    assert "+ smtpd_tls_security_level = encrypt" in plan, plan

    # Preview: the main.cf diff and the reload, and nothing changes
    plan = page.run(JS_CONTROLS + """
        await preview.click();
        const region = page.getByRole('region', { name: 'Preview: what Save would do' });
        await region.waitFor();
        return await region.innerText();
    """)
    assert "+ smtpd_tls_security_level = may" in plan, plan
    assert "+ smtpd_tls_chain_files = " in plan and "Postfix reload: yes" in plan, plan
    assert "Nothing was changed" in plan, plan
    assert site.main_cf() == main_cf and site.generation() == generation
    assert site.settings()["managed"] is False

    page.run("await page.getByText('Advanced', { exact: true }).click();"
             "await page.getByLabel('TLS log level').waitFor()")
    assert page.no_horizontal_scroll()

    # Save: the job's progress, then what Postfix serves, as the page says and as openssl sees it
    text = page.run(JS_CONTROLS + """
        await save.click();
        // the outcome (ok, warn or bad), not the "checking what Postfix serves" on the way
        await page.locator('.job-outcome:is(.ok, .warn, .bad)').waitFor({ timeout: 60000 });
        return await page.locator('main').innerText();
    """, timeout=90)
    assert "✓ queued" not in text  # (the steps are drawn by CSS, not text)
    assert "Job " in text and ": applied." in text, text
    fingerprint = mx.fingerprint()
    assert f"Postfix now serves mx-primary (fingerprint {fingerprint})" in text, text
    assert pf.served_certificate() == fingerprint
    assert page.no_horizontal_scroll()
    page.screenshot("settings")  # a certificate picked, Advanced open, the outcome of Save
    s = site.settings()
    assert (s["mode"], s["certificate"], s["managed"]) == ("may", "mx-primary", True), s


def test_keyboard_phone_conflict_and_read_only(make_site, certs, browser):
    site = make_site()
    d = site.d
    upload(d, "mx-a", certs.leaf("console-kb-a", (HOST,)))
    upload(d, "mx-b", certs.leaf("console-kb-b", (HOST,), kind="ec"))
    page = settings_page(d, browser, d.token, PHONE)

    # keyboard only: Tab from the mode into the picker, type, arrows, Enter picks, Escape closes
    page.run(JS_CONTROLS + """
        await mode.selectOption('may');
        await mode.focus();
        await page.keyboard.press('Tab');
        check(await picker.evaluate((e) => e === document.activeElement), 'Tab does not reach the picker');
        await page.keyboard.type('mx-');
        const list = page.getByRole('listbox', { name: 'Matching certificates' }).first();
        await listed(['mx-a', 'mx-b']);
        await page.keyboard.press('ArrowDown');
        await page.keyboard.press('ArrowDown');
        const active = await picker.getAttribute('aria-activedescendant');
        check(active && (await page.locator('#' + active).innerText()).startsWith('mx-b'),
              'ArrowDown twice is not on the second match');
        await page.keyboard.press('Enter');
        check(await picker.inputValue() === 'mx-b', 'Enter did not pick mx-b');
        check(await picker.getAttribute('aria-expanded') === 'false', 'the list stays open');
        await page.locator('#settings-certificate dl.cert-details').getByText('CN=mx.test.example').waitFor();
        // Escape closes the list and leaves the pick; a second Escape restores the text
        await page.keyboard.press('Backspace');
        await list.waitFor();
        await page.keyboard.press('Escape');
        await list.waitFor({ state: 'hidden' });
        await page.keyboard.press('Escape');
        check(await picker.inputValue() === 'mx-b', 'Escape did not restore the pick');
        // the system certificate cannot be picked with the keyboard either
        await picker.fill('');
        await page.keyboard.type('system');
        await listed(['system']);
        await page.keyboard.press('ArrowDown');
        await page.keyboard.press('Enter');
        await page.getByText('system cannot be picked').waitFor();
        await page.keyboard.press('Escape');
        await page.keyboard.press('Escape');
        check(await picker.inputValue() === '', 'system was picked: ' + await picker.inputValue());
        await page.keyboard.type('mx-a');
        await listed(['mx-a']);
        await page.keyboard.press('ArrowDown');
        await page.keyboard.press('Enter');
        check(await picker.inputValue() === 'mx-a', 'mx-a not picked');
    """)
    assert page.no_horizontal_scroll()
    # the additional certificate: the one above and one of its key type cannot be picked
    page.run(JS_CONTROLS + """
        await page.getByText('Advanced', { exact: true }).click();
        const second = page.getByRole('combobox', { name: 'Additional certificate (another key type)' });
        await second.fill('mx-');
        await listed(['mx-a', 'mx-b']);
        const same = page.getByRole('option', { name: /^mx-a/ });
        check(await same.getAttribute('aria-disabled') === 'true', 'mx-a offered twice');
        check((await same.innerText()).includes('It is the certificate above already'), await same.innerText());
        await page.getByRole('option', { name: /^mx-b/ }).click();
        check(await second.inputValue() === 'mx-b', 'mx-b not picked as the additional certificate');
    """)
    assert page.no_horizontal_scroll()
    page.screenshot("settings")

    # a refusal of the worker (the job fails) next to its field, in the Advanced part it opens
    text = page.run(JS_CONTROLS + """
        const ca = page.getByLabel('Outbound CA file');
        await ca.fill('/nonexistent/ca-bundle.pem');
        await page.getByText('Advanced', { exact: true }).click();  // closed again
        check(!(await ca.isVisible()), 'Advanced did not close');
        await save.click();
        const error = page.locator('.field:has([data-field="/outbound_ca"]) + .field-error');
        await error.waitFor({ timeout: 30000 });
        await page.getByText('failed: nothing was changed').waitFor();
        check(await ca.isVisible(), 'Advanced was not opened to show the refusal');
        const text = await error.innerText();
        await ca.fill('system');
        return text;
    """)
    assert "/nonexistent/ca-bundle.pem" in text and "invalid_value" not in text, text
    assert site.settings()["managed"] is False

    # someone else changes the settings meanwhile: Save is a conflict, offered to reload
    assert d.http("PATCH", "/api/v1/settings", {"loglevel": 2}).status == 200
    page.run(JS_CONTROLS + """
        await save.click();
        await page.getByText('Someone else changed the settings').waitFor({ timeout: 30000 });
        await page.getByRole('button', { name: 'Reload the settings' }).click();
        await page.getByText('Reloaded: these are the settings as they are now.').waitFor();
        check(await page.getByLabel('TLS log level').inputValue() === '2', 'the reload did not show loglevel 2');
        check(await mode.inputValue() === 'none', 'the reload kept the unsaved mode');
    """)
    assert site.settings()["certificate"] is None

    # a read-only session: everything shown, nothing that writes enabled, and why
    site.put_ok({"mode": "may", "certificate": "mx-a"})
    ro = settings_page(d, browser, d.read_token)
    facts = ro.run(JS_CONTROLS + """
        await picker.waitFor();
        check(await picker.inputValue() === 'mx-a', 'the bound certificate is not shown');
        for (const c of [mode, picker, save, preview])
            check(await c.isDisabled(), 'enabled in a read-only session');
        await page.getByText('Your token has the read scope').first().waitFor();
        check((await save.getAttribute('title')).includes('read scope'), 'Save does not say why');
        await page.getByText('Advanced', { exact: true }).click();
        check(await page.getByLabel('TLS log level').isDisabled(), 'the log level is enabled');
        return await page.locator('#settings-certificate dl.cert-details').innerText();
    """)
    assert "CN=mx.test.example" in facts, facts


def test_submission_services_through_the_page(make_site, certs, browser):
    """The Submission services part: left alone by default (a Save keeps master.cf as it is),
    enabled under a service name with Preview showing master.cf's diff first, served by Postfix
    after Save (openssl on the port), a bad name refused next to its field, and a later Save of
    other settings keeps the service (the page sends what it loaded)."""
    from tests.harness.util import free_port, wait_until
    from tests.system.test_submission import SASL, master_cf, served_by_openssl
    site = make_site(extra=SASL)
    d = site.d
    mx = certs.leaf("console-sub", (HOST,))
    upload(d, "mx-sub", mx)
    site.put_ok({"mode": "may", "certificate": "mx-sub"})
    before = master_cf(site)
    port = free_port()
    page = settings_page(d, browser, d.token)
    state = "page.getByLabel('Submissions, port 465 (implicit TLS, preferred by RFC 8314)')"
    name = "page.locator('.field:has([data-field=\"/submissions\"]) + .field input')"

    # a bad name: refused next to the name field, nothing changed
    text = page.run(JS_CONTROLS + f"""
        await page.getByText('Submission services (master.cf)', {{ exact: true }}).click();
        check(await {state}.inputValue() === '', 'not "leave master.cf as it is" by default');
        await {state}.selectOption('on');
        await {name}.fill('smtp');
        await save.click();
        const err = page.locator('.field:has([data-field="/submissions/service"]) + .field-error');
        await err.waitFor();
        return await err.innerText();
    """)
    assert "service is a master.cf inet service name" in text, text
    assert master_cf(site) == before

    # Preview: master.cf's diff, nothing changed; Save: the port serves the certificate
    plan = page.run(JS_CONTROLS + f"""
        await {name}.fill('127.0.0.1:{port}');
        await preview.click();
        const region = page.getByRole('region', {{ name: 'Preview: what Save would do' }});
        await region.locator('pre[aria-label="master.cf changes"]').waitFor();
        return await region.innerText();
    """)
    assert f"+127.0.0.1:{port} inet n" in plan and "smtpd_tls_wrappermode=yes" in plan, plan
    assert master_cf(site) == before
    text = page.run(JS_CONTROLS + """
        await save.click();
        await page.locator('.job-outcome:is(.ok, .warn, .bad)').waitFor({ timeout: 60000 });
        return await page.locator('main').innerText();
    """, timeout=90)
    assert ": applied." in text and "Postfix now serves mx-sub" in text, text
    assert served_by_openssl(port, starttls=False) == mx.fingerprint()
    assert site.settings()["submissions"] == {"enabled": True, "service": f"127.0.0.1:{port}"}
    page.screenshot("settings-submission")

    # another setting saved from the reloaded page: the service stays
    now = master_cf(site)
    page.run(JS_CONTROLS + """
        await page.getByText('Advanced', { exact: true }).click();
        await page.getByLabel('TLS log level').selectOption('2');
        await save.click();
    """, timeout=90)
    # (the outcome of the first Save is still on the page: wait for the settings themselves)
    wait_until(lambda: site.settings()["loglevel"] == 2, 60, "the second Save")
    site.assert_in_sync()
    s = site.settings()
    assert s["loglevel"] == 2 and s["submissions"]["enabled"] is True, s
    assert s["submission"] is None and master_cf(site) == now
