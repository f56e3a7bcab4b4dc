#!/usr/bin/env bash
# The issue-16 soak: a steady load for a long time, watching what must stay
# flat — the server's resident memory, open files, threads and live tasks,
# and the stream's latency.
#
#   bash bench/soak.sh                     # 30 min at 5,000 events/s
#   SOAK_WINDOWS=2 WINDOW=1m bash bench/soak.sh   # a short one (2 × 1 min)
#   BIN=/path/cds-events bash bench/soak.sh       # a binary built before
#
# The load runs in windows (6 × 5 min by default), each a `simulate` run
# with 100 SSE subscribers (each following one of 20 projects) and 20
# notifications (one per project, every event) to a receiver in simulate;
# subscribers and notifications are made anew each window, so a leak of
# connections or tasks shows as a step between windows. A sampler reads the
# server's /proc and its task gauge every 10 s. One line per window: its
# latencies, losses, and the server's memory, files, threads and tasks at
# its start, peak and end.
set -euo pipefail
cd "$(dirname "$0")/.."

WINDOWS=${SOAK_WINDOWS:-6}
WINDOW=${WINDOW:-5m}
RATE=${RATE:-5000}
PORT=${PORT:-18291}
BIN=${BIN:-target/release/cds-events}
export CDS_EVENTS_ADMIN_TOKEN=${CDS_EVENTS_ADMIN_TOKEN:-bench-admin-token-$RANDOM$RANDOM$RANDOM}
export CDS_EVENTS_TOKEN=$CDS_EVENTS_ADMIN_TOKEN

[[ $BIN != target/release/cds-events ]] || cargo build --release --quiet
DATA=$(mktemp -d)
SAMPLER=
trap 'kill $SAMPLER 2>/dev/null || true; kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; rm -rf "$DATA"' EXIT

CDS_EVENTS_WEBHOOK_ALLOW_PRIVATE=1 "$BIN" serve --listen "127.0.0.1:$PORT" --data-dir "$DATA/d" \
  --durability process-crash >"$DATA/out" 2>"$DATA/err" &
PID=$!
for _ in $(seq 600); do grep -q listening "$DATA/out" 2>/dev/null && break; sleep 0.05; done
grep -q listening "$DATA/out" || { echo "server did not start"; cat "$DATA/err"; exit 1; }

# One sample: seconds since start, RSS MiB, open files, threads, live tasks,
# and the anonymous part of RSS in MiB (RSS also counts the pages of the
# log's file that the readers' memory maps have touched).
T0=$(date +%s)
sample() {
  local rss anon fds threads tasks
  rss=$(awk '/VmRSS/ {printf "%.1f", $2/1024}' "/proc/$PID/status")
  anon=$(awk '/RssAnon/ {printf "%.1f", $2/1024}' "/proc/$PID/status")
  threads=$(awk '/Threads/ {print $2}' "/proc/$PID/status")
  fds=$(ls "/proc/$PID/fd" | wc -l)
  tasks=$(curl -s -H "Authorization: Bearer $CDS_EVENTS_ADMIN_TOKEN" "http://127.0.0.1:$PORT/mon/metrics" |
    awk '/^cds_events_runtime_alive_tasks / {print $2}')
  echo "$(($(date +%s) - T0)) $rss $fds $threads ${tasks:-?} $anon"
}
(while sleep 10; do sample; done) >"$DATA/samples" 2>/dev/null &
SAMPLER=$!

echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB; commit $(git rev-parse --short HEAD)"
echo "soak: $WINDOWS windows of $WINDOW at $RATE events/s, 100 SSE subscribers (1 of 20 projects each), 20 notifications"
echo "at start (s rss_MiB fds threads tasks anon_MiB): $(sample)"
for w in $(seq "$WINDOWS"); do
  from=$(($(date +%s) - T0))
  "$BIN" simulate --server "http://127.0.0.1:$PORT" --projects 20 --rate "$RATE" --duration "$WINDOW" \
    --batch 50 --connections 2 --subscribers 100 --subscribe project --notifications 20 \
    >"$DATA/w$w" 2>&1 || { echo "window $w failed:"; cat "$DATA/w$w"; exit 1; }
  to=$(($(date +%s) - T0))
  # Settle: what the window's connections held is let go.
  sleep 5
  end=$(sample)
  peaks=$(awk -v a="$from" -v b="$to" '$1 >= a && $1 <= b {
      if ($2 > r) r = $2; if ($3 > f) f = $3; if ($4 > t) t = $4; if ($5 > k) k = $5; if ($6 > n) n = $6 }
      END {printf "rss %.1f MiB (anonymous %.1f), fds %d, threads %d, tasks %d", r, n, f, t, k}' "$DATA/samples")
  echo "== window $w ($from-$to s)"
  grep -E "ingest:|request|delivery|webhook|subscribers|never reached" "$DATA/w$w" | sed 's/^/   /'
  echo "   peak: $peaks; after it (s rss fds threads tasks anon): $end"
done
