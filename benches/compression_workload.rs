//! A fixed compression workload, for instruction counting under callgrind:
//! on a shared, noisy machine, instructions are repeatable where wall-clock
//! time is not. `benches/callgrind.sh` runs it and prints the table of
//! BENCHMARKS.md.
//!
//! ```text
//! cargo bench --bench compression_workload --no-run
//! valgrind --tool=callgrind target/release/deps/compression_workload-* ours 2048 2 2000
//! ```
//!
//! Arguments: contender (`none`, `ours`, `tower-http`, `flate2`), body size in
//! bytes, gzip level, iterations. `none` runs the same loop without any
//! compression, to subtract the setup.
#![allow(missing_docs)]

mod common;

use common::{contenders, gzip_fresh, json, run};

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let [who, size, level, iters] = args.as_slice() else {
        // `cargo bench` runs every bench target without arguments: nothing to do.
        eprintln!("usage: compression_workload none|ours|tower-http|flate2 SIZE LEVEL ITERS");
        return;
    };
    let (size, level, iters): (usize, u32, usize) = (
        size.parse().unwrap(),
        level.parse().unwrap(),
        iters.parse().unwrap(),
    );
    let data = json(size);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let (bare, ours, theirs) = contenders(&data, level);
    let mut out = 0;
    rt.block_on(async {
        for _ in 0..iters {
            out += match who.as_str() {
                "none" => run(&bare).await.len(),
                "ours" => run(&ours).await.len(),
                "tower-http" => run(&theirs).await.len(),
                "flate2" => gzip_fresh(&data, level).len(),
                other => panic!("unknown contender {other}"),
            };
        }
    });
    println!(
        "{who} {size} B L{level} x{iters}: {} B out per response",
        out / iters.max(1)
    );
}
