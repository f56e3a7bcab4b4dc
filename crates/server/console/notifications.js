// Notifications: a project's notifications with their health
// (`/console/notifications?project_key=P`): enabled or why disabled,
// failing since when; over the last 24 h the success rate and the 95th
// percentile latency of its attempts; its deliveries pending and failed
// (exact counts, from `…/health`). Each links to its
// deliveries (deliveries.js); managers create one here
// (notification_form.js), its secret shown once. What a token may not do
// is not offered: manage buttons only with `admin` or
// `manage-notifications:P`.
import { useEffect, useState } from './vendor/hooks.js';
import { api, html, link, navigate } from './api.js';
import { rowKeys, shortTime } from './table.js';
import { NotificationForm } from './notification_form.js';

export function canManage(session, project) {
  return session.grants.includes('admin') || session.grants.includes(`manage-notifications:${project}`);
}

// The projects a session names in its grants (admin and read:* name none).
export function grantedProjects(session) {
  const out = new Set();
  for (const g of session.grants) {
    const m = g.match(/^(?:read|publish|manage-notifications):(.+)$/);
    if (m && m[1] !== '*') out.add(m[1]);
  }
  return [...out];
}

const path = (project, name) =>
  `/v2/project/${encodeURIComponent(project)}/notification${name ? `/${encodeURIComponent(name)}` : ''}`;
export const notificationApi = path;

// The success rate of a health (`…/health`) as a percentage, or a dash
// without an attempt in the window.
export function rate(h) {
  if (h.success_rate === undefined) return '—';
  const pct = h.success_rate * 100;
  return `${pct === 100 || pct === 0 ? pct : pct.toFixed(1)} % of ${h.attempts}`;
}

export function health(n) {
  if (!n.enabled) return { key: 'disabled', text: `disabled${n.disabled_reason ? `: ${n.disabled_reason}` : ''}` };
  if (n.failing_since) return { key: 'failing', text: `failing since ${shortTime(n.failing_since)}` };
  return { key: 'healthy', text: 'healthy' };
}

function ProjectPicker({ session }) {
  function open(e) {
    e.preventDefault();
    const p = e.currentTarget.elements.project.value.trim();
    if (p) navigate(`/console/notifications?project_key=${encodeURIComponent(p)}`);
  }
  const known = grantedProjects(session);
  return html`<main class="notifications">
    <form class="bar" onSubmit=${open}>
      <label>Project <input name="project" spellcheck="false" placeholder="PROJ" /></label>
      <button type="submit">Show its notifications</button>
    </form>
    ${known.length > 0 && html`<p class="links">${known.map((p) => html`<a
      href=${`/console/notifications?project_key=${encodeURIComponent(p)}`} onClick=${link}>${p}</a>`)}</p>`}
  </main>`;
}

export function Notifications({ session }) {
  const project = new URLSearchParams(location.search).get('project_key');
  const [list, setList] = useState(null);
  const [healths, setHealths] = useState({});
  const [error, setError] = useState(null);
  const [adding, setAdding] = useState(false);
  const [created, setCreated] = useState(null);
  const [tick, setTick] = useState(0);
  useEffect(() => {
    if (!project) return;
    setList(null);
    setError(null);
    api('GET', path(project)).then(
      async ({ json }) => {
        setList(json);
        const got = {};
        await Promise.all(json.map(async (n) => {
          got[n.name] = (await api('GET', `${path(project, n.name)}/health`)).json;
        }));
        setHealths(got);
      },
      (err) => setError(err.message),
    );
  }, [project, tick]);
  function done(json) {
    setAdding(false);
    if (json) {
      setCreated(json);
      setTick((t) => t + 1);
    }
  }
  if (!project) return html`<${ProjectPicker} session=${session} />`;
  return html`<main class="notifications">
    <h2>Notifications of ${project}</h2>
    ${canManage(session, project) && !adding && html`<p><button type="button" id="new-notification"
      onClick=${() => setAdding(true)}>New notification</button></p>`}
    ${adding && html`<${NotificationForm} project=${project} onDone=${done} />`}
    ${created && html`<div class="secret" role="status"><p>Notification <b>${created.name}</b> created. Its
      ${created.signature === 'ed25519' ? ' public key' : ' signing secret'}, shown this once
      ${created.signature === 'ed25519' ? '' : ' (managers may read it again)'}:</p>
      <code id="new-secret">${created.secret}</code>
      <button type="button" onClick=${() => setCreated(null)}>Done</button></div>`}
    ${error && html`<p class="error" role="alert" id="refused">${error}</p>`}
    ${list && list.length === 0 && html`<p class="empty">This project has no notification.</p>`}
    ${list && list.length > 0 && html`<table class="events" id="notifications" onKeyDown=${rowKeys}>
      <thead><tr><th>name</th><th>health</th><th title="attempts of the last 24 h that succeeded">success 24 h</th>
        <th title="95th percentile latency of the attempts of the last 24 h">p95 24 h</th>
        <th>pending</th><th>failed</th><th>format</th><th>URL</th></tr></thead>
      <tbody>${list.map((n) => {
        const h = health(n);
        const c = healths[n.name];
        return html`<tr key=${n.name} data-name=${n.name} data-health=${h.key} tabindex="0">
          <td><a href=${`/console/notifications/${encodeURIComponent(project)}/${encodeURIComponent(n.name)}`} onClick=${link}>${n.name}</a></td>
          <td class=${`health h-${h.key}`}>${h.text}</td>
          <td class="num" data-rate=${c?.success_rate ?? ''}>${c ? rate(c) : '…'}</td>
          <td class="num" data-p95=${c?.p95_latency_ms ?? ''}>${c ? (c.p95_latency_ms === undefined ? '—' : `${c.p95_latency_ms} ms`) : '…'}</td>
          <td class="num" data-count="pending">${c?.pending ?? '…'}</td>
          <td class="num" data-count="failed">${c?.failed ?? '…'}</td>
          <td>${n.format}${n.ordered ? ', ordered' : ''}</td>
          <td class="url">${n.webhook_url}</td>
        </tr>`;
      })}</tbody>
    </table>`}
  </main>`;
}
