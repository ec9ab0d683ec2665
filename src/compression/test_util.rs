//! Decoders the compression unit tests check output with.

use std::io::Read;

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
