//! Compression Dictionary Transport (RFC 9842): a response marked
//! `Use-As-Dictionary` is learned, and a later request that names it in
//! `Available-Dictionary` and accepts `dcz`/`dcb` gets the new version
//! compressed against it; anything else gets the usual coding.

use axum::Router;
use axum::body::Body;
use axum::http::{Request, Response, StatusCode, header};
use axum::routing::get;
use http_body_util::BodyExt;
use tower::ServiceExt;
use tower_perf::compression::{CompressionLayer, Dictionaries};
use tower_perf::headers::{AVAILABLE_DICTIONARY, AvailableDictionary};

use crate::support::undictionary;

/// A 30 KiB script; `version` changes one function in 37.
fn script(version: u32) -> String {
    script_of(version, 30 * 1024)
}

/// A script of at least `len` bytes; `version` changes one function in 37.
fn script_of(version: u32, len: usize) -> String {
    let mut s = String::new();
    let mut i = 0u32;
    while s.len() < len {
        let k = if i % 37 == 0 { version } else { 1 };
        s.push_str(&format!(
            "function on{i}(e) {{ const v = e.detail.x{i} * {k}; if (v > {i}) show('n-{i}', v); return v; }}\n"
        ));
        i += 1;
    }
    s
}

fn app(dictionaries: Dictionaries) -> Router {
    let js = |version: u32| {
        move || async move {
            Response::builder()
                .header(header::CONTENT_TYPE, "text/javascript")
                .header(header::ETAG, format!("\"v{version}\""))
                .header("use-as-dictionary", "match=\"/app.*.js\"")
                .header(header::CACHE_CONTROL, "max-age=3600")
                .body(Body::from(script(version)))
                .unwrap()
        }
    };
    Router::new()
        .route("/app.v1.js", get(js(1)))
        .route("/app.v2.js", get(js(2)))
        .layer(CompressionLayer::new().dictionaries(dictionaries))
}

async fn fetch(app: &Router, path: &str, fields: &[(&str, String)]) -> (Response<()>, Vec<u8>) {
    let mut req = Request::get(path);
    for (name, value) in fields {
        req = req.header(*name, value.as_str());
    }
    let res = app
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let (parts, body) = res.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes().to_vec();
    (Response::from_parts(parts, ()), bytes)
}

#[tokio::test]
async fn a_learned_dictionary_compresses_the_next_version() {
    let dictionaries = Dictionaries::new();
    let app = app(dictionaries.clone());
    let v1 = script(1);
    // The first version, as a client without a dictionary gets it (gzip),
    // is learned.
    let (res, _) = fetch(&app, "/app.v1.js", &[("accept-encoding", "gzip".into())]).await;
    assert_eq!(res.headers()[header::CONTENT_ENCODING], "gzip");
    assert_eq!(dictionaries.len(), 1);
    let hash = dictionaries.insert(v1.clone()).unwrap();
    assert_eq!(dictionaries.len(), 1, "the same dictionary, once");

    // The second version, to a client that does not have the first.
    let (plain, plain_body) =
        fetch(&app, "/app.v2.js", &[("accept-encoding", "gzip".into())]).await;
    assert_eq!(plain.headers()[header::CONTENT_ENCODING], "gzip");
    assert_eq!(
        plain.headers()[header::VARY],
        "accept-encoding, available-dictionary"
    );
    assert_eq!(plain.headers()[header::ETAG], "\"v2-gzip\"");
    // And to one that has it: dcz where the build has zstd, else dcb.
    let (zstd, br) = (
        cfg!(feature = "compression-zstd"),
        cfg!(feature = "compression-br"),
    );
    let cases = [
        (
            "gzip, br, zstd, dcb, dcz",
            if zstd { Some("dcz") } else { Some("dcb") },
        ),
        ("gzip, dcb", br.then_some("dcb")),
        ("dcz;q=0.9, gzip", zstd.then_some("dcz")),
    ];
    for (accept, expected) in cases {
        let fields = [
            ("accept-encoding", accept.to_owned()),
            (AVAILABLE_DICTIONARY.as_str(), hash.to_string()),
        ];
        let (res, body) = fetch(&app, "/app.v2.js", &fields).await;
        let coding = res.headers()[header::CONTENT_ENCODING]
            .to_str()
            .unwrap()
            .to_owned();
        let Some(expected) = expected else {
            // The build cannot produce that dictionary coding.
            assert_eq!(coding, "gzip", "{accept}");
            continue;
        };
        assert_eq!(coding, expected, "{accept}");
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(
            res.headers()[header::CONTENT_LENGTH],
            body.len().to_string().as_str()
        );
        assert_eq!(
            res.headers()[header::VARY],
            "accept-encoding, available-dictionary"
        );
        // No strong validator names these bytes yet: a weak one.
        assert_eq!(res.headers()[header::ETAG], "W/\"v2\"");
        assert_eq!(
            undictionary(&coding, &body, v1.as_bytes(), hash.hash()),
            script(2).as_bytes()
        );
        assert!(
            body.len() * 4 < plain_body.len(),
            "{coding}: {} bytes against gzip's {}",
            body.len(),
            plain_body.len()
        );
    }
}

#[tokio::test]
async fn unknown_dictionaries_and_clients_without_the_codings_get_the_usual_coding() {
    let dictionaries = Dictionaries::new();
    let hash = dictionaries.insert(script(1)).unwrap();
    let layer = CompressionLayer::new().dictionaries(dictionaries);
    let stats = layer.stats();
    let app = Router::new()
        .route(
            "/app.v2.js",
            get(|| async {
                Response::builder()
                    .header(header::CONTENT_TYPE, "text/javascript")
                    .body(Body::from(script(2)))
                    .unwrap()
            }),
        )
        .layer(layer);
    let unknown = AvailableDictionary::new([9; 32]);
    for (accept, available) in [
        ("gzip, dcb, dcz", unknown.to_string()),
        ("gzip", hash.to_string()),
        ("gzip, dcb;q=0, dcz;q=0", hash.to_string()),
        ("gzip, dcb, dcz", ":not a hash:".to_owned()),
    ] {
        let fields = [
            ("accept-encoding", accept.to_owned()),
            (AVAILABLE_DICTIONARY.as_str(), available.clone()),
        ];
        let (res, _) = fetch(&app, "/app.v2.js", &fields).await;
        assert_eq!(
            res.headers()[header::CONTENT_ENCODING],
            "gzip",
            "{accept} {available}"
        );
    }
    let snap = stats.snapshot();
    assert_eq!(snap.gzip.responses, 4);
    assert_eq!(snap.dcz.responses + snap.dcb.responses, 0);
    // The dictionary codings appear among the codings once used.
    assert!(snap.codings().all(|(c, _)| c != "dcz" && c != "dcb"));
    let fields = [
        ("accept-encoding", "gzip, dcb, dcz".to_owned()),
        (AVAILABLE_DICTIONARY.as_str(), hash.to_string()),
    ];
    let (res, _) = fetch(&app, "/app.v2.js", &fields).await;
    let used = res.headers()[header::CONTENT_ENCODING]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(used == "dcz" || used == "dcb", "{used}");
    assert!(
        stats
            .snapshot()
            .codings()
            .any(|(c, s)| c == used && s.responses == 1)
    );
}

/// Bodies too large to be held whole, of known length or streamed in
/// pieces of unknown length, are learned as they stream and compressed
/// against a dictionary as they stream; one larger than a dictionary may
/// be is not learned.
#[tokio::test]
async fn streamed_bodies_are_learned_and_compressed_against_a_dictionary() {
    const LEN: usize = 200 * 1024;
    let dictionaries = Dictionaries::new();
    let layer = CompressionLayer::new().dictionaries(dictionaries.clone());
    let stats = layer.stats();
    let js = |version: u32, len: usize, streamed: bool| {
        move || async move {
            let text = script_of(version, len);
            let body = if streamed {
                let pieces: Vec<Result<String, std::io::Error>> = text
                    .as_bytes()
                    .chunks(8 * 1024)
                    .map(|c| Ok(String::from_utf8(c.to_vec()).unwrap()))
                    .collect();
                Body::from_stream(futures_util::stream::iter(pieces))
            } else {
                Body::from(text)
            };
            Response::builder()
                .header(header::CONTENT_TYPE, "text/javascript")
                .header(header::ETAG, format!("\"v{version}\""))
                .header("use-as-dictionary", "match=\"/big.*.js\"")
                .body(body)
                .unwrap()
        }
    };
    let app = Router::new()
        .route("/big.v1.js", get(js(1, LEN, true)))
        .route("/big.v2.js", get(js(2, LEN, false)))
        .route("/big.v3.js", get(js(3, LEN, true)))
        .route("/huge.js", get(js(1, 1_100_000, true)))
        .layer(layer);
    let gzip = [("accept-encoding", "gzip".to_owned())];
    let (res, _) = fetch(&app, "/huge.js", &gzip).await;
    assert_eq!(res.headers()[header::CONTENT_ENCODING], "gzip");
    assert_eq!(dictionaries.len(), 0, "over MAX_DICTIONARY_SIZE");
    let (res, _) = fetch(&app, "/big.v1.js", &gzip).await;
    assert!(!res.headers().contains_key(header::CONTENT_LENGTH));
    assert_eq!(dictionaries.len(), 1);
    let v1 = script_of(1, LEN);
    let hash = dictionaries.insert(&v1).unwrap();
    assert_eq!(dictionaries.len(), 1, "the streamed body, whole");
    let (_, plain) = fetch(&app, "/big.v2.js", &gzip).await;
    let mut sent = 0;
    for path in ["/big.v2.js", "/big.v3.js"] {
        let fields = [
            ("accept-encoding", "gzip, br, zstd, dcb, dcz".to_owned()),
            (AVAILABLE_DICTIONARY.as_str(), hash.to_string()),
        ];
        let (res, body) = fetch(&app, path, &fields).await;
        let coding = res.headers()[header::CONTENT_ENCODING].to_str().unwrap();
        assert!(coding == "dcz" || coding == "dcb", "{path}: {coding}");
        assert!(
            !res.headers().contains_key(header::CONTENT_LENGTH),
            "{path}"
        );
        assert_eq!(
            res.headers()[header::VARY],
            "accept-encoding, available-dictionary"
        );
        assert!(
            res.headers()[header::ETAG]
                .to_str()
                .unwrap()
                .starts_with("W/")
        );
        let version = if path == "/big.v2.js" { 2 } else { 3 };
        assert_eq!(
            undictionary(coding, &body, v1.as_bytes(), hash.hash()),
            script_of(version, LEN).as_bytes(),
            "{path}"
        );
        assert!(
            body.len() * 5 < plain.len(),
            "{path}: {} bytes against gzip's {}",
            body.len(),
            plain.len()
        );
        sent += body.len() as u64;
    }
    // Counted as the dictionary coding, with the bytes it took and sent.
    let snap = stats.snapshot();
    let (_, dict) = snap
        .codings()
        .find(|(c, _)| *c == "dcz" || *c == "dcb")
        .unwrap();
    assert_eq!(dict.responses, 2);
    assert_eq!(dict.bytes_in, 2 * script_of(2, LEN).len() as u64);
    assert_eq!(dict.bytes_out, sent);
}

/// Only a 200 to a GET that every client may share is learned: not a
/// POST's, a HEAD's, a 404's, nor a `no-store`, `private`, `Set-Cookie` or
/// `Authorization` one, nor a `type` other than raw.
#[tokio::test]
async fn only_shared_answers_to_gets_are_learned() {
    let dictionaries = Dictionaries::new();
    let answer =
        |status: StatusCode, extra: Option<(&'static str, &'static str)>, kind: &'static str| {
            move || async move {
                let mut b = Response::builder()
                    .status(status)
                    .header(header::CONTENT_TYPE, "text/javascript")
                    .header("use-as-dictionary", format!("match=\"/a*\", type={kind}"));
                if let Some((k, v)) = extra {
                    b = b.header(k, v);
                }
                b.body(Body::from(script(1))).unwrap()
            }
        };
    let app = Router::new()
        .route(
            "/a",
            get(answer(StatusCode::OK, None, "raw")).post(answer(StatusCode::OK, None, "raw")),
        )
        .route("/a404", get(answer(StatusCode::NOT_FOUND, None, "raw")))
        .route(
            "/a-no-store",
            get(answer(
                StatusCode::OK,
                Some(("cache-control", "no-store")),
                "raw",
            )),
        )
        .route(
            "/a-private",
            get(answer(
                StatusCode::OK,
                Some(("cache-control", "private, max-age=60")),
                "raw",
            )),
        )
        .route(
            "/a-cookie",
            get(answer(StatusCode::OK, Some(("set-cookie", "s=1")), "raw")),
        )
        .route("/a-other", get(answer(StatusCode::OK, None, "other")))
        .layer(CompressionLayer::new().dictionaries(dictionaries.clone()));
    let gzip = || ("accept-encoding", "gzip".to_owned());
    for path in [
        "/a404",
        "/a-no-store",
        "/a-private",
        "/a-cookie",
        "/a-other",
    ] {
        fetch(&app, path, &[gzip()]).await;
    }
    fetch(
        &app,
        "/a",
        &[gzip(), ("authorization", "Bearer t".to_owned())],
    )
    .await;
    for method in ["POST", "HEAD"] {
        let req = Request::builder()
            .method(method)
            .uri("/a")
            .header("accept-encoding", "gzip")
            .body(Body::empty())
            .unwrap();
        app.clone().oneshot(req).await.unwrap();
    }
    assert_eq!(dictionaries.len(), 0);
    fetch(&app, "/a", &[gzip()]).await;
    assert_eq!(dictionaries.len(), 1, "a plain GET is learned");
}

/// The page the browser test loads: it fetches version 1 (a dictionary for
/// `/app.*.js`), then version 2 until it comes dictionary-compressed (at
/// most ten times: Chromium stores a dictionary in the background, and
/// `/wait` lets real time pass, which virtual time would not), and says in
/// `data-*` attributes what it got last.
const PAGE: &str = r#"<!doctype html><html><body data-done="0"><script>
(async () => {
  try {
    await (await fetch('/app.v1.js')).text();
    for (let i = 0; i < 10; i++) {
      await (await fetch('/wait', { cache: 'no-store' })).text();
      const r = await fetch('/app.v2.js', { cache: 'no-store' });
      const v2 = await r.text();
      document.body.dataset.encoding = r.headers.get('content-encoding') || 'identity';
      document.body.dataset.length = String(v2.length);
      document.body.dataset.head = v2.slice(0, 12);
      document.body.dataset.tries = String(i + 1);
      if (/^dc[bz]$/.test(document.body.dataset.encoding)) break;
    }
  } catch (e) {
    document.body.dataset.error = String(e);
  }
  document.body.dataset.done = "1";
})();
</script></body></html>"#;

/// Chromium (which speaks RFC 9842 since version 130, and counts
/// 127.0.0.1 as a secure context) learns version 1 as a dictionary, asks
/// for version 2 with `Available-Dictionary`, gets it dictionary-compressed
/// from the layer, and decodes it to the right text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_fetches_the_next_version_dictionary_compressed() {
    let Some(chromium) = crate::support::chromium::find("compression dictionaries in a browser")
    else {
        return;
    };
    let dictionaries = Dictionaries::new();
    let layer = CompressionLayer::new().dictionaries(dictionaries.clone());
    let stats = layer.stats();
    let js = |version: u32| {
        move || async move {
            Response::builder()
                .header(header::CONTENT_TYPE, "text/javascript")
                .header("use-as-dictionary", "match=\"/app.*.js\"")
                .header(header::CACHE_CONTROL, "max-age=3600")
                .body(Body::from(script(version)))
                .unwrap()
        }
    };
    let app = Router::new()
        .route(
            "/",
            get(|| async {
                Response::builder()
                    .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
                    .body(Body::from(PAGE))
                    .unwrap()
            }),
        )
        .route("/app.v1.js", get(js(1)))
        .route("/app.v2.js", get(js(2)))
        .route(
            "/wait",
            // Real time is the point: Chromium stores the dictionary in the
            // background while the page waits on this request.
            get(|| async {
                tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                "ok"
            }),
        )
        .layer(layer);
    let server = crate::support::TestServer::serve(app).await;
    let dom =
        crate::support::chromium::dump_dom(chromium, server.uri("/").to_string(), "dictionaries")
            .await;
    assert!(dom.contains("data-done=\"1\""), "{dom}");
    assert!(!dom.contains("data-error"), "{dom}");
    let expected = script(2);
    assert!(
        dom.contains(&format!("data-length=\"{}\"", expected.len())),
        "{dom}"
    );
    assert!(dom.contains("data-head=\"function on0\""), "{dom}");
    let coding = if cfg!(feature = "compression-zstd") {
        "dcz"
    } else {
        "dcb"
    };
    assert!(
        dom.contains(&format!("data-encoding=\"{coding}\"")),
        "version 2 came {coding}-compressed and decoded:\n{dom}"
    );
    assert_eq!(dictionaries.len(), 2, "both versions were learned");
    let snap = stats.snapshot();
    assert_eq!(snap.dcz.responses + snap.dcb.responses, 1, "{snap:?}");
}

/// A response cache outside the compression layer keeps a
/// dictionary-compressed response as a variant of its own, keyed by the
/// dictionary, and serves it only to requests naming that dictionary and
/// listing its coding (RFC 9842 §6.2).
#[cfg(feature = "cache")]
#[tokio::test]
async fn a_cache_outside_keeps_one_variant_per_dictionary() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tower_perf::cache::CacheLayer;

    let dictionaries = Dictionaries::new();
    let hash = dictionaries.insert(script(1)).unwrap();
    let compression = CompressionLayer::new().dictionaries(dictionaries);
    let cache = CacheLayer::new().codings(compression.offered_codings().iter().copied());
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let app = Router::new()
        .route(
            "/app.v2.js",
            get(move || {
                counted.fetch_add(1, Ordering::SeqCst);
                async {
                    Response::builder()
                        .header(header::CONTENT_TYPE, "text/javascript")
                        .header(header::CACHE_CONTROL, "max-age=3600")
                        .body(Body::from(script(2)))
                        .unwrap()
                }
            }),
        )
        .layer(compression)
        .layer(cache);
    let browser = |dictionary: String, accept: &str| {
        vec![
            ("host", "example.test".to_owned()),
            ("accept-encoding", accept.to_owned()),
            (AVAILABLE_DICTIONARY.as_str(), dictionary),
        ]
    };
    let with = browser(hash.to_string(), "gzip, br, zstd, dcb, dcz");
    let (first, body) = fetch(&app, "/app.v2.js", &with).await;
    let coding = first.headers()[header::CONTENT_ENCODING]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(coding == "dcz" || coding == "dcb", "{coding}");
    // The same request again: from the cache, the same bytes.
    let (again, cached) = fetch(&app, "/app.v2.js", &with).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1, "served from the cache");
    assert_eq!(again.headers()[header::CONTENT_ENCODING], coding.as_str());
    assert_eq!(cached, body);
    assert_eq!(
        undictionary(&coding, &cached, script(1).as_bytes(), hash.hash()),
        script(2).as_bytes()
    );
    // Another dictionary, none, or the dictionary without the codings:
    // never the dictionary-compressed variant.
    let other = AvailableDictionary::new([7; 32]).to_string();
    let cases = [
        browser(other, "gzip, br, zstd, dcb, dcz"),
        vec![
            ("host", "example.test".to_owned()),
            ("accept-encoding", "gzip, br, zstd, dcb, dcz".to_owned()),
        ],
        browser(hash.to_string(), "gzip, br, zstd"),
        // RFC 9842 §9.3.3: a cross-site request the page may not read (or
        // a client claiming to be one) gets none, and pins nobody to it:
        // it shares the variant of the one above, which lists no
        // dictionary coding.
        {
            let mut fields = with.clone();
            fields.push(("sec-fetch-site", "cross-site".to_owned()));
            fields.push(("sec-fetch-mode", "no-cors".to_owned()));
            fields
        },
    ];
    for fields in cases {
        let (res, body) = fetch(&app, "/app.v2.js", &fields).await;
        let got = res.headers()[header::CONTENT_ENCODING].to_str().unwrap();
        assert!(got != "dcz" && got != "dcb", "{fields:?}: {got}");
        assert!(body.len() > cached.len() * 4, "{fields:?}");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 4, "one variant each");
    // Each is a variant of its own now: all served from the cache.
    let (res, body) = fetch(&app, "/app.v2.js", &with).await;
    assert_eq!(res.headers()[header::CONTENT_ENCODING], coding.as_str());
    assert_eq!(body, cached);
    assert_eq!(calls.load(Ordering::SeqCst), 4);
}

/// A client naming a large dictionary for a small response gets the usual
/// coding: the dictionary's set-up would cost far more than the body (a
/// dictionary over 64 KiB needs a body of at least 1/64 of its size).
#[tokio::test]
async fn a_large_dictionary_is_not_loaded_for_a_small_body() {
    let dictionaries = Dictionaries::new();
    let hash = dictionaries.insert(script_of(1, 256 * 1024)).unwrap();
    let js = |len: usize| {
        move || async move {
            Response::builder()
                .header(header::CONTENT_TYPE, "text/javascript")
                .body(Body::from(script_of(2, len)))
                .unwrap()
        }
    };
    let app = Router::new()
        .route("/small.js", get(js(2 * 1024)))
        .route("/large.js", get(js(8 * 1024)))
        .layer(CompressionLayer::new().dictionaries(dictionaries));
    let fields = [
        ("accept-encoding", "gzip, dcb, dcz".to_owned()),
        (AVAILABLE_DICTIONARY.as_str(), hash.to_string()),
    ];
    let (small, _) = fetch(&app, "/small.js", &fields).await;
    assert_eq!(small.headers()[header::CONTENT_ENCODING], "gzip");
    let (large, _) = fetch(&app, "/large.js", &fields).await;
    let coding = large.headers()[header::CONTENT_ENCODING].to_str().unwrap();
    assert!(coding == "dcz" || coding == "dcb", "{coding}");
}
