# Browser: Debian's chromium driven by playwright-core (tests/browser/bridge.mjs) for the console's
# system tests. One browser per pytest session; each test opens pages (a fresh browser context each:
# its own cookies) at desktop or phone width, runs playwright code in them, and at the end the
# fixture checks that no page had a script error.
#
#   page = browser.open(daemon.url, width=390)
#   page.run("await page.getByLabel('API token').fill(args.token)", token=daemon.token)
#   page.screenshot("settings")      # docs/images/console/ when SMTPTLSD_SCREENSHOTS=1
import json
import os
import select
import subprocess

from .util import REPO_ROOT, HarnessError

BROWSER_DIR = os.path.join(REPO_ROOT, "tests", "browser")
SCREENSHOT_DIR = os.path.join(REPO_ROOT, "docs", "images", "console")
DESKTOP = (1280, 860)
PHONE = (390, 844)


def install():
    """npm ci of tests/browser (the committed lockfile) when node_modules is missing or older."""
    stamp = os.path.join(BROWSER_DIR, "node_modules", ".package-lock.json")
    lock = os.path.join(BROWSER_DIR, "package-lock.json")
    if os.path.exists(stamp) and os.path.getmtime(stamp) >= os.path.getmtime(lock):
        return
    proc = subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                          cwd=BROWSER_DIR, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise HarnessError(f"npm ci in tests/browser failed: {proc.stderr[-2000:]}")


class BrowserError(AssertionError):
    """What the playwright code in a page threw (a locator that timed out, a failed check)."""


class Browser:
    def __init__(self, workdir):
        install()
        self.workdir = workdir
        self.log = open(os.path.join(workdir, "browser.log"), "w")
        self.proc = subprocess.Popen(["node", os.path.join(BROWSER_DIR, "bridge.mjs")],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.log, text=True, bufsize=1)
        self.version = self._reply(90, "start chromium")
        self.pages = []

    def _reply(self, timeout, what):
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else ""
        if not line:
            self.proc.kill()
            self.log.flush()
            with open(self.log.name) as f:
                log = f.read()[-3000:]
            raise HarnessError(f"browser bridge: no answer to {what} within {timeout} s "
                               f"(exit status {self.proc.poll()}):\n{log}")
        reply = json.loads(line)
        if not reply["ok"]:
            raise BrowserError(f"{what}: {reply['error']}")
        return reply["value"]

    def call(self, timeout=60, **req):
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        return self._reply(timeout, req.get("op"))

    def open(self, base_url, width=DESKTOP[0], height=DESKTOP[1]):
        page = Page(self, self.call(op="open", base_url=base_url, width=width, height=height),
                    width)
        self.pages.append(page)
        return page

    def close_pages(self):
        """Closes this test's pages; returns their script errors."""
        errors = []
        for p in self.pages:
            errors += [f"page {p.id}: {e}" for e in self.call(op="errors", page=p.id)]
            # leave the console first: its timers stop and its requests in flight are cut, so
            # the daemon's connections end now (its fd check follows)
            try:
                p.run("await page.goto('about:blank')")
            except BrowserError:
                pass
            self.call(op="close", page=p.id)
        self.pages = []
        return errors

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()


class Page:
    def __init__(self, browser, page_id, width):
        self.browser, self.id, self.width = browser, page_id, width

    def run(self, code, timeout=60, **args):
        """Runs code (the body of an async function of page, args, context) and returns its
        value (anything JSON)."""
        return self.browser.call(op="run", page=self.id, code=code, args=args, timeout=timeout)

    def goto(self, path):
        self.run("await page.goto(args.path); await page.waitForFunction("
                 "() => document.documentElement.dataset.ready === 'yes')", path=path)

    def sign_in(self, token, path="/"):
        """Opens path, signs in with token through the form, waits for the signed-in shell."""
        self.goto(path)
        self.run("""
            await page.getByLabel('API token').fill(args.token);
            await page.getByRole('button', { name: 'Sign in' }).click();
            await page.getByRole('navigation', { name: 'Sections' }).waitFor();
        """, token=token)

    def text(self, selector="main"):
        return self.run("return await page.locator(args.s).innerText()", s=selector)

    def errors(self):
        return self.browser.call(op="errors", page=self.id)

    def screenshot(self, name):
        """A PNG of the page: into docs/images/console/<name>-<desktop|phone>.png when
        SMTPTLSD_SCREENSHOTS=1 (scripts/screenshots), else into the session's directory (taken
        all the same: a page that cannot be drawn fails here too)."""
        kind = "phone" if self.width < 600 else "desktop"
        directory = SCREENSHOT_DIR if os.environ.get("SMTPTLSD_SCREENSHOTS") == "1" else \
            self.browser.workdir
        os.makedirs(directory, exist_ok=True)
        path = os.path.join(directory, f"{name}-{kind}.png")
        self.run("await page.screenshot({ path: args.path, fullPage: true, animations: 'disabled' })",
                 path=path)
        return path

    def no_horizontal_scroll(self):
        """Whether the page is not wider than its viewport (no horizontal scrolling)."""
        return self.run("return await page.evaluate(() => "
                        "document.documentElement.scrollWidth <= window.innerWidth)")

