// The console's one way to the API: same origin, the session cookie sent
// by the browser, the CSRF value (kept in memory only) on every request
// that may change something, and errors as the API's JSON body says them.
import { h } from './vendor/preact.js';
import htm from './vendor/htm.js';

export const html = htm.bind(h);

let csrf = null;

export function setCsrf(value) {
  csrf = value;
}

export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.error && body.error.message) || `HTTP ${status}`);
    this.status = status;
    this.code = body && body.error && body.error.code;
    this.details = (body && body.error && body.error.details) || [];
  }
}

export async function api(method, path, body) {
  const headers = { Accept: 'application/json' };
  if (method !== 'GET' && csrf) headers['X-CSRF-Token'] = csrf;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const resp = await fetch(path, {
    method,
    headers,
    credentials: 'same-origin',
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await resp.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch (_) {
    json = null;
  }
  if (!resp.ok) throw new ApiError(resp.status, json);
  return { status: resp.status, json, text, headers: resp.headers };
}

// A single-use ticket for an EventSource (which cannot send headers).
export async function ticket() {
  const { json } = await api('POST', '/v2/auth/ticket');
  return json.ticket;
}

// Navigation inside the console without a reload; views read the URL.
export function navigate(url, replace = false) {
  if (replace) history.replaceState(null, '', url);
  else history.pushState(null, '', url);
  window.dispatchEvent(new Event('console:navigate'));
}

export function link(e) {
  if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey) return;
  e.preventDefault();
  navigate(e.currentTarget.getAttribute('href'));
}
