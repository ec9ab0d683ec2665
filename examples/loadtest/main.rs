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
//!   --threshold 'p95<50ms'  pass/fail criterion (repeatable; see below)
//!   --json FILE           results for machines
//!   --quiet               no progress bar
//! ```
//!
//! Endpoints are weighted (`50*http://…/api/v1/items`) and may hold random
//! path parameters drawn from a range (`http://…/api/v1/items/{1..55}`):
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
#[path = "record.rs"]
mod record;
#[path = "summary.rs"]
mod summary;
#[path = "threshold.rs"]
mod threshold;

pub(crate) use self::record::{Outcome, Recorder, TransportError};
// The tests read the spike's figures from known phases.
#[allow(unused_imports)]
pub(crate) use self::record::{Bucket, hist};
pub(crate) use self::summary::{Results, table};
#[allow(unused_imports)]
pub(crate) use self::summary::{SpikeResult, spike_result};
pub(crate) use self::threshold::Threshold;

use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Uri};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::TokioExecutor;
use serde::Serialize;

/// Which load to apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Scenario {
    Baseline,
    Sustained,
    Spike,
}

/// One piece of a URL template.
#[derive(Debug, Clone, PartialEq)]
enum Part {
    Lit(String),
    Range(u64, u64),
}

/// A weighted endpoint.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Endpoint {
    pub(crate) label: String,
    parts: Vec<Part>,
    pub(crate) weight: u32,
}

impl Endpoint {
    /// `[WEIGHT*]URL` with `{a..b}` ranges.
    pub(crate) fn parse(spec: &str) -> Result<Self, String> {
        let (weight, url) = match spec.split_once('*') {
            Some((w, rest)) if w.chars().all(|c| c.is_ascii_digit()) && !w.is_empty() => (
                w.parse::<u32>()
                    .map_err(|e| format!("{spec}: weight: {e}"))?,
                rest,
            ),
            _ => (1, spec),
        };
        if weight == 0 {
            return Err(format!("{spec}: a weight of 0 never runs"));
        }
        let mut parts = Vec::new();
        let mut rest = url;
        while let Some(open) = rest.find('{') {
            let close = rest[open..]
                .find('}')
                .map(|c| c + open)
                .ok_or_else(|| format!("{spec}: unclosed {{"))?;
            parts.push(Part::Lit(rest[..open].to_owned()));
            let inner = &rest[open + 1..close];
            let (a, b) = inner
                .split_once("..")
                .ok_or_else(|| format!("{spec}: expected {{a..b}}, got {{{inner}}}"))?;
            let a: u64 = a.trim().parse().map_err(|e| format!("{spec}: {e}"))?;
            let b: u64 = b.trim().parse().map_err(|e| format!("{spec}: {e}"))?;
            if a > b {
                return Err(format!("{spec}: empty range {a}..{b}"));
            }
            parts.push(Part::Range(a, b));
            rest = &rest[close + 1..];
        }
        parts.push(Part::Lit(rest.to_owned()));
        let e = Self {
            label: url.to_owned(),
            parts,
            weight,
        };
        // Check the template makes a valid absolute http URL.
        let sample: Uri = e
            .url(&mut Rng(1))
            .parse()
            .map_err(|err| format!("{spec}: {err}"))?;
        if sample.scheme_str() != Some("http") || sample.authority().is_none() {
            return Err(format!("{spec}: an http://host:port/... URL"));
        }
        Ok(e)
    }

    fn url(&self, rng: &mut Rng) -> String {
        let mut s = String::new();
        for p in &self.parts {
            match p {
                Part::Lit(l) => s.push_str(l),
                Part::Range(a, b) => {
                    let _ = write!(s, "{}", a + rng.below(b - a + 1));
                }
            }
        }
        s
    }
}

/// xorshift64*: fast and good enough to spread requests.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }
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
            "--duration" => a.duration = parse_duration(&value("--duration")?)?,
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
                let (n, val) = v
                    .split_once(':')
                    .ok_or(format!("--header {v}: name: value"))?;
                let n = HeaderName::from_bytes(n.trim().as_bytes())
                    .map_err(|e| format!("--header {v}: {e}"))?;
                let val =
                    HeaderValue::from_str(val.trim()).map_err(|e| format!("--header {v}: {e}"))?;
                a.headers.push((n, val));
            }
            "--timeout" => a.timeout = parse_duration(&value("--timeout")?)?,
            "--json" => a.json = Some(value("--json")?),
            "--threshold" => a.thresholds.push(Threshold::parse(&value("--threshold")?)?),
            "--quiet" => a.quiet = true,
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
    if a.spike_factor < 2 || a.concurrency * a.spike_factor > 20_000 {
        return Err("--spike-factor: at least 2, and at most 20000 workers in all".to_owned());
    }
    if a.rate.is_some() && a.scenario != Scenario::Sustained {
        return Err("--rate applies to the sustained scenario".to_owned());
    }
    for t in &a.thresholds {
        if let Some(e) = t.endpoint() {
            if !a.endpoints.iter().any(|x| x.label.contains(e)) {
                return Err(format!(
                    "--threshold … on {e}: no endpoint's URL contains {e:?}"
                ));
            }
        }
    }
    Ok(a)
}

type HttpClient = Client<HttpConnector, Empty<Bytes>>;

/// Sends one request and reads the whole answer.
async fn send(client: &HttpClient, url: &str, args: &Args) -> Outcome {
    let mut req = Request::get(url);
    for (n, v) in &args.headers {
        req = req.header(n, v);
    }
    let Ok(req) = req.body(Empty::<Bytes>::new()) else {
        return Outcome::Transport(TransportError::Other);
    };
    let fut = async {
        let resp = client
            .request(req)
            .await
            .map_err(|e| TransportError::of(&e))?;
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

/// Closed loop: a worker sends, waits for the answer, sends again, until
/// `stop` says so.
/// Closed-loop workers `ids` that send until `until` after the start.
fn closed_workers(
    ids: std::ops::Range<u64>,
    until: Duration,
    client: &HttpClient,
    args: &Arc<Args>,
    rec: &Arc<Recorder>,
) -> Vec<tokio::task::JoinHandle<()>> {
    ids.map(|id| {
        let stop = move |r: &Recorder| r.start.elapsed() >= until;
        tokio::spawn(closed_worker(
            id,
            client.clone(),
            args.clone(),
            rec.clone(),
            stop,
        ))
    })
    .collect()
}

async fn closed_worker(
    id: u64,
    client: HttpClient,
    args: Arc<Args>,
    rec: Arc<Recorder>,
    stop: impl Fn(&Recorder) -> bool,
) {
    let picker = Picker::new(&args.endpoints);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (id + 1).wrapping_mul(0xBF58_476D_1CE4_E5B9));
    while !stop(&rec) {
        let ep = picker.pick(&mut rng);
        let url = args.endpoints[ep].url(&mut rng);
        let started = Instant::now();
        let outcome = send(&client, &url, &args).await;
        rec.record(ep, started.elapsed(), outcome);
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
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: HttpClient = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(args.concurrency * args.spike_factor.max(1))
        .build(connector);
    let rec = Arc::new(Recorder::new(args.endpoints.len(), args.duration));
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
                let (client, args, rec) = (client.clone(), args.clone(), rec.clone());
                tasks.push(tokio::spawn(async move {
                    let mut rng = Rng(0x1234_5678 ^ (id + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
                    for _ in 0..args.requests {
                        for (ep, e) in args.endpoints.iter().enumerate() {
                            let url = e.url(&mut rng);
                            let started = Instant::now();
                            let outcome = send(&client, &url, &args).await;
                            rec.record(ep, started.elapsed(), outcome);
                        }
                    }
                }));
            }
        }
        (Scenario::Sustained, None) => {
            tasks.extend(closed_workers(
                0..c as u64,
                args.duration,
                &client,
                &args,
                &rec,
            ));
        }
        (Scenario::Sustained, Some(rate)) => {
            // Open loop: request i is due at start + i / rate; its latency
            // counts from then, so a stalled server can't hide its queue
            // (coordinated omission).
            let next = Arc::new(AtomicU64::new(0));
            let slots = (rate * args.duration.as_secs_f64()) as u64;
            for id in 0..c as u64 {
                let (client, args, rec, next) =
                    (client.clone(), args.clone(), rec.clone(), next.clone());
                tasks.push(tokio::spawn(async move {
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
                        let url = args.endpoints[ep].url(&mut rng);
                        let outcome = send(&client, &url, &args).await;
                        rec.record(ep, from.elapsed(), outcome);
                    }
                }));
            }
        }
        (Scenario::Spike, _) => {
            let d = args.duration;
            let (third, two_thirds) = (d / 3, d * 2 / 3);
            tasks.extend(closed_workers(0..c as u64, d, &client, &args, &rec));
            // The extra workers join all at once for the middle third.
            let extra = c * (args.spike_factor - 1);
            let (client2, args2, rec2) = (client.clone(), args.clone(), rec.clone());
            tasks.push(tokio::spawn(async move {
                tokio::time::sleep_until((rec2.start + third).into()).await;
                let ids = 1_000_000..1_000_000 + extra as u64;
                for t in closed_workers(ids, two_thirds, &client2, &args2, &rec2) {
                    let _ = t.await;
                }
            }));
        }
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

const USAGE: &str = "usage: loadtest [--scenario baseline|sustained|spike] [--duration 30s] [--concurrency N]\n                [--rate R] [--requests N] [--spike-factor K] [--header 'name: value']\n                [--timeout 10s] [--threshold 'p95<50ms' …] [--json FILE] [--quiet] [WEIGHT*]URL...\n\nURLs may hold random parameters: http://127.0.0.1:3000/api/v1/items/{1..55}\n";

#[allow(dead_code)]
#[tokio::main]
async fn main() {
    let args = args::or_exit(parse_args(std::env::args().skip(1)), USAGE);
    let json = args.json.clone();
    let results = run(args).await;
    print!("{}", table(&results));
    let code = exit_code(&results);
    if let Some(path) = json {
        match serde_json::to_vec_pretty(&results) {
            Ok(bytes) => {
                if let Err(e) = std::fs::write(&path, bytes) {
                    eprintln!("error: writing {path}: {e}");
                    std::process::exit(1);
                }
            }
            Err(e) => {
                eprintln!("error: {e}");
                std::process::exit(1);
            }
        }
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
