"""The console's Fleet page (console/page-fleet.js) and the overview's fleet summary in Debian's
chromium, against two real daemons on one database, each managing a Postfix sandbox of its own
(test_fleet.py's FAST heartbeat): both nodes listed with the answering one marked self and no
action for a read-only session; a stopped node shown unreachable by the page's own refresh, Forget
refused while it is alive again (node_alive, in words) and removing it once it is gone; a node
whose postmap refuses shown degraded with the tool's output, and Retry bringing it back in sync;
a certificate bound on one node from the page (system certificate not offered, the reply's warning
shown), then served there, and the node back on the settings' certificate."""
import os

import pytest

from tests.harness.browser import PHONE
from tests.harness.util import wait_until
from tests.system.test_contract_state import put_cert
from tests.system.test_fleet import FAST, node_config, nodes, refusing_postmap, share_tokens
from tests.system.test_settings import make_site  # noqa: F401 (a fixture)

HOST = "mx.test.example"  # node 1's sandbox
HOST2 = "mx2.test.example"  # node 2's
ROW = "tr[data-node='{}']"


@pytest.fixture
def make_fleet(make_site, make_postfix, make_daemon):  # noqa: F811
    """make_fleet(config2=None) -> (site, two): node mx1 is a Site of test_settings.py (site.d,
    site.pf), node mx2 a daemon on the same database managing a Postfix of its own (myhostname
    HOST2; two.pf), with more configuration keys config2; both registered."""
    def make(config2=None):
        site = make_site(config={**FAST, "node_name": "mx1"})
        pf = make_postfix(myhostname=HOST2)
        two = make_daemon({**node_config("mx2", pf), **(config2 or {})},
                          database_url=site.d.config["database_url"], tokens=False)
        two.pf = pf
        share_tokens(two, site.d)
        wait_until(lambda: len(nodes(site.d)) == 2, 20, "both nodes registered")
        return site, two
    return make


def serve(site, certs):
    """Inbound TLS on every node with one imported certificate (the settings' binding); waits
    until each node's verifier saw its smtpd serve it. Returns its fingerprint."""
    leaf = certs.leaf("fleet-shared", (HOST, HOST2))
    put_cert(site.d, "shared", leaf)
    site.put_ok({"mode": "may", "certificate": "shared"})
    wait_until(lambda: all(n["served"]["verified"] is True and n["state"] == "in_sync"
                           for n in nodes(site.d).values()), 20, "both nodes serve it")
    return leaf.fingerprint()


def open_fleet(browser, d, token, size=()):
    page = browser.open(d.url, *size)
    page.sign_in(token, "/console/fleet")
    page.run("await page.locator('table.nodes tbody tr').first().waitFor()")
    return page


def cells(page, name):
    """The row of node `name`: {column: text}."""
    return page.run("""
        const row = page.locator(args.row);
        await row.waitFor();
        return Object.fromEntries(await row.locator('td').evaluateAll((tds) =>
            tds.map((td) => [td.dataset.label, td.innerText.trim()])));
    """, row=ROW.format(name))


def wait_state(page, name, state, timeout=20000):
    """Waits, by the page's own refresh, until node `name` shows `state`."""
    page.run("await page.locator(args.row + ' .badge.' + args.state).waitFor({ timeout: args.t })",
             row=ROW.format(name), state=state, t=timeout)


def set_hidden(page, hidden):
    """Makes the page believe its tab is hidden (its polling pauses) or shown again."""
    page.run("""
        await page.evaluate((hidden) => {
            if (hidden) Object.defineProperty(document, 'hidden', { configurable: true, get: () => true });
            else delete document.hidden;  // the Document's own getter again
            document.dispatchEvent(new Event('visibilitychange'));
        }, args.hidden);
    """, hidden=hidden)


def test_fleet_page_lists_the_nodes_and_forgets_one_that_is_gone(make_fleet, browser):
    site, two = make_fleet()
    d = site.d
    gen = site.generation()

    # read-only: the overview sums the fleet up and links to the page; every value, no action
    page = browser.open(d.url)
    page.sign_in(d.read_token, "/console/overview")
    page.run("""
        const fleet = page.getByRole('region', { name: 'Fleet' });
        await fleet.getByText('2 of 2 in sync').waitFor({ timeout: 20000 });
        await fleet.getByRole('link', { name: 'Open the Fleet page' }).click();
        await page.waitForURL('**/console/fleet');
        await page.locator('table.nodes tbody tr').nth(1).waitFor();
    """)
    listed = page.run("return await page.locator('table.nodes tbody tr')"
                      ".evaluateAll((rs) => rs.map((r) => r.dataset.node))")
    assert listed == ["mx1", "mx2"], listed
    one = cells(page, "mx1")
    assert "self" in one["Node"] and "self" not in cells(page, "mx2")["Node"], one
    assert one["State"] == "in sync" and one["Generation"] == f"{gen} (up to date)", one
    assert one["Certificate"] == "settings'" and HOST in one["Postfix"], one
    assert HOST2 in cells(page, "mx2")["Postfix"]
    assert page.run("return await page.locator('main button').count()") == 0
    assert "read scope" in page.text()

    # write: node 2 stopped is unreachable by the page's own refresh; Forget, no longer offered
    # once the node is back, is refused (in words) when it came back unseen
    page = open_fleet(browser, d, d.token)
    two.stop()
    wait_state(page, "mx2", "unreachable")
    assert "Forget" in cells(page, "mx2")["Actions"]
    assert "Forget" not in cells(page, "mx1")["Actions"]
    set_hidden(page, True)
    two.start()
    two.mark_fd_baseline()
    wait_until(lambda: nodes(d)["mx2"]["state"] != "unreachable", 20, "mx2 back")
    page.run("""
        await page.getByRole('button', { name: 'Forget mx2' }).click();
        const dlg = page.getByRole('dialog', { name: 'Forget mx2?' });
        await dlg.getByRole('button', { name: 'Forget', exact: true }).click();
        await dlg.getByRole('alert').getByText(/mx2.*is alive/).waitFor();
        await dlg.getByRole('button', { name: 'Close' }).click();
    """)
    set_hidden(page, False)
    page.run("await page.getByRole('button', { name: 'Forget mx2' }).waitFor({ state: 'detached', timeout: 20000 })")
    assert len(nodes(d)) == 2

    two.stop()
    wait_state(page, "mx2", "unreachable")
    page.run("""
        await page.getByRole('button', { name: 'Forget mx2' }).click();
        const dlg = page.getByRole('dialog', { name: 'Forget mx2?' });
        await dlg.getByRole('button', { name: 'Forget', exact: true }).click();
        await page.locator('.notice.ok').getByText('mx2 is forgotten').waitFor();
        await page.locator(args.row).waitFor({ state: 'detached' });
    """, row=ROW.format("mx2"))
    assert list(nodes(d)) == ["mx1"]
    # a lone node: the overview has no fleet summary
    page.goto("/console/overview")
    page.run("await page.getByRole('region', { name: 'State' }).waitFor()")
    assert page.run("return await page.getByRole('region', { name: 'Fleet' }).count()") == 0


@pytest.mark.expect_errors(r"(?i)(fleet|retry) reconcile failed|postmap|simulated refusal")
def test_a_node_whose_postfix_refuses_shows_degraded_with_the_output_and_retry_works(
        make_fleet, browser, certs, tmp_path):
    wrapper, flag = refusing_postmap(str(tmp_path))
    site, two = make_fleet({"postmap_command": wrapper})
    serve(site, certs)
    open(flag, "w").close()
    r = site.d.http("PUT", "/api/v1/tls-policies/partner.example", {"level": "encrypt"})
    assert r.status == 201, r
    wait_until(lambda: nodes(site.d)["mx2"]["state"] == "degraded", 20, "mx2 degraded")

    page = open_fleet(browser, site.d, site.d.token)
    wait_state(page, "mx2", "degraded")
    row = cells(page, "mx2")
    assert "simulated refusal" in row["State"] and "1 behind" in row["Generation"], row
    assert "Retry" in row["Actions"] and "Retry" not in cells(page, "mx1")["Actions"]
    # the served certificate, shortened, in full in its title; verified
    titles = page.run("return await page.locator(args.row + ' code.fp')"
                      ".evaluateAll((cs) => cs.map((c) => [c.innerText, c.title]))",
                      row=ROW.format("mx1"))
    fp = site.d.get("/api/v1/certificates/shared").body["sha256_fingerprint"]
    assert [t for _, t in titles] == [fp] and titles[0][0] != fp and "…" in titles[0][0], titles
    assert "verified" in cells(page, "mx1")["Serves"]
    page.screenshot("fleet")
    phone = open_fleet(browser, site.d, site.d.read_token, PHONE)
    wait_state(phone, "mx2", "degraded")
    assert phone.no_horizontal_scroll()
    phone.screenshot("fleet")

    # the cause removed: Retry, and the page shows it in sync (no new generation)
    gen = site.generation()
    os.unlink(flag)
    page.run("""
        await page.getByRole('button', { name: 'Retry mx2' }).click();
        await page.locator('.notice.ok').getByText('mx2 was asked to apply').waitFor();
    """)
    wait_state(page, "mx2", "in_sync")
    assert cells(page, "mx2")["Generation"] == f"{gen} (up to date)"
    assert site.generation() == gen


def test_a_certificate_bound_on_one_node_from_the_page(make_fleet, browser, certs):
    site, two = make_fleet()
    shared = serve(site, certs)
    own = certs.leaf("fleet-mx2-own", ("mx2.example.net",))  # not HOST2: a hostname warning
    put_cert(site.d, "mx2-own", own)
    system = [c["name"] for c in site.d.get("/api/v1/certificates").body["items"] if c["system"]]

    page = open_fleet(browser, site.d, site.d.token)
    offered = page.run("""
        await page.getByRole('button', { name: 'Bind a certificate on mx2' }).click();
        const dlg = page.getByRole('dialog', { name: 'Bind a certificate on mx2' });
        const select = dlg.getByLabel('Certificate');
        await select.locator('option[value="mx2-own"]').waitFor({ state: 'attached' });
        const offered = await select.locator('option').evaluateAll((os) => os.map((o) => o.value));
        await select.selectOption('mx2-own');
        await dlg.getByRole('button', { name: 'Bind', exact: true }).click();
        await dlg.waitFor({ state: 'detached' });
        await page.locator('.notice.warn').getByText('mx2-own is bound on mx2').waitFor();
        return offered;
    """)
    assert set(offered) == {"", "shared", "mx2-own"} and not set(system) & set(offered), offered
    assert HOST2 in page.text(".notice.warn"), page.text(".notice.warn")  # hostname_mismatch
    page.run("await page.locator(args.row + ' td[data-label=Certificate]').getByText('mx2-own')"
             ".waitFor()", row=ROW.format("mx2"))
    row = cells(page, "mx2")
    assert row["Certificate"].startswith("mx2-own") and "bound on this node" in row["Certificate"]
    assert cells(page, "mx1")["Certificate"] == "settings'"
    # node 2 applies it and its verifier sees it served: the page shows that fingerprint
    page.run("await page.locator(args.row + ` code.fp[title='${args.fp}']`).waitFor({ timeout: 20000 })",
             row=ROW.format("mx2"), fp=own.fingerprint())
    assert nodes(site.d)["mx2"]["settings"]["certificate"] == "mx2-own"

    # back on the settings' certificate
    page.run("""
        await page.getByRole('button', { name: 'mx2 follows the settings' }).click();
        await page.locator('.notice.ok').getByText("mx2 follows the settings' certificate again").waitFor();
        await page.locator(args.row + ` code.fp[title='${args.fp}']`).waitFor({ timeout: 20000 });
    """, row=ROW.format("mx2"), fp=shared)
    assert cells(page, "mx2")["Certificate"] == "settings'"
    assert nodes(site.d)["mx2"]["settings"] is None
