use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::header::{
    ACCEPT_RANGES, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE,
    ETAG, HeaderMap, HeaderValue, SET_COOKIE, VARY,
};
use http::response::Parts;
use http::{Response, StatusCode};
use http_body::Body;
use pin_project_lite::pin_project;

use super::body::{Encoding, ResponseBody};
use super::dictionary::Choice;
use super::encoder::{Encoder, Flush};
use super::layer::Config;
use super::predicate;
use super::service::etag_suffix;
use super::stats::{CompressionStats, SkipReason};
use crate::BoxError;
use crate::body_util::{Fill, ReadAhead};
use crate::headers::{self, CacheControl, ContentCoding, EntityTag};

/// What the request told the response future.
#[derive(Debug)]
pub(crate) struct Ctx {
    pub(crate) coding: ContentCoding,
    /// The request is a GET (only a GET's answer is learned as a
    /// dictionary).
    pub(crate) is_get: bool,
    /// The request carried `Authorization`.
    pub(crate) authorized: bool,
    /// The dictionary coding and dictionary the request may get (RFC
    /// 9842).
    pub(crate) dictionary: Option<Choice>,
    pub(crate) is_head: bool,
    /// Base tags of If-None-Match entries the client had from us with a
    /// coding suffix.
    pub(crate) stripped: Vec<EntityTag>,
    pub(crate) config: Arc<Config>,
    pub(crate) stats: CompressionStats,
}

pin_project! {
    #[project = StateProj]
    enum State<F, B> {
        Inner { #[pin] fut: F },
        Buffering {
            parts: Option<Parts>,
            body: Option<Pin<Box<B>>>,
            buffered: ReadAhead,
            // Compressing a small body of known length whole: read it all,
            // then compress it in one go and send its exact length.
            eager: bool,
        },
        NotAcceptable,
        Done,
    }
}

pin_project! {
    /// The response future of [`Compression`](super::Compression).
    pub struct ResponseFuture<F, B> {
        #[pin]
        state: State<F, B>,
        ctx: Option<Ctx>,
    }
}

impl<F, B> std::fmt::Debug for ResponseFuture<F, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("ctx", &self.ctx)
            .finish_non_exhaustive()
    }
}

impl<F, B> ResponseFuture<F, B> {
    pub(crate) fn new(fut: F, ctx: Ctx) -> Self {
        Self {
            state: State::Inner { fut },
            ctx: Some(ctx),
        }
    }

    pub(crate) fn not_acceptable() -> Self {
        Self {
            state: State::NotAcceptable,
            ctx: None,
        }
    }
}

enum Decision {
    Identity,
    /// Compress as the body streams; no Content-Length.
    Compress,
    /// Compress the whole (small, known-length) body in the future, then
    /// send its exact Content-Length.
    CompressWhole,
    /// Unknown length: hold back up to the minimum size to decide.
    Buffer,
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Body,
    B::Error: Into<BoxError>,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Inner { fut } => {
                    let res = ready!(fut.poll(cx))?;
                    let Some(ctx) = this.ctx.as_ref() else {
                        this.state.set(State::Done);
                        continue;
                    };
                    let (mut parts, body) = res.into_parts();
                    let hint = body.size_hint();
                    match decide(&mut parts, hint, ctx) {
                        Decision::Identity => {
                            this.state.set(State::Done);
                            return Poll::Ready(Ok(Response::from_parts(
                                parts,
                                ResponseBody::identity(body),
                            )));
                        }
                        Decision::CompressWhole => {
                            this.state.set(State::Buffering {
                                parts: Some(parts),
                                body: Some(Box::pin(body)),
                                buffered: ReadAhead::default(),
                                eager: true,
                            });
                        }
                        Decision::Compress => {
                            this.state.set(State::Done);
                            let body = if ctx.is_head {
                                head_headers(&mut parts, ctx);
                                ResponseBody::head_compressed()
                            } else {
                                let encoding = streamed(&mut parts, ctx, hint.exact());
                                ResponseBody::encoded(body, encoding, ctx.stats.clone())
                            };
                            return Poll::Ready(Ok(Response::from_parts(parts, body)));
                        }
                        Decision::Buffer => {
                            this.state.set(State::Buffering {
                                parts: Some(parts),
                                body: Some(Box::pin(body)),
                                buffered: ReadAhead::default(),
                                eager: false,
                            });
                        }
                    }
                }
                StateProj::Buffering {
                    parts,
                    body,
                    buffered,
                    eager,
                } => {
                    let (Some(ctx), Some(b)) = (this.ctx.as_ref(), body.as_mut()) else {
                        this.state.set(State::Done);
                        continue;
                    };
                    let min = ctx.config.min_size;
                    // Hold back up to `min` bytes while the body has them
                    // ready; decide at `min`, at the end, or when it waits.
                    let cap = eager_max(ctx);
                    let live = buffered
                        .fill(b.as_mut(), cx, |len| (!*eager && len >= min) || len > cap)
                        == Fill::Waiting;
                    let (Some(mut parts), Some(body)) = (parts.take(), body.take()) else {
                        this.state.set(State::Done);
                        continue;
                    };
                    let mut buffered = std::mem::take(buffered);
                    let (len, eager) = (buffered.len, *eager);
                    this.state.set(State::Done);
                    if eager && !live && buffered.ended && buffered.error.is_none() {
                        if let Some(out) = with_dictionary(&mut parts, &buffered.chunks, ctx) {
                            parts
                                .headers
                                .insert(CONTENT_LENGTH, HeaderValue::from(out.len()));
                            buffered.chunks.clear();
                            buffered.chunks.push_back(Bytes::from(out));
                            let body = ResponseBody::identity_boxed(body, buffered);
                            return Poll::Ready(Ok(Response::from_parts(parts, body)));
                        }
                        if let Some(out) = compress_whole(&buffered.chunks, ctx) {
                            apply_compressed_headers(&mut parts.headers, ctx);
                            parts
                                .headers
                                .insert(CONTENT_LENGTH, HeaderValue::from(out.len()));
                            ctx.stats.record_bytes(ctx.coding, len, out.len() as u64);
                            crate::trace::record(crate::trace::field::COMPRESSION_BYTES_IN, len);
                            crate::trace::record(
                                crate::trace::field::COMPRESSION_BYTES_OUT,
                                out.len() as u64,
                            );
                            buffered.chunks.clear();
                            buffered.chunks.push_back(Bytes::from(out));
                            let body = ResponseBody::identity_boxed(body, buffered);
                            return Poll::Ready(Ok(Response::from_parts(parts, body)));
                        }
                    }
                    // A HEAD body that ends without data may be one the
                    // inner service already dropped: the size is unknown,
                    // decided as for a GET stream that reaches the minimum
                    // (or pauses before it, as live streams do), and never
                    // sent as `Content-Length: 0`.
                    let ended_small =
                        !eager && buffered.ended && len < min && !(ctx.is_head && len == 0);
                    let res = if buffered.error.is_some() || (ended_small && !live) {
                        if buffered.error.is_none() {
                            ctx.stats.record_skip(SkipReason::TooSmall);
                            // The whole body is known now: say how long it is.
                            parts.headers.insert(CONTENT_LENGTH, HeaderValue::from(len));
                        }
                        Response::from_parts(parts, ResponseBody::identity_boxed(body, buffered))
                    } else if ctx.is_head {
                        head_headers(&mut parts, ctx);
                        Response::from_parts(parts, ResponseBody::head_compressed())
                    } else {
                        let encoding = streamed(&mut parts, ctx, None);
                        let body = ResponseBody::encoded_boxed(
                            body,
                            buffered,
                            encoding,
                            ctx.stats.clone(),
                        );
                        Response::from_parts(parts, body)
                    };
                    return Poll::Ready(Ok(res));
                }
                StateProj::NotAcceptable => {
                    this.state.set(State::Done);
                    let mut res = Response::new(ResponseBody::empty_with(
                        "none of the content codings this request accepts is available\n",
                    ));
                    *res.status_mut() = StatusCode::NOT_ACCEPTABLE;
                    let h = res.headers_mut();
                    h.insert(
                        CONTENT_TYPE,
                        HeaderValue::from_static("text/plain; charset=utf-8"),
                    );
                    h.insert(VARY, HeaderValue::from_static("accept-encoding"));
                    return Poll::Ready(Ok(res));
                }
                StateProj::Done => panic!("ResponseFuture polled after completion"),
            }
        }
    }
}

/// Bodies of known length up to this size are compressed whole, in the
/// response future, so the response carries its exact Content-Length (and a
/// layer outside, such as `CacheControlLayer`, can hash it). It is the
/// per-poll work budget, so this never holds the executor longer than
/// streaming would.
fn eager_max(ctx: &Ctx) -> u64 {
    super::body::work_per_poll(ctx.coding, ctx.config.level(ctx.coding)) as u64
}

/// The body, joined (a copy only when it came in several frames).
fn joined(chunks: &VecDeque<Bytes>) -> Bytes {
    match chunks.len() {
        0 => Bytes::new(),
        1 => chunks[0].clone(),
        _ => {
            let mut all = Vec::with_capacity(chunks.iter().map(Bytes::len).sum());
            for c in chunks {
                all.extend_from_slice(c);
            }
            Bytes::from(all)
        }
    }
}

/// For a body held whole (RFC 9842): learns it as a dictionary when the
/// response says `Use-As-Dictionary` ([`learnable`]), and compresses it
/// with the dictionary the request named, if any and if the response lets
/// it be used. `Some` with the output and the headers set, or `None` to
/// compress it the usual way.
fn with_dictionary(parts: &mut Parts, chunks: &VecDeque<Bytes>, ctx: &Ctx) -> Option<Vec<u8>> {
    let store = ctx.config.dictionaries.as_ref()?;
    let learn = learnable(parts, ctx);
    let total = chunks.iter().map(|c| c.len() as u64).sum();
    let choice = usable_dictionary(parts, ctx, Some(total));
    if !learn && choice.is_none() {
        return None;
    }
    let input = joined(chunks);
    if learn {
        store.insert(&input);
    }
    let choice = choice?;
    let out = choice.compress(&input, dictionary_level(choice, ctx))?;
    dictionary_headers(&mut parts.headers, choice, ctx);
    ctx.stats
        .record_dictionary_bytes(choice.coding, input.len() as u64, out.len() as u64);
    Some(out)
}

/// How a streamed body is compressed, with the response's fields set to
/// say so: against the dictionary the request named when the response
/// lets it be used ([`usable_dictionary`]), else in the negotiated
/// coding; kept as a dictionary at its end when it may be one
/// ([`learnable`]). `len`: the body's length when known.
fn streamed(parts: &mut Parts, ctx: &Ctx, len: Option<u64>) -> Encoding {
    // A body known to be too large for a dictionary is never copied.
    let fits = len.is_none_or(|n| n <= super::MAX_DICTIONARY_SIZE as u64);
    let learn = match &ctx.config.dictionaries {
        Some(store) if fits && learnable(parts, ctx) => Some(store.clone()),
        _ => None,
    };
    if let Some(choice) = usable_dictionary(parts, ctx, len) {
        let level = dictionary_level(choice, ctx);
        // An encoder that can't be set up (libzstd out of memory) leaves
        // the usual coding, whose own failure is reported at the first
        // poll.
        if let Some(encoder) = choice.encoder(level, len, false) {
            dictionary_headers(&mut parts.headers, choice, ctx);
            return Encoding {
                encoder: Some(encoder),
                header: choice.header(),
                coding: choice.coding.base(),
                level,
                dictionary: Some(choice.coding),
                learn,
            };
        }
    }
    apply_compressed_headers(&mut parts.headers, ctx);
    Encoding {
        learn,
        ..Encoding::plain(ctx.coding, ctx.config.level(ctx.coding), len)
    }
}

/// The fields of a compressed HEAD response: those its GET would get.
fn head_headers(parts: &mut Parts, ctx: &Ctx) {
    let declared = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.trim().parse().ok());
    match usable_dictionary(parts, ctx, declared) {
        Some(choice) => dictionary_headers(&mut parts.headers, choice, ctx),
        None => apply_compressed_headers(&mut parts.headers, ctx),
    }
}

/// The dictionary the request named, when the layer has a store, RFC 9842
/// §9.3.3 lets this response be compressed with it, and a body of `len`
/// bytes (when known) is worth its set-up ([`Choice::worth_it`]).
fn usable_dictionary<'c>(parts: &Parts, ctx: &'c Ctx, len: Option<u64>) -> Option<&'c Choice> {
    ctx.config.dictionaries.as_ref()?;
    ctx.dictionary
        .as_ref()
        .filter(|c| c.allowed_for(&parts.headers) && c.worth_it(len))
}

fn dictionary_level(choice: &Choice, ctx: &Ctx) -> u32 {
    let config = &ctx.config;
    choice.level(
        config.level(ContentCoding::Br),
        config.level(ContentCoding::Zstd),
    )
}

/// The fields of a dictionary-compressed response (without
/// `Content-Length`, which only a body held whole knows), counted.
fn dictionary_headers(headers: &mut HeaderMap, choice: &Choice, ctx: &Ctx) {
    headers.insert(
        CONTENT_ENCODING,
        HeaderValue::from_static(choice.coding.as_str()),
    );
    headers.remove(CONTENT_LENGTH);
    headers.remove(ACCEPT_RANGES);
    // A strong validator names these bytes, which depend on the dictionary
    // as well as the coding: without a tag that says both (future work), a
    // weak one, which may be shared by every coding of the representation
    // and still revalidates (If-None-Match compares weakly).
    weaken_etag(headers);
    ctx.stats.record_dictionary(choice.coding);
}

/// Whether the response is one every client may be handed as a dictionary
/// (RFC 9842 §2.1): a valid raw `Use-As-Dictionary` on a 200 to a GET,
/// shared (no `no-store` or `private`, no `Set-Cookie`, and a request
/// without `Authorization`): the store serves every client, and a private
/// body in it would let others probe for it by its hash.
fn learnable(parts: &Parts, ctx: &Ctx) -> bool {
    let h = &parts.headers;
    // The field itself first: most responses have none, and then nothing
    // else is read (Cache-Control, which `decide` already read for
    // no-transform, is parsed again only for dictionary responses).
    h.contains_key(&headers::USE_AS_DICTIONARY)
        && parts.status == StatusCode::OK
        && ctx.is_get
        && !ctx.authorized
        && !h.contains_key(SET_COOKIE)
        && headers::UseAsDictionary::from_headers(h).is_some_and(|d| d.is_ok_and(|d| d.is_raw()))
        && !CacheControl::from_response_headers(h).is_some_and(|c| c.no_store() || c.private())
}

/// Makes a strong `ETag` weak (`"abc"` → `W/"abc"`).
fn weaken_etag(headers: &mut HeaderMap) {
    if let Some(tag) = EntityTag::from_headers(headers).filter(|t| !t.is_weak()) {
        if let Ok(weak) = EntityTag::weak(tag.tag()) {
            headers.insert(ETAG, weak.to_header_value());
        }
    }
}

/// Compresses a whole small body; `None` if the encoder failed.
///
/// The output goes out as one `Bytes` that a cache outside may keep as
/// is, so it carries no spare capacity (the cache counts the length, not
/// the allocation).
///
/// gzip and deflate go through libdeflate in one call
/// ([`whole`](super::whole)); br and zstd through their encoders, told the
/// exact length.
fn compress_whole(chunks: &VecDeque<Bytes>, ctx: &Ctx) -> Option<Vec<u8>> {
    let total: usize = chunks.iter().map(Bytes::len).sum();
    let level = ctx.config.level(ctx.coding);
    if matches!(ctx.coding, ContentCoding::Gzip | ContentCoding::Deflate) {
        let input = joined(chunks);
        if let Some(out) = super::whole::compress(ctx.coding, level, &input) {
            return Some(out);
        }
    }
    let mut enc = Encoder::for_whole(ctx.coding, level, total as u64)?;
    let mut out = Vec::with_capacity(total / 2 + 64);
    for chunk in chunks {
        enc.encode(chunk, &mut out, Flush::None).ok()?;
    }
    enc.encode(&[], &mut out, Flush::Finish).ok()?;
    out.shrink_to_fit();
    Some(out)
}

/// Decides from the response head (and the body's size hint) whether to
/// compress, and sets the headers that don't depend on the outcome.
fn decide(parts: &mut Parts, hint: http_body::SizeHint, ctx: &Ctx) -> Decision {
    let status = parts.status;
    let headers = &mut parts.headers;
    let skip = |reason| {
        ctx.stats.record_skip(reason);
        Decision::Identity
    };
    if status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        if status == StatusCode::NOT_MODIFIED && !already_encoded(headers) {
            // A 304 must carry the Vary (and the validator) of the 200 it
            // stands for (RFC 9110 §15.4.5).
            add_vary(headers, ctx);
            if ctx.coding != ContentCoding::Identity {
                suffix_etag_if(headers, ctx, |base| {
                    ctx.stripped.iter().any(|s| s.strong_eq(base))
                });
                if ctx.dictionary.is_some() && ctx.stripped.is_empty() {
                    // Revalidating what it most likely got dictionary-
                    // compressed, with the weak tag that response had.
                    weaken_etag(headers);
                }
            }
        }
        return skip(SkipReason::NoBody);
    }
    if already_encoded(headers) {
        return skip(SkipReason::AlreadyEncoded);
    }
    if may_say_no_transform(headers)
        && CacheControl::from_response_headers(headers).is_some_and(|c| c.no_transform())
    {
        return skip(SkipReason::NoTransform);
    }
    if !content_type_allowed(headers, &ctx.config) {
        return skip(SkipReason::ContentType);
    }
    // From here on the representation depends on Accept-Encoding.
    add_vary(headers, ctx);
    if status == StatusCode::PARTIAL_CONTENT || headers.contains_key(CONTENT_RANGE) {
        return skip(SkipReason::Range);
    }
    if ctx.coding == ContentCoding::Identity {
        return skip(SkipReason::NotAccepted);
    }
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.trim().parse::<u64>().ok());
    // A HEAD gets the header fields a GET would (RFC 9110 §9.3.2), so it is
    // decided from the same facts: Content-Length and the body the inner
    // service returned (behind axum's `Router::layer` a HEAD's body is the
    // GET's, dropped by the router after the layers). A HEAD body that
    // disagrees with Content-Length was already dropped: its size hint says
    // nothing. One that says it is exactly empty, without Content-Length,
    // is taken for empty, as the same GET's is: that is what it is behind
    // `Router::layer`; a layer wrapping the whole router sees a streamed
    // body's HEAD dropped that way, and can't tell (module docs).
    let body_size = if ctx.is_head {
        hint.exact().filter(|&n| declared.is_none_or(|d| d == n))
    } else {
        hint.exact()
    };
    match declared.or(body_size) {
        // Compressing nothing only adds the coding's framing.
        Some(0) => skip(SkipReason::TooSmall),
        Some(n) if n < ctx.config.min_size => skip(SkipReason::TooSmall),
        Some(_) if body_size.is_some_and(|n| n <= eager_max(ctx)) => Decision::CompressWhole,
        Some(_) => Decision::Compress,
        None if ctx.config.min_size == 0 => Decision::Compress,
        None => Decision::Buffer,
    }
}

/// Whether a `Cache-Control` line holds the letters of `no-transform`
/// (any case): only then is the field parsed, which most responses (with
/// `max-age` or `no-cache`) are spared.
fn may_say_no_transform(headers: &HeaderMap) -> bool {
    const NT: &[u8] = b"no-transform";
    headers.get_all(CACHE_CONTROL).iter().any(|v| {
        v.as_bytes()
            .windows(NT.len())
            .any(|w| w.eq_ignore_ascii_case(NT))
    })
}

fn already_encoded(headers: &HeaderMap) -> bool {
    headers.get_all(CONTENT_ENCODING).iter().any(|v| {
        let v = v.as_bytes();
        headers::split_list(v).any(|c| !c.eq_ignore_ascii_case(b"identity"))
    })
}

fn content_type_allowed(headers: &HeaderMap, config: &Config) -> bool {
    let Some(essence) = headers
        .get(CONTENT_TYPE)
        .and_then(|v| predicate::essence(v.as_bytes()))
    else {
        return false;
    };
    let essence: &str = &essence;
    if predicate::is_grpc(essence) {
        return config.grpc;
    }
    if essence == "text/event-stream" {
        return config.event_stream;
    }
    match &config.filter {
        Some(f) => f(essence),
        None => predicate::default_compressible(essence),
    }
}

fn apply_compressed_headers(headers: &mut HeaderMap, ctx: &Ctx) {
    headers.insert(CONTENT_ENCODING, ctx.coding.to_header_value());
    headers.remove(CONTENT_LENGTH);
    headers.remove(ACCEPT_RANGES);
    suffix_etag_if(headers, ctx, |_| true);
    ctx.stats.record_compressed(ctx.coding);
}

/// Gives a strong ETag the coding suffix (`"abc"` → `"abc-gzip"`) when
/// `when` says so. Weak tags stay: they may be shared by every coding of a
/// representation (RFC 9110 §8.8.3.3 forbids that only for strong ones).
fn suffix_etag_if(headers: &mut HeaderMap, ctx: &Ctx, when: impl Fn(&EntityTag) -> bool) {
    let Some(tag) = EntityTag::from_headers(headers) else {
        return;
    };
    if tag.is_weak() || !when(&tag) {
        return;
    }
    let mut suffixed = tag.tag().to_vec();
    suffixed.extend_from_slice(etag_suffix(ctx.coding));
    if let Ok(t) = EntityTag::strong(suffixed) {
        headers.insert(ETAG, t.to_header_value());
    }
}

/// Adds `accept-encoding` to Vary, merged into the existing field, unless
/// it (or `*`) is already there.
fn add_vary(headers: &mut HeaderMap, ctx: &Ctx) {
    // RFC 9842 §6.2: with dictionaries the representation depends on the
    // dictionary too.
    add_vary_fields(headers, ctx.config.dictionaries.is_some());
}

/// The fields compression adds to `Vary`: the first alone, or both when
/// dictionaries are on.
const VARY_FIELDS: [&str; 2] = ["accept-encoding", "available-dictionary"];

/// Adds `accept-encoding` (and `available-dictionary` with `dictionaries`)
/// to `Vary`, merged with what is there (each once; nothing after `*`), in
/// one insert. Without a `Vary` already (most responses) the value is a
/// static one: no allocation.
fn add_vary_fields(headers: &mut HeaderMap, dictionaries: bool) {
    let fields = &VARY_FIELDS[..if dictionaries { 2 } else { 1 }];
    let mut present = [false; 2];
    let mut any = false;
    for v in headers.get_all(VARY) {
        for elem in headers::split_list(v.as_bytes()) {
            if elem == b"*" {
                return;
            }
            any = true;
            for (seen, field) in present.iter_mut().zip(fields) {
                *seen |= elem.eq_ignore_ascii_case(field.as_bytes());
            }
        }
    }
    let mut missing = fields.iter().zip(present).filter(|(_, seen)| !seen);
    if !any {
        // Statics: `HeaderValue::from_static` checks every byte when it
        // runs (400 instructions for the longer one, on every response).
        static ONE: HeaderValue = HeaderValue::from_static("accept-encoding");
        static BOTH: HeaderValue =
            HeaderValue::from_static("accept-encoding, available-dictionary");
        let value = if dictionaries { &BOTH } else { &ONE };
        headers.insert(VARY, value.clone());
        return;
    }
    let Some((first, _)) = missing.next() else {
        return;
    };
    let mut merged = Vec::new();
    for v in headers.get_all(VARY) {
        for elem in headers::split_list(v.as_bytes()) {
            merged.extend_from_slice(elem);
            merged.extend_from_slice(b", ");
        }
    }
    merged.extend_from_slice(first.as_bytes());
    for (f, _) in missing {
        merged.extend_from_slice(b", ");
        merged.extend_from_slice(f.as_bytes());
    }
    if let Ok(v) = HeaderValue::from_bytes(&merged) {
        headers.insert(VARY, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(level: u32) -> Ctx {
        let config = Config {
            gzip_level: level,
            ..Config::default()
        };
        Ctx {
            coding: ContentCoding::Gzip,
            is_get: true,
            authorized: false,
            dictionary: None,
            is_head: false,
            stripped: Vec::new(),
            config: Arc::new(config),
            stats: CompressionStats::new(),
        }
    }

    #[test]
    fn vary_is_merged_in_one_value() {
        let vary = |existing: &[&'static str], dictionaries: bool| {
            let mut m = HeaderMap::new();
            for v in existing {
                m.append(VARY, HeaderValue::from_static(v));
            }
            add_vary_fields(&mut m, dictionaries);
            let all: Vec<_> = m
                .get_all(VARY)
                .iter()
                .map(|v| v.to_str().unwrap().to_owned())
                .collect();
            all.join(" | ")
        };
        assert_eq!(vary(&[], false), "accept-encoding");
        assert_eq!(vary(&[], true), "accept-encoding, available-dictionary");
        assert_eq!(vary(&["Origin"], false), "Origin, accept-encoding");
        assert_eq!(
            vary(&["Origin", "cookie, Accept-Encoding"], true),
            "Origin, cookie, Accept-Encoding, available-dictionary"
        );
        assert_eq!(
            vary(&["origin"], true),
            "origin, accept-encoding, available-dictionary"
        );
        assert_eq!(vary(&["Accept-Encoding"], false), "Accept-Encoding");
        assert_eq!(
            vary(&["Available-Dictionary, accept-encoding"], true),
            "Available-Dictionary, accept-encoding"
        );
        assert_eq!(vary(&["origin, *"], true), "origin, *");
    }

    #[test]
    fn no_transform_is_looked_for_before_parsing() {
        let h = |v: &'static str| {
            let mut m = HeaderMap::new();
            m.insert(CACHE_CONTROL, HeaderValue::from_static(v));
            m
        };
        assert!(may_say_no_transform(&h("public, NO-Transform")));
        assert!(may_say_no_transform(&h("no-transform")));
        assert!(!may_say_no_transform(&h("max-age=60, no-cache")));
        assert!(!may_say_no_transform(&HeaderMap::new()));
    }

    #[test]
    fn whole_bodies_come_out_without_spare_capacity() {
        // 8 KiB of JSON compresses to about a fifth: a buffer sized for
        // half the input would hold twice what a cache counts.
        let json: String = (0..400)
            .map(|i| format!("{{\"id\":{i},\"name\":\"item {i}\"}},"))
            .collect();
        let body = Bytes::from(json);
        // Level 2: the one-shot encoder; level 6 at this size: zlib-rs.
        for level in [2, 6] {
            let chunks = VecDeque::from([body.clone()]);
            let out = compress_whole(&chunks, &ctx(level)).unwrap();
            assert!(out.len() < body.len() / 3, "level {level}");
            assert!(
                out.capacity() <= out.len() + 16,
                "level {level}: {} of {}",
                out.len(),
                out.capacity()
            );
        }
    }
}
