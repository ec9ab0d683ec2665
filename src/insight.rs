//! A finding about the traffic, with what to do about it: the one type
//! timing's insights and the report's recommendations share.

use serde::Serialize;

/// How much an [`Insight`] matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing.
    Info,
    /// Worth fixing.
    Warning,
    /// Hurting users now.
    Critical,
}

/// One finding, with what to do about it.
///
/// The timing layer's snapshot lists those about its timings; the
/// report's summary lists them too, with its own about the other layers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Insight {
    /// How much it matters.
    pub severity: Severity,
    /// What kind of finding. From the timings: `latency`, `errors` (server
    /// errors), `client_errors` (4xx other than 429), `rate_limited` (429),
    /// `n_plus_one`, `aborts`; from the report: `cache`, `compression`,
    /// `rate_limit`, `redis`.
    pub kind: &'static str,
    /// `METHOD route`, when the finding is about one route.
    pub route: Option<String>,
    /// What was seen, with the numbers.
    pub message: String,
    /// What to do about it.
    pub recommendation: String,
}
