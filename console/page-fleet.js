// page-fleet.js: the Fleet page: the daemons sharing this database (GET /api/v1/nodes), each with
// its state and the tool's output when its Postfix refused, the generation it applied and how far
// it is behind the committed one (GET /api/v1/status desired_generation), its Postfix, what its
// smtpd serves, its own certificate binding and when it was last heard of. Polled every POLL_MS
// like the overview (If-None-Match: the status answers 304 while nothing changed); polling pauses
// while the tab is hidden and stops when another page is shown. For a write-scope session: Retry
// on a degraded or failed node (POST .../retry), Forget on an unreachable one (DELETE), and a
// certificate bound on one node only (PUT/DELETE /api/v1/nodes/{name}/settings, with If-Match).
import { call } from '/console/api.js';
import {
  el, field, badge, when, notice, dialog, showProblem, clearProblem, READ_ONLY_REASON, pageStyle,
} from '/console/ui.js';

const POLL_MS = 3000;

// The node states (the overview's words where they are the same), and what each means.
const STATES = {
  in_sync: ['in sync', 'It applied the committed generation.'],
  applying: ['applying', 'It is applying a newer generation.'],
  degraded: ['degraded', 'Its Postfix refused a generation: it keeps its last good files and tries ' +
    'the next generation (or Retry, once the cause is removed).'],
  failed: ['failed', 'Its last reconcile failed: its Postfix runs the last good files.'],
  starting: ['starting', 'The daemon is starting.'],
  unreachable: ['unreachable', 'No heartbeat for three heartbeat intervals: the daemon is stopped, ' +
    'or cannot reach the database.'],
};
const COLUMNS = ['Node', 'State', 'Generation', 'Postfix', 'Serves', 'Certificate', 'Last seen'];

export async function render(main, ctx) {
  pageStyle('fleet');
  const write = ctx.session.scope !== 'read';
  const status = el('div', { class: 'fleet-status' });
  const summary = el('p', { class: 'fleet-summary', role: 'status', 'aria-live': 'polite' });
  const list = el('div', { class: 'fleet-list' }, el('p', { class: 'muted' }, 'Loading…'));
  const trouble = el('p', { class: 'error', role: 'alert', hidden: true });
  main.append(el('div', { class: 'page-fleet' }, trouble, status,
    write ? null : el('p', { class: 'muted read-only' }, READ_ONLY_REASON),
    summary, list));

  const tags = { status: null, nodes: null };
  let committed = null, nodes = null;
  const closed = new Set(); // nodes whose refusal the user folded: kept folded across redraws
  let timer = null, alive = true, busy = false, again = false;

  async function tick() {
    timer = null;
    if (!alive || busy || document.hidden) return;
    busy = true;
    // the list has no tag of its own today (last_seen moves with every heartbeat); asking with
    // If-None-Match costs nothing and answers 304 should it get one
    const [s, n] = await Promise.all([
      call('GET', '/api/v1/status', { ifNoneMatch: tags.status }),
      call('GET', '/api/v1/nodes', { ifNoneMatch: tags.nodes }),
    ]);
    busy = false;
    if (!alive) return;
    let changed = false;
    if (s.status === 200) { tags.status = s.etag; committed = s.data.desired_generation; changed = true; }
    if (n.status === 200) { tags.nodes = n.etag; nodes = n.data.items; changed = true; }
    if (changed && nodes) draw();
    const bad = [s, n].find((r) => r.status !== 200 && r.status !== 304 && r.status !== 401 && !r.aborted);
    trouble.hidden = !bad;
    trouble.textContent = bad ? `${bad.problem.detail || 'The request failed.'} Retrying every few seconds.` : '';
    if (again) { again = false; return tick(); } // asked for during this one: its answers may predate an action
    schedule();
  }
  function schedule() {
    clearTimeout(timer);
    if (alive && !document.hidden) timer = setTimeout(tick, POLL_MS);
  }
  function visibility() {
    if (document.hidden) { clearTimeout(timer); timer = null; } else if (!busy) tick();
  }
  // after an action: the list now, not at the next poll (after the requests in flight, whose
  // answers may be from before the action)
  function refresh() {
    if (!alive) return;
    clearTimeout(timer);
    if (busy) again = true;
    else tick();
  }

  function draw() {
    // the committed generation: the status's, or else the highest a node applied
    const top = committed ?? Math.max(0, ...nodes.map((x) => x.applied_generation));
    const count = (st) => nodes.filter((x) => x.state === st).length;
    summary.textContent = `${nodes.length} node${nodes.length === 1 ? '' : 's'}: ${count('in_sync')} in sync` +
      `${count('unreachable') ? `, ${count('unreachable')} unreachable` : ''}` +
      `${count('degraded') + count('failed') ? `, ${count('degraded') + count('failed')} refusing` : ''}; ` +
      `committed generation ${top}.`;
    if (!nodes.length) { list.replaceChildren(el('p', { class: 'muted' }, 'No node is registered.')); return; }
    // keep the focus on a row's button across a redraw (the keyboard user stays where they were)
    const focused = document.activeElement && list.contains(document.activeElement)
      ? document.activeElement.getAttribute('aria-label') : null;
    const heads = write ? [...COLUMNS, 'Actions'] : COLUMNS;
    list.replaceChildren(el('div', { class: 'table-wrap' }, el('table', { class: 'cards nodes' },
      el('thead', {}, el('tr', {}, ...heads.map((h) => el('th', { scope: 'col' }, h)))),
      el('tbody', {}, ...nodes.map((x) => row(x, top))))));
    if (focused) list.querySelector(`[aria-label="${CSS.escape(focused)}"]`)?.focus();
  }

  function row(x, top) {
    const cell = (label, ...c) => el('td', { 'data-label': label }, ...c);
    const [word, meaning] = STATES[x.state] || [x.state, ''];
    const lag = top - x.applied_generation;
    const cells = [
      cell('Node', el('span', {},
        el('span', { class: 'name' }, el('strong', { class: 'mono' }, x.name),
          x.self ? el('span', { class: 'badge self', title: 'The node answering this page' }, 'self') : null),
        x.version ? el('span', { class: 'muted sub' }, `smtptlsd ${x.version}`) : null)),
      cell('State', el('span', {}, el('span', { class: `badge ${x.state}`, title: meaning }, word),
        (x.state === 'degraded' || x.state === 'failed') ? detail(x, closed) : null)),
      cell('Generation', el('span', { class: 'inline' }, String(x.applied_generation),
        lag > 0 ? el('span', { class: 'lag' }, ` (${lag} behind)`)
          : el('span', { class: 'muted' }, ' (up to date)'))),
      cell('Postfix', el('span', {},
        x.postfix_version ? el('span', {}, x.postfix_version) : el('span', { class: 'muted' }, 'unknown'),
        x.myhostname ? el('span', { class: 'mono sub' }, x.myhostname) : null)),
      cell('Serves', served(x.served)),
      cell('Certificate', x.settings
        ? el('span', {}, el('strong', {}, x.settings.certificate),
          x.settings.additional_certificate ? el('span', { class: 'sub' }, `+ ${x.settings.additional_certificate}`) : null,
          el('span', { class: 'muted sub' }, 'bound on this node'))
        : el('span', { class: 'muted', title: 'It follows the certificate of TLS settings' }, 'settings\'')),
      cell('Last seen', el('span', { title: when(x.last_seen) }, ago(x.last_seen))),
    ];
    if (write) cells.push(cell('Actions', actions(x)));
    return el('tr', { class: x.state, dataset: { node: x.name } }, ...cells);
  }

  function actions(x) {
    const b = (text, label, onclick, cls = 'secondary') =>
      el('button', { type: 'button', class: `${cls} small`, 'data-write': true, 'aria-label': label, onclick }, text);
    return el('div', { class: 'row-actions' },
      x.state === 'degraded' || x.state === 'failed' ? b('Retry', `Retry ${x.name}`, () => retry(x), '') : null,
      x.state === 'unreachable' ? b('Forget', `Forget ${x.name}`, () => forget(x), 'danger') : null,
      b('Bind certificate', `Bind a certificate on ${x.name}`, () => bind(x)),
      x.settings ? b('Follow settings', `${x.name} follows the settings`, () => unbind(x)) : null);
  }

  async function retry(x) {
    notice(status, `Asking ${x.name} to apply the committed state again…`);
    const r = await call('POST', `/api/v1/nodes/${encodeURIComponent(x.name)}/retry`);
    if (!alive || r.aborted || r.status === 401) return;
    if (r.status !== 202) return notice(status, `Retry of ${x.name}: ${r.problem.detail || r.problem.code}`, 'bad');
    notice(status, `${x.name} was asked to apply the committed state again: it does so as soon as it ` +
      'hears of it (at once, or at its next heartbeat). Its state shows here.', 'ok');
    refresh();
  }

  function forget(x) {
    const yes = el('button', { type: 'submit', class: 'danger' }, 'Forget');
    const no = el('button', { type: 'button', class: 'secondary', onclick: () => d.finish(null) }, 'Cancel');
    const form = el('form', { novalidate: true },
      el('p', {}, `${x.name} was last heard of ${ago(x.last_seen)} (${when(x.last_seen)}). Forgetting removes it ` +
        'and its own certificate binding from the registry; a daemon of that name that starts again registers again.'),
      el('div', { class: 'actions' }, yes, no));
    const d = dialog(`Forget ${x.name}?`, form);
    no.focus();
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      yes.disabled = true;
      const r = await call('DELETE', `/api/v1/nodes/${encodeURIComponent(x.name)}`);
      yes.disabled = false;
      if (r.status === 204) {
        d.finish(true);
        notice(status, `${x.name} is forgotten.`, 'ok');
        return refresh();
      }
      if (r.status === 401 || r.aborted) return;
      // node_alive: it wrote a heartbeat since the list was drawn
      showProblem(form, r.problem);
      yes.hidden = true;
      no.textContent = 'Close';
      no.focus();
      refresh();
    });
  }

  async function bind(x) {
    const select = el('select', { name: 'certificate' }, el('option', { value: '' }, 'Loading…'));
    const submit = el('button', { type: 'submit', disabled: true }, 'Bind');
    const cancel = el('button', { type: 'button', class: 'secondary', onclick: () => d.finish(null) }, 'Cancel');
    const form = el('form', { novalidate: true },
      el('p', {}, `The certificate chosen here replaces the TLS settings' certificate on ${x.name} only ` +
        '(each MX usually has its own host name). The node applies it when it hears of it.'),
      field('Certificate', select, { field: '/certificate',
        hint: x.myhostname ? `${x.name}'s Postfix calls itself ${x.myhostname}.` : null }),
      el('div', { class: 'actions' }, submit, cancel));
    const d = dialog(`Bind a certificate on ${x.name}`, form);
    select.focus();
    const base = `/api/v1/nodes/${encodeURIComponent(x.name)}/settings`;
    const [own, certs] = await Promise.all([call('GET', base), call('GET', '/api/v1/certificates')]);
    if (!alive || own.aborted || own.status === 401 || certs.status === 401) return;
    if (own.status !== 200 || certs.status !== 200) {
      select.replaceChildren();
      return showProblem(form, (own.status !== 200 ? own : certs).problem);
    }
    const etag = own.etag; // none while the node follows the settings
    const usable = certs.data.items.filter((c) => c.type !== 'system');
    select.replaceChildren(
      el('option', { value: '' }, usable.length ? 'Choose a certificate' : 'No certificate to bind: upload one first'),
      ...usable.map((c) => {
        // an ACME certificate must be in that node's own live directory
        const absent = c.type === 'acme' && Array.isArray(c.nodes) && !c.nodes.includes(x.name);
        return el('option', { value: c.name, disabled: absent },
          `${c.name} (${(c.dns_names || []).join(', ') || c.subject}; ${c.days_left} days)${absent ? ` - not on ${x.name}` : ''}`);
      }));
    select.value = own.data.certificate || '';
    submit.disabled = false;
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      clearProblem(form);
      if (!select.value) return showProblem(form, { field: '/certificate', detail: 'Choose a certificate.' });
      submit.disabled = cancel.disabled = true;
      const r = await call('PUT', base, { body: { certificate: select.value }, ifMatch: etag });
      submit.disabled = cancel.disabled = false;
      if (r.status === 401 || r.aborted) return;
      if (r.status === 200 || r.status === 201 || r.status === 202) {
        d.finish(true);
        written(`${select.value} is bound on ${x.name}`, r);
        return refresh();
      }
      showProblem(form, r.status === 412 ? { ...r.problem, detail: `${x.name}'s binding was changed ` +
        `meanwhile (${r.problem.detail}): close this dialog and open it again to see it.` } : r.problem);
    });
  }

  async function unbind(x) {
    notice(status, `${x.name}: back to the settings' certificate…`);
    const base = `/api/v1/nodes/${encodeURIComponent(x.name)}/settings`;
    const own = await call('GET', base);
    if (!alive || own.aborted || own.status === 401) return;
    const r = own.status === 200 ? await call('DELETE', base, { ifMatch: own.etag }) : own;
    if (!alive || r.aborted || r.status === 401) return;
    if (r.status === 204 || r.status === 202) {
      written(`${x.name} follows the settings' certificate again`, r);
      return refresh();
    }
    notice(status, `${x.name} keeps its own certificate: ${r.problem.detail || r.problem.code}`, 'bad');
  }

  // A write's reply: its job, its warnings (a host name the certificate does not cover, ...).
  function written(what, r) {
    const warnings = (r.data && r.data.warnings) || [];
    const lines = [el('p', {}, `${what}${r.jobId ? ` (job ${r.jobId})` : ''}` +
      `${r.status === 202 ? '; the job is still queued' : ''}.`)];
    for (const w of warnings) lines.push(el('p', {}, `Warning: ${w.detail || w.code}`));
    notice(status, lines, warnings.length ? 'warn' : 'ok');
  }

  document.addEventListener('visibilitychange', visibility);
  await tick();
  return () => {
    alive = false;
    clearTimeout(timer);
    document.removeEventListener('visibilitychange', visibility);
  };
}

// The tool's output of a refusal, as it printed it.
function detail(x, closed) {
  if (!x.detail) return null;
  const d = el('details', { class: 'refusal', open: !closed.has(x.name) },
    el('summary', {}, x.failed_generation ? `Refused generation ${x.failed_generation}` : 'Why'),
    el('pre', { class: 'output' }, x.detail));
  d.addEventListener('toggle', () => { if (d.open) closed.delete(x.name); else closed.add(x.name); });
  return d;
}

// What the node's smtpd served at its verifier's last check: fingerprint(s), shortened (in full
// in the title), and whether it was what the node applied.
function served(s) {
  if (!s || (s.verified === null && !s.fingerprint))
    return el('span', { class: 'muted' }, 'not checked yet');
  const fps = s.fingerprint ? s.fingerprint.split(',') : [];
  const verdict = s.verified === true ? badge('verified', 'ok')
    : s.verified === false ? badge('not what it applied', 'bad') : badge('not checked', 'muted');
  return el('span', { class: 'served' },
    fps.length ? fps.map((f) => el('code', { class: 'fp', title: f }, short(f))) : el('span', { class: 'muted' }, 'no STARTTLS'),
    verdict, s.checked_at ? el('span', { class: 'muted sub', title: when(s.checked_at) }, `checked ${ago(s.checked_at)}`) : null);
}

// "3F:9A:0B:...:C2:07" -> "3F:9A:0B:12…C2:07"
function short(fp) {
  return fp.length > 20 ? `${fp.slice(0, 11)}…${fp.slice(-5)}` : fp;
}

// "2026-11-22T10:00:00Z" -> "12 s ago", "5 min ago", "3 h ago", "2 days ago" (this browser's clock).
function ago(ts) {
  const s = Math.round((Date.now() - Date.parse(ts)) / 1000);
  if (!Number.isFinite(s)) return '';
  if (s < 5) return 'just now';
  if (s < 120) return `${s} s ago`;
  if (s < 7200) return `${Math.round(s / 60)} min ago`;
  if (s < 172800) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} days ago`;
}
