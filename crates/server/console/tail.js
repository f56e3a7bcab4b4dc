// Live tail: the events of a filter as they are committed, newest on top.
//
// The stream (stream.js) resumes after the last sequence number shown.
// Events are gathered and drawn at most once per animation frame, and only
// the newest `cap` rows are kept, so a fast stream never freezes the tab:
// the rows are DOM elements added at the top and dropped at the bottom
// (table.js's eventRowElement), never diffed as a whole list, so a frame
// costs what its new rows cost, however many rows are shown.
import { Component } from './vendor/preact.js';
import { useEffect, useRef, useState } from './vendor/hooks.js';
import { html, navigate } from './api.js';
import { FILTER_KEYS, filterOf, fromText, toText } from './filters.js';
import { Stream } from './stream.js';
import { eventRowElement, rowKeys } from './table.js';

const DEFAULT_CAP = 500;

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
  const buf = useRef({ incoming: [], heldRows: [], heldCount: 0, paused: false, frame: 0, body: null });

  // Draws `batch` (oldest first) on top, newest first, and keeps `cap` rows.
  function draw(batch) {
    const tb = buf.current.body;
    if (!tb || batch.length === 0) return;
    performance.mark('tail-draw');
    const frag = document.createDocumentFragment();
    for (let i = batch.length - 1; i >= Math.max(0, batch.length - cap); i--) frag.appendChild(eventRowElement(batch[i]));
    tb.prepend(frag);
    while (tb.rows.length > cap) tb.lastElementChild.remove();
    setCount(tb.rows.length);
    performance.measure(`tail-draw ${batch.length}`, 'tail-draw');
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
      const batch = b.incoming;
      b.incoming = [];
      if (b.paused) {
        b.heldCount += batch.length;
        b.heldRows = b.heldRows.concat(batch).slice(-cap);
        setHeld(b.heldCount);
        return;
      }
      draw(batch);
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
      const back = b.heldRows;
      b.heldRows = [];
      b.heldCount = 0;
      setHeld(0);
      draw(back);
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
