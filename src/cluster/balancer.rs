//! [`Balancer`]: picks a route for each request, one replica of every shard, skipping nodes
//! that are down or that failed this request already. Round-robin for now: the choice is the
//! pure function [`round_robin`].

use std::collections::HashMap;
use std::sync::Arc;

use actix::{Actor, Context, Handler, Message, MessageResult};

use super::wire::{ClusterView, ModelRoutes, NodeState, StageRoute};

/// Why no route could be picked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoRoute {
    /// No ready model by that id.
    #[error("model {0:?} is not ready on this cluster")]
    UnknownModel(String),
    /// Every replica of some shard is down or excluded.
    #[error("no live replica of shard {shard} of model {model:?}")]
    NoReplica {
        /// Model id.
        model: String,
        /// Shard id.
        shard: usize,
    },
}

/// The `counter`-th round-robin route through `model`, avoiding `avoid` and nodes not up.
///
/// Each shard takes its replicas in turn; a tensor-parallel stage gets one replica of each
/// member. Within a stage, member 0 (tensor rank 0) leads.
pub fn round_robin(
    model: &ModelRoutes,
    counter: u64,
    usable: impl Fn(&str) -> bool,
) -> Result<Vec<StageRoute>, NoRoute> {
    let mut route = Vec::with_capacity(model.stages.len());
    for stage in &model.stages {
        let mut members = Vec::with_capacity(stage.len());
        for shard in stage {
            let live: Vec<&String> = shard.nodes.iter().filter(|n| usable(n)).collect();
            if live.is_empty() {
                return Err(NoRoute::NoReplica { model: model.id.clone(), shard: shard.shard });
            }
            members.push((shard.shard, live[(counter % live.len() as u64) as usize].clone()));
        }
        route.push(members);
    }
    Ok(route)
}

/// The view changed.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct SetView(pub Arc<ClusterView>);

/// Pick a route for one request to `model`, avoiding `avoid`.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<Vec<StageRoute>, NoRoute>")]
pub struct PickRoute {
    /// Model id.
    pub model: String,
    /// Nodes this request already failed on.
    pub avoid: Vec<String>,
}

/// Routes requests of one node.
#[derive(Default)]
pub struct Balancer {
    view: Arc<ClusterView>,
    counters: HashMap<String, u64>,
}

impl Actor for Balancer {
    type Context = Context<Self>;
}

/// Restarted by its `Supervisor` if it stops; its view comes back with the next push.
impl actix::Supervised for Balancer {}

impl Handler<SetView> for Balancer {
    type Result = ();

    fn handle(&mut self, msg: SetView, _: &mut Context<Self>) {
        self.view = msg.0;
    }
}

impl Handler<PickRoute> for Balancer {
    type Result = MessageResult<PickRoute>;

    fn handle(&mut self, msg: PickRoute, _: &mut Context<Self>) -> Self::Result {
        let Some(model) = self.view.model(&msg.model) else {
            return MessageResult(Err(NoRoute::UnknownModel(msg.model)));
        };
        let counter = self.counters.entry(msg.model.clone()).or_default();
        *counter += 1;
        let view = &self.view;
        let usable = |n: &str| {
            !msg.avoid.iter().any(|a| a == n) && view.nodes.iter().any(|v| v.info.id == n && v.state != NodeState::Down)
        };
        MessageResult(round_robin(model, *counter, usable))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::wire::ShardReplicas;
    use proptest::prelude::*;

    fn model(stages: &[&[&[&str]]]) -> ModelRoutes {
        let mut id = 0;
        ModelRoutes {
            id: "m".into(),
            config: crate::model::Checkpoint::open(
                &std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gpt2_tiny"),
            )
            .unwrap()
            .config,
            stages: stages
                .iter()
                .map(|s| {
                    s.iter()
                        .map(|nodes| {
                            id += 1;
                            ShardReplicas { shard: id - 1, nodes: nodes.iter().map(|n| n.to_string()).collect() }
                        })
                        .collect()
                })
                .collect(),
        }
    }

    #[test]
    fn replicas_take_turns_and_avoided_nodes_are_skipped() {
        let m = model(&[&[&["a", "b"]], &[&["b", "c"], &["c", "a"]]]);
        let r1 = round_robin(&m, 0, |_| true).unwrap();
        let r2 = round_robin(&m, 1, |_| true).unwrap();
        assert_eq!(r1, vec![vec![(0, "a".into())], vec![(1, "b".into()), (2, "c".into())]]);
        assert_eq!(r2, vec![vec![(0, "b".into())], vec![(1, "c".into()), (2, "a".into())]]);
        let r = round_robin(&m, 0, |n| n != "a").unwrap();
        assert_eq!(r, vec![vec![(0, "b".into())], vec![(1, "b".into()), (2, "c".into())]]);
        assert_eq!(round_robin(&m, 0, |n| n == "a"), Err(NoRoute::NoReplica { model: "m".into(), shard: 1 }));
    }

    proptest! {
        #[test]
        fn a_route_uses_only_usable_replicas(counter in 0u64..1000, dead in 0usize..3) {
            let names = ["a", "b", "c"];
            let m = model(&[&[&["a", "b"]], &[&["b", "c"]], &[&["c", "a"]]]);
            let r = round_robin(&m, counter, |n| n != names[dead]).unwrap();
            for (stage, members) in r.iter().enumerate() {
                for (shard, node) in members {
                    prop_assert!(node != names[dead]);
                    prop_assert!(m.stages[stage].iter().any(|s| s.shard == *shard && s.nodes.contains(node)));
                }
            }
        }
    }
}
