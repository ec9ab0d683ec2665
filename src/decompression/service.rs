use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::{CONTENT_ENCODING, CONTENT_LENGTH, HeaderMap};
use http::{Request, Response};
use http_body::Body;
use tower_service::Service;

use super::body::{DecompressionBody, Outcome};
use super::decoder::Decoder;
use super::future::{Rejection, ResponseFuture};
use super::layer::{Config, RequestDecompressionLayer};
use super::stats::DecompressionStats;
use crate::BoxError;
use crate::headers::{ContentCoding, split_list};

/// Decodes `Content-Encoding` request bodies for the inner service.
///
/// See the [module docs](crate::decompression).
#[derive(Debug, Clone)]
pub struct RequestDecompression<S> {
    pub(crate) inner: S,
    pub(crate) config: Arc<Config>,
    pub(crate) stats: DecompressionStats,
}

impl<S> RequestDecompression<S> {
    /// Wraps `inner` with the default settings.
    pub fn new(inner: S) -> Self {
        tower_layer::Layer::layer(&RequestDecompressionLayer::new(), inner)
    }

    /// A [`RequestDecompressionLayer`] with the default settings.
    pub fn layer() -> RequestDecompressionLayer {
        RequestDecompressionLayer::new()
    }

    /// This service's statistics.
    pub fn stats(&self) -> DecompressionStats {
        self.stats.clone()
    }

    crate::macros::define_inner_service_accessors!();
}

/// What a request's `Content-Encoding` asks of the layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoded {
    /// No field, or only `identity`.
    No,
    /// One coding the layer decodes.
    Coding(ContentCoding),
    /// A coding it does not decode, or several stacked.
    Unsupported,
}

/// Reads every `Content-Encoding` line. `identity` elements are ignored;
/// one coding from `codings` is decoded; anything else (an unknown or
/// disabled coding, or two codings applied one over the other) is refused.
/// Stops at the second coding, so a long field costs nothing more.
fn encoded(headers: &HeaderMap, codings: &[ContentCoding]) -> Encoded {
    let mut found = Encoded::No;
    for value in headers.get_all(CONTENT_ENCODING) {
        for token in split_list(value.as_bytes()) {
            match ContentCoding::from_token(token) {
                Some(ContentCoding::Identity) => {}
                Some(c) if found == Encoded::No && codings.contains(&c) => {
                    found = Encoded::Coding(c);
                }
                _ => return Encoded::Unsupported,
            }
        }
    }
    found
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RequestDecompression<S>
where
    S: Service<Request<DecompressionBody<ReqBody>>, Response = Response<ResBody>>,
    ReqBody: Body,
    ReqBody::Error: Into<BoxError>,
{
    type Response = Response<super::ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let coding = match encoded(req.headers(), &self.config.codings) {
            Encoded::No => {
                let req = req.map(DecompressionBody::plain);
                return ResponseFuture::inner(self.inner.call(req), None, self.stats.clone());
            }
            Encoded::Coding(c) => c,
            Encoded::Unsupported => {
                self.stats.record_unsupported();
                return ResponseFuture::reject(Rejection::Unsupported(self.config.accept.clone()));
            }
        };
        let Some(decoder) = Decoder::new(coding) else {
            // Only libzstd failing to allocate its context comes here: the
            // server's failure, not the client's.
            tracing::error!(
                "request decompression: the {} decoder could not be set up",
                coding.as_str()
            );
            return ResponseFuture::reject(Rejection::Internal);
        };
        self.stats.record_request(coding);
        let (mut parts, body) = req.into_parts();
        // The inner service sees the decoded representation: no coding, and
        // a length it cannot know before reading.
        parts.headers.remove(CONTENT_ENCODING);
        parts.headers.remove(CONTENT_LENGTH);
        let outcome = Arc::new(Outcome::default());
        let body = DecompressionBody::decoding(
            body,
            decoder,
            coding,
            self.config.max_decoded_size,
            self.stats.clone(),
            outcome.clone(),
        );
        let fut = self.inner.call(Request::from_parts(parts, body));
        ResponseFuture::inner(fut, Some(outcome), self.stats.clone())
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn read(lines: &[&str]) -> Encoded {
        let mut h = HeaderMap::new();
        for l in lines {
            h.append(CONTENT_ENCODING, HeaderValue::from_str(l).unwrap());
        }
        encoded(&h, &[ContentCoding::Gzip, ContentCoding::Deflate])
    }

    #[test]
    fn reads_the_field() {
        assert_eq!(read(&[]), Encoded::No);
        assert_eq!(read(&["identity"]), Encoded::No);
        assert_eq!(read(&["GZIP"]), Encoded::Coding(ContentCoding::Gzip));
        assert_eq!(read(&["x-gzip"]), Encoded::Coding(ContentCoding::Gzip));
        assert_eq!(
            read(&[" , identity, deflate ,"]),
            Encoded::Coding(ContentCoding::Deflate)
        );
        assert_eq!(
            read(&["identity", "gzip"]),
            Encoded::Coding(ContentCoding::Gzip)
        );
        // Stacked codings, unknown ones and codings not configured are refused.
        assert_eq!(read(&["gzip, gzip"]), Encoded::Unsupported);
        assert_eq!(read(&["gzip", "deflate"]), Encoded::Unsupported);
        assert_eq!(read(&["compress"]), Encoded::Unsupported);
        assert_eq!(read(&["br"]), Encoded::Unsupported);
        assert_eq!(read(&["gzip;q=1"]), Encoded::Unsupported);
    }
}
