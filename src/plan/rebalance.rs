//! Rebalancing after scale-out: which replicas to move so that replica counts per node even
//! out, at most `max_moves` per round (so a joining node, or one flapping, never triggers a
//! storm of moves). Pure and deterministic.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// One move: the replica of `shard` (of a model) on `from` goes to `to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Move {
    /// Model id.
    pub model: String,
    /// Shard id.
    pub shard: usize,
    /// Source node.
    pub from: String,
    /// Target node.
    pub to: String,
}

/// Up to `max_moves` moves from the fullest node to the emptiest one (by replica count),
/// never onto a node that already holds a replica of the shard, while the spread between
/// them is above one replica. `replicas` lists `(model, shard, node)`; `nodes` are the live
/// nodes that may take replicas.
pub fn rebalance(replicas: &[(String, usize, String)], nodes: &[String], max_moves: usize) -> Vec<Move> {
    let mut count: BTreeMap<&str, usize> = nodes.iter().map(|n| (n.as_str(), 0)).collect();
    let mut holders: HashMap<(&str, usize), BTreeSet<&str>> = HashMap::new();
    let mut on_node: HashMap<&str, BTreeSet<(&str, usize)>> = HashMap::new();
    for (m, s, n) in replicas {
        if let Some(c) = count.get_mut(n.as_str()) {
            *c += 1;
        }
        holders.entry((m.as_str(), *s)).or_default().insert(n.as_str());
        on_node.entry(n.as_str()).or_default().insert((m.as_str(), *s));
    }
    // The fullest node (the smaller name on ties) is `hi`'s last, the emptiest `lo`'s first:
    // each move updates both in O(log n) instead of scanning every node.
    let mut hi: BTreeSet<(usize, Reverse<&str>)> = count.iter().map(|(n, c)| (*c, Reverse(*n))).collect();
    let mut lo: BTreeSet<(usize, &str)> = count.iter().map(|(n, c)| (*c, *n)).collect();
    let mut moves = Vec::new();
    while moves.len() < max_moves {
        let (Some(&(h, Reverse(full))), Some(&(l, empty))) = (hi.last(), lo.first()) else { break };
        if h <= l + 1 {
            break;
        }
        // A replica on `full` whose shard `empty` does not hold yet, the first by (model,
        // shard): only `full`'s own replicas are looked at.
        let candidate = on_node
            .get(full)
            .and_then(|on| on.iter().find(|key| holders.get(*key).is_some_and(|h| !h.contains(empty))).copied());
        let Some((m, s)) = candidate else { break };
        if let Some(on) = holders.get_mut(&(m, s)) {
            on.remove(full);
            on.insert(empty);
        }
        if let Some(on) = on_node.get_mut(full) {
            on.remove(&(m, s));
        }
        on_node.entry(empty).or_default().insert((m, s));
        for (node, from, to) in [(full, h, h - 1), (empty, l, l + 1)] {
            hi.remove(&(from, Reverse(node)));
            lo.remove(&(from, node));
            hi.insert((to, Reverse(node)));
            lo.insert((to, node));
        }
        count.insert(full, h - 1);
        count.insert(empty, l + 1);
        moves.push(Move { model: m.to_string(), shard: s, from: full.to_string(), to: empty.to_string() });
    }
    moves
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn r(m: &str, s: usize, n: &str) -> (String, usize, String) {
        (m.into(), s, n.into())
    }

    #[test]
    fn a_joining_node_takes_replicas_a_few_at_a_time() {
        let replicas =
            vec![r("m", 0, "a"), r("m", 0, "b"), r("m", 1, "b"), r("m", 1, "c"), r("m", 2, "c"), r("m", 2, "a")];
        let nodes: Vec<String> = ["a", "b", "c", "d"].iter().map(|s| s.to_string()).collect();
        let moves = rebalance(&replicas, &nodes, 1);
        assert_eq!(moves.len(), 1);
        assert_eq!(moves[0].to, "d");
        let all = rebalance(&replicas, &nodes, 10);
        assert_eq!(all.len(), 1, "2,2,2,0 evens out to 2,2,1,1 in one move: {all:?}");
        assert!(rebalance(&replicas, &nodes[..3], 10).is_empty(), "already balanced");
    }

    /// The scan the indexed version replaced; both must choose the same moves.
    fn rebalance_naive(replicas: &[(String, usize, String)], nodes: &[String], max_moves: usize) -> Vec<Move> {
        let mut count: BTreeMap<&str, usize> = nodes.iter().map(|n| (n.as_str(), 0)).collect();
        let mut holders: BTreeMap<(&str, usize), BTreeSet<&str>> = BTreeMap::new();
        for (m, s, n) in replicas {
            if let Some(c) = count.get_mut(n.as_str()) {
                *c += 1;
            }
            holders.entry((m.as_str(), *s)).or_default().insert(n.as_str());
        }
        let mut moves = Vec::new();
        while moves.len() < max_moves {
            let Some((&full, &hi)) = count.iter().max_by_key(|(n, c)| (**c, std::cmp::Reverse(**n))) else { break };
            let Some((&empty, &lo)) = count.iter().min_by_key(|(n, c)| (**c, **n)) else { break };
            if hi <= lo + 1 {
                break;
            }
            // A replica on `full` whose shard `empty` does not hold yet.
            let candidate = holders
                .iter()
                .filter(|(_, on)| on.contains(full) && !on.contains(empty))
                .map(|((m, s), _)| (*m, *s))
                .next();
            let Some((m, s)) = candidate else { break };
            if let Some(on) = holders.get_mut(&(m, s)) {
                on.remove(full);
                on.insert(empty);
            }
            *count.entry(full).or_default() -= 1;
            *count.entry(empty).or_default() += 1;
            moves.push(Move { model: m.to_string(), shard: s, from: full.to_string(), to: empty.to_string() });
        }
        moves
    }

    proptest! {
        #[test]
        fn the_indexed_rebalance_equals_the_naive_scan(
            placed in proptest::collection::vec((0usize..3, 0usize..8, 0usize..7), 1..60),
            live in 1usize..7,
            max in 0usize..12,
        ) {
            // Node names out of index order, and some replicas on nodes that are not live.
            let names: Vec<String> = (0..7).map(|i| format!("n{}", (i * 3 + 2) % 7)).collect();
            let mut seen = BTreeSet::new();
            let replicas: Vec<(String, usize, String)> = placed
                .into_iter()
                .filter(|p| seen.insert(*p))
                .map(|(m, s, n)| (format!("m{m}"), s, names[n].clone()))
                .collect();
            let nodes = &names[..live];
            prop_assert_eq!(rebalance(&replicas, nodes, max), rebalance_naive(&replicas, nodes, max));
        }

        #[test]
        fn moves_are_bounded_keep_anti_affinity_and_never_widen_the_spread(
            placed in proptest::collection::vec((0usize..6, 0usize..5), 1..30),
            max in 0usize..5,
        ) {
            let nodes: Vec<String> = (0..5).map(|i| format!("n{i}")).collect();
            let mut seen = BTreeSet::new();
            let replicas: Vec<(String, usize, String)> = placed
                .into_iter()
                .filter(|p| seen.insert(*p))
                .map(|(s, n)| ("m".to_string(), s, nodes[n].clone()))
                .collect();
            let moves = rebalance(&replicas, &nodes, max);
            prop_assert!(moves.len() <= max);
            let mut now: BTreeSet<(usize, String)> = replicas.iter().map(|(_, s, n)| (*s, n.clone())).collect();
            let spread = |set: &BTreeSet<(usize, String)>| {
                let counts: Vec<usize> = nodes.iter().map(|n| set.iter().filter(|(_, m)| m == n).count()).collect();
                counts.iter().max().unwrap() - counts.iter().min().unwrap()
            };
            let before = spread(&now);
            for m in &moves {
                prop_assert!(now.remove(&(m.shard, m.from.clone())));
                prop_assert!(now.insert((m.shard, m.to.clone())), "two replicas of shard {} on {}", m.shard, m.to);
            }
            prop_assert!(spread(&now) <= before);
        }
    }
}
