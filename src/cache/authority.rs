//! The authority a request is for, checked and normalized once: what the
//! cache keys on and what the inner service sees as `Host`.
//!
//! RFC 9112 §3.2: an HTTP/1.1 request without `Host`, any request with
//! more than one `Host` line, or with a `Host` that is not
//! `uri-host [ ":" port ]` (RFC 3986 §3.2.2) gets 400. RFC 9112 §3.2.2 and
//! RFC 9113 §8.3.1: the authority of an absolute-form target or of
//! HTTP/2's `:authority` wins over `Host`. The winner is normalized
//! (lowercase, IPv6 literals in their canonical text, the port as a number
//! and dropped when it is the scheme's default) and written back into the
//! request, so the inner service never sees a `Host` other than the one
//! the cache keyed on.

use std::borrow::Cow;
use std::net::Ipv6Addr;

use http::header::{self, HeaderValue};
use http::uri::{Authority, Uri};
use http::{Request, Version};

use super::key::CacheKey;

/// Why a request's authority was refused (each a 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// An HTTP/1.1 request with neither `Host` nor an absolute-form target.
    Missing,
    /// More than one `Host` line.
    Repeated,
    /// A `Host` or target authority that is not `uri-host [ ":" port ]`
    /// (userinfo included: RFC 9110 §4.2.4).
    Invalid,
}

impl Refused {
    pub(crate) const fn reason(self) -> &'static str {
        match self {
            Self::Missing => "missing Host",
            Self::Repeated => "more than one Host",
            Self::Invalid => "invalid Host or authority",
        }
    }
}

/// Finds, checks and normalizes the authority of `req`, then makes its
/// `Host` (and an absolute target's authority) exactly that value.
/// Returns the cache key of the request: that authority (empty for an
/// HTTP/1.0 or HTTP/2 request that names none), then the path and query.
pub(crate) fn settle<B>(req: &mut Request<B>) -> Result<CacheKey, Refused> {
    let (key, host_ok, uri_ok) = {
        let mut hosts = req.headers().get_all(header::HOST).iter();
        let host = hosts.next();
        if hosts.next().is_some() {
            return Err(Refused::Repeated);
        }
        if host.is_none() && req.version() == Version::HTTP_11 {
            // Even with an absolute-form target (RFC 9112 §3.2).
            return Err(Refused::Missing);
        }
        // A Host present must be valid even when the target's authority
        // wins (§3.2: "a Host header field with an invalid field value").
        let host_norm = match host {
            Some(v) => Some(normalize(v.as_bytes(), req.uri()).ok_or(Refused::Invalid)?),
            None => None,
        };
        let (normalized, uri_ok) = match req.uri().authority() {
            Some(a) => {
                let n = normalize(a.as_str().as_bytes(), req.uri()).ok_or(Refused::Invalid)?;
                let same = a.as_str() == n;
                (n, same)
            }
            None => (host_norm.unwrap_or(Cow::Borrowed("")), true),
        };
        let host_ok = match host {
            Some(h) => h.as_bytes() == normalized.as_bytes(),
            None => normalized.is_empty(),
        };
        let key = CacheKey::normalized(&normalized, req.uri());
        (key, host_ok, uri_ok)
    };
    if !host_ok {
        let value = HeaderValue::from_str(key.host()).map_err(|_| Refused::Invalid)?;
        req.headers_mut().insert(header::HOST, value);
    }
    if !uri_ok {
        let authority: Authority = key.host().parse().map_err(|_| Refused::Invalid)?;
        let mut parts = std::mem::take(req.uri_mut()).into_parts();
        parts.authority = Some(authority);
        *req.uri_mut() = Uri::from_parts(parts).map_err(|_| Refused::Invalid)?;
    }
    Ok(key)
}

/// `uri-host [ ":" port ]` normalized: lowercase, canonical IPv6 text, a
/// numeric port without leading zeros, the default port of `uri`'s scheme
/// dropped (80 when the target names no scheme, as on a plain HTTP
/// listener). `None` when `value` does not match the grammar.
pub(crate) fn normalize<'a>(value: &'a [u8], uri: &Uri) -> Option<Cow<'a, str>> {
    let (host, port) = split_port(value)?;
    let default_port = if uri.scheme_str() == Some("https") {
        443
    } else {
        80
    };
    let mut canonical_port = true;
    let port = match port {
        None => None,
        Some(b"") => {
            canonical_port = false;
            None
        }
        Some(digits) => {
            if !digits.iter().all(u8::is_ascii_digit) {
                return None;
            }
            // Leading zeros are allowed by the grammar, not more than a
            // 16-bit number.
            let trimmed = match digits.iter().position(|&d| d != b'0') {
                Some(i) => &digits[i..],
                None => b"0",
            };
            if trimmed.len() > 5 {
                return None;
            }
            let n: u32 = trimmed.iter().fold(0, |n, &d| n * 10 + u32::from(d - b'0'));
            if n > u32::from(u16::MAX) {
                return None;
            }
            canonical_port = trimmed.len() == digits.len() && n != default_port;
            (n != default_port).then_some(n)
        }
    };
    // The host when it changes (an IP literal, uppercase letters).
    let changed: Option<String> = if host.first() == Some(&b'[') {
        Some(ip_literal(host)?)
    } else {
        // One pass over a byte-class table; '%' sends the host to the
        // slower check of its escapes.
        let (mut upper, mut pct) = (false, false);
        for &b in host {
            match REG_NAME[usize::from(b)] {
                OK => {}
                UPPER => upper = true,
                PERCENT => pct = true,
                _ => return None,
            }
        }
        if pct && !escapes_ok(host) {
            return None;
        }
        // Every byte checked above is ASCII.
        if upper {
            Some(String::from_utf8(host.to_ascii_lowercase()).ok()?)
        } else {
            None
        }
    };
    match (changed, port) {
        // Unchanged input (the usual case): borrowed, nothing allocated.
        (None, _) if canonical_port => std::str::from_utf8(value).ok().map(Cow::Borrowed),
        (changed, port) => {
            let mut out = match changed {
                Some(h) => h,
                None => std::str::from_utf8(host).ok()?.to_owned(),
            };
            if let Some(p) = port {
                out.push(':');
                out.push_str(&p.to_string());
            }
            Some(Cow::Owned(out))
        }
    }
}

/// Splits `host[:port]` (an IP literal may hold colons inside brackets).
fn split_port(value: &[u8]) -> Option<(&[u8], Option<&[u8]>)> {
    if value.first() == Some(&b'[') {
        let end = value.iter().position(|&b| b == b']')?;
        let (host, rest) = value.split_at(end + 1);
        return match rest {
            [] => Some((host, None)),
            [b':', port @ ..] => Some((host, Some(port))),
            _ => None,
        };
    }
    Some(match value.iter().position(|&b| b == b':') {
        Some(i) => (&value[..i], Some(&value[i + 1..])),
        None => (value, None),
    })
}

const BAD: u8 = 0;
const OK: u8 = 1;
const UPPER: u8 = 2;
const PERCENT: u8 = 3;

/// RFC 3986 `reg-name` (which covers IPv4 addresses) by byte:
/// unreserved and sub-delims are OK, uppercase letters too (lowercased),
/// '%' starts a pct-encoded octet; anything else is BAD.
static REG_NAME: [u8; 256] = {
    let mut t = [BAD; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = if c.is_ascii_uppercase() {
            UPPER
        } else if c.is_ascii_lowercase()
            || c.is_ascii_digit()
            || matches!(
                c,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
            )
        {
            OK
        } else if c == b'%' {
            PERCENT
        } else {
            BAD
        };
        b += 1;
    }
    t
};

/// Every '%' of `host` is followed by two hex digits.
fn escapes_ok(host: &[u8]) -> bool {
    let mut i = 0;
    while i < host.len() {
        if host[i] == b'%' {
            let hex = |j: usize| host.get(j).is_some_and(u8::is_ascii_hexdigit);
            if !(hex(i + 1) && hex(i + 2)) {
                return false;
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    true
}

/// `"[" ( IPv6address / IPvFuture ) "]"`, normalized.
fn ip_literal(host: &[u8]) -> Option<String> {
    let inner = host.strip_prefix(b"[")?.strip_suffix(b"]")?;
    let text = std::str::from_utf8(inner).ok()?;
    if let Ok(ip) = text.parse::<Ipv6Addr>() {
        return Some(format!("[{ip}]"));
    }
    // IPvFuture = "v" 1*HEXDIG "." 1*( unreserved / sub-delims / ":" )
    let rest = text.strip_prefix(['v', 'V'])?;
    let (version, addr) = rest.split_once('.')?;
    let ok = !version.is_empty()
        && version.bytes().all(|b| b.is_ascii_hexdigit())
        && !addr.is_empty()
        && addr
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b":-._~!$&'()*+,;=".contains(&b));
    ok.then(|| format!("[{}]", text.to_ascii_lowercase()))
}

/// The invariants of [`settle`] for one input (the fuzz target's and the
/// generated test's oracle): on success the key's host is the request's
/// `Host`, and the target's authority when it has one; the host is
/// visible ASCII without '/', and normalizing it again changes nothing.
#[cfg(any(test, fuzzing))]
pub(crate) fn check_invariants(host: &[u8], target: &str, http2: bool) {
    let Ok(uri) = target.parse::<Uri>() else {
        return;
    };
    let mut req = Request::new(());
    *req.uri_mut() = uri;
    if http2 {
        *req.version_mut() = Version::HTTP_2;
    }
    if let Ok(v) = HeaderValue::from_bytes(host) {
        req.headers_mut().insert(header::HOST, v);
    }
    let Ok(key) = settle(&mut req) else {
        return;
    };
    let h = key.host();
    assert!(
        h.bytes().all(|b| b.is_ascii_graphic() && b != b'/'),
        "{h:?}"
    );
    match req.headers().get(header::HOST) {
        Some(v) => assert_eq!(v.as_bytes(), h.as_bytes()),
        None => assert!(h.is_empty()),
    }
    if let Some(a) = req.uri().authority() {
        assert_eq!(a.as_str(), h);
    }
    let again = normalize(h.as_bytes(), req.uri());
    assert_eq!(again.as_deref(), Some(h), "normalizing is idempotent");
    assert!(key.path_and_query().starts_with('/') || req.uri().path_and_query().is_none());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(v: &str) -> Option<String> {
        normalize(v.as_bytes(), &Uri::from_static("/")).map(Cow::into_owned)
    }

    #[test]
    fn hosts_are_normalized() {
        assert_eq!(norm("Example.COM").as_deref(), Some("example.com"));
        assert_eq!(norm("example.com:80").as_deref(), Some("example.com"));
        assert_eq!(norm("example.com:").as_deref(), Some("example.com"));
        assert_eq!(norm("example.com:0080").as_deref(), Some("example.com"));
        assert_eq!(
            norm("example.com:08080").as_deref(),
            Some("example.com:8080")
        );
        assert_eq!(norm("example.com:443").as_deref(), Some("example.com:443"));
        let https = Uri::from_static("https://example.com:443/");
        assert_eq!(
            normalize(b"example.com:443", &https).as_deref(),
            Some("example.com")
        );
        assert_eq!(norm("[0:0::1]:8080").as_deref(), Some("[::1]:8080"));
        assert_eq!(
            norm("[::FFFF:1.2.3.4]").as_deref(),
            Some("[::ffff:1.2.3.4]")
        );
        assert_eq!(norm("[v1.A:b]").as_deref(), Some("[v1.a:b]"));
        assert_eq!(norm("10.0.0.1:81").as_deref(), Some("10.0.0.1:81"));
        assert_eq!(norm("a%2Fb").as_deref(), Some("a%2fb"));
        assert_eq!(norm("").as_deref(), Some(""));
        // Nothing is allocated when the value is already normal.
        assert!(matches!(
            normalize(b"example.com:8080", &Uri::from_static("/")),
            Some(Cow::Borrowed(_))
        ));
    }

    #[test]
    fn invalid_hosts_are_refused() {
        for bad in [
            "victim.test/",
            "victim.test?",
            "victim.test#",
            "vic tim.test",
            "victim.test\\",
            "user@victim.test",
            "victim.test:80:80",
            "victim.test:8o",
            "victim.test:65536",
            "victim.test:999999",
            "a%2",
            "a%zz",
            "[::1",
            "[::1]x",
            "[not-ip]",
            "[v.x]",
            "\"quoted\"",
        ] {
            assert_eq!(norm(bad), None, "{bad:?}");
        }
        assert_eq!(normalize(b"victim.test\xff", &Uri::from_static("/")), None);
    }

    fn settled(req: Request<()>) -> (Result<String, Refused>, Request<()>) {
        let mut req = req;
        let r = settle(&mut req).map(|k| k.host().to_owned());
        (r, req)
    }

    #[test]
    fn the_target_authority_wins_and_is_what_the_inner_service_sees() {
        let (r, req) = settled(
            Request::get("http://Victim.test:80/x")
                .header("host", "evil.test")
                .body(())
                .unwrap(),
        );
        assert_eq!(r.as_deref(), Ok("victim.test"));
        assert_eq!(req.headers()["host"], "victim.test");
        assert_eq!(req.uri().authority().unwrap().as_str(), "victim.test");
        assert_eq!(req.uri().path(), "/x");
        // HTTP/2: `:authority` arrives as the URI's authority.
        let (r, req) = settled(
            Request::get("https://victim.test/x")
                .version(Version::HTTP_2)
                .header("host", "evil.test")
                .body(())
                .unwrap(),
        );
        assert_eq!(r.as_deref(), Ok("victim.test"));
        assert_eq!(req.headers()["host"], "victim.test");
        let (r, req) = settled(
            Request::get("/x")
                .header("host", "Victim.TEST:80")
                .body(())
                .unwrap(),
        );
        assert_eq!(r.as_deref(), Ok("victim.test"));
        assert_eq!(req.headers()["host"], "victim.test");
        assert_eq!(req.uri(), "/x");
    }

    #[test]
    fn missing_repeated_and_invalid_hosts() {
        let (r, _) = settled(Request::get("/").body(()).unwrap());
        assert_eq!(r.err(), Some(Refused::Missing));
        let (r, req) = settled(
            Request::get("/")
                .version(Version::HTTP_10)
                .body(())
                .unwrap(),
        );
        assert_eq!(r.as_deref(), Ok(""));
        assert!(req.headers().get("host").is_none());
        let (r, req) = settled(
            Request::get("/a?b")
                .header("host", "Victim.test")
                .body(())
                .unwrap(),
        );
        assert_eq!(r.as_deref(), Ok("victim.test"));
        assert_eq!(req.headers()["host"], "victim.test");
        let (r, _) = settled(
            Request::get("/")
                .header("host", "a.test")
                .header("host", "a.test")
                .body(())
                .unwrap(),
        );
        assert_eq!(r.err(), Some(Refused::Repeated));
        let (r, _) = settled(
            Request::get("http://victim.test/")
                .header("host", "evil.test/")
                .body(())
                .unwrap(),
        );
        assert_eq!(r.err(), Some(Refused::Invalid));
        let (r, _) = settled(
            Request::get("http://u@victim.test/")
                .header("host", "victim.test")
                .body(())
                .unwrap(),
        );
        assert_eq!(r.err(), Some(Refused::Invalid));
        // HTTP/1.1 needs Host even with an absolute target; HTTP/2 does
        // not, and the authority becomes its Host.
        let (r, _) = settled(Request::get("http://victim.test/").body(()).unwrap());
        assert_eq!(r.err(), Some(Refused::Missing));
        let (r, req) = settled(
            Request::get("http://victim.test/")
                .version(Version::HTTP_2)
                .body(())
                .unwrap(),
        );
        assert_eq!(r.as_deref(), Ok("victim.test"));
        assert_eq!(req.headers()["host"], "victim.test");
    }

    /// Linear in the input: a long host is checked in one pass.
    #[test]
    fn long_hosts_are_checked_once() {
        let long = "a".repeat(100_000);
        assert_eq!(norm(&long).as_deref(), Some(long.as_str()));
        let pct = "%41".repeat(30_000);
        assert_eq!(norm(&pct).map(|s| s.len()), Some(90_000));
    }

    /// Generated hosts and targets (the stable stand-in for the fuzz
    /// target): the invariants of `check_invariants` hold for all.
    #[test]
    fn generated_authorities_keep_the_invariants() {
        const ALPHABET: &[u8] = b"aZ09.-_~!$&'()*+,;=%:[]@/?# \\\t\x7f\xffvV";
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for i in 0..20_000 {
            let len = (next() % 24) as usize;
            let host: Vec<u8> = (0..len)
                .map(|_| ALPHABET[(next() % ALPHABET.len() as u64) as usize])
                .collect();
            let text = String::from_utf8_lossy(&host).into_owned();
            let target = match i % 3 {
                0 => "/p?q".to_owned(),
                1 => format!("http://{text}/p"),
                _ => format!("https://{text}/p"),
            };
            check_invariants(&host, &target, i % 5 == 0);
        }
    }
}
