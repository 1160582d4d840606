// page-settings.js: the TLS settings page (the seed's global card) on GET/PUT /api/v1/settings:
// the TLS mode with its advice, the "SMTP TLS certificate" picker (an autocomplete over
// GET /api/v1/certificates?q=, hidden while TLS is disabled), the Advanced part (per-side
// overrides, profile, auth-only, Received: header, log level, outbound CA, a second certificate),
// the submission services in master.cf (587 STARTTLS, 465 implicit TLS: left alone, enabled or
// disabled, under a service name), Preview (the dry-run plan with master.cf's diff) and Save (PUT with If-Match and ?wait=0: the job followed to its end,
// then what Postfix serves). Runs in the page; marks performance 'settings-usable' once loaded.
import { call, followJob } from '/console/api.js';
import {
  el, field, showProblem, clearProblem, notice, badge, when, daysLeftBadge,
  disableForReadOnly, READ_ONLY_REASON, pageStyle,
} from '/console/ui.js';

// The seed's three modes, with its advice ("Use when").
const MODES = [
  { value: 'none', label: 'Disabled', verdict: 'Not for the Internet.',
    advice: 'No STARTTLS is advertised: every message travels in cleartext. For test or isolated '
      + 'networks only.' },
  { value: 'may', label: 'Opportunistic TLS (may) — Recommended', verdict: 'Recommended.',
    advice: 'The standard for the public Internet. STARTTLS is advertised; peers that support it '
      + 'use it, peers that don\'t fall back to cleartext, so no mail is lost.' },
  { value: 'encrypt', label: 'Mandatory TLS (encrypt) — not recommended for Internet-facing servers',
    verdict: 'Not recommended for Internet-facing servers.',
    advice: 'For closed networks where every peer is known to support TLS. On the open Internet this '
      + 'drops mail from any sender that can\'t negotiate STARTTLS (a long tail of misconfigured '
      + 'small senders) and defers mail to every MX without STARTTLS. To require TLS for a few '
      + 'destinations only, use TLS policy domains.' },
];
const SIDE_MODES = [
  ['', 'Follow the TLS mode'], ['none', 'Disabled'], ['may', 'Opportunistic (may)'],
  ['encrypt', 'Mandatory (encrypt)'],
];
const PROFILES = {
  modern: 'Modern: mandatory TLS 1.2 or 1.3 with high-grade ciphers only.',
  intermediate: 'Intermediate (default): mandatory TLS 1.2 or 1.3, Postfix\'s medium grade without '
    + 'anonymous, null and broken ciphers.',
  legacy: 'Legacy: Postfix\'s own defaults; the only profile whose mandatory TLS still accepts '
    + 'TLS 1.0 and 1.1 (where the system\'s OpenSSL allows them at all).',
};
const LOGLEVELS = [
  '0 — off', '1 — handshake summary (recommended)', '2 — negotiation details (debugging)',
  '3 — hex dump of the handshake (not in production)',
  '4 — hex dump of everything after STARTTLS (not in production)',
];
// The client-facing services in master.cf (settings submission, submissions).
const SERVICES = [
  { key: 'submission', title: 'Submission, port 587 (STARTTLS required)',
    hint: 'Mail clients send here after STARTTLS; AUTH is offered only once TLS is up. '
      + 'postconf -M/-P on master.cf: syslog_name, smtpd_tls_security_level=encrypt, '
      + 'smtpd_tls_auth_only, smtpd_sasl_auth_enable.' },
  { key: 'submissions', title: 'Submissions, port 465 (implicit TLS, preferred by RFC 8314)',
    hint: 'TLS from the first byte (smtpd_tls_wrappermode), SASL on. Both may run.' },
];
const SERVICE_STATES = [
  ['', 'Leave master.cf as it is'], ['on', 'Enabled'], ['off', 'Disabled (commented out)'],
];
const TYPES = { imported: 'Imported', acme: 'ACME (Let\'s Encrypt)', system: 'System (self-signed)' };
// The seed's refusal, with its reason.
const SYSTEM_REASON = 'You cannot select the system self-signed certificate for SMTP TLS: strict '
  + 'STARTTLS verifiers on the receiving side reject the handshake, and mail to them would be lost. '
  + 'Import a real certificate (commercial CA, internal PKI or Let\'s Encrypt) first.';

// Why certificate c cannot be bound at all (null when it can).
function unusable(c) {
  if (c.system || c.type === 'system') return SYSTEM_REASON;
  if (c.missing) return 'Its ACME directory is gone: Postfix could not read it.';
  if (typeof c.days_left === 'number' && c.days_left < 0)
    return `It expired on ${when(c.not_after)}: every verifier would refuse it.`;
  return null;
}

export async function render(main, ctx) {
  pageStyle('settings');
  const readOnly = ctx.session.scope === 'read';
  let alive = true, etag = null, loaded = null;
  const stops = [];

  // -- the mode -------------------------------------------------------------------------------------
  const mode = el('select', {}, ...MODES.map((m) => el('option', { value: m.value }, m.label)));
  const advice = el('p', { class: 'mode-advice', 'aria-live': 'polite' });
  const modeCard = el('section', { class: 'card', 'aria-labelledby': 'settings-mode-title' },
    el('h2', { id: 'settings-mode-title' }, 'Encryption'),
    field('TLS mode', mode, { field: '/mode',
      hint: 'Applies to mail received (smtpd) and mail sent (smtp) alike, unless Advanced overrides one side.' }),
    advice);

  // -- the certificate ------------------------------------------------------------------------------
  const primary = certificatePicker({
    label: 'SMTP TLS certificate', pointer: '/certificate',
    hint: 'Type part of a name, subject or DNS name, then pick one. Postfix presents it on STARTTLS; '
      + 'it should cover this server\'s hostname (myhostname).',
    reason: unusable,
  }, stops);
  const certPart = el('section', { class: 'card reveal', id: 'settings-certificate',
    'aria-labelledby': 'settings-cert-title' },
  el('div', { class: 'reveal-inner' },
    el('h2', { id: 'settings-cert-title' }, 'Certificate'), primary.root));

  // -- advanced -------------------------------------------------------------------------------------
  const sideSelect = () => el('select', {}, ...SIDE_MODES.map(([v, t]) => el('option', { value: v }, t)));
  const inbound = sideSelect(), outbound = sideSelect();
  const profile = el('select', {}, ...Object.keys(PROFILES).map((p) => el('option', { value: p }, p)));
  const profileHint = el('p', { class: 'hint', 'aria-live': 'polite' });
  const authOnly = el('input', { type: 'checkbox' });
  const received = el('input', { type: 'checkbox' });
  const loglevel = el('select', {}, ...LOGLEVELS.map((t, i) => el('option', { value: String(i) }, t)));
  const outboundCa = el('input', { type: 'text', spellcheck: 'false', autocomplete: 'off', maxlength: '1024' });
  const additional = certificatePicker({
    label: 'Additional certificate (another key type)', pointer: '/additional_certificate',
    hint: 'Optional: a second certificate with another key type (ECDSA beside RSA); Postfix serves '
      + 'each client the one it supports. Leave empty for none.',
    reason: (c) => {
      const why = unusable(c);
      if (why) return why;
      const p = primary.value();
      if (p && c.name === p.name) return 'It is the certificate above already.';
      if (p && p.key && c.key && p.key.type === c.key.type)
        return `Its key type (${c.key.type}) is the certificate's: Postfix serves one certificate per key type.`;
      return null;
    },
  }, stops);
  const advanced = el('details', { class: 'card advanced' },
    el('summary', {}, 'Advanced'),
    el('p', { class: 'hint' }, 'Most servers need none of these: the defaults are what the TLS mode implies.'),
    el('div', { class: 'grid' },
      field('Inbound override (mail received, smtpd)', inbound, { field: '/inbound_mode',
        hint: 'Overrides the TLS mode for smtpd_tls_security_level only.' }),
      field('Outbound override (mail sent, smtp)', outbound, { field: '/outbound_mode',
        hint: 'Overrides the TLS mode for smtp_tls_security_level only. Stricter levels per destination: TLS policy domains.' })),
    field('Profile', profile, { field: '/profile' }), profileHint,
    el('p', { class: 'hint profile-note' }, 'A profile changes mandatory TLS only (Mandatory mode, and '
      + 'encrypt, verify, secure, dane policies); opportunistic TLS keeps Postfix\'s defaults, so no peer '
      + 'is pushed back to cleartext.'),
    checkbox(authOnly, 'Offer SMTP AUTH only after STARTTLS', '/auth_only',
      'smtpd_tls_auth_only: passwords never cross the network in cleartext.'),
    checkbox(received, 'Record the TLS protocol and cipher in Received: headers', '/received_header',
      'smtpd_tls_received_header.'),
    field('TLS log level', loglevel, { field: '/loglevel',
      hint: 'smtpd_tls_loglevel and smtp_tls_loglevel.' }),
    field('Outbound CA file', outboundCa, { field: '/outbound_ca',
      hint: 'Trust anchors of verify and secure policies: "system" (the system CA bundle) or the '
        + 'absolute path of a PEM file of CA certificates.' }),
    additional.root);

  // -- submission services (master.cf) --------------------------------------------------------------
  const services = SERVICES.map((svc) => {
    const state = el('select', { 'data-field': `/${svc.key}` },
      ...SERVICE_STATES.map(([v, t]) => el('option', { value: v }, t)));
    const name = el('input', { type: 'text', spellcheck: 'false', autocomplete: 'off', maxlength: '64',
      placeholder: svc.key });
    const nameField = field('master.cf service name', name, { field: `/${svc.key}/service`,
      hint: '[host:]port, such as submission, 127.0.0.1:10587 or [::1]:465.' });
    state.addEventListener('change', () => { nameField.hidden = !state.value; });
    return { ...svc, state, name, nameField,
      root: el('div', { class: 'service' },
        field(svc.title, state, { field: `/${svc.key}`, hint: svc.hint }), nameField) };
  });
  const servicesCard = el('details', { class: 'card services' },
    el('summary', {}, 'Submission services (master.cf)'),
    el('p', { class: 'hint' }, 'The ports mail clients use. SASL itself (smtpd_sasl_type, '
      + 'smtpd_sasl_path), restrictions and milters stay yours; an enabled service serves the '
      + 'certificate above whatever the TLS mode.'),
    ...services.map((x) => x.root));

  // -- actions, results -----------------------------------------------------------------------------
  const previewBtn = el('button', { type: 'button', class: 'secondary', 'data-write': true }, 'Preview');
  const saveBtn = el('button', { type: 'submit', 'data-write': true }, 'Save');
  const actions = el('div', { class: 'actions' }, saveBtn, previewBtn);
  if (readOnly) actions.append(el('p', { class: 'read-only-reason' }, READ_ONLY_REASON));
  const managedNote = el('div', { class: 'callout', hidden: true },
    el('p', {}, 'smtptlsd does not manage main.cf\'s TLS parameters yet: the values below are the '
      + 'defaults it would write, not what main.cf holds now. Preview shows what the first Save '
      + 'would change; Save takes the parameters over.'));
  const served = el('p', { class: 'served muted', 'aria-live': 'polite' });
  const results = el('div', { class: 'results' });
  const form = el('form', { class: 'settings-form', novalidate: true, 'aria-label': 'TLS settings' },
    managedNote, served, modeCard, certPart, advanced, servicesCard, actions, results);
  main.append(form);

  // -- behaviour ------------------------------------------------------------------------------------
  const inboundLevel = () => inbound.value || mode.value;
  function modeChanged(animate = true) {
    const m = MODES.find((x) => x.value === mode.value);
    advice.replaceChildren(el('strong', {}, `${m.verdict} `), m.advice);
    advice.className = `mode-advice ${mode.value === 'may' ? 'ok' : 'warn'}`;
    reveal(certPart, inboundLevel() !== 'none', animate);
  }
  mode.addEventListener('change', () => modeChanged());
  inbound.addEventListener('change', () => modeChanged());
  profile.addEventListener('change', () => { profileHint.textContent = PROFILES[profile.value]; });

  function fill(s, certs) {
    loaded = s;
    const byName = new Map(certs.map((c) => [c.name, c]));
    const cert = (name) => (name ? byName.get(name) || { name, missing: true, subject: '' } : null);
    mode.value = s.mode;
    inbound.value = s.inbound_mode || '';
    outbound.value = s.outbound_mode || '';
    profile.value = s.profile;
    profileHint.textContent = PROFILES[s.profile];
    authOnly.checked = s.auth_only;
    received.checked = s.received_header;
    loglevel.value = String(s.loglevel);
    outboundCa.value = s.outbound_ca;
    primary.set(cert(s.certificate));
    additional.set(cert(s.additional_certificate));
    // what differs from a new installation's defaults is not tucked away
    if (s.inbound_mode || s.outbound_mode || s.additional_certificate || s.profile !== 'intermediate'
        || !s.auth_only || s.received_header || s.loglevel !== 1 || s.outbound_ca !== 'system') advanced.open = true;
    for (const x of services) {
      const m = s[x.key];
      x.state.value = m ? (m.enabled ? 'on' : 'off') : '';
      x.name.value = m ? m.service : '';
      x.nameField.hidden = !m;
    }
    if (services.some((x) => s[x.key])) servicesCard.open = true;
    managedNote.hidden = s.managed;
    modeChanged(false);
  }

  async function load() {
    const [s, c] = await Promise.all([call('GET', '/api/v1/settings'), call('GET', '/api/v1/certificates')]);
    if (!alive || s.aborted) return false;
    if (s.status !== 200) { notice(form, s.problem.detail, 'bad'); return false; }
    etag = s.etag;
    fill(s.data, c.status === 200 ? c.data.items : []);
    showServed();
    return true;
  }

  // What Postfix serves now (the verifier's last check), beside the form; not waited for.
  async function showServed() {
    const r = await call('GET', '/api/v1/status');
    if (!alive || r.status !== 200) return;
    const c = r.data.certificate;
    if (c && c.served_fingerprint_matches === true)
      served.textContent = `Postfix serves ${c.name} (checked after the last reload).`;
    else if (c && c.served_fingerprint_matches === false)
      served.textContent = `Postfix does not serve ${c.name}: ${r.data.verification?.detail || 'the last check saw another certificate'}.`;
    else served.textContent = '';
  }

  function body() {
    const p = primary.value(), a = additional.value();
    return {
      mode: mode.value,
      inbound_mode: inbound.value || null,
      outbound_mode: outbound.value || null,
      certificate: p ? p.name : null,
      additional_certificate: a ? a.name : null,
      profile: profile.value,
      auth_only: authOnly.checked,
      received_header: received.checked,
      loglevel: Number(loglevel.value),
      outbound_ca: outboundCa.value.trim() || 'system',
      ...Object.fromEntries(services.map((x) => [x.key, x.state.value
        ? { enabled: x.state.value === 'on', service: x.name.value.trim() || x.key } : null])),
    };
  }

  // A refusal next to its field: the part that holds the field is opened first.
  function refuse(problem) {
    const list = problem.errors && problem.errors.length ? problem.errors : [problem];
    for (const p of list) {
      if (!p.field) continue;
      const c = form.querySelector(`[data-field="${CSS.escape(p.field)}"]`);
      if (c && advanced.contains(c)) advanced.open = true;
      if (c && servicesCard.contains(c)) {
        servicesCard.open = true;
        const x = services.find((y) => y.nameField.contains(c));
        if (x) x.nameField.hidden = false;
      }
      if (c && certPart.contains(c)) reveal(certPart, true, false);
    }
    showProblem(form, problem);
  }

  function busy(on) {
    saveBtn.disabled = previewBtn.disabled = on || readOnly;
    form.setAttribute('aria-busy', on ? 'true' : 'false');
  }

  async function preview() {
    clearProblem(form);
    results.replaceChildren(el('p', { class: 'muted' }, 'Working out what Save would do…'));
    busy(true);
    const r = await call('PUT', '/api/v1/settings', { body: body(), query: { dry_run: 'true' } });
    busy(false);
    if (!alive || r.aborted) return;
    if (r.status !== 200) return failed(r);
    results.replaceChildren(planView(r.data.plan));
    if (!r.data.plan.valid) refuse({ errors: r.data.plan.errors });
  }

  async function save() {
    clearProblem(form);
    busy(true);
    const r = await call('PUT', '/api/v1/settings', { body: body(), ifMatch: etag, query: { wait: 0 } });
    if (!alive || r.aborted) return;
    if ((r.status === 202 || r.status === 200) && r.jobId) {
      const progress = jobView(r.jobId);
      results.replaceChildren(progress.root);
      if (r.status === 202) progress.update(r.data);
      const job = await followJob(r.jobId, (j) => { if (alive) progress.update(j); });
      if (!alive) return;
      await outcome(job, progress);
    } else {
      failed(r);
    }
    busy(false);
  }

  function failed(r) {
    if (r.status === 412) return conflict(r.problem.detail);
    results.replaceChildren();
    refuse(r.problem);
  }

  function conflict(detail) {
    const again = el('button', { type: 'button', class: 'secondary' }, 'Reload the settings');
    again.addEventListener('click', async () => {
      clearProblem(form);
      results.replaceChildren();
      if (await load()) notice(form, 'Reloaded: these are the settings as they are now.', 'info');
    });
    results.replaceChildren(el('div', { class: 'notice warn', role: 'alert' },
      el('p', {}, `Someone else changed the settings since this page loaded them (${detail}). Nothing `
        + 'was saved. Reload them to see their change (yours is discarded), then save again.'),
      again));
  }

  async function outcome(job, progress) {
    if (job.timedOut || job.lookupFailed) {
      progress.say(`Job ${job.id} could not be followed to its end: see Jobs.`, 'bad');
      return;
    }
    if (job.status === 'failed') {
      const e = job.error || { detail: 'the job failed' };
      if (e.code === 'precondition_failed') return conflict(e.detail);
      progress.say(`Job ${job.id} failed: nothing was changed.`, 'bad', job.output);
      refuse(e);
      return;
    }
    // The check of what smtpd serves runs after a reload, once the job is applied: wait for it
    // (bounded: the verifier gives up after 15 s).
    for (const end = Date.now() + 20000; job.reload && job.verified == null && Date.now() < end;) {
      progress.say(`Job ${job.id} applied; checking what Postfix serves now…`, 'info');
      await new Promise((ok) => setTimeout(ok, 500));
      if (!alive) return;
      job = await followJob(job.id); // one GET: the job has finished
    }
    await load();
    const lines = [];
    lines.push(job.changed
      ? `Saved: job ${job.id} applied generation ${job.generation}${job.reload ? '; Postfix reloaded' : ''}.`
      : `Job ${job.id} applied: the settings were already so, nothing changed.`);
    for (const w of job.warnings || []) lines.push(`Warning: ${w.detail}`);
    lines.push(...await verification(job));
    progress.say(lines, job.warnings && job.warnings.length ? 'warn' : 'ok');
  }

  // What the check after the reload found, in words.
  async function verification(job) {
    if (job.verified == null) return job.reload ? ['What Postfix serves could not be checked yet: see Overview.'] : [];
    if (job.verified && inboundLevel() === 'none') return ['Postfix now offers no STARTTLS (checked).'];
    const st = await call('GET', '/api/v1/status');
    if (!alive || st.status !== 200) return [];
    if (job.verified === false || st.data.certificate?.served_fingerprint_matches === false)
      return [`Postfix does not serve the bound certificate: ${st.data.verification?.detail || 'the check after the reload saw another one'}.`];
    const s = loaded;
    const names = [s.certificate, s.additional_certificate].filter(Boolean);
    const parts = await Promise.all(names.map(async (n) => {
      const c = await call('GET', `/api/v1/certificates/${encodeURIComponent(n)}`);
      return c.status === 200 ? `${n} (fingerprint ${c.data.sha256_fingerprint})` : n;
    }));
    showServed();
    return [`Postfix now serves ${parts.join(' and ')}.`];
  }

  form.addEventListener('submit', (ev) => { ev.preventDefault(); if (!readOnly) save(); });
  previewBtn.addEventListener('click', preview);

  busy(false);
  disableForReadOnly(form, ctx.session);
  if (await load()) performance.mark('settings-usable');
  return () => { alive = false; for (const s of stops) s(); };
}

function checkbox(input, label, pointer, hint) {
  input.id ||= `settings-${pointer.slice(1)}`;
  input.dataset.field = pointer;
  const h = el('p', { class: 'hint', id: `${input.id}-hint` }, hint);
  input.setAttribute('aria-describedby', h.id);
  return el('div', { class: 'field check' }, input, el('label', { for: input.id, class: 'inline' }, label), h);
}

// Shows or hides a part with its CSS transition (none under prefers-reduced-motion): hidden for
// good (el.hidden) once it has slid away.
function reveal(part, show, animate = true) {
  clearTimeout(part.revealTimer);
  const ms = animate ? transitionMs(part) : 0;
  if (show) {
    if (!part.hidden && !part.classList.contains('collapsed')) return;
    part.hidden = false;
    if (!ms) { part.classList.remove('collapsed', 'moving'); return; }
    part.classList.add('collapsed', 'moving');
    void part.offsetHeight; // lay out collapsed first: the transition starts from there
    part.classList.remove('collapsed');
  } else {
    if (part.hidden) return;
    if (!ms) { part.classList.add('collapsed'); part.hidden = true; return; }
    part.classList.add('collapsed', 'moving');
  }
  part.revealTimer = setTimeout(() => {
    part.classList.remove('moving');
    if (part.classList.contains('collapsed')) part.hidden = true;
  }, ms);
}

function transitionMs(e) {
  const s = getComputedStyle(e).transitionDuration.split(',').map((x) => parseFloat(x) || 0);
  return Math.max(0, ...s) * 1000;
}

// The plan of a dry run, in words: the main.cf diff, reload yes/no, warnings, refusals.
function planView(plan) {
  const box = el('section', { class: 'card plan', 'aria-labelledby': 'settings-plan-title' },
    el('h2', { id: 'settings-plan-title' }, 'Preview: what Save would do'));
  if (!plan.valid) box.append(el('p', { class: 'error' }, 'Save would be refused: ' + plan.errors.map((e) => e.detail).join('; ') + '.'));
  if (plan.main_cf.length) {
    const pre = el('pre', { class: 'diff', 'aria-label': 'main.cf changes' });
    for (const p of plan.main_cf) {
      if (p.old !== null) pre.append(el('span', { class: 'del' }, `- ${p.name} = ${p.old}`));
      if (p.new !== null) pre.append(el('span', { class: 'add' }, `+ ${p.name} = ${p.new}`));
    }
    box.append(el('h3', {}, 'main.cf'), pre);
  } else {
    box.append(el('p', {}, 'main.cf would not change.'));
  }
  if (plan.master_cf_diff) {
    const pre = el('pre', { class: 'diff', 'aria-label': 'master.cf changes' });
    for (const line of plan.master_cf_diff.replace(/\n$/, '').split('\n'))
      pre.append(el('span', { class: /^(\+\+\+|---|@@)/.test(line) ? 'hdr' : line[0] === '+' ? 'add' : line[0] === '-' ? 'del' : null }, line));
    box.append(el('h3', {}, 'master.cf'), pre);
  }
  if (plan.tls_policy_diff) {
    const pre = el('pre', { class: 'diff', 'aria-label': 'Policy map changes' });
    for (const line of plan.tls_policy_diff.replace(/\n$/, '').split('\n'))
      pre.append(el('span', { class: /^(\+\+\+|---|@@)/.test(line) ? 'hdr' : line[0] === '+' ? 'add' : line[0] === '-' ? 'del' : null }, line));
    box.append(el('h3', {}, 'Policy map'), pre);
  }
  box.append(el('p', { class: 'reload' }, plan.reload
    ? 'Postfix reload: yes (postfix reload re-reads main.cf; connections in progress are not dropped).'
    : 'Postfix reload: no.'));
  if (plan.warnings.length)
    box.append(el('ul', { class: 'warnings' }, ...plan.warnings.map((w) => el('li', {}, `Warning: ${w.detail}`))));
  box.append(el('p', { class: 'muted' }, 'Nothing was changed.'));
  return box;
}

// A job's progress: queued, running, then applied or failed, and the outcome in words.
function jobView(id) {
  const steps = ['queued', 'running', 'done'].map((s) => el('li', { dataset: { step: s } }, s === 'done' ? 'applied' : s));
  const state = el('p', { class: 'job-state' }, `Job ${id}: sent.`);
  const out = el('div', { class: 'job-outcome', role: 'status', 'aria-live': 'polite' });
  const root = el('section', { class: 'card job', 'aria-labelledby': 'settings-job-title' },
    el('h2', { id: 'settings-job-title' }, 'Save'), el('ol', { class: 'steps' }, ...steps), state, out);
  const order = { queued: 0, running: 1, applied: 2, failed: 2 };
  return {
    root,
    update(job) {
      const at = order[job.status] ?? 0;
      steps[2].textContent = job.status === 'failed' ? 'failed' : 'applied';
      steps.forEach((li, i) => {
        li.className = i < at ? 'done' : i === at ? `current ${job.status}` : '';
        if (i === at) li.setAttribute('aria-current', 'step'); else li.removeAttribute('aria-current');
      });
      state.textContent = `Job ${job.id}: ${job.status}.`;
    },
    say(lines, kind, output) {
      out.className = `job-outcome notice ${kind}`;
      out.replaceChildren(...[].concat(lines).map((t) => el('p', {}, t)));
      if (output) out.append(el('details', {}, el('summary', {}, 'What Postfix\'s tools printed'), el('pre', {}, output)));
    },
  };
}

// The certificate autocomplete (the ARIA 1.2 combobox with a listbox popup): an input whose
// typing searches GET /api/v1/certificates?q= (debounced), arrows move through the options,
// Enter picks, Escape closes; a certificate `reason(c)` refuses is listed, marked unavailable,
// with the reason, and cannot be picked. The pick's details are shown read-only below.
// Returns {root, value(), set(cert)}; stops gets the function that cancels its timers.
function certificatePicker({ label, pointer, hint, reason }, stops) {
  const input = el('input', {
    type: 'text', role: 'combobox', autocomplete: 'off', spellcheck: 'false', maxlength: '253',
    'aria-autocomplete': 'list', 'aria-expanded': 'false',
    placeholder: 'Name, subject or DNS name',
  });
  const wrap = field(label, input, { field: pointer, hint });
  const list = el('ul', { role: 'listbox', class: 'cert-options', id: `${input.id}-list`, hidden: true,
    'aria-label': 'Matching certificates' });
  const status = el('p', { class: 'picker-status', 'aria-live': 'polite' });
  input.setAttribute('aria-controls', list.id);
  wrap.append(status, list);
  const details = el('dl', { class: 'facts cert-details', hidden: true, 'aria-label': 'The picked certificate' });
  const root = el('div', { class: 'picker' }, wrap, details);

  let picked = null, options = [], active = -1, timer = null, ctl = null, seq = 0;
  stops.push(() => { clearTimeout(timer); if (ctl) ctl.abort(); });

  function showDetails(c) {
    details.hidden = !c;
    if (!c) { details.replaceChildren(); return; }
    const row = (k, ...v) => [el('dt', {}, k), el('dd', {}, ...v)];
    if (c.missing && !c.subject) {
      details.replaceChildren(...row('Certificate', `${c.name}: not in the store any more`));
      return;
    }
    details.replaceChildren(
      ...row('Subject', c.subject), ...row('Issuer', c.issuer), ...row('Serial', el('span', { class: 'mono' }, c.serial)),
      ...row('Type', TYPES[c.type] || c.type),
      ...row('Expires', `${when(c.not_after)} `, daysLeftBadge(c.days_left)),
      ...row('DNS names', (c.dns_names || []).join(', ')),
      ...row('Key', c.key ? `${c.key.type} ${c.key.curve || c.key.bits}` : ''),
      ...row('SHA-256 fingerprint', el('span', { class: 'mono' }, c.sha256_fingerprint)));
  }

  function close() {
    list.hidden = true;
    input.setAttribute('aria-expanded', 'false');
    input.removeAttribute('aria-activedescendant');
    active = -1;
  }

  function setActive(i) {
    active = i;
    [...list.children].forEach((li, j) => li.setAttribute('aria-selected', j === i ? 'true' : 'false'));
    if (i >= 0) {
      const li = list.children[i];
      input.setAttribute('aria-activedescendant', li.id);
      li.scrollIntoView({ block: 'nearest' });
    } else {
      input.removeAttribute('aria-activedescendant');
    }
  }

  function showOptions(items, q) {
    options = items;
    list.replaceChildren(...items.map((c, i) => {
      const why = reason(c);
      const li = el('li', { role: 'option', id: `${input.id}-opt${i}`, 'aria-selected': 'false',
        'aria-disabled': why ? 'true' : null, class: why ? 'unavailable' : null },
      el('span', { class: 'opt-head' }, el('span', { class: 'opt-name' }, c.name), ' ',
        badge(TYPES[c.type] || c.type, c.type === 'system' ? 'muted' : ''), ' ', daysLeftBadge(c.days_left)),
      el('span', { class: 'opt-sub' }, [c.subject, (c.dns_names || []).join(', ')].filter(Boolean).join(' · ')),
      why && el('span', { class: 'opt-reason' }, why));
      li.addEventListener('mousedown', (ev) => ev.preventDefault()); // keep the focus in the input
      li.addEventListener('click', () => choose(i));
      return li;
    }));
    status.textContent = items.length
      ? `${items.length} certificate${items.length === 1 ? '' : 's'} found: arrows to move, Enter to pick.`
      : q ? `No certificate matches "${q}".` : 'The store has no certificate: import one on the Certificates page.';
    list.hidden = !items.length;
    input.setAttribute('aria-expanded', items.length ? 'true' : 'false');
    setActive(-1);
  }

  function search(delay, all = false) {
    clearTimeout(timer);
    timer = setTimeout(async () => {
      if (ctl) ctl.abort();
      ctl = new AbortController();
      const my = ++seq;
      const q = all ? '' : input.value.trim();
      const r = await call('GET', '/api/v1/certificates', { query: { q }, signal: ctl.signal });
      if (my !== seq || r.aborted || document.activeElement !== input) return;
      if (r.status !== 200) { status.textContent = r.problem.detail; return; }
      showOptions(r.data.items, q);
    }, delay);
  }

  function choose(i) {
    const c = options[i];
    if (!c) return;
    const why = reason(c);
    if (why) { setActive(i); status.textContent = `${c.name} cannot be picked. ${why}`; return; }
    set(c);
    close();
    status.textContent = `Picked ${c.name}.`;
    input.dispatchEvent(new Event('change', { bubbles: true }));
  }

  function set(c) {
    picked = c;
    input.value = c ? c.name : '';
    status.textContent = '';
    showDetails(c);
  }

  input.addEventListener('input', () => {
    if (!input.value.trim() && picked) { set(null); status.textContent = 'No certificate.'; }
    search(200);
  });
  input.addEventListener('keydown', (ev) => {
    const open = !list.hidden;
    switch (ev.key) {
      case 'ArrowDown':
        ev.preventDefault();
        if (!open) search(0, !input.value.trim() || (picked && input.value === picked.name));
        else setActive(active + 1 < options.length ? active + 1 : 0);
        break;
      case 'ArrowUp':
        ev.preventDefault();
        if (open) setActive(active > 0 ? active - 1 : options.length - 1);
        break;
      case 'Enter':
        if (open) { ev.preventDefault(); if (active >= 0) choose(active); }
        else ev.preventDefault(); // Enter here picks, it never saves
        break;
      case 'Escape':
        if (open) { ev.preventDefault(); ev.stopPropagation(); close(); }
        else if (input.value !== (picked ? picked.name : '')) { ev.preventDefault(); input.value = picked ? picked.name : ''; }
        break;
      case 'Tab':
        close();
        break;
      default:
    }
  });
  input.addEventListener('blur', () => {
    clearTimeout(timer);
    seq++; // an answer still on its way is no longer wanted
    close();
    const text = input.value.trim();
    if (text === (picked ? picked.name : '')) return;
    const exact = options.findIndex((c) => c.name === text && !reason(c));
    if (exact >= 0) { choose(exact); return; }
    if (text) status.textContent = `"${text}" was not picked: the certificate stays ${picked ? picked.name : 'unset'}.`;
    input.value = picked ? picked.name : '';
  });

  return { root, value: () => picked, set };
}
