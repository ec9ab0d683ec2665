//! The reference decoders tests check compressed output with (flate2,
//! and `brotli` and `zstd` with their features). Shared by the
//! integration tests (`support`) and the crate's own unit tests
//! (`src/compression/test_util.rs` includes this file), so both read
//! streams the same way; `ContentCoding` comes from the including module.
#![allow(dead_code, unreachable_pub)]

use std::io::Read;

use super::ContentCoding;

/// Decompresses a whole gzip stream.
pub fn gunzip(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(b)
        .read_to_end(&mut out)
        .expect("complete gzip stream");
    out
}

/// Decompresses a whole zlib (`deflate` coding) stream.
pub fn inflate(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::ZlibDecoder::new(b)
        .read_to_end(&mut out)
        .expect("complete zlib stream");
    out
}

/// A reader that decodes `b` in `coding` (`identity`: as it is).
fn decoder(coding: ContentCoding, b: &[u8]) -> Box<dyn Read + '_> {
    match coding {
        ContentCoding::Gzip => Box::new(flate2::read::GzDecoder::new(b)),
        ContentCoding::Deflate => Box::new(flate2::read::ZlibDecoder::new(b)),
        #[cfg(feature = "compression-br")]
        ContentCoding::Br => Box::new(brotli::Decompressor::new(b, 4096)),
        #[cfg(feature = "compression-zstd")]
        ContentCoding::Zstd => Box::new(zstd::stream::read::Decoder::new(b).expect("zstd")),
        ContentCoding::Identity => Box::new(b),
        #[allow(unreachable_patterns)]
        other => panic!("no decoder for {other:?} in this build"),
    }
}

/// Decompresses a whole stream in `coding`; panics unless it is complete.
pub fn decode(coding: ContentCoding, b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    decoder(coding, b)
        .read_to_end(&mut out)
        .expect("a complete stream");
    out
}

/// What a client can decode so far from the first bytes of a stream in
/// `coding` (the decoder stops where the bytes end).
pub fn decode_prefix(coding: ContentCoding, b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut d = decoder(coding, b);
    let mut buf = [0u8; 4096];
    while let Ok(n) = d.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    out
}
