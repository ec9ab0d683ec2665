use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::header::{ACCEPT_ENCODING, CONTENT_TYPE, HeaderValue};
use http::{Response, StatusCode};
use pin_project_lite::pin_project;

use super::body::{Outcome, ResponseBody, Verdict};
use super::stats::DecompressionStats;

/// An answer the layer gives itself.
#[derive(Debug)]
pub(crate) enum Rejection {
    /// 415, with the `Accept-Encoding` the layer decodes.
    Unsupported(HeaderValue),
    /// 413: the decoded body passed the limit.
    TooLarge,
    /// 400: the body was not valid for its coding.
    Malformed,
    /// 500: the decoder could not be set up (libzstd out of memory).
    Internal,
}

impl Rejection {
    fn response<B>(self) -> Response<ResponseBody<B>> {
        let (status, text) = match &self {
            Self::Unsupported(_) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported content coding in the request\n",
            ),
            Self::TooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "the request body is too large once decoded\n",
            ),
            Self::Malformed => (
                StatusCode::BAD_REQUEST,
                "the request body is not valid for its content coding\n",
            ),
            Self::Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the request body's decoder could not be set up\n",
            ),
        };
        let mut res = Response::new(ResponseBody::text(text));
        *res.status_mut() = status;
        let headers = res.headers_mut();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        if let Self::Unsupported(accept) = self {
            // RFC 9110 §15.5.16: say which codings would have been accepted.
            headers.insert(ACCEPT_ENCODING, accept);
        }
        res
    }
}

pin_project! {
    /// The response future of
    /// [`RequestDecompression`](super::RequestDecompression).
    pub struct ResponseFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Inner {
            #[pin]
            fut: F,
            outcome: Option<Arc<Outcome>>,
            stats: DecompressionStats,
        },
        Reject { rejection: Option<Rejection> },
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn inner(fut: F, outcome: Option<Arc<Outcome>>, stats: DecompressionStats) -> Self {
        Self {
            state: State::Inner {
                fut,
                outcome,
                stats,
            },
        }
    }

    pub(crate) fn reject(rejection: Rejection) -> Self {
        Self {
            state: State::Reject {
                rejection: Some(rejection),
            },
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Reject { rejection } => Poll::Ready(Ok(rejection
                .take()
                .expect("ResponseFuture polled after completion")
                .response())),
            StateProj::Inner {
                fut,
                outcome,
                stats,
            } => {
                let res = ready!(fut.poll(cx));
                // The inner service failed (an error, or a 4xx/5xx answer)
                // after its body failed because of what the client sent:
                // whatever it made of the error, the answer is the
                // client's fault, and says which. A success stands: the
                // service had what it needed.
                let failed = res.as_ref().map_or(true, |r| {
                    r.status().is_client_error() || r.status().is_server_error()
                });
                let verdict = match outcome.as_ref() {
                    Some(o) if failed => o.verdict(),
                    _ => Verdict::Ok,
                };
                Poll::Ready(match verdict {
                    Verdict::Ok => res.map(|r| r.map(ResponseBody::inner)),
                    Verdict::TooLarge => {
                        stats.record_too_large();
                        Ok(Rejection::TooLarge.response())
                    }
                    Verdict::Malformed => {
                        stats.record_malformed();
                        Ok(Rejection::Malformed.response())
                    }
                })
            }
        }
    }
}
