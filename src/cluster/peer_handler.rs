//! What a node answers on `/v1/peer`: every message name of [`super::wire::names`],
//! decoded with limits and dispatched to the actor or function that owns it.

use std::sync::Arc;

use tracing::Instrument;

use mlmf_actors::frame::Envelope;
use mlmf_actors::peer::Handler;

use mlmf_actors::remote::answer;

use super::control::coordinate;
use super::infer;
use super::loader;
use super::node::Node;
use super::node_actor::unload_local;
use super::wire::{
    self, ClusterView, Deliver, ForwardHeader, LoadShard, ManifestRequest, PartialHeader, ReleaseSequence, UnloadShard,
    names,
};

/// The `/v1/peer` handler of `node`.
pub fn handler(node: Node) -> Handler {
    Arc::new(move |env: Envelope, payload: Vec<u8>| {
        let node = node.clone();
        Box::pin(async move {
            let span = tracing::debug_span!("peer", msg = %env.name, request_id = env.request_id);
            dispatch(&node, &env.name, payload).instrument(span).await
        })
    })
}

/// Answers message `name`.
pub async fn dispatch(node: &Node, name: &str, payload: Vec<u8>) -> Result<Vec<u8>, String> {
    match name {
        names::FORWARD => {
            let (h, raw): (ForwardHeader, Vec<u8>) = wire::unpack(payload)?;
            wire::to_bytes(&infer::run_stage(node, h, raw).await)
        }
        names::TP_PARTIAL => {
            let (h, raw): (PartialHeader, Vec<u8>) = wire::unpack(payload)?;
            wire::to_bytes(&infer::partial(node, h, raw).await)
        }
        names::DELIVER => answer::<Deliver, _, _>(&payload, |d| async move { infer::deliver(node, d) }).await,
        names::VIEW => {
            answer::<ClusterView, _, _>(&payload, |v| async move { node.set_view(v).map(|newer| (*newer).clone()) })
                .await
        }
        names::LOAD_SHARD => {
            answer::<LoadShard, _, _>(&payload, |msg| async move {
                let actor = node.loader.get().ok_or("node is starting")?;
                actor.send(msg).await.map_err(|e| e.to_string())?
            })
            .await
        }
        names::UNLOAD_SHARD => {
            answer::<UnloadShard, _, _>(&payload, |msg| async move { unload_local(node, &msg.model, msg.shard) }).await
        }
        names::RELEASE_SEQUENCE => {
            answer::<ReleaseSequence, _, _>(&payload, |m| async move { node.kv.release(&m.model, m.seq) }).await
        }
        names::MANIFEST => answer::<ManifestRequest, _, _>(&payload, |req| loader::manifest(node, req)).await,
        names::FETCH => loader::fetch_range(node, wire::from_bytes(&payload)?).await,
        names::RAFT_APPEND | names::RAFT_VOTE | names::RAFT_SNAPSHOT => node.consensus.call(name, payload).await,
        // A member that does not coordinate passes a join on to the coordinator it knows, so
        // `--join` may name any member.
        names::JOIN if !node.is_coordinator() => forward_join(node, payload).await,
        names::JOIN
        | names::HEARTBEAT
        | names::LOAD_MODEL
        | names::UNLOAD_MODEL
        | names::MODEL_STATUS
        | names::LIST_MODELS
        | names::CLUSTER_STATUS
        | names::PROGRESS
        | names::MIGRATE
        | names::DIGESTS
        | names::LEAVE => coordinate(node, name, payload).await,
        other => Err(format!("unknown message {other:?}")),
    }
}

/// Passes a [`super::wire::Join`] on to the coordinator of `node`'s view (never back to the
/// node that asks, which may be a restarted coordinator its view still names).
async fn forward_join(node: &Node, payload: Vec<u8>) -> Result<Vec<u8>, String> {
    let join: super::wire::Join = mlmf_actors::remote::decode_request(&payload).map_err(|e| e.to_string())?;
    let view = node.view();
    let not_here = || format!("node {} is not the coordinator", node.id);
    let Some(addr) = view.addr_of(&view.coordinator).map(str::to_string) else { return Err(not_here()) };
    if !node.joined.load(std::sync::atomic::Ordering::Acquire) || addr == join.node.addr || addr == node.addr {
        return Err(not_here());
    }
    tracing::debug!(joining = %join.node.id, coordinator = %view.coordinator, "passing a join on to the coordinator");
    node.links
        .call(&addr, names::JOIN, &payload, std::time::Duration::from_secs(10), 0)
        .await
        .map_err(|e| e.to_string())
}
