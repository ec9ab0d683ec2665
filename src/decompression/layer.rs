use std::sync::Arc;

use http::HeaderValue;
use tower_layer::Layer;

use super::RequestDecompression;
use super::stats::DecompressionStats;
use crate::compression::encoder;
use crate::headers::ContentCoding;

/// The default limit on a request body's *decoded* size: 16 MiB.
pub const DEFAULT_MAX_DECODED_SIZE: u64 = 16 * 1024 * 1024;

#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) codings: Vec<ContentCoding>,
    pub(crate) max_decoded_size: u64,
    /// The `Accept-Encoding` a 415 carries: the codings decoded.
    pub(crate) accept: HeaderValue,
}

impl Config {
    fn new(codings: Vec<ContentCoding>, max_decoded_size: u64) -> Self {
        let names: Vec<&str> = codings.iter().map(|c| c.as_str()).collect();
        // An empty list says no coding is accepted (RFC 9110 §12.5.3).
        let accept = HeaderValue::from_str(&names.join(", "))
            .expect("coding names are tokens: a valid header value");
        Self {
            codings,
            max_decoded_size,
            accept,
        }
    }
}

/// Decodes `Content-Encoding` request bodies (gzip, deflate, and br and
/// zstd where the build has them) for the inner service.
///
/// See the [module docs](crate::decompression) for what it does and an
/// example.
#[derive(Debug, Clone)]
pub struct RequestDecompressionLayer {
    pub(crate) config: Arc<Config>,
    pub(crate) stats: DecompressionStats,
}

impl Default for RequestDecompressionLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl RequestDecompressionLayer {
    /// Every coding the build decodes (gzip and deflate; br with
    /// `compression-br`, zstd with `compression-zstd`), with decoded bodies
    /// limited to [`DEFAULT_MAX_DECODED_SIZE`].
    pub fn new() -> Self {
        let codings = [
            ContentCoding::Zstd,
            ContentCoding::Br,
            ContentCoding::Gzip,
            ContentCoding::Deflate,
        ]
        .into_iter()
        .filter(|c| encoder::supported(*c))
        .collect();
        Self {
            config: Arc::new(Config::new(codings, DEFAULT_MAX_DECODED_SIZE)),
            stats: DecompressionStats::new(),
        }
    }

    /// The codings to decode (a repeat counts once); a body in any other
    /// is answered with 415. An empty list refuses every encoded body.
    ///
    /// # Panics
    ///
    /// On `identity` (there is nothing to decode) or on a coding this build
    /// cannot decode (`br` without the `compression-br` feature, `zstd`
    /// without `compression-zstd`), naming the feature.
    pub fn codings<I: IntoIterator<Item = ContentCoding>>(self, codings: I) -> Self {
        let mut list: Vec<ContentCoding> = Vec::new();
        for c in codings {
            encoder::assert_buildable("RequestDecompressionLayer::codings", c);
            if !list.contains(&c) {
                list.push(c);
            }
        }
        Self {
            config: Arc::new(Config::new(list, self.config.max_decoded_size)),
            stats: self.stats,
        }
    }

    /// The most bytes a request body may decode to. Past it the inner
    /// service's body fails with [`http_body_util::LengthLimitError`] and
    /// the layer answers `413 Content Too Large`; decoding stops there, so a
    /// decompression bomb costs at most this much output. The encoded body
    /// is limited to about the same size (this, plus 1/64 and 1 KiB, what
    /// stored blocks add to incompressible data), so a body that decodes
    /// to little cannot be sent forever either.
    ///
    /// # Panics
    ///
    /// On 0: every encoded body would be refused; use
    /// [`codings`](Self::codings) with an empty list for that.
    pub fn max_decoded_size(mut self, bytes: u64) -> Self {
        assert!(
            bytes > 0,
            "RequestDecompressionLayer::max_decoded_size: 0 refuses every body; use codings([]) to refuse encoded bodies"
        );
        Arc::make_mut(&mut self.config).max_decoded_size = bytes;
        self
    }

    /// A handle to this layer's live statistics, shared by every service it
    /// builds.
    pub fn stats(&self) -> DecompressionStats {
        self.stats.clone()
    }
}

impl<S> Layer<S> for RequestDecompressionLayer {
    type Service = RequestDecompression<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestDecompression {
            inner,
            config: self.config.clone(),
            stats: self.stats.clone(),
        }
    }
}
