//! LZ77 match finding: hash chains over 4-byte prefixes, greedy or lazy
//! with zlib's per-level parameters, into a symbol list and its counts.

use super::alphabet::{Freqs, MAX_MATCH, dist_code, length_code};

/// Shortest match this encoder emits (its hash covers 4 bytes).
const MIN_MATCH: usize = 4;

/// Search parameters of a level: zlib's numbers (`CONFIGURATION_TABLE`),
/// except level 2's nice length, 16 instead of 8 (with matches of at least
/// 4 bytes, 8 left outputs 1–3% larger than zlib's).
#[derive(Debug, Clone, Copy)]
pub(super) struct Params {
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

pub(super) const fn params(level: u32) -> Params {
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
pub(super) struct Scratch {
    /// Hash slot → last position with that hash, plus one (0: none).
    head: Vec<u16>,
    /// Position → previous position with the same hash, plus one.
    prev: Vec<u16>,
    /// The LZ77 output: a literal byte, or `dist << 9 | len`.
    pub(super) syms: Vec<u32>,
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
#[inline]
pub(super) fn lz77(d: &[u8], p: Params, s: &mut Scratch, f: &mut Freqs) {
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
