//! Scenario files (`--scenario-file F`): several runs in one TOML file,
//! each with its own mix, load and thresholds, run in order.
//!
//! ```toml
//! base = "http://127.0.0.1:3000"        # prefixed to URLs that start with /
//! headers = ["authorization: Bearer t"] # sent by every scenario
//!
//! [[scenario]]
//! name = "baseline"
//! kind = "baseline"       # baseline | sustained (default) | spike
//! concurrency = 5
//! requests = 10           # baseline: per endpoint per worker
//! duration = "30s"        # sustained and spike
//! rate = 100              # sustained: open loop
//! stages = "10s:10,1m:50" # sustained: users over time
//! think = "100ms"
//! spike_factor = 5
//! timeout = "10s"
//! http2 = true            # HTTP/2 with prior knowledge
//! thresholds = ["p95<50ms", "errors<1%"]
//! endpoints = [
//!   { url = "/api/v1/items/{1..55}", weight = 3 },
//!   { method = "POST", url = "/api/v1/items", body = '{"name":"item {n}"}',
//!     headers = ["content-type: application/json"] },
//! ]
//! ```
//!
//! Every scenario is checked as its command line would be, before any runs.

use serde::Deserialize;

use super::{Args, Endpoint, Threshold, check_thresholds, parse_args, parse_header};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    base: Option<String>,
    #[serde(default)]
    headers: Vec<String>,
    #[serde(rename = "scenario")]
    scenarios: Vec<ScenarioSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScenarioSpec {
    name: String,
    kind: Option<String>,
    concurrency: Option<u64>,
    requests: Option<u64>,
    duration: Option<String>,
    rate: Option<f64>,
    stages: Option<String>,
    think: Option<String>,
    spike_factor: Option<u64>,
    timeout: Option<String>,
    #[serde(default)]
    http2: bool,
    #[serde(default)]
    thresholds: Vec<String>,
    endpoints: Vec<EndpointSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EndpointSpec {
    url: String,
    #[serde(default = "one")]
    weight: u32,
    method: Option<String>,
    body: Option<String>,
    body_file: Option<String>,
    #[serde(default)]
    headers: Vec<String>,
}

fn one() -> u32 {
    1
}

/// A scenario of the file: its name and its arguments.
#[derive(Debug)]
pub(crate) struct Named {
    pub(crate) name: String,
    pub(crate) args: Args,
}

/// The scenarios of `text` (a file's contents), each checked; `quiet`
/// and `json` come from the command line.
pub(crate) fn parse(text: &str, quiet: bool) -> Result<Vec<Named>, String> {
    let file: File = toml::from_str(text).map_err(|e| format!("scenario file: {e}"))?;
    if file.scenarios.is_empty() {
        return Err("scenario file: no [[scenario]]".to_owned());
    }
    let base = file
        .base
        .unwrap_or_default()
        .trim_end_matches('/')
        .to_owned();
    file.scenarios
        .into_iter()
        .map(|s| {
            let ctx = |e: String| format!("scenario {:?}: {e}", s.name);
            if s.stages.is_some() && s.duration.is_some() {
                return Err(ctx(
                    "duration or stages, not both: the stages set the length".to_owned(),
                ));
            }
            // The load settings go through the command line's parser: one
            // set of rules and errors.
            let mut argv: Vec<String> = Vec::new();
            let mut flag = |name: &str, v: Option<String>| {
                if let Some(v) = v {
                    argv.push(format!("--{name}={v}"));
                }
            };
            flag("scenario", s.kind.clone());
            flag("concurrency", s.concurrency.map(|v| v.to_string()));
            flag("requests", s.requests.map(|v| v.to_string()));
            flag("duration", s.duration.clone());
            flag("rate", s.rate.map(|v| v.to_string()));
            flag("stages", s.stages.clone());
            flag("think", s.think.clone());
            flag("spike-factor", s.spike_factor.map(|v| v.to_string()));
            flag("timeout", s.timeout.clone());
            for h in &file.headers {
                argv.push(format!("--header={h}"));
            }
            if quiet {
                argv.push("--quiet".to_owned());
            }
            if s.http2 {
                argv.push("--http2".to_owned());
            }
            // A placeholder endpoint for the parser; the real ones below.
            argv.push("http://placeholder:1/".to_owned());
            let mut args = parse_args(argv.into_iter()).map_err(ctx)?;
            args.endpoints = s
                .endpoints
                .iter()
                .map(|e| {
                    let url = if e.url.starts_with('/') {
                        format!("{base}{}", e.url)
                    } else {
                        e.url.clone()
                    };
                    let method = e.method.as_deref().unwrap_or("GET");
                    if !method.bytes().all(|b| b.is_ascii_uppercase()) {
                        return Err(format!("{url}: method {method:?}: write it in capitals"));
                    }
                    let method = method
                        .parse::<http::Method>()
                        .map_err(|err| format!("{url}: {err}"))?;
                    let body = match (&e.body, &e.body_file) {
                        (Some(_), Some(_)) => {
                            return Err(format!("{url}: body or body_file, not both"));
                        }
                        (Some(b), None) => Some(b.clone()),
                        (None, Some(f)) => Some(
                            super::endpoint::read_body(f).map_err(|err| format!("{url}: {err}"))?,
                        ),
                        (None, None) => None,
                    };
                    let headers = e
                        .headers
                        .iter()
                        .map(|h| parse_header(h).map_err(|err| format!("header {err}")))
                        .collect::<Result<_, _>>()?;
                    Endpoint::new(e.weight, method, &url, body.as_deref(), headers)
                })
                .collect::<Result<Vec<_>, String>>()
                .map_err(ctx)?;
            if args.endpoints.is_empty() {
                return Err(ctx("no endpoints".to_owned()));
            }
            args.thresholds = s
                .thresholds
                .iter()
                .map(|t| Threshold::parse(t))
                .collect::<Result<_, _>>()
                .map_err(ctx)?;
            check_thresholds(&args).map_err(ctx)?;
            Ok(Named { name: s.name, args })
        })
        .collect()
}

/// One scenario's results, named.
#[derive(Debug, serde::Serialize)]
pub(crate) struct Ran {
    pub(crate) name: String,
    pub(crate) results: super::Results,
}

/// Runs the scenarios in order.
pub(crate) async fn run_all(scenarios: Vec<Named>) -> Vec<Ran> {
    let mut out = Vec::new();
    for s in scenarios {
        if !s.args.quiet {
            eprintln!("== {}", s.name);
        }
        let results = super::run(s.args).await;
        out.push(Ran {
            name: s.name,
            results,
        });
    }
    out
}

/// A table per scenario, then one line each.
pub(crate) fn report(ran: &[Ran]) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    for r in ran {
        let _ = writeln!(out, "== {}", r.name);
        out.push_str(&super::table(&r.results));
        out.push('\n');
    }
    let _ = writeln!(
        out,
        "{:<24} {:>9} {:>7} {:>9} {:>9} {:>9}  thresholds",
        "scenario", "requests", "ok %", "ok/s", "p95 ms", "p99 ms"
    );
    for r in ran {
        let x = &r.results;
        let passed = x.thresholds.iter().filter(|v| v.passed).count();
        let ms = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.2}"));
        let _ = writeln!(
            out,
            "{:<24} {:>9} {:>7.1} {:>9.0} {:>9} {:>9}  {}",
            r.name,
            x.total_requests,
            x.classes.ok as f64 * 100.0 / x.total_requests.max(1) as f64,
            x.throughput,
            ms(x.latency.p95_ms),
            ms(x.latency.p99_ms),
            if x.thresholds.is_empty() {
                "-".to_owned()
            } else if passed == x.thresholds.len() {
                format!("all {passed} passed")
            } else {
                format!(
                    "{} of {} FAILED",
                    x.thresholds.len() - passed,
                    x.thresholds.len()
                )
            }
        );
    }
    out
}
