// Tokens (`/console/tokens`, admin): the tokens (never their secrets),
// create one (its secret shown this once, in this page's memory only),
// revoke one (a second click confirms), and the audit trail.
import { useEffect, useState } from './vendor/hooks.js';
import { api, html } from './api.js';
import { rowKeys, shortTime } from './table.js';

export function Tokens({ session }) {
  const admin = session.grants.includes('admin');
  const [list, setList] = useState(null);
  const [audit, setAudit] = useState(null);
  const [created, setCreated] = useState(null);
  const [error, setError] = useState(null);
  const [confirm, setConfirm] = useState(null);
  const [tick, setTick] = useState(0);
  useEffect(() => {
    if (!admin) return;
    api('GET', '/v2/auth/tokens').then(({ json }) => setList(json), (err) => setError(err.message));
    api('GET', '/v2/auth/audit?limit=50').then(({ json }) => setAudit(json), (err) => setError(err.message));
  }, [admin, tick]);
  if (!admin) {
    return html`<main><p class="error" role="alert" id="refused">Tokens are managed with an admin token; this one is not.</p></main>`;
  }
  async function create(e) {
    e.preventDefault();
    const el = e.currentTarget.elements;
    const body = { name: el.name.value.trim(), grants: el.grants.value.split(/[\s,]+/).filter(Boolean) };
    if (el.expires.value.trim()) body.expires_at = el.expires.value.trim();
    try {
      const { json } = await api('POST', '/v2/auth/tokens', body);
      setCreated(json);
      setError(null);
      e.target.reset();
    } catch (err) {
      const field = err.details[0] && err.details[0].field;
      setError(`${field ? `${field}: ` : ''}${err.message}`);
    }
    setTick((t) => t + 1);
  }
  async function revoke(id) {
    if (confirm !== id) return setConfirm(id);
    setConfirm(null);
    try {
      await api('DELETE', `/v2/auth/tokens/${encodeURIComponent(id)}`);
    } catch (err) {
      setError(err.message);
    }
    setTick((t) => t + 1);
  }
  return html`<main class="tokens">
    <form class="bar" id="token-form" onSubmit=${create}>
      <input name="name" placeholder="name" aria-label="name" required />
      <input name="grants" class="filter" placeholder="read:PROJ publish:PROJ manage-notifications:PROJ" aria-label="grants"
        spellcheck="false" />
      <input name="expires" class="time" placeholder="expires (RFC 3339, optional)" aria-label="expires" spellcheck="false" />
      <button type="submit">Create token</button>
    </form>
    ${error && html`<p class="error" role="alert" id="token-error">${error}</p>`}
    ${created && html`<div class="secret" role="status">
      <p>Token <b>${created.name}</b> created. Copy it now: it is not shown again.</p>
      <code id="new-token">${created.token}</code>
      <button type="button" onClick=${() => setCreated(null)}>Done</button></div>`}
    ${list && html`<table class="events" id="tokens" onKeyDown=${rowKeys}>
      <thead><tr><th>name</th><th>id</th><th>grants</th><th>created</th><th>expires</th><th>by</th><th></th></tr></thead>
      <tbody>${list.map((t) => html`<tr key=${t.id} data-id=${t.id} data-name=${t.name} tabindex="0">
        <td>${t.name}</td><td class="muted">${t.id}</td><td>${t.grants.join(' ')}</td>
        <td class="time">${shortTime(t.created_at)}</td><td class="time">${shortTime(t.expires_at)}</td>
        <td>${t.created_by || ''}</td>
        <td>${t.id === session.token_id ? html`<span class="muted">this session</span>` : html`<button type="button"
          class="revoke" onClick=${() => revoke(t.id)}>${confirm === t.id ? 'Confirm revoke' : 'Revoke'}</button>`}</td>
      </tr>`)}</tbody></table>`}
    <h3>Audit trail</h3>
    ${audit && html`<table class="events" id="audit" onKeyDown=${rowKeys}>
      <thead><tr><th>#</th><th>time (UTC)</th><th>actor</th><th>action</th><th>target</th></tr></thead>
      <tbody>${audit.map((a) => html`<tr key=${a.seq} data-action=${a.action} tabindex="0"><td class="num">${a.seq}</td>
        <td class="time">${shortTime(a.at)}</td><td>${a.actor}</td><td>${a.action}</td><td>${a.target}</td></tr>`)}</tbody></table>`}
  </main>`;
}
