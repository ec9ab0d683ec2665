//! OpenTelemetry's HTTP server instruments (feature `otel`): what the
//! layer records into a [`Meter`] the application gives it, named,
//! bucketed and attributed as the stable HTTP semantic conventions say.

use std::sync::Arc;

use http::{Method, Request};
use opentelemetry::KeyValue;
use opentelemetry::metrics::{Histogram, Meter, UpDownCounter};

use super::registry::{OTHER, UNMATCHED};
use super::route::{Cell, End, Sizes};

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
        let method = KeyValue::new("http.request.method", method(req.method()));
        let scheme = KeyValue::new(
            "url.scheme",
            match req.uri().scheme_str() {
                Some("https") => "https",
                Some("http") => "http",
                _ => self.scheme,
            },
        );
        // The route template the statistics use; none for the requests
        // no route matched, nor for those folded past the cap.
        let route = cell
            .label()
            .filter(|l| **l != *UNMATCHED && **l != *OTHER)
            .map(|l| KeyValue::new("http.route", l));
        let attributes = [method, scheme];
        self.active.add(1, &attributes);
        Box::new(InFlight {
            instruments: self.clone(),
            attributes,
            route,
        })
    }
}

/// OpenTelemetry's method values: the known methods, else `_OTHER`.
fn method(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::CONNECT => "CONNECT",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::PATCH => "PATCH",
        _ => "_OTHER",
    }
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
        let mut attributes = Vec::with_capacity(5);
        attributes.extend_from_slice(&self.attributes);
        attributes.extend(self.route.iter().cloned());
        if how != End::NoResponse {
            attributes.push(KeyValue::new(
                "http.response.status_code",
                i64::from(status),
            ));
        }
        // As the Prometheus text: a 5xx is named by its code; a failed
        // body or no response by the fallback `_OTHER`; a 4xx is the
        // client's and no error.
        match how {
            End::BodyFailed | End::NoResponse => {
                attributes.push(KeyValue::new("error.type", "_OTHER"));
            }
            End::Sent if (500..600).contains(&status) => {
                attributes.push(KeyValue::new("error.type", status.to_string()));
            }
            End::Sent => {}
        }
        i.duration.record(ns as f64 / 1e9, &attributes);
        if let Some(n) = sizes.request {
            i.request_size.record(n, &attributes);
        }
        if how != End::NoResponse {
            i.response_size.record(sizes.response, &attributes);
        }
    }

    /// A request dropped before its end: no longer active, and (as in
    /// the statistics) kept out of the durations.
    pub(super) fn abort(&self) {
        self.instruments.active.add(-1, &self.attributes);
    }
}
