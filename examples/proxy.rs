//! A caching reverse proxy: tower-perf's [`CacheLayer`] in front of any
//! HTTP service.
//!
//! ```text
//! cargo run --release --example proxy -- --listen 127.0.0.1:8080 --origin http://127.0.0.1:8000
//! ```
//!
//! It forwards every method (extension methods included) and every
//! end-to-end header to the origin, drops hop-by-hop fields in both
//! directions (RFC 9110 §7.6.1: `Connection` and the fields it names,
//! `Keep-Alive`, `Proxy-Connection`, `TE`, `Trailer`, `Transfer-Encoding`,
//! `Upgrade`, `Proxy-Authorization`, `Proxy-Authenticate`), keeps `Host`
//! as it reaches the forwarding (the cache in front has checked and
//! normalized it), and adds `Via` (§7.6.3). The origin URI is `--origin`
//! plus the request's path and query, never an authority the client
//! named. Only the cache sits in front: the origin's own Cache-Control
//! decides what is stored; the proxy adds no policy and no compression. An
//! unreachable origin gets 502, or a stale copy: up to a day past its
//! freshness (`CacheLayer::stale_if_unreachable`, RFC 9111 §4.2.4), or
//! where `stale-if-error` allows. A response without explicit freshness but
//! with `Last-Modified` is fresh for 10% of the time since then, at most a
//! day (heuristic freshness, RFC 9111 §4.2.2; `Cache-Control: no-cache`,
//! or a status not cacheable by default, turns it off).
//!
//! Forwarding fields are the proxy's own, not the client's:
//! `X-Forwarded-Host` is set to the request's `Host`, `X-Forwarded-Proto`
//! to `http`, `X-Forwarded-For` to the peer's IP, and the other fields a
//! client could use to pose as an earlier proxy or to name another host,
//! scheme, URL or method ([`client_forwarding`]: `Forwarded`,
//! `X-Forwarded-Server`/`-Port`/`-Prefix`/`-Scheme`/`-Ssl`/`-Uri`/`-Path`,
//! `X-Host`, `X-Original-Host`, `X-Real-IP`, `X-Original-URL`,
//! `X-Original-URI`, `X-Rewrite-URL`, `X-Url-Scheme`, `Front-End-Https`,
//! `X-HTTP-Method-Override`, `X-HTTP-Method`, `X-Method-Override`) are
//! dropped. Behind a proxy of your own (a TLS-terminating load balancer),
//! `--trust-forwarded` keeps those fields, keeps the client's
//! `X-Forwarded-Proto` (`http` only when it sent none, so an origin behind
//! an `https` balancer still knows its scheme) and appends the peer to the
//! `X-Forwarded-For` chain; `X-Forwarded-Host` is still this proxy's.
//!
//! The serving loop (`examples/common/serve.rs`, shared with the example
//! server) times out slow request heads, idle connections and stalled
//! transfers (a client that stops reading, a request body that stops
//! arriving), caps open connections and HTTP/2 streams and header sizes,
//! and drains on Ctrl-C or SIGTERM; `--help` lists its flags and defaults.

#[path = "common/args.rs"]
mod args;
#[path = "common/serve.rs"]
pub(crate) mod serve;

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::extract::ConnectInfo;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri};
use http_body::Body;
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::TokioExecutor;
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_perf::BoxError;
use tower_perf::cache::{CacheLayer, DEFAULT_IMPLICIT_VARY, ResponseBody};

/// The proxy's response body: the cache's, or a 502 of its own.
pub(crate) type ProxyBody = Either<ResponseBody<Incoming>, Full<Bytes>>;

/// Hop-by-hop fields, always dropped (RFC 9110 §7.6.1, plus the
/// `Proxy-*` credentials meant for this hop).
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authorization",
    "proxy-authenticate",
];

/// Drops hop-by-hop fields, including the ones `Connection` names.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .filter_map(|n| HeaderName::from_bytes(n.trim_ascii()).ok())
        .collect();
    for n in named {
        headers.remove(n);
    }
    for n in HOP_BY_HOP {
        headers.remove(n);
    }
}

/// Fields a client may send to pose as an earlier proxy or to name
/// another host, scheme, URL or method for the request (frameworks read
/// them so); dropped unless `--trust-forwarded`. They are the fields the
/// cache adds to a variant when a request carries them
/// ([`DEFAULT_IMPLICIT_VARY`]: one list for both), and `X-Real-IP`. The
/// method overrides are no forwarding information, but only a trusted hop
/// may set them too.
pub(crate) fn client_forwarding() -> impl Iterator<Item = &'static str> {
    DEFAULT_IMPLICIT_VARY.iter().copied().chain(["x-real-ip"])
}

/// Makes the forwarding fields this proxy's own: `X-Forwarded-Host` is the
/// request's `Host` (none without one), `X-Forwarded-Proto` is `http`, and
/// `X-Forwarded-For` is `peer`. When `trust`, the client is a proxy: the
/// peer is appended to its `X-Forwarded-For` chain, its
/// `X-Forwarded-Proto` is kept (`http` only when it sent none: a
/// TLS-terminating balancer says `https`) and so are
/// [`client_forwarding`].
pub(crate) fn set_forwarding(headers: &mut HeaderMap, peer: Option<IpAddr>, trust: bool) {
    const XFF: &str = "x-forwarded-for";
    let mut chain = Vec::new();
    if trust {
        for v in headers.get_all(XFF) {
            let v = v.as_bytes().trim_ascii();
            if !v.is_empty() {
                if !chain.is_empty() {
                    chain.extend_from_slice(b", ");
                }
                chain.extend_from_slice(v);
            }
        }
    } else {
        for n in client_forwarding() {
            headers.remove(n);
        }
    }
    if let Some(ip) = peer {
        if !chain.is_empty() {
            chain.extend_from_slice(b", ");
        }
        chain.extend_from_slice(ip.to_string().as_bytes());
    }
    headers.remove(XFF);
    // Joined from valid values and an IP: always a valid value.
    if let Ok(v) = HeaderValue::from_bytes(&chain) {
        if !chain.is_empty() {
            headers.insert(XFF, v);
        }
    }
    match headers.get(header::HOST).cloned() {
        Some(host) => {
            headers.insert("x-forwarded-host", host);
        }
        None => {
            headers.remove("x-forwarded-host");
        }
    }
    if !trust || !headers.contains_key("x-forwarded-proto") {
        headers.insert("x-forwarded-proto", HeaderValue::from_static("http"));
    }
}

/// What a request body must be to be forwarded: hyper's, or the serving
/// loop's (`serve::RequestBody`).
pub(crate) trait ForwardBody:
    Body<Data = Bytes, Error: Into<BoxError>> + Send + Unpin + 'static
{
}

impl<B> ForwardBody for B where B: Body<Data = Bytes, Error: Into<BoxError>> + Send + Unpin + 'static
{}

/// Forwards requests to `origin` (scheme and authority; its path is
/// ignored): the inner service of the proxy.
pub(crate) struct Forward<B> {
    origin: Uri,
    client: Client<HttpConnector, B>,
    trust_forwarded: bool,
    upstream_timeout: Duration,
}

/// Default `--upstream-timeout`: how long the origin may take to send its
/// response head.
pub(crate) const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(60);

/// The origin sent no response head within `--upstream-timeout`.
#[derive(Debug)]
pub(crate) struct UpstreamTimeout(Duration);

impl std::fmt::Display for UpstreamTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the origin sent no response within {:?}", self.0)
    }
}

impl std::error::Error for UpstreamTimeout {}

impl<B> Clone for Forward<B> {
    fn clone(&self) -> Self {
        Self {
            origin: self.origin.clone(),
            client: self.client.clone(),
            trust_forwarded: self.trust_forwarded,
            upstream_timeout: self.upstream_timeout,
        }
    }
}

impl<B: ForwardBody> Forward<B> {
    pub(crate) fn new(origin: Uri, trust_forwarded: bool, upstream_timeout: Duration) -> Self {
        let client = Client::builder(TokioExecutor::new()).build_http();
        Self {
            origin,
            client,
            trust_forwarded,
            upstream_timeout,
        }
    }
}

impl<B: ForwardBody> Service<Request<B>> for Forward<B> {
    type Response = Response<Incoming>;
    type Error = BoxError;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Response<Incoming>, BoxError>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), BoxError>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let (mut parts, body) = req.into_parts();
        let pq = parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        let mut target = self.origin.clone().into_parts();
        let client = self.client.clone();
        let trust = self.trust_forwarded;
        let upstream_timeout = self.upstream_timeout;
        Box::pin(async move {
            // The origin plus the path and query: an absolute-form target's
            // authority never picks the upstream.
            target.path_and_query = Some(pq.parse()?);
            parts.uri = Uri::from_parts(target)?;
            // `Host` goes on as it is here: the cache in front settled it,
            // an empty one for a request naming no authority (HTTP/1.0 or
            // HTTP/2 without one), which hyper's client keeps as it is. The
            // origin answers for exactly the host the cache keys on.
            strip_hop_by_hop(&mut parts.headers);
            let peer = parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip());
            set_forwarding(&mut parts.headers, peer, trust);
            parts
                .headers
                .append(header::VIA, HeaderValue::from_static("1.1 tower-perf"));
            parts.version = http::Version::HTTP_11;
            // An origin that accepts and never answers must not hold the
            // client's connection (and its slot) forever: 504, or a stale
            // copy (the cache in front decides).
            let upstream = client.request(Request::from_parts(parts, body));
            let mut resp = tokio::time::timeout(upstream_timeout, upstream)
                .await
                .map_err(|_| UpstreamTimeout(upstream_timeout))??;
            strip_hop_by_hop(resp.headers_mut());
            resp.headers_mut()
                .append(header::VIA, HeaderValue::from_static("1.1 tower-perf"));
            Ok(resp)
        })
    }
}

/// The proxy's cache settings (without its store): heuristic freshness on
/// (RFC 9111 §4.2.2), as a proxy in front of an arbitrary origin needs,
/// at the usual 10% of the time since `Last-Modified`, at most a day.
pub(crate) fn proxy_cache() -> CacheLayer {
    CacheLayer::new().heuristic_freshness(0.1, HEURISTIC_MAX)
}

/// The longest heuristic freshness the proxy gives (RFC 9111 §4.2.2 leaves
/// the cap to the cache): a day, with 10%, Traffic Server's defaults
/// (`heuristic_max_lifetime`, `heuristic_lm_factor`).
pub(crate) const HEURISTIC_MAX: Duration = Duration::from_secs(24 * 60 * 60);

/// The whole proxy: the cache in front of [`Forward`], origin failures
/// answered with 502; client forwarding fields not trusted. Served by
/// hyper directly (the tests' entry point; `main` uses `proxy_with`).
#[allow(dead_code)]
pub(crate) fn proxy(
    origin: Uri,
    cache: CacheLayer,
) -> impl Service<
    Request<Incoming>,
    Response = Response<ProxyBody>,
    Error = Infallible,
    Future: Send + 'static,
> + Clone
+ Send
+ 'static {
    proxy_with(origin, cache, false)
}

/// [`proxy_with`] with the origin's default time to answer.
pub(crate) fn proxy_with<B: ForwardBody>(
    origin: Uri,
    cache: CacheLayer,
    trust_forwarded: bool,
) -> impl Service<Request<B>, Response = Response<ProxyBody>, Error = Infallible, Future: Send + 'static>
+ Clone
+ Send
+ 'static {
    proxy_full(origin, cache, trust_forwarded, DEFAULT_UPSTREAM_TIMEOUT)
}

/// [`proxy`] for request bodies of type `B`, trusting the client's
/// forwarding fields when `trust_forwarded` (`--trust-forwarded`), the
/// origin given `upstream_timeout` to send its response head
/// (`--upstream-timeout`; 504 after it).
pub(crate) fn proxy_full<B: ForwardBody>(
    origin: Uri,
    cache: CacheLayer,
    trust_forwarded: bool,
    upstream_timeout: Duration,
) -> impl Service<Request<B>, Response = Response<ProxyBody>, Error = Infallible, Future: Send + 'static>
+ Clone
+ Send
+ 'static {
    let cached = ServiceBuilder::new().layer(cache).service(Forward::new(
        origin,
        trust_forwarded,
        upstream_timeout,
    ));
    tower::service_fn(move |req: Request<B>| {
        let svc = cached.clone();
        async move {
            match svc.oneshot(req).await {
                Ok(resp) => Ok(resp.map(Either::Left)),
                Err(e) => {
                    // The client's body stalled (`--body-read-timeout`):
                    // its fault, not the origin's.
                    let (status, text) = if let Some(stalled) = body_stalled(&*e) {
                        (StatusCode::REQUEST_TIMEOUT, format!("{stalled}\n"))
                    } else if e.downcast_ref::<UpstreamTimeout>().is_some() {
                        (
                            StatusCode::GATEWAY_TIMEOUT,
                            format!("gateway timeout: {e}\n"),
                        )
                    } else {
                        (StatusCode::BAD_GATEWAY, format!("bad gateway: {e}\n"))
                    };
                    let mut resp = Response::new(Either::Right(Full::new(Bytes::from(text))));
                    *resp.status_mut() = status;
                    resp.headers_mut().insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("text/plain; charset=utf-8"),
                    );
                    Ok(resp)
                }
            }
        }
    })
}

/// The stalled request body `e` comes from, anywhere down its chain of
/// sources.
fn body_stalled<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a serve::BodyStalled> {
    std::iter::successors(Some(e), |e| e.source()).find_map(|e| e.downcast_ref())
}

const USAGE: &str = "usage: proxy --origin http://HOST:PORT [--listen HOST:PORT] [--cache-mib N] [--trust-forwarded] [connection limits]\n\n  \
--origin URL        the service to put the cache in front of (http only)\n  \
--listen ADDR       listen address (default 127.0.0.1:8080)\n  \
--cache-mib N       memory for cached responses (default 64)\n  \
--upstream-timeout SECS  how long the origin may take to send its response head (default 60; then 504)\n  \
--trust-forwarded   clients are proxies (a TLS-terminating balancer): keep their Forwarded/X-Forwarded-*
                      fields (X-Forwarded-Proto included; http only when absent), append to X-Forwarded-For\n";

/// What the command line says.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ProxyArgs {
    pub(crate) listen: SocketAddr,
    pub(crate) origin: Uri,
    pub(crate) cache_mib: u64,
    /// `--trust-forwarded`: the peer is a proxy whose forwarding fields
    /// are kept.
    pub(crate) trust_forwarded: bool,
    /// `--upstream-timeout`.
    pub(crate) upstream_timeout: Duration,
    /// Timeouts and connection limits of the serving loop.
    pub(crate) limits: serve::Limits,
}

pub(crate) fn parse_args(args: impl Iterator<Item = String>) -> Result<ProxyArgs, String> {
    let mut listen: SocketAddr = ([127, 0, 0, 1], 8080).into();
    let mut origin: Option<Uri> = None;
    let mut cache_mib = 64;
    let mut trust_forwarded = false;
    let mut upstream_timeout = DEFAULT_UPSTREAM_TIMEOUT;
    let mut limits = serve::Limits::default();
    let mut args = args.peekable();
    while let Some(arg) = args.next() {
        let (flag, inline) = args::split(&arg);
        let mut value = |name: &str| args::value(&inline, &mut args, name);
        match flag.as_str() {
            "--listen" => {
                let v = value("--listen")?;
                listen = v.parse().map_err(|e| format!("--listen {v}: {e}"))?;
            }
            "--origin" => {
                let v = value("--origin")?;
                let uri: Uri = v.parse().map_err(|e| format!("--origin {v}: {e}"))?;
                if uri.scheme_str() != Some("http") || uri.authority().is_none() {
                    return Err(format!("--origin {v}: an http://host:port URL"));
                }
                origin = Some(uri);
            }
            "--cache-mib" => {
                let v = value("--cache-mib")?;
                cache_mib = v.parse().map_err(|e| format!("--cache-mib {v}: {e}"))?;
                if cache_mib == 0 {
                    return Err(
                        "--cache-mib must be at least 1: a cache of 0 bytes stores nothing".into(),
                    );
                }
            }
            "--trust-forwarded" => trust_forwarded = true,
            "--upstream-timeout" => {
                let v = value("--upstream-timeout")?;
                let secs: f64 = v
                    .parse()
                    .map_err(|e| format!("--upstream-timeout {v}: {e}"))?;
                if !(secs > 0.0 && secs <= 86_400.0) {
                    return Err(format!(
                        "--upstream-timeout {v}: seconds, above 0, at most 86400"
                    ));
                }
                upstream_timeout = Duration::from_secs_f64(secs);
            }
            f if serve::Limits::is_flag(f) => {
                let v = value(f)?;
                limits.set(f, &v)?;
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    let origin = origin.ok_or("--origin is required")?;
    Ok(ProxyArgs {
        listen,
        origin,
        cache_mib,
        trust_forwarded,
        upstream_timeout,
        limits,
    })
}

#[allow(dead_code)]
#[tokio::main]
async fn main() {
    let args = args::or_exit(
        parse_args(std::env::args().skip(1)),
        &format!("{USAGE}{}", serve::USAGE),
    );
    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: cannot listen on {}: {e}", args.listen);
            std::process::exit(1);
        }
    };
    let cache = proxy_cache().store(tower_perf::cache::MemoryStore::new(
        args.cache_mib.saturating_mul(1024 * 1024),
    ));
    let stats = cache.stats();
    let svc = proxy_full(
        args.origin.clone(),
        cache,
        args.trust_forwarded,
        args.upstream_timeout,
    );
    eprintln!(
        "caching proxy on http://{} in front of {}",
        args.listen, args.origin
    );
    serve::serve(
        listener,
        svc,
        args.limits,
        serve::stderr_log(),
        serve::shutdown_signal(),
    )
    .await;
    let s = stats.snapshot();
    eprintln!(
        "cache: {} hits, {} misses, {} stored, hit rate {:.1}%",
        s.hits,
        s.misses,
        s.stores,
        s.hit_rate * 100.0
    );
}
