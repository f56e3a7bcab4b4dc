// Explorer: a page of GET /v2/events at a time. Everything that picks the
// rows is in the page's URL (`/console/events?project_key=P&since=…&order=desc
// &cursor=N`): the filter keys, since/until, order, limit and the cursor, so
// a shared link shows the same rows as GET /v2/events with that query. A
// time preset writes an absolute `since` (a link keeps meaning the same
// window). The next page is a new URL; the browser's Back is the previous.
import { useEffect, useState } from './vendor/hooks.js';
import { api, html, link, navigate } from './api.js';
import { FILTER_KEYS, filterOf, fromText, toText } from './filters.js';
import { EventTable } from './table.js';

const PAGE_KEYS = ['since', 'until', 'order', 'limit', 'cursor'];
const PRESETS = [
  ['15m', 15 * 60], ['1h', 3600], ['24h', 86400], ['7d', 7 * 86400],
];

// The query the URL names, exactly as GET /v2/events takes it.
export function explorerQuery(search) {
  return filterOf(search, PAGE_KEYS);
}

function rfc3339(date) {
  return date.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

export function Explorer() {
  const search = location.search;
  const q = explorerQuery(search);
  const [page, setPage] = useState(null);
  const [error, setError] = useState(null);
  const [bad, setBad] = useState([]);

  useEffect(() => {
    setPage(null);
    setError(null);
    api('GET', `/v2/events?${q}`).then(
      ({ json }) => setPage({ ...json, search }),
      (err) => setError(err),
    );
  }, [search]);

  // The form's fields over the URL's: cursor dropped (a new query starts
  // at its first page).
  function go(changes) {
    const next = new URLSearchParams(q);
    next.delete('cursor');
    for (const [k, v] of Object.entries(changes)) {
      if (v === null || v === '') next.delete(k);
      else next.set(k, v);
    }
    navigate(`/console/events${next.toString() ? `?${next}` : ''}`);
  }
  function apply(e) {
    e.preventDefault();
    const el = e.currentTarget.elements;
    const { filter, bad: wrong } = fromText(el.filter.value);
    setBad(wrong);
    if (wrong.length) return;
    const changes = { since: el.since.value.trim(), until: el.until.value.trim(), order: el.order.value };
    for (const k of FILTER_KEYS) changes[k] = filter.get(k);
    if (changes.order === 'asc') changes.order = null;
    go(changes);
  }
  function preset(seconds) {
    go({ since: rfc3339(new Date(Date.now() - seconds * 1000)), until: null });
  }
  const next = new URLSearchParams(q);
  if (page && page.next_cursor !== null) next.set('cursor', String(page.next_cursor));
  const first = new URLSearchParams(q);
  first.delete('cursor');
  const errorField = error && error.details && error.details[0] && error.details[0].field;

  return html`<main class="explorer">
    <form class="bar" onSubmit=${apply} id="explorer-form">
      <input name="filter" class="filter" value=${toText(q)} spellcheck="false"
        placeholder="project_key:PROJ type:RunJob* status:Fail" aria-label="filter" key=${`f${search}`} />
      <label>since <input name="since" class="time" value=${q.get('since') || ''} placeholder="2026-11-30T10:00:00Z"
        spellcheck="false" key=${`s${search}`} /></label>
      <label>until <input name="until" class="time" value=${q.get('until') || ''} placeholder="RFC 3339"
        spellcheck="false" key=${`u${search}`} /></label>
      <select name="order" aria-label="order" key=${`o${search}`}>
        <option value="asc" selected=${q.get('order') !== 'desc'}>oldest first</option>
        <option value="desc" selected=${q.get('order') === 'desc'}>newest first</option>
      </select>
      <button type="submit">Search</button>
      <span class="presets">last ${PRESETS.map(([name, s]) =>
        html`<button type="button" data-preset=${name} onClick=${() => preset(s)}>${name}</button> `)}</span>
    </form>
    ${bad.length > 0 && html`<p class="error" id="bad-filter">Unknown filter ${bad.join(', ')}; keys: ${FILTER_KEYS.join(', ')}</p>`}
    ${error && html`<p class="error" role="alert" id="explorer-error" data-field=${errorField}>${error.message}</p>`}
    ${page && html`<${EventTable} id="explorer-rows" rows=${page.events} url=${page.search} />`}
    ${page && page.events.length === 0 && html`<p class="empty">No event matches.</p>`}
    <nav class="pager">
      ${q.get('cursor') && html`<a id="first-page" href=${`/console/events?${first}`} onClick=${link}>First page</a>`}
      ${page && page.next_cursor !== null && html`<a id="next-page" href=${`/console/events?${next}`} onClick=${link}>Next page</a>`}
      ${page && html`<span class="muted">${page.events.length} events${q.get('cursor') ? ` after cursor ${q.get('cursor')}` : ''}</span>`}
    </nav>
  </main>`;
}
