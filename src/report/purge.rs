//! `POST /performance/cache/clear` and `/cache/purge`: what they take, what
//! they answer.

use http::{Request, Response, StatusCode};
use http_body::Body;
use http_body_util::{BodyExt, Limited};
use serde::{Deserialize, Serialize};

use super::body::{ReportBody, error, json};
use super::service::Mutation;
use crate::BoxError;
use crate::cache::CacheHandle;

/// Largest request body read (purge requests are a few bytes).
const MAX_BODY: usize = 16 * 1024;

/// The body of `POST /performance/cache/purge`: exactly one field.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PurgeRequest {
    /// A URL (`https://host/path?q`, that host) or a path (`/path?q`, every
    /// host).
    pub url: Option<String>,
    /// A path prefix, starting with `/`.
    pub prefix: Option<String>,
    /// A tag.
    pub tag: Option<String>,
}

/// The answer to a purge or clear: `200` when it reached every tier and
/// replica, `503` when the store failed. With a `TieredStore` and Redis
/// unreachable, a 503 says how many URLs went from this replica's memory,
/// and the store replays the rest when Redis answers again; with a store
/// of one tier, nothing was purged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Purged {
    /// URLs dropped (in this process only, when `complete` is false).
    pub purged: u64,
    /// Whether the purge reached every tier and every replica.
    pub complete: bool,
    /// Why it did not, when it did not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Runs an authorized mutation on the cache.
pub(super) async fn mutate<B>(
    handle: &CacheHandle,
    mutation: Mutation,
    req: Request<B>,
) -> Response<ReportBody>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let result = match mutation {
        Mutation::Clear => handle.clear().await,
        Mutation::Purge => {
            let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
                Ok(b) => b.to_bytes(),
                Err(_) => {
                    return error(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "the body is too large or unreadable",
                    );
                }
            };
            let purge: PurgeRequest = match serde_json::from_slice(&body) {
                Ok(p) => p,
                Err(e) => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        &format!("expected {{\"url\"|\"prefix\"|\"tag\": \"…\"}}: {e}"),
                    );
                }
            };
            let valid = |s: &str| {
                !s.is_empty() && s.len() <= 4096 && !s.bytes().any(|b| b.is_ascii_control())
            };
            match (purge.url, purge.prefix, purge.tag) {
                (Some(u), None, None)
                    if valid(&u)
                        && (u.starts_with('/')
                            || u.starts_with("http://")
                            || u.starts_with("https://"))
                        && u.parse::<http::Uri>().is_ok() =>
                {
                    handle.purge_url(&u).await
                }
                (None, Some(p), None) if valid(&p) && p.starts_with('/') => {
                    handle.purge_prefix(&p).await
                }
                (None, None, Some(t))
                    if valid(&t) && !t.bytes().any(|b| b.is_ascii_whitespace() || b == b',') =>
                {
                    handle.purge_tag(&t).await
                }
                (Some(_), None, None) => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "url: a path starting with / or an http(s) URL",
                    );
                }
                (None, Some(_), None) => {
                    return error(StatusCode::BAD_REQUEST, "prefix: a path starting with /");
                }
                (None, None, Some(_)) => {
                    return error(StatusCode::BAD_REQUEST, "tag: one word");
                }
                _ => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "give exactly one of url, prefix, tag",
                    );
                }
            }
        }
    };
    match result {
        Ok(n) => json(
            StatusCode::OK,
            &Purged {
                purged: n,
                complete: true,
                error: None,
            },
        ),
        Err(e) if e.is_invalid() => error(StatusCode::BAD_REQUEST, &e.message()),
        // What fails now is the store, wholly or in part (a 503 either
        // way: the purge is not done).
        Err(e) => json(
            StatusCode::SERVICE_UNAVAILABLE,
            &Purged {
                purged: e.purged_here().unwrap_or(0),
                complete: false,
                error: Some(e.to_string()),
            },
        ),
    }
}
