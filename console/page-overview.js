// page-overview.js: the Overview page: what GET /api/v1/status says (state, generations, queued
// jobs, drift, warnings, the bound certificates and whether Postfix serves them, Postfix, node,
// the fleet's summary when several nodes share the database) and the last jobs
// (GET /api/v1/jobs?limit=5). Both are polled every POLL_MS with If-None-Match
// (the daemon answers 304 while nothing changed) and a part is redrawn only on a 200; polling
// pauses while the tab is hidden and stops when another page is shown (render returns the stop).
import { call } from '/console/api.js';
import { el, badge, when, daysLeftBadge, pageStyle } from '/console/ui.js';

const POLL_MS = 3000;
const LAST_JOBS = 5;

const STATES = {
  in_sync: ['in sync', 'Postfix runs exactly the desired configuration: every write is applied and ' +
    'the managed main.cf parameters are as rendered.'],
  applying: ['applying', 'Changes are queued or being applied; Postfix runs them in a moment.'],
  degraded: ['degraded', 'Postfix runs, but something needs you: the last apply failed (Postfix keeps ' +
    'the last-known-good files), main.cf was edited by hand, or see the warnings below.'],
  failed: ['failed', 'The last reconcile failed: Postfix runs the last-known-good files until the ' +
    'next successful write.'],
};

export async function render(main) {
  pageStyle('overview');
  const status = el('div', { class: 'overview-status', 'aria-live': 'polite' },
    el('p', { class: 'muted' }, 'Loading…'));
  const jobs = el('section', { class: 'card', 'aria-labelledby': 'ov-jobs' },
    el('h2', { id: 'ov-jobs' }, 'Last jobs'), el('p', { class: 'muted' }, 'Loading…'));
  const trouble = el('p', { class: 'error', role: 'alert', hidden: true });
  main.append(el('div', { class: 'page-overview' }, trouble, status, jobs));

  const tags = { status: null, jobs: null };
  let timer = null, alive = true, busy = false;

  async function tick() {
    timer = null;
    if (!alive || busy || document.hidden) return;
    busy = true;
    const [s, j] = await Promise.all([
      call('GET', '/api/v1/status', { ifNoneMatch: tags.status }),
      call('GET', '/api/v1/jobs', { ifNoneMatch: tags.jobs, query: { limit: LAST_JOBS } }),
    ]);
    busy = false;
    if (!alive) return;
    if (s.status === 200) { tags.status = s.etag; status.replaceChildren(...drawStatus(s.data)); }
    if (j.status === 200) { tags.jobs = j.etag; jobs.replaceChildren(...drawJobs(j.data.items)); }
    // a refusal or no answer is said once, above what was last seen (which stays)
    const bad = [s, j].find((r) => r.status !== 200 && r.status !== 304 && r.status !== 401 && !r.aborted);
    trouble.hidden = !bad;
    trouble.textContent = bad ? `${bad.problem.detail || 'The request failed.'} Retrying every few seconds.` : '';
    schedule();
  }
  function schedule() {
    clearTimeout(timer);
    if (alive && !document.hidden) timer = setTimeout(tick, POLL_MS);
  }
  function visibility() {
    if (document.hidden) { clearTimeout(timer); timer = null; } else if (!busy) tick();
  }
  document.addEventListener('visibilitychange', visibility);
  await tick();
  return () => {
    alive = false;
    clearTimeout(timer);
    document.removeEventListener('visibilitychange', visibility);
  };
}

function card(id, title, ...children) {
  return el('section', { class: 'card', 'aria-labelledby': id }, el('h2', { id }, title), ...children);
}

function drawStatus(s) {
  const [word, meaning] = STATES[s.state] || [s.state, ''];
  const dl = el('dl', { class: 'facts' });
  const fact = (k, ...v) => dl.append(el('dt', {}, k), el('dd', {}, ...v));
  fact('Generation', `${s.applied_generation} applied of ${s.desired_generation} desired`);
  fact('Queued jobs', String(s.queued_jobs));
  fact('Postfix', s.postfix.running ? badge('running', 'ok') : badge('not running', 'bad'),
    s.postfix.version ? ` version ${s.postfix.version}` : '',
    el('span', { class: 'muted' }, ` · ${s.postfix.config_directory}`));
  const last = s.last_job;
  if (last && last.status === 'failed' && last.error)
    fact('Last apply', el('span', { class: 'error' }, 'failed: ', last.error.detail || last.error.code, ' '),
      el('a', { href: `/console/jobs#id=${last.id}`, 'data-internal': true }, `job #${last.id}`));
  fact('Node', s.node);
  fact('Managed', s.managed ? 'yes: smtptlsd writes main.cf\'s TLS parameters'
    : 'not yet: main.cf is left as it is until the first settings write');
  const state = card('ov-state', 'State',
    el('p', { class: 'state-line' }, badge(word, s.state), ' ', el('span', {}, meaning)), dl);

  const certs = [s.certificate, s.additional_certificate].filter(Boolean);
  const certCard = card('ov-cert', certs.length > 1 ? 'Certificates' : 'Certificate',
    ...(certs.length ? certs.map((c) => drawCert(c, s.verification))
      : [el('p', { class: 'muted' }, 'No certificate is bound (see TLS settings).')]));

  const drift = card('ov-drift', 'Drift', ...(s.drift.length ? [
    el('p', {}, 'These managed main.cf parameters were edited by hand; the next apply restores ' +
      'the desired value.'),
    el('div', { class: 'table-wrap' }, el('table', { class: 'cards' },
      el('thead', {}, el('tr', {}, el('th', {}, 'Parameter'), el('th', {}, 'Live (main.cf)'),
        el('th', {}, 'Desired'))),
      el('tbody', {}, ...s.drift.map((d) => el('tr', {},
        el('td', { 'data-label': 'Parameter' }, el('code', {}, d.name)),
        el('td', { 'data-label': 'Live (main.cf)' }, value(d.live)),
        el('td', { 'data-label': 'Desired' }, value(d.desired))))))),
  ] : [el('p', { class: 'muted' }, 'None: main.cf\'s managed parameters are as rendered.')]));

  const fleet = drawFleet(s.fleet);

  const warnings = card('ov-warnings', 'Warnings', s.warnings.length
    ? el('ul', { class: 'warnings' }, ...s.warnings.map((w) => el('li', {}, w.detail || w.code)))
    : el('p', { class: 'muted' }, 'None.'));
  return [state, certCard, fleet, drift, warnings].filter(Boolean);
}

// The fleet in one line (status.fleet), with a link to the Fleet page; nothing for a lone node.
function drawFleet(f) {
  if (!f || f.nodes < 2) return null;
  const other = f.nodes - f.in_sync - f.unreachable; // applying, degraded, failed, starting
  const kind = f.unreachable || other ? (f.in_sync ? 'warn' : 'bad') : 'ok';
  return card('ov-fleet', 'Fleet',
    el('p', { class: 'state-line' }, badge(`${f.in_sync} of ${f.nodes} in sync`, kind), ' ',
      el('span', {}, `${f.nodes} nodes share this database: ${f.in_sync} in sync`,
        f.unreachable ? `, ${f.unreachable} unreachable` : '',
        other ? `, ${other} applying or refusing` : '', '.')),
    el('p', {}, el('a', { href: '/console/fleet', 'data-internal': true }, 'Open the Fleet page'),
      ': every node, its state and what it serves.'));
}

// A main.cf value of the drift: null is "not set".
function value(v) {
  return v === null || v === undefined ? el('span', { class: 'muted' }, 'not set') : el('code', {}, v);
}

function drawCert(c, v) {
  const served = (v && v.served_fingerprints) || [];
  let line;
  if (v && v.state === 'checking')
    line = [badge('checking', 'warn'), ' Checking what Postfix serves…'];
  else if (c.served_fingerprint_matches === true)
    line = [badge('served', 'ok'), ' Postfix serves it',
      c.sha256_fingerprint ? [' (fingerprint ', el('code', { class: 'fp' }, c.sha256_fingerprint), ')'] : ''];
  else if (c.served_fingerprint_matches === false)
    line = [badge('not served', 'bad'), served.length
      ? [' Postfix serves ', ...served.flatMap((f, i) => [i ? ', ' : '', el('code', { class: 'fp' }, f)]), ' instead']
      : ' Postfix served no certificate at the last check'];
  else
    line = [badge('not checked', 'muted'), ' Not checked (TLS is off, Postfix is down, or no reload ' +
      'since start-up).'];
  const dl = el('dl', { class: 'facts' });
  const fact = (k, ...x) => dl.append(el('dt', {}, k), el('dd', {}, ...x));
  fact('Name', el('strong', {}, c.name));
  fact('Expires in', daysLeftBadge(c.days_left));
  fact('Postfix', el('span', { class: 'served' }, ...line.flat()));
  if (c.sha256_fingerprint && c.served_fingerprint_matches !== true)
    fact('Fingerprint', el('code', { class: 'fp' }, c.sha256_fingerprint));
  if (v && v.detail) fact('Last check', el('span', { class: 'muted' }, v.detail));
  return el('div', { class: 'cert', dataset: { name: c.name } }, dl);
}

function drawJobs(items) {
  const head = el('h2', { id: 'ov-jobs' }, 'Last jobs');
  const all = el('p', {}, el('a', { href: '/console/jobs', 'data-internal': true }, 'All jobs'));
  if (!items.length) return [head, el('p', { class: 'muted' }, 'No jobs yet.'), all];
  const table = el('table', { class: 'cards' },
    el('thead', {}, el('tr', {}, ...['Job', 'Status', 'Action', 'Target', 'Actor', 'Finished']
      .map((h) => el('th', {}, h)))),
    el('tbody', {}, ...items.map((j) => el('tr', {},
      el('td', { 'data-label': 'Job' },
        el('a', { href: `/console/jobs#id=${j.id}`, 'data-internal': true }, `#${j.id}`)),
      el('td', { 'data-label': 'Status' }, badge(j.status, j.status)),
      el('td', { 'data-label': 'Action' }, j.action),
      el('td', { 'data-label': 'Target' }, el('code', {}, j.target)),
      el('td', { 'data-label': 'Actor' }, j.actor),
      el('td', { 'data-label': 'Finished' }, j.finished_at ? when(j.finished_at) : '…')))));
  return [head, el('div', { class: 'table-wrap' }, table), all];
}
