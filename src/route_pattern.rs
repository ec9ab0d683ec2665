//! Request-path patterns shared by the layers' rule tables: exact paths,
//! prefixes, globs where `*` matches within a segment and `**` across
//! segments, and axum's `{param}` and `{*rest}` segments (users copy them
//! from their router).
//!
//! A pattern that could never match a request path is refused when the
//! rule is built (a panic naming the pattern and why, as axum's
//! `Router::route` does): a rule that silently matches nothing would leave
//! the route without the limit or policy it was written for.

use std::fmt;

/// A request-path pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Pattern {
    Exact(String),
    Prefix(String),
    /// A glob of literal segments then `**` (`/static/**`): the directory
    /// itself or anything under it, matched without splitting the path.
    /// Holds the directory without its leading slash (`static`); empty
    /// for `/**`.
    Under(String),
    Glob(Vec<Seg>),
}

/// One segment of a glob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seg {
    /// Literal text where `*` stands for any run of characters.
    Wild(String),
    /// `**`: any number of segments, none included.
    Any,
    /// `prefix{name}`: one segment that starts with `prefix`. As in axum
    /// (matchit), the captured part may be empty only when a `/` follows
    /// it in the pattern: `/users/{id}` doesn't match `/users/`, while
    /// `/a/{id}/b` matches `/a//b`.
    Param(String),
    /// `prefix{*name}`, last: the rest of the path, which must not be empty
    /// after `prefix` (axum's `/files/{*rest}` matches neither `/files`
    /// nor `/files/`).
    Rest(String),
}

/// Why a pattern can never match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PatternError {
    pattern: String,
    why: String,
}

impl fmt::Display for PatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid route pattern {:?}: {}", self.pattern, self.why)
    }
}

/// Splits a path into segments, ignoring the leading slash.
fn segments(path: &str) -> impl Iterator<Item = &str> {
    path.strip_prefix('/').unwrap_or(path).split('/')
}

/// Why `c` can never be part of a request path as the server sees it
/// (`http::Uri`'s path: `?` starts the query, `#` a fragment the client
/// keeps, the rest are refused before a request exists), if it can't.
fn impossible(c: char) -> Option<&'static str> {
    match c {
        '?' => Some("`?` starts the query, which is not part of the path"),
        '#' => Some("`#` starts a fragment, which never reaches the server"),
        ' ' => Some("a space never appears unencoded in a request path (write %20)"),
        c if c.is_ascii_control() => {
            Some("a control character never appears unencoded in a request path")
        }
        '<' | '>' | '`' => Some(
            "`<`, `>` and `` ` `` never appear unencoded in a request path (percent-encode them)",
        ),
        _ => None,
    }
}

/// The leading `/` and the characters every pattern and prefix needs.
fn check_text(text: &str) -> Result<(), String> {
    if text.is_empty() {
        return Err("it is empty (use \"/\" for the root, \"/**\" for every path)".into());
    }
    if !text.starts_with('/') {
        return Err("it must start with `/`, as every request path does".into());
    }
    if let Some(why) = text.chars().find_map(impossible) {
        return Err(format!("it can never match: {why}"));
    }
    Ok(())
}

/// Reads one segment: literal text (with `{{` and `}}` for braces), then
/// at most one `{name}` or `{*name}` at its end. Returns the text before
/// the parameter, and the parameter (`Some(true)` for a catch-all).
fn segment(seg: &str) -> Result<(String, Option<bool>), String> {
    if let Some(name) = seg.strip_prefix(':') {
        // axum 0.8 refuses these too (unless told `without_v07_checks`):
        // a pattern copied from an axum 0.7 router would match only a
        // literal colon.
        return Err(format!(
            "`{seg}` is axum 0.7's parameter syntax: write `{{{name}}}`"
        ));
    }
    let mut text = String::with_capacity(seg.len());
    let mut chars = seg.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '{' if chars.peek().is_some_and(|&(_, n)| n == '{') => {
                chars.next();
                text.push('{');
            }
            '}' if chars.peek().is_some_and(|&(_, n)| n == '}') => {
                chars.next();
                text.push('}');
            }
            '}' => {
                return Err(
                    "it has a `}` that closes nothing (write `}}` for a literal brace)".into(),
                );
            }
            '{' => {
                let rest = &seg[i + 1..];
                let Some(end) = rest.find('}') else {
                    return Err(
                        "it has a `{` that is never closed within its segment (write `{{` for a literal brace)".into(),
                    );
                };
                let inner = &rest[..end];
                let (catch_all, name) = match inner.strip_prefix('*') {
                    Some(name) => (true, name),
                    None => (false, inner),
                };
                if name.is_empty() || name.contains(['{', '*']) {
                    return Err(format!(
                        "`{{{inner}}}` is not a parameter: write `{{name}}` for one segment or `{{*name}}` for the rest of the path"
                    ));
                }
                if !rest[end + 1..].is_empty() {
                    return Err(format!(
                        "nothing may follow `{{{inner}}}` within its segment (axum takes one parameter per segment, at its end)"
                    ));
                }
                if text.contains('*') {
                    return Err(format!(
                        "a segment can't mix a `*` wildcard with the parameter `{{{inner}}}`"
                    ));
                }
                return Ok((text, Some(catch_all)));
            }
            c => text.push(c),
        }
    }
    Ok((text, None))
}

impl Pattern {
    /// An exact path, or a glob when it has `*` or parameters.
    ///
    /// # Panics
    ///
    /// When the pattern can never match a request path (see
    /// [`try_parse`](Self::try_parse)), with a message naming it and why.
    pub(crate) fn parse(pattern: &str) -> Self {
        Self::try_parse(pattern).unwrap_or_else(|e| panic!("{e}"))
    }

    /// A byte-wise prefix.
    ///
    /// # Panics
    ///
    /// When the prefix can never match a request path, or holds a brace
    /// (a prefix is compared byte by byte: axum's parameters belong in a
    /// pattern).
    pub(crate) fn prefix(prefix: &str) -> Self {
        Self::try_prefix(prefix).unwrap_or_else(|e| panic!("{e}"))
    }

    /// See [`prefix`](Self::prefix).
    pub(crate) fn try_prefix(prefix: &str) -> Result<Self, PatternError> {
        let err = |why: String| PatternError {
            pattern: prefix.to_owned(),
            why: format!("as a prefix, {why}"),
        };
        check_text(prefix).map_err(err)?;
        if prefix.contains(['{', '}']) {
            return Err(err(
                "it holds a brace, and a prefix is compared byte by byte: for axum's `{param}` segments use a pattern (`/api/{id}/**`)".into(),
            ));
        }
        Ok(Self::Prefix(prefix.to_owned()))
    }

    /// The pattern, or why it can never match: empty, no leading `/`, a
    /// character no request path holds, malformed or unbalanced braces,
    /// two parameters or text after one in a segment, `{*rest}` anywhere
    /// but at the end.
    pub(crate) fn try_parse(pattern: &str) -> Result<Self, PatternError> {
        let err = |why: String| PatternError {
            pattern: pattern.to_owned(),
            why,
        };
        check_text(pattern).map_err(err)?;
        if !pattern.contains(['*', '{', '}']) && !pattern.contains("/:") {
            return Ok(Self::Exact(pattern.to_owned()));
        }
        let mut globs: Vec<Seg> = Vec::new();
        let mut iter = segments(pattern).peekable();
        while let Some(seg) = iter.next() {
            let last = iter.peek().is_none();
            let g = match segment(seg).map_err(err)? {
                (_, Some(true)) if !last => {
                    return Err(err(format!(
                        "the catch-all `{seg}` must be its last segment"
                    )));
                }
                (text, Some(true)) => Seg::Rest(text),
                (text, Some(false)) => Seg::Param(text),
                (text, None) if text == "**" => Seg::Any,
                (text, None) => Seg::Wild(text),
            };
            // `**/**` means no more than `**`; collapsing keeps matching
            // polynomial whatever the pattern.
            if g == Seg::Any && globs.last() == Some(&Seg::Any) {
                continue;
            }
            globs.push(g);
        }
        let literal = |g: &Seg| matches!(g, Seg::Wild(t) if !t.contains('*'));
        if globs.iter().all(literal) {
            // Only escaped braces: an exact path after all.
            let path: Vec<&str> = globs
                .iter()
                .map(|g| match g {
                    Seg::Wild(t) => t.as_str(),
                    _ => "",
                })
                .collect();
            return Ok(Self::Exact(format!("/{}", path.join("/"))));
        }
        match globs.split_last() {
            Some((Seg::Any, dir)) if dir.iter().all(literal) => {
                let dir: Vec<&str> = dir
                    .iter()
                    .map(|g| match g {
                        Seg::Wild(t) => t.as_str(),
                        _ => "",
                    })
                    .collect();
                Ok(Self::Under(dir.join("/")))
            }
            _ => Ok(Self::Glob(globs)),
        }
    }

    /// Whether `path` matches.
    pub(crate) fn matches(&self, path: &str) -> bool {
        match self {
            Self::Exact(p) => p == path,
            Self::Prefix(p) => path.starts_with(p.as_str()),
            Self::Under(dir) => {
                let p = path.strip_prefix('/').unwrap_or(path);
                dir.is_empty()
                    || p.strip_prefix(dir.as_str())
                        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
            }
            Self::Glob(globs) => glob_matches(globs, path),
        }
    }
}

/// Whether `path` matches `globs`: `**` matches any number of segments
/// (none included); other segments match one path segment, where `*`
/// stands for any run of characters; parameters as axum matches them (see
/// [`Seg`]).
///
/// The client chooses the path, so the work must not grow faster than it:
/// rather than trying every split at each `**` (O(n^k) for k separate
/// `**` on n segments), this reads the path once, keeping the set of
/// pattern positions the segments read so far can have reached. Each
/// segment is compared with at most every pattern element, once: time is
/// O(elements × segments), plus the in-segment wildcards (linear, see
/// [`wildcard`]), and the only memory is that set, one bit per element
/// (allocated only for patterns of 128 elements or more: its size is the
/// pattern's, never the request's).
fn glob_matches(globs: &[Seg], path: &str) -> bool {
    let k = globs.len();
    // Bit i: `globs[..i]` matches the segments read so far; bit k: all of it.
    let words = k / 64 + 1;
    let mut inline = [0u64; 2];
    let mut heap = Vec::new();
    let reached: &mut [u64] = if words <= inline.len() {
        &mut inline[..words]
    } else {
        heap.resize(words, 0);
        &mut heap
    };
    set(reached, 0, true);
    skip_empty_any(globs, reached);
    let mut segs = segments(path).peekable();
    while let Some(s) = segs.next() {
        let last = segs.peek().is_none();
        // The whole pattern matched, and there is one more segment.
        set(reached, k, false);
        let mut alive = false;
        // Downwards, so each position reads its own bit before the one
        // below it may set it.
        for i in (0..k).rev() {
            if !get(reached, i) {
                continue;
            }
            step();
            let (stay, advance) = match &globs[i] {
                // A `**` that ends the pattern takes whatever remains.
                Seg::Any if i + 1 == k => return true,
                Seg::Any => (true, false),
                Seg::Wild(w) => (false, wildcard(w, s)),
                Seg::Param(prefix) => (
                    false,
                    s.starts_with(prefix.as_str()) && (s.len() > prefix.len() || i + 1 < k),
                ),
                Seg::Rest(prefix) => {
                    if s.starts_with(prefix.as_str()) && (s.len() > prefix.len() || !last) {
                        return true;
                    }
                    (false, false)
                }
            };
            set(reached, i, stay);
            if advance {
                set(reached, i + 1, true);
            }
            alive |= stay || advance;
        }
        if !alive {
            return false;
        }
        skip_empty_any(globs, reached);
    }
    get(reached, k)
}

/// Adds the positions after each reached `**`: it may match no segment.
fn skip_empty_any(globs: &[Seg], reached: &mut [u64]) {
    for (i, g) in globs.iter().enumerate() {
        if *g == Seg::Any && get(reached, i) {
            set(reached, i + 1, true);
        }
    }
}

fn get(bits: &[u64], i: usize) -> bool {
    bits[i / 64] & (1 << (i % 64)) != 0
}

fn set(bits: &mut [u64], i: usize, on: bool) {
    if on {
        bits[i / 64] |= 1 << (i % 64);
    } else {
        bits[i / 64] &= !(1 << (i % 64));
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
    let Some((first, rest)) = p.split_once('*') else {
        return p == s;
    };
    let (middle, last) = rest.rsplit_once('*').unwrap_or(("", rest));
    if s.len() < first.len() + last.len() || !s.starts_with(first) || !s.ends_with(last) {
        return false;
    }
    let mut s = &s[first.len()..s.len() - last.len()];
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

    #[test]
    fn patterns() {
        let cases: [(&str, &str, bool); 17] = [
            ("/health", "/health", true),
            ("/health", "/health/", false),
            ("/health", "/healthz", false),
            ("/static/**", "/static/app.js", true),
            ("/static/**", "/static/a/b/c.css", true),
            ("/static/**", "/static", true),
            ("/static/**", "/staticx/app.js", false),
            ("/api/*/items", "/api/v1/items", true),
            ("/api/*/items", "/api/v1/v2/items", false),
            ("/assets/*.js", "/assets/app.js", true),
            ("/assets/*.js", "/assets/app.css", false),
            ("/assets/*.js", "/assets/a/app.js", false),
            ("/**/*.png", "/img/deep/x.png", true),
            ("/**/*.png", "/x.png", true),
            ("/a*b*c", "/aXXbYYc", true),
            ("/a*b*c", "/aXXbYY", false),
            ("/**", "/anything/at/all", true),
        ];
        for (p, path, expected) in cases {
            assert_eq!(Pattern::parse(p).matches(path), expected, "{p} ~ {path}");
        }
        assert!(Pattern::prefix("/api").matches("/api/v1"));
        assert!(Pattern::prefix("/api").matches("/apix"));
        assert!(!Pattern::prefix("/api").matches("/ap"));
    }

    /// axum's segments match what axum's router (matchit 0.8) routes to
    /// the same route: each case was checked against `matchit::Router`.
    #[test]
    fn axum_parameters_match_as_axum_routes() {
        let cases: &[(&str, &str, bool)] = &[
            ("/api/items/{id}", "/api/items/7", true),
            ("/api/items/{id}", "/api/items/7/", false),
            ("/api/items/{id}", "/api/items/", false),
            ("/api/items/{id}", "/api/items", false),
            ("/api/{id}", "/api/x", true),
            ("/api/{id}", "/api/x/y", false),
            ("/a/{id}/b", "/a/7/b", true),
            // A parameter followed by `/` may be empty, as in matchit.
            ("/a/{id}/b", "/a//b", true),
            ("/a/{id}/b", "/a/7/c", false),
            ("/a/{x}/{y}", "/a//2", true),
            ("/user_{id}", "/user_7", true),
            ("/user_{id}", "/user_", false),
            ("/user_{id}", "/users_7", false),
            ("/files/{*rest}", "/files/a", true),
            ("/files/{*rest}", "/files/a/b/c", true),
            ("/files/{*rest}", "/files//", true),
            ("/files/{*rest}", "/files/a/", true),
            ("/files/{*rest}", "/files/", false),
            ("/files/{*rest}", "/files", false),
            ("/files/{*rest}", "/filesx/a", false),
            ("/pre{*rest}", "/prefoo", true),
            ("/pre{*rest}", "/pre/x", true),
            ("/pre{*rest}", "/pre", false),
            ("/{*rest}", "/", false),
            ("/{*rest}", "/x", true),
            ("/f/{id}/{*rest}", "/f/1/2", true),
            ("/f/{id}/{*rest}", "/f//2", true),
            ("/f/{id}/{*rest}", "/f/1/", false),
            ("/{{lit}}", "/{lit}", true),
            ("/{{lit}}", "/lit", false),
            ("/a}}/{id}", "/a}/x", true),
            // Our globs and axum's parameters together.
            ("/api/{version}/**", "/api/v1/items/7", true),
            ("/api/{version}/**", "/api/v1", true),
            ("/api/{version}/*.json", "/api/v1/x.json", true),
            ("/api/{version}/*.json", "/api/v1/x.xml", false),
        ];
        for &(p, path, expected) in cases {
            assert_eq!(Pattern::parse(p).matches(path), expected, "{p} ~ {path}");
        }
        assert_eq!(Pattern::parse("/{{lit}}"), Pattern::Exact("/{lit}".into()));
    }

    #[test]
    fn patterns_that_cannot_match_are_refused() {
        let cases: &[(&str, &str)] = &[
            ("", "empty"),
            ("[", "start with `/`"),
            ("api/items", "start with `/`"),
            ("*.js", "start with `/`"),
            ("/api items", "space"),
            ("/api?x=1", "query"),
            ("/page#top", "fragment"),
            ("/a\tb", "control"),
            ("/a<b>", "percent-encode"),
            ("/api/{id", "never closed"),
            ("/api/id}", "closes nothing"),
            ("/api/{a/b}", "never closed"),
            ("/api/{}", "not a parameter"),
            ("/api/{*}", "not a parameter"),
            ("/api/{a{b}}", "not a parameter"),
            ("/api/{**x}", "not a parameter"),
            ("/api/{id}.json", "nothing may follow"),
            ("/api/{a}{b}", "nothing may follow"),
            ("/api/*{id}", "mix"),
            ("/files/{*rest}/more", "last segment"),
            ("/files/{*rest}/", "last segment"),
            ("/api/:id", "axum 0.7"),
        ];
        for &(p, why) in cases {
            let e = Pattern::try_parse(p).expect_err(p).to_string();
            assert!(e.contains(why), "{p:?}: {e}");
            assert!(e.contains(&format!("{p:?}")), "names the pattern: {e}");
        }
        for (p, why) in [
            ("", "empty"),
            ("api", "start with `/`"),
            ("/api?", "query"),
            ("/api/{id}", "byte by byte"),
        ] {
            let e = Pattern::try_prefix(p).expect_err(p).to_string();
            assert!(e.contains(why), "{p:?}: {e}");
        }
        // What axum accepts, we accept.
        for p in [
            "/",
            "/api/items/{id}",
            "/{*rest}",
            "/a/{b}/{*c}",
            "/{{x}}",
            "/x}}",
        ] {
            assert!(Pattern::try_parse(p).is_ok(), "{p}");
        }
    }

    #[test]
    #[should_panic(expected = "invalid route pattern \"/api/{id\"")]
    fn parse_panics_naming_the_pattern() {
        let _ = Pattern::parse("/api/{id");
    }

    #[test]
    fn directory_globs_match_as_globs_do() {
        // `Under` is a shortcut for literal segments then `**`: it must
        // answer as the general glob does, whatever the path.
        let patterns = ["/static/**", "/**", "/api/v1/**", "/a//**"];
        let paths = [
            "",
            "/",
            "/static",
            "/static/",
            "/static/a",
            "/static/a/b",
            "/staticx",
            "/staticx/a",
            "static/a",
            "/api/v1",
            "/api/v1/x",
            "/api/v10",
            "/api",
            "/a/",
            "/a//x",
            "/a/x",
            "//",
            "*",
        ];
        for p in patterns {
            let fast = Pattern::parse(p);
            assert!(matches!(fast, Pattern::Under(_)), "{p}");
            let glob = Pattern::Glob(
                segments(p)
                    .map(|s| match s {
                        "**" => Seg::Any,
                        s => Seg::Wild(s.to_owned()),
                    })
                    .collect(),
            );
            for path in paths {
                assert_eq!(fast.matches(path), glob.matches(path), "{p} ~ {path:?}");
            }
        }
        // Wildcards before `**` keep the general glob.
        assert!(matches!(Pattern::parse("/*/x/**"), Pattern::Glob(_)));
        // More than 32 segments still match.
        let deep = format!("/{}/x.png", ["d"; 40].join("/"));
        assert!(Pattern::parse("/**/*.png").matches(&deep));
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
        for pattern in ["/**/a/**/b", "/**/a/**/a/**/b", "/**/a*/**/{x}/**/a/b"] {
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

    /// The matcher as it was (trying every split at each `**`, and
    /// backtracking to the last `*` within a segment): exponential, but
    /// the reference for what matches.
    fn backtracking(globs: &[Seg], segs: &[&str]) -> bool {
        match globs.split_first() {
            None => segs.is_empty(),
            Some((Seg::Any, rest)) => {
                (0..=segs.len()).any(|skip| backtracking(rest, &segs[skip..]))
            }
            Some((Seg::Rest(prefix), _)) => match segs.split_first() {
                Some((s, srest)) => {
                    s.starts_with(prefix.as_str()) && (s.len() > prefix.len() || !srest.is_empty())
                }
                None => false,
            },
            Some((g, rest)) => match segs.split_first() {
                Some((s, srest)) => {
                    let here = match g {
                        Seg::Param(prefix) => {
                            s.starts_with(prefix.as_str())
                                && (s.len() > prefix.len() || !rest.is_empty())
                        }
                        Seg::Wild(w) => backtracking_wildcard(w.as_bytes(), s.as_bytes()),
                        Seg::Any | Seg::Rest(_) => false,
                    };
                    here && backtracking(rest, srest)
                }
                None => false,
            },
        }
    }

    fn backtracking_wildcard(p: &[u8], s: &[u8]) -> bool {
        let (mut pi, mut si) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while si < s.len() {
            if pi < p.len() && p[pi] == b'*' {
                star = Some((pi, si));
                pi += 1;
            } else if pi < p.len() && p[pi] == s[si] {
                pi += 1;
                si += 1;
            } else if let Some((sp, ss)) = star {
                pi = sp + 1;
                si = ss + 1;
                star = Some((sp, ss + 1));
            } else {
                return false;
            }
        }
        p[pi..].iter().all(|&b| b == b'*')
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
                        backtracking(&globs, &segs),
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
                    backtracking_wildcard(p.as_bytes(), s.as_bytes()),
                    "{p:?} ~ {s:?}"
                );
            }
        }
        assert!(wildcard("é*ü", "éaü"));
        assert!(!wildcard("é*ü", "éü*"));
    }
}
