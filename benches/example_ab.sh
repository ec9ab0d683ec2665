#!/usr/bin/env bash
# The example server at a past revision against the working tree, same
# run, alternating: requests per second and the server's CPU time per
# request, bare handlers and full stack, on one route.
#
# Usage: bash benches/example_ab.sh REV [ROUTE]   (default /api/v1/items)
#        ROUNDS=3 DURATION=6s CONCURRENCY=32 bash benches/example_ab.sh 838a06c
set -euo pipefail
cd "$(dirname "$0")/.."
REV=${1:?usage: example_ab.sh REV [ROUTE]}
ROUTE=${2:-/api/v1/items}
ROUNDS=${ROUNDS:-3} DURATION=${DURATION:-6s} CONCURRENCY=${CONCURRENCY:-32}
OUT=target/example-ab
mkdir -p "$OUT"
trap 'kill $(jobs -p) 2>/dev/null || true; git worktree remove --force "$OUT/rev" 2>/dev/null || true' EXIT

# Both builds share target/ (the dependencies are built once); each
# binary is copied aside as soon as it is built.
git worktree add -f "$OUT/rev" "$REV" >/dev/null
(cd "$OUT/rev" && CARGO_TARGET_DIR="$PWD/../../../target" cargo build --release --example server)
cp target/release/examples/server "$OUT/server-before"
touch examples/server.rs src/lib.rs
cargo build --release --example server --example loadtest
cp target/release/examples/server "$OUT/server-after"
LOADTEST=target/release/examples/loadtest

cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
run() { # label binary args...
  local label=$1 bin=$2
  shift 2
  "$bin" --addr 127.0.0.1:3411 "$@" >"$OUT/$label.log" 2>&1 &
  local pid=$!
  for _ in $(seq 1 100); do
    curl -fs http://127.0.0.1:3411/health >/dev/null 2>&1 && break
    sleep 0.1
  done
  "$LOADTEST" --scenario baseline --duration 2s --concurrency "$CONCURRENCY" \
    --header 'accept-encoding: gzip' --quiet "http://127.0.0.1:3411$ROUTE" >/dev/null
  local c0 c1
  c0=$(cpu "$pid")
  "$LOADTEST" --scenario sustained --duration "$DURATION" --concurrency "$CONCURRENCY" \
    --header 'accept-encoding: gzip' --json "$OUT/$label.json" --quiet \
    "http://127.0.0.1:3411$ROUTE" >/dev/null
  c1=$(cpu "$pid")
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  python3 - "$label" "$c0" "$c1" "$OUT/$label.json" "$(getconf CLK_TCK)" <<'PY'
import json, sys
label, c0, c1, path, hz = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
def find(o, k):
    if isinstance(o, dict):
        if k in o:
            return o[k]
        o = list(o.values())
    if isinstance(o, list):
        for v in o:
            r = find(v, k)
            if r is not None:
                return r
d = json.load(open(path))
rps, n = d["answered_per_second"], d["total_requests"]
print(f"| {label} | {rps:,.0f} | {(c1 - c0) * 1e6 / hz / n:.1f} |")
PY
}
echo "| server | req/s | CPU µs per request |"
echo "|---|---|---|"
for round in $(seq 1 "$ROUNDS"); do
  for v in before after; do
    run "$v-bare-$round" "$OUT/server-$v" --bare
    run "$v-full-$round" "$OUT/server-$v" --rate-limit-per-min 1000000000
  done
done
