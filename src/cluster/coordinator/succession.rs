//! Who coordinates after the coordinator dies: the live member with the smallest id among
//! those not taken for dead, the same on every node that holds the same view (so every
//! member sends its heartbeats to the same successor, which takes over). The heartbeat
//! sender only counts silence; what follows from it is decided here.

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

/// What a member does once the coordinator it heartbeats is taken for dead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Succession {
    /// This node is the successor: it takes over.
    TakeOver,
    /// Heartbeat the successor (none when every member of the view is taken for dead).
    Follow(Option<String>),
}

/// `silent` met silence past the acceptable pause: it joins `dead` (the coordinators taken
/// for dead in this term), and node `me` takes over if it is the successor.
pub fn after_silence(view: &ClusterView, dead: &mut Vec<String>, silent: &str, me: &str) -> Succession {
    dead.push(silent.to_string());
    match successor(view, dead) {
        Some(next) if next == me => Succession::TakeOver,
        next => Succession::Follow(next),
    }
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
        // A silent coordinator: d takes over, e follows d; a silent d in turn makes e the one.
        let mut dead = Vec::new();
        assert_eq!(after_silence(&view, &mut dead.clone(), "c", "d"), Succession::TakeOver);
        assert_eq!(after_silence(&view, &mut dead, "c", "e"), Succession::Follow(Some("d".into())));
        assert_eq!(after_silence(&view, &mut dead, "d", "e"), Succession::TakeOver);
        assert_eq!(dead, vec!["c".to_string(), "d".to_string()]);
    }
}
