// Run timeline: one lane per job of a workflow run (`/console/runs/{id}`),
// enqueued → scheduled → building → ended, coloured by the job's status,
// its run results as marks. The events come from one live stream of the
// run (stream.js) opened at the start of the log: the server replays the
// run's past events, then sends the new ones as they are committed, so the
// timeline moves while the run goes on and resumes after a disconnect.
import { useEffect, useRef, useState } from './vendor/hooks.js';
import { html, link } from './api.js';
import { Stream } from './stream.js';
import { rowKeys, shortTime } from './table.js';

const ENDS = ['RunJobEnded', 'RunJobBlocked', 'RunJobCancelled', 'RunJobSkipped', 'RunJobStopped'];
const RESULTS = ['RunJobRunResultAdded', 'RunJobRunResultUpdated'];

// The run and its lanes, from its events in sequence order.
export function buildRun(events) {
  const run = { status: '', workflow: '', number: null, project: '', start: null, end: null };
  const lanes = new Map();
  let min = Infinity;
  let max = -Infinity;
  for (const { seq, event: e } of events) {
    const t = Date.parse(e.timestamp);
    if (Number.isFinite(t)) {
      min = Math.min(min, t);
      max = Math.max(max, t);
    }
    run.workflow = run.workflow || e.workflow || '';
    run.project = run.project || e.project_key || '';
    if (run.number === null && e.run_number) run.number = e.run_number;
    if (e.type.startsWith('RunJob') && e.run_job_id) {
      let lane = lanes.get(e.run_job_id);
      if (!lane) {
        lane = { id: e.run_job_id, job: e.job_id || e.run_job_id, seq, status: '', results: [], end: null };
        lanes.set(e.run_job_id, lane);
      }
      if (e.type === 'RunJobEnqueued') lane.enqueued = t;
      else if (e.type === 'RunJobScheduled') lane.scheduled = t;
      else if (e.type === 'RunJobBuilding') lane.building = t;
      else if (ENDS.includes(e.type)) {
        lane.end = t;
        lane.endType = e.type;
      }
      if (RESULTS.includes(e.type)) lane.results.push({ t, name: e.run_result || '', id: e.id });
      else if (e.status) lane.status = e.status;
      if (e.hatchery) lane.hatchery = e.hatchery;
    } else if (e.type.startsWith('Run') && !e.type.startsWith('RunJob')) {
      if (e.status) run.status = e.status;
      if (e.type === 'RunCrafted') run.start = t;
      if (e.type === 'RunEnded') run.end = t;
    }
  }
  const first = (l) => l.enqueued ?? l.scheduled ?? l.building ?? l.end ?? Infinity;
  const ordered = [...lanes.values()].sort((a, b) => first(a) - first(b) || a.seq - b.seq);
  return { run, lanes: ordered, min, max };
}

// [from, to, phase] pieces of a lane; the last one runs to `now` until the job ends.
function segments(l, now) {
  const points = [['waiting', l.enqueued], ['scheduled', l.scheduled], ['building', l.building]]
    .filter(([, t]) => t !== undefined);
  return points.map(([phase, t], i) => {
    const to = i + 1 < points.length ? points[i + 1][1] : (l.end ?? now);
    return [t, to, phase];
  });
}

function Lane({ l, t0, span, now }) {
  const at = (t) => `${(((t - t0) / span) * 100).toFixed(3)}%`;
  const width = (a, b) => `${Math.max(0.3, ((b - a) / span) * 100).toFixed(3)}%`;
  const status = (l.status || '').toLowerCase();
  return html`<tr class="lane" data-job=${l.job} data-run-job=${l.id} data-status=${status}
      data-ended=${l.end !== null ? 'yes' : 'no'} tabindex="0">
    <th scope="row"><a href=${`/console/events?run_job_id=${encodeURIComponent(l.id)}`} onClick=${link}>${l.job}</a>
      <span class=${`status s-${status}`}>${l.status}</span></th>
    <td class="track">
      ${segments(l, now).map(([a, b, phase]) => html`<span class=${`seg ${phase}${phase === 'building' && l.end !== null ? ` s-${status}` : ''}${l.end === null && b === now ? ' ongoing' : ''}`}
        data-phase=${phase} title=${`${phase} ${shortTime(new Date(a).toISOString())}`} style=${{ left: at(a), width: width(a, b) }}></span>`)}
      ${l.end !== null && html`<span class=${`end s-${status}`} title=${`${l.endType} ${l.status}`} style=${{ left: at(l.end) }}></span>`}
      ${l.results.map((r) => html`<a class="mark" href=${`/console/events/${encodeURIComponent(r.id)}`} onClick=${link}
        title=${`run result ${r.name}`} aria-label=${`run result ${r.name}`} style=${{ left: at(r.t) }}></a>`)}
    </td>
  </tr>`;
}

export function Timeline({ id }) {
  const [events, setEvents] = useState([]);
  const [state, setState] = useState('connecting');
  const [refused, setRefused] = useState(null);
  const [now, setNow] = useState(Date.now());
  const buf = useRef({ incoming: [], frame: 0 });

  useEffect(() => {
    const b = buf.current;
    const flush = () => {
      b.frame = 0;
      const batch = b.incoming;
      b.incoming = [];
      setEvents((old) => old.concat(batch));
      setNow(Date.now());
    };
    const s = new Stream(new URLSearchParams({ workflow_run_id: id }), {
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
    // From the log's start: the server replays this run's past, then goes live.
    s.start(0);
    return () => {
      s.stop();
      if (b.frame) cancelAnimationFrame(b.frame);
    };
  }, [id]);

  const { run, lanes, min, max } = buildRun(events);
  const going = lanes.length > 0 && run.end === null;
  // While the run goes on, its open lanes grow with the clock (not while hidden).
  useEffect(() => {
    if (!going) return undefined;
    const tick = setInterval(() => document.hidden || setNow(Date.now()), 1000);
    return () => clearInterval(tick);
  }, [going]);
  const t0 = Number.isFinite(min) ? min : now;
  const t1 = Math.max(going ? Math.max(now, max) : max, t0 + 1000);
  const span = t1 - t0;
  const q = encodeURIComponent(id);
  return html`<main class="timeline">
    <h2>Run ${run.workflow} ${run.number !== null ? `#${run.number}` : ''}
      <span class=${`status s-${run.status.toLowerCase()}`} id="run-status">${run.status}</span>
      <small>${id}</small></h2>
    <p class="links">
      <a href=${`/console/tail?workflow_run_id=${q}`} onClick=${link}>live tail of the run</a>
      <a href=${`/console/events?workflow_run_id=${q}`} onClick=${link}>its events</a>
      <span id="timeline-state" class=${`state ${state}`} data-state=${state}>${state}</span>
    </p>
    ${refused && html`<p class="error" role="alert" id="refused">${refused}</p>`}
    ${lanes.length > 0 && html`<table class="lanes" id="lanes" onKeyDown=${rowKeys}>
      <thead><tr><th>job</th><td class="axis">
        <span>${shortTime(new Date(t0).toISOString())}</span><span>+${Math.round(span / 1000)} s</span></td></tr></thead>
      <tbody>${lanes.map((l) => html`<${Lane} key=${l.id} l=${l} t0=${t0} span=${span} now=${t1} />`)}</tbody>
    </table>
    <p class="legend"><span class="seg waiting"></span> enqueued <span class="seg scheduled"></span> scheduled
      <span class="seg building"></span> building <span class="mark"></span> run result</p>`}
    ${lanes.length === 0 && !refused && html`<p class="empty">No job of this run yet…</p>`}
  </main>`;
}
