# The cost of a notification's health read on SQLite (issue 14): the
# store's own schema and queries (read from the sources), over 1,000,000
# deliveries spread over 30 days, 90 % of them one notification's, 10 %
# failed with an attempt row; the window is the last 24 h (30,000 of that
# notification's attempts). Measured with and without `deliveries_recent`
# in the same run. Python's sqlite3 (the system's SQLite, not the bundled
# one the server links). Usage: python3 bench/health_query.py
import os, sqlite3, time, random, re, statistics
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..')
schema = open(os.path.join(ROOT, 'crates/webhooks/src/store/sqlite/schema.rs')).read()
sql = re.search(r'pub\(crate\) const SCHEMA: &str = "(.*?)";', schema, re.S).group(1)
def build(index):
    c = sqlite3.connect(':memory:')
    c.executescript(sql)
    if not index: c.execute('DROP INDEX deliveries_recent')
    now = 30*86400*1000; rows=[]; att=[]
    random.seed(1)
    for i in range(1, 1_000_001):
        nid = 1 if i % 10 else 2   # one busy notification with 90 %
        t = int(now * i / 1_000_000)
        ok = random.random() < 0.9
        rows.append((i, nid, i, 'e', 'succeeded' if ok else 'failed', 1, 1, None, t, t, 200 if ok else None, random.randint(5,500) if ok else None, None))
        if not ok: att.append((i, 1, t, 500, random.randint(5,500), 'HTTP 500', None))
    c.executemany('INSERT INTO deliveries VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)', rows)
    c.executemany('INSERT INTO attempts VALUES (?,?,?,?,?,?,?)', att)
    c.commit(); return c, now
Q = open(os.path.join(ROOT, 'crates/webhooks/src/store/sqlite/health.rs')).read()
q1 = re.search(r'prepare_cached\(\s*"(SELECT ok_latency_ms.*?ORDER BY 1)"', Q, re.S).group(1)
q2 = re.search(r'prepare_cached\(\s*"(SELECT status, count.*?GROUP BY status)"', Q, re.S).group(1)
medians = {}
for index in (True, False):
    c, now = build(index)
    times=[]
    for _ in range(7):
        t0=time.perf_counter()
        lat=[r[0] for r in c.execute(q1.replace('?1','1').replace('?2',str(now-86400000)))]
        cnt=list(c.execute(q2.replace('?1','1')))
        times.append((time.perf_counter()-t0)*1000)
    medians[index] = statistics.median(times)
    print('index' if index else 'no index', len(lat), 'attempts in 24h;', cnt, 'median ms %.1f min %.1f max %.1f' % (statistics.median(times), min(times), max(times)))
print('without / with the index: %.1f' % (medians[False] / medians[True]))
