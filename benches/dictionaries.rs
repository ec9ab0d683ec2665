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
use http_body_util::{BodyExt, Full};
use tower::{ServiceBuilder, ServiceExt, service_fn};
use tower_perf::compression::{CompressionLayer, Dictionaries};
use tower_perf::headers::AVAILABLE_DICTIONARY;

fn script_versions() -> (Bytes, Bytes) {
    let v1 = common::prose(30 * 1024);
    let mut v2 = v1.to_vec();
    for k in 0..6 {
        let at = 2_000 + k * 4_700;
        let edit = format!("/* release 2, change {k}: renamed a helper and added a check */ ");
        v2.splice(at..at + 40, edit.bytes());
    }
    (v1, Bytes::from(v2))
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
    for (name, ctype, (v1, v2)) in [
        ("script, 30 KiB", "text/javascript", script_versions()),
        ("item list, 8 KiB", "application/json", list_versions()),
    ] {
        let dictionaries = Dictionaries::new();
        let hash = dictionaries.insert(v1.clone()).unwrap();
        let body = v2.clone();
        let svc = ServiceBuilder::new()
            .layer(CompressionLayer::new().dictionaries(dictionaries))
            .service(service_fn(move |_req: Request<Full<Bytes>>| {
                let body = body.clone();
                async move {
                    Ok::<_, Infallible>(
                        Response::builder()
                            .header(header::CONTENT_TYPE, ctype)
                            .body(Full::new(body))
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
