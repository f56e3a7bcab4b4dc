#!/usr/bin/env bash
# The issue-16 benchmark: cds-events beside the broker a user would pick
# instead, on the same machine, with the same generated events (simulate's
# generator, same seeds; every connection renders its events before the
# clock starts). Prints each figure and each ratio ours / peer.
#
#   bash bench/peers.sh                   # RUNS=2 runs (~3 min each)
#   RUNS=3 EVENTS=300000 bash bench/peers.sh
#   BIN=/path/cds-events PEERS=/path/peers bash bench/peers.sh   # no build
#
# Each run, for ids v7 then v4: batch ingest (500/request, 8 connections) into
# cds-events (release, fresh data dir, auth on, durability process-crash),
# JetStream async publish (file storage, IN_FLIGHT acks in flight in all),
# Redis Streams (XADD pipelined 500 at a time; on the machine's Redis, as
# configured, and on a private one with AOF on, fsync every second: what
# survives a crash of Redis as our process-crash survives ours) and bare
# SQLite (no index,
# group commits of 500, the log's WAL/synchronous/checkpoint settings). With
# v7: catch-up replay of the EVENTS just written, our SSE and websocket from
# sequence 0 against a JetStream ordered consumer on the stream just written;
# single-event ingest (one event per request, one ack awaited, 64
# connections) against JetStream sync publish and one XADD per round trip
# (both Redis);
# live latency publish -> subscriber at 20k events/s (100/request, 2
# connections) against NATS core; batch ingest with one SSE subscriber
# following one project against none.
#
# Everything made on the shared NATS and Redis is named after a per-run tag
# and deleted at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-2}
EVENTS=${EVENTS:-300000}
SINGLE=${SINGLE:-100000}
IN_FLIGHT=${IN_FLIGHT:-4096}
RATE=${RATE:-20000}
DURABILITY=${DURABILITY:-process-crash}
PORT=${PORT:-18292}
BIN=${BIN:-target/release/cds-events}
PEERS=${PEERS:-target/release/peers}
TAG=peers$RANDOM$RANDOM
export CDS_EVENTS_ADMIN_TOKEN=${CDS_EVENTS_ADMIN_TOKEN:-bench-admin-token-$RANDOM$RANDOM$RANDOM}
export CDS_EVENTS_TOKEN=$CDS_EVENTS_ADMIN_TOKEN

if [[ $BIN == target/release/cds-events || $PEERS == target/release/peers ]]; then
  cargo build --release --quiet -p cds-events -p cds-events-peers
  TARGET=${CARGO_TARGET_DIR:-target}
  [[ $BIN != target/release/cds-events ]] || BIN=$TARGET/release/cds-events
  [[ $PEERS != target/release/peers ]] || PEERS=$TARGET/release/peers
fi
DATA=$(mktemp -d)
PID=
AOF_PID=
cleanup() {
  [[ -z $PID ]] || { kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; }
  [[ -z $AOF_PID ]] || { kill "$AOF_PID" 2>/dev/null || true; wait "$AOF_PID" 2>/dev/null || true; }
  "$PEERS" cleanup --tag "$TAG" || true
  rm -rf "$DATA"
}
trap cleanup EXIT

start() {
  # The old output goes first: the shell truncates it only once the new
  # process is forked, and an old "listening" must not be read as the new.
  rm -rf "$DATA/d" "$DATA/out"
  sync; sleep 2
  "$BIN" serve --listen "127.0.0.1:$PORT" --data-dir "$DATA/d" --durability "$DURABILITY" >"$DATA/out" 2>"$DATA/err" &
  PID=$!
  for _ in $(seq 600); do grep -q listening "$DATA/out" 2>/dev/null && return; sleep 0.05; done
  echo "server did not start"; cat "$DATA/err"; exit 1
}
stop() { kill "$PID"; wait "$PID" || true; PID=; }
# A private Redis with the append-only file on, fsync every second, its
# files in the run's directory.
AOF_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$DATA/aof"
redis-server --port "$AOF_PORT" --bind 127.0.0.1 --save "" --appendonly yes --appendfsync everysec \
  --dir "$DATA/aof" --logfile "$DATA/aof/log" &
AOF_PID=$!
for _ in $(seq 50); do redis-cli -p "$AOF_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
redis-cli -p "$AOF_PORT" ping >/dev/null
AOF=redis://127.0.0.1:$AOF_PORT
SERVER=http://127.0.0.1:$PORT
sim() { "$BIN" simulate --server "$SERVER" --projects 100 --json "$@"; }
peer() { "$PEERS" "$@" --tag "$TAG"; }
fresh() { "$PEERS" cleanup --tag "$TAG"; "$PEERS" cleanup --tag "$TAG" --redis "$AOF"; sync; sleep 2; }
field() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }
rate() { field "$1" per_second; }
RESULTS=$DATA/results
# One figure: name, ours, peer, unit; prints both and the ratio ours / peer
# (for a rate, above 1 is better for us; for a latency, below 1).
figure() {
  python3 -c 'import sys; n,o,p,u=sys.argv[1],float(sys.argv[2]),float(sys.argv[3]),sys.argv[4]
r = o/p
print("   %-44s ours %10.1f  peer %10.1f %-9s ratio %.2f" % (n, o, p, u, r))
open(sys.argv[5],"a").write("%s\t%f\n" % (n, r))' "$1" "$2" "$3" "$4" "$RESULTS"
}

echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, load average $(cut -d' ' -f1-3 /proc/loadavg); commit $(git rev-parse --short HEAD); durability $DURABILITY; $EVENTS events"
echo "redis: $(redis-cli INFO server | awk -F: '/redis_version/ {print $2}' | tr -d '\r'), appendonly=$(redis-cli CONFIG GET appendonly | tail -1), save='$(redis-cli CONFIG GET save | tail -1)'; and a private one at $AOF_PORT: appendonly=$(redis-cli -p "$AOF_PORT" CONFIG GET appendonly | tail -1), appendfsync=$(redis-cli -p "$AOF_PORT" CONFIG GET appendfsync | tail -1)"
echo "nats: JetStream at 127.0.0.1:4222, stream $TAG, file storage (JetStream's default: no fsync per message)"

for run in $(seq "$RUNS"); do
echo "== run $run of $RUNS (load average $(cut -d' ' -f1-3 /proc/loadavg))"
for ids in v7 v4; do
  start
  OURS=$(sim --events "$EVENTS" --batch 500 --connections 8 --ids "$ids")
  if [[ $ids == v7 ]]; then
    HEAD=$(curl -sf -H "Authorization: Bearer $CDS_EVENTS_TOKEN" "$SERVER/v2/events?limit=1&order=desc" | python3 -c 'import json,sys; print(json.load(sys.stdin)["events"][0]["seq"])')
    SSE=$("$PEERS" replay --from sse --server "$SERVER" --events "$HEAD" --tag "$TAG")
    WS=$("$PEERS" replay --from ws --server "$SERVER" --events "$HEAD" --tag "$TAG")
  fi
  stop
  fresh
  JS=$(peer ingest --to nats --events "$EVENTS" --batch 500 --connections 8 --ids "$ids" --in-flight "$IN_FLIGHT")
  [[ $ids != v7 ]] || JSR=$(peer replay --from nats --events "$EVENTS")
  fresh
  RS=$(peer ingest --to redis --events "$EVENTS" --batch 500 --connections 8 --ids "$ids")
  fresh
  RA=$(peer ingest --to redis --redis "$AOF" --events "$EVENTS" --batch 500 --connections 8 --ids "$ids")
  fresh
  SQ=$(peer ingest --to sqlite --events "$EVENTS" --batch 500 --connections 8 --ids "$ids" --db "$DATA/ceiling.db")
  rm -f "$DATA"/ceiling.db*
  echo "-- batch ingest, $ids ids (events/s)"
  figure "batch $ids: ours / JetStream async" "$(rate "$OURS")" "$(rate "$JS")" events/s
  figure "batch $ids: ours / Redis XADD pipelined" "$(rate "$OURS")" "$(rate "$RS")" events/s
  figure "batch $ids: ours / Redis XADD, AOF everysec" "$(rate "$OURS")" "$(rate "$RA")" events/s
  figure "batch $ids: ours / bare SQLite" "$(rate "$OURS")" "$(rate "$SQ")" events/s
  if [[ $ids == v7 ]]; then
    echo "-- catch-up replay of $HEAD events from sequence 0 (events/s)"
    figure "replay: SSE / JetStream ordered consumer" "$(rate "$SSE")" "$(rate "$JSR")" events/s
    figure "replay: websocket / JetStream ordered" "$(rate "$WS")" "$(rate "$JSR")" events/s
  fi
done

start
OURS=$(sim --events "$SINGLE" --batch 1 --connections 64)
stop
fresh
JS=$(peer ingest --to nats --events "$SINGLE" --batch 1 --connections 64)
fresh
RS=$(peer ingest --to redis --events "$SINGLE" --batch 1 --connections 64)
fresh
RA=$(peer ingest --to redis --redis "$AOF" --events "$SINGLE" --batch 1 --connections 64)
fresh
echo "-- single-event ingest, 64 connections (events/s; request p99 ms)"
figure "single: ours / JetStream sync publish" "$(rate "$OURS")" "$(rate "$JS")" events/s
figure "single: ours / Redis XADD one by one" "$(rate "$OURS")" "$(rate "$RS")" events/s
figure "single: ours / Redis XADD, AOF everysec" "$(rate "$OURS")" "$(rate "$RA")" events/s
OURS_P99=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["latency"]["request"]["p99_ms"])' "$OURS")
figure "single p99 (ms): our request / JetStream ack" "$OURS_P99" "$(field "$JS" p99_ms)" ms

start
OURS=$("$PEERS" latency --to cds --server "$SERVER" --rate "$RATE" --events $((RATE * 10)) --batch 100 --connections 2 --tag "$TAG")
stop
NC=$(peer latency --to nats --rate "$RATE" --events $((RATE * 10)) --batch 100 --connections 2)
echo "-- live latency publish -> subscriber at $RATE events/s (ms)"
figure "latency p50 (ms): our SSE / NATS core" "$(field "$OURS" p50_ms)" "$(field "$NC" p50_ms)" ms
figure "latency p99 (ms): our SSE / NATS core" "$(field "$OURS" p99_ms)" "$(field "$NC" p99_ms)" ms

start
BARE=$(sim --events "$EVENTS" --batch 500 --connections 8)
stop
start
WITH=$(sim --events "$EVENTS" --batch 500 --connections 8 --subscribers 1 --subscribe project)
stop
echo "-- one live SSE subscriber following one project (of 100)"
figure "ingest with one subscriber / without" "$(rate "$WITH")" "$(rate "$BARE")" events/s
done

echo "== $RUNS runs: each ratio's median (min-max); ours / peer (ms: lower is better)"
python3 -c 'import collections,statistics,sys
d=collections.OrderedDict()
for l in open(sys.argv[1]):
    n,r=l.rstrip("\n").split("\t"); d.setdefault(n,[]).append(float(r))
for n,rs in d.items():
    print("   %-44s %.2f (%.2f-%.2f) over %s" % (n, statistics.median(rs), min(rs), max(rs), " ".join("%.2f" % r for r in rs)))' "$RESULTS"
