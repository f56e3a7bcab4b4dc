// The console's shell: who is signed in, the sign-in form, the menu, and
// which view the URL names. Each view keeps its state in the URL.
import { render } from './vendor/preact.js';
import { useEffect, useState } from './vendor/hooks.js';
import { api, html, link, navigate, setCsrf } from './api.js';
import { Tail } from './tail.js';
import { Detail } from './detail.js';
import { Explorer } from './explorer.js';
import { Timeline } from './timeline.js';
import { Notifications } from './notifications.js';
import { Deliveries } from './deliveries.js';
import { Overview } from './overview.js';
import { Tokens } from './tokens.js';

function route(path) {
  if (path === '/' || path === '/console' || path === '/console/') return { view: 'home' };
  if (path === '/console/tail') return { view: 'tail' };
  if (path === '/console/events') return { view: 'explorer' };
  if (path === '/console/notifications') return { view: 'notifications' };
  if (path === '/console/overview') return { view: 'overview' };
  if (path === '/console/tokens') return { view: 'tokens' };
  let m = path.match(/^\/console\/events\/([^/]+)$/);
  if (m) return { view: 'event', id: decodeURIComponent(m[1]) };
  m = path.match(/^\/console\/runs\/([^/]+)$/);
  if (m) return { view: 'run', id: decodeURIComponent(m[1]) };
  m = path.match(/^\/console\/notifications\/([^/]+)\/([^/]+)$/);
  if (m) return { view: 'deliveries', project: decodeURIComponent(m[1]), name: decodeURIComponent(m[2]) };
  return { view: 'missing' };
}

function SignIn({ onSignedIn }) {
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  async function submit(e) {
    e.preventDefault();
    const token = e.currentTarget.elements.token.value.trim();
    if (!token) return setError('Paste a token first.');
    setBusy(true);
    try {
      const { json } = await api('POST', '/v2/auth/session', { token });
      onSignedIn(json);
    } catch (err) {
      setError(err.status === 401 ? 'This token is unknown, expired or revoked.' : err.message);
    } finally {
      setBusy(false);
    }
  }
  return html`<main class="signin">
    <h1>cds-events</h1>
    <form onSubmit=${submit} id="signin">
      <label for="token">API token</label>
      <input id="token" name="token" type="password" autocomplete="off" spellcheck="false"
        placeholder="cdse_…" autofocus />
      <button type="submit" disabled=${busy}>Sign in</button>
      ${error && html`<p class="error" role="alert">${error}</p>`}
      <p class="hint">The token is exchanged once for a session cookie; the page never stores it.</p>
    </form>
  </main>`;
}

function Header({ session, onSignOut }) {
  return html`<header class="top">
    <a class="brand" href="/console/tail" onClick=${link}>cds-events</a>
    <nav>
      <a href="/console/tail" onClick=${link}>Live tail</a>
      <a href="/console/events" onClick=${link}>Explorer</a>
      <a href="/console/notifications" onClick=${link}>Notifications</a>
      <a href="/console/overview" onClick=${link}>Overview</a>
      ${session.grants.includes('admin') && html`<a href="/console/tokens" onClick=${link}>Tokens</a>`}
    </nav>
    <span class="who" title=${session.grants.join(', ')}>${session.name}</span>
    <button type="button" id="signout" onClick=${onSignOut}>Sign out</button>
  </header>`;
}

function App() {
  const [session, setSession] = useState(undefined);
  const [where, setWhere] = useState(() => route(location.pathname));
  useEffect(() => {
    const moved = () => setWhere(route(location.pathname));
    window.addEventListener('popstate', moved);
    window.addEventListener('console:navigate', moved);
    api('GET', '/v2/auth/session')
      .then(({ json }) => (json ? signedIn(json) : setSession(null)))
      .catch(() => setSession(null));
    return () => {
      window.removeEventListener('popstate', moved);
      window.removeEventListener('console:navigate', moved);
    };
  }, []);
  function signedIn(s) {
    setCsrf(s.csrf);
    setSession(s);
    if (route(location.pathname).view === 'home') navigate('/console/tail', true);
  }
  async function signOut() {
    try {
      await api('DELETE', '/v2/auth/session');
    } finally {
      setCsrf(null);
      setSession(null);
    }
  }
  if (session === undefined) return html`<p class="boot">Loading the console…</p>`;
  if (session === null) return html`<${SignIn} onSignedIn=${signedIn} />`;
  let view;
  if (where.view === 'tail' || where.view === 'home') view = html`<${Tail} />`;
  else if (where.view === 'event') view = html`<${Detail} id=${where.id} key=${where.id} />`;
  else if (where.view === 'explorer') view = html`<${Explorer} />`;
  else if (where.view === 'run') view = html`<${Timeline} id=${where.id} key=${where.id} />`;
  else if (where.view === 'overview') view = html`<${Overview} session=${session} />`;
  else if (where.view === 'tokens') view = html`<${Tokens} session=${session} />`;
  else if (where.view === 'notifications') view = html`<${Notifications} session=${session} />`;
  else if (where.view === 'deliveries') {
    view = html`<${Deliveries} session=${session} project=${where.project} name=${where.name}
      key=${`${where.project}/${where.name}`} />`;
  }
  else view = html`<main><p class="error">No such view. <a href="/console/tail" onClick=${link}>Live tail</a></p></main>`;
  return html`<${Header} session=${session} onSignOut=${signOut} />${view}`;
}

render(html`<${App} />`, document.getElementById('app'));
