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
    read_prefix(decoder(coding, b))
}

/// What `d` yields before its input runs out (or turns out malformed).
fn read_prefix(mut d: Box<dyn Read + '_>) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = d.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    out
}

/// A reader that decodes a dictionary-compressed body (RFC 9842: `dcz` or
/// `dcb`, the coding's name) after checking its header names `hash`.
fn dictionary_decoder<'a>(
    coding: &str,
    body: &'a [u8],
    dictionary: &'a [u8],
    hash: &[u8; 32],
) -> Box<dyn Read + 'a> {
    match coding {
        #[cfg(feature = "compression-zstd")]
        "dcz" => {
            assert_eq!(body[..8], [0x5e, 0x2a, 0x4d, 0x18, 0x20, 0, 0, 0]);
            assert_eq!(&body[8..40], hash);
            Box::new(
                zstd::stream::read::Decoder::with_ref_prefix(&body[40..], dictionary)
                    .expect("zstd"),
            )
        }
        #[cfg(feature = "compression-br")]
        "dcb" => {
            assert_eq!(body[..4], [0xff, 0x44, 0x43, 0x42]);
            assert_eq!(&body[4..36], hash);
            Box::new(brotli::Decompressor::new_with_custom_dict(
                &body[36..],
                4096,
                dictionary.to_vec().into(),
            ))
        }
        other => {
            let _ = (body, dictionary, hash);
            panic!("not a dictionary coding in this build: {other}")
        }
    }
}

/// Decompresses a whole dictionary-compressed body (`dcz` or `dcb`) whose
/// header names `hash`; panics unless it is complete.
pub fn undictionary(coding: &str, body: &[u8], dictionary: &[u8], hash: &[u8; 32]) -> Vec<u8> {
    let mut out = Vec::new();
    dictionary_decoder(coding, body, dictionary, hash)
        .read_to_end(&mut out)
        .expect("a complete stream");
    out
}

/// What a client can decode so far from the first bytes of a
/// dictionary-compressed body.
pub fn undictionary_prefix(
    coding: &str,
    body: &[u8],
    dictionary: &[u8],
    hash: &[u8; 32],
) -> Vec<u8> {
    read_prefix(dictionary_decoder(coding, body, dictionary, hash))
}
