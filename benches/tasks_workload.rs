//! A fixed workload for instruction counts (benches/callgrind.sh): `N`
//! requests without `Prefer: respond-async` through the task layer (no
//! route, or an `always` route they don't match) or to the bare service,
//! bodies read to the end.
//!
//! Run: `cargo bench --bench tasks_workload -- <bare|layer|routed> <n>`.
#![allow(missing_docs)]

mod common;

use std::convert::Infallible;

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body_util::Full;
use tower::{ServiceBuilder, service_fn};
use tower_perf::tasks::{AsyncLayer, TaskRoute};

fn request(_: u32) -> Request<Full<Bytes>> {
    Request::get("/api/v1/items")
        .header("host", "example.com")
        .header("accept-encoding", "gzip")
        .body(Full::default())
        .expect("a valid request")
}

async fn ok<B>(_req: Request<B>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::new(Full::from(Bytes::from_static(b"ok"))))
}

fn main() {
    let Some((contender, n)) = common::workload_args("tasks_workload <bare|layer|routed> <n>")
    else {
        return;
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let _entered = rt.enter();
    match contender.as_str() {
        "bare" => common::drive(&rt, &service_fn(ok::<Full<Bytes>>), n, request),
        "layer" => {
            let svc = ServiceBuilder::new()
                .layer(AsyncLayer::new())
                .service(service_fn(ok));
            common::drive(&rt, &svc, n, request)
        }
        "routed" => {
            let route = TaskRoute::new("/api/v1/exports")
                .methods([Method::POST])
                .always();
            let svc = ServiceBuilder::new()
                .layer(AsyncLayer::new().route(route))
                .service(service_fn(ok));
            common::drive(&rt, &svc, n, request)
        }
        other => eprintln!("unknown contender {other}"),
    }
}
