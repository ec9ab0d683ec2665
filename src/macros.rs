/// Generates `get_ref`, `get_mut` and `into_inner` for a service with an
/// `inner` field.
#[allow(unused_macros)]
macro_rules! define_inner_service_accessors {
    () => {
        /// The inner service.
        pub fn get_ref(&self) -> &S {
            &self.inner
        }

        /// The inner service, mutably.
        pub fn get_mut(&mut self) -> &mut S {
            &mut self.inner
        }

        /// Consumes `self`, returning the inner service.
        pub fn into_inner(self) -> S {
            self.inner
        }
    };
}

#[allow(unused_imports)]
pub(crate) use define_inner_service_accessors;

/// Generates a layer's `ResponseBody<B>`: the inner service's body, or the
/// text of an answer the layer made itself (`$doc` says which). Layers that
/// answer some requests themselves (rate limiting, request decompression)
/// share this one implementation.
#[allow(unused_macros)]
macro_rules! define_text_or_inner_body {
    ($(#[$doc:meta])*) => {
        pin_project_lite::pin_project! {
            $(#[$doc])*
            pub struct ResponseBody<B> {
                #[pin]
                inner: Option<B>,
                text: Option<bytes::Bytes>,
            }
        }

        impl<B> std::fmt::Debug for ResponseBody<B> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct("ResponseBody").finish_non_exhaustive()
            }
        }

        #[allow(dead_code)]
        impl<B> ResponseBody<B> {
            pub(crate) fn inner(body: B) -> Self {
                Self {
                    inner: Some(body),
                    text: None,
                }
            }

            pub(crate) fn text(text: &'static str) -> Self {
                Self::bytes(bytes::Bytes::from_static(text.as_bytes()))
            }

            pub(crate) fn bytes(text: bytes::Bytes) -> Self {
                Self {
                    inner: None,
                    text: Some(text),
                }
            }
        }

        impl<B: http_body::Body<Data = bytes::Bytes>> http_body::Body for ResponseBody<B> {
            type Data = bytes::Bytes;
            type Error = B::Error;

            fn poll_frame(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, B::Error>>> {
                let this = self.project();
                if let Some(t) = this.text.take() {
                    return std::task::Poll::Ready(Some(Ok(http_body::Frame::data(t))));
                }
                match this.inner.as_pin_mut() {
                    Some(b) => b.poll_frame(cx),
                    None => std::task::Poll::Ready(None),
                }
            }

            fn is_end_stream(&self) -> bool {
                self.text.is_none()
                    && self
                        .inner
                        .as_ref()
                        .is_none_or(http_body::Body::is_end_stream)
            }

            fn size_hint(&self) -> http_body::SizeHint {
                match (&self.text, &self.inner) {
                    (Some(t), _) => http_body::SizeHint::with_exact(t.len() as u64),
                    (None, Some(b)) => b.size_hint(),
                    (None, None) => http_body::SizeHint::with_exact(0),
                }
            }
        }
    };
}

#[allow(unused_imports)]
pub(crate) use define_text_or_inner_body;
