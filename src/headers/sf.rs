//! A reader for Structured Field Dictionaries and Items (RFC 9651, which
//! obsoletes RFC 8941), as much as the headers this crate reads need:
//! every bare item type is parsed (so an unknown member cannot make a
//! valid field fail), and each member is handed to the caller, which keeps
//! what it knows. Parameters are parsed and dropped. Time is linear in the
//! input; nothing is kept beyond the member being handed on.

/// A member's value, as the caller sees it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Item<'a> {
    /// `"..."`, unescaped.
    String(String),
    /// A token.
    Token(&'a str),
    /// `:base64:`, decoded.
    Bytes(Vec<u8>),
    /// An integer (at most 15 digits).
    Integer(i64),
    /// `?1` or `?0`; a dictionary member without a value is `true`.
    Boolean(bool),
    /// A decimal, a date or a display string (the headers read here use
    /// none).
    Other,
}

/// A member: one item, or an inner list of items.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Member<'a> {
    Item(Item<'a>),
    /// At most `MAX_INNER` items are kept; `true` when more were dropped.
    InnerList(Vec<Item<'a>>, bool),
}

/// Items kept from one inner list.
pub(crate) const MAX_INNER: usize = 32;

/// The input is not a Structured Field Dictionary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Invalid;

struct Parser<'a> {
    s: &'a [u8],
    at: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.at).copied()
    }

    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn skip_sp(&mut self) {
        while self.peek() == Some(b' ') {
            self.at += 1;
        }
    }

    fn skip_ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.at += 1;
        }
    }

    /// `key = ( lcalpha / "*" ) *( lcalpha / DIGIT / "_" / "-" / "." / "*" )`
    fn key(&mut self) -> Result<&'a str, Invalid> {
        let start = self.at;
        match self.peek() {
            Some(b'a'..=b'z' | b'*') => self.at += 1,
            _ => return Err(Invalid),
        }
        while let Some(b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'.' | b'*') = self.peek() {
            self.at += 1;
        }
        std::str::from_utf8(&self.s[start..self.at]).map_err(|_| Invalid)
    }

    fn bare_item(&mut self) -> Result<Item<'a>, Invalid> {
        match self.peek() {
            Some(b'"') => self.string().map(Item::String),
            Some(b':') => self.bytes().map(Item::Bytes),
            Some(b'?') => {
                self.at += 1;
                match self.peek() {
                    Some(b @ (b'0' | b'1')) => {
                        self.at += 1;
                        Ok(Item::Boolean(b == b'1'))
                    }
                    _ => Err(Invalid),
                }
            }
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(b'@') => {
                // A date (RFC 9651 §3.3.7): `@` and an integer.
                self.at += 1;
                match self.peek() {
                    Some(b'-' | b'0'..=b'9') => self.integer().map(|()| Item::Other),
                    _ => Err(Invalid),
                }
            }
            Some(b'%') => self.display_string().map(|()| Item::Other),
            Some(b'A'..=b'Z' | b'a'..=b'z' | b'*') => self.token().map(Item::Token),
            _ => Err(Invalid),
        }
    }

    /// RFC 8941 §4.2.8: `"` then printable ASCII, `\"` and `\\`, `"`.
    fn string(&mut self) -> Result<String, Invalid> {
        self.at += 1;
        let mut out = String::new();
        loop {
            match self.peek() {
                None => return Err(Invalid),
                Some(b'"') => {
                    self.at += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.at += 1;
                    match self.peek() {
                        Some(c @ (b'"' | b'\\')) => {
                            out.push(char::from(c));
                            self.at += 1;
                        }
                        _ => return Err(Invalid),
                    }
                }
                Some(c @ 0x20..=0x7e) => {
                    out.push(char::from(c));
                    self.at += 1;
                }
                Some(_) => return Err(Invalid),
            }
        }
    }

    /// RFC 8941 §4.2.6: `ALPHA / "*"`, then tchar, `:` and `/`.
    fn token(&mut self) -> Result<&'a str, Invalid> {
        let start = self.at;
        self.at += 1;
        while let Some(c) = self.peek() {
            if super::util::is_tchar(c) || c == b':' || c == b'/' {
                self.at += 1;
            } else {
                break;
            }
        }
        std::str::from_utf8(&self.s[start..self.at]).map_err(|_| Invalid)
    }

    /// RFC 9651 §4.2.7: `:` base64 `:`; padding may be left out and
    /// non-zero padding bits are accepted, as the RFC asks of parsers.
    fn bytes(&mut self) -> Result<Vec<u8>, Invalid> {
        use base64::Engine as _;
        use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
        const LENIENT: GeneralPurpose = GeneralPurpose::new(
            &base64::alphabet::STANDARD,
            GeneralPurposeConfig::new()
                .with_decode_padding_mode(DecodePaddingMode::Indifferent)
                .with_decode_allow_trailing_bits(true),
        );
        self.at += 1;
        let start = self.at;
        while let Some(c) = self.peek() {
            if c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'=') {
                self.at += 1;
            } else {
                break;
            }
        }
        let body = &self.s[start..self.at];
        if !self.eat(b':') {
            return Err(Invalid);
        }
        LENIENT.decode(body).map_err(|_| Invalid)
    }

    /// RFC 9651 §4.2.4: an integer (up to 15 digits).
    fn integer(&mut self) -> Result<(), Invalid> {
        self.eat(b'-');
        let start = self.at;
        while let Some(b'0'..=b'9') = self.peek() {
            self.at += 1;
        }
        if (1..=15).contains(&(self.at - start)) {
            Ok(())
        } else {
            Err(Invalid)
        }
    }

    /// RFC 9651 §4.2.10: `%"`, printable ASCII but `%` and `"`, or `%` and
    /// two lowercase hex digits, `"`; the bytes must be UTF-8.
    fn display_string(&mut self) -> Result<(), Invalid> {
        self.at += 1;
        if !self.eat(b'"') {
            return Err(Invalid);
        }
        let mut bytes = Vec::new();
        loop {
            match self.peek() {
                Some(b'"') => {
                    self.at += 1;
                    return std::str::from_utf8(&bytes).map(|_| ()).map_err(|_| Invalid);
                }
                Some(b'%') => {
                    let hex = |c: u8| match c {
                        b'0'..=b'9' => Some(c - b'0'),
                        b'a'..=b'f' => Some(c - b'a' + 10),
                        _ => None,
                    };
                    let hi = self.s.get(self.at + 1).copied().and_then(hex);
                    let lo = self.s.get(self.at + 2).copied().and_then(hex);
                    let (Some(hi), Some(lo)) = (hi, lo) else {
                        return Err(Invalid);
                    };
                    bytes.push(hi << 4 | lo);
                    self.at += 3;
                }
                Some(c @ 0x20..=0x7e) => {
                    bytes.push(c);
                    self.at += 1;
                }
                _ => return Err(Invalid),
            }
        }
    }

    /// RFC 9651 §4.2.4: an integer (up to 15 digits) or a decimal (up to
    /// 12 integer digits and 3 fractional ones).
    fn number(&mut self) -> Result<Item<'a>, Invalid> {
        let start = self.at;
        self.eat(b'-');
        let (mut int, mut frac, mut dot) = (0usize, 0usize, false);
        while let Some(c) = self.peek() {
            match c {
                b'0'..=b'9' if dot => frac += 1,
                b'0'..=b'9' => int += 1,
                b'.' if !dot && int > 0 => dot = true,
                _ => break,
            }
            self.at += 1;
        }
        if dot {
            return if (1..=12).contains(&int) && (1..=3).contains(&frac) {
                Ok(Item::Other)
            } else {
                Err(Invalid)
            };
        }
        if !(1..=15).contains(&int) {
            return Err(Invalid);
        }
        // At most 15 digits and a sign: always an i64.
        std::str::from_utf8(&self.s[start..self.at])
            .ok()
            .and_then(|n| n.parse().ok())
            .map(Item::Integer)
            .ok_or(Invalid)
    }

    /// `*( ";" *SP key [ "=" bare-item ] )`, dropped.
    fn params(&mut self) -> Result<(), Invalid> {
        while self.eat(b';') {
            self.skip_sp();
            self.key()?;
            if self.eat(b'=') {
                self.bare_item()?;
            }
        }
        Ok(())
    }

    fn member_value(&mut self) -> Result<Member<'a>, Invalid> {
        if !self.eat(b'(') {
            let item = self.bare_item()?;
            self.params()?;
            return Ok(Member::Item(item));
        }
        let (mut items, mut dropped) = (Vec::new(), false);
        loop {
            self.skip_sp();
            if self.eat(b')') {
                self.params()?;
                return Ok(Member::InnerList(items, dropped));
            }
            let item = self.bare_item()?;
            self.params()?;
            if items.len() < MAX_INNER {
                items.push(item);
            } else {
                dropped = true;
            }
            match self.peek() {
                Some(b' ' | b')') => {}
                _ => return Err(Invalid),
            }
        }
    }
}

/// Reads `input` as an Item (RFC 8941 §4.2.3): a bare item and its
/// parameters (dropped), with spaces around.
#[cfg(any(test, feature = "compression"))]
pub(crate) fn item(input: &[u8]) -> Result<Item<'_>, Invalid> {
    let mut p = Parser { s: input, at: 0 };
    p.skip_sp();
    let item = p.bare_item()?;
    p.params()?;
    p.skip_sp();
    if p.peek().is_some() {
        return Err(Invalid);
    }
    Ok(item)
}

/// Reads `input` as a Dictionary, handing each member to `member` in
/// order (a key may come twice: the last one is the member's value, RFC
/// 8941 §4.2.2). A member without a value is the boolean true.
pub(crate) fn dictionary<'a>(
    input: &'a [u8],
    mut member: impl FnMut(&'a str, Member<'a>),
) -> Result<(), Invalid> {
    let mut p = Parser { s: input, at: 0 };
    p.skip_sp();
    if p.peek().is_none() {
        return Ok(());
    }
    loop {
        let key = p.key()?;
        let value = if p.eat(b'=') {
            p.member_value()?
        } else {
            p.params()?;
            Member::Item(Item::Boolean(true))
        };
        member(key, value);
        p.skip_ows();
        match p.peek() {
            None => return Ok(()),
            Some(b',') => {
                p.at += 1;
                p.skip_ows();
                if p.peek().is_none() {
                    // A trailing comma.
                    return Err(Invalid);
                }
            }
            Some(_) => return Err(Invalid),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(s: &str) -> Result<Vec<(String, Member<'_>)>, Invalid> {
        let mut out = Vec::new();
        dictionary(s.as_bytes(), |k, v| out.push((k.to_owned(), v)))?;
        Ok(out)
    }

    #[test]
    fn members_of_every_kind() {
        let m = read(
            r#"match="/js/app.*.js", match-dest=("script" "style"), id="v\"1\\", type=raw, n=-12, d=3.25, b=?0, flag, bytes=:aGVsbG8=:;p=1, x;y"#,
        )
        .unwrap();
        assert_eq!(
            m[0],
            (
                "match".into(),
                Member::Item(Item::String("/js/app.*.js".into()))
            )
        );
        assert_eq!(
            m[1].1,
            Member::InnerList(
                vec![Item::String("script".into()), Item::String("style".into())],
                false
            )
        );
        assert_eq!(m[2].1, Member::Item(Item::String("v\"1\\".into())));
        assert_eq!(m[3].1, Member::Item(Item::Token("raw")));
        assert_eq!(m[4].1, Member::Item(Item::Integer(-12)));
        assert_eq!(m[5].1, Member::Item(Item::Other), "a decimal");
        assert_eq!(m[6].1, Member::Item(Item::Boolean(false)));
        assert_eq!(
            m[7].1,
            Member::Item(Item::Boolean(true)),
            "a bare key is true"
        );
        assert_eq!(m[8].1, Member::Item(Item::Bytes(b"hello".to_vec())));
        assert_eq!(m.len(), 10);
        assert_eq!(read("").unwrap(), vec![]);
        assert_eq!(read("  a=1").unwrap().len(), 1);
        // RFC 9651's dates and display strings; OWS (tabs too) around
        // commas; `*` keys; parameters after a space; empty inner lists.
        let m = read(
            "a=@1700000000,\tb=%\"caf%c3%a9\" ,*c;  p, d=( 1 ), e=(), f=:aGVsbG8:, g=:aGVsbG9=:, h=-0.5",
        )
        .unwrap();
        let keys: Vec<&str> = m.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["a", "b", "*c", "d", "e", "f", "g", "h"]);
        assert_eq!(m[3].1, Member::InnerList(vec![Item::Integer(1)], false));
        assert_eq!(m[4].1, Member::InnerList(vec![], false));
        assert_eq!(m[5].1, Member::Item(Item::Bytes(b"hello".to_vec())));
        // Non-zero padding bits are accepted (`o=` would be `o` exactly).
        assert_eq!(m[6].1, Member::Item(Item::Bytes(b"hello".to_vec())));
        assert_eq!(read("a=1\t").unwrap().len(), 1, "trailing OWS");
        assert_eq!(
            item(b" :aGVsbG8=:;x=?1 "),
            Ok(Item::Bytes(b"hello".to_vec()))
        );
    }

    #[test]
    fn invalid_fields() {
        for bad in [
            "A=1",
            "a=1,",
            "a=1 b=2",
            "a=\"unterminated",
            "a=\"tab\there\"",
            "a=\"\\x\"",
            "a=:not base64!:",
            "a=:aGVsbG8",
            "a=1234567890123456",
            "a=1.2345",
            "a=(\"x\"\"y\")",
            "a=(1 2",
            "a=?2",
            "a=@",
            "a=@1.5",
            "a=%\"%4\"",
            "a=%\"%C3%A9\"",
            "a=%\"%c3\"",
            "a=:abcd==:",
            "a=:=:",
            "\ta=1",
            "a=()x",
            "a=é",
            "a=1;B=2",
        ] {
            assert_eq!(read(bad), Err(Invalid), "{bad}");
        }
    }

    #[test]
    fn inner_lists_keep_a_bounded_part() {
        let list = format!("a=({})", vec!["x"; MAX_INNER + 5].join(" "));
        let m = read(&list).unwrap();
        match &m[0].1 {
            Member::InnerList(items, dropped) => {
                assert_eq!(items.len(), MAX_INNER);
                assert!(dropped);
            }
            other => panic!("{other:?}"),
        }
    }
}
