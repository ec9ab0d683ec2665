//! The axum extractor: the query cache from the state, timed.

use axum::extract::{FromRef, FromRequestParts};
use http::request::Parts;

use super::QueryCache;

/// The application's query cache (from its state, through
/// [`FromRef`]), recording lookups as sub-timings of the request when
/// the timing layer gives it [`Timings`](crate::timing::Timings).
impl<S> FromRequestParts<S> for QueryCache
where
    QueryCache: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let cache = QueryCache::from_ref(state);
        Ok(match parts.extensions.get::<crate::timing::Timings>() {
            Some(t) => cache.with_timings(t),
            None => cache,
        })
    }
}
