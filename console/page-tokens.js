// page-tokens.js: the Tokens page (admin scope): the API tokens (GET /api/v1/tokens, the revoked
// ones too on demand: ?include_revoked=true),
// adding one (POST: its secret shown once, with a Copy button) and revoking one (DELETE, after a
// confirmation that says when it ends this very session). Runs in the page; other scopes get a
// sentence instead (the API would refuse them with 403 anyway).
import { call } from '/console/api.js';
import { el, field, showProblem, clearProblem, notice, dialog, badge, when, pageStyle } from '/console/ui.js';

// What each scope may do (the API's scopes: docs/api.md, "Tokens").
const SCOPES = [
  ['read', 'sees everything (every GET, /metrics), changes nothing'],
  ['write', 'also changes the TLS settings, certificates and TLS policies not managed elsewhere'],
  ['admin', 'also manages tokens and managed policy rows'],
];

export async function render(main, ctx) {
  pageStyle('tokens');
  const me = ctx.session;
  if (me.scope !== 'admin') {
    main.append(el('p', { class: 'notice', role: 'status' },
      `Tokens are managed with an admin token. You are signed in as ${me.token_name}, whose scope is ` +
      `${me.scope}: ask an administrator, or run smtptlsd token list on the mail host.`));
    return;
  }

  const status = el('div', { class: 'tokens-status' });
  const secretBox = el('section', { class: 'card token-secret', 'aria-labelledby': 'token-secret-title', hidden: true });
  const list = el('div', { 'aria-live': 'polite' }, el('p', { class: 'muted' }, 'Loading…'));
  const showRevoked = el('input', { type: 'checkbox', id: 'tokens-revoked', onchange: () => load() });
  main.append(status, secretBox, addForm(), el('h2', {}, 'API tokens'),
    el('div', { class: 'toolbar' }, el('label', { class: 'inline', for: showRevoked.id }, showRevoked, 'Show revoked tokens')),
    list);

  async function load() {
    const r = await call('GET', '/api/v1/tokens', { query: { include_revoked: showRevoked.checked ? 'true' : '' } });
    if (r.aborted || r.status === 401) return;
    if (r.status !== 200) {
      list.replaceChildren(el('p', { class: 'error', role: 'alert' }, r.problem.detail));
      return;
    }
    list.replaceChildren(table(r.data.items));
  }

  function table(items) {
    if (!items.length) return el('p', { class: 'muted' }, 'No token.');
    const rows = items.map((t) => {
      const cell = (label, ...c) => el('td', { 'data-label': label }, ...c);
      if (t.revoked_at)
        return el('tr', { class: 'revoked', dataset: { revokedToken: t.name } },
          cell('Name', el('span', { class: 'mono' }, t.name)), cell('Scope', t.scope),
          cell('Created', when(t.created_at)),
          cell('Last used', t.last_used_at ? when(t.last_used_at) : el('span', { class: 'muted' }, 'never')),
          cell('Actions', badge(`revoked ${when(t.revoked_at)}`, 'muted')));
      const mine = t.name === me.token_name;
      return el('tr', { dataset: { token: t.name } },
        cell('Name', el('span', {}, el('span', { class: 'mono' }, t.name), mine ? [' ', badge('this session', 'ok')] : null)),
        cell('Scope', t.scope),
        cell('Created', when(t.created_at)),
        cell('Last used', t.last_used_at ? when(t.last_used_at) : el('span', { class: 'muted' }, 'never')),
        cell('Actions', el('button', {
          type: 'button', class: 'danger', 'data-write': true,
          'aria-label': `Revoke ${t.name}`, onclick: () => revoke(t.name, mine),
        }, 'Revoke')));
    });
    return el('div', { class: 'table-wrap' }, el('table', { class: 'cards tokens' },
      el('thead', {}, el('tr', {}, ...['Name', 'Scope', 'Created', 'Last used', 'Actions'].map((h) => el('th', { scope: 'col' }, h)))),
      el('tbody', {}, rows)));
  }

  function addForm() {
    const name = el('input', {
      name: 'name', autocomplete: 'off', spellcheck: 'false', required: true, maxlength: 64,
      pattern: '[a-z0-9][a-z0-9._-]{0,63}',
    });
    const scope = el('select', { name: 'scope' }, SCOPES.map(([v]) => el('option', { value: v }, v)));
    const scopeField = field('Scope', scope, { field: '/scope', hint: 'What requests with the token may do; give each program the smallest scope that does its job:' });
    scopeField.append(el('ul', { class: 'hint scopes' }, SCOPES.map(([v, text]) => el('li', {}, el('strong', {}, v), `: ${text}`))));
    scope.setAttribute('aria-describedby', `${scope.id}-hint ${scope.id}-scopes`);
    scopeField.lastChild.id = `${scope.id}-scopes`;
    const button = el('button', { type: 'submit', 'data-write': true }, 'Add');
    const form = el('form', { class: 'token-add', novalidate: true },
      field('Name', name, { field: '/name', hint: '1 to 64 characters of a-z, 0-9, dot, dash and underscore, starting with a letter or digit; e.g. ci or monitoring.' }),
      scopeField,
      el('div', { class: 'actions' }, button));
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      clearProblem(form);
      button.disabled = true;
      const r = await call('POST', '/api/v1/tokens', { body: { name: name.value.trim(), scope: scope.value } });
      button.disabled = false;
      if (r.aborted || r.status === 401) return;
      if (r.status !== 201) { showProblem(form, r.problem); return; }
      name.value = '';
      showSecret(r.data);
      load();
    });
    return el('section', { class: 'card', 'aria-labelledby': 'token-add-title' },
      el('h2', { id: 'token-add-title' }, 'Add a token'), form);
  }

  // The secret of a new token: shown here once, never stored by the page (a reload forgets it).
  function showSecret(t) {
    const value = el('input', { class: 'mono', readonly: true, value: t.token, spellcheck: 'false', autocomplete: 'off', 'data-read-ok': true });
    const said = el('p', { class: 'copy-status', role: 'status', 'aria-live': 'polite' });
    const copy = el('button', { type: 'button', class: 'secondary', onclick: async () => {
      try {
        if (!navigator.clipboard) throw new Error('no clipboard');
        await navigator.clipboard.writeText(value.value);
        said.textContent = 'Copied to the clipboard.';
      } catch (e) {
        // No clipboard (a page on plain http from another host, or permission refused): the
        // text is selected, ready for Ctrl+C.
        value.focus();
        value.select();
        said.textContent = 'The token is selected: press Ctrl+C (or ⌘C) to copy it.';
      }
    } }, 'Copy');
    const done = el('button', { type: 'button', onclick: () => {
      value.value = '';
      secretBox.replaceChildren();
      secretBox.hidden = true;
      notice(status, `Token ${t.name} (${t.scope}) is active. Its secret is no longer shown anywhere.`, 'ok');
    } }, 'Done');
    secretBox.replaceChildren(
      el('h2', { id: 'token-secret-title' }, `New token ${t.name} (${t.scope})`),
      el('p', { class: 'callout' }, 'This is shown only now. Copy the token and keep it somewhere safe: ' +
        'only its hash is stored, so it cannot be shown again. If it is lost, revoke it and add another.'),
      field(`Secret of ${t.name}`, value),
      el('div', { class: 'actions' }, copy, done), said);
    secretBox.hidden = false;
    status.replaceChildren();
    value.focus();
    value.select();
  }

  async function revoke(name, mine) {
    const body = el('div', {},
      el('p', {}, `Programs using the token ${name} are refused (401) from now on, and every console session signed in with it ends.`),
      mine ? el('p', { class: 'callout' }, `This is the token of your current session: revoking it ends this session, and you will have to sign in again with another token.`) : null);
    const yes = el('button', { type: 'button', class: 'danger', 'data-write': true }, mine ? 'Revoke and sign out' : 'Revoke');
    const no = el('button', { type: 'button', class: 'secondary' }, 'Cancel');
    body.append(el('div', { class: 'actions' }, yes, no));
    const d = dialog(`Revoke the token ${name}?`, body);
    yes.addEventListener('click', () => d.finish(true));
    no.addEventListener('click', () => d.finish(false));
    no.focus();
    if (!(await d.done)) return;
    const r = await call('DELETE', `/api/v1/tokens/${encodeURIComponent(name)}`);
    if (r.aborted || r.status === 401) return;
    if (r.status !== 204) { notice(status, r.problem.detail, 'bad'); return; }
    // With our own token gone, the next request gets 401 and the shell shows the sign-in form.
    if (!mine) notice(status, `Token ${name} is revoked: requests with it are refused and its sessions have ended.`, 'ok');
    await load();
  }

  await load();
}
