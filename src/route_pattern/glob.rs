//! Matching a path against a glob's segments, in time linear in the path
//! (the client chooses it).

use super::Seg;

/// Whether `path` matches `globs`: `**` matches any number of segments
/// (none included); other segments match one path segment, where `*`
/// stands for any run of characters; parameters as axum matches them (see
/// [`Seg`]).
///
/// The client chooses the path, so the work must not grow faster than it:
/// rather than trying every split at each `**` (O(n^k) for k separate
/// `**` on n segments), the `**` cut the pattern into blocks, each of
/// which matches a fixed number of consecutive segments. The first block
/// matches where the path starts and the last where it ends; each block
/// between is placed at its leftmost place after the previous one (as in
/// [`wildcard`]: taking the leftmost never loses a match that a later
/// place would allow, since a block's length is fixed). A failed place
/// costs at most the block's length in comparisons, so the whole is
/// O(elements × segments), plus the in-segment wildcards (linear), and
/// needs no memory.
pub(super) fn matches(globs: &[Seg], path: &str) -> bool {
    let mut segs = Segs(Some(path.strip_prefix('/').unwrap_or(path)));
    let mut blocks = globs.split(|g| matches!(g, Seg::Any));
    let first = blocks.next().unwrap_or_default();
    let Some(last) = blocks.next_back() else {
        // No `**`: one block, the whole path.
        return match block(first, true, segs) {
            Placed::Done => true,
            Placed::Next(rest) => rest.is_empty(),
            Placed::Fail => false,
        };
    };
    match block(first, false, segs) {
        Placed::Done => return true,
        Placed::Next(rest) => segs = rest,
        Placed::Fail => return false,
    }
    for middle in blocks.filter(|b| !b.is_empty()) {
        match leftmost(middle, false, segs) {
            Placed::Done => return true,
            Placed::Next(rest) => segs = rest,
            Placed::Fail => return false,
        }
    }
    if last.is_empty() {
        // The pattern ends with `**`.
        return true;
    }
    if last.iter().any(|g| matches!(g, Seg::Rest(_))) {
        // A catch-all takes whatever follows it: the block may end before
        // the path does.
        return matches!(leftmost(last, true, segs), Placed::Done);
    }
    segs.last(last.len())
        .is_some_and(|tail| matches!(block(last, true, tail), Placed::Next(_)))
}

/// The path segments not yet matched: `None` when none remains (unlike
/// `Some("")`, one empty segment).
#[derive(Debug, Clone, Copy)]
struct Segs<'a>(Option<&'a str>);

impl<'a> Segs<'a> {
    fn next(&mut self) -> Option<&'a str> {
        let text = self.0?;
        // Segments are short: a plain loop beats setting up a searcher.
        match text.bytes().position(|b| b == b'/') {
            Some(slash) => {
                self.0 = Some(&text[slash + 1..]);
                Some(&text[..slash])
            }
            None => {
                self.0 = None;
                Some(text)
            }
        }
    }

    fn is_empty(self) -> bool {
        self.0.is_none()
    }

    /// The last `n` (at least one) segments, if there are that many: found
    /// from the end, so the segments before them are not read.
    fn last(self, n: usize) -> Option<Self> {
        let text = self.0?;
        let mut end = text.len();
        for _ in 1..n {
            end = text[..end].rfind('/')?;
        }
        let start = text[..end].rfind('/').map_or(0, |slash| slash + 1);
        Some(Self(Some(&text[start..])))
    }
}

/// Where a block of the pattern left the path.
enum Placed<'a> {
    /// It matched; these segments follow.
    Next(Segs<'a>),
    /// It ended with a catch-all that matched: the whole pattern did.
    Done,
    Fail,
}

/// Matches `globs` (no `**`) against the segments at the start of `segs`.
/// `ends` when the block ends the pattern: a parameter there may not be
/// empty.
fn block<'a>(globs: &[Seg], ends: bool, mut segs: Segs<'a>) -> Placed<'a> {
    for (i, g) in globs.iter().enumerate() {
        let Some(s) = segs.next() else {
            return Placed::Fail;
        };
        step();
        let here = match g {
            Seg::Wild(w) => wildcard(w, s),
            Seg::Param(prefix) => {
                s.starts_with(prefix.as_str())
                    && (s.len() > prefix.len() || !ends || i + 1 < globs.len())
            }
            Seg::Rest(prefix) => {
                let rest =
                    s.starts_with(prefix.as_str()) && (s.len() > prefix.len() || !segs.is_empty());
                return if rest { Placed::Done } else { Placed::Fail };
            }
            // Blocks are split at `**`.
            Seg::Any => false,
        };
        if !here {
            return Placed::Fail;
        }
    }
    Placed::Next(segs)
}

/// [`block`] at the first place in `segs` where it matches.
fn leftmost<'a>(globs: &[Seg], ends: bool, mut segs: Segs<'a>) -> Placed<'a> {
    loop {
        match block(globs, ends, segs) {
            Placed::Fail => {
                if segs.next().is_none() {
                    return Placed::Fail;
                }
            }
            placed => return placed,
        }
    }
}

/// Counts the matcher's comparisons of a pattern element with a path
/// segment, so tests can bound its work without timing it.
#[inline]
fn step() {
    #[cfg(test)]
    tests::STEPS.with(|n| n.set(n.get() + 1));
}

/// `*` wildcard matching within one segment, in time linear in the
/// pattern's and the segment's lengths.
///
/// `s` must start with the text before the first `*` and end with the
/// text after the last; in between, each piece between two `*` is found
/// at its leftmost place after the previous one (taking the leftmost
/// never loses a match that a later place would allow). Each search
/// (`str::find`, the two-way algorithm) starts where the previous one
/// ended and is linear in what it scans, so the whole is
/// O(pattern + segment), not the O(pattern × segment) of backtracking to
/// the last `*`.
fn wildcard(p: &str, s: &str) -> bool {
    // The text before the first `*`, byte by byte: most segments are
    // literal, and most that differ do so at once.
    let (pb, sb) = (p.as_bytes(), s.as_bytes());
    let mut i = 0;
    loop {
        match pb.get(i) {
            None => return i == sb.len(),
            Some(b'*') => break,
            Some(c) if sb.get(i) == Some(c) => i += 1,
            Some(_) => return false,
        }
    }
    // `p[i]` is `*` (ASCII), and `s[..i]` equals `p[..i]`: both cut on a
    // character boundary.
    let rest = &p[i + 1..];
    let (middle, last) = rest.rsplit_once('*').unwrap_or(("", rest));
    let Some(mut s) = s[i..].strip_suffix(last) else {
        return false;
    };
    for piece in middle.split('*').filter(|piece| !piece.is_empty()) {
        match s.find(piece) {
            Some(at) => s = &s[at + piece.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route_pattern::{Pattern, backtracking, segments};

    thread_local! {
        /// See [`step`](super::step).
        pub(super) static STEPS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    }

    /// Whether `pattern` matches `path`, and the steps it took.
    fn counted(pattern: &Pattern, path: &str) -> (bool, u64) {
        STEPS.with(|n| n.set(0));
        let matched = pattern.matches(path);
        (matched, STEPS.with(|n| n.get()))
    }

    /// `/a` repeated to fill `bytes`, then `end`.
    fn path_of(bytes: usize, end: &str) -> String {
        format!("{}{end}", "/a".repeat(bytes / 2))
    }

    /// Separate `**` used to cost O(n^k): `/**/a/**/a/**/b` took seconds
    /// on 4 KB of `/a`. Each segment is now compared with each element at
    /// most once, whatever the number of `**` (no timing: the steps are
    /// counted).
    #[test]
    fn separate_double_stars_take_linear_steps() {
        for pattern in [
            "/**/a/**/b",
            "/**/a/**/a/**/b",
            "/**/a*/**/{x}/**/a/b",
            // Each place but the last fails four segments in.
            "/**/a/a/a/a/b/**",
        ] {
            let p = Pattern::parse(pattern);
            let Pattern::Glob(globs) = &p else {
                panic!("{pattern} is a glob");
            };
            for bytes in [4 << 10, 64 << 10] {
                for (end, expected) in [("", false), ("/b", true), ("/a/c", false)] {
                    let path = path_of(bytes, end);
                    let bound = (globs.len() * segments(&path).count()) as u64;
                    let (matched, steps) = counted(&p, &path);
                    assert_eq!(matched, expected, "{pattern} ~ {bytes} bytes then {end:?}");
                    assert!(
                        steps <= bound,
                        "{pattern} on {bytes} bytes then {end:?}: {steps} steps, more than {bound} (elements × segments)"
                    );
                }
            }
        }
    }

    /// Adjacent `**` are merged when parsed, but the matcher does not
    /// rely on it: unmerged, they still cost one step per element and
    /// segment.
    #[test]
    fn adjacent_double_stars_take_linear_steps_unmerged() {
        assert_eq!(
            Pattern::parse("/**/**/**/**/*a*a*a*a*b"),
            Pattern::Glob(vec![Seg::Any, Seg::Wild("*a*a*a*a*b".into())])
        );
        let p = Pattern::Glob(vec![
            Seg::Any,
            Seg::Any,
            Seg::Any,
            Seg::Any,
            Seg::Wild("*a*a*a*a*b".into()),
        ]);
        let segments = 2_000;
        let path = format!("/{}", vec!["a".repeat(30); segments].join("/"));
        let (matched, steps) = counted(&p, &path);
        assert!(!matched);
        assert!(steps <= 5 * segments as u64, "{steps} steps");
        assert!(p.matches(&format!("{path}/aaaab")));
        // A long segment is scanned once per wildcard piece, not
        // backtracked over.
        assert!(!p.matches(&format!("/{}", "a".repeat(64 << 10))));
        assert!(p.matches(&format!("/{}b", "a".repeat(64 << 10))));
    }

    /// Every sequence of up to `len` items from `items`.
    fn sequences<T: Clone>(items: &[T], len: usize) -> Vec<Vec<T>> {
        let mut all = vec![vec![]];
        let mut last = vec![vec![]];
        for _ in 0..len {
            last = last
                .iter()
                .flat_map(|seq: &Vec<T>| {
                    items.iter().map(move |item| {
                        let mut seq = seq.clone();
                        seq.push(item.clone());
                        seq
                    })
                })
                .collect();
            all.extend(last.iter().cloned());
        }
        all
    }

    /// Every glob of up to three elements (then a catch-all or not)
    /// against every path of up to four segments from a small alphabet:
    /// the same answers as the backtracking matcher.
    #[test]
    fn matcher_answers_as_backtracking_did() {
        let wild = |t: &str| Seg::Wild(t.into());
        let elements = [
            Seg::Any,
            wild("a"),
            wild(""),
            wild("*"),
            wild("a*"),
            wild("*b*"),
            Seg::Param(String::new()),
            Seg::Param("a".into()),
        ];
        let ends = [
            None,
            Some(Seg::Rest(String::new())),
            Some(Seg::Rest("a".into())),
        ];
        let paths: Vec<String> = sequences(&["", "a", "b", "ab", "ba"], 4)
            .iter()
            .map(|segs| format!("/{}", segs.join("/")))
            .chain([String::new()])
            .collect();
        let mut checked = 0;
        for mut globs in sequences(&elements, 3) {
            for end in &ends {
                if let Some(end) = end {
                    globs.push(end.clone());
                }
                let p = Pattern::Glob(globs.clone());
                for path in &paths {
                    let segs: Vec<&str> = segments(path).collect();
                    assert_eq!(
                        p.matches(path),
                        backtracking::glob(&globs, &segs),
                        "{globs:?} ~ {path:?}"
                    );
                    checked += 1;
                }
                if end.is_some() {
                    globs.pop();
                }
            }
        }
        assert!(checked > 1_000_000, "{checked}");
    }

    #[test]
    fn wildcard_answers_as_backtracking_did() {
        let patterns = sequences(&['a', 'b', '*'], 6);
        let texts = sequences(&['a', 'b'], 7);
        for p in &patterns {
            let p: String = p.iter().collect();
            for s in &texts {
                let s: String = s.iter().collect();
                assert_eq!(
                    wildcard(&p, &s),
                    backtracking::wildcard(p.as_bytes(), s.as_bytes()),
                    "{p:?} ~ {s:?}"
                );
            }
        }
        assert!(wildcard("é*ü", "éaü"));
        assert!(!wildcard("é*ü", "éü*"));
    }
}
