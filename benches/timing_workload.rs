//! A fixed workload for instruction counts (benches/callgrind.sh): `N`
//! requests through the timing layer or the bare service, bodies read to
//! the end.
//!
//! Run: `cargo bench --bench timing_workload -- <bare|timed|sub-timings|otel> <n>`
//! (`otel`: also recording into OpenTelemetry's SDK, with `--features otel`).
#![allow(missing_docs)]

mod common;

use std::convert::Infallible;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use tower::{ServiceBuilder, service_fn};
use tower_perf::timing::TimingLayer;

fn request(_: u32) -> Request<Full<Bytes>> {
    Request::get("/api/v1/items")
        .body(Full::default())
        .expect("a valid request")
}

fn main() {
    let Some((contender, n)) =
        common::workload_args("timing_workload <bare|timed|sub-timings|otel> <n>")
    else {
        return;
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    let inner = service_fn(|_req: Request<Full<Bytes>>| async {
        Ok::<_, Infallible>(Response::new(Full::from(Bytes::from_static(b"ok"))))
    });
    let timed = |sub_timings: bool| {
        ServiceBuilder::new()
            .layer(TimingLayer::new().sub_timings(sub_timings))
            .service(inner)
    };
    match contender.as_str() {
        "bare" => common::drive(&rt, &inner, n, request),
        "timed" => common::drive(&rt, &timed(false), n, request),
        "sub-timings" => common::drive(&rt, &timed(true), n, request),
        #[cfg(feature = "otel")]
        "otel" => {
            use opentelemetry::metrics::MeterProvider;
            let exporter = opentelemetry_sdk::metrics::InMemoryMetricExporter::default();
            let provider = opentelemetry_sdk::metrics::SdkMeterProvider::builder()
                .with_reader(opentelemetry_sdk::metrics::PeriodicReader::builder(exporter).build())
                .build();
            let svc = ServiceBuilder::new()
                .layer(TimingLayer::new().meter(&provider.meter("bench")))
                .service(inner);
            common::drive(&rt, &svc, n, request);
        }
        other => eprintln!("unknown contender {other}"),
    }
}
