"""The console's TLS policy domains page in Debian's chromium, against the real daemon, PostgreSQL
and a Postfix sandbox (make_policy_site of test_policies.py): add, refuse, edit, delete and import
policies through the page and see them in Postfix's live map (`postmap -q`); managed rows; the
level-dependent attribute fields; the Mandatory warning; search and paging over thousands of rows;
a read-only session; the layout at 390 px."""
import json
import time
import urllib.parse

from tests.harness.browser import PHONE
from tests.system.test_policies import make_policy_site  # noqa: F401 (a fixture)

MANAGER_URLS = "domains=https://admin.example.net/domains?d={destination} other=http://x.example/"
MANAGED = "[smtp.sasl.example]:587"
MANAGED_NOTE = "Auto-added: domain requires authentication"


def new_site(make_policy_site):  # noqa: F811
    site = make_policy_site({"console_manager_urls": MANAGER_URLS})
    site.put_ok(MANAGED, {"level": "encrypt", "managed_by": "domains", "note": MANAGED_NOTE},
                status=201)
    return site


def open_page(site, browser, *size):
    page = browser.open(site.d.url, *size)
    page.sign_in(site.d.token)
    page.goto("/console/policies")
    return page


def row(page, dest):
    """The table row of dest (a playwright locator expression)."""
    return f"page.locator('tbody tr').filter({{ has: page.getByText({json.dumps(dest)}, {{ exact: true }}) }})"


# the whole life of a policy through the page, the managed row, and the bulk import
def test_add_edit_delete_managed_and_import(make_policy_site, browser):  # noqa: F811
    site = new_site(make_policy_site)
    page = open_page(site, browser)

    # the session tells the page where managers live; the managed row links there and has no
    # checkbox, no edit, no delete
    got = page.run(f"""
        const r = {row(page, MANAGED)};
        await r.getByText('Managed by domains').waitFor();
        const link = r.getByRole('link');
        return {{ href: await link.getAttribute('href'), text: await link.innerText(),
                 boxes: await r.locator('input[type=checkbox]').count(),
                 buttons: await r.getByRole('button').count() }};""")
    assert got["href"] == "https://admin.example.net/domains?d=" + urllib.parse.quote(
        MANAGED, safe=""), got
    assert MANAGED_NOTE in got["text"] and "admin.example.net" in got["text"], got
    assert got["boxes"] == 0 and got["buttons"] == 0, got
    assert "null" not in page.text() and "undefined" not in page.text()
    page.screenshot("policies")

    # a bad domain: refused next to the Domain field, in words; nothing stored
    before = site.snapshot()
    page.run("""
        await page.getByRole('button', { name: 'Add', exact: true }).click();
        const dlg = page.getByRole('dialog');
        await dlg.getByLabel('Domain').fill('bad domain!.example');
        await dlg.getByLabel('Encryption mode').selectOption('may');
        await dlg.getByRole('button', { name: 'Save' }).click();
        const err = dlg.locator('.field:has(input[data-field="/destination"]) + .field-error');
        await err.waitFor();
        if (!/destination|name|label|character/i.test(await err.innerText()))
            throw new Error('refusal not in words: ' + await err.innerText());
        if (await dlg.getByLabel('Domain').getAttribute('aria-invalid') !== 'true')
            throw new Error('Domain not marked invalid');
    """)
    # a bad attribute: next to its field (Protocols), in words
    page.run("""
        const dlg = page.getByRole('dialog');
        await dlg.getByLabel('Domain').fill('ok.example');
        await dlg.getByLabel('Protocols').fill('TLSv9');
        await dlg.getByRole('button', { name: 'Save' }).click();
        const err = dlg.locator('.field:has(input[data-field="/protocols"]) + .field-error');
        await err.waitFor();
        if (!(await err.innerText()).includes('TLSv9')) throw new Error(await err.innerText());
        await dlg.getByLabel('Protocols').fill('');
    """)
    assert site.snapshot() == before, "a refused add changed something"

    # the attribute fields follow the level: match for secure (and tafile), not for may
    shown = page.run("""
        const dlg = page.getByRole('dialog');
        const seen = async () => ({ match: await dlg.getByLabel('Match').isVisible(),
            tafile: await dlg.getByLabel('Trust anchor file').isVisible(),
            protocols: await dlg.getByLabel('Protocols').isVisible(),
            nullGrade: await dlg.locator('option[value=null]').evaluate((o) => !o.hidden && !o.disabled) });
        const out = {};
        for (const l of ['secure', 'may', 'none', 'fingerprint', 'dane', 'encrypt']) {
            await dlg.getByLabel('Encryption mode').selectOption(l);
            out[l] = await seen();
        }
        return out;""")
    assert shown["secure"]["match"] and shown["secure"]["tafile"], shown
    assert shown["fingerprint"]["match"] and not shown["fingerprint"]["tafile"], shown
    assert not shown["may"]["match"] and not shown["may"]["tafile"] and shown["may"]["protocols"]
    assert not shown["dane"]["match"], shown
    assert not any(shown["none"][k] for k in ("match", "tafile", "protocols")), shown
    assert not shown["encrypt"]["nullGrade"] and shown["may"]["nullGrade"], shown

    # encrypt: the warning callout is there before saving, and must be acknowledged
    page.run("""
        const dlg = page.getByRole('dialog');
        await dlg.getByLabel('Domain').fill('Partner.Example');
        if (await dlg.locator('.field-error').count()) throw new Error('the refusal stayed after the edit');
        await dlg.getByLabel('Note').fill('partner relay');
        const callout = dlg.locator('.mandatory-warning');
        if (!await callout.isVisible()) throw new Error('no warning callout at encrypt');
        const t = await callout.innerText();
        if (!t.includes('does not support STARTTLS will be deferred') || !t.includes('advertises STARTTLS'))
            throw new Error('callout: ' + t);
        await dlg.getByLabel('Protocols').fill('>=TLSv1.2');
        await dlg.getByLabel('Encryption mode').focus();
        await callout.scrollIntoViewIfNeeded();
    """)
    page.screenshot("policy-add")
    page.run("""
        const dlg = page.getByRole('dialog');
        await dlg.getByRole('button', { name: 'Save' }).click();
        await dlg.locator('.mandatory-warning .field-error').waitFor();
        await dlg.getByLabel('I have checked').check();
        await dlg.getByRole('button', { name: 'Save' }).click();
        await dlg.waitFor({ state: 'detached' });
        await page.locator('.notice.ok').filter({ hasText: 'Added partner.example (job ' }).waitFor();
        await page.locator('tbody tr[data-destination="partner.example"]').waitFor();
    """)
    assert site.map_query("partner.example") == "encrypt protocols=>=TLSv1.2"
    assert site.get("partner.example").body["note"] == "partner relay"

    # edit: to may, its note; the dialog fills in what is stored
    page.run(f"""
        await {row(page, 'partner.example')}.getByRole('button', {{ name: 'Edit partner.example' }}).click();
        const dlg = page.getByRole('dialog');
        if (await dlg.getByLabel('Protocols').inputValue() !== '>=TLSv1.2') throw new Error('not filled');
        if (await dlg.locator('.mandatory-warning').isVisible()) throw new Error('callout for may');
        await dlg.getByLabel('Encryption mode').selectOption('may');
        await dlg.getByLabel('Note').fill('now opportunistic');
        await dlg.getByRole('button', {{ name: 'Save' }}).click();
        await dlg.waitFor({{ state: 'detached' }});
        await page.locator('.notice.ok').filter({{ hasText: 'Saved partner.example' }}).waitFor();
    """)
    assert site.map_query("partner.example") == "may protocols=>=TLSv1.2"
    # an edit of a row someone else changed meanwhile: 412, said in words, nothing overwritten
    page.run(f"""
        await {row(page, 'partner.example')}.getByRole('button', {{ name: 'Edit partner.example' }}).click();
        await page.getByRole('dialog').getByLabel('Note').fill('mine');""")
    site.patch("partner.example", {"note": "theirs"})
    page.run("""
        const dlg = page.getByRole('dialog');
        await dlg.getByRole('button', { name: 'Save' }).click();
        await dlg.locator('.form-error').filter({ hasText: 'Someone else changed partner.example' }).waitFor();
        await dlg.getByRole('button', { name: 'Cancel' }).click();""")
    assert site.get("partner.example").body["note"] == "theirs"

    # delete, with a confirmation
    page.run(f"""
        await {row(page, 'partner.example')}.getByRole('button', {{ name: 'Delete partner.example' }}).click();
        const dlg = page.getByRole('dialog');
        await dlg.getByText('Delete the TLS policy for partner.example?').waitFor();
        await dlg.getByRole('button', {{ name: 'Delete' }}).click();
        await page.locator('.notice.ok').filter({{ hasText: 'Deleted partner.example' }}).waitFor();
        await page.locator('tbody tr[data-destination="partner.example"]').waitFor({{ state: 'detached' }});
    """)
    assert site.map_query("partner.example") is None
    assert site.get("partner.example").status == 404

    # bulk import of a Postfix map file: the dry run's diff with counts, then Apply
    site.put_ok("old.example", {"level": "may"}, status=201)
    site.put_ok("keep.example", {"level": "encrypt"}, status=201)
    mapfile = ("# partners\n"
               "keep.example   encrypt\n"
               ".bank.example  secure match=nexthop:dot-nexthop\n"
               "\tprotocols=>=TLSv1.2\n"
               "\n"
               "[relay.example.net]:587 encrypt, ciphers=high\n"
               "NEW.example    verify\n")
    page.run("""
        await page.getByRole('button', { name: 'Import…' }).click();
        const dlg = page.getByRole('dialog');
        await dlg.getByLabel('Policy file').setInputFiles({ name: 'tls_policy', mimeType: 'text/plain',
                                                            buffer: Buffer.from(args.text) });
        await page.waitForFunction(() => document.querySelector('dialog textarea').value.includes('bank'));
        await dlg.getByRole('button', { name: 'Preview' }).click();
        await dlg.getByRole('button', { name: 'Apply' }).waitFor();
    """, text=mapfile)
    counts = page.run("""return await page.getByRole('dialog').locator('[data-count]').evaluateAll(
        (ls) => Object.fromEntries(ls.map((l) => [l.dataset.count, Number(l.querySelector('strong').textContent)])))""")
    assert counts == {"added": 3, "changed": 0, "removed": 1, "unchanged": 1}, counts
    text = page.text("dialog")
    assert "Added in Postfix's map (3)" in text and "Removed in Postfix's map (1)" in text, text
    assert "old.example" in text and ".bank.example" in text, text
    assert "covers the subdomains of bank.example only" in text, text  # the API's warnings
    assert "null" not in text, text
    assert site.map_query("new.example") is None, "a dry run changed the map"
    page.screenshot("policies-bulk")
    page.run("""
        const dlg = page.getByRole('dialog');
        await dlg.getByRole('button', { name: 'Apply' }).click();
        await dlg.waitFor({ state: 'detached' });
        await page.locator('.notice').filter({ hasText: '3 added, 0 changed, 1 removed, 1 unchanged' }).waitFor();
    """)
    assert site.map_query(".bank.example") == "secure match=nexthop:dot-nexthop protocols=>=TLSv1.2"
    assert site.map_query("[relay.example.net]:587") == "encrypt ciphers=high"
    assert site.map_query("new.example") == "verify"
    assert site.map_query("old.example") is None
    assert site.get(MANAGED).body["managed_by"] == "domains", "the bulk touched the managed row"

    # export: downloads through a Blob URL (the CSP allows them), JSON of the bulk body and map
    # text; managed rows left out. The JSON export imports back as "nothing changes".
    exported = page.run("""
        const out = {};
        for (const [name, key] of [['Export JSON', 'json'], ['Export map file', 'map']]) {
            const [dl] = await Promise.all([page.waitForEvent('download'),
                                            page.getByRole('button', { name }).click()]);
            const chunks = [];
            for await (const c of await dl.createReadStream()) chunks.push(c);
            out[key] = { name: dl.suggestedFilename(), url: dl.url(), text: Buffer.concat(chunks).toString() };
        }
        return out;""")
    assert exported["json"]["url"].startswith("blob:"), exported
    body = json.loads(exported["json"]["text"])
    assert [i["destination"] for i in body["items"]] == \
        [".bank.example", "[relay.example.net]:587", "keep.example", "new.example"], body
    assert body["items"][0] == {"destination": ".bank.example", "level": "secure",
                                "match": ["nexthop", "dot-nexthop"], "protocols": ">=TLSv1.2",
                                "enabled": True}, body
    assert "keep.example\tencrypt\n" in exported["map"]["text"], exported
    assert MANAGED not in exported["map"]["text"] + exported["json"]["text"]
    r = site.bulk(body["items"], "?dry_run=true")
    assert (r.status, r.body["added"], r.body["changed"], r.body["removed"]) == (200, 0, 0, 0), r

    # several rows at once: the checkboxes and "Delete selected"
    page.run("""
        for (const d of ['keep.example', 'new.example'])
            await page.getByRole('checkbox', { name: `Select ${d}` }).check();
        await page.getByRole('button', { name: 'Delete selected (2)' }).click();
        await page.getByRole('dialog').getByRole('button', { name: 'Delete' }).click();
        await page.locator('.notice.ok').filter({ hasText: 'Deleted keep.example' }).waitFor();
        await page.locator('tbody tr[data-destination="new.example"]').waitFor({ state: 'detached' });
    """)
    assert site.map_query("keep.example", "new.example") == {}

    # the layout at 390 px: the table stacks, nothing scrolls sideways; the dialogs too
    phone = open_page(site, browser, *PHONE)
    phone.run(f"await {row(phone, MANAGED)}.getByText('Managed by domains').waitFor()")
    assert phone.no_horizontal_scroll()
    assert phone.run("return await page.locator('tbody td[data-label=\"Domain\"]').first().evaluate("
                     "(td) => getComputedStyle(td).display)") == "grid"
    phone.screenshot("policies")
    phone.run("""
        await page.getByRole('button', { name: 'Add', exact: true }).click();
        await page.getByRole('dialog').getByLabel('Domain').fill('partner.example');
        await page.getByRole('dialog').locator('.mandatory-warning').waitFor();""")
    assert phone.no_horizontal_scroll()
    phone.screenshot("policy-add")
    phone.run("""
        const dlg = page.getByRole('dialog');
        await dlg.getByRole('button', { name: 'Cancel' }).click();
        await page.getByRole('button', { name: 'Import…' }).click();
        await page.getByRole('dialog').getByLabel('Or paste it here').fill(args.text);
        await page.getByRole('dialog').getByRole('button', { name: 'Preview' }).click();
        await page.getByRole('dialog').getByRole('button', { name: 'Apply' }).waitFor();
    """, text=json.dumps({"items": body["items"] + [
        {"destination": MANAGED, "level": "may", "managed_by": "domains"}]}))
    text = phone.text("dialog")
    assert "2 Added" in text and "0 Removed" in text and "2 Unchanged" in text, text
    assert "1 managed row was left out" in text, text
    assert phone.no_horizontal_scroll()
    phone.screenshot("policies-bulk")
    assert page.errors() == [] and phone.errors() == []


# search and paging over thousands of rows, never fetching them all; a read-only session
def test_search_paging_and_read_only(make_policy_site, browser):  # noqa: F811
    site = new_site(make_policy_site)
    n = 2000
    items = [{"destination": f"d{i:05d}.example", "level": "encrypt" if i % 2 else "may",
              "note": "bank" if i % 400 == 7 else None} for i in range(n)]
    r = site.bulk(items, timeout=120)
    assert r.status == 200 and r.body["added"] == n, r
    page = open_page(site, browser)
    first = page.run("return await page.locator('tbody tr').count()")
    assert first == 50, first
    # paging by the cursor: next twice, previous once
    dests = page.run("""
        const firstDest = async () => page.locator('tbody tr').first().getAttribute('data-destination');
        const seen = [await firstDest()];
        for (const b of ['Next →', 'Next →', '← Previous']) {
            const before = await page.locator('main').getAttribute('data-loaded');
            await page.getByRole('button', { name: b }).click();
            await page.waitForFunction((b) => document.querySelector('main').dataset.loaded !== b, before);
            seen.push(await firstDest());
        }
        return seen;""")
    assert dests == [MANAGED, "d00049.example", "d00099.example", "d00049.example"], dests
    # search (debounced): the time from the last key to the row on screen
    took = page.run("""
        const t0 = Date.now();
        await page.getByLabel('Search').fill('d01234');
        await page.locator('tbody tr[data-destination="d01234.example"]').waitFor();
        await page.waitForFunction(() => document.querySelectorAll('tbody tr').length === 1);
        return Date.now() - t0;""")
    print(f"search at {n} rows: {took} ms (debounce 250 ms included)")
    notes = page.run("""
        await page.getByLabel('Search').fill('bank');
        await page.waitForFunction(() => document.querySelectorAll('tbody tr').length === 5);
        await page.getByLabel('Encryption mode filter').selectOption('encrypt');
        await page.waitForFunction(() => document.querySelectorAll('tbody tr').length === 5);
        return await page.locator('tbody tr').evaluateAll((rs) => rs.map((r) => r.dataset.destination));""")
    assert notes == [f"d{i:05d}.example" for i in range(7, n, 400)], notes
    page.run("""
        await page.getByLabel('Search').fill('');
        await page.getByLabel('Encryption mode filter').selectOption('');
        await page.getByLabel('Rows').selectOption('true');
        await page.waitForFunction(() => document.querySelectorAll('tbody tr').length === 1);""")
    assert page.errors() == []

    # read-only: everything visible, every write disabled with the reason; search still works
    ro = browser.open(site.d.url)
    ro.sign_in(site.d.read_token)
    ro.goto("/console/policies")
    state = ro.run("""
        const reason = 'Your token has the read scope';
        const out = { rows: await page.locator('tbody tr').count(),
                      notice: await page.locator('.read-only').innerText() };
        for (const name of ['Add', 'Import…', 'Delete selected', 'Edit d00001.example', 'Delete d00001.example']) {
            const b = page.getByRole('button', { name, exact: true });
            out[name] = { disabled: await b.isDisabled(), title: await b.getAttribute('title') };
        }
        out.boxes = await page.locator('tbody input[type=checkbox]:enabled').count();
        out.exportEnabled = await page.getByRole('button', { name: 'Export JSON' }).isEnabled();
        await page.getByLabel('Search').fill('d00002');
        await page.waitForFunction(() => document.querySelectorAll('tbody tr').length === 1);
        out.searchRows = await page.locator('tbody tr[data-destination="d00002.example"]').count();
        return out;""")
    assert state["rows"] == 50 and "read scope" in state["notice"], state
    for name in ("Add", "Import…", "Delete selected", "Edit d00001.example", "Delete d00001.example"):
        assert state[name]["disabled"] and "read scope" in (state[name]["title"] or ""), (name, state)
    assert state["boxes"] == 0 and state["exportEnabled"] and state["searchRows"] == 1, state
    assert ro.errors() == []


def test_search_at_100k_rows(make_policy_site, browser):  # noqa: F811
    """A figure for the report, not part of the suite's run: SMTPTLSD_POLICIES_100K=1."""
    import os
    import pytest
    if os.environ.get("SMTPTLSD_POLICIES_100K") != "1":
        pytest.skip("measured once for the report (SMTPTLSD_POLICIES_100K=1)")
    site = make_policy_site()
    n = 100000
    t0 = time.monotonic()
    r = site.bulk([{"destination": f"h{i:06d}.example", "level": "encrypt"} for i in range(n)],
                  timeout=600)
    assert r.status == 200 and r.body["added"] == n, r
    print(f"bulk of {n}: {time.monotonic() - t0:.1f} s")
    page = open_page(site, browser)
    times = []
    for q in ("h054321", "h099999", "h000123"):
        times.append(page.run("""
            const t0 = Date.now();
            await page.getByLabel('Search').fill(args.q);
            await page.locator(`tbody tr[data-destination="${args.q}.example"]`).waitFor();
            await page.waitForFunction(() => document.querySelectorAll('tbody tr').length === 1);
            return Date.now() - t0;""", q=q))
    nav = page.run("""
        const t0 = Date.now();
        await page.getByLabel('Search').fill('');
        await page.waitForFunction(() => document.querySelectorAll('tbody tr').length === 50);
        const t1 = Date.now();
        const before = await page.locator('main').getAttribute('data-loaded');
        await page.getByRole('button', { name: 'Next →' }).click();
        await page.waitForFunction((b) => document.querySelector('main').dataset.loaded !== b, before);
        return [t1 - t0, Date.now() - t1];""")
    print(f"search at {n} rows: {times} ms (250 ms debounce included); clear {nav[0]} ms, next {nav[1]} ms")
    for path in ("?limit=50&q=h054321", "?limit=50", "?limit=50&after=" + urllib.parse.quote(
            site.d.get("/api/v1/tls-policies?limit=50").body["next"], safe=""),
            "?limit=50&q=h0543"):
        t0 = time.monotonic()
        r = site.d.get("/api/v1/tls-policies" + path)
        assert r.status == 200, r
        print(f"API GET {path[:40]}: {1000 * (time.monotonic() - t0):.0f} ms")
