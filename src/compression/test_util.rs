//! Decoders the compression unit tests check output with.

use std::io::Read;

use crate::headers::ContentCoding;

/// `n` bytes of JSON-like text, varied every 997 bytes.
pub(super) fn sample(n: usize) -> Vec<u8> {
    (0..n)
        .map(|i| b"{\"id\":1,\"name\":\"alpha\"},"[i % 24] ^ (i / 997) as u8)
        .collect()
}

/// Decompresses one gzip member.
pub(super) fn gunzip(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(b)
        .read_to_end(&mut out)
        .unwrap();
    out
}

/// Decompresses a zlib stream (the `deflate` content coding).
pub(super) fn inflate(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::ZlibDecoder::new(b)
        .read_to_end(&mut out)
        .unwrap();
    out
}

/// A reader that decodes `b` in `coding`.
fn decoder<'a>(coding: ContentCoding, b: &'a [u8]) -> Box<dyn Read + 'a> {
    match coding {
        ContentCoding::Gzip => Box::new(flate2::read::GzDecoder::new(b)),
        ContentCoding::Deflate => Box::new(flate2::read::ZlibDecoder::new(b)),
        #[cfg(feature = "compression-br")]
        ContentCoding::Br => Box::new(brotli::Decompressor::new(b, 4096)),
        #[cfg(feature = "compression-zstd")]
        ContentCoding::Zstd => Box::new(zstd::stream::read::Decoder::new(b).unwrap()),
        other => panic!("no decoder for {other:?} in this build"),
    }
}

/// Decodes a whole stream of `coding`.
pub(super) fn decode(coding: ContentCoding, b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    decoder(coding, b).read_to_end(&mut out).unwrap();
    out
}

/// Decodes what a stream cut short holds so far (a flushed prefix).
pub(super) fn decode_prefix(coding: ContentCoding, b: &[u8]) -> Vec<u8> {
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
