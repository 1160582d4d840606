"""The console's Certificates page in Debian's chromium, against the real daemon (and a real Postfix
sandbox where a bound certificate matters): the store as a table with days left, upload by pasting
PEM blocks in any order or choosing files, refusals in words next to the PEM field (and nothing
stored), replacing the bound certificate (the real Postfix serves the new one), delete refused for a
bound certificate with the reason on screen, no delete for the system certificate, the ACME rescan,
a read-only session, the phone layout."""
import os
import shutil

from tests.harness.browser import PHONE
from tests.harness.util import wait_until
from tests.system.conftest import setup_tokens
from tests.system.test_certificates import (  # noqa: F401 (make_site is a fixture)
    HOST, Lineage, acme_leaf, json_body, make_site)

ROW = "tr[data-name='{}']"


def open_page(browser, d, token=None, size=()):
    page = browser.open(d.url, *size)
    page.sign_in(token or d.token, "/console/certificates")
    page.run("await page.getByRole('heading', { name: 'Certificates', level: 1 }).waitFor();"
             "await page.locator('table.certs tbody tr').first().waitFor()")
    return page


def upload(page, name, pem=None, files=()):
    """Fills the upload dialog (pasted text and/or files) and presses Upload."""
    page.run("""
        await page.getByRole('button', { name: 'Upload', exact: true }).click();
        const dlg = page.getByRole('dialog', { name: 'Upload a certificate' });
        await dlg.getByLabel('Name', { exact: true }).fill(args.name);
        if (args.pem) await dlg.getByLabel('PEM text').fill(args.pem);
        if (args.files.length) {
            await dlg.getByLabel('PEM files').setInputFiles(args.files);
            await dlg.locator('ul.pem-files li').nth(args.files.length - 1).waitFor();
        }
        await dlg.getByRole('button', { name: 'Upload', exact: true }).click();
    """, name=name, pem=pem or "", files=list(files))


def names(d, query=""):
    r = d.get("/api/v1/certificates" + query)
    assert r.status == 200, r
    return [c["name"] for c in r.body["items"]]


def test_upload_paste_files_refusal_search_delete_and_phone(make_site, certs, browser):
    site = make_site(postfix=False)
    d = site.d
    chained, inter, ec = certs.chained_leaf(), certs.intermediate(), certs.ec_leaf()
    # a certificate 10 days from its end, for the colour of the badge
    assert site.put("soon", json_body(certs.expiring(10))).status == 201
    page = open_page(browser, d)

    # the system certificate is listed, without Replace or Delete, saying why
    system = page.run("""
        const row = page.locator(args.row);
        return { text: await row.innerText(),
                 buttons: await row.getByRole('button').count() };
    """, row=ROW.format(site.system_name))
    assert system["buttons"] == 0, system
    assert "cannot be replaced, deleted or bound" in system["text"], system

    # pasted: intermediate, key, leaf (scrambled): the page sorts them, the row shows days left
    upload(page, "pasted", inter.read() + chained.read("key") + chained.read())
    page.run("await page.locator(args.row).waitFor()", row=ROW.format("pasted"))
    got = site.get("pasted")
    assert got["sha256_fingerprint"] == chained.fingerprint(), got
    assert [c["subject"] for c in got["chain"]] == ["CN=smtptlsd Test Intermediate"], got["chain"]
    cells = page.run("""
        const row = page.locator(args.row);
        const cell = (l) => row.locator(`td[data-label="${l}"]`).innerText();
        return { days: await cell('Days left'), type: await cell('Type'),
                 dns: await cell('DNS names'), issuer: await cell('Issuer'),
                 soon: await page.locator(args.soon).locator('td[data-label="Days left"] .badge')
                                 .getAttribute('class') };
    """, row=ROW.format("pasted"), soon=ROW.format("soon"))
    assert cells["days"] == f"{got['days_left']} days" and cells["type"] == "imported", cells
    assert cells["dns"] == HOST and "smtptlsd Test Intermediate" in cells["issuer"], cells
    assert "bad" in cells["soon"].split(), cells  # 10 days left: red

    # a key of another certificate: refused in words next to the PEM field, nothing stored
    before = names(d)
    wrong = certs.mismatched()
    upload(page, "wrong", wrong.read() + wrong.read("key"))
    err = page.run("""
        const dlg = page.getByRole('dialog', { name: 'Upload a certificate' });
        const e = dlg.locator('.field:has(textarea) + .field-error');
        await e.waitFor();
        return { text: await e.innerText(),
                 invalid: await dlg.getByLabel('PEM text').getAttribute('aria-invalid') };
    """)
    assert err["invalid"] == "true", err
    assert "private key" in err["text"].lower() and "key_mismatch" not in err["text"], err
    assert "made together with this certificate" in err["text"], err
    assert d.get("/api/v1/certificates/wrong").status == 404
    assert names(d) == before
    # the same name twice: refused next to the Name field
    page.run("""
        const dlg = page.getByRole('dialog', { name: 'Upload a certificate' });
        await dlg.getByLabel('Name', { exact: true }).fill('pasted');
        await dlg.getByLabel('PEM text').fill(args.pem);
        await dlg.getByRole('button', { name: 'Upload', exact: true }).click();
        await dlg.locator('.field:has(input[data-field="/name"]) + .field-error')
                 .filter({ hasText: 'choose another' }).waitFor();
        await dlg.getByRole('button', { name: 'Cancel' }).click();
    """, pem=ec.read() + ec.read("key"))
    assert site.get("pasted")["sha256_fingerprint"] == chained.fingerprint()

    # files chosen with the file input (key first, then the certificate)
    upload(page, "filed", files=[ec.key, ec.cert])
    page.run("await page.locator(args.row).waitFor()", row=ROW.format("filed"))
    assert site.get("filed")["sha256_fingerprint"] == ec.fingerprint()

    # files dropped on the dialog (certificate first, then the key)
    rsa = certs.rsa_leaf()
    page.run("""
        await page.getByRole('button', { name: 'Upload', exact: true }).click();
        const dlg = page.getByRole('dialog', { name: 'Upload a certificate' });
        await dlg.getByLabel('Name', { exact: true }).fill('dropped');
        const dt = await page.evaluateHandle((files) => {
            const dt = new DataTransfer();
            for (const [name, text] of files) dt.items.add(new File([text], name));
            return dt;
        }, args.files);
        await dlg.locator('form').dispatchEvent('drop', { dataTransfer: dt });
        await dlg.locator('ul.pem-summary').filter({ hasText: 'Private key: found (from privkey.pem)' })
                 .waitFor();
        await dlg.getByRole('button', { name: 'Upload', exact: true }).click();
        await page.locator(args.row).waitFor();
    """, files=[["cert.pem", rsa.read()], ["privkey.pem", rsa.read("key")]],
        row=ROW.format("dropped"))
    assert site.get("dropped")["sha256_fingerprint"] == rsa.fingerprint()

    # search and type filter
    shown = page.run("""
        await page.getByLabel('Search').fill('filed');
        await page.locator('table.certs tbody tr').nth(1).waitFor({ state: 'detached' });
        const one = await page.locator('table.certs tbody tr').evaluateAll(
            (rows) => rows.map((r) => r.dataset.name));
        await page.getByLabel('Search').fill('');
        await page.locator(args.row).waitFor();
        await page.getByLabel('Type').selectOption('system');
        await page.locator(args.row).waitFor({ state: 'detached' });
        const sys = await page.locator('table.certs tbody tr').evaluateAll(
            (rows) => rows.map((r) => r.dataset.name));
        await page.getByLabel('Type').selectOption('');
        await page.locator(args.row).waitFor();
        return { one, sys };
    """, row=ROW.format("pasted"))
    assert shown == {"one": ["filed"], "sys": [site.system_name]}, shown

    # delete an unbound certificate
    page.run("""
        await page.getByRole('button', { name: 'Delete filed' }).click();
        await page.getByRole('dialog', { name: 'Delete filed' })
                  .getByRole('button', { name: 'Delete', exact: true }).click();
        await page.locator(args.row).waitFor({ state: 'detached' });
        await page.getByText('Deleted filed').waitFor();
    """, row=ROW.format("filed"))
    assert "filed" not in names(d)
    # the ten columns fit a desktop window: the table does not scroll sideways
    assert page.run("return await page.locator('.table-wrap').evaluate("
                    "(w) => w.scrollWidth <= w.clientWidth)")
    page.screenshot("certificates")

    phone = open_page(browser, d, size=PHONE)
    assert phone.no_horizontal_scroll()
    # the rows are stacked cards, each cell with its column's name
    label = phone.run("""return await page.locator(args.row).locator('td').nth(5).evaluate(
        (td) => getComputedStyle(td, '::before').content)""", row=ROW.format("pasted"))
    assert label == '"Days left"', label
    phone.screenshot("certificates")
    # the upload dialog fits too, and says what it read
    phone.run("""
        await page.getByRole('button', { name: 'Upload', exact: true }).click();
        const dlg = page.getByRole('dialog', { name: 'Upload a certificate' });
        await dlg.getByLabel('PEM text').fill(args.pem);
        await dlg.locator('ul.pem-summary').filter({ hasText: 'Chain: 1 certificate' }).waitFor();
    """, pem=chained.read() + inter.read() + chained.read("key"))
    assert phone.no_horizontal_scroll()
    summary = phone.text("ul.pem-summary")
    assert "Certificate: mx.test.example (from the pasted text)" in summary, summary
    assert "Private key: found" in summary, summary
    phone.run("await page.keyboard.press('Escape')")


def test_replace_bound_delete_refused_rescan_and_read_only(make_site, certs, browser):
    site = make_site(start=False)
    os.makedirs(site.live_dir)  # certbot's live/ exists before the daemon starts
    site.d.start()
    setup_tokens(site.d)
    d = site.d
    old, new = certs.rsa_leaf(), certs.leaf("console-rotated", (HOST,), kind="ec")
    site.put_ok("mx", json_body(old))
    site.bind("mx")
    assert site.pf.served_certificate() == old.fingerprint()
    page = open_page(browser, d)
    assert "as the SMTP TLS certificate" in page.text(ROW.format("mx"))

    # a replace of a certificate someone changed meanwhile: refused (If-Match), said in words
    mid = certs.leaf("console-mid", (HOST,), kind="ec")
    page.run("""
        await page.getByRole('button', { name: 'Replace mx' }).click();
        const dlg = page.getByRole('dialog', { name: 'Replace mx' });
        await dlg.getByRole('button', { name: 'Replace', exact: true }).and(
            page.locator(':enabled')).waitFor();
    """)
    site.put_ok("mx", json_body(mid), status=200)
    text = page.run("""
        const dlg = page.getByRole('dialog', { name: 'Replace mx' });
        await dlg.getByLabel('PEM text').fill(args.pem);
        await dlg.getByRole('button', { name: 'Replace', exact: true }).click();
        const e = dlg.locator('.form-error');
        await e.waitFor();
        const text = await e.innerText();
        await dlg.getByRole('button', { name: 'Cancel' }).click();
        return text;
    """, pem=new.read("key") + new.read())
    assert "changed meanwhile" in text, text
    assert site.get("mx")["sha256_fingerprint"] == mid.fingerprint()

    # replace the bound certificate in place: Postfix reloaded, and it serves the new one
    page.run("""
        await page.getByRole('button', { name: 'Replace mx' }).click();
        const dlg = page.getByRole('dialog', { name: 'Replace mx' });
        await dlg.getByText('Postfix will be reloaded').waitFor();
        await dlg.getByLabel('PEM text').fill(args.pem);
        await dlg.getByRole('button', { name: 'Replace', exact: true }).click();
        await page.getByText('Postfix now serves mx').waitFor({ timeout: 40000 });
    """, pem=new.read("key") + new.read(), timeout=90)
    assert site.pf.served_certificate() == new.fingerprint()
    assert new.fingerprint() in page.text(".cert-status")
    assert site.get("mx")["sha256_fingerprint"] == new.fingerprint()

    # delete of the bound certificate: refused, with what binds it, on screen
    text = page.run("""
        await page.getByRole('button', { name: 'Delete mx' }).click();
        const dlg = page.getByRole('dialog', { name: 'Delete mx' });
        await dlg.getByRole('button', { name: 'Delete', exact: true }).click();
        const e = dlg.locator('.form-error');
        await e.waitFor();
        const text = await e.innerText();
        await dlg.getByRole('button', { name: 'Close' }).click();
        return text;
    """)
    assert "SMTP TLS certificate in TLS settings" in text and "Bind another" in text, text
    assert "certificate_in_use" not in text, text
    assert site.get("mx")["in_use"] is True

    # ACME: a lineage appears in the live directory; the rescan adds it
    mail = Lineage(site.live_dir, "mail")
    mail.create(acme_leaf(certs, "mail", 1))
    page.run("""
        await page.getByRole('button', { name: 'Rescan ACME' }).click();
        await page.locator('.cert-status').filter({ hasText: 'added mail' }).waitFor();
        await page.locator(args.row).waitFor();
    """, row=ROW.format("mail"))
    assert "mail" in names(d, "?type=acme")
    assert "Managed by the ACME client" in page.text(ROW.format("mail"))
    # bound, then its live directory gone: kept, and the table says so
    site.bind("mail")
    shutil.rmtree(mail.live)
    wait_until(lambda: site.get("mail")["missing"] is True, 10, "the bound certificate missing")
    page.goto("/console/certificates")
    page.run("await page.locator(args.row).locator('td[data-label=\"ACME missing\"]')"
             ".filter({ hasText: 'live directory gone' }).waitFor()", row=ROW.format("mail"))
    assert "as the SMTP TLS certificate" in page.text(ROW.format("mail"))

    # a read-only session sees the table; every write is disabled, saying why
    ro = open_page(browser, d, token=d.read_token)
    state = ro.run("""
        const reason = 'Your token has the read scope';
        const out = { rows: await page.locator('table.certs tbody tr').count(),
                      callout: await page.locator('.read-only').innerText(), buttons: [] };
        for (const name of ['Upload', 'Rescan ACME', 'Replace mx', 'Delete mx']) {
            const b = page.getByRole('button', { name, exact: true });
            out.buttons.push([name, await b.isDisabled(), (await b.getAttribute('title') || '')
                              .startsWith(reason)]);
        }
        out.searchEnabled = await page.getByLabel('Search').isEnabled();
        return out;
    """)
    assert state["rows"] == 3, state  # mx, mail, the system certificate
    assert state["callout"].startswith("Your token has the read scope"), state
    assert all(disabled and titled for _, disabled, titled in state["buttons"]), state
    assert state["searchEnabled"], state
