//! Deflate's length and distance alphabets (RFC 1951 §3.2.5), and the
//! symbol counts of a block that its codes are built from.

/// Longest match deflate can express.
pub(super) const MAX_MATCH: usize = 258;

/// Symbol counts of a block, and the extra bits its lengths and
/// distances carry.
pub(super) struct Freqs {
    pub(super) lit: [u32; 286],
    pub(super) dist: [u32; 30],
    pub(super) extra_bits: u64,
}

impl Freqs {
    pub(super) fn new() -> Self {
        Self {
            lit: [0; 286],
            dist: [0; 30],
            extra_bits: 0,
        }
    }
}

/// Deflate's length code of a match length (3–258): symbol (257–285),
/// extra bit count, extra bits.
#[inline]
pub(super) fn length_code(len: usize) -> (usize, u32, u32) {
    let l = (len - 3) as u32;
    if l < 8 {
        (257 + l as usize, 0, 0)
    } else if len == MAX_MATCH {
        (285, 0, 0)
    } else {
        let hb = 31 - l.leading_zeros();
        let low = (l >> (hb - 2)) & 3;
        let base = (4 | low) << (hb - 2);
        ((257 + 4 * (hb - 1) + low) as usize, hb - 2, l - base)
    }
}

/// Deflate's distance code of a distance (1–32768): code (0–29), extra
/// bit count, extra bits.
#[inline]
pub(super) fn dist_code(dist: usize) -> (usize, u32, u32) {
    let d = (dist - 1) as u32;
    if d < 4 {
        (d as usize, 0, 0)
    } else {
        let hb = 31 - d.leading_zeros();
        let low = (d >> (hb - 1)) & 1;
        let base = (2 | low) << (hb - 1);
        ((2 * hb + low) as usize, hb - 1, d - base)
    }
}
