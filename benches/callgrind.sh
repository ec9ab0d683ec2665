#!/usr/bin/env bash
# Instructions per response, counted by callgrind: repeatable on a noisy,
# shared machine where wall-clock medians move by 20% between runs.
# Prints the table BENCHMARKS.md quotes. Needs valgrind (Debian package).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench --bench compression_workload --no-run >/dev/null 2>&1
bin=$(ls -t target/release/deps/compression_workload-* | grep -v '\.d$' | head -1)

count() { # contender size level iters -> instructions
  valgrind --tool=callgrind --callgrind-out-file=/dev/null "$bin" "$@" 2>&1 |
    sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}

printf '| body | level | tower-perf | tower-http | flate2 (fresh encoder) | tower-http / tower-perf | tower-perf / flate2 |\n'
printf '|---|---|---|---|---|---|---|\n'
for spec in "2048 2 2000" "2048 6 2000" "1048576 2 4" "1048576 6 4"; do
  set -- $spec
  size=$1 level=$2 iters=$3
  base=$(count none "$size" "$level" "$iters")
  per() { echo $(( ($(count "$1" "$size" "$level" "$iters") - base) / iters )); }
  ours=$(per ours) theirs=$(per tower-http) raw=$(per flate2)
  name=$([ "$size" -ge 1048576 ] && echo 1MiB || echo 2KiB)
  awk -v n="$name" -v l="$level" -v o="$ours" -v t="$theirs" -v r="$raw" \
    'BEGIN { printf "| %s | %s | %d | %d | %d | %.2fx | %.2fx |\n", n, l, o, t, r, t / o, o / r }'
done

# Per-request instructions of the workload binaries (benches/*_workload.rs):
# counted inside `drive` only (set-up, and the counter clock's one-off
# calibration, stay out), the difference between 11,000 and 1,000 requests.
per_request() { # workload contender -> instructions per request
  cargo bench --bench "$1" --no-run >/dev/null 2>&1
  local bin
  bin=$(ls -t target/release/deps/"$1"-* | grep -v '\.d$' | head -1)
  local counts=()
  for n in 1000 11000; do
    counts+=("$(valgrind --tool=callgrind --callgrind-out-file=/dev/null --collect-atstart=no \
      --toggle-collect='*drive*' "$bin" "$2" "$n" 2>&1 |
      sed -n 's/.*Collected : \([0-9]*\).*/\1/p')")
  done
  echo $(( (counts[1] - counts[0]) / 10000 ))
}

table() { # workload baseline contender... -> a markdown table
  local workload=$1 base
  shift
  base=$(per_request "$workload" "$1")
  printf '\n%s\n\n| per request | instructions | over %s |\n|---|---|---|\n' "$workload" "$1"
  for c in "$@"; do
    local v
    v=$(per_request "$workload" "$c")
    printf '| %s | %d | %+d |\n' "$c" "$v" $(( v - base ))
  done
}

table rate_limit_workload bare tower_governor quiet tower_governor-headers fields
table timing_workload bare timed sub-timings
table cache_workload bare hit
table stack_workload bare full
table stack_workload bare-health floor-health full-health
table tasks_workload bare layer routed
