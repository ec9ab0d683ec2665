//! The task layer over HTTP: `Prefer: respond-async` → 202 → monitor →
//! result; progress, timeouts, cancellation (queued and running), the
//! queue bound, the concurrency limit, retention, panics, shutdown, and
//! the monitors' access rules.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::http::{Method, StatusCode};
use axum::routing::{get, post};
use http_body_util::Full;
use serde_json::Value;
use support::gate::{Gate, until};
use support::{TestResponse, TestServer};
use tower_perf::clock::ManualClock;
use tower_perf::report::Report;
use tower_perf::tasks::{AsyncLayer, TaskId, TaskProgress, TaskRoute, TaskState, TasksHandle};

const TOKEN: &str = "s3cret";

/// Sets its flag when dropped: proves a handler's future was dropped.
struct DropGuard(Arc<AtomicBool>);

impl Drop for DropGuard {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[derive(Clone, Default)]
struct Probes {
    gate: Gate,
    dropped: Arc<AtomicBool>,
    ran: Arc<AtomicUsize>,
}

/// The routes under test, the layer around them, the report beside them.
fn app(layer: AsyncLayer, probes: &Probes) -> (Router, TasksHandle) {
    let tasks = layer.handle();
    let report = Report::builder().tasks(tasks.clone()).token(TOKEN).build();
    let p = probes.clone();
    let work = move |progress: TaskProgress, body: Bytes| {
        let p = p.clone();
        async move {
            p.ran.fetch_add(1, Ordering::SeqCst);
            progress.set(40, "step 2 of 5");
            p.gate.pass().await;
            progress.set(90, "almost");
            format!("done: {}", String::from_utf8_lossy(&body))
        }
    };
    let p = probes.clone();
    let hang = move || {
        let p = p.clone();
        async move {
            let _guard = DropGuard(p.dropped.clone());
            p.ran.fetch_add(1, Ordering::SeqCst);
            p.gate.pass().await;
            std::future::pending::<()>().await;
            "never"
        }
    };
    let router = Router::new()
        .route("/health", get(|| async { "ok" }))
        .route(
            "/inline",
            get(|p: TaskProgress| async move { format!("deferred={}", p.is_deferred()) }),
        )
        .route("/work", post(work))
        .route("/exports", post(|| async { "exported" }))
        .route("/hang", post(hang))
        .route(
            "/panic",
            post(|| async {
                if true {
                    panic!("a handler bug");
                }
                "unreachable"
            }),
        )
        .route("/big", post(|| async { "x".repeat(4096) }))
        .route(
            "/broken",
            post(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "the database is down") }),
        )
        .nest_service("/performance", report)
        .layer(layer);
    (router, tasks)
}

async fn serve(layer: AsyncLayer) -> (TestServer, TasksHandle, Probes) {
    let probes = Probes::default();
    let (router, tasks) = app(layer, &probes);
    (TestServer::serve(router).await, tasks, probes)
}

async fn submit(server: &TestServer, path: &str, body: &str) -> TestResponse {
    let req = server
        .request(Method::POST, path)
        .header("prefer", "respond-async")
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap();
    server.send(req).await
}

/// The id in a 202's `Location`.
fn id_of(accepted: &TestResponse) -> TaskId {
    assert_eq!(accepted.status, StatusCode::ACCEPTED, "{}", accepted.text());
    let location = accepted.header("location").expect("a Location");
    TaskId::parse(location.rsplit('/').next().unwrap()).expect("an id")
}

async fn monitor(server: &TestServer, id: TaskId) -> Value {
    let res = server.get(&format!("/performance/tasks/{id}")).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    res.json()
}

async fn wait_for(tasks: &TasksHandle, id: TaskId, state: TaskState) {
    until(&format!("task {id} {}", state.as_str()), || {
        tasks.get(id).is_some_and(|t| t.state == state)
    })
    .await;
}

fn with_token(
    server: &TestServer,
    method: Method,
    path: &str,
    token: &str,
) -> http::Request<Full<Bytes>> {
    server
        .request(method, path)
        .header("authorization", format!("Bearer {token}"))
        .body(Full::default())
        .unwrap()
}

#[tokio::test]
async fn a_deferred_request_answers_202_then_its_monitor_then_its_result() {
    let (server, tasks, probes) = serve(AsyncLayer::new()).await;
    let accepted = submit(&server, "/work", "report-7").await;
    assert_eq!(accepted.header("preference-applied"), Some("respond-async"));
    assert_eq!(accepted.header("cache-control"), Some("no-store"));
    let id = id_of(&accepted);
    assert_eq!(
        accepted.header("location").unwrap(),
        format!("/performance/tasks/{id}")
    );
    let body: Value = accepted.json();
    assert_eq!(body["id"], id.to_string());
    assert!(matches!(
        body["state"].as_str(),
        Some("pending" | "running")
    ));

    // The handler reports progress and waits at the gate.
    probes.gate.arrived(1).await;
    let running = monitor(&server, id).await;
    assert_eq!(running["state"], "running");
    assert_eq!(running["progress"], 40);
    assert_eq!(running["message"], "step 2 of 5");
    assert!(running["links"]["result"].is_null());
    let early = server.get(&format!("/performance/tasks/{id}/result")).await;
    assert_eq!(early.status, StatusCode::CONFLICT, "{}", early.text());

    probes.gate.open();
    wait_for(&tasks, id, TaskState::Completed).await;
    let done = monitor(&server, id).await;
    assert_eq!(done["progress"], 100);
    assert_eq!(done["message"], "almost");
    assert_eq!(done["result"]["status"], 200);
    assert!(done["finished_at_ms"].as_u64() >= done["started_at_ms"].as_u64());
    let result_link = done["links"]["result"].as_str().unwrap().to_owned();
    // Served as many times as asked, with the request's own body echoed.
    for _ in 0..2 {
        let result = server.get(&result_link).await;
        assert_eq!(result.status, StatusCode::OK);
        assert_eq!(result.text(), "done: report-7");
        assert_eq!(result.header("cache-control"), Some("no-store"));
    }
    assert_eq!(tasks.stats().completed, 1);
}

#[tokio::test]
async fn other_requests_pass_through_with_a_noop_progress() {
    let (server, tasks, _) = serve(AsyncLayer::new()).await;
    let res = server.get("/inline").await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.text(), "deferred=false");
    assert_eq!(res.header("preference-applied"), None);
    // Other preferences aren't respond-async.
    let res = server
        .get_with("/inline", &[("prefer", "return=minimal, wait=5")])
        .await;
    assert_eq!(res.text(), "deferred=false");
    // A deferred GET sees a real one.
    let res = server
        .get_with("/inline", &[("prefer", "respond-async")])
        .await;
    let id = id_of(&res);
    wait_for(&tasks, id, TaskState::Completed).await;
    assert_eq!(tasks.result(id).unwrap().body, "deferred=true");
    assert_eq!(tasks.stats().submitted, 1);
}

#[tokio::test]
async fn with_wait_a_task_that_ends_in_time_is_answered_inline() {
    let (server, tasks, probes) = serve(AsyncLayer::new()).await;
    let req = server
        .request(Method::POST, "/exports")
        .header("prefer", "respond-async, wait=5")
        .body(Full::default())
        .unwrap();
    let res = server.send(req).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    assert_eq!(res.text(), "exported");
    assert_eq!(res.header("preference-applied"), None);
    assert_eq!(tasks.stats().completed, 1);
    // One that doesn't end in time gets its 202 after the wait.
    let req = server
        .request(Method::POST, "/work")
        .header("prefer", "respond-async; x=1, wait=1")
        .body(Full::default())
        .unwrap();
    let started = std::time::Instant::now();
    let res = server.send(req).await;
    assert!(started.elapsed() >= Duration::from_secs(1));
    let id = id_of(&res);
    assert_eq!(res.header("preference-applied"), Some("respond-async"));
    probes.gate.open();
    wait_for(&tasks, id, TaskState::Completed).await;
}

#[tokio::test]
async fn an_always_route_defers_without_the_preference() {
    let layer =
        AsyncLayer::new().route(TaskRoute::new("/exports").methods([Method::POST]).always());
    let (server, tasks, _) = serve(layer).await;
    let req = server
        .request(Method::POST, "/exports")
        .body(Full::default())
        .unwrap();
    let res = server.send(req).await;
    let id = id_of(&res);
    // Not asked for, so not "applied".
    assert_eq!(res.header("preference-applied"), None);
    wait_for(&tasks, id, TaskState::Completed).await;
    assert_eq!(tasks.result(id).unwrap().body, "exported");
    // Another method on the route is answered inline (axum's 405: not
    // a task's 202).
    let get = server.get("/exports").await;
    assert_eq!(get.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(tasks.stats().submitted, 1);
}

#[tokio::test]
async fn a_broad_timeout_route_does_not_hide_a_narrower_always_one() {
    let layer = AsyncLayer::new()
        .route(TaskRoute::new("/**").timeout(Duration::from_secs(5)))
        .route(TaskRoute::new("/exports").always());
    let (server, tasks, _) = serve(layer).await;
    let req = server
        .request(Method::POST, "/exports")
        .body(Full::default())
        .unwrap();
    let id = id_of(&server.send(req).await);
    wait_for(&tasks, id, TaskState::Completed).await;
}

#[test]
#[should_panic(expected = "does nothing")]
fn a_route_that_sets_nothing_is_refused() {
    let _ = AsyncLayer::new().route(TaskRoute::new("/x"));
}

#[test]
#[should_panic(expected = "isn't the root")]
fn the_root_as_the_monitor_path_is_refused() {
    let _ = AsyncLayer::new().monitor_path("/");
}

#[test]
#[should_panic(expected = "retention(0)")]
fn a_zero_retention_is_refused() {
    let _ = AsyncLayer::new().retention(Duration::ZERO);
}

#[tokio::test]
async fn a_task_past_its_timeout_fails_and_its_future_is_dropped() {
    let layer = AsyncLayer::new().route(TaskRoute::new("/hang").timeout(Duration::from_millis(50)));
    let (server, tasks, probes) = serve(layer).await;
    probes.gate.open();
    let id = id_of(&submit(&server, "/hang", "").await);
    wait_for(&tasks, id, TaskState::Failed).await;
    let info = monitor(&server, id).await;
    assert!(
        info["error"].as_str().unwrap().starts_with("timeout"),
        "{info}"
    );
    // Dropped, unless the timeout came before the handler was first
    // polled (then it never held the guard).
    until("the handler's future dropped", || {
        probes.dropped.load(Ordering::SeqCst) || probes.ran.load(Ordering::SeqCst) == 0
    })
    .await;
    let stats = tasks.stats();
    assert_eq!((stats.failed, stats.timed_out), (1, 1));
}

#[tokio::test]
async fn cancelling_a_running_task_drops_its_future() {
    let (server, tasks, probes) = serve(AsyncLayer::new()).await;
    let id = id_of(&submit(&server, "/hang", "").await);
    probes.gate.arrived(1).await;
    let path = format!("/performance/tasks/{id}");
    // The token is needed.
    let res = server
        .send(
            server
                .request(Method::DELETE, &path)
                .body(Full::default())
                .unwrap(),
        )
        .await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    let res = server
        .send(with_token(&server, Method::DELETE, &path, "wrong"))
        .await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    assert_eq!(tasks.get(id).unwrap().state, TaskState::Running);

    let res = server
        .send(with_token(&server, Method::DELETE, &path, TOKEN))
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    assert_eq!(res.json::<Value>()["state"], "cancelled");
    until("the handler's future dropped", || {
        probes.dropped.load(Ordering::SeqCst)
    })
    .await;
    // Cancelling again changes nothing.
    let res = server
        .send(with_token(&server, Method::DELETE, &path, TOKEN))
        .await;
    assert_eq!(res.status, StatusCode::OK);
    let result = server.get(&format!("{path}/result")).await;
    assert_eq!(result.status, StatusCode::CONFLICT);
    assert!(result.text().contains("cancelled"), "{}", result.text());
    until("the slot is free", || tasks.stats().running == 0).await;
    assert_eq!(tasks.stats().cancelled, 1);
}

#[tokio::test]
async fn a_queued_task_cancelled_never_runs() {
    let (server, tasks, probes) = serve(AsyncLayer::new().concurrency(1)).await;
    let first = id_of(&submit(&server, "/work", "1").await);
    probes.gate.arrived(1).await;
    let second = id_of(&submit(&server, "/work", "2").await);
    assert_eq!(tasks.get(second).unwrap().state, TaskState::Pending);
    let path = format!("/performance/tasks/{second}");
    let res = server
        .send(with_token(&server, Method::DELETE, &path, TOKEN))
        .await;
    assert_eq!(res.json::<Value>()["state"], "cancelled");
    probes.gate.open();
    wait_for(&tasks, first, TaskState::Completed).await;
    // Both workers are done: a cancelled task that had started anyway
    // would have counted itself by now.
    until("both workers done", || {
        let s = tasks.stats();
        s.queued == 0 && s.running == 0
    })
    .await;
    assert_eq!(
        probes.ran.load(Ordering::SeqCst),
        1,
        "the cancelled task ran"
    );
    assert_eq!(tasks.get(second).unwrap().state, TaskState::Cancelled);
}

#[tokio::test]
async fn a_full_queue_answers_503_with_retry_after() {
    let (server, tasks, probes) = serve(AsyncLayer::new().concurrency(1).queue(1)).await;
    let running = id_of(&submit(&server, "/work", "a").await);
    probes.gate.arrived(1).await;
    let queued = id_of(&submit(&server, "/work", "b").await);
    let refused = submit(&server, "/work", "c").await;
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
    let after: u64 = refused.header("retry-after").unwrap().parse().unwrap();
    assert!(after >= 1);
    assert_eq!(tasks.stats().rejected, 1);
    // Requests answered inline still pass.
    assert_eq!(server.get("/health").await.text(), "ok");
    probes.gate.open();
    wait_for(&tasks, running, TaskState::Completed).await;
    wait_for(&tasks, queued, TaskState::Completed).await;
    // Room again.
    let again = id_of(&submit(&server, "/work", "d").await);
    wait_for(&tasks, again, TaskState::Completed).await;
}

#[tokio::test]
async fn the_eleventh_task_runs_only_when_one_of_ten_ends() {
    let (server, tasks, probes) = serve(AsyncLayer::new()).await;
    let mut ids = Vec::new();
    for i in 0..10 {
        ids.push(id_of(&submit(&server, "/hang", &i.to_string()).await));
    }
    probes.gate.arrived(10).await;
    let eleventh = id_of(&submit(&server, "/hang", "11").await);
    // Ten slots are taken: it can't have started.
    assert_eq!(tasks.get(eleventh).unwrap().state, TaskState::Pending);
    assert_eq!(tasks.stats().running, 10);
    assert_eq!(tasks.stats().queued, 1);
    assert_eq!(monitor(&server, eleventh).await["state"], "pending");
    tasks.cancel(ids[3]).unwrap();
    probes.gate.arrived(11).await;
    wait_for(&tasks, eleventh, TaskState::Running).await;
    assert_eq!(probes.ran.load(Ordering::SeqCst), 11);
}

#[tokio::test]
async fn finished_tasks_go_after_their_retention() {
    let clock = ManualClock::new();
    let layer = AsyncLayer::new()
        .clock(clock.clone())
        .retention(Duration::from_secs(3600));
    let (server, tasks, probes) = serve(layer).await;
    probes.gate.open();
    let id = id_of(&submit(&server, "/work", "x").await);
    wait_for(&tasks, id, TaskState::Completed).await;
    clock.advance(Duration::from_secs(3599));
    assert_eq!(monitor(&server, id).await["state"], "completed");
    clock.advance(Duration::from_secs(1));
    let gone = server.get(&format!("/performance/tasks/{id}")).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    let gone = server.get(&format!("/performance/tasks/{id}/result")).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    assert_eq!(tasks.stats().kept, 0);
}

#[tokio::test]
async fn the_budget_drops_the_oldest_first() {
    // A finished task weighs its record (about 600 bytes here) and its
    // result: five don't fit in 2,000 bytes, one does.
    let layer = AsyncLayer::new().result_budget(2000);
    let (server, tasks, probes) = serve(layer).await;
    probes.gate.open();
    let mut ids = Vec::new();
    for i in 0..5 {
        let id = id_of(&submit(&server, "/work", &i.to_string()).await);
        until("the task ended", || tasks.stats().completed == i + 1).await;
        ids.push(id);
    }
    assert!(tasks.get(ids[0]).is_none(), "the oldest went");
    assert_eq!(tasks.get(ids[4]).unwrap().state, TaskState::Completed);
    let stats = tasks.stats();
    assert!(stats.kept_bytes <= 2000, "{stats:?}");
    assert!(stats.kept < 5, "{stats:?}");
}

#[tokio::test]
async fn long_methods_and_paths_are_kept_cut() {
    let (server, tasks, probes) = serve(AsyncLayer::new()).await;
    probes.gate.open();
    let path = format!("/work?{}", "q".repeat(30_000));
    let id = id_of(&submit(&server, &path, "").await);
    wait_for(&tasks, id, TaskState::Completed).await;
    let info = tasks.get(id).unwrap();
    assert_eq!(info.path.len(), 1024);
    assert!(tasks.stats().kept_bytes < 4096, "{:?}", tasks.stats());
}

#[tokio::test]
async fn the_monitors_are_never_deferred() {
    let (server, tasks, probes) = serve(AsyncLayer::new()).await;
    probes.gate.open();
    let id = id_of(&submit(&server, "/work", "m").await);
    wait_for(&tasks, id, TaskState::Completed).await;
    // A client that sends the preference on every request still reads
    // its monitor and its result.
    let prefer = [("prefer", "respond-async")];
    let info = server
        .get_with(&format!("/performance/tasks/{id}"), &prefer)
        .await;
    assert_eq!(info.status, StatusCode::OK);
    assert_eq!(info.json::<Value>()["state"], "completed");
    assert_eq!(info.header("referrer-policy"), Some("no-referrer"));
    let result = server
        .get_with(&format!("/performance/tasks/{id}/result"), &prefer)
        .await;
    assert_eq!(result.text(), "done: m");
    assert_eq!(tasks.stats().submitted, 1);
}

#[tokio::test]
async fn a_kept_result_drops_its_cookies_and_connection_fields() {
    let layer = AsyncLayer::new();
    let tasks = layer.handle();
    let report = Report::builder().tasks(tasks.clone()).build();
    let router = Router::new()
        .route(
            "/login",
            post(|| async {
                (
                    [
                        ("set-cookie", "session=abc"),
                        ("connection", "x-hop"),
                        ("x-hop", "1"),
                        ("x-kept", "yes"),
                        ("cdn-cache-control", "max-age=600"),
                        ("expires", "Thu, 01 Dec 2094 16:00:00 GMT"),
                    ],
                    "welcome",
                )
            }),
        )
        .nest_service("/performance", report)
        .layer(layer);
    let server = TestServer::serve(router).await;
    let id = id_of(&submit(&server, "/login", "").await);
    wait_for(&tasks, id, TaskState::Completed).await;
    let result = server.get(&format!("/performance/tasks/{id}/result")).await;
    assert_eq!(result.text(), "welcome");
    assert_eq!(result.header("x-kept"), Some("yes"));
    assert_eq!(result.header("cache-control"), Some("no-store"));
    for gone in ["set-cookie", "x-hop", "cdn-cache-control", "expires"] {
        assert_eq!(result.header(gone), None, "{gone}");
    }
}

#[test]
#[should_panic(expected = "monitor_path")]
fn a_report_that_does_not_serve_the_monitors_fails_to_build() {
    let layer = AsyncLayer::new().monitor_path("/ops/tasks");
    let _ = Report::builder().tasks(layer.handle()).build();
}

/// A GET deferred through the response cache is the client's own
/// answer: the URL stays cacheable for everyone else.
#[cfg(feature = "cache")]
#[tokio::test]
async fn a_deferred_get_does_not_make_its_url_uncacheable() {
    use tower_perf::cache::CacheLayer;
    let layer = AsyncLayer::new();
    let tasks = layer.handle();
    let router = Router::new()
        .route(
            "/cacheable",
            get(|| async { ([("cache-control", "max-age=60")], "fresh") }),
        )
        .layer(layer)
        .layer(CacheLayer::new());
    let server = TestServer::serve(router).await;
    let deferred = server
        .get_with("/cacheable", &[("prefer", "respond-async")])
        .await;
    let id = id_of(&deferred);
    wait_for(&tasks, id, TaskState::Completed).await;
    let first = server.get("/cacheable").await;
    assert_eq!(first.text(), "fresh");
    let second = server.get("/cacheable").await;
    let status = second.header("cache-status").unwrap_or_default();
    assert!(status.contains("hit"), "{status}");
}

#[tokio::test]
async fn a_panicking_handler_fails_its_task_and_the_server_goes_on() {
    let (server, tasks, _) = serve(AsyncLayer::new()).await;
    let id = id_of(&submit(&server, "/panic", "").await);
    wait_for(&tasks, id, TaskState::Failed).await;
    assert_eq!(
        tasks.get(id).unwrap().error.as_deref(),
        Some("the handler panicked")
    );
    assert_eq!(tasks.stats().panicked, 1);
    assert_eq!(server.get("/health").await.text(), "ok");
    let id = id_of(&submit(&server, "/exports", "").await);
    wait_for(&tasks, id, TaskState::Completed).await;
}

#[tokio::test]
async fn a_server_error_fails_the_task_but_keeps_the_answer() {
    let (server, tasks, _) = serve(AsyncLayer::new()).await;
    let id = id_of(&submit(&server, "/broken", "").await);
    wait_for(&tasks, id, TaskState::Failed).await;
    let info = monitor(&server, id).await;
    assert_eq!(
        info["error"],
        "the service answered 500 Internal Server Error"
    );
    let result = server.get(&format!("/performance/tasks/{id}/result")).await;
    assert_eq!(result.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(result.text(), "the database is down");
}

#[tokio::test]
async fn a_result_above_the_limit_fails_and_a_body_above_its_limit_is_refused() {
    let layer = AsyncLayer::new().max_result_size(1024).max_request_body(16);
    let (server, tasks, _) = serve(layer).await;
    let id = id_of(&submit(&server, "/big", "").await);
    wait_for(&tasks, id, TaskState::Failed).await;
    let error = tasks.get(id).unwrap().error.unwrap();
    assert!(error.starts_with("result too large"), "{error}");
    assert_eq!(tasks.stats().too_large, 1);
    let refused = submit(&server, "/work", &"y".repeat(17)).await;
    assert_eq!(refused.status, StatusCode::PAYLOAD_TOO_LARGE);
    // The refused request left no place taken.
    assert_eq!(tasks.stats().queued, 0);
    assert_eq!(tasks.stats().submitted, 1);
}

#[tokio::test]
async fn the_list_needs_the_token_and_filters_by_state() {
    let (server, tasks, probes) = serve(AsyncLayer::new()).await;
    let running = id_of(&submit(&server, "/work", "a").await);
    probes.gate.arrived(1).await;
    let done = id_of(&submit(&server, "/exports", "").await);
    wait_for(&tasks, done, TaskState::Completed).await;

    assert_eq!(
        server.get("/performance/tasks").await.status,
        StatusCode::UNAUTHORIZED
    );
    let all = server
        .send(with_token(
            &server,
            Method::GET,
            "/performance/tasks",
            TOKEN,
        ))
        .await;
    assert_eq!(all.status, StatusCode::OK);
    let all: Value = all.json();
    assert_eq!(all["complete"], true);
    let all = all["tasks"].as_array().unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0]["id"], done.to_string(), "newest first");
    let only = server
        .send(with_token(
            &server,
            Method::GET,
            "/performance/tasks?state=running&limit=5",
            TOKEN,
        ))
        .await;
    let only: Value = only.json();
    let only = only["tasks"].as_array().unwrap();
    assert_eq!(only.len(), 1);
    assert_eq!(only[0]["id"], running.to_string());
    let one = server
        .send(with_token(
            &server,
            Method::GET,
            "/performance/tasks?limit=1",
            TOKEN,
        ))
        .await;
    let one: Value = one.json();
    let one = one["tasks"].as_array().unwrap();
    assert_eq!(one.len(), 1, "the limit holds");
    assert_eq!(one[0]["id"], done.to_string(), "the newest");
    let bad = server
        .send(with_token(
            &server,
            Method::GET,
            "/performance/tasks?state=odd",
            TOKEN,
        ))
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    // Unknown and malformed ids, and methods the monitors don't take.
    let unknown = TaskId::parse(&"0".repeat(32)).unwrap();
    for path in [
        format!("/performance/tasks/{unknown}"),
        format!("/performance/tasks/{unknown}/result"),
        "/performance/tasks/not-an-id".to_owned(),
        format!("/performance/tasks/{running}/other"),
    ] {
        assert_eq!(
            server.get(&path).await.status,
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
    let post = server
        .send(with_token(
            &server,
            Method::POST,
            &format!("/performance/tasks/{running}"),
            TOKEN,
        ))
        .await;
    assert_eq!(post.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(post.header("allow"), Some("GET, HEAD, DELETE"));
    probes.gate.open();
}

#[tokio::test]
async fn the_list_is_disabled_without_a_token() {
    let layer = AsyncLayer::new();
    let tasks = layer.handle();
    let report = Report::builder().tasks(tasks).build();
    let router = Router::new()
        .route("/exports", post(|| async { "x" }))
        .nest_service("/performance", report)
        .layer(layer);
    let server = TestServer::serve(router).await;
    let res = server.get("/performance/tasks").await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    assert!(
        res.text().contains("no token is configured"),
        "{}",
        res.text()
    );
}

#[tokio::test]
async fn shutdown_fails_what_is_left_after_the_grace_period() {
    let (server, tasks, probes) = serve(AsyncLayer::new().concurrency(1)).await;
    let running = id_of(&submit(&server, "/hang", "").await);
    probes.gate.arrived(1).await;
    let queued = id_of(&submit(&server, "/hang", "").await);
    let stopped = tasks.shutdown(Duration::from_millis(20)).await;
    assert_eq!(stopped, 1);
    for id in [running, queued] {
        wait_for(&tasks, id, TaskState::Failed).await;
        let error = tasks.get(id).unwrap().error.unwrap();
        assert!(error.contains("shut down"), "{error}");
    }
    until("the running handler's future dropped", || {
        probes.dropped.load(Ordering::SeqCst)
    })
    .await;
    let refused = submit(&server, "/work", "").await;
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
    // Inline requests are still answered while the server drains.
    assert_eq!(server.get("/health").await.text(), "ok");
}

#[tokio::test]
async fn a_result_encoded_in_a_coding_the_request_refuses_is_not_served() {
    let layer = AsyncLayer::new();
    let tasks = layer.handle();
    let report = Report::builder().tasks(tasks.clone()).build();
    let router = Router::new()
        .route(
            "/gz",
            post(|| async {
                (
                    [("content-encoding", "gzip")],
                    Bytes::from_static(b"\x1f\x8b"),
                )
            }),
        )
        .nest_service("/performance", report)
        .layer(layer);
    let server = TestServer::serve(router).await;
    let id = id_of(&submit(&server, "/gz", "").await);
    wait_for(&tasks, id, TaskState::Completed).await;
    let path = format!("/performance/tasks/{id}/result");
    let refused = server
        .get_with(&path, &[("accept-encoding", "identity")])
        .await;
    assert_eq!(refused.status, StatusCode::NOT_ACCEPTABLE);
    let served = server.get_with(&path, &[("accept-encoding", "gzip")]).await;
    assert_eq!(served.status, StatusCode::OK);
    assert_eq!(served.header("content-encoding"), Some("gzip"));
}

#[tokio::test]
async fn the_summary_and_prometheus_show_the_tasks() {
    let (server, tasks, probes) = serve(AsyncLayer::new()).await;
    probes.gate.open();
    let id = id_of(&submit(&server, "/work", "z").await);
    wait_for(&tasks, id, TaskState::Completed).await;
    let failed = id_of(&submit(&server, "/panic", "").await);
    wait_for(&tasks, failed, TaskState::Failed).await;
    let summary: Value = server.get("/performance/summary").await.json();
    let t = &summary["tasks"];
    assert_eq!(
        (t["submitted"].as_u64(), t["completed"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(t["panicked"], 1);
    assert!(t["run_ms"]["p50"].as_f64().is_some(), "{t}");
    let text = server.get("/performance/metrics").await;
    let text = text.text();
    assert!(
        text.contains("tower_perf_tasks_submitted_total 2"),
        "{text}"
    );
    assert!(
        text.contains("tower_perf_tasks_finished_total{outcome=\"panic\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("tower_perf_tasks_run_duration_seconds{quantile=\"0.5\"}"),
        "{text}"
    );
    support::promtool(text);
}

/// A client that waits gets the handler's own response, cookie included:
/// a cache in front then judges it as it would the inline answer, and
/// keeps no one's cookie-setting response for everyone else.
#[cfg(feature = "cache")]
#[tokio::test]
async fn a_waited_answer_keeps_its_cookie_and_the_cache_keeps_none_of_it() {
    use tower_perf::cache::CacheLayer;
    let layer = AsyncLayer::new();
    let router = Router::new()
        .route(
            "/me",
            get(|| async {
                (
                    [
                        ("cache-control", "max-age=60"),
                        ("set-cookie", "session=alice"),
                    ],
                    "alice's page",
                )
            }),
        )
        .layer(layer)
        .layer(CacheLayer::new());
    let server = TestServer::serve(router).await;
    let waited = server
        .get_with("/me", &[("prefer", "respond-async, wait=5")])
        .await;
    assert_eq!(waited.status, StatusCode::OK, "{}", waited.text());
    assert_eq!(waited.header("set-cookie"), Some("session=alice"));
    let other = server.get("/me").await;
    let status = other.header("cache-status").unwrap_or_default();
    assert!(!status.contains("hit"), "served from the cache: {status}");
}

/// The task layer's own refusal of a client that asked for
/// `respond-async` (here a body over its limit: `413`) is that client's
/// answer: the URL stays cacheable (and coalesced) for everyone else.
#[cfg(feature = "cache")]
#[tokio::test]
async fn a_refused_deferral_does_not_make_its_url_uncacheable() {
    use tower_perf::cache::CacheLayer;
    let router = Router::new()
        .route(
            "/cacheable",
            get(|| async { ([("cache-control", "max-age=60")], "fresh") }),
        )
        .layer(AsyncLayer::new().max_request_body(1))
        .layer(CacheLayer::new());
    let server = TestServer::serve(router).await;
    let req = server
        .request(Method::GET, "/cacheable")
        .header("prefer", "respond-async")
        .body(Full::new(Bytes::from_static(b"too long")))
        .unwrap();
    assert_eq!(server.send(req).await.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(server.get("/cacheable").await.text(), "fresh");
    let second = server.get("/cacheable").await;
    let status = second.header("cache-status").unwrap_or_default();
    assert!(status.contains("hit"), "{status}");
}

/// A request refused while its body was read (`413`) gives back its
/// place: with room for one task, the next one still gets in.
#[tokio::test]
async fn a_refused_body_gives_back_its_place() {
    let layer = AsyncLayer::new()
        .concurrency(1)
        .queue(0)
        .max_request_body(4);
    let (server, tasks, probes) = serve(layer).await;
    probes.gate.open();
    for _ in 0..3 {
        let refused = submit(&server, "/work", "far too long").await;
        assert_eq!(refused.status, StatusCode::PAYLOAD_TOO_LARGE);
    }
    let id = id_of(&submit(&server, "/work", "ok").await);
    wait_for(&tasks, id, TaskState::Completed).await;
}
