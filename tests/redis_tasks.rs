//! Deferred requests on two replicas sharing their task records through
//! a real Redis: either replica answers a task's monitor, result, list
//! and cancel; a cancel reaches the replica that runs the task; with
//! Redis unreachable each replica still answers for its own tasks.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::http::{Method, StatusCode};
use axum::routing::post;
use http_body_util::Full;
use serde_json::Value;
use support::gate::{Gate, until};
use support::redis::{free_port, prefix, redis_url};
use support::{TestResponse, TestServer};
use tower_perf::report::Report;
use tower_perf::tasks::{AsyncLayer, RedisTasks, TaskId, TaskProgress, TaskState, TasksHandle};

const TOKEN: &str = "s3cret";

struct DropGuard(Arc<AtomicBool>);

impl Drop for DropGuard {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

struct Replica {
    server: TestServer,
    tasks: TasksHandle,
}

/// A replica whose records go to `url` under `prefix`; its handlers stop
/// at `gate`, and `/hang`'s sets `dropped` when its future goes.
async fn replica(url: &str, prefix: &str, gate: &Gate, dropped: &Arc<AtomicBool>) -> Replica {
    let shared = RedisTasks::new(url, prefix)
        .unwrap()
        .timeout(Duration::from_millis(200));
    let layer = AsyncLayer::new()
        .retention(Duration::from_secs(60))
        .redis(shared);
    let tasks = layer.handle();
    let report = Report::builder().tasks(tasks.clone()).token(TOKEN).build();
    let g = gate.clone();
    let work = move |progress: TaskProgress, body: Bytes| {
        let g = g.clone();
        async move {
            progress.set(40, "step 2 of 5");
            g.pass().await;
            format!("done: {}", String::from_utf8_lossy(&body))
        }
    };
    let (g, d) = (gate.clone(), dropped.clone());
    let hang = move || {
        let (g, d) = (g.clone(), d.clone());
        async move {
            let _guard = DropGuard(d);
            g.pass().await;
            std::future::pending::<()>().await;
            "never"
        }
    };
    let router = Router::new()
        .route("/work", post(work))
        .route("/hang", post(hang))
        .nest_service("/performance", report)
        .layer(layer);
    Replica {
        server: TestServer::serve(router).await,
        tasks,
    }
}

async fn submit(server: &TestServer, path: &str, body: &str) -> TaskId {
    let req = server
        .request(Method::POST, path)
        .header("prefer", "respond-async")
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap();
    let res = server.send(req).await;
    assert_eq!(res.status, StatusCode::ACCEPTED, "{}", res.text());
    let location = res.header("location").unwrap();
    TaskId::parse(location.rsplit('/').next().unwrap()).unwrap()
}

fn with_token(server: &TestServer, method: Method, path: &str) -> http::Request<Full<Bytes>> {
    server
        .request(method, path)
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(Full::default())
        .unwrap()
}

/// Polls `path` on `server` until its JSON satisfies `cond`; the last
/// answer.
async fn poll_until(
    server: &TestServer,
    path: &str,
    what: &str,
    cond: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + support::gate::DEADLINE;
    loop {
        let res: TestResponse = server.get(path).await;
        if res.status == StatusCode::OK {
            let v: Value = res.json();
            if cond(&v) {
                return v;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still waiting after {:?}: {what} (last: {} {})",
            support::gate::DEADLINE,
            res.status,
            res.text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn either_replica_answers_for_a_task_the_other_runs() {
    answer_for_each_other(&redis_url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn either_replica_answers_through_a_cluster() {
    answer_for_each_other(&support::cluster::cluster_url()).await;
}

async fn answer_for_each_other(url: &str) {
    let (url, prefix) = (url.to_owned(), prefix("tasks-read"));
    let (gate, dropped) = (Gate::new(), Arc::new(AtomicBool::new(false)));
    let a = replica(&url, &prefix, &gate, &dropped).await;
    let b = replica(&url, &prefix, &gate, &dropped).await;
    let id = submit(&a.server, "/work", "from-a").await;
    gate.arrived(1).await;
    let monitor = format!("/performance/tasks/{id}");
    // B reads A's record, progress included (written twice a second).
    let running = poll_until(&b.server, &monitor, "B sees the progress", |v| {
        v["state"] == "running" && v["progress"] == 40
    })
    .await;
    assert_eq!(running["message"], "step 2 of 5");
    assert!(b.tasks.get(id).is_none(), "B doesn't run it");
    gate.open();
    let done = poll_until(&b.server, &monitor, "B sees it completed", |v| {
        v["state"] == "completed"
    })
    .await;
    let result = b
        .server
        .get(done["links"]["result"].as_str().unwrap())
        .await;
    assert_eq!(result.status, StatusCode::OK);
    assert_eq!(result.text(), "done: from-a");
    // B's list holds A's task, and says it is complete.
    let list = b
        .server
        .send(with_token(&b.server, Method::GET, "/performance/tasks"))
        .await;
    let list: Value = list.json();
    assert_eq!(list["complete"], true);
    assert!(
        list["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["id"] == id.to_string()),
        "{list}"
    );
    assert!(a.tasks.stats().redis.unwrap().written > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_on_one_replica_reaches_the_one_that_runs_the_task() {
    cancel_reaches_the_runner(&redis_url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_reaches_the_other_replica_through_a_cluster() {
    cancel_reaches_the_runner(&support::cluster::cluster_url()).await;
}

async fn cancel_reaches_the_runner(url: &str) {
    let (url, prefix) = (url.to_owned(), prefix("tasks-cancel"));
    let (gate, dropped) = (Gate::new(), Arc::new(AtomicBool::new(false)));
    let a = replica(&url, &prefix, &gate, &dropped).await;
    let b = replica(&url, &prefix, &gate, &dropped).await;
    // Both replicas listen for cancels before one is sent.
    let mut conn = support::cluster::admin(&url).await;
    let pattern = format!("{prefix}:cancel:*");
    let mut listening = 0;
    let deadline = tokio::time::Instant::now() + support::gate::DEADLINE;
    while listening < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{listening} subscribers"
        );
        // On a cluster, shard channels (every node asked).
        let kind = if url.contains(',') {
            "SHARDCHANNELS"
        } else {
            "CHANNELS"
        };
        let channels: Vec<String> = redis::cmd("PUBSUB")
            .arg(kind)
            .arg(&pattern)
            .query_async(&mut conn)
            .await
            .unwrap();
        listening = channels.len();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let id = submit(&a.server, "/hang", "").await;
    gate.arrived(1).await;
    let monitor = format!("/performance/tasks/{id}");
    poll_until(&b.server, &monitor, "B sees it running", |v| {
        v["state"] == "running"
    })
    .await;
    let res = b
        .server
        .send(with_token(&b.server, Method::DELETE, &monitor))
        .await;
    assert!(
        matches!(res.status, StatusCode::OK | StatusCode::ACCEPTED),
        "{} {}",
        res.status,
        res.text()
    );
    until("A dropped the handler's future", || {
        dropped.load(Ordering::SeqCst)
    })
    .await;
    assert_eq!(a.tasks.get(id).unwrap().state, TaskState::Cancelled);
    poll_until(&b.server, &monitor, "B sees it cancelled", |v| {
        v["state"] == "cancelled"
    })
    .await;
    let stats = a.tasks.stats().redis.unwrap();
    assert_eq!(stats.cancels_received, 1);
    assert_eq!(b.tasks.stats().redis.unwrap().cancels_sent, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_unreachable_each_replica_answers_for_its_own() {
    // A port nobody listens on: connections are refused at once.
    let url = format!("redis://127.0.0.1:{}", free_port());
    let (gate, dropped) = (Gate::new(), Arc::new(AtomicBool::new(false)));
    let a = replica(&url, "tasks-down", &gate, &dropped).await;
    let b = replica(&url, "tasks-down", &gate, &dropped).await;
    gate.open();
    let id = submit(&a.server, "/work", "alone").await;
    until("A's task completed", || {
        a.tasks
            .get(id)
            .is_some_and(|t| t.state == TaskState::Completed)
    })
    .await;
    let monitor = format!("/performance/tasks/{id}");
    let own = a.server.get(&monitor).await;
    assert_eq!(own.status, StatusCode::OK);
    let result = a.server.get(&format!("{monitor}/result")).await;
    assert_eq!(result.text(), "done: alone");
    // B can't tell: it says so rather than "no such task".
    let other = b.server.get(&monitor).await;
    assert_eq!(
        other.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        other.text()
    );
    let list = a
        .server
        .send(with_token(&a.server, Method::GET, "/performance/tasks"))
        .await;
    let list: Value = list.json();
    assert_eq!(list["complete"], false, "{list}");
    assert_eq!(list["tasks"].as_array().unwrap().len(), 1, "{list}");
    // The breaker keeps the dead Redis off the request path: more reads
    // of another replica's task are refused at once, not waited for.
    for _ in 0..10 {
        let other = b.server.get(&monitor).await;
        assert_eq!(other.status, StatusCode::SERVICE_UNAVAILABLE);
    }
    let stats = b.tasks.stats().redis.unwrap();
    assert!(stats.breaker.short_circuited > 0, "{stats:?}");
    let a_stats = a.tasks.stats().redis.unwrap();
    assert!(
        a_stats.errors + a_stats.timeouts + a_stats.breaker.short_circuited > 0,
        "A's writes failed: {a_stats:?}"
    );
    assert_eq!(a_stats.written, 0);
}
