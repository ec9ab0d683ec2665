use std::fmt;
use std::sync::Arc;

use tower_layer::Layer;

use super::Compression;
use super::encoder;
use super::stats::CompressionStats;
use crate::headers::ContentCoding;

/// Default minimum size in bytes. Below about 1 KiB the gzip header and
/// trailer (18 bytes), the deflate block overhead and the encoder's CPU buy
/// little: see BENCHMARKS.md for the measurement.
pub const DEFAULT_MIN_SIZE: u64 = 1024;

/// Default gzip and deflate level for dynamic responses, chosen by
/// measurement (BENCHMARKS.md): with the zlib-rs backend level 2 costs about
/// 40–50% of level 6's CPU, and its output is 0–9% larger on JSON and
/// JavaScript; level 1 is faster still but 25–40% larger.
pub const DEFAULT_LEVEL: u32 = 2;

/// Default brotli quality (0–11) for dynamic responses, chosen by
/// measurement (BENCHMARKS.md, section Compression II): on JSON and text,
/// qualities 2–4 compress within 5% of each other and 4 costs 40–90% more
/// than 3; 5 and above cost 2–8 times the CPU for 7–14% smaller output.
pub const DEFAULT_BR_LEVEL: u32 = 3;

/// Default zstd level (1–19) for dynamic responses, chosen by measurement
/// (BENCHMARKS.md, section Compression II): on JSON, level 1 was both
/// faster (by 30–45% at 64 KiB) and smaller (by up to 14%) than 3; on
/// text 3 was 1–8% smaller for 20–40% more CPU. API responses are JSON.
pub const DEFAULT_ZSTD_LEVEL: u32 = 1;

pub(crate) type ContentTypeFilter = Arc<dyn Fn(&str) -> bool + Send + Sync>;

#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) codings: Vec<ContentCoding>,
    pub(crate) gzip_level: u32,
    pub(crate) deflate_level: u32,
    pub(crate) br_level: u32,
    pub(crate) zstd_level: u32,
    pub(crate) min_size: u64,
    pub(crate) event_stream: bool,
    pub(crate) grpc: bool,
    pub(crate) filter: Option<ContentTypeFilter>,
    pub(crate) reject_unacceptable: bool,
    pub(crate) dictionaries: Option<super::Dictionaries>,
}

/// The server's order among codings a client weighs equally: zstd, br,
/// gzip, deflate (those this build produces).
const DEFAULT_PREFERENCE: [ContentCoding; 4] = [
    ContentCoding::Zstd,
    ContentCoding::Br,
    ContentCoding::Gzip,
    ContentCoding::Deflate,
];

impl Config {
    pub(crate) fn level(&self, coding: ContentCoding) -> u32 {
        match coding {
            ContentCoding::Deflate => self.deflate_level,
            ContentCoding::Br => self.br_level,
            ContentCoding::Zstd => self.zstd_level,
            _ => self.gzip_level,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            codings: DEFAULT_PREFERENCE
                .into_iter()
                .filter(|c| encoder::supported(*c))
                .collect(),
            gzip_level: DEFAULT_LEVEL,
            deflate_level: DEFAULT_LEVEL,
            br_level: DEFAULT_BR_LEVEL,
            zstd_level: DEFAULT_ZSTD_LEVEL,
            min_size: DEFAULT_MIN_SIZE,
            event_stream: false,
            grpc: false,
            filter: None,
            reject_unacceptable: false,
            dictionaries: None,
        }
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("codings", &self.codings)
            .field("gzip_level", &self.gzip_level)
            .field("deflate_level", &self.deflate_level)
            .field("br_level", &self.br_level)
            .field("zstd_level", &self.zstd_level)
            .field("min_size", &self.min_size)
            .field("event_stream", &self.event_stream)
            .field("grpc", &self.grpc)
            .field("filter", &self.filter.as_ref().map(|_| "custom"))
            .field("reject_unacceptable", &self.reject_unacceptable)
            .field("dictionaries", &self.dictionaries.as_ref().map(|d| d.len()))
            .finish()
    }
}

/// Compresses response bodies with zstd, br, gzip or deflate (those the
/// build has), as negotiated.
///
/// See the [module docs](crate::compression) for what it does and an
/// example.
#[derive(Debug, Clone)]
pub struct CompressionLayer {
    pub(crate) config: Arc<Config>,
    pub(crate) stats: CompressionStats,
}

impl Default for CompressionLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl CompressionLayer {
    /// zstd, br, gzip and deflate, in that order of preference, those the
    /// build has (`compression-zstd`, `compression-br`), at their default
    /// levels, for compressible content types of at least
    /// [`DEFAULT_MIN_SIZE`] bytes.
    pub fn new() -> Self {
        Self {
            config: Arc::default(),
            stats: CompressionStats::new(),
        }
    }

    fn config(&mut self) -> &mut Config {
        Arc::make_mut(&mut self.config)
    }

    /// The codings to offer, in the server's order of preference among
    /// codings the client weighs equally (a repeat counts once). An empty
    /// list turns compression off while `Vary` is still maintained.
    ///
    /// # Panics
    ///
    /// On `identity` (it is not a compression) or on a coding this build
    /// cannot produce (`br` without the `compression-br` feature, `zstd`
    /// without `compression-zstd`), naming the feature: a layer configured
    /// for a coding it would never send is a mistake, not a preference.
    pub fn codings<I: IntoIterator<Item = ContentCoding>>(mut self, codings: I) -> Self {
        let mut list: Vec<ContentCoding> = Vec::new();
        for c in codings {
            encoder::assert_buildable("CompressionLayer::codings", c);
            if !list.contains(&c) {
                list.push(c);
            }
        }
        self.config().codings = list;
        self
    }

    /// The codings this layer offers, in its order of preference: what a
    /// response cache outside it keys on
    /// (`CacheLayer::codings(compression.offered_codings().iter().copied())`).
    pub fn offered_codings(&self) -> &[ContentCoding] {
        &self.config.codings
    }

    /// The level for one coding: gzip and deflate 0 (store) … 9
    /// (smallest), default [`DEFAULT_LEVEL`]; brotli 0 … 11, default
    /// [`DEFAULT_BR_LEVEL`]; zstd 1 … 19, default [`DEFAULT_ZSTD_LEVEL`]
    /// (its window stays at 1 MiB). A level above the coding's highest is
    /// lowered to it. Levels well above the defaults suit bodies
    /// compressed ahead of time: one poll may spend a whole block's work
    /// (see the module docs).
    pub fn level(mut self, coding: ContentCoding, level: u32) -> Self {
        let level = level.min(encoder::max_level(coding));
        match coding {
            ContentCoding::Gzip => self.config().gzip_level = level,
            ContentCoding::Deflate => self.config().deflate_level = level,
            ContentCoding::Br => self.config().br_level = level,
            ContentCoding::Zstd => self.config().zstd_level = level.max(1),
            ContentCoding::Identity => {}
        }
        self
    }

    /// Responses smaller than this are sent as they are. For bodies of
    /// unknown length the layer holds back up to this many bytes to decide.
    pub fn min_size(mut self, bytes: u64) -> Self {
        self.config().min_size = bytes;
        self
    }

    /// Compress `text/event-stream` too (off by default: events must not
    /// wait in an encoder, and some proxies mishandle compressed SSE; the
    /// layer does flush on every pause, so turning it on is safe).
    pub fn compress_event_stream(mut self, on: bool) -> Self {
        self.config().event_stream = on;
        self
    }

    /// Compress gRPC responses too (off by default: gRPC compresses its
    /// messages itself).
    pub fn compress_grpc(mut self, on: bool) -> Self {
        self.config().grpc = on;
        self
    }

    /// Replaces the default content-type rule
    /// ([`default_compressible`](super::default_compressible)). The filter
    /// gets the media type's lowercase essence (`type/subtype`); responses
    /// without a valid Content-Type are never compressed.
    pub fn content_type_filter<F>(mut self, filter: F) -> Self
    where
        F: Fn(&str) -> bool + Send + Sync + 'static,
    {
        self.config().filter = Some(Arc::new(filter));
        self
    }

    /// When the client rules out every coding we have *and* identity
    /// (`identity;q=0` or `*;q=0`), answer `406 Not Acceptable` instead of
    /// sending identity anyway. Off by default: RFC 9110 §12.5.3 lets a
    /// server disregard the field, and a readable answer serves a confused
    /// client better than an error.
    pub fn reject_unacceptable(mut self, on: bool) -> Self {
        self.config().reject_unacceptable = on;
        self
    }

    /// Compresses with shared dictionaries (RFC 9842): a request whose
    /// `Available-Dictionary` names one of `dictionaries` and whose
    /// `Accept-Encoding` lists `dcz` or `dcb` gets its response compressed
    /// with it, whole or as it streams. Responses the layer compresses
    /// that carry a valid `Use-As-Dictionary` are added to
    /// `dictionaries` once they have ended (up to
    /// [`MAX_DICTIONARY_SIZE`](super::MAX_DICTIONARY_SIZE)). Every
    /// response whose representation depends on `Accept-Encoding` then
    /// varies on `Available-Dictionary` too. See the module docs.
    ///
    /// # Panics
    ///
    /// In a build without `compression-br` and `compression-zstd`: no
    /// dictionary coding could ever be produced.
    pub fn dictionaries(mut self, dictionaries: super::Dictionaries) -> Self {
        if cfg!(not(any(
            feature = "compression-br",
            feature = "compression-zstd"
        ))) {
            panic!(
                "CompressionLayer::dictionaries: dictionary compression (dcb, dcz) needs the `compression-br` or `compression-zstd` feature of tower-perf"
            );
        }
        self.config().dictionaries = Some(dictionaries);
        self
    }

    /// A handle to this layer's live statistics, shared by every service it
    /// builds.
    pub fn stats(&self) -> CompressionStats {
        self.stats.clone()
    }
}

impl<S> Layer<S> for CompressionLayer {
    type Service = Compression<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Compression {
            inner,
            config: self.config.clone(),
            stats: self.stats.clone(),
        }
    }
}
