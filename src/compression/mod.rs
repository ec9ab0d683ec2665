//! Response compression: streaming zstd, brotli, gzip and deflate,
//! negotiated from `Accept-Encoding`, correct with caches, and shared
//! dictionaries (RFC 9842: `dcz`, `dcb`).
//!
//! gzip and deflate are always built (zlib-rs). `br` comes with the
//! `compression-br` feature (the `brotli` crate, pure Rust, on by default)
//! and `zstd` with `compression-zstd` (the `zstd` crate over libzstd, built
//! from C, so opt-in; in `full`).
//!
//! [`CompressionLayer`] compresses the bodies of the responses of any
//! service whose body implements [`http_body::Body`], alone or in the
//! tower-perf stack.
//!
//! # What it does
//!
//! - **Negotiation**: every `Accept-Encoding` line, with q-values, `*`,
//!   `identity` and `x-gzip` ([`AcceptEncoding`](crate::headers::AcceptEncoding)).
//!   Among codings the client weighs equally, the server's order wins
//!   ([`CompressionLayer::codings`]; by default zstd, br, gzip, deflate,
//!   among those the build has). A level per coding
//!   ([`CompressionLayer::level`]: [`DEFAULT_ZSTD_LEVEL`],
//!   [`DEFAULT_BR_LEVEL`], [`DEFAULT_LEVEL`] for gzip and deflate).
//!   When the client rules out every coding *and* identity, the response is
//!   sent as identity anyway (RFC 9110 §12.5.3 allows disregarding the
//!   field), or answered with 406 if
//!   [`reject_unacceptable`](CompressionLayer::reject_unacceptable) is on.
//!   A request without `Accept-Encoding` gets identity.
//! - **Only when it pays**: compressible content types
//!   ([`default_compressible`]) of at least [`DEFAULT_MIN_SIZE`] bytes. For a
//!   body of unknown length the layer holds back up to that many bytes
//!   before deciding, and decides at once if the body pauses (a live
//!   stream). Never for a response that already has a Content-Encoding, a 206
//!   or Content-Range, 1xx/204/304, or `Cache-Control: no-transform`.
//! - **Headers**: sets Content-Encoding and drops Accept-Ranges when
//!   compressing. A body of known length up to 32 KiB (less at high levels)
//!   is compressed whole and sent with its exact Content-Length, so layers
//!   outside can hash it; larger or streamed bodies drop Content-Length.
//!   The layer adds `Vary: accept-encoding` (merged, never duplicated) to
//!   every response whose representation depends on it: compressible types
//!   whatever the outcome (identity, too small, 206, HEAD) and every 304.
//! - **HEAD** gets the header fields GET would (RFC 9110 §9.3.2): it is
//!   decided from the same facts, the body the inner service returns (behind
//!   axum's `Router::layer` that is the GET's body, which the router drops
//!   after the layers) and its Content-Length, so a small body stays identity
//!   and a body compressed whole gets the same Content-Length and ETag. A
//!   HEAD body the inner service already dropped is judged by the
//!   Content-Length it disagrees with. An empty body, on GET or HEAD, is
//!   never compressed: a HEAD body whose size hint says exactly 0, without
//!   Content-Length, is taken for an empty representation, as its GET's
//!   is (behind `Router::layer` it is the handler's own body, so `""`,
//!   `()` or a bare status get the same fields on HEAD as on GET). A HEAD
//!   body of unknown length that ends without data may be a dropped one:
//!   it is compressed as a streamed GET past the minimum would be, without
//!   Content-Length. A HEAD that would be compressed as a stream gets no
//!   body.
//!
//!   **The exception**: layers wrapping the whole axum `Router`
//!   (`ServiceBuilder::new().layer(..).service(router)`) see a HEAD's body
//!   after the router dropped it (`Body::empty()`, with Content-Length
//!   only when the handler's length was known), so the HEAD lacks what
//!   only the body tells: a body compressed whole has no Content-Length
//!   (it is compressed as a stream), a short stream of unknown length none
//!   either, and a stream of unknown length goes out identity, without the
//!   `Content-Encoding` (and the ETag suffix) its GET gets. It never gets
//!   a field its GET lacks. Add the layers with `Router::layer` (as the
//!   example server does) for HEAD to match GET field for field.
//! - **ETags**: a strong `ETag: "abc"` becomes `"abc-gzip"` (or
//!   `"abc-deflate"`) on compressed responses, so each coding has its own
//!   strong validator (RFC 9110 §8.8.3.3) and `If-Match`/`If-Range` keep
//!   working. When a client revalidates with the suffixed tag, the layer
//!   maps it back to `"abc"` in `If-None-Match`/`If-Match` before the inner
//!   service compares it, and a 304 carries the suffixed tag back. Weak tags
//!   are left as they are: a weak validator may be shared by codings.
//!   (Weakening instead, as nginx does, would break `If-Match` for every
//!   compressed response.)
//! - **Streaming**: bodies are never buffered whole. Compressed frames go
//!   out as input arrives; when the inner body waits, what is pending is
//!   flushed (a zlib sync flush, a brotli or zstd flush), so event streams
//!   and logs reach the client without waiting for the end. At most 32 KiB
//!   of input are taken in one poll (less at high levels), so a large body
//!   never holds the executor long; brotli and zstd work in blocks (up to
//!   256 KiB and 128 KiB), so above their default levels a poll that
//!   completes a block can take milliseconds. Windows are bounded: brotli
//!   and zstd at most 1 MiB. Trailers are kept. An
//!   error from the inner body ends the stream with an error, never with a
//!   well-formed truncated gzip.
//! - **Levels** per coding ([`CompressionLayer::level`], default
//!   [`DEFAULT_LEVEL`]), and encoders are pooled per thread and reset rather
//!   than rebuilt (zlib-rs streams, libzstd contexts, libdeflate
//!   compressors). gzip and deflate bodies compressed whole go through
//!   libdeflate in one call, which skips zlib's fixed per-stream set-up (it
//!   clears a 128 KiB hash table for every stream); zlib's levels 1 and 2
//!   become libdeflate's 1, whose output is within 1% of zlib's level 2,
//!   other levels keep their number (BENCHMARKS.md, sections Compression
//!   and Compression II, has the measurements). Streams and larger bodies
//!   go through zlib-rs.
//! - **Shared dictionaries** (RFC 9842, Compression Dictionary Transport),
//!   with [`CompressionLayer::dictionaries`] and a [`Dictionaries`] store:
//!   a response the layer compresses that carries a valid
//!   `Use-As-Dictionary` is kept as a dictionary once it has ended (by
//!   SHA-256; up to [`MAX_DICTIONARY_SIZE`], a copy kept while it streams;
//!   the store is bounded in bytes, and [`Dictionaries::insert`] adds
//!   others). A later request naming one in `Available-Dictionary` and
//!   listing `dcz` or `dcb` in `Accept-Encoding` (besides a usual coding,
//!   as browsers do) gets its body compressed against it, whole or as it
//!   streams: `dcz` (zstd, with the build's `compression-zstd`) or `dcb`
//!   (brotli), the RFC's header first, often tens of times smaller than
//!   without (BENCHMARKS.md). The window is 1 MiB, as for plain br and
//!   zstd (2 MiB with a dictionary over 512 KiB): the dictionary and as
//!   much of the body as fits. Only a 200 to
//!   a GET that every client may share is learned (no `no-store`,
//!   `private`, `Set-Cookie` or `Authorization`). Following RFC 9842
//!   §9.3.3, a cross-site request whose response the page may not read
//!   (Fetch Metadata: `Sec-Fetch-Mode` other than `navigate`,
//!   `same-origin`, or `cors` with an allowed `Origin`) gets no
//!   dictionary. Every response whose representation depends on
//!   `Accept-Encoding` then varies on `Available-Dictionary` too (so a
//!   cache keeps one copy per dictionary a client names). A
//!   dictionary-compressed response carries a weak `ETag` (a strong one
//!   naming both the bytes and the dictionary is future work). A
//!   dictionary's set-up (zstd loads it, brotli hashes it) and a learned
//!   body's SHA-256 are part of the poll that does them, so keep
//!   dictionaries small (at most [`MAX_DICTIONARY_SIZE`]).
//! - **Statistics**: [`CompressionLayer::stats`] returns a cheap handle with
//!   responses compressed per coding, bytes in and out, and skipped
//!   responses by [`SkipReason`].
//!
//! # Example
//!
//! With the defaults:
//!
//! ```
//! use bytes::Bytes;
//! use http::{Request, Response, header};
//! use http_body_util::{BodyExt, Full};
//! use std::convert::Infallible;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_perf::compression::CompressionLayer;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let json = format!("[{}]", vec!["{\"id\":1,\"name\":\"alpha\"}"; 200].join(","));
//! let handler = service_fn(move |_req: Request<Full<Bytes>>| {
//!     let json = json.clone();
//!     async move {
//!         Ok::<_, Infallible>(
//!             Response::builder()
//!                 .header(header::CONTENT_TYPE, "application/json")
//!                 .body(Full::<Bytes>::from(json))
//!                 .unwrap(),
//!         )
//!     }
//! });
//! let layer = CompressionLayer::new();
//! let stats = layer.stats();
//! let svc = ServiceBuilder::new().layer(layer).service(handler);
//!
//! let req = Request::get("/items").header(header::ACCEPT_ENCODING, "gzip, deflate").body(Full::<Bytes>::default())?;
//! let res = svc.oneshot(req).await?;
//! assert_eq!(res.headers()[header::CONTENT_ENCODING], "gzip");
//! assert_eq!(res.headers()[header::VARY], "accept-encoding");
//! // Small bodies are compressed whole and keep an exact Content-Length.
//! let length: usize = res.headers()[header::CONTENT_LENGTH].to_str()?.parse()?;
//!
//! let compressed = res.into_body().collect().await?.to_bytes();
//! assert_eq!(compressed.len(), length);
//! let mut plain = String::new();
//! std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&compressed[..]), &mut plain)?;
//! assert!(plain.starts_with("[{\"id\":1"));
//! assert_eq!(stats.snapshot().gzip.responses, 1);
//! # Ok(())
//! # }
//! ```
//!
//! Customized: deflate preferred, level 6 for gzip, a 256-byte threshold,
//! and a content-type filter that adds a vendor type to the defaults:
//!
//! ```
//! use bytes::Bytes;
//! use http::{Request, Response, header};
//! use http_body_util::Full;
//! use std::convert::Infallible;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_perf::compression::{CompressionLayer, default_compressible};
//! use tower_perf::headers::ContentCoding;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let layer = CompressionLayer::new()
//!     .codings([ContentCoding::Deflate, ContentCoding::Gzip])
//!     .level(ContentCoding::Gzip, 6)
//!     .min_size(256)
//!     .content_type_filter(|t| t == "application/x-custom-log" || default_compressible(t));
//! let handler = service_fn(|_req: Request<Full<Bytes>>| async {
//!     Ok::<_, Infallible>(
//!         Response::builder()
//!             .header(header::CONTENT_TYPE, "application/x-custom-log")
//!             .body(Full::<Bytes>::from("log line\n".repeat(64)))
//!             .unwrap(),
//!     )
//! });
//! let svc = ServiceBuilder::new().layer(layer).service(handler);
//! let req = Request::get("/log").header(header::ACCEPT_ENCODING, "gzip, deflate").body(Full::<Bytes>::default())?;
//! let res = svc.oneshot(req).await?;
//! assert_eq!(res.headers()[header::CONTENT_ENCODING], "deflate");
//! # Ok(())
//! # }
//! ```

mod body;
#[cfg(feature = "compression-br")]
mod dcb;
mod dictionary;
pub(crate) mod encoder;
mod future;
mod layer;
pub(crate) mod pool;
mod predicate;
mod service;
mod stats;
#[cfg(test)]
mod test_util;
mod whole;
mod zlib;
#[cfg(feature = "compression-zstd")]
mod zstd;

#[doc(inline)]
pub use self::dictionary::{DEFAULT_DICTIONARIES_BYTES, Dictionaries, MAX_DICTIONARY_SIZE};
#[doc(inline)]
pub use self::{
    body::{CompressionError, ResponseBody},
    future::ResponseFuture,
    layer::{
        CompressionLayer, DEFAULT_BR_LEVEL, DEFAULT_LEVEL, DEFAULT_MIN_SIZE, DEFAULT_ZSTD_LEVEL,
    },
    predicate::default_compressible,
    service::Compression,
    stats::{CodingSnapshot, CompressionSnapshot, CompressionStats, SkipReason},
};
