//! OpenTelemetry's HTTP server instruments (feature `otel`): what the
//! layer records into a [`Meter`] the application gives it, named,
//! bucketed and attributed as the stable HTTP semantic conventions say.

use std::sync::Arc;

use http::Request;
use opentelemetry::KeyValue;
use opentelemetry::metrics::{Histogram, Meter, UpDownCounter};

use super::registry::{OTHER, UNMATCHED};
use super::route::{Cell, End, ErrorType, Sizes};

/// OpenTelemetry's advised bounds for `http.server.request.duration`, in
/// seconds (the Prometheus text uses the same).
use super::prometheus::PROM_BOUNDS;

/// The instruments, made once per layer.
#[derive(Debug)]
pub(super) struct Instruments {
    duration: Histogram<f64>,
    active: UpDownCounter<i64>,
    request_size: Histogram<u64>,
    response_size: Histogram<u64>,
    /// `url.scheme` when the request's URI has none (a server sees
    /// origin-form targets): `http` unless the layer was told.
    scheme: &'static str,
}

impl Instruments {
    pub(super) fn new(meter: &Meter, scheme: &'static str) -> Arc<Self> {
        Arc::new(Self {
            duration: meter
                .f64_histogram("http.server.request.duration")
                .with_unit("s")
                .with_description("Duration of HTTP server requests.")
                .with_boundaries(PROM_BOUNDS.to_vec())
                .build(),
            active: meter
                .i64_up_down_counter("http.server.active_requests")
                .with_unit("{request}")
                .with_description("Number of active HTTP server requests.")
                .build(),
            request_size: meter
                .u64_histogram("http.server.request.body.size")
                .with_unit("By")
                .with_description("Size of HTTP server request bodies.")
                .build(),
            response_size: meter
                .u64_histogram("http.server.response.body.size")
                .with_unit("By")
                .with_description("Size of HTTP server response bodies.")
                .build(),
            scheme,
        })
    }

    /// Counts the request as active; the returned record ends it.
    pub(super) fn start<B>(self: &Arc<Self>, req: &Request<B>, cell: &Cell) -> Box<InFlight> {
        let method = KeyValue::new(
            "http.request.method",
            crate::trace::semconv_method(req.method()),
        );
        let scheme = KeyValue::new(
            "url.scheme",
            match req.uri().scheme_str() {
                Some("https") => "https",
                Some("http") => "http",
                _ => self.scheme,
            },
        );
        let route = cell.otel_route().clone();
        let attributes = [method, scheme];
        self.active.add(1, &attributes);
        Box::new(InFlight {
            instruments: self.clone(),
            attributes,
            route,
        })
    }
}

/// The `http.route` attribute of a route label: none for the requests no
/// route matched, nor for those folded past the cap.
pub(super) fn route_attribute(label: Arc<str>) -> Option<KeyValue> {
    (*label != *UNMATCHED && *label != *OTHER).then(|| KeyValue::new("http.route", label))
}

/// One request's attributes, kept from its arrival to its end.
#[derive(Debug)]
pub(super) struct InFlight {
    instruments: Arc<Instruments>,
    /// `http.request.method` and `url.scheme`: the active-requests
    /// counter's attributes, raised and lowered with the same set.
    attributes: [KeyValue; 2],
    route: Option<KeyValue>,
}

impl InFlight {
    /// Records a request that ended after `ns` nanoseconds, as `how` says.
    pub(super) fn end(&self, ns: u64, status: u16, how: End, sizes: Sizes) {
        let i = &self.instruments;
        i.active.add(-1, &self.attributes);
        // At most five, on the stack: method, scheme, then route, status
        // and error type where they apply.
        let [method, scheme] = &self.attributes;
        let mut attributes = [
            method.clone(),
            scheme.clone(),
            method.clone(),
            method.clone(),
            method.clone(),
        ];
        let mut n = 2;
        let mut push = |kv: KeyValue| {
            attributes[n] = kv;
            n += 1;
        };
        if let Some(route) = &self.route {
            push(route.clone());
        }
        if how != End::NoResponse {
            push(KeyValue::new(
                "http.response.status_code",
                i64::from(status),
            ));
        }
        // As the Prometheus text says it.
        match how.error_type(status) {
            Some(ErrorType::Other) => push(KeyValue::new("error.type", "_OTHER")),
            Some(ErrorType::Status(s)) => push(KeyValue::new("error.type", s.to_string())),
            None => {}
        }
        let attributes = &attributes[..n];
        i.duration.record(ns as f64 / 1e9, attributes);
        if let Some(n) = sizes.request {
            i.request_size.record(n, attributes);
        }
        if how != End::NoResponse {
            i.response_size.record(sizes.response, attributes);
        }
    }

    /// A request dropped before its end: no longer active, and (as in
    /// the statistics) kept out of the durations.
    pub(super) fn abort(&self) {
        self.instruments.active.add(-1, &self.attributes);
    }
}
