// page-overview.js: the Overview page: GET /api/v1/status, refreshed every 5 s while shown.
import { call } from '/console/api.js';
import { el, badge } from '/console/ui.js';

export async function render(main) {
  const box = el('div', { 'aria-live': 'polite' }, el('p', { class: 'muted' }, 'Loading…'));
  main.append(box);
  let timer = null, alive = true;
  async function tick() {
    const r = await call('GET', '/api/v1/status');
    if (!alive) return;
    if (r.aborted) return;
    if (r.status === 200) box.replaceChildren(facts(r.data));
    else if (r.status !== 401) box.replaceChildren(el('p', { class: 'error' }, r.problem.detail));
    timer = setTimeout(tick, 5000);
  }
  await tick();
  return () => { alive = false; clearTimeout(timer); };
}

function facts(s) {
  const dl = el('dl', { class: 'facts' });
  const fact = (k, ...v) => dl.append(el('dt', {}, k), el('dd', {}, ...v));
  fact('State', badge(s.state.replace('_', ' '), s.state));
  fact('Generation', `${s.applied_generation} applied of ${s.desired_generation}`);
  fact('Queued jobs', String(s.queued_jobs));
  const c = s.certificate;
  fact('Certificate', c ? `${c.name}${c.days_left !== null ? ` (${c.days_left} days left)` : ''}` : 'none bound');
  fact('Postfix', `${s.postfix.running ? 'running' : 'not running'}${s.postfix.version ? `, ${s.postfix.version}` : ''}`);
  return dl;
}
