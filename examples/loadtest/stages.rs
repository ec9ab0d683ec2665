//! Stages: how many virtual users (closed-loop workers) run over time.
//! Each stage ramps linearly from the previous stage's target (0 before
//! the first) to its own over its duration; a stage of `0s` jumps.
//! `--stages 30s:10,5m:100,30s:0` ramps up to 10 users, then to 100 over
//! five minutes, then down to none.

use std::time::Duration;

use serde::Serialize;

use super::parse_duration;

/// One ramp: to `target` users over `duration`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub(crate) struct Stage {
    #[serde(serialize_with = "secs")]
    pub(crate) duration: Duration,
    pub(crate) target: usize,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// Users at most, over any run.
pub(crate) const MAX_USERS: usize = 20_000;

/// `DURATION:USERS[,DURATION:USERS…]`.
pub(crate) fn parse(text: &str) -> Result<Vec<Stage>, String> {
    let stages = text
        .split(',')
        .map(|s| {
            let (d, n) = s
                .trim()
                .split_once(':')
                .ok_or_else(|| format!("--stages {s}: DURATION:USERS, e.g. 30s:10"))?;
            let target: usize = n
                .trim()
                .parse()
                .map_err(|e| format!("--stages {s}: users: {e}"))?;
            if target > MAX_USERS {
                return Err(format!("--stages {s}: at most {MAX_USERS} users"));
            }
            // `0s` (or `0ms`…) jumps: a duration the flags refuse.
            let d = d.trim();
            let zero = d
                .trim_end_matches(|c: char| c.is_ascii_alphabetic())
                .parse::<f64>()
                .is_ok_and(|x| x == 0.0);
            Ok(Stage {
                duration: if zero {
                    Duration::ZERO
                } else {
                    parse_duration(d)?
                },
                target,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    if total(&stages).is_zero() {
        return Err(format!("--stages {text}: the stages last no time"));
    }
    if stages.iter().all(|s| s.target == 0) {
        return Err(format!("--stages {text}: no stage has a user"));
    }
    Ok(stages)
}

/// How long the stages last in all.
pub(crate) fn total(stages: &[Stage]) -> Duration {
    stages.iter().map(|s| s.duration).sum()
}

/// The most users any stage asks for.
pub(crate) fn peak(stages: &[Stage]) -> usize {
    stages.iter().map(|s| s.target).max().unwrap_or(0)
}

/// The users `elapsed` into the run (rounded down while ramping), or
/// `None` once the stages are over.
pub(crate) fn users_at(stages: &[Stage], elapsed: Duration) -> Option<usize> {
    let mut from = 0usize;
    let mut start = Duration::ZERO;
    for s in stages {
        let end = start + s.duration;
        if elapsed < end {
            let f = (elapsed - start).as_secs_f64() / s.duration.as_secs_f64();
            let users = from as f64 + (s.target as f64 - from as f64) * f;
            return Some(users.floor().max(0.0) as usize);
        }
        from = s.target;
        start = end;
    }
    None
}

/// How long the user count stays as it is from `elapsed`: the rest of a
/// hold (a stage whose target is where it starts), nothing within a ramp.
pub(crate) fn steady_for(stages: &[Stage], elapsed: Duration) -> Duration {
    let mut from = 0usize;
    let mut start = Duration::ZERO;
    for s in stages {
        let end = start + s.duration;
        if elapsed < end {
            return if s.target == from {
                end - elapsed
            } else {
                Duration::ZERO
            };
        }
        from = s.target;
        start = end;
    }
    Duration::ZERO
}

/// The spike scenario as stages: `users` for a third of `duration`,
/// `users * factor` for the next, `users` again for the last.
pub(crate) fn spike(duration: Duration, users: usize, factor: usize) -> Vec<Stage> {
    let third = duration / 3;
    let at = |duration, target| Stage { duration, target };
    vec![
        at(Duration::ZERO, users),
        at(third, users),
        at(Duration::ZERO, users * factor),
        at(third, users * factor),
        at(Duration::ZERO, users),
        at(duration - third * 2, users),
    ]
}
