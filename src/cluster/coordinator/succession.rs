//! Who coordinates after the coordinator dies: the live member with the smallest id among
//! those not taken for dead, the same on every node that holds the same view (so every
//! member sends its heartbeats to the same successor, which takes over).

use crate::cluster::wire::{ClusterView, MemberState};

/// The coordinator `view` names, or when that one is in `dead`, its successor: the live
/// member with the smallest id not in `dead`.
pub fn successor(view: &ClusterView, dead: &[String]) -> Option<String> {
    if !dead.contains(&view.coordinator) {
        return Some(view.coordinator.clone());
    }
    view.nodes
        .iter()
        .filter(|n| matches!(n.state, MemberState::Up | MemberState::Suspect) && !dead.contains(&n.info.id))
        .map(|n| n.info.id.clone())
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::wire::{NodeInfo, NodeView};
    use crate::plan::DeviceKind;

    #[test]
    fn every_node_picks_the_same_successor() {
        let node = |id: &str, state| NodeView {
            info: NodeInfo { id: id.into(), addr: id.into(), memory_bytes: 1, device: DeviceKind::Cpu, compute: 1.0 },
            state,
        };
        let view = ClusterView {
            coordinator: "c".into(),
            nodes: vec![
                node("c", MemberState::Up),
                node("b", MemberState::Down),
                node("e", MemberState::Up),
                node("d", MemberState::Suspect),
            ],
            ..ClusterView::default()
        };
        assert_eq!(successor(&view, &[]).as_deref(), Some("c"));
        // The smallest live id not taken for dead: b is down.
        assert_eq!(successor(&view, &["c".into()]).as_deref(), Some("d"));
        assert_eq!(successor(&view, &["c".into(), "d".into()]).as_deref(), Some("e"));
        assert_eq!(successor(&view, &["c".into(), "d".into(), "e".into()]), None);
    }
}
