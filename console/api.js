// api.js: the console's one way to the API. Same-origin requests with the session cookie (the page
// never sees the token or the session id); problems come back as {status, problem}.

// Sent on every request: with the cookie session, a custom header proves a same-origin page.
const HEADERS = { 'X-Requested-With': 'smtptlsd-console' };

export async function call(method, path, { body, etag } = {}) {
  const headers = { ...HEADERS };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (etag) headers['If-None-Match'] = etag;
  let res;
  try {
    res = await fetch(path, {
      method, headers, credentials: 'same-origin', cache: 'no-store',
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (e) {
    return { status: 0, problem: { detail: 'The daemon cannot be reached.' } };
  }
  const out = { status: res.status, etag: res.headers.get('ETag') };
  const type = res.headers.get('Content-Type') || '';
  if (res.status === 304 || res.status === 204) return out;
  const data = type.includes('json') ? await res.json().catch(() => null) : null;
  if (res.ok) out.data = data;
  else out.problem = data || { detail: `${res.status} ${res.statusText}` };
  return out;
}
