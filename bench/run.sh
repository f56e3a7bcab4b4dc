#!/usr/bin/env bash
# The issue-2 benchmark: client (cds-events simulate) and server on this
# machine, server on a fresh temporary data directory.
#
#   bash bench/run.sh                 # everything (~5 min, ~10 GB of disk)
#   EVENTS_10M=2000000 bash bench/run.sh   # a smaller log for the read phase
#
# Prints one line per phase; BENCHMARKS.md records the results.
set -euo pipefail
cd "$(dirname "$0")/.."

DURABILITY=${DURABILITY:-process-crash}
LOG_EVENTS=${EVENTS_10M:-10000000}
PORT=${PORT:-18290}
BIN=target/release/cds-events
# Authentication is always on: the server takes this as its admin token,
# simulate sends it.
export CDS_EVENTS_ADMIN_TOKEN=${CDS_EVENTS_ADMIN_TOKEN:-bench-admin-token-$RANDOM$RANDOM$RANDOM}
export CDS_EVENTS_TOKEN=$CDS_EVENTS_ADMIN_TOKEN

cargo build --release --quiet
DATA=$(mktemp -d)
trap 'kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; rm -rf "$DATA"' EXIT

start() {
  rm -rf "$DATA/d"
  # Let the kernel write back what earlier phases (or runs) left dirty, so a
  # phase is not measured against someone else's flush.
  sync; sleep 2
  "$BIN" serve --listen "127.0.0.1:$PORT" --data-dir "$DATA/d" --durability "$DURABILITY" >"$DATA/out" 2>"$DATA/err" &
  PID=$!
  for _ in $(seq 100); do grep -q listening "$DATA/out" 2>/dev/null && return; sleep 0.1; done
  echo "server did not start"; cat "$DATA/err"; exit 1
}
stop() { kill "$PID"; wait "$PID" || true; }
peak_rss_mb() { awk '/VmHWM/ {printf "%.0f", $2/1024}' "/proc/$PID/status"; }
sim() { "$BIN" simulate --server "http://127.0.0.1:$PORT" --projects 100 "$@"; }

echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB; commit $(git rev-parse --short HEAD); durability $DURABILITY"

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

start
echo "== stream: 1 SSE subscriber (every event), 20,000 events/s published (100/request, 2 connections)"
sim --events 200000 --batch 100 --connections 2 --rate 20000 --subscribers 1
echo "   server peak RSS: $(peak_rss_mb) MB"
stop
