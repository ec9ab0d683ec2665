//! The parsers' limits: what each keeps of a very long field, and what a
//! field past a limit means.

use http::header::{HeaderMap, HeaderValue, IF_NONE_MATCH};

use super::*;

fn join(n: usize, f: impl Fn(usize) -> String) -> String {
    (0..n).map(f).collect::<Vec<_>>().join(", ")
}

fn cc(s: &str) -> CacheControl {
    CacheControl::parse(s.as_bytes())
}

#[test]
fn the_limits() {
    // The figures the changelog and the docs give.
    assert_eq!(CacheControl::MAX_EXTENSIONS, 64);
    assert_eq!(CacheControl::MAX_FIELD_NAMES, 64);
    assert_eq!(EntityTagList::MAX_TAGS, 64);
}

#[test]
fn cache_control_keeps_the_first_extensions() {
    let max = CacheControl::MAX_EXTENSIONS;
    let c = cc(&join(max + 36, |i| format!("ext{i}=v{i}")));
    assert_eq!(c.extensions().count(), max);
    let last = format!("ext{}", max - 1);
    let past = format!("ext{max}");
    assert_eq!(
        c.extension(&last),
        Some(Some(format!("v{}", max - 1).as_str()))
    );
    assert_eq!(c.extension(&past), None);
    // Full or not, a repeated name keeps its first value.
    let c = cc(&format!("{}, EXT0=again", join(max, |i| format!("ext{i}"))));
    assert_eq!(c.extension("ext0"), Some(None));
    // Round trip of what was kept.
    assert_eq!(cc(&c.to_string()), c);
}

#[test]
fn padding_cannot_hide_known_directives() {
    let padded = format!(
        "{}, no-store, max-age=5, private=\"set-cookie\"",
        join(30_000, |i| format!("ext{i}=1"))
    );
    let c = cc(&padded);
    assert!(c.no_store());
    assert_eq!(c.max_age(), Some(std::time::Duration::from_secs(5)));
    assert_eq!(c.private_fields(), ["set-cookie"]);
    assert_eq!(c.extensions().count(), CacheControl::MAX_EXTENSIONS);
}

#[test]
fn field_lists_past_the_limit_read_unqualified() {
    let max = CacheControl::MAX_FIELD_NAMES;
    for directive in ["no-cache", "private"] {
        let fields = |c: &CacheControl| {
            if directive == "private" {
                (c.private(), c.private_fields().len())
            } else {
                (c.no_cache(), c.no_cache_fields().len())
            }
        };
        // One list: exactly the limit stays qualified, one more doesn't.
        let one = |n: usize| cc(&format!("{directive}=\"{}\"", join(n, |i| format!("f{i}"))));
        assert_eq!(fields(&one(max)), (true, max), "{directive}");
        assert_eq!(fields(&one(max + 1)), (true, 0), "{directive}");
        // Repeated lists merge and count together.
        let many = |n: usize| cc(&join(n, |i| format!("{directive}=\"f{i}\"")));
        assert_eq!(fields(&many(max)), (true, max), "{directive}");
        assert_eq!(fields(&many(max + 1)), (true, 0), "{directive}");
        assert_eq!(fields(&many(30_000)), (true, 0), "{directive}");
        // Unqualified stays so, whatever lists follow.
        let after = format!(
            "{directive}=\"{}\", {directive}=\"x\"",
            join(max + 1, |i| format!("f{i}"))
        );
        assert_eq!(fields(&cc(&after)), (true, 0), "{directive}");
        // Each name is kept once, so repeats never reach the limit.
        let repeats = format!(
            "{directive}=\"{}\", {}",
            join(max, |i| format!("F{i}")),
            join(5_000, |i| format!("{directive}=\"f{}\"", i % max))
        );
        assert_eq!(fields(&cc(&repeats)), (true, max), "{directive}");
        let c = cc(&repeats);
        assert_eq!(cc(&c.to_string()), c);
    }
    assert_eq!(cc("no-cache=\"a, A, a\"").no_cache_fields(), ["a"]);
}

#[test]
fn entity_tag_lists_past_the_limit_are_unreadable() {
    let max = EntityTagList::MAX_TAGS;
    let tags = |n: usize| join(n, |i| format!("\"t{i}\""));
    match EntityTagList::parse(tags(max).as_bytes()) {
        Ok(EntityTagList::Tags(t)) => assert_eq!(t.len(), max),
        other => panic!("{other:?}"),
    }
    let err = EntityTagList::parse(tags(max + 1).as_bytes()).unwrap_err();
    assert_eq!(err.what(), "entity-tag list");
    assert!(EntityTagList::parse(tags(30_000).as_bytes()).is_err());
    // The limit holds over all the lines of a field.
    let mut h = HeaderMap::new();
    let half = HeaderValue::from_str(&tags(max / 2 + 1)).unwrap();
    h.append(IF_NONE_MATCH, half.clone());
    h.append(IF_NONE_MATCH, half);
    assert!(
        EntityTagList::from_headers(&h, &IF_NONE_MATCH)
            .unwrap()
            .is_err()
    );
}

/// What an over-long list means to the precondition checks: never a 304
/// it did not earn, never a write it could not check.
#[cfg(feature = "cache-control")]
#[test]
fn over_long_lists_fail_safe_in_preconditions() {
    use crate::headers::{Precondition, Preconditions};
    use http::Method;
    use http::header::IF_MATCH;

    let current = EntityTag::strong("t3").unwrap();
    let long =
        HeaderValue::from_str(&join(EntityTagList::MAX_TAGS + 1, |i| format!("\"t{i}\""))).unwrap();
    let mut inm = HeaderMap::new();
    inm.insert(IF_NONE_MATCH, long.clone());
    let pre = Preconditions::from_headers(&inm);
    assert_eq!(
        pre.evaluate(&Method::GET, true, Some(&current), None),
        Precondition::Proceed
    );
    let mut im = HeaderMap::new();
    im.insert(IF_MATCH, long);
    let pre = Preconditions::from_headers(&im);
    assert_eq!(
        pre.evaluate(&Method::PUT, true, Some(&current), None),
        Precondition::Failed
    );
}

#[test]
fn accept_encoding_keeps_six_weights() {
    let long = format!("gzip;q=0.1, {}", join(30_000, |i| format!("x-{i}, gzip")));
    let ae = AcceptEncoding::parse(long.as_bytes());
    assert_eq!(ae.quality(ContentCoding::Gzip).thousandths(), 100);
    assert_eq!(ae.to_string(), "gzip;q=0.1");
}
