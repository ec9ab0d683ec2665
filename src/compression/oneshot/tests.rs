//! The one-shot encoder's tests: every output decoded by zlib-rs's
//! inflate (through flate2), sizes against zlib's, and the code tables.

use super::alphabet::{dist_code, length_code};
use super::huffman::code_lengths;
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
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level));
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
