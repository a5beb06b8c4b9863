//! The coordinator's answer to a [`ControlMessage`]: the control message named in it, decoded
//! with limits, run as the typed message it stands for, and its reply encoded. This is how
//! the peer route and the node's own parts reach the coordinator without knowing its type.
//! A change (load, unload, migrate, join, leave) is refused with `no_quorum` while this
//! coordinator does not reach a majority of the voters.

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
        let me = ctx.address();
        Box::pin(async move { dispatch(&me, &msg.name, &msg.payload).await })
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
