"""The console's Tokens page (console/page-tokens.js) in Debian's chromium against the real daemon
and PostgreSQL: add a token (its secret shown once, with Copy), the token working over HTTP and gone
from the page after a reload, refusals next to the name field, revoking another token and the
session's own, the sentence other scopes get, the phone layout."""
from tests.harness.browser import PHONE

ROWS = "return await page.locator('table.tokens tbody tr').evaluateAll(" \
       "(rs) => rs.map((r) => r.dataset.token))"


def test_add_copy_refuse_and_revoke(daemon, browser):
    d = daemon
    boss = d.add_token("boss", "admin")       # the page's session: revoked at the end
    victim = d.add_token("victim", "write")
    page = browser.open(d.url)
    page.run("await context.grantPermissions(['clipboard-read', 'clipboard-write'])")
    page.sign_in(boss, "/console/tokens")
    page.run("await page.locator('table.tokens').waitFor()")
    assert page.run(ROWS) == ["admin", "boss", "reader", "victim"]
    row = page.text("tr[data-token=boss]")
    assert "this session" in row and "admin" in row, row
    # signing in is a use of the token: "Last used" says when, not "never"
    used = d.get("/api/v1/tokens/boss").body["last_used_at"]
    assert used and used[:16].replace("T", " ") in row and "never" not in row, (used, row)
    assert "never" in page.text("tr[data-token=victim]")

    # add: the secret is shown once, read-only, with Copy and the "only now" message
    page.run("""
        await page.getByLabel('Name', { exact: true }).fill('ci');
        await page.getByLabel('Scope').selectOption('write');
        await page.getByRole('button', { name: 'Add' }).click();
        await page.getByLabel('Secret of ci').waitFor();
    """)
    box = page.text(".token-secret")
    assert "shown only now" in box and "cannot be shown again" in box, box
    secret = page.run("""
        const f = page.getByLabel('Secret of ci');
        if (!(await f.evaluate((e) => e.readOnly))) throw new Error('the token field is writable');
        return await f.inputValue();
    """)
    assert secret.startswith("stk_") and len(secret) == 47, secret
    page.screenshot("tokens")
    copied = page.run("""
        await page.getByRole('button', { name: 'Copy' }).click();
        await page.getByText('Copied to the clipboard.').waitFor();
        return await page.evaluate(() => navigator.clipboard.readText());
    """)
    assert copied == secret
    assert page.run(ROWS) == ["admin", "boss", "ci", "reader", "victim"]
    # it works, with its scope, for curl and co.
    assert d.get("/api/v1/settings", token=secret).status == 200
    r = d.get("/api/v1/tokens", token=secret)
    assert r.status == 403 and r.body["code"] == "forbidden", r
    # after a reload it is nowhere in the page
    page.goto("/console/tokens")
    page.run("await page.locator('tr[data-token=ci]').waitFor()")
    html = page.run("return await page.content()")
    values = page.run("return await page.locator('input').evaluateAll((l) => l.map((e) => e.value))")
    assert secret not in html and secret not in values and "Secret of ci" not in html

    # refusals next to the name field, in words, and nothing made
    for name, words in (("ci", "a token named 'ci' exists; revoke it first"),
                        ("Bad Name!", "names are 1 to 64 characters")):
        page.run("""
            await page.getByLabel('Name', { exact: true }).fill(args.name);
            await page.getByRole('button', { name: 'Add' }).click();
            const err = page.locator('.field:has(input[name=name]) + .field-error');
            await err.filter({ hasText: args.words }).waitFor();
            if (await page.getByLabel('Name', { exact: true }).getAttribute('aria-invalid') !== 'true')
                throw new Error('the name field is not marked invalid');
            if (await page.locator('.token-secret').isVisible()) throw new Error('a secret is shown');
        """, name=name, words=words)
    assert [t["name"] for t in d.get("/api/v1/tokens").body["items"]] == \
        ["admin", "boss", "ci", "reader", "victim"]

    # revoke another token: confirmed, then the API refuses it
    page.run("""
        await page.getByRole('button', { name: 'Revoke victim' }).click();
        const dlg = page.getByRole('dialog', { name: 'Revoke the token victim?' });
        await dlg.waitFor();
        if ((await dlg.innerText()).includes('current session')) throw new Error('not our session');
        await dlg.getByRole('button', { name: 'Revoke', exact: true }).click();
        await page.getByText('Token victim is revoked').waitFor();
        await page.locator('tr[data-token=victim]').waitFor({ state: 'detached' });
    """)
    assert d.get("/api/v1/settings", token=victim).status == 401
    # revoked tokens on demand, with when
    page.run("""
        await page.getByLabel('Show revoked tokens').check();
        await page.locator('tr[data-revoked-token=victim]').filter({ hasText: 'revoked 20' }).waitFor();
        if (await page.locator('tr[data-revoked-token=victim] button').count())
            throw new Error('a revoked token has a button');
        await page.getByLabel('Show revoked tokens').uncheck();
        await page.locator('tr[data-revoked-token]').first().waitFor({ state: 'detached' });
    """)
    # Cancel changes nothing
    page.run("""
        await page.getByRole('button', { name: 'Revoke ci' }).click();
        await page.getByRole('dialog').getByRole('button', { name: 'Cancel' }).click();
        await page.getByRole('dialog').waitFor({ state: 'detached' });
    """)
    assert d.get("/api/v1/settings", token=secret).status == 200

    # revoking the session's own token: the confirmation says so, and the session ends
    said = page.run("""
        await page.getByRole('button', { name: 'Revoke boss' }).click();
        const dlg = page.getByRole('dialog', { name: 'Revoke the token boss?' });
        const text = await dlg.innerText();
        await dlg.getByRole('button', { name: 'Revoke and sign out' }).click();
        await page.getByText('Your session has ended').waitFor();
        await page.getByLabel('API token').waitFor();
        return text;
    """)
    assert "revoking it ends this session" in said, said
    assert d.get("/api/v1/settings", token=boss).status == 401
    assert {t["name"] for t in d.get("/api/v1/tokens").body["items"]} == {"admin", "ci", "reader"}


def test_include_revoked(daemon):
    """GET /api/v1/tokens?include_revoked=true (the page's "Show revoked tokens")."""
    d = daemon
    d.add_token("old", "write")
    assert d.http("DELETE", "/api/v1/tokens/old").status == 204
    d.add_token("old", "read")
    active = d.get("/api/v1/tokens").body["items"]
    assert [(t["name"], t["scope"]) for t in active] == \
        [("admin", "admin"), ("old", "read"), ("reader", "read")], active
    assert not any("revoked_at" in t for t in active)
    every = d.get("/api/v1/tokens?include_revoked=true").body["items"]
    assert [(t["name"], t["scope"], "revoked_at" in t) for t in every] == \
        [("admin", "admin", False), ("old", "write", True), ("old", "read", False),
         ("reader", "read", False)], every
    assert every[1]["revoked_at"] >= every[1]["created_at"], every
    assert d.get("/api/v1/tokens?include_revoked=false").body["items"] == active
    r = d.get("/api/v1/tokens?include_revoked=maybe")
    assert r.status == 422 and r.body["code"] == "invalid_value" and \
        r.body["field"] == "include_revoked", r
    r = d.get("/api/v1/tokens?include_revoked=true", token=d.read_token)
    assert r.status == 403, r


def test_other_scopes_and_phone_layout(daemon, browser):
    d = daemon
    writer = d.add_token("writer", "write")
    for token, scope in ((writer, "write"), (d.read_token, "read")):
        page = browser.open(d.url)
        page.sign_in(token, "/console/tokens")
        page.run("await page.getByText('Tokens are managed with an admin token').waitFor()")
        text = page.text()
        assert "Tokens are managed with an admin token" in text and f"scope is {scope}" in text, text
        assert page.run("return await page.locator('main table, main form, main button').count()") == 0
        assert not page.run("return await page.getByRole('link', { name: 'Tokens' }).isVisible()")

    page = browser.open(d.url, *PHONE)
    page.sign_in(d.token, "/console/tokens")
    page.run("""
        await page.locator('table.tokens').waitFor();
        await page.getByLabel('Name', { exact: true }).fill('monitoring-with-a-rather-long-name.example');
        await page.getByLabel('Scope').selectOption('read');
        await page.getByRole('button', { name: 'Add' }).click();
        await page.getByLabel('Secret of monitoring-with-a-rather-long-name.example').waitFor();
    """)
    assert page.no_horizontal_scroll()
    page.screenshot("tokens")
    # without a clipboard (plain http from another host), Copy selects the text instead
    said = page.run("""
        await page.evaluate(() => Object.defineProperty(navigator, 'clipboard', { value: undefined }));
        await page.getByRole('button', { name: 'Copy' }).click();
        await page.getByText('The token is selected').waitFor();
        return await page.evaluate(() => {
            const e = document.activeElement;
            return [e.selectionStart, e.selectionEnd, e.value.length];
        });
    """)
    assert said[0] == 0 and said[1] == said[2] == 47, said
    page.run("""
        await page.getByRole('button', { name: 'Done' }).click();
        await page.getByText('is active. Its secret is no longer shown').waitFor();
    """)
    assert page.run("return await page.locator('.token-secret input').count()") == 0
    assert page.no_horizontal_scroll()
