//! What a node answers on `/v1/peer`: every message name of [`super::wire::names`],
//! decoded with limits and dispatched to the actor or function that owns it.

use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::Instrument;

use mlmf_actors::frame::Envelope;
use mlmf_actors::peer::Handler;

use super::coordinator::{
    ClusterStatusMsg, HeartbeatMsg, JoinMsg, LeaveMsg, ListModelsMsg, LoadModelMsg, MigrateMsg, ModelStatusMsg,
    ProgressMsg, UnloadModelMsg,
};
use super::infer;
use super::loader;
use super::node::{LoadShardMsg, unload_local};
use super::state::Node;
use mlmf_actors::remote::{answer, decode_request};

use super::wire::{
    self, ClusterView, ControlError, Deliver, ForwardHeader, LoadShard, ManifestRequest, PartialHeader, UnloadShard,
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
                let actor = node.node_actor.get().ok_or("node is starting")?;
                actor.send(LoadShardMsg(msg)).await.map_err(|e| e.to_string())?
            })
            .await
        }
        names::UNLOAD_SHARD => {
            answer::<UnloadShard, _, _>(&payload, |msg| async move { unload_local(node, &msg.model, msg.shard) }).await
        }
        names::MANIFEST => answer::<ManifestRequest, _, _>(&payload, |req| loader::manifest(node, req)).await,
        names::FETCH => loader::fetch_range(node, wire::from_bytes(&payload)?).await,
        names::JOIN
        | names::HEARTBEAT
        | names::LOAD_MODEL
        | names::UNLOAD_MODEL
        | names::MODEL_STATUS
        | names::LIST_MODELS
        | names::CLUSTER_STATUS
        | names::PROGRESS
        | names::MIGRATE
        | names::LEAVE => coordinate(node, name, &payload).await,
        other => Err(format!("unknown message {other:?}")),
    }
}

fn enc<T: Serialize>(v: Result<T, ControlError>) -> Result<Vec<u8>, String> {
    wire::to_bytes(&v)
}

/// Runs a control message on this node's coordinator.
async fn coordinate(node: &Node, name: &str, payload: &[u8]) -> Result<Vec<u8>, String> {
    let c = node.coordinator().ok_or_else(|| format!("node {} is not the coordinator", node.id))?;
    let mailbox = |e: actix::MailboxError| e.to_string();
    match name {
        names::JOIN => {
            enc(c.send(JoinMsg(decode_request(payload).map_err(|e| e.to_string())?)).await.map_err(mailbox)?)
        }
        names::HEARTBEAT => {
            enc(c.send(HeartbeatMsg(decode_request(payload).map_err(|e| e.to_string())?)).await.map_err(mailbox)?)
        }
        names::LOAD_MODEL => enc(c.send(LoadModelMsg(wire::from_bytes(payload)?)).await.map_err(mailbox)?),
        names::UNLOAD_MODEL => enc(c.send(UnloadModelMsg(wire::from_bytes(payload)?)).await.map_err(mailbox)?),
        names::MODEL_STATUS => enc(c.send(ModelStatusMsg(wire::from_bytes(payload)?)).await.map_err(mailbox)?),
        names::MIGRATE => enc(c.send(MigrateMsg(wire::from_bytes(payload)?)).await.map_err(mailbox)?),
        names::LEAVE => {
            enc(c.send(LeaveMsg(decode_request(payload).map_err(|e| e.to_string())?)).await.map_err(mailbox)?)
        }
        names::LIST_MODELS => enc(Ok(c.send(ListModelsMsg).await.map_err(mailbox)?)),
        names::CLUSTER_STATUS => enc(Ok(c.send(ClusterStatusMsg).await.map_err(mailbox)?)),
        names::PROGRESS => {
            c.do_send(ProgressMsg(wire::from_bytes(payload)?));
            wire::to_bytes(&())
        }
        other => Err(format!("unknown control message {other:?}")),
    }
}

/// Runs control operation `name` on the coordinator, wherever it is, and decodes its answer.
pub async fn control<Req: Serialize, Resp: DeserializeOwned>(
    node: &Node,
    name: &str,
    req: &Req,
) -> Result<Resp, ControlError> {
    let internal = |m: String| ControlError::new(500, "internal", m);
    let payload = wire::to_bytes(req).map_err(internal)?;
    let answer = if node.is_coordinator() {
        coordinate(node, name, &payload).await.map_err(internal)?
    } else {
        let view = node.view();
        let addr = view
            .addr_of(&view.coordinator)
            .ok_or_else(|| ControlError::unavailable("not_joined", "this node has not joined a cluster yet"))?
            .to_string();
        node.call(&addr, name, &payload, std::time::Duration::from_secs(30), 0)
            .await
            .map_err(|e| ControlError::unavailable("coordinator_unreachable", e.to_string()))?
    };
    wire::from_bytes::<Result<Resp, ControlError>>(&answer).map_err(internal)?
}
