//! The authority a request is for, checked and normalized once: what the
//! cache keys on and what the inner service sees as `Host`.
//!
//! RFC 9112 §3.2: an HTTP/1.1 request without `Host`, any request with
//! more than one `Host` line, or with a `Host` that is not
//! `uri-host [ ":" port ]` (RFC 3986 §3.2.2) gets 400. RFC 9112 §3.2.2 and
//! RFC 9113 §8.3.1: the authority of an absolute-form target or of
//! HTTP/2's `:authority` wins over `Host`. The winner is normalized
//! (lowercase, IPv6 literals in their canonical text, the port as a number,
//! 80 and 443 dropped) and written back into the request as its `Host`,
//! and the target goes inward origin-form, so the inner service never sees
//! a `Host` other than the one the cache keyed on, nor a scheme the client
//! chose.

use std::borrow::Cow;
use std::net::Ipv6Addr;

use http::header::{self, HeaderValue};
use http::uri::{PathAndQuery, Uri};
use http::{Method, Request, Version};

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
/// `Host` exactly that value and its target origin-form (the path and
/// query): the authority reaches the inner service only as `Host`, and
/// the scheme of an absolute-form or HTTP/2 target, which the client
/// chooses and the key does not hold, not at all. Returns the cache key
/// of the request: that authority (empty for an HTTP/1.0 or HTTP/2
/// request that names none, which then gets an empty `Host`), then the
/// path and query.
pub(crate) fn settle<B>(req: &mut Request<B>) -> Result<CacheKey, Refused> {
    let (key, host_ok, origin_form) = {
        let mut hosts = req.headers().get_all(header::HOST).iter();
        let host = hosts.next();
        if hosts.next().is_some() {
            return Err(Refused::Repeated);
        }
        if host.is_none() && req.version() == Version::HTTP_11 {
            // Even with an absolute-form target (RFC 9112 §3.2).
            return Err(Refused::Missing);
        }
        let uri = req.uri();
        if !matches!(uri.scheme_str(), None | Some("http" | "https")) {
            return Err(Refused::Invalid);
        }
        // The asterisk-form is OPTIONS's alone (RFC 9112 §3.2.4); any other
        // method's `*` would be keyed as the path `/*` it is not.
        if uri.path() == "*" && req.method() != Method::OPTIONS {
            return Err(Refused::Invalid);
        }
        // A Host present must be valid even when the target's authority
        // wins (§3.2: "a Host header field with an invalid field value").
        let host_norm = match host {
            Some(v) => Some(normalize(v.as_bytes()).ok_or(Refused::Invalid)?),
            None => None,
        };
        let normalized = match uri.authority() {
            Some(a) => normalize(a.as_str().as_bytes()).ok_or(Refused::Invalid)?,
            None => host_norm.unwrap_or(Cow::Borrowed("")),
        };
        let host_ok = host.is_some_and(|h| h.as_bytes() == normalized.as_bytes());
        let key = CacheKey::normalized(&normalized, uri);
        (
            key,
            host_ok,
            uri.scheme().is_none() && uri.authority().is_none(),
        )
    };
    if !host_ok {
        let value = HeaderValue::from_str(key.host()).map_err(|_| Refused::Invalid)?;
        req.headers_mut().insert(header::HOST, value);
    }
    if !origin_form {
        *req.uri_mut() = if req.uri().path() == "*" {
            // OPTIONS `*` over HTTP/2 arrives with a scheme and authority;
            // inward it is the asterisk-form, as over HTTP/1.1.
            Uri::from_static("*")
        } else {
            // The key's path and query came from this very URI.
            let pq: PathAndQuery = key.path_and_query().parse().map_err(|_| Refused::Invalid)?;
            Uri::from(pq)
        };
    }
    Ok(key)
}

/// `uri-host [ ":" port ]` normalized: lowercase, canonical IPv6 text, a
/// numeric port without leading zeros, ports 80 and 443 dropped. Those are
/// the defaults of http and https; the layer doesn't know which its
/// listener speaks, and the scheme never reaches the inner service (the
/// target goes inward origin-form), so both spellings of a host reach it
/// as one value, whatever scheme a client named. `None` when `value` does
/// not match the grammar.
pub(crate) fn normalize(value: &[u8]) -> Option<Cow<'_, str>> {
    let (host, port) = split_port(value)?;
    let is_default = |n: u32| n == 80 || n == 443;
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
            canonical_port = trimmed.len() == digits.len() && !is_default(n);
            (!is_default(n)).then_some(n)
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

/// The bytes of a host name by class: RFC 3986 `reg-name` (which covers
/// IPv4 addresses) without its sub-delims. Those (`,` `;` `=` `!` `$` `&`
/// `'` `(` `)` `*` `+`) are in no DNS name, and they separate list
/// elements and parameters in the fields a `Host` is copied into
/// (`X-Forwarded-Host`, `Forwarded`), so a host holding one is refused.
/// Unreserved bytes are OK, uppercase letters too (lowercased), '%'
/// starts a pct-encoded octet; anything else is BAD.
static REG_NAME: [u8; 256] = {
    let mut t = [BAD; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = if c.is_ascii_uppercase() {
            UPPER
        } else if c.is_ascii_lowercase()
            || c.is_ascii_digit()
            || matches!(c, b'-' | b'.' | b'_' | b'~')
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

/// `"[" IPv6address "]"`, in its canonical text. IPvFuture literals,
/// which no client sends, are refused.
fn ip_literal(host: &[u8]) -> Option<String> {
    let inner = host.strip_prefix(b"[")?.strip_suffix(b"]")?;
    let ip: Ipv6Addr = std::str::from_utf8(inner).ok()?.parse().ok()?;
    Some(format!("[{ip}]"))
}

/// The invariants of [`settle`] for one input (the fuzz target's and the
/// generated test's oracle): on success the key's host is the request's
/// `Host`, and the target's authority when it has one; the host is
/// visible ASCII without '/', and normalizing it again changes nothing.
#[cfg(any(test, fuzzing))]
pub(crate) fn check_invariants(host: &[u8], target: &str, http2: bool) -> bool {
    let Ok(uri) = target.parse::<Uri>() else {
        return false;
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
        return false;
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
    assert!(req.uri().authority().is_none() && req.uri().scheme().is_none());
    // Origin-form inward, the key's own path and query (OPTIONS `*`
    // excepted: it is refused for other methods and never cached).
    if req.uri() != "*" {
        assert_eq!(
            req.uri().path_and_query().map(|p| p.as_str()),
            Some(key.path_and_query())
        );
    }
    let again = normalize(h.as_bytes());
    assert_eq!(again.as_deref(), Some(h), "normalizing is idempotent");
    assert!(key.path_and_query().starts_with('/'));
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(v: &str) -> Option<String> {
        normalize(v.as_bytes()).map(Cow::into_owned)
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
        assert_eq!(norm("example.com:443").as_deref(), Some("example.com"));
        assert_eq!(norm("example.com:0443").as_deref(), Some("example.com"));
        assert_eq!(norm("[0:0::1]:8080").as_deref(), Some("[::1]:8080"));
        assert_eq!(
            norm("[::FFFF:1.2.3.4]").as_deref(),
            Some("[::ffff:1.2.3.4]")
        );
        assert_eq!(norm("10.0.0.1:81").as_deref(), Some("10.0.0.1:81"));
        assert_eq!(norm("a%2Fb").as_deref(), Some("a%2fb"));
        assert_eq!(norm("").as_deref(), Some(""));
        // Nothing is allocated when the value is already normal.
        assert!(matches!(
            normalize(b"example.com:8080"),
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
            "[v1.a:b]",
            "victim.test,evil.test",
            "victim.test;x=y",
            "a!b",
            "a=b",
            "\"quoted\"",
        ] {
            assert_eq!(norm(bad), None, "{bad:?}");
        }
        assert_eq!(normalize(b"victim.test\xff"), None);
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
        // Origin-form inward: the client's scheme does not reach it.
        assert_eq!(req.uri(), "/x");
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
        // A scheme the client picks changes nothing inward.
        let (r, req) = settled(
            Request::get("https://victim.test:443/s")
                .header("host", "victim.test")
                .body(())
                .unwrap(),
        );
        assert_eq!(r.as_deref(), Ok("victim.test"));
        assert_eq!(req.uri(), "/s");
        let (r, _) = settled(
            Request::get("ftp://victim.test/s")
                .header("host", "victim.test")
                .body(())
                .unwrap(),
        );
        assert_eq!(r.err(), Some(Refused::Invalid));
        // `*` is OPTIONS's only.
        let star = |m: Method| {
            let mut req = Request::new(());
            *req.method_mut() = m;
            *req.uri_mut() = Uri::from_static("*");
            req.headers_mut()
                .insert(header::HOST, HeaderValue::from_static("h"));
            settled(req).0
        };
        assert_eq!(star(Method::GET).err(), Some(Refused::Invalid));
        assert_eq!(star(Method::OPTIONS).as_deref(), Ok("h"));
        // HTTP/2's OPTIONS `*` carries a scheme and authority: inward it
        // is `*`, not the path `/*`.
        let mut h2 = Request::new(());
        *h2.method_mut() = Method::OPTIONS;
        *h2.version_mut() = Version::HTTP_2;
        *h2.uri_mut() = Uri::from_parts({
            let mut p = http::uri::Parts::default();
            p.scheme = Some(http::uri::Scheme::HTTPS);
            p.authority = Some(http::uri::Authority::from_static("h"));
            p.path_and_query = Some(PathAndQuery::from_static("*"));
            p
        })
        .unwrap();
        let (r, req) = settled(h2);
        assert_eq!(r.as_deref(), Ok("h"));
        assert_eq!(req.uri(), "*");
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
        // The absence is made explicit, so a client filling in a Host
        // further in (the proxy's) can't make it differ from the key.
        assert_eq!(req.headers()["host"], "");
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

    /// Long hosts (no length cap of their own: the server's head limit
    /// bounds them) are accepted or refused whole, escapes included.
    /// Linearity is by construction (one table lookup a byte, one pass
    /// over the escapes).
    #[test]
    fn long_hosts_are_read_whole() {
        let long = "a".repeat(100_000);
        assert_eq!(norm(&long).as_deref(), Some(long.as_str()));
        let pct = "%41".repeat(30_000);
        assert_eq!(norm(&pct).map(|s| s.len()), Some(90_000));
        // One bad byte at the very end refuses the whole host.
        assert_eq!(norm(&format!("{long},")), None);
        assert_eq!(norm(&format!("{pct}%4")), None);
    }

    /// Generated hosts and targets (the stable stand-in for the fuzz
    /// target): the invariants of `check_invariants` hold for all.
    #[test]
    fn generated_authorities_keep_the_invariants() {
        // Half the hosts from bytes hosts are made of (so many settle),
        // half from the bytes that must be refused.
        const HOSTLY: &[u8] = b"aZz09.-_~fF";
        const HOSTILE: &[u8] = b"aZ09.-_~!$&'()*+,;=%:[]@/?# \\\t\x7f\xffvV";
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut settled = 0;
        for i in 0..20_000 {
            let len = (next() % 24) as usize;
            let alphabet = if i % 2 == 0 { HOSTLY } else { HOSTILE };
            let host: Vec<u8> = (0..len)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                .collect();
            let mut host = host;
            if i % 4 == 0 {
                // Ports: default, leading zeros, empty, too large.
                let ports: [&[u8]; 5] = [b":80", b":0443", b":", b":65536", b":8080"];
                host.extend_from_slice(ports[(next() % 5) as usize]);
            }
            let text = String::from_utf8_lossy(&host).into_owned();
            let target = match i % 3 {
                0 => "/p?q".to_owned(),
                1 => format!("http://{text}/p"),
                _ => format!("https://{text}/p"),
            };
            settled += usize::from(check_invariants(&host, &target, i % 5 == 0));
        }
        // Enough inputs reach the checks for them to mean something.
        assert!(settled > 4_000, "{settled} of 20,000 settled");
    }
}
