//! Composable [Tower] middleware that makes any hyper or axum service fast
//! and observable.
//!
//! `tower-perf` is built as five layers, each usable alone or stacked, each
//! behind its own cargo feature, plus the header parsers they share:
//!
//! | feature         | what it gives                                                        | status      |
//! |-----------------|----------------------------------------------------------------------|-------------|
//! | (always)        | [`headers`]: Cache-Control, Accept-Encoding, entity tags, HTTP dates | available   |
//! | `cache`         | [`cache`]: RFC 9111 shared response cache, coalescing, purge         | available   |
//! | `compression`   | [`compression`]: streaming gzip/deflate with q-value negotiation     | available   |
//! | `cache-control` | [`cache_control`]: policies by route, ETags, 304/412                 | available   |
//! | `timing`        | [`timing`]: per-route latency, sub-timings, Server-Timing, Prometheus | available   |
//! | `rate-limit`    | [`rate_limit`]: GCRA quotas per route and key, IETF RateLimit fields | available   |
//! | `tasks`         | [`tasks`]: `Prefer: respond-async` → 202, background tasks, monitors  | available   |
//! | `report`        | [`report`]: `/performance/*` endpoints, Prometheus, live dashboard    | available   |
//! | `redis`         | Redis stores for the cache and the limiter (several replicas)        | available   |
//! | `axum`          | route labels from `MatchedPath`, peer address from `ConnectInfo`     | available   |
//! | `full`          | everything above                                                     |             |
//!
//! The in-memory layers and `axum` are default features; `redis` is
//! opt-in.
//!
//! # Stacking order
//!
//! ```text
//! request ─▶ Timing ─▶ RateLimit ─▶ Cache ─▶ Compression ─▶ CacheControl ─▶ your service
//! ```
//!
//! - Timing is outermost so it sees every request (429s and cache hits too)
//!   and stops its clock when the response body ends.
//! - Rate limiting comes before the cache: a client over its quota gets 429
//!   even for cached content.
//! - The cache sits outside compression, so it stores encoded bytes and a
//!   hit never compresses again; it keys on the negotiated coding.
//! - CacheControl sits inside the cache, so the policies it writes are what
//!   the cache reads, and inside compression, so it hashes identity bytes
//!   (lengths known up to its limit) while compression gives each coding its
//!   own validator; see [`cache_control`] for the other order.
//!
//! [Tower]: https://docs.rs/tower
#![cfg_attr(docsrs, feature(doc_cfg))]

#[macro_use]
mod macros;

#[cfg(any(feature = "compression", feature = "cache-control"))]
mod body_util;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod breaker;
#[cfg(feature = "cache")]
#[cfg_attr(docsrs, doc(cfg(feature = "cache")))]
pub mod cache;
#[cfg(feature = "cache-control")]
#[cfg_attr(docsrs, doc(cfg(feature = "cache-control")))]
pub mod cache_control;
#[cfg(any(
    feature = "cache",
    feature = "timing",
    feature = "rate-limit",
    feature = "tasks"
))]
pub mod clock;
#[cfg(feature = "compression")]
#[cfg_attr(docsrs, doc(cfg(feature = "compression")))]
pub mod compression;
#[cfg(feature = "compression")]
#[cfg_attr(docsrs, doc(cfg(feature = "compression")))]
pub mod decompression;
pub mod headers;
#[cfg(any(feature = "timing", feature = "report"))]
#[cfg_attr(docsrs, doc(cfg(any(feature = "timing", feature = "report"))))]
pub mod insight;
#[cfg(feature = "redis")]
mod outbox;
#[cfg(any(
    feature = "timing",
    all(
        feature = "report",
        any(
            feature = "cache",
            feature = "compression",
            feature = "cache-control",
            feature = "rate-limit",
            feature = "tasks"
        )
    )
))]
mod prometheus;
#[cfg(feature = "cache")]
#[cfg_attr(docsrs, doc(cfg(feature = "cache")))]
pub mod query_cache;
#[cfg(feature = "rate-limit")]
#[cfg_attr(docsrs, doc(cfg(feature = "rate-limit")))]
pub mod rate_limit;
#[cfg(feature = "redis")]
mod redis_conn;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use redis_conn::RedisTarget;
#[cfg(feature = "report")]
#[cfg_attr(docsrs, doc(cfg(feature = "report")))]
pub mod report;
#[cfg(any(
    feature = "cache",
    feature = "cache-control",
    feature = "rate-limit",
    feature = "tasks"
))]
mod route_pattern;
#[cfg(feature = "tasks")]
#[cfg_attr(docsrs, doc(cfg(feature = "tasks")))]
pub mod tasks;
#[cfg(feature = "timing")]
#[cfg_attr(docsrs, doc(cfg(feature = "timing")))]
pub mod timing;
pub mod trace;

/// The boxed error type bodies of this crate return.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
