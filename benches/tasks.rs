//! What AsyncLayer costs a request it doesn't defer (no `Prefer:
//! respond-async`): the layer around a `service_fn` beside the same
//! service alone, with no route, with an `always` route the request
//! doesn't match, and with a `Prefer` field that asks for something else.
//! The layer's own cost is the difference to "bare" (target: 50 ns).
//!
//! Run: `cargo bench --bench tasks`.
#![allow(missing_docs)]

use std::convert::Infallible;
use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use futures_util::FutureExt;
use http::{Method, Request, Response};
use http_body_util::Full;
use tower::{Service, ServiceBuilder, service_fn};
use tower_perf::tasks::{AsyncLayer, TaskRoute};

fn request(prefer: bool) -> Request<Full<Bytes>> {
    let mut req = Request::get("/api/v1/items")
        .header("host", "example.com")
        .header("accept-encoding", "gzip")
        .header("user-agent", "bench");
    if prefer {
        req = req.header("prefer", "return=minimal");
    }
    req.body(Full::default()).unwrap()
}

async fn ok<B>(_req: Request<B>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::new(Full::from(Bytes::from_static(b"ok"))))
}

/// One request through `svc`, its future polled once (every service here
/// answers at once).
fn call<S, B>(svc: &mut S, prefer: bool) -> Response<B>
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>, Error = Infallible>,
{
    std::future::poll_fn(|cx| svc.poll_ready(cx))
        .now_or_never()
        .expect("ready at once")
        .unwrap();
    svc.call(request(prefer))
        .now_or_never()
        .expect("ready at once")
        .unwrap()
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _entered = rt.enter();
    let mut bare = service_fn(ok::<Full<Bytes>>);
    let mut plain = ServiceBuilder::new()
        .layer(AsyncLayer::new())
        .service(service_fn(ok));
    let mut routed = ServiceBuilder::new()
        .layer(
            AsyncLayer::new().route(
                TaskRoute::new("/api/v1/exports")
                    .methods([Method::POST])
                    .always(),
            ),
        )
        .service(service_fn(ok));
    let mut group = c.benchmark_group("tasks-pass-through");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    group.bench_function("bare service", |b| {
        b.iter(|| black_box(call(&mut bare, false)))
    });
    group.bench_function("AsyncLayer, no route", |b| {
        b.iter(|| black_box(call(&mut plain, false)))
    });
    group.bench_function("AsyncLayer, an always route not matched", |b| {
        b.iter(|| black_box(call(&mut routed, false)))
    });
    group.bench_function("bare service, Prefer: return=minimal", |b| {
        b.iter(|| black_box(call(&mut bare, true)))
    });
    group.bench_function("AsyncLayer, Prefer: return=minimal", |b| {
        b.iter(|| black_box(call(&mut plain, true)))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
