#!/usr/bin/env bash
# The issue-2 benchmark: client (cds-events simulate) and server on this
# machine, server on a fresh temporary data directory.
#
#   bash bench/run.sh                 # everything (~5 min, ~10 GB of disk)
#   EVENTS_10M=2000000 bash bench/run.sh   # a smaller log for the read phase
#   PHASES="streams webhooks" bash bench/run.sh   # some phases only
#   PHASES=ids bash bench/run.sh      # batch ingest, v7 against v4 ids, 10M log
#   BIN=/path/cds-events bash bench/run.sh   # a binary built before (no build;
#                                     # say which commit it is): two builds side by side
#
# Phases: ingest (batch, single-event), read (10M log), streams (1 SSE at
# 20k/s, 10,000 websockets at 1 %, 1,000 websockets x 1,000/s), webhooks
# (deliveries across 50 endpoints; batch and single-event ingest with and
# without 50 notifications), mixed (ingest request p99 at 80 % of the
# saturated rate; filtered pages and gets by id over the log of EVENTS_10M
# at rest, then while ingest runs at half that rate; not in the default
# set: it fills its own log), ids (batch ingest into a log of EVENTS_10M
# events, time-ordered v7 ids against random v4 ids as CDS sends them; not
# in the default set: it writes two such logs). MIXED_FOR (60s) is how long
# the 80 % ingest runs, HALF_FOR (120s) the half-rate one beside the reads.
#
# Prints one line per phase; BENCHMARKS.md records the results.
set -euo pipefail
cd "$(dirname "$0")/.."

DURABILITY=${DURABILITY:-process-crash}
LOG_EVENTS=${EVENTS_10M:-10000000}
PHASES=${PHASES:-ingest read streams webhooks}
want() { [[ " $PHASES " == *" $1 "* ]]; }
PORT=${PORT:-18290}
BIN=${BIN:-target/release/cds-events}
# Authentication is always on: the server takes this as its admin token,
# simulate sends it.
export CDS_EVENTS_ADMIN_TOKEN=${CDS_EVENTS_ADMIN_TOKEN:-bench-admin-token-$RANDOM$RANDOM$RANDOM}
export CDS_EVENTS_TOKEN=$CDS_EVENTS_ADMIN_TOKEN

[[ $BIN != target/release/cds-events ]] || cargo build --release --quiet
DATA=$(mktemp -d)
trap 'kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; rm -rf "$DATA"' EXIT

start() {
  rm -rf "$DATA/d"
  launch
}
# The server on whatever the data directory holds; prints nothing.
launch() {
  # Let the kernel write back what earlier phases (or runs) left dirty, so a
  # phase is not measured against someone else's flush.
  sync; sleep 2
  LAUNCHED=$(date +%s.%N)
  # Emptied here, not by the child's redirection: the wait below must not
  # read the previous server's "listening" before the child truncates it.
  : >"$DATA/out"
  CDS_EVENTS_WEBHOOK_ALLOW_PRIVATE=1 "$BIN" serve --listen "127.0.0.1:$PORT" --data-dir "$DATA/d" --durability "$DURABILITY" >"$DATA/out" 2>"$DATA/err" &
  PID=$!
  for _ in $(seq 600); do grep -q listening "$DATA/out" 2>/dev/null && return; sleep 0.05; done
  echo "server did not start"; cat "$DATA/err"; exit 1
}
stop() { kill "$PID"; wait "$PID" || true; }
peak_rss_mb() { awk '/VmHWM/ {printf "%.0f", $2/1024}' "/proc/$PID/status"; }
sim() { "$BIN" simulate --server "http://127.0.0.1:$PORT" --projects "${PROJECTS:-100}" "$@"; }

echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB; commit $(git rev-parse --short HEAD); durability $DURABILITY"

if want ingest; then
start
echo "== batch ingest: 500 events/request, 8 connections, 1M events"
sim --events 1000000 --batch 500 --connections 8
echo "   server peak RSS: $(peak_rss_mb) MB"
stop

start
echo "== single-event ingest: 1 event/request, 64 connections, 300k events"
sim --events 300000 --batch 1 --connections 64
echo "   server peak RSS: $(peak_rss_mb) MB"
stop

fi

if want read; then
start
echo "== read: filling a log of $LOG_EVENTS events"
sim --events "$LOG_EVENTS" --batch 500 --connections 8
STATUS=$(curl -s "http://127.0.0.1:$PORT/mon/status")  # public
echo "   $STATUS"
echo "$STATUS" | python3 -c 'import json,sys; s=json.load(sys.stdin)["storage"]; print("   bytes on disk per event: %.0f" % (s["bytes_on_disk"]/s["events"]))'
echo "== read: filtered pages (project_key + random type prefix + random since, limit 100, newest first), 2 connections"
sim --workload pages --events 20000 --connections 2
echo "== read: get by id (ids sampled across the log), 2 connections"
sim --workload gets --events 20000 --connections 2
echo "== read: both at once, 4 connections"
sim --workload read --events 20000 --connections 4
echo "   server peak RSS over fill and reads: $(peak_rss_mb) MB"
stop

fi

if want mixed; then
# Issue 16's two figures under load: the ingest request p99 at 80 % of the
# saturated rate (on the full log), and filtered pages and gets by id at
# rest and while ingest runs at half of it, over the log of $LOG_EVENTS events.
p99() { python3 -c 'import json,sys; d=json.load(sys.stdin); print("%.0f events/s, request p50 %.2f ms, p99 %.2f ms, max %.2f ms (%d failed)" % (d["per_second"], d["latency"]["request"]["p50_ms"], d["latency"]["request"]["p99_ms"], d["latency"]["request"]["max_ms"], d.get("errors", 0)))'; }
start
echo "== mixed: filling a log of $LOG_EVENTS events (500/request, 8 connections), then the saturated rate on it"
FILL=$(sim --events "$LOG_EVENTS" --batch 500 --connections 8 --json | python3 -c 'import json,sys; print(round(json.load(sys.stdin)["per_second"]))')
echo "   fill: $FILL events/s"
# The fill's rate is an average over a log that was small at first; what
# the full log takes is less. The saturated rate is measured on it.
sync; sleep 2
SAT=$(sim --events $((FILL * 15)) --batch 500 --connections 8 --seed 2 --json | python3 -c 'import json,sys; print(round(json.load(sys.stdin)["per_second"]))')
echo "   saturated on the full log (15 s): $SAT events/s"
echo "== mixed: ingest at 80 % of it ($((SAT * 8 / 10)) events/s, 500/request, 8 connections) for ${MIXED_FOR:-60s}"
sim --rate $((SAT * 8 / 10)) --duration "${MIXED_FOR:-60s}" --batch 500 --connections 8 --seed 3 --json | p99
reads() {
  echo "   filtered pages (project_key + type prefix + since, limit 100, newest first), 2 connections:"
  sim --workload pages --events 20000 --connections 2 | grep -E "p50|p99|pages" | sed 's/^/   /'
  echo "   get by id, 2 connections:"
  sim --workload gets --events 20000 --connections 2 | grep -E "p50|p99|gets" | sed 's/^/   /'
}
# The same reads with nothing beside them first: what a read costs on this
# log, against what it waits for beside the ingest.
echo "== mixed: reads at rest on the full log"
reads
echo "== mixed: reads while ingest runs at half of it ($((SAT / 2)) events/s)"
# Longer than the 80 % run: the reads take 40-60 s on a slow machine, and
# all of them must run beside this ingest.
sim --rate $((SAT / 2)) --duration "${HALF_FOR:-120s}" --batch 500 --connections 8 --seed 4 --json >"$DATA/half" &
HALF=$!
sleep 5
reads
kill -0 "$HALF" 2>/dev/null || echo "   WARNING: the ingest ended before the reads did: they ran partly at rest (raise HALF_FOR)"
wait "$HALF"
echo "   the ingest beside them: $(p99 <"$DATA/half")"
echo "   server peak RSS: $(peak_rss_mb) MB"
stop
fi

if want streams; then
start
echo "== stream: 1 SSE subscriber (every event), 20,000 events/s published (100/request, 2 connections)"
sim --events 200000 --batch 100 --connections 2 --rate 20000 --subscribers 1
echo "   server peak RSS: $(peak_rss_mb) MB"
stop
start
echo "== stream: 10,000 websocket subscribers, each following 1 of 100 projects (1 % of the stream), 2,000 events/s for 30 s"
sim --events 60000 --duration 30s --batch 10 --connections 1 --rate 2000 \
    --subscribers 10000 --subscriber-protocol ws --subscribe project --server-pid "$PID"
echo "   server peak RSS: $(peak_rss_mb) MB"
stop

start
echo "== stream: 1,000 websocket subscribers, every event, 1,000 events/s for 30 s (1M deliveries/s offered)"
sim --duration 30s --batch 10 --connections 4 --rate 1000 \
    --subscribers 1000 --subscriber-protocol ws --subscribe all
echo "   server peak RSS: $(peak_rss_mb) MB"
stop
fi

if want webhooks; then
start
echo "== webhooks: 50 notifications (one per project, every event) to a local receiver, 15,000 events/s for 20 s"
PROJECTS=50 sim --notifications 50 --duration 20s --batch 100 --connections 2 --rate 15000
echo "   server peak RSS: $(peak_rss_mb) MB"
stop

# Ingest as fast as possible (simulate arguments), without notification,
# then with 50 delivering every event.
ingest_pair() {
  local what=$1; shift
  start
  echo "== webhooks: $what, no notification"
  PROJECTS=50 sim "$@"
  stop
  start
  echo "== webhooks: the same with 50 notifications delivering every event"
  PROJECTS=50 sim --notifications 50 "$@"
  echo "   server peak RSS: $(peak_rss_mb) MB"
  stop
}
ingest_pair "batch ingest as fast as possible (500 events/request, 8 connections, 1M events)" \
  --events 1000000 --batch 500 --connections 8
ingest_pair "single-event ingest (1 event/request, 64 connections, 300k events)" \
  --events 300000 --batch 1 --connections 64
fi

if want ids; then
# The rate that matters is the one once the log is large: fill all but the
# last million, then time the last million, for each kind of id in turn.
rate_of() { python3 -c 'import json,sys; print(round(json.load(sys.stdin)["per_second"]))'; }
declare -A RATE
for kind in ${IDS_ORDER:-v7 v4}; do
  start
  echo "== ids: batch ingest with $kind ids (500 events/request, 8 connections), log of $LOG_EVENTS events"
  FILL=$(sim --ids "$kind" --events $((LOG_EVENTS - 1000000)) --batch 500 --connections 8 --json | rate_of)
  RATE[$kind]=$(sim --ids "$kind" --events 1000000 --batch 500 --connections 8 --seed 2 --json | rate_of)
  echo "   fill: $FILL events/s; the last 1M: ${RATE[$kind]} events/s; server peak RSS: $(peak_rss_mb) MB"
  stop
  # Opening a large log reads every id into the filter: how long until the
  # server answers again (the kernel's cache is warm: what a restart sees).
  launch; READY=$(date +%s.%N)
  echo "   restart on the $LOG_EVENTS-event log: listening after $(python3 -c "print(round($READY - $LAUNCHED, 2))") s (±0.05), RSS $(peak_rss_mb) MB"
  stop
done
python3 -c "print('   v4 / v7 over the last 1M: %.2f' % (${RATE[v4]} / ${RATE[v7]}))"
fi
