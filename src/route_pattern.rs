//! Request-path patterns shared by the layers' rule tables: exact paths,
//! prefixes, globs where `*` matches within a segment and `**` across
//! segments, and axum's `{param}` and `{*rest}` segments (users copy them
//! from their router).
//!
//! A glob is matched in time linear in the path's segments (the client
//! chooses the path; see `glob`), whatever the number of `**`.
//!
//! A pattern that could never match a request path is refused when the
//! rule is built (a panic naming the pattern and why, as axum's
//! `Router::route` does): a rule that silently matches nothing would leave
//! the route without the limit or policy it was written for.

use std::fmt;

// Spelled out so that benches/route_pattern.rs, which compiles this file
// itself, finds it too.
#[cfg(test)]
#[path = "route_pattern/backtracking.rs"]
pub(crate) mod backtracking;
#[path = "route_pattern/glob.rs"]
mod glob;

/// A request-path pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Pattern {
    Exact(String),
    // The cache uses patterns only, not prefixes.
    #[cfg_attr(
        not(any(feature = "cache-control", feature = "rate-limit")),
        allow(dead_code)
    )]
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
    #[cfg_attr(
        not(any(feature = "cache-control", feature = "rate-limit")),
        allow(dead_code)
    )]
    pub(crate) fn prefix(prefix: &str) -> Self {
        Self::try_prefix(prefix).unwrap_or_else(|e| panic!("{e}"))
    }

    /// See [`prefix`](Self::prefix).
    #[cfg_attr(
        not(any(feature = "cache-control", feature = "rate-limit")),
        allow(dead_code)
    )]
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
            // `**/**` means no more than `**` (the matcher would skip the
            // empty block between them anyway).
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
            Self::Glob(globs) => glob::matches(globs, path),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
