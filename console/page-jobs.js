// page-jobs.js: the Jobs page: the audit trail of GET /api/v1/jobs, newest first, paged with
// `next` ("Older jobs"), filtered by the API's filters (status, actor, action, target, since) in
// a form whose values are the page's URL (a filtered view can be bookmarked); each job expands
// to who, what, when, the tools' output of a failure and its before/after as a diff.
// /console/jobs#id=N opens job N. The filters ride in the URL's fragment, not its query: the
// daemon refuses query parameters a route does not take (/console/{path} takes none), and a
// fragment never reaches the server.
import { call } from '/console/api.js';
import { el, field, badge, when, showProblem, clearProblem, pageStyle } from '/console/ui.js';

const PAGE = 25;
const STATUSES = ['queued', 'running', 'applied', 'failed'];
const ACTIONS = ['settings.put', 'settings.patch', 'certificates.post', 'certificates.put',
  'certificates.delete', 'certificates.rescan', 'policies.post', 'policies.put', 'policies.patch',
  'policies.delete', 'policies.bulk', 'policies.import', 'state.put'];
const FILTERS = ['status', 'actor', 'action', 'target', 'since'];
// the counts a bulk write records instead of its rows, in this order
const COUNTS = ['added', 'changed', 'unchanged', 'deleted', 'removed', 'adopted', 'total'];

export async function render(main) {
  pageStyle('jobs');
  const root = el('div', { class: 'page-jobs' });
  main.append(root);
  const query = new URLSearchParams(location.hash.slice(1));
  const id = query.get('id');
  if (id) return showOne(root, id);

  const form = filterForm(query);
  const list = el('ul', { class: 'job-list', 'aria-label': 'Jobs' });
  const more = el('button', { type: 'button', class: 'secondary', hidden: true }, 'Older jobs');
  const summary = el('p', { class: 'muted', role: 'status', 'aria-live': 'polite' });
  root.append(form, summary, list, el('div', { class: 'actions' }, more));

  let next = null, shown = 0, my = 0;
  async function load(append) {
    const mine = ++my;
    const filters = filtersOf(form);
    more.disabled = true;
    const r = await call('GET', '/api/v1/jobs', { query: { ...filters, limit: PAGE, after: append ? next : null } });
    if (mine !== my || r.aborted) return;
    more.disabled = false;
    if (r.status !== 200) {
      if (r.status !== 401) showProblem(form, r.problem);
      return;
    }
    clearProblem(form);
    if (!append) { list.replaceChildren(); shown = 0; }
    list.append(...r.data.items.map((j) => el('li', {}, jobDetails(j))));
    shown += r.data.items.length;
    next = r.data.next;
    more.hidden = !next;
    const filtered = Object.keys(filters).length > 0;
    summary.textContent = shown === 0 ? (filtered ? 'No job matches these filters.' : 'No jobs yet.')
      : `${shown} job${shown === 1 ? '' : 's'} shown${next ? '; older ones follow' : ''}${filtered ? ' (filtered)' : ''}.`;
  }
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const q = new URLSearchParams(filtersOf(form)).toString();
    history.pushState(null, '', `/console/jobs${q ? `#${q}` : ''}`);
    load(false);
  });
  form.querySelector('button.clear').addEventListener('click', () => {
    for (const c of form.querySelectorAll('input, select')) c.value = '';
    history.pushState(null, '', '/console/jobs');
    load(false);
  });
  more.addEventListener('click', () => load(true));
  await load(false);
}

// /console/jobs#id=N: that job alone, open.
async function showOne(main, id) {
  const back = el('p', {}, el('a', { href: '/console/jobs', 'data-internal': true }, 'All jobs'));
  const r = await call('GET', `/api/v1/jobs/${encodeURIComponent(id)}`);
  if (r.status === 200) {
    const d = jobDetails(r.data);
    d.open = true;
    main.append(back, el('ul', { class: 'job-list', 'aria-label': 'Jobs' }, el('li', {}, d)));
  } else if (r.status !== 401 && !r.aborted) {
    main.append(el('p', { class: 'error', role: 'alert' },
      r.status === 404 ? `There is no job ${id}.` : r.problem.detail || 'The job could not be read.'), back);
  }
}

function filterForm(query) {
  const select = (name, values, anyText) => {
    const s = el('select', { name, 'data-read-ok': '' }, el('option', { value: '' }, anyText),
      ...values.map((v) => el('option', { value: v }, v)));
    s.value = values.includes(query.get(name)) ? query.get(name) : '';
    return s;
  };
  const input = (name, attrs = {}) => el('input', { name, value: query.get(name) || '', 'data-read-ok': '', ...attrs });
  // the API takes RFC 3339; the control shows the UTC date and time to the minute
  const sinceValue = (query.get('since') || '').match(/^(\d{4}-\d\d-\d\dT\d\d:\d\d)/);
  const since = el('input', { name: 'since', type: 'datetime-local', 'data-read-ok': '' });
  if (sinceValue) since.value = sinceValue[1];
  const form = el('form', { class: 'filters', role: 'search', 'aria-label': 'Filter jobs' },
    field('Status', select('status', STATUSES, 'any status'), { field: 'status' }),
    field('Actor', input('actor', { placeholder: 'token name, cli, acme-watch', autocomplete: 'off' }),
      { field: 'actor' }),
    field('Action', select('action', ACTIONS, 'any action'), { field: 'action' }),
    field('Target', input('target', { placeholder: 'settings, a certificate, a domain', autocomplete: 'off' }),
      { field: 'target' }),
    field('Since (UTC)', since, { field: 'since' }),
    el('div', { class: 'actions' },
      el('button', { type: 'submit' }, 'Filter'),
      el('button', { type: 'button', class: 'secondary clear' }, 'Clear')));
  return form;
}

// {status, actor, ...} of the form's non-empty controls, as the API takes them.
function filtersOf(form) {
  const out = {};
  for (const name of FILTERS) {
    let v = form.elements[name].value.trim();
    if (!v) continue;
    if (name === 'since') v = `${v.length === 16 ? `${v}:00` : v}Z`;
    out[name] = v;
  }
  return out;
}

const yesNo = (b, yes, no) => b === null || b === undefined ? el('span', { class: 'muted' }, 'not checked')
  : b ? yes : no;

function jobDetails(j) {
  const d = el('details', { class: `job ${j.status}`, dataset: { id: j.id } },
    el('summary', {},
      el('span', { class: 'job-id' }, `#${j.id}`), ' ',
      badge(j.status, j.status), ' ',
      el('span', { class: 'job-what' }, el('strong', {}, j.action), ' ', el('code', {}, j.target)), ' ',
      el('span', { class: 'job-who muted' }, `by ${j.actor} · ${when(j.created_at)}`)));
  const dl = el('dl', { class: 'facts' });
  const fact = (k, ...v) => dl.append(el('dt', {}, k), el('dd', {}, ...v));
  fact('Actor', j.actor);
  fact('Action', j.action);
  fact('Target', el('code', {}, j.target));
  if (j.location) fact('Resource', el('code', {}, j.location));
  fact('Created', when(j.created_at));
  if (j.started_at || !j.finished_at) // the list leaves started_at out
    fact('Started', j.started_at ? when(j.started_at) : el('span', { class: 'muted' }, 'not yet'));
  fact('Finished', j.finished_at ? when(j.finished_at) : el('span', { class: 'muted' }, 'not yet'));
  fact('Generation', j.generation !== null ? String(j.generation)
    : el('span', { class: 'muted' }, j.status === 'applied' ? 'none: the job changed nothing' : 'none'));
  fact('postmap', j.postmap ? 'ran' : 'did not run');
  fact('Reload', j.reload ? 'postfix reload ran' : 'no reload');
  fact('Verified', yesNo(j.verified, badge('Postfix serves the bound certificate', 'ok'),
    badge('Postfix did not serve the bound certificate', 'bad')));
  fact('Warnings', j.warnings.length
    ? el('ul', { class: 'warnings' }, ...j.warnings.map((w) => el('li', {}, w.detail || w.code)))
    : el('span', { class: 'muted' }, 'none'));
  const body = el('div', { class: 'job-body' }, dl);
  if (j.error) body.append(errorBox(j.error));
  if (j.output) body.append(el('h3', {}, 'What the tools printed'), el('pre', { class: 'output' }, j.output));
  body.append(el('h3', {}, 'Before and after'), change(j));
  body.append(el('p', {}, el('a', { href: `/console/jobs#id=${j.id}`, 'data-internal': true }, `Link to job ${j.id}`)));
  d.append(body);
  return d;
}

function errorBox(e) {
  const box = el('div', { class: 'notice bad job-error' }, el('p', {}, el('strong', {}, 'Failed: '), e.detail || e.code));
  if (e.field) box.append(el('p', {}, 'Field: ', el('code', {}, e.field)));
  for (const f of e.errors || []) box.append(el('p', {}, f.field ? [el('code', {}, f.field), ': '] : '', f.detail || f.code));
  return box;
}

const text = (v) => v === undefined ? '' : typeof v === 'string' ? v : JSON.stringify(v);

// The job's before/after: the counts of a bulk write; else the changed fields (highlighted, before
// and after side by side) with the unchanged ones tucked away; a creation or deletion as the one
// side there is.
function change(j) {
  const { before, after } = j;
  const counted = (o) => o && typeof o === 'object' && !Array.isArray(o) &&
    Object.keys(o).length > 0 && Object.values(o).every((v) => typeof v === 'number');
  const failed = j.status === 'failed';
  if (j.action === 'policies.bulk' || (!before && counted(after))) {
    if (!counted(after)) return el('p', { class: 'muted' }, failed ? 'Nothing changed: the job failed.' : 'No counts recorded.');
    const keys = Object.keys(after).sort((a, b) => rank(a) - rank(b));
    return el('dl', { class: 'facts counts' }, ...keys.flatMap((k) => [el('dt', {}, k), el('dd', {}, String(after[k]))]));
  }
  const obj = (o) => o && typeof o === 'object' && !Array.isArray(o) ? o : o === null ? {} : { value: o };
  const b = obj(before), a = obj(after);
  if (failed || after === null || before === null) {
    const side = failed || after === null ? b : a;
    const note = failed ? 'Nothing changed: the job failed.'
      : before === null && after === null ? 'Nothing recorded.'
      : before === null ? 'Created (there was nothing before):' : 'Deleted; it was:';
    const keys = Object.keys(side);
    if (!keys.length) return el('p', { class: 'muted' }, note);
    const table = fieldTable(['Field', 'Value'], keys.map((k) => el('tr', {},
      el('td', { 'data-label': 'Field' }, el('code', {}, k)), el('td', { 'data-label': 'Value' }, cell(side, k)))));
    return el('div', { class: 'change' }, el('p', { class: 'muted' }, note),
      failed ? el('details', {}, el('summary', {}, 'The target as it stayed'), table) : table);
  }
  const keys = [...new Set([...Object.keys(b), ...Object.keys(a)])];
  const changed = keys.filter((k) => text(b[k]) !== text(a[k]));
  const same = keys.filter((k) => !changed.includes(k));
  const row = (k, isChanged) => el('tr', { class: isChanged ? 'changed' : null },
    el('td', { 'data-label': 'Field' }, el('code', {}, k), isChanged ? el('span', { class: 'tag' }, ' changed') : ''),
    el('td', { 'data-label': 'Before' }, cell(b, k)),
    el('td', { 'data-label': 'After' }, cell(a, k)));
  const out = el('div', { class: 'change' }, el('p', { class: 'muted' },
    changed.length ? `${changed.length} field${changed.length === 1 ? '' : 's'} changed.` : 'No field changed.'));
  if (changed.length) out.append(fieldTable(['Field', 'Before', 'After'], changed.map((k) => row(k, true))));
  if (same.length)
    out.append(el('details', { class: 'unchanged' },
      el('summary', {}, `${same.length} unchanged field${same.length === 1 ? '' : 's'}`),
      fieldTable(['Field', 'Before', 'After'], same.map((k) => row(k, false)))));
  return out;
}

function fieldTable(heads, rows) {
  return el('div', { class: 'table-wrap' }, el('table', { class: 'cards diff-table' },
    el('thead', {}, el('tr', {}, ...heads.map((h) => el('th', {}, h)))), el('tbody', {}, ...rows)));
}

function cell(o, k) {
  if (!(k in o)) return el('span', { class: 'muted' }, '—');
  const v = o[k];
  if (v === null) return el('span', { class: 'muted' }, 'null');
  return el('code', {}, text(v));
}

function rank(k) {
  const i = COUNTS.indexOf(k);
  return i < 0 ? COUNTS.length : i;
}
