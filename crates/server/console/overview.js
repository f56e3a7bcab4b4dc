// Overview (`/console/overview?every=5`): the log's head, events per
// second now (from the head's moves between two readings), the last hour's
// events per minute and by family (counted by the server, see readMinutes),
// storage, and — for an admin, whose session may read /mon/metrics — live
// stream connections and webhook deliveries pending; each sink's lag. It
// reads every `every` seconds (default 5) and not at all while the tab is
// hidden.
import { useEffect, useState } from './vendor/hooks.js';
import { api, html } from './api.js';

const HOUR = 3600 * 1000;
// Kept across visits of the view while the page lives.
const samples = [];

// Sums of the Prometheus text's samples by metric name (labels summed up).
export function parseMetrics(text) {
  const sums = {};
  for (const line of text.split('\n')) {
    const m = line.match(/^([a-z_]+)(\{[^}]*\})?\s+([-+0-9.eE]+|NaN)$/);
    if (!m) continue;
    const v = Number(m[3]);
    sums[m[1]] = (sums[m[1]] || 0) + v;
  }
  return { sums };
}

const MINUTE = 60 * 1000;
// The last hour's events per minute, by family, as the server counts them
// (`GET /v2/events/stats`, by event time, what the session may read): the
// whole hour when the view opens, then only from the newest minute kept on.

function iso(ms) {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

async function readMinutes(now, minutes) {
  const first = Math.floor(now / MINUTE) * MINUTE - 59 * MINUTE;
  const last = minutes.length ? minutes[minutes.length - 1].t : 0;
  const since = last >= first ? last : first;
  const { json } = await api('GET', `/v2/events/stats?since=${iso(since)}&until=${iso(now)}&step=60s`);
  const kept = minutes.filter((m) => m.t >= first && m.t < since)
    .concat(json.buckets.map((b) => ({ t: Date.parse(b.start), total: b.total, fam: b.by_family })));
  return { since: iso(first), until: iso(now), minutes: kept };
}

// Events per family over the window, most first.
function familyTotals(list) {
  const out = {};
  for (const m of list) for (const [f, n] of Object.entries(m.fam)) out[f] = (out[f] || 0) + n;
  return Object.entries(out).sort((a, b) => b[1] - a[1]);
}

function Families({ rows }) {
  const top = Math.max(1, ...rows.map(([, n]) => n));
  return html`<h3>Events by family <small class="muted">(last hour, by event time)</small></h3>
    ${rows.length === 0 && html`<p class="muted">No event in the last hour.</p>`}
    <ul class="families" id="by-family">${rows.map(([f, n]) => html`<li key=${f} data-family=${f} data-count=${n}>
      <span class="name">${f}</span><span class="bar" style=${{ width: `${(n / top) * 60}%` }}></span><span class="num">${n}</span></li>`)}</ul>`;
}

// Events/s per minute of the last hour (the current minute so far).
function Chart({ counts }) {
  const { since, until, minutes: list } = counts;
  const end = Date.parse(until);
  const t0 = Date.parse(since);
  const rate = (m) => m.total / Math.max(1, (Math.min(end, m.t + MINUTE) - m.t) / 1000);
  const top = Math.max(0.1, ...list.map(rate));
  const total = list.reduce((a, m) => a + m.total, 0);
  const w = 600;
  const h = 80;
  const bw = w / 60;
  return html`<svg class="spark" id="rate-chart" viewBox=${`0 0 ${w} ${h}`} preserveAspectRatio="none"
      data-since=${since} data-until=${until} data-total=${total}
      role="img" aria-label=${`events per second by minute over the last hour, up to ${top.toFixed(1)}`}>
    ${list.map((m) => {
      const bh = (rate(m) / top) * (h - 4);
      return html`<rect key=${m.t} x=${(((m.t - t0) / MINUTE) * bw).toFixed(1)} y=${(h - bh).toFixed(1)}
        width=${(bw - 1).toFixed(1)} height=${bh.toFixed(1)} data-total=${m.total} />`;
    })}
  </svg><p class="muted">${total} events in the last hour · peak ${top.toFixed(1)} events/s in a minute</p>`;
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

function Card({ id, label, value }) {
  return html`<div class="card"><div class="label">${label}</div><div class="value" id=${id}>${value}</div></div>`;
}

export function Overview({ session }) {
  const every = Math.max(1, Number(new URLSearchParams(location.search).get('every')) || 5);
  const admin = session.grants.includes('admin');
  const [status, setStatus] = useState(null);
  const [metrics, setMetrics] = useState(null);
  const [counts, setCounts] = useState(null);
  const [points, setPoints] = useState(() => samples.slice());
  const [error, setError] = useState(null);
  useEffect(() => {
    let timer = null;
    let kept = { minutes: [] };
    let reading = false;
    async function read() {
      if (reading) return;
      reading = true;
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
        kept = await readMinutes(now, kept.minutes);
        setCounts(kept);
        setError(null);
        if (admin) setMetrics(parseMetrics((await api('GET', '/mon/metrics')).text));
      } catch (err) {
        setError(err.message);
      }
      reading = false;
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
    <h3>Events per second <small class="muted">(per minute, last hour)</small></h3>
    ${counts && html`<${Chart} counts=${counts} />`}
    ${counts && html`<${Families} rows=${familyTotals(counts.minutes)} />`}
    ${status.sinks && html`<h3>Sinks</h3><table class="events" id="overview-sinks">
      <thead><tr><th>sink</th><th>state</th><th>lag (events)</th><th>lag (s)</th></tr></thead>
      <tbody>${status.sinks.map((k) => html`<tr key=${k.name}><td>${k.name}</td><td>${k.state}</td>
        <td class="num">${k.lag_events}</td><td class="num">${k.lag_seconds.toFixed(1)}</td></tr>`)}</tbody></table>`}
    ${!admin && html`<p class="muted">Connections and webhook figures need an admin token.</p>`}`}
  </main>`;
}
