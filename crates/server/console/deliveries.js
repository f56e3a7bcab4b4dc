// One notification and its deliveries (`/console/notifications/P/NAME
// ?status=failed&delivery=ID`): by status, each with its attempts (time,
// status code, latency, error, response excerpt) when opened; the opened
// delivery is in the URL. Managers (and only they) see Edit (the form of
// notification_form.js, a PUT), Test, Enable or Disable, Rotate secret (the new one shown once), Redeliver and Redeliver
// every failed one since a time. The list is read again every 2 s while a
// delivery is pending, every 5 s otherwise, and not while the tab is hidden.
import { useEffect, useState } from './vendor/hooks.js';
import { api, html, link, navigate } from './api.js';
import { canManage, health, notificationApi, rate } from './notifications.js';
import { NotificationForm } from './notification_form.js';
import { rowKeys, shortTime } from './table.js';

const STATUSES = ['', 'pending', 'succeeded', 'failed', 'cancelled'];
const IDLE_MS = 5000;

function Attempts({ detail }) {
  return html`<table class="attempts" id="attempts" data-delivery=${detail.delivery.id}>
    <thead><tr><th>#</th><th>time (UTC)</th><th>status</th><th>latency</th><th>error</th><th>response</th></tr></thead>
    <tbody>${detail.attempts.map((a) => html`<tr key=${a.n} data-n=${a.n} data-code=${a.status_code ?? ''}>
      <td class="num">${a.n}</td><td class="time">${shortTime(a.at)}</td>
      <td class=${a.status_code >= 200 && a.status_code < 300 ? 's-success' : 's-fail'}>${a.status_code ?? '—'}</td>
      <td class="num">${a.latency_ms} ms</td><td>${a.error || ''}</td>
      <td><code class="excerpt">${a.response || ''}</code></td></tr>`)}</tbody>
  </table>`;
}

export function Deliveries({ session, project, name }) {
  const params = new URLSearchParams(location.search);
  const status = params.get('status') || '';
  const open = params.get('delivery');
  const base = notificationApi(project, name);
  const manage = canManage(session, project);
  const [n, setN] = useState(null);
  const [recent, setRecent] = useState(null);
  const [page, setPage] = useState(null);
  const [detail, setDetail] = useState(null);
  const [error, setError] = useState(null);
  const [note, setNote] = useState('');
  const [tick, setTick] = useState(0);
  const [editing, setEditing] = useState(false);
  const again = () => setTick((t) => t + 1);

  useEffect(() => {
    api('GET', base).then(({ json }) => setN(json), (err) => setError(err.message));
    api('GET', `${base}/health`).then(({ json }) => setRecent(json), (err) => setError(err.message));
  }, [base, tick]);
  useEffect(() => {
    api('GET', `${base}/deliveries?limit=100${status ? `&status=${status}` : ''}`).then(
      ({ json }) => setPage(json),
      (err) => setError(err.message),
    );
  }, [base, status, tick]);
  useEffect(() => {
    if (!open) return setDetail(null);
    api('GET', `${base}/deliveries/${encodeURIComponent(open)}`).then(
      ({ json }) => setDetail(json),
      (err) => setError(err.message),
    );
  }, [base, open, tick]);
  const busy = (page && page.deliveries.some((d) => d.status === 'pending')) ||
    (detail && detail.delivery.status === 'pending');
  // Read again every 2 s while a delivery is pending, every IDLE_MS
  // otherwise (new deliveries appear without a reload), never while the
  // tab is hidden, and at once when it shows again.
  useEffect(() => {
    let timer = null;
    const start = () => {
      if (timer || document.hidden) return;
      timer = setInterval(again, busy ? 2000 : IDLE_MS);
    };
    const stop = () => {
      clearInterval(timer);
      timer = null;
    };
    const visibility = () => {
      if (document.hidden) return stop();
      again();
      return start();
    };
    document.addEventListener('visibilitychange', visibility);
    start();
    return () => {
      stop();
      document.removeEventListener('visibilitychange', visibility);
    };
  }, [busy]);

  function url(changes) {
    const q = new URLSearchParams(location.search);
    for (const [k, v] of Object.entries(changes)) {
      if (v) q.set(k, v);
      else q.delete(k);
    }
    const s = q.toString();
    return `/console/notifications/${encodeURIComponent(project)}/${encodeURIComponent(name)}${s ? `?${s}` : ''}`;
  }
  async function act(what, method, path, done) {
    setNote(`${what}…`);
    try {
      const { json } = await api(method, path);
      setNote(done(json));
    } catch (err) {
      setNote(`${what}: ${err.message}`);
    }
    again();
  }
  function redeliverSince(e) {
    e.preventDefault();
    const since = e.currentTarget.elements.since.value.trim();
    act('Redeliver', 'POST', `${base}/redeliver?since=${encodeURIComponent(since)}`,
      (j) => `${j.redelivered} failed deliveries queued again`);
  }
  function edited(json) {
    setEditing(false);
    if (!json) return;
    setNote('Saved');
    if (json.name !== name) navigate(`/console/notifications/${encodeURIComponent(project)}/${encodeURIComponent(json.name)}`);
    else again();
  }
  const h = n && health(n);
  return html`<main class="deliveries">
    <h2><a href=${`/console/notifications?project_key=${encodeURIComponent(project)}`} onClick=${link}>${project}</a>${' / '}${name}${' '}${h && html`<span class=${`health h-${h.key}`} id="health">${h.text}</span>`}</h2>
    ${n && html`<p class="muted">${n.webhook_url} · ${n.format}${n.ordered ? ' · ordered' : ''}</p>`}
    ${recent && html`<p id="recent-health">${`Last 24 h: ${recent.attempts
      ? `${rate(recent)} attempts succeeded, p95 ${recent.p95_latency_ms} ms` : 'no attempt'}`}${
      ` · ${recent.pending} pending · ${recent.failed} failed`}</p>`}
    ${manage && n && editing && html`<${NotificationForm} project=${project} initial=${n} onDone=${edited} />`}
    ${manage && n && html`<div class="bar manage" id="manage">
      <button type="button" id="edit" disabled=${editing} onClick=${() => setEditing(true)}>Edit</button>
      <button type="button" id="test" onClick=${() => act('Test', 'POST', `${base}/test`,
        (j) => `Test ping: ${j.outcome}${j.status_code ? ` ${j.status_code}` : ''} in ${j.latency} ms`)}>Test ping</button>
      ${n.enabled
        ? html`<button type="button" id="disable" onClick=${() => act('Disable', 'POST', `${base}/disable`, () => 'Disabled')}>Disable</button>`
        : html`<button type="button" id="enable" onClick=${() => act('Enable', 'POST', `${base}/enable`, () => 'Enabled')}>Enable</button>`}
      <button type="button" id="rotate" onClick=${() => act('Rotate', 'POST', `${base}/secret/rotate`,
        (j) => `New ${n.signature === 'ed25519' ? 'public key' : 'secret'} (the previous one is honoured for a while): ${j.secret}`)}>Rotate secret</button>
      <form class="inline" onSubmit=${redeliverSince}>
        <input name="since" class="time" aria-label="since" spellcheck="false"
          value=${new Date(Date.now() - 86400000).toISOString().replace(/\.\d{3}Z$/, 'Z')} />
        <button type="submit">Redeliver failed since</button>
      </form>
    </div>`}
    ${note && html`<p class="note" id="note" role="status">${note}</p>`}
    ${error && html`<p class="error" role="alert">${error}</p>`}
    <nav class="tabs">${STATUSES.map((s) => html`<a href=${url({ status: s, delivery: null })} onClick=${link}
      aria-current=${s === status ? 'page' : null}>${s || 'all'}</a>`)}</nav>
    ${page && html`<table class="events" id="deliveries" onKeyDown=${rowKeys}>
      <thead><tr><th>delivery</th><th>event</th><th>status</th><th>attempts</th><th>next attempt</th><th>updated</th>${manage && html`<th></th>`}</tr></thead>
      <tbody>${page.deliveries.map((d) => html`<tr key=${d.id} data-id=${d.id} data-status=${d.status}
          data-attempts=${d.attempts} tabindex="0" class=${d.id === open ? 'open' : ''}>
        <td><a href=${url({ delivery: d.id === open ? null : d.id })} onClick=${link}>${d.id}</a></td>
        <td><a href=${`/console/events/${encodeURIComponent(d.event_id)}`} onClick=${link}>#${d.event_seq}</a></td>
        <td class=${`status d-${d.status}`}>${d.status}</td>
        <td class="num">${d.attempts}</td>
        <td class="time">${shortTime(d.next_attempt_at)}</td>
        <td class="time">${shortTime(d.updated_at)}</td>
        ${manage && html`<td><button type="button" class="redeliver" onClick=${() => act('Redeliver', 'POST',
          `${base}/deliveries/${encodeURIComponent(d.id)}/redeliver`, () => `Delivery ${d.id} queued again`)}>Redeliver</button></td>`}
      </tr>`)}</tbody>
    </table>`}
    ${page && page.deliveries.length === 0 && html`<p class="empty">No delivery${status ? ` ${status}` : ''}.</p>`}
    ${detail && html`<section class="detail"><h3>Attempts of ${detail.delivery.id}</h3><${Attempts} detail=${detail} /></section>`}
  </main>`;
}
