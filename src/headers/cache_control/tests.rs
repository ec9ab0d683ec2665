//! `CacheControl`'s tests: the parsing rules (RFC examples, duplicates, invalid
//! and malformed values), the writer, and round trips through it.

use super::*;

fn cc(s: &str) -> CacheControl {
    CacheControl::parse(s.as_bytes())
}
const fn s(n: u64) -> Option<Duration> {
    Some(Duration::from_secs(n))
}

#[test]
fn rfc_examples() {
    // RFC 9111 §5.2.2.1 / §5.2.1.1: token and quoted forms.
    assert_eq!(cc("max-age=5").max_age(), s(5));
    assert_eq!(cc("max-age=\"5\"").max_age(), s(5));
    // RFC 9111 §5.2.3: extension examples.
    let ext = cc("private, community=\"UCI\"");
    assert!(ext.private());
    assert_eq!(ext.extension("community"), Some(Some("UCI")));
    // RFC 5861 §3 and §4.
    let swr = cc("max-age=600, stale-while-revalidate=30");
    assert_eq!(swr.max_age(), s(600));
    assert_eq!(swr.stale_while_revalidate(), s(30));
    let sie = cc("max-age=600, stale-if-error=1200");
    assert_eq!(sie.stale_if_error(), s(1200));
    // RFC 8246 §2.
    let imm = cc("max-age=31536000, immutable");
    assert!(imm.immutable());
    // RFC 9111 §5.2.2.4: qualified no-cache.
    let q = cc("no-cache=\"Set-Cookie, X-Foo\"");
    assert!(q.no_cache());
    assert_eq!(q.no_cache_fields(), ["set-cookie", "x-foo"]);
}

#[test]
fn every_directive() {
    let all = cc(
        "max-age=1, s-maxage=2, max-stale=3, min-fresh=4, no-cache, no-store, \
         no-transform, only-if-cached, must-revalidate, proxy-revalidate, must-understand, \
         public, private, immutable, stale-while-revalidate=5, stale-if-error=6",
    );
    assert_eq!(all.max_age(), s(1));
    assert_eq!(all.s_maxage(), s(2));
    assert_eq!(
        all.max_stale(),
        Some(MaxStale::Limit(Duration::from_secs(3)))
    );
    assert_eq!(all.min_fresh(), s(4));
    assert!(all.no_cache() && all.no_cache_fields().is_empty());
    assert!(all.no_store() && all.no_transform() && all.only_if_cached());
    assert!(all.must_revalidate() && all.proxy_revalidate() && all.must_understand());
    assert!(all.public() && all.private() && all.immutable());
    assert_eq!(all.stale_while_revalidate(), s(5));
    assert_eq!(all.stale_if_error(), s(6));
    assert_eq!(all.extensions().count(), 0);
    // And it round-trips through the writer.
    assert_eq!(cc(&all.to_string()), all);
}

#[test]
fn case_insensitive_names() {
    let c = cc("No-Store, MAX-AGE=10, Public");
    assert!(c.no_store() && c.public());
    assert_eq!(c.max_age(), s(10));
}

#[test]
fn max_stale_without_value_is_any() {
    assert_eq!(cc("max-stale").max_stale(), Some(MaxStale::Any));
    // A bad value never widens to "any".
    assert_eq!(cc("max-stale=abc").max_stale(), None);
    assert_eq!(cc("max-stale=").max_stale(), None);
}

#[test]
fn duplicates_use_first_occurrence() {
    assert_eq!(cc("max-age=10, max-age=20").max_age(), s(10));
    let mut h = HeaderMap::new();
    h.append(CACHE_CONTROL, HeaderValue::from_static("max-age=60"));
    h.append(
        CACHE_CONTROL,
        HeaderValue::from_static("max-age=3600, public"),
    );
    let c = CacheControl::from_headers(&h).unwrap();
    assert_eq!(c.max_age(), s(60));
    assert!(c.public());
    assert_eq!(
        cc("x=1, X=2").extensions().collect::<Vec<_>>(),
        [("x", Some("1"))]
    );
}

#[test]
fn invalid_freshness_is_stale() {
    for bad in [
        "max-age=-1",
        "max-age=abc",
        "max-age=1.5",
        "max-age=",
        "max-age=\"5",
        "max-age=5x",
    ] {
        assert_eq!(cc(bad).max_age(), s(0), "{bad}");
    }
    assert_eq!(cc("s-maxage=oops").s_maxage(), s(0));
    // Other delta directives are dropped instead.
    let c = cc("min-fresh=x, stale-while-revalidate=-3, stale-if-error=1e3");
    assert_eq!(
        (
            c.min_fresh(),
            c.stale_while_revalidate(),
            c.stale_if_error()
        ),
        (None, None, None)
    );
}

#[test]
fn delta_seconds_overflow_saturates() {
    let big = 1u64 << 31;
    assert_eq!(cc("max-age=99999999999999999999").max_age(), s(big));
    assert_eq!(cc("max-age=2147483648").max_age(), s(big));
    assert_eq!(cc("max-age=2147483647").max_age(), s(big - 1));
    assert_eq!(
        CacheControl::new()
            .with_max_age(Duration::from_secs(u64::MAX))
            .to_string(),
        "max-age=2147483648"
    );
}

#[test]
fn qualified_private_and_no_cache() {
    let c = cc("private=\"Authorization\", no-cache=set-cookie");
    assert_eq!(c.private_fields(), ["authorization"]);
    assert_eq!(c.no_cache_fields(), ["set-cookie"]);
    // A malformed qualification reads as unqualified (more restrictive).
    assert!(cc("private=\"a b\"").private_fields().is_empty());
    assert!(cc("private=\"a b\"").private());
    // Unqualified wins over qualified, whatever the order.
    assert!(cc("no-cache=\"x\", no-cache").no_cache_fields().is_empty());
    assert!(cc("no-cache, no-cache=\"x\"").no_cache_fields().is_empty());
    // Two qualified lists merge.
    assert_eq!(
        cc("private=a, private=\"b, a\"").private_fields(),
        ["a", "b"]
    );
}

#[test]
fn malformed_input_never_panics() {
    let inputs: [&[u8]; 12] = [
        b"",
        b",,,",
        b"=",
        b"=5",
        b"\"",
        b"max-age=\"",
        b"no-cache=\"\\",
        b"\xff\xfe, max-age=3",
        b"public,\x00,private",
        b"a=\"b\"c, max-age=1",
        b"x=\"\xc3\xa9\"",
        b"   ;;; ,max-age = 7",
    ];
    for i in inputs {
        let c = CacheControl::parse(i);
        let _ = c.to_header_value();
    }
    assert_eq!(cc("\u{fe}, max-age=3").max_age(), s(3));
    assert!(cc("public,\0,private").public());
    // Non-ASCII extension values are dropped, not mangled.
    assert_eq!(CacheControl::parse(b"x=\"\xc3\xa9\"").extension("x"), None);
    // OWS around '=' is tolerated.
    assert_eq!(cc("max-age = 7").max_age(), s(7));
    assert!(cc("").is_empty());
}

#[test]
fn writer() {
    let c = CacheControl::new()
        .with_private_fields([HeaderName::from_static("set-cookie")])
        .with_max_age(Duration::from_secs(0))
        .with_must_revalidate()
        .with_extension("x-note", Some("two words"))
        .unwrap();
    assert_eq!(
        c.to_string(),
        "private=\"set-cookie\", max-age=0, must-revalidate, x-note=\"two words\""
    );
    assert_eq!(cc(&c.to_string()), c);
    assert!(
        CacheControl::new()
            .with_extension("bad name", None)
            .is_err()
    );
    assert!(CacheControl::new().with_extension("x", Some("é")).is_err());
    assert_eq!(
        CacheControl::new().with_no_store().to_header_value(),
        HeaderValue::from_static("no-store")
    );
}

#[test]
fn absent_header() {
    assert_eq!(CacheControl::from_headers(&HeaderMap::new()), None);
}

#[cfg(any(feature = "cache", feature = "compression"))]
#[test]
fn response_headers_remembered_as_parsed() {
    // The per-thread memo answers what a fresh parse would, whatever the
    // order and however many values take turns (more than it keeps).
    let mut values: Vec<String> = [
        "no-cache",
        "max-age=60, stale-while-revalidate=30",
        "private=\"set-cookie\", max-age=5",
        "public, s-maxage=600, x-ext=\"a b\"",
        "no-store",
        "max-age=0, must-revalidate",
    ]
    .map(String::from)
    .to_vec();
    values.extend((1..=7).map(|n| format!("max-age={n}")));
    for round in 0..3 {
        for i in 0..values.len() {
            let v = values[(i * 5 + round) % values.len()].as_str();
            let mut h = HeaderMap::new();
            h.insert(CACHE_CONTROL, HeaderValue::from_str(v).unwrap());
            let got = CacheControl::from_response_headers(&h).unwrap();
            assert_eq!(got, CacheControl::parse(v.as_bytes()), "{v}");
            assert_eq!(
                got.to_string(),
                CacheControl::parse(v.as_bytes()).to_string()
            );
        }
    }
    // Two lines are one list, whatever the memo holds for each.
    let mut h = HeaderMap::new();
    h.append(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.append(CACHE_CONTROL, HeaderValue::from_static("max-age=60"));
    let both = CacheControl::from_response_headers(&h).unwrap();
    assert!(both.no_cache());
    assert_eq!(both.max_age(), Some(Duration::from_secs(60)));
    // A value too long to remember is parsed all the same.
    let long = format!("max-age=7, {}", "x-pad, ".repeat(40));
    let mut h = HeaderMap::new();
    h.insert(CACHE_CONTROL, HeaderValue::from_str(&long).unwrap());
    assert_eq!(
        CacheControl::from_response_headers(&h).unwrap().max_age(),
        Some(Duration::from_secs(7))
    );
}
