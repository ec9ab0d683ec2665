//! Small lexers shared by the header parsers: comma-separated lists that may
//! hold quoted strings, `name=value` parameters and delta-seconds.
//!
//! Everything here works on bytes and never panics: header values may hold
//! obs-text (bytes ≥ 0x80) or anything else a client chooses to send.

use std::borrow::Cow;

/// `tchar` from RFC 9110 §5.6.2.
pub(crate) const fn is_tchar(b: u8) -> bool {
    matches!(b,
        b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-' | b'.'
        | b'^' | b'_' | b'`' | b'|' | b'~'
        | b'0'..=b'9' | b'a'..=b'z' | b'A'..=b'Z')
}

/// `token` from RFC 9110 §5.6.2: one or more tchar.
pub(crate) fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_tchar(b))
}

/// Optional white space (RFC 9110 §5.6.3).
pub(crate) const fn is_ows(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

pub(crate) fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if is_ows(*first) {
            s = rest;
        } else {
            break;
        }
    }
    while let [rest @ .., last] = s {
        if is_ows(*last) {
            s = rest;
        } else {
            break;
        }
    }
    s
}

/// Iterator over the elements of a `#rule` list (RFC 9110 §5.6.1).
///
/// Commas inside a quoted string don't split. Empty elements are skipped, as
/// recipients must accept them. Elements are trimmed of optional white space.
#[derive(Debug, Clone)]
pub(crate) struct ListIter<'a> {
    rest: &'a [u8],
}

pub(crate) fn split_list(input: &[u8]) -> ListIter<'_> {
    ListIter { rest: input }
}

impl<'a> Iterator for ListIter<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        loop {
            if self.rest.is_empty() {
                return None;
            }
            let end = find_unquoted(self.rest, b',');
            let (elem, rest) = match end {
                Some(i) => (&self.rest[..i], &self.rest[i + 1..]),
                None => (self.rest, &[][..]),
            };
            self.rest = rest;
            let elem = trim_ows(elem);
            if !elem.is_empty() {
                return Some(elem);
            }
        }
    }
}

/// Index of the first `needle` that is not inside a quoted string.
///
/// An unterminated quoted string runs to the end of the input.
pub(crate) fn find_unquoted(input: &[u8], needle: u8) -> Option<usize> {
    let mut in_quotes = false;
    let mut escaped = false;
    for (i, &b) in input.iter().enumerate() {
        if in_quotes {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_quotes = false;
            }
        } else if b == b'"' {
            in_quotes = true;
        } else if b == needle {
            return Some(i);
        }
    }
    None
}

/// Splits `name[=value]` into a trimmed name and an optional raw value.
pub(crate) fn split_name_value(elem: &[u8]) -> (&[u8], Option<&[u8]>) {
    match find_unquoted(elem, b'=') {
        Some(i) => (trim_ows(&elem[..i]), Some(trim_ows(&elem[i + 1..]))),
        None => (trim_ows(elem), None),
    }
}

/// Decodes a parameter value: a token as is, or a quoted-string without its
/// quotes and with its quoted-pairs resolved (RFC 9110 §5.6.4).
///
/// Returns `None` when the value is neither (an unterminated quote, bytes
/// after the closing quote, or characters a token may not hold).
pub(crate) fn unquote(value: &[u8]) -> Option<Cow<'_, [u8]>> {
    match value {
        [b'"', inner @ ..] => {
            let mut out: Option<Vec<u8>> = None;
            let mut escaped = false;
            for (i, &b) in inner.iter().enumerate() {
                if escaped {
                    escaped = false;
                    if let Some(o) = out.as_mut() {
                        o.push(b);
                    }
                    continue;
                }
                match b {
                    b'\\' => {
                        escaped = true;
                        out.get_or_insert_with(|| inner[..i].to_vec());
                    }
                    b'"' => {
                        // The closing quote must be the last byte.
                        if i + 1 != inner.len() {
                            return None;
                        }
                        return Some(match out {
                            Some(o) => Cow::Owned(o),
                            None => Cow::Borrowed(&inner[..i]),
                        });
                    }
                    // Control characters other than HTAB are not qdtext.
                    0x00..=0x08 | 0x0a..=0x1f | 0x7f => return None,
                    _ => {
                        if let Some(o) = out.as_mut() {
                            o.push(b);
                        }
                    }
                }
            }
            None
        }
        _ if is_token(value) => Some(Cow::Borrowed(value)),
        _ => None,
    }
}

/// The value a cache must use for a delta-seconds that is too large
/// (RFC 9111 §1.2.2).
pub(crate) const DELTA_SECONDS_MAX: u32 = 1 << 31;

/// Parses `delta-seconds = 1*DIGIT` (RFC 9111 §1.2.2), saturating at 2^31.
pub(crate) fn parse_delta_seconds(s: &[u8]) -> Option<u32> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut acc: u64 = 0;
    for &d in s {
        acc = acc * 10 + u64::from(d - b'0');
        if acc >= u64::from(DELTA_SECONDS_MAX) {
            return Some(DELTA_SECONDS_MAX);
        }
    }
    // Cannot fail: acc < 2^31 here.
    Some(u32::try_from(acc).unwrap_or(DELTA_SECONDS_MAX))
}

/// Writes `value` as a quoted-string, escaping `"` and `\`.
pub(crate) fn write_quoted(out: &mut String, value: &str) {
    out.push('"');
    for c in value.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(s: &str) -> Vec<&str> {
        split_list(s.as_bytes())
            .map(|e| std::str::from_utf8(e).unwrap())
            .collect()
    }

    #[test]
    fn lists_skip_empty_elements() {
        // RFC 9110 §5.6.1's own examples of valid lists with empty elements.
        assert_eq!(list("foo,bar"), ["foo", "bar"]);
        assert_eq!(list("foo ,bar,"), ["foo", "bar"]);
        assert_eq!(list("foo , ,bar,charlie"), ["foo", "bar", "charlie"]);
        assert_eq!(list(""), Vec::<&str>::new());
        assert_eq!(list(","), Vec::<&str>::new());
        assert_eq!(list(",   ,"), Vec::<&str>::new());
    }

    #[test]
    fn lists_keep_commas_in_quotes() {
        assert_eq!(
            list(r#"private="a, b", max-age=1"#),
            [r#"private="a, b""#, "max-age=1"]
        );
        assert_eq!(list(r#"x="a\", b", y"#), [r#"x="a\", b""#, "y"]);
        // Unterminated quote runs to the end instead of panicking.
        assert_eq!(list(r#"x="a, b"#), [r#"x="a, b"#]);
    }

    #[test]
    fn unquote_tokens_and_strings() {
        assert_eq!(unquote(b"abc").as_deref(), Some(&b"abc"[..]));
        assert_eq!(unquote(b"\"a b\"").as_deref(), Some(&b"a b"[..]));
        assert_eq!(unquote(br#""a\"b""#).as_deref(), Some(&b"a\"b"[..]));
        assert_eq!(unquote(b"\"\"").as_deref(), Some(&b""[..]));
        assert_eq!(unquote(b"\"abc"), None);
        assert_eq!(unquote(b"\"abc\"x"), None);
        assert_eq!(unquote(b"a b"), None);
        assert_eq!(unquote(b""), None);
        assert_eq!(unquote(b"\"\\"), None);
    }

    #[test]
    fn delta_seconds() {
        assert_eq!(parse_delta_seconds(b"0"), Some(0));
        assert_eq!(parse_delta_seconds(b"3600"), Some(3600));
        assert_eq!(parse_delta_seconds(b"2147483647"), Some(2_147_483_647));
        assert_eq!(parse_delta_seconds(b"2147483648"), Some(DELTA_SECONDS_MAX));
        assert_eq!(
            parse_delta_seconds(b"99999999999999999999999999999"),
            Some(DELTA_SECONDS_MAX)
        );
        assert_eq!(parse_delta_seconds(b""), None);
        assert_eq!(parse_delta_seconds(b"-1"), None);
        assert_eq!(parse_delta_seconds(b"+1"), None);
        assert_eq!(parse_delta_seconds(b"1.5"), None);
        assert_eq!(parse_delta_seconds(b" 1"), None);
    }
}
