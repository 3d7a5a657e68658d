#!/usr/bin/env bash
# make loadtest: POST /orders through meshd (real plugins, loopback) and
# through a native net/http handler doing the same validation/JSON/ID work
# (bench/nativeorder), with wrk, in the same run. Bounded: each phase
# runs DURATION; the whole script is under `timeout` in the Makefile.
# Also the read model's lag behind admitted orders under that load
# (lagprobe). Results: build/loadtest.txt. Knobs: DURATION, CONNS, THREADS, PLUGINS
# ("order" by default; "order payment" runs the saga too), POOL_MIN, POOL_MAX,
# USERS (the orders' users: 1 by default, "user123"; N: N users at random).
set -euo pipefail
DURATION=${DURATION:-10s}
CONNS=${CONNS:-16}
THREADS=${THREADS:-2}
MESHD_PORT=${MESHD_PORT:-18090}
NATIVE_PORT=${NATIVE_PORT:-18091}
ADMIN_PORT=${ADMIN_PORT:-18092}
OUT=build/loadtest.txt
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do
    for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT

wait_up() { # URL
  for _ in $(seq 1 300); do
    curl -s -o /dev/null "$1" && return 0
    sleep 0.1
  done
  echo "loadtest: $1 did not come up within 30 s" >&2; exit 1
}

run_wrk() { # NAME URL
  echo "== $1: wrk -t$THREADS -c$CONNS -d$DURATION --latency POST $2/orders" | tee -a "$OUT"
  wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency -s bench/loadtest/post.lua "$2" | tee -a "$WORK/$1.txt" | tee -a "$OUT"
}

mkdir -p build
: > "$OUT"
{
  echo "meshd loadtest $(date -u +%FT%TZ) on $(nproc) CPU(s), load average: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "go: $(go version | cut -d' ' -f3-)"
} | tee -a "$OUT"

# Only the order plugin by default: with payment loaded too, every order
# also runs the payment saga inside meshd during the measurement.
mkdir -p "$WORK/plugins"
for p in ${PLUGINS:-order}; do
  cp "build/plugins/$p.wasm" "$WORK/plugins/"
  if [ -f "build/plugins/$p.toml" ]; then cp "build/plugins/$p.toml" "$WORK/plugins/"; fi
done
bin/meshd run --plugins "$WORK/plugins" --data "$WORK/data" --http "127.0.0.1:$MESHD_PORT" \
  --admin "127.0.0.1:$ADMIN_PORT" --log-level warn --pool-min "${POOL_MIN:-2}" --pool-max "${POOL_MAX:-8}" >"$WORK/meshd.log" 2>&1 &
PIDS+=($!)
wait_up "http://127.0.0.1:$MESHD_PORT/"
curl -s -o /dev/null -X POST "http://127.0.0.1:$MESHD_PORT/orders" -H 'Content-Type: application/json' \
  -d '{"user_id":"warm","items":[{"name":"a","price":1}]}'
# Beside the load: how long an admitted order takes to show in its user's
# list (bench/loadtest/lagprobe, one probe order every 100 ms).
go build -o "$WORK/lagprobe" ./bench/loadtest/lagprobe
"$WORK/lagprobe" -url "http://127.0.0.1:$MESHD_PORT" -for "$DURATION" >"$WORK/lag.txt" 2>&1 &
LAGPROBE=$!
run_wrk meshd "http://127.0.0.1:$MESHD_PORT"
wait "$LAGPROBE" || true
tee -a "$OUT" <"$WORK/lag.txt"
# How far the read model kept up: ORDER_CREATED events the order service
# projected by the end of the measured window (the rest is a backlog).
meshd_projected=$(curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" |
  awk '/^meshd_events_delivered_total\{/ && /service="order"/ && /topic="ORDER_CREATED"/ {print $2}')
kill -TERM "${PIDS[0]}"; wait "${PIDS[0]}" 2>/dev/null || true

go build -o "$WORK/nativeorder" ./bench/nativeorder/cmd/nativeorder
"$WORK/nativeorder" -http "127.0.0.1:$NATIVE_PORT" >"$WORK/native.log" 2>&1 &
PIDS+=($!)
wait_up "http://127.0.0.1:$NATIVE_PORT/"
run_wrk native "http://127.0.0.1:$NATIVE_PORT"
kill -TERM "${PIDS[1]}"; wait "${PIDS[1]}" 2>/dev/null || true

# The same, plus the plugin's effects done natively on an embedded NATS:
# KV write, ORDER_CREATED, delayed ORDER_PAYMENT_TIMEOUT.
"$WORK/nativeorder" -http "127.0.0.1:$NATIVE_PORT" -data "$WORK/native-data" >"$WORK/native-nats.log" 2>&1 &
PIDS+=($!)
wait_up "http://127.0.0.1:$NATIVE_PORT/"
run_wrk native-nats "http://127.0.0.1:$NATIVE_PORT"
kill -TERM "${PIDS[2]}"; wait "${PIDS[2]}" 2>/dev/null || true

# All the work the order service does per order: the same, plus the
# read-model projection of ORDER_CREATED (view and paged user index) by a
# consumer in the same process, as meshd runs the plugin's subscription.
"$WORK/nativeorder" -http "127.0.0.1:$NATIVE_PORT" -data "$WORK/native-cqrs-data" -project >"$WORK/native-cqrs.log" 2>&1 &
PIDS+=($!)
wait_up "http://127.0.0.1:$NATIVE_PORT/"
run_wrk native-cqrs "http://127.0.0.1:$NATIVE_PORT"
native_projected=$(curl -s "http://127.0.0.1:$NATIVE_PORT/stats" | awk '/^projected/ {print $2}')
kill -TERM "${PIDS[3]}"; wait "${PIDS[3]}" 2>/dev/null || true

# The same work again, the two events sent together once the order is
# stored (-pipeline), as meshd applies a plugin's buffered effects: what
# a native service tuned the way meshd is would do.
"$WORK/nativeorder" -http "127.0.0.1:$NATIVE_PORT" -data "$WORK/native-pipe-data" -project -pipeline >"$WORK/native-pipe.log" 2>&1 &
PIDS+=($!)
wait_up "http://127.0.0.1:$NATIVE_PORT/"
run_wrk native-pipe "http://127.0.0.1:$NATIVE_PORT"

rps() { awk '/^Requests\/sec:/ {print $2}' "$WORK/$1.txt"; }
lat() { awk -v p="$2" '$1 == p {print $2}' "$WORK/$1.txt"; }
non2xx() { awk '/Non-2xx/ {print $4}' "$WORK/$1.txt"; }
total() { awk '/requests in/ {print $1}' "$WORK/$1.txt"; }
m=$(rps meshd); n=$(rps native); nn=$(rps native-nats); nc=$(rps native-cqrs); np=$(rps native-pipe)
{
  echo "== summary"
  printf '%-12s %12s %10s %10s %10s\n' "" "req/s" "p50" "p99" "non-2xx"
  for x in meshd native native-nats native-cqrs native-pipe; do
    printf '%-12s %12s %10s %10s %10s\n' "$x" "$(rps $x)" "$(lat $x 50%)" "$(lat $x 99%)" "$(non2xx $x)"
  done
  awk -v m="$m" -v n="$n" -v nn="$nn" -v nc="$nc" -v np="$np" 'BEGIN {
    printf "ratio meshd/native (validation, JSON, id only):          %.2f\n", m / n
    printf "ratio meshd/native-nats (plus KV write, two publishes):   %.2f\n", m / nn
    printf "ratio meshd/native-cqrs (plus the read-model projection): %.2f (the same work; target >= 0.8)\n", m / nc
    printf "ratio meshd/native-pipe (the same, events sent together): %.2f\n", m / np }'
  echo "read model at the end of the window (ORDER_CREATED projected / orders accepted):"
  echo "  meshd $meshd_projected / $(total meshd), native-cqrs $native_projected / $(total native-cqrs)"
  echo "meshd $(cat "$WORK/lag.txt")"
} | tee -a "$OUT"
