//! The results of a run: answers by class (successes, client errors,
//! 429s, server errors, and requests left without an answer, by kind),
//! latency and throughput over the successful answers, the spike's phases,
//! warnings when the figures measure errors more than the service, and the
//! thresholds' verdicts; as a table and as JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::record::{Bucket, EndpointStats, Outcome, Recorder, TransportError, hist};
use super::threshold::Verdict;
use super::{Args, Scenario};

/// Requests by how they ended.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub(crate) struct Classes {
    /// Every request sent.
    pub(crate) requests: u64,
    /// 2xx and 3xx answers: what latencies and throughput count.
    pub(crate) ok: u64,
    /// 4xx answers other than 429.
    pub(crate) client_errors: u64,
    /// 429 answers.
    pub(crate) rate_limited: u64,
    /// 5xx answers (and anything else a server should not answer).
    pub(crate) server_errors: u64,
    /// Requests left without an answer, by kind.
    pub(crate) transport_errors: BTreeMap<TransportError, u64>,
}

impl Classes {
    pub(crate) fn of(s: &EndpointStats) -> Self {
        let mut c = Classes::default();
        for (code, n) in &s.statuses {
            c.requests += n;
            match code {
                _ if Outcome::Status(*code).is_success() => c.ok += n,
                429 => c.rate_limited += n,
                400..=499 => c.client_errors += n,
                _ => c.server_errors += n,
            }
        }
        for (kind, n) in &s.transport {
            c.requests += n;
            *c.transport_errors.entry(*kind).or_insert(0) += n;
        }
        c
    }

    pub(crate) fn add(&mut self, o: &Self) {
        self.requests += o.requests;
        self.ok += o.ok;
        self.client_errors += o.client_errors;
        self.rate_limited += o.rate_limited;
        self.server_errors += o.server_errors;
        for (k, n) in &o.transport_errors {
            *self.transport_errors.entry(*k).or_insert(0) += n;
        }
    }

    pub(crate) fn transport(&self) -> u64 {
        self.transport_errors.values().sum()
    }

    /// `3 refused, 1 timeout`.
    fn transport_kinds(&self) -> String {
        self.transport_errors
            .iter()
            .map(|(k, n)| format!("{n} {}", k.as_str()))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The share of requests that did not end in a 2xx or 3xx answer.
    pub(crate) fn error_share(&self) -> f64 {
        share(self.requests - self.ok, self.requests)
    }
}

fn share(n: u64, of: u64) -> f64 {
    if of == 0 { 0.0 } else { n as f64 / of as f64 }
}

/// Latencies of successful answers, in milliseconds (`None` without any).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub(crate) struct Latency {
    pub(crate) min_ms: Option<f64>,
    pub(crate) mean_ms: Option<f64>,
    pub(crate) p50_ms: Option<f64>,
    pub(crate) p90_ms: Option<f64>,
    pub(crate) p95_ms: Option<f64>,
    pub(crate) p99_ms: Option<f64>,
    pub(crate) p999_ms: Option<f64>,
    pub(crate) max_ms: Option<f64>,
    /// The histogram, bucketed: upper bounds in ms doubling from 0.1 ms,
    /// and the answers in each.
    pub(crate) histogram: Vec<(f64, u64)>,
}

impl Latency {
    fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        let q = |p: f64| Some(ms(h.value_at_quantile(p)));
        Self {
            min_ms: Some(ms(h.min())),
            mean_ms: Some(h.mean() / 1000.0),
            p50_ms: q(0.50),
            p90_ms: q(0.90),
            p95_ms: q(0.95),
            p99_ms: q(0.99),
            p999_ms: q(0.999),
            max_ms: Some(ms(h.max())),
            histogram: h
                .iter_log(100, 2.0)
                .filter(|v| v.count_since_last_iteration() > 0)
                .map(|v| (ms(v.value_iterated_to()), v.count_since_last_iteration()))
                .collect(),
        }
    }

    /// The value a threshold names (`p95`, `mean`…).
    pub(crate) fn get(&self, name: &str) -> Option<f64> {
        match name {
            "min" => self.min_ms,
            "mean" => self.mean_ms,
            "p50" => self.p50_ms,
            "p90" => self.p90_ms,
            "p95" => self.p95_ms,
            "p99" => self.p99_ms,
            "p99.9" => self.p999_ms,
            "max" => self.max_ms,
            _ => None,
        }
    }
}

/// The results of one run.
#[derive(Debug, Serialize)]
pub(crate) struct Results {
    pub(crate) scenario: Scenario,
    pub(crate) duration_secs: f64,
    pub(crate) concurrency: usize,
    pub(crate) rate: Option<f64>,
    /// Open loop (`--rate`): latencies count from each request's intended
    /// start. Closed loop: from when it was sent, so a stalled server
    /// slows the sender and hides its queue (not corrected).
    pub(crate) coordinated_omission_corrected: bool,
    /// Closed-loop users over time, as given with `--stages` or made for
    /// the spike (empty otherwise).
    pub(crate) stages: Vec<super::Stage>,
    pub(crate) total_requests: u64,
    /// Successful answers per second.
    pub(crate) throughput: f64,
    /// Requests per second, whatever became of them.
    pub(crate) sent_per_second: f64,
    /// Answers per second, whatever their status.
    pub(crate) answered_per_second: f64,
    pub(crate) classes: Classes,
    pub(crate) latency: Latency,
    pub(crate) endpoints: Vec<EndpointResult>,
    pub(crate) spike: Option<SpikeResult>,
    /// What makes the figures above say less than they seem to.
    pub(crate) warnings: Vec<String>,
    pub(crate) thresholds: Vec<Verdict>,
}

#[derive(Debug, Serialize)]
pub(crate) struct EndpointResult {
    pub(crate) endpoint: String,
    pub(crate) weight: u32,
    pub(crate) requests: u64,
    /// The share of 2xx and 3xx answers among the requests.
    pub(crate) success_rate: f64,
    pub(crate) status_codes: BTreeMap<String, u64>,
    pub(crate) classes: Classes,
    /// Successful answers per second.
    pub(crate) throughput: f64,
    pub(crate) latency: Latency,
    /// Latencies of every answer, whatever its status (not in the table:
    /// for a run that times a path answered with an error on purpose).
    pub(crate) answers_latency: Latency,
}

#[derive(Debug, Serialize)]
pub(crate) struct SpikeResult {
    pub(crate) normal_workers: usize,
    pub(crate) spike_workers: usize,
    pub(crate) normal_p99_ms: f64,
    pub(crate) spike_p99_ms: f64,
    pub(crate) p99_degradation_pct: f64,
    /// Successful answers per second.
    pub(crate) normal_throughput: f64,
    pub(crate) spike_throughput: f64,
    pub(crate) throughput_change_pct: f64,
    /// The share of requests that did not end in a 2xx or 3xx answer.
    pub(crate) normal_error_share: f64,
    pub(crate) spike_error_share: f64,
    /// Seconds after the spike until a time bucket's p99 (100 ms buckets,
    /// 1 s for runs over a minute) is back within 20% of the normal p99;
    /// `None` if it never was before the end.
    pub(crate) recovery_secs: Option<f64>,
}

pub(crate) fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// Merges the buckets of `[from, to)`: the successful answers' histogram,
/// their mean count per bucket, and the share of failed requests.
fn window(buckets: &[Bucket], from: usize, to: usize) -> (Histogram<u64>, f64, f64) {
    let mut h = hist(2);
    let mut failed = 0;
    let to = to.min(buckets.len());
    for b in buckets.iter().take(to).skip(from) {
        let _ = h.add(&b.ok);
        failed += b.failed;
    }
    let n = to.saturating_sub(from).max(1) as f64;
    (
        h.clone(),
        h.len() as f64 / n,
        share(failed, failed + h.len()),
    )
}

/// How much `to` is above `from`, in percent (0 when `from` is 0).
fn pct_change(from: f64, to: f64) -> f64 {
    if from > 0.0 {
        (to / from - 1.0) * 100.0
    } else {
        0.0
    }
}

/// The spike scenario's figures from its buckets (`bucket` seconds each)
/// over a run of `duration` seconds: the normal phase (the first third),
/// the spike (the second) and how long p99 took to come back within 20% of
/// the normal one afterwards; over successful answers, with the share of
/// the others beside.
pub(crate) fn spike_result(
    buckets: &[Bucket],
    bucket: f64,
    duration: f64,
    concurrency: usize,
    factor: usize,
) -> SpikeResult {
    let d = (duration / bucket).round().max(3.0) as usize;
    // The spike's end rounded up: recovery is looked for after it, never
    // inside it.
    let (a, b) = (d / 3, (d * 2).div_ceil(3));
    // Skip the first tenth of each phase (connections warming up).
    let skip = (a / 10).max(1).min(a.saturating_sub(1));
    let (normal, normal_n, normal_err) = window(buckets, skip, a);
    let (spiked, spike_n, spike_err) = window(buckets, a + skip, b);
    let per_sec = |n: f64| n / bucket;
    let (normal_rps, spike_rps) = (per_sec(normal_n), per_sec(spike_n));
    let p99 = |h: &Histogram<u64>| {
        if h.is_empty() {
            0.0
        } else {
            ms(h.value_at_quantile(0.99))
        }
    };
    let normal_p99 = p99(&normal);
    let spike_p99 = p99(&spiked);
    let recovery = (b..buckets.len())
        .find(|s| !buckets[*s].ok.is_empty() && p99(&buckets[*s].ok) <= normal_p99 * 1.2)
        .map(|s| (s - b) as f64 * bucket);
    SpikeResult {
        normal_workers: concurrency,
        spike_workers: concurrency * factor,
        normal_p99_ms: normal_p99,
        spike_p99_ms: spike_p99,
        p99_degradation_pct: pct_change(normal_p99, spike_p99),
        normal_throughput: normal_rps,
        spike_throughput: spike_rps,
        throughput_change_pct: pct_change(normal_rps, spike_rps),
        normal_error_share: normal_err,
        spike_error_share: spike_err,
        recovery_secs: recovery,
    }
}

/// The warnings a run's classes call for: most requests failed, most were
/// rate limited, or some got no answer at all.
fn warnings(c: &Classes, spike: Option<&SpikeResult>) -> Vec<String> {
    let mut w = Vec::new();
    if c.requests == 0 {
        w.push("no request was sent".to_owned());
        return w;
    }
    let pct = |n: u64| share(n, c.requests) * 100.0;
    if c.ok == 0 {
        w.push(format!(
            "no request succeeded: latency and throughput have nothing to measure ({} sent)",
            c.requests
        ));
    } else if c.error_share() > 0.5 {
        w.push(format!(
            "most requests failed ({:.0}%): the figures are over the {} successful answers only",
            pct(c.requests - c.ok),
            c.ok
        ));
    }
    if c.rate_limited * 2 > c.requests {
        w.push(format!(
            "{:.0}% of the answers were 429: this run measures the rate limiter (raise its quota, or turn it off for throughput runs)",
            pct(c.rate_limited)
        ));
    }
    let transport = c.transport();
    if transport > 0 {
        w.push(format!(
            "{transport} requests ({:.1}%) got no answer: {}",
            pct(transport),
            c.transport_kinds()
        ));
    }
    if let Some(s) = spike {
        if s.spike_error_share > 0.5 {
            w.push(format!(
                "{:.0}% of the requests failed during the spike: its throughput and p99 are over the rest",
                s.spike_error_share * 100.0
            ));
        }
    }
    w
}

pub(crate) fn summarize(args: &Args, rec: &Recorder, elapsed: std::time::Duration) -> Results {
    let secs = elapsed.as_secs_f64().max(1e-9);
    let mut endpoints = Vec::new();
    let mut all = Classes::default();
    let mut ok = hist(3);
    let merged = rec.merged();
    for (e, s) in args.endpoints.iter().zip(&merged.endpoints) {
        let c = Classes::of(s);
        all.add(&c);
        let _ = ok.add(&s.ok);
        endpoints.push(EndpointResult {
            endpoint: e.label.clone(),
            weight: e.weight,
            requests: c.requests,
            success_rate: share(c.ok, c.requests),
            status_codes: s
                .statuses
                .iter()
                .map(|(code, n)| (code.to_string(), *n))
                .collect(),
            throughput: c.ok as f64 / secs,
            latency: Latency::of(&s.ok),
            answers_latency: Latency::of(&s.answered),
            classes: c,
        });
    }
    let spike = (args.scenario == Scenario::Spike).then(|| {
        spike_result(
            &merged.buckets,
            rec.bucket.as_secs_f64(),
            args.duration.as_secs_f64(),
            args.concurrency,
            args.spike_factor,
        )
    });
    let mut r = Results {
        scenario: args.scenario,
        duration_secs: secs,
        // Closed-loop runs in stages: the most users at once.
        concurrency: args.concurrency.max(super::stages::peak(&args.stages)),
        rate: args.rate,
        coordinated_omission_corrected: args.rate.is_some(),
        stages: args.stages.clone(),
        total_requests: all.requests,
        throughput: all.ok as f64 / secs,
        sent_per_second: all.requests as f64 / secs,
        answered_per_second: (all.requests - all.transport()) as f64 / secs,
        latency: Latency::of(&ok),
        warnings: warnings(&all, spike.as_ref()),
        classes: all,
        endpoints,
        spike,
        thresholds: Vec::new(),
    };
    // A threshold on endpoints judges them together: their classes
    // summed, their successful answers' histograms merged.
    r.thresholds = args
        .thresholds
        .iter()
        .map(|t| match t.endpoint() {
            None => t.judge(&r.classes, &r.latency, secs),
            Some(text) => {
                let mut c = Classes::default();
                let mut h = hist(3);
                for i in super::threshold::matching(&args.endpoints, text) {
                    if let Some(s) = merged.endpoints.get(i) {
                        c.add(&Classes::of(s));
                        let _ = h.add(&s.ok);
                    }
                }
                t.judge(&c, &Latency::of(&h), secs)
            }
        })
        .collect();
    r
}

fn cell(v: Option<f64>) -> String {
    v.map_or("-".to_owned(), |v| format!("{v:.2}"))
}

/// The readable table.
pub(crate) fn table(r: &Results) -> String {
    let mut out = String::new();
    let c = &r.classes;
    let _ = writeln!(
        out,
        "{:?}: {} requests in {:.1} s ({:.0}/s sent), concurrency {}, {}",
        r.scenario,
        r.total_requests,
        r.duration_secs,
        r.sent_per_second,
        r.concurrency,
        match r.rate {
            Some(x) => format!(
                "open loop at {x:.0} req/s: latencies from each request's intended start (coordinated omission corrected)"
            ),
            None =>
                "closed loop: latencies from each send (not corrected for coordinated omission)"
                    .to_owned(),
        }
    );
    let kinds = c.transport_kinds();
    let _ = writeln!(
        out,
        "answers: {} ok ({:.1}%), {} 4xx, {} 429, {} 5xx; no answer: {}{}",
        c.ok,
        share(c.ok, c.requests) * 100.0,
        c.client_errors,
        c.rate_limited,
        c.server_errors,
        c.transport(),
        if kinds.is_empty() {
            String::new()
        } else {
            format!(" ({kinds})")
        }
    );
    let _ = writeln!(
        out,
        "successful answers: {:.0}/s; latency (ms) of the successful answers only",
        r.throughput
    );
    let _ = writeln!(
        out,
        "{:<40} {:>8} {:>6} {:>8} {:>6} {:>6} {:>6} {:>6} {:>7} {:>7} {:>7} {:>7} {:>7} {:>8} {:>8}",
        "endpoint",
        "requests",
        "ok %",
        "ok/s",
        "4xx",
        "429",
        "5xx",
        "no ans",
        "min",
        "p50",
        "p90",
        "p95",
        "p99",
        "p99.9",
        "max"
    );
    for e in &r.endpoints {
        let mut label = e.endpoint.clone();
        if label.chars().count() > 40 {
            let tail: String = label
                .chars()
                .rev()
                .take(39)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            label = format!("…{tail}");
        }
        let (ec, l) = (&e.classes, &e.latency);
        let _ = writeln!(
            out,
            "{label:<40} {:>8} {:>6.1} {:>8.0} {:>6} {:>6} {:>6} {:>6} {:>7} {:>7} {:>7} {:>7} {:>7} {:>8} {:>8}",
            e.requests,
            e.success_rate * 100.0,
            e.throughput,
            ec.client_errors,
            ec.rate_limited,
            ec.server_errors,
            ec.transport(),
            cell(l.min_ms),
            cell(l.p50_ms),
            cell(l.p90_ms),
            cell(l.p95_ms),
            cell(l.p99_ms),
            cell(l.p999_ms),
            cell(l.max_ms),
        );
    }
    if let Some(s) = &r.spike {
        let _ = writeln!(
            out,
            "spike: {} → {} workers; p99 {:.2} → {:.2} ms ({:+.0}%); successful answers {:.0} → {:.0}/s ({:+.0}%); failed {:.0}% → {:.0}%; recovery {}",
            s.normal_workers,
            s.spike_workers,
            s.normal_p99_ms,
            s.spike_p99_ms,
            s.p99_degradation_pct,
            s.normal_throughput,
            s.spike_throughput,
            s.throughput_change_pct,
            s.normal_error_share * 100.0,
            s.spike_error_share * 100.0,
            s.recovery_secs
                .map_or("not within the run".to_owned(), |x| format!("{x:.0} s"))
        );
    }
    for w in &r.warnings {
        let _ = writeln!(out, "WARNING: {w}");
    }
    if !r.thresholds.is_empty() {
        let _ = writeln!(out, "thresholds:");
        for v in &r.thresholds {
            let _ = writeln!(
                out,
                "  {} {}: {}",
                if v.passed { "pass" } else { "FAIL" },
                v.threshold,
                v.actual
            );
        }
    }
    out
}
