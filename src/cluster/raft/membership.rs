//! Who votes: the next change that brings the Raft group's membership in line with the
//! committed view, as a pure function ([`plan`]). Members of the view join as learners;
//! voters are the first members, up to the number wanted, always an odd number (two voters
//! are no more available than one and need both); a voter that left, or that a restarted
//! node's new Raft id replaced, stops voting; a voter down for good is replaced by a
//! caught-up learner when there is one (and keeps its vote when there is none: it may come
//! back); a healthy voter is never demoted; learners no longer in the view leave the group.
//! One change at a time.

use std::collections::{BTreeMap, BTreeSet};

use openraft::RaftMetrics;

use crate::cluster::wire::{ClusterView, MemberState, NodeView};

use super::types::RaftPeer;

/// The group as the leader sees it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Group {
    /// Voter ids.
    pub voters: BTreeSet<u64>,
    /// Every member (voters and learners).
    pub nodes: BTreeMap<u64, RaftPeer>,
    /// A joint configuration is being committed.
    pub joint: bool,
    /// The leader's last log index.
    pub last_log_index: u64,
    /// The last index each follower has matched.
    pub matched: BTreeMap<u64, u64>,
}

impl Group {
    /// The group as `m` (a leader's metrics) shows it.
    pub fn of(m: &RaftMetrics<u64, RaftPeer>) -> Group {
        let membership = m.membership_config.membership();
        Group {
            voters: membership.voter_ids().collect(),
            nodes: membership.nodes().map(|(id, p)| (*id, p.clone())).collect(),
            joint: membership.get_joint_config().len() > 1,
            last_log_index: m.last_log_index.unwrap_or(0),
            matched: m.replication.iter().flatten().filter_map(|(id, l)| l.map(|l| (*id, l.index))).collect(),
        }
    }
}

/// A membership change.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Add a learner.
    AddLearner(u64, RaftPeer),
    /// Replace the voters with these.
    Voters(BTreeSet<u64>),
    /// Remove these learners.
    RemoveNodes(BTreeSet<u64>),
}

/// How far behind the leader's log a learner may be and still be promoted.
const CAUGHT_UP: u64 = 20;

/// The next change toward `view`, or none; `lost` are members down for good, `wanted` the
/// number of voters wanted, `me` the leader (which never loses its vote here).
pub fn plan(group: &Group, view: &ClusterView, lost: &[String], wanted: usize, me: u64) -> Option<Change> {
    if group.joint {
        return None;
    }
    let members: BTreeMap<u64, &NodeView> =
        view.nodes.iter().filter(|n| n.info.raft_id != 0).map(|n| (n.info.raft_id, n)).collect();
    if let Some((id, n)) = members
        .iter()
        .find(|(id, n)| !group.nodes.contains_key(id) && matches!(n.state, MemberState::Up | MemberState::Suspect))
    {
        return Some(Change::AddLearner(*id, RaftPeer { id: n.info.id.clone(), addr: n.info.addr.clone() }));
    }
    let staying = |id: &u64| members.get(id).is_some_and(|n| n.state != MemberState::Leaving);
    let is_lost = |id: &u64| members.get(id).is_some_and(|n| lost.contains(&n.info.id));
    let keep: BTreeSet<u64> =
        group.voters.iter().filter(|v| **v == me || (staying(v) && !is_lost(v))).copied().collect();
    let down_voters: Vec<u64> =
        group.voters.iter().filter(|v| **v != me && staying(v) && is_lost(v)).copied().collect();
    let mut learners: Vec<(&str, u64)> = group
        .nodes
        .keys()
        .filter(|id| !group.voters.contains(id))
        .filter(|id| group.matched.get(id).is_some_and(|m| m + CAUGHT_UP >= group.last_log_index))
        .filter_map(|id| members.get(id).filter(|n| n.state == MemberState::Up).map(|n| (n.info.id.as_str(), *id)))
        .collect();
    learners.sort();
    let eligible = keep.len() + learners.len() + down_voters.len();
    let mut want = wanted.min(eligible).max(1);
    if want.is_multiple_of(2) {
        want -= 1;
    }
    let mut next = keep;
    for id in learners.iter().map(|(_, id)| *id).chain(down_voters) {
        if next.len() >= want {
            break;
        }
        next.insert(id);
    }
    if next != group.voters {
        return Some(Change::Voters(next));
    }
    let gone: BTreeSet<u64> =
        group.nodes.keys().filter(|id| !group.voters.contains(id) && !members.contains_key(id)).copied().collect();
    (!gone.is_empty()).then_some(Change::RemoveNodes(gone))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::wire::NodeInfo;
    use crate::plan::DeviceKind;

    fn member(id: &str, raft_id: u64, state: MemberState) -> NodeView {
        NodeView {
            info: NodeInfo {
                id: id.into(),
                addr: format!("{id}:1"),
                memory_bytes: 1,
                device: DeviceKind::Cpu,
                compute: 1.0,
                raft_id,
            },
            state,
        }
    }

    fn group(voters: &[u64], learners: &[u64], matched: &[(u64, u64)]) -> Group {
        let peer = |id: &u64| (*id, RaftPeer { id: format!("n{id}"), addr: format!("n{id}:1") });
        Group {
            voters: voters.iter().copied().collect(),
            nodes: voters.iter().chain(learners).map(peer).collect(),
            joint: false,
            last_log_index: 100,
            matched: matched.iter().copied().collect(),
        }
    }

    fn view(members: &[(u64, MemberState)]) -> ClusterView {
        ClusterView {
            nodes: members.iter().map(|(id, s)| member(&format!("n{id}"), *id, *s)).collect(),
            ..Default::default()
        }
    }

    use MemberState::{Down, Leaving, Up};

    #[test]
    fn members_join_as_learners_and_the_first_three_vote() {
        let v = view(&[(1, Up), (2, Up)]);
        let peer2 = RaftPeer { id: "n2".into(), addr: "n2:1".into() };
        assert_eq!(plan(&group(&[1], &[], &[]), &v, &[], 3, 1), Some(Change::AddLearner(2, peer2)));
        // Two members: one voter (two would need both).
        assert_eq!(plan(&group(&[1], &[2], &[(2, 100)]), &v, &[], 3, 1), None);
        // A third that is caught up: three voters; one far behind waits.
        let v = view(&[(1, Up), (2, Up), (3, Up)]);
        assert_eq!(
            plan(&group(&[1], &[2, 3], &[(2, 100), (3, 90)]), &v, &[], 3, 1),
            Some(Change::Voters([1, 2, 3].into()))
        );
        assert_eq!(plan(&group(&[1], &[2, 3], &[(2, 100), (3, 10)]), &v, &[], 3, 1), None);
        // A fourth stays a learner.
        let v = view(&[(1, Up), (2, Up), (3, Up), (4, Up)]);
        assert_eq!(plan(&group(&[1, 2, 3], &[4], &[(4, 100)]), &v, &[], 3, 1), None);
        // Five wanted: the fourth waits for a fifth (an odd number votes).
        assert_eq!(plan(&group(&[1, 2, 3], &[4], &[(4, 100)]), &v, &[], 5, 1), None);
    }

    #[test]
    fn a_voter_lost_for_good_is_replaced_by_a_caught_up_learner() {
        let v = view(&[(1, Up), (2, Up), (3, Down), (4, Up)]);
        let g = group(&[1, 2, 3], &[4], &[(4, 100)]);
        // Down, not yet for good: nothing moves.
        assert_eq!(plan(&g, &v, &[], 3, 1), None);
        assert_eq!(plan(&g, &v, &["n3".into()], 3, 1), Some(Change::Voters([1, 2, 4].into())));
        // With nobody to take its place it keeps its vote.
        let v = view(&[(1, Up), (2, Up), (3, Down)]);
        assert_eq!(plan(&group(&[1, 2, 3], &[], &[]), &v, &["n3".into()], 3, 1), None);
    }

    #[test]
    fn leavers_and_replaced_incarnations_stop_voting_and_leave_the_group() {
        // n2 is handing off; n3 restarted without its data directory as raft id 7.
        let mut v = view(&[(1, Up), (2, Leaving), (4, Up)]);
        v.nodes.push(member("n3", 7, Up));
        let g = group(&[1, 2, 3], &[4], &[(4, 100)]);
        let peer7 = RaftPeer { id: "n3".into(), addr: "n3:1".into() };
        assert_eq!(plan(&g, &v, &[], 3, 1), Some(Change::AddLearner(7, peer7)));
        let g = group(&[1, 2, 3], &[4, 7], &[(4, 100), (7, 100)]);
        assert_eq!(plan(&g, &v, &[], 3, 1), Some(Change::Voters([1, 4, 7].into())));
        // The old incarnation, no longer voting, leaves; n2 stays until it is gone from the view.
        let g = group(&[1, 4, 7], &[2, 3], &[]);
        assert_eq!(plan(&g, &v, &[], 3, 1), Some(Change::RemoveNodes([3].into())));
        // The leader keeps its vote, and a joint configuration waits.
        let v = view(&[(1, Leaving), (2, Up), (3, Up)]);
        assert_eq!(plan(&group(&[1, 2, 3], &[], &[]), &v, &[], 3, 1), None);
        assert_eq!(plan(&Group { joint: true, ..group(&[1], &[], &[]) }, &v, &[], 3, 1), None);
    }
}
