#!/usr/bin/env bash
# Runs every published benchmark on this machine in one go and writes the
# generated section of BENCHMARKS.md (between the run.sh markers):
#
#   1. bare axum vs the full tower-perf stack on the same handlers, with the
#      load-test runner: cache-miss, cache-hit, compressed, `no-cache`
#      (`/health`) and rate-limited paths (req/s, p99 and the server's CPU
#      time per request, read from /proc, as ratios to bare);
#   2. each layer's criterion bench beside its peer (cache hit vs a quick_cache
#      alone, compression vs tower-http, rate limiting vs governor and
#      tower_governor), as ratios.
#
# Usage: bash benches/run.sh            (about 15 minutes)
#        DURATION=5s CONCURRENCY=16 ROUNDS=5 bash benches/run.sh
#
# Each load-test pair runs ROUNDS times (default 3), bare and tower-perf
# alternating, and the table gives the median of each column: one run on
# a shared 2-core machine moves by 20%.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION="${DURATION:-10s}"
CONCURRENCY="${CONCURRENCY:-32}"
ROUNDS="${ROUNDS:-3}"
if ! [ "$ROUNDS" -ge 1 ] 2>/dev/null; then
  echo "ROUNDS must be a whole number of at least 1 (got '$ROUNDS')" >&2
  exit 2
fi
# Raw outputs stay in target/bench-run (REPORT_ONLY=1 rewrites the
# section from them without measuring again).
OUT="target/bench-run"
mkdir -p "$OUT"
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT

if [ "${REPORT_ONLY:-0}" != 1 ]; then

echo "==> building (release)"
cargo build --release --example server --example loadtest

SERVER=target/release/examples/server
LOADTEST=target/release/examples/loadtest
"$SERVER" --bare --addr 127.0.0.1:3301 >"$OUT/bare.log" 2>&1 &
PID_3301=$!
"$SERVER" --addr 127.0.0.1:3302 --rate-limit-per-min 1000000000 >"$OUT/full.log" 2>&1 &
PID_3302=$!
"$SERVER" --addr 127.0.0.1:3303 --rate-limit-per-min 1 >"$OUT/limited.log" 2>&1 &
PID_3303=$!
for port in 3301 3302 3303; do
  for _ in $(seq 1 100); do
    curl -fs "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break
    sleep 0.1
  done
done

# The CPU time (user + system, clock ticks) a server process has used.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# One load-test run against the server on `port`, its CPU ticks during the
# run written beside the JSON.
run_one() {
  local file="$1" port="$2" path="$3"; shift 3
  local pid_var="PID_$port" before
  before=$(cpu_ticks "${!pid_var}")
  "$LOADTEST" --quiet --duration "$DURATION" --concurrency "$CONCURRENCY" "$@" \
    --json "$OUT/$file.json" "http://127.0.0.1:$port$path" >/dev/null
  echo $(( $(cpu_ticks "${!pid_var}") - before )) >"$OUT/$file.cpu"
}

# name | server port of the stack | path | extra loadtest options
run_pair() {
  local name="$1" port="$2" path="$3" round; shift 3
  rm -f "$OUT/$name".*.json "$OUT/$name".*.cpu
  for round in $(seq 1 "$ROUNDS"); do
    # The load test draws the same random URLs on every run: a path with
    # random parts gets a round number too, or a later round's "misses"
    # would find what the earlier ones stored.
    local p="$path"
    case "$p" in
      *'{'*'?'* | *'?'*'{'*) p="$p&round=$round" ;;
      *'{'*) p="$p?round=$round" ;;
    esac
    echo "==> $name ($round/$ROUNDS): bare"
    run_one "$name.bare.$round" 3301 "$p" "$@"
    echo "==> $name ($round/$ROUNDS): tower-perf"
    run_one "$name.full.$round" "$port" "$p" "$@"
  done
}

# Distinct query strings: every request is a cache miss (and is stored).
run_pair miss 3302 '/api/v1/items/{1..55}?r={1..1000000000}'
# One URL: every request after the first is a hit.
run_pair hit 3302 '/api/v1/items/3'
# 8 KiB of JSON, gzip negotiated, distinct URLs: compressed on every request.
run_pair compressed 3302 '/api/v1/items?r={1..1000000000}' --header 'accept-encoding: gzip'
# `no-cache`, 2 bytes: passed through (the example server's cache keeps
# nothing it must validate on every use).
run_pair health 3302 '/health'
# A client far over its quota: every request after the first is a 429.
run_pair limited 3303 '/api/v1/items/3'

echo "==> criterion: cache, compression, rate limiting"
for b in cache compression rate_limit; do
  cargo bench --bench "$b" 2>&1 | tee "$OUT/criterion-$b.txt" | grep -E '^[a-z].*/|time:' || true
done

fi

MACHINE="$(nproc) vCPUs, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr), $(rustc --version)"
DATE="$(date -u +%Y-%m-%d)"

python3 - "$OUT" "$MACHINE" "$DATE" "$DURATION" "$CONCURRENCY" "$(getconf CLK_TCK)" <<'PY'
import json, re, sys, pathlib
out, machine, date, duration, conc, tck = sys.argv[1:7]
out = pathlib.Path(out)

def load_one(stem):
    j = json.loads((out / f"{stem}.json").read_text())
    e = j["endpoints"][0]
    cpu = out / f"{stem}.cpu"
    # Server CPU µs per request answered.
    us = None
    if cpu.exists() and j["total_requests"]:
        us = int(cpu.read_text()) / int(tck) * 1e6 / j["total_requests"]
    # Every answer counts (the rate-limited path is timed by its 429s).
    return j["answered_per_second"], e["answers_latency"]["p99_ms"] or 0.0, e["status_codes"], us

def median(xs):
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2

def rounds_of(name):
    """The rounds with both sides measured, by number; the single pair of
    runs from before the script had rounds, as one."""
    found = []
    r = 1
    while (out / f"{name}.bare.{r}.json").exists() and (out / f"{name}.full.{r}.json").exists():
        found.append((load_one(f"{name}.bare.{r}"), load_one(f"{name}.full.{r}")))
        r += 1
    if not found and (out / f"{name}.bare.json").exists() and (out / f"{name}.full.json").exists():
        found.append((load_one(f"{name}.bare"), load_one(f"{name}.full")))
    return found

def fmt_us(v):
    return "–" if v is None else f"{v:.1f}"

rows = []
rounds = 0
for name, what in [
    ("miss", "cache miss (distinct URLs, stored)"),
    ("hit", "cache hit (one URL)"),
    ("compressed", "compressed (8 KiB JSON, gzip, distinct URLs)"),
    ("health", "`/health` (`no-cache`, 2 bytes, passed through)"),
    ("limited", "rate-limited (429 after the first)"),
]:
    pairs_run = rounds_of(name)
    if not pairs_run:
        continue
    bare = [b for b, _ in pairs_run]
    full = [f for _, f in pairs_run]
    rounds = max(rounds, len(full))
    # Each column is the median over the rounds; each ratio the median of
    # the rounds' own ratios (a bare run and the tower-perf run after it
    # share the machine's mood).
    col = lambda rs, i: median([r[i] for r in rs])
    ratio = lambda i: median([f[i] / max(b[i], 1e-9) for b, f in zip(bare, full)])
    codes = {}
    for _, _, c, _ in full:
        for k, v in c.items():
            codes[k] = codes.get(k, 0) + v
    have_cpu = all(r[3] is not None for r in bare + full)
    b_us = col(bare, 3) if have_cpu else None
    f_us = col(full, 3) if have_cpu else None
    cpu_ratio = f"{ratio(3):.2f}x" if have_cpu else "–"
    rows.append(f"| {what} | {col(bare, 0):,.0f} | {col(full, 0):,.0f} | {ratio(0):.2f}x | {fmt_us(b_us)} | {fmt_us(f_us)} | {cpu_ratio} | {col(bare, 1):.2f} | {col(full, 1):.2f} | {ratio(1):.2f}x | {', '.join(f'{k}: {v}' for k, v in codes.items())} |")

if not rows:
    sys.exit(f"no load-test results in {out}: nothing to report")

def medians(path):
    text = (out / path).read_text()
    found = {}
    name = None
    for line in text.splitlines():
        if not line.startswith(" ") and "time:" in line:
            name = line.split("time:")[0].strip()
        m = re.match(r"^(\S.*/\S.*?)\s*$", line)
        if m and "time:" not in line and not line.startswith(("Benchmarking", "Found", "Warning", "  ")):
            name = m.group(1).strip()
        t = re.search(r"time:\s+\[\S+ \S+ (\S+) (\S+) \S+ \S+\]", line)
        if t and name:
            found[name] = f"{t.group(1)} {t.group(2)}"
            name = None
    return found

crit = []
all_medians = {}
for f in ["criterion-cache.txt", "criterion-compression.txt", "criterion-rate_limit.txt"]:
    for k, v in medians(f).items():
        crit.append(f"| {k} | {v} |")
        all_medians[k] = v

UNITS = {"ps": 1e-3, "ns": 1.0, "µs": 1e3, "us": 1e3, "ms": 1e6, "s": 1e9}
def ns(name):
    v = all_medians.get(name)
    if not v:
        return None
    num, unit = v.split()
    return float(num) * UNITS[unit]

pairs = [("cache hit / bare inner service", "cache-hit-10KiB/tower-perf hit", "cache-hit-10KiB/bare inner service"),
         ("cache hit / bare inner service, 2 threads", "cache-hit-10KiB/tower-perf hit, 2 threads", "cache-hit-10KiB/bare inner service, 2 threads"),
         ("cache hit / store lookup alone (quick_cache)", "cache-hit-10KiB/tower-perf hit", "cache-hit-10KiB/quick_cache get alone")]
for case in ["2KiB-L2", "1MiB-L2", "2KiB-L6", "1MiB-L6"]:
    pairs.append((f"compression {case}: tower-perf / tower-http", f"compression/tower-perf/{case}", f"compression/tower-http/{case}"))
for case in ["1-key", "100k-keys"]:
    pairs.append((f"rate-limit store {case}: tower-perf / governor", f"rate-limit/tower-perf/{case}", f"rate-limit/governor/{case}"))
    pairs.append((f"rate-limit store {case}, 2 threads: tower-perf / governor", f"rate-limit/tower-perf-2-threads/{case}", f"rate-limit/governor-2-threads/{case}"))
pairs.append(("rate-limit layer, both sending their fields: tower-perf / tower_governor with use_headers", "rate-limit-layer/tower-perf", "rate-limit-layer/tower_governor-headers"))
pairs.append(("rate-limit layer: tower-perf with fields / tower_governor without", "rate-limit-layer/tower-perf", "rate-limit-layer/tower_governor"))
pairs.append(("rate-limit layer without fields: tower-perf / tower_governor", "rate-limit-layer/tower-perf-no-fields", "rate-limit-layer/tower_governor"))
ratios = []
for label, a, b in pairs:
    x, y = ns(a), ns(b)
    if x is not None and y:
        ratios.append(f"| {label} | {x / y:.2f}x |")

section = f"""<!-- run.sh begin: generated by `bash benches/run.sh`; edit the script, not this part -->
## Generated by benches/run.sh

Run on {date}: {machine}. Absolute figures vary between machines and
between runs on a shared machine; compare the ratios.

### Bare axum vs the full stack (load-test runner)

The example server's handlers alone (`--bare`) and under the whole stack
(timing, rate limiting, cache, compression, cache-control), each driven for
{duration} by `examples/loadtest/` with {conc} connections from the same
machine (the load generator shares the 2 cores with the server), {rounds}
rounds with bare and tower-perf alternating: each figure is the median
over the rounds, each ratio the median of the rounds' ratios (statuses are
summed). Server
CPU per request is the server process's user and system time during the
run (from `/proc`) over the requests answered: steadier than req/s on a
shared machine.

| path | bare req/s | tower-perf req/s | ratio | bare CPU µs/req | tower-perf CPU µs/req | ratio | bare p99 ms | tower-perf p99 ms | ratio | tower-perf statuses |
|---|---|---|---|---|---|---|---|---|---|---|
""" + "\n".join(rows) + """

### Criterion: each layer beside its peer (ratios of medians; below 1 is faster)

| comparison | ratio |
|---|---|
""" + "\n".join(ratios) + """

Every median of the run:

| bench | median |
|---|---|
""" + "\n".join(crit) + """
<!-- run.sh end -->"""

bm = pathlib.Path("BENCHMARKS.md")
text = bm.read_text()
begin, end = "<!-- run.sh begin", "<!-- run.sh end -->"
if begin in text and end in text:
    a = text.index(begin)
    b = text.index(end) + len(end)
    text = text[:a] + section + text[b:]
else:
    text = text.rstrip("\n") + "\n\n" + section + "\n"
bm.write_text(text)
print(section)
PY
