//! [`CacheLayer`]: configuration, and the [`CacheHandle`] for purges.

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, Uri};

use super::flight::Flights;
use super::freshness::{Heuristic, Rules};
use super::key::CacheKey;
use super::key_rules::KeyRules;
use super::service::{Cache, Shared};
use super::stats::{CacheStats, Counters};
use super::store::{CacheStore, MemoryStore, Purge, StoreError};
use super::vary::Encodings;
use crate::clock::{Clock, SystemClock};
use crate::headers::ContentCoding;
use crate::route_pattern::Pattern;

/// Settings of a cache layer (shared by its services).
#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) encodings: Encodings,
    pub(crate) implicit_vary: Vec<HeaderName>,
    pub(crate) max_entry_size: usize,
    pub(crate) coalesce: bool,
    pub(crate) coalesce_timeout: Duration,
    pub(crate) rules: Rules,
    pub(crate) store_set_cookie: bool,
    pub(crate) serve_authorized: bool,
    pub(crate) status_name: Option<Box<str>>,
    pub(crate) tag_header: Option<HeaderName>,
    pub(crate) strip_tag_header: bool,
    pub(crate) validator_grace: Duration,
    pub(crate) stale_if_unreachable: Duration,
    pub(crate) clock: Arc<dyn Clock>,
    /// `None` for the default key (host, path and query as requested).
    pub(crate) key_rules: Option<KeyRules>,
    /// Lifetimes for responses without explicit freshness: per path
    /// pattern (first match), then for every path.
    pub(crate) default_ttls: Vec<(Pattern, Duration)>,
    pub(crate) default_ttl: Option<Duration>,
    /// Whether responses reusable only after validation are stored.
    pub(crate) store_validated: bool,
}

impl Config {
    /// The default lifetime for a response stored under `key` without
    /// explicit freshness, if one is configured. The key's path is looked
    /// for only when there are per-path settings.
    pub(crate) fn default_ttl(&self, key: &CacheKey) -> Option<Duration> {
        let per_path = || {
            let path = key.path();
            self.default_ttls.iter().find(|(p, _)| p.matches(path))
        };
        match (!self.default_ttls.is_empty()).then(per_path).flatten() {
            // Zero: the route is kept out of the layer's default.
            Some((_, ttl)) => Some(*ttl),
            None => self.default_ttl,
        }
        .filter(|t| !t.is_zero())
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("encodings", &self.encodings)
            .field("implicit_vary", &self.implicit_vary)
            .field("max_entry_size", &self.max_entry_size)
            .field("coalesce", &self.coalesce)
            .field("coalesce_timeout", &self.coalesce_timeout)
            .field("rules", &self.rules)
            .field("store_set_cookie", &self.store_set_cookie)
            .field("status_name", &self.status_name)
            .field("tag_header", &self.tag_header)
            .field("stale_if_unreachable", &self.stale_if_unreachable)
            .field("key_rules", &self.key_rules)
            .finish_non_exhaustive()
    }
}

/// How long past freshness a response is served when the origin can't be
/// reached ([`CacheLayer::stale_if_unreachable`]): a day. Squid
/// (`max_stale`) and Traffic Server (`max_stale_age`) serve a week by
/// default; a day keeps entries out of a shared store (Redis) for less
/// long, and covers an outage someone is paged for.
pub const DEFAULT_STALE_IF_UNREACHABLE: Duration = Duration::from_secs(24 * 60 * 60);

/// The request fields [`CacheLayer::implicit_vary`] adds to a variant by
/// default: those that frameworks and proxies read as the request's host,
/// scheme, port, URL or method.
pub const DEFAULT_IMPLICIT_VARY: &[&str] = &[
    "forwarded",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-forwarded-scheme",
    "x-forwarded-port",
    "x-forwarded-prefix",
    "x-forwarded-server",
    "x-forwarded-ssl",
    "x-forwarded-uri",
    "x-forwarded-path",
    "front-end-https",
    "x-url-scheme",
    "x-host",
    "x-original-host",
    "x-original-url",
    "x-original-uri",
    "x-rewrite-url",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

/// What a response weighs in a store beyond its body, at least (a few
/// fields, its key, the entry's bookkeeping): the margin the check of
/// `max_entry_size` against the store's bound leaves.
const ENTRY_OVERHEAD: usize = 1024;

/// Default [`CacheLayer::max_entry_size`]: 1 MiB.
pub const DEFAULT_MAX_ENTRY_SIZE: usize = 1024 * 1024;

/// A shared HTTP cache (RFC 9111) as a Tower layer.
///
/// See the [module docs](crate::cache) for what it does. Every service the
/// layer builds shares one store, one set of in-flight fetches and one set
/// of statistics; [`handle`](Self::handle) purges them.
#[derive(Debug, Clone)]
pub struct CacheLayer {
    pub(crate) config: Arc<Config>,
    pub(crate) store: Arc<dyn CacheStore>,
    pub(crate) counters: Arc<Counters>,
    pub(crate) flights: Arc<Flights>,
}

impl Default for CacheLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl CacheLayer {
    /// A cache with a 64 MiB [`MemoryStore`], coalescing on (5 s wait),
    /// entries up to 1 MiB, no heuristic freshness, `Cache-Status` as
    /// `tower-perf`, tags from `Surrogate-Key`, Accept-Encoding reduced to
    /// gzip/deflate/identity.
    pub fn new() -> Self {
        Self {
            config: Arc::new(Config {
                encodings: Encodings::Origin,
                implicit_vary: DEFAULT_IMPLICIT_VARY
                    .iter()
                    .map(|n| HeaderName::from_static(n))
                    .collect(),
                max_entry_size: DEFAULT_MAX_ENTRY_SIZE,
                coalesce: true,
                coalesce_timeout: Duration::from_secs(5),
                rules: Rules {
                    heuristic: None,
                    targets: vec![HeaderName::from_static("cdn-cache-control")],
                },
                store_set_cookie: false,
                serve_authorized: false,
                status_name: Some("tower-perf".into()),
                tag_header: Some(HeaderName::from_static("surrogate-key")),
                strip_tag_header: true,
                validator_grace: Duration::from_secs(3600),
                stale_if_unreachable: DEFAULT_STALE_IF_UNREACHABLE,
                clock: Arc::new(SystemClock),
                key_rules: None,
                default_ttls: Vec::new(),
                default_ttl: None,
                store_validated: true,
            }),
            store: Arc::new(MemoryStore::default()),
            counters: Arc::default(),
            flights: Arc::default(),
        }
    }

    /// Keys requests by `rules` as well as host, path and query: query
    /// parameters dropped or sorted (in the request the inner service sees
    /// too), request header, cookie or extension values added. See
    /// [`KeyRules`].
    pub fn key(mut self, rules: KeyRules) -> Self {
        Arc::make_mut(&mut self.config).key_rules = (!rules.is_identity()).then_some(rules);
        self
    }

    /// Keeps responses in `store` instead of the default 64 MiB memory
    /// store.
    pub fn store<T: CacheStore>(mut self, store: T) -> Self {
        self.store = Arc::new(store);
        self
    }

    /// Keeps responses in a shared store.
    pub fn shared_store(mut self, store: Arc<dyn CacheStore>) -> Self {
        self.store = store;
        self
    }

    /// The largest body stored (default 1 MiB). Larger responses stream
    /// through untouched.
    pub fn max_entry_size(mut self, bytes: usize) -> Self {
        Arc::make_mut(&mut self.config).max_entry_size = bytes;
        self
    }

    /// Declares that a compression layer *inside* this cache produces the
    /// content codings, offering `codings` in its order of preference (as
    /// in the example server). A request varying on `Accept-Encoding` is
    /// then keyed on the coding that layer would pick for it, so the
    /// variants are exactly the codings it produces.
    ///
    /// Without this call (the default) the origin is taken to negotiate
    /// itself, as behind a caching proxy: a request is keyed on its
    /// preferred coding among every coding this crate knows (zstd, br,
    /// gzip, deflate, in that order among equal weights; or none), so a
    /// browser's `gzip, deflate, br` and curl's missing field never share
    /// a variant, whatever the origin answered either. Either way a stored
    /// response is never served to a request that does not accept its
    /// `Content-Encoding` (RFC 9110 §12.5.3; `q=0` and `identity;q=0`
    /// included), `Vary` or not; a request without `Accept-Encoding`
    /// accepts identity only.
    pub fn codings<I: IntoIterator<Item = ContentCoding>>(mut self, codings: I) -> Self {
        Arc::make_mut(&mut self.config).encodings =
            Encodings::Inside(codings.into_iter().collect());
        self
    }

    /// Request fields that become part of a stored response's variant
    /// whenever the request that fetched it carried them, as if the
    /// response's `Vary` named them (default:
    /// [`DEFAULT_IMPLICIT_VARY`]). These are the fields frameworks read as
    /// the request's host, scheme, URL or method (`X-Forwarded-Host`,
    /// `Forwarded`, `X-Original-URL`, `X-HTTP-Method-Override`…): an
    /// origin that honours one without naming it in `Vary` would let one
    /// client choose what every other client receives. A response fetched
    /// with `X-Forwarded-Host: evil.test` is then served only to requests
    /// carrying that same value; one fetched without any of them serves
    /// everyone, but a request carrying one never revalidates or refreshes
    /// it (a 304 answered for its fields would rewrite the shared copy): it
    /// fetches a variant of its own. `Forwarded` counts by its `host` and
    /// `proto` parameters only (`for` differs per client). Behind a proxy
    /// you trust to set these fields on every request, nothing changes for
    /// hits: every request carries the same values. An empty list turns
    /// this off.
    pub fn implicit_vary<I: IntoIterator<Item = HeaderName>>(mut self, names: I) -> Self {
        Arc::make_mut(&mut self.config).implicit_vary = names.into_iter().collect();
        self
    }

    /// Concurrent misses and revalidations of one URL make one origin
    /// request (default on); the others wait at most `timeout` and then go
    /// to the origin themselves.
    pub fn coalesce(mut self, on: bool, timeout: Duration) -> Self {
        Arc::make_mut(&mut self.config).coalesce = on;
        Arc::make_mut(&mut self.config).coalesce_timeout = timeout;
        self
    }

    /// How long a URL whose answer could not be stored (`no-store`,
    /// `private`, too large…) is remembered as such (default 30 s): its
    /// requests skip coalescing meanwhile, so they don't queue behind each
    /// other for an answer that can't be shared ("hit-for-miss"). They
    /// keep no copy of their header fields either: the first answer that
    /// turns storable in that time is passed on unstored and ends the
    /// window, and the next request stores it.
    pub fn hit_for_miss(mut self, d: Duration) -> Self {
        self.flights = Arc::new(Flights::new(d));
        self
    }

    /// How long past its freshness a stored response may still be served
    /// when the origin can't be reached (the connection fails or times
    /// out) or answers 502, 503 or 504 (RFC 9111 §4.2.4: a cache
    /// disconnected from the origin may serve stale), default
    /// [`DEFAULT_STALE_IF_UNREACHABLE`]; `Duration::ZERO` turns it off.
    /// Never for a response with `must-revalidate`, `proxy-revalidate`,
    /// `s-maxage` or `no-cache`, which forbid it; `Cache-Status` says
    /// `fwd=stale; detail=origin-unreachable`. The store keeps entries this
    /// long past their freshness (a memory store evicts the least used
    /// first when full). A `stale-if-error` window (RFC 5861), from the
    /// response or the request, applies to every 5xx and on top of this.
    pub fn stale_if_unreachable(mut self, window: Duration) -> Self {
        Arc::make_mut(&mut self.config).stale_if_unreachable = window;
        self
    }

    /// The targeted cache-control fields this cache obeys (RFC 9213), most
    /// applicable first (default: `CDN-Cache-Control`; add your own, e.g.
    /// `TowerPerf-Cache-Control`, or pass none to obey `Cache-Control`
    /// only). For each response, the first of them present with a valid,
    /// non-empty value (a Structured Field Dictionary, read by
    /// [`CacheControl::from_targeted`](crate::headers::CacheControl::from_targeted))
    /// decides what this cache stores and for how long, and the response's
    /// `Cache-Control` and `Expires` are then ignored by this cache; an
    /// empty or invalid one is as if absent. Every field is still
    /// forwarded as it came: caches further down read their own (RFC 9213
    /// §3: a CDN forwards `CDN-Cache-Control` for the next one).
    ///
    /// # Panics
    ///
    /// On `Cache-Control` or `Expires`: they are not targeted fields (read
    /// with Structured Field rules, `Cache-Control` would mean something
    /// else than it says).
    pub fn targeted_cache_control<I: IntoIterator<Item = HeaderName>>(mut self, names: I) -> Self {
        let mut targets: Vec<HeaderName> = Vec::new();
        for n in names {
            assert!(
                n != http::header::CACHE_CONTROL && n != http::header::EXPIRES,
                "CacheLayer::targeted_cache_control: {n} is not a targeted field (RFC 9213); it is read as always"
            );
            if !targets.contains(&n) {
                targets.push(n);
            }
        }
        Arc::make_mut(&mut self.config).rules.targets = targets;
        self
    }

    /// A freshness lifetime for responses that carry none (no `s-maxage`,
    /// `max-age` or `Expires`, in `Cache-Control` or the targeted field
    /// this cache obeys), as the query cache this crate was designed from
    /// gives every entry 300 s. Off by default: RFC 9111 lets a cache
    /// choose such a lifetime (§4.2.2), and an origin that says nothing is
    /// then reused for `ttl` without being asked. Only for the statuses a
    /// cache may store without explicit freshness (200, 203, 204, 300,
    /// 301, 308, 404, 405, 410, 414, 501); never against `no-cache`,
    /// `no-store` or `private`. It wins over
    /// [`heuristic_freshness`](Self::heuristic_freshness). Per route with
    /// [`default_ttl_for`](Self::default_ttl_for).
    pub fn default_ttl(mut self, ttl: Duration) -> Self {
        Arc::make_mut(&mut self.config).default_ttl = Some(ttl);
        self
    }

    /// [`default_ttl`](Self::default_ttl) for paths matching `pattern`: an
    /// exact path, or a glob (`*` within a segment, `**` across) or an
    /// axum route (`/api/items/{id}`). The first pattern added that
    /// matches wins over the layer's default; `Duration::ZERO` keeps a
    /// route out of a layer-wide default (heuristic freshness, if on,
    /// still applies to it). A 206 part is never given a default TTL.
    ///
    /// # Panics
    ///
    /// When the pattern can never match a request path (empty, without a
    /// leading `/`, malformed braces…), naming it and why.
    pub fn default_ttl_for(mut self, pattern: &str, ttl: Duration) -> Self {
        let p = Pattern::parse(pattern);
        Arc::make_mut(&mut self.config).default_ttls.push((p, ttl));
        self
    }

    /// Whether responses that could be reused only after the origin
    /// validated them are stored: `no-cache` ones, and those with neither a
    /// freshness lifetime (`max-age=0`, an `Expires` not after `Date`, no
    /// freshness and no default TTL or heuristic) nor a stale window they
    /// may be served in (`max-age=0` with an `ETag`, say). On by default,
    /// as RFC 9111 describes a cache. Off, they are not stored, not kept
    /// when a 304 makes them so, and not stored as 206 parts; and they
    /// can't be served while the origin is unreachable
    /// ([`stale_if_unreachable`](Self::stale_if_unreachable)).
    ///
    /// Turn it off when the origin is in this process (the cache in front
    /// of your own handlers): revalidating such a response sends a
    /// conditional request through the inner layers, whose handler runs
    /// all the same (a `CacheControlLayer` answers 304 by hashing the body
    /// the handler made), then updates the stored copy, which costs more
    /// than passing the response through (BENCHMARKS.md, "The pass-through
    /// path"). Such responses then go straight through, and their URL is
    /// remembered as uncacheable for [`hit_for_miss`](Self::hit_for_miss)
    /// so requests for it don't wait on each other. Keep it on in front of
    /// a remote origin, where a 304 saves sending the body, or for
    /// handlers that answer conditional requests without doing the work.
    /// Not storing is always allowed (RFC 9111 §3).
    pub fn store_validated(mut self, on: bool) -> Self {
        Arc::make_mut(&mut self.config).store_validated = on;
        self
    }

    /// Heuristic freshness (RFC 9111 §4.2.2) for responses without explicit
    /// freshness but with `Last-Modified`: `fraction` of the time since the
    /// last modification (0.1 is usual), at most `max`. Off by default.
    pub fn heuristic_freshness(mut self, fraction: f64, max: Duration) -> Self {
        Arc::make_mut(&mut self.config).rules.heuristic = Some(Heuristic {
            fraction: fraction.clamp(0.0, 1.0),
            max,
        });
        self
    }

    /// Stores responses that carry `Set-Cookie` (off by default: a cookie
    /// meant for one client would be replayed to all).
    pub fn store_set_cookie(mut self, on: bool) -> Self {
        Arc::make_mut(&mut self.config).store_set_cookie = on;
        self
    }

    /// Answers requests that carry `Authorization` from the cache (off by
    /// default: they go to the origin, because an origin's answer often
    /// depends on who asks without saying `Vary: Authorization`, and a
    /// cached public answer would hide that). Their responses are stored
    /// either way when RFC 9111 §3.5 allows (`public`, `s-maxage`,
    /// `must-revalidate`).
    pub fn serve_authorized(mut self, on: bool) -> Self {
        Arc::make_mut(&mut self.config).serve_authorized = on;
        self
    }

    /// The cache's name in `Cache-Status` (RFC 9211), or `None` to send no
    /// `Cache-Status`. Default `tower-perf`.
    pub fn cache_status(mut self, name: Option<&str>) -> Self {
        Arc::make_mut(&mut self.config).status_name = name.map(Into::into);
        self
    }

    /// The response field that lists a response's purge tags, separated by
    /// spaces or commas (default `Surrogate-Key`), or `None`; and whether
    /// to remove it from responses sent to clients (default yes: it is
    /// meant for the cache).
    pub fn tag_header(mut self, name: Option<HeaderName>, strip: bool) -> Self {
        Arc::make_mut(&mut self.config).tag_header = name;
        Arc::make_mut(&mut self.config).strip_tag_header = strip;
        self
    }

    /// How long a stale response with a validator is kept for revalidation
    /// after its freshness and stale windows end (default 1 hour).
    pub fn validator_grace(mut self, d: Duration) -> Self {
        Arc::make_mut(&mut self.config).validator_grace = d;
        self
    }

    /// The clock that ages responses (tests use a
    /// [`ManualClock`](crate::clock::ManualClock)).
    pub fn clock<C: Clock>(mut self, clock: C) -> Self {
        Arc::make_mut(&mut self.config).clock = Arc::new(clock);
        self
    }

    /// A handle that purges and warms this layer's store. Make it after
    /// configuring the layer: it keeps the settings of that moment.
    pub fn handle(&self) -> CacheHandle {
        CacheHandle {
            store: Arc::clone(&self.store),
            counters: Arc::clone(&self.counters),
            config: Arc::clone(&self.config),
        }
    }

    /// This layer's statistics.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            counters: Arc::clone(&self.counters),
            store: Arc::clone(&self.store),
        }
    }
}

impl<S> tower_layer::Layer<S> for CacheLayer {
    type Service = Cache<S>;

    /// # Panics
    ///
    /// When a response of [`max_entry_size`](CacheLayer::max_entry_size)
    /// could never fit the store (a [`MemoryStore`]
    /// keeps entries up to about 97% of one shard of its budget): such
    /// responses would be read whole and refused by the store, every time.
    fn layer(&self, inner: S) -> Self::Service {
        if let Some(max) = self.store.max_entry_weight() {
            // A response at the limit, with a few fields and its key.
            let least = self.config.max_entry_size.saturating_add(ENTRY_OVERHEAD);
            assert!(
                least <= max,
                "CacheLayer: max_entry_size is {} bytes, but its store keeps entries of at most {max} bytes \
                 (with their fields and key): a response at the limit would be read whole and refused \
                 every time; give the store a larger budget or lower max_entry_size to {}",
                self.config.max_entry_size,
                max.saturating_sub(ENTRY_OVERHEAD)
            );
        }
        Cache {
            inner,
            shared: Arc::new(Shared {
                config: Arc::clone(&self.config),
                store: Arc::clone(&self.store),
                counters: Arc::clone(&self.counters),
                flights: Arc::clone(&self.flights),
            }),
        }
    }
}

/// Purges a cache's store; cheap to clone.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use tower_perf::cache::CacheLayer;
///
/// let layer = CacheLayer::new();
/// let handle = layer.handle();
/// assert_eq!(handle.purge_tag("product-42").await.unwrap(), 0);
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct CacheHandle {
    pub(crate) store: Arc<dyn CacheStore>,
    pub(crate) counters: Arc<Counters>,
    /// The layer's settings when the handle was made (warming reads the
    /// clock and the codings).
    pub(crate) config: Arc<Config>,
}

impl CacheHandle {
    /// Drops what `purge` selects; returns how many URLs went.
    ///
    /// # Errors
    ///
    /// When the store could not purge everywhere it had to. A tiered store
    /// that could not reach Redis has still purged this process's memory
    /// ([`StoreError::purged_here`] says how many URLs) and replays the
    /// purge to Redis and the other replicas when Redis answers; a purge
    /// that did not succeed is never reported as one.
    pub async fn purge(&self, purge: Purge) -> Result<u64, StoreError> {
        let result = self.store.purge(&purge).await;
        let n = match &result {
            Ok(n) => *n,
            Err(e) => e.purged_here().unwrap_or(0),
        };
        self.counters
            .purged
            .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        result
    }

    /// Purges one URL. An absolute URL (`https://example.com/a?b`) purges
    /// it on its host; a path (`/a?b`) purges it on every host. The
    /// layer's [`KeyRules`] rewrite its query first (`/a?utm_source=x&b`
    /// purges what `/a?b` stored); when they add request values to the
    /// key, every set of values goes, on every host.
    pub async fn purge_url(&self, url: &str) -> Result<u64, StoreError> {
        let mut uri: Uri = url
            .parse()
            .map_err(|_| StoreError::invalid("not a URL or path"))?;
        let rules = self.config.key_rules.as_ref();
        if let Some(pq) = rules.and_then(|r| r.purge_target(&uri)) {
            let mut parts = uri.into_parts();
            parts.path_and_query = pq.parse().ok();
            uri = Uri::from_parts(parts).map_err(|_| StoreError::invalid("not a URL or path"))?;
        }
        let per_values = rules.is_some_and(KeyRules::adds_values);
        let purge = match (uri.scheme(), uri.authority()) {
            (Some(scheme), Some(a)) => {
                // The cache refuses other schemes (400): nothing to purge.
                if !matches!(scheme.as_str(), "http" | "https") {
                    return Err(StoreError::invalid("a URL to purge is http or https"));
                }
                // The host as the cache keys it (lowercase, default port
                // dropped): `http://Example.com:80/a` purges `example.com/a`.
                let host = super::authority::normalize(a.as_str().as_bytes())
                    .ok_or_else(|| StoreError::invalid("not a valid host"))?;
                if per_values {
                    Purge::PathAndQuery(uri.path_and_query().map_or("/", |p| p.as_str()).to_owned())
                } else {
                    Purge::Key(CacheKey::new(host.as_bytes(), &uri))
                }
            }
            (None, None) if url.starts_with('/') => {
                Purge::PathAndQuery(uri.path_and_query().map_or("/", |p| p.as_str()).to_owned())
            }
            _ => {
                return Err(StoreError::invalid(
                    "a URL to purge starts with / or a scheme",
                ));
            }
        };
        self.purge(purge).await
    }

    /// Purges every URL whose path starts with `prefix` (which must start
    /// with `/`), on every host.
    pub async fn purge_prefix(&self, prefix: &str) -> Result<u64, StoreError> {
        if !prefix.starts_with('/') {
            return Err(StoreError::invalid("a prefix to purge starts with /"));
        }
        self.purge(Purge::Prefix(prefix.to_owned())).await
    }

    /// Purges every response tagged `tag`.
    pub async fn purge_tag(&self, tag: &str) -> Result<u64, StoreError> {
        if tag.is_empty() || tag.bytes().any(|b| b.is_ascii_whitespace() || b == b',') {
            return Err(StoreError::invalid("a tag is one non-empty word"));
        }
        self.purge(Purge::Tag(tag.to_owned())).await
    }

    /// Empties the store.
    pub async fn clear(&self) -> Result<u64, StoreError> {
        self.purge(Purge::All).await
    }

    /// The statistics of the cache this handle purges.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            counters: Arc::clone(&self.counters),
            store: Arc::clone(&self.store),
        }
    }
}
