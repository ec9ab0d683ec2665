//! What stands out in the timings, each finding with what to do about it.
//!
//! Only server errors (5xx, inner-service errors, failed bodies) and
//! latency or N+1 problems are warnings or worse. 4xx are the client's
//! (OpenTelemetry's HTTP conventions): a high share of them, or of 429s,
//! is worth knowing and reported as information, never as a fault.

use std::time::Duration;

use super::snapshot::{NPlusOne, RouteStats};
// One type for timing's insights and the report's recommendations.
use crate::insight::{Insight, Severity};

/// Routes with fewer requests in the window are not judged.
const MIN_SAMPLES: u64 = 10;

/// A route whose 4xx (429 aside) pass this share of its responses gets an
/// informational insight: worth knowing, never a fault of the server.
pub(crate) const CLIENT_ERROR_SHARE: f64 = 0.1;

/// A route whose 429s pass this share of its responses gets an
/// informational insight.
pub(crate) const RATE_LIMITED_SHARE: f64 = 0.05;

pub(super) fn insights(
    routes: &[RouteStats],
    n_plus_one: &[NPlusOne],
    p99_target: Duration,
    error_target: f64,
) -> Vec<Insight> {
    let target_ms = p99_target.as_secs_f64() * 1000.0;
    let mut out = Vec::new();
    for r in routes.iter().filter(|r| r.window.count >= MIN_SAMPLES) {
        let name = format!("{} {}", r.method, r.route);
        if let Some(p99) = r.window.p99_ms.filter(|p| *p > target_ms) {
            let top = r
                .spans
                .iter()
                .max_by(|a, b| a.ms_per_request.total_cmp(&b.ms_per_request));
            let recommendation = match top {
                Some(s) => format!(
                    "'{}' takes {:.1} ms per request ({:.1} spans): start there, or cache the response",
                    s.name, s.ms_per_request, s.mean_per_request
                ),
                None => "record sub-timings in the handler to see where the time goes, or cache the response".to_owned(),
            };
            out.push(Insight {
                severity: if p99 > 5.0 * target_ms {
                    Severity::Critical
                } else {
                    Severity::Warning
                },
                kind: "latency",
                route: Some(name.clone()),
                message: format!("p99 of {name} is {p99:.0} ms, over the {target_ms:.0} ms target"),
                recommendation,
            });
        }
        if r.window.error_rate > error_target {
            let w = &r.window;
            let failed = if w.failed > 0 {
                format!(", {} with a body that failed midway", w.failed)
            } else {
                String::new()
            };
            out.push(Insight {
                severity: if w.error_rate > 5.0 * error_target {
                    Severity::Critical
                } else {
                    Severity::Warning
                },
                kind: "errors",
                route: Some(name.clone()),
                message: format!(
                    "{:.1}% of {name} responses are server errors ({} of {}{failed})",
                    w.error_rate * 100.0,
                    w.server_errors,
                    w.count
                ),
                recommendation: "check the handler's logs and its dependencies".to_owned(),
            });
        }
        let w = &r.window;
        let other_4xx = w.client_errors.saturating_sub(w.rate_limited);
        if other_4xx as f64 > CLIENT_ERROR_SHARE * w.count as f64 {
            let top = r
                .status_codes
                .iter()
                .filter(|s| (400..500).contains(&s.code) && s.code != 429)
                .max_by_key(|s| (s.count, std::cmp::Reverse(s.code)));
            let (what, advice) = top.map_or(("", client_error_advice(0)), |s| {
                (status_name(s.code), client_error_advice(s.code))
            });
            let most = top.map_or(String::new(), |s| format!(", mostly {} {what}", s.code));
            out.push(Insight {
                severity: Severity::Info,
                kind: "client_errors",
                route: Some(name.clone()),
                message: format!(
                    "{:.0}% of {name} responses are client errors ({other_4xx} 4xx of {}{most}): not a server fault",
                    other_4xx as f64 * 100.0 / w.count as f64,
                    w.count
                ),
                recommendation: advice.to_owned(),
            });
        }
        if w.rate_limited as f64 > RATE_LIMITED_SHARE * w.count as f64 {
            out.push(Insight {
                severity: Severity::Info,
                kind: "rate_limited",
                route: Some(name.clone()),
                message: format!(
                    "{} of {} {name} responses were 429 Too Many Requests: clients are over a rate limit",
                    w.rate_limited, w.count
                ),
                recommendation: "the limit is doing its job; if these are normal clients, raise the quota (the rate limiter's most limited keys name them)".to_owned(),
            });
        }
        let finished = r.window.count + r.window.aborted;
        if r.window.aborted * 20 > finished {
            out.push(Insight {
                severity: Severity::Info,
                kind: "aborts",
                route: Some(name.clone()),
                message: format!("{} of {finished} {name} responses were abandoned by the client", r.window.aborted),
                recommendation: "check client timeouts against this route's latency, or stream smaller responses".to_owned(),
            });
        }
    }
    for n in n_plus_one {
        out.push(Insight {
            severity: Severity::Warning,
            kind: "n_plus_one",
            route: Some(format!("{} {}", n.method, n.route)),
            message: format!(
                "{} {} records up to {} '{}' spans per request ({:.1} on average; {} of {} requests at or over {})",
                n.method, n.route, n.max_per_request, n.span, n.mean_per_request, n.suspect_requests, n.requests, n.threshold
            ),
            recommendation: format!(
                "likely one '{}' call per item: fetch the items in one call (a join, or WHERE id IN (…)) or batch them",
                n.span
            ),
        });
    }
    out.sort_by_key(|i| std::cmp::Reverse(i.severity));
    out
}

/// The reason phrase of a 4xx, for messages.
fn status_name(code: u16) -> &'static str {
    http::StatusCode::from_u16(code)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("")
}

/// What a route answering mostly `code` should look at.
fn client_error_advice(code: u16) -> &'static str {
    match code {
        404 | 410 => {
            "clients are requesting missing resources: check for stale links, old client versions or scanners"
        }
        401 | 403 => {
            "clients fail authentication or authorization: check for expired credentials or a misconfigured client"
        }
        400 | 422 => {
            "clients send requests the handler rejects: check the validation messages and client versions"
        }
        405 => {
            "clients use a method this route doesn't allow: check the clients or the route's methods"
        }
        408 => {
            "clients are slow to send their requests: check the body read timeout against client networks"
        }
        409 | 412 => {
            "clients collide on updates: expected under concurrent edits, check retry behaviour"
        }
        413 | 414 | 431 => {
            "clients send requests over the size limits: check the limits against legitimate use"
        }
        _ => "check what clients send (validation, auth, stale links)",
    }
}
