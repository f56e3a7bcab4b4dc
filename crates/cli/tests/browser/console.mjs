// The console in a real headless Chromium (the system's), driven by
// playwright-core. Started by crates/cli/tests/it/console_browser.rs, which
// runs the server and restarts it when this script prints `RESTART` (it
// answers `RESTARTED` on stdin). Env: BASE (the server's URL), TOKEN (an
// admin token), ARTIFACTS (where screenshots go). Exits non-zero, saying
// why, at the first failed expectation.
import { chromium } from 'playwright-core';
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import * as views from './views.mjs';

const BASE = process.env.BASE;
const TOKEN = process.env.TOKEN;
const ARTIFACTS = process.env.ARTIFACTS;
const origin = new URL(BASE).origin;
mkdirSync(ARTIFACTS, { recursive: true });

function expect(ok, what) {
  if (!ok) throw new Error(`expected: ${what}`);
}

const stdin = createInterface({ input: process.stdin });
const lines = stdin[Symbol.asyncIterator]();

async function api(method, path, body) {
  const resp = await fetch(BASE + path, {
    method,
    headers: { Authorization: `Bearer ${TOKEN}`, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await resp.text();
  return { status: resp.status, text, json: text ? JSON.parse(text) : null };
}

let counter = 0;
// Publishes `n` job events of project P in one batch; their seqs.
async function publish(n) {
  const batch = [];
  for (let i = 0; i < n; i++) {
    counter += 1;
    batch.push({
      type: 'RunJobEnded', project_key: 'P', workflow: 'build', workflow_run_id: 'run-1',
      run_job_id: `rj-${counter}`, job_id: 'compile', run_number: 1, run_attempt: 1,
      region: 'eu', hatchery: 'swarm', status: counter % 5 ? 'Success' : 'Fail',
      user_id: 'u1', username: 'alice', payload: { n: counter },
    });
  }
  const r = await api('POST', '/v2/events', batch);
  expect(r.status === 200, `publish answered 200, got ${r.status} ${r.text}`);
  return r.json.events.map((e) => e.seq);
}

async function seqs(page) {
  return page.$$eval('#tail-rows tbody tr', (trs) => trs.map((tr) => Number(tr.dataset.seq)));
}

async function waitRows(page, n) {
  await page.waitForFunction((n) => document.querySelectorAll('#tail-rows tbody tr').length >= n, n, {
    timeout: 20000,
  });
}

function contiguousDescending(list) {
  return list.every((s, i) => i === 0 || list[i - 1] === s + 1);
}

const profile = mkdtempSync(join(tmpdir(), 'cds-events-chromium-'));
const ctx = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  viewport: { width: 1280, height: 800 },
  args: [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
  ],
});
const report = { foreign: [], consoleErrors: [], firstLoadBytes: 0, seconds: {} };
const began = Date.now();
let phase = 'load';
try {
  const page = ctx.pages()[0] || (await ctx.newPage());
  page.on('request', (req) => {
    const u = req.url();
    if (!u.startsWith('data:') && new URL(u).origin !== origin) report.foreign.push(u);
  });
  page.on('console', (m) => {
    if (m.type() !== 'error') return;
    // While the server is down on purpose, the browser says it could not
    // connect; that is the restart, not a fault of the page.
    if (phase === 'restart' && /ERR_CONNECTION_REFUSED|Failed to load resource|EventSource/.test(m.text())) return;
    // Asking for a project the token may not read is answered 403, which
    // the browser reports; the page's own message is checked instead.
    if (phase === 'refused' && /status of 403/.test(m.text())) return;
    // The same for a bad value given on purpose (the page names the field).
    if (phase === 'bad-input' && /status of 400/.test(m.text())) return;
    report.consoleErrors.push(`${phase}: ${m.text()}`);
  });
  page.on('pageerror', (e) => report.consoleErrors.push(`${phase}: ${e.message}`));
  const sizes = [];
  page.on('requestfinished', async (req) => {
    if (phase !== 'load') return;
    const s = await req.sizes().catch(() => null);
    if (s) sizes.push(s.responseBodySize + s.responseHeadersSize);
  });

  // Sign in.
  await page.goto(BASE + '/', { waitUntil: 'networkidle' });
  await page.waitForSelector('#signin');
  await page.screenshot({ path: join(ARTIFACTS, 'signin.png') });
  await page.fill('#token', TOKEN);
  await page.click('#signin button[type=submit]');
  await page.waitForSelector('#tail-state[data-state=live]', { timeout: 20000 });
  expect(new URL(page.url()).pathname === '/console/tail', `the tail after sign-in, at ${page.url()}`);
  await page.waitForLoadState('networkidle').catch(() => {});
  report.firstLoadBytes = sizes.reduce((a, b) => a + b, 0);
  expect(report.firstLoadBytes > 0 && report.firstLoadBytes <= 200 * 1024,
    `first load ≤ 200 KB, was ${report.firstLoadBytes} bytes`);
  phase = 'tail';
  const cookies = await ctx.cookies(BASE);
  const session = cookies.find((c) => c.name === 'cds_events_session');
  expect(session && session.httpOnly && session.sameSite === 'Strict', `an HttpOnly Strict cookie: ${JSON.stringify(cookies)}`);
  expect(!(await page.evaluate(() => document.cookie)).includes('cds_events_session'), 'the cookie is hidden from scripts');

  // The live tail shows 50 published events in order, newest on top.
  const first = await publish(50);
  await waitRows(page, 50);
  let shown = await seqs(page);
  expect(shown.length === 50, `50 rows, got ${shown.length}`);
  expect(JSON.stringify(shown) === JSON.stringify([...first].reverse()), `rows ${shown} are ${first} newest first`);
  await page.screenshot({ path: join(ARTIFACTS, 'tail.png') });

  // A server restart: the tail takes a new ticket and resumes after the
  // last sequence number it showed.
  phase = 'restart';
  console.log('RESTART');
  const answer = await lines.next();
  expect(answer.value === 'RESTARTED', `the server restarted, got ${answer.value}`);
  const second = await publish(10);
  await waitRows(page, 60);
  await page.waitForSelector('#tail-state[data-state=live]', { timeout: 20000 });
  phase = 'tail';
  shown = await seqs(page);
  expect(shown.length === 60 && shown[0] === second[9] && shown[59] === first[0],
    `60 rows from ${first[0]} to ${second[9]}, got ${shown.length}: ${shown[0]}..${shown[shown.length - 1]}`);
  expect(contiguousDescending(shown), `contiguous sequence numbers: ${shown}`);

  // Pause counts the new events without drawing them; resume draws them.
  await page.click('#pause');
  await publish(7);
  await page.waitForFunction(() => document.querySelector('#held')?.textContent === '7 new', null, { timeout: 20000 });
  expect((await seqs(page)).length === 60, 'nothing drawn while paused');
  await page.screenshot({ path: join(ARTIFACTS, 'tail-paused.png') });
  await page.click('#pause');
  await waitRows(page, 67);
  shown = await seqs(page);
  expect(shown.length === 67 && contiguousDescending(shown), `67 contiguous rows after resume: ${shown}`);

  // Phone width.
  await page.setViewportSize({ width: 390, height: 844 });
  await page.screenshot({ path: join(ARTIFACTS, 'tail-phone.png') });
  await page.setViewportSize({ width: 1280, height: 800 });

  // Event detail: the raw view is GET /v2/events/{id}.
  const top = await page.$('#tail-rows tbody tr a');
  const href = await top.getAttribute('href');
  await top.click();
  await page.waitForSelector('#raw');
  expect(new URL(page.url()).pathname === href, `the detail URL ${href}`);
  const id = decodeURIComponent(href.split('/').pop());
  const stored = await api('GET', `/v2/events/${encodeURIComponent(id)}`);
  const raw = await page.textContent('#raw');
  expect(raw === stored.text, `raw view equals GET /v2/events/{id}:\n${raw}\n${stored.text}`);
  expect(JSON.stringify(JSON.parse(raw)) === JSON.stringify(stored.json), 'the same JSON');
  await page.screenshot({ path: join(ARTIFACTS, 'event.png') });
  // A deep link opens the same view after a reload (state in the URL).
  await page.reload({ waitUntil: 'networkidle' });
  await page.waitForSelector('#raw');
  expect((await page.textContent('#raw')) === stored.text, 'the detail survives a reload');

  // The explorer, the run timeline, notifications and deliveries, the
  // overview, tokens; dark and phone-width; the tail at 2,000 events/s.
  phase = 'views';
  const t = {
    BASE, api, expect,
    shot: (name) => page.screenshot({ path: join(ARTIFACTS, `${name}.png`) }),
    setPhase: (p) => { phase = p; },
  };
  for (const name of ['explorer', 'timeline', 'notifications', 'createNotification', 'editNotification', 'overview', 'tokens', 'themes', 'tailLoad']) {
    const start = Date.now();
    await views[name](t, page, report);
    report.seconds[name] = (Date.now() - start) / 1000;
  }

  // Sign out: back to the form, and the session is gone.
  await page.click('#signout');
  await page.waitForSelector('#signin');
  const after = await page.evaluate(async () => (await fetch('/v2/auth/session')).status);
  expect(after === 204, `signed out, /v2/auth/session answered ${after}`);

  // A token that reads projects P and N only: its tail of P is live, and a
  // tail of Q says it may not.
  const reader = await api('POST', '/v2/auth/tokens', { name: 'console reader', grants: ['read:P', 'read:N'] });
  expect(reader.status === 201, `a reader token: ${reader.text}`);
  await page.fill('#token', reader.json.token);
  await page.click('#signin button[type=submit]');
  await page.waitForSelector('#signout');
  await page.goto(BASE + '/console/tail?project_key=P', { waitUntil: 'networkidle' });
  await page.waitForSelector('#tail-state[data-state=live]', { timeout: 20000 });
  phase = 'refused';
  await page.goto(BASE + '/console/tail?project_key=Q', { waitUntil: 'networkidle' });
  await page.waitForSelector('#refused', { timeout: 20000 });
  const why = await page.textContent('#refused');
  expect(/may not read project Q/.test(why), `the view says the token may not read Q: ${why}`);
  await page.screenshot({ path: join(ARTIFACTS, 'tail-refused.png') });
  phase = 'reader';
  await views.readerExplorer(t, page);
  await views.readerDeliveries(t, page);
  await views.readerAdminViews(t, page);

  expect(report.foreign.length === 0, `no request to another origin: ${report.foreign}`);
  expect(report.consoleErrors.length === 0, `no console errors: ${report.consoleErrors.join('\n')}`);
  report.seconds.total = (Date.now() - began) / 1000;
  console.log(`RESULT ${JSON.stringify(report)}`);
} catch (e) {
  console.log(`FAILED ${e.stack || e}`);
  console.log(`REPORT ${JSON.stringify(report)}`);
  process.exitCode = 1;
} finally {
  await ctx.close();
  rmSync(profile, { recursive: true, force: true });
  stdin.close();
}
