//! Contiguous partition of weighted items into exactly `k` non-empty groups minimising the
//! heaviest group (the "linear partition" problem), by binary search on the bound plus a
//! greedy fill: O(n log Σw), exact for this objective.

use std::ops::Range;

/// Splits `weights` into exactly `k` contiguous non-empty groups (`1 <= k <= weights.len()`)
/// whose largest sum is as small as possible. Deterministic.
///
/// ```
/// use mlmf::plan::partition::balanced;
/// assert_eq!(balanced(&[5, 1, 1, 1, 1, 1], 2), vec![0..1, 1..6]);
/// ```
pub fn balanced(weights: &[u64], k: usize) -> Vec<Range<usize>> {
    assert!(k >= 1 && k <= weights.len(), "need 1 <= k <= n");
    let mut lo = weights.iter().copied().max().unwrap_or(0);
    let mut hi: u64 = weights.iter().sum();
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if groups_needed(weights, mid) <= k {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    fill(weights, k, lo)
}

/// Fewest groups with no group above `cap` (every single weight must fit).
fn groups_needed(weights: &[u64], cap: u64) -> usize {
    let mut groups = 1;
    let mut cur = 0u64;
    for &w in weights {
        if cur + w > cap {
            groups += 1;
            cur = w;
        } else {
            cur += w;
        }
    }
    groups
}

/// Greedy fill under `cap`, also closing a group whenever the items left are exactly the
/// groups left, so that the result has exactly `k` groups.
fn fill(weights: &[u64], k: usize, cap: u64) -> Vec<Range<usize>> {
    let n = weights.len();
    let mut out = Vec::with_capacity(k);
    let mut start = 0;
    let mut cur = 0u64;
    for (i, &w) in weights.iter().enumerate() {
        let groups_left = k - out.len();
        let must_close = i > start && (cur + w > cap || n - i == groups_left - 1);
        if must_close {
            out.push(start..i);
            start = i;
            cur = 0;
        }
        cur += w;
    }
    out.push(start..n);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn max_sum(w: &[u64], p: &[Range<usize>]) -> u64 {
        p.iter().map(|r| w[r.clone()].iter().sum::<u64>()).max().unwrap()
    }

    /// Exhaustive optimum for small inputs.
    fn brute(w: &[u64], k: usize) -> u64 {
        fn go(w: &[u64], k: usize) -> u64 {
            if k == 1 {
                return w.iter().sum();
            }
            (1..=w.len() - (k - 1)).map(|i| w[..i].iter().sum::<u64>().max(go(&w[i..], k - 1))).min().unwrap()
        }
        go(w, k)
    }

    proptest! {
        #[test]
        fn exact_k_contiguous_and_optimal(w in prop::collection::vec(1u64..1000, 1..12), k_seed in 0usize..100) {
            let k = 1 + k_seed % w.len();
            let p = balanced(&w, k);
            prop_assert_eq!(p.len(), k);
            prop_assert_eq!(p[0].start, 0);
            prop_assert_eq!(p[k - 1].end, w.len());
            for win in p.windows(2) { prop_assert_eq!(win[0].end, win[1].start); }
            for r in &p { prop_assert!(!r.is_empty()); }
            prop_assert_eq!(max_sum(&w, &p), brute(&w, k));
        }
    }
}
