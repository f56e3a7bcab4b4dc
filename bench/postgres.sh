#!/usr/bin/env bash
# The PostgreSQL benchmark (issue 12): the same events as bench/run.sh, on
# the embedded SQLite and on PostgreSQL with one and with three instances,
# in one run, so that the ratios hold whatever this machine is today.
#
#   bash bench/postgres.sh              # ~6 min
#   EVENTS=300000 bash bench/postgres.sh   # a quicker look
#
# Needs the machine's PostgreSQL (PG, default postgres://postgres@127.0.0.1:5432);
# makes a database of its own per phase and drops it. Prints one line per
# figure; BENCHMARKS.md records the results.
set -euo pipefail
cd "$(dirname "$0")/.."

PG=${PG:-postgres://postgres@127.0.0.1:5432}
EVENTS=${EVENTS:-1000000}
SINGLE=${SINGLE:-100000}
DURABILITY=${DURABILITY:-process-crash}
PORT=${PORT:-18390}
# BIN=path runs a binary built before (no build; say which commit it is).
BIN=${BIN:-target/release/cds-events}
export CDS_EVENTS_ADMIN_TOKEN=${CDS_EVENTS_ADMIN_TOKEN:-bench-admin-token-$RANDOM$RANDOM$RANDOM}
export CDS_EVENTS_TOKEN=$CDS_EVENTS_ADMIN_TOKEN
export CDS_EVENTS_WEBHOOKS__KEY=$(head -c32 /dev/urandom | base64)

[[ $BIN != target/release/cds-events ]] || cargo build --release --quiet
DATA=$(mktemp -d)
PIDS=()
DB=""
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  [[ -n $DB ]] && psql -q "$PG/postgres" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$DATA"
}
trap cleanup EXIT

# start N [--postgres URL]: N instances on ports PORT, PORT+1, ...
start() {
  local n=$1; shift
  sync; sleep 2
  PIDS=()
  for i in $(seq 0 $((n - 1))); do
    "$BIN" serve --listen "127.0.0.1:$((PORT + i))" --data-dir "$DATA/d$i" --durability "$DURABILITY" "$@" \
      >"$DATA/out$i" 2>"$DATA/err$i" &
    PIDS+=($!)
  done
  for i in $(seq 0 $((n - 1))); do
    for _ in $(seq 300); do grep -q listening "$DATA/out$i" 2>/dev/null && break; sleep 0.1; done
    grep -q listening "$DATA/out$i" || { echo "instance $i did not start"; cat "$DATA/err$i"; exit 1; }
  done
}
stop() {
  for p in "${PIDS[@]}"; do kill "$p"; wait "$p" || true; done
  PIDS=()
  rm -rf "$DATA"/d*
}
fresh_db() {
  [[ -n $DB ]] && psql -q "$PG/postgres" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null
  DB=cds_events_bench_$$_$1
  psql -q "$PG/postgres" -c "CREATE DATABASE $DB" >/dev/null
}
url() { echo "http://127.0.0.1:$((PORT + $1))"; }
sim() { "$BIN" simulate --projects 100 "$@"; }
rate() { python3 -c 'import json,sys; print(round(json.load(sys.stdin)["per_second"]))'; }

# CPU seconds of every PostgreSQL process, and of our instances.
pg_cpu() { ps -C postgres -o times= | awk '{s+=$1} END {print s+0}'; }
our_cpu() { local s=0; for p in "${PIDS[@]}"; do s=$((s + $(ps -o times= -p "$p"))); done; echo $s; }
# Commits and WAL of the database under test.
pg_counters() {
  psql -qtA "$PG/$DB" -c "SELECT (SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()),
                                 (SELECT wal_bytes FROM pg_stat_wal), (SELECT wal_sync FROM pg_stat_wal)"
}

# ingest LABEL INSTANCES ARGS...: the same load split over the instances
# (each gets its share of events and connections); prints events/s over the
# whole run and where the CPU went.
ingest() {
  local label=$1 n=$2; shift 2
  local total=$1 batch=$2 conns=$3
  local share=$((total / n)) per=$(((conns + n - 1) / n))
  local pg0 cpu0 c0 t0 t1
  pg0=$(pg_cpu); cpu0=$(our_cpu); c0=$( [[ -n $DB ]] && pg_counters || echo "")
  t0=$(date +%s.%N)
  local sims=()
  for i in $(seq 0 $((n - 1))); do
    sim --server "$(url "$i")" --events "$share" --batch "$batch" --connections "$per" --json >"$DATA/sim$i" &
    sims+=($!)
  done
  wait "${sims[@]}"
  t1=$(date +%s.%N)
  local secs events
  secs=$(python3 -c "print($t1 - $t0)")
  events=$(cat "$DATA"/sim* | python3 -c 'import json,sys; print(sum(json.loads(l)["units"] for l in sys.stdin))')
  rm -f "$DATA"/sim*
  printf '   %-44s %8.0f events/s' "$label" "$(python3 -c "print($events / $secs)")"
  printf '  (server CPU %s s, PostgreSQL CPU %s s' "$(( $(our_cpu) - cpu0 ))" "$(( $(pg_cpu) - pg0 ))"
  if [[ -n $c0 ]]; then
    python3 - "$c0" "$(pg_counters)" "$events" <<'EOF'
import sys
a = [int(x) for x in sys.argv[1].split("|")]; b = [int(x) for x in sys.argv[2].split("|")]; n = int(sys.argv[3])
print(", %.1f events per commit, %.0f WAL bytes per event, %d WAL syncs)" % (n / max(1, b[0] - a[0]), (b[1] - a[1]) / n, b[2] - a[2]))
EOF
  else
    echo ")"
  fi
}

echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB; commit $(git rev-parse --short HEAD); durability $DURABILITY; $(psql -qtA "$PG/postgres" -c 'SHOW server_version') (synchronous_commit $(psql -qtA "$PG/postgres" -c 'SHOW synchronous_commit'))"

echo "== batch ingest (500 events/request, 8 connections, $EVENTS events) and single-event ingest (64 connections, $SINGLE events)"
DB=""
start 1
ingest "SQLite, 1 instance, batch" 1 "$EVENTS" 500 8
ingest "SQLite, 1 instance, single" 1 "$SINGLE" 1 64
stop
for n in 1 3; do
  fresh_db "i$n"
  start "$n" --postgres "$PG/$DB"
  if [[ $n == 3 ]]; then
    echo "== live latency: published on instance 0, one SSE subscriber on instance 1, 2,000 events/s for 30 s"
    sim --server "$(url 0)" --subscribe-to "$(url 1)" --duration 30s --batch 10 --connections 4 --rate 2000 --subscribers 1
    echo "== the same on one instance (subscriber on the instance that ingests)"
    sim --server "$(url 2)" --duration 30s --batch 10 --connections 4 --rate 2000 --subscribers 1
  fi
  ingest "PostgreSQL, $n instance(s), batch" "$n" "$EVENTS" 500 8
  ingest "PostgreSQL, $n instance(s), single" "$n" "$SINGLE" 1 64
  if [[ $n == 1 ]]; then
    echo "== reads over the PostgreSQL log of $(curl -s "$(url 0)/mon/status" | python3 -c 'import json,sys; print(json.load(sys.stdin)["storage"]["events"])') events"
    sim --server "$(url 0)" --workload pages --events 20000 --connections 2
    sim --server "$(url 0)" --workload gets --events 20000 --connections 2
  fi
  stop
done
