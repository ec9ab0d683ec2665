//! Cache warming: fill the store through the service before traffic comes.

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::task::Poll;

use http::{Request, Response};
use http_body::Body;
use serde::Serialize;
use tower_service::Service;

use super::key::CacheKey;
use super::layer::CacheHandle;
use super::vary::RequestVary;

/// What [`CacheHandle::warm`] did with each request, by URL (host, path
/// and query).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct WarmReport {
    /// Fetched from the origin and stored.
    pub stored: Vec<String>,
    /// Already in the cache and fresh: nothing fetched.
    pub already_cached: Vec<String>,
    /// Answered, but not storable (the status code says what came back).
    pub not_stored: Vec<(String, u16)>,
    /// The service or the body failed.
    pub failed: Vec<(String, String)>,
}

enum Outcome {
    Stored(String),
    Cached(String),
    NotStored(String, u16),
    Failed(String, String),
}

impl CacheHandle {
    /// Sends `requests` (the hottest URLs, say) through `svc`, at most
    /// `concurrency` at a time, reading each body to its end so the cache
    /// stores it, and reports what was stored.
    ///
    /// `svc` is whatever serves traffic with this cache inside it: the
    /// [`Cache`](super::Cache) itself, or a whole axum
    /// `Router` (requests then pass its other layers too). Runs on any
    /// executor; the requests make progress concurrently in the calling
    /// task.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use std::convert::Infallible;
    /// use bytes::Bytes;
    /// use http::{Request, Response, header};
    /// use http_body_util::Full;
    /// use tower::ServiceBuilder;
    /// use tower_perf::cache::CacheLayer;
    ///
    /// let cache = CacheLayer::new();
    /// let handle = cache.handle();
    /// let svc = ServiceBuilder::new().layer(cache).service_fn(|_req: Request<()>| async {
    ///     Ok::<_, Infallible>(
    ///         Response::builder()
    ///             .header(header::CACHE_CONTROL, "max-age=300")
    ///             .body(Full::new(Bytes::from_static(b"{}")))
    ///             .unwrap(),
    ///     )
    /// });
    /// let hot = ["/a", "/b"].map(|p| Request::get(p).header(header::HOST, "example.com").body(()).unwrap());
    /// let report = handle.warm(svc, hot, 8).await;
    /// assert_eq!(report.stored, ["example.com/a", "example.com/b"]);
    /// # }
    /// ```
    pub async fn warm<S, ReqB, ResB, I>(
        &self,
        svc: S,
        requests: I,
        concurrency: usize,
    ) -> WarmReport
    where
        S: Service<Request<ReqB>, Response = Response<ResB>> + Clone,
        S::Error: std::fmt::Display,
        ResB: Body,
        ResB::Error: std::fmt::Display,
        I: IntoIterator<Item = Request<ReqB>>,
    {
        let concurrency = concurrency.max(1);
        let mut requests = requests.into_iter();
        let mut pending: Vec<Pin<Box<dyn Future<Output = Outcome> + '_>>> = Vec::new();
        let mut report = WarmReport::default();
        loop {
            while pending.len() < concurrency {
                let Some(req) = requests.next() else { break };
                pending.push(Box::pin(self.warm_one(svc.clone(), req)));
            }
            if pending.is_empty() {
                break;
            }
            let outcome = poll_fn(|cx| {
                for i in 0..pending.len() {
                    if let Poll::Ready(o) = pending[i].as_mut().poll(cx) {
                        drop(pending.swap_remove(i));
                        return Poll::Ready(o);
                    }
                }
                Poll::Pending
            })
            .await;
            match outcome {
                Outcome::Stored(u) => report.stored.push(u),
                Outcome::Cached(u) => report.already_cached.push(u),
                Outcome::NotStored(u, s) => report.not_stored.push((u, s)),
                Outcome::Failed(u, e) => report.failed.push((u, e)),
            }
        }
        // Completion order varies with concurrency; report in URL order.
        report.stored.sort();
        report.already_cached.sort();
        report.not_stored.sort();
        report.failed.sort();
        report
    }

    async fn warm_one<S, ReqB, ResB>(&self, mut svc: S, mut req: Request<ReqB>) -> Outcome
    where
        S: Service<Request<ReqB>, Response = Response<ResB>>,
        S::Error: std::fmt::Display,
        ResB: Body,
        ResB::Error: std::fmt::Display,
    {
        // The key the cache will use (and the Host it will forward).
        let key = match super::authority::settle(&mut req) {
            Ok(key) => key,
            Err(refused) => {
                let url = CacheKey::from_request(&req).to_string();
                return Outcome::Failed(url, refused.reason().to_owned());
            }
        };
        // As the cache keys it (its query rewritten, request values added).
        let key = match &self.config.key_rules {
            Some(rules) => rules.apply(&mut req, key),
            None => key,
        };
        let url = key.to_string();
        let headers = req.headers().clone();
        let start = self.config.clock.system_time();
        if let Err(e) = poll_fn(|cx| svc.poll_ready(cx)).await {
            return Outcome::Failed(url, e.to_string());
        }
        let resp = match svc.call(req).await {
            Ok(r) => r,
            Err(e) => return Outcome::Failed(url, e.to_string()),
        };
        let status = resp.status().as_u16();
        let mut body = std::pin::pin!(resp.into_body());
        while let Some(frame) = poll_fn(|cx| body.as_mut().poll_frame(cx)).await {
            if let Err(e) = frame {
                return Outcome::Failed(url, format!("body: {e}"));
            }
        }
        let variants = self.store.get(&key).await.ok().flatten();
        let request = RequestVary::new(&headers, &self.config.encodings);
        let found = variants.as_deref().and_then(|vs| request.select(vs));
        match found {
            Some(v) if v.response_time >= start => Outcome::Stored(url),
            Some(_) => Outcome::Cached(url),
            None => Outcome::NotStored(url, status),
        }
    }
}
