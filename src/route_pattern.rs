//! Request-path patterns shared by the layers' rule tables: exact paths,
//! prefixes, and globs where `*` matches within a segment and `**` across
//! segments.

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
    Glob(Vec<String>),
}

/// Splits a path into segments, ignoring the leading slash.
fn segments(path: &str) -> impl Iterator<Item = &str> {
    path.strip_prefix('/').unwrap_or(path).split('/')
}

impl Pattern {
    /// An exact path, or a glob when it contains `*`.
    pub(crate) fn parse(pattern: &str) -> Self {
        if pattern.contains('*') {
            let mut globs: Vec<String> = Vec::new();
            for seg in segments(pattern) {
                // `**/**` means no more than `**`; collapsing keeps matching
                // polynomial whatever the pattern.
                if seg == "**" && globs.last().is_some_and(|g| g == "**") {
                    continue;
                }
                globs.push(seg.to_owned());
            }
            match globs.split_last() {
                Some((last, dir)) if last == "**" && !dir.iter().any(|g| g.contains('*')) => {
                    Self::Under(dir.join("/"))
                }
                _ => Self::Glob(globs),
            }
        } else {
            Self::Exact(pattern.to_owned())
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
            Self::Glob(globs) => {
                // Segments on the stack for paths of up to 32 of them.
                let mut buf = [""; 32];
                let mut n = 0;
                for seg in segments(path) {
                    match buf.get_mut(n) {
                        Some(slot) => *slot = seg,
                        None => {
                            let segs: Vec<&str> = segments(path).collect();
                            return glob_segments(globs, &segs);
                        }
                    }
                    n += 1;
                }
                glob_segments(globs, &buf[..n])
            }
        }
    }
}

/// `**` matches any number of segments (none included); other segments
/// match one path segment, where `*` stands for any run of characters.
fn glob_segments(globs: &[String], segs: &[&str]) -> bool {
    match globs.split_first() {
        None => segs.is_empty(),
        Some((g, rest)) if g == "**" => {
            (0..=segs.len()).any(|skip| glob_segments(rest, &segs[skip..]))
        }
        Some((g, rest)) => match segs.split_first() {
            Some((s, srest)) => wildcard(g.as_bytes(), s.as_bytes()) && glob_segments(rest, srest),
            None => false,
        },
    }
}

/// `*` wildcard matching within one segment, linear-time greedy algorithm.
fn wildcard(p: &[u8], s: &[u8]) -> bool {
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
        assert!(Pattern::Prefix("/api".into()).matches("/api/v1"));
        assert!(Pattern::Prefix("/api".into()).matches("/apix"));
        assert!(!Pattern::Prefix("/api".into()).matches("/ap"));
    }

    #[test]
    fn directory_globs_match_as_globs_do() {
        // `Under` is a shortcut for literal segments then `**`: it must
        // answer as the general glob does, whatever the path.
        let patterns = ["/static/**", "/**", "/api/v1/**", "/a//**", "static/**"];
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
            let glob = Pattern::Glob(segments(p).map(str::to_owned).collect());
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

    #[test]
    fn pathological_paths_stay_fast() {
        let p = Pattern::parse("/**/**/**/**/*a*a*a*a*b");
        let path = format!("/{}", ["aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"; 12].join("/"));
        let t = std::time::Instant::now();
        assert!(!p.matches(&path));
        assert!(t.elapsed() < std::time::Duration::from_secs(1));
    }
}
