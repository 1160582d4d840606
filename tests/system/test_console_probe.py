"""The console's destination probe on the TLS policy domains page, in Debian's chromium against the
real daemon (make_policy_site of test_policies.py) and a real remote MX: a Postfix WITHOUT STARTTLS
on port 25 of a loopback address of its own, named by the literal destination [ADDRESS]:25 (no DNS
needed). "Test destination" in the add dialog (encrypt fails for "STARTTLS not offered",
recommended may; may passes), a row's "Test" and its last-test badge (failing rows stand out, the
report on click), a read-scope session (the buttons disabled), the guarded save (refused, then
"Save anyway"), and a page that stays usable while a slow probe runs."""
import os
import socket

import pytest

from tests.harness.browser import PHONE
from tests.harness.postfix import PostfixSandbox
from tests.harness.util import free_loopback_address
from tests.system.test_policies import make_policy_site  # noqa: F401 (a fixture)

# a probe is bounded by these; the page waits a little longer for its answer
PROBE_CONFIG = {"probe_timeout": "20s", "probe_step_timeout": "8s"}
WAIT_MS = 40000


@pytest.fixture(scope="module")
def plain_mx(session_dir):
    """A remote MX that offers no STARTTLS, on <its own address>:25."""
    mx = PostfixSandbox.remote_mx(os.path.join(session_dir, "console-probe-mx"), starttls=False,
                                  address=free_loopback_address(), myhostname="mx.plain.example")
    mx.start()
    yield mx
    mx.destroy()


def open_page(site, browser, token=None, size=()):
    page = browser.open(site.d.url, *size)
    page.sign_in(token or site.d.token)
    page.goto("/console/policies")
    page.run("await page.waitForFunction(() => document.querySelector('main').dataset.latestLoaded)")
    return page


def test_the_add_dialog_tests_the_destination_as_entered(make_policy_site, browser, plain_mx):  # noqa: F811
    site = make_policy_site(PROBE_CONFIG)
    dest = f"[{plain_mx.address}]:25"
    page = open_page(site, browser)
    # encrypt: a big "No", the reason, the recommended level, the levels' table, the address
    got = page.run("""
        await page.getByRole('button', { name: 'Add', exact: true }).click();
        const dlg = page.getByRole('dialog');
        await dlg.getByLabel('Domain').fill(args.dest);
        await dlg.getByLabel('Encryption mode').selectOption('encrypt');
        await dlg.getByRole('button', { name: 'Test destination' }).click();
        const result = dlg.locator('.probe-result');
        await result.waitFor({ timeout: args.wait });
        const verdict = result.locator('.verdict');
        const levels = {};
        for (const tr of await result.locator('table.probe-levels tbody tr').all())
            levels[(await tr.locator('th').innerText()).split(' ')[0]] = await tr.locator('td').first().innerText();
        return { verdict: await verdict.innerText(), kind: await verdict.getAttribute('class'),
                 recommended: await result.locator('.recommended').innerText(),
                 levels, text: await result.innerText(),
                 busy: await dlg.locator('[aria-busy]').count() };""", dest=dest, wait=WAIT_MS)
    assert "fails" in got["verdict"] and "STARTTLS not offered" in got["verdict"], got
    assert "fail" in got["kind"].split() and got["busy"] == 0, got
    assert "may" in got["recommended"], got
    assert "passes" in got["levels"]["may"] and "fails" in got["levels"]["encrypt"], got["levels"]
    assert plain_mx.address in got["text"] and "not offered" in got["text"], got["text"]
    assert "null" not in got["text"] and "undefined" not in got["text"], got["text"]

    # may, as entered now: passes
    verdict = page.run("""
        const dlg = page.getByRole('dialog');
        await dlg.getByLabel('Encryption mode').selectOption('may');
        await dlg.getByRole('button', { name: 'Test destination' }).click();
        const v = dlg.locator('.probe-result .verdict.pass');
        await v.waitFor({ timeout: args.wait });
        return await v.innerText();""", wait=WAIT_MS)
    assert "may passes" in verdict, verdict
    # nothing was saved by testing
    assert site.policies() == []
    assert [(p["destination"], p["level"], p["outcome"]) for p in
            site.req("GET", "/api/v1/probes?limit=10").body["items"]] == \
        [(dest, "may", "passed"), (dest, "encrypt", "failed")]


def test_a_rows_test_its_badge_and_a_read_only_session(make_policy_site, browser, plain_mx):  # noqa: F811
    site = make_policy_site(PROBE_CONFIG)
    dest = f"[{plain_mx.address}]:25"
    site.put_ok(dest, {"level": "encrypt"})
    site.put_ok("other.example", {"level": "may"})
    page = open_page(site, browser)
    before = page.run("""
        const r = page.locator(`tbody tr[data-destination="${args.dest}"]`);
        return { text: await r.locator('td.last-test').innerText(),
                 failing: await r.evaluate((tr) => tr.classList.contains('probe-failing')) };""", dest=dest)
    assert before == {"text": "not tested", "failing": False}, before

    # the row's Test: its level; the report in a dialog; the badge follows once it is closed
    verdict = page.run("""
        const r = page.locator(`tbody tr[data-destination="${args.dest}"]`);
        await r.getByRole('button', { name: `Test destination ${args.dest}` }).click();
        const v = page.getByRole('dialog').locator('.probe-result .verdict');
        await v.waitFor({ timeout: args.wait });
        return await v.innerText();""", dest=dest, wait=WAIT_MS)
    assert "encrypt fails" in verdict and "STARTTLS not offered" in verdict, verdict
    page.screenshot("policy-probe")
    got = page.run("""
        const r = page.locator(`tbody tr[data-destination="${args.dest}"]`);
        const dlg = page.getByRole('dialog');
        await dlg.getByRole('button', { name: 'Close' }).click();
        await dlg.waitFor({ state: 'detached' });
        const badge = r.locator('button.probe-badge');
        await badge.waitFor();
        return { badge: await badge.innerText(), label: await badge.getAttribute('aria-label'),
                 failing: await r.evaluate((tr) => tr.classList.contains('probe-failing')),
                 other: await page.locator('tbody tr[data-destination="other.example"] td.last-test').innerText() };""",
        dest=dest)
    assert "Failed" in got["badge"] and "encrypt" in got["badge"] and "recommended may" in got["badge"], got
    assert "failed at encrypt" in got["label"], got
    assert got["failing"] and got["other"] == "not tested", got
    page.screenshot("policies-probe")

    # a page load shows it again; its report (with the reason) on click
    page.goto("/console/policies")
    why = page.run("""
        const r = page.locator(`tbody tr[data-destination="${args.dest}"]`);
        await r.locator('button.probe-badge.failing').click();
        const dlg = page.getByRole('dialog');
        await dlg.locator('.probe-result .verdict').waitFor();
        const out = { verdict: await dlg.locator('.verdict').innerText(), audit: await dlg.locator('.audit').innerText() };
        await dlg.getByRole('button', { name: 'Close' }).click();
        return out;""", dest=dest)
    assert "STARTTLS not offered" in why["verdict"] and "by admin" in why["audit"], why
    assert page.errors() == []

    # at 390 px: the row is a card with its badge; the report fits the width
    phone = open_page(site, browser, size=PHONE)
    phone.run("""
        await page.locator(`tbody tr[data-destination="${args.dest}"] button.probe-badge`).click();
        await page.getByRole('dialog').locator('.probe-result .verdict').waitFor();""", dest=dest)
    assert phone.no_horizontal_scroll()
    phone.screenshot("policy-probe")

    # read scope: the badge is there (and opens), testing is not
    ro = open_page(site, browser, site.d.read_token)
    state = ro.run("""
        const r = page.locator(`tbody tr[data-destination="${args.dest}"]`);
        const b = r.getByRole('button', { name: `Test destination ${args.dest}` });
        return { disabled: await b.isDisabled(), title: await b.getAttribute('title'),
                 badge: await r.locator('button.probe-badge').isEnabled() };""", dest=dest)
    assert state["disabled"] and "read scope" in state["title"] and state["badge"], state
    assert ro.errors() == []


def test_the_guarded_save_is_refused_then_saved_anyway(make_policy_site, browser, plain_mx):  # noqa: F811
    site = make_policy_site(PROBE_CONFIG)
    dest = f"[{plain_mx.address}]:25"
    site.put_ok(dest, {"level": "may"})
    page = open_page(site, browser)
    refusal = page.run("""
        const r = page.locator(`tbody tr[data-destination="${args.dest}"]`);
        await r.getByRole('button', { name: `Edit ${args.dest}` }).click();
        const dlg = page.getByRole('dialog');
        await dlg.getByLabel('Encryption mode').selectOption('encrypt');
        await dlg.getByLabel('I have checked').check();
        await dlg.getByLabel('Test the destination before saving').check();
        await dlg.getByRole('button', { name: 'Save' }).click();
        const refused = dlg.locator('.guard-refusal');
        await refused.waitFor({ timeout: args.wait });
        return { text: await refused.innerText(),
                 report: await dlg.locator('.probe-result .verdict').innerText() };""", dest=dest, wait=WAIT_MS)
    assert "Not saved" in refusal["text"] and "STARTTLS not offered" in refusal["text"], refusal
    assert "encrypt fails" in refusal["report"], refusal
    assert site.get(dest).body["level"] == "may" and site.map_query(dest) == "may"

    page.run("""
        const dlg = page.getByRole('dialog');
        await dlg.getByRole('button', { name: 'Save anyway' }).click();
        await dlg.waitFor({ state: 'detached', timeout: args.wait });
        await page.locator('.notice.ok').filter({ hasText: `Saved ${args.dest}` }).waitFor();
        await page.locator(`tbody tr[data-destination="${args.dest}"].probe-failing`).waitFor();""",
             dest=dest, wait=WAIT_MS)
    assert site.map_query(dest) == "encrypt"
    trail = site.req("GET", "/api/v1/probes?limit=10").body["items"]
    assert [(p["reason"], p["outcome"], p["forced"]) for p in trail] == \
        [("guard", "failed", True), ("guard", "failed", False)], trail


def test_the_page_stays_usable_while_a_slow_probe_runs(make_policy_site, browser):  # noqa: F811
    """A peer that takes the connection and never greets (a listening socket nobody accepts on:
    the kernel completes the handshake): the probe waits out probe_step_timeout. Meanwhile the
    dialog says it is busy and can be closed, and the page searches and opens dialogs; when the
    probe ends the row's badge says no mail would go out."""
    # long enough for the page to be used meanwhile on a loaded machine, short enough for a test
    site = make_policy_site({**PROBE_CONFIG, "probe_step_timeout": "12s"})
    with socket.socket() as silent:
        silent.bind((free_loopback_address(ports=(25,)), 25))
        silent.listen(8)
        dest = f"[{silent.getsockname()[0]}]:25"
        site.put_ok(dest, {"level": "encrypt"})
        site.put_ok("other.example", {"level": "may"})
        page = open_page(site, browser)
        got = page.run("""
            const r = page.locator(`tbody tr[data-destination="${args.dest}"]`);
            await r.getByRole('button', { name: `Test destination ${args.dest}` }).click();
            const dlg = page.getByRole('dialog');
            const busy = dlg.locator('.probe-busy');
            await busy.waitFor();
            const out = { busy: await busy.innerText(), areaBusy: await dlg.locator('.probe-area').getAttribute('aria-busy') };
            await dlg.getByRole('button', { name: 'Close' }).click();
            await dlg.waitFor({ state: 'detached' });
            // the page meanwhile: a search, a dialog opened and closed
            await page.getByLabel('Search').fill('other');
            await page.waitForFunction(() => document.querySelectorAll('tbody tr').length === 1);
            await page.getByRole('button', { name: 'Edit other.example' }).click();
            await page.getByRole('dialog').getByRole('button', { name: 'Cancel' }).click();
            await page.getByLabel('Search').fill('');
            await r.waitFor();
            out.badgeMeanwhile = await r.locator('button.probe-badge').count();
            const badge = r.locator('button.probe-badge');
            await badge.waitFor({ timeout: args.wait });
            out.badge = await badge.innerText();
            return out;""", dest=dest, wait=WAIT_MS)
    assert f"Testing {dest} at encrypt" in got["busy"] and got["areaBusy"] == "true", got
    assert got["badgeMeanwhile"] == 0, "the probe ended before the page was used: not a slow probe"
    assert "Unreachable" in got["badge"] and "nothing passes" in got["badge"], got
    assert page.errors() == []
