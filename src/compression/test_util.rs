//! What the compression unit tests share: a sample and the reference
//! decoders they check output with.

use crate::headers::ContentCoding;

/// `n` bytes of JSON-like text, varied every 997 bytes.
pub(super) fn sample(n: usize) -> Vec<u8> {
    (0..n)
        .map(|i| b"{\"id\":1,\"name\":\"alpha\"},"[i % 24] ^ (i / 997) as u8)
        .collect()
}

// The reference decoders, shared with the integration tests.
#[path = "../../tests/support/decoders.rs"]
mod decoders;
pub(super) use decoders::{
    decode, decode_prefix, gunzip, inflate, undictionary, undictionary_prefix,
};
