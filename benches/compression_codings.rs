//! Every content coding side by side, interleaved in one run: our
//! `CompressionLayer` and tower-http's on the same JSON bytes, the same
//! coding and level, at 2 KiB, 8 KiB, 64 KiB and 1 MiB, with the output
//! sizes; then the level sweep behind the brotli and zstd defaults (time
//! and size per level at 8 KiB and 64 KiB, our layer, on JSON and on text:
//! prose and Rust sources). The payloads are `common::json` and
//! `common::prose`, as in the other compression benches.
//!
//! Each figure is the median of five rounds that alternate the two
//! contenders, each round the best mean over batches
//! (`common/best_of.rs`), so machine noise hits both alike.
//!
//! Run: `cargo bench --bench compression_codings --features full`
//! (BENCHMARKS.md, section Compression II); `-- --levels` adds zstd 3 and
//! 9, br 1 and 6, gzip 1, 6 and 9 to the side-by-side table.

#![allow(missing_docs)]

#[path = "common/best_of.rs"]
mod best_of;
mod common;

use std::convert::Infallible;
use std::io::Read;

use best_of::time_per_call;
use bytes::Bytes;
use common::{handler, json, prose};
use http::{Request, Response, header};
use http_body_util::{BodyExt, Full};
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_perf::compression::{
    CompressionLayer, DEFAULT_BR_LEVEL, DEFAULT_LEVEL, DEFAULT_ZSTD_LEVEL,
};
use tower_perf::headers::ContentCoding;

async fn fetch<S, B>(svc: &S, coding: &str) -> (Bytes, Option<String>)
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>, Error = Infallible> + Clone,
    B: http_body::Body<Data = Bytes>,
    B::Error: std::fmt::Debug,
{
    let req = Request::get("/items")
        .header(header::ACCEPT_ENCODING, coding)
        .body(Full::default())
        .unwrap();
    let res = svc.clone().oneshot(req).await.unwrap();
    let enc = res
        .headers()
        .get(header::CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap().to_owned());
    (res.into_body().collect().await.unwrap().to_bytes(), enc)
}

fn decode(coding: &str, b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut r: Box<dyn Read + '_> = match coding {
        "gzip" => Box::new(flate2::read::GzDecoder::new(b)),
        "br" => Box::new(brotli::Decompressor::new(b, 4096)),
        "zstd" => Box::new(zstd::stream::read::Decoder::new(b).unwrap()),
        other => panic!("{other}"),
    };
    r.read_to_end(&mut out).unwrap();
    out
}

fn ours(
    data: &Bytes,
    coding: ContentCoding,
    level: u32,
) -> impl Service<
    Request<Full<Bytes>>,
    Response = Response<tower_perf::compression::ResponseBody<Full<Bytes>>>,
    Error = Infallible,
> + Clone {
    ServiceBuilder::new()
        .layer(
            CompressionLayer::new()
                .codings([coding])
                .level(coding, level),
        )
        .service(handler(data.clone()))
}

fn theirs(
    data: &Bytes,
    coding: ContentCoding,
    level: u32,
) -> impl Service<
    Request<Full<Bytes>>,
    Response = Response<tower_http::compression::CompressionBody<Full<Bytes>>>,
    Error = Infallible,
> + Clone {
    let layer = tower_http::compression::CompressionLayer::new()
        .no_deflate()
        .quality(tower_http::CompressionLevel::Precise(level as i32));
    let layer = match coding {
        ContentCoding::Gzip => layer.no_br().no_zstd(),
        ContentCoding::Br => layer.no_gzip().no_zstd(),
        _ => layer.no_gzip().no_br(),
    };
    ServiceBuilder::new()
        .layer(layer)
        .service(handler(data.clone()))
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    println!(
        "| coding | level | body | tower-perf µs | tower-http µs | tower-http / tower-perf | tower-perf B | tower-http B |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    // The defaults, then a low and a high level of each coding (with
    // `--levels`; about four times as long).
    let mut codings = vec![
        (ContentCoding::Zstd, DEFAULT_ZSTD_LEVEL),
        (ContentCoding::Br, DEFAULT_BR_LEVEL),
        (ContentCoding::Gzip, DEFAULT_LEVEL),
    ];
    if std::env::args().any(|a| a == "--levels") {
        codings.extend([
            (ContentCoding::Zstd, 3),
            (ContentCoding::Zstd, 9),
            (ContentCoding::Br, 1),
            (ContentCoding::Br, 6),
            (ContentCoding::Gzip, 1),
            (ContentCoding::Gzip, 6),
            (ContentCoding::Gzip, 9),
        ]);
    }
    for (coding, level) in codings {
        for (name, size) in [
            ("2 KiB", 2 << 10),
            ("8 KiB", 8 << 10),
            ("64 KiB", 64 << 10),
            ("1 MiB", 1 << 20),
        ] {
            let data = json(size);
            let (o, t) = (ours(&data, coding, level), theirs(&data, coding, level));
            let c = coding.as_str();
            let ((ob, oe), (tb, te)) =
                rt.block_on(async { (fetch(&o, c).await, fetch(&t, c).await) });
            assert_eq!(oe.as_deref(), Some(c), "ours compressed {c}");
            assert_eq!(te.as_deref(), Some(c), "theirs compressed {c}");
            assert_eq!(decode(c, &ob), data);
            assert_eq!(decode(c, &tb), data);
            // Five alternating rounds, the median of each side's bests.
            let (mut os, mut ts) = (Vec::new(), Vec::new());
            for _ in 0..5 {
                os.push(time_per_call(|| {
                    rt.block_on(fetch(&o, c));
                }));
                ts.push(time_per_call(|| {
                    rt.block_on(fetch(&t, c));
                }));
            }
            os.sort();
            ts.sort();
            let (to, tt) = (os[2], ts[2]);
            println!(
                "| {c} | {level} | {name} | {:.1} | {:.1} | {:.2}x | {} | {} |",
                to.as_secs_f64() * 1e6,
                tt.as_secs_f64() * 1e6,
                tt.as_secs_f64() / to.as_secs_f64(),
                ob.len(),
                tb.len()
            );
        }
    }
    println!();
    println!("| coding | level | payload | 8 KiB µs | 8 KiB ratio | 64 KiB µs | 64 KiB ratio |");
    println!("|---|---|---|---|---|---|---|");
    for (coding, levels) in [
        (ContentCoding::Br, 1..=7u32),
        (ContentCoding::Zstd, 1..=7u32),
    ] {
        for level in levels {
            for (payload, make) in [("json", json as fn(usize) -> Bytes), ("text", prose)] {
                let mut cells = Vec::new();
                for size in [8 << 10, 64 << 10] {
                    let data = make(size);
                    let o = ours(&data, coding, level);
                    let c = coding.as_str();
                    let (ob, _) = rt.block_on(fetch(&o, c));
                    let t = time_per_call(|| {
                        rt.block_on(fetch(&o, c));
                    });
                    cells.push(format!(
                        "{:.1} | {:.3}",
                        t.as_secs_f64() * 1e6,
                        ob.len() as f64 / data.len() as f64
                    ));
                }
                println!(
                    "| {} | {level} | {payload} | {} |",
                    coding.as_str(),
                    cells.join(" | ")
                );
            }
        }
    }
}
