// Creating or editing a notification: its name, URL, format,
// signature and order, and its filters as `name: expression` lines, each with a
// preview of the catalogue types it matches (the expression is matched
// against the type, unanchored, as the server does; the server still has
// the last word and names a bad expression). A created notification's
// secret (or public key) is shown once, here, by the caller. An edit
// (`initial`, the notification as read) is a PUT that sends its header
// values back as read, masked (`***`): the server keeps the stored ones.
import { useEffect, useState } from './vendor/hooks.js';
import { api, html } from './api.js';

// The delivery order: none (parallel), all (one at a time), or per key,
// the envelope field named (`ordered_by`).
const ORDER_KEYS = ['workflow_run_id', 'workflow', 'repository'];
const ORDER_LABELS = { none: 'parallel', all: 'one at a time' };
function orderOf(n) {
  if (n?.ordered) return 'all';
  return n?.ordered_by ?? 'none';
}

let catalogue = null;
async function types() {
  if (!catalogue) catalogue = api('GET', '/v2/events/types').then(({ json }) => json.types.map((t) => t.type));
  return catalogue;
}

// `name: expression` lines as the API's filters, and back.
export function parseFilters(text) {
  const filters = {};
  const lines = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line) continue;
    const m = line.match(/^([A-Za-z0-9_.-]+):\s+(.+)$/);
    const [name, expr] = m ? [m[1], m[2]] : ['events', line];
    (filters[name] = filters[name] || { event: [] }).event.push(expr);
    lines.push({ name, expr });
  }
  return { filters, lines };
}

// The API's filters as `name: expression` lines (what `parseFilters` reads).
export function filterText(filters) {
  return Object.entries(filters || {})
    .flatMap(([name, f]) => (f.event || []).map((expr) => `${name}: ${expr}`))
    .join('\n');
}

function Preview({ lines, all }) {
  if (!all || lines.length === 0) return html`<p class="muted" id="filter-preview">No filter: every event of the project.</p>`;
  return html`<ul class="preview" id="filter-preview">${lines.map(({ name, expr }, i) => {
    let re = null;
    try {
      re = new RegExp(expr);
    } catch (_) {
      return html`<li key=${i} data-expr=${expr} class="error">${name}: ${expr} — not a valid expression</li>`;
    }
    const hit = all.filter((t) => re.test(t));
    return html`<li key=${i} data-expr=${expr} data-types=${hit.join(',')}><code>${name}: ${expr}</code> matches
      ${hit.length} type${hit.length === 1 ? '' : 's'}${hit.length ? `: ${hit.join(', ')}` : ''}</li>`;
  })}</ul>`;
}

export function NotificationForm({ project, initial, onDone }) {
  const [text, setText] = useState(initial ? filterText(initial.filters) : '');
  const [all, setAll] = useState(null);
  const [error, setError] = useState(null);
  useEffect(() => {
    types().then(setAll, (err) => setError(err.message));
  }, []);
  const { filters, lines } = parseFilters(text);
  async function submit(e) {
    e.preventDefault();
    const el = e.currentTarget.elements;
    const body = {
      name: el.name.value.trim(),
      webhook_url: el.url.value.trim(),
      filters,
      format: el.format.value,
      signature: el.signature.value,
      // `ordered` alone clears a per-key order; `ordered_by` sets one.
      ordered: el.order.value === 'all',
    };
    if (ORDER_KEYS.includes(el.order.value)) body.ordered_by = el.order.value;
    if (initial) body.auth = initial.auth;
    const base = `/v2/project/${encodeURIComponent(project)}/notification`;
    try {
      const { json } = initial
        ? await api('PUT', `${base}/${encodeURIComponent(initial.name)}`, body)
        : await api('POST', base, body);
      onDone(json);
    } catch (err) {
      const field = err.details[0] && err.details[0].field;
      setError(`${field && !err.message.startsWith(field) ? `${field}: ` : ''}${err.message}`);
    }
  }
  // Initial values only (`defaultValue`): a `value` would be set again at
  // every render, undoing what the user typed.
  return html`<form class="notification-form" id="notification-form" onSubmit=${submit}>
    <label>Name <input name="name" required spellcheck="false" defaultValue=${initial?.name ?? ''} /></label>
    <label>URL <input name="url" type="url" required spellcheck="false" defaultValue=${initial?.webhook_url ?? ''} /></label>
    <label>Format <select name="format">${['cds', 'cloudevents', 'cdevents'].map((f) => html`<option
      selected=${f === (initial?.format ?? 'cds')}>${f}</option>`)}</select></label>
    <label>Signature <select name="signature">${['symmetric', 'ed25519'].map((s) => html`<option
      selected=${s === (initial?.signature ?? 'symmetric')}>${s}</option>`)}</select></label>
    <label>Order <select name="order">${['none', 'all', ...ORDER_KEYS].map((o) => html`<option
      value=${o} selected=${o === orderOf(initial)}>${ORDER_LABELS[o] ?? `per ${o}`}</option>`)}</select></label>
    <label class="wide">Filters, one <code>name: expression</code> a line
      <textarea name="filters" rows="3" spellcheck="false" value=${text}
        onInput=${(e) => setText(e.currentTarget.value)} placeholder="runs: ^Run(Ended|JobEnded)$"></textarea></label>
    <${Preview} lines=${lines} all=${all} />
    ${initial && Object.keys(initial.auth?.headers || {}).length > 0 && html`<p class="muted" id="kept-headers">${
      `Header values kept as stored: ${Object.keys(initial.auth.headers).join(', ')}.`}</p>`}
    <div><button type="submit">${initial ? 'Save' : 'Create'}</button>
      <button type="button" onClick=${() => onDone(null)}>Cancel</button></div>
    ${error && html`<p class="error" role="alert" id="form-error">${error}</p>`}
  </form>`;
}
