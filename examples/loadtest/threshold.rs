//! k6-style pass/fail criteria, from `--threshold`: a metric, a comparison
//! and a value, over the whole run or over the endpoints whose URL
//! contains a text (`p95<20ms on /api/v1/items`).
//!
//! | metric | value | over |
//! |---|---|---|
//! | `min` `mean` `p50` `p90` `p95` `p99` `p99.9` `max` | a duration (`us`, `ms`, `s`) | successful answers |
//! | `errors` | a share (`1%`, `0.01`) | requests not answered 2xx/3xx (429s and no answer included) |
//! | `server_errors` | a share | 5xx answers and requests without an answer |
//! | `rate_limited` | a share | 429 answers |
//! | `rps` | successful answers per second | |

use serde::Serialize;

use super::Endpoint;
use super::summary::{Classes, Latency};

/// What a threshold measures.
#[derive(Debug, Clone, PartialEq)]
enum Metric {
    /// A latency statistic of the successful answers, by name.
    Latency(&'static str),
    Errors,
    ServerErrors,
    RateLimited,
    Rps,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Lt,
    Le,
    Gt,
    Ge,
}

/// One criterion.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Threshold {
    text: String,
    metric: Metric,
    op: Op,
    /// Milliseconds, a share (0..=1) or requests per second.
    value: f64,
    /// Only the endpoints whose URL template contains this.
    endpoint: Option<String>,
}

/// A threshold's verdict on a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Verdict {
    pub(crate) threshold: String,
    /// The measured value: milliseconds, requests per second or a
    /// percentage.
    pub(crate) actual: String,
    pub(crate) passed: bool,
}

const LATENCIES: [&str; 8] = ["min", "mean", "p50", "p90", "p95", "p99", "p99.9", "max"];

fn duration_ms(v: &str) -> Option<f64> {
    let (n, scale) = if let Some(n) = v.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = v.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1000.0)
    } else {
        return None;
    };
    let x: f64 = n.trim().parse().ok()?;
    (x.is_finite() && x >= 0.0).then_some(x * scale)
}

/// `1%`, or a fraction below 1 (`0.01`): a bare `1` or `5` would read as
/// 100% or be out of range where a percentage was meant, so it is refused.
fn share(v: &str) -> Option<f64> {
    match v.strip_suffix('%') {
        Some(n) => {
            let x = n.trim().parse::<f64>().ok()? / 100.0;
            (0.0..=1.0).contains(&x).then_some(x)
        }
        None => {
            let x = v.parse::<f64>().ok()?;
            (0.0..1.0).contains(&x).then_some(x)
        }
    }
}

impl Threshold {
    /// `METRIC OP VALUE [on TEXT]`, e.g. `p95<50ms`, `errors<=1%`,
    /// `rps>500`, `p99<100ms on /api/v1/items`.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let bad = |why: &str| format!("--threshold {text:?}: {why}");
        let (spec, endpoint) = match text.split_once(" on ") {
            Some((s, e)) if !e.trim().is_empty() => (s.trim(), Some(e.trim().to_owned())),
            Some(_) => return Err(bad("nothing after `on`")),
            None => (text.trim(), None),
        };
        let at = spec
            .find(['<', '>'])
            .ok_or_else(|| bad("expected METRIC<VALUE or METRIC>VALUE"))?;
        let (name, rest) = spec.split_at(at);
        let (op, value) = if let Some(v) = rest.strip_prefix("<=") {
            (Op::Le, v)
        } else if let Some(v) = rest.strip_prefix(">=") {
            (Op::Ge, v)
        } else if let Some(v) = rest.strip_prefix('<') {
            (Op::Lt, v)
        } else if let Some(v) = rest.strip_prefix('>') {
            (Op::Gt, v)
        } else {
            return Err(bad("expected < <= > or >="));
        };
        let (name, value) = (name.trim(), value.trim());
        let (metric, value) = match name {
            "errors" | "server_errors" | "rate_limited" => (
                match name {
                    "errors" => Metric::Errors,
                    "server_errors" => Metric::ServerErrors,
                    _ => Metric::RateLimited,
                },
                share(value).ok_or_else(|| bad("a share: 1% or 0.01"))?,
            ),
            "rps" => (
                Metric::Rps,
                value
                    .parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite() && *v >= 0.0)
                    .ok_or_else(|| bad("requests per second: a number"))?,
            ),
            other => match LATENCIES.iter().find(|l| **l == other) {
                Some(l) => (
                    Metric::Latency(l),
                    duration_ms(value).ok_or_else(|| bad("a duration: 50ms, 0.5s, 800us"))?,
                ),
                None => {
                    return Err(bad(
                        "unknown metric: min mean p50 p90 p95 p99 p99.9 max errors server_errors rate_limited rps",
                    ));
                }
            },
        };
        Ok(Self {
            text: text.trim().to_owned(),
            metric,
            op,
            value,
            endpoint,
        })
    }

    /// The endpoint text it names, if any (the run checks it matches one).
    pub(crate) fn endpoint(&self) -> Option<&str> {
        self.endpoint.as_deref()
    }

    /// The verdict on requests that ended as `classes`, whose successful
    /// answers' latencies are `latency`, over `secs` seconds. A latency of
    /// endpoints without a successful answer has no value: it fails.
    pub(crate) fn judge(&self, classes: &Classes, latency: &Latency, secs: f64) -> Verdict {
        let (actual, shown) = match &self.metric {
            Metric::Latency(name) => {
                let v = latency.get(name);
                (
                    v,
                    v.map_or("no successful answer".to_owned(), |v| format!("{v:.2} ms")),
                )
            }
            Metric::Rps => {
                let v = classes.ok as f64 / secs.max(1e-9);
                (Some(v), format!("{v:.1} req/s"))
            }
            m => {
                let n = match m {
                    Metric::Errors => classes.requests - classes.ok,
                    Metric::ServerErrors => classes.server_errors + classes.transport(),
                    _ => classes.rate_limited,
                };
                let v = if classes.requests == 0 {
                    None
                } else {
                    Some(n as f64 / classes.requests as f64)
                };
                (
                    v,
                    v.map_or("no request".to_owned(), |v| format!("{:.2}%", v * 100.0)),
                )
            }
        };
        let passed = actual.is_some_and(|a| match self.op {
            Op::Lt => a < self.value,
            Op::Le => a <= self.value,
            Op::Gt => a > self.value,
            Op::Ge => a >= self.value,
        });
        Verdict {
            threshold: self.text.clone(),
            actual: shown,
            passed,
        }
    }
}

/// The endpoints a threshold's `on TEXT` names: those whose label is
/// `text` exactly, if any (so `…/items` can be told from `…/items/{1..55}`),
/// else those whose label contains it.
pub(crate) fn matching(endpoints: &[Endpoint], text: &str) -> Vec<usize> {
    let exact: Vec<usize> = (0..endpoints.len())
        .filter(|i| endpoints[*i].label == text)
        .collect();
    if !exact.is_empty() {
        return exact;
    }
    (0..endpoints.len())
        .filter(|i| endpoints[*i].label.contains(text))
        .collect()
}
