// The query API's filters as the console writes them: `key:value` tokens
// in a text box, the same keys in the page's URL and in the query string
// of GET /v2/events and the SSE stream (crates/api/src/filter.rs).
export const FILTER_KEYS = [
  'project_key', 'type', 'family', 'vcs_name', 'repository', 'workflow',
  'workflow_run_id', 'run_job_id', 'job_id', 'user', 'region', 'hatchery', 'status',
];

// The URL's filter keys (and `extra` ones, such as since/until), as a query string.
export function filterOf(search, extra = []) {
  const from = new URLSearchParams(search);
  const out = new URLSearchParams();
  for (const k of FILTER_KEYS.concat(extra)) if (from.get(k)) out.set(k, from.get(k));
  return out;
}

// `key:value key:value` as the filter box shows it, and back. A value
// runs to the next space; the key is before the first colon, so a time
// (`since:2026-11-30T10:00:00Z`) reads whole.
export function toText(filter, keys = FILTER_KEYS) {
  return [...filter].filter(([k]) => keys.includes(k)).map(([k, v]) => `${k}:${v}`).join(' ');
}

export function fromText(text, keys = FILTER_KEYS) {
  const out = new URLSearchParams();
  const bad = [];
  for (const tok of text.split(/\s+/).filter(Boolean)) {
    const i = tok.indexOf(':');
    const k = i > 0 ? tok.slice(0, i) : '';
    if (!keys.includes(k) || i === tok.length - 1) bad.push(tok);
    else out.set(k, tok.slice(i + 1));
  }
  return { filter: out, bad };
}
