//! The body of every answer, and the answers made of it.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use serde::Serialize;

/// The body of every [`Report`](super::Report) response.
#[derive(Debug)]
pub struct ReportBody(Full<Bytes>);

impl Body for ReportBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Pin::new(&mut self.get_mut().0).poll_frame(cx)
    }
    fn is_end_stream(&self) -> bool {
        self.0.is_end_stream()
    }
    fn size_hint(&self) -> SizeHint {
        self.0.size_hint()
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
}

pub(super) fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<ReportBody> {
    let mut resp = Response::new(ReportBody(Full::new(body.into())));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// An answer with these fields and body, as given (a task's kept
/// response).
#[cfg(feature = "tasks")]
pub(super) fn respond_with(
    status: StatusCode,
    headers: http::HeaderMap,
    body: Bytes,
) -> Response<ReportBody> {
    let mut resp = Response::new(ReportBody(Full::new(body)));
    *resp.status_mut() = status;
    *resp.headers_mut() = headers;
    resp
}

pub(super) fn json<T: Serialize>(status: StatusCode, value: &T) -> Response<ReportBody> {
    match serde_json::to_vec(value) {
        Ok(v) => respond(status, "application/json", v),
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "serialization failed"),
    }
}

pub(super) fn error(status: StatusCode, message: &str) -> Response<ReportBody> {
    let body = serde_json::to_vec(&ErrorBody { error: message }).unwrap_or_default();
    respond(status, "application/json", body)
}

/// `404` for an endpoint of a layer the report does not read.
pub(super) fn absent(layer: &str) -> Response<ReportBody> {
    error(
        StatusCode::NOT_FOUND,
        &format!("no {layer} layer is attached to this report"),
    )
}
