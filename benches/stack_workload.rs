//! A fixed workload for instruction counts (benches/callgrind.sh): `N`
//! cache misses (distinct URLs, each stored) through the example server's
//! whole stack, or its bare handlers, bodies collected: the load test's
//! "cache miss" path without the network. The `-health` contenders send
//! `GET /health` instead (a 2-byte `no-cache` answer: the pass-through
//! path of issue 21); `full-health-stored` with the cache storing and
//! revalidating it, as `CacheLayer::store_validated(true)` does.
//! `floor-health` is the bare handlers under seven layers that do no
//! work of their own: six that each write one of the fields the full
//! stack's `/health` answer carries (static values) and one that maps the
//! request body, as the stack's decompression does. What layering alone
//! costs.
//!
//! The example server's global allocator (mimalloc) comes with it: the
//! counts are the server's. Counts published before issue 21's second
//! part were taken with glibc's allocator.
//!
//! Run: `cargo bench --bench stack_workload -- <bare|full|bare-health|full-health|full-health-stored|floor-health> <n>`.
#![allow(missing_docs)]

mod common;

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::ConnectInfo;
use http::Request;

#[allow(dead_code, unreachable_pub)]
#[path = "../examples/server.rs"]
mod server;

fn request(i: u32, health: bool) -> Request<Body> {
    let uri = if health {
        "/health".to_owned()
    } else {
        format!("/api/v1/items/{}?r={i}", i % 55 + 1)
    };
    let mut req = Request::get(uri)
        .header("host", "bench.test")
        .body(Body::empty())
        .expect("a valid request");
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 4000))));
    req
}

/// Seven layers around the bare router that do no work of their own: six
/// write one of the fields the full stack's `/health` answer carries
/// (static values), one maps the request body.
fn floor(app: axum::Router) -> axum::Router {
    use http::HeaderValue;
    use http::header::{CACHE_CONTROL, DATE, ETAG, HeaderName, VARY};
    fn field(
        name: HeaderName,
        value: &'static str,
    ) -> impl Fn(axum::response::Response) -> axum::response::Response + Clone {
        move |mut r| {
            r.headers_mut()
                .insert(name.clone(), HeaderValue::from_static(value));
            r
        }
    }
    app.layer(
        tower::ServiceBuilder::new()
            .map_response(field(HeaderName::from_static("x-timing"), "1"))
            .map_response(field(
                HeaderName::from_static("cache-status"),
                "tower-perf; fwd=uri-miss",
            ))
            .map_response(field(DATE, "Mon, 30 Nov 2026 20:44:24 GMT"))
            .map_response(field(VARY, "accept-encoding, available-dictionary"))
            .map_response(field(ETAG, "\"707da546ca9349c738af4cfed25a8222\""))
            .map_response(field(CACHE_CONTROL, "no-cache"))
            .map_request(|req: http::Request<Body>| req.map(Body::new)),
    )
}

fn main() {
    let Some((contender, n)) = common::workload_args(
        "stack_workload <bare|full|bare-health|full-health|full-health-stored|floor-health> <n>",
    ) else {
        return;
    };
    let health = contender.ends_with("-health") || contender.ends_with("-health-stored");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let config = server::DemoConfig {
        // No 429s: every request is a miss through every layer.
        rate_limit_per_min: Some(1_000_000_000),
        bare: contender.starts_with("bare") || contender.starts_with("floor"),
        ..server::DemoConfig::default()
    };
    let known = [
        "bare",
        "full",
        "bare-health",
        "full-health",
        "full-health-stored",
        "floor-health",
    ];
    if !known.contains(&contender.as_str()) {
        eprintln!("unknown contender {contender}");
        return;
    }
    let app = if contender == "floor-health" {
        rt.block_on(async { floor(server::app_with(config)) })
    } else if contender == "full-health-stored" {
        let cache = server::demo_cache().store_validated(true);
        rt.block_on(async { server::app_with_cache(config, cache) })
    } else {
        rt.block_on(async { server::app_with(config) })
    };
    // Requests outside the counted ones warm the stack up (for the miss
    // contenders, URLs they never ask for; `/health` is one URL).
    common::drive(&rt, &app, 100, |i| request(1_000_000 + i, health));
    common::drive(&rt, &app, n, |i| request(i, health))
}
