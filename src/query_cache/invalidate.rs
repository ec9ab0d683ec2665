//! What an invalidation selects: a key, a namespace, a prefix, a glob
//! pattern, a tag, or everything.

use super::key::{QueryKey, namespace_of};

/// Longest glob pattern accepted, in bytes: matching is then at most this
/// many steps per byte of a key.
pub const MAX_PATTERN: usize = 1024;

/// Which entries an invalidation drops.
///
/// ```
/// use tower_perf::query_cache::{Invalidate, QueryKey};
///
/// let key = QueryKey::new("user:42:orders");
/// assert!(Invalidate::Namespace("user".into()).selects(&key, &[]));
/// assert!(Invalidate::Prefix("user:42:".into()).selects(&key, &[]));
/// assert!(Invalidate::pattern("user:*:orders").unwrap().selects(&key, &[]));
/// assert!(!Invalidate::pattern("user:?:orders").unwrap().selects(&key, &[]));
/// assert!(Invalidate::Tag("customer-42".into()).selects(&key, &["customer-42".into()]));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalidate {
    /// One key.
    Key(QueryKey),
    /// Every key of a namespace (the name up to its first `:`).
    Namespace(String),
    /// Every key whose text starts with this.
    Prefix(String),
    /// Every key whose text matches a glob pattern; build it with
    /// [`Invalidate::pattern`].
    Pattern(Glob),
    /// Every entry stored with this tag.
    Tag(String),
    /// Everything.
    All,
}

impl Invalidate {
    /// A glob pattern: `*` matches any run of characters (`:` included),
    /// `?` any one character, `\` makes the next character literal.
    /// Errors when longer than [`MAX_PATTERN`] bytes.
    pub fn pattern(pattern: &str) -> Result<Self, PatternError> {
        Glob::new(pattern).map(Self::Pattern)
    }

    /// Whether this selects the entry stored under `key` with `tags`.
    pub fn selects(&self, key: &QueryKey, tags: &[Box<str>]) -> bool {
        let text = key.as_str();
        match self {
            Self::Key(k) => k == key,
            Self::Namespace(ns) => namespace_of(text) == ns,
            Self::Prefix(p) => text.starts_with(p.as_str()),
            Self::Pattern(g) => g.matches(text),
            Self::Tag(t) => tags.iter().any(|x| **x == **t),
            Self::All => true,
        }
    }
}

/// A glob pattern was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatternError(usize);

impl std::fmt::Display for PatternError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "a query cache pattern of {} bytes is longer than the {MAX_PATTERN} allowed",
            self.0
        )
    }
}

impl std::error::Error for PatternError {}

/// One piece of a glob pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Token {
    Char(char),
    One,
    Any,
}

/// A parsed glob pattern (see [`Invalidate::pattern`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    source: Box<str>,
    tokens: Box<[Token]>,
}

impl Glob {
    fn new(pattern: &str) -> Result<Self, PatternError> {
        if pattern.len() > MAX_PATTERN {
            return Err(PatternError(pattern.len()));
        }
        let mut tokens = Vec::with_capacity(pattern.len());
        let mut chars = pattern.chars();
        while let Some(c) = chars.next() {
            tokens.push(match c {
                '*' if tokens.last() == Some(&Token::Any) => continue,
                '*' => Token::Any,
                '?' => Token::One,
                '\\' => Token::Char(chars.next().unwrap_or('\\')),
                c => Token::Char(c),
            });
        }
        Ok(Self {
            source: pattern.into(),
            tokens: tokens.into(),
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The pattern, parsed.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn tokens(&self) -> &[Token] {
        &self.tokens
    }

    /// Whether `text` matches: the classic greedy match that goes back
    /// only to the last `*`, so at most (pattern tokens × text characters)
    /// steps: linear in the text, since a pattern has at most
    /// [`MAX_PATTERN`] bytes (a worst case such as `*aaaa…ab` costs up to
    /// that factor per byte).
    pub fn matches(&self, text: &str) -> bool {
        let t = &self.tokens;
        let (mut p, mut star): (usize, Option<(usize, usize)>) = (0, None);
        let mut pos = 0;
        loop {
            let c = text[pos..].chars().next();
            match (t.get(p), c) {
                (Some(Token::Any), _) => {
                    star = Some((p, pos));
                    p += 1;
                }
                (Some(Token::One), Some(c)) => {
                    p += 1;
                    pos += c.len_utf8();
                }
                (Some(Token::Char(x)), Some(c)) if *x == c => {
                    p += 1;
                    pos += c.len_utf8();
                }
                (None, None) => return true,
                _ => {
                    // Mismatch: let the last `*` take one more character.
                    let Some((sp, spos)) = star else { return false };
                    let Some(c) = text[spos..].chars().next() else {
                        return false;
                    };
                    let next = spos + c.len_utf8();
                    star = Some((sp, next));
                    p = sp + 1;
                    pos = next;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, t: &str) -> bool {
        Glob::new(p).unwrap().matches(t)
    }

    #[test]
    fn globs_match_as_documented() {
        assert!(m("user:*", "user:42:orders"));
        assert!(m("user:*:orders", "user:42:orders"));
        assert!(!m("user:*:orders", "user:42:order"));
        assert!(m("*", ""));
        assert!(m("a**b", "axxb"));
        assert!(m("a?c", "abc"));
        assert!(m("a?c", "aéc"));
        assert!(!m("a?c", "ac"));
        assert!(m(r"a\*c", "a*c"));
        assert!(!m(r"a\*c", "abc"));
        assert!(m("*a*b*c", "xxaxxbxxc"));
        assert!(!m("*a*b*c", "xxaxxbxx"));
        assert!(!m("", "a"));
    }

    #[test]
    fn long_patterns_are_refused() {
        assert!(Glob::new(&"a".repeat(MAX_PATTERN)).is_ok());
        assert_eq!(
            Glob::new(&"a".repeat(MAX_PATTERN + 1)),
            Err(PatternError(MAX_PATTERN + 1))
        );
    }
}
