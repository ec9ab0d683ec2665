//! Compression Dictionary Transport (RFC 9842) through the layer: bytes on
//! the wire and time per response for version 2 of a resource, compressed
//! against version 1 (`dcz`, `dcb`) and without it (`zstd`, `br`, `gzip`),
//! at the layer's default levels. (A request gets a dictionary coding only
//! when it accepts one of the usual codings too, as browsers do: hence
//! `gzip, dcz`.)
//!
//! - **script**: 30 KiB of JavaScript-like text (this crate's sources and
//!   changelog, `common::prose`); version 2 changes a few hundred bytes in
//!   six places, as a release does.
//! - **item list**: 8 KiB of JSON (`common::json`); version 2 changes one
//!   price and adds an item.
//! - **bundle, streamed**: 256 KiB of source text (this crate's cache and
//!   compression modules, no repeats), sent in 16 KiB frames of unknown
//!   total length, so the layer compresses it as it streams; version 2
//!   changes a few hundred bytes in six places.
//!
//! Run: `cargo bench --bench dictionaries --features full`
//! (BENCHMARKS.md, section Dictionary compression).

#![allow(missing_docs)]

#[path = "common/best_of.rs"]
mod best_of;
mod common;

use std::convert::Infallible;

use best_of::time_per_call;
use bytes::Bytes;
use http::{Request, Response, header};
use http_body::Frame;
use http_body_util::{BodyExt, Either, Full, StreamBody};
use tower::{ServiceBuilder, ServiceExt, service_fn};
use tower_perf::compression::{CompressionLayer, Dictionaries};
use tower_perf::headers::AVAILABLE_DICTIONARY;

fn script_versions() -> (Bytes, Bytes) {
    edited(common::prose(30 * 1024))
}

/// Version 1 and 2 of `v1`: six edits of 40 bytes spread over it.
fn edited(v1: Bytes) -> (Bytes, Bytes) {
    let mut v2 = v1.to_vec();
    let step = v1.len() / 6 - 100;
    for k in 0..6 {
        let at = 2_000 + k * step;
        let edit = format!("/* release 2, change {k}: renamed a helper and added a check */ ");
        v2.splice(at..at + 40, edit.bytes());
    }
    (v1, Bytes::from(v2))
}

fn bundle_versions() -> (Bytes, Bytes) {
    let text = [
        include_str!("../src/cache/vary.rs"),
        include_str!("../src/cache/redis_store.rs"),
        include_str!("../src/cache/authority.rs"),
        include_str!("../src/cache/invalidation.rs"),
        include_str!("../src/cache/freshness.rs"),
        include_str!("../src/cache/origin.rs"),
        include_str!("../src/cache/service.rs"),
        include_str!("../src/cache/store.rs"),
        include_str!("../src/cache/layer.rs"),
        include_str!("../src/compression/future.rs"),
        include_str!("../src/compression/dictionary.rs"),
        include_str!("../src/compression/body.rs"),
        include_str!("../src/compression/zlib.rs"),
        include_str!("../src/compression/layer.rs"),
        include_str!("../src/compression/stats.rs"),
        include_str!("../src/compression/encoder.rs"),
        include_str!("../src/cache/entry.rs"),
        include_str!("../src/cache/body.rs"),
    ]
    .concat();
    assert!(text.len() >= 256 * 1024, "{} bytes of sources", text.len());
    edited(Bytes::copy_from_slice(&text.as_bytes()[..256 * 1024]))
}

fn list_versions() -> (Bytes, Bytes) {
    let v1 = common::json(8 * 1024);
    let mut v2 = String::from_utf8(v1.to_vec()).unwrap();
    v2 = v2.replacen("\"price\":", "\"price\":1", 1);
    v2.pop();
    v2.push_str(",{\"id\":9999,\"sku\":\"SKU-NEW\",\"name\":\"Product new\",\"price\":1.00,\"stock\":1,\"active\":true}]");
    (v1, Bytes::from(v2))
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    println!("| resource | coding | bytes | µs per response | gzip's bytes / these |");
    println!("|---|---|---|---|---|");
    for (name, ctype, (v1, v2), streamed) in [
        (
            "script, 30 KiB",
            "text/javascript",
            script_versions(),
            false,
        ),
        (
            "item list, 8 KiB",
            "application/json",
            list_versions(),
            false,
        ),
        (
            "bundle, 256 KiB streamed",
            "text/javascript",
            bundle_versions(),
            true,
        ),
    ] {
        let dictionaries = Dictionaries::new();
        let hash = dictionaries.insert(v1.clone()).unwrap();
        let body = v2.clone();
        let svc = ServiceBuilder::new()
            .layer(CompressionLayer::new().dictionaries(dictionaries))
            .service(service_fn(move |_req: Request<Full<Bytes>>| {
                let body = body.clone();
                async move {
                    let body = if streamed {
                        // 16 KiB frames, no total length.
                        let frames: Vec<Result<Frame<Bytes>, Infallible>> = (0..body.len())
                            .step_by(16 * 1024)
                            .map(|at| {
                                Ok(Frame::data(
                                    body.slice(at..(at + 16 * 1024).min(body.len())),
                                ))
                            })
                            .collect();
                        Either::Right(StreamBody::new(futures_util::stream::iter(frames)))
                    } else {
                        Either::Left(Full::new(body))
                    };
                    Ok::<_, Infallible>(
                        Response::builder()
                            .header(header::CONTENT_TYPE, ctype)
                            .body(body)
                            .unwrap(),
                    )
                }
            }));
        let fetch = |accept: &'static str| {
            let svc = svc.clone();
            let hash = hash.to_string();
            async move {
                let req = Request::get("/")
                    .header(header::ACCEPT_ENCODING, accept)
                    .header(&AVAILABLE_DICTIONARY, hash)
                    .body(Full::default())
                    .unwrap();
                let res = svc.oneshot(req).await.unwrap();
                let coding = res.headers()[header::CONTENT_ENCODING]
                    .to_str()
                    .unwrap()
                    .to_owned();
                let body = res.into_body().collect().await.unwrap().to_bytes();
                (coding, body.len())
            }
        };
        let (_, gzip_bytes) = rt.block_on(fetch("gzip"));
        for (accept, expected) in [
            ("gzip, dcz", "dcz"),
            ("gzip, dcb", "dcb"),
            ("zstd", "zstd"),
            ("br", "br"),
            ("gzip", "gzip"),
        ] {
            let (coding, bytes) = rt.block_on(fetch(accept));
            assert_eq!(coding, expected);
            let t = time_per_call(|| {
                rt.block_on(fetch(accept));
            });
            println!(
                "| {name} | {coding} | {bytes} | {:.1} | {:.2}x |",
                t.as_secs_f64() * 1e6,
                gzip_bytes as f64 / bytes as f64
            );
        }
    }
}
