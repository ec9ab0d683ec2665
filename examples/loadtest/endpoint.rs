//! A weighted endpoint: a method, a URL template, optional headers and a
//! body template. Templates hold `{a..b}` (a random integer in the range,
//! inclusive) and, in bodies, `{n}` (the request's sequence number in the
//! run); any other `{…}` in a body is kept as written (JSON's braces).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request, Uri};
use http_body_util::Full;

/// One piece of a template.
#[derive(Debug, Clone, PartialEq)]
enum Part {
    Lit(String),
    Range(u64, u64),
    Seq,
}

/// A URL or body with placeholders.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Template {
    parts: Vec<Part>,
}

impl Template {
    /// `strict`: every `{…}` must be a placeholder (URLs); else an
    /// unknown one is literal text (bodies).
    fn parse(text: &str, strict: bool) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            lit.push_str(&rest[..open]);
            let after = &rest[open + 1..];
            let placeholder = after.find('}').and_then(|close| {
                let inner = &after[..close];
                let part = if inner == "n" {
                    Some(Ok(Part::Seq))
                } else {
                    inner.split_once("..").and_then(|(a, b)| {
                        let (a, b) = (a.trim().parse::<u64>().ok()?, b.trim().parse::<u64>().ok()?);
                        Some(if a > b {
                            Err(format!("{text}: empty range {a}..{b}"))
                        } else {
                            Ok(Part::Range(a, b))
                        })
                    })
                };
                part.map(|p| (p, close))
            });
            match placeholder {
                Some((part, close)) => {
                    let part = part?;
                    if strict && part == Part::Seq {
                        return Err(format!("{text}: {{n}} is for bodies"));
                    }
                    parts.push(Part::Lit(std::mem::take(&mut lit)));
                    parts.push(part);
                    rest = &after[close + 1..];
                }
                None if strict => {
                    return Err(format!("{text}: expected {{a..b}} at {}", &rest[open..]));
                }
                None => {
                    lit.push('{');
                    rest = after;
                }
            }
        }
        lit.push_str(rest);
        parts.push(Part::Lit(lit));
        Ok(Self { parts })
    }

    fn render(&self, rng: &mut Rng, n: u64) -> String {
        let mut s = String::new();
        for p in &self.parts {
            match p {
                Part::Lit(l) => s.push_str(l),
                Part::Range(a, b) => {
                    let _ = write!(s, "{}", a + rng.below(b - a + 1));
                }
                Part::Seq => {
                    let _ = write!(s, "{n}");
                }
            }
        }
        s
    }
}

/// A weighted endpoint.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Endpoint {
    /// `URL` for a GET, `METHOD URL` otherwise: what tables and
    /// thresholds name it by.
    pub(crate) label: String,
    pub(crate) method: Method,
    url: Template,
    /// The URL, parsed once, when it has no placeholder.
    fixed: Option<Uri>,
    body: Option<Template>,
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
    pub(crate) weight: u32,
}

/// The sequence number `{n}` counts with, shared by the whole run.
static SEQ: AtomicU64 = AtomicU64::new(0);

/// Numbers `{n}` from 0 again: each run (each scenario of a file) starts
/// there.
pub(crate) fn restart_numbering() {
    SEQ.store(0, Ordering::Relaxed);
}

/// The largest body file read (each request renders it again).
const MAX_BODY_FILE: u64 = 16 << 20;

/// A body template read from `path` (16 MiB at most).
pub(crate) fn read_body(path: &str) -> Result<String, String> {
    let len = std::fs::metadata(path)
        .map_err(|e| format!("reading the body from {path}: {e}"))?
        .len();
    if len > MAX_BODY_FILE {
        return Err(format!(
            "the body in {path} has {len} bytes: at most {MAX_BODY_FILE}"
        ));
    }
    std::fs::read_to_string(path).map_err(|e| format!("reading the body from {path}: {e}"))
}

impl Endpoint {
    /// `[WEIGHT*][METHOD ]URL[ BODY]`: the URL with `{a..b}` ranges; the
    /// body inline, or `@FILE` to read it from a file.
    pub(crate) fn parse(spec: &str) -> Result<Self, String> {
        let (weight, rest) = match spec.split_once('*') {
            Some((w, rest)) if w.chars().all(|c| c.is_ascii_digit()) && !w.is_empty() => (
                w.parse::<u32>()
                    .map_err(|e| format!("{spec}: weight: {e}"))?,
                rest,
            ),
            _ => (1, spec),
        };
        let rest = rest.trim_start();
        let (method, rest) = match rest.split_once(' ') {
            Some((m, r)) if !m.is_empty() && m.bytes().all(|b| b.is_ascii_uppercase()) => (
                Method::from_bytes(m.as_bytes()).map_err(|e| format!("{spec}: {e}"))?,
                r.trim_start(),
            ),
            _ => (Method::GET, rest),
        };
        let (url, body) = match rest.split_once(' ') {
            Some((u, b)) => (u, Some(b.trim())),
            None => (rest, None),
        };
        let body = match body {
            None | Some("") => None,
            Some(b) => Some(match b.strip_prefix('@') {
                Some(path) => read_body(path).map_err(|e| format!("{spec}: {e}"))?,
                None => b.to_owned(),
            }),
        };
        Self::new(weight, method, url, body.as_deref(), Vec::new())
            .map_err(|e| format!("{spec}: {e}"))
    }

    /// An endpoint from its parts (a scenario file's, or the command
    /// line's).
    pub(crate) fn new(
        weight: u32,
        method: Method,
        url: &str,
        body: Option<&str>,
        headers: Vec<(HeaderName, HeaderValue)>,
    ) -> Result<Self, String> {
        if weight == 0 {
            return Err("a weight of 0 never runs".to_owned());
        }
        // Ranges in the path and query only: one in the host or port would
        // have each user keep a connection to every address it names.
        let authority = url.split_once("://").map_or(url, |(_, rest)| rest);
        let authority = &authority[..authority.find(['/', '?']).unwrap_or(authority.len())];
        if authority.contains('{') {
            return Err(format!(
                "{url}: ranges go in the path or query, not the host or port"
            ));
        }
        let e = Self {
            label: if method == Method::GET {
                url.to_owned()
            } else {
                format!("{method} {url}")
            },
            method,
            url: Template::parse(url, true)?,
            fixed: None,
            body: body.map(|b| Template::parse(b, false)).transpose()?,
            headers,
            weight,
        };
        // Check the template makes a valid absolute http URL.
        let sample: Uri = e
            .url
            .render(&mut Rng(1), 0)
            .parse()
            .map_err(|err| format!("{url}: {err}"))?;
        if sample.scheme_str() != Some("http") || sample.authority().is_none() {
            return Err(format!("{url}: an http://host:port/... URL"));
        }
        let fixed = matches!(e.url.parts.as_slice(), [Part::Lit(_)]).then_some(sample);
        Ok(Self { fixed, ..e })
    }

    /// The next request to this endpoint, with the run's `headers` and
    /// then its own.
    pub(crate) fn request(
        &self,
        rng: &mut Rng,
        headers: &[(HeaderName, HeaderValue)],
    ) -> Result<Request<Full<Bytes>>, http::Error> {
        // Only a body that says `{n}` takes a number (one count shared by
        // every user is a cost a plain GET need not pay).
        let n = match &self.body {
            Some(b) if b.parts.contains(&Part::Seq) => SEQ.fetch_add(1, Ordering::Relaxed),
            _ => 0,
        };
        let mut req = Request::builder().method(self.method.clone());
        req = match &self.fixed {
            Some(uri) => req.uri(uri.clone()),
            None => req.uri(self.url.render(rng, n)),
        };
        for (name, v) in headers.iter().chain(&self.headers) {
            req = req.header(name, v);
        }
        let body = self
            .body
            .as_ref()
            .map_or_else(Bytes::new, |b| Bytes::from(b.render(rng, n)));
        req.body(Full::new(body))
    }
}

/// xorshift64*: fast and good enough to spread requests.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }
}
