// Event detail: the event exactly as `GET /v2/events/{id}` returns it
// (the raw text, untouched), the same as a collapsible tree, ways to copy
// it, and links to the live tail of its run and its project.
import { useEffect, useState } from './vendor/hooks.js';
import { api, html, link } from './api.js';

function Tree({ name, value, open }) {
  if (value === null || typeof value !== 'object') {
    return html`<div class="leaf">${name !== undefined && html`<span class="k">${name}: </span>`}<span
      class=${`v t-${value === null ? 'null' : typeof value}`}>${JSON.stringify(value)}</span></div>`;
  }
  const entries = Array.isArray(value) ? value.map((v, i) => [i, v]) : Object.entries(value);
  const brackets = Array.isArray(value) ? ['[', ']'] : ['{', '}'];
  return html`<details open=${open}>
    <summary>${name !== undefined && html`<span class="k">${name}: </span>`}${brackets[0]}${entries.length}${brackets[1]}</summary>
    <div class="children">${entries.map(([k, v]) => html`<${Tree} key=${k} name=${k} value=${v} open=${false} />`)}</div>
  </details>`;
}

function shellQuote(s) {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

export function Detail({ id }) {
  const [got, setGot] = useState(null);
  const [error, setError] = useState(null);
  const [copied, setCopied] = useState('');
  useEffect(() => {
    api('GET', `/v2/events/${encodeURIComponent(id)}`).then(
      (r) => setGot(r),
      (err) => setError(err.status === 404 ? 'No such event, or one this token may not read.' : err.message),
    );
  }, [id]);
  if (error) return html`<main class="detail"><p class="error" role="alert">${error}</p></main>`;
  if (!got) return html`<main class="detail"><p class="empty">Loading…</p></main>`;
  const e = got.json;
  const seq = Number(got.headers.get('cds-events-seq'));
  const url = `${location.origin}/v2/events/${encodeURIComponent(id)}`;
  const copies = {
    JSON: got.text,
    curl: `curl -H "Authorization: Bearer $CDS_EVENTS_TOKEN" ${shellQuote(url)}`,
    CLI: `cds-events query --cursor ${seq - 1} --limit 1 --output ndjson`,
  };
  async function copy(what) {
    try {
      await navigator.clipboard.writeText(copies[what]);
      setCopied(`${what} copied`);
    } catch (_) {
      setCopied('copying is not allowed here');
    }
  }
  return html`<main class="detail">
    <h2>${e.type} <small>#${seq} · ${e.id}</small></h2>
    <p class="links">
      ${e.project_key && html`<a href=${`/console/tail?project_key=${encodeURIComponent(e.project_key)}`} onClick=${link}>project ${e.project_key}</a>`}
      ${e.workflow_run_id && html`<a href=${`/console/runs/${encodeURIComponent(e.workflow_run_id)}`} onClick=${link}>run ${e.workflow_run_id}</a>`}
      ${e.workflow_run_id && html`<a href=${`/console/tail?workflow_run_id=${encodeURIComponent(e.workflow_run_id)}`} onClick=${link}>its live tail</a>`}
      ${e.project_key && html`<a href=${`/console/notifications?project_key=${encodeURIComponent(e.project_key)}`} onClick=${link}>its project's deliveries</a>`}
    </p>
    <p class="copy">Copy as ${Object.keys(copies).map((k) => html`<button type="button" onClick=${() => copy(k)}>${k}</button> `)}
      <span class="copied">${copied}</span></p>
    <section class="tree" id="tree"><${Tree} value=${e} open=${true} /></section>
    <h3>As stored</h3>
    <pre id="raw">${got.text}</pre>
  </main>`;
}
