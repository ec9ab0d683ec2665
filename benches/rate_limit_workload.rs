//! A fixed workload for instruction counts (benches/callgrind.sh): `N`
//! requests through one contender, bodies collected (the clock's one-off
//! calibration stays out of the count).
//!
//! Run: `cargo bench --bench rate_limit_workload -- <bare|fields|quiet|tower_governor|tower_governor-headers> <n>`.
//! `tower_governor-headers` turns on its `x-ratelimit-*` fields
//! (`use_headers`): the peer of `fields`.
#![allow(missing_docs)]

mod common;

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::body::Body;
use axum::extract::ConnectInfo;
use http::{Request, Response};
use tower::{ServiceBuilder, service_fn};
use tower_perf::rate_limit::{Quota, RateLimitLayer, RateRule};

fn request(i: u32) -> Request<Body> {
    let mut req = Request::get("/api/items")
        .body(Body::empty())
        .expect("a valid request");
    let ip = IpAddr::V4(Ipv4Addr::from(0x0A00_0000 + i % 1000));
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::new(ip, 4000)));
    req
}

fn main() {
    let Some((contender, n)) = common::workload_args(
        "rate_limit_workload <bare|fields|quiet|tower_governor|tower_governor-headers> <n>",
    ) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    let handler = service_fn(|_req: Request<Body>| async {
        Ok::<_, Infallible>(Response::new(Body::from("ok")))
    });
    let ours = |fields: bool| {
        ServiceBuilder::new()
            .layer(
                RateLimitLayer::new()
                    .rule(RateRule::new("api", Quota::per_second(1_000_000_000)))
                    .headers(fields),
            )
            .service(handler)
    };
    match contender.as_str() {
        "bare" => common::drive(&rt, &handler, n, request),
        "fields" => common::drive(&rt, &ours(true), n, request),
        "quiet" => common::drive(&rt, &ours(false), n, request),
        "tower_governor" => {
            let config = common::governor_quota().finish().expect("a valid quota");
            let theirs = ServiceBuilder::new()
                .layer(tower_governor::GovernorLayer::new(config))
                .service(handler);
            common::drive(&rt, &theirs, n, request)
        }
        "tower_governor-headers" => {
            let config = common::governor_quota()
                .use_headers()
                .finish()
                .expect("a valid quota");
            let theirs = ServiceBuilder::new()
                .layer(tower_governor::GovernorLayer::new(config))
                .service(handler);
            common::drive(&rt, &theirs, n, request)
        }
        other => eprintln!("unknown contender {other}"),
    }
}
