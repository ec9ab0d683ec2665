//! Request decompression side by side, interleaved in one run: our
//! `RequestDecompressionLayer` and tower-http's on the same compressed
//! JSON request bodies (gzip, br, zstd; 2 KiB, 64 KiB, 1 MiB decoded),
//! read whole by the handler; then a 10 MB-of-zeros gzip bomb, which ours
//! stops at its limit (1 MiB here) and tower-http decodes whole (it has no
//! limit of its own; a body limit layer inside it would stop it too).
//!
//! Each figure is the median of five rounds that alternate the two
//! contenders, each round the best mean over batches
//! (`common/best_of.rs`), so machine noise hits both alike. The time per
//! decoded MiB across sizes shows the cost is linear in the body.
//!
//! Run: `cargo bench --bench decompression --features full`
//! (BENCHMARKS.md, section Request decompression).

#![allow(missing_docs)]

#[path = "common/best_of.rs"]
mod best_of;
mod common;

use std::convert::Infallible;
use std::io::Write;

use best_of::time_per_call;
use bytes::Bytes;
use common::json;
use http::{Request, Response, StatusCode, header};
use http_body::Body;
use http_body_util::{BodyExt, Full};
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
use tower_perf::decompression::RequestDecompressionLayer;

fn encode(coding: &str, data: &[u8]) -> Bytes {
    Bytes::from(match coding {
        "gzip" => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        "br" => {
            let mut out = Vec::new();
            let params = brotli::enc::BrotliEncoderParams::default();
            brotli::BrotliCompress(&mut &data[..], &mut out, &params).unwrap();
            out
        }
        "zstd" => zstd::encode_all(data, 3).unwrap(),
        other => panic!("{other}"),
    })
}

/// The handler: reads the whole body, answers with its length (or 413 on
/// any body error, as axum's extractors would for a limit).
async fn read<B>(req: Request<B>) -> Result<Response<Full<Bytes>>, Infallible>
where
    B: Body,
{
    Ok(match req.into_body().collect().await {
        Ok(b) => Response::new(Full::new(Bytes::from(b.to_bytes().len().to_string()))),
        Err(_) => Response::builder()
            .status(StatusCode::PAYLOAD_TOO_LARGE)
            .body(Full::default())
            .unwrap(),
    })
}

async fn send<S, B>(svc: &S, coding: &str, body: &Bytes) -> StatusCode
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>, Error = Infallible> + Clone,
{
    let req = Request::post("/items")
        .header(header::CONTENT_ENCODING, coding)
        .body(Full::new(body.clone()))
        .unwrap();
    svc.clone().oneshot(req).await.unwrap().status()
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let ours = ServiceBuilder::new()
        .layer(RequestDecompressionLayer::new().max_decoded_size(1 << 20 | 1 << 19))
        .service(service_fn(read));
    let theirs = ServiceBuilder::new()
        .layer(tower_http::decompression::RequestDecompressionLayer::new())
        .service(service_fn(read));
    let bomb_limited = ServiceBuilder::new()
        .layer(RequestDecompressionLayer::new().max_decoded_size(1 << 20))
        .service(service_fn(read));

    println!(
        "| coding | body (decoded) | tower-perf µs | tower-http µs | tower-http / tower-perf | tower-perf µs per MiB |"
    );
    println!("|---|---|---|---|---|---|");
    let mut rows = Vec::new();
    for coding in ["gzip", "br", "zstd"] {
        for (name, size) in [("2 KiB", 2 << 10), ("64 KiB", 64 << 10), ("1 MiB", 1 << 20)] {
            rows.push((coding, name, size, encode(coding, &json(size))));
        }
    }
    rows.push((
        "gzip",
        "bomb: 10 MB of zeros",
        0,
        encode("gzip", &vec![0u8; 10_000_000]),
    ));
    for (coding, name, size, body) in rows {
        let bomb = size == 0;
        let (o, t) = rt.block_on(async {
            let o = if bomb {
                send(&bomb_limited, coding, &body).await
            } else {
                send(&ours, coding, &body).await
            };
            (o, send(&theirs, coding, &body).await)
        });
        if bomb {
            assert_eq!(o, StatusCode::PAYLOAD_TOO_LARGE);
        } else {
            assert_eq!(o, StatusCode::OK, "ours {coding} {name}");
        }
        assert_eq!(t, StatusCode::OK, "theirs {coding} {name}");
        let (mut os, mut ts) = (Vec::new(), Vec::new());
        for _ in 0..5 {
            os.push(time_per_call(|| {
                rt.block_on(async {
                    if bomb {
                        send(&bomb_limited, coding, &body).await
                    } else {
                        send(&ours, coding, &body).await
                    }
                });
            }));
            ts.push(time_per_call(|| {
                rt.block_on(send(&theirs, coding, &body));
            }));
        }
        os.sort();
        ts.sort();
        let (to, tt) = (os[2].as_secs_f64() * 1e6, ts[2].as_secs_f64() * 1e6);
        let decoded_mib = if bomb {
            1.0
        } else {
            size as f64 / f64::from(1 << 20)
        };
        println!(
            "| {coding} | {name} | {to:.1} | {tt:.1} | {:.2}x | {:.0} |",
            tt / to,
            to / decoded_mib
        );
    }
}
