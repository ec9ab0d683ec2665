//! A load-test runner for HTTP services (the example server, or anything
//! else).
//!
//! ```text
//! cargo run --release --example loadtest -- [options] [WEIGHT*]URL...
//!
//!   --scenario baseline|sustained|spike   (default sustained)
//!   --duration 30s        sustained and spike: how long (s, ms, m)
//!   --concurrency N       workers (requests in flight), default 16
//!   --rate R              sustained: R requests/s in total (open loop,
//!                         latencies corrected for coordinated omission)
//!   --requests N          baseline: requests per endpoint per worker (100)
//!   --spike-factor K      spike: K times the workers in the middle third (5)
//!   --header "name: v"    sent with every request (repeatable)
//!   --timeout 10s         per request
//!   --http2               HTTP/2 with prior knowledge (h2c), one connection per user
//!   --stages 30s:10,5m:100,30s:0   sustained: users over time, ramped
//!   --think 100ms         sustained, closed loop: a pause per user after each answer
//!   --threshold 'p95<50ms'  pass/fail criterion (repeatable; see below)
//!   --json FILE           results for machines
//!   --quiet               no progress bar
//! ```
//!
//! Endpoints are weighted (`50*http://…/api/v1/items`), may hold random
//! path parameters drawn from a range (`http://…/api/v1/items/{1..55}`), and
//! may name a method and a body, inline or from a file, with `{n}` (the
//! request's number in the run) and `{a..b}` in it:
//! `'20*POST http://…/api/v1/items {"name":"item {n}","price_cents":{100..999}}'`,
//! `'POST http://…/api/v1/items @item.json'`. `--header` goes with every
//! request (a bearer token, say):
//!
//! ```text
//! cargo run --release --example loadtest -- --duration 20s --concurrency 32 \
//!   '50*http://127.0.0.1:3000/api/v1/items' \
//!   '30*http://127.0.0.1:3000/api/v1/items/{1..55}' \
//!   '20*http://127.0.0.1:3000/health'
//! ```
//!
//! Requests end as a success (2xx, 3xx), a 4xx, a 429, a 5xx, or without
//! an answer (refused, reset, timeout, other); the summary counts each
//! class, overall and per endpoint, and computes throughput and latency
//! (min, p50, p90, p95, p99, p99.9, max from an HDR histogram, bucketed in
//! `--json`) over the successful answers only, so a server answering 429
//! or a closed port never reads as fast. When most requests failed or
//! were rate limited, or some got no answer, it says so in a WARNING line.
//! The closed loop's latencies count from each send (not corrected for
//! coordinated omission); `--rate`'s from each request's intended start.
//! The spike scenario also reports how much p99 and throughput degraded
//! during the spike, the share of failures in each phase, and how long p99
//! took to recover.
//!
//! Scenario files: `--scenario-file F` runs the TOML file's scenarios in
//! order, each with its own mix, load and thresholds, and prints a table
//! per scenario and a line each (`examples/loadtest/scenarios.toml` holds
//! the source documents' five against the example server; the format is in
//! `scenario_file.rs`).
//!
//! Thresholds (k6's idea): `--threshold 'p95<50ms'`, `'p99<100ms'`,
//! `'errors<1%'`, `'rps>500'`, and per endpoint with `on` and a text its
//! URL contains: `'p95<20ms on /api/v1/items/'`. A failed threshold is
//! printed as FAIL and the run exits with status 3, so CI can gate on it;
//! the source documents' targets as one command:
//!
//! ```text
//! cargo run --release --example loadtest -- --duration 30s \
//!   --threshold 'p50<25ms' --threshold 'p95<50ms' --threshold 'p99<100ms' \
//!   --threshold 'rps>500' --threshold 'errors<1%' http://127.0.0.1:3000/api/v1/items
//! ```

#[path = "../common/args.rs"]
mod args;
#[path = "conn.rs"]
mod conn;
#[path = "endpoint.rs"]
mod endpoint;
#[path = "record.rs"]
mod record;
#[path = "scenario_file.rs"]
mod scenario_file;
#[path = "stages.rs"]
mod stages;
#[path = "summary.rs"]
mod summary;
#[path = "threshold.rs"]
mod threshold;

pub(crate) use self::endpoint::{Endpoint, Rng};
pub(crate) use self::record::{Outcome, Recorder, TransportError};
// The tests read the spike's figures from known phases.
#[allow(unused_imports)]
pub(crate) use self::record::{Bucket, hist};
#[allow(unused_imports)]
pub(crate) use self::scenario_file::{
    parse as parse_scenario_file, report as scenario_report, run_all as run_scenarios,
};
pub(crate) use self::stages::Stage;
#[allow(unused_imports)]
pub(crate) use self::stages::users_at;
pub(crate) use self::summary::{Results, table};
#[allow(unused_imports)]
pub(crate) use self::summary::{SpikeResult, spike_result};
pub(crate) use self::threshold::Threshold;

use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http::{HeaderName, HeaderValue};
use http_body_util::BodyExt;
use serde::Serialize;

/// Which load to apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Scenario {
    Baseline,
    Sustained,
    Spike,
}

/// The command line.
#[derive(Debug, Clone)]
pub(crate) struct Args {
    pub(crate) scenario: Scenario,
    pub(crate) duration: Duration,
    pub(crate) concurrency: usize,
    pub(crate) rate: Option<f64>,
    pub(crate) requests: u64,
    pub(crate) spike_factor: usize,
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
    pub(crate) timeout: Duration,
    pub(crate) json: Option<String>,
    pub(crate) quiet: bool,
    pub(crate) endpoints: Vec<Endpoint>,
    pub(crate) thresholds: Vec<Threshold>,
    /// Closed-loop users over time (`--stages`; the spike scenario's are
    /// made from its duration, concurrency and factor).
    pub(crate) stages: Vec<Stage>,
    /// A pause after each answer, per user (`--think`).
    pub(crate) think: Duration,
    /// HTTP/2 with prior knowledge instead of HTTP/1.1 (`--http2`).
    pub(crate) http2: bool,
}

pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map_or((s, "s"), |i| (&s[..i], &s[i..]));
    let n: f64 = num.parse().map_err(|_| format!("not a duration: {s}"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        _ => return Err(format!("not a duration: {s} (use ms, s or m)")),
    };
    if !(secs > 0.0 && secs < 86_400.0) {
        return Err(format!("duration out of range: {s}"));
    }
    Ok(Duration::from_secs_f64(secs))
}

pub(crate) fn parse_args(args: impl Iterator<Item = String>) -> Result<Args, String> {
    // Whether --duration was given (--stages then decides it: both is a
    // contradiction, refused).
    let mut duration_given = false;
    let mut a = Args {
        scenario: Scenario::Sustained,
        duration: Duration::from_secs(30),
        concurrency: 16,
        rate: None,
        requests: 100,
        spike_factor: 5,
        headers: Vec::new(),
        timeout: Duration::from_secs(10),
        json: None,
        quiet: false,
        endpoints: Vec::new(),
        thresholds: Vec::new(),
        stages: Vec::new(),
        think: Duration::ZERO,
        http2: false,
    };
    let mut args = args.peekable();
    while let Some(arg) = args.next() {
        if !arg.starts_with("--") {
            a.endpoints.push(Endpoint::parse(&arg)?);
            continue;
        }
        let (flag, inline) = args::split(&arg);
        let mut value = |name: &str| args::value(&inline, &mut args, name);
        let number =
            |name: &str, v: String| v.parse::<u64>().map_err(|e| format!("{name} {v}: {e}"));
        match flag.as_str() {
            "--scenario" => {
                a.scenario = match value("--scenario")?.as_str() {
                    "baseline" => Scenario::Baseline,
                    "sustained" => Scenario::Sustained,
                    "spike" => Scenario::Spike,
                    other => {
                        return Err(format!("--scenario {other}: baseline, sustained or spike"));
                    }
                }
            }
            "--duration" => {
                a.duration = parse_duration(&value("--duration")?)?;
                duration_given = true;
            }
            "--concurrency" => {
                a.concurrency = usize::try_from(number("--concurrency", value("--concurrency")?)?)
                    .map_err(|e| e.to_string())?;
            }
            "--rate" => {
                let v = value("--rate")?;
                let r: f64 = v.parse().map_err(|e| format!("--rate {v}: {e}"))?;
                if !(r > 0.0 && r.is_finite()) {
                    return Err(format!("--rate {v}: requests per second, above 0"));
                }
                a.rate = Some(r);
            }
            "--requests" => a.requests = number("--requests", value("--requests")?)?,
            "--spike-factor" => {
                a.spike_factor =
                    usize::try_from(number("--spike-factor", value("--spike-factor")?)?)
                        .map_err(|e| e.to_string())?;
            }
            "--header" => {
                let v = value("--header")?;
                a.headers
                    .push(parse_header(&v).map_err(|e| format!("--header {e}"))?);
            }
            "--timeout" => a.timeout = parse_duration(&value("--timeout")?)?,
            "--json" => a.json = Some(value("--json")?),
            "--threshold" => a.thresholds.push(Threshold::parse(&value("--threshold")?)?),
            "--stages" => a.stages = stages::parse(&value("--stages")?)?,
            "--think" => a.think = parse_duration(&value("--think")?)?,
            "--quiet" => a.quiet = true,
            "--http2" => a.http2 = true,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown option {other}")),
        }
    }
    if a.endpoints.is_empty() {
        return Err("give at least one URL".to_owned());
    }
    if a.concurrency == 0 || a.concurrency > 10_000 {
        return Err("--concurrency: 1 to 10000".to_owned());
    }
    if a.scenario == Scenario::Spike
        && (a.spike_factor < 2
            || a.concurrency
                .checked_mul(a.spike_factor)
                .is_none_or(|n| n > stages::MAX_USERS))
    {
        return Err("--spike-factor: at least 2, and at most 20000 workers in all".to_owned());
    }
    if !a.think.is_zero() && (a.scenario == Scenario::Baseline || a.rate.is_some()) {
        return Err(
            "--think applies to the closed loop (sustained without --rate, spike)".to_owned(),
        );
    }
    if a.rate.is_some() && a.scenario != Scenario::Sustained {
        return Err("--rate applies to the sustained scenario".to_owned());
    }
    if !a.stages.is_empty() {
        if a.scenario != Scenario::Sustained || a.rate.is_some() {
            return Err(
                "--stages applies to the sustained scenario's closed loop (not with --rate)"
                    .to_owned(),
            );
        }
        if duration_given {
            return Err(
                "--duration and --stages: the stages say how long the run lasts".to_owned(),
            );
        }
        // The run lasts as long as its stages.
        a.duration = stages::total(&a.stages);
    }
    if a.scenario == Scenario::Spike {
        a.stages = stages::spike(a.duration, a.concurrency, a.spike_factor);
    }
    check_thresholds(&a)?;
    Ok(a)
}

/// `name: value`.
pub(crate) fn parse_header(h: &str) -> Result<(HeaderName, HeaderValue), String> {
    let (n, v) = h.split_once(':').ok_or(format!("{h}: name: value"))?;
    Ok((
        HeaderName::from_bytes(n.trim().as_bytes()).map_err(|e| format!("{h}: {e}"))?,
        HeaderValue::from_str(v.trim()).map_err(|e| format!("{h}: {e}"))?,
    ))
}

/// Every threshold that names endpoints names at least one.
pub(crate) fn check_thresholds(a: &Args) -> Result<(), String> {
    for t in &a.thresholds {
        if let Some(e) = t.endpoint() {
            if threshold::matching(&a.endpoints, e).is_empty() {
                return Err(format!(
                    "threshold … on {e}: no endpoint's URL contains {e:?}"
                ));
            }
        }
    }
    Ok(())
}

/// Sends one request to `ep` on this user's connection and reads the
/// whole answer.
async fn send(conns: &mut conn::Conns, ep: &Endpoint, rng: &mut Rng, args: &Args) -> Outcome {
    let Ok(req) = ep.request(rng, &args.headers) else {
        return Outcome::Transport(TransportError::Other);
    };
    let fut = async {
        let resp = conns.send(req).await?;
        let status = resp.status().as_u16();
        resp.into_body()
            .collect()
            .await
            .map_err(|e| TransportError::of(&e))?;
        Ok(status)
    };
    match tokio::time::timeout(args.timeout, fut).await {
        Ok(Ok(status)) => Outcome::Status(status),
        Ok(Err(kind)) => Outcome::Transport(kind),
        Err(_) => Outcome::Transport(TransportError::Timeout),
    }
}

/// The weighted endpoint picker.
struct Picker {
    cumulative: Vec<u64>,
}

impl Picker {
    fn new(eps: &[Endpoint]) -> Self {
        let mut total = 0;
        Self {
            cumulative: eps
                .iter()
                .map(|e| {
                    total += u64::from(e.weight);
                    total
                })
                .collect(),
        }
    }
    fn pick(&self, rng: &mut Rng) -> usize {
        let total = self.cumulative.last().copied().unwrap_or(1);
        let x = rng.below(total);
        self.cumulative.partition_point(|c| *c <= x)
    }
}

/// Closed loop: each user sends, waits for the answer (and `--think`),
/// sends again; user `id` runs while the stages ask for more than `id`
/// users, and all stop when the stages end.
fn closed_users(args: &Arc<Args>, rec: &Arc<Recorder>) -> Vec<tokio::task::JoinHandle<()>> {
    (0..stages::peak(&args.stages) as u64)
        .map(|id| tokio::spawn(closed_user(id, args.clone(), rec.clone())))
        .collect()
}

async fn closed_user(id: u64, args: Arc<Args>, rec: Arc<Recorder>) {
    let mut conns = conn::Conns::new(args.http2);
    let picker = Picker::new(&args.endpoints);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (id + 1).wrapping_mul(0xBF58_476D_1CE4_E5B9));
    let me = usize::try_from(id).unwrap_or(usize::MAX);
    let end = rec.start + stages::total(&args.stages);
    while let Some(users) = stages::users_at(&args.stages, rec.start.elapsed()) {
        if me >= users {
            // Not this user's turn yet (or any more): look again when the
            // count can change (at once within a ramp, at the end of a
            // hold).
            let wait = stages::steady_for(&args.stages, rec.start.elapsed());
            tokio::time::sleep(wait.max(Duration::from_millis(5))).await;
            continue;
        }
        let ep = picker.pick(&mut rng);
        let started = Instant::now();
        let outcome = send(&mut conns, &args.endpoints[ep], &mut rng, &args).await;
        rec.record(id, ep, started.elapsed(), outcome);
        let pause = match outcome {
            // Nothing listens: don't spin on instant refusals.
            Outcome::Transport(TransportError::Refused) => args.think.max(Duration::from_millis(2)),
            _ => args.think,
        };
        if !pause.is_zero() {
            // Never past the last stage: the run's length is its stages'.
            tokio::time::sleep_until(end.min(Instant::now() + pause).into()).await;
        }
    }
}

async fn progress(
    rec: Arc<Recorder>,
    total: Option<u64>,
    deadline: Option<Duration>,
    stop: Arc<AtomicBool>,
) {
    let mut last = 0;
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let done = rec.done.load(Ordering::Relaxed);
        let el = rec.start.elapsed();
        let frac = match (total, deadline) {
            (Some(t), _) if t > 0 => done as f64 / t as f64,
            (_, Some(d)) => el.as_secs_f64() / d.as_secs_f64(),
            _ => 0.0,
        }
        .clamp(0.0, 1.0);
        let width = 30;
        let filled = (frac * width as f64) as usize;
        let rate = (done - last) as f64 * 4.0;
        last = done;
        eprint!(
            "\r[{}{}] {:>3.0}%  {done} requests  {:.0} req/s  {} failed   ",
            "#".repeat(filled),
            ".".repeat(width - filled),
            frac * 100.0,
            rate,
            rec.failed.load(Ordering::Relaxed)
        );
        let _ = std::io::stderr().flush();
    }
    eprintln!();
}

/// Runs the scenario and gathers the results.
pub(crate) async fn run(args: Args) -> Results {
    let args = Arc::new(args);
    endpoint::restart_numbering();
    let users = args.concurrency.max(stages::peak(&args.stages));
    let rec = Arc::new(Recorder::new(
        args.endpoints.len(),
        users,
        args.duration,
        args.scenario == Scenario::Spike,
    ));
    let stop_bar = Arc::new(AtomicBool::new(false));
    let (total, deadline) = match args.scenario {
        Scenario::Baseline => (
            Some(args.requests * args.endpoints.len() as u64 * args.concurrency as u64),
            None,
        ),
        _ => (None, Some(args.duration)),
    };
    let bar = (!args.quiet)
        .then(|| tokio::spawn(progress(rec.clone(), total, deadline, stop_bar.clone())));
    let c = args.concurrency;
    let mut tasks = Vec::new();
    match (args.scenario, args.rate) {
        (Scenario::Baseline, _) => {
            // Each worker: every endpoint, N times, in turn.
            for id in 0..c as u64 {
                let (args, rec) = (args.clone(), rec.clone());
                tasks.push(tokio::spawn(async move {
                    let mut conns = conn::Conns::new(args.http2);
                    let mut rng = Rng(0x1234_5678 ^ (id + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
                    for _ in 0..args.requests {
                        for (ep, e) in args.endpoints.iter().enumerate() {
                            let started = Instant::now();
                            let outcome = send(&mut conns, e, &mut rng, &args).await;
                            rec.record(id, ep, started.elapsed(), outcome);
                        }
                    }
                }));
            }
        }
        (Scenario::Sustained, None) if !args.stages.is_empty() => {
            tasks.extend(closed_users(&args, &rec));
        }
        (Scenario::Sustained, None) => {
            // A constant `--concurrency` for `--duration`: one stage.
            let mut constant = (*args).clone();
            constant.stages = vec![
                Stage {
                    duration: Duration::ZERO,
                    target: c,
                },
                Stage {
                    duration: args.duration,
                    target: c,
                },
            ];
            tasks.extend(closed_users(&Arc::new(constant), &rec));
        }
        (Scenario::Sustained, Some(rate)) => {
            // Open loop: request i is due at start + i / rate; its latency
            // counts from then, so a stalled server can't hide its queue
            // (coordinated omission).
            let next = Arc::new(AtomicU64::new(0));
            let slots = (rate * args.duration.as_secs_f64()) as u64;
            for id in 0..c as u64 {
                let (args, rec, next) = (args.clone(), rec.clone(), next.clone());
                tasks.push(tokio::spawn(async move {
                    let mut conns = conn::Conns::new(args.http2);
                    let picker = Picker::new(&args.endpoints);
                    let mut rng = Rng(0xDEAD_BEEF ^ (id + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= slots {
                            break;
                        }
                        let due = rec.start + Duration::from_secs_f64(i as f64 / rate);
                        // A worker that is idle waits for the slot; its
                        // timer's lateness (up to a millisecond) is the
                        // generator's, not the server's, so it counts from
                        // when it woke. A worker that is late because all
                        // were busy counts from the due time.
                        let from = if due > Instant::now() {
                            tokio::time::sleep_until(due.into()).await;
                            Instant::now()
                        } else {
                            due
                        };
                        let ep = picker.pick(&mut rng);
                        let outcome = send(&mut conns, &args.endpoints[ep], &mut rng, &args).await;
                        rec.record(id, ep, from.elapsed(), outcome);
                    }
                }));
            }
        }
        // Its stages were made from its duration, concurrency and factor.
        (Scenario::Spike, _) => tasks.extend(closed_users(&args, &rec)),
    }
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = rec.start.elapsed();
    stop_bar.store(true, Ordering::Relaxed);
    if let Some(b) = bar {
        let _ = b.await;
    }
    summary::summarize(&args, &rec, elapsed)
}

const USAGE: &str = "usage: loadtest [--scenario baseline|sustained|spike] [--duration 30s] [--concurrency N]\n                [--rate R] [--requests N] [--spike-factor K] [--header 'name: value']\n                [--stages 30s:10,1m:50,30s:0] [--think 100ms] [--http2]\n                [--timeout 10s] [--threshold 'p95<50ms' …] [--json FILE] [--quiet]\n                '[WEIGHT*][METHOD ]URL[ BODY|@FILE]'...\n       loadtest --scenario-file FILE.toml [--json FILE] [--quiet]\n\nURLs may hold random parameters: http://127.0.0.1:3000/api/v1/items/{1..55}\nBodies also {n}, the request's number: 'POST http://…/items {\"name\":\"i{n}\"}'\n";

/// `--scenario-file F [--quiet] [--json FILE]`: the file's path and the
/// flags that go with it, when the command line names one.
fn scenario_file_args(argv: &[String]) -> Option<Result<(String, bool, Option<String>), String>> {
    if !argv.iter().any(|a| a.starts_with("--scenario-file")) {
        return None;
    }
    let mut path = None;
    let (mut quiet, mut json) = (false, None);
    let mut it = argv.iter().cloned();
    while let Some(a) = it.next() {
        let (flag, inline) = args::split(&a);
        let r = match flag.as_str() {
            "--scenario-file" => {
                args::value(&inline, &mut it, "--scenario-file").map(|v| path = Some(v))
            }
            "--json" => args::value(&inline, &mut it, "--json").map(|v| json = Some(v)),
            "--quiet" => {
                quiet = true;
                Ok(())
            }
            other => Err(format!(
                "{other}: with --scenario-file, only --quiet and --json (the file holds the rest)"
            )),
        };
        if let Err(e) = r {
            return Some(Err(e));
        }
    }
    Some(
        path.map(|p| (p, quiet, json))
            .ok_or_else(|| "--scenario-file needs a path".to_owned()),
    )
}

/// Writes `value` as JSON to `path`, or ends the process saying why not.
fn write_json<T: Serialize>(path: &str, value: &T) {
    let written = serde_json::to_vec_pretty(value)
        .map_err(|e| e.to_string())
        .and_then(|b| std::fs::write(path, b).map_err(|e| format!("writing {path}: {e}")));
    if let Err(e) = written {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

#[allow(dead_code)]
#[tokio::main]
async fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if let Some(parsed) = scenario_file_args(&argv) {
        let (path, quiet, json) = args::or_exit(parsed, USAGE);
        let text = args::or_exit(
            std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}")),
            USAGE,
        );
        let scenarios = args::or_exit(scenario_file::parse(&text, quiet), USAGE);
        let ran = scenario_file::run_all(scenarios).await;
        print!("{}", scenario_file::report(&ran));
        if let Some(path) = json {
            write_json(&path, &ran);
        }
        if ran.iter().any(|r| exit_code(&r.results) != 0) {
            eprintln!("thresholds failed");
            std::process::exit(3);
        }
        return;
    }
    let args = args::or_exit(parse_args(argv.into_iter()), USAGE);
    let json = args.json.clone();
    let results = run(args).await;
    print!("{}", table(&results));
    let code = exit_code(&results);
    if let Some(path) = json {
        write_json(&path, &results);
    }
    if code != 0 {
        let failed = results.thresholds.iter().filter(|v| !v.passed).count();
        eprintln!("{failed} threshold(s) failed");
        std::process::exit(code);
    }
}

/// The process's exit status: 3 when a threshold failed, else 0.
pub(crate) fn exit_code(r: &Results) -> i32 {
    if r.thresholds.iter().any(|v| !v.passed) {
        3
    } else {
        0
    }
}
