//! Targeted cache-control fields (RFC 9213): `CDN-Cache-Control` and the
//! like, read as Structured Field Dictionaries into a [`CacheControl`].

use std::time::Duration;

use http::header::{HeaderName, HeaderValue};

use super::CacheControl;
use super::sf::{self, Item, Member};
use super::util::DELTA_SECONDS_MAX;

/// `no-cache` or `private` in a targeted field: unqualified, or naming
/// fields.
enum Qualified {
    All,
    Fields(Vec<HeaderName>),
}

/// The field names of a `no-cache="…"` or `private="…"` String: `None`
/// (read as unqualified) when an element is not a field name or there are
/// more than [`CacheControl::MAX_FIELD_NAMES`].
fn field_names(list: &str) -> Option<Vec<HeaderName>> {
    let mut names: Vec<HeaderName> = Vec::new();
    for elem in list.split(',') {
        let name = HeaderName::from_bytes(elem.trim().as_bytes()).ok()?;
        if !names.contains(&name) {
            if names.len() == CacheControl::MAX_FIELD_NAMES {
                return None;
            }
            names.push(name);
        }
    }
    Some(names)
}

impl CacheControl {
    /// Reads the lines of a targeted cache-control field (RFC 9213 §2.1),
    /// such as `CDN-Cache-Control`, as one Structured Field Dictionary of
    /// response directives: `None` when the field is empty or not a valid
    /// Dictionary (a cache then ignores it).
    ///
    /// Each directive takes the type RFC 9213 maps it to, and a member of
    /// another type is ignored: `max-age`, `s-maxage`,
    /// `stale-while-revalidate` and `stale-if-error` are Integers (large
    /// ones capped as delta-seconds; a negative `max-age` or `s-maxage` is
    /// 0, as in `Cache-Control`, a negative window none);
    /// `no-store`, `must-revalidate`, `proxy-revalidate`, `public`,
    /// `immutable`, `no-transform` and `must-understand` are Booleans
    /// (`?0` is absent); `no-cache` and `private` are `true` or a String
    /// naming fields. Parameters and unknown members are ignored; a key's
    /// last value counts, and when it is of the wrong type the directive
    /// is absent.
    ///
    /// ```
    /// use std::time::Duration;
    /// use http::HeaderValue;
    /// use tower_perf::headers::CacheControl;
    ///
    /// let v = HeaderValue::from_static("max-age=600, must-revalidate, no-cache=\"set-cookie\"");
    /// let cc = CacheControl::from_targeted([&v]).unwrap();
    /// assert_eq!(cc.max_age(), Some(Duration::from_secs(600)));
    /// assert!(cc.must_revalidate());
    /// assert_eq!(cc.no_cache_fields()[0], "set-cookie");
    /// // `max-age=6.5` is a Decimal: ignored, yet the field is valid.
    /// let v = HeaderValue::from_static("max-age=6.5");
    /// assert_eq!(CacheControl::from_targeted([&v]), Some(CacheControl::new()));
    /// // A trailing comma: not a Dictionary.
    /// let v = HeaderValue::from_static("max-age=60,");
    /// assert_eq!(CacheControl::from_targeted([&v]), None);
    /// ```
    #[cfg_attr(docsrs, doc(cfg(feature = "cache")))]
    pub fn from_targeted<'a, I>(lines: I) -> Option<Self>
    where
        I: IntoIterator<Item = &'a HeaderValue>,
    {
        // RFC 9651 §4.2: the lines are one list (joined only when there
        // are several: the usual single line is read where it is).
        let mut lines = lines.into_iter();
        let first = lines.next()?.as_bytes();
        let value: std::borrow::Cow<'_, [u8]> = match lines.next() {
            None => first.into(),
            Some(second) => {
                let mut joined = [first, b", ", second.as_bytes()].concat();
                for line in lines {
                    joined.extend_from_slice(b", ");
                    joined.extend_from_slice(line.as_bytes());
                }
                joined.into()
            }
        };
        let mut deltas: [Option<u32>; 4] = [None; 4];
        let mut flags = [false; 7];
        let (mut no_cache, mut private) = (None, None);
        let mut members = 0usize;
        const DELTAS: [&str; 4] = [
            "max-age",
            "s-maxage",
            "stale-while-revalidate",
            "stale-if-error",
        ];
        const FLAGS: [&str; 7] = [
            "no-store",
            "must-revalidate",
            "proxy-revalidate",
            "public",
            "immutable",
            "no-transform",
            "must-understand",
        ];
        sf::dictionary(&value, |key, member| {
            members += 1;
            // A key's last value is its value: whatever came before goes,
            // and a value of the wrong type leaves the directive absent.
            let item = match member {
                Member::Item(item) => Some(item),
                Member::InnerList(..) => None,
            };
            if let Some(i) = DELTAS.iter().position(|d| *d == key) {
                deltas[i] = match item {
                    // A negative `max-age` or `s-maxage` reads as 0 (stale),
                    // as in Cache-Control; a negative stale window as none.
                    Some(Item::Integer(n)) if n < 0 => (i < 2).then_some(0),
                    Some(Item::Integer(n)) => Some(
                        u32::try_from(n).map_or(DELTA_SECONDS_MAX, |n| n.min(DELTA_SECONDS_MAX)),
                    ),
                    _ => None,
                };
            } else if let Some(i) = FLAGS.iter().position(|f| *f == key) {
                flags[i] = item == Some(Item::Boolean(true));
            } else if key == "no-cache" || key == "private" {
                let q = match item {
                    Some(Item::Boolean(true)) => Some(Qualified::All),
                    Some(Item::String(s)) => {
                        Some(field_names(&s).map_or(Qualified::All, Qualified::Fields))
                    }
                    _ => None,
                };
                if key == "no-cache" {
                    no_cache = q;
                } else {
                    private = q;
                }
            }
        })
        .ok()?;
        if members == 0 {
            return None;
        }
        let secs = |d: Option<u32>| d.map(|s| Duration::from_secs(u64::from(s)));
        let mut cc = Self::new();
        let [max_age, s_maxage, swr, sie] = deltas.map(secs);
        if let Some(d) = max_age {
            cc = cc.with_max_age(d);
        }
        if let Some(d) = s_maxage {
            cc = cc.with_s_maxage(d);
        }
        if let Some(d) = swr {
            cc = cc.with_stale_while_revalidate(d);
        }
        if let Some(d) = sie {
            cc = cc.with_stale_if_error(d);
        }
        let [
            no_store,
            must_revalidate,
            proxy_revalidate,
            public,
            immutable,
            no_transform,
            must_understand,
        ] = flags;
        for (on, set) in [
            (no_store, Self::with_no_store as fn(Self) -> Self),
            (must_revalidate, Self::with_must_revalidate),
            (proxy_revalidate, Self::with_proxy_revalidate),
            (public, Self::with_public),
            (immutable, Self::with_immutable),
            (no_transform, Self::with_no_transform),
            (must_understand, Self::with_must_understand),
        ] {
            if on {
                cc = set(cc);
            }
        }
        cc = match no_cache {
            Some(Qualified::All) => cc.with_no_cache(),
            Some(Qualified::Fields(f)) => cc.with_no_cache_fields(f),
            None => cc,
        };
        cc = match private {
            Some(Qualified::All) => cc.with_private(),
            Some(Qualified::Fields(f)) => cc.with_private_fields(f),
            None => cc,
        };
        Some(cc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(lines: &[&'static str]) -> Option<CacheControl> {
        let values: Vec<HeaderValue> = lines.iter().map(|l| HeaderValue::from_static(l)).collect();
        CacheControl::from_targeted(&values)
    }

    #[test]
    fn directives_take_their_types() {
        let cc = read(&[
            "max-age=600, s-maxage=60;x=1, stale-if-error=30",
            "no-store, private",
        ])
        .unwrap();
        assert_eq!(cc.max_age(), Some(Duration::from_secs(600)));
        assert_eq!(cc.s_maxage(), Some(Duration::from_secs(60)));
        assert_eq!(cc.stale_if_error(), Some(Duration::from_secs(30)));
        assert!(cc.no_store() && cc.private());
        // Wrongly typed members are ignored, the field stays valid.
        let cc = read(&["max-age=\"60\", no-store=1, must-revalidate=?0, private=tok"]).unwrap();
        assert_eq!(cc, CacheControl::new());
        let cc = read(&["max-age=-5, stale-if-error=-5, public, none"]).unwrap();
        assert_eq!(cc.max_age(), Some(Duration::ZERO), "negative: stale");
        assert_eq!(cc.stale_if_error(), None);
        assert!(cc.public());
        // The last value counts even when it is of the wrong type.
        for field in [
            "max-age=600, max-age=6.5",
            "no-store, no-store=(1)",
            "no-cache, no-cache=?0",
            "private, private=tok",
            "must-revalidate, must-revalidate=1",
        ] {
            let values = [HeaderValue::from_str(field).unwrap()];
            let cc = CacheControl::from_targeted(&values).unwrap();
            assert_eq!(cc, CacheControl::new(), "{field}");
        }
        // The last value of a key counts.
        let cc = read(&["max-age=10, no-store, max-age=20, no-store=?0"]).unwrap();
        assert_eq!(cc.max_age(), Some(Duration::from_secs(20)));
        assert!(!cc.no_store());
        // Overflow caps; qualified no-cache names its fields.
        let cc = read(&["max-age=999999999999999, no-cache=\"Set-Cookie, x-a\""]).unwrap();
        assert_eq!(
            cc.max_age(),
            Some(Duration::from_secs(u64::from(DELTA_SECONDS_MAX)))
        );
        assert_eq!(cc.no_cache_fields().len(), 2);
        assert!(cc.no_cache());
        let cc = read(&["private=\"bad name\""]).unwrap();
        assert!(
            cc.private() && cc.private_fields().is_empty(),
            "unqualified"
        );
    }

    #[test]
    fn empty_or_invalid_fields_are_none() {
        for bad in [
            &[""][..],
            &["   "],
            &["max-age=60,"],
            &["max-age=\"60"],
            &["Max-Age=60"],
            &["a=1", ""],
        ] {
            assert_eq!(read(bad), None, "{bad:?}");
        }
        assert_eq!(read(&[]), None);
    }
}
