//! Requests beyond GET (methods, headers, bodies), stages, scenario
//! files, each user's connections, and HTTP/2.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::routing::get;

use super::support::TestServer;
use super::{args, loadtest, run, target};

/// Methods, headers and bodies (inline, with `{n}` and `{a..b}`, or from a
/// file) arrive as written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn methods_headers_and_bodies_arrive() {
    type Seen = Arc<std::sync::Mutex<Vec<(String, Option<String>, String)>>>;
    let seen: Seen = Arc::default();
    let s2 = seen.clone();
    let app = Router::new().route(
        "/items",
        axum::routing::post(move |headers: http::HeaderMap, body: String| {
            let s2 = s2.clone();
            async move {
                let auth = headers
                    .get("authorization")
                    .map(|v| v.to_str().unwrap().to_owned());
                s2.lock().unwrap().push(("POST".into(), auth, body));
                (http::StatusCode::CREATED, "made")
            }
        }),
    );
    let s = TestServer::serve(app).await;
    let file = std::env::temp_dir().join(format!("loadtest-body-{}.json", std::process::id()));
    std::fs::write(&file, "from a file {n}").unwrap();
    let inline = format!(
        r#"POST http://{}/items {{"name":"item {{n}}","price":{{1..9}}}}"#,
        s.addr()
    );
    let from_file = format!("POST http://{}/items @{}", s.addr(), file.display());
    let (r, json) = run(&[
        "--scenario",
        "baseline",
        "--requests",
        "3",
        "--concurrency",
        "1",
        "--header",
        "authorization: Bearer t0ken",
        &inline,
        &from_file,
    ])
    .await;
    std::fs::remove_file(&file).ok();
    assert_eq!(json["classes"]["ok"], 6, "{}", loadtest::table(&r));
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 6);
    assert!(
        seen.iter()
            .all(|(_, auth, _)| auth.as_deref() == Some("Bearer t0ken"))
    );
    let mut ns = Vec::new();
    for (_, _, body) in seen.iter() {
        if let Some(n) = body.strip_prefix("from a file ") {
            ns.push(n.parse::<u64>().unwrap());
            continue;
        }
        let v: serde_json::Value =
            serde_json::from_str(body).unwrap_or_else(|e| panic!("{body}: {e}"));
        let name = v["name"].as_str().unwrap();
        ns.push(name.strip_prefix("item ").unwrap().parse().unwrap());
        assert!((1..=9).contains(&v["price"].as_u64().unwrap()), "{body}");
    }
    // `{n}` numbers the run's requests: six, each once.
    ns.sort_unstable();
    ns.dedup();
    assert_eq!(ns.len(), 6, "{ns:?}");
    // The label says the method.
    assert!(
        json["endpoints"][0]["endpoint"]
            .as_str()
            .unwrap()
            .starts_with("POST http://")
    );
}

/// Stages set how many users run when: none for the first 300 ms, then
/// three at once; the handler holds each request until three are in, so
/// the three users must be sending together.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stages_start_users_at_their_time() {
    #[derive(Default)]
    struct Gate {
        in_flight: AtomicU64,
        max: AtomicU64,
        first_ms: AtomicU64,
        notify: tokio::sync::Notify,
    }
    let gate = Arc::new(Gate {
        first_ms: AtomicU64::new(u64::MAX),
        ..Gate::default()
    });
    let started = std::time::Instant::now();
    let g = gate.clone();
    let app = Router::new().route(
        "/gate",
        get(move || {
            let g = g.clone();
            async move {
                let ms = started.elapsed().as_millis() as u64;
                g.first_ms.fetch_min(ms, Ordering::Relaxed);
                let now = g.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                g.max.fetch_max(now, Ordering::SeqCst);
                g.notify.notify_waiters();
                let _ = tokio::time::timeout(Duration::from_secs(2), async {
                    while g.in_flight.load(Ordering::SeqCst) < 3 {
                        let n = g.notify.notified();
                        if g.in_flight.load(Ordering::SeqCst) >= 3 {
                            break;
                        }
                        n.await;
                    }
                })
                .await;
                g.in_flight.fetch_sub(1, Ordering::SeqCst);
                "ok"
            }
        }),
    );
    let s = TestServer::serve(app).await;
    let url = format!("http://{}/gate", s.addr());
    let (_, json) = run(&["--stages", "300ms:0,0s:3,700ms:3", &url]).await;
    assert!(
        gate.first_ms.load(Ordering::Relaxed) >= 300,
        "a user came early"
    );
    assert_eq!(gate.max.load(Ordering::SeqCst), 3, "three users, together");
    assert!(json["classes"]["ok"].as_u64().unwrap() >= 3, "{json}");
    assert_eq!(json["stages"][1]["target"], 3);
}

#[test]
fn stages_ramp_linearly_and_end() {
    let st = args(&["--stages", "10s:10,0s:40,10s:0", "http://h:1/"]).unwrap();
    assert_eq!(st.duration, Duration::from_secs(20));
    let at = |ms: u64| loadtest::users_at(&st.stages, Duration::from_millis(ms));
    assert_eq!(at(0), Some(0));
    assert_eq!(at(5_000), Some(5));
    assert_eq!(at(9_999), Some(9));
    // The 0 s stage jumps; the next ramps down from its 40.
    assert_eq!(at(10_000), Some(40));
    assert_eq!(at(15_000), Some(20));
    assert_eq!(at(20_000), None);
    // The spike scenario as stages: its users, K times them, its users.
    let sp = args(&[
        "--scenario",
        "spike",
        "--duration",
        "3s",
        "--concurrency",
        "2",
        "--spike-factor",
        "4",
        "http://h:1/",
    ])
    .unwrap();
    let at = |ms: u64| loadtest::users_at(&sp.stages, Duration::from_millis(ms));
    assert_eq!(
        (at(0), at(999), at(1000), at(1999), at(2000), at(2999)),
        (Some(2), Some(2), Some(8), Some(8), Some(2), Some(2))
    );
    assert_eq!(at(3000), None);
    for bad in [
        &["--stages", "10s", "http://h:1/"][..],
        &["--stages", "10s:x", "http://h:1/"],
        &["--stages", "0s:5", "http://h:1/"],
        &["--stages", "10s:0", "http://h:1/"],
        &["--stages", "10s:5", "--rate", "10", "http://h:1/"],
        &["--stages", "10s:5", "--scenario", "baseline", "http://h:1/"],
        &["--stages", "1s:99999", "http://h:1/"],
    ] {
        assert!(args(bad).is_err(), "{bad:?}");
    }
}

/// A scenario file runs end to end: each scenario with its own load and
/// thresholds, a table each and a line each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scenario_file_runs_in_order() {
    let (s, hits) = target().await;
    let file = format!(
        r#"
base = "http://{addr}"

[[scenario]]
name = "first"
kind = "baseline"
concurrency = 2
requests = 5
thresholds = ["errors<1%"]
endpoints = [{{ url = "/a" }}]

[[scenario]]
name = "second"
duration = "300ms"
concurrency = 2
thresholds = ["p50<1ms on /slow"]
endpoints = [{{ url = "/slow", weight = 2 }}, {{ url = "/b/{{10..19}}" }}]
"#,
        addr = s.addr()
    );
    let scenarios = loadtest::parse_scenario_file(&file, true).unwrap();
    assert_eq!(scenarios.len(), 2);
    let ran = loadtest::run_scenarios(scenarios).await;
    assert_eq!(
        hits[0].load(Ordering::Relaxed),
        10,
        "the first: 2 workers × 5"
    );
    assert!(hits[2].load(Ordering::Relaxed) > 0, "the second ran /slow");
    assert_eq!(ran[0].name, "first");
    assert!(ran[0].results.thresholds[0].passed);
    // /slow sleeps 5 ms: its p50 can't be under 1 ms.
    assert!(!ran[1].results.thresholds[0].passed);
    let text = loadtest::scenario_report(&ran);
    assert!(
        text.contains("== first") && text.contains("== second"),
        "{text}"
    );
    assert!(
        text.contains("all 1 passed") && text.contains("1 of 1 FAILED"),
        "{text}"
    );
}

#[test]
fn scenario_files_are_checked_before_anything_runs() {
    // The shipped file parses.
    let shipped = include_str!("../../examples/loadtest/scenarios.toml");
    let names: Vec<String> = loadtest::parse_scenario_file(shipped, true)
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(
        names,
        ["baseline", "stress", "sustained", "spike", "write-heavy"]
    );
    for bad in [
        "",
        "[[scenario]]\nname = \"x\"\nendpoints = []",
        "[[scenario]]\nname = \"x\"\nconcurency = 3\nendpoints = [{ url = \"http://h:1/\" }]",
        "[[scenario]]\nname = \"x\"\nkind = \"soak\"\nendpoints = [{ url = \"http://h:1/\" }]",
        "[[scenario]]\nname = \"x\"\nthresholds = [\"p95<1s on /nowhere\"]\nendpoints = [{ url = \"http://h:1/\" }]",
        "[[scenario]]\nname = \"x\"\nendpoints = [{ url = \"/relative-without-base\" }]",
    ] {
        assert!(loadtest::parse_scenario_file(bad, true).is_err(), "{bad}");
    }
}

/// Each user keeps its own connection, and makes a new one when the server
/// closes it (here after every answer): no request is lost to a stale one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_the_server_closes_is_made_again() {
    let app = Router::new().route("/bye", get(|| async { ([("connection", "close")], "bye") }));
    let s = TestServer::serve(app).await;
    let url = format!("http://{}/bye", s.addr());
    let (r, json) = run(&[
        "--scenario",
        "baseline",
        "--requests",
        "20",
        "--concurrency",
        "2",
        &url,
    ])
    .await;
    assert_eq!(json["classes"]["ok"], 40, "{}", loadtest::table(&r));
}

/// `--http2`: the requests arrive over HTTP/2 (prior knowledge), and every
/// one succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_requests_arrive_as_http2() {
    let versions: Arc<std::sync::Mutex<Vec<http::Version>>> = Arc::default();
    let v2 = versions.clone();
    let app = Router::new().route(
        "/v",
        get(move |req: http::Request<axum::body::Body>| {
            let v2 = v2.clone();
            async move {
                v2.lock().unwrap().push(req.version());
                "v"
            }
        }),
    );
    let s = TestServer::serve(app).await;
    let url = format!("http://{}/v", s.addr());
    let (_, json) = run(&[
        "--http2",
        "--scenario",
        "baseline",
        "--requests",
        "5",
        "--concurrency",
        "2",
        &url,
    ])
    .await;
    assert_eq!(json["classes"]["ok"], 10, "{json}");
    let versions = versions.lock().unwrap();
    assert_eq!(versions.len(), 10);
    assert!(
        versions.iter().all(|v| *v == http::Version::HTTP_2),
        "{versions:?}"
    );
}
