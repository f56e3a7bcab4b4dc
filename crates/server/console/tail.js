// Live tail: the events of a filter as they are committed, newest on top.
//
// The stream (stream.js) resumes after the last sequence number shown.
// Events are gathered and drawn at most once per animation frame, and only
// the newest `cap` rows are kept, so a fast stream never freezes the tab.
import { useEffect, useRef, useState } from './vendor/hooks.js';
import { html, navigate } from './api.js';
import { FILTER_KEYS, filterOf, fromText, toText } from './filters.js';
import { Stream } from './stream.js';
import { EventTable } from './table.js';

const DEFAULT_CAP = 500;

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
    <${EventTable} id="tail-rows" rows=${rows} />
    ${rows.length === 0 && !refused && html`<p class="empty">Waiting for events…</p>`}
  </main>`;
}
