#!/usr/bin/python3
"""The console in Debian's chromium (issue 13): what it transfers, and how long from navigation to a
usable TLS settings page.

The same sandbox as bench/bulk_policies.py (a private PostgreSQL and Postfix under /tmp/stls-bench-*,
the release daemon by default) with one imported certificate bound, so the page shows a picked
certificate. Chromium runs through the system tests' bridge (tests/harness/browser.py, playwright-core
from tests/browser's lockfile), at desktop width, in a fresh browser context. Measured in the page
with the Resource Timing API (every response of the document: the navigation, the console's files,
the API calls; `transferSize` = bytes over the wire, headers included; `encodedBodySize` = the bodies):

  first load   signed out, cold cache: /console/settings, the sign-in form, "Sign in", until the
               page sets performance.mark('settings-usable') (settings and certificates loaded, the
               picker enabled) and its last request (GET /api/v1/status) has answered
  reload       the same page reloaded (signed in): the console's files revalidated (304)
  usable       performance.now() of the mark, i.e. from navigation start, median of --runs
               navigations with the cache cleared (CDP Network.clearBrowserCache) and of --runs
               reloads with revalidation

  /usr/bin/python3 bench/console.py [--runs 7] [--binary build/smtptlsd] [--keep]
"""
import argparse
import os
import shlex
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bulk_policies import bench_sandbox, daemon_binary  # noqa: E402
from tests.harness.browser import Browser  # noqa: E402
from tests.harness.certs import CertFactory  # noqa: E402

# One measured page load: navigate (or reload), sign in when a token is given, wait for the mark and
# for its last request, and return the mark's time and every response's sizes.
MEASURE = """
if (!page.cdp) page.cdp = await context.newCDPSession(page);
const statuses = [];  // as the network answered (Resource Timing shows a revalidated file as 200)
const seen = (r) => statuses.push(r.status());
page.on('response', seen);
if (args.cold) await page.cdp.send('Network.clearBrowserCache');
if (args.reload) await page.reload(); else await page.goto('/console/settings');
if (args.token) {
  await page.getByLabel('API token').fill(args.token);
  await page.getByRole('button', { name: 'Sign in' }).click();
}
await page.waitForFunction(() => performance.getEntriesByName('settings-usable').length > 0,
                           null, { timeout: 60000 });
// the page's last request (what Postfix serves, not waited for by the page) has answered
await page.waitForFunction(() => performance.getEntriesByType('resource')
  .some((e) => new URL(e.name).pathname === '/api/v1/status' && e.responseEnd > 0), null, { timeout: 60000 });
page.off('response', seen);
const notModified = statuses.filter((s) => s === 304).length;
return await page.evaluate((notModified) => {
  const entries = [performance.getEntriesByType('navigation')[0],
                   ...performance.getEntriesByType('resource')];
  return {
    usable: performance.getEntriesByName('settings-usable')[0].startTime, notModified,
    responses: entries.map((e) => ({ path: new URL(e.name).pathname, transfer: e.transferSize,
                                     encoded: e.encodedBodySize, status: e.responseStatus || 0 })),
  };
}, notModified);
"""


def kib(n):
    return f"{n / 1024:.1f} KiB"


def sizes(load):
    """'N responses (M x 304), X transferred (console files ..., API ...), bodies ...'."""
    responses, not_modified = load["responses"], load["notModified"]
    api = [r for r in responses if r["path"].startswith("/api/")]
    files = [r for r in responses if not r["path"].startswith("/api/")]
    total = sum(r["transfer"] for r in responses)
    return (f"{len(responses)} responses{f' ({not_modified} x 304)' if not_modified else ''}, "
            f"{kib(total)} transferred (console files {kib(sum(r['transfer'] for r in files))} in "
            f"{len(files)}, API {kib(sum(r['transfer'] for r in api))} in {len(api)}), bodies "
            f"{kib(sum(r['encoded'] for r in responses))}")


def spread(values):
    return (f"{statistics.median(values):.0f} ms (min {min(values):.0f}, max {max(values):.0f}, "
            f"n={len(values)})")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=7, help="navigations per median (default 7)")
    ap.add_argument("--binary", help="the daemon (default build/smtptlsd, else build-asan/smtptlsd)")
    ap.add_argument("--keep", action="store_true", help="keep the sandbox directory")
    ap.add_argument("--verbose", action="store_true", help="print every response of the first load")
    args = ap.parse_args(argv)
    binary = daemon_binary(args.binary)
    if not binary:
        return 2
    print("$ " + shlex.join([sys.executable] + sys.argv))
    with bench_sandbox(binary, keep=args.keep) as (base, _pg, pf, d):
        leaf = CertFactory(os.path.join(base, "tc")).leaf("mx1", (pf.myhostname,))
        r = d.http("PUT", "/api/v1/certificates/mx1",
                   {"certificate": leaf.read("cert"), "private_key": leaf.read("key")}, timeout=60)
        assert r.status == 201, r
        r = d.http("PUT", "/api/v1/settings", {"mode": "may", "certificate": "mx1"}, timeout=60)
        assert r.status == 200, r
        workdir = os.path.join(base, "browser")
        os.makedirs(workdir)
        browser = Browser(workdir)
        try:
            page = browser.open(d.url)
            first = page.run(MEASURE, timeout=120, cold=True, token=d.token)
            reload = page.run(MEASURE, timeout=120, reload=True)
            cold, warm = [], []
            for _ in range(args.runs):
                cold.append(page.run(MEASURE, timeout=120, cold=True)["usable"])
                warm.append(page.run(MEASURE, timeout=120, reload=True)["usable"])
            errors = browser.close_pages()
        finally:
            browser.close()
    print(f"chromium {browser.version}, daemon {os.path.relpath(binary)}, 1280x860, "
          f"load average {os.getloadavg()[0]:.1f}")
    for what, load in (("first load (signed out, cold cache, sign in, TLS settings usable)", first),
                       ("reload with revalidation", reload)):
        print(f"{what}: {sizes(load)}")
        if args.verbose:
            print("  status(Resource Timing) transfer encoded path")
            for x in load["responses"]:
                print(f"  {x['status'] or '?':>6} {x['transfer']:>8} {x['encoded']:>7} {x['path']}")
    print(f"navigation -> settings usable, cold cache: {spread(cold)}")
    print(f"navigation -> settings usable, reload with revalidation: {spread(warm)}")
    if errors:
        print("script errors in the page:\n  " + "\n  ".join(errors))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
