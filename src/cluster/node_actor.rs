//! [`NodeActor`]: owns this node's shard lifecycle. Loads run on it, one arbiter away from
//! HTTP; [`unload_local`] drops replicas.

use actix::{Actor, Context, Handler, ResponseFuture};

use super::loader;
use super::node::Node;
use super::wire::{LoadShard, ShardLoaded};

/// Owns this node's shard lifecycle: loads run here, one arbiter away from HTTP.
pub struct NodeActor {
    node: Node,
}

impl Actor for NodeActor {
    type Context = Context<Self>;
}

/// Restarted by its `Supervisor` if it stops; the shards it loaded live in the node's registry.
impl actix::Supervised for NodeActor {}

impl NodeActor {
    /// The node actor of `node`.
    pub fn new(node: Node) -> NodeActor {
        NodeActor { node }
    }
}

/// Loads a shard replica here.
impl Handler<LoadShard> for NodeActor {
    type Result = ResponseFuture<Result<ShardLoaded, String>>;

    fn handle(&mut self, msg: LoadShard, _: &mut Context<Self>) -> Self::Result {
        let node = self.node.clone();
        Box::pin(async move { loader::load_shard(&node, msg).await })
    }
}

/// Drops every shard of `model` held here (their threads stop once idle), or keeps them in
/// the node's warm cache when it is on.
pub fn unload_local(node: &Node, model: &str, shard: Option<usize>) {
    let gone = node.shards.remove_where(|k| k.0 == model && shard.is_none_or(|s| s == k.1));
    if !gone.is_empty() {
        tracing::info!(%model, shards = gone.len(), "unloaded");
    }
    for ((model, _), replica) in gone {
        node.warm.keep(&model, replica);
    }
    if shard.is_none() {
        node.kv.release_model(model);
    }
    node.release_checkpoints();
}
