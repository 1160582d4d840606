// page-policies.js: the TLS policy domains page (/api/v1/tls-policies). One page of rows at a
// time (search q debounced, level and managed filters, next/previous by the cursor: never the
// whole set), add and edit dialogs whose attribute fields follow the encryption mode (Postfix's
// rules as src/core/policy.c enforces them), delete, managed rows linked to the page of their
// manager (manager_urls of the session), bulk import (Postfix map text or JSON) through a dry
// run and its diff, export of the unmanaged set (JSON bulk body, map text) as a download; the
// destination probe (POST /api/v1/probe): "Test destination" in the form and on each row, its
// report in words, each row's last probe as a badge (GET /api/v1/probes?latest=true), and the
// guarded save (?probe=true, then "Save anyway" with force=true).
import { call, followJob } from '/console/api.js';
import {
  el, field, showProblem, clearProblem, notice, dialog, badge, when, disableForReadOnly,
  READ_ONLY_REASON, pageStyle,
} from '/console/ui.js';

const PAGE_SIZE = 50;
const SEARCH_DELAY = 250; // ms after the last key before the list is asked again
const API = '/api/v1/tls-policies';
const PROBES = '/api/v1/probes';
const LATEST_LIMIT = 1000; // the last probe of this many destinations, once per page load

// The levels, in words; `mandatory`: the seed's warning callout before saving one.
const LEVELS = [
  { value: 'none', words: 'No TLS (none)',
    explain: 'Never use TLS: mail goes in cleartext even when the server offers STARTTLS.' },
  { value: 'may', words: 'Opportunistic (may)',
    explain: 'TLS when the MX offers STARTTLS, cleartext otherwise; the certificate is not checked.' },
  { value: 'encrypt', words: 'Mandatory (encrypt)', mandatory: true,
    explain: 'TLS or no delivery; the certificate is not checked (encrypted, not authenticated).' },
  { value: 'dane', words: 'DANE (dane)',
    explain: 'Authenticated by the DNSSEC-signed TLSA records when the domain publishes them; opportunistic TLS otherwise.' },
  { value: 'dane-only', words: 'DANE only (dane-only)', mandatory: true,
    explain: 'Delivery only to an MX with valid DNSSEC-signed TLSA records that match its certificate.' },
  { value: 'fingerprint', words: 'Fingerprint (fingerprint)', mandatory: true,
    explain: 'TLS with a server certificate whose fingerprint is one of those listed (Match).' },
  { value: 'verify', words: 'Verified (verify)', mandatory: true,
    explain: 'TLS with a certificate a trusted CA signed, for the MX host name found in DNS.' },
  { value: 'secure', words: 'Secure channel (secure)', mandatory: true,
    explain: 'TLS with a CA-signed certificate whose name matches the next-hop domain (Match), not trusting DNS.' },
];
const LEVEL = Object.fromEntries(LEVELS.map((l) => [l.value, l]));

// Which level takes which attribute (src/core/policy.c level_rules, after Postfix's
// smtp_tls_policy.c): none takes none; match only at fingerprint (required), verify, secure;
// tafile only at verify and secure.
const TLS_ATTRS = ['protocols', 'ciphers', 'exclude', 'servername', 'connection_reuse'];
const ATTRS = {
  none: [], may: TLS_ATTRS, encrypt: TLS_ATTRS, dane: TLS_ATTRS, 'dane-only': TLS_ATTRS,
  fingerprint: ['match', ...TLS_ATTRS],
  verify: ['match', 'tafile', ...TLS_ATTRS],
  secure: ['match', 'tafile', ...TLS_ATTRS],
};
const ALL_ATTRS = ['match', 'protocols', 'ciphers', 'exclude', 'servername', 'tafile', 'connection_reuse'];
const LIST_ATTRS = new Set(['match', 'exclude']);
const WRITABLE = ['destination', 'level', ...ALL_ATTRS, 'note', 'enabled'];
const CIPHER_GRADES = ['high', 'medium', 'low', 'export', 'null'];

const wordsOf = (level) => (LEVEL[level] ? LEVEL[level].words : level);
const rowPath = (dest) => `${API}/${encodeURIComponent(dest)}`;
const warningList = (warnings) => (warnings && warnings.length
  ? el('ul', { class: 'warnings' }, ...warnings.map((w) => el('li', {}, w.detail || w.code)))
  : null);

export async function render(main, ctx) {
  pageStyle('policies');
  const session = ctx.session;
  const readOnly = session.scope === 'read';
  const managerUrls = session.manager_urls || {};
  const state = { q: '', level: '', managed: '', cursors: [null], index: 0, next: null };
  let alive = true, searchTimer = null, inflight = null, loadSeq = 0, latestSeq = 0, latestCut = false;
  const latest = new Map(); // destination -> its last finished probe (ProbeAuditEntry, no report)

  const status = el('div', { class: 'status-area' });
  const search = el('input', { type: 'search', placeholder: 'example.com or a note', autocomplete: 'off', 'data-read-ok': '' });
  const levelFilter = el('select', { 'data-read-ok': '' }, el('option', { value: '' }, 'Every mode'),
    ...LEVELS.map((l) => el('option', { value: l.value }, l.words)));
  const managedFilter = el('select', { 'data-read-ok': '' }, el('option', { value: '' }, 'All rows'),
    el('option', { value: 'false' }, 'Not managed'), el('option', { value: 'true' }, 'Managed elsewhere'));
  const addButton = el('button', { type: 'button', 'data-write': '' }, 'Add');
  const importButton = el('button', { type: 'button', class: 'secondary', 'data-write': '' }, 'Import…');
  const exportJson = el('button', { type: 'button', class: 'secondary', 'data-read-ok': '' }, 'Export JSON');
  const exportMap = el('button', { type: 'button', class: 'secondary', 'data-read-ok': '' }, 'Export map file');
  const deleteSelected = el('button', { type: 'button', class: 'danger', 'data-write': '', disabled: true }, 'Delete selected');
  const prev = el('button', { type: 'button', class: 'secondary', 'data-read-ok': '' }, '← Previous');
  const next = el('button', { type: 'button', class: 'secondary', 'data-read-ok': '' }, 'Next →');
  const pageInfo = el('span', { class: 'muted', 'aria-live': 'polite' });
  const tbody = el('tbody');
  const table = el('table', { class: 'cards policies' },
    el('caption', { class: 'visually-hidden' }, 'TLS policy domains'),
    el('thead', {}, el('tr', {}, el('th', { scope: 'col' }, el('span', { class: 'visually-hidden' }, 'Select')),
      ...['Domain', 'Encryption mode', 'Note', 'Enabled', 'Last test', 'Updated', 'Actions'].map((h) => el('th', { scope: 'col' }, h)))),
    tbody);

  main.append(...[
    el('p', { class: 'muted intro' }, 'Per-destination overrides of the outbound TLS mode, in Postfix\'s ',
      el('code', {}, 'smtp_tls_policy_maps'), '. A change reaches Postfix without a reload.'),
    readOnly ? el('p', { class: 'notice warn read-only' }, READ_ONLY_REASON) : null,
    status,
    el('div', { class: 'toolbar filters', role: 'search' },
      field('Search', search), field('Encryption mode filter', levelFilter), field('Rows', managedFilter)),
    el('div', { class: 'toolbar' }, addButton, importButton, exportJson, exportMap, deleteSelected),
    el('div', { class: 'table-wrap' }, table),
    el('div', { class: 'toolbar pager' }, prev, pageInfo, next)].filter(Boolean));
  disableForReadOnly(main, session);
  for (const b of [addButton, importButton, deleteSelected]) if (readOnly) b.title = READ_ONLY_REASON;

  // ---- the list ----
  async function load() {
    const my = ++loadSeq;
    if (inflight) inflight.abort();
    inflight = new AbortController();
    main.setAttribute('aria-busy', 'true');
    const r = await call('GET', API, {
      signal: inflight.signal,
      query: { limit: PAGE_SIZE, q: state.q, level: state.level, managed: state.managed, after: state.cursors[state.index] },
    });
    if (!alive || my !== loadSeq || r.aborted) return;
    main.removeAttribute('aria-busy');
    if (r.status !== 200) {
      if (r.status !== 401) notice(status, r.problem.detail || `The list failed (${r.status}).`, 'bad');
      return;
    }
    state.next = r.data.next;
    drawRows(r.data.items);
    prev.disabled = state.index === 0;
    next.disabled = !state.next;
    const first = state.index * PAGE_SIZE + 1;
    pageInfo.textContent = r.data.items.length
      ? `Rows ${first}–${first + r.data.items.length - 1}` : '';
    main.dataset.loaded = String(my); // tests wait on this
  }

  function drawRows(items) {
    if (!items.length) {
      tbody.replaceChildren(el('tr', { class: 'empty' }, el('td', { colspan: '8' },
        state.q || state.level || state.managed ? 'No policy matches.' : 'No TLS policy yet: every destination follows the outbound mode.')));
    } else tbody.replaceChildren(...items.map(rowOf));
    disableForReadOnly(tbody, session);
    selectionChanged();
  }

  function rowOf(p) {
    // one child per cell: on phones the cell is a grid of its label and this
    const cell = (label, ...c) => el('td', { 'data-label': label }, c.length ? el('div', { class: 'cell' }, ...c) : null);
    const managed = !!p.managed_by;
    const select = managed ? cell('Select')
      : cell('Select', el('input', { type: 'checkbox', class: 'pick', 'aria-label': `Select ${p.destination}`, value: p.destination }));
    const actions = managed
      ? cell('Actions', badge(`Managed by ${p.managed_by}`, 'managed'))
      : cell('Actions', el('span', { class: 'row-actions' },
        el('button', { type: 'button', class: 'secondary small', 'data-write': '', 'aria-label': `Edit ${p.destination}`,
          title: readOnly ? READ_ONLY_REASON : null, onclick: () => openEditor(p.destination) }, 'Edit'),
        el('button', { type: 'button', class: 'danger small', 'data-write': '', 'aria-label': `Delete ${p.destination}`,
          title: readOnly ? READ_ONLY_REASON : null, onclick: () => confirmDelete([p.destination]) }, 'Delete'),
        el('button', { type: 'button', class: 'secondary small test', 'data-write': '', 'aria-label': `Test destination ${p.destination}`,
          title: readOnly ? READ_ONLY_REASON : 'Connect to its mail servers now and see which TLS levels would deliver',
          onclick: () => probeDialog(probeRequest(p.destination, p.level, p.match), refreshLatest) }, 'Test')));
    const tr = el('tr', { class: managed ? 'managed' : null, dataset: { destination: p.destination, level: p.level } },
      select,
      cell('Domain', el('span', { class: 'mono dest' }, p.destination)),
      cell('Encryption mode', wordsOf(p.level), attrSummary(p)),
      cell('Note', managed ? managedNote(p) : (p.note || '')),
      cell('Enabled', p.enabled ? 'yes' : badge('disabled', 'muted')),
      el('td', { 'data-label': 'Last test', class: 'last-test' }),
      cell('Updated', when(p.updated_at)),
      actions);
    drawLastTest(tr);
    return tr;
  }

  // ---- each row's last probe ----
  // The latest list, once per page load and after each test or write: a badge in every row.
  async function refreshLatest() {
    const my = ++latestSeq;
    const r = await call('GET', PROBES, { query: { latest: 'true', limit: LATEST_LIMIT } });
    if (!alive || my !== latestSeq || r.status !== 200) return;
    latest.clear();
    for (const e of r.data.items) latest.set(e.destination, e);
    latestCut = r.data.items.length >= LATEST_LIMIT; // more tested destinations than one answer holds
    for (const tr of tbody.querySelectorAll('tr[data-destination]')) drawLastTest(tr);
    main.dataset.latestLoaded = String(my); // tests wait on this
  }

  function drawLastTest(tr) {
    const dest = tr.dataset.destination;
    const e = latest.get(dest);
    const td = tr.querySelector('td.last-test');
    const failing = !!e && isFailing(e, tr.dataset.level);
    tr.classList.toggle('probe-failing', failing);
    if (!e && latestCut) {
      td.replaceChildren(el('div', { class: 'cell' }, el('button', { type: 'button', class: 'secondary small', 'data-read-ok': '',
        'aria-label': `Look up the last test of ${dest}`, onclick: () => lastProbeDialog(dest, null) }, 'Look up')));
      return;
    }
    if (!e) { td.replaceChildren(el('div', { class: 'cell' }, el('span', { class: 'muted' }, 'not tested'))); return; }
    td.replaceChildren(el('div', { class: 'cell' }, lastTestBadge(e, failing, () => lastProbeDialog(dest, e))));
  }


  // The note of a managed row links to the page of its manager (console_manager_urls).
  function managedNote(p) {
    const url = managerUrl(managerUrls[p.managed_by], p.destination);
    const text = p.note || `Managed by ${p.managed_by}`;
    if (!url) return el('span', {}, text, el('span', { class: 'muted' }, ` (edit it in ${p.managed_by})`));
    return el('a', { href: url, class: 'manager-link', rel: 'noopener noreferrer' },
      text, el('span', { class: 'where' }, ` — edit in ${p.managed_by} at ${url.host}`));
  }

  // ---- search, filters, paging ----
  function restart() { state.cursors = [null]; state.index = 0; load(); }
  search.addEventListener('input', () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => { state.q = search.value.trim(); restart(); }, SEARCH_DELAY);
  });
  levelFilter.addEventListener('change', () => { state.level = levelFilter.value; restart(); });
  managedFilter.addEventListener('change', () => { state.managed = managedFilter.value; restart(); });
  next.addEventListener('click', () => {
    if (!state.next) return;
    state.cursors[state.index + 1] = state.next;
    state.index++;
    load();
  });
  prev.addEventListener('click', () => { if (state.index > 0) { state.index--; load(); } });

  function picked() { return [...tbody.querySelectorAll('input.pick:checked')].map((c) => c.value); }
  function selectionChanged() {
    const n = picked().length;
    deleteSelected.disabled = readOnly || n === 0;
    deleteSelected.textContent = n ? `Delete selected (${n})` : 'Delete selected';
  }
  tbody.addEventListener('change', (ev) => { if (ev.target.classList.contains('pick')) selectionChanged(); });

  // ---- writes ----
  // What a write's reply says, in words, at the top of the page.
  async function outcome(r, what) {
    let job = r.jobId ? ` (job ${r.jobId})` : '';
    let warnings = r.data && r.data.warnings;
    if (r.status === 202 && r.jobId) {
      notice(status, `${what}: queued as job ${r.jobId}…`);
      const j = await followJob(r.jobId);
      if (!alive) return;
      if (j.status !== 'applied') {
        notice(status, [el('p', {}, `${what} failed${job}: ${(j.error && j.error.detail) || j.status || 'no answer'}`)], 'bad');
        return;
      }
      warnings = j.warnings;
    }
    notice(status, [el('p', {}, `${what}${job}. Postfix's policy map is updated.`), warningList(warnings)].filter(Boolean),
      warnings && warnings.length ? 'warn' : 'ok');
    load();
    refreshLatest(); // a guarded write probed
  }

  function openEditor(destination) { editor(destination); }
  addButton.addEventListener('click', () => editor(null));

  async function editor(destination) {
    let row = null, etag = null;
    if (destination) {
      const r = await call('GET', rowPath(destination));
      if (r.status !== 200) return notice(status, r.problem.detail || `Cannot read ${destination}.`, 'bad');
      row = r.data;
      etag = r.etag;
    }
    const form = policyForm(row, refreshLatest);
    const d = dialog(row ? `Edit ${row.destination}` : 'Add a TLS policy', form.element, { wide: true });
    // force: "Save anyway" after the guard's refusal (?probe=true&force=true)
    async function submit(force) {
      clearProblem(form.element);
      const local = form.check();
      if (local) return showProblem(form.element, local);
      const save = form.element.querySelector('button[type=submit]');
      save.disabled = true;
      const body = form.body();
      const query = form.guarded() ? { probe: 'true', force: force ? 'true' : undefined } : undefined;
      const stopBusy = query && !force ? form.guardBusy(body.destination || row.destination) : () => {};
      const r = row
        ? await call('PUT', rowPath(row.destination), { body, ifMatch: etag, query })
        : await call('POST', API, { body, query });
      stopBusy();
      save.disabled = false;
      if (r.status === 422 && r.problem.code === 'destination_fails_probe') {
        refreshLatest();
        return form.showGuardRefusal(r.problem, () => submit(true));
      }
      if (r.status === 200 || r.status === 201 || r.status === 202) {
        d.finish(true);
        return outcome(r, `${row ? 'Saved' : 'Added'} ${(r.data && r.data.destination) || body.destination || row.destination}`);
      }
      if (r.status === 412)
        return showProblem(form.element, { detail: `Someone else changed ${row.destination} since you opened it (${r.problem.detail}). Close this dialog and open the row again to see their change.` });
      showProblem(form.element, r.problem);
    }
    form.element.addEventListener('submit', (ev) => { ev.preventDefault(); submit(false); });
    form.element.querySelector('.cancel').addEventListener('click', () => d.finish(null));
    form.focus();
  }

  async function confirmDelete(destinations) {
    const body = el('div', {},
      el('p', {}, destinations.length === 1
        ? `Delete the TLS policy for ${destinations[0]}? Mail to it then follows the outbound mode.`
        : `Delete the TLS policies of these ${destinations.length} destinations? Mail to them then follows the outbound mode.`),
      destinations.length > 1 ? el('ul', { class: 'mono' }, ...destinations.map((x) => el('li', {}, x))) : null,
      el('div', { class: 'actions' },
        el('button', { type: 'button', class: 'danger', onclick: () => d.finish(true) }, 'Delete'),
        el('button', { type: 'button', class: 'secondary', onclick: () => d.finish(null) }, 'Cancel')));
    const d = dialog(destinations.length === 1 ? 'Delete a TLS policy' : 'Delete TLS policies', body);
    if (!(await d.done)) return;
    const done = [], failed = [];
    for (const dest of destinations) {
      // the row as it was shown: its tag, so that a change made meanwhile is not deleted blindly
      const g = await call('GET', rowPath(dest));
      const r = g.status === 200 ? await call('DELETE', rowPath(dest), { ifMatch: g.etag }) : g;
      if (r.status === 204 || r.status === 202) done.push(r.jobId ? `${dest} (job ${r.jobId})` : dest);
      else failed.push(`${dest}: ${r.problem.detail || r.status}`);
    }
    if (!alive) return;
    notice(status, [done.length ? el('p', {}, `Deleted ${done.join(', ')}.`) : null,
      ...failed.map((f) => el('p', {}, `Not deleted: ${f}`))].filter(Boolean), failed.length ? 'bad' : 'ok');
    load();
  }
  deleteSelected.addEventListener('click', () => { const p = picked(); if (p.length) confirmDelete(p); });

  // ---- bulk ----
  importButton.addEventListener('click', () => importDialog(status, () => load()));
  exportJson.addEventListener('click', () => exportSet('json', status));
  exportMap.addEventListener('click', () => exportSet('map', status));

  await Promise.all([load(), refreshLatest()]);
  return () => { alive = false; clearTimeout(searchTimer); if (inflight) inflight.abort(); };
}

// A URL template of console_manager_urls with {destination} filled in; only http and https.
function managerUrl(template, destination) {
  if (!template) return null;
  try {
    const u = new URL(template.replaceAll('{destination}', encodeURIComponent(destination)));
    return u.protocol === 'http:' || u.protocol === 'https:' ? u : null;
  } catch {
    return null;
  }
}

function attrSummary(p) {
  const parts = [];
  if (p.match && p.match.length) parts.push(`match ${p.match.length > 1 ? `${p.match.length} items` : p.match[0]}`);
  if (p.protocols) parts.push(`protocols ${p.protocols}`);
  if (p.ciphers) parts.push(`ciphers ${p.ciphers}`);
  if (p.exclude && p.exclude.length) parts.push(`exclude ${p.exclude.join(':')}`);
  if (p.servername) parts.push(`servername ${p.servername}`);
  if (p.tafile) parts.push('tafile');
  if (p.connection_reuse !== null && p.connection_reuse !== undefined) parts.push(`reuse ${p.connection_reuse ? 'yes' : 'no'}`);
  return parts.length ? el('span', { class: 'attrs muted' }, parts.join(' · ')) : null;
}

// ---- the destination probe ----
// POST /api/v1/probe's body for a destination at a level: match only where the level takes it.
function probeRequest(destination, level, match) {
  const body = { destination, level };
  if (ATTRS[level] && ATTRS[level].includes('match') && match && match.length) body.match = match;
  return body;
}

// A busy state in area ("… 12 s"): the probe is not a job and cannot be cancelled, so the page
// only waits (everything else stays usable). Returns the function that ends it.
function busy(area, text) {
  const started = Date.now();
  const secs = el('span', { class: 'elapsed', 'aria-hidden': 'true' }, '');
  area.setAttribute('aria-busy', 'true');
  area.replaceChildren(el('p', { class: 'probe-busy', role: 'status' },
    el('span', { class: 'spinner', 'aria-hidden': 'true' }), text, ' ', secs,
    el('span', { class: 'hint' }, ' It connects to the mail servers now: up to half a minute.')));
  const timer = setInterval(() => { secs.textContent = `${Math.round((Date.now() - started) / 1000)} s`; }, 1000);
  return () => { clearInterval(timer); area.removeAttribute('aria-busy'); };
}

// Probes req into area: the busy state, then the report (or the refusal in words). Resolves to
// the call's answer.
async function runProbe(req, area) {
  const stop = busy(area, `Testing ${req.destination} at ${req.level}…`);
  const r = await call('POST', '/api/v1/probe', { body: req });
  stop();
  if (r.aborted) return r;
  if (r.status === 200) area.replaceChildren(resultPanel(r.data));
  else {
    const retry = r.status === 503 && r.headers && r.headers.get('Retry-After');
    area.replaceChildren(el('div', { class: 'form-error', role: 'alert' },
      el('p', {}, r.status === 403 ? 'Your token may not test destinations (the write scope is needed).'
        : `The test was refused: ${r.problem.detail || r.status}`),
      retry ? el('p', {}, `Too many tests at once: try again in ${retry} s.`) : null));
  }
  return r;
}

// A dialog that probes req and shows the report; closing it does not wait for the probe.
function probeDialog(req, onProbed) {
  const area = el('div', { class: 'probe-area', 'aria-live': 'polite' });
  const close = el('button', { type: 'button', class: 'secondary' }, 'Close');
  const d = dialog(`Test destination ${req.destination}`, el('div', {}, area, el('div', { class: 'actions' }, close)), { wide: true });
  close.addEventListener('click', () => d.finish(null));
  runProbe(req, area).then(() => { if (onProbed) onProbed(); });
  close.focus();
}

// The last probe of dest with its report (GET /api/v1/probes?destination=D&limit=1).
async function lastProbeDialog(dest, entry) {
  const area = el('div', { class: 'probe-area', 'aria-live': 'polite' });
  const close = el('button', { type: 'button', class: 'secondary' }, 'Close');
  const d = dialog(`Last test of ${dest}`, el('div', {}, area, el('div', { class: 'actions' }, close)), { wide: true });
  close.addEventListener('click', () => d.finish(null));
  close.focus();
  area.replaceChildren(el('p', { class: 'muted' }, 'Loading the report…'));
  const r = await call('GET', PROBES, { query: { destination: dest, limit: 1 } });
  const last = r.status === 200 && r.data.items[0];
  if (!last) {
    area.replaceChildren(el('p', { class: 'error', role: 'alert' }, r.status === 200 ? 'No test of this destination is kept.'
      : `The report cannot be read: ${r.problem.detail || r.status}`));
    return;
  }
  area.replaceChildren(auditLine(last), last.result ? resultPanel(last.result)
    : el('p', { class: 'muted' }, `No report: the test ${last.outcome || 'is still running'}.`));
  if (entry && last.id !== entry.id) area.prepend(el('p', { class: 'hint' }, 'A newer test has run since this page was loaded.'));
}

const OUTCOME = {
  passed: { mark: '✓', words: 'Passed', kind: 'ok' },
  failed: { mark: '✗', words: 'Failed', kind: 'bad' },
  unreachable: { mark: '✗', words: 'Unreachable', kind: 'bad' },
  cancelled: { mark: '–', words: 'Cancelled', kind: 'muted' },
};
const WHY = { request: 'a test from the console or the API', guard: 'a guarded save', watch: 'the watch' };

// A row's last probe fails it: at the row's own level, or no mail would go out at all.
function isFailing(e, level) {
  return e.outcome === 'unreachable' || (e.outcome === 'failed' && (!e.level || e.level === level));
}

// The badge of a row's last probe: a button (the report on click), its outcome in words and a
// mark (not color alone), the level tested, the recommended level and the date.
function lastTestBadge(e, failing, open) {
  const o = OUTCOME[e.outcome] || { mark: '?', words: e.outcome || 'running', kind: 'muted' };
  const lv = e.level ? ` at ${e.level}` : '';
  const label = `Last test of ${e.destination}: ${o.words.toLowerCase()}${lv}`;
  return el('button', { type: 'button', class: `probe-badge ${o.kind}${failing ? ' failing' : ''}`, 'data-read-ok': '',
    'aria-label': `${label}. Show the report`, title: 'Show the report', dataset: { outcome: e.outcome || '' }, onclick: open },
  el('span', { class: 'mark', 'aria-hidden': 'true' }, o.mark), ' ', el('strong', {}, o.words), lv,
  el('span', { class: 'probe-meta' }, [e.recommended ? `recommended ${e.recommended}` : 'nothing passes', when(e.finished_at || e.created_at)].join(' · ')));
}

function auditLine(e) {
  return el('p', { class: 'muted audit' }, `Tested ${when(e.finished_at || e.created_at)} by ${e.actor} (${WHY[e.reason] || e.reason})`,
    e.forced ? ', then saved anyway' : '', '.');
}

const yesNo = (b) => (b === null || b === undefined ? 'unknown' : b ? 'yes' : 'no');
// A definition list of [label, value] pairs; pairs without a value are left out.
function facts(pairs) {
  const dl = el('dl', { class: 'facts' });
  for (const [k, v] of pairs) if (v !== null && v !== undefined && v !== '') dl.append(el('dt', {}, k), el('dd', {}, v));
  return dl;
}
const mark = (pass) => el('span', { class: `pass-mark ${pass ? 'ok' : 'bad'}` }, pass ? '✓ passes' : '✗ fails');

// A probe report (ProbeReport) in words: the verdict on the level asked, the recommended level,
// every level's verdict with its reason, then each host and address.
export function resultPanel(rep) {
  const asked = rep.level;
  const verdict = asked && rep.passes !== null ? el('div', { class: `verdict ${rep.passes ? 'pass' : 'fail'}` },
    el('span', { class: 'verdict-mark', 'aria-hidden': 'true' }, rep.passes ? '✓' : '✗'),
    el('div', {},
      el('p', { class: 'verdict-word' }, rep.passes ? `Yes: ${asked} passes` : `No: ${asked} fails`),
      el('p', { class: 'verdict-why' }, rep.passes
        ? `Mail to ${rep.destination} would go out at ${wordsOf(asked)}.`
        : rep.reasons[asked] || rep.error || 'The test gives no reason.'))) : null;
  const levels = el('table', { class: 'probe-levels' },
    el('caption', {}, 'What each mode would do'),
    el('thead', {}, el('tr', {}, ...['Mode', 'Mail goes out', 'Why not'].map((h) => el('th', { scope: 'col' }, h)))),
    el('tbody', {}, ...LEVELS.map((l) => el('tr', { class: [l.value === asked ? 'asked' : '', rep.would_pass[l.value] ? '' : 'fails'].join(' ').trim() || null },
      el('th', { scope: 'row' }, l.value, l.value === asked ? el('span', { class: 'muted' }, ' (tested)') : null,
        l.value === rep.recommended ? el('span', { class: 'muted' }, ' (recommended)') : null),
      el('td', {}, mark(rep.would_pass[l.value])),
      el('td', {}, rep.reasons[l.value] || '')))));
  const sts = rep.mta_sts;
  return el('section', { class: 'probe-result', 'aria-label': `Test of ${rep.destination}` },
    verdict,
    el('p', { class: 'recommended' }, 'Recommended mode: ',
      rep.recommended ? el('strong', {}, `${wordsOf(rep.recommended)}`) : el('strong', {}, 'none passes (no mail would go out)')),
    rep.error ? el('p', { class: 'error' }, rep.error) : null,
    facts([
      ['Destination', el('span', { class: 'mono' }, rep.destination)],
      ['Next hop', el('span', { class: 'mono' }, `${rep.nexthop}:${rep.port}`)],
      ['MX lookup', rep.mx ? `DNSSEC ${rep.mx.dnssec}${rep.mx.implicit ? ', no MX records: the domain itself' : ''}` : 'none (a literal next-hop)'],
      ['MTA-STS', !sts ? 'not applicable (a literal next-hop)' : !sts.record ? 'no policy published'
        : sts.policy ? `mode ${sts.policy.mode}, mx ${sts.policy.mx.join(', ')}` : `no usable policy: ${sts.error || 'unknown'}`],
      ['Tested', `${when(rep.probed_at)} in ${rep.duration_ms < 1000 ? `${rep.duration_ms} ms` : `${(rep.duration_ms / 1000).toFixed(1)} s`}${rep.cached ? ' (a recent result, cached)' : ''}`],
    ]),
    el('div', { class: 'table-wrap' }, levels),
    ...rep.hosts.map(hostPanel));
}

function hostPanel(h) {
  const tlsa = h.tlsa;
  return el('section', { class: 'probe-host' },
    el('h3', {}, el('span', { class: 'mono' }, h.name), el('span', { class: 'muted' }, ` preference ${h.preference}`)),
    facts([
      ['DNSSEC', h.dnssec],
      ['DANE', `${tlsa.dane}${tlsa.records.length ? ` (${tlsa.records.length} TLSA ${tlsa.records.length === 1 ? 'record' : 'records'}, DNSSEC ${tlsa.dnssec})` : ''}${tlsa.note ? `: ${tlsa.note}` : ''}`],
      ['MTA-STS match', h.mta_sts_match === null ? null : yesNo(h.mta_sts_match)],
      ['Error', h.error],
    ]),
    ...h.addresses.map(addressPanel));
}

function addressPanel(a) {
  const c = a.certificate;
  const failing = Object.entries(a.would_pass).filter(([, v]) => !v).map(([k]) => k);
  return el('div', { class: 'probe-address' },
    el('h4', { class: 'mono' }, `${a.address.includes(':') ? `[${a.address}]` : a.address}:${a.port}`),
    facts([
      ['Connected', yesNo(a.connected)],
      ['Banner', a.banner ? el('span', { class: 'mono' }, a.banner) : null],
      ['STARTTLS', a.connected ? (a.starttls ? 'offered' : 'not offered') : null],
      ['TLS', a.tls ? `${a.tls.protocol}, ${a.tls.cipher}${a.tls.group ? `, ${a.tls.group}` : ''}` : null],
      ['Certificate', c ? c.subject : null],
      ['Issuer', c ? c.issuer : null],
      ['Names', c && c.dns_names.length ? c.dns_names.join(', ') : null],
      ['Expires', c && c.not_after ? when(c.not_after) : null],
      ['SHA-256', c ? el('span', { class: 'mono fp' }, c.sha256_fingerprint) : null],
      ['Trusted', a.tls ? (a.trusted ? 'yes' : `no: ${a.trust_error || 'not trusted'}`) : null],
      ['DANE', a.dane_verified === null ? null : a.dane_verified ? 'verified' : `fails: ${a.dane_error || 'no match'}`],
      ['Error', a.error ? el('span', { class: 'error' }, a.error) : null],
      ['Fails', failing.length ? failing.join(', ') : 'no mode'],
    ]));
}

// ---- the add/edit form ----
// onProbed(): after a "Test destination" (the rows' badges are asked again).
function policyForm(row, onProbed) {
  const v = row || { level: 'encrypt', enabled: true };
  const f = {};
  const dest = el('input', { type: 'text', autocomplete: 'off', spellcheck: 'false', required: true, maxlength: '300',
    value: row ? row.destination : '', readonly: row ? true : null });
  const level = el('select', {}, ...LEVELS.map((l) => el('option', { value: l.value, selected: l.value === v.level ? true : null }, l.words)));
  const explain = el('p', { class: 'hint level-explain', 'aria-live': 'polite' });
  f.match = el('textarea', { rows: '3', spellcheck: 'false', class: 'short' });
  f.protocols = el('input', { type: 'text', list: 'policy-protocols', spellcheck: 'false', placeholder: 'main.cf decides' });
  f.ciphers = el('select', {}, el('option', { value: '' }, 'main.cf decides'), ...CIPHER_GRADES.map((g) => el('option', { value: g }, g)));
  f.exclude = el('input', { type: 'text', spellcheck: 'false', placeholder: 'e.g. 3DES RC4' });
  f.servername = el('input', { type: 'text', spellcheck: 'false', placeholder: 'hostname, nexthop or a host name' });
  f.tafile = el('input', { type: 'text', spellcheck: 'false', placeholder: '/etc/postfix/partner-ca.pem' });
  f.connection_reuse = el('select', {}, el('option', { value: '' }, 'main.cf decides'),
    el('option', { value: 'true' }, 'yes'), el('option', { value: 'false' }, 'no'));
  const note = el('input', { type: 'text', maxlength: '1024', value: v.note || '' });
  const enabled = el('input', { type: 'checkbox', checked: v.enabled ? true : null, id: `pe${Math.random().toString(36).slice(2)}` });
  const confirm = el('input', { type: 'checkbox', id: `pc${Math.random().toString(36).slice(2)}`, 'data-field': 'confirm_starttls' });
  const guard = el('input', { type: 'checkbox', id: `pg${Math.random().toString(36).slice(2)}` });
  const testButton = el('button', { type: 'button', class: 'secondary test', 'data-write': '' }, 'Test destination');
  const probeArea = el('div', { class: 'probe-area', 'aria-live': 'polite' });

  for (const a of ALL_ATTRS) {
    const x = v[a];
    if (x === null || x === undefined) continue;
    if (a === 'connection_reuse') f[a].value = x ? 'true' : 'false';
    else if (LIST_ATTRS.has(a)) f[a].value = x.join(a === 'match' ? '\n' : ' ');
    else f[a].value = x;
  }
  const wraps = {
    match: field('Match', f.match, { field: '/match', hint: 'Names or fingerprints the certificate must match.' }),
    protocols: field('Protocols', f.protocols, { field: '/protocols', hint: 'TLS versions, e.g. >=TLSv1.2 or !SSLv2:!SSLv3. Empty: smtp_tls_(mandatory_)protocols of main.cf.' }),
    ciphers: field('Cipher grade', f.ciphers, { field: '/ciphers' }),
    exclude: field('Excluded ciphers', f.exclude, { field: '/exclude', hint: 'OpenSSL cipher names separated by spaces. They REPLACE main.cf\'s exclusions for this destination.' }),
    servername: field('Server name (SNI)', f.servername, { field: '/servername', hint: 'The name sent in SNI: hostname (the MX host\'s name), nexthop, or a host name. Ignored at the DANE levels.' }),
    tafile: field('Trust anchor file', f.tafile, { field: '/tafile', hint: 'Absolute path of a PEM file of CAs trusted for this destination instead of smtp_tls_CAfile.' }),
    connection_reuse: field('Connection reuse', f.connection_reuse, { field: '/connection_reuse', hint: 'Share TLS connections through tlsproxy (it must be enabled in master.cf).' }),
  };
  const matchHint = wraps.match.querySelector('.hint');
  const callout = el('div', { class: 'callout mandatory-warning', role: 'note' },
    el('p', {}, el('strong', {}, 'Check before you enforce. '),
      'Mail to a domain whose MX does not support STARTTLS will be deferred, then bounced: Postfix does not fall back to cleartext at this mode. ',
      'Verify that the recipient MX advertises STARTTLS (and, for the authenticating modes, that its certificate passes) before you save, e.g. ',
      el('code', {}, 'posttls-finger -t30 -l encrypt example.org'), '.'),
    el('div', { class: 'field confirm' },
      el('label', { class: 'inline', for: confirm.id }, confirm, 'I have checked that the destination\'s MX advertises STARTTLS')));
  const datalist = el('datalist', { id: 'policy-protocols' },
    ...['>=TLSv1.2', '>=TLSv1.3', '!SSLv2:!SSLv3', '!SSLv2:!SSLv3:!TLSv1:!TLSv1.1'].map((p) => el('option', { value: p })));
  const levelField = field('Encryption mode', level, { field: '/level' });
  levelField.append(explain);
  level.setAttribute('aria-describedby', explain.id = `${level.id}-explain`);

  const element = el('form', { class: 'policy-form', novalidate: true },
    field('Domain', dest, { field: '/destination', hint: row
      ? 'The destination is the row\'s key: to rename, add a new row and delete this one.'
      : 'A domain (example.com), its subdomains only (.example.com), or a next-hop as the transport map spells it ([mx.example.net]:587).' }),
    levelField,
    callout,
    el('fieldset', { class: 'attrs' }, el('legend', {}, 'Attributes of this mode'),
      el('p', { class: 'hint no-attrs' }, 'No TLS: this mode takes no attribute.'),
      ...ALL_ATTRS.map((a) => wraps[a]), datalist),
    field('Note', note, { field: '/note', hint: 'Free text shown in the table (not written to Postfix).' }),
    el('div', { class: 'field' }, el('label', { class: 'inline', for: enabled.id }, enabled, 'Enabled'),
      el('p', { class: 'hint' }, 'A disabled row stays here but is left out of Postfix\'s map.')),
    el('div', { class: 'field guard' }, el('label', { class: 'inline', for: guard.id }, guard, 'Test the destination before saving'),
      el('p', { class: 'hint' }, 'A mode above Opportunistic is saved only if the destination\'s mail servers pass it now (the test can take up to half a minute).')),
    el('div', { class: 'actions' }, el('button', { type: 'submit' }, 'Save'),
      el('button', { type: 'button', class: 'secondary cancel' }, 'Cancel'), testButton),
    probeArea);
  enabled.dataset.field = '/enabled';

  // "Test destination": the destination, mode and match as entered, without saving
  testButton.addEventListener('click', async () => {
    const destination = row ? row.destination : dest.value.trim();
    if (!destination) return showProblem(element, { field: '/destination', detail: 'Enter the destination to test.' });
    clearProblem(element);
    const l = level.value;
    const match = ATTRS[l].includes('match') ? items(f.match.value.trim(), l === 'fingerprint' ? /[\s,|]+/ : /[\s,:]+/) : [];
    testButton.disabled = true;
    await runProbe(probeRequest(destination, l, match), probeArea);
    testButton.disabled = false;
    if (onProbed) onProbed();
  });

  function follow() {
    const l = level.value, allowed = new Set(ATTRS[l]);
    explain.textContent = LEVEL[l].explain;
    for (const a of ALL_ATTRS) wraps[a].hidden = !allowed.has(a);
    element.querySelector('.no-attrs').hidden = allowed.size > 0;
    // ciphers null at encrypt leaves no cipher: the API refuses it, so it is not offered there
    const nullGrade = f.ciphers.querySelector('option[value=null]');
    nullGrade.hidden = nullGrade.disabled = l === 'encrypt';
    if (l === 'encrypt' && f.ciphers.value === 'null') f.ciphers.value = '';
    if (l === 'fingerprint') {
      matchHint.textContent = 'Required: the SHA-256 (or SHA-512) fingerprints of the server certificates, one per line (AB:CD:…); the digest must be main.cf\'s smtp_tls_fingerprint_digest.';
      f.match.placeholder = '3D:95:34:51:…';
    } else {
      matchHint.textContent = 'Names the certificate must carry, one per line: hostname, nexthop, dot-nexthop, a domain or .domain. Empty: Postfix\'s default for the mode.';
      f.match.placeholder = 'nexthop\ndot-nexthop';
    }
    callout.hidden = !(LEVEL[l].mandatory && (!row || !LEVEL[row.level].mandatory));
  }
  level.addEventListener('change', follow);
  follow();
  // a refusal shown next to a control goes once that control is edited
  const mended = (ev) => {
    const c = ev.target;
    if (c.getAttribute('aria-invalid') !== 'true') return;
    c.removeAttribute('aria-invalid');
    const msg = document.getElementById(c.getAttribute('aria-errormessage'));
    if (msg) msg.remove();
  };
  element.addEventListener('input', mended);
  element.addEventListener('change', mended);

  const items = (text, sep) => text.split(sep).map((s) => s.trim()).filter(Boolean);
  return {
    element,
    focus() { (row ? level : dest).focus(); },
    // Whether the save asks the daemon to probe first (?probe=true).
    guarded() { return guard.checked; },
    // While a guarded save probes: says so (it can take up to probe_timeout); returns its end.
    guardBusy(destination) {
      const stop = busy(probeArea, `Testing ${destination} before saving…`);
      return () => { stop(); probeArea.replaceChildren(); };
    },
    // The guard's refusal (422 destination_fails_probe): why, the report, and "Save anyway".
    showGuardRefusal(problem, force) {
      const anyway = el('button', { type: 'button', class: 'danger', 'data-write': '' }, 'Save anyway');
      anyway.addEventListener('click', () => { anyway.disabled = true; force(); });
      probeArea.replaceChildren(el('div', { class: 'form-error guard-refusal', role: 'alert' },
        el('p', {}, el('strong', {}, 'Not saved: '), problem.detail || 'the destination fails this mode.'),
        el('p', {}, 'Mail at this mode would be deferred, then bounced. Save anyway only if you know the test is wrong or the destination is about to be fixed.'),
        el('div', { class: 'actions' }, anyway)),
      ...(problem.probes || []).map((rep) => resultPanel(rep)));
      anyway.focus();
    },
    // What the page itself refuses before asking: the warning callout not acknowledged.
    check() {
      if (!callout.hidden && !confirm.checked)
        return { field: 'confirm_starttls', detail: 'Confirm that you checked the MX advertises STARTTLS: at this mode mail to an MX without it is deferred, then bounced.' };
      return null;
    },
    body() {
      const l = level.value, allowed = new Set(ATTRS[l]);
      const b = { level: l, note: note.value.trim() || null, enabled: enabled.checked };
      if (!row) b.destination = dest.value.trim();
      for (const a of ALL_ATTRS) {
        if (!allowed.has(a)) continue;
        const raw = f[a].value.trim();
        if (a === 'match') b.match = items(raw, l === 'fingerprint' ? /[\s,|]+/ : /[\s,:]+/);
        else if (a === 'exclude') b.exclude = items(raw, /[\s,:]+/);
        else if (a === 'connection_reuse') b.connection_reuse = raw === '' ? null : raw === 'true';
        else b[a] = raw || null;
      }
      return b;
    },
  };
}

// ---- import: Postfix map text or JSON -> the bulk body ----

// Reads smtp_tls_policy_maps source text as postmap does: `key value` logical lines, a line that
// starts with whitespace continues the previous one, blank lines and lines whose first non-blank
// is '#' are skipped; the key is lowercased. The value is `level attr=value ...` (separated by
// whitespace or commas, as Postfix splits it); match items by ':' ('|' at fingerprint), exclude
// items by ':' or whitespace. Returns {items, lines (item -> source line), errors}.
export function parseMap(text) {
  const items = [], lines = [], errors = [];
  const logical = [];
  text.split(/\r\n|\n|\r/).forEach((raw, i) => {
    if (/^\s*(#|$)/.test(raw)) return;
    if (/^\s/.test(raw)) {
      if (!logical.length) errors.push({ line: i + 1, detail: 'a continuation line without an entry before it' });
      else logical[logical.length - 1].text += ` ${raw.trim()}`;
      return;
    }
    logical.push({ line: i + 1, text: raw.trim() });
  });
  const seen = new Map();
  for (const { line, text: t } of logical) {
    const m = t.match(/^(\S+)\s+(.*)$/);
    if (!m) { errors.push({ line, detail: `"${t.slice(0, 60)}" has a key but no value (a level)` }); continue; }
    const destination = m[1].toLowerCase();
    const [levelWord, ...attrs] = m[2].split(/[\s,]+/).filter(Boolean);
    const level = (levelWord || '').toLowerCase();
    if (!LEVEL[level]) { errors.push({ line, detail: `${destination}: "${levelWord}" is not a level (${LEVELS.map((l) => l.value).join(', ')})` }); continue; }
    if (seen.has(destination)) { errors.push({ line, detail: `${destination} is also on line ${seen.get(destination)} (Postfix would use the first one only)` }); continue; }
    seen.set(destination, line);
    const item = { destination, level };
    let bad = false;
    for (const a of attrs) {
      const eq = a.indexOf('=');
      const name = eq > 0 ? a.slice(0, eq).toLowerCase() : a;
      const value = eq > 0 ? a.slice(eq + 1) : '';
      if (!ALL_ATTRS.includes(name) || eq <= 0) { errors.push({ line, detail: `${destination}: "${a}" is not an attribute (${ALL_ATTRS.join(', ')}=value)` }); bad = true; break; }
      if (name in item) { errors.push({ line, detail: `${destination}: ${name} is given twice` }); bad = true; break; }
      if (name === 'match') item.match = value.split(level === 'fingerprint' ? '|' : ':').filter(Boolean);
      else if (name === 'exclude') item.exclude = value.split(/[:\s]+/).filter(Boolean);
      else if (name === 'connection_reuse') {
        const yes = /^(yes|true)$/i.test(value), no = /^(no|false)$/i.test(value);
        if (!yes && !no) { errors.push({ line, detail: `${destination}: connection_reuse is yes or no` }); bad = true; break; }
        item.connection_reuse = yes;
      } else if (name === 'ciphers') item.ciphers = value.toLowerCase();
      else item[name] = value;
    }
    if (bad) continue;
    items.push(item);
    lines.push(line);
  }
  return { items, lines, errors, skipped: 0 };
}

// A JSON bulk body ({"items": [...]}) or an array of rows (an export or a GET's items): the
// writable members of each; rows of a manager are left out (a bulk never touches them).
export function parseJson(text) {
  let doc;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    return { items: [], lines: [], errors: [{ detail: `This is not JSON: ${e.message}` }], skipped: 0 };
  }
  const list = Array.isArray(doc) ? doc : doc && Array.isArray(doc.items) ? doc.items : null;
  if (!list) return { items: [], lines: [], errors: [{ detail: 'The JSON is neither {"items": [...]} nor an array of policies.' }], skipped: 0 };
  const items = [], lines = [], errors = [];
  let skipped = 0;
  list.forEach((x, i) => {
    if (!x || typeof x !== 'object' || Array.isArray(x)) { errors.push({ detail: `item ${i + 1} is not an object` }); return; }
    if (x.managed_by) { skipped++; return; }
    const item = {};
    for (const k of WRITABLE) if (k in x) item[k] = x[k];
    items.push(item);
    lines.push(i + 1);
  });
  return { items, lines, errors, skipped };
}

export function parseImport(text) {
  return /^\s*[[{]/.test(text) ? { ...parseJson(text), kind: 'item' } : { ...parseMap(text), kind: 'line' };
}

// The map diff of a plan, as rows: a key only added is added, only removed is removed, both is
// changed. U-label keys repeat their A-label's entry and are left out.
function diffRows(diff) {
  const plus = new Map(), minus = new Map();
  for (const l of (diff || '').split('\n')) {
    if (/^(\+\+\+|---|@@)/.test(l)) continue;
    const m = l.match(/^([+-])([^\s#]\S*)\s+(.*)$/);
    if (!m || /[^\x00-\x7f]/.test(m[2])) continue;
    (m[1] === '+' ? plus : minus).set(m[2], m[3]);
  }
  const added = [], changed = [], removed = [];
  for (const [k, v] of plus) if (minus.has(k)) changed.push([k, `${minus.get(k)} → ${v}`]); else added.push([k, v]);
  for (const [k, v] of minus) if (!plus.has(k)) removed.push([k, v]);
  return { added, changed, removed };
}

function diffView(diff) {
  const pre = el('pre', { class: 'diff' });
  for (const l of (diff || '').split('\n')) {
    if (!l) continue;
    pre.append(el('span', { class: l.startsWith('+') && !l.startsWith('+++') ? 'add' : l.startsWith('-') && !l.startsWith('---') ? 'del' : null }, l), '\n');
  }
  return pre;
}

function importDialog(status, reload) {
  const file = el('input', { type: 'file', accept: '.json,.txt,.cf,.map,text/plain,application/json' });
  const text = el('textarea', { rows: '8', spellcheck: 'false', placeholder: '.example.com   encrypt protocols=>=TLSv1.2\n[relay.example.net]:587 secure match=nexthop' });
  const preview = el('button', { type: 'submit' }, 'Preview');
  const result = el('div', { class: 'bulk-result', 'aria-live': 'polite' });
  const form = el('form', { class: 'bulk-form', novalidate: true },
    el('p', { class: 'hint' }, 'Makes the set of rows not managed elsewhere exactly this list: rows not in it are removed. ',
      'A Postfix map file (', el('code', {}, 'destination level attr=value …'), ', comments, continuation lines) or JSON (',
      el('code', {}, '{"items": [...]}'), ', or an export). Managed rows are never touched. Nothing changes before you press Apply.'),
    field('Policy file', file, { field: 'file' }),
    field('Or paste it here', text, { field: 'text' }),
    el('div', { class: 'actions' }, preview, el('button', { type: 'button', class: 'secondary', onclick: () => d.finish(null) }, 'Close')),
    result);
  const d = dialog('Import TLS policies', form, { wide: true });
  file.addEventListener('change', async () => {
    if (file.files[0]) text.value = await file.files[0].text();
  });
  let parsed = null, etag = null;

  // An error of the API about /items/N/... said with the source line it came from.
  const where = (e) => {
    const m = e.field && e.field.match(/^\/items\/(\d+)/);
    const i = m ? Number(m[1]) : -1;
    const src = i >= 0 && parsed.lines[i] ? `${parsed.kind} ${parsed.lines[i]}` : null;
    const dest = i >= 0 && parsed.items[i] ? parsed.items[i].destination : null;
    return `${src ? `${src}${dest ? ` (${dest})` : ''}: ` : ''}${e.detail || e.code}`;
  };

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    clearProblem(form);
    result.replaceChildren();
    if (!text.value.trim()) return showProblem(form, { field: 'text', detail: 'Choose a file or paste its text first.' });
    parsed = parseImport(text.value);
    if (parsed.errors.length) {
      return showProblem(form, { field: 'text', detail: `Nothing was sent: ${parsed.errors.length} ${parsed.errors.length === 1 ? 'entry' : 'entries'} cannot be read. `
        + parsed.errors.slice(0, 20).map((e) => (e.line ? `Line ${e.line}: ${e.detail}` : e.detail)).join(' · ') });
    }
    preview.disabled = true;
    result.replaceChildren(el('p', { class: 'muted' }, 'Asking for the plan…'));
    // the collection's tag now: Apply changes nothing if someone changed a row after this preview
    const head = await call('GET', API, { query: { limit: 1 } });
    etag = head.etag;
    const r = await call('PUT', API, { body: { items: parsed.items }, query: { dry_run: 'true' } });
    preview.disabled = false;
    if (r.status !== 200) {
      result.replaceChildren(el('div', { class: 'form-error', role: 'alert' },
        el('p', {}, 'The API refuses this set; nothing was changed.'),
        el('ul', {}, ...(r.problem.errors && r.problem.errors.length ? r.problem.errors : [r.problem]).map((e) => el('li', {}, where(e))))));
      return;
    }
    showPlan(r.data);
  });

  function showPlan(data) {
    const plan = data.plan || {};
    const rows = diffRows(plan.tls_policy_diff);
    const counts = el('ul', { class: 'counts' },
      ...[['added', 'Added', 'ok'], ['changed', 'Changed', 'warn'], ['removed', 'Removed', 'bad'], ['unchanged', 'Unchanged', 'muted']]
        .map(([k, label, kind]) => el('li', { class: `count ${kind}`, dataset: { count: k } }, el('strong', {}, String(data[k] ?? 0)), ` ${label}`)));
    const list = (title, items, kind) => (items.length ? el('div', { class: `diff-group ${kind}` },
      el('h3', {}, `${title} in Postfix's map (${items.length})`),
      el('ul', { class: 'mono' }, ...items.slice(0, 200).map(([k, v]) => el('li', {}, el('strong', {}, k), ` ${v}`)),
        items.length > 200 ? el('li', { class: 'muted' }, `and ${items.length - 200} more (see the map diff)`) : null)) : null);
    const valid = plan.valid !== false;
    const apply = el('button', { type: 'button', 'data-write': '', disabled: !valid || null }, 'Apply');
    const nothing = !data.added && !data.changed && !data.removed;
    result.replaceChildren(...[
      el('h3', {}, 'The plan (nothing has changed yet)'),
      counts,
      parsed.skipped ? el('p', { class: 'muted' }, `${parsed.skipped} managed ${parsed.skipped === 1 ? 'row was' : 'rows were'} left out: a bulk never touches managed rows.`) : null,
      plan.warnings && plan.warnings.length ? el('div', { class: 'callout' }, el('p', {}, 'Warnings:'), el('ul', {}, ...plan.warnings.map((w) => el('li', {}, where(w))))) : null,
      plan.errors && plan.errors.length ? el('div', { class: 'form-error', role: 'alert' }, el('p', {}, 'The worker would refuse this set:'), el('ul', {}, ...plan.errors.map((e) => el('li', {}, where(e))))) : null,
      list('Added', rows.added, 'add'), list('Changed', rows.changed, 'change'), list('Removed', rows.removed, 'del'),
      plan.tls_policy_diff ? el('details', {}, el('summary', {}, 'The map diff'), diffView(plan.tls_policy_diff)) : null,
      nothing ? el('p', {}, 'This set is what is there already: Apply changes nothing.') : null,
      el('div', { class: 'actions' }, apply)].filter(Boolean));
    apply.addEventListener('click', async () => {
      apply.disabled = true;
      const r = await call('PUT', API, { body: { items: parsed.items }, ifMatch: etag || undefined });
      if (r.status === 200 || r.status === 202) {
        d.finish(true);
        let j = null;
        if (r.status === 202 && r.jobId) j = await followJob(r.jobId);
        const res = r.status === 200 ? r.data : null;
        const failed = j && j.status !== 'applied';
        notice(status, [el('p', {}, failed
          ? `The import failed (job ${r.jobId}): ${(j.error && j.error.detail) || j.status}`
          : res ? `Imported (job ${r.jobId}): ${res.added} added, ${res.changed} changed, ${res.removed} removed, ${res.unchanged} unchanged.`
            : `Imported (job ${r.jobId}).`), warningList((res && res.warnings) || (j && j.warnings))].filter(Boolean), failed ? 'bad' : 'ok');
        reload();
        return;
      }
      apply.disabled = false;
      const detail = r.status === 412
        ? 'The policies changed since this preview (someone else wrote meanwhile): nothing was imported. Press Preview again to see the plan against the current set.'
        : null;
      result.append(el('div', { class: 'form-error', role: 'alert' }, el('p', {}, detail || 'The import was refused; nothing changed.'),
        detail ? null : el('ul', {}, ...(r.problem.errors && r.problem.errors.length ? r.problem.errors : [r.problem]).map((e) => el('li', {}, where(e))))));
    });
    apply.focus();
  }
}

// ---- export ----

// Every unmanaged row, page by page (1000 a request), in destination order.
async function allUnmanaged() {
  const rows = [];
  let after = null;
  do {
    const r = await call('GET', API, { query: { limit: 1000, managed: 'false', after } });
    if (r.status !== 200) throw new Error(r.problem.detail || `the list failed (${r.status})`);
    rows.push(...r.data.items);
    after = r.data.next;
  } while (after);
  return rows;
}

function bulkItem(p) {
  const item = {};
  for (const k of WRITABLE) {
    const x = p[k];
    if (x === null || x === undefined || x === '' || (Array.isArray(x) && !x.length)) continue;
    item[k] = x;
  }
  return item;
}

// One line of Postfix's map for a row, as the daemon renders it.
export function mapLine(p) {
  const parts = [p.level];
  if (p.match && p.match.length) parts.push(`match=${p.match.join(p.level === 'fingerprint' ? '|' : ':')}`);
  if (p.protocols) parts.push(`protocols=${p.protocols}`);
  if (p.ciphers) parts.push(`ciphers=${p.ciphers}`);
  if (p.exclude && p.exclude.length) parts.push(`exclude=${p.exclude.join(':')}`);
  if (p.servername) parts.push(`servername=${p.servername}`);
  if (p.tafile) parts.push(`tafile=${p.tafile}`);
  if (p.connection_reuse !== null && p.connection_reuse !== undefined) parts.push(`connection_reuse=${p.connection_reuse ? 'yes' : 'no'}`);
  return `${p.destination}\t${parts.join(' ')}`;
}

function mapText(rows) {
  const out = [`# TLS policies exported by smtptlsd's console, ${new Date().toISOString()}.`,
    '# Rows managed elsewhere are left out; disabled rows are comments. Notes are comments too:',
    '# import the JSON export to keep them.'];
  for (const p of rows) {
    if (p.note) out.push(`# ${p.note.replace(/\s+/g, ' ')}`);
    out.push(`${p.enabled ? '' : '#disabled# '}${mapLine(p)}`);
  }
  return `${out.join('\n')}\n`;
}

async function exportSet(kind, status) {
  notice(status, 'Preparing the export…');
  let rows;
  try {
    rows = await allUnmanaged();
  } catch (e) {
    return notice(status, `The export failed: ${e.message}`, 'bad');
  }
  const json = kind === 'json';
  const blob = new Blob([json ? `${JSON.stringify({ items: rows.map(bulkItem) }, null, 2)}\n` : mapText(rows)],
    { type: json ? 'application/json' : 'text/plain' });
  const url = URL.createObjectURL(blob);
  const a = el('a', { href: url, download: json ? 'tls-policies.json' : 'tls_policy', hidden: true });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
  notice(status, `Exported ${rows.length} ${rows.length === 1 ? 'row' : 'rows'} (${json ? 'JSON bulk body' : 'Postfix map text'}); managed rows are left out.`, 'ok');
}
