//! A request field's value as the cache compares it when a response
//! varies on the field (RFC 9111 §4.1 lets a cache normalize values whose
//! semantics are the same).

use http::header::{self, HeaderMap, HeaderName};

/// Fields whose values compare case-insensitively (their grammars are
/// tokens and language tags).
fn case_insensitive(name: &HeaderName) -> bool {
    name == header::ACCEPT_LANGUAGE || name == header::ACCEPT_CHARSET || name == header::ACCEPT
}

/// A request field's value as the cache compares it: every line joined as
/// one list, list elements trimmed and joined with ", ", runs of
/// whitespace folded, lowercased where the field is case-insensitive.
/// `None` when the request lacks the field. (`Accept-Encoding` is read by
/// [`RequestVary`](super::vary::RequestVary).)
pub(crate) fn normalize(name: &HeaderName, request_headers: &HeaderMap) -> Option<Box<[u8]>> {
    let mut lines = request_headers.get_all(name).iter().peekable();
    lines.peek()?;
    if name == header::FORWARDED {
        return Some(forwarded_essentials(lines));
    }
    let lower = case_insensitive(name);
    let mut out = Vec::new();
    for line in lines {
        for elem in line.as_bytes().split(|b| *b == b',') {
            let elem = elem.trim_ascii();
            if elem.is_empty() {
                continue;
            }
            if !out.is_empty() {
                out.extend_from_slice(b", ");
            }
            let mut last_space = false;
            for &b in elem {
                let ws = b == b' ' || b == b'\t';
                if ws {
                    if !last_space {
                        out.push(b' ');
                    }
                } else {
                    out.push(if lower { b.to_ascii_lowercase() } else { b });
                }
                last_space = ws;
            }
        }
    }
    Some(out.into_boxed_slice())
}

/// `Forwarded` (RFC 7239) reduced to what frameworks read as the
/// request's own host and scheme: each element's `host` and `proto`
/// parameters (names lowercased, values as sent, quotes included), pairs
/// joined by `;`, elements by `,`. `for` and `by`, which name the client
/// and differ per client, are dropped, so a proxy that adds them to every
/// request does not make every client a variant of its own. Quote-aware
/// (a `,` or `;` inside a quoted value separates nothing); one pass.
fn forwarded_essentials<'a>(lines: impl Iterator<Item = &'a http::HeaderValue>) -> Box<[u8]> {
    let mut out = Vec::new();
    for (n, line) in lines.enumerate() {
        if n > 0 {
            out.push(b',');
        }
        let v = line.as_bytes();
        let (mut start, mut quoted, mut escaped) = (0, false, false);
        let mut kept_in_element = false;
        for i in 0..=v.len() {
            let b = v.get(i).copied();
            if quoted {
                match b {
                    Some(b'\\') if !escaped => escaped = true,
                    Some(b'"') if !escaped => quoted = false,
                    _ => escaped = false,
                }
                if b.is_some() {
                    continue;
                }
            }
            match b {
                Some(b'"') => quoted = true,
                Some(b';' | b',') | None => {
                    let pair = v[start..i].trim_ascii();
                    if let Some(eq) = pair.iter().position(|&c| c == b'=') {
                        let key = pair[..eq].trim_ascii();
                        if key.eq_ignore_ascii_case(b"host") || key.eq_ignore_ascii_case(b"proto") {
                            if kept_in_element {
                                out.push(b';');
                            }
                            out.extend(key.iter().map(u8::to_ascii_lowercase));
                            out.push(b'=');
                            out.extend_from_slice(pair[eq + 1..].trim_ascii());
                            kept_in_element = true;
                        }
                    }
                    if b == Some(b',') {
                        out.push(b',');
                        kept_in_element = false;
                    }
                    start = i + 1;
                }
                _ => {}
            }
        }
    }
    out.into_boxed_slice()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::entry::tests::headers as req;

    #[test]
    fn forwarded_keeps_host_and_proto_only() {
        let value = |v: &str| {
            let h = req(&[("forwarded", v)]);
            String::from_utf8(normalize(&header::FORWARDED, &h).unwrap().into_vec()).unwrap()
        };
        // Per-client parameters don't split the variants.
        assert_eq!(
            value("for=192.0.2.1;proto=https"),
            value("for=198.51.100.7; proto=https")
        );
        assert_eq!(value("for=192.0.2.1;proto=https"), "proto=https");
        assert_eq!(value("for=1.1.1.1"), "");
        // Host and proto do, element by element.
        assert_eq!(
            value("for=a;Host=Evil.test;proto=http, for=b;host=x"),
            "host=Evil.test;proto=http,host=x"
        );
        assert_ne!(value("host=a"), value("host=b"));
        // Quoted separators separate nothing.
        assert_eq!(value(r#"for="x;host=evil";host=real"#), "host=real");
        assert_eq!(value(r#"host="a,b", for=c"#), r#"host="a,b","#);
        assert_eq!(value(r#"host="a\"b;c""#), r#"host="a\"b;c""#);
        // Several lines are one list.
        let h = req(&[("forwarded", "host=a"), ("forwarded", "for=x")]);
        let both = normalize(&header::FORWARDED, &h).unwrap();
        assert_eq!(&*both, b"host=a,");
        // Linear: 30,000 elements in one pass.
        let long = vec!["for=10.0.0.1;proto=http"; 30_000].join(", ");
        assert_eq!(value(&long).len(), 30_000 * 10 + 29_999);
    }
}
