//! Route-pattern matching, which the rate limiter and the cache-control
//! layer do for every rule on every request, against a path the client
//! chose: its time must grow linearly with the path.
//!
//! - `route_pattern/hostile`: paths of 1, 4, 16 and 64 KB that match no
//!   pattern: `/**/a/**/a/**/b` against `/a/a/…/a` (the review's case: every
//!   placement of the three `**` was tried) and against `/c/c/…/c` (every
//!   segment is tried for the first `a`), and `/**/a/a/a/a/b/**` against
//!   `/a/a/…/a` (each place fails four segments in: the matcher's worst
//!   case, elements × segments). Linear time shows as flat throughput
//!   (bytes per second).
//! - `route_pattern/common`: typical rules on typical paths, the matcher
//!   (`new`) beside the backtracking one it replaced (`old`, copied below),
//!   in the same run.
//!
//! After criterion's groups a summary prints, for each hostile case,
//! nanoseconds per KB at each size (best of several batches) and the
//! 64 KB/16 KB ratio, which must stay under 2; the old matcher on the
//! review's case at 1 KB; and the common cases, new beside old.
//!
//! The bench compiles `src/route_pattern.rs` itself (the module is private
//! to the crate), so it needs no feature.
//!
//! Run: `cargo bench --bench route_pattern` (everything), or
//! `cargo bench --bench route_pattern -- summary` (the summary only: the
//! filter matches no criterion benchmark).
#![allow(missing_docs)]

// What the crate does not use here, and its unit tests (`clippy
// --all-targets` sets `cfg(test)` without the test harness).
/// The matcher it replaced, shared with the unit tests (which declare it
/// themselves when `clippy --all-targets` builds this with `cfg(test)`).
#[cfg(not(test))]
#[path = "../src/route_pattern/backtracking.rs"]
mod old;
#[path = "../src/route_pattern.rs"]
#[allow(dead_code, unused_imports)]
mod route_pattern;
#[cfg(test)]
use route_pattern::backtracking as old;

use std::hint::black_box;
#[path = "common/best_of.rs"]
mod best_of;

use best_of::time_per_call;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use route_pattern::Pattern;
// For `old` (its `use super::Seg`).
#[cfg(not(test))]
use route_pattern::Seg;

/// Name, pattern, and the segment the path repeats.
const HOSTILE: [(&str, &str, &str); 3] = [
    ("review", "/**/a/**/a/**/b", "a"),
    ("no-a", "/**/a/**/a/**/b", "c"),
    ("partial", "/**/a/a/a/a/b/**", "a"),
];
const SIZES_KB: [usize; 4] = [1, 4, 16, 64];

/// Typical rules on typical paths, matching or not.
const COMMON: [(&str, &str); 6] = [
    ("/api/**", "/api/v1/items/42"),
    ("/static/*.js", "/static/app.3f2a1b.js"),
    ("/static/*.js", "/api/v1/items/42"),
    ("/api/items/{id}", "/api/items/42"),
    ("/api/items/{id}", "/static/app.3f2a1b.js"),
    ("/**/*.png", "/img/icons/logo.png"),
];

/// `/{seg}` repeated to `kb` KB.
fn hostile_path(seg: &str, kb: usize) -> String {
    format!("/{seg}").repeat(kb * 512)
}

/// The matcher as of 92345cf: segments on the stack (up to 32)
/// then every split tried at each `**`; within a segment, backtracking to
/// the last `*`.
fn old_matches(pattern: &Pattern, path: &str) -> bool {
    let Pattern::Glob(globs) = pattern else {
        // Exact, Prefix and Under did not change.
        return pattern.matches(path);
    };
    let segments = || path.strip_prefix('/').unwrap_or(path).split('/');
    let mut buf = [""; 32];
    let mut n = 0;
    for seg in segments() {
        match buf.get_mut(n) {
            Some(slot) => *slot = seg,
            None => {
                let segs: Vec<&str> = segments().collect();
                return old::glob(globs, &segs);
            }
        }
        n += 1;
    }
    old::glob(globs, &buf[..n])
}

fn groups(c: &mut Criterion) {
    let mut group = c.benchmark_group("route_pattern/hostile");
    group.sample_size(10);
    for (name, pattern, seg) in HOSTILE {
        let p = Pattern::parse(pattern);
        for kb in SIZES_KB {
            let path = hostile_path(seg, kb);
            group.throughput(Throughput::Bytes(path.len() as u64));
            group.bench_function(BenchmarkId::new(name, format!("{kb}KB")), |b| {
                b.iter(|| assert!(!p.matches(black_box(&path))))
            });
        }
    }
    group.finish();

    let mut group = c.benchmark_group("route_pattern/common");
    for (pattern, path) in COMMON {
        let p = Pattern::parse(pattern);
        let expected = p.matches(path);
        assert_eq!(old_matches(&p, path), expected, "{pattern} ~ {path}");
        let case = format!("{pattern} ~ {path}");
        group.bench_function(BenchmarkId::new("new", &case), |b| {
            b.iter(|| black_box(&p).matches(black_box(path)))
        });
        group.bench_function(BenchmarkId::new("old", &case), |b| {
            b.iter(|| old_matches(black_box(&p), black_box(path)))
        });
    }
    group.finish();
}

fn summary(_: &mut Criterion) {
    println!();
    println!("hostile paths (no match), ns per KB (best batch mean)");
    println!(
        "{:<8} {:<18} {:>7} {:>7} {:>7} {:>7} {:>8}",
        "case", "pattern", "1 KB", "4 KB", "16 KB", "64 KB", "64k/16k"
    );
    for (name, pattern, seg) in HOSTILE {
        let p = Pattern::parse(pattern);
        let per_kb: Vec<f64> = SIZES_KB
            .iter()
            .map(|&kb| {
                let path = hostile_path(seg, kb);
                let t = time_per_call(|| assert!(!p.matches(black_box(&path))));
                t.as_nanos() as f64 / kb as f64
            })
            .collect();
        let ratio = per_kb[3] / per_kb[2];
        println!(
            "{name:<8} {pattern:<18} {:>7.0} {:>7.0} {:>7.0} {:>7.0} {ratio:>7.2}x{}",
            per_kb[0],
            per_kb[1],
            per_kb[2],
            per_kb[3],
            if ratio <= 2.0 { "" } else { " NOT LINEAR" }
        );
    }
    let (_, pattern, seg) = HOSTILE[0];
    let (p, path) = (Pattern::parse(pattern), hostile_path(seg, 1));
    let old = time_per_call(|| assert!(!old_matches(&p, black_box(&path))));
    println!(
        "old matcher, {pattern} on 1 KB of /{seg}: {:.1} ms per call",
        old.as_secs_f64() * 1e3
    );

    println!();
    println!("common rules, ns per call (best batch mean)");
    println!(
        "{:<46} {:>8} {:>8} {:>8}",
        "pattern ~ path", "new", "old", "new/old"
    );
    for (pattern, path) in COMMON {
        let p = Pattern::parse(pattern);
        let new = time_per_call(|| {
            for _ in 0..100 {
                black_box(black_box(&p).matches(black_box(path)));
            }
        });
        let old = time_per_call(|| {
            for _ in 0..100 {
                black_box(old_matches(black_box(&p), black_box(path)));
            }
        });
        let (new, old) = (new.as_nanos() as f64 / 100.0, old.as_nanos() as f64 / 100.0);
        println!(
            "{:<46} {new:>8.1} {old:>8.1} {:>7.2}x",
            format!("{pattern} ~ {path}"),
            new / old
        );
    }
}

criterion_group!(benches, groups, summary);
criterion_main!(benches);
