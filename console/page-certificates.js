// page-certificates.js: the Certificates page: the store as a table (GET /api/v1/certificates,
// with GET /api/v1/settings for what binds each one), search and type filter, upload (POST) and
// replace in place (PUT with If-Match) from pasted or dropped PEM in any order, delete, and the
// ACME rescan. Every refusal is shown in words next to its field, with what to do about it.
import { call, followJob } from '/console/api.js';
import {
  el, field, showProblem, clearProblem, notice, dialog, badge, daysLeftBadge,
  disableForReadOnly, READ_ONLY_REASON, pageStyle,
} from '/console/ui.js';

// What to do about each refusal, after the server's own detail.
const ADVICE = {
  invalid_name: 'Use 1 to 64 characters: lowercase letters, digits, ".", "_" or "-", starting with a letter or digit.',
  duplicate_name: 'That name is taken: choose another one, or use "Replace" on the existing certificate to rotate it.',
  invalid_pem: 'Check that every block is complete, from its -----BEGIN line to its -----END line, and that nothing else is mixed in.',
  no_certificate: 'Add the certificate: the block that starts with -----BEGIN CERTIFICATE-----.',
  no_private_key: 'Add the private key made together with the certificate (-----BEGIN PRIVATE KEY----- or similar).',
  encrypted_private_key: 'Decrypt the key first (openssl pkey -in enc.key -out privkey.pem) and upload the decrypted one.',
  key_mismatch: 'The private key belongs to another certificate: use the key file made together with this certificate.',
  certificate_expired: 'Renew the certificate with its CA and upload the new one.',
  certificate_not_yet_valid: 'Check the server\'s clock, or wait until the certificate\'s start date.',
  chain_mismatch: 'Use the intermediate certificates the CA issued with this certificate (its chain or fullchain file), or leave the chain out.',
  weak_key: 'Make a new key (RSA of 2048 bits or more, or EC) and have the certificate issued again.',
  not_a_server_certificate: 'This is not a TLS server certificate (a CA certificate, or one not for serverAuth): upload the one issued for this mail server\'s name.',
  payload_too_large: 'Upload only the certificate, its private key and its chain.',
  precondition_failed: 'The certificate was changed meanwhile: close this dialog and open "Replace" again to see the current one.',
  certificate_in_use: 'Bind another certificate in TLS settings first, then delete this one.',
  system_certificate: 'The system certificate belongs to the operating system; it stays.',
  acme_certificate: 'ACME certificates are managed by the ACME client (certbot): remove or renew them there, then press "Rescan ACME".',
  not_found: 'It is gone already: the list has been reloaded.',
};
// Refusals of the PEM text: shown next to the one PEM input (/pem), naming the part.
const PEM_CODES = new Set(['invalid_pem', 'no_certificate', 'no_private_key', 'encrypted_private_key',
  'key_mismatch', 'certificate_expired', 'certificate_not_yet_valid', 'chain_mismatch', 'weak_key',
  'not_a_server_certificate', 'payload_too_large', 'certificate_unusable']);
const PARTS = { '/certificate': 'The certificate', '/private_key': 'The private key', '/chain': 'The chain' };

// A problem with its advice (pem: a refusal of the PEM parts points at the PEM input).
function explained(p, { pem = false } = {}) {
  const detail = [p.detail || p.code, ADVICE[p.code]].filter(Boolean).join(' ');
  const out = { ...p, detail };
  if (pem && (PARTS[p.field] || (PEM_CODES.has(p.code) && !p.field))) {
    out.field = '/pem';
    if (PARTS[p.field] && !detail.toLowerCase().startsWith(PARTS[p.field].toLowerCase()))
      out.detail = `${PARTS[p.field]}: ${detail}`;
  }
  if (p.errors) out.errors = p.errors.map((e) => explained(e, { pem }));
  return out;
}

// ---- PEM: blocks read from the text and the files, sorted into certificate / key / chain ----
const BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----[\s\S]*?-----END \1-----/g;

// The DER element at pos: {tag, start (of the content), end}.
function tlv(der, pos) {
  const tag = der[pos];
  let len = der[pos + 1], start = pos + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + der[start + i];
    start += n;
  }
  if (tag === undefined || start + len > der.length) throw new Error('truncated DER');
  return { tag, pos, start, end: start + len };
}

// Issuer and subject of a certificate (as hex, to compare) and its CN; null when unreadable.
function names(text) {
  try {
    const b64 = text.replace(/-----[A-Z0-9 ]+-----/g, '').replace(/\s+/g, '');
    const der = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const tbs = tlv(der, tlv(der, 0).start);
    let p = tbs.start;
    let e = tlv(der, p);
    if (e.tag === 0xa0) e = tlv(der, e.end); // version
    const sigalg = tlv(der, e.end);
    const issuer = tlv(der, sigalg.end);
    const subject = tlv(der, tlv(der, issuer.end).end);
    const hex = (x) => Array.from(der.subarray(x.pos, x.end), (v) => v.toString(16).padStart(2, '0')).join('');
    let cn = null;
    for (p = subject.start; p < subject.end - 5; p++)
      if (der[p] === 6 && der[p + 1] === 3 && der[p + 2] === 0x55 && der[p + 3] === 4 && der[p + 4] === 3) {
        const v = tlv(der, p + 5);
        cn = new TextDecoder().decode(der.subarray(v.start, v.end));
        break;
      }
    return { issuer: hex(issuer), subject: hex(subject), cn };
  } catch (e) {
    return null;
  }
}

// sources: [{label, text}] -> {certificate, private_key, chain, leaf, counts, incomplete}.
// The leaf is the certificate that issued none of the others; the server checks the rest.
export function sortPem(sources) {
  const certs = [], keys = [];
  let incomplete = null;
  for (const { label, text } of sources) {
    const blocks = [...text.matchAll(BLOCK)];
    if ((text.match(/-----BEGIN /g) || []).length !== blocks.length) incomplete ||= label;
    for (const m of blocks) {
      const type = m[1];
      if (type === 'CERTIFICATE') certs.push({ text: m[0], from: label, n: names(m[0]) });
      else if (type.endsWith('PRIVATE KEY')) keys.push({ text: m[0], from: label });
      else if (!type.endsWith('PARAMETERS')) certs.push({ text: m[0], from: label, n: null });
    }
  }
  const issuedSome = (c) => c.n && certs.some((o) => o !== c && o.n && o.n.issuer === c.n.subject
    && o.n.subject !== o.n.issuer);
  const leaf = certs.find((c) => c.n && !issuedSome(c)) || certs[0] || null;
  const chain = certs.filter((c) => c !== leaf);
  return {
    certificate: leaf ? `${leaf.text}\n` : '',
    private_key: keys.map((k) => `${k.text}\n`).join(''),
    chain: chain.length ? chain.map((c) => `${c.text}\n`).join('') : null,
    leaf, keys, chainCount: chain.length, incomplete,
  };
}

// Text that may wrap after its dots, commas, @ and - (names, distinguished names).
function breakable(text) {
  const out = [];
  for (const part of String(text).split(/(?<=[.,@-])/)) out.push(part, el('wbr'));
  out.pop();
  return out;
}

// ---- the page ------------------------------------------------------------------------------
export async function render(main, ctx) {
  pageStyle('certificates');
  const readOnly = ctx.session.scope === 'read';
  let alive = true, seq = 0, searchTimer = null, lastItems = [];

  const search = el('input', { type: 'search', placeholder: 'name, subject or DNS name', 'data-read-ok': '',
    autocomplete: 'off', spellcheck: 'false' });
  const type = el('select', { 'data-read-ok': '' },
    el('option', { value: '' }, 'All types'), el('option', { value: 'imported' }, 'Imported'),
    el('option', { value: 'acme' }, 'ACME'), el('option', { value: 'system' }, 'System'));
  const upload = el('button', { type: 'button', 'data-write': '', onclick: () => openPemDialog(null) }, 'Upload');
  const rescan = el('button', { type: 'button', class: 'secondary', 'data-write': '', onclick: doRescan }, 'Rescan ACME');
  const status = el('div', { class: 'cert-status' });
  const tbody = el('tbody');
  const count = el('p', { class: 'muted cert-count', 'aria-live': 'polite' });
  const HEAD = ['Name', 'Type', 'Subject', 'DNS names', 'Issuer', 'Days left', 'Chain verified', 'In use',
    'ACME missing', 'Actions'];
  const table = el('table', { class: 'cards certs' },
    el('caption', { class: 'skip' }, 'Certificates in the store'),
    el('thead', {}, el('tr', {}, HEAD.map((h) => el('th', { scope: 'col' }, h)))), tbody);

  main.append(...[
    el('p', { class: 'muted' }, 'The certificates Postfix can serve: uploaded here (imported), found in the ACME ',
      'live directory (acme), and the operating system\'s own (system). Bind one in ',
      el('a', { href: '/console/settings', 'data-internal': '' }, 'TLS settings'), '.'),
    el('div', { class: 'toolbar cert-toolbar' },
      field('Search', search), field('Type', type), el('div', { class: 'cert-buttons' }, upload, rescan)),
    readOnly ? el('p', { class: 'callout read-only' }, READ_ONLY_REASON) : null,
    status, count, el('div', { class: 'table-wrap' }, table)].filter(Boolean));
  disableForReadOnly(main, ctx.session);

  search.addEventListener('input', () => { clearTimeout(searchTimer); searchTimer = setTimeout(load, 250); });
  type.addEventListener('change', load);

  // What binds each certificate, from the settings (the settings name them).
  const BINDINGS = { certificate: 'SMTP TLS certificate', additional_certificate: 'second certificate' };
  async function bindings() {
    const r = await call('GET', '/api/v1/settings');
    const out = {};
    if (r.status !== 200) return out;
    for (const [k, what] of Object.entries(BINDINGS))
      if (r.data[k]) (out[r.data[k]] ||= []).push(what);
    return out;
  }

  async function load() {
    const my = ++seq;
    const [list, bound] = await Promise.all([
      call('GET', '/api/v1/certificates', { query: { q: search.value.trim(), type: type.value } }),
      bindings()]);
    if (!alive || my !== seq || list.aborted) return;
    if (list.status !== 200) {
      if (list.status !== 401) tbody.replaceChildren(el('tr', {}, el('td', { colspan: HEAD.length, class: 'error' },
        `The certificates cannot be listed: ${list.problem.detail}`)));
      return;
    }
    lastItems = list.data.items;
    count.textContent = `${lastItems.length} certificate${lastItems.length === 1 ? '' : 's'}` +
      (search.value.trim() || type.value ? ' match' : '');
    tbody.replaceChildren(...(lastItems.length ? lastItems.map((c) => row(c, bound[c.name]))
      : [el('tr', {}, el('td', { colspan: HEAD.length, class: 'muted' }, 'No certificate matches.'))]));
    disableForReadOnly(tbody, ctx.session);
  }

  function row(c, by) {
    const td = (label, ...content) => el('td', { 'data-label': label }, ...content);
    const inUse = c.in_use
      ? [badge('in use', 'ok'), by ? ` as the ${by.join(' and the ')}` : '']
      : ['no'];
    const actions = [];
    if (c.type === 'imported') {
      actions.push(el('button', { type: 'button', class: 'secondary', 'data-write': '',
        'aria-label': `Replace ${c.name}`, onclick: () => openPemDialog(c) }, 'Replace'));
      actions.push(el('button', { type: 'button', class: 'danger', 'data-write': '',
        'aria-label': `Delete ${c.name}`, onclick: () => confirmDelete(c, by) }, 'Delete'));
    } else if (c.type === 'acme') {
      actions.push(el('span', { class: 'muted' }, 'Managed by the ACME client'));
    } else {
      actions.push(el('span', { class: 'muted' }, 'System certificate: cannot be replaced, deleted or bound'));
    }
    return el('tr', { dataset: { name: c.name } },
      td('Name', el('strong', {}, breakable(c.name))),
      td('Type', c.type),
      td('Subject', breakable(c.subject)),
      td('DNS names', c.dns_names.length ? el('ul', { class: 'dns' }, c.dns_names.map((d) => el('li', {}, breakable(d)))) : '—'),
      td('Issuer', breakable(c.issuer), c.self_signed ? el('span', { class: 'muted' }, ' (self-signed)') : null),
      td('Days left', daysLeftBadge(c.days_left)),
      td('Chain verified', c.chain_verified ? badge('yes', 'ok') : badge('no', 'warn')),
      td('In use', ...inUse),
      td('ACME missing', c.type !== 'acme' ? '—'
        : c.missing ? badge('live directory gone', 'bad') : 'no'),
      td('Actions', el('div', { class: 'row-actions' }, actions)));
  }

  // ---- upload and replace ----
  function openPemDialog(cert) {
    const rotating = !!cert;
    const files = new Map(); // file name -> text
    const form = el('form', { novalidate: true, class: 'pem-form' });
    const nameInput = el('input', { autocomplete: 'off', spellcheck: 'false', required: true,
      pattern: '[a-z0-9][a-z0-9._-]{0,63}' });
    const text = el('textarea', { spellcheck: 'false', autocomplete: 'off', rows: 8,
      placeholder: '-----BEGIN CERTIFICATE-----\n...\n-----END CERTIFICATE-----\n-----BEGIN PRIVATE KEY-----\n...' });
    const fileInput = el('input', { type: 'file', multiple: true, accept: '.pem,.crt,.cer,.key,.txt,application/x-pem-file' });
    const fileList = el('ul', { class: 'pem-files' });
    const summary = el('ul', { class: 'pem-summary', 'aria-live': 'polite' });
    const submit = el('button', { type: 'submit' }, rotating ? 'Replace' : 'Upload');
    const cancel = el('button', { type: 'button', class: 'secondary', onclick: () => d.finish(null) }, 'Cancel');
    let etag = null;

    const sources = () => [{ label: 'the pasted text', text: text.value },
      ...[...files].map(([label, t]) => ({ label, text: t }))];
    function describe() {
      const s = sortPem(sources());
      const items = [];
      if (s.leaf) items.push(`Certificate: ${s.leaf.n && s.leaf.n.cn ? s.leaf.n.cn : 'found'} (from ${s.leaf.from})`);
      if (s.chainCount) items.push(`Chain: ${s.chainCount} certificate${s.chainCount > 1 ? 's' : ''}`);
      if (s.keys.length) items.push(`Private key: ${s.keys.length > 1 ? `${s.keys.length} keys (one is expected)` : 'found'} (from ${s.keys.map((k) => k.from).join(', ')})`);
      if (s.incomplete) items.push(`An incomplete block in ${s.incomplete}`);
      summary.replaceChildren(...items.map((t) => el('li', {}, t)));
      summary.hidden = !items.length;
      fileList.replaceChildren(...[...files.keys()].map((n) => el('li', {}, n, ' ',
        el('button', { type: 'button', class: 'secondary small', 'aria-label': `Remove ${n}`,
          onclick: () => { files.delete(n); describe(); } }, 'Remove'))));
      return s;
    }
    async function addFiles(list) {
      for (const f of list) {
        if (f.size > 1 << 20) { files.set(f.name, ''); continue; }
        files.set(f.name, await f.text());
      }
      describe();
    }
    text.addEventListener('input', describe);
    fileInput.addEventListener('change', async () => { await addFiles(fileInput.files); fileInput.value = ''; });
    const drop = el('div', { class: 'drop-zone' },
      field('PEM files', fileInput, { hint: 'Or choose the files, or drop them here: certificate, key and chain, in any order.' }),
      fileList);
    form.addEventListener('dragover', (ev) => { ev.preventDefault(); drop.classList.add('over'); });
    form.addEventListener('dragleave', () => drop.classList.remove('over'));
    form.addEventListener('drop', (ev) => {
      ev.preventDefault();
      drop.classList.remove('over');
      if (ev.dataTransfer && ev.dataTransfer.files.length) addFiles(ev.dataTransfer.files);
    });

    const intro = [];
    if (rotating) {
      intro.push(el('p', {}, `Replaces ${cert.name} in place with a new certificate and key (the name stays).`));
      if (cert.in_use)
        intro.push(el('p', { class: 'callout' }, `${cert.name} is bound: Postfix will be reloaded, and the daemon then checks that Postfix serves the new certificate.`));
    }
    form.append(...intro,
      rotating ? null : field('Name', nameInput, { field: '/name', hint: 'How the certificate is called here and in TLS settings: 1 to 64 of a-z 0-9 . _ -' }),
      field('PEM text', text, { field: '/pem', hint: 'Paste the certificate, its private key and the chain, in any order. The key is sent to the daemon only.' }),
      drop, summary, el('div', { class: 'actions' }, submit, cancel));
    describe();
    const d = dialog(rotating ? `Replace ${cert.name}` : 'Upload a certificate', form, { wide: true });
    (rotating ? text : nameInput).focus();
    if (rotating) {
      submit.disabled = true;
      call('GET', `/api/v1/certificates/${encodeURIComponent(cert.name)}`).then((r) => {
        if (r.status === 200) { etag = r.etag; cert = r.data; submit.disabled = false; }
        else if (r.status !== 401) showProblem(form, explained(r.problem));
      });
    }

    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      clearProblem(form);
      const s = describe();
      if (s.incomplete)
        return showProblem(form, explained({ code: 'invalid_pem', field: '/pem',
          detail: `A PEM block in ${s.incomplete} has a -----BEGIN line without its -----END line.` }));
      const body = { certificate: s.certificate, private_key: s.private_key, chain: s.chain };
      submit.disabled = cancel.disabled = true;
      notice(form, 'Sending…');
      const r = rotating
        ? await call('PUT', `/api/v1/certificates/${encodeURIComponent(cert.name)}`, { body, ifMatch: etag })
        : await call('POST', '/api/v1/certificates', { body: { name: nameInput.value.trim(), ...body } });
      submit.disabled = cancel.disabled = false;
      form.querySelector(':scope > .notice')?.remove();
      if (r.status === 200 || r.status === 201) {
        d.finish(true);
        const name = r.data.name;
        outcome(rotating ? `Replaced ${name}` : `Uploaded ${name}`, r.jobId, r.data);
        load();
        return;
      }
      if (r.status === 401 || r.aborted) return;
      showProblem(form, explained(r.problem, { pem: true }));
    });
  }

  // The result of a write: the job, its warnings and, after a reload, what Postfix serves.
  async function outcome(what, jobId, certData) {
    const say = (parts, kind = 'ok') => { if (alive) notice(status, parts, kind); };
    const head = `${what}${jobId ? ` (job ${jobId})` : ''}.`;
    say([el('p', {}, head)]);
    if (!jobId) return;
    let job = await followJob(jobId);
    const lines = [el('p', {}, head)];
    for (const w of job.warnings || []) lines.push(el('p', {}, `Warning: ${w.detail || w.code}`));
    if (job.status === 'failed') {
      lines.push(el('p', {}, `The job failed: ${job.error ? job.error.detail : 'see Jobs'}.`));
      return say(lines, 'bad');
    }
    if (!job.reload) {
      lines.push(el('p', {}, job.changed === false ? 'Nothing changed (the same certificate): Postfix was not reloaded.'
        : certData.in_use ? 'Postfix was not reloaded.' : 'It is not bound: Postfix was not reloaded.'));
      return say(lines, job.warnings && job.warnings.length ? 'warn' : 'ok');
    }
    lines.push(el('p', {}, 'Postfix reloaded; checking that it serves the new certificate…'));
    say(lines, 'info');
    // the check runs after the reload: its result comes into the job a moment later (bounded)
    const end = Date.now() + 30000;
    while (alive && job.verified === null && Date.now() < end) {
      await new Promise((ok) => setTimeout(ok, 500));
      const r = await call('GET', `/api/v1/jobs/${encodeURIComponent(jobId)}`);
      if (r.status !== 200) break;
      job = r.data;
    }
    lines.pop();
    if (job.verified === true)
      lines.push(el('p', {}, `Postfix now serves ${certData.name} (fingerprint `, el('code', {}, certData.sha256_fingerprint), ').'));
    else if (job.verified === false)
      lines.push(el('p', {}, `Postfix was reloaded but does not serve ${certData.name}: see the job in Jobs and the overview.`));
    else
      lines.push(el('p', {}, 'Postfix was reloaded; whether it serves the new certificate is not known yet (see Overview).'));
    say(lines, job.verified === true ? 'ok' : 'warn');
  }

  // ---- delete ----
  function confirmDelete(c, by) {
    const yes = el('button', { type: 'submit', class: 'danger' }, 'Delete');
    const no = el('button', { type: 'button', class: 'secondary', onclick: () => d.finish(null) }, 'Cancel');
    const form = el('form', { novalidate: true },
      el('p', {}, `Delete ${c.name} (${c.subject})? Its files go too.`),
      c.in_use ? el('p', { class: 'callout' }, `${c.name} is bound${by ? ` as the ${by.join(' and the ')}` : ''}.`) : null,
      el('div', { class: 'actions' }, yes, no));
    const d = dialog(`Delete ${c.name}`, form);
    no.focus();
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      yes.disabled = true;
      const r = await call('DELETE', `/api/v1/certificates/${encodeURIComponent(c.name)}`);
      yes.disabled = false;
      if (r.status === 204) {
        d.finish(true);
        notice(status, `Deleted ${c.name}${r.jobId ? ` (job ${r.jobId})` : ''}.`, 'ok');
        return load();
      }
      if (r.status === 401 || r.aborted) return;
      const p = explained(r.problem);
      if (r.problem.code === 'certificate_in_use' && by)
        p.detail = `${c.name} is the ${by.join(' and the ')} in TLS settings. ${p.detail}`;
      showProblem(form, p);
      yes.hidden = true;
      no.textContent = 'Close';
      no.focus();
      if (r.problem.code === 'not_found') load();
    });
  }

  // ---- ACME rescan ----
  async function doRescan() {
    rescan.disabled = true;
    notice(status, 'Reading the ACME live directory…');
    const r = await call('POST', '/api/v1/certificates/rescan');
    rescan.disabled = false;
    if (!alive || r.status === 401 || r.aborted) return;
    if (r.status !== 200) return notice(status, `The rescan failed: ${r.problem.detail}`, 'bad');
    const s = r.data;
    const list = (xs) => (xs && xs.length ? xs.join(', ') : 'none');
    const lines = [el('p', {}, `ACME rescan${r.jobId ? ` (job ${r.jobId})` : ''}: added ${list(s.added)}; changed ${list(s.changed)}; removed ${list(s.removed)}.`)];
    if (s.missing && s.missing.length)
      lines.push(el('p', {}, `Bound but its live directory is gone: ${list(s.missing)}. Bind another certificate in TLS settings.`));
    for (const w of s.warnings || []) lines.push(el('p', {}, `Warning: ${w.detail || w.code}`));
    notice(status, lines, (s.warnings && s.warnings.length) || (s.missing && s.missing.length) ? 'warn' : 'ok');
    load();
  }

  await load();
  return () => { alive = false; clearTimeout(searchTimer); };
}
