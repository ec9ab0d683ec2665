//! A fixed workload for instruction counts (benches/callgrind.sh): `N`
//! requests for a stored 10 KiB entry through the cache, or to the bare
//! origin, bodies collected.
//!
//! Run: `cargo bench --bench cache_workload -- <bare|hit> <n>`.
#![allow(missing_docs)]

mod common;

use bytes::Bytes;
use http::{Request, header};
use http_body_util::Full;
use tower::ServiceBuilder;
use tower_perf::cache::CacheLayer;

fn request(_: u32) -> Request<Full<Bytes>> {
    Request::get("/api/v1/items")
        .header(header::HOST, "example.com")
        .header(header::ACCEPT_ENCODING, "gzip")
        .body(Full::default())
        .expect("a valid request")
}

fn main() {
    let Some((contender, n)) = common::workload_args("cache_workload <bare|hit> <n>") else {
        return;
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let body = common::json(10 * 1024);
    let origin = common::cacheable_origin(body);
    match contender.as_str() {
        "bare" => common::drive(&rt, &origin, n, request),
        "hit" => {
            let cached = ServiceBuilder::new()
                .layer(CacheLayer::new())
                .service(origin);
            // Stored by a first request, outside the count.
            common::drive(&rt, &cached, 1, request);
            common::drive(&rt, &cached, n, request)
        }
        other => eprintln!("unknown contender {other}"),
    }
}
