// app.js: the console's shell: who is signed in, the sign-in form, navigation between the pages
// (paths under /console/, history API), and loading each page's module (console/page-<name>.js)
// when it is first shown. A page module exports render(main, ctx) and may return a function that
// stops it (timers, requests) when another page is shown.
import { call, onSessionEnded } from '/console/api.js';
import { el } from '/console/ui.js';

const $ = (id) => document.getElementById(id);
const PAGES = {
  overview: 'Overview',
  settings: 'TLS settings',
  certificates: 'Certificates',
  policies: 'TLS policy domains',
  jobs: 'Jobs',
  fleet: 'Fleet',
  tokens: 'Tokens',
};
// ctx.session: {token_name, scope, idle_timeout} of GET /api/v1/session
const ctx = { session: null, navigate };
let stopPage = null;
let generation = 0; // of route(): a slow module load must not draw over a later page

function ready(yes) { document.documentElement.dataset.ready = yes ? 'yes' : 'no'; }

function showSignin(message) {
  if (stopPage) stopPage();
  stopPage = null;
  ctx.session = null;
  $('shell').hidden = true;
  $('who').hidden = true;
  $('signin').hidden = false;
  const err = $('signin-error');
  err.hidden = !message;
  err.textContent = message || '';
  $('token').focus();
  ready(true);
}

function pageFromPath() {
  const m = location.pathname.match(/^\/console\/([a-z]+)\/?$/);
  return m && PAGES[m[1]] ? m[1] : 'overview';
}

function showShell(session) {
  ctx.session = session;
  $('signin').hidden = true;
  $('shell').hidden = false;
  $('who').hidden = false;
  $('who-name').textContent = `${session.token_name} (${session.scope})`;
  $('nav-tokens').hidden = session.scope !== 'admin';
  document.documentElement.dataset.scope = session.scope;
  route();
}

async function route() {
  const my = ++generation;
  if (stopPage) stopPage();
  stopPage = null;
  ready(false);
  const name = pageFromPath();
  for (const a of document.querySelectorAll('nav a'))
    if (a.dataset.page === name) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  const main = $('main');
  const title = el('h1', {}, PAGES[name]);
  main.replaceChildren(title);
  document.title = `${PAGES[name]} · smtptlsd`;
  try {
    const page = await import(`/console/page-${name}.js`);
    if (my !== generation) return;
    const stop = await page.render(main, ctx);
    if (my !== generation) { if (stop) stop(); return; }
    stopPage = stop || null;
  } catch (e) {
    if (my !== generation) return;
    main.append(el('p', { class: 'error', role: 'alert' }, `This page failed to load: ${e.message}`));
    console.error(e); // a fault of the console itself: the browser tests count these
  }
  ready(true);
}

// Another page of the console, as a link would (pages call it after a save that moves on).
function navigate(path) {
  history.pushState(null, '', path);
  route();
  $('main').focus();
}

async function signin(ev) {
  ev.preventDefault();
  const token = $('token').value.trim();
  if (!token) return showSignin('Enter an API token.');
  const button = $('signin-form').querySelector('button');
  button.disabled = true;
  const r = await call('POST', '/api/v1/session', { body: { token } });
  $('token').value = '';
  button.disabled = false;
  if (r.status === 204) {
    const who = await call('GET', '/api/v1/session');
    if (who.status === 200) return showShell(who.data);
    return showSignin(who.problem.detail);
  }
  if (r.status === 401) return showSignin('That token is not valid: unknown, revoked or mistyped.');
  showSignin(r.problem.detail || `Sign-in failed (${r.status}).`);
}

async function signout() {
  await call('DELETE', '/api/v1/session');
  history.pushState(null, '', '/');
  showSignin('You have signed out.');
}

document.addEventListener('click', (ev) => {
  const a = ev.target.closest('a[data-page], a[data-internal]');
  if (!a || ev.ctrlKey || ev.metaKey || ev.shiftKey || ev.button !== 0) return;
  ev.preventDefault();
  navigate(a.getAttribute('href'));
});
window.addEventListener('popstate', () => { if (ctx.session) route(); });
$('signin-form').addEventListener('submit', signin);
$('signout').addEventListener('click', signout);
onSessionEnded(() => { if (ctx.session) showSignin('Your session has ended (idle too long, signed out elsewhere, or the token was revoked). Sign in again.'); });

// The session cookie is HttpOnly: only the server can say whether there is one.
const who = await call('GET', '/api/v1/session');
if (who.status === 200) showShell(who.data);
else showSignin();
