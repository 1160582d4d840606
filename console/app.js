// app.js: the console's shell: sign-in, navigation (paths under /console/), and the views.
import { call } from '/console/api.js';

const $ = (id) => document.getElementById(id);
const VIEWS = {
  overview: { title: 'Overview', render: overview },
  settings: { title: 'TLS settings' },
  certificates: { title: 'Certificates' },
  policies: { title: 'TLS policy domains' },
  jobs: { title: 'Jobs' },
  tokens: { title: 'Tokens' },
};
let stopView = null;

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  for (const c of children) e.append(c);
  return e;
}

function showSignin(message) {
  if (stopView) stopView();
  $('shell').hidden = true;
  $('signout').hidden = true;
  $('signin').hidden = false;
  const err = $('signin-error');
  err.hidden = !message;
  err.textContent = message || '';
  $('token').focus();
}

function viewFromPath() {
  const m = location.pathname.match(/^\/console\/([a-z]+)$/);
  return m && VIEWS[m[1]] ? m[1] : 'overview';
}

function showShell() {
  $('signin').hidden = true;
  $('shell').hidden = false;
  $('signout').hidden = false;
  route();
}

function route() {
  if (stopView) stopView();
  stopView = null;
  const name = viewFromPath();
  for (const a of document.querySelectorAll('nav a'))
    if (a.dataset.view === name) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  const main = $('main');
  main.replaceChildren(el('h1', {}, VIEWS[name].title));
  document.title = `${VIEWS[name].title} - smtptlsd`;
  if (VIEWS[name].render) stopView = VIEWS[name].render(main);
  else main.append(el('p', { class: 'muted' }, 'This page is not built yet.'));
}

// Overview: GET /api/v1/status every 5 s, conditional (If-None-Match) so an unchanged status
// costs a 304; rendered only when it changed.
function overview(main) {
  const box = el('div', { 'aria-live': 'polite' }, el('p', { class: 'muted' }, 'Loading…'));
  main.append(box);
  let etag = null, timer = null, alive = true;
  async function tick() {
    const r = await call('GET', '/api/v1/status', { etag });
    if (!alive) return;
    if (r.status === 401) return showSignin('Your session has ended; sign in again.');
    if (r.status === 200) { etag = r.etag; box.replaceChildren(statusFacts(r.data)); }
    else if (r.status !== 304) box.replaceChildren(el('p', { class: 'error' }, r.problem.detail || 'Error'));
    timer = setTimeout(tick, 5000);
  }
  tick();
  return () => { alive = false; clearTimeout(timer); };
}

function statusFacts(s) {
  const dl = el('dl', { class: 'facts' });
  const fact = (k, v) => dl.append(el('dt', {}, k), el('dd', {}, v));
  fact('State', el('span', { class: `badge ${s.state}` }, s.state.replace('_', ' ')));
  fact('Generation', `${s.applied_generation} applied of ${s.desired_generation}`);
  fact('Queued jobs', String(s.queued_jobs));
  const c = s.certificate;
  fact('Certificate', c ? `${c.name}${c.days_left != null ? ` (${c.days_left} days left)` : ''}` : 'none bound');
  const served = { true: 'yes, the bound certificate', false: 'no: it serves another certificate', null: 'not checked' };
  if (c) fact('Served by Postfix', served[c.served_fingerprint_matches]);
  if (s.verification) fact('Verifier', `${s.verification.state}${s.verification.detail ? `: ${s.verification.detail}` : ''}`);
  fact('Postfix', `${s.postfix.running ? 'running' : 'not running'}${s.postfix.version ? `, ${s.postfix.version}` : ''}`);
  fact('Drift', s.drift.length ? s.drift.map((d) => d.parameter || d.name || JSON.stringify(d)).join(', ') : 'none');
  const frag = document.createDocumentFragment();
  frag.append(dl);
  if (s.warnings.length) {
    frag.append(el('h2', {}, 'Warnings'));
    frag.append(el('ul', { class: 'warnings' }, ...s.warnings.map((w) => el('li', {}, w.detail || w.code || String(w)))));
  }
  if (s.last_job) frag.append(el('p', { class: 'muted' }, `Last job: ${s.last_job.action || ''} ${s.last_job.status || ''}`));
  return frag;
}

async function signin(ev) {
  ev.preventDefault();
  const token = $('token').value.trim();
  if (!token) return showSignin('Enter an API token.');
  const button = ev.submitter || $('signin-form').querySelector('button');
  button.disabled = true;
  const r = await call('POST', '/api/v1/session', { body: { token } });
  button.disabled = false;
  $('token').value = '';
  if (r.status >= 200 && r.status < 300) return showShell();
  if (r.status === 401) return showSignin('That token is not valid (unknown, revoked or mistyped).');
  if (r.status === 404 || r.status === 405) return showSignin('This daemon does not offer console sign-in.');
  showSignin(r.problem.detail || `Sign-in failed (${r.status}).`);
}

async function signout() {
  await call('DELETE', '/api/v1/session');
  history.pushState(null, '', '/');
  showSignin();
}

document.addEventListener('click', (ev) => {
  const a = ev.target.closest('nav a');
  if (!a || ev.ctrlKey || ev.metaKey || ev.shiftKey) return;
  ev.preventDefault();
  history.pushState(null, '', a.getAttribute('href'));
  route();
  $('main').focus();
});
window.addEventListener('popstate', () => { if (!$('shell').hidden) route(); });
$('signin-form').addEventListener('submit', signin);
$('signout').addEventListener('click', signout);

// A session cookie may already be there (HttpOnly: only the server can tell).
const who = await call('GET', '/api/v1/session');
if (who.status === 200) showShell(); else showSignin();
performance.mark('console-ready');
