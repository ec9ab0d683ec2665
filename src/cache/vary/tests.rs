//! Variant keys and selection: normalization, codings, dictionaries,
//! implicit fields, and generated input.

use super::*;
use crate::cache::key::CacheKey;
use http::{HeaderValue, Uri};

const CODINGS: &[ContentCoding] = &[ContentCoding::Gzip, ContentCoding::Deflate];

use crate::cache::entry::tests::headers as req;

fn inside() -> Encodings {
    Encodings::Inside(CODINGS.to_vec())
}

fn build(resp: &HeaderMap, request: &HeaderMap, enc: &Encodings) -> VaryKey {
    VaryKey::build(resp, &RequestVary::new(request, enc), &[]).unwrap()
}

fn matches(v: &VaryKey, request: &HeaderMap, enc: &Encodings) -> bool {
    v.matches(&RequestVary::new(request, enc))
}

#[test]
fn vary_values_are_normalized() {
    let enc = inside();
    let resp = req(&[("vary", "Accept-Language, accept-language,X-Tenant")]);
    let a = build(
        &resp,
        &req(&[("accept-language", "EN-us,  fr;q=0.5"), ("x-tenant", "A")]),
        &enc,
    );
    assert_eq!(a.fields.len(), 2);
    assert!(matches(
        &a,
        &req(&[
            ("accept-language", "en-US"),
            ("accept-language", "fr;q=0.5"),
            ("x-tenant", "A")
        ]),
        &enc
    ));
    // x-tenant is case-sensitive.
    assert!(!matches(
        &a,
        &req(&[("accept-language", "en-us, fr;q=0.5"), ("x-tenant", "a")]),
        &enc
    ));
    // A missing field differs from an empty one.
    assert!(!matches(
        &a,
        &req(&[("accept-language", "en-us, fr;q=0.5")]),
        &enc
    ));
}

#[test]
fn accept_encoding_reduces_to_the_chosen_coding() {
    let enc = inside();
    let resp = req(&[("vary", "accept-encoding")]);
    let gz = build(&resp, &req(&[("accept-encoding", "gzip")]), &enc);
    for same in [
        "gzip, deflate, br",
        "br;q=1, gzip;q=0.9",
        "GZIP",
        "x-gzip, identity",
    ] {
        assert!(
            matches(&gz, &req(&[("accept-encoding", same)]), &enc),
            "{same}"
        );
    }
    assert!(!matches(&gz, &req(&[("accept-encoding", "deflate")]), &enc));
    assert!(!matches(&gz, &req(&[]), &enc));
}

#[test]
fn long_vary_lists_are_refused_and_duplicates_folded() {
    let enc = Encodings::Origin;
    let names: Vec<String> = (0..=MAX_VARY_FIELDS).map(|i| format!("x-f{i}")).collect();
    let long = req(&[("vary", &names.join(", "))]);
    let r = VaryKey::build(&long, &RequestVary::new(&req(&[]), &enc), &[]);
    assert_eq!(r, Err(VaryRefusal::TooMany));
    // 30,000 repetitions of one name are one field.
    let repeated = req(&[("vary", &vec!["accept"; 30_000].join(","))]);
    let v = build(&repeated, &req(&[("accept", "a")]), &enc);
    assert_eq!(v.fields.len(), 1);
}

#[test]
fn implicit_fields_join_the_variant_only_when_present() {
    let enc = Encodings::Origin;
    let implicit = [HeaderName::from_static("x-forwarded-host")];
    let resp = req(&[]);
    let evil = req(&[("x-forwarded-host", "evil.test")]);
    let clean = req(&[]);
    let build_with =
        |r: &HeaderMap| VaryKey::build(&resp, &RequestVary::new(r, &enc), &implicit).unwrap();
    let poisoned = build_with(&evil);
    assert!(!matches(&poisoned, &clean, &enc));
    assert!(!matches(
        &poisoned,
        &req(&[("x-forwarded-host", "other.test")]),
        &enc
    ));
    assert!(matches(&poisoned, &evil, &enc));
    // Fetched without the field: shared with everyone.
    let shared = build_with(&clean);
    assert!(shared.is_empty());
    assert!(matches(&shared, &evil, &enc));
}

/// A stored response in `coding`, fetched by a request with
/// `fetched_with` as its Accept-Encoding; `vary`: whether it says
/// `Vary: Accept-Encoding`.
fn stored(coding: Option<&str>, fetched_with: Option<&str>, vary: bool) -> Arc<CachedResponse> {
    let mut h = HeaderMap::new();
    h.insert("cache-control", HeaderValue::from_static("max-age=60"));
    if vary {
        h.insert("vary", HeaderValue::from_static("accept-encoding"));
    }
    if let Some(c) = coding {
        h.insert("content-encoding", HeaderValue::from_str(c).unwrap());
    }
    let now = std::time::SystemTime::now();
    let request = match fetched_with {
        Some(ae) => req(&[("accept-encoding", ae)]),
        None => req(&[]),
    };
    let v = build(&h, &request, &Encodings::Origin);
    Arc::new(CachedResponse::new(
        http::StatusCode::OK,
        h,
        bytes::Bytes::from_static(b"x"),
        None,
        (now, now),
        v,
        Vec::new(),
        &Default::default(),
    ))
}

fn chosen(variants: &[Arc<CachedResponse>], ae: Option<&str>, enc: &Encodings) -> Option<String> {
    let headers = match ae {
        Some(v) => req(&[("accept-encoding", v)]),
        None => req(&[]),
    };
    RequestVary::new(&headers, enc).select(variants).map(|v| {
        v.headers()
            .get("content-encoding")
            .map_or("identity".into(), |c| c.to_str().unwrap().to_owned())
    })
}

/// Issue 16: an origin that negotiates itself. Requests reduce to
/// their preferred coding among all known ones, so a variant fetched
/// without Accept-Encoding never answers a browser (which would then
/// never get a compressed body), and a stored coding reaches only
/// requests that accept it.
#[test]
fn origin_variants_follow_the_request_preference() {
    let enc = Encodings::Origin;
    let br = [stored(Some("br"), Some("gzip, deflate, br"), true)];
    assert_eq!(chosen(&br, Some("br, gzip"), &enc).as_deref(), Some("br"));
    assert_eq!(chosen(&br, Some("br"), &enc).as_deref(), Some("br"));
    for other in [Some("gzip"), Some("identity"), None, Some("gzip, br;q=0")] {
        assert_eq!(chosen(&br, other, &enc), None, "{other:?}");
    }
    // Fetched by curl (no Accept-Encoding): not what a browser gets.
    let plain = [stored(None, None, true)];
    assert_eq!(chosen(&plain, None, &enc).as_deref(), Some("identity"));
    assert_eq!(chosen(&plain, Some("gzip, deflate, br"), &enc), None);
    // The origin answered a br-preferring client with gzip: a br-only
    // client with the same preference still doesn't get it.
    let odd = [stored(Some("gzip"), Some("br, gzip"), true)];
    assert_eq!(chosen(&odd, Some("br"), &enc), None);
    assert_eq!(
        chosen(&odd, Some("br;q=1, gzip;q=0.5"), &enc).as_deref(),
        Some("gzip")
    );
}

/// Acceptability holds with or without `Vary`, in either mode; among
/// several matching variants the request's weights choose; q=0 and
/// `identity;q=0` exclude.
#[test]
fn stored_codings_serve_only_requests_that_accept_them() {
    let enc = Encodings::Origin;
    let br = stored(Some("br"), None, false);
    let gzip = stored(Some("gzip"), None, false);
    let identity = stored(None, None, false);
    let only_br = [Arc::clone(&br)];
    assert_eq!(chosen(&only_br, Some("gzip"), &enc), None);
    assert_eq!(chosen(&only_br, Some("gzip"), &inside()), None);
    assert_eq!(chosen(&only_br, Some("identity"), &enc), None);
    assert_eq!(chosen(&only_br, None, &enc), None);
    assert_eq!(chosen(&only_br, Some("gzip, br;q=0"), &enc), None);
    assert_eq!(chosen(&only_br, Some("*"), &enc).as_deref(), Some("br"));
    let all = [Arc::clone(&br), Arc::clone(&gzip), Arc::clone(&identity)];
    assert_eq!(
        chosen(&all, Some("gzip;q=1, br;q=0.5"), &enc).as_deref(),
        Some("gzip")
    );
    assert_eq!(
        chosen(&all, Some("br;q=0.9, gzip;q=0.5"), &enc).as_deref(),
        Some("br")
    );
    assert_eq!(
        chosen(&all, Some("deflate"), &enc).as_deref(),
        Some("identity")
    );
    assert_eq!(chosen(&all, None, &enc).as_deref(), Some("identity"));
    let no_identity = [Arc::clone(&br), Arc::clone(&identity)];
    assert_eq!(chosen(&no_identity, Some("gzip, identity;q=0"), &enc), None);
    assert_eq!(chosen(&no_identity, Some("gzip, *;q=0"), &enc), None);
    // An unknown coding is never served.
    let odd = [stored(Some("x-custom"), None, false)];
    assert_eq!(chosen(&odd, Some("x-custom, *"), &enc), None);
}

/// RFC 9842: a variant compressed against a dictionary reaches only a
/// request naming the same dictionary and listing the coding; one
/// naming it without listing the coding keys a variant of its own.
#[test]
fn dictionary_variants_serve_only_their_dictionary_and_coding() {
    let enc = Encodings::Inside(vec![ContentCoding::Gzip]);
    let (a, b) = (":AAAA:", ":BBBB:");
    let browser =
        |dict: &str, ae: &str| req(&[("accept-encoding", ae), ("available-dictionary", dict)]);
    let mut h = HeaderMap::new();
    h.insert("cache-control", HeaderValue::from_static("max-age=60"));
    h.insert(
        "vary",
        HeaderValue::from_static("accept-encoding, available-dictionary"),
    );
    h.insert("content-encoding", HeaderValue::from_static("dcz"));
    let fetched = browser(a, "gzip, dcb, dcz");
    let now = std::time::SystemTime::now();
    let dcz = Arc::new(CachedResponse::new(
        http::StatusCode::OK,
        h.clone(),
        bytes::Bytes::from_static(b"x"),
        None,
        (now, now),
        build(&h, &fetched, &enc),
        Vec::new(),
        &Default::default(),
    ));
    let variants = [dcz];
    let select = |r: &HeaderMap| RequestVary::new(r, &enc).select(&variants).is_some();
    let key = |r: &HeaderMap| build(&h, r, &enc);
    let with = |mut r: HeaderMap, fields: &[(&'static str, &'static str)]| {
        for (k, v) in fields {
            r.insert(*k, HeaderValue::from_static(v));
        }
        r
    };
    assert!(select(&fetched));
    assert!(select(&browser(a, "dcz, gzip, dcb")));
    assert!(!select(&browser(b, "gzip, dcb, dcz")), "another dictionary");
    assert!(!select(&req(&[("accept-encoding", "gzip, dcb, dcz")])));
    assert!(!select(&browser(a, "gzip, dcb, dcz;q=0")));
    assert!(!select(&browser(a, "gzip, dcb")), "keyed apart: ;dcb");
    // RFC 9842 §9.3.3: a cross-site request whose response the page may
    // not read is neither served a dictionary variant nor keyed with
    // one, so what it fetches (gzip) keeps nothing from the others.
    let no_cors = [
        ("sec-fetch-site", "cross-site"),
        ("sec-fetch-mode", "no-cors"),
    ];
    let forged = with(fetched.clone(), &no_cors);
    assert!(!select(&forged));
    assert_ne!(key(&forged), key(&fetched));
    assert_eq!(key(&forged), key(&browser(a, "gzip")));
    // A cross-site CORS request keys on its Origin too.
    let cors = |origin: &'static str| {
        with(
            fetched.clone(),
            &[
                ("sec-fetch-site", "cross-site"),
                ("sec-fetch-mode", "cors"),
                ("origin", origin),
            ],
        )
    };
    assert!(!select(&cors("https://a.test")));
    assert_ne!(key(&cors("https://a.test")), key(&cors("https://b.test")));
    assert_ne!(key(&cors("https://a.test")), key(&fetched));
    // Listing dcz with the dictionary is what selects, not the key:
    // served as if no Vary held the codings, it still needs them, and
    // a CORS request a response that lets its origin read it.
    let bare = |extra: &[(&'static str, &'static str)]| {
        let mut h = h.clone();
        for (k, v) in extra {
            h.insert(*k, HeaderValue::from_static(v));
        }
        CachedResponse::new(
            http::StatusCode::OK,
            h,
            bytes::Bytes::from_static(b"x"),
            None,
            (now, now),
            VaryKey::default(),
            Vec::new(),
            &Default::default(),
        )
    };
    let plain = bare(&[]);
    let readable = bare(&[("access-control-allow-origin", "https://a.test")]);
    let rv = |r: HeaderMap, stored: &CachedResponse| {
        RequestVary::new(&r, &enc).acceptable(stored).is_some()
    };
    assert!(rv(browser(a, "dcz"), &plain));
    assert!(!rv(req(&[("accept-encoding", "dcz, *")]), &plain));
    assert!(!rv(browser(a, "gzip, *"), &plain));
    assert!(!rv(with(browser(a, "dcz"), &no_cors), &plain));
    assert!(!rv(cors("https://a.test"), &plain));
    assert!(rv(cors("https://a.test"), &readable));
    assert!(!rv(cors("https://b.test"), &readable));
}

#[test]
fn a_request_with_implicit_fields_does_not_revalidate_a_shared_variant() {
    let enc = Encodings::Origin;
    let implicit = [HeaderName::from_static("x-forwarded-host")];
    let shared = stored(None, None, false);
    let clean = req(&[]);
    let evil = req(&[("x-forwarded-host", "evil.test")]);
    assert!(
        !shared
            .vary
            .lacks_implicit_of(&RequestVary::new(&clean, &enc), &implicit)
    );
    assert!(
        shared
            .vary
            .lacks_implicit_of(&RequestVary::new(&evil, &enc), &implicit)
    );
    assert!(
        !shared
            .vary
            .lacks_implicit_of(&RequestVary::new(&evil, &enc), &[])
    );
    let own = VaryKey::build(&HeaderMap::new(), &RequestVary::new(&evil, &enc), &implicit).unwrap();
    assert!(!own.lacks_implicit_of(&RequestVary::new(&evil, &enc), &implicit));
}

/// Generated input (the stable stand-in for a fuzz target): random
/// bytes as hosts, URIs and request/response fields never panic, keys
/// are valid text that round-trips through `from_text`, and a variant
/// always matches the request it was built from.
#[test]
fn generated_input_never_panics() {
    struct Gen(u64);
    impl Gen {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn bytes(&mut self, n: u64) -> Vec<u8> {
            const ALPHABET: &[u8] = b" \t,;=*/?#%:AaZz09-_.\"\\\x7f\xff\x00gzipdeflateidentitydcbz";
            let len = (self.next() % n) as usize;
            (0..len)
                .map(|_| ALPHABET[(self.next() % ALPHABET.len() as u64) as usize])
                .collect()
        }
    }
    let mut g = Gen(0x9E37_79B9_7F4A_7C15);
    for _ in 0..20_000 {
        let host = g.bytes(24);
        let path = format!(
            "/{}",
            String::from_utf8_lossy(&g.bytes(30)).replace(|c: char| !c.is_ascii_graphic(), "")
        );
        if let Ok(uri) = path.parse::<Uri>() {
            let k = CacheKey::new(&host, &uri);
            assert!(k.as_str().is_ascii());
            assert_eq!(CacheKey::from_text(k.as_str()).as_str(), k.as_str());
            assert!(k.path_and_query().starts_with('/'));
        }
        let mut resp = HeaderMap::new();
        let mut req = HeaderMap::new();
        for _ in 0..(g.next() % 4) {
            if let Ok(v) = HeaderValue::from_bytes(&g.bytes(40)) {
                resp.append(header::VARY, v);
            }
        }
        if g.next() % 2 == 0 {
            let v = HeaderValue::from_static("accept-encoding, available-dictionary");
            resp.append(header::VARY, v);
        }
        for name in [
            header::ACCEPT_ENCODING,
            header::ACCEPT_LANGUAGE,
            header::ACCEPT,
            AVAILABLE_DICTIONARY.clone(),
        ] {
            for _ in 0..(g.next() % 3) {
                if let Ok(v) = HeaderValue::from_bytes(&g.bytes(40)) {
                    req.append(name.clone(), v);
                }
            }
        }
        for enc in [Encodings::Origin, inside()] {
            let request = RequestVary::new(&req, &enc);
            if let Ok(vary) = VaryKey::build(&resp, &request, &[]) {
                assert!(vary.matches(&request));
            }
        }
    }
}

#[test]
fn vary_star_matches_nothing() {
    let enc = inside();
    let r = VaryKey::build(
        &req(&[("vary", "accept, *")]),
        &RequestVary::new(&req(&[]), &enc),
        &[],
    );
    assert_eq!(r, Err(VaryRefusal::Star));
}

/// What the memory store holds for `key` (it answers at once).
fn in_memory(
    store: &crate::cache::MemoryStore,
    key: &crate::cache::CacheKey,
) -> Option<crate::cache::store::Variants> {
    use crate::cache::CacheStore;
    let mut f = store.get(key);
    f.take_ready()
        .expect("the memory store answers at once")
        .expect("no error")
}

/// The memory store keeps each variant of a URL: the first by a plain
/// insert, the next merged beside it, a newer copy of one in its place.
#[test]
fn the_memory_store_keeps_a_urls_variants() {
    use crate::cache::{CacheKey, CacheStore, MemoryStore};
    use std::time::Duration;

    let store = MemoryStore::new(1 << 20);
    let key = CacheKey::from_text("example.com/v");
    let get = |store: &MemoryStore| in_memory(store, &key).expect("stored");
    let ttl = Duration::from_secs(60);
    let gzip = stored(Some("gzip"), Some("gzip"), true);
    let _ = store.put(key.clone(), Arc::clone(&gzip), ttl).take_ready();
    assert_eq!(get(&store).len(), 1);
    let plain = stored(None, None, true);
    let _ = store.put(key.clone(), Arc::clone(&plain), ttl).take_ready();
    let both = get(&store);
    assert_eq!(both.len(), 2);
    assert!(Arc::ptr_eq(&both[0], &plain) && Arc::ptr_eq(&both[1], &gzip));
    let newer = stored(Some("gzip"), Some("gzip"), true);
    let _ = store.put(key.clone(), Arc::clone(&newer), ttl).take_ready();
    let now = get(&store);
    assert_eq!(now.len(), 2);
    assert!(Arc::ptr_eq(&now[0], &newer) && Arc::ptr_eq(&now[1], &plain));
}

/// A refill from a lower tier holds exactly the variants it was given, in
/// order, in place of what was there, at most `max_variants`.
#[cfg(feature = "redis")]
#[test]
fn a_refill_holds_the_variants_given() {
    use crate::cache::{CacheKey, CacheStore, MemoryStore};
    use std::time::Duration;

    let store = MemoryStore::new(1 << 20).max_variants(2);
    let key = CacheKey::from_text("example.com/r");
    let get = |store: &MemoryStore| in_memory(store, &key);
    let ttl = Duration::from_secs(60);
    let old = stored(None, None, true);
    let _ = store.put(key.clone(), old, ttl).take_ready();
    let (gzip, plain, br) = (
        stored(Some("gzip"), Some("gzip"), true),
        stored(None, None, true),
        stored(Some("br"), Some("br"), true),
    );
    let given: crate::cache::store::Variants =
        vec![Arc::clone(&gzip), Arc::clone(&plain), Arc::clone(&br)].into();
    store.fill(key.clone(), &given, ttl);
    let now = get(&store).expect("filled");
    assert_eq!(now.len(), 2);
    assert!(Arc::ptr_eq(&now[0], &gzip) && Arc::ptr_eq(&now[1], &plain));
    // Nothing given: nothing changes.
    store.fill(key.clone(), &Vec::new().into(), ttl);
    assert_eq!(get(&store).expect("still there").len(), 2);
}
