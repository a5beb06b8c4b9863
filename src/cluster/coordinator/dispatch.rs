//! The coordinator's answer to a [`ControlMessage`]: the control message named in it, decoded
//! with limits, run as the typed message it stands for, and its reply encoded. This is how
//! the peer route and the node's own parts reach the coordinator without knowing its type.
//! A change (load, unload, migrate, join, leave) is refused with `no_quorum` while this
//! coordinator does not reach a majority of the voters, and answered only once the view
//! that records it is committed (so an answered change survives any partition after it):
//! one not committed in time is answered `no_quorum` too.

use actix::{Addr, AsyncContext, Context, Handler, ResponseFuture};
use serde::Serialize;

use mlmf_actors::remote::decode_request;

use crate::cluster::control::is_write;
use crate::cluster::node::ControlMessage;
use crate::cluster::wire::{self, ApiError, names};

use super::actor::Coordinator;
use super::audit::RecentEventsMsg;
use super::digests::DigestsMsg;
use super::members::{ClusterStatusMsg, HeartbeatMsg, JoinMsg, LeaveMsg};
use super::models::{ListModelsMsg, LoadModelMsg, ModelStatusMsg, ProgressMsg, UnloadModelMsg};
use super::shards::MigrateMsg;

impl Handler<ControlMessage> for Coordinator {
    type Result = ResponseFuture<Result<Vec<u8>, String>>;

    fn handle(&mut self, msg: ControlMessage, ctx: &mut Context<Self>) -> Self::Result {
        // A change this coordinator could not commit is refused before it starts.
        let change = is_write(&msg.name) || msg.name == names::JOIN || msg.name == names::LEAVE;
        if change && let Err(e) = self.node.consensus.check_quorum() {
            return Box::pin(async move { wire::to_bytes(&Err::<(), ApiError>(e)) });
        }
        let (me, node) = (ctx.address(), self.node.clone());
        Box::pin(async move {
            let answer = dispatch(&me, &msg.name, &msg.payload).await?;
            if change {
                let (term, version) = me.send(VersionMsg).await.map_err(|e| e.to_string())?;
                if let Err(e) = committed(&node, term, version).await {
                    return wire::to_bytes(&Err::<(), ApiError>(e));
                }
            }
            Ok(answer)
        })
    }
}

/// The term and version of the coordinator's latest view.
#[derive(Debug, Clone, Copy, actix::Message)]
#[rtype(result = "(u64, u64)")]
struct VersionMsg;

impl Handler<VersionMsg> for Coordinator {
    type Result = actix::MessageResult<VersionMsg>;

    fn handle(&mut self, _: VersionMsg, _: &mut Context<Self>) -> Self::Result {
        actix::MessageResult((self.term, self.version))
    }
}

/// Waits until `node` has applied this coordinator's view `version` of `term` (or a later
/// one of the same term); `no_quorum` when a newer term's view comes first (another leader
/// may not have it) or after three quorum timeouts.
async fn committed(node: &crate::cluster::node::Node, term: u64, version: u64) -> Result<(), ApiError> {
    let within = std::time::Duration::from_millis(3 * node.cfg.consensus.quorum_timeout_ms);
    let start = std::time::Instant::now();
    loop {
        let v = node.view();
        if v.term == term && v.version >= version {
            return Ok(());
        }
        if v.term > term || start.elapsed() > within {
            return Err(node.consensus.no_quorum());
        }
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
}

fn enc<T: Serialize>(v: Result<T, ApiError>) -> Result<Vec<u8>, String> {
    wire::to_bytes(&v)
}

/// Runs control message `name` on the coordinator `c`.
async fn dispatch(c: &Addr<Coordinator>, name: &str, payload: &[u8]) -> Result<Vec<u8>, String> {
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
        names::DIGESTS => {
            enc(c.send(DigestsMsg(decode_request(payload).map_err(|e| e.to_string())?)).await.map_err(mailbox)?)
        }
        names::LIST_MODELS => enc(Ok(c.send(ListModelsMsg).await.map_err(mailbox)?)),
        names::CLUSTER_STATUS => enc(Ok(c.send(ClusterStatusMsg).await.map_err(mailbox)?)),
        names::RECENT_EVENTS => enc(Ok(c.send(RecentEventsMsg).await.map_err(mailbox)?)),
        names::PROGRESS => {
            c.do_send(ProgressMsg(wire::from_bytes(payload)?));
            wire::to_bytes(&())
        }
        other => Err(format!("unknown control message {other:?}")),
    }
}
