//! Every header parser of `tower_perf::headers` (the RFC 9842 ones with
//! the `compression` feature, which the fuzz crate turns on), and the rate limiter's
//! `Forwarded` / `X-Forwarded-For` reading, on arbitrary bytes: no panic,
//! what parses writes back to something that parses the same, nothing
//! keeps more than its limit, and (with libFuzzer's `-timeout`, see the
//! README) no input is slow.
//!
//! Input: the field value as is, or, when the first byte is 0xff, a
//! generated list so that small inputs reach long lists (where quadratic
//! work shows): `0xff, n (u16 big-endian), template`; the value is the
//! template `n` times, `, `-separated, with the first `#` of each copy
//! replaced by its index in hex (`0xff 0x75 0x30 ext#=1` is `ext0=1,
//! ext1=1, …, ext752f=1`, 30,000 distinct extensions). At most
//! `MAX_GENERATED` bytes are generated.
#![no_main]

use std::borrow::Cow;
use std::convert::Infallible;
use std::fmt::Write;
use std::net::SocketAddr;

use bytes::Bytes;
use futures_util::FutureExt;
use http::{HeaderValue, Request, Response};
use http_body_util::Empty;
use libfuzzer_sys::fuzz_target;
use tower::{ServiceBuilder, ServiceExt, service_fn};
use tower_perf::headers::{
    AcceptEncoding, AvailableDictionary, CacheControl, ContentCoding, EntityTag, EntityTagList,
    HttpDate, UseAsDictionary,
};
use tower_perf::rate_limit::{KeySource, MemoryStore, PeerAddr, Quota, RateLimitLayer, RateRule};

/// The largest generated value (the size of the 30,000-extension
/// Cache-Control is 390 KB).
const MAX_GENERATED: usize = 400_000;

fn expand(data: &[u8]) -> Cow<'_, [u8]> {
    let [0xff, hi, lo, template @ ..] = data else {
        return Cow::Borrowed(data);
    };
    let hash = template.iter().position(|&b| b == b'#');
    let (before, after) = match hash {
        Some(i) => (&template[..i], &template[i + 1..]),
        None => (template, &[][..]),
    };
    let n = usize::from(u16::from_be_bytes([*hi, *lo]));
    let n = n.min(MAX_GENERATED / (template.len() + 6));
    let mut out = Vec::with_capacity(n * (template.len() + 6));
    let mut index = String::new();
    for i in 0..n {
        if i > 0 {
            out.extend_from_slice(b", ");
        }
        index.clear();
        let _ = write!(index, "{i:x}");
        out.extend_from_slice(before);
        if hash.is_some() {
            out.extend_from_slice(index.as_bytes());
        }
        out.extend_from_slice(after);
    }
    Cow::Owned(out)
}

type Body = Empty<Bytes>;

thread_local! {
    /// Sends one request with this header through a `RateLimit` whose
    /// keys are client IPs behind trusted proxies (every IPv4 and
    /// 2001:db8::/32, so long chains are walked as far as the limiter
    /// goes; and 10.0.0.0/8 only, so they stop), and tells whether it was
    /// answered at once with 200.
    static LIMIT: Box<dyn Fn(&'static str, HeaderValue) -> bool> = {
        let rule = RateRule::new("all", Quota::per_second(1_000_000_000))
            .key(KeySource::client_ip(["0.0.0.0/0", "2001:db8::/32"]).expect("CIDRs"))
            .and_policy(
                "ten",
                Quota::per_second(1_000_000_000),
                KeySource::client_ip(["10.0.0.0/8"]).expect("CIDRs"),
            );
        let svc = ServiceBuilder::new()
            .layer(
                RateLimitLayer::with_store(MemoryStore::with_max_keys(4096))
                    .rule(rule)
                    .headers(false),
            )
            .service(service_fn(|_req: Request<Body>| async {
                Ok::<_, Infallible>(Response::new(Body::new()))
            }));
        Box::new(move |name, value| {
            let mut req = Request::get("/").body(Body::new()).expect("request");
            req.headers_mut().insert(name, value);
            req.extensions_mut()
                .insert(PeerAddr(SocketAddr::from(([10, 0, 0, 1], 4000))));
            matches!(
                svc.clone().oneshot(req).now_or_never(),
                Some(Ok(res)) if res.status() == 200
            )
        })
    };
}

fuzz_target!(|data: &[u8]| {
    let data = expand(data);
    let data = &data[..];

    let cc = CacheControl::parse(data);
    assert!(cc.extensions().count() <= CacheControl::MAX_EXTENSIONS);
    assert!(cc.no_cache_fields().len() <= CacheControl::MAX_FIELD_NAMES);
    assert!(cc.private_fields().len() <= CacheControl::MAX_FIELD_NAMES);
    let again = CacheControl::parse(cc.to_header_value().as_bytes());
    assert_eq!(cc, again, "Cache-Control round trip");

    let ae = AcceptEncoding::parse(data);
    let _ = ae.negotiate(&[
        ContentCoding::Gzip,
        ContentCoding::Deflate,
        ContentCoding::Br,
    ]);
    let _ = AcceptEncoding::parse(ae.to_header_value().as_bytes());

    if let Ok(tag) = EntityTag::parse(data) {
        assert_eq!(
            EntityTag::parse(tag.to_header_value().as_bytes()).ok(),
            Some(tag)
        );
    }
    if let Ok(list) = EntityTagList::parse(data) {
        if let EntityTagList::Tags(tags) = &list {
            assert!(tags.len() <= EntityTagList::MAX_TAGS);
        }
        let current = EntityTag::strong("v1").expect("a valid tag");
        let _ = list.if_none_match_passes(Some(&current));
        let _ = list.if_match_passes(Some(&current));
        assert!(EntityTagList::parse(list.to_header_value().as_bytes()).is_ok());
    }
    if let Ok(d) = AvailableDictionary::parse(data) {
        assert_eq!(
            AvailableDictionary::parse(d.to_header_value().as_bytes()).ok(),
            Some(d)
        );
    }
    if let Ok(d) = UseAsDictionary::parse(data) {
        assert!(d.destinations().len() <= 32);
        assert!(d.id().len() <= tower_perf::headers::MAX_DICTIONARY_ID);
    }
    if let Ok(date) = HttpDate::parse(data) {
        assert_eq!(
            HttpDate::parse(date.to_header_value().as_bytes()).ok(),
            Some(date)
        );
    }

    if let Ok(value) = HeaderValue::from_bytes(data) {
        LIMIT.with(|limit| {
            assert!(limit("x-forwarded-for", value.clone()), "X-Forwarded-For");
            assert!(limit("forwarded", value), "Forwarded");
        });
    }
});
