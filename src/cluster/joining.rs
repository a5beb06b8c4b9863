//! A member's side of membership: [`join`] a cluster through any member (adopting the view
//! it answers with), and [`leave`] it gracefully (routes stop using this node, its replicas
//! are loaded elsewhere, requests in flight finish, then the coordinator forgets it).

use std::time::{Duration, Instant};

use crate::plan::DeviceKind;

use super::control::control;
use super::node::Node;
use super::wire::{ClusterView, Join, Leave, ModelState, ModelStatus, NodeInfo, names};

/// Why this node could not join or leave.
#[derive(Debug, thiserror::Error)]
#[error("cannot join {addr}: {message}")]
pub struct JoinError {
    /// The member dialled.
    pub addr: String,
    /// Why.
    pub message: String,
}

/// The granularity of the available memory a node offers when none is configured.
const MEMORY_STEP: u64 = 256 << 20;

/// This node as the cluster knows it: id, address, the memory it offers shards (the
/// configured `memory_mib`, else the machine's available memory, less the KV cache budget and
/// the warm cache's),
/// its device kind.
pub fn node_info(node: &Node) -> NodeInfo {
    let memory_bytes = node.cfg.memory_mib.map(|m| m << 20).unwrap_or_else(|| {
        let mut sys = sysinfo::System::new();
        sys.refresh_memory();
        // Rounded down to a coarse step: the reading moves by megabytes from one instant to
        // the next (other processes, the page cache), and placement by free memory must not
        // pile a small model's shards on whichever node happened to read a few MB more.
        sys.available_memory() / MEMORY_STEP * MEMORY_STEP
    });
    let device = match node.cfg.device.as_deref() {
        Some("wgpu") | Some("cuda") => DeviceKind::Gpu,
        _ => DeviceKind::Cpu,
    };
    // The KV cache budget and the warm cache's are memory the shards' weights cannot have.
    let budgets = node.cfg.generation.kv_cache_bytes.saturating_add(node.cfg.cache.warm_bytes);
    let memory_bytes = memory_bytes.saturating_sub(budgets);
    NodeInfo {
        id: node.id.clone(),
        addr: node.addr.clone(),
        memory_bytes,
        device,
        compute: 1.0,
        raft_id: node.consensus.raft_id(),
    }
}

/// Asks the member at `addr` (which forwards to nothing: it must be the coordinator or
/// know it) to admit this node; adopts the view it answers with.
pub async fn join(node: &Node, addr: &str) -> Result<ClusterView, JoinError> {
    let fail = |message: String| JoinError { addr: addr.to_string(), message };
    let view = node
        .links
        .ask(
            addr,
            &Join { node: node_info(node), held: node.shards.entries().into_iter().map(|(k, _)| k).collect() },
            Duration::from_secs(10),
        )
        .await
        .map_err(|e| fail(e.to_string()))?
        .map_err(|e| fail(e.message))?;
    node.set_view(view.clone());
    node.joined.store(true, std::sync::atomic::Ordering::Release);
    Ok(view)
}

/// Leaves the cluster gracefully: routes stop using this node, its replicas are loaded
/// elsewhere, requests in flight finish, then the coordinator forgets it. Returns when it
/// is safe to exit (or after `timeout`).
pub async fn leave(node: &Node, timeout: Duration) -> Result<(), JoinError> {
    let view = node.view();
    let fail = |message: String| JoinError { addr: view.coordinator.clone(), message };
    let Some(coordinator) = view.addr_of(&view.coordinator).map(str::to_string) else { return Ok(()) };
    if node.is_coordinator() {
        return Ok(());
    }
    let start = Instant::now();
    node.leaving.store(true, std::sync::atomic::Ordering::Release);
    let leave = |done| Leave { node: node.id.clone(), done };
    node.links
        .ask(&coordinator, &leave(false), Duration::from_secs(10))
        .await
        .map_err(|e| fail(e.to_string()))?
        .map_err(|e| fail(e.message))?;
    // Hand-off: every ready model has its replication on other nodes again.
    let mut handed = false;
    while start.elapsed() < timeout {
        let models: Vec<ModelStatus> = control(node, names::LIST_MODELS, &()).await.map_err(|e| fail(e.message))?;
        handed = models.iter().filter(|m| m.status == ModelState::Ready).all(|m| {
            (0..m.plan.shards.len()).all(|s| {
                m.progress.iter().filter(|p| p.shard == s && p.done && p.node != node.id).count() >= m.replication
            })
        });
        if handed {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Drain: stages already routed here finish, and so do the HTTP requests this node took
    // itself (a stream until its last event).
    tokio::time::sleep(Duration::from_millis(200)).await;
    let busy = || {
        node.in_flight.load(std::sync::atomic::Ordering::Relaxed) > 0
            || node.http_in_flight.load(std::sync::atomic::Ordering::Acquire) > 0
    };
    while busy() && start.elapsed() < timeout {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    node.links
        .ask(&coordinator, &leave(true), Duration::from_secs(10))
        .await
        .map_err(|e| fail(e.to_string()))?
        .map_err(|e| fail(e.message))?;
    if !handed {
        return Err(fail(format!("left without handing every replica off within {timeout:?}")));
    }
    Ok(())
}
