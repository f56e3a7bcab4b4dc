// Overview (`/console/overview?every=5`): the log's head, events per
// second (from the head's moves between two readings, drawn over the last
// hour this page was open), storage, and — for an admin, whose session may
// read /mon/metrics — live stream connections, webhook deliveries pending
// and the events ingested by family; each sink's lag. It reads every
// `every` seconds (default 5) and not at all while the tab is hidden.
import { useEffect, useState } from './vendor/hooks.js';
import { api, html } from './api.js';

const HOUR = 3600 * 1000;
// Kept across visits of the view while the page lives.
const samples = [];

// Sums of the Prometheus text's samples by metric name (labels summed up),
// and the events ingested by type (`cds_events_ingested_total{type}`).
export function parseMetrics(text) {
  const sums = {};
  const byType = {};
  for (const line of text.split('\n')) {
    const m = line.match(/^([a-z_]+)(\{[^}]*\})?\s+([-+0-9.eE]+|NaN)$/);
    if (!m) continue;
    const v = Number(m[3]);
    sums[m[1]] = (sums[m[1]] || 0) + v;
    const type = m[1] === 'cds_events_ingested_total' && (m[2] || '').match(/type="([^"]*)"/);
    if (type) byType[type[1]] = v;
  }
  return { sums, byType };
}

let families = null;
// type → family, from the catalogue (read once).
function familyOf() {
  if (!families) {
    families = api('GET', '/v2/events/types').then(({ json }) => Object.fromEntries(json.types.map((t) => [t.type, t.family])));
  }
  return families;
}

// Events ingested per family between the first and the last reading kept.
function byFamily(first, last, fam) {
  const out = {};
  for (const [type, n] of Object.entries(last)) {
    const f = fam[type] || 'other';
    out[f] = (out[f] || 0) + n - (first[type] || 0);
  }
  return Object.entries(out).filter(([, n]) => n > 0).sort((a, b) => b[1] - a[1]);
}

const ingested = [];

function Families({ rows }) {
  if (!rows) return null;
  const top = Math.max(1, ...rows.map(([, n]) => n));
  return html`<h3>Ingested by family <small class="muted">(since this page opened, up to an hour)</small></h3>
    ${rows.length === 0 && html`<p class="muted">Nothing ingested meanwhile.</p>`}
    <ul class="families" id="by-family">${rows.map(([f, n]) => html`<li key=${f} data-family=${f} data-count=${n}>
      <span class="name">${f}</span><span class="bar" style=${{ width: `${(n / top) * 60}%` }}></span><span class="num">${n}</span></li>`)}</ul>`;
}

function bytes(n) {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i += 1;
  }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

function Spark({ points }) {
  if (points.length < 2) return html`<p class="muted">(a chart after two readings)</p>`;
  const w = 600;
  const h = 80;
  const t0 = points[0].t;
  const span = Math.max(1, points[points.length - 1].t - t0);
  const top = Math.max(1, ...points.map((p) => p.rate));
  const xy = points.map((p) => `${(((p.t - t0) / span) * w).toFixed(1)},${(h - (p.rate / top) * (h - 4)).toFixed(1)}`);
  return html`<svg class="spark" id="rate-chart" viewBox=${`0 0 ${w} ${h}`} preserveAspectRatio="none"
      role="img" aria-label=${`events per second, up to ${top.toFixed(1)}`}>
    <polyline points=${xy.join(' ')} />
  </svg><p class="muted">peak ${top.toFixed(1)} events/s over the last ${Math.round(span / 60000)} min</p>`;
}

function Card({ id, label, value }) {
  return html`<div class="card"><div class="label">${label}</div><div class="value" id=${id}>${value}</div></div>`;
}

export function Overview({ session }) {
  const every = Math.max(1, Number(new URLSearchParams(location.search).get('every')) || 5);
  const admin = session.grants.includes('admin');
  const [status, setStatus] = useState(null);
  const [metrics, setMetrics] = useState(null);
  const [fams, setFams] = useState(null);
  const [points, setPoints] = useState(() => samples.slice());
  const [error, setError] = useState(null);
  useEffect(() => {
    let timer = null;
    async function read() {
      try {
        const { json } = await api('GET', '/mon/status');
        const now = Date.now();
        const head = json.storage ? json.storage.head_seq : null;
        const last = samples[samples.length - 1];
        if (head !== null && last && now > last.t) {
          samples.push({ t: now, head, rate: Math.max(0, (head - last.head) / ((now - last.t) / 1000)) });
        } else if (head !== null && !last) samples.push({ t: now, head, rate: 0 });
        while (samples.length && samples[0].t < now - HOUR) samples.shift();
        setStatus(json);
        setPoints(samples.slice(1));
        setError(null);
        if (admin) {
          const got = parseMetrics((await api('GET', '/mon/metrics')).text);
          ingested.push({ t: now, byType: got.byType });
          while (ingested.length && ingested[0].t < now - HOUR) ingested.shift();
          setMetrics(got);
          setFams(byFamily(ingested[0].byType, got.byType, await familyOf()));
        }
      } catch (err) {
        setError(err.message);
      }
    }
    const start = () => {
      if (timer || document.hidden) return;
      read();
      timer = setInterval(read, every * 1000);
    };
    const stop = () => {
      clearInterval(timer);
      timer = null;
    };
    const visibility = () => (document.hidden ? stop() : start());
    document.addEventListener('visibilitychange', visibility);
    start();
    return () => {
      stop();
      document.removeEventListener('visibilitychange', visibility);
    };
  }, [every, admin]);

  const s = status && status.storage;
  const rate = points.length ? points[points.length - 1].rate : null;
  const m = metrics && metrics.sums;
  return html`<main class="overview">
    ${error && html`<p class="error" role="alert">${error}</p>`}
    ${status && html`<div class="cards">
      <${Card} id="overview-head" label="head sequence" value=${s ? s.head_seq : '—'} />
      <${Card} id="overview-rate" label="events/s" value=${rate === null ? '…' : rate.toFixed(1)} />
      <${Card} id="overview-events" label="events stored" value=${s ? s.events : '—'} />
      <${Card} id="overview-bytes" label=${`storage (${status.backend})`} value=${s ? bytes(s.bytes_on_disk) : '—'} />
      <${Card} id="overview-uptime" label="uptime" value=${`${Math.floor(status.uptime_seconds / 60)} min`} />
      ${m && html`<${Card} id="overview-connections" label="live connections"
        value=${m.cds_events_stream_connections ?? 0} />
      <${Card} id="overview-pending" label="webhook deliveries pending"
        value=${m.cds_events_webhook_deliveries_pending ?? 0} />`}
    </div>
    <h3>Events per second</h3>
    <${Spark} points=${points} />
    <${Families} rows=${fams} />
    ${status.sinks && html`<h3>Sinks</h3><table class="events" id="overview-sinks">
      <thead><tr><th>sink</th><th>state</th><th>lag (events)</th><th>lag (s)</th></tr></thead>
      <tbody>${status.sinks.map((k) => html`<tr key=${k.name}><td>${k.name}</td><td>${k.state}</td>
        <td class="num">${k.lag_events}</td><td class="num">${k.lag_seconds.toFixed(1)}</td></tr>`)}</tbody></table>`}
    ${!admin && html`<p class="muted">Connections and webhook figures need an admin token.</p>`}`}
  </main>`;
}
