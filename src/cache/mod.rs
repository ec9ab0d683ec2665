//! A shared HTTP cache (RFC 9111) as a Tower layer, with request
//! coalescing, stale serving and purge.
//!
//! [`CacheLayer`] stores responses to GET requests in a [`CacheStore`]
//! (by default a [`MemoryStore`] bounded in bytes) and answers later GET
//! and HEAD requests from it while RFC 9111 allows:
//!
//! - **Storing (§3)**: final statuses cacheable by default (200, 203, 204,
//!   300, 301, 308, 404, 405, 410, 414, 501) or any status with explicit
//!   freshness; never `no-store` (request or response), `private`,
//!   `Vary: *`, a response to a request with `Authorization` unless
//!   `public`, `s-maxage` or `must-revalidate` allow it (§3.5), a response
//!   with `Set-Cookie` unless [configured](CacheLayer::store_set_cookie),
//!   206 or 304, or a body larger than [`CacheLayer::max_entry_size`]
//!   (those stream through untouched). A body is copied into the store
//!   while it streams to the first client and stored only when it ends
//!   cleanly: a body that errors or is dropped midway is never stored.
//!   Hop-by-hop fields are not stored; a missing `Date` is added.
//! - **Freshness (§4.2)**: `s-maxage`, then `max-age`, then `Expires`
//!   minus `Date` (an invalid `Expires` means stale); heuristic freshness
//!   from `Last-Modified` only when [enabled](CacheLayer::heuristic_freshness)
//!   and only for the statuses above. Age per §4.2.3 (upstream `Age`
//!   included); every response from the cache carries `Age`.
//! - **Authority (RFC 9112 §3.2, RFC 9113 §8.3.1)**: 400 for an HTTP/1.1
//!   request without `Host`, any request with more than one `Host` line, a
//!   `Host` that is not `uri-host [ ":" port ]` (host names limited to
//!   letters, digits, `-`, `.`, `_`, `~` and %-escapes: no sub-delims such
//!   as `,` or `;`, which no DNS name has and which split the forwarding
//!   fields a `Host` is copied into), or a target scheme other than http
//!   and https. The authority of an absolute-form target or HTTP/2's
//!   `:authority` wins over `Host`. It is normalized once (lowercase,
//!   ports 80 and 443 dropped) and written back as the request's `Host`
//!   (an empty one when the request names none), and the target goes
//!   inward origin-form: the key holds exactly the authority the inner
//!   service sees, and a scheme the client chose never reaches it. So
//!   `GET http://victim.test/` with `Host: evil.test` is answered, and
//!   stored, for `victim.test`.
//! - **Vary (§4.1)**: several variants per URL, request values
//!   normalized (lists folded, whitespace collapsed, case folded for
//!   `Accept`, `Accept-Language`, `Accept-Charset`); `Vary: *`, or a `Vary`
//!   naming more than 32 fields, is never stored.
//! - **Content codings (RFC 9110 §12.5.3)**: a stored response is served
//!   only to a request that accepts its `Content-Encoding` (`q=0` and
//!   `identity;q=0` respected; no `Accept-Encoding` accepts identity only),
//!   whether or not its `Vary` names `Accept-Encoding`; among acceptable
//!   variants the request's weights choose. `Accept-Encoding` is keyed on
//!   the request's preferred coding: by default among every coding this
//!   crate knows (the origin negotiates, as behind a proxy), with
//!   [`CacheLayer::codings`] among those the compression layer inside the
//!   cache produces. A response compressed against a dictionary (RFC
//!   9842's `dcz` and `dcb`) is stored when its `Vary` names
//!   `Available-Dictionary` (as the compression layer's does), keyed by
//!   the dictionary the request named and the dictionary codings it
//!   lists, and served only to a request naming the same dictionary and
//!   listing the coding (`*` does not count) whose Fetch Metadata lets it
//!   have one (RFC 9842 §9.3.3, as the compression layer decides: a
//!   cross-site request the page may not read never, a cross-site CORS
//!   request, keyed on its `Origin`, only if the response lets that
//!   origin read it). A response in a coding this
//!   crate doesn't know (or several), or a dictionary coding without that
//!   `Vary`, is not stored.
//! - **Targeted fields (RFC 9213)**: `CDN-Cache-Control` by default, or
//!   the list given to [`CacheLayer::targeted_cache_control`]: the first
//!   present with a valid, non-empty value (a Structured Field
//!   Dictionary) replaces `Cache-Control` and `Expires` for this cache's
//!   storing and freshness; an empty or invalid one is as if absent. All
//!   are forwarded as they came.
//! - **Request directives**: `no-cache` (and `Pragma: no-cache`),
//!   `no-store`, `max-age`, `max-stale`, `min-fresh`, `only-if-cached`
//!   (504 when nothing fits). `max-stale` reaches a stale response while
//!   the store still holds it: within
//!   [`CacheLayer::stale_if_unreachable`] (a day by default) unless it
//!   forbids stale, with a validator for
//!   [`CacheLayer::validator_grace`], or within a `stale-while-revalidate`
//!   or `stale-if-error` window.
//! - **Disconnected from the origin (RFC 9111 §4.2.4)**: when the origin
//!   fails (connection refused, reset, timed out) or answers 502, 503 or
//!   504, a stale copy is served within
//!   [`CacheLayer::stale_if_unreachable`] (default a day), unless
//!   `must-revalidate`, `proxy-revalidate`, `s-maxage` or `no-cache`
//!   forbid it; `Cache-Status: …; fwd=stale; detail=origin-unreachable`.
//! - **Freshness fields**: `Age` is read from its first member when it is
//!   a list (`7200, 0`); dates (`Date`, `Expires`, `Last-Modified`) as
//!   leniently as RFC 9110 §5.6.7 asks ([`HttpDate`](crate::headers::HttpDate));
//!   an `Expires` that is no date means already expired.
//! - **Response directives**: `no-cache` (stored, validated before each
//!   reuse), `must-revalidate`, `proxy-revalidate` and `s-maxage` (never
//!   served stale; 504 when the origin can't be reached).
//! - **Validation (§4.3)**: a stale entry is revalidated with
//!   `If-None-Match` / `If-Modified-Since` from its validators; a 304
//!   freshens it (§3.2). A 304 that names another representation (§4.3.4)
//!   updates nothing and the entry goes; the client gets it only when its
//!   own conditions hold for it, else a 502 (`Cache-Status: …;
//!   detail=validation-mismatch`: the request's body went with the ask,
//!   so it isn't replayed), and the next request asks unconditionally.
//!   On a miss the cache asks the origin
//!   unconditionally and answers the client's own `If-None-Match` /
//!   `If-Modified-Since` itself; a fresh hit answers them with 304. They
//!   are evaluated as `CacheControlLayer` evaluates them
//!   ([`Preconditions`](crate::headers::Preconditions)), and
//!   a 304 carries the fields a 200 would less the content's metadata,
//!   `Last-Modified` only without an `ETag` (RFC 9110 §15.4.5).
//! - **Invalidation (§4.4)**: a 2xx or 3xx answer to an unsafe method
//!   (anything but GET, HEAD, OPTIONS, TRACE, extension methods included)
//!   drops the target URI and a same-origin `Location` or
//!   `Content-Location`.
//! - **RFC 5861**: `stale-while-revalidate` serves stale at once and
//!   refreshes once in the background; `stale-if-error` serves stale when
//!   the origin errors (`Err` or 5xx).
//! - Requests with `Authorization` are not answered from the cache unless
//!   [configured](CacheLayer::serve_authorized): the origin's answer may
//!   depend on who asks.
//! - HEAD is answered from a stored GET response. HEAD responses
//!   themselves are not stored (they have no content to reuse).
//! - **Ranges (RFC 9110 §14, RFC 9111 §3.3–3.4)**: a GET's single byte
//!   range (`bytes=a-b`, `a-`, `-n`) is answered from a stored 200 as 206
//!   with `Content-Range` (a last offset past the end, or a suffix longer
//!   than the representation, cut to it), or 416 with
//!   `Content-Range: bytes */len` when it selects nothing; after
//!   `If-None-Match`/`If-Modified-Since` (a 304 wins), and only when
//!   `If-Range` holds (the stored strong `ETag`, or its `Last-Modified`
//!   when that is a strong validator: `Date` a second or more later),
//!   else the whole 200. Several ranges get the whole 200, from the store
//!   or the origin (never `multipart/byteranges`: overlapping or many
//!   small ranges cost a server far more than a client). A range the
//!   store can't answer goes to the origin as asked; a 206 that the rules
//!   for its 200 would store, with one `Content-Range` of a known length
//!   and a strong validator, is stored as a part, answers the ranges it
//!   holds while fresh or within the client's `max-stale` (never a
//!   request for the whole, `Cache-Status: fwd=partial`; never
//!   validated), and combines with a part of the same representation it
//!   meets or overlaps (one run of bytes per variant, up to
//!   [`CacheLayer::max_entry_size`]; a part apart from the stored one
//!   replaces it) into the complete 200 once they cover it; a 206 of a
//!   representation stored whole updates its fields (not its length or
//!   content digests). An answer to a forwarded range other than 200 or
//!   206 (a 416, say) is not stored. A stale stored 200 is validated for
//!   the whole representation, and a new 200 then answers the range
//!   whole. A stored compressed variant is ranged as the bytes it holds,
//!   with its `Content-Encoding`. A HEAD's `Range` is ignored (and passed
//!   on as it came).
//! - Requests with `If-Match` or `If-Unmodified-Since`, or a `Range` of
//!   another unit or invalid, go straight to the origin.
//! - The key is the host, the path and the query exactly as requested (no
//!   decoding of `%2f`, no removal of dot segments: the origin gets the
//!   same bytes; [`KeyRules`] may rewrite the query, of the request the
//!   origin gets too, and add request values), plus the request fields the response's `Vary` names,
//!   plus the [implicit](CacheLayer::implicit_vary) fields frameworks read
//!   as the host, scheme, URL or method (`X-Forwarded-Host`, `Forwarded`,
//!   `X-Original-URL`, `X-HTTP-Method-Override`…) when the request that
//!   fetched the response carried them: a response fetched with
//!   `X-Forwarded-Host: evil.test` only ever reaches requests with that
//!   same field. An origin whose answer depends on any other request field
//!   must name it in `Vary` or mark the answer `private`/`no-store`: no
//!   cache can tell otherwise, and that answer would be shared (cache
//!   poisoning).
//! - **Custom keys** ([`CacheLayer::key`], [`KeyRules`]): query parameters
//!   dropped (`utm_*`, a list or a predicate) or sorted, in the request
//!   the inner service sees as well as in the key; a request header, a
//!   cookie or a request extension (a user id an authentication layer
//!   set) added to the key as a SHA-256 digest.
//! - **A default TTL** ([`CacheLayer::default_ttl`], per route with
//!   [`CacheLayer::default_ttl_for`]; off by default) for responses that
//!   carry no freshness, of the statuses cacheable without it.
//!
//! Beyond the RFC:
//!
//! - **Coalescing**: concurrent misses and revalidations of one URL make
//!   one origin request; the others wait for it (at most
//!   [a timeout](CacheLayer::coalesce), then go themselves) and are
//!   answered from the store. An uncacheable answer releases them at once,
//!   and the URL is remembered as uncacheable for a while
//!   ([hit-for-miss](CacheLayer::hit_for_miss)) so later requests for it
//!   don't queue.
//! - **Purge** by URL, path prefix, tag (from `Surrogate-Key` by default)
//!   or everything, through a cloneable [`CacheHandle`].
//! - **Hit rates per route**: with the `axum` feature, the answers to
//!   requests that carry axum's `MatchedPath` (the cache layer added with
//!   `Router::layer` or `route_layer`) are counted per route template, for
//!   [`MAX_ROUTES`] routes (later ones under [`OTHER_ROUTES`]):
//!   [`CacheStats::routes`], the report's summary, Prometheus and the
//!   dashboard.
//! - **`Cache-Status`** (RFC 9211) on every response, e.g.
//!   `tower-perf; hit; ttl=42` or `tower-perf; fwd=uri-miss; stored`.
//! - **Warming**: [`CacheHandle::warm`] sends a list of requests (the
//!   hottest URLs) through the service, bounded in concurrency, and
//!   reports what was stored.
//! - **Statistics** through [`CacheStats`].
//! - **Hot entries per thread**: an entry found again while it is among
//!   the last 16 a worker thread looked up without a copy is copied (header section and body; entries weighing
//!   up to 64 KiB; 8 per thread, replaced second-chance) into memory only
//!   that thread touches, and whole answers from the store (not HEAD, 304
//!   or ranges) clone the copy, so threads serving the same entry don't
//!   contend for its reference counts. A copy serves only the very entry
//!   the store returns: a replaced, purged or evicted entry is never served
//!   from one, and a store that decodes a new entry per lookup (Redis)
//!   gets none. The copies, and the entries they hold until that thread
//!   makes another copy (even after the store dropped them), are outside
//!   the store's budget: at most 8 × 2 × 64 KiB a thread.
//! - **Several replicas** (feature `redis`): `RedisCacheStore` keeps
//!   responses in Redis, and `TieredStore` puts a memory store in front of
//!   it, with purges and invalidations published so every replica drops
//!   its memory copy.
//!
//! # Where it goes in a stack
//!
//! Outside compression (it stores encoded bytes, so a hit never compresses
//! again) and outside [`cache_control`](crate::cache_control) (it reads the
//! policies that layer writes). Coalescing and `stale-while-revalidate`
//! need a Tokio runtime with timers (any `#[tokio::main]`); without a
//! runtime the cache neither coalesces nor refreshes in the background.
//!
//! # Example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use std::convert::Infallible;
//! use http::{Request, Response, header};
//! use http_body_util::{BodyExt, Full};
//! use bytes::Bytes;
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_perf::cache::CacheLayer;
//!
//! let cache = CacheLayer::new();
//! let stats = cache.stats();
//! let svc = ServiceBuilder::new().layer(cache).service_fn(|_req: Request<()>| async {
//!     Ok::<_, Infallible>(
//!         Response::builder()
//!             .header(header::CACHE_CONTROL, "max-age=60")
//!             .body(Full::new(Bytes::from_static(b"hello")))
//!             .unwrap(),
//!     )
//! });
//!
//! for _ in 0..2 {
//!     // HTTP/1.1 requests need a Host (RFC 9112 §3.2): without one the
//!     // cache answers 400.
//!     let req = Request::get("/").header(header::HOST, "example.com").body(()).unwrap();
//!     let resp = svc.clone().oneshot(req).await.unwrap();
//!     let status = resp.headers()["cache-status"].to_str().unwrap().to_owned();
//!     let body = resp.into_body().collect().await.unwrap().to_bytes();
//!     assert_eq!(body, "hello");
//!     println!("{status}"); // "tower-perf; fwd=uri-miss; stored", then "tower-perf; hit; ttl=60"
//! }
//! let s = stats.snapshot();
//! assert_eq!((s.misses, s.hits, s.stores), (1, 1, 1));
//! # }
//! ```

mod authority;
mod body;
#[cfg(feature = "redis")]
mod codec;
mod entry;
mod fields;
mod flight;
mod freshness;
mod future;
mod hot;
mod invalidate;
#[cfg(feature = "redis")]
mod invalidation;
mod key;
mod key_rules;
mod layer;
mod origin;
mod range;
#[cfg(feature = "redis")]
mod redis_store;
mod request;
mod routes;
mod service;
mod stats;
mod status;
mod storable;
mod store;
mod vary;
mod warm;

pub use self::body::ResponseBody;
pub use self::entry::CachedResponse;
pub use self::future::ResponseFuture;
pub use self::key::CacheKey;
pub use self::key_rules::KeyRules;
pub use self::layer::{
    CacheHandle, CacheLayer, DEFAULT_IMPLICIT_VARY, DEFAULT_MAX_ENTRY_SIZE,
    DEFAULT_STALE_IF_UNREACHABLE,
};
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use self::redis_store::{RedisCacheSnapshot, RedisCacheStats, RedisCacheStore, TieredStore};
pub use self::routes::{MAX_ROUTES, OTHER_ROUTES, RouteSnapshot};
pub use self::service::Cache;
pub use self::stats::{CacheSnapshot, CacheStats};
pub use self::store::{
    CacheStore, MemoryStore, Purge, StoreError, StoreFuture, StoreUsage, Variants,
};
pub use self::vary::VaryKey;
pub use self::warm::WarmReport;

/// For the `cache_key` fuzz target: builds the variant key of `request`
/// under a response's `Vary` and checks the request selects it. Only in
/// fuzzing builds.
#[cfg(fuzzing)]
#[doc(hidden)]
pub fn __fuzz_vary_selects_itself(response: &http::HeaderMap, request: &http::HeaderMap) {
    let inside = vary::Encodings::Inside(vec![
        crate::headers::ContentCoding::Gzip,
        crate::headers::ContentCoding::Deflate,
    ]);
    for encodings in [vary::Encodings::Origin, inside] {
        let req = vary::RequestVary::new(request, &encodings);
        let implicit = [http::header::FORWARDED];
        if let Ok(v) = vary::VaryKey::build(response, &req, &implicit) {
            assert!(v.matches(&req));
        }
    }
}

/// For the `cache_key` fuzz target: settles the authority of a request
/// with `host` as its `Host` (when a valid field value) and `target` as
/// its request-target, then checks that what the cache keys on is what
/// the inner service would see, and that normalizing is idempotent. Only
/// in fuzzing builds.
#[cfg(fuzzing)]
#[doc(hidden)]
pub fn __fuzz_authority(host: &[u8], target: &str, http2: bool) {
    let _ = authority::check_invariants(host, target, http2);
}
