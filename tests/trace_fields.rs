//! What the layers tell `tracing`: their decisions as fields of the span
//! tower-http's `TraceLayer` makes with `tower_perf::trace::request_span`,
//! and the events an operator wants.

mod support;

use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use support::TestServer;
use support::spans::{SpanRecord, Spans};
use tower::ServiceBuilder;
use tower_http::trace::TraceLayer;
use tower_perf::cache::CacheLayer;
use tower_perf::compression::CompressionLayer;
use tower_perf::rate_limit::{Quota, RateLimitLayer, RateRule};
use tower_perf::tasks::AsyncLayer;
use tower_perf::timing::TimingLayer;
use tower_perf::trace::{field, request_span};

fn page(n: usize) -> String {
    (0..n).map(|i| char::from(b'a' + (i % 7) as u8)).collect()
}

fn app() -> Router {
    let small = page(4 * 1024);
    let big = page(100 * 1024);
    let stack = ServiceBuilder::new()
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
        .layer(TimingLayer::new())
        .layer(
            RateLimitLayer::new().rule(RateRule::new("pages", Quota::per_minute(2)).path("/small")),
        )
        .layer(CacheLayer::new())
        .layer(CompressionLayer::new());
    let cached = |body: String| {
        move || {
            let body = body.clone();
            async move {
                (
                    [
                        ("cache-control", "max-age=60"),
                        ("content-type", "text/plain"),
                    ],
                    body,
                )
            }
        }
    };
    Router::new()
        .route("/small", get(cached(small)))
        .route("/big", get(cached(big)))
        .layer(stack)
}

/// The request spans so far; waits (up to 5 s) until `ready` holds of
/// them: a streamed body's byte counts are recorded when the server drops
/// it, just after the client has read it.
async fn spans_when(spans: &Spans, ready: impl Fn(&[SpanRecord]) -> bool) -> Vec<SpanRecord> {
    for _ in 0..500 {
        let s = spans.named("HTTP request");
        if ready(&s) {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    spans.named("HTTP request")
}

#[tokio::test]
async fn each_layer_records_its_decision_on_the_request_span() {
    let spans = Spans::default();
    let _guard = spans.capture();
    let s = TestServer::serve(app()).await;
    let gzip = [("accept-encoding", "gzip")];
    for _ in 0..4 {
        s.get_with("/small", &gzip).await;
    }
    let res = s.get_with("/big", &gzip).await;
    assert_eq!(res.header("content-encoding"), Some("gzip"));

    let all = spans_when(&spans, |s| {
        s.len() == 5 && s[4].get(field::COMPRESSION_BYTES_OUT).is_some()
    })
    .await;
    assert_eq!(all.len(), 5, "{all:#?}");
    let [first, second, third, fourth, big] = &all[..] else {
        unreachable!()
    };
    // A miss, compressed whole: every layer said its part.
    assert_eq!(first.get(field::HTTP_ROUTE), Some("/small"), "{first:#?}");
    assert_eq!(first.get(field::HTTP_RESPONSE_STATUS_CODE), Some("200"));
    assert_eq!(first.get(field::CACHE_RESULT), Some("miss"));
    assert_eq!(first.get(field::COMPRESSION_CODING), Some("gzip"));
    assert_eq!(first.get(field::COMPRESSION_BYTES_IN), Some("4096"));
    let out: u64 = first
        .get(field::COMPRESSION_BYTES_OUT)
        .unwrap()
        .parse()
        .unwrap();
    assert!(out > 0 && out < 4096, "{out}");
    assert_eq!(first.get(field::RATE_LIMIT_POLICY), Some("pages"));
    assert_eq!(first.get(field::RATE_LIMIT_DECISION), Some("allowed"));
    // A hit: nothing compressed again.
    assert_eq!(second.get(field::CACHE_RESULT), Some("hit"), "{second:#?}");
    assert_eq!(second.get(field::COMPRESSION_CODING), None);
    assert_eq!(second.get(field::RATE_LIMIT_DECISION), Some("allowed"));
    // Over the quota: refused before the cache.
    for over in [third, fourth] {
        assert_eq!(
            over.get(field::RATE_LIMIT_DECISION),
            Some("limited"),
            "{over:#?}"
        );
        assert_eq!(over.get(field::HTTP_RESPONSE_STATUS_CODE), Some("429"));
        assert_eq!(over.get(field::CACHE_RESULT), None);
    }
    // Streamed: the bytes land when the body ends.
    assert_eq!(big.get(field::CACHE_RESULT), Some("miss"), "{big:#?}");
    assert_eq!(big.get(field::COMPRESSION_CODING), Some("gzip"));
    assert_eq!(big.get(field::COMPRESSION_BYTES_IN), Some("102400"));
    assert_eq!(big.get(field::RATE_LIMIT_DECISION), None, "no rule on /big");

    // The key's burst ran out once: one event, not one per 429.
    let reached: Vec<_> = spans
        .events()
        .into_iter()
        .filter(|e| e.message.starts_with("rate limit reached"))
        .collect();
    assert_eq!(reached.len(), 1, "{reached:#?}");
    assert_eq!(reached[0].level, tracing::Level::DEBUG);
    for kv in [
        ("policy", "pages"),
        ("key", "127.0.0.1"),
        ("key_kind", "address"),
        ("shadow", "false"),
    ] {
        assert!(
            reached[0].fields.contains(&(kv.0.into(), kv.1.into())),
            "{kv:?}: {reached:#?}"
        );
    }
    // The request spans name their route in `otel.name`, and a made-up
    // method is `_OTHER`.
    assert_eq!(
        first.get(field::OTEL_NAME),
        Some("GET /small"),
        "{first:#?}"
    );
}

#[tokio::test]
async fn the_request_span_speaks_opentelemetry() {
    let spans = Spans::default();
    let _guard = spans.capture();
    let req = http::Request::builder()
        .method(http::Method::from_bytes(b"PROPFIND").unwrap())
        .uri("/dav")
        .body(())
        .unwrap();
    drop(request_span(&req));
    let s = &spans.named("HTTP request")[0];
    assert_eq!(s.get("http.request.method"), Some("_OTHER"), "{s:#?}");
    assert_eq!(s.get("http.request.method_original"), Some("PROPFIND"));
    assert_eq!(s.get("otel.kind"), Some("server"));
    assert_eq!(s.get("otel.name"), Some("_OTHER"));
    assert_eq!(s.get("network.protocol.version"), Some("1.1"));
    assert_eq!(s.get("url.path"), Some("/dav"));
}

#[tokio::test]
async fn a_deferred_request_records_its_task_and_the_task_runs_in_its_own_span() {
    let spans = Spans::default();
    let _guard = spans.capture();
    let app = Router::new()
        .route(
            "/export",
            post(|| async {
                tracing::info!("exporting");
                "done"
            }),
        )
        .layer(
            ServiceBuilder::new()
                .layer(TraceLayer::new_for_http().make_span_with(request_span))
                .layer(AsyncLayer::new()),
        );
    let s = TestServer::serve(app).await;
    let req = s
        .request(http::Method::POST, "/export")
        .header("prefer", "respond-async")
        .body(Default::default())
        .unwrap();
    let res = s.send(req).await;
    assert_eq!(res.status, http::StatusCode::ACCEPTED);
    let location = res.header("location").unwrap().to_owned();
    let id = location.rsplit('/').next().unwrap();
    let request = &spans.named("HTTP request")[0];
    assert_eq!(request.get(field::TASK_ID), Some(id), "{request:#?}");
    // The handler's event comes from inside the task's span, which
    // follows from the request's.
    let exporting = tokio::time::timeout(support::gate::DEADLINE, async {
        loop {
            if let Some(e) = spans
                .events()
                .into_iter()
                .find(|e| e.message == "exporting")
            {
                return e;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the handler ran");
    assert_eq!(
        exporting.span.as_deref(),
        Some("tower_perf.task"),
        "{exporting:#?}"
    );
    let task = spans.named("tower_perf.task");
    assert_eq!(task.len(), 1, "{task:#?}");
    assert_eq!(task[0].get(field::TASK_ID), Some(id));
    assert_eq!(task[0].follows, [request.id], "{task:#?}");
}
