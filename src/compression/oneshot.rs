//! A one-shot deflate encoder for small bodies held whole in memory.
//!
//! zlib (and zlib-rs, which the streaming path drives) clears a 128 KiB
//! hash table for every stream, whatever the stream's size: about a fifth
//! of the time a 2 KiB JSON body takes to compress on this project's
//! machines (`benches/compression.rs`). A small body the layer holds whole
//! (up to [`max_input`] for its level, where this measured faster) is
//! compressed here instead, with tables sized to it: a hash head of about
//! one slot per input byte, chains as long as the input, all kept per
//! thread and cleared only as far as the input reaches.
//!
//! Inputs fit in deflate's 32 KiB window ([`MAX_INPUT`] at most), so there
//! is no sliding and every earlier position is in reach. Matches are found
//! through hash chains over 4-byte prefixes, greedily at levels 1–2 and
//! with zlib's lazy evaluation from level 3, with zlib's chain lengths and
//! thresholds per level. The whole body becomes one block: stored, fixed
//! or dynamic Huffman, whichever is smallest. Code lengths come from the
//! in-place minimum-redundancy algorithm of Moffat and Katajainen, limited
//! to 15 bits (7 for the code-length code) by moving leaves up, as miniz
//! does.
//!
//! Every output is checked in the tests by decoding it with zlib-rs's
//! inflate (through flate2), over levels 0–9 and many shapes of input.

use std::cell::RefCell;

use crate::headers::ContentCoding;

/// The largest input this encoder takes: deflate's window, so every match
/// is in reach without sliding.
pub(crate) const MAX_INPUT: usize = 32 * 1024;

/// Shortest match this encoder emits (its hash covers 4 bytes).
const MIN_MATCH: usize = 4;
/// Longest match deflate can express.
const MAX_MATCH: usize = 258;

/// Search parameters of a level: zlib's numbers (`CONFIGURATION_TABLE`),
/// except level 2's nice length, 16 instead of 8 (with matches of at least
/// 4 bytes, 8 left outputs 1–3% larger than zlib's).
#[derive(Debug, Clone, Copy)]
struct Params {
    /// Greedy (no lazy evaluation): levels 1 and 2.
    greedy: bool,
    /// Chain links followed per search.
    max_chain: u32,
    /// A match this long ends the search.
    nice: usize,
    /// With a previous match this long, search a quarter of the chain.
    good: usize,
    /// Lazy: no second search after a match this long. Greedy: positions
    /// inside a match up to this long enter the hash.
    max_lazy: usize,
}

const fn params(level: u32) -> Params {
    let (greedy, good, max_lazy, nice, max_chain) = match level {
        0 | 1 => (true, 4, 4, 8, 2),
        2 => (true, 4, 4, 16, 4),
        3 => (false, 4, 6, 16, 6),
        4 => (false, 4, 12, 32, 24),
        5 => (false, 8, 16, 32, 32),
        6 => (false, 8, 16, 128, 128),
        7 => (false, 8, 32, 128, 256),
        8 => (false, 32, 128, 258, 1024),
        _ => (false, 32, 258, 258, 4096),
    };
    Params {
        greedy,
        max_chain,
        nice,
        good,
        max_lazy,
    }
}

/// Per-thread working memory, kept between bodies: at most 64 KiB of
/// chains and 128 KiB of symbols (for a 32 KiB input).
#[derive(Default)]
struct Scratch {
    /// Hash slot → last position with that hash, plus one (0: none).
    head: Vec<u16>,
    /// Position → previous position with the same hash, plus one.
    prev: Vec<u16>,
    /// The LZ77 output: a literal byte, or `dist << 9 | len`.
    syms: Vec<u32>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// The largest body this encoder takes at `level`: where the layer is
/// faster with it than with its pooled zlib-rs stream, on both JSON and
/// text, measured in the same run (`cargo bench --bench compression_workload
/// -- interleaved` with either limit; BENCHMARKS.md). Below these sizes
/// zlib-rs's fixed per-stream cost (the 128 KiB hash clear)
/// outweighs its faster matching; above them (level 2 past 16 KiB, level 6
/// past 4 KiB, where its longer chain searches dominate) it doesn't.
/// zlib-rs's level 1 is a single-probe, fixed-code compressor this one
/// doesn't beat in speed (it compresses about 18% smaller, but slower), so
/// level 1 is left to it.
pub(crate) const fn max_input(level: u32) -> usize {
    match level {
        0 | 1 => 0,
        2 | 3 => 16 * 1024,
        _ => 4 * 1024,
    }
}

/// Compresses `input` (at most [`MAX_INPUT`] bytes) at `level` as one gzip
/// (`Gzip`) or zlib (`Deflate`) stream, appended to `out`. `false` (and
/// `out` untouched) when the input is too large or the coding isn't one of
/// those two. Whether this encoder is the faster choice for a body is the
/// caller's to ask ([`max_input`]).
pub(crate) fn compress(coding: ContentCoding, level: u32, input: &[u8], out: &mut Vec<u8>) -> bool {
    if input.len() > MAX_INPUT || !matches!(coding, ContentCoding::Gzip | ContentCoding::Deflate) {
        return false;
    }
    let level = level.min(9);
    let done = SCRATCH.try_with(|s| {
        let mut s = s.try_borrow_mut().ok()?;
        encode(coding, level, input, &mut s, out);
        Some(())
    });
    if !matches!(done, Ok(Some(()))) {
        // The thread is going away: working memory of its own.
        encode(coding, level, input, &mut Scratch::default(), out);
    }
    true
}

fn encode(coding: ContentCoding, level: u32, input: &[u8], s: &mut Scratch, out: &mut Vec<u8>) {
    let gzip = coding == ContentCoding::Gzip;
    if gzip {
        // No name, no time; XFL as zlib sets it; OS "unknown".
        let xfl = match level {
            9 => 2,
            0 | 1 => 4,
            _ => 0,
        };
        out.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, xfl, 255]);
    } else {
        // CINFO: the smallest window that holds the input.
        let mut cinfo = 0u8;
        while cinfo < 7 && (256usize << cinfo) < input.len() {
            cinfo += 1;
        }
        let cmf = (cinfo << 4) | 8;
        let flevel: u8 = match level {
            0 | 1 => 0,
            2..=5 => 1,
            6 => 2,
            _ => 3,
        };
        let flg = flevel << 6;
        let check = 31 - ((u16::from(cmf) * 256 + u16::from(flg)) % 31) as u8;
        out.extend_from_slice(&[cmf, flg | (check % 31)]);
    }
    let mut freqs = Freqs::new();
    if level > 0 {
        lz77(input, params(level), s, &mut freqs);
    }
    write_block(input, level, &s.syms, &mut freqs, out);
    if gzip {
        let crc = zlib_rs::crc32::crc32(0, input);
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(&(input.len() as u32).to_le_bytes());
    } else {
        let adler = zlib_rs::adler32::adler32(1, input);
        out.extend_from_slice(&adler.to_be_bytes());
    }
}

/// Symbol counts of a block, and the extra bits its lengths and
/// distances carry.
struct Freqs {
    lit: [u32; 286],
    dist: [u32; 30],
    extra_bits: u64,
}

impl Freqs {
    fn new() -> Self {
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
fn length_code(len: usize) -> (usize, u32, u32) {
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
fn dist_code(dist: usize) -> (usize, u32, u32) {
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

#[inline]
fn load32(d: &[u8], i: usize) -> u32 {
    d.get(i..)
        .and_then(<[u8]>::first_chunk::<4>)
        .map_or(0, |b| u32::from_le_bytes(*b))
}

/// How far the bytes at `a` and `b` (`a < b`) agree, up to `max` (with
/// `b + max` within `d`).
#[inline]
fn match_len(d: &[u8], a: usize, b: usize, max: usize) -> usize {
    let mut n = 0;
    while n + 8 <= max {
        let (Some(x), Some(y)) = (
            d.get(a + n..).and_then(<[u8]>::first_chunk::<8>),
            d.get(b + n..).and_then(<[u8]>::first_chunk::<8>),
        ) else {
            break;
        };
        let diff = u64::from_le_bytes(*x) ^ u64::from_le_bytes(*y);
        if diff != 0 {
            return n + (diff.trailing_zeros() / 8) as usize;
        }
        n += 8;
    }
    while n < max && d.get(a + n).is_some_and(|x| Some(x) == d.get(b + n)) {
        n += 1;
    }
    n
}

/// Finds greedy or lazy LZ77 matches in `d`, into `s.syms`, counting
/// symbols into `f`.
fn lz77(d: &[u8], p: Params, s: &mut Scratch, f: &mut Freqs) {
    let n = d.len();
    let bits = (usize::BITS - n.max(256).saturating_sub(1).leading_zeros()).clamp(8, 15);
    let shift = 32 - bits;
    let size = 1usize << bits;
    if s.head.len() < size {
        s.head.resize(size, 0);
    }
    s.head[..size].fill(0);
    if s.prev.len() < n {
        s.prev.resize(n, 0);
    }
    s.syms.clear();
    s.syms.reserve(n);
    let Scratch { head, prev, syms } = s;
    let hash = |i: usize| (load32(d, i).wrapping_mul(0x9E37_79B1) >> shift) as usize;
    // Enters position `i` (with 4 bytes after it) into the chains; returns
    // the previous head of its chain.
    let insert = |head: &mut [u16], prev: &mut [u16], i: usize| -> u16 {
        let h = hash(i);
        let first = head[h];
        prev[i] = first;
        head[h] = (i + 1) as u16;
        first
    };
    // The longest match at `i` longer than `best`, following at most
    // `chain` links from `first`: (length, distance), or (0, 0).
    let search = |prev: &[u16], first: u16, i: usize, best: usize, chain: u32| {
        let max = (n - i).min(MAX_MATCH);
        let (mut best, mut dist) = (best.max(MIN_MATCH - 1), 0usize);
        if best >= max {
            return (0, 0);
        }
        let (mut cand, mut chain) = (first, chain);
        while cand != 0 && chain > 0 {
            let c = usize::from(cand) - 1;
            if d.get(c + best) == d.get(i + best) {
                let l = match_len(d, c, i, max);
                if l > best {
                    best = l;
                    dist = i - c;
                    if l >= p.nice || l >= max {
                        break;
                    }
                }
            }
            cand = prev[c];
            chain -= 1;
        }
        if dist == 0 { (0, 0) } else { (best, dist) }
    };
    let last_hashed = n.saturating_sub(MIN_MATCH - 1);
    let lit = |syms: &mut Vec<u32>, f: &mut Freqs, b: u8| {
        syms.push(u32::from(b));
        f.lit[usize::from(b)] += 1;
    };
    let put_match = |syms: &mut Vec<u32>, f: &mut Freqs, len: usize, dist: usize| {
        syms.push(((dist as u32) << 9) | len as u32);
        let (lc, lx, _) = length_code(len);
        let (dc, dx, _) = dist_code(dist);
        f.lit[lc] += 1;
        f.dist[dc] += 1;
        f.extra_bits += u64::from(lx + dx);
    };
    let mut i = 0;
    if p.greedy {
        while i < last_hashed {
            let first = insert(head, prev, i);
            let (len, dist) = if first == 0 {
                (0, 0)
            } else {
                search(prev, first, i, 0, p.max_chain)
            };
            if len >= MIN_MATCH {
                put_match(syms, f, len, dist);
                if len <= p.max_lazy {
                    for j in i + 1..(i + len).min(last_hashed) {
                        insert(head, prev, j);
                    }
                }
                i += len;
            } else {
                lit(syms, f, d[i]);
                i += 1;
            }
        }
    } else {
        // zlib's deflate_slow: a match found at `i - 1` is emitted only if
        // the one at `i` isn't longer.
        let (mut prev_len, mut prev_dist, mut pending) = (0usize, 0usize, false);
        while i < last_hashed {
            let first = insert(head, prev, i);
            let (mut len, mut dist) = (0, 0);
            if first != 0 && prev_len < p.max_lazy {
                let chain = if prev_len >= p.good {
                    p.max_chain / 4
                } else {
                    p.max_chain
                };
                (len, dist) = search(prev, first, i, prev_len, chain);
            }
            if prev_len >= MIN_MATCH && len <= prev_len {
                put_match(syms, f, prev_len, prev_dist);
                // `i - 1` and `i` are in the chains; the rest of the match
                // goes in too.
                let end = i - 1 + prev_len;
                for j in i + 1..end.min(last_hashed) {
                    insert(head, prev, j);
                }
                i = end;
                (prev_len, pending) = (0, false);
            } else {
                if pending {
                    lit(syms, f, d[i - 1]);
                }
                (prev_len, prev_dist, pending) = (len, dist, true);
                i += 1;
            }
        }
        if pending {
            if prev_len >= MIN_MATCH {
                put_match(syms, f, prev_len, prev_dist);
                i = i - 1 + prev_len;
            } else {
                lit(syms, f, d[i - 1]);
            }
        }
    }
    while i < n {
        lit(syms, f, d[i]);
        i += 1;
    }
}

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
fn write_block(input: &[u8], level: u32, syms: &[u32], f: &mut Freqs, out: &mut Vec<u8>) {
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

/// Canonical codes for code lengths, bit-reversed for LSB-first output.
fn codes<const N: usize>(lens: &[u8; N]) -> [u16; N] {
    let mut count = [0u16; 16];
    for &l in lens {
        count[usize::from(l)] += 1;
    }
    count[0] = 0;
    let mut next = [0u16; 16];
    let mut code = 0u16;
    for bits in 1..16 {
        code = (code + count[bits - 1]) << 1;
        next[bits] = code;
    }
    let mut out = [0u16; N];
    for (c, &l) in out.iter_mut().zip(lens) {
        if l > 0 {
            let v = next[usize::from(l)];
            next[usize::from(l)] += 1;
            *c = v.reverse_bits() >> (16 - l);
        }
    }
    out
}

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

/// Huffman code lengths for `freqs`, none longer than `max_bits`, into
/// `lens` (0 for unused symbols). At least two symbols get a code (a tree
/// with one leaf can't be decoded by every inflater), so a lone symbol is
/// paired with another of length 1.
fn code_lengths<const N: usize>(freqs: &[u32; N], max_bits: usize, lens: &mut [u8; N]) {
    // (frequency, symbol) of the used symbols, by ascending frequency.
    let mut used = [(0u32, 0u16); N];
    let mut n = 0;
    for (sym, &fr) in freqs.iter().enumerate() {
        if fr > 0 {
            used[n] = (fr, sym as u16);
            n += 1;
        }
    }
    lens.fill(0);
    if n < 2 {
        let other = if n == 1 && used[0].1 == 0 { 1 } else { 0 };
        lens[other] = 1;
        if n == 1 {
            lens[usize::from(used[0].1)] = 1;
        } else {
            lens[other ^ 1] = 1;
        }
        return;
    }
    let used = &mut used[..n];
    used.sort_unstable();
    let mut a = [0u32; N];
    for (x, &(fr, _)) in a.iter_mut().zip(used.iter()) {
        *x = fr;
    }
    minimum_redundancy(&mut a[..n]);
    // How many codes of each length, then longer ones moved up to
    // `max_bits` and the Kraft sum restored by lengthening shorter ones.
    let mut count = [0u32; 33];
    for &l in &a[..n] {
        count[(l as usize).min(32)] += 1;
    }
    for l in max_bits + 1..33 {
        count[max_bits] += count[l];
        count[l] = 0;
    }
    let mut total: u32 = (1..=max_bits).map(|l| count[l] << (max_bits - l)).sum();
    while total > 1 << max_bits {
        count[max_bits] -= 1;
        if let Some(l) = (1..max_bits).rev().find(|&l| count[l] > 0) {
            count[l] -= 1;
            count[l + 1] += 2;
        }
        total -= 1;
    }
    // Shortest codes to the most frequent symbols (the end of `used`).
    let mut j = n;
    for (l, &c) in count.iter().enumerate().take(max_bits + 1).skip(1) {
        for _ in 0..c {
            j -= 1;
            lens[usize::from(used[j].1)] = l as u8;
        }
    }
}

/// Moffat and Katajainen's in-place minimum-redundancy code: `a` holds
/// frequencies in ascending order (at least two), and ends up holding the
/// code length of each.
fn minimum_redundancy(a: &mut [u32]) {
    let n = a.len();
    a[0] += a[1];
    let (mut root, mut leaf) = (0usize, 2usize);
    for next in 1..n - 1 {
        // First child: the lighter of the next internal node and leaf.
        if leaf >= n || a[root] < a[leaf] {
            a[next] = a[root];
            a[root] = next as u32;
            root += 1;
        } else {
            a[next] = a[leaf];
            leaf += 1;
        }
        // Second child.
        if leaf >= n || (root < next && a[root] < a[leaf]) {
            a[next] += a[root];
            a[root] = next as u32;
            root += 1;
        } else {
            a[next] += a[leaf];
            leaf += 1;
        }
    }
    // Parent pointers to depths of internal nodes.
    a[n - 2] = 0;
    for next in (0..n.saturating_sub(2)).rev() {
        a[next] = a[a[next] as usize] + 1;
    }
    // Depths of internal nodes to depths of leaves.
    let (mut avail, mut used, mut depth) = (1u32, 0u32, 0u32);
    let (mut root, mut next) = (n as isize - 2, n as isize - 1);
    while avail > 0 {
        while root >= 0 && a[root as usize] == depth {
            used += 1;
            root -= 1;
        }
        while avail > used {
            a[next as usize] = depth;
            next -= 1;
            avail -= 1;
        }
        avail = 2 * used;
        depth += 1;
        used = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compression::test_util::{gunzip, inflate};

    fn gzip(level: u32, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        assert!(compress(ContentCoding::Gzip, level, data, &mut out));
        out
    }

    /// A small deterministic generator (xorshift).
    fn noise(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    fn json(n: usize) -> Vec<u8> {
        let mut s = String::from("[");
        let mut i = 0;
        while s.len() < n {
            s.push_str(&format!(
                "{{\"id\":{i},\"name\":\"user{}\",\"score\":{},\"tags\":[\"a\",\"b{}\"]}},",
                i * 7919 % 1000,
                i * 31 % 97,
                i % 5
            ));
            i += 1;
        }
        s.truncate(n);
        s.into_bytes()
    }

    /// Inputs of many shapes: empty, one byte, runs, text, noise, mixes,
    /// and sizes around every boundary the encoder has.
    fn corpus() -> Vec<Vec<u8>> {
        let mut all = vec![
            Vec::new(),
            vec![0],
            vec![255],
            b"ab".to_vec(),
            b"abcabcabc".to_vec(),
        ];
        for n in [
            3, 4, 5, 7, 8, 9, 100, 257, 258, 259, 1000, 2048, 4099, 16_384, 32_768,
        ] {
            all.push(vec![b'x'; n]);
            all.push(noise(n, n as u64));
            all.push(json(n));
            let mut mixed = json(n / 2);
            mixed.extend(noise(n - n / 2, 7));
            all.push(mixed);
        }
        // Two symbols only, alternating; many distinct long repeats.
        all.push(
            (0..5000)
                .map(|i| if i % 3 == 0 { b'a' } else { b'b' })
                .collect(),
        );
        let unit = noise(300, 99);
        all.push(unit.iter().cycle().take(30_000).copied().collect());
        all
    }

    #[test]
    fn every_level_round_trips_gzip_and_zlib() {
        for data in corpus() {
            for level in 0..=9 {
                let out = gzip(level, &data);
                assert_eq!(
                    gunzip(&out),
                    data,
                    "gzip, {} bytes, level {level}",
                    data.len()
                );
                let mut z = Vec::new();
                assert!(compress(ContentCoding::Deflate, level, &data, &mut z));
                assert_eq!(
                    inflate(&z),
                    data,
                    "zlib, {} bytes, level {level}",
                    data.len()
                );
            }
        }
    }

    #[test]
    fn each_block_kind_is_chosen_where_it_is_smallest() {
        // BTYPE: bits 1–2 of the first byte after the 10-byte gzip header.
        let kind = |data: &[u8]| (gzip(6, data)[10] >> 1) & 3;
        assert_eq!(kind(b"abcabcabc"), 1, "fixed codes for a few bytes");
        assert_eq!(kind(&json(2048)), 2, "dynamic codes for text");
        assert_eq!(kind(&noise(10_000, 3)), 0, "stored for noise");
        assert_eq!(kind(b""), 1);
    }

    #[test]
    fn random_inputs_round_trip() {
        // Random lengths, alphabets and repeat structure.
        for seed in 1..300u64 {
            let r = noise(8, seed);
            let n = usize::from(r[0]) * 97 % MAX_INPUT + usize::from(r[1]);
            let alphabet = usize::from(r[2] % 16) + 1;
            let mut data: Vec<u8> = noise(n, seed * 31)
                .into_iter()
                .map(|b| b % alphabet as u8 + b'a')
                .collect();
            if r[3] % 2 == 0 && n > 600 {
                // Copy earlier stretches forward: long, far matches.
                let (from, len) = (usize::from(r[4]), 300);
                let to = n - len;
                data.copy_within(from..from + len, to);
            }
            let level = u32::from(r[5] % 10);
            assert_eq!(gunzip(&gzip(level, &data)), data, "seed {seed}");
        }
    }

    #[test]
    fn output_is_about_as_small_as_zlibs() {
        // Same level, same input: within a few percent of zlib's size (and
        // at most the stored size plus headers for noise).
        for level in [1, 2, 4, 6, 9] {
            for n in [2048, 8192, 32_768] {
                let data = json(n);
                let ours = gzip(level, &data).len();
                let mut e =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level));
                std::io::Write::write_all(&mut e, &data).unwrap();
                let zlib = e.finish().unwrap().len();
                assert!(
                    ours as f64 <= zlib as f64 * 1.08,
                    "level {level}, {n} bytes: ours {ours}, zlib {zlib}"
                );
            }
        }
        let data = noise(10_000, 5);
        assert!(gzip(6, &data).len() <= data.len() + 18 + 5);
    }

    #[test]
    fn oversized_or_unknown_codings_are_declined() {
        let mut out = Vec::new();
        assert!(!compress(
            ContentCoding::Gzip,
            2,
            &vec![0; MAX_INPUT + 1],
            &mut out
        ));
        assert!(!compress(ContentCoding::Identity, 6, b"abc", &mut out));
        assert!(out.is_empty());
        // The limits the layer asks: never above the window, none at
        // level 1 (zlib-rs's quick strategy is faster).
        assert_eq!(max_input(1), 0);
        assert!((0..=9).all(|l| max_input(l) <= MAX_INPUT));
        assert!(max_input(6) < max_input(2));
    }

    #[test]
    fn code_lengths_respect_the_limit_and_are_complete() {
        // Fibonacci frequencies make the deepest unlimited tree.
        let mut freqs = [0u32; 286];
        let (mut x, mut y) = (1u32, 1u32);
        for f in freqs.iter_mut().take(30) {
            *f = x;
            (x, y) = (y, x + y);
        }
        let mut lens = [0u8; 286];
        code_lengths(&freqs, 15, &mut lens);
        assert!(lens.iter().all(|&l| l <= 15));
        let kraft: f64 = lens
            .iter()
            .filter(|&&l| l > 0)
            .map(|&l| 0.5f64.powi(i32::from(l)))
            .sum();
        assert!((kraft - 1.0).abs() < 1e-12, "{kraft}");
        assert_eq!(lens.iter().filter(|&&l| l > 0).count(), 30);
        // A lone symbol gets a partner.
        let mut one = [0u32; 30];
        one[7] = 5;
        let mut lens = [0u8; 30];
        code_lengths(&one, 15, &mut lens);
        assert_eq!((lens[7], lens.iter().filter(|&&l| l == 1).count()), (1, 2));
    }

    #[test]
    fn length_and_distance_codes_match_the_rfc_tables() {
        // RFC 1951 §3.2.5, at the edges of every code.
        let lens = [
            (3, 257, 0),
            (10, 264, 0),
            (11, 265, 1),
            (12, 265, 1),
            (13, 266, 1),
            (19, 269, 2),
            (35, 273, 3),
            (67, 277, 4),
            (131, 281, 5),
            (227, 284, 5),
            (257, 284, 5),
            (258, 285, 0),
        ];
        for (len, code, extra) in lens {
            let (c, x, _) = length_code(len);
            assert_eq!((c, x), (code, extra), "length {len}");
        }
        let dists = [
            (1, 0, 0),
            (4, 3, 0),
            (5, 4, 1),
            (7, 5, 1),
            (9, 6, 2),
            (13, 7, 2),
            (17, 8, 3),
            (257, 16, 7),
            (384, 16, 7),
            (385, 17, 7),
            (24_577, 29, 13),
            (32_768, 29, 13),
        ];
        for (dist, code, extra) in dists {
            let (c, x, v) = dist_code(dist);
            assert_eq!((c, x), (code, extra), "distance {dist}");
            assert!(v < 1 << x.max(1));
        }
    }
}
