//! Control operations from any node: [`control`] runs one on the coordinator, on this node
//! when it coordinates, otherwise over the peer link to the coordinator its view names, and
//! answers exactly as the coordinator did (its [`ApiError`] included). A node cut off from
//! the control plane's majority refuses the writes (load, unload, migrate) itself, with
//! `503 no_quorum`, rather than asking a coordinator it cannot reach or that cannot commit
//! (the coordinator refuses them too while it has no quorum).

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::node::{ControlMessage, Node};
use super::wire::{self, ApiError, names};

/// Runs control message `name` on this node's coordinator; an error when it has none.
pub async fn coordinate(node: &Node, name: &str, payload: Vec<u8>) -> Result<Vec<u8>, String> {
    let c = node.role.coordinator().ok_or_else(|| format!("node {} is not the coordinator", node.id))?;
    c.send(ControlMessage { name: name.to_string(), payload }).await.map_err(|e| e.to_string())?
}

/// Whether control operation `name` changes the control plane (and so needs a quorum).
pub fn is_write(name: &str) -> bool {
    matches!(name, names::LOAD_MODEL | names::UNLOAD_MODEL | names::MIGRATE)
}

/// Runs control operation `name` on the coordinator, wherever it is, and decodes its answer.
pub async fn control<Req: Serialize, Resp: DeserializeOwned>(
    node: &Node,
    name: &str,
    req: &Req,
) -> Result<Resp, ApiError> {
    let internal = |m: String| ApiError::new(500, "internal", m);
    if is_write(name) && node.consensus.cut_off() {
        return Err(node.consensus.no_quorum());
    }
    let payload = wire::to_bytes(req).map_err(internal)?;
    let answer = if node.is_coordinator() {
        coordinate(node, name, payload).await.map_err(internal)?
    } else {
        let view = node.view();
        let addr = view
            .addr_of(&view.coordinator)
            .ok_or_else(|| ApiError::unavailable("not_joined", "this node has not joined a cluster yet"))?
            .to_string();
        node.links.call(&addr, name, &payload, std::time::Duration::from_secs(30), 0).await.map_err(
            |e| match is_write(name) && !node.consensus.quorum() {
                true => node.consensus.no_quorum(),
                false => ApiError::unavailable("coordinator_unreachable", e.to_string()),
            },
        )?
    };
    wire::from_bytes::<Result<Resp, ApiError>>(&answer).map_err(internal)?
}
