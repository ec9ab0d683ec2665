//! Cache keys, the request authority and Vary normalization on arbitrary
//! requests: no panic, hosts are visible ASCII, keys round-trip through
//! their text form, the authority the cache keys on is the `Host` (and the
//! target authority) the inner service sees, normalizing it twice changes
//! nothing, and a request always selects the variant built from it.
#![no_main]

use http::{HeaderMap, HeaderName, HeaderValue, Request};
use libfuzzer_sys::fuzz_target;
use tower_perf::cache::CacheKey;

fuzz_target!(|data: &[u8]| {
    // Layout: host \0 path \0 vary \0 then "name: value" lines.
    let mut parts = data.splitn(4, |b| *b == 0);
    let host = parts.next().unwrap_or_default();
    let path = parts.next().unwrap_or_default();
    let vary = parts.next().unwrap_or_default();
    let fields = parts.next().unwrap_or_default();
    let mut req = Request::get("/");
    if let Ok(uri) = http::Uri::try_from(path) {
        req = req.uri(uri);
    }
    if let Ok(h) = HeaderValue::from_bytes(host) {
        req = req.header("host", h);
    }
    let mut headers = HeaderMap::new();
    for line in fields.split(|b| *b == b'\n') {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(&line[colon + 1..]),
        ) {
            headers.append(n, v);
        }
    }
    let Ok(mut req) = req.body(()) else { return };
    *req.headers_mut() = headers.clone();
    if let Ok(h) = HeaderValue::from_bytes(host) {
        req.headers_mut().insert("host", h);
    }
    let key = CacheKey::from_request(&req);
    // Hosts are kept to visible ASCII; a query may hold UTF-8 (http's URI
    // parser accepts it there), so the key is text, not always ASCII.
    assert!(key.host().bytes().all(|b| b.is_ascii_graphic()));
    assert!(key.path_and_query().starts_with('/'));
    let back = CacheKey::from_text(key.as_str());
    assert_eq!(
        (back.host(), back.path_and_query()),
        (key.host(), key.path_and_query())
    );
    let mut resp = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_bytes(vary) {
        resp.insert("vary", v);
    }
    tower_perf::cache::__fuzz_vary_selects_itself(&resp, req.headers());
    // The authority: the host bytes as `Host`, the path as the target
    // (absolute-form when it has a scheme), over HTTP/1.1 and HTTP/2.
    if let Ok(target) = std::str::from_utf8(path) {
        let http2 = vary.first().is_some_and(|b| b & 1 == 1);
        tower_perf::cache::__fuzz_authority(host, target, http2);
    }
});
