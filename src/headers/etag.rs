//! Entity tags and `If-Match` / `If-None-Match` lists (RFC 9110 §8.8.3,
//! §13.1.1, §13.1.2).

use std::fmt;

use http::header::{HeaderMap, HeaderName, HeaderValue};

use super::ParseError;
use super::util::trim_ows;

/// `etagc = %x21 / %x23-7E / obs-text` (RFC 9110 §8.8.3).
const fn is_etagc(b: u8) -> bool {
    b == 0x21 || (b >= 0x23 && b != 0x7f)
}

/// An entity tag: `"xyzzy"` (strong) or `W/"xyzzy"` (weak).
///
/// The opaque tag is held as bytes, since it may contain obs-text.
///
/// # Example
///
/// ```
/// use tower_perf::headers::EntityTag;
///
/// let strong: EntityTag = "\"abc\"".parse().unwrap();
/// let weak: EntityTag = "W/\"abc\"".parse().unwrap();
/// assert!(!strong.strong_eq(&weak));
/// assert!(strong.weak_eq(&weak));
/// assert_eq!(weak.to_string(), "W/\"abc\"");
/// assert!("abc".parse::<EntityTag>().is_err()); // unquoted
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EntityTag {
    weak: bool,
    tag: Box<[u8]>,
}

impl EntityTag {
    /// A strong tag; `tag` is the opaque part, without quotes.
    pub fn strong(tag: impl AsRef<[u8]>) -> Result<Self, ParseError> {
        Self::new(false, tag.as_ref())
    }

    /// A weak tag; `tag` is the opaque part, without quotes.
    pub fn weak(tag: impl AsRef<[u8]>) -> Result<Self, ParseError> {
        Self::new(true, tag.as_ref())
    }

    fn new(weak: bool, tag: &[u8]) -> Result<Self, ParseError> {
        if tag.iter().all(|&b| is_etagc(b)) {
            Ok(Self {
                weak,
                tag: tag.into(),
            })
        } else {
            Err(ParseError::new(
                "etag",
                "opaque tag holds a character etagc excludes",
            ))
        }
    }

    /// Parses one entity-tag, surrounding white space allowed.
    pub fn parse(value: &[u8]) -> Result<Self, ParseError> {
        match parse_one(trim_ows(value))? {
            (tag, []) => Ok(tag),
            _ => Err(ParseError::new("etag", "bytes after the closing quote")),
        }
    }

    /// Parses the `ETag` field of `headers`; `None` when absent or malformed
    /// (RFC 9110 §8.8.3 defines a single value; a second line is ignored).
    pub fn from_headers(headers: &HeaderMap) -> Option<Self> {
        Self::parse(headers.get(http::header::ETAG)?.as_bytes()).ok()
    }

    /// True for `W/"…"`.
    pub const fn is_weak(&self) -> bool {
        self.weak
    }

    /// The opaque tag, without quotes or `W/`.
    pub fn tag(&self) -> &[u8] {
        &self.tag
    }

    /// This tag, weak.
    pub fn into_weak(mut self) -> Self {
        self.weak = true;
        self
    }

    /// Strong comparison (RFC 9110 §8.8.3.2): neither is weak and the tags
    /// are the same.
    pub fn strong_eq(&self, other: &Self) -> bool {
        !self.weak && !other.weak && self.tag == other.tag
    }

    /// Weak comparison (RFC 9110 §8.8.3.2): the tags are the same, weak or
    /// not.
    pub fn weak_eq(&self, other: &Self) -> bool {
        self.tag == other.tag
    }

    /// The field value for an `ETag` header.
    pub fn to_header_value(&self) -> HeaderValue {
        let mut v = Vec::with_capacity(self.tag.len() + 4);
        self.write(&mut v);
        // etagc excludes every byte HeaderValue rejects.
        HeaderValue::from_bytes(&v).unwrap_or_else(|_| HeaderValue::from_static("\"\""))
    }

    fn write(&self, out: &mut Vec<u8>) {
        if self.weak {
            out.extend_from_slice(b"W/");
        }
        out.push(b'"');
        out.extend_from_slice(&self.tag);
        out.push(b'"');
    }
}

impl fmt::Display for EntityTag {
    /// Writes the tag as sent; obs-text bytes are shown lossily.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.weak {
            f.write_str("W/")?;
        }
        write!(f, "\"{}\"", String::from_utf8_lossy(&self.tag))
    }
}

impl std::str::FromStr for EntityTag {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        Self::parse(s.as_bytes())
    }
}

/// Parses one entity-tag at the start of `input` and returns the rest.
fn parse_one(input: &[u8]) -> Result<(EntityTag, &[u8]), ParseError> {
    let (weak, rest) = match input {
        [b'W', b'/', rest @ ..] => (true, rest),
        _ => (false, input),
    };
    let [b'"', rest @ ..] = rest else {
        return Err(ParseError::new("etag", "expected an opening quote"));
    };
    let Some(end) = rest.iter().position(|&b| b == b'"') else {
        return Err(ParseError::new("etag", "missing closing quote"));
    };
    let tag = EntityTag::new(weak, &rest[..end])?;
    Ok((tag, &rest[end + 1..]))
}

/// The value of `If-Match` or `If-None-Match`: `*` or a list of entity tags.
///
/// Both fields may span several lines. Parsing is strict: an element that
/// isn't a quoted entity-tag, or `*` mixed with tags, is an error, and what
/// to do then is the precondition's call. A server that can't read
/// `If-None-Match` can ignore it and send the full response; one that can't
/// read `If-Match` should not perform the request (412).
///
/// # Limits
///
/// A list keeps at most [`MAX_TAGS`](Self::MAX_TAGS) entity tags, over all
/// its lines; a longer one is a [`ParseError`], found as soon as the tag
/// past the limit is reached (parsing never reads further). Keeping only
/// the first tags would give wrong answers (the current tag may be among
/// those dropped), so the list is unreadable instead, and each field's
/// safe reading of an unreadable list applies: `If-None-Match` is ignored,
/// so a GET or HEAD gets the full response and never a 304 it did not earn;
/// `If-Match` fails (412), so nothing is written on a precondition that
/// could not be checked. The crate's own layers do exactly that. (On an
/// unsafe method an ignored `If-None-Match` lets the request proceed: a
/// client that lists more than `MAX_TAGS` tags gives up the protection it
/// asked for, no one else's.)
///
/// # Example
///
/// ```
/// use tower_perf::headers::{EntityTag, EntityTagList};
///
/// let current = EntityTag::strong("v2").unwrap();
/// let inm = EntityTagList::parse(b"\"v1\", W/\"v2\"").unwrap();
/// assert!(!inm.if_none_match_passes(Some(&current))); // weak match: 304
///
/// let im = EntityTagList::parse(b"W/\"v2\"").unwrap();
/// assert!(!im.if_match_passes(Some(&current))); // If-Match compares strongly: 412
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum EntityTagList {
    /// `*`: any current representation.
    Any,
    /// A list of entity tags (never empty, and at most
    /// [`MAX_TAGS`](Self::MAX_TAGS) of them, when parsed).
    Tags(Vec<EntityTag>),
}

impl EntityTagList {
    /// The most entity tags a list holds; a longer one does not parse
    /// (see [Limits](Self#limits)).
    pub const MAX_TAGS: usize = 64;

    /// Parses one field value.
    pub fn parse(value: &[u8]) -> Result<Self, ParseError> {
        let mut list = None;
        Self::parse_into(&mut list, value)?;
        list.ok_or_else(|| ParseError::new("entity-tag list", "empty list"))
    }

    /// Parses every line of field `name` (`IF_MATCH` or `IF_NONE_MATCH`) as
    /// one list. `None` when the field is absent.
    pub fn from_headers(
        headers: &HeaderMap,
        name: &HeaderName,
    ) -> Option<Result<Self, ParseError>> {
        let mut lines = headers.get_all(name).iter().peekable();
        lines.peek()?;
        let mut list = None;
        for line in lines {
            if let Err(e) = Self::parse_into(&mut list, line.as_bytes()) {
                return Some(Err(e));
            }
        }
        Some(list.ok_or_else(|| ParseError::new("entity-tag list", "empty list")))
    }

    fn parse_into(list: &mut Option<Self>, value: &[u8]) -> Result<(), ParseError> {
        let trimmed = trim_ows(value);
        if trimmed == b"*" {
            return match list {
                None | Some(Self::Any) => {
                    *list = Some(Self::Any);
                    Ok(())
                }
                Some(Self::Tags(_)) => {
                    Err(ParseError::new("entity-tag list", "`*` mixed with tags"))
                }
            };
        }
        let mut rest = value;
        loop {
            // Skip OWS and empty list elements.
            while let [b' ' | b'\t' | b',', tail @ ..] = rest {
                rest = tail;
            }
            if rest.is_empty() {
                return Ok(());
            }
            let (tag, tail) = parse_one(rest)?;
            match list {
                None => *list = Some(Self::Tags(vec![tag])),
                Some(Self::Tags(tags)) if tags.len() >= Self::MAX_TAGS => {
                    return Err(ParseError::new(
                        "entity-tag list",
                        "more entity tags than EntityTagList::MAX_TAGS",
                    ));
                }
                Some(Self::Tags(tags)) => tags.push(tag),
                Some(Self::Any) => {
                    return Err(ParseError::new("entity-tag list", "`*` mixed with tags"));
                }
            }
            let tail = trim_ows(tail);
            match tail {
                [] => return Ok(()),
                [b',', ..] => rest = tail,
                _ => return Err(ParseError::new("entity-tag list", "expected a comma")),
            }
        }
    }

    /// Whether any listed tag matches `tag` by strong comparison; `*`
    /// matches anything.
    pub fn contains_strong(&self, tag: &EntityTag) -> bool {
        match self {
            Self::Any => true,
            Self::Tags(tags) => tags.iter().any(|t| t.strong_eq(tag)),
        }
    }

    /// Whether any listed tag matches `tag` by weak comparison; `*` matches
    /// anything.
    pub fn contains_weak(&self, tag: &EntityTag) -> bool {
        match self {
            Self::Any => true,
            Self::Tags(tags) => tags.iter().any(|t| t.weak_eq(tag)),
        }
    }

    /// Evaluates `If-Match` (RFC 9110 §13.1.1) against the current
    /// representation's tag (`None` when there is no current representation
    /// or it has no tag).
    pub fn if_match_passes(&self, current: Option<&EntityTag>) -> bool {
        match (self, current) {
            (Self::Any, cur) => cur.is_some(),
            (Self::Tags(_), None) => false,
            (list, Some(cur)) => list.contains_strong(cur),
        }
    }

    /// Evaluates `If-None-Match` (RFC 9110 §13.1.2): `false` means the
    /// condition fails (304 for GET/HEAD, 412 otherwise).
    pub fn if_none_match_passes(&self, current: Option<&EntityTag>) -> bool {
        match (self, current) {
            (Self::Any, cur) => cur.is_none(),
            (Self::Tags(_), None) => true,
            (list, Some(cur)) => !list.contains_weak(cur),
        }
    }

    /// The field value.
    pub fn to_header_value(&self) -> HeaderValue {
        let v = match self {
            Self::Any => b"*".to_vec(),
            Self::Tags(tags) => {
                let mut v = Vec::new();
                for (i, t) in tags.iter().enumerate() {
                    if i > 0 {
                        v.extend_from_slice(b", ");
                    }
                    t.write(&mut v);
                }
                v
            }
        };
        HeaderValue::from_bytes(&v).unwrap_or_else(|_| HeaderValue::from_static("*"))
    }
}

impl fmt::Display for EntityTagList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => f.write_str("*"),
            Self::Tags(tags) => {
                for (i, t) in tags.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{t}")?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::{IF_MATCH, IF_NONE_MATCH};

    fn tag(s: &str) -> EntityTag {
        s.parse().unwrap()
    }

    #[test]
    fn rfc_9110_comparison_table() {
        // RFC 9110 §8.8.3.2.
        let rows = [
            (r#"W/"1""#, r#"W/"1""#, false, true),
            (r#"W/"1""#, r#"W/"2""#, false, false),
            (r#"W/"1""#, r#""1""#, false, true),
            (r#""1""#, r#""1""#, true, true),
        ];
        for (a, b, strong, weak) in rows {
            assert_eq!(tag(a).strong_eq(&tag(b)), strong, "{a} {b}");
            assert_eq!(tag(a).weak_eq(&tag(b)), weak, "{a} {b}");
        }
    }

    #[test]
    fn rfc_examples_parse() {
        // RFC 9110 §8.8.3 and §13.1.1/§13.1.2 examples.
        assert_eq!(tag(r#""xyzzy""#).tag(), b"xyzzy");
        assert!(tag(r#"W/"xyzzy""#).is_weak());
        assert_eq!(tag(r#""""#).tag(), b"");
        let l = EntityTagList::parse(br#""xyzzy", "r2d2xxxx", "c3piozzzz""#).unwrap();
        assert_eq!(
            l,
            EntityTagList::Tags(vec![
                tag(r#""xyzzy""#),
                tag(r#""r2d2xxxx""#),
                tag(r#""c3piozzzz""#)
            ])
        );
        let w = EntityTagList::parse(br#"W/"xyzzy", W/"r2d2xxxx", W/"c3piozzzz""#).unwrap();
        assert!(
            matches!(&w, EntityTagList::Tags(t) if t.len() == 3 && t.iter().all(EntityTag::is_weak))
        );
        assert_eq!(EntityTagList::parse(b"*").unwrap(), EntityTagList::Any);
    }

    #[test]
    fn tags_may_hold_commas_and_backslashes() {
        let l = EntityTagList::parse(br#""a,b", "c\""#).unwrap();
        assert_eq!(
            l,
            EntityTagList::Tags(vec![
                EntityTag::strong("a,b").unwrap(),
                EntityTag::strong("c\\").unwrap()
            ])
        );
        // obs-text is allowed and kept exactly.
        let t = EntityTag::parse(b"\"\xc3\xa9\"").unwrap();
        assert_eq!(t.tag(), "é".as_bytes());
        assert_eq!(t.to_header_value().as_bytes(), b"\"\xc3\xa9\"");
    }

    #[test]
    fn malformed_tags() {
        for bad in [
            &b""[..],
            b"abc",
            b"\"abc",
            b"w/\"a\"",
            b"W/abc",
            b"\"a\"b",
            b"\"a b\"",
            b"\"a\x7f\"",
            b"W/",
            b"\"",
        ] {
            assert!(
                EntityTag::parse(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        for bad in [
            &b""[..],
            b",",
            b"abc",
            b"\"a\" \"b\"",
            b"*, \"a\"",
            b"\"a\", *",
            b"\"a\",,x",
            b"\"a",
            b"**",
        ] {
            assert!(
                EntityTagList::parse(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(EntityTag::strong("a\"b").is_err());
        assert!(EntityTag::weak(" ").is_err());
    }

    #[test]
    fn lists_with_empty_elements_and_lines() {
        assert_eq!(
            EntityTagList::parse(br#" , "a" ,, W/"b" , "#)
                .unwrap()
                .to_string(),
            r#""a", W/"b""#
        );
        let mut h = HeaderMap::new();
        h.append(IF_NONE_MATCH, HeaderValue::from_static("\"a\""));
        h.append(IF_NONE_MATCH, HeaderValue::from_static("W/\"b\""));
        let l = EntityTagList::from_headers(&h, &IF_NONE_MATCH)
            .unwrap()
            .unwrap();
        assert!(l.contains_weak(&tag("\"b\"")));
        assert!(EntityTagList::from_headers(&h, &IF_MATCH).is_none());
        h.append(IF_NONE_MATCH, HeaderValue::from_static("*"));
        assert!(
            EntityTagList::from_headers(&h, &IF_NONE_MATCH)
                .unwrap()
                .is_err()
        );
    }

    #[test]
    fn precondition_evaluation() {
        let cur = tag("\"v1\"");
        let weak_cur = tag("W/\"v1\"");
        let any = EntityTagList::Any;
        // If-Match: * needs a current representation; tags compare strongly.
        assert!(any.if_match_passes(Some(&cur)));
        assert!(!any.if_match_passes(None));
        let l = EntityTagList::parse(b"\"v1\"").unwrap();
        assert!(l.if_match_passes(Some(&cur)));
        assert!(!l.if_match_passes(Some(&weak_cur)));
        assert!(!l.if_match_passes(None));
        // If-None-Match: * fails when a representation exists; tags compare weakly.
        assert!(!any.if_none_match_passes(Some(&cur)));
        assert!(any.if_none_match_passes(None));
        let wl = EntityTagList::parse(b"W/\"v1\"").unwrap();
        assert!(!wl.if_none_match_passes(Some(&cur)));
        assert!(!l.if_none_match_passes(Some(&weak_cur)));
        assert!(wl.if_none_match_passes(Some(&tag("\"v2\""))));
        assert!(wl.if_none_match_passes(None));
    }

    #[test]
    fn writers() {
        assert_eq!(EntityTag::weak("x").unwrap().to_header_value(), "W/\"x\"");
        assert_eq!(EntityTagList::Any.to_header_value(), "*");
        assert_eq!(tag("\"x\"").into_weak(), EntityTag::weak("x").unwrap());
    }
}
