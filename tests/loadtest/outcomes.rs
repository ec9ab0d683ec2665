//! How requests ended (successes, 4xx, 429, 5xx, no answer), the
//! warnings that follow, and thresholds.

use axum::Router;
use axum::routing::get;

use super::support::TestServer;
use super::{args, loadtest, run, target};

/// A port nobody listens on: every request is a transport error (refused),
/// none is a success, and the summary says so instead of reporting a
/// throughput and a latency.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_port_is_reported_as_errors_with_no_throughput() {
    // A port just freed: nothing listens on it.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}/x");
    let (r, json) = run(&["--duration", "300ms", "--concurrency", "2", &url]).await;
    let refused = json["classes"]["transport_errors"]["refused"]
        .as_u64()
        .unwrap_or(0);
    assert!(refused > 0, "{json}");
    assert_eq!(refused, json["total_requests"].as_u64().unwrap(), "{json}");
    assert_eq!(json["classes"]["ok"], 0);
    assert_eq!(json["throughput"], 0.0);
    assert!(json["latency"]["p50_ms"].is_null(), "{json}");
    let text = loadtest::table(&r);
    assert!(text.contains("WARNING: no request succeeded"), "{text}");
    assert!(
        text.contains(&format!("got no answer: {refused} refused")),
        "{text}"
    );
}

/// Mostly 429s: the figures are over the successes, and a warning says the
/// run measures the limiter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_of_429s_says_it_measures_the_limiter() {
    let app = Router::new().route("/ok", get(|| async { "ok" })).route(
        "/limited",
        get(|| async { (http::StatusCode::TOO_MANY_REQUESTS, "slow down") }),
    );
    let s = TestServer::serve(app).await;
    let ok = format!("1*http://{}/ok", s.addr());
    let limited = format!("9*http://{}/limited", s.addr());
    let (r, json) = run(&["--duration", "500ms", "--concurrency", "2", &ok, &limited]).await;
    let c = &json["classes"];
    assert!(
        c["rate_limited"].as_u64().unwrap() > c["ok"].as_u64().unwrap(),
        "{c}"
    );
    // Throughput is the successful answers' rate.
    let expect = c["ok"].as_f64().unwrap() / json["duration_secs"].as_f64().unwrap();
    assert!(
        (json["throughput"].as_f64().unwrap() - expect).abs() < 1e-6,
        "{json}"
    );
    assert!(json["sent_per_second"].as_f64().unwrap() > json["throughput"].as_f64().unwrap());
    // Every answer, 429s included, for runs that time an error path
    // (benches/run.sh's rate-limited one).
    assert!(
        json["endpoints"][1]["answers_latency"]["p99_ms"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    assert!(json["endpoints"][1]["latency"]["p99_ms"].is_null());
    assert!(json["answered_per_second"].as_f64().unwrap() > json["throughput"].as_f64().unwrap());
    let text = loadtest::table(&r);
    assert!(
        text.contains("this run measures the rate limiter"),
        "{text}"
    );
    assert!(text.contains("WARNING: most requests failed"), "{text}");
}

/// Thresholds on a server whose latency the test sets (5 ms and more,
/// always): the certain ones pass, the impossible ones fail, and a failed
/// one makes the run's exit status 3.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thresholds_pass_and_fail() {
    let (s, _) = target().await;
    let slow = format!("http://{}/slow", s.addr());
    let missing = format!("http://{}/missing", s.addr());
    let (r, json) = run(&[
        "--duration",
        "500ms",
        "--concurrency",
        "2",
        "--threshold",
        "p50>=5ms on /slow",
        "--threshold",
        "p99<60s",
        "--threshold",
        "p50<1ms on /slow",
        "--threshold",
        "errors<100%",
        "--threshold",
        "errors<1% on /missing",
        "--threshold",
        "rps>0",
        "--threshold",
        "rps>1000000",
        "--threshold",
        "p95<1s on /missing",
        &slow,
        &missing,
    ])
    .await;
    let verdicts: Vec<(String, bool)> = json["thresholds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["threshold"].as_str().unwrap().to_owned(),
                v["passed"].as_bool().unwrap(),
            )
        })
        .collect();
    let expect = [
        ("p50>=5ms on /slow", true),
        ("p99<60s", true),
        ("p50<1ms on /slow", false),
        ("errors<100%", true),
        ("errors<1% on /missing", false),
        ("rps>0", true),
        ("rps>1000000", false),
        // No successful answer: no latency, the threshold fails.
        ("p95<1s on /missing", false),
    ];
    let expect: Vec<(String, bool)> = expect.iter().map(|(t, p)| ((*t).to_owned(), *p)).collect();
    assert_eq!(verdicts, expect, "{json}");
    assert_eq!(loadtest::exit_code(&r), 3);
    let text = loadtest::table(&r);
    assert!(text.contains("FAIL p50<1ms on /slow: "), "{text}");
    assert!(text.contains("pass p50>=5ms on /slow: "), "{text}");
    assert!(text.contains("no successful answer"), "{text}");
    // All passing: status 0.
    let (r, _) = run(&["--duration", "200ms", "--threshold", "p50>=5ms", &slow]).await;
    assert_eq!(loadtest::exit_code(&r), 0);
}

#[test]
fn thresholds_parse_or_say_why_not() {
    for good in [
        "p95<50ms",
        "p99 < 0.1s",
        "p99.9<=800us",
        "mean<20ms",
        "errors<1%",
        "server_errors<=0.001",
        "rate_limited<5%",
        "rps>500",
        "rps >= 10",
        "p95<20ms on /api/v1/items",
    ] {
        assert!(loadtest::Threshold::parse(good).is_ok(), "{good}");
    }
    for bad in [
        "p95",
        "p95=50ms",
        "p95<50",
        "p42<50ms",
        "errors<150%",
        // A bare 1 would be 100%, where 1% was surely meant.
        "errors<1",
        "errors<lots",
        "rps>fast",
        "p95<50ms on ",
        "p95<-1ms",
    ] {
        let e = loadtest::Threshold::parse(bad).unwrap_err();
        assert!(e.contains(bad.trim()), "{bad}: {e}");
    }
    // An endpoint text no URL contains is refused with the run's arguments.
    let e = args(&["--threshold", "p95<1s on /nowhere", "http://h:1/a"]).unwrap_err();
    assert!(e.contains("/nowhere"), "{e}");
}

/// A server that never answers: every request ends as a timeout, counted
/// apart from the refused and reset ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_answers_is_a_timeout() {
    let app = Router::new().route("/hang", get(std::future::pending::<&'static str>));
    let s = TestServer::serve(app).await;
    let url = format!("http://{}/hang", s.addr());
    let (_, json) = run(&[
        "--duration",
        "400ms",
        "--timeout",
        "100ms",
        "--concurrency",
        "2",
        &url,
    ])
    .await;
    let t = &json["classes"]["transport_errors"];
    assert!(t["timeout"].as_u64().unwrap_or(0) > 0, "{json}");
    assert!(t["refused"].is_null() && t["reset"].is_null(), "{json}");
    assert_eq!(json["classes"]["ok"], 0);
}

/// A threshold on several endpoints judges their answers together (one
/// merged histogram: the fast endpoint's minimum is the group's), and one
/// that names an endpoint exactly takes that one only, even when another's
/// URL starts with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thresholds_on_endpoints_merge_them_and_prefer_an_exact_name() {
    let (s, _) = target().await;
    let base = format!("http://{}", s.addr());
    let a = format!("{base}/a");
    let slow = format!("{base}/slow");
    let on_both = format!("min<5ms on {base}/");
    let on_both_max = format!("max>=5ms on {base}/");
    let exact = format!("p50<5ms on {a}");
    let (_, json) = run(&[
        "--duration",
        "400ms",
        "--concurrency",
        "2",
        "--threshold",
        &on_both,
        "--threshold",
        &on_both_max,
        "--threshold",
        &exact,
        &a,
        &slow,
    ])
    .await;
    let passed: Vec<bool> = json["thresholds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["passed"].as_bool().unwrap())
        .collect();
    // /a answers at once, /slow after 5 ms: together, the minimum is /a's
    // and the maximum /slow's; named exactly, /a alone.
    assert_eq!(passed, [true, true, true], "{json}");
}
