//! The compression layer on arbitrary bodies: whatever the bytes, level,
//! coding and chunking, the response decodes to the very body the service
//! produced. Covers the one-shot encoder (small bodies held whole), the
//! pooled zlib-rs streams (larger or streamed bodies) and the sync flushes
//! when a stream pauses between chunks.
#![no_main]

use std::convert::Infallible;
use std::io::Read;

use bytes::Bytes;
use futures_util::StreamExt;
use http::{Request, Response, header};
use http_body_util::{BodyExt, Either, Full, StreamBody};
use libfuzzer_sys::fuzz_target;
use tower::{ServiceBuilder, ServiceExt, service_fn};
use tower_perf::compression::CompressionLayer;
use tower_perf::headers::ContentCoding;

type Frames = Vec<Result<http_body::Frame<Bytes>, Infallible>>;

fuzz_target!(|data: &[u8]| {
    // Layout: level, coding and chunking (one byte each), then the body.
    let [level, coding, chunk, body @ ..] = data else {
        return;
    };
    let level = u32::from(*level % 10);
    let (coding, name) = if coding % 2 == 0 {
        (ContentCoding::Gzip, "gzip")
    } else {
        (ContentCoding::Deflate, "deflate")
    };
    // Chunk size 0: the body whole, its length known (compressed whole
    // when small); otherwise frames of that many bytes, length unknown.
    let chunk = usize::from(*chunk);
    let body = Bytes::copy_from_slice(body);
    let whole = body.clone();
    let svc = ServiceBuilder::new()
        .layer(CompressionLayer::new().level(coding, level).min_size(0))
        .service(service_fn(move |_req: Request<()>| {
            let body = if chunk == 0 {
                Either::Left(Full::new(whole.clone()))
            } else {
                let frames: Frames = whole
                    .chunks(chunk)
                    .map(|c| Ok(http_body::Frame::data(Bytes::copy_from_slice(c))))
                    .collect();
                // Odd chunk sizes pause between frames, so the layer
                // sync-flushes what it has.
                let pause = chunk % 2 == 1;
                let stream = futures_util::stream::iter(frames).then(move |f| async move {
                    if pause {
                        tokio::task::yield_now().await;
                    }
                    f
                });
                Either::Right(StreamBody::new(Box::pin(stream)))
            };
            async move {
                let res = Response::builder().header(header::CONTENT_TYPE, "text/plain");
                Ok::<_, Infallible>(res.body(body).unwrap())
            }
        }));
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let res = rt.block_on(async {
        let req = Request::get("/")
            .header(header::ACCEPT_ENCODING, name)
            .body(())
            .unwrap();
        svc.oneshot(req).await.unwrap()
    });
    let compressed = res
        .headers()
        .get(header::CONTENT_ENCODING)
        .is_some_and(|v| v == name);
    let out = rt.block_on(res.into_body().collect()).unwrap().to_bytes();
    // With no minimum size and a compressible type, only an empty body may
    // go out as identity: a layer that stopped compressing fails here.
    assert!(
        compressed || body.is_empty(),
        "not compressed: {} bytes",
        body.len()
    );
    let decoded = if !compressed {
        out.to_vec()
    } else {
        let mut d = Vec::new();
        match coding {
            ContentCoding::Gzip => flate2::read::GzDecoder::new(&out[..]).read_to_end(&mut d),
            _ => flate2::read::ZlibDecoder::new(&out[..]).read_to_end(&mut d),
        }
        .expect("the compressed body decodes");
        d
    };
    assert_eq!(decoded, body, "level {level}, {name}, chunk {chunk}");
});
