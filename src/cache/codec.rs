//! A compact binary form of stored responses, for stores outside the
//! process (Redis). Decoding never panics and rejects anything malformed.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use super::entry::CachedResponse;
use super::freshness::{Facts, Rules};
use super::vary::VaryKey;

/// 2: the directives the entry was stored under follow its lifetime (a
/// targeted field, RFC 9213, may have decided them, and a reader does
/// not know the writer's target list). Entries of version 1 read as
/// missing.
const VERSION: u8 = 2;

/// Encodes an optional delta as a presence flag and its seconds.
fn put_delta(out: &mut Vec<u8>, d: Option<Duration>) {
    match d {
        Some(d) => {
            out.push(1);
            out.extend_from_slice(&u32::try_from(d.as_secs()).unwrap_or(u32::MAX).to_le_bytes());
        }
        None => out.push(0),
    }
}

fn micros(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

fn put_headers(out: &mut Vec<u8>, h: &HeaderMap) {
    out.extend_from_slice(&(h.len() as u32).to_le_bytes());
    for (n, v) in h {
        put_bytes(out, n.as_str().as_bytes());
        put_bytes(out, v.as_bytes());
    }
}

/// The `Vary` values alone: the field under which a variant is kept.
pub(crate) fn encode_vary(vary: &VaryKey) -> Vec<u8> {
    let mut out = Vec::new();
    let fields = vary.fields();
    out.extend_from_slice(&(fields.len() as u32).to_le_bytes());
    for (n, v) in fields {
        put_bytes(&mut out, n.as_str().as_bytes());
        match v {
            Some(v) => {
                out.push(1);
                put_bytes(&mut out, v);
            }
            None => out.push(0),
        }
    }
    out
}

/// Encodes a stored response.
pub(crate) fn encode(r: &CachedResponse) -> Vec<u8> {
    let mut out = Vec::with_capacity(r.body.len() + 512);
    out.push(VERSION);
    out.extend_from_slice(&r.status.as_u16().to_le_bytes());
    out.extend_from_slice(&micros(r.request_time).to_le_bytes());
    out.extend_from_slice(&micros(r.response_time).to_le_bytes());
    out.extend_from_slice(
        &u64::try_from(r.facts.lifetime.as_micros())
            .unwrap_or(u64::MAX)
            .to_le_bytes(),
    );
    // Bit 2: the lifetime is a configured default (kept when a 304
    // freshens the entry). Bit 3: a stored 206, a part of a response
    // (re-derived from its Content-Range). Readers from before either
    // refuse the entry (a miss): one would serve a part as a whole.
    out.push(
        u8::from(r.facts.must_revalidate)
            | (u8::from(r.facts.no_cache) << 1)
            | (u8::from(r.facts.default_ttl.is_some()) << 2)
            | (u8::from(r.status == StatusCode::PARTIAL_CONTENT) << 3),
    );
    put_delta(&mut out, r.facts.stale_while_revalidate);
    put_delta(&mut out, r.facts.stale_if_error);
    put_headers(&mut out, &r.headers);
    match &r.trailers {
        Some(t) => {
            out.push(1);
            put_headers(&mut out, t);
        }
        None => out.push(0),
    }
    put_bytes(&mut out, &encode_vary(&r.vary));
    out.extend_from_slice(&(r.tags.len() as u32).to_le_bytes());
    for t in &r.tags {
        put_bytes(&mut out, t.as_bytes());
    }
    put_bytes(&mut out, &r.body);
    out
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.buf.len() < n {
            return None;
        }
        let (a, b) = self.buf.split_at(n);
        self.buf = b;
        Some(a)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2)?.try_into().ok().map(u16::from_le_bytes)
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4)?.try_into().ok().map(u32::from_le_bytes)
    }
    fn u64(&mut self) -> Option<u64> {
        self.take(8)?.try_into().ok().map(u64::from_le_bytes)
    }
    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    fn headers(&mut self) -> Option<HeaderMap> {
        let n = self.u32()? as usize;
        // Each field needs at least 8 bytes: a count beyond that is a lie.
        if n > self.buf.len() / 8 {
            return None;
        }
        let mut h = HeaderMap::with_capacity(n);
        for _ in 0..n {
            let name = HeaderName::from_bytes(self.bytes()?).ok()?;
            let value = HeaderValue::from_bytes(self.bytes()?).ok()?;
            h.append(name, value);
        }
        Some(h)
    }
}

fn decode_vary(r: &mut Reader<'_>) -> Option<VaryKey> {
    let n = r.u32()? as usize;
    if n > r.buf.len() / 5 {
        return None;
    }
    let mut fields = Vec::with_capacity(n);
    for _ in 0..n {
        let name = HeaderName::from_bytes(r.bytes()?).ok()?;
        let value = match r.u8()? {
            0 => None,
            1 => Some(r.bytes()?.into()),
            _ => return None,
        };
        fields.push((name, value));
    }
    Some(VaryKey::from_fields(fields))
}

/// Decodes what [`encode`] wrote; `None` for anything else.
pub(crate) fn decode(buf: &[u8]) -> Option<CachedResponse> {
    let mut r = Reader { buf };
    if r.u8()? != VERSION {
        return None;
    }
    let status = StatusCode::from_u16(r.u16()?).ok()?;
    let at = |m: u64| UNIX_EPOCH.checked_add(Duration::from_micros(m));
    let request_time = at(r.u64()?)?;
    let response_time = at(r.u64()?)?;
    let lifetime = Duration::from_micros(r.u64()?);
    let flags = r.u8()?;
    if flags > 15 || (flags & 8 != 0) != (status == StatusCode::PARTIAL_CONTENT) {
        return None;
    }
    let mut delta = || match r.u8()? {
        0 => Some(None),
        1 => Some(Some(Duration::from_secs(u64::from(r.u32()?)))),
        _ => None,
    };
    let (stale_while_revalidate, stale_if_error) = (delta()?, delta()?);
    let headers = r.headers()?;
    let trailers = match r.u8()? {
        0 => None,
        1 => Some(r.headers()?),
        _ => return None,
    };
    let vary_bytes = r.bytes()?;
    let vary = decode_vary(&mut Reader { buf: vary_bytes })?;
    let n_tags = r.u32()? as usize;
    if n_tags > r.buf.len() / 4 {
        return None;
    }
    let mut tags = Vec::with_capacity(n_tags);
    for _ in 0..n_tags {
        tags.push(std::str::from_utf8(r.bytes()?).ok()?.into());
    }
    let body = Bytes::copy_from_slice(r.bytes()?);
    if !r.buf.is_empty() {
        return None;
    }
    let mut entry = CachedResponse::new(
        status,
        headers,
        body,
        trailers,
        (request_time, response_time),
        vary,
        tags,
        &Rules::default(),
    );
    // The lifetime and directives as computed when stored (a heuristic
    // lifetime, a targeted field's directives included).
    entry.facts = Facts {
        lifetime,
        must_revalidate: flags & 1 != 0,
        no_cache: flags & 2 != 0,
        stale_while_revalidate,
        stale_if_error,
        default_ttl: (flags & 4 != 0).then_some(lifetime),
        ..entry.facts
    };
    Some(entry)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::vary::{Encodings, RequestVary};
    use crate::headers::ContentCoding;

    fn sample() -> CachedResponse {
        let mut h = HeaderMap::new();
        h.insert("cache-control", HeaderValue::from_static("max-age=60"));
        h.append("vary", HeaderValue::from_static("accept-encoding"));
        h.append("x-multi", HeaderValue::from_static("a"));
        h.append("x-multi", HeaderValue::from_static("b"));
        let mut req = HeaderMap::new();
        req.insert("accept-encoding", HeaderValue::from_static("gzip"));
        let inside = Encodings::Inside(vec![ContentCoding::Gzip]);
        let request = RequestVary::new(&req, &inside);
        let vary = VaryKey::build(&h, &request, &[]).unwrap();
        let mut t = HeaderMap::new();
        t.insert("grpc-status", HeaderValue::from_static("0"));
        let now = UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456);
        CachedResponse::new(
            StatusCode::OK,
            h,
            Bytes::from_static(b"hello body"),
            Some(t),
            (now, now + Duration::from_millis(3)),
            vary,
            vec!["a".into(), "b-2".into()],
            &Rules::default(),
        )
    }

    /// Directives a targeted field decided survive the trip: the reader
    /// does not know the writer's target list.
    #[test]
    fn targeted_directives_round_trip() {
        let mut h = HeaderMap::new();
        h.insert("cache-control", HeaderValue::from_static("max-age=60"));
        h.insert(
            "cdn-cache-control",
            HeaderValue::from_static("max-age=600, no-cache, must-revalidate, stale-if-error=30"),
        );
        let rules = Rules {
            heuristic: None,
            targets: vec![HeaderName::from_static("cdn-cache-control")],
        };
        let now = SystemTime::now();
        let r = CachedResponse::new(
            StatusCode::OK,
            h,
            Bytes::new(),
            None,
            (now, now),
            VaryKey::default(),
            Vec::new(),
            &rules,
        );
        assert!(r.facts.no_cache && r.facts.must_revalidate);
        let back = decode(&encode(&r)).unwrap();
        assert_eq!(back.facts.lifetime, Duration::from_secs(600));
        assert!(back.facts.no_cache && back.facts.must_revalidate);
        assert_eq!(back.facts.stale_if_error, Some(Duration::from_secs(30)));
        assert_eq!(back.facts.stale_while_revalidate, None);
        // Version 1 entries read as missing.
        let mut old = encode(&r);
        old[0] = 1;
        assert!(decode(&old).is_none());
    }

    #[test]
    fn round_trip() {
        let r = sample();
        let back = decode(&encode(&r)).unwrap();
        assert_eq!(back.status, r.status);
        assert_eq!(back.headers, r.headers);
        assert_eq!(back.body, r.body);
        assert_eq!(back.trailers, r.trailers);
        assert_eq!(back.vary, r.vary);
        assert_eq!(back.tags, r.tags);
        assert_eq!(back.request_time, r.request_time);
        assert_eq!(back.response_time, r.response_time);
        assert_eq!(back.facts.lifetime, Duration::from_secs(60));
        assert_eq!(encode_vary(&back.vary), encode_vary(&r.vary));
    }

    /// A stored part round-trips as one (its segment derived again), and
    /// is flagged so that readers from before parts refuse it.
    #[test]
    fn a_part_round_trips() {
        let now = SystemTime::now();
        let mut h = HeaderMap::new();
        h.insert("content-range", HeaderValue::from_static("bytes 2-3/10"));
        h.insert("etag", HeaderValue::from_static("\"v\""));
        let r = CachedResponse::new(
            StatusCode::PARTIAL_CONTENT,
            h,
            Bytes::from_static(b"23"),
            None,
            (now, now),
            VaryKey::default(),
            Vec::new(),
            &Rules::default(),
        );
        let bytes = encode(&r);
        assert_eq!(bytes[1 + 2 + 8 + 8 + 8] & 8, 8, "flagged");
        let back = decode(&bytes).unwrap();
        assert_eq!(back.status, StatusCode::PARTIAL_CONTENT);
        assert_eq!(back.facts.partial, r.facts.partial);
        assert!(back.facts.partial.is_some());
    }

    /// A lifetime from `CacheLayer::default_ttl` stays one (a 304 that
    /// freshens the decoded entry keeps it).
    #[test]
    fn a_default_lifetime_round_trips() {
        let now = SystemTime::now();
        let r = CachedResponse::new(
            StatusCode::OK,
            HeaderMap::new(),
            Bytes::from_static(b"x"),
            None,
            (now, now),
            VaryKey::default(),
            Vec::new(),
            &Rules::default(),
        )
        .with_default_ttl(Some(Duration::from_secs(300)));
        let back = decode(&encode(&r)).unwrap();
        assert_eq!(back.facts.lifetime, Duration::from_secs(300));
        assert_eq!(back.facts.default_ttl, Some(Duration::from_secs(300)));
        let fresh = back.freshened(&HeaderMap::new(), (now, now), &Rules::default());
        assert_eq!(fresh.facts.lifetime, Duration::from_secs(300));
        assert_eq!(decode(&encode(&sample())).unwrap().facts.default_ttl, None);
    }

    #[test]
    fn garbage_never_panics() {
        let good = encode(&sample());
        assert!(decode(&[]).is_none());
        assert!(decode(&[9, 9, 9]).is_none());
        // Every truncation and every single-byte corruption is rejected or
        // decodes to something; none panics.
        for n in 0..good.len() {
            assert!(decode(&good[..n]).is_none(), "truncated at {n}");
        }
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0xff;
            let _ = decode(&bad);
        }
        let mut long = good.clone();
        long.push(0);
        assert!(decode(&long).is_none());
    }
}
