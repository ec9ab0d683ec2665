//! Request decompression: `Content-Encoding` request bodies (gzip,
//! deflate, br, zstd) decoded for the inner service, with the decoded size
//! bounded so a decompression bomb costs bounded memory and CPU.
//!
//! [`RequestDecompressionLayer`] wraps any service; the inner service gets
//! a [`DecompressionBody`] and the request without `Content-Encoding` and
//! `Content-Length` (the decoded length is not known before reading).
//!
//! # What it does
//!
//! - **Codings**: gzip (several members, RFC 1952 §2.2, and `x-gzip`),
//!   deflate (the zlib format, RFC 9110 §8.4.1.2), `br` with the
//!   `compression-br` feature and `zstd` with `compression-zstd`
//!   ([`RequestDecompressionLayer::codings`] narrows the list). `identity`
//!   elements are ignored. A body in another coding, or in two codings
//!   applied one over the other, is answered with `415 Unsupported Media
//!   Type` and an `Accept-Encoding` listing the codings the layer decodes
//!   (RFC 9110 §15.5.16); the inner service never sees it.
//! - **Bounded output**: decoding stops as soon as the decoded body passes
//!   [`max_decoded_size`](RequestDecompressionLayer::max_decoded_size)
//!   (default [`DEFAULT_MAX_DECODED_SIZE`], 16 MiB), and the body fails
//!   with [`http_body_util::LengthLimitError`], the error axum's extractors
//!   answer with 413: the inner service is handed at most the limit and
//!   one byte. The encoded body is limited to about the same size (the
//!   limit plus 1/64 and 1 KiB), and a gzip body to 1,000 members, so a
//!   body that decodes to nothing costs bounded work too. Behind axum the
//!   effective limit is the smaller of this and axum's own body limit
//!   (2 MiB by default), which counts the decoded bytes.
//! - **Bounded memory and work**: a body is decoded as the inner service
//!   reads it, into one buffer per body (4 KiB, growing to 32 KiB as it
//!   fills); decoded bytes are gathered
//!   into frames of up to 32 KiB (many tiny input frames make few output
//!   frames), and a poll yields to the executor after 256 KiB of input.
//!   Decoder state is bounded by the format, not by the sender: 32 KiB of
//!   zlib window; brotli as RFC 7932 defines it (windows up to 16 MiB, the
//!   "large window" extension refused); zstd windows up to 8 MiB (RFC 9659
//!   §3; libzstd would otherwise accept 128 MiB). brotli and zstd decode
//!   ahead of what they hand on, into their window (brotli) or by one
//!   128 KiB block (zstd): past the limit, a brotli body may have cost up
//!   to its window (at most 16 MiB) of decoding.
//! - **Answers that say whose fault it is**: when the inner service fails
//!   (an error, or a 4xx or 5xx answer) after its body failed because of
//!   the client (the decoded size passed the limit, or the bytes are not
//!   valid for their coding: corrupt, truncated, or with data after the
//!   end), the layer replaces that failure with `413 Content Too Large` or
//!   `400 Bad Request`, whatever the inner service made of the error
//!   (axum's own answer, or a 500 from a service that does not tell errors
//!   apart). A success stands, and so does an answer given before the
//!   body failed. A failure of the underlying connection is left to the
//!   inner service. If a decoder cannot be set up (libzstd out of memory)
//!   the answer is 500.
//! - **Empty bodies**: a body without a single byte is handed on empty (a
//!   `GET` with a stray `Content-Encoding` is not an error).
//! - **Statistics**: [`RequestDecompressionLayer::stats`] returns a cheap
//!   handle with requests and bytes per coding and the 413, 415 and 400
//!   answers.
//!
//! The body of a `dcb` or `dcz` request (RFC 9842 dictionary codings) is
//! refused with 415 like any other coding the layer does not decode.
//!
//! Place it next to the handler, inside the rate limiter, so a client over
//! its quota costs no decoding.
//!
//! # Example
//!
//! ```
//! use bytes::Bytes;
//! use http::{Request, StatusCode, header};
//! use http_body_util::{BodyExt, Full};
//! use std::io::Write;
//! use tower::{BoxError, ServiceBuilder, ServiceExt, service_fn};
//! use tower_perf::decompression::{DecompressionBody, RequestDecompressionLayer};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), BoxError> {
//! // The handler reads the decoded body; it never sees Content-Encoding.
//! let handler = service_fn(|req: Request<DecompressionBody<Full<Bytes>>>| async move {
//!     assert!(req.headers().get(header::CONTENT_ENCODING).is_none());
//!     let body = req.into_body().collect().await?.to_bytes();
//!     Ok::<_, BoxError>(http::Response::new(Full::new(Bytes::from(format!("{} bytes", body.len())))))
//! });
//! let layer = RequestDecompressionLayer::new().max_decoded_size(1024 * 1024);
//! let stats = layer.stats();
//! let svc = ServiceBuilder::new().layer(layer).service(handler);
//!
//! let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
//! gz.write_all(&[b'a'; 10_000])?;
//! let req = Request::post("/upload")
//!     .header(header::CONTENT_ENCODING, "gzip")
//!     .body(Full::new(Bytes::from(gz.finish()?)))?;
//! let res = svc.clone().oneshot(req).await?;
//! assert_eq!(res.status(), StatusCode::OK);
//! assert_eq!(res.into_body().collect().await?.to_bytes(), "10000 bytes");
//! assert_eq!(stats.snapshot().gzip.bytes_out, 10_000);
//!
//! // A coding the layer does not decode is refused before the handler.
//! let req = Request::post("/upload")
//!     .header(header::CONTENT_ENCODING, "compress")
//!     .body(Full::new(Bytes::from_static(b"...")))?;
//! let res = svc.oneshot(req).await?;
//! assert_eq!(res.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
//! assert!(res.headers()[header::ACCEPT_ENCODING].to_str()?.contains("gzip"));
//! # Ok(())
//! # }
//! ```
//!
//! With axum, whose routes take its own `Body`, convert the decoded body
//! back after the layer (the example server does this):
//!
//! ```
//! use axum::{Router, body::Body, http::Request, routing::post};
//! use tower::ServiceBuilder;
//! use tower_perf::decompression::{DecompressionBody, RequestDecompressionLayer};
//!
//! let app: Router = Router::new()
//!     .route("/items", post(|body: String| async move { body.len().to_string() }))
//!     .layer(
//!         ServiceBuilder::new()
//!             .layer(RequestDecompressionLayer::new().max_decoded_size(64 * 1024))
//!             .map_request(|req: Request<DecompressionBody<Body>>| req.map(Body::new)),
//!     );
//! # let _ = app;
//! ```

mod body;
mod decoder;
mod future;
mod layer;
mod service;
mod stats;
#[cfg(feature = "compression-zstd")]
mod zstd;

#[doc(inline)]
pub use self::{
    body::{DecompressionBody, ResponseBody},
    decoder::DecompressionError,
    future::ResponseFuture,
    layer::{DEFAULT_MAX_DECODED_SIZE, RequestDecompressionLayer},
    service::RequestDecompression,
    stats::{DecodedSnapshot, DecompressionSnapshot, DecompressionStats},
};
