//! The fields of Compression Dictionary Transport (RFC 9842):
//! `Available-Dictionary` on requests and `Use-As-Dictionary` on
//! responses (the field names live in `dictionary_use`, which the cache
//! shares).

use std::fmt;

use http::header::{HeaderMap, HeaderName, HeaderValue};

use super::ParseError;
use super::dictionary_use::AVAILABLE_DICTIONARY;
use super::sf::{self, Item, Member};

/// `Use-As-Dictionary` (RFC 9842 §2.1).
pub static USE_AS_DICTIONARY: HeaderName = HeaderName::from_static("use-as-dictionary");
/// `Dictionary-ID` (RFC 9842 §2.3).
pub static DICTIONARY_ID: HeaderName = HeaderName::from_static("dictionary-id");

/// The longest `id` RFC 9842 §2.1.3 allows, in characters.
pub const MAX_DICTIONARY_ID: usize = 1024;

/// `Available-Dictionary: :<base64>:` (RFC 9842 §2.2): the SHA-256 of the
/// dictionary the client has for this request, a Structured Field Byte
/// Sequence of exactly 32 bytes.
///
/// ```
/// use http::{HeaderMap, HeaderValue};
/// use tower_perf::headers::{AVAILABLE_DICTIONARY, AvailableDictionary};
///
/// let mut h = HeaderMap::new();
/// let value = ":pZGm1Av0IEBKARczz7exkNYsZb8LzaMrV7J32a2fFG4=:";
/// h.insert(&AVAILABLE_DICTIONARY, HeaderValue::from_static(value));
/// let d = AvailableDictionary::from_headers(&h).unwrap().unwrap();
/// assert_eq!(d.hash()[0], 0xa5);
/// assert_eq!(d.to_string(), value);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct AvailableDictionary([u8; 32]);

impl AvailableDictionary {
    /// From the SHA-256 of a dictionary.
    pub const fn new(hash: [u8; 32]) -> Self {
        Self(hash)
    }

    /// The SHA-256 of the dictionary.
    pub const fn hash(&self) -> &[u8; 32] {
        &self.0
    }

    /// Reads a field value.
    pub fn parse(value: &[u8]) -> Result<Self, ParseError> {
        let bad = |reason| ParseError::new("available-dictionary", reason);
        // A Structured Field Item: the byte sequence, maybe with parameters
        // (none is defined; they are ignored).
        match sf::item(value) {
            Ok(Item::Bytes(b)) => <[u8; 32]>::try_from(b)
                .map(Self)
                .map_err(|_| bad("not a 32-byte SHA-256")),
            _ => Err(bad("not a structured field byte sequence")),
        }
    }

    /// The request's field: `None` without one, an error for a bad value
    /// or for several (the field is a single item).
    pub fn from_headers(headers: &HeaderMap) -> Option<Result<Self, ParseError>> {
        let mut all = headers.get_all(&AVAILABLE_DICTIONARY).iter();
        let first = all.next()?;
        if all.next().is_some() {
            return Some(Err(ParseError::new(
                "available-dictionary",
                "more than one field line",
            )));
        }
        Some(Self::parse(first.as_bytes()))
    }

    /// The field value (`:<base64>:`).
    pub fn to_header_value(&self) -> HeaderValue {
        HeaderValue::from_str(&self.to_string()).expect("base64 is a valid header value")
    }
}

impl fmt::Display for AvailableDictionary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use base64::Engine as _;
        write!(
            f,
            ":{}:",
            base64::engine::general_purpose::STANDARD.encode(self.0)
        )
    }
}

impl fmt::Debug for AvailableDictionary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AvailableDictionary({self})")
    }
}

/// `Use-As-Dictionary` (RFC 9842 §2.1): the response may be used as a
/// dictionary for later requests whose URL matches `match`.
///
/// A field is valid when it is a Structured Field Dictionary with a
/// `match` string; `match-dest` (an inner list of strings; past 32 the
/// rest are dropped, which only narrows it), `id` (a string of at most
/// 1,024 characters) and `type` (a token, `raw` by default) are read when
/// present, other members ignored. The pattern is kept whole (the field's
/// size bounds it). Whether it is a valid URL pattern (no
/// regular-expression groups, same origin) is the client's to judge.
///
/// ```
/// use tower_perf::headers::UseAsDictionary;
///
/// let d = UseAsDictionary::parse(br#"match="/js/app.*.js", match-dest=("script"), id="v1""#).unwrap();
/// assert_eq!(d.pattern(), "/js/app.*.js");
/// assert_eq!(d.destinations(), ["script"]);
/// assert_eq!(d.id(), "v1");
/// assert!(d.is_raw());
/// assert!(UseAsDictionary::parse(br#"id="no match""#).is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UseAsDictionary {
    pattern: String,
    destinations: Vec<String>,
    id: String,
    raw: bool,
}

impl UseAsDictionary {
    /// Reads a field value. A key given twice counts by its last value
    /// (RFC 9651 §4.2.2), whatever the earlier one was.
    pub fn parse(value: &[u8]) -> Result<Self, ParseError> {
        let bad = |reason| ParseError::new("use-as-dictionary", reason);
        // The last value of each known key: what it holds, or why not.
        let mut pattern: Option<Result<String, &'static str>> = None;
        let mut destinations: Result<Vec<String>, &'static str> = Ok(Vec::new());
        let mut id: Result<String, &'static str> = Ok(String::new());
        let mut raw: Result<bool, &'static str> = Ok(true);
        sf::dictionary(value, |key, m| match key {
            "match" => {
                pattern = Some(match m {
                    Member::Item(Item::String(s)) => Ok(s),
                    _ => Err("match is not a string"),
                });
            }
            "match-dest" => {
                // Every item must be a string: a malformed restriction
                // must not read as none ("all destinations").
                destinations = match m {
                    Member::InnerList(items, _) => items
                        .into_iter()
                        .map(|i| match i {
                            Item::String(s) => Ok(s),
                            _ => Err("match-dest holds something other than strings"),
                        })
                        .collect(),
                    Member::Item(_) => Err("match-dest is not an inner list"),
                };
            }
            "id" => {
                id = match m {
                    Member::Item(Item::String(s)) if s.len() <= MAX_DICTIONARY_ID => Ok(s),
                    Member::Item(Item::String(_)) => Err("id is longer than 1024 characters"),
                    _ => Err("id is not a string"),
                };
            }
            "type" => {
                raw = match m {
                    Member::Item(Item::Token(t)) => Ok(t == "raw"),
                    _ => Err("type is not a token"),
                };
            }
            _ => {}
        })
        .map_err(|_| bad("not a structured field dictionary"))?;
        Ok(Self {
            pattern: pattern.ok_or_else(|| bad("no match"))?.map_err(bad)?,
            destinations: destinations.map_err(bad)?,
            id: id.map_err(bad)?,
            raw: raw.map_err(bad)?,
        })
    }

    /// The response's field: `None` without one; several lines are one
    /// dictionary, as Structured Fields combine them.
    pub fn from_headers(headers: &HeaderMap) -> Option<Result<Self, ParseError>> {
        let mut lines = headers.get_all(&USE_AS_DICTIONARY).iter();
        let first = lines.next()?;
        let mut joined = first.as_bytes().to_vec();
        for line in lines {
            joined.extend_from_slice(b", ");
            joined.extend_from_slice(line.as_bytes());
        }
        Some(Self::parse(&joined))
    }

    /// The URL pattern (`match`) later requests are matched against.
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// The request destinations (`match-dest`) it applies to; empty: all.
    pub fn destinations(&self) -> &[String] {
        &self.destinations
    }

    /// The server's name for it (`id`), sent back in `Dictionary-ID`; empty
    /// when none was given.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// `type` is `raw`, the only type RFC 9842 defines: a client uses no
    /// other.
    pub fn is_raw(&self) -> bool {
        self.raw
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn available_dictionary_values() {
        let good = ":pZGm1Av0IEBKARczz7exkNYsZb8LzaMrV7J32a2fFG4=:";
        let d = AvailableDictionary::parse(good.as_bytes()).unwrap();
        assert_eq!(d.to_string(), good);
        // Padding may be left out; parameters are ignored; spaces trimmed.
        let unpadded = ":pZGm1Av0IEBKARczz7exkNYsZb8LzaMrV7J32a2fFG4:";
        assert_eq!(AvailableDictionary::parse(unpadded.as_bytes()).unwrap(), d);
        let with_param = format!(" {good};x=1 ");
        assert_eq!(
            AvailableDictionary::parse(with_param.as_bytes()).unwrap(),
            d
        );
        for bad in [
            "",
            "pZGm1Av0IEBKARczz7exkNYsZb8LzaMrV7J32a2fFG4=",
            ":aGVsbG8=:",
            ":pZGm1Av0IEBKARczz7exkNYsZb8LzaMrV7J32a2fFG4=",
            ":pZGm1Av0IEBKARczz7exkNYsZb8LzaMrV7J32a2fFG4=:, :aGVsbG8=:",
            ":!!:",
            "\"string\"",
        ] {
            assert!(AvailableDictionary::parse(bad.as_bytes()).is_err(), "{bad}");
        }
        let mut h = HeaderMap::new();
        assert!(AvailableDictionary::from_headers(&h).is_none());
        h.append(&AVAILABLE_DICTIONARY, HeaderValue::from_static(good));
        assert_eq!(AvailableDictionary::from_headers(&h).unwrap().unwrap(), d);
        h.append(&AVAILABLE_DICTIONARY, HeaderValue::from_static(good));
        assert!(AvailableDictionary::from_headers(&h).unwrap().is_err());
        assert_eq!(d.to_header_value(), good);
    }

    #[test]
    fn use_as_dictionary_values() {
        let d = UseAsDictionary::parse(br#"match="/app.*.js""#).unwrap();
        assert_eq!((d.pattern(), d.id(), d.is_raw()), ("/app.*.js", "", true));
        assert!(d.destinations().is_empty());
        let d = UseAsDictionary::parse(br#"match="/a", type=other, future=?1"#).unwrap();
        assert!(!d.is_raw());
        let long_id = format!(r#"match="/a", id="{}""#, "x".repeat(MAX_DICTIONARY_ID + 1));
        for bad in [
            &b"id=\"x\""[..],
            b"match=/a",
            b"match=(\"/a\")",
            b"match=\"/a\", id=1",
            b"match=\"/a\", type=\"raw\"",
            b"match=\"/a\",",
            long_id.as_bytes(),
        ] {
            assert!(
                UseAsDictionary::parse(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        // The last value of a key counts, whatever came before it.
        let d =
            UseAsDictionary::parse(br#"match=1, match="/a", id=2, id="x", type="raw", type=raw"#)
                .unwrap();
        assert_eq!((d.pattern(), d.id(), d.is_raw()), ("/a", "x", true));
        assert!(UseAsDictionary::parse(br#"match="/a", match=1"#).is_err());
        for bad_dest in [
            &br#"match="/a", match-dest=(script)"#[..],
            br#"match="/a", match-dest=("a" 1)"#,
            br#"match="/a", match-dest="a""#,
        ] {
            let text = String::from_utf8_lossy(bad_dest);
            assert!(UseAsDictionary::parse(bad_dest).is_err(), "{text}");
        }
        // Lines combine; the last `match` wins.
        let mut h = HeaderMap::new();
        h.append(&USE_AS_DICTIONARY, HeaderValue::from_static("match=\"/a\""));
        h.append(
            &USE_AS_DICTIONARY,
            HeaderValue::from_static("match=\"/b\", id=\"2\""),
        );
        let d = UseAsDictionary::from_headers(&h).unwrap().unwrap();
        assert_eq!((d.pattern(), d.id()), ("/b", "2"));
    }
}
