// bridge.mjs: Debian's chromium, driven by playwright-core, for the console's system tests
// (tests/harness/browser.py starts one per pytest session and speaks to it over stdin/stdout).
//
// One JSON request per line on stdin, one JSON reply per line on stdout, in order:
//   {"op": "open", "base_url", "width", "height"}      -> {"ok": true, "value": <page id>}
//   {"op": "run", "page", "code", "args"}              -> {"ok": true, "value": <what code returned>}
//        code is the body of an async function (page, args, context) using playwright-core's API
//   {"op": "errors", "page"}                           -> {"ok": true, "value": [<message>...]}
//   {"op": "close", "page"}                            -> {"ok": true}
// A failure is {"ok": false, "error": "<message>"}. The page's script errors (uncaught exceptions,
// console.error) are collected per page for the "no script error" check; the browser's own
// "Failed to load resource" lines (an API answering 4xx, on purpose) are not script errors.
import { chromium } from 'playwright-core';
import readline from 'node:readline';

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--disable-gpu', '--disable-dev-shm-usage', '--no-first-run'],
  timeout: 60000,
});
const pages = new Map();
let nextId = 1;
const AsyncFunction = Object.getPrototypeOf(async () => {}).constructor;

async function open({ base_url: baseURL, width = 1280, height = 800 }) {
  const context = await browser.newContext({
    baseURL, viewport: { width, height }, deviceScaleFactor: 1,
    isMobile: width < 600, hasTouch: width < 600, reducedMotion: 'reduce',
  });
  context.setDefaultTimeout(15000);
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(`uncaught: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error' && !m.text().startsWith('Failed to load resource'))
      errors.push(`console.error: ${m.text()}`);
  });
  const id = nextId++;
  pages.set(id, { context, page, errors });
  return id;
}

function entry(id) {
  const p = pages.get(id);
  if (!p) throw new Error(`no page ${id}`);
  return p;
}

const ops = {
  open,
  async run({ page, code, args }) {
    const p = entry(page);
    const v = await new AsyncFunction('page', 'args', 'context', code)(p.page, args || {}, p.context);
    return v === undefined ? null : v;
  },
  async errors({ page }) { return entry(page).errors; },
  async close({ page }) {
    const p = pages.get(page);
    pages.delete(page);
    if (p) await p.context.close();
    return null;
  },
};

const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');
const rl = readline.createInterface({ input: process.stdin });
out({ ok: true, value: browser.version() });
for await (const line of rl) {
  let req;
  try {
    req = JSON.parse(line);
    const op = ops[req.op];
    if (!op) throw new Error(`unknown op ${req.op}`);
    out({ ok: true, value: await op(req) });
  } catch (e) {
    out({ ok: false, error: String(e && e.stack ? e.stack : e) });
  }
}
await browser.close();
