//! The response future: times the head, hands the request on to the body.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::{Response, StatusCode};
use http_body::Body;
use pin_project_lite::pin_project;

use super::body::ResponseBody;
use super::guard::Guard;
use super::route::End;
use super::server_timing::{SERVER_TIMING, server_timing};
use super::service::Local;

pin_project! {
    /// The response future of [`Timing`](super::Timing).
    pub struct ResponseFuture<F> {
        #[pin]
        pub(super) inner: F,
        pub(super) guard: Option<Guard>,
        pub(super) head: bool,
        // Only when Server-Timing is on: this thread's settings handle.
        pub(super) server_timing: Option<Arc<Local>>,
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Body,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        let mut guard = this.guard.take();
        match result {
            Ok(mut res) => {
                let allow = this
                    .server_timing
                    .as_ref()
                    .and_then(|l| l.settings.server_timing.as_ref());
                if let (Some(allow), Some(g)) = (allow, guard.as_ref()) {
                    if let Some(v) = server_timing(g, allow) {
                        res.headers_mut().append(SERVER_TIMING, v);
                    }
                }
                let status = res.status();
                crate::trace::record(
                    crate::trace::field::HTTP_RESPONSE_STATUS_CODE,
                    status.as_u16(),
                );
                if let Some(g) = guard.as_mut() {
                    g.status = status.as_u16();
                }
                let bodyless = *this.head
                    || status.is_informational()
                    || status == StatusCode::NO_CONTENT
                    || status == StatusCode::NOT_MODIFIED
                    || res.body().is_end_stream();
                if bodyless {
                    // No body will be polled: the request ends with its head.
                    if let Some(g) = guard.as_mut() {
                        g.finish();
                    }
                }
                Poll::Ready(Ok(res.map(|body| ResponseBody { inner: body, guard })))
            }
            Err(e) => {
                // No response, so no status sent (OpenTelemetry: no
                // `http.response.status_code`, an `error.type`); counted
                // as a 500 with the server errors.
                if let Some(g) = guard.as_mut() {
                    g.status = 500;
                    g.end(End::NoResponse);
                }
                Poll::Ready(Err(e))
            }
        }
    }
}
