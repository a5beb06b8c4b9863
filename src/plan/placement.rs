//! Placement: which node holds each replica of each shard.
//!
//! First-fit-decreasing with a strategy-specific score: shards are taken largest first, and
//! each replica goes to the best-scoring eligible node. A node is eligible when it does not
//! already hold a replica of the shard (anti-affinity), meets the device requirement, and
//! has room for the shard's bytes times the memory overhead. Pure and deterministic: ties
//! break by node id.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::error::PlanError;
use super::shard_plan::ShardPlan;

/// The kind of compute device a node offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeviceKind {
    /// CPU only.
    Cpu,
    /// A GPU (CUDA or wgpu).
    Gpu,
}

/// What a node offers to the placer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeInventory {
    /// Node id.
    pub id: String,
    /// Free memory on the device the shards would use.
    pub memory_bytes: u64,
    /// Device kind.
    pub device: DeviceKind,
    /// Relative compute throughput (1.0 = a reference CPU node).
    pub compute: f64,
    /// Current load, 0.0 (idle) to 1.0 (saturated).
    pub load: f64,
}

/// How to choose among eligible nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PlacementStrategy {
    /// Most free memory left after placing (spreads bytes evenly).
    #[default]
    MemoryBased,
    /// Highest compute per byte already assigned (fills fast nodes first, proportionally).
    ComputeBased,
    /// Lowest current load plus the share of memory already assigned.
    LoadBalanced,
}

/// A shard's device constraint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DevicePreference {
    /// Any node.
    #[default]
    Any,
    /// Nodes of this kind first, others if none has room.
    Prefer(DeviceKind),
    /// Only nodes of this kind.
    Require(DeviceKind),
}

/// What to place and how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PlacementRequest {
    /// The scoring strategy.
    pub strategy: PlacementStrategy,
    /// Replicas per shard, each on a distinct node.
    pub replication: usize,
    /// Device constraint for every shard.
    pub device: DevicePreference,
    /// Multiplier on a shard's bytes for the memory it needs (activations, workspace).
    pub memory_overhead: f64,
}

impl Default for PlacementRequest {
    fn default() -> Self {
        PlacementRequest {
            strategy: PlacementStrategy::MemoryBased,
            replication: 1,
            device: DevicePreference::Any,
            memory_overhead: 1.0,
        }
    }
}

/// One replica of one shard on one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Assignment {
    /// Shard id.
    pub shard: usize,
    /// Replica index, `0..replication`.
    pub replica: usize,
    /// Node id.
    pub node: String,
}

/// The result: every replica's node, and the memory each node takes on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Placement {
    /// Sorted by shard, then replica.
    pub assignments: Vec<Assignment>,
    /// Bytes (with overhead) assigned per node.
    pub node_bytes: BTreeMap<String, u64>,
}

impl Placement {
    /// Nodes holding shard `shard`, by replica.
    pub fn nodes_of(&self, shard: usize) -> Vec<&str> {
        self.assignments.iter().filter(|a| a.shard == shard).map(|a| a.node.as_str()).collect()
    }
}

/// Places every replica of every shard of `plan` onto `nodes`.
///
/// ```
/// use mlmf::plan::placement::*;
/// # use mlmf::plan::ShardPlan;
/// # fn demo(plan: &ShardPlan) {
/// let nodes: Vec<NodeInventory> = (0..3)
///     .map(|i| NodeInventory { id: format!("n{i}"), memory_bytes: 1 << 30, device: DeviceKind::Cpu, compute: 1.0, load: 0.0 })
///     .collect();
/// let req = PlacementRequest { replication: 2, ..Default::default() };
/// let placed = place(plan, &nodes, &req).unwrap();
/// # }
/// ```
pub fn place(plan: &ShardPlan, nodes: &[NodeInventory], req: &PlacementRequest) -> Result<Placement, PlanError> {
    let mut ids = BTreeSet::new();
    for n in nodes {
        if !ids.insert(n.id.as_str()) {
            return Err(PlanError::Unsatisfiable(format!("node id {:?} appears twice", n.id)));
        }
    }
    if req.replication == 0 {
        return Err(PlanError::Unsatisfiable("replication must be at least 1".into()));
    }
    if !(req.memory_overhead.is_finite() && req.memory_overhead >= 1.0) {
        return Err(PlanError::Unsatisfiable("memory_overhead must be a finite number >= 1".into()));
    }
    // The scan below visits nodes in id order (`ids` is sorted), so a strict `>` keeps the
    // smaller id on a tie without comparing strings; the per-node figures sit in flat arrays
    // in that order.
    let index: BTreeMap<&str, usize> = nodes.iter().enumerate().map(|(i, n)| (n.id.as_str(), i)).collect();
    let perm: Vec<usize> = index.values().copied().collect();
    let mut table = Table::new(nodes, &perm, req.device);
    let mut order: Vec<usize> = (0..plan.shards.len()).collect();
    // Largest first; stable on id for determinism.
    order.sort_by(|&a, &b| plan.shards[b].bytes.cmp(&plan.shards[a].bytes).then(a.cmp(&b)));
    let mut assignments = Vec::with_capacity(plan.shards.len() * req.replication);
    // Nodes holding a replica of the current shard (replicas are placed together, so this
    // short list is all anti-affinity needs).
    let mut chosen: Vec<usize> = Vec::with_capacity(req.replication);
    for sid in order {
        let shard = &plan.shards[sid];
        let need = (shard.bytes as f64 * req.memory_overhead).ceil() as u64;
        // One pass finds the best `replication` nodes: placing a replica changes only its
        // own node's score, and that node is then out of the running for this shard.
        table.top(req.strategy, need, true, req.replication, &mut chosen);
        if chosen.len() < req.replication && matches!(req.device, DevicePreference::Prefer(_)) {
            for &c in &chosen {
                table.held[c] = true;
            }
            let mut more = Vec::with_capacity(req.replication);
            table.top(req.strategy, need, false, req.replication - chosen.len(), &mut more);
            chosen.extend(more);
        }
        for (replica, &best) in chosen.iter().enumerate() {
            table.used[best] += need;
            table.held[best] = true;
            assignments.push(Assignment { shard: sid, replica, node: nodes[perm[best]].id.clone() });
        }
        if chosen.len() < req.replication {
            let mut free = vec![0u64; nodes.len()];
            let mut held = vec![false; nodes.len()];
            for (k, &i) in perm.iter().enumerate() {
                free[i] = table.memory[k].saturating_sub(table.used[k]);
                held[i] = table.held[k];
            }
            let reason = infeasible_reason(nodes, req, need, &|i| held[i], &|i| free[i]);
            return Err(PlanError::Infeasible { shard: sid, what: shard.describe(), replica: chosen.len(), reason });
        }
        for &c in &chosen {
            table.held[c] = false;
        }
    }
    assignments.sort_by_key(|a| (a.shard, a.replica));
    let node_bytes = perm.iter().zip(&table.used).map(|(&i, &u)| (nodes[i].id.clone(), u)).collect();
    Ok(Placement { assignments, node_bytes })
}

/// The per-node figures the scan reads, in node-id order, flat.
struct Table {
    memory: Vec<u64>,
    used: Vec<u64>,
    /// Holds a replica of the shard being placed.
    held: Vec<bool>,
    /// Meets the device preference strictly (`Prefer(k)`: is a `k`), and loosely.
    strict: Vec<bool>,
    loose: Vec<bool>,
    compute: Vec<f64>,
    load: Vec<f64>,
}

impl Table {
    fn new(nodes: &[NodeInventory], perm: &[usize], device: DevicePreference) -> Table {
        let ok = |n: &NodeInventory, strict: bool| match device {
            DevicePreference::Any => true,
            DevicePreference::Require(k) => n.device == k,
            DevicePreference::Prefer(k) => !strict || n.device == k,
        };
        let by = |f: &dyn Fn(&NodeInventory) -> f64| perm.iter().map(|&i| f(&nodes[i])).collect::<Vec<f64>>();
        Table {
            memory: perm.iter().map(|&i| nodes[i].memory_bytes).collect(),
            used: vec![0; perm.len()],
            held: vec![false; perm.len()],
            strict: perm.iter().map(|&i| ok(&nodes[i], true)).collect(),
            loose: perm.iter().map(|&i| ok(&nodes[i], false)).collect(),
            compute: by(&|n| n.compute.max(0.0)),
            // An unknown (NaN) load counts as saturated.
            load: by(&|n| if n.load.is_nan() { 1.0 } else { n.load.clamp(0.0, 1.0) }),
        }
    }

    /// The `k` best-scoring eligible nodes, best first (the smaller id on ties), into `out`:
    /// one pass, no allocation beyond `out`.
    fn top(&self, strategy: PlacementStrategy, need: u64, strict: bool, k: usize, out: &mut Vec<usize>) {
        let ok = if strict { &self.strict } else { &self.loose };
        out.clear();
        match strategy {
            // Most memory left after placing: with `need` the same for every node, the most
            // free now, compared as integers.
            PlacementStrategy::MemoryBased => self.scan(ok, need, k, out, |i| self.memory[i] - self.used[i]),
            PlacementStrategy::ComputeBased => self.scan(ok, need, k, out, |i| {
                self.compute[i] / (1.0 + (self.used[i] + need) as f64 / self.memory[i].max(1) as f64)
            }),
            PlacementStrategy::LoadBalanced => self.scan(ok, need, k, out, |i| {
                -(self.load[i] + (self.used[i] + need) as f64 / self.memory[i].max(1) as f64)
            }),
        }
    }

    /// `score` is called only for nodes with room, so `memory - used` cannot underflow there.
    fn scan<T: PartialOrd + Copy>(
        &self,
        ok: &[bool],
        need: u64,
        k: usize,
        out: &mut Vec<usize>,
        score: impl Fn(usize) -> T,
    ) {
        // Best first; a later node (a larger id) enters only by scoring strictly higher.
        let mut best: Vec<(usize, T)> = Vec::with_capacity(k + 1);
        for (i, &allowed) in ok.iter().enumerate().take(self.memory.len()) {
            if self.held[i] || !allowed || self.memory[i].saturating_sub(self.used[i]) < need {
                continue;
            }
            let sc = score(i);
            // "Not strictly higher" (a NaN score never enters).
            if best.len() == k
                && best.last().is_none_or(|&(_, b)| sc.partial_cmp(&b) != Some(std::cmp::Ordering::Greater))
            {
                continue;
            }
            let at = best.iter().position(|&(_, b)| sc > b).unwrap_or(best.len());
            best.insert(at, (i, sc));
            best.truncate(k);
        }
        out.extend(best.iter().map(|&(i, _)| i));
    }
}

/// Why no node can take the next replica of a shard needing `need` bytes.
fn infeasible_reason(
    nodes: &[NodeInventory],
    req: &PlacementRequest,
    need: u64,
    holds: &dyn Fn(usize) -> bool,
    free: &dyn Fn(usize) -> u64,
) -> String {
    let distinct = (0..nodes.len()).filter(|&i| !holds(i)).count();
    if nodes.len() < req.replication {
        format!(
            "replication {} needs {} distinct nodes, only {} available",
            req.replication,
            req.replication,
            nodes.len()
        )
    } else if distinct == 0 {
        "every node already holds a replica of it".to_string()
    } else if let DevicePreference::Require(k) = req.device
        && !nodes.iter().any(|n| n.device == k)
    {
        format!("it requires a {k:?} node and there is none")
    } else {
        let eligible = |i: usize| match req.device {
            DevicePreference::Require(k) => nodes[i].device == k,
            _ => true,
        };
        let largest = (0..nodes.len())
            .filter(|&i| !holds(i) && eligible(i))
            .max_by_key(|&i| (free(i), std::cmp::Reverse(&nodes[i].id)));
        match largest {
            Some(i) => format!(
                "it needs {need} bytes and the most free on an eligible node is {} bytes on {}",
                free(i),
                nodes[i].id
            ),
            None => "no eligible node".to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Act, Architecture, ModelConfig, ModelLayout, Part};
    use crate::plan::{ShardPlan, ShardingStrategy};
    use proptest::prelude::*;

    fn layout(layer_bytes: &[u64], heads: usize) -> ModelLayout {
        let part = |b: u64, name: String| Part { tensors: vec![name], params: b / 4, bytes: b };
        ModelLayout {
            config: ModelConfig {
                arch: Architecture::Gpt2,
                vocab_size: 100,
                hidden_size: 8 * heads,
                num_layers: layer_bytes.len(),
                num_heads: heads,
                num_kv_heads: heads,
                head_dim: 8,
                intermediate_size: 32 * heads,
                max_positions: 64,
                norm_eps: 1e-5,
                act: Act::GeluTanh,
                tie_word_embeddings: false,
                scale_attn_weights: true,
                scale_attn_by_inverse_layer_idx: false,
                rope: None,
                attention_bias: true,
                mlp_bias: true,
                type_vocab_size: 0,
            },
            embeddings: part(1000, "emb".into()),
            layers: layer_bytes.iter().enumerate().map(|(i, &b)| part(b, format!("l{i}"))).collect(),
            head: part(500, "head".into()),
        }
    }

    fn strategy() -> impl Strategy<Value = ShardingStrategy> {
        prop_oneof![
            Just(ShardingStrategy::NoSharding),
            (1usize..6).prop_map(|k| ShardingStrategy::LayerSharding { layers_per_shard: k }),
            (1usize..6).prop_map(|s| ShardingStrategy::PipelineSharding { num_stages: s }),
            prop_oneof![Just(1usize), Just(2), Just(4)].prop_map(|d| ShardingStrategy::TensorSharding { degree: d }),
        ]
    }

    fn nodes() -> impl Strategy<Value = Vec<NodeInventory>> {
        // Equal memories make ties; ids out of index order make the tie-break by id visible.
        let memory = prop_oneof![Just(20_000u64), 1_000u64..40_000];
        prop::collection::vec((memory, prop::bool::ANY, 0.1f64..4.0, 0.0f64..1.0), 1..8).prop_map(|v| {
            v.into_iter()
                .enumerate()
                .map(|(i, (m, gpu, c, l))| NodeInventory {
                    id: format!("node-{}", (i * 5 + 3) % 8),
                    memory_bytes: m,
                    device: if gpu { DeviceKind::Gpu } else { DeviceKind::Cpu },
                    compute: c,
                    load: l,
                })
                .collect()
        })
    }

    fn request() -> impl Strategy<Value = PlacementRequest> {
        (0usize..3, 1usize..4, 0usize..3).prop_map(|(s, r, d)| PlacementRequest {
            strategy: [
                PlacementStrategy::MemoryBased,
                PlacementStrategy::ComputeBased,
                PlacementStrategy::LoadBalanced,
            ][s],
            replication: r,
            device: [
                DevicePreference::Any,
                DevicePreference::Prefer(DeviceKind::Gpu),
                DevicePreference::Require(DeviceKind::Gpu),
            ][d],
            memory_overhead: 1.0,
        })
    }

    /// The straightforward scan the fast placer replaced: every node scored for every
    /// replica, ties broken by comparing ids. The fast one must give the same answer.
    fn place_naive(plan: &ShardPlan, nodes: &[NodeInventory], req: &PlacementRequest) -> Result<Placement, PlanError> {
        let mut ids = BTreeSet::new();
        for n in nodes {
            if !ids.insert(n.id.as_str()) {
                return Err(PlanError::Unsatisfiable(format!("node id {:?} appears twice", n.id)));
            }
        }
        if req.replication == 0 {
            return Err(PlanError::Unsatisfiable("replication must be at least 1".into()));
        }
        if !(req.memory_overhead.is_finite() && req.memory_overhead >= 1.0) {
            return Err(PlanError::Unsatisfiable("memory_overhead must be a finite number >= 1".into()));
        }
        let mut used: Vec<u64> = vec![0; nodes.len()];
        let mut order: Vec<usize> = (0..plan.shards.len()).collect();
        // Largest first; stable on id for determinism.
        order.sort_by(|&a, &b| plan.shards[b].bytes.cmp(&plan.shards[a].bytes).then(a.cmp(&b)));
        let mut assignments = Vec::new();
        for sid in order {
            let shard = &plan.shards[sid];
            let need = (shard.bytes as f64 * req.memory_overhead).ceil() as u64;
            // Nodes holding a replica of this shard already (replicas are placed together, so
            // this short list is all anti-affinity needs).
            let mut chosen: Vec<usize> = Vec::with_capacity(req.replication);
            for replica in 0..req.replication {
                let holds = |i: usize| chosen.contains(&i);
                let infeasible =
                    |reason: String| PlanError::Infeasible { shard: sid, what: shard.describe(), replica, reason };
                let free = |i: usize| nodes[i].memory_bytes.saturating_sub(used[i]);
                let device_ok = |i: usize, strict: bool| match req.device {
                    DevicePreference::Any => true,
                    DevicePreference::Require(k) => nodes[i].device == k,
                    DevicePreference::Prefer(k) => !strict || nodes[i].device == k,
                };
                // One pass, no allocation: the best-scoring eligible node, the smaller id on ties.
                let best_of = |strict: bool| -> Option<usize> {
                    let mut best: Option<(usize, f64)> = None;
                    for i in 0..nodes.len() {
                        if holds(i) || !device_ok(i, strict) || free(i) < need {
                            continue;
                        }
                        let sc = score(req.strategy, &nodes[i], used[i], need);
                        let better = match best {
                            None => true,
                            Some((b, bs)) => sc > bs || (sc == bs && nodes[i].id < nodes[b].id),
                        };
                        if better {
                            best = Some((i, sc));
                        }
                    }
                    best.map(|(i, _)| i)
                };
                let mut found = best_of(true);
                if found.is_none() && matches!(req.device, DevicePreference::Prefer(_)) {
                    found = best_of(false);
                }
                let Some(best) = found else {
                    let distinct = (0..nodes.len()).filter(|&i| !holds(i)).count();
                    let reason = if nodes.len() < req.replication {
                        format!(
                            "replication {} needs {} distinct nodes, only {} available",
                            req.replication,
                            req.replication,
                            nodes.len()
                        )
                    } else if distinct == 0 {
                        "every node already holds a replica of it".to_string()
                    } else if let DevicePreference::Require(k) = req.device
                        && !nodes.iter().any(|n| n.device == k)
                    {
                        format!("it requires a {k:?} node and there is none")
                    } else {
                        let largest = (0..nodes.len())
                            .filter(|&i| !holds(i) && device_ok(i, false))
                            .max_by_key(|&i| (free(i), std::cmp::Reverse(&nodes[i].id)));
                        match largest {
                            Some(i) => format!(
                                "it needs {need} bytes and the most free on an eligible node is {} bytes on {}",
                                free(i),
                                nodes[i].id
                            ),
                            None => "no eligible node".to_string(),
                        }
                    };
                    return Err(infeasible(reason));
                };
                used[best] += need;
                chosen.push(best);
                assignments.push(Assignment { shard: sid, replica, node: nodes[best].id.clone() });
            }
        }
        assignments.sort_by_key(|a| (a.shard, a.replica));
        let node_bytes = nodes.iter().zip(&used).map(|(n, &u)| (n.id.clone(), u)).collect();
        Ok(Placement { assignments, node_bytes })
    }

    /// Higher is better.
    fn score(strategy: PlacementStrategy, node: &NodeInventory, used: u64, need: u64) -> f64 {
        let cap = node.memory_bytes.max(1) as f64;
        let after = (used + need) as f64;
        match strategy {
            PlacementStrategy::MemoryBased => node.memory_bytes as f64 - after,
            PlacementStrategy::ComputeBased => node.compute.max(0.0) / (1.0 + after / cap),
            PlacementStrategy::LoadBalanced => -(node.load.clamp(0.0, 1.0) + after / cap),
        }
    }

    proptest! {
        #[test]
        fn the_fast_placer_equals_the_naive_scan(
            layers in prop::collection::vec(100u64..5000, 1..12), s in strategy(), nodes in nodes(), req in request()
        ) {
            let lay = layout(&layers, 4);
            let Ok(plan) = ShardPlan::new(&lay, &s) else { return Ok(()); };
            prop_assert_eq!(place(&plan, &nodes, &req), place_naive(&plan, &nodes, &req));
        }

        #[test]
        fn every_layer_covered_once_per_stage_sequence(
            layers in prop::collection::vec(100u64..5000, 1..16), s in strategy()
        ) {
            let lay = layout(&layers, 4);
            let Ok(plan) = ShardPlan::new(&lay, &s) else { return Ok(()); };
            // Each stage's members share one layer range; the ranges tile 0..n in order.
            let mut next = 0;
            for st in 0..plan.num_stages {
                let members: Vec<_> = plan.stage(st).collect();
                let d = members[0].spec.slice.degree;
                prop_assert_eq!(members.len(), d);
                for (r, m) in members.iter().enumerate() {
                    prop_assert_eq!(m.spec.slice.rank, r);
                    prop_assert_eq!(&m.spec.layers, &members[0].spec.layers);
                }
                prop_assert_eq!(members[0].spec.layers.start, next);
                next = members[0].spec.layers.end;
            }
            prop_assert_eq!(next, layers.len());
            prop_assert_eq!(plan.shards.iter().filter(|s| s.spec.embeddings).count(), 1);
            prop_assert_eq!(plan.shards.iter().filter(|s| s.spec.head).count(), 1);
        }

        #[test]
        fn placement_respects_anti_affinity_memory_and_device(
            layers in prop::collection::vec(100u64..5000, 1..12), s in strategy(), nodes in nodes(), req in request()
        ) {
            let lay = layout(&layers, 4);
            let Ok(plan) = ShardPlan::new(&lay, &s) else { return Ok(()); };
            match place(&plan, &nodes, &req) {
                Ok(p) => {
                    prop_assert_eq!(p.assignments.len(), plan.shards.len() * req.replication);
                    for sh in &plan.shards {
                        let on: BTreeSet<&str> = p.nodes_of(sh.id).into_iter().collect();
                        prop_assert_eq!(on.len(), req.replication, "replicas of shard {} share a node", sh.id);
                    }
                    for n in &nodes {
                        let used: u64 = p.assignments.iter().filter(|a| a.node == n.id).map(|a| plan.shards[a.shard].bytes).sum();
                        prop_assert!(used <= n.memory_bytes, "{} over memory", n.id);
                        if let DevicePreference::Require(k) = req.device {
                            prop_assert!(used == 0 || n.device == k);
                        }
                    }
                }
                Err(PlanError::Infeasible { reason, .. }) => prop_assert!(!reason.is_empty()),
                Err(e) => prop_assert!(false, "unexpected error {e}"),
            }
        }

        #[test]
        fn same_input_same_plan(
            layers in prop::collection::vec(100u64..5000, 1..12), s in strategy(), nodes in nodes(), req in request()
        ) {
            let lay = layout(&layers, 4);
            let a = ShardPlan::new(&lay, &s);
            let b = ShardPlan::new(&lay, &s);
            prop_assert_eq!(&a, &b);
            if let Ok(plan) = a {
                prop_assert_eq!(place(&plan, &nodes, &req), place(&plan, &nodes, &req));
            }
        }
    }

    #[test]
    fn infeasible_names_shard_and_reason() {
        let lay = layout(&[4000, 4000], 4);
        let plan = ShardPlan::new(&lay, &ShardingStrategy::NoSharding).unwrap();
        let small =
            vec![NodeInventory { id: "a".into(), memory_bytes: 100, device: DeviceKind::Cpu, compute: 1.0, load: 0.0 }];
        let e = place(&plan, &small, &PlacementRequest::default()).unwrap_err().to_string();
        assert!(e.contains("shard 0") && e.contains("100 bytes on a"), "{e}");
        let e =
            place(&plan, &small, &PlacementRequest { replication: 2, ..Default::default() }).unwrap_err().to_string();
        assert!(e.contains("needs 2 distinct nodes"), "{e}");
        let e = place(
            &plan,
            &small,
            &PlacementRequest { device: DevicePreference::Require(DeviceKind::Gpu), ..Default::default() },
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("Gpu"), "{e}");
    }

    #[test]
    fn pipeline_balances_bytes_not_layer_count() {
        // One heavy layer: balancing by count would put 2 layers with it.
        let lay = layout(&[10_000, 1000, 1000, 1000], 4);
        let plan = ShardPlan::new(&lay, &ShardingStrategy::PipelineSharding { num_stages: 2 }).unwrap();
        assert_eq!(plan.shards[0].spec.layers, 0..1);
        assert_eq!(plan.shards[1].spec.layers, 1..4);
    }

    #[test]
    fn tensor_degree_must_divide_heads() {
        let lay = layout(&[1000, 1000], 4);
        let e = ShardPlan::new(&lay, &ShardingStrategy::TensorSharding { degree: 3 }).unwrap_err().to_string();
        assert!(e.contains("tensor:3") && e.contains("1, 2, 4"), "{e}");
    }
}
