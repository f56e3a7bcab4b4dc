// The console's views, checked in the browser against the API. Called
// by console.mjs with `t`: { BASE, api, expect, shot, setPhase }.

async function rowSeqs(page, table) {
  return page.$$eval(`#${table} tbody tr`, (trs) => trs.map((tr) => Number(tr.dataset.seq)));
}

// The explorer's rows once drawn for the page's current URL.
async function explorerRows(page) {
  await page.waitForFunction(() => {
    const t = document.querySelector('#explorer-rows');
    return t && t.dataset.url === location.search;
  }, null, { timeout: 20000 });
  return rowSeqs(page, 'explorer-rows');
}

// What GET /v2/events answers for the query of the page's URL.
async function apiSeqs(t, page) {
  const r = await t.api('GET', `/v2/events${new URL(page.url()).search}`);
  t.expect(r.status === 200, `GET /v2/events${new URL(page.url()).search}: ${r.text}`);
  return r.json.events.map((e) => e.seq);
}

async function sameAsApi(t, page, what) {
  const shown = await explorerRows(page);
  const want = await apiSeqs(t, page);
  t.expect(JSON.stringify(shown) === JSON.stringify(want), `${what}: rows ${shown} are GET /v2/events's ${want}`);
  return shown;
}

export async function explorer(t, page) {
  // Three events of project T at known times.
  const at = ['2026-01-01T10:00:00Z', '2026-01-01T11:00:00Z', '2026-01-01T12:00:00Z'];
  const r = await t.api('POST', '/v2/events', at.map((ts, i) => ({
    type: i === 1 ? 'RunJobEnqueued' : 'RunJobEnded', project_key: 'T', workflow: 'build', workflow_run_id: 'run-t',
    run_job_id: `t-${i}`, job_id: 'compile', region: 'eu', status: 'Success', user_id: 'u1', username: 'alice',
    timestamp: ts,
  })));
  t.expect(r.status === 200, `publish T: ${r.text}`);

  // A shared link: opened fresh, it shows what GET /v2/events answers.
  await page.goto(`${t.BASE}/console/events?project_key=P&type=RunJob*&status=Fail&order=desc&limit=5`);
  const firstPage = await sameAsApi(t, page, 'a shared link');
  t.expect(firstPage.length === 5, `5 rows, got ${firstPage}`);
  await t.shot('explorer');
  // Paging by cursor: the next page is a URL of its own; Back is the first.
  await page.click('#next-page');
  t.expect(new URL(page.url()).searchParams.get('cursor') !== null, `a cursor in ${page.url()}`);
  const second = await sameAsApi(t, page, 'the next page');
  t.expect(second.length > 0 && second[0] < firstPage[4], `the next page goes on: ${firstPage} then ${second}`);
  await page.reload();
  await sameAsApi(t, page, 'the next page, reloaded');
  await page.goBack();
  t.expect(JSON.stringify(await sameAsApi(t, page, 'back')) === JSON.stringify(firstPage), 'Back shows the first page');

  // since/until, inclusive, as typed in the form; the filter as tokens.
  await page.fill('#explorer-form input[name=filter]', 'project_key:T type:RunJobEnded,RunJobEnqueued');
  await page.fill('#explorer-form input[name=since]', '2026-01-01T10:30:00Z');
  await page.fill('#explorer-form input[name=until]', '2026-01-01T12:00:00Z');
  await page.selectOption('#explorer-form select[name=order]', 'desc');
  await page.click('#explorer-form button[type=submit]');
  await page.waitForURL(/since=/);
  const u = new URL(page.url()).searchParams;
  t.expect(u.get('project_key') === 'T' && u.get('order') === 'desc' && u.get('until') === '2026-01-01T12:00:00Z',
    `the form's state in the URL: ${page.url()}`);
  const window = await sameAsApi(t, page, 'since/until');
  t.expect(window.length === 2, `two of T's three events in the window: ${window}`);
  // A preset writes an absolute since: the last hour has none of T's 2026-01-01 events.
  await page.click('[data-preset="1h"]');
  await page.waitForURL((url) => url.searchParams.get('since') !== '2026-01-01T10:30:00Z');
  t.expect((await sameAsApi(t, page, 'the last hour')).length === 0, 'no T event in the last hour');

  // Keyboard: ↓ moves along the rows, Enter opens the event.
  await page.goto(`${t.BASE}/console/events?project_key=T`);
  await explorerRows(page);
  await page.focus('#explorer-rows tbody tr');
  await page.keyboard.press('ArrowDown');
  const focused = await page.evaluate(() => document.activeElement.dataset.seq);
  const seqsT = await rowSeqs(page, 'explorer-rows');
  t.expect(Number(focused) === seqsT[1], `ArrowDown focuses the second row (${focused}, rows ${seqsT})`);
  await page.keyboard.press('Enter');
  await page.waitForSelector('#raw');
  t.expect(page.url().includes('/console/events/'), `Enter opened the event: ${page.url()}`);

  // A bad value is named: the query API's 400 says which field.
  // The browser reports the 400; wait for that report before going on.
  t.setPhase('bad-input');
  const reported = page.waitForEvent('console', { predicate: (m) => /status of 400/.test(m.text()) });
  await page.goto(`${t.BASE}/console/events?since=yesterday`);
  await page.waitForSelector('#explorer-error');
  await reported;
  t.expect((await page.getAttribute('#explorer-error', 'data-field')) === 'since', 'the error names since');
  t.setPhase('views');
  // Leave a valid page behind (a later sign-in lands where the page is).
  await page.goto(`${t.BASE}/console/events`);
  await explorerRows(page);
}

// A token that reads P only sees another project's events nowhere
// (T's are in the log).
export async function readerExplorer(t, page) {
  await page.goto(`${t.BASE}/console/events?order=desc&limit=1000`);
  await explorerRows(page);
  const projects = await page.$$eval('#explorer-rows tbody tr td:nth-child(4)', (tds) => [...new Set(tds.map((td) => td.textContent))]);
  t.expect(projects.length > 0 && projects.every((p) => p === 'P'), `only P: ${projects}`);
}
