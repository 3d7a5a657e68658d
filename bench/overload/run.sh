#!/usr/bin/env bash
# bench/overload/run.sh: the demo shop after an overload. meshd (MESHD,
# bin/meshd by default) with the demo plugins on loopback; wrk POSTs orders
# at full speed (CONNS connections, 16, for DURATION, 30s, 100 users, all
# under the payment limit); once every consumer has caught up, 2,000 orders
# at a steady 200/s for one user. Prints the orders accepted in the
# overload, how long the pipeline took to catch up, the steady phase's
# POSTs shed, and its creation -> PAID p50 / p99 / max. Bounded: the
# catch-up waits at most 4 minutes. Needs wrk and python3.
#
#   MESHD=/tmp/meshd-other bench/overload/run.sh   # another build, alternated with bin/meshd
set -euo pipefail
MESHD=${MESHD:-bin/meshd}
CONNS=${CONNS:-16}
DURATION=${DURATION:-30s}
HTTP_PORT=${HTTP_PORT:-18480}
ADMIN_PORT=${ADMIN_PORT:-18481}
BASE=http://127.0.0.1:$HTTP_PORT
ADMIN=http://127.0.0.1:$ADMIN_PORT
WORK=$(mktemp -d)
PID=
cleanup() {
  if [ -n "$PID" ]; then
    kill -TERM "$PID" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

mkdir -p "$WORK/plugins" "$WORK/data"
cp -r build/plugins/. "$WORK/plugins/"
"$MESHD" run --plugins "$WORK/plugins" --data "$WORK/data" --http "127.0.0.1:$HTTP_PORT" \
  --admin "127.0.0.1:$ADMIN_PORT" >"$WORK/meshd.log" 2>&1 &
PID=$!
for _ in $(seq 1 300); do curl -s -o /dev/null "$BASE/" && break; sleep 0.1; done
curl -s -o /dev/null "$BASE/" || { tail -5 "$WORK/meshd.log"; echo "meshd did not serve" >&2; exit 1; }

cat >"$WORK/post.lua" <<'LUA'
wrk.method = "POST"; wrk.path = "/orders"; wrk.headers["Content-Type"] = "application/json"
local n = 0
request = function()
  n = n + 1
  return wrk.format(nil, nil, nil, '{"user_id":"flood-' .. (n % 100) .. '","items":[{"name":"a","price":1000}]}')
end
LUA
wrk -t2 -c"$CONNS" -d"$DURATION" -s "$WORK/post.lua" "$BASE" >"$WORK/wrk.txt" 2>&1
total=$(awk '/requests in/ { print $1 }' "$WORK/wrk.txt")
refused=$(awk '/Non-2xx/ { print $NF }' "$WORK/wrk.txt")
echo "overload: ${total:-?} POSTs in $DURATION, $(( ${total:-0} - ${refused:-0} )) accepted"

# Caught up: no consumer with an event pending or unacknowledged.
start=$(date +%s)
while :; do
  behind=$(curl -s "$ADMIN/metrics" | awk '/^meshd_event_consumer_(pending|ack_pending)\{/ && $2 > 0' | wc -l)
  [ "$behind" -eq 0 ] && break
  [ $(( $(date +%s) - start )) -gt 240 ] && { echo "consumers still behind after 4 minutes" >&2; exit 1; }
  sleep 1
done
echo "caught up $(( $(date +%s) - start )) s after the overload"

python3 - "$BASE" <<'PY'
import datetime, json, sys, threading, time, urllib.error, urllib.request
base = sys.argv[1]; ids = []; shed = [0]; lock = threading.Lock()
body = json.dumps({"user_id": "steady", "items": [{"name": "a", "price": 1000}]}).encode()
def post():
    try:
        r = urllib.request.urlopen(urllib.request.Request(base + "/orders", data=body, method="POST",
                                   headers={"Content-Type": "application/json"}), timeout=10)
        with lock: ids.append(json.load(r)["id"])
    except urllib.error.HTTPError:
        with lock: shed[0] += 1
t0 = time.time(); threads = []
for i in range(2000):
    delay = t0 + i / 200 - time.time()
    if delay > 0: time.sleep(delay)
    th = threading.Thread(target=post); th.start(); threads.append(th)
for th in threads: th.join()
time.sleep(5)
def ts(s): return datetime.datetime.fromisoformat(s.replace("Z", "+00:00")[:26] + "+00:00")
lat = []
for i in ids:
    o = json.load(urllib.request.urlopen(f"{base}/orders/{i}", timeout=10))
    if o.get("status") != "PAID":
        print(f"order {i} is {o.get('status')} 5 s after the steady run"); sys.exit(1)
    lat.append((ts(o["paid_at"]) - ts(o["created_at"])).total_seconds() * 1000)
lat.sort()
print(f"steady 200/s: {len(lat)} orders taken, {shed[0]} POSTs refused; creation -> PAID "
      f"p50 {lat[len(lat)//2]:.1f} ms, p99 {lat[int(len(lat)*.99)]:.1f} ms, max {lat[-1]:.1f} ms")
PY
