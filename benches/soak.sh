#!/usr/bin/env bash
# Soak: the example server with the full stack under the load runner for
# ROUNDS minutes (default 10), one minute at a time, printing per minute the
# server's RSS, the requests, the failures and the p99. Passes when no
# request failed and the RSS after warm-up (minute 2 on) stays within 10%.
#
# Usage: bash benches/soak.sh            (about 10 minutes)
#        ROUNDS=3 CONCURRENCY=16 bash benches/soak.sh
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS="${ROUNDS:-10}"
CONCURRENCY="${CONCURRENCY:-16}"
PORT="${PORT:-3401}"
OUT="target/soak"
mkdir -p "$OUT"

cargo build --release --example server --example loadtest
target/release/examples/server --addr "127.0.0.1:$PORT" --rate-limit-per-min 1000000000 >"$OUT/server.log" 2>&1 &
SERVER_PID=$!
trap 'kill $SERVER_PID 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  curl -fs "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && break
  sleep 0.1
done

rss_mib() { awk '{printf "%.1f", $2 * 4096 / 1048576}' "/proc/$SERVER_PID/statm"; }

B="http://127.0.0.1:$PORT"
echo "minute | server RSS MiB | requests | failed | p99 ms (all endpoints, worst)"
for i in $(seq 1 "$ROUNDS"); do
  target/release/examples/loadtest --quiet --duration 60s --concurrency "$CONCURRENCY" \
    --header 'accept-encoding: gzip' \
    "30*$B/api/v1/items" \
    "30*$B/api/v1/items/{1..55}" \
    "15*$B/api/v1/items/{1..55}?page={1..100000}" \
    "10*$B/static/app.js" \
    "10*$B/health" \
    "5*$B/api/v1/report" \
    --json "$OUT/minute-$i.json" >/dev/null
  python3 - "$OUT/minute-$i.json" "$i" "$(rss_mib)" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
failed = sum(e["requests"] - round(e["requests"] * e["success_rate"]) for e in j["endpoints"])
p99 = max(e["latency"]["p99_ms"] or 0.0 for e in j["endpoints"])
print(f"{sys.argv[2]} | {sys.argv[3]} | {j['total_requests']} | {failed} | {p99:.2f}")
PY
done | tee "$OUT/soak.txt"

python3 - "$OUT/soak.txt" <<'PY'
import sys
rows = [l.split(" | ") for l in open(sys.argv[1]) if l[0].isdigit()]
rss = [float(r[1]) for r in rows[1:]] or [float(rows[0][1])]
failed = sum(int(r[3]) for r in rows)
spread = (max(rss) - min(rss)) / min(rss) * 100
print(f"after warm-up RSS {min(rss):.1f}-{max(rss):.1f} MiB ({spread:.1f}% spread); {failed} failed requests")
sys.exit(0 if failed == 0 and spread <= 10 else 1)
PY
