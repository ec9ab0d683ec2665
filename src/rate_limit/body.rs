//! The response body of the rate limiter: the inner body, or the text of
//! an answer the layer made itself (a 429, a 500).

crate::macros::define_text_or_inner_body! {
    /// The response body of [`RateLimit`](super::RateLimit): the inner body, or the 429 text.
}

impl ResponseBody<()> {
    pub(super) fn retype<B>(self) -> ResponseBody<B> {
        ResponseBody {
            inner: None,
            text: self.text,
        }
    }
}
