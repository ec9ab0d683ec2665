//! What the query cache's Redis tier writes: stored values (a header of
//! times and tags, then the JSON), invalidation messages, and key patterns
//! for `SCAN`.

use std::time::{SystemTime, UNIX_EPOCH};

use super::invalidate::{Glob, Invalidate, Token};
use super::key::QueryKey;

/// What a stored value starts with: a version, so a later format is
/// never misread.
const MAGIC: &[u8; 4] = b"tpq2";

/// A Redis glob that matches `text` literally.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\' | '^') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Our glob as Redis's (same `*` and `?`; everything else literal).
pub(crate) fn redis_glob(g: &Glob) -> String {
    let mut out = String::new();
    for t in g.tokens() {
        match t {
            Token::Char(c) => out.push_str(&escape(c.encode_utf8(&mut [0; 4]))),
            Token::Any => out.push('*'),
            // Ours is one character, Redis's one byte: `*` selects at
            // least as much (deleting more is safe).
            Token::One => out.push('*'),
        }
    }
    out
}

/// A message on the invalidation channel: the sender's id, a kind, its
/// argument.
pub(crate) fn encode_message(id: u64, what: &Invalidate) -> String {
    let (kind, arg) = match what {
        Invalidate::Key(k) => ("k", k.as_str()),
        Invalidate::Namespace(s) => ("n", s.as_str()),
        Invalidate::Prefix(s) => ("p", s.as_str()),
        Invalidate::Pattern(g) => ("g", g.as_str()),
        Invalidate::Tag(s) => ("t", s.as_str()),
        Invalidate::All => ("a", ""),
    };
    crate::redis_conn::frame(id, kind, arg)
}

pub(crate) fn decode_message(msg: &str) -> Option<(u64, Invalidate)> {
    let (id, kind, arg) = crate::redis_conn::unframe(msg)?;
    let what = match kind {
        "k" => Invalidate::Key(QueryKey::from_text(arg)),
        "n" => Invalidate::Namespace(arg.to_owned()),
        "p" => Invalidate::Prefix(arg.to_owned()),
        "g" => Invalidate::pattern(arg).ok()?,
        "t" => Invalidate::Tag(arg.to_owned()),
        "a" => Invalidate::All,
        _ => return None,
    };
    Some((id, what))
}

/// A stored value: its freshness and stale limits (Unix milliseconds), its
/// tags, its JSON.
pub(crate) struct Stored<'a> {
    pub(crate) fresh_ms: u64,
    pub(crate) stale_ms: u64,
    pub(crate) tags: Vec<Box<str>>,
    pub(crate) json: &'a [u8],
}

pub(crate) fn encode_value(
    fresh_ms: u64,
    stale_ms: u64,
    tags: &[Box<str>],
    json: &[u8],
) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(
        4 + 16 + 2 + json.len() + tags.iter().map(|t| t.len() + 2).sum::<usize>(),
    );
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&fresh_ms.to_be_bytes());
    out.extend_from_slice(&stale_ms.to_be_bytes());
    out.extend_from_slice(&u16::try_from(tags.len()).ok()?.to_be_bytes());
    for t in tags {
        out.extend_from_slice(&u16::try_from(t.len()).ok()?.to_be_bytes());
        out.extend_from_slice(t.as_bytes());
    }
    out.extend_from_slice(json);
    Some(out)
}

pub(crate) fn decode_value(b: &[u8]) -> Option<Stored<'_>> {
    let rest = b.strip_prefix(MAGIC)?;
    let (fresh, rest) = rest.split_first_chunk::<8>()?;
    let (stale, rest) = rest.split_first_chunk::<8>()?;
    let (n, mut rest) = rest.split_first_chunk::<2>()?;
    let mut tags = Vec::with_capacity(usize::from(u16::from_be_bytes(*n)).min(64));
    for _ in 0..u16::from_be_bytes(*n) {
        let (len, r) = rest.split_first_chunk::<2>()?;
        let len = usize::from(u16::from_be_bytes(*len));
        if r.len() < len {
            return None;
        }
        let (tag, r) = r.split_at(len);
        tags.push(std::str::from_utf8(tag).ok()?.into());
        rest = r;
    }
    Some(Stored {
        fresh_ms: u64::from_be_bytes(*fresh),
        stale_ms: u64::from_be_bytes(*stale),
        tags,
        json: rest,
    })
}

/// A value as Redis holds it: the namespace's and everything's
/// generations it was written under (decimal, each followed by `:`, as the
/// store script writes them), then the encoded value.
pub(crate) fn split_generations(b: &[u8]) -> Option<(u64, u64, &[u8])> {
    fn number(field: Option<&[u8]>) -> Option<u64> {
        std::str::from_utf8(field?).ok()?.parse().ok()
    }
    let mut fields = b.splitn(3, |c| *c == b':');
    let ns = number(fields.next())?;
    let all = number(fields.next())?;
    Some((ns, all, fields.next()?))
}

pub(crate) fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_and_values_round_trip() {
        for what in [
            Invalidate::Key(QueryKey::new("user:42|x")),
            Invalidate::Namespace("user".into()),
            Invalidate::Prefix("user:4".into()),
            Invalidate::pattern("user:*:orders").unwrap(),
            Invalidate::Tag("t|1".into()),
            Invalidate::All,
        ] {
            assert_eq!(
                decode_message(&encode_message(0xab, &what)),
                Some((0xab, what))
            );
        }
        assert_eq!(decode_message("zz|a|"), None);
        let tags: Vec<Box<str>> = vec!["a".into(), "é".into()];
        let b = encode_value(5, 9, &tags, b"[1,2]").unwrap();
        let s = decode_value(&b).unwrap();
        assert_eq!(
            (s.fresh_ms, s.stale_ms, s.tags, s.json),
            (5, 9, tags, &b"[1,2]"[..])
        );
        assert!(decode_value(&b[..10]).is_none(), "cut in the times");
        assert!(decode_value(&b[..24]).is_none(), "cut in the tags");
        assert!(decode_value(b"nope").is_none());
    }

    #[test]
    fn redis_patterns_match_literally_but_for_stars_and_marks() {
        assert_eq!(escape("a*b?[c]\\"), r"a\*b\?\[c\]\\");
        let Invalidate::Pattern(g) = Invalidate::pattern(r"user:*:ord?rs[1]\*").unwrap() else {
            unreachable!()
        };
        assert_eq!(redis_glob(&g), r"user:*:ord*rs\[1\]\*");
        assert_eq!(
            split_generations(b"3:0:tpq2\x00:"),
            Some((3, 0, &b"tpq2\x00:"[..]))
        );
        assert_eq!(split_generations(b"3:x:v"), None);
        assert_eq!(split_generations(b"3:"), None);
    }
}
