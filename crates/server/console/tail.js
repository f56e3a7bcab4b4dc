// Live tail: the events of a filter as they are committed, newest on top.
//
// The stream (stream.js) resumes after the last sequence number shown.
// Events are gathered and drawn at most once per animation frame, at most
// PER_FRAME rows and about FRAME_BUDGET_MS a frame (a burst is spread over
// the next frames), and only
// the newest `cap` rows are kept, so a fast stream never freezes the tab:
// the rows are DOM elements added at the top, never diffed as a whole list,
// and once the table is full the bottom rows are refilled and moved to the
// top (table.js's fillEventRow) rather than dropped and made anew, so a
// frame costs what its new rows cost, however many rows are shown.
import { Component } from './vendor/preact.js';
import { useEffect, useRef, useState } from './vendor/hooks.js';
import { html, navigate } from './api.js';
import { FILTER_KEYS, filterOf, fromText, toText } from './filters.js';
import { Stream } from './stream.js';
import { eventRowElement, fillEventRow, rowKeys } from './table.js';

const DEFAULT_CAP = 500;
// The most rows drawn in one animation frame (at 60 frames/s, 6,000 rows/s),
// in chunks of CHUNK rows while the frame's drawing is under FRAME_BUDGET_MS.
const PER_FRAME = 100;
const CHUNK = 20;
const FRAME_BUDGET_MS = 8;

// The table's body, left to the tail: Preact draws it once, empty.
class LiveBody extends Component {
  shouldComponentUpdate() {
    return false;
  }
  render({ onBody }) {
    return html`<tbody role="rowgroup" ref=${onBody}></tbody>`;
  }
}

// A row's link opens its view in the console (rows are not Preact's).
function openLink(e) {
  const a = e.target.closest('a[href^="/console/"]');
  if (!a || e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey) return;
  e.preventDefault();
  navigate(a.getAttribute('href'));
}

export function Tail() {
  const search = location.search;
  const filter = filterOf(search);
  const cap = Math.max(1, Math.min(5000, Number(new URLSearchParams(search).get('cap')) || DEFAULT_CAP));
  const [count, setCount] = useState(0);
  const [state, setState] = useState('connecting');
  const [refused, setRefused] = useState(null);
  const [paused, setPaused] = useState(false);
  const [held, setHeld] = useState(0);
  const [bad, setBad] = useState([]);
  // heldRows: the newest `cap` events received while paused (oldest first).
  const buf = useRef({ incoming: [], heldRows: [], heldCount: 0, paused: false, frame: 0, flush: null, body: null });

  // Draws `batch` (oldest first) on top, newest first, and keeps `cap` rows.
  // Once the table is full, the bottom rows are refilled and moved to the
  // top instead of new ones being made and old ones dropped.
  function draw(batch) {
    const tb = buf.current.body;
    if (!tb || batch.length === 0) return;
    const frag = document.createDocumentFragment();
    const from = Math.max(0, batch.length - cap);
    const spare = Math.max(0, tb.rows.length + batch.length - from - cap);
    for (let i = batch.length - 1; i >= from; i--) {
      const old = batch.length - 1 - i < spare ? tb.lastElementChild : null;
      frag.appendChild(old ? fillEventRow(old, batch[i]) : eventRowElement(batch[i]));
    }
    tb.prepend(frag);
    setCount(tb.rows.length);
  }

  useEffect(() => {
    const b = buf.current;
    // A new filter starts afresh: no row, nothing held.
    if (b.body) b.body.replaceChildren();
    setCount(0);
    b.incoming = [];
    b.heldRows = [];
    b.heldCount = 0;
    setHeld(0);
    const flush = () => {
      b.frame = 0;
      if (b.paused) {
        const batch = b.incoming;
        b.incoming = [];
        b.heldCount += batch.length;
        b.heldRows = b.heldRows.concat(batch).slice(-cap);
        setHeld(b.heldCount);
        return;
      }
      // At most PER_FRAME rows a frame (older ones beyond the cap would be
      // dropped anyway): a burst is spread over the next frames instead of
      // blocking one.
      // Drawn in chunks until FRAME_BUDGET_MS is spent: a slow (or busy)
      // machine draws fewer rows a frame rather than longer frames.
      if (b.incoming.length > cap) b.incoming = b.incoming.slice(-cap);
      performance.mark('tail-draw');
      const started = performance.now();
      let drawn = 0;
      while (b.incoming.length && drawn < PER_FRAME && (drawn === 0 || performance.now() - started < FRAME_BUDGET_MS)) {
        const chunk = b.incoming.splice(0, Math.min(CHUNK, PER_FRAME - drawn));
        draw(chunk);
        drawn += chunk.length;
      }
      performance.measure(`tail-draw ${drawn}`, 'tail-draw');
      if (b.incoming.length) b.frame = requestAnimationFrame(flush);
    };
    b.flush = flush;
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
      const back = b.heldRows;
      b.heldRows = [];
      b.heldCount = 0;
      setHeld(0);
      // Drawn over the next frames, like a burst of the stream.
      b.incoming = back.concat(b.incoming);
      if (!b.frame && b.flush) b.frame = requestAnimationFrame(b.flush);
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
    <table class="events" id="tail-rows" role="table" onKeyDown=${rowKeys} onClick=${openLink}>
      <thead role="rowgroup"><tr role="row">${['seq', 'time (UTC)', 'type', 'project', 'what', 'status'].map((c) =>
        html`<th role="columnheader">${c}</th>`)}</tr></thead>
      <${LiveBody} onBody=${(el) => { buf.current.body = el; }} />
    </table>
    ${count === 0 && !refused && html`<p class="empty">Waiting for events…</p>`}
  </main>`;
}
