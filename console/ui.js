// ui.js: the console's building blocks, shared by every page: elements, refusals shown next to
// their field, notices, dialogs, badges, dates. No page logic here.

// el('p', {class: 'muted'}, 'text', child...): attributes; `on*` functions become listeners;
// false/null/undefined attributes and children are left out.
export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === false || v === null || v === undefined) continue;
    if (k.startsWith('on') && typeof v === 'function') e.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(e.dataset, v);
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined && c !== false) e.append(c);
  return e;
}

// A labelled control: field('TLS mode', select, {field: '/mode', hint: '...'}). The control gets
// an id, its label, and data-field (the JSON pointer the API names in a refusal).
let ids = 0;
export function field(label, control, { field: pointer, hint } = {}) {
  control.id ||= `f${++ids}`;
  if (pointer) control.dataset.field = pointer;
  const wrap = el('div', { class: 'field' }, el('label', { for: control.id }, label), control);
  if (hint) {
    const h = el('p', { class: 'hint', id: `${control.id}-hint` }, hint);
    control.setAttribute('aria-describedby', h.id);
    wrap.append(h);
  }
  return wrap;
}

// Clears what showProblem() put in a form.
export function clearProblem(root) {
  for (const e of root.querySelectorAll('.field-error, .form-error')) e.remove();
  for (const e of root.querySelectorAll('[aria-invalid]')) e.removeAttribute('aria-invalid');
}

// Shows a refusal ({code, detail, field, errors}) in root: each error next to the control whose
// data-field is its pointer (or the nearest parent pointer: /items/3/level -> /items/3), the rest
// at the top of root. Returns the first control it marked (focused), or null.
export function showProblem(root, problem, { prefix = '' } = {}) {
  clearProblem(root);
  const list = problem.errors && problem.errors.length ? problem.errors : [problem];
  let first = null;
  const general = [];
  for (const p of list) {
    let control = null;
    if (p.field) {
      let ptr = prefix + p.field;
      while (ptr && !control) {
        control = root.querySelector(`[data-field="${CSS.escape(ptr)}"]`);
        ptr = ptr.slice(0, Math.max(ptr.lastIndexOf('/'), 0));
      }
    }
    if (!control || control.hidden || control.closest('[hidden]')) { general.push(p); continue; }
    const msg = el('p', { class: 'field-error', role: 'alert', id: `${control.id}-error` }, p.detail || p.code);
    control.setAttribute('aria-invalid', 'true');
    control.setAttribute('aria-errormessage', msg.id);
    (control.closest('.field') || control).after(msg);
    first ||= control;
  }
  if (general.length) {
    const box = el('div', { class: 'form-error', role: 'alert' },
      ...general.map((p) => el('p', {}, p.detail || p.code || 'The request failed.')));
    root.prepend(box);
  }
  if (first) first.focus();
  return first;
}

// A passing message at the top of root (success, progress): replaced by the next one.
export function notice(root, text, kind = 'info') {
  let n = root.querySelector(':scope > .notice');
  if (!n) { n = el('div', { class: 'notice', role: 'status', 'aria-live': 'polite' }); root.prepend(n); }
  n.className = `notice ${kind}`;
  n.replaceChildren(...(Array.isArray(text) ? text : [text]));
  return n;
}

// A modal dialog (the native <dialog>: focus kept inside, Escape closes). Resolves to what
// close(value) was given, or null when dismissed.
export function dialog(title, body, { wide = false } = {}) {
  const d = el('dialog', { class: wide ? 'wide' : null, 'aria-labelledby': `dlg${++ids}` },
    el('h2', { id: `dlg${ids}` }, title), body);
  let value = null;
  d.finish = (v) => { value = v; d.close(); };
  d.done = new Promise((ok) => d.addEventListener('close', () => { d.remove(); ok(value); }));
  document.body.append(d);
  d.showModal();
  return d;
}

export function badge(text, kind) {
  return el('span', { class: `badge ${kind || ''}` }, text);
}

// "2026-11-22T10:00:00Z" -> "2026-11-22 10:00 UTC" (the daemon's clock is UTC; so is this).
export function when(ts) {
  if (!ts) return '';
  return ts.replace('T', ' ').replace(/:\d\dZ$/, ' UTC');
}

export function daysLeftBadge(days) {
  if (days === null || days === undefined) return badge('unknown', 'muted');
  const kind = days < 0 ? 'bad' : days <= 14 ? 'bad' : days <= 30 ? 'warn' : 'ok';
  return badge(days < 0 ? `expired ${-days} d ago` : `${days} days`, kind);
}

// Why a control is disabled, as its title and beside it (read-scope sessions).
export const READ_ONLY_REASON = 'Your token has the read scope: you can see everything and change nothing.';
export function disableForReadOnly(root, session) {
  if (session.scope !== 'read') return;
  for (const c of root.querySelectorAll('button[data-write], input, select, textarea')) {
    if (c.dataset.readOk !== undefined) continue;
    c.disabled = true;
    c.title = READ_ONLY_REASON;
  }
}

// A stylesheet of a page (console/page-<name>.css), added once.
export function pageStyle(name) {
  const href = `/console/page-${name}.css`;
  if (document.querySelector(`link[href="${href}"]`)) return;
  document.head.append(el('link', { rel: 'stylesheet', href }));
}
