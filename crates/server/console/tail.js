// Live tail: the events of a filter as they are committed, newest on top.
//
// The stream is an EventSource opened with a single-use ticket. It keeps
// the highest sequence number it received; after an error, a `lagged` or a
// `shutdown` message (a server restart) it takes a new ticket and resumes
// after that number, so the rows stay contiguous: no gap, no duplicate.
// Events are gathered and drawn at most once per animation frame, and only
// the newest `cap` rows are kept, so a fast stream never freezes the tab.
import { useEffect, useRef, useState } from './vendor/hooks.js';
import { api, html, link, navigate, ticket } from './api.js';

export const FILTER_KEYS = [
  'project_key', 'type', 'family', 'vcs_name', 'repository', 'workflow',
  'workflow_run_id', 'run_job_id', 'job_id', 'user', 'region', 'hatchery', 'status',
];
const DEFAULT_CAP = 500;

// The URL's filter keys, as the stream's query string.
function filterOf(search) {
  const from = new URLSearchParams(search);
  const out = new URLSearchParams();
  for (const k of FILTER_KEYS) if (from.get(k)) out.set(k, from.get(k));
  return out;
}

// `key:value key:value` as the filter box shows it, and back.
function toText(filter) {
  return [...filter].map(([k, v]) => `${k}:${v}`).join(' ');
}
function fromText(text) {
  const out = new URLSearchParams();
  const bad = [];
  for (const tok of text.split(/\s+/).filter(Boolean)) {
    const i = tok.indexOf(':');
    const k = i > 0 ? tok.slice(0, i) : '';
    if (!FILTER_KEYS.includes(k)) bad.push(tok);
    else out.set(k, tok.slice(i + 1));
  }
  return { filter: out, bad };
}

class Stream {
  constructor(filter, handlers) {
    this.filter = filter;
    this.h = handlers;
    this.lastSeq = null;
    this.es = null;
    this.stopped = false;
    this.backoff = 250;
    this.timer = null;
  }
  start() {
    this.connect();
  }
  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.es) this.es.close();
  }
  retry(delay) {
    if (this.stopped) return;
    this.h.state('reconnecting');
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.connect(), delay ?? this.backoff);
    this.backoff = Math.min(this.backoff * 2, 4000);
  }
  async connect() {
    if (this.stopped) return;
    let t;
    try {
      t = await ticket();
    } catch (err) {
      if (err.status === 401 || err.status === 403) return this.h.refused(err);
      return this.retry();
    }
    if (this.stopped) return;
    const q = new URLSearchParams(this.filter);
    q.set('ticket', t);
    if (this.lastSeq !== null) q.set('since', String(this.lastSeq));
    const es = new EventSource(`/v2/events/stream?${q}`);
    this.es = es;
    let opened = false;
    es.onopen = () => {
      opened = true;
      this.backoff = 250;
      this.h.state('live');
    };
    es.onmessage = (m) => {
      const seq = Number(m.lastEventId);
      if (this.lastSeq !== null && seq <= this.lastSeq) return;
      this.lastSeq = seq;
      this.h.event({ seq, event: JSON.parse(m.data) });
    };
    const again = (delay) => () => {
      es.close();
      this.retry(delay);
    };
    es.addEventListener('lagged', again(0));
    es.addEventListener('shutdown', again(250));
    es.onerror = () => {
      es.close();
      if (this.stopped) return;
      // Refused before it opened: ask the query API why (a 400 or 403
      // names the parameter or the project), else the server is away.
      if (!opened) {
        api('GET', `/v2/events?limit=1&${this.filter}`).then(
          () => this.retry(),
          (err) => (err.status === 400 || err.status === 403 ? this.h.refused(err) : this.retry()),
        );
      } else {
        this.retry();
      }
    };
  }
}

function Row({ r }) {
  const e = r.event;
  return html`<tr data-seq=${r.seq}>
    <td class="num">${r.seq}</td>
    <td class="time">${(e.timestamp || '').replace('T', ' ').replace(/\.\d+/, '').replace('Z', '')}</td>
    <td><a href=${`/console/events/${encodeURIComponent(e.id)}`} onClick=${link}>${e.type}</a></td>
    <td>${e.project_key || ''}</td>
    <td>${e.workflow || e.hatchery || e.username || ''}</td>
    <td class=${`status s-${(e.status || '').toLowerCase()}`}>${e.status || ''}</td>
  </tr>`;
}

export function Tail() {
  const search = location.search;
  const filter = filterOf(search);
  const cap = Math.max(1, Math.min(5000, Number(new URLSearchParams(search).get('cap')) || DEFAULT_CAP));
  const [rows, setRows] = useState([]);
  const [state, setState] = useState('connecting');
  const [refused, setRefused] = useState(null);
  const [paused, setPaused] = useState(false);
  const [held, setHeld] = useState(0);
  const [bad, setBad] = useState([]);
  const buf = useRef({ incoming: [], heldRows: [], paused: false, frame: 0 });

  useEffect(() => {
    const b = buf.current;
    const flush = () => {
      b.frame = 0;
      const batch = b.incoming;
      b.incoming = [];
      if (b.paused) {
        b.heldRows.push(...batch);
        setHeld(b.heldRows.length);
        return;
      }
      batch.reverse();
      setRows((old) => batch.concat(old).slice(0, cap));
    };
    const s = new Stream(filter, {
      event(r) {
        b.incoming.push(r);
        if (!b.frame) b.frame = requestAnimationFrame(flush);
      },
      state: setState,
      refused(err) {
        setState('refused');
        setRefused(err.status === 401 ? 'Signed out: sign in again.' : err.message);
      },
    });
    s.start();
    return () => {
      s.stop();
      if (b.frame) cancelAnimationFrame(b.frame);
    };
  }, [search]);

  function togglePause() {
    const b = buf.current;
    b.paused = !b.paused;
    setPaused(b.paused);
    if (!b.paused) {
      const back = b.heldRows.reverse();
      b.heldRows = [];
      setHeld(0);
      setRows((old) => back.concat(old).slice(0, cap));
    }
  }
  function applyFilter(e) {
    e.preventDefault();
    const { filter: f, bad: wrong } = fromText(e.currentTarget.elements.filter.value);
    setBad(wrong);
    if (wrong.length) return;
    const qs = f.toString();
    navigate(`/console/tail${qs ? `?${qs}` : ''}`);
  }

  return html`<main class="tail">
    <form class="bar" onSubmit=${applyFilter}>
      <input name="filter" class="filter" value=${toText(filter)} spellcheck="false"
        placeholder="project_key:PROJ type:RunJob* status:Fail" aria-label="filter" />
      <button type="submit">Apply</button>
      <button type="button" id="pause" onClick=${togglePause} aria-pressed=${paused}>
        ${paused ? 'Resume' : 'Pause'}</button>
      ${paused && html`<span id="held" class="held">${held} new</span>`}
      <span id="tail-state" class=${`state ${state}`} data-state=${state}>${state}</span>
    </form>
    ${bad.length > 0 && html`<p class="error">Unknown filter ${bad.join(', ')}; keys: ${FILTER_KEYS.join(', ')}</p>`}
    ${refused && html`<p class="error" role="alert" id="refused">${refused}</p>`}
    <table class="events" id="tail-rows">
      <thead><tr><th>seq</th><th>time (UTC)</th><th>type</th><th>project</th><th>what</th><th>status</th></tr></thead>
      <tbody>${rows.map((r) => html`<${Row} key=${r.seq} r=${r} />`)}</tbody>
    </table>
    ${rows.length === 0 && !refused && html`<p class="empty">Waiting for events…</p>`}
  </main>`;
}
