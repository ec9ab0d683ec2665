//! What the layers tell [`tracing`]: their decisions as fields of the
//! request's span, and events where an operator wants one.
//!
//! Each layer records its decision on the **current span** (the one a
//! tracing layer such as tower-http's `TraceLayer` enters while it calls
//! the service, polls its future and polls the response body), under the
//! names in [`field`], in OpenTelemetry's style:
//!
//! | field | recorded by | values |
//! |---|---|---|
//! | `http.route` | timing | the route template (not for `unmatched`, `other`) |
//! | `otel.name` | timing | `GET /route` once the route is known |
//! | `http.response.status_code` | timing | the status sent |
//! | `tower_perf.cache.result` | cache | `hit`, `stale`, `miss`, `revalidated` (a 304 from the origin), `modified` (a new 200 on revalidation), `bypass`, `gateway_timeout` (`only-if-cached`), `rejected` (a bad `Host`) |
//! | `tower_perf.compression.coding` | compression | the coding chosen (`gzip`, `br`…) |
//! | `tower_perf.compression.bytes_in`, `…bytes_out` | compression | body bytes before and after, when the body ends |
//! | `tower_perf.rate_limit.policy`, `…decision` | rate limit | the deciding policy (the one whose refusal answered, else the one with the fewest requests left); `allowed` or `limited` (in shadow mode: would have been limited), as the metrics count them |
//! | `tower_perf.task.id` | tasks | the id of the task a request became |
//!
//! `tracing` records a field only on a span that declared it when it was
//! made (as [`tracing::field::Empty`]); [`request_span`] makes a span with
//! all of them, ready for `TraceLayer::make_span_with`. A span without
//! them (tower-http's default) simply keeps none.
//!
//! Events: a Redis store's circuit breaker opening (`warn`), probing in
//! vain and closing again (`info`); a Redis call failing (`debug`, one per
//! call: the breaker bounds them); a rate-limit key using its last request
//! of a burst (`debug`, once per exhaustion, not once per 429); the errors
//! a misconfiguration causes (`error`, once).
//!
//! **Cost**: with no subscriber at all, a field costs one relaxed atomic
//! load (tracing's global level filter is `OFF`) and no span is looked up
//! (BENCHMARKS.md, "Observability"). With a subscriber, each field looks
//! up the current span (a thread-local read and a reference count), six
//! to nine times a request through the whole stack.
//!
//! # Example
//!
//! With tower-http's `TraceLayer` (any `Fn(&Request<B>) -> Span` is a
//! `MakeSpan`):
//!
//! ```
//! use axum::{Router, routing::get};
//! use tower_http::trace::TraceLayer;
//!
//! let app: Router = Router::new()
//!     .route("/items/{id}", get(|| async { "item" }))
//!     // .layer(tower_perf::timing::TimingLayer::new()) and the others
//!     .layer(TraceLayer::new_for_http().make_span_with(tower_perf::trace::request_span));
//! # let _ = app;
//! ```

use http::{Method, Request, Version};
use tracing::Span;

/// OpenTelemetry's `http.request.method` value: the methods the HTTP
/// conventions know, else `_OTHER` (so an attacker's made-up methods never
/// become series or span names).
pub(crate) fn semconv_method(m: &Method) -> &'static str {
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

/// The method the timing registry keys a request by: `method`, or one
/// shared `_OTHER` for the methods [`semconv_method`] doesn't know.
#[cfg(feature = "timing")]
pub(crate) fn registry_method(m: &Method) -> &Method {
    static OTHER: std::sync::LazyLock<Method> =
        std::sync::LazyLock::new(|| Method::from_bytes(b"_OTHER").unwrap_or(Method::OPTIONS));
    if semconv_method(m) == "_OTHER" {
        &OTHER
    } else {
        m
    }
}

/// OpenTelemetry's `network.protocol.version`: `1.1`, `2`…
fn protocol_version(v: Version) -> &'static str {
    match v {
        Version::HTTP_09 => "0.9",
        Version::HTTP_10 => "1.0",
        Version::HTTP_11 => "1.1",
        Version::HTTP_2 => "2",
        Version::HTTP_3 => "3",
        _ => "_OTHER",
    }
}

/// The field names the layers record, as [`request_span`] declares them.
pub mod field {
    /// The route template (timing).
    pub const HTTP_ROUTE: &str = "http.route";
    /// The status code sent (timing).
    pub const HTTP_RESPONSE_STATUS_CODE: &str = "http.response.status_code";
    /// How the cache answered (cache): the values of the
    /// `tower_perf.cache.result` attribute of the OpenTelemetry metrics.
    pub const CACHE_RESULT: &str = "tower_perf.cache.result";
    /// `METHOD route` once the route is known (timing), for
    /// `tracing-opentelemetry`'s span name.
    pub const OTEL_NAME: &str = "otel.name";
    /// The content coding chosen (compression).
    pub const COMPRESSION_CODING: &str = "tower_perf.compression.coding";
    /// Body bytes before compression (compression).
    pub const COMPRESSION_BYTES_IN: &str = "tower_perf.compression.bytes_in";
    /// Body bytes after compression (compression).
    pub const COMPRESSION_BYTES_OUT: &str = "tower_perf.compression.bytes_out";
    /// The rate-limit policy that decided (rate limit).
    pub const RATE_LIMIT_POLICY: &str = "tower_perf.rate_limit.policy";
    /// `allowed` or `limited` (rate limit).
    pub const RATE_LIMIT_DECISION: &str = "tower_perf.rate_limit.decision";
    /// The id of the task the request became (tasks).
    pub const TASK_ID: &str = "tower_perf.task.id";
}

/// An `info` span named `HTTP request` with the request's method
/// (`http.request.method`, `_OTHER` for a method the conventions don't
/// know, with the method sent in `http.request.method_original`), path and
/// protocol version, `otel.kind = "server"` and `otel.name` (the method;
/// the timing layer makes it `GET /route` once the route is known), as
/// `tracing-opentelemetry` reads them, and every [`field`] the layers
/// record, still empty: pass it to tower-http's
/// `TraceLayer::make_span_with`.
pub fn request_span<B>(req: &Request<B>) -> Span {
    let method = semconv_method(req.method());
    let original = (method == "_OTHER").then(|| req.method().as_str());
    tracing::info_span!(
        "HTTP request",
        otel.kind = "server",
        otel.name = method,
        http.request.method = method,
        http.request.method_original = original,
        url.path = req.uri().path(),
        network.protocol.version = protocol_version(req.version()),
        http.route = tracing::field::Empty,
        http.response.status_code = tracing::field::Empty,
        tower_perf.cache.result = tracing::field::Empty,
        tower_perf.compression.coding = tracing::field::Empty,
        tower_perf.compression.bytes_in = tracing::field::Empty,
        tower_perf.compression.bytes_out = tracing::field::Empty,
        tower_perf.rate_limit.policy = tracing::field::Empty,
        tower_perf.rate_limit.decision = tracing::field::Empty,
        tower_perf.task.id = tracing::field::Empty,
    )
}

/// Records `value` as `field` on the current span, if there is one that
/// a subscriber keeps.
#[inline]
#[allow(dead_code, reason = "each layer's feature uses some of them")]
pub(crate) fn record<V: tracing::Value>(field: &'static str, value: V) {
    if no_subscriber() {
        // No span made or dropped: this path is every request's.
        return;
    }
    let span = Span::current();
    if !span.is_disabled() {
        span.record(field, value);
    }
}

/// No subscriber at all: the level filter of every subscriber together is
/// `OFF` (one atomic load).
#[inline]
pub(crate) fn no_subscriber() -> bool {
    tracing::level_filters::LevelFilter::current() == tracing::level_filters::LevelFilter::OFF
}

/// The current span; with no subscriber at all, a disabled one without
/// asking the dispatcher.
#[inline]
#[allow(dead_code, reason = "each layer's feature uses some of them")]
pub(crate) fn current_span() -> Span {
    if no_subscriber() {
        Span::none()
    } else {
        Span::current()
    }
}
