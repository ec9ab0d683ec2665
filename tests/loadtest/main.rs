//! examples/loadtest/: argument parsing, URL templates, the weighted mix,
//! and short runs of every scenario against a real server. `outcomes.rs`:
//! how requests ended, warnings and thresholds; `requests.rs`: methods,
//! bodies, stages, scenario files, connections and HTTP/2.

#[path = "../support/mod.rs"]
mod support;

#[allow(dead_code)]
#[path = "../../examples/loadtest/main.rs"]
mod loadtest;

mod outcomes;
mod requests;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::Path;
use axum::routing::get;
use support::TestServer;

fn args(a: &[&str]) -> Result<loadtest::Args, String> {
    loadtest::parse_args(a.iter().map(|s| (*s).to_owned()))
}

/// Runs the load test quietly with these arguments: the results, and
/// their JSON form (what `--json` prints).
async fn run(argv: &[&str]) -> (loadtest::Results, serde_json::Value) {
    let mut all = vec!["--quiet"];
    all.extend_from_slice(argv);
    let r = loadtest::run(args(&all).unwrap()).await;
    let json = serde_json::to_value(&r).unwrap();
    (r, json)
}

#[test]
fn arguments() {
    let a = args(&["http://127.0.0.1:1/x"]).unwrap();
    assert_eq!(
        (a.concurrency, a.duration, a.requests),
        (16, Duration::from_secs(30), 100)
    );
    let a = args(&[
        "--scenario",
        "spike",
        "--duration=2m",
        "--concurrency",
        "8",
        "--spike-factor",
        "3",
        "--header",
        "accept-encoding: gzip",
        "--timeout",
        "500ms",
        "--json",
        "/tmp/x.json",
        "70*http://h:1/a/{1..9}",
        "30*http://h:1/b",
    ])
    .unwrap();
    assert_eq!(a.scenario, loadtest::Scenario::Spike);
    assert_eq!(a.duration, Duration::from_secs(120));
    assert_eq!(a.timeout, Duration::from_millis(500));
    assert_eq!(a.headers[0].0, "accept-encoding");
    assert_eq!(
        a.endpoints.iter().map(|e| e.weight).collect::<Vec<_>>(),
        [70, 30]
    );
    for bad in [
        &[][..],
        &["--bogus", "http://h:1/"],
        &["ftp://h/"],
        &["http://h:1/{5..1}"],
        &["http://h:1/{x}"],
        &["0*http://h:1/"],
        &["--duration", "soon", "http://h:1/"],
        &["--rate", "-3", "http://h:1/"],
        &["--scenario", "spike", "--rate", "10", "http://h:1/"],
        &["--concurrency", "0", "http://h:1/"],
    ] {
        assert!(args(bad).is_err(), "{bad:?}");
    }
    // Refused, and why.
    for (bad, why) in [
        (
            &["http://127.0.0.1:{1024..2000}/"][..],
            "not the host or port",
        ),
        (
            &["--stages", "1s:2", "--duration", "5s", "http://h:1/"][..],
            "--duration and --stages",
        ),
        (
            &[
                "--scenario",
                "spike",
                "--spike-factor",
                &u64::MAX.to_string(),
                "http://h:1/",
            ][..],
            "--spike-factor",
        ),
    ] {
        let e = args(bad).unwrap_err();
        assert!(e.contains(why), "{bad:?}: {e}");
    }
    assert_eq!(
        loadtest::parse_duration("1.5s").unwrap(),
        Duration::from_millis(1500)
    );
}

/// A server that counts hits per path and can be slow.
async fn target() -> (TestServer, Arc<[AtomicU64; 4]>) {
    let hits: Arc<[AtomicU64; 4]> = Arc::new(Default::default());
    let (h1, h2, h3) = (hits.clone(), hits.clone(), hits.clone());
    let permits = Arc::new(tokio::sync::Semaphore::new(2));
    let app = Router::new()
        .route(
            "/a",
            get(move || async move {
                h1[0].fetch_add(1, Ordering::Relaxed);
                "a"
            }),
        )
        .route(
            "/b/{id}",
            get(move |Path(id): Path<u64>| async move {
                assert!((10..=19).contains(&id), "ids come from the range");
                h2[1].fetch_add(1, Ordering::Relaxed);
                "b"
            }),
        )
        .route(
            "/queue",
            get(move || {
                let permits = permits.clone();
                async move {
                    // Two at a time: more clients only queue.
                    let _p = permits.acquire().await.unwrap();
                    // Real time is the point: the load tester measures it.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    "queued"
                }
            }),
        )
        .route(
            "/slow",
            get(move || async move {
                h3[2].fetch_add(1, Ordering::Relaxed);
                // Real time is the point: the load tester measures it.
                tokio::time::sleep(Duration::from_millis(5)).await;
                "slow"
            }),
        );
    (TestServer::serve(app).await, hits)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sustained_follows_the_weights_and_reports_per_endpoint() {
    let (s, hits) = target().await;
    let a = format!("75*http://{}/a", s.addr());
    let b = format!("25*http://{}/b/{{10..19}}", s.addr());
    let missing = format!("1*http://{}/missing", s.addr());
    let (r, json) = run(&["--duration", "1s", "--concurrency", "4", &a, &b, &missing]).await;
    let (na, nb) = (
        hits[0].load(Ordering::Relaxed),
        hits[1].load(Ordering::Relaxed),
    );
    let share = na as f64 / (na + nb) as f64;
    assert!((0.70..0.80).contains(&share), "share of /a: {share}");
    let eps = json["endpoints"].as_array().unwrap();
    assert_eq!(eps[0]["requests"].as_u64().unwrap(), na);
    assert_eq!(eps[0]["success_rate"], 1.0);
    assert!(eps[2]["status_codes"]["404"].as_u64().unwrap() > 0);
    assert_eq!(eps[2]["success_rate"], 0.0);
    assert_eq!(
        eps[2]["classes"]["client_errors"],
        eps[2]["status_codes"]["404"]
    );
    for k in [
        "min_ms", "mean_ms", "p50_ms", "p90_ms", "p95_ms", "p99_ms", "p999_ms", "max_ms",
    ] {
        assert!(eps[0]["latency"][k].as_f64().unwrap() > 0.0, "{k}");
        // The 404s are no successful answer: no latency to report.
        assert!(eps[2]["latency"][k].is_null(), "{k}: {}", eps[2]);
    }
    assert!(eps[0]["throughput"].as_f64().unwrap() > 0.0);
    assert_eq!(eps[2]["throughput"], 0.0);
    // The run's histogram, bucketed, holds every successful answer.
    let buckets: u64 = json["latency"]["histogram"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b[1].as_u64().unwrap())
        .sum();
    assert_eq!(buckets, json["classes"]["ok"].as_u64().unwrap());
    assert_eq!(json["coordinated_omission_corrected"], false);
    let text = loadtest::table(&r);
    assert!(
        text.contains("not corrected for coordinated omission"),
        "{text}"
    );
    assert!(!text.contains("WARNING"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baseline_sends_n_per_endpoint_per_worker() {
    let (s, hits) = target().await;
    let a = format!("http://{}/a", s.addr());
    let b = format!("http://{}/b/{{10..19}}", s.addr());
    let (_, json) = run(&[
        "--scenario",
        "baseline",
        "--requests",
        "25",
        "--concurrency",
        "3",
        &a,
        &b,
    ])
    .await;
    assert_eq!(hits[0].load(Ordering::Relaxed), 75);
    assert_eq!(hits[1].load(Ordering::Relaxed), 75);
    assert_eq!(json["total_requests"], 150);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixed_rate_counts_from_the_intended_start() {
    let (s, hits) = target().await;
    let slow = format!("http://{}/slow", s.addr());
    // 200/s for 1 s with enough workers: about 200 requests, each ≥ 5 ms.
    let (_, json) = run(&[
        "--rate",
        "200",
        "--duration",
        "1s",
        "--concurrency",
        "8",
        &slow,
    ])
    .await;
    // Open loop: never more than the rate asks for (how close to 200 a
    // loaded machine gets is not certain, so not bounded below).
    let n = hits[2].load(Ordering::Relaxed);
    assert!((1..=200).contains(&n), "{n}");
    assert!(json["endpoints"][0]["latency"]["p50_ms"].as_f64().unwrap() >= 5.0);
    assert_eq!(json["coordinated_omission_corrected"], true);
    // One worker can do at most ~200/s of 5 ms requests: asked for 400/s,
    // requests queue and their latency (from the due time) grows.
    let (_, json) = run(&[
        "--rate",
        "400",
        "--duration",
        "1s",
        "--concurrency",
        "1",
        &slow,
    ])
    .await;
    assert!(
        json["endpoints"][0]["latency"]["p99_ms"].as_f64().unwrap() > 100.0,
        "{json}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spike_runs_both_phases_and_reports_them() {
    let (s, _) = target().await;
    let slow = format!("http://{}/slow", s.addr());
    let (r, json) = run(&[
        "--scenario",
        "spike",
        "--duration",
        "3s",
        "--concurrency",
        "2",
        "--spike-factor",
        "4",
        &slow,
    ])
    .await;
    let spike = &json["spike"];
    assert_eq!(spike["normal_workers"], 2);
    assert_eq!(spike["spike_workers"], 8);
    // Every request sleeps 5 ms: a lower bound on both phases, whatever
    // the machine. (How much throughput four times the workers buy depends
    // on the machine: the figures are checked for consistency only.)
    assert!(spike["normal_p99_ms"].as_f64().unwrap() >= 5.0);
    assert!(spike["spike_p99_ms"].as_f64().unwrap() >= 5.0);
    consistent(spike);
    assert!(loadtest::table(&r).contains("spike: 2 → 8 workers"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spike_sees_a_queue_grow() {
    let (s, _) = target().await;
    let queue = format!("http://{}/queue", s.addr());
    let (_, json) = run(&[
        "--scenario",
        "spike",
        "--duration",
        "3s",
        "--concurrency",
        "2",
        "--spike-factor",
        "4",
        &queue,
    ])
    .await;
    assert_eq!(json["endpoints"][0]["success_rate"], 1.0);
    let spike = json["spike"].clone();
    // Two clients: about 5 ms; eight on two slots of 5 ms: about 20 ms.
    // Only the lower bounds are certain: a busy machine (other tests run
    // beside this one) adds latency to both phases, so the degradation
    // (about +300% on a quiet machine), the throughput change (about 0%)
    // and the recovery (at once) are checked for consistency, not bounded.
    assert!(spike["normal_p99_ms"].as_f64().unwrap() >= 5.0, "{spike}");
    assert!(spike["spike_p99_ms"].as_f64().unwrap() >= 15.0, "{spike}");
    consistent(&spike);
}

/// The spike summary's derived figures agree with the ones they come from.
fn consistent(spike: &serde_json::Value) {
    let f = |k: &str| spike[k].as_f64().unwrap_or_else(|| panic!("{k}: {spike}"));
    let pct = |from: f64, to: f64| (to - from) / from * 100.0;
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-6 * a.abs().max(1.0);
    assert!(
        close(
            f("p99_degradation_pct"),
            pct(f("normal_p99_ms"), f("spike_p99_ms"))
        ),
        "{spike}"
    );
    assert!(
        f("normal_throughput") > 0.0 && f("spike_throughput") > 0.0,
        "{spike}"
    );
    assert!(
        close(
            f("throughput_change_pct"),
            pct(f("normal_throughput"), f("spike_throughput"))
        ),
        "{spike}"
    );
}

/// The degradation, throughput change and recovery from known phases
/// (deterministic: the live runs above can only bound what is certain).
#[test]
fn spike_figures_from_known_phases() {
    // 30 buckets of 100 ms over 3 s: normal 0–9 (5 ms, 10 a bucket),
    // spike 10–19 (20 ms, 10 a bucket), then 25 ms twice more and back to
    // 5 ms from bucket 22.
    let bucket = |latency_ms: u64, n: u64| {
        let mut ok = loadtest::hist(2);
        ok.record_n(latency_ms * 1000, n).unwrap();
        loadtest::Bucket { ok, failed: 0 }
    };
    let mut per: Vec<_> = (0..10).map(|_| bucket(5, 10)).collect();
    per.extend((10..20).map(|_| bucket(20, 10)));
    per.extend([bucket(25, 10), bucket(25, 10)]);
    per.extend((22..30).map(|_| bucket(5, 10)));
    let r = loadtest::spike_result(&per, 0.1, 3.0, 2, 4);
    assert_eq!((r.normal_workers, r.spike_workers), (2, 8));
    assert!((r.normal_p99_ms - 5.0).abs() < 0.1, "{r:?}");
    assert!((r.spike_p99_ms - 20.0).abs() < 0.2, "{r:?}");
    assert!((r.p99_degradation_pct - 300.0).abs() < 5.0, "{r:?}");
    assert!((r.normal_throughput - 100.0).abs() < 1e-9, "{r:?}");
    assert!(r.throughput_change_pct.abs() < 1e-9, "{r:?}");
    let recovery = r.recovery_secs.expect("recovered");
    assert!((recovery - 0.2).abs() < 1e-9, "{r:?}");
    // Never back within 20% of normal: no recovery to report.
    let mut stuck: Vec<_> = (0..10).map(|_| bucket(5, 10)).collect();
    stuck.extend((10..30).map(|_| bucket(20, 10)));
    assert_eq!(
        loadtest::spike_result(&stuck, 0.1, 3.0, 2, 4).recovery_secs,
        None
    );
    // Failures are counted apart: the spike's figures are over the
    // successes, with the share of the rest beside them.
    let mut failing = per.clone();
    for b in &mut failing[10..20] {
        b.failed = 30;
    }
    let r = loadtest::spike_result(&failing, 0.1, 3.0, 2, 4);
    assert!((r.spike_p99_ms - 20.0).abs() < 0.2, "{r:?}");
    assert!((r.spike_error_share - 0.75).abs() < 1e-9, "{r:?}");
    assert_eq!(r.normal_error_share, 0.0);
}
