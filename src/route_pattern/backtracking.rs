//! The backtracking matcher the linear one replaced: the reference the
//! unit tests compare against and the `old` side of
//! `benches/route_pattern.rs`. Not part of the crate's build.

use super::Seg;

/// The glob matcher as it was before 86f7ca6 (trying every split at each `**`, and
/// backtracking to the last `*` within a segment): exponential, but
/// the reference for what matches.
pub(crate) fn glob(globs: &[Seg], segs: &[&str]) -> bool {
    match globs.split_first() {
        None => segs.is_empty(),
        Some((Seg::Any, rest)) => (0..=segs.len()).any(|skip| glob(rest, &segs[skip..])),
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
                    Seg::Wild(w) => wildcard(w.as_bytes(), s.as_bytes()),
                    Seg::Any | Seg::Rest(_) => false,
                };
                here && glob(rest, srest)
            }
            None => false,
        },
    }
}

pub(crate) fn wildcard(p: &[u8], s: &[u8]) -> bool {
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
