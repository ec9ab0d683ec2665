//! Rate limiting: GCRA quotas per route and key, answered with 429,
//! `Retry-After` and the IETF `RateLimit` fields.
//!
//! [`RateLimitLayer`] carries a table of [`RateRule`]s (path pattern,
//! methods, [`Quota`], [`KeySource`]); the first rule that matches a request
//! counts it. Requests no rule matches pass untouched.
//!
//! - **Quotas** read as they sound: [`Quota::per_minute(100)`](Quota::per_minute)
//!   is 100 a minute, spread evenly, with a burst (default: the limit).
//! - **Keys**: the peer IP ([`PeerAddr`] or axum's `ConnectInfo`); the
//!   client IP behind trusted proxies ([`KeySource::client_ip`] with their
//!   CIDRs: the rightmost `X-Forwarded-For`/`Forwarded` address that isn't a
//!   trusted proxy; headers from an untrusted peer are ignored, so they
//!   can't be spoofed); a header (an API key, at most 256 bytes); one global
//!   key; or a closure. IPv6 clients are grouped by /64. When no key can be
//!   found, [`MissingKey`] decides, with one setting per reason:
//!   - **No client address** (policies keyed on [`PeerIp`](KeySource::PeerIp)
//!     or [`ClientIp`](KeySource::ClientIp)): the server hands the layer
//!     none (axum's `axum::serve(listener, app)` without
//!     `into_make_service_with_connect_info::<SocketAddr>()`). Default
//!     [`MissingKey::Fail`]: each such request is answered `500` with a
//!     body that names the fix, the first one logs an error (`tracing`),
//!     and [`RateLimitStats::missing_key_failures`] (and the report) count
//!     them, instead of all of them sharing one quota that one client can
//!     use up for everybody. Something else only when chosen with
//!     [`RateLimitLayer::on_missing_peer_addr`] or
//!     [`RateRule::on_missing_peer_addr`].
//!   - **No key the client sends** (policies keyed on a
//!     [`Header`](KeySource::Header), an API key, or a
//!     [closure](KeySource::Custom)): the client's doing, no server error.
//!     No default: [`MissingKey::Shared`], [`Allow`](MissingKey::Allow) or
//!     [`Deny`](MissingKey::Deny) (429), chosen with
//!     [`RateRule::on_missing_key`] or, for every rule that doesn't say,
//!     [`RateLimitLayer::on_missing_key`]; without a choice the layer
//!     panics when built.
//!
//!   So a layer with an API-key rule and a per-IP rule lets anonymous
//!   requests through (or shares or denies them) as the API-key rule says,
//!   and still fails loudly when the server drops the client's address.
//! - **Paths**: exact, prefixes, globs (`*` within a segment, `**` across
//!   segments) and axum's own `{param}` and `{*rest}`
//!   ([`RateRule::path`]); a pattern that can never match, or a quota,
//!   burst or cost of 0, panics at construction with a message.
//! - **Responses**: over the quota, `429 Too Many Requests` with
//!   `Retry-After` in whole seconds rounded up (never 0); on every counted
//!   response, `RateLimit-Policy: "name";q=100;w=60` and
//!   `RateLimit: "name";r=42;t=18` (draft-ietf-httpapi-ratelimit-headers-10,
//!   Structured Fields; `t` equals `Retry-After` on a 429). A
//!   [`shadow`](RateLimitLayer::shadow) mode counts without rejecting.
//! - **Store**: [`MemoryStore`] (one atomic word per key in sharded tables,
//!   about 40 bytes an IPv4 key, time read from the CPU's counter; at most
//!   100,000 keys by default, idle keys evicted automatically), or
//!   any [`RateLimitStore`] whose future is `Unpin` (a boxed one is), such
//!   as `RedisStore` (feature `redis`: one quota shared by every replica,
//!   GCRA on the Redis server's clock). A store that fails lets requests
//!   through. A store that can answer without waiting says so through
//!   [`RateLimitStore::check_at_once`] and the layer decides inside `call`.
//! - **Statistics**: allowed and limited per policy, and the most limited
//!   keys (bounded) ([`RateLimitLayer::stats`]).
//!
//!   Optionally an RFC 9457 problem+json body
//!   ([`problem_json`](RateLimitLayer::problem_json)), your own rejection
//!   ([`on_reject`](RateLimitLayer::on_reject)) and the legacy
//!   `X-RateLimit-*` trio ([`legacy_headers`](RateLimitLayer::legacy_headers)).
//!
//! - **Several policies** on one request
//!   ([`RateRule::and_policy`]: a daily cap beside a per-minute one, a
//!   global one beside a per-client one): the store is asked first without
//!   counting ([`RateLimitStore::peek`]), and only when every policy allows
//!   the request is it counted in all of them; the fields list every
//!   policy.
//!
//! # Example
//!
//! ```
//! use std::net::SocketAddr;
//! use bytes::Bytes;
//! use http::{Request, Response, StatusCode};
//! use http_body_util::Full;
//! use std::convert::Infallible;
//! use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
//! use tower_perf::rate_limit::{PeerAddr, Quota, RateLimitLayer, RateRule};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let layer = RateLimitLayer::new().rule(RateRule::new("api", Quota::per_minute(2)).path("/api/**"));
//! let mut svc = ServiceBuilder::new().layer(layer).service(service_fn(|_req: Request<Full<Bytes>>| async {
//!     Ok::<_, Infallible>(Response::new(Full::<Bytes>::from("ok")))
//! }));
//! let peer = PeerAddr(SocketAddr::from(([203, 0, 113, 7], 5000)));
//! for expected in [StatusCode::OK, StatusCode::OK, StatusCode::TOO_MANY_REQUESTS] {
//!     let mut req = Request::get("/api/items").body(Full::default())?;
//!     req.extensions_mut().insert(peer);
//!     let res = svc.ready().await?.call(req).await?;
//!     assert_eq!(res.status(), expected);
//!     assert!(res.headers().contains_key("ratelimit"));
//! }
//! # Ok(())
//! # }
//! ```
//!
//! An API-key rule and a per-IP rule in one layer: anonymous requests
//! pass the API-key rule, as it chose, while a request without a client
//! address still gets the per-IP rule's loud `500`.
//!
//! ```
//! # use bytes::Bytes;
//! # use http::{HeaderName, Request, Response, StatusCode};
//! # use http_body_util::Full;
//! # use std::convert::Infallible;
//! # use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_perf::rate_limit::{KeySource, MissingKey, Quota, RateLimitLayer, RateRule};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let layer = RateLimitLayer::new()
//!     .rule(
//!         RateRule::new("api", Quota::per_minute(100))
//!             .path("/api/**")
//!             .key(KeySource::Header(HeaderName::from_static("x-api-key")))
//!             .on_missing_key(MissingKey::Allow),
//!     )
//!     .rule(RateRule::new("login", Quota::per_minute(5)).path("/login"));
//! let svc = ServiceBuilder::new().layer(layer).service(service_fn(|_req: Request<Full<Bytes>>| async {
//!     Ok::<_, Infallible>(Response::new(Full::<Bytes>::from("ok")))
//! }));
//! // No PeerAddr, no ConnectInfo: the server's set-up is wrong.
//! for (path, expected) in [("/api/items", StatusCode::OK), ("/login", StatusCode::INTERNAL_SERVER_ERROR)] {
//!     let res = svc.clone().oneshot(Request::get(path).body(Full::default())?).await?;
//!     assert_eq!(res.status(), expected);
//! }
//! # Ok(())
//! # }
//! ```

mod body;
mod fields;
mod future;
mod key;
mod layer;
mod missing_key;
mod most_limited;
mod quota;
#[cfg(feature = "redis")]
mod redis_store;
mod rule;
mod service;
mod stats;
mod store;

#[doc(inline)]
pub use self::{
    body::ResponseBody,
    fields::{RejectFn, Rejection},
    future::ResponseFuture,
    key::{Cidr, CidrError, Key, KeyFn, KeySource, PeerAddr, RequestHead},
    layer::RateLimitLayer,
    missing_key::MissingKey,
    most_limited::LIMITED_KEYS_KEPT,
    quota::{Decision, Quota},
    rule::RateRule,
    service::RateLimit,
    stats::{LimitedKey, MOST_LIMITED_IN_SNAPSHOT, PolicyStats, RateLimitSnapshot, RateLimitStats},
    store::{DEFAULT_MAX_KEYS, MemoryStore, PolicyRef, RateLimitStore, StoreError},
};

#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use self::redis_store::{
    FailurePolicy, RedisCheck, RedisStore, RedisStoreSnapshot, RedisStoreStats,
};
