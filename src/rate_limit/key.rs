//! Who a request counts against: keys and how to extract them.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;

use http::{HeaderMap, HeaderName, Request};

/// What a quota is counted against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    /// A client address (IPv6 already grouped by prefix).
    Ip(IpAddr),
    /// A header value, an API key, a user id…
    Text(Box<str>),
    /// Everybody together.
    Global,
}

impl std::hash::Hash for Key {
    /// Addresses hash as one integer (so a store's hasher can mix them
    /// cheaply); text as its bytes.
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        match self {
            Self::Ip(IpAddr::V4(v4)) => state.write_u64(u64::from(u32::from(*v4)) | (4 << 40)),
            Self::Ip(IpAddr::V6(v6)) => state.write_u128(u128::from(*v6)),
            Self::Text(t) => {
                state.write(t.as_bytes());
                state.write_u8(0xff);
            }
            Self::Global => state.write_u8(0),
        }
    }
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Ip(ip) => write!(f, "{ip}"),
            Self::Text(t) => f.write_str(t),
            Self::Global => f.write_str("global"),
        }
    }
}

/// The peer address of a connection, as a request extension. Servers that
/// don't use axum's `ConnectInfo` insert this one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr(pub SocketAddr);

/// An IP network, `203.0.113.0/24` or `2001:db8::/32`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

/// A CIDR that could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CidrError(String);

impl std::fmt::Display for CidrError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid CIDR: {}", self.0)
    }
}

impl std::error::Error for CidrError {}

impl FromStr for Cidr {
    type Err = CidrError;
    fn from_str(s: &str) -> Result<Self, CidrError> {
        let err = || CidrError(s.to_owned());
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (
                a.parse::<IpAddr>().map_err(|_| err())?,
                Some(p.parse::<u8>().map_err(|_| err())?),
            ),
            None => (s.parse::<IpAddr>().map_err(|_| err())?, None),
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        if prefix > max {
            return Err(err());
        }
        Ok(Self { addr, prefix })
    }
}

fn bits(ip: IpAddr) -> (u128, u8) {
    match ip {
        IpAddr::V4(v4) => (u128::from(u32::from(v4)), 32),
        IpAddr::V6(v6) => (u128::from(v6), 128),
    }
}

impl Cidr {
    /// Whether `ip` is inside (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        let (a, width) = bits(self.addr);
        let (b, width_b) = bits(ip);
        if width != width_b {
            return false;
        }
        let shift = u32::from(width - self.prefix);
        if shift >= 128 {
            return true;
        }
        (a >> shift) == (b >> shift)
    }
}

/// `::ffff:1.2.3.4` is 1.2.3.4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Groups IPv6 addresses by their first `prefix` bits: one user usually
/// holds a whole /64.
pub(crate) fn group(ip: IpAddr, prefix: u8) -> IpAddr {
    match canonical(ip) {
        IpAddr::V6(v6) => {
            let p = u32::from(prefix.min(128));
            let mask = if p == 0 { 0 } else { u128::MAX << (128 - p) };
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
        }
        v4 => v4,
    }
}

fn peer(extensions: &http::Extensions) -> Option<IpAddr> {
    // axum's first when it is on: an axum server has it on every request.
    #[cfg(feature = "axum")]
    if let Some(axum::extract::ConnectInfo(a)) =
        extensions.get::<axum::extract::ConnectInfo<SocketAddr>>()
    {
        return Some(a.ip());
    }
    extensions.get::<PeerAddr>().map(|PeerAddr(a)| a.ip())
}

/// Parses one `X-Forwarded-For` element or `Forwarded` `for=` value:
/// `1.2.3.4`, `1.2.3.4:80`, `2001:db8::1`, `"[2001:db8::1]:443"`.
fn parse_node(s: &str) -> Option<IpAddr> {
    let s = s.trim().trim_matches('"');
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Some(sa.ip());
    }
    let inner = s.strip_prefix('[')?.split(']').next()?;
    inner.parse::<Ipv6Addr>().ok().map(IpAddr::V6)
}

/// Calls `visit` with the addresses a request passed through, nearest
/// first (from the right of the list): `Forwarded`'s `for=` values, or the
/// `X-Forwarded-For` chain when `Forwarded` has none; `None` for an
/// unreadable hop. Stops when `visit` returns `false` or after
/// [`KeySource::MAX_FORWARDED_HOPS`] hops.
///
/// Linear in the header bytes (one pass checks that every line is text,
/// one reads from the right until it stops), and nothing is kept: a chain
/// of 30,000 hops costs a scan, not 30,000 parsed addresses.
fn forwarded_hops(headers: &HeaderMap, mut visit: impl FnMut(Option<IpAddr>) -> bool) {
    let mut budget = KeySource::MAX_FORWARDED_HOPS;
    let mut hop = |h: Option<IpAddr>| {
        budget -= 1;
        visit(h) && budget > 0
    };
    let forwarded = headers.get_all(http::header::FORWARDED);
    // A line that isn't visible ASCII makes the whole field unreadable,
    // wherever it is.
    if forwarded.iter().any(|v| v.to_str().is_err()) {
        hop(None);
        return;
    }
    let mut found = false;
    for line in forwarded.iter().rev() {
        let line = v_str(line);
        for element in line.rsplit(',') {
            for pair in element.rsplit(';') {
                let Some((k, val)) = pair.split_once('=') else {
                    continue;
                };
                if k.trim().eq_ignore_ascii_case("for") {
                    found = true;
                    if !hop(parse_node(val)) {
                        return;
                    }
                }
            }
        }
    }
    if found {
        return;
    }
    let xff = headers.get_all("x-forwarded-for");
    if xff.iter().any(|v| v.to_str().is_err()) {
        hop(None);
        return;
    }
    for line in xff.iter().rev() {
        for node in v_str(line).rsplit(',') {
            if !hop(parse_node(node)) {
                return;
            }
        }
    }
}

/// A value already checked to be text.
fn v_str(v: &http::HeaderValue) -> &str {
    v.to_str().unwrap_or_default()
}

/// The client behind trusted proxies: walking from the peer outwards, the
/// first address that is not a trusted proxy. Headers from an untrusted
/// peer are ignored (anyone can send them). The walk reads at most
/// [`KeySource::MAX_FORWARDED_HOPS`] hops; when every one of them is a
/// trusted proxy, the client is the last one read, as when the next hop is
/// unreadable.
pub(crate) fn client_ip(peer_ip: IpAddr, headers: &HeaderMap, trusted: &[Cidr]) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    if !is_trusted(peer_ip) {
        return peer_ip;
    }
    let mut client = peer_ip;
    forwarded_hops(headers, |hop| match hop {
        // An unreadable hop: stop at the last address we could trust.
        None => false,
        Some(ip) => {
            client = ip;
            is_trusted(ip)
        }
    });
    client
}

/// The parts of a request a key closure sees.
#[derive(Debug, Clone, Copy)]
pub struct RequestHead<'a> {
    /// The method.
    pub method: &'a http::Method,
    /// The URI.
    pub uri: &'a http::Uri,
    /// The headers.
    pub headers: &'a HeaderMap,
    /// The extensions (axum's `ConnectInfo`, your own…).
    pub extensions: &'a http::Extensions,
}

/// A closure that picks a key from the request head.
pub type KeyFn = Arc<dyn Fn(RequestHead<'_>) -> Option<Key> + Send + Sync>;

/// How a rule finds the key of a request.
#[derive(Clone)]
pub enum KeySource {
    /// The connection's peer address ([`PeerAddr`] or axum's `ConnectInfo`).
    PeerIp,
    /// The client address behind these trusted proxies (see the module
    /// docs): the rightmost `Forwarded`/`X-Forwarded-For` address that isn't
    /// one of them, reading at most
    /// [`MAX_FORWARDED_HOPS`](Self::MAX_FORWARDED_HOPS) addresses.
    ClientIp(Arc<[Cidr]>),
    /// A request header's value (an API key).
    Header(HeaderName),
    /// One quota for everybody.
    Global,
    /// Your own.
    Custom(KeyFn),
}

impl std::fmt::Debug for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::PeerIp => f.write_str("PeerIp"),
            Self::ClientIp(c) => f.debug_tuple("ClientIp").field(c).finish(),
            Self::Header(h) => f.debug_tuple("Header").field(h).finish(),
            Self::Global => f.write_str("Global"),
            Self::Custom(_) => f.write_str("Custom"),
        }
    }
}

impl KeySource {
    /// The most `Forwarded` / `X-Forwarded-For` addresses
    /// [`ClientIp`](Self::ClientIp) reads, from the right (the nearest
    /// proxy's end). Past them the walk stops as at an unreadable hop: when
    /// this many trusted proxies in a row are read, the key is the last of
    /// them. Headers of any length cost time linear in their bytes and no
    /// memory.
    pub const MAX_FORWARDED_HOPS: usize = 32;

    /// The client IP behind proxies in `cidrs` (`"10.0.0.0/8"`…).
    pub fn client_ip<I, S>(cidrs: I) -> Result<Self, CidrError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let list: Result<Vec<Cidr>, CidrError> =
            cidrs.into_iter().map(|s| s.as_ref().parse()).collect();
        Ok(Self::ClientIp(list?.into()))
    }

    /// A key from a closure over the request head.
    pub fn custom<F>(f: F) -> Self
    where
        F: Fn(RequestHead<'_>) -> Option<Key> + Send + Sync + 'static,
    {
        Self::Custom(Arc::new(f))
    }

    pub(crate) fn extract<B>(&self, req: &Request<B>, ipv6_prefix: u8) -> Option<Key> {
        match self {
            Self::PeerIp => peer(req.extensions()).map(|ip| Key::Ip(group(ip, ipv6_prefix))),
            Self::ClientIp(trusted) => {
                let ip = client_ip(peer(req.extensions())?, req.headers(), trusted);
                Some(Key::Ip(group(ip, ipv6_prefix)))
            }
            Self::Header(name) => {
                let v = req.headers().get(name)?.to_str().ok()?.trim();
                // Bounded: a key is not a place to store megabytes.
                (!v.is_empty() && v.len() <= 256).then(|| Key::Text(v.into()))
            }
            Self::Global => Some(Key::Global),
            Self::Custom(f) => f(RequestHead {
                method: req.method(),
                uri: req.uri(),
                headers: req.headers(),
                extensions: req.extensions(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn cidrs() {
        let c: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(c.contains(ip("10.1.2.3")) && !c.contains(ip("11.0.0.1")));
        assert!(c.contains(ip("::ffff:10.9.9.9")), "IPv4-mapped");
        let c6: Cidr = "2001:db8::/32".parse().unwrap();
        assert!(c6.contains(ip("2001:db8:1::5")) && !c6.contains(ip("2001:db9::1")));
        assert!(!c6.contains(ip("10.0.0.1")));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("203.0.113.9")));
        let one: Cidr = "127.0.0.1".parse().unwrap();
        assert!(one.contains(ip("127.0.0.1")) && !one.contains(ip("127.0.0.2")));
        for bad in [
            "",
            "10.0.0.0/33",
            "::/129",
            "x/8",
            "10.0.0.0/",
            "10.0.0.0/-1",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn spoofed_headers_from_untrusted_peers_are_ignored() {
        let trusted: Vec<Cidr> = vec!["10.0.0.0/8".parse().unwrap()];
        let h = headers(&[("x-forwarded-for", "1.1.1.1")]);
        assert_eq!(
            client_ip(ip("203.0.113.7"), &h, &trusted),
            ip("203.0.113.7")
        );
    }

    #[test]
    fn rightmost_untrusted_address_wins() {
        let trusted: Vec<Cidr> = vec!["10.0.0.0/8".parse().unwrap()];
        // The client put a fake address first; our proxies appended the real one.
        let h = headers(&[("x-forwarded-for", "6.6.6.6, 198.51.100.4, 10.0.0.2")]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &trusted), ip("198.51.100.4"));
        // Several lines form one list.
        let h = headers(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-for", "198.51.100.4"),
        ]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &trusted), ip("198.51.100.4"));
        // Forwarded (RFC 7239) wins over X-Forwarded-For, quoted IPv6 with port.
        let h = headers(&[
            (
                "forwarded",
                "for=6.6.6.6, for=\"[2001:db8::7]:443\";proto=https",
            ),
            ("x-forwarded-for", "9.9.9.9"),
        ]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &trusted), ip("2001:db8::7"));
        // All hops trusted: the outermost one.
        let h = headers(&[("x-forwarded-for", "10.0.0.9, 10.0.0.8")]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &trusted), ip("10.0.0.9"));
        // Garbage hop: stop at the last trusted address.
        let h = headers(&[("x-forwarded-for", "6.6.6.6, garbage, 10.0.0.2")]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &trusted), ip("10.0.0.2"));
        // No header at all.
        assert_eq!(
            client_ip(ip("10.0.0.1"), &HeaderMap::new(), &trusted),
            ip("10.0.0.1")
        );
    }

    /// `n` hops `10.0.x.y`, the farthest first.
    fn trusted_hops(n: usize) -> Vec<String> {
        (0..n)
            .map(|i| format!("10.0.{}.{}", i / 256, i % 256))
            .collect()
    }

    fn with(name: &'static str, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.append(name, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn hops_are_read_from_the_right_up_to_the_cap() {
        let trusted: Vec<Cidr> = vec!["10.0.0.0/8".parse().unwrap()];
        let peer = ip("10.255.0.1");
        let max = KeySource::MAX_FORWARDED_HOPS;
        // An untrusted address just inside the cap is found...
        let mut hops = trusted_hops(max - 1);
        hops.insert(0, "203.0.113.9".into());
        let h = with("x-forwarded-for", &hops.join(", "));
        assert_eq!(client_ip(peer, &h, &trusted), ip("203.0.113.9"));
        // ...one past it is not read: the walk stops at the last hop read,
        // a trusted proxy (without the cap this would be 203.0.113.9).
        let mut hops = trusted_hops(max);
        hops.insert(0, "203.0.113.9".into());
        let h = with("x-forwarded-for", &hops.join(", "));
        let last_read = ip(&hops[1]);
        assert_eq!(client_ip(peer, &h, &trusted), last_read);
        // The same in Forwarded, across lines.
        let mut h = HeaderMap::new();
        h.append("forwarded", HeaderValue::from_static("for=203.0.113.9"));
        let elems: Vec<String> = trusted_hops(max)
            .iter()
            .map(|a| format!("for={a};proto=https"))
            .collect();
        h.append(
            "forwarded",
            HeaderValue::from_str(&elems.join(", ")).unwrap(),
        );
        assert_eq!(client_ip(peer, &h, &trusted), ip("10.0.0.0"));
        // A very long chain the client wrote: the rightmost untrusted
        // address still wins, and only the right end is read.
        let mut hops = trusted_hops(30_000);
        hops.push("198.51.100.4".into());
        hops.push("10.9.9.9".into());
        let h = with("x-forwarded-for", &hops.join(","));
        assert_eq!(client_ip(peer, &h, &trusted), ip("198.51.100.4"));
    }

    #[test]
    fn unreadable_lines_and_empty_forwarded() {
        let trusted: Vec<Cidr> = vec!["10.0.0.0/8".parse().unwrap()];
        let peer = ip("10.0.0.1");
        // A Forwarded line that isn't text, even far left, stops at the peer.
        let mut h = HeaderMap::new();
        h.append(
            "forwarded",
            HeaderValue::from_bytes(b"for=1.1.1.1\xff").unwrap(),
        );
        h.append("forwarded", HeaderValue::from_static("for=198.51.100.4"));
        assert_eq!(client_ip(peer, &h, &trusted), peer);
        let mut h = HeaderMap::new();
        h.append(
            "x-forwarded-for",
            HeaderValue::from_bytes(b"6.6.6.6\xff").unwrap(),
        );
        h.append("x-forwarded-for", HeaderValue::from_static("198.51.100.4"));
        assert_eq!(client_ip(peer, &h, &trusted), peer);
        // Forwarded without any for= falls back to X-Forwarded-For.
        let h = headers(&[
            ("forwarded", "proto=https;by=10.0.0.1"),
            ("x-forwarded-for", "198.51.100.4"),
        ]);
        assert_eq!(client_ip(peer, &h, &trusted), ip("198.51.100.4"));
        // Several for= in one element: the last is the nearest.
        let h = headers(&[("forwarded", "for=198.51.100.4;for=10.0.0.3")]);
        assert_eq!(client_ip(peer, &h, &trusted), ip("198.51.100.4"));
    }

    /// The reading before the cap (the whole chain collected, nearest
    /// last, walked from the right), limited to the cap's hops.
    fn reference(peer_ip: IpAddr, headers: &HeaderMap, trusted: &[Cidr]) -> IpAddr {
        let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
        if !is_trusted(peer_ip) {
            return peer_ip;
        }
        let chain = (|| {
            let mut chain = Vec::new();
            for v in headers.get_all(http::header::FORWARDED) {
                let Ok(v) = v.to_str() else { return vec![None] };
                for element in v.split(',') {
                    for pair in element.split(';') {
                        if let Some((k, val)) = pair.split_once('=') {
                            if k.trim().eq_ignore_ascii_case("for") {
                                chain.push(parse_node(val));
                            }
                        }
                    }
                }
            }
            if !chain.is_empty() {
                return chain;
            }
            for v in headers.get_all("x-forwarded-for") {
                let Ok(v) = v.to_str() else { return vec![None] };
                chain.extend(v.split(',').map(parse_node));
            }
            chain
        })();
        let mut client = peer_ip;
        for hop in chain.into_iter().rev().take(KeySource::MAX_FORWARDED_HOPS) {
            match hop {
                None => return client,
                Some(ip) => {
                    client = ip;
                    if !is_trusted(ip) {
                        return ip;
                    }
                }
            }
        }
        client
    }

    #[test]
    fn same_answers_as_collecting_the_chain() {
        const FRAGMENTS: &[&[u8]] = &[
            b"10.0.0.1",
            b"10.0.0.2",
            b"198.51.100.4",
            b"6.6.6.6",
            b"\"[2001:db8::7]:443\"",
            b"2001:db8::1",
            b"10.1.2.3:80",
            b"garbage",
            b"for=",
            b"FOR=",
            b" for = ",
            b"proto=https",
            b"by=10.0.0.9",
            b";",
            b",",
            b", ",
            b" ",
            b"\xff",
        ];
        let trusted: Vec<Cidr> = vec![
            "10.0.0.0/8".parse().unwrap(),
            "2001:db8::/48".parse().unwrap(),
        ];
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut differ = 0;
        for _ in 0..20_000 {
            let mut h = HeaderMap::new();
            for name in ["forwarded", "x-forwarded-for"] {
                for _ in 0..next() % 3 {
                    let mut line = Vec::new();
                    for _ in 0..next() % 12 {
                        let f = FRAGMENTS[(next() % FRAGMENTS.len() as u64) as usize];
                        // Sometimes a run long enough to pass the cap.
                        let times = if next() % 8 == 0 { 40 } else { 1 };
                        for _ in 0..times {
                            if !line.is_empty() && next() % 2 == 0 {
                                line.push(b',');
                            }
                            line.extend_from_slice(f);
                        }
                    }
                    if let Ok(v) = HeaderValue::from_bytes(&line) {
                        h.append(name, v);
                    }
                }
            }
            let peer = if next() % 4 == 0 {
                ip("203.0.113.1")
            } else {
                ip("10.0.0.5")
            };
            let got = client_ip(peer, &h, &trusted);
            differ += usize::from(got != peer);
            assert_eq!(got, reference(peer, &h, &trusted), "{h:?}");
        }
        // The generator must reach chains that change the answer.
        eprintln!("{differ} of 20,000 answers are not the peer");
        assert!(differ > 1_000, "{differ}");
    }

    #[test]
    fn ipv6_grouping() {
        assert_eq!(group(ip("2001:db8:1:2:aaaa::1"), 64), ip("2001:db8:1:2::"));
        assert_eq!(group(ip("2001:db8:1:2:bbbb::9"), 64), ip("2001:db8:1:2::"));
        assert_eq!(
            group(ip("2001:db8:1:2:bbbb::9"), 128),
            ip("2001:db8:1:2:bbbb::9")
        );
        assert_eq!(group(ip("2001:db8::1"), 0), ip("::"));
        assert_eq!(group(ip("192.0.2.1"), 64), ip("192.0.2.1"));
        assert_eq!(group(ip("::ffff:192.0.2.1"), 64), ip("192.0.2.1"));
    }

    #[test]
    fn header_keys_are_bounded() {
        let src = KeySource::Header(HeaderName::from_static("x-api-key"));
        let req = Request::builder()
            .header("x-api-key", " k1 ")
            .body(())
            .unwrap();
        assert_eq!(src.extract(&req, 64), Some(Key::Text("k1".into())));
        let long = "k".repeat(300);
        let req = Request::builder()
            .header("x-api-key", long)
            .body(())
            .unwrap();
        assert_eq!(src.extract(&req, 64), None);
        assert_eq!(src.extract(&Request::new(()), 64), None);
        assert_eq!(KeySource::PeerIp.extract(&Request::new(()), 64), None);
    }
}
