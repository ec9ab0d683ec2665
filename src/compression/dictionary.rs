//! Compression Dictionary Transport (RFC 9842): the dictionaries the layer
//! knows, which request may use one, and the `dcb` and `dcz` encoders.
//!
//! A response is compressed with a dictionary when the request names, in
//! `Available-Dictionary`, the SHA-256 of a dictionary the layer has, and
//! lists `dcz` or `dcb` in `Accept-Encoding`. Dictionaries come from
//! [`Dictionaries::insert`] or are learned from the responses the layer
//! compresses that carry a valid `Use-As-Dictionary`.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue};
use sha2::{Digest, Sha256};

use super::encoder::{Encoder, Flush};
use crate::headers::{AvailableDictionary, ContentCoding, Fetch, accepts_coding};

/// The most a single dictionary may hold: a response compressed against
/// it has a window of 2 MiB at most (the dictionary and the first MiB of
/// the body), well within what RFC 9842 decoders must take.
pub const MAX_DICTIONARY_SIZE: usize = 1 << 20;

/// The default bound on the bytes all dictionaries hold together.
pub const DEFAULT_DICTIONARIES_BYTES: usize = 16 << 20;

#[derive(Debug)]
struct Store {
    /// Each dictionary and the generation it was last kept or used in.
    by_hash: HashMap<[u8; 32], (Bytes, u64)>,
    /// Least recently kept first, with the generation of that mention; a
    /// mention older than the dictionary's generation is stale and skipped.
    order: VecDeque<([u8; 32], u64)>,
    generation: u64,
    bytes: usize,
    max_bytes: usize,
}

impl Store {
    /// Drops the least recently kept dictionaries until `room` more bytes
    /// fit.
    fn make_room(&mut self, room: usize) {
        while self.bytes + room > self.max_bytes {
            let Some((old, generation)) = self.order.pop_front() else {
                break;
            };
            if self
                .by_hash
                .get(&old)
                .is_some_and(|(_, g)| *g == generation)
            {
                if let Some((b, _)) = self.by_hash.remove(&old) {
                    self.bytes -= b.len();
                }
            }
        }
    }

    /// Marks `hash` as just kept (it moves to the back of the order).
    fn touch(&mut self, hash: [u8; 32]) {
        self.generation += 1;
        let generation = self.generation;
        if let Some((_, g)) = self.by_hash.get_mut(&hash) {
            *g = generation;
            self.order.push_back((hash, generation));
        }
        // Stale mentions pile up as dictionaries are touched: drop them
        // once they outnumber the live ones.
        if self.order.len() > 2 * self.by_hash.len() + 16 {
            let live = &self.by_hash;
            self.order
                .retain(|(h, g)| live.get(h).is_some_and(|(_, cur)| cur == g));
        }
    }
}

/// The dictionaries a [`CompressionLayer`](super::CompressionLayer) may
/// compress responses with (RFC 9842), by SHA-256. A cheap, cloneable
/// handle: clones share the store (and its bound).
///
/// Bounded in bytes ([`max_bytes`](Self::max_bytes), default 16 MiB):
/// when full, the least recently kept dictionaries go (keeping one again,
/// as the layer does each time it serves it, counts as recent). Each holds
/// at most [`MAX_DICTIONARY_SIZE`].
///
/// The layer learns what it compresses (up to [`MAX_DICTIONARY_SIZE`]),
/// and only in memory: after a restart, or on another
/// replica, a client's dictionary is unknown until its resource is served
/// again. Insert the assets of the previous release at start-up
/// ([`insert`](Self::insert)) to serve clients that have them at once.
#[derive(Debug, Clone)]
pub struct Dictionaries {
    store: Arc<RwLock<Store>>,
}

impl Default for Dictionaries {
    fn default() -> Self {
        Self::new()
    }
}

impl Dictionaries {
    /// An empty store of at most [`DEFAULT_DICTIONARIES_BYTES`].
    pub fn new() -> Self {
        Self {
            store: Arc::new(RwLock::new(Store {
                by_hash: HashMap::new(),
                order: VecDeque::new(),
                generation: 0,
                bytes: 0,
                max_bytes: DEFAULT_DICTIONARIES_BYTES,
            })),
        }
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Store> {
        self.store.write().unwrap_or_else(|e| e.into_inner())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Store> {
        self.store.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The most bytes all dictionaries hold together (for every handle of
    /// this store; lowering it drops the least recently kept at once).
    ///
    /// # Panics
    ///
    /// On 0: no dictionary could ever be kept, so the layer would never
    /// use one.
    pub fn max_bytes(self, bytes: usize) -> Self {
        assert!(
            bytes > 0,
            "Dictionaries::max_bytes: 0 keeps no dictionary; leave CompressionLayer::dictionaries out to turn them off"
        );
        {
            let mut s = self.write();
            s.max_bytes = bytes;
            s.make_room(0);
        }
        self
    }

    /// Keeps `dictionary` (a copy of its bytes, so it pins no larger
    /// buffer) and returns its hash, what a client sends in
    /// `Available-Dictionary`; `None` when it is empty or larger than
    /// [`MAX_DICTIONARY_SIZE`] or the whole store. Keeping one the store
    /// has marks it as recent.
    pub fn insert(&self, dictionary: impl AsRef<[u8]>) -> Option<AvailableDictionary> {
        let dictionary = dictionary.as_ref();
        self.keep(dictionary, || Bytes::copy_from_slice(dictionary))
    }

    /// Keeps `dictionary`, made owned by `own` only when the store takes
    /// it.
    fn keep(&self, dictionary: &[u8], own: impl FnOnce() -> Bytes) -> Option<AvailableDictionary> {
        let len = dictionary.len();
        if len == 0 || len > MAX_DICTIONARY_SIZE {
            return None;
        }
        let hash: [u8; 32] = Sha256::digest(dictionary).into();
        if self.read().by_hash.contains_key(&hash) {
            self.write().touch(hash);
            return Some(AvailableDictionary::new(hash));
        }
        let dictionary = own();
        let mut s = self.write();
        if len > s.max_bytes {
            return None;
        }
        if !s.by_hash.contains_key(&hash) {
            s.make_room(len);
            s.bytes += len;
            s.by_hash.insert(hash, (dictionary, 0));
        }
        s.touch(hash);
        Some(AvailableDictionary::new(hash))
    }

    /// The dictionary with this hash, if the store has it.
    pub fn get(&self, hash: &AvailableDictionary) -> Option<Bytes> {
        self.read().by_hash.get(hash.hash()).map(|(b, _)| b.clone())
    }

    /// How many dictionaries the store holds.
    pub fn len(&self) -> usize {
        self.read().by_hash.len()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes the dictionaries hold together.
    pub fn bytes(&self) -> usize {
        self.read().bytes
    }

    /// The dictionary coding and dictionary this request may get, if any:
    /// the hash it names is known, it accepts the coding, and RFC 9842
    /// §9.3.3 lets a dictionary be used for it (see [`Choice::cors_origin`]
    /// for the part the response decides). `dcz` is preferred where the
    /// build has zstd, unless the dictionary is in zstd's own format
    /// (libzstd would not read it as raw content): then `dcb`.
    pub(crate) fn choose(&self, headers: &HeaderMap) -> Option<Choice> {
        let available = AvailableDictionary::from_headers(headers)?.ok()?;
        let cors_origin = match Fetch::of(headers) {
            Fetch::Safe => None,
            Fetch::Cors(origin) => Some(origin.clone()),
            Fetch::Unsafe => return None,
        };
        let dictionary = self.get(&available)?;
        let zstd_format = dictionary.starts_with(&ZSTD_DICTIONARY_MAGIC);
        let coding =
            if cfg!(feature = "compression-zstd") && !zstd_format && accepts_coding(headers, "dcz")
            {
                DictionaryCoding::Dcz
            } else if cfg!(feature = "compression-br") && accepts_coding(headers, "dcb") {
                DictionaryCoding::Dcb
            } else {
                return None;
            };
        Some(Choice {
            coding,
            hash: *available.hash(),
            dictionary,
            cors_origin,
        })
    }
}

/// The first bytes of a dictionary in zstd's own format.
pub(crate) const ZSTD_DICTIONARY_MAGIC: [u8; 4] = [0x37, 0xa4, 0x30, 0xec];

/// A dictionary content coding (RFC 9842 §4, §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DictionaryCoding {
    /// Dictionary-compressed brotli.
    Dcb,
    /// Dictionary-compressed zstd.
    Dcz,
}

impl DictionaryCoding {
    /// The coding it compresses with, against the dictionary.
    pub(crate) const fn base(self) -> ContentCoding {
        match self {
            Self::Dcb => ContentCoding::Br,
            Self::Dcz => ContentCoding::Zstd,
        }
    }

    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Self::Dcb => "dcb",
            Self::Dcz => "dcz",
        }
    }
}

/// What a request may get: a coding and the dictionary it names.
#[derive(Debug, Clone)]
pub(crate) struct Choice {
    pub(crate) coding: DictionaryCoding,
    pub(crate) hash: [u8; 32],
    pub(crate) dictionary: Bytes,
    /// For a cross-site CORS request, its `Origin`: the dictionary is used
    /// only if the response lets that origin read it
    /// (`Access-Control-Allow-Origin` `*` or the origin).
    pub(crate) cors_origin: Option<HeaderValue>,
}

impl Choice {
    /// Whether RFC 9842 §9.3.3 lets the dictionary be used for a response
    /// with these fields.
    pub(crate) fn allowed_for(&self, response: &HeaderMap) -> bool {
        self.cors_origin
            .as_ref()
            .is_none_or(|origin| Fetch::Cors(origin).allows(response))
    }

    /// Whether a body of `len` bytes (when known) is worth loading this
    /// dictionary for: one of up to [`SMALL_DICTIONARY`] always is, a
    /// larger one only for a body of at least 1/64 of its size. Each
    /// response loads its dictionary anew, so without this a client naming
    /// a 1 MiB dictionary (hashes are public) for 1 KiB responses would
    /// make each cost a megabyte of set-up. A body of unknown length
    /// (streamed) is taken to be worth it.
    pub(crate) fn worth_it(&self, len: Option<u64>) -> bool {
        let size = self.dictionary.len() as u64;
        size <= SMALL_DICTIONARY || len.is_none_or(|n| n >= size / 64)
    }

    /// The format's header (RFC 9842 §4, §5): what the body starts with,
    /// before the compressed stream.
    pub(crate) fn header(&self) -> Vec<u8> {
        let magic: &[u8] = match self.coding {
            DictionaryCoding::Dcb => &[0xff, 0x44, 0x43, 0x42],
            // A zstd skippable frame of 32 bytes.
            DictionaryCoding::Dcz => &[0x5e, 0x2a, 0x4d, 0x18, 0x20, 0, 0, 0],
        };
        let mut out = Vec::with_capacity(magic.len() + 32);
        out.extend_from_slice(magic);
        out.extend_from_slice(&self.hash);
        out
    }

    /// An encoder that compresses a body of about `len` bytes (exactly,
    /// with `exact`: zstd says it in its frame) against the dictionary, at
    /// `level` (of brotli for `dcb`, of zstd for `dcz`); the caller writes
    /// [`header`](Self::header) first. `None` when this build lacks the
    /// coding or the encoder can't be set up (libzstd out of memory).
    ///
    /// The window is 1 MiB, as for plain br and zstd, or 2 MiB with a
    /// dictionary over 512 KiB (smaller for a short body of known length):
    /// it holds the dictionary and as much of the body as fits (the body
    /// refers to the dictionary until the window slides past it), within
    /// the 16 MiB brotli (no large window) and the 8 MiB zstd decoders must
    /// take. brotli's ring buffer is twice the window.
    pub(crate) fn encoder(&self, level: u32, len: Option<u64>, exact: bool) -> Option<Encoder> {
        let dictionary = self.dictionary.len() as u64;
        let window = if dictionary <= WINDOW / 2 {
            WINDOW
        } else {
            2 * WINDOW
        };
        // brotli's window holds 16 bytes less than its size.
        let room = window - dictionary - 16;
        let need = dictionary + len.map_or(room, |n| n.min(room)) + 16;
        let log = u64::BITS - need.saturating_sub(1).leading_zeros();
        match self.coding {
            #[cfg(feature = "compression-br")]
            DictionaryCoding::Dcb => {
                super::dcb::DcbEncoder::new(&self.dictionary, level, log.clamp(16, 24), len)
                    .map(Encoder::Dcb)
            }
            #[cfg(feature = "compression-zstd")]
            DictionaryCoding::Dcz => {
                let level = i32::try_from(level.clamp(1, 19)).unwrap_or(3);
                super::zstd::ZstdEncoder::with_dictionary(
                    level,
                    log.clamp(10, 23),
                    if exact { len } else { None },
                    &self.dictionary,
                )
                .map(Encoder::Zstd)
            }
            #[allow(unreachable_patterns)]
            _ => {
                let _ = (level, exact, log);
                None
            }
        }
    }

    /// The level this choice compresses at: brotli's for `dcb` (at least
    /// 2: qualities 0 and 1 ignore a dictionary), zstd's for `dcz`.
    pub(crate) fn level(&self, br_level: u32, zstd_level: u32) -> u32 {
        match self.coding {
            DictionaryCoding::Dcb => br_level.max(2),
            DictionaryCoding::Dcz => zstd_level,
        }
    }

    /// `input` compressed with the dictionary, the format's header first;
    /// `None` when this build lacks the coding or the encoder failed.
    pub(crate) fn compress(&self, input: &[u8], level: u32) -> Option<Vec<u8>> {
        let out = self.header();
        #[cfg(feature = "compression-zstd")]
        if self.coding == DictionaryCoding::Dcz {
            // One call: libzstd's one-shot path sets up no stream buffers.
            return super::zstd::compress_with_dictionary(level, &self.dictionary, input, out);
        }
        let mut out = out;
        let mut e = self.encoder(level, Some(input.len() as u64), true)?;
        e.encode(input, &mut out, Flush::Finish).ok()?;
        out.shrink_to_fit();
        Some(out)
    }
}

/// Dictionaries up to this size are used for a body of any size
/// ([`Choice::worth_it`]).
const SMALL_DICTIONARY: u64 = 64 * 1024;

/// The window of a dictionary coding (doubled for a dictionary over half
/// of it).
const WINDOW: u64 = 1 << 20;

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;
    use crate::compression::test_util::{undictionary, undictionary_prefix};
    use crate::headers::AVAILABLE_DICTIONARY;

    #[allow(dead_code)]
    fn encode(coding: ContentCoding, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut e = Encoder::for_whole(coding, 3, data.len() as u64).unwrap();
        e.encode(data, &mut out, Flush::Finish).unwrap();
        out
    }

    fn script(version: u32, n: usize) -> Vec<u8> {
        let mut s = String::new();
        let mut i = 0u32;
        while s.len() < n {
            let k = if i % 37 == 0 { version } else { 1 };
            s.push_str(&format!(
                "function f{i}(e) {{ const v = e.detail.x{i} * {k}; if (v > {i}) render('i-{i}', v); return v; }}\n"
            ));
            i += 1;
        }
        s.truncate(n);
        s.into_bytes()
    }

    fn request(hash: &AvailableDictionary, accept: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(&AVAILABLE_DICTIONARY, hash.to_header_value());
        h.insert(
            http::header::ACCEPT_ENCODING,
            HeaderValue::from_str(accept).unwrap(),
        );
        h
    }

    /// A layer told to use dictionaries in a build that can produce no
    /// dictionary coding says so at once.
    #[cfg(not(any(feature = "compression-br", feature = "compression-zstd")))]
    #[test]
    #[should_panic(expected = "needs the `compression-br` or `compression-zstd` feature")]
    fn dictionaries_without_br_or_zstd_are_refused() {
        let _ = crate::compression::CompressionLayer::new().dictionaries(Dictionaries::new());
    }

    #[test]
    #[should_panic(expected = "0 keeps no dictionary")]
    fn a_store_that_can_keep_nothing_is_refused() {
        let _ = Dictionaries::new().max_bytes(0);
    }

    #[test]
    fn the_store_is_bounded_and_keyed_by_sha256() {
        let d = Dictionaries::new().max_bytes(100);
        // SHA-256 of "abc" (FIPS 180-2's example).
        let abc = d.insert(&b"abc"[..]).unwrap();
        assert_eq!(abc.hash()[..4], [0xba, 0x78, 0x16, 0xbf]);
        assert_eq!(d.get(&abc).unwrap(), &b"abc"[..]);
        assert!(d.insert(vec![1u8; 101]).is_none(), "larger than the store");
        assert!(d.insert(Bytes::new()).is_none());
        let a = d.insert(vec![2u8; 60]).unwrap();
        let b = d.insert(vec![3u8; 60]).unwrap();
        // 3 + 60 + 60 > 100: the oldest went (abc, then the 60 of 2s).
        assert!(d.get(&abc).is_none() && d.get(&a).is_none());
        assert!(d.get(&b).is_some());
        assert_eq!((d.len(), d.bytes()), (1, 60));
    }

    #[test]
    fn the_least_recently_kept_go_first_and_clones_share_the_bound() {
        let d = Dictionaries::new().max_bytes(100);
        let a = d.insert([1u8; 40]).unwrap();
        let b = d.insert([2u8; 40]).unwrap();
        // Kept again (as the layer does each time it serves it): recent.
        assert_eq!(d.insert([1u8; 40]), Some(a));
        let c = d.clone().insert([3u8; 40]).unwrap();
        assert!(d.get(&a).is_some() && d.get(&c).is_some());
        assert!(d.get(&b).is_none(), "b was the least recently kept");
        // Lowering the bound on any handle applies to the store at once.
        let _ = d.clone().max_bytes(50);
        assert_eq!((d.len(), d.bytes()), (1, 40));
        assert!(d.get(&c).is_some());
        // Many touches leave the order bounded.
        for _ in 0..1000 {
            d.insert([3u8; 40]);
        }
        assert!(d.read().order.len() <= 2 * d.len() + 16);
    }

    #[cfg(any(feature = "compression-br", feature = "compression-zstd"))]
    #[test]
    fn fetch_metadata_keeps_dictionaries_to_readable_responses() {
        let d = Dictionaries::new();
        let hash = d.insert(script(1, 2000)).unwrap();
        let with = |fields: &[(&'static str, &'static str)]| {
            let mut h = request(&hash, "gzip, dcb, dcz");
            for (k, v) in fields {
                h.insert(*k, HeaderValue::from_static(v));
            }
            d.choose(&h)
        };
        assert!(with(&[]).is_some());
        assert!(
            with(&[
                ("sec-fetch-site", "same-origin"),
                ("sec-fetch-mode", "no-cors")
            ])
            .is_some()
        );
        assert!(
            with(&[
                ("sec-fetch-site", "cross-site"),
                ("sec-fetch-mode", "navigate")
            ])
            .is_some()
        );
        assert!(
            with(&[
                ("sec-fetch-site", "cross-site"),
                ("sec-fetch-mode", "no-cors")
            ])
            .is_none()
        );
        assert!(
            with(&[("sec-fetch-site", "same-site"), ("sec-fetch-mode", "cors")]).is_none(),
            "cors without Origin"
        );
        let cors = with(&[
            ("sec-fetch-site", "cross-site"),
            ("sec-fetch-mode", "cors"),
            ("origin", "https://a.example"),
        ])
        .unwrap();
        let allow = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(
                http::header::ACCESS_CONTROL_ALLOW_ORIGIN,
                HeaderValue::from_static(v),
            );
            h
        };
        assert!(cors.allowed_for(&allow("*")));
        assert!(cors.allowed_for(&allow("https://a.example")));
        assert!(!cors.allowed_for(&allow("https://b.example")));
        assert!(!cors.allowed_for(&HeaderMap::new()));
    }

    #[test]
    fn a_request_chooses_a_known_dictionary_it_accepts_a_coding_for() {
        let d = Dictionaries::new();
        let hash = d.insert(script(1, 4000)).unwrap();
        let unknown = AvailableDictionary::new([7; 32]);
        assert!(d.choose(&request(&unknown, "dcz, dcb, br")).is_none());
        assert!(d.choose(&request(&hash, "br, gzip")).is_none());
        assert!(d.choose(&request(&hash, "dcz;q=0, dcb;q=0.000")).is_none());
        assert!(
            d.choose(&request(&hash, "dcz;q=0.0001, dcb;q=2")).is_none(),
            "not q-values"
        );
        if cfg!(feature = "compression-zstd") {
            let c = d.choose(&request(&hash, "gzip, DCZ;q=0.5, dcb")).unwrap();
            assert_eq!(c.coding, DictionaryCoding::Dcz);
        }
        if cfg!(feature = "compression-br") {
            let c = d.choose(&request(&hash, "gzip, dcb")).unwrap();
            assert_eq!(c.coding, DictionaryCoding::Dcb);
            assert_eq!(&c.hash, hash.hash());
        }
        let mut no_field = request(&hash, "dcb, dcz");
        no_field.remove(&AVAILABLE_DICTIONARY);
        assert!(d.choose(&no_field).is_none());
    }

    #[cfg(feature = "compression-br")]
    #[test]
    fn dcb_is_the_header_then_brotli_over_the_dictionary() {
        let (v1, v2) = (script(1, 30 * 1024), script(2, 30 * 1024 + 300));
        let d = Dictionaries::new();
        let hash = d.insert(&v1).unwrap();
        let choice = d.choose(&request(&hash, "dcb")).unwrap();
        let out = choice.compress(&v2, 3).unwrap();
        // `undictionary` checks the header names the hash.
        assert_eq!(undictionary("dcb", &out, &v1, hash.hash()), v2);
        let plain = encode(ContentCoding::Br, &v2);
        assert!(
            out.len() * 3 < plain.len(),
            "{} against {}",
            out.len(),
            plain.len()
        );
    }

    /// Streamed bodies of unknown length, in pieces with a flush that
    /// makes the first part decodable, in both codings: a short one is as
    /// small as a near copy of the dictionary should be, and one longer
    /// than the window (1 MiB) still decodes.
    #[test]
    fn streamed_bodies_compress_against_the_dictionary() {
        let v1 = script(1, 30 * 1024);
        let d = Dictionaries::new();
        let hash = d.insert(&v1).unwrap();
        let mut v2 = script(2, 30 * 1024 + 300);
        let short = v2.clone();
        while v2.len() < 1_200_000 {
            v2.extend_from_slice(&short);
        }
        for coding in ["dcz", "dcb"] {
            if (coding == "dcz" && !cfg!(feature = "compression-zstd"))
                || (coding == "dcb" && !cfg!(feature = "compression-br"))
            {
                continue;
            }
            let choice = d.choose(&request(&hash, coding)).unwrap();
            for body in [&short, &v2] {
                let mut e = choice.encoder(3, None, false).unwrap();
                let mut out = choice.header();
                e.encode(&body[..1_000], &mut out, Flush::Sync).unwrap();
                let head = undictionary_prefix(coding, &out, &v1, hash.hash());
                assert_eq!(head, &body[..1_000], "{coding}");
                for chunk in body[1_000..].chunks(9_000) {
                    e.encode(chunk, &mut out, Flush::None).unwrap();
                }
                e.encode(&[], &mut out, Flush::Finish).unwrap();
                assert_eq!(undictionary(coding, &out, &v1, hash.hash()), *body);
                if body.len() == short.len() {
                    let plain = encode(ContentCoding::Gzip, body);
                    assert!(
                        out.len() * 5 < plain.len(),
                        "{coding}: {} of {}",
                        out.len(),
                        plain.len()
                    );
                }
            }
        }
    }

    /// A large dictionary is used only for a body worth its set-up (at
    /// least 1/64 of it); one up to 64 KiB for any body.
    #[cfg(any(feature = "compression-br", feature = "compression-zstd"))]
    #[test]
    fn large_dictionaries_only_for_bodies_worth_their_set_up() {
        let d = Dictionaries::new();
        let big = d.insert(script(1, 256 * 1024)).unwrap();
        let small = d.insert(script(2, 30 * 1024)).unwrap();
        let big = d.choose(&request(&big, "dcz, dcb")).unwrap();
        let small = d.choose(&request(&small, "dcz, dcb")).unwrap();
        assert!(!big.worth_it(Some(1024)));
        assert!(!big.worth_it(Some(4095)));
        assert!(big.worth_it(Some(4096)));
        assert!(big.worth_it(None), "streamed");
        assert!(small.worth_it(Some(10)));
    }

    /// A large dictionary (256 KiB) is found again whole or streamed, in
    /// both codings: the next version (70 edits) comes out several times
    /// smaller than gzip's (zstd's level-1 hash table alone lost most of
    /// the dictionary: twice smaller only).
    #[test]
    fn a_large_dictionary_is_found_again() {
        let v1 = script(1, 256 * 1024);
        let v2 = script(2, 256 * 1024);
        let d = Dictionaries::new();
        let hash = d.insert(&v1).unwrap();
        let gzip = encode(ContentCoding::Gzip, &v2).len();
        for coding in ["dcz", "dcb"] {
            let Some(choice) = d.choose(&request(&hash, coding)) else {
                continue;
            };
            let level = choice.level(3, 1);
            let whole = choice.compress(&v2, level).unwrap();
            let mut streamed = choice.header();
            let mut e = choice.encoder(level, None, false).unwrap();
            for chunk in v2.chunks(16 * 1024) {
                e.encode(chunk, &mut streamed, Flush::None).unwrap();
            }
            e.encode(&[], &mut streamed, Flush::Finish).unwrap();
            for out in [whole, streamed] {
                assert_eq!(undictionary(coding, &out, &v1, hash.hash()), v2);
                assert!(
                    out.len() * 5 < gzip,
                    "{coding}: {} against {gzip}",
                    out.len()
                );
            }
        }
    }

    #[cfg(feature = "compression-zstd")]
    #[test]
    fn dcz_is_a_skippable_frame_with_the_hash_then_zstd_over_the_dictionary() {
        use crate::compression::test_util::decode;
        let (v1, v2) = (script(1, 30 * 1024), script(2, 30 * 1024 + 300));
        let d = Dictionaries::new();
        let hash = d.insert(&v1).unwrap();
        let choice = d.choose(&request(&hash, "dcz")).unwrap();
        for _ in 0..2 {
            // Twice: the pooled context gives the dictionary up after use.
            let out = choice.compress(&v2, 1).unwrap();
            assert_eq!(undictionary("dcz", &out, &v1, hash.hash()), v2);
            let plain = encode(ContentCoding::Zstd, &v2);
            assert!(
                out.len() * 4 < plain.len(),
                "{} against {}",
                out.len(),
                plain.len()
            );
        }
        // The pooled context, taken again by a plain response, has given
        // the dictionary up: its frame decodes without one.
        let plain = encode(ContentCoding::Zstd, &v2);
        assert_eq!(decode(ContentCoding::Zstd, &plain), v2);
        // A zstd-format dictionary would not be read as raw content: never
        // dcz (dcb where the build and the client have it).
        let mut formatted = ZSTD_DICTIONARY_MAGIC.to_vec();
        formatted.extend_from_slice(&v1);
        let hash = d.insert(&formatted).unwrap();
        assert!(d.choose(&request(&hash, "dcz")).is_none());
        if cfg!(feature = "compression-br") {
            let c = d.choose(&request(&hash, "dcz, dcb")).unwrap();
            assert_eq!(c.coding, DictionaryCoding::Dcb);
        }
        let choice = Choice {
            coding: DictionaryCoding::Dcz,
            hash: *hash.hash(),
            dictionary: Bytes::from(formatted),
            cors_origin: None,
        };
        assert!(choice.compress(&v2, 1).is_none());
    }
}
