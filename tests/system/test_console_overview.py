"""The console's Overview and Jobs pages (console/page-overview.js, page-jobs.js) in Debian's
chromium against the real daemon, PostgreSQL and a Postfix sandbox (test_settings.py's make_site),
and what they need of the API: a strong ETag on GET /api/v1/status and GET /api/v1/jobs (a hash of
the reply's bytes) that answers If-None-Match with 304 until the reply changes, and the bound
certificate's fingerprint next to what the verifier saw served."""
import hashlib
import os

import pytest

from tests.harness.browser import PHONE
from tests.harness.util import wait_until
from tests.system.test_settings import fail_reload_wrapper
from tests.system.test_settings import make_site  # noqa: F401 (a fixture)

HOST = "mx.test.example"  # the sandbox's myhostname


def upload(site, name):
    """A certificate for the sandbox's host name, uploaded through the API (key + certificate
    as one PEM bundle); returns its SHA-256 fingerprint."""
    # half a day off the boundary: days_left must not tick between two polls of a test
    leaf = site.certs.leaf(f"ov-{name}", (HOST,), kind="ec", end_days=365.5)
    r = site.d.http("PUT", f"/api/v1/certificates/{name}", leaf.read("key") + leaf.read(),
                    content_type="application/x-pem-file", timeout=60)
    assert r.status == 201, r
    return leaf.fingerprint()


def hand_edit(site, old, new):
    """Edits the live main.cf as an administrator would (drift)."""
    text = site.main_cf().decode()
    assert old in text, text
    with open(site.pf.main_cf, "w") as f:
        f.write(text.replace(old, new))


def open_bookmark(page, path):
    """Opens path as a bookmark would: a fresh load of the document, even when only the
    fragment differs from the page shown."""
    page.run("""
        await page.goto(args.path);
        await page.reload();
        await page.waitForFunction(() => document.documentElement.dataset.ready === 'yes');
    """, path=path)


def tag_of(r):
    etag = r.headers.get("ETag", "")
    assert etag.startswith('"') and not etag.startswith("W/"), (etag, r)
    return etag


def test_status_and_jobs_list_answer_304_until_they_change(make_site):  # noqa: F811
    site = make_site()
    d = site.d
    upload(site, "mx")
    site.put_ok({"mode": "may", "certificate": "mx"})
    site.wait_verified()
    for path in ("/api/v1/status", "/api/v1/jobs?limit=5", "/api/v1/jobs?status=applied"):
        r = d.get(path)
        assert r.status == 200, r
        tag = tag_of(r)
        # the tag is the SHA-256 of the reply's bytes
        assert tag.strip('"') == hashlib.sha256(r.raw).hexdigest()[:32], (path, tag)
        for none_match in (tag, f'"other", {tag}', f"W/{tag}", "*"):
            again = d.get(path, token=d.read_token, headers={"If-None-Match": none_match})
            assert again.status == 304 and again.raw == b"" and again.headers["ETag"] == tag, \
                (path, none_match, again)
        assert d.get(path, headers={"If-None-Match": '"other"'}).status == 200, path
    status_tag = tag_of(d.get("/api/v1/status"))
    jobs_tag = tag_of(d.get("/api/v1/jobs?limit=5"))
    # a change makes them 200 again, with a new tag: drift for the status ...
    hand_edit(site, "smtpd_tls_loglevel = 1\n", "smtpd_tls_loglevel = 3\n")
    r = d.get("/api/v1/status", headers={"If-None-Match": status_tag})
    assert r.status == 200 and tag_of(r) != status_tag, r
    assert r.body["drift"] == [{"name": "smtpd_tls_loglevel", "live": "3", "desired": "1"}], r.body
    # a hand edit since the last apply: the state says so (api.md: degraded while drift exists)
    assert r.body["state"] == "degraded", r.body
    assert d.get("/api/v1/jobs?limit=5", headers={"If-None-Match": jobs_tag}).status == 304
    # ... a new job for both
    status_tag = tag_of(r)
    site.patch_ok({"loglevel": 2})
    r = d.get("/api/v1/jobs?limit=5", headers={"If-None-Match": jobs_tag})
    assert r.status == 200 and tag_of(r) != jobs_tag and r.body["items"][0]["action"] == \
        "settings.patch", r
    r = d.get("/api/v1/status", headers={"If-None-Match": status_tag})
    assert r.status == 200 and r.body["drift"] == [], r
    # the bound certificate's fingerprint, and what the verifier saw served
    site.wait_verified()
    assert d.get("/api/v1/status").body["state"] == "in_sync"
    st = site.status()
    fp = site.d.get("/api/v1/certificates/mx").body["sha256_fingerprint"]
    assert st["certificate"]["sha256_fingerprint"] == fp, st
    assert st["certificate"]["served_fingerprint_matches"] is True, st
    assert st["verification"]["served_fingerprints"] == [fp], st


def test_overview_shows_the_served_certificate_and_drift_as_it_happens(make_site, browser):  # noqa: F811
    site = make_site()
    d = site.d
    fp = upload(site, "mx")
    job = site.put_ok({"mode": "may", "certificate": "mx"}).headers["Job-Id"]
    site.wait_served(fp)
    site.wait_verified()

    # a read-only session sees the whole page
    page = browser.open(d.url)
    page.run("""
        // every answer of /api/v1/status, in order: 200 or 304
        page.statusReplies = [];
        page.on('response', (r) => {
            if (new URL(r.url()).pathname === '/api/v1/status') page.statusReplies.push(r.status());
        });
    """)
    page.sign_in(d.read_token, "/console/overview")
    page.run("""
        const main = page.locator('main');
        await main.locator('.badge.in_sync').waitFor();
        const cert = page.getByRole('region', { name: 'Certificate' });
        await cert.getByText('mx', { exact: true }).waitFor();
        await cert.locator('.badge.ok', { hasText: 'served' }).waitFor();
        await cert.locator('.served').getByText(args.fp, { exact: true }).waitFor();
        await main.getByText('Postfix runs exactly the desired configuration').waitFor();
        await page.getByRole('region', { name: 'Drift' }).getByText('None').waitFor();
        // the last jobs, linking to the Jobs page
        await page.getByRole('region', { name: 'Last jobs' })
                  .getByRole('link', { name: '#' + args.job }).waitFor();
        // a marker that a reload would lose
        await page.evaluate(() => { window.notReloaded = true; });
    """, fp=fp, job=job)
    text = page.text()
    gen = site.generation()
    for words in (f"{gen} applied of {gen} desired", "running", "Queued jobs", "Node", "days"):
        assert words in text, (words, text)
    page.screenshot("overview")

    # polling: conditional requests answered 304 while nothing changes, no redraw
    page.run("""
        const is304 = (r) => new URL(r.url()).pathname === '/api/v1/status' && r.status() === 304;
        await page.waitForResponse(is304, { timeout: 20000 });
        await page.waitForResponse(is304, { timeout: 20000 });
    """)
    replies = page.run("return page.statusReplies")
    assert replies[0] == 200 and replies.count(304) >= 2 and replies[1:].count(200) == 0, replies

    # a hidden tab does not poll ...
    page.run("""
        await page.evaluate(() => {
            Object.defineProperty(document, 'hidden', { configurable: true, get: () => true });
            document.dispatchEvent(new Event('visibilitychange'));
        });
        await page.waitForTimeout(500);  // a request already in flight comes back
    """)
    n = len(page.run("return page.statusReplies"))
    hand_edit(site, "smtpd_tls_loglevel = 1\n", "smtpd_tls_loglevel = 3\n")
    page.run("await page.waitForTimeout(3500)")  # longer than one polling period
    assert len(page.run("return page.statusReplies")) == n, "a hidden page polled"
    # ... and once shown again, the hand edit of main.cf shows as drift, by the page's own
    # refresh (no reload)
    page.run("""
        await page.evaluate(() => {
            delete document.hidden;  // the Document's own getter again
            document.dispatchEvent(new Event('visibilitychange'));
        });
        const drift = page.getByRole('region', { name: 'Drift' });
        const row = drift.getByRole('row').filter({ hasText: 'smtpd_tls_loglevel' });
        await row.waitFor({ timeout: 20000 });
        const cells = await row.getByRole('cell').allInnerTexts();
        if (cells.join('|') !== 'smtpd_tls_loglevel|3|1') throw new Error('drift row: ' + cells);
        await page.getByRole('region', { name: 'State' }).getByText('degraded').waitFor();
        await page.getByRole('region', { name: 'Warnings' }).getByText('edited by hand').waitFor();
        if (!await page.evaluate(() => window.notReloaded)) throw new Error('the page was reloaded');
    """)
    assert 200 in page.run("return page.statusReplies.slice(1)")

    # the last job's link opens it on the Jobs page
    page.run("""
        await page.getByRole('region', { name: 'Last jobs' })
                  .getByRole('link', { name: '#' + args.job }).click();
        await page.waitForURL('**/console/jobs#id=' + args.job);
        const job = page.locator(`details.job[data-id="${args.job}"]`);
        if (!await job.evaluate((d) => d.open)) throw new Error('the job is not open');
        await job.getByText('settings.put').first().waitFor();
    """, job=job)
    # polling stopped with the page: no request of /api/v1/status after it was left
    n = len(page.run("return page.statusReplies"))
    page.run("await page.waitForTimeout(3500)")  # longer than one polling period
    assert len(page.run("return page.statusReplies")) == n

    phone = browser.open(d.url, *PHONE)
    phone.sign_in(d.token, "/console/overview")
    phone.run("await page.getByRole('region', { name: 'Drift' })"
              ".getByRole('row').filter({ hasText: 'smtpd_tls_loglevel' }).waitFor()")
    assert phone.no_horizontal_scroll()
    phone.screenshot("overview")


@pytest.mark.expect_errors(r"(?i)reload.*fail")
def test_jobs_page_filters_expands_and_deep_links(make_site, browser, tmp_path):  # noqa: F811
    wrapper, flag = fail_reload_wrapper(str(tmp_path))
    site = make_site(config={"postfix_command": wrapper})
    d = site.d
    upload(site, "mx")
    upload(site, "mx2")
    site.put_ok({"mode": "may", "certificate": "mx"})
    site.patch_ok({"loglevel": 2})
    r = d.http("PUT", "/api/v1/tls-policies",
               {"items": [{"destination": "a.example", "level": "encrypt"},
                          {"destination": "b.example", "level": "may"}]}, timeout=60)
    assert r.status == 200, r
    open(flag, "w").close()
    r = site.patch({"certificate": "mx2"})
    assert r.status == 422 and r.body["code"] == "postfix_rejected", r
    failed = int(r.headers["Job-Id"])
    os.unlink(flag)
    jobs = site.jobs()
    assert [j["status"] for j in jobs].count("failed") == 1, jobs
    patch = next(j for j in jobs if j["action"] == "settings.patch" and j["status"] == "applied")
    # the post-reload check runs in the background (after a short settle): the page is to show
    # its outcome, so it is in before the page is opened
    wait_until(lambda: d.get(f"/api/v1/jobs/{patch['id']}").body["verified"] is True, 20,
               "the loglevel patch verified")

    # read-only: the audit trail, every job listed
    page = browser.open(d.url)
    page.sign_in(d.read_token, "/console/jobs")
    listed = page.run("""
        await page.locator('details.job').first().waitFor();
        return await page.locator('details.job').evaluateAll((ds) => ds.map((d) => +d.dataset.id));
    """)
    assert listed == sorted((j["id"] for j in jobs), reverse=True), listed

    # expanding the settings patch shows its before/after, the changed field highlighted
    diff = page.run("""
        const job = page.locator(`details.job[data-id="${args.id}"]`);
        await job.locator('> summary').click();
        const changed = job.locator('tr.changed');
        await changed.first().waitFor();
        const rows = await changed.evaluateAll((rs) => rs.map((r) =>
            [...r.querySelectorAll('td')].map((td) => td.innerText.trim())));
        const text = await job.innerText();
        await job.getByText(/unchanged fields/).click();
        const same = await job.locator('details.unchanged tr:not(.changed) td:first-child')
                              .allInnerTexts();
        return { rows, text, same };
    """, id=patch["id"])
    changed = {r[0].split()[0]: r[1:] for r in diff["rows"]}
    assert changed["loglevel"] == ["1", "2"], diff
    assert not {"mode", "certificate", "profile"} & set(changed), diff
    assert {"mode", "certificate", "profile"} <= set(diff["same"]), diff
    page.screenshot("jobs")
    for words in ("postfix reload ran", "Postfix serves the bound certificate", "by admin"):
        assert words in diff["text"] or words in page.text(), (words, diff["text"])

    # filter status=failed: the URL says so, only the failed job, its error and output in words
    page.run("""
        await page.getByLabel('Status').selectOption('failed');
        await page.getByRole('button', { name: 'Filter' }).click();
        await page.waitForURL('**/console/jobs#status=failed');
        await page.getByText('1 job shown').waitFor();
    """)
    failed_view = page.run("""
        const ids = await page.locator('details.job').evaluateAll((ds) => ds.map((d) => +d.dataset.id));
        const job = page.locator('details.job').first();
        await job.locator('> summary').click();
        return { ids, error: await job.locator('.job-error').innerText(),
                 output: await job.locator('pre.output').innerText() };
    """)
    assert failed_view["ids"] == [failed], failed_view
    assert "simulated reload failure" in failed_view["output"], failed_view
    assert "Failed:" in failed_view["error"] and "postfix_rejected" not in failed_view["error"], \
        failed_view

    # the filtered view is a bookmark: opened afresh, it filters the same
    open_bookmark(page, "/console/jobs#status=failed&action=settings.patch")
    page.run("""
        await page.getByText('1 job shown').waitFor();
        if (await page.getByLabel('Action').inputValue() !== 'settings.patch')
            throw new Error('the action filter is not shown');
    """)
    # a refusal of the API is said next to its control
    open_bookmark(page, "/console/jobs#actor=NOT%20A%20NAME")
    page.run("await page.locator('.field-error').filter({ hasText: 'actor' }).waitFor()")

    # the bulk write's counts; the deep link opens one job
    bulk = next(j for j in jobs if j["action"] == "policies.bulk")
    open_bookmark(page, f"/console/jobs#id={bulk['id']}")
    counts = page.run("""
        const job = page.locator('details.job[open]');
        await job.locator('dl.counts').waitFor();
        return await job.locator('dl.counts').innerText();
    """)
    assert "added" in counts and "2" in counts, counts

    phone = browser.open(d.url, *PHONE)
    phone.sign_in(d.token, f"/console/jobs#id={failed}")
    phone.run("await page.locator('details.job[open] pre.output').waitFor()")
    assert phone.no_horizontal_scroll()
    phone.goto("/console/jobs")
    phone.run("""
        await page.locator('details.job').first().waitFor();
        await page.locator(`details.job[data-id="${args.id}"] > summary`).click();
        await page.locator(`details.job[data-id="${args.id}"] tr.changed`).first().waitFor();
    """, id=patch["id"])
    assert phone.no_horizontal_scroll()
    phone.screenshot("jobs")

    # the overview names the failed apply and links to its job
    state = site.status()["state"]
    phone.goto("/console/overview")
    phone.run("""
        const region = page.getByRole('region', { name: 'State' });
        await region.locator('.badge.' + args.state).waitFor();
        await region.getByText('simulated reload failure').waitFor();
        await region.getByRole('link', { name: 'job #' + args.failed }).waitFor();
    """, state=state, failed=failed)
