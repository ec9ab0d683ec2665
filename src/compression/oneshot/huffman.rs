//! Huffman codes: length-limited code lengths from symbol frequencies
//! (Moffat and Katajainen, moving leaves up as miniz does), and the
//! canonical codes for them.

/// Canonical codes for code lengths, bit-reversed for LSB-first output.
#[inline]
pub(super) fn codes<const N: usize>(lens: &[u8; N]) -> [u16; N] {
    let mut count = [0u16; 16];
    for &l in lens {
        count[usize::from(l)] += 1;
    }
    count[0] = 0;
    let mut next = [0u16; 16];
    let mut code = 0u16;
    for bits in 1..16 {
        code = (code + count[bits - 1]) << 1;
        next[bits] = code;
    }
    let mut out = [0u16; N];
    for (c, &l) in out.iter_mut().zip(lens) {
        if l > 0 {
            let v = next[usize::from(l)];
            next[usize::from(l)] += 1;
            *c = v.reverse_bits() >> (16 - l);
        }
    }
    out
}

/// Huffman code lengths for `freqs`, none longer than `max_bits`, into
/// `lens` (0 for unused symbols). At least two symbols get a code (a tree
/// with one leaf can't be decoded by every inflater), so a lone symbol is
/// paired with another of length 1.
#[inline]
pub(super) fn code_lengths<const N: usize>(freqs: &[u32; N], max_bits: usize, lens: &mut [u8; N]) {
    // (frequency, symbol) of the used symbols, by ascending frequency.
    let mut used = [(0u32, 0u16); N];
    let mut n = 0;
    for (sym, &fr) in freqs.iter().enumerate() {
        if fr > 0 {
            used[n] = (fr, sym as u16);
            n += 1;
        }
    }
    lens.fill(0);
    if n < 2 {
        let other = if n == 1 && used[0].1 == 0 { 1 } else { 0 };
        lens[other] = 1;
        if n == 1 {
            lens[usize::from(used[0].1)] = 1;
        } else {
            lens[other ^ 1] = 1;
        }
        return;
    }
    let used = &mut used[..n];
    used.sort_unstable();
    let mut a = [0u32; N];
    for (x, &(fr, _)) in a.iter_mut().zip(used.iter()) {
        *x = fr;
    }
    minimum_redundancy(&mut a[..n]);
    // How many codes of each length, then longer ones moved up to
    // `max_bits` and the Kraft sum restored by lengthening shorter ones.
    let mut count = [0u32; 33];
    for &l in &a[..n] {
        count[(l as usize).min(32)] += 1;
    }
    for l in max_bits + 1..33 {
        count[max_bits] += count[l];
        count[l] = 0;
    }
    let mut total: u32 = (1..=max_bits).map(|l| count[l] << (max_bits - l)).sum();
    while total > 1 << max_bits {
        count[max_bits] -= 1;
        if let Some(l) = (1..max_bits).rev().find(|&l| count[l] > 0) {
            count[l] -= 1;
            count[l + 1] += 2;
        }
        total -= 1;
    }
    // Shortest codes to the most frequent symbols (the end of `used`).
    let mut j = n;
    for (l, &c) in count.iter().enumerate().take(max_bits + 1).skip(1) {
        for _ in 0..c {
            j -= 1;
            lens[usize::from(used[j].1)] = l as u8;
        }
    }
}

/// Moffat and Katajainen's in-place minimum-redundancy code: `a` holds
/// frequencies in ascending order (at least two), and ends up holding the
/// code length of each.
fn minimum_redundancy(a: &mut [u32]) {
    let n = a.len();
    a[0] += a[1];
    let (mut root, mut leaf) = (0usize, 2usize);
    for next in 1..n - 1 {
        // First child: the lighter of the next internal node and leaf.
        if leaf >= n || a[root] < a[leaf] {
            a[next] = a[root];
            a[root] = next as u32;
            root += 1;
        } else {
            a[next] = a[leaf];
            leaf += 1;
        }
        // Second child.
        if leaf >= n || (root < next && a[root] < a[leaf]) {
            a[next] += a[root];
            a[root] = next as u32;
            root += 1;
        } else {
            a[next] += a[leaf];
            leaf += 1;
        }
    }
    // Parent pointers to depths of internal nodes.
    a[n - 2] = 0;
    for next in (0..n.saturating_sub(2)).rev() {
        a[next] = a[a[next] as usize] + 1;
    }
    // Depths of internal nodes to depths of leaves.
    let (mut avail, mut used, mut depth) = (1u32, 0u32, 0u32);
    let (mut root, mut next) = (n as isize - 2, n as isize - 1);
    while avail > 0 {
        while root >= 0 && a[root as usize] == depth {
            used += 1;
            root -= 1;
        }
        while avail > used {
            a[next as usize] = depth;
            next -= 1;
            avail -= 1;
        }
        avail = 2 * used;
        depth += 1;
        used = 0;
    }
}
