#!/usr/bin/env bash
# Redis outages under load (issue 17): the example server with `--redis`
# on a redis-server of its own; 32 connections on the rate-limited, cached
# item routes; Redis killed (kill -9), paused (SIGSTOP) or replaced by a
# socket that accepts and never answers. Prints req/s, p50/p99/max and
# non-200 answers with Redis up, in the outage's first second, and in the
# five seconds after it; then brings Redis back under load and prints (on
# stderr) how long after its first PONG the rate limiter used it again.
#
# Usage: bash benches/redis_outage.sh [kill|stop|silent]...   (default: all)
#        SERVER=path/to/server bash benches/redis_outage.sh kill
set -uo pipefail
cd "$(dirname "$0")/.."
PORT=${PORT:-6390}
OUT=target/redis-outage
mkdir -p "$OUT"
if [ -z "${SERVER:-}" ]; then
  cargo build --release --example server --example loadtest --features redis
  SERVER=target/release/examples/server
fi
LOADTEST=target/release/examples/loadtest
[ -x "$LOADTEST" ] || cargo build --release --example loadtest
URL="http://127.0.0.1:3420/api/v1/items/{1..55}"
load() { # seconds name
  "$LOADTEST" --scenario sustained --duration "$1" --concurrency 32 \
    --header 'accept-encoding: gzip' --json "$OUT/$2.json" --quiet "$URL" >/dev/null 2>&1
}
for kind in "${@:-kill stop silent}"; do
  for k in $kind; do
    redis-server --port "$PORT" --bind 127.0.0.1 --save '' --appendonly no >/dev/null 2>&1 &
    rpid=$!
    sleep 0.5
    "$SERVER" --addr 127.0.0.1:3420 --redis "redis://127.0.0.1:$PORT" \
      --rate-limit-per-min 1000000000 >"$OUT/server-$k.log" 2>&1 &
    spid=$!
    for _ in $(seq 1 100); do curl -fs http://127.0.0.1:3420/health >/dev/null 2>&1 && break; sleep 0.1; done
    load 3 "$k-up"
    silent=""
    case $k in
      kill) kill -9 "$rpid" ;;
      stop) kill -STOP "$rpid" ;;
      silent)
        kill -9 "$rpid"
        sleep 0.2
        python3 - "$PORT" <<'PY' &
import socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(1024)
s.settimeout(0.2)
held, end = [], time.time() + 20
while time.time() < end:
    try:
        held.append(s.accept()[0])
    except OSError:
        pass
PY
        silent=$!
        ;;
    esac
    load 1 "$k-first"
    load 5 "$k-down"
    # Redis comes back under load: time from its first PONG until the rate
    # limiter's breaker is closed again (its quota checks reach Redis).
    load 4 "$k-back" &
    lpid=$!
    sleep 0.5
    case $k in
      stop) kill -CONT "$rpid" ;;
      *)
        [ -n "$silent" ] && kill "$silent" 2>/dev/null && wait "$silent" 2>/dev/null
        silent=""
        redis-server --port "$PORT" --bind 127.0.0.1 --save '' --appendonly no >/dev/null 2>&1 &
        rpid=$!
        ;;
    esac
    until redis-cli -p "$PORT" ping 2>/dev/null | grep -q PONG; do sleep 0.005; done
    back=$(date +%s.%N)
    recovered=""
    for _ in $(seq 1 500); do
      if curl -fs http://127.0.0.1:3420/metrics | grep -q 'tower_perf_redis_breaker_open{store="rate_limit"} 0'; then
        recovered=$(date +%s.%N)
        break
      fi
      sleep 0.01
    done
    wait "$lpid" 2>/dev/null
    if [ -n "$recovered" ]; then
      echo "$k: limits enforced again $(python3 -c "print(round(($recovered - $back) * 1000))") ms after Redis answered" >&2
    else
      echo "$k: limits NOT enforced again within 5 s of Redis answering" >&2
    fi
    kill "$spid" 2>/dev/null
    wait "$spid" 2>/dev/null
    kill -CONT "$rpid" 2>/dev/null
    kill -9 "$rpid" 2>/dev/null
    [ -n "$silent" ] && kill "$silent" 2>/dev/null
    wait 2>/dev/null
    python3 - "$OUT" "$k" <<'PY'
import json, sys
out, k = sys.argv[1], sys.argv[2]
cells = []
for phase in ("up", "first", "down"):
    d = json.load(open(f"{out}/{k}-{phase}.json"))
    e = d["endpoints"][0]
    # Every request that got no 200 (no answer included); answers of any
    # status are timed, as the table always did.
    bad = e["requests"] - e["status_codes"].get("200", 0)
    lat = e["answers_latency"]
    cells.append(f"{d['answered_per_second']:,.0f} req/s, p99 {lat['p99_ms']} ms (max {lat['max_ms']}), {bad} failed")
print(f"| {k} | " + " | ".join(cells) + " |")
PY
  done
done
