// api.js: the console's one way to the API. Same-origin requests carrying the session cookie (the
// page never sees the token or the session id) and the header that proves a same-origin page
// (X-Requested-With: smtptlsd, which another origin cannot send without a CORS preflight).
// Every call resolves to {status, data, problem, etag, jobId, headers}; it never throws. Status 0:
// no answer (problem.detail says so; `aborted` when the page was being left or the call cancelled).

const HEADERS = { 'X-Requested-With': 'smtptlsd' };

// Leaving the page cuts the requests in flight: those failures are no news.
let leaving = false;
addEventListener('pagehide', () => { leaving = true; });
addEventListener('pageshow', () => { leaving = false; });
const unreachable = () => ({
  status: 0, aborted: leaving,
  problem: { code: 'unreachable', detail: 'The daemon cannot be reached.' },
});

// Listeners of "the session has ended" (a 401 on any call): the shell shows the sign-in form.
const ended = new Set();
export function onSessionEnded(fn) { ended.add(fn); }

// call('GET', '/api/v1/status', {ifNoneMatch}); call('PUT', path, {body, ifMatch, query: {wait: 0}})
export async function call(method, path, { body, ifNoneMatch, ifMatch, query, signal } = {}) {
  const headers = { ...HEADERS };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (ifNoneMatch) headers['If-None-Match'] = ifNoneMatch;
  if (ifMatch) headers['If-Match'] = ifMatch;
  let url = path;
  if (query) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== null && v !== '') q.set(k, v);
    const s = q.toString();
    if (s) url += (url.includes('?') ? '&' : '?') + s;
  }
  let res;
  try {
    res = await fetch(url, {
      method, headers, credentials: 'same-origin', cache: 'no-store', signal,
      body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    });
  } catch (e) {
    if (e.name === 'AbortError') return { status: 0, aborted: true, problem: { detail: 'cancelled' } };
    return unreachable();
  }
  const out = {
    status: res.status, headers: res.headers, etag: res.headers.get('ETag'),
    jobId: res.headers.get('Job-Id'),
  };
  if (res.status === 304 || res.status === 204) return out;
  const type = res.headers.get('Content-Type') || '';
  let data;
  try {
    data = type.includes('json') ? await res.json() : await res.text();
  } catch (e) {
    return unreachable();
  }
  if (res.ok) out.data = data;
  else out.problem = data && typeof data === 'object' ? data : { detail: `${res.status} ${res.statusText}` };
  if (res.status === 401 && path !== '/api/v1/session') for (const fn of ended) fn();
  return out;
}

const FINISHED = new Set(['applied', 'failed']);

// Follows a job to its end: GET /api/v1/jobs/{id} every 250 ms at first, then less often,
// calling onUpdate(job) on each answer. Resolves to the last job seen; gives up after `timeout`
// ms with {timedOut: true}.
export async function followJob(id, onUpdate = () => {}, { timeout = 120000 } = {}) {
  const end = Date.now() + timeout;
  let last = null, pause = 250;
  while (Date.now() < end) {
    const r = await call('GET', `/api/v1/jobs/${encodeURIComponent(id)}`);
    if (r.status !== 200) return { ...(last || { id }), lookupFailed: r.problem };
    last = r.data;
    onUpdate(last);
    if (FINISHED.has(last.status)) return last;
    await new Promise((ok) => setTimeout(ok, pause));
    pause = Math.min(pause * 1.5, 2000);
  }
  return { ...(last || { id }), timedOut: true };
}
