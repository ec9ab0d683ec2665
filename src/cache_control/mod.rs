//! Cache-Control policies by route, generated ETags, and conditional
//! requests answered with 304 or 412.
//!
//! [`CacheControlLayer`] does three things for the service it wraps:
//!
//! - **Policies by route.** A table of [`Rule`]s matches the request path
//!   (exact, prefix, or glob: `*` within a segment, `**` across segments),
//!   optionally the method and the status, and assigns a [`Policy`]. Paths
//!   can be written as in axum's router: `{param}` is one segment,
//!   `{*rest}` the rest of the path; a pattern that can never match panics
//!   when the rule is built. Presets:
//!   [`Policy::static_assets`] (`max-age=31536000, immutable`),
//!   [`Policy::api`] (`max-age=N`, or `private, max-age=N` when the
//!   request carries `Authorization`), [`Policy::monitoring`] (`max-age=60`)
//!   and [`Policy::no_cache`] (`no-cache`, for health checks). The three
//!   that make answers storable go only on GET and HEAD answers with a
//!   status a cache may reuse ([`Policy::CACHEABLE_STATUSES`]: never the
//!   `201` to a `POST`, nor a `302`), and write no `public`: `max-age`
//!   already makes a response storable, and without `public` a shared
//!   cache does not store answers to requests that carry `Authorization`
//!   (RFC 9111 §3.5). The first matching rule applies. A Cache-Control the handler set itself wins
//!   unless the rule says [`override_handler`](Rule::override_handler).
//!   Error responses (4xx/5xx) get no policy unless the rule gives them one
//!   with [`Rule::on_error`]: a year of `immutable` must never stick to a
//!   404.
//! - **ETags.** A 200 to GET or HEAD without an ETag, whose body length is
//!   known and at most [`max_hash_size`](CacheControlLayer::max_hash_size)
//!   (1 MiB by default), gets a strong (or, by configuration, weak) ETag:
//!   the XXH3-128 hash of its bytes. Such a body is read whole before the
//!   response head goes out; larger or streamed bodies pass untouched and
//!   unbuffered. An empty body is never hashed, for GET or HEAD (its ETag
//!   would save nothing, and an empty HEAD body may be one already
//!   dropped). A HEAD's body is hashed only when it is the GET's: never
//!   when it disagrees with Content-Length (layers wrapping a whole axum
//!   `Router` see a HEAD's body after the router dropped it, so there a
//!   GET's ETag has no HEAD counterpart; `Router::layer` has none of that).
//! - **Preconditions** in RFC 9110 §13.2.2's order: `If-Match` (strong
//!   comparison, 412), else `If-Unmodified-Since` (412), then
//!   `If-None-Match` (weak comparison; 304 for GET/HEAD, 412 otherwise),
//!   else `If-Modified-Since` (304 for GET/HEAD). `*` asks whether a
//!   current representation exists. Dates use the handler's Last-Modified.
//!   Preconditions only apply when the response would be a 2xx (§13.2.1).
//!   A 304 keeps ETag, Cache-Control, Vary, Date, Expires and
//!   Content-Location and drops the body and content headers (§15.4.5). An
//!   unreadable `If-Match` fails; an unreadable `If-None-Match` or date is
//!   ignored.
//!
//! For an unsafe method (PUT, POST, DELETE…) the preconditions must hold
//! *before* the handler acts; judging them on its response would be too
//! late. Two ways, by configuration:
//!
//! - by default the request reaches the handler with a
//!   [`Preconditions`](crate::headers::Preconditions)
//!   extension, which the handler evaluates against its current version
//!   under the same lock as its write (the only race-free way):
//!
//! ```
//! use axum::{Extension, http::StatusCode};
//! use tower_perf::headers::{EntityTag, Precondition, Preconditions};
//!
//! async fn update(pre: Option<Extension<Preconditions>>) -> StatusCode {
//!     let current = EntityTag::strong("v3").unwrap(); // read under the same lock as the write
//!     if let Some(Extension(pre)) = pre {
//!         if pre.evaluate(&http::Method::PUT, true, Some(&current), None) != Precondition::Proceed {
//!             return StatusCode::PRECONDITION_FAILED;
//!         }
//!     }
//!     // … write …
//!     StatusCode::NO_CONTENT
//! }
//! # let _ = update;
//! ```
//!
//! - with [`probe_unsafe_methods`](CacheControlLayer::probe_unsafe_methods),
//!   the layer first sends a `GET` of the same URI (same headers, no
//!   preconditions, empty body) through the inner service, evaluates the
//!   preconditions against that representation (`If-None-Match: *` on a
//!   resource that answers 404 passes: create-only PUT), and forwards the
//!   request or answers 412 without calling the handler. Only when the layer
//!   wraps a whole router: behind axum's `Router::layer` the inner service is
//!   the handler of the request's own method.
//!
//! The probe is why the service needs `S: Clone` and a request body that
//! implements `Default` (axum's does; wrap hyper's `Incoming` if you use it
//! bare).
//!
//! # Which order with compression
//!
//! Both orders give each content coding its own validator and answer a
//! revalidation with the tag the client received with a 304 that carries
//! `Vary` (the tests check both). They differ in what can be hashed:
//!
//! - `CacheControlLayer` **outside** `CompressionLayer` (the order of the
//!   crate docs' stack) hashes the bytes that leave, so the gzip and
//!   identity variants simply have different hashes. But a compressed body's
//!   length is only known when the compression layer compresses it whole
//!   (32 KiB of input and less), so larger compressed responses get no ETag.
//! - `CacheControlLayer` **inside** `CompressionLayer` hashes the identity
//!   bytes (length known up to `max_hash_size`), and the compression layer
//!   suffixes the strong tag per coding (`"…-gzip"`) and maps it back on
//!   revalidation. Larger bodies get validators, and each body is hashed
//!   once whatever the coding.
//!
//! Prefer **inside** (`.layer(compression).layer(cache_control)` in a
//! `ServiceBuilder`, i.e. cache-control nearer the handler) unless your
//! compressible responses are all under 32 KiB.
//!
//! # Example
//!
//! With the defaults (no rules; ETags and preconditions):
//!
//! ```
//! use bytes::Bytes;
//! use http::{Request, Response, StatusCode, header};
//! use http_body_util::Full;
//! use std::convert::Infallible;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_perf::cache_control::CacheControlLayer;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let svc = ServiceBuilder::new().layer(CacheControlLayer::new()).service(service_fn(
//!     |_req: Request<Full<Bytes>>| async { Ok::<_, Infallible>(Response::new(Full::<Bytes>::from("hello"))) },
//! ));
//! let res = svc.clone().oneshot(Request::get("/").body(Full::default())?).await?;
//! let etag = res.headers()[header::ETAG].clone();
//!
//! let again = Request::get("/").header(header::IF_NONE_MATCH, etag).body(Full::default())?;
//! let res = svc.oneshot(again).await?;
//! assert_eq!(res.status(), StatusCode::NOT_MODIFIED);
//! # Ok(())
//! # }
//! ```
//!
//! With route policies:
//!
//! ```
//! use std::time::Duration;
//! use bytes::Bytes;
//! use http::{Request, Response, header};
//! use http_body_util::Full;
//! use std::convert::Infallible;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_perf::cache_control::{CacheControlLayer, Policy, Rule};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let layer = CacheControlLayer::new()
//!     .route("/static/**", Policy::static_assets())
//!     .route("/api/**", Policy::api(Duration::from_secs(300)))
//!     .route("/health", Policy::no_cache())
//!     .rule(Rule::new("/admin/**").policy(Policy::no_store()).override_handler());
//! let svc = ServiceBuilder::new().layer(layer).service(service_fn(|_req: Request<Full<Bytes>>| async {
//!     Ok::<_, Infallible>(Response::new(Full::<Bytes>::from("body")))
//! }));
//! let res = svc.clone().oneshot(Request::get("/static/app.js").body(Full::default())?).await?;
//! assert_eq!(res.headers()[header::CACHE_CONTROL], "max-age=31536000, immutable");
//! let req = Request::get("/api/items").header(header::AUTHORIZATION, "Bearer x").body(Full::default())?;
//! let res = svc.oneshot(req).await?;
//! assert_eq!(res.headers()[header::CACHE_CONTROL], "private, max-age=300");
//! # Ok(())
//! # }
//! ```

mod body;
mod future;
mod layer;
mod policy;
mod service;
mod stats;

#[doc(inline)]
pub use self::{
    body::ResponseBody,
    future::ResponseFuture,
    layer::{CacheControlLayer, DEFAULT_MAX_HASH_SIZE, EtagMode},
    policy::{Policy, Rule},
    service::CacheControl,
    stats::{CacheControlSnapshot, CacheControlStats},
};
