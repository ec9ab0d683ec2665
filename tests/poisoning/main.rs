//! Cache-poisoning attempts over real HTTP (issue 16): each case has a
//! first client choose something (a host, a header, a coding…) and shows
//! that a second client never receives what the first one chose.
//!
//! The origin reflects what it saw into the body (`host=…`, the path, the
//! forwarding fields, the user) and negotiates `br`, `zstd`, `gzip` or
//! identity by `Accept-Encoding` itself. It stands behind
//! `examples/proxy.rs` (the origin negotiates, the cache's default) and
//! behind a bare `CacheLayer` (no proxy rewriting anything).
//!
//! `hosts.rs`: the authority a request is keyed and forwarded with;
//! `keys.rs`: what else the key holds (paths, Range, HEAD) and what
//! purges and invalidations reach; `fields.rs`: request fields a client
//! chooses (forwarding fields, Authorization, Vary); `codings.rs`: the
//! codings each client is served.

#[path = "../support/mod.rs"]
mod support;

#[allow(dead_code)]
#[path = "../../examples/proxy.rs"]
mod proxy;

mod codings;
mod fields;
mod hosts;
mod keys;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use support::gate::Gate;
use support::{TestResponse, TestServer};
use tower::ServiceBuilder;
use tower_perf::cache::CacheLayer;
use tower_perf::headers::{AcceptEncoding, ContentCoding};

/// The origin: reflects what it saw, negotiates codings itself. Its
/// fetches of `/coalesce` that carry forwarding fields wait at `held`.
async fn origin(
    calls: Arc<AtomicUsize>,
    held: Gate,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
    let h = req.headers();
    let get = |name: &str| {
        h.get(name)
            .map_or("-", |v| v.to_str().unwrap_or("?"))
            .to_owned()
    };
    let path = req.uri().path().to_owned();
    let pq = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let mut resp = Response::builder().header(header::CACHE_CONTROL, "public, max-age=60");
    let scheme = req.uri().scheme_str().unwrap_or("-").to_owned();
    let mut body = format!("#{n} host={} path={pq} scheme={scheme}", get("host"));
    match path.as_str() {
        "/reflect" => {
            // Unkeyed fields a careless origin trusts (no Vary).
            for f in [
                "x-forwarded-host",
                "x-forwarded-proto",
                "x-original-url",
                "x-http-method-override",
                "forwarded",
            ] {
                body.push_str(&format!(" {f}={}", get(f)));
            }
        }
        "/auth" => {
            // The default `max-age` only: not shareable with Authorization.
            resp = Response::builder().header(header::CACHE_CONTROL, "max-age=60");
            body.push_str(&format!(" user={}", get("authorization").replace(' ', "_")));
        }
        "/cookie" => {
            resp = resp.header(header::SET_COOKIE, format!("sid={}", get("x-user")));
            body.push_str(&format!(" user={}", get("x-user")));
        }
        "/star" => {
            resp = resp.header(header::VARY, "*");
            body.push_str(&format!(" user={}", get("x-user")));
        }
        "/long-vary" => {
            // 100 fields, none of them the one reflected: only the cap
            // keeps this from being shared.
            let names: Vec<String> = (0..100).map(|i| format!("x-f{i}")).collect();
            resp = resp.header(header::VARY, names.join(", "));
            body.push_str(&format!(" user={}", get("x-user")));
        }
        "/revalidate" | "/swr" => {
            // Validated on every use (or stale at once with a background
            // refresh), and the 304 carries a field built from the
            // forwarding fields: a shared variant revalidated on an
            // attacker's behalf would take the attacker's link.
            let xfh = h.get("x-forwarded-host").unwrap_or(&h[header::HOST]);
            let link = format!("<http://{}/app.js>", xfh.to_str().unwrap_or("?"));
            let cc = if path == "/swr" {
                "max-age=0, stale-while-revalidate=60"
            } else {
                "no-cache"
            };
            resp = Response::builder()
                .header(header::CACHE_CONTROL, cc)
                .header(header::ETAG, "\"v1\"")
                .header(header::LINK, link);
            if h.get(header::IF_NONE_MATCH).is_some_and(|v| v == "\"v1\"") {
                return resp
                    .status(StatusCode::NOT_MODIFIED)
                    .body(Full::default())
                    .unwrap();
            }
        }
        "/coalesce" => {
            // Stale at once, made fresh by its 304s; an attacker's fetch
            // is slow (held until the test opens the gate).
            if h.contains_key("x-forwarded-host") {
                held.pass().await;
            }
            if h.get(header::IF_NONE_MATCH).is_some_and(|v| v == "\"v2\"") {
                return Response::builder()
                    .status(StatusCode::NOT_MODIFIED)
                    .header(header::CACHE_CONTROL, "max-age=60")
                    .header(header::ETAG, "\"v2\"")
                    .body(Full::default())
                    .unwrap();
            }
            resp = Response::builder()
                .header(header::CACHE_CONTROL, "max-age=0")
                .header(header::ETAG, "\"v2\"");
        }
        "/vary-user" => {
            resp = resp.header(header::VARY, "x-user");
            body.push_str(&format!(" user={}", get("x-user")));
        }
        _ => {}
    }
    if h.contains_key(header::RANGE) {
        return resp
            .status(StatusCode::PARTIAL_CONTENT)
            .header(header::CONTENT_RANGE, "bytes 0-3/100")
            .body(Full::from(format!("part {body}")))
            .unwrap();
    }
    // The origin's own negotiation (identity when nothing listed fits).
    let ae = AcceptEncoding::from_headers(h);
    let coding = ae
        .negotiate(&[ContentCoding::Br, ContentCoding::Zstd, ContentCoding::Gzip])
        .unwrap_or(ContentCoding::Identity);
    if coding != ContentCoding::Identity {
        resp = resp.header(header::CONTENT_ENCODING, coding.as_str());
    }
    body.push_str(&format!(" coding={coding}"));
    resp.header(header::VARY, "accept-encoding")
        .body(Full::from(body))
        .unwrap()
}

struct Setup {
    front: TestServer,
    _origin: Option<TestServer>,
    calls: Arc<AtomicUsize>,
    /// Where the origin holds an attacker's fetch of `/coalesce`.
    held: Gate,
}

/// `examples/proxy.rs` with `cache` in front of the reflecting origin.
async fn behind_proxy(cache: CacheLayer) -> Setup {
    let calls = Arc::new(AtomicUsize::new(0));
    let held = Gate::new();
    let (c, h) = (calls.clone(), held.clone());
    let origin_server = TestServer::serve(tower::service_fn(move |req| {
        let (c, h) = (c.clone(), h.clone());
        async move { Ok::<_, Infallible>(origin(c, h, req).await) }
    }))
    .await;
    let origin_uri = format!("http://{}", origin_server.addr()).parse().unwrap();
    let front = TestServer::serve(proxy::proxy(origin_uri, cache)).await;
    Setup {
        front,
        _origin: Some(origin_server),
        calls,
        held,
    }
}

/// A bare `CacheLayer` in front of the origin service, nothing between.
async fn bare_cache(cache: CacheLayer) -> Setup {
    let calls = Arc::new(AtomicUsize::new(0));
    let held = Gate::new();
    let (c, h) = (calls.clone(), held.clone());
    let svc = ServiceBuilder::new()
        .layer(cache)
        .service(tower::service_fn(move |req| {
            let (c, h) = (c.clone(), h.clone());
            async move { Ok::<_, Infallible>(origin(c, h, req).await) }
        }));
    Setup {
        front: TestServer::serve(svc).await,
        _origin: None,
        calls,
        held,
    }
}

fn field<'a>(r: &'a TestResponse, name: &str) -> &'a str {
    let key = format!("{name}=");
    let text = r.text();
    text.split(' ')
        .find_map(|w| w.strip_prefix(key.as_str()))
        .unwrap_or_else(|| panic!("{name} in {text:?}"))
}

async fn get(s: &Setup, path: &str, headers: &[(&str, &str)]) -> TestResponse {
    s.front.get_with(path, headers).await
}

/// The raw response to `raw` on a fresh connection, as text.
async fn raw(s: &Setup, raw: &str) -> String {
    String::from_utf8_lossy(&s.front.send_raw(raw.as_bytes()).await).into_owned()
}
