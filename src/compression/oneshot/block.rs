//! Block writing: one final block, stored, fixed or dynamic Huffman
//! (whichever is smallest), through a bit writer sized beforehand.

use super::alphabet::{Freqs, dist_code, length_code};
use super::huffman::{code_lengths, codes};

/// Writes bits least significant first into a buffer sized beforehand
/// (the block's exact size is known before it is written, plus 8 bytes of
/// slack so every flush can store a whole word).
struct Bits<'a> {
    buf: &'a mut [u8],
    pos: usize,
    acc: u64,
    n: u32,
}

impl Bits<'_> {
    /// Adds the low `bits` of `v`; at most 56 bits may be added between
    /// two flushes.
    #[inline]
    fn put(&mut self, v: u32, bits: u32) {
        self.acc |= u64::from(v) << self.n;
        self.n += bits;
    }

    /// Stores the whole bytes held.
    #[inline]
    fn flush(&mut self) {
        if let Some(dst) = self.buf.get_mut(self.pos..self.pos + 8) {
            dst.copy_from_slice(&self.acc.to_le_bytes());
        }
        let k = self.n / 8;
        self.pos += k as usize;
        self.acc = if k == 8 { 0 } else { self.acc >> (8 * k) };
        self.n -= 8 * k;
    }
}

/// The order code-length code lengths are sent in (RFC 1951 §3.2.7).
const CL_ORDER: [usize; 19] = [
    16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15,
];

/// Writes the symbols as one final block: stored, fixed or dynamic,
/// whichever is shortest.
#[inline]
pub(super) fn write_block(
    input: &[u8],
    level: u32,
    syms: &[u32],
    f: &mut Freqs,
    out: &mut Vec<u8>,
) {
    if level == 0 {
        return stored(input, out);
    }
    f.lit[256] = 1;
    let mut lit_len = [0u8; 286];
    let mut dist_len = [0u8; 30];
    code_lengths(&f.lit, 15, &mut lit_len);
    code_lengths(&f.dist, 15, &mut dist_len);
    let hlit = 257
        + lit_len[257..]
            .iter()
            .rposition(|&l| l > 0)
            .map_or(0, |p| p + 1);
    let hdist = dist_len.iter().rposition(|&l| l > 0).map_or(1, |p| p + 1);
    // The code lengths, run-length coded as one sequence.
    let mut rle = [(0u8, 0u8); 286 + 30];
    let rle_n = run_lengths(&lit_len[..hlit], &dist_len[..hdist], &mut rle);
    let rle = &rle[..rle_n];
    let mut cl_freq = [0u32; 19];
    for &(sym, _) in rle {
        cl_freq[usize::from(sym)] += 1;
    }
    let mut cl_len = [0u8; 19];
    code_lengths(&cl_freq, 7, &mut cl_len);
    let hclen = CL_ORDER
        .iter()
        .rposition(|&s| cl_len[s] > 0)
        .map_or(4, |p| (p + 1).max(4));
    let cost = |lens: &[u8], freqs: &[u32]| -> u64 {
        lens.iter()
            .zip(freqs)
            .map(|(&l, &n)| u64::from(l) * u64::from(n))
            .sum()
    };
    let rle_extra: u64 = rle
        .iter()
        .map(|&(s, _)| match s {
            16 => 2,
            17 => 3,
            18 => 7,
            _ => 0,
        })
        .sum();
    let dynamic_bits = 3
        + 14
        + 3 * hclen as u64
        + cost(&cl_len, &cl_freq)
        + rle_extra
        + cost(&lit_len, &f.lit)
        + cost(&dist_len, &f.dist)
        + f.extra_bits;
    let fixed_lit = FIXED_LIT;
    let dists: u64 = f.dist.iter().map(|&n| u64::from(n)).sum();
    let fixed_bits = 3 + cost(&fixed_lit, &f.lit) + 5 * dists + f.extra_bits;
    let stored_bits = 8 * (1 + 4 + input.len() as u64);
    let bits = dynamic_bits.min(fixed_bits);
    if stored_bits <= bits {
        return stored(input, out);
    }
    let start = out.len();
    let bytes = bits.div_ceil(8) as usize;
    out.resize(start + bytes + 8, 0);
    let mut w = Bits {
        buf: &mut out[start..],
        pos: 0,
        acc: 0,
        n: 0,
    };
    if fixed_bits <= dynamic_bits {
        w.put(0b011, 3);
        let lit_codes = codes(&fixed_lit);
        let dist_codes = codes(&[5u8; 30]);
        symbols(
            &mut w,
            syms,
            (&lit_codes, &fixed_lit),
            (&dist_codes, &[5u8; 30]),
        );
    } else {
        w.put(0b101, 3);
        w.put((hlit - 257) as u32, 5);
        w.put((hdist - 1) as u32, 5);
        w.put((hclen - 4) as u32, 4);
        w.flush();
        for &s in &CL_ORDER[..hclen] {
            w.put(u32::from(cl_len[s]), 3);
            w.flush();
        }
        let cl_codes = codes(&cl_len);
        for &(sym, extra) in rle {
            let s = usize::from(sym);
            w.put(u32::from(cl_codes[s]), u32::from(cl_len[s]));
            match sym {
                16 => w.put(u32::from(extra), 2),
                17 => w.put(u32::from(extra), 3),
                18 => w.put(u32::from(extra), 7),
                _ => {}
            }
            w.flush();
        }
        let lit_codes = codes(&lit_len);
        let dist_codes = codes(&dist_len);
        symbols(
            &mut w,
            syms,
            (&lit_codes, &lit_len),
            (&dist_codes, &dist_len),
        );
    }
    // The last partial byte, padded with zeros.
    w.put(0, 7);
    w.flush();
    debug_assert_eq!(w.pos, bytes);
    out.truncate(start + bytes);
}

/// One final stored block (the input fits one: at most 65,535 bytes).
fn stored(input: &[u8], out: &mut Vec<u8>) {
    // BFINAL = 1, BTYPE = 00, then padding to the byte.
    out.push(1);
    let len = input.len() as u16;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&(!len).to_le_bytes());
    out.extend_from_slice(input);
}

/// The symbols, then end-of-block.
fn symbols(w: &mut Bits<'_>, syms: &[u32], lit: (&[u16], &[u8]), dist: (&[u16], &[u8])) {
    let (lit_codes, lit_len) = lit;
    let (dist_codes, dist_len) = dist;
    for &sym in syms {
        if sym < 256 {
            let s = sym as usize;
            w.put(u32::from(lit_codes[s]), u32::from(lit_len[s]));
        } else {
            // At most 15 + 5 and 15 + 13 bits: one flush for both.
            let (len, dist) = ((sym & 0x1ff) as usize, (sym >> 9) as usize);
            let (lc, lx, lv) = length_code(len);
            w.put(
                u32::from(lit_codes[lc]) | (lv << lit_len[lc]),
                u32::from(lit_len[lc]) + lx,
            );
            let (dc, dx, dv) = dist_code(dist);
            w.put(
                u32::from(dist_codes[dc]) | (dv << dist_len[dc]),
                u32::from(dist_len[dc]) + dx,
            );
        }
        w.flush();
    }
    w.put(u32::from(lit_codes[256]), u32::from(lit_len[256]));
    w.flush();
}

/// The fixed literal/length code's lengths (RFC 1951 §3.2.6), over all 288
/// symbols so the canonical codes come out right.
const FIXED_LIT: [u8; 288] = {
    let mut l = [8u8; 288];
    let mut i = 144;
    while i < 256 {
        l[i] = 9;
        i += 1;
    }
    while i < 280 {
        l[i] = 7;
        i += 1;
    }
    l
};

/// Run-length codes the code lengths of both trees as one sequence
/// (RFC 1951 §3.2.7: runs may cross from one to the other) into
/// `(symbol, extra bits)` pairs; returns how many.
fn run_lengths(lit: &[u8], dist: &[u8], out: &mut [(u8, u8); 286 + 30]) -> usize {
    let len_at = |i: usize| {
        if i < lit.len() {
            lit[i]
        } else {
            dist[i - lit.len()]
        }
    };
    let total = lit.len() + dist.len();
    let mut k = 0;
    let mut emit = |out: &mut [(u8, u8); 316], sym: u8, extra: u8| {
        out[k] = (sym, extra);
        k += 1;
    };
    let mut i = 0;
    while i < total {
        let v = len_at(i);
        let mut run = 1;
        while i + run < total && len_at(i + run) == v {
            run += 1;
        }
        i += run;
        if v == 0 {
            while run >= 11 {
                let r = run.min(138);
                emit(out, 18, (r - 11) as u8);
                run -= r;
            }
            if run >= 3 {
                emit(out, 17, (run - 3) as u8);
                run = 0;
            }
        } else {
            emit(out, v, 0);
            run -= 1;
            while run >= 3 {
                let r = run.min(6);
                emit(out, 16, (r - 3) as u8);
                run -= r;
            }
        }
        for _ in 0..run {
            emit(out, v, 0);
        }
    }
    k
}
