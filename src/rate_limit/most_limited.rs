//! The keys that hit their quota most often, per policy: a table bounded to
//! [`LIMITED_KEYS_KEPT`] keys whose cost per limited request stays constant
//! however many distinct keys a client floods it with.

use std::collections::HashMap;

use super::key::Key;

/// Keys the statistics keep limited counts for; past this, the less
/// limited half goes at once (so a flood of new keys costs one sweep per
/// half a table, not a scan per key).
pub const LIMITED_KEYS_KEPT: usize = 1024;

/// Longer text keys (a client chooses a header's value) are kept as their
/// first bytes and `…`, so the table stays within about
/// `LIMITED_KEYS_KEPT` × this many bytes of keys.
const MAX_KEY_BYTES: usize = 128;

/// Limited counts by policy (index) and key.
#[derive(Debug, Default)]
pub(super) struct MostLimited {
    by_policy: Vec<HashMap<Key, u64>>,
    len: usize,
    /// Sweeps made (tests check they stay rare under a flood).
    #[cfg(test)]
    sweeps: usize,
}

impl MostLimited {
    pub(super) fn new(policies: usize) -> Self {
        Self {
            by_policy: (0..policies).map(|_| HashMap::new()).collect(),
            ..Self::default()
        }
    }

    /// One more limited request of `key` under `policy`. A key already
    /// counted costs a lookup, no allocation.
    pub(super) fn record(&mut self, policy: usize, key: &Key) {
        let shortened;
        let key = match key {
            Key::Text(t) if t.len() > MAX_KEY_BYTES => {
                let mut end = MAX_KEY_BYTES;
                while !t.is_char_boundary(end) {
                    end -= 1;
                }
                shortened = Key::Text(format!("{}…", &t[..end]).into());
                &shortened
            }
            _ => key,
        };
        let Some(keys) = self.by_policy.get_mut(policy) else {
            return;
        };
        if let Some(n) = keys.get_mut(key) {
            *n += 1;
            return;
        }
        if self.len >= LIMITED_KEYS_KEPT {
            self.sweep();
        }
        self.by_policy[policy].insert(key.clone(), 1);
        self.len += 1;
    }

    /// Drops the less limited half (ties at the median broken by whatever
    /// comes first).
    fn sweep(&mut self) {
        #[cfg(test)]
        {
            self.sweeps += 1;
        }
        let mut counts: Vec<u64> = self
            .by_policy
            .iter()
            .flat_map(|m| m.values().copied())
            .collect();
        let half = counts.len() / 2;
        let median = *counts.select_nth_unstable(half).1;
        // Keep what is above the median, then ties up to half the table.
        let above = counts.iter().filter(|&&n| n > median).count();
        let mut ties = half.saturating_sub(above);
        for keys in &mut self.by_policy {
            keys.retain(|_, n| {
                *n > median
                    || (*n == median && ties > 0 && {
                        ties -= 1;
                        true
                    })
            });
        }
        self.len = self.by_policy.iter().map(HashMap::len).sum();
    }

    /// Every (policy, key, count) held.
    pub(super) fn iter(&self) -> impl Iterator<Item = (usize, &Key, u64)> {
        self.by_policy
            .iter()
            .enumerate()
            .flat_map(|(p, keys)| keys.iter().map(move |(k, n)| (p, k, *n)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    #[test]
    fn a_flood_of_limited_keys_stays_bounded_and_sweeps_rarely() {
        let mut t = MostLimited::new(2);
        let hot = Key::Text("hot".into());
        for _ in 0..50 {
            t.record(1, &hot);
        }
        let n = 200_000u32;
        for i in 0..n {
            t.record(0, &Key::Ip(IpAddr::V4(Ipv4Addr::from(i))));
            assert!(t.len <= LIMITED_KEYS_KEPT);
        }
        // One sweep per half a table of new keys, not a scan per key.
        assert!(
            t.sweeps <= n as usize / (LIMITED_KEYS_KEPT / 2) + 1,
            "{} sweeps",
            t.sweeps
        );
        // The most limited key survives the flood.
        assert!(t.iter().any(|(p, k, c)| p == 1 && *k == hot && c == 50));
        assert!(t.len >= LIMITED_KEYS_KEPT / 2);
    }

    #[test]
    fn long_keys_are_kept_short() {
        let mut t = MostLimited::new(1);
        let long = "é".repeat(10_000);
        t.record(0, &Key::Text(long.clone().into()));
        t.record(0, &Key::Text(format!("{long}x").into()));
        let kept: Vec<(String, u64)> = t.iter().map(|(_, k, n)| (k.to_string(), n)).collect();
        assert_eq!(kept.len(), 1, "the same first bytes: one entry");
        assert!(
            kept[0].0.len() <= MAX_KEY_BYTES + '…'.len_utf8(),
            "{}",
            kept[0].0.len()
        );
        assert!(kept[0].0.ends_with('…'));
        assert_eq!(kept[0].1, 2);
    }

    #[test]
    fn counts_add_up_per_policy_and_key() {
        let mut t = MostLimited::new(2);
        let a = Key::Text("a".into());
        t.record(0, &a);
        t.record(0, &a);
        t.record(1, &a);
        t.record(7, &a); // no such policy: ignored
        let mut all: Vec<(usize, u64)> = t.iter().map(|(p, _, n)| (p, n)).collect();
        all.sort_unstable();
        assert_eq!(all, [(0, 2), (1, 1)]);
    }
}
