//! [`RaftHost`]: the actor that runs this node's member of the control plane's Raft group
//! (openraft, single-threaded, on an arbiter of its own). It answers peers' Raft messages,
//! commits the coordinator's proposals, and every heartbeat interval works out whether this
//! node reaches a quorum, publishes that in the node's [`Consensus`](crate::cluster::node::Consensus),
//! fires or resolves the `no_quorum` alert, makes this node the coordinator when it leads
//! with a quorum (and stops it when it does not), and, as leader, keeps the Raft membership
//! in line with the committed view ([`super::membership`]).

use std::cell::Cell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::{Actor, ActorFutureExt, Addr, Arbiter, AsyncContext, Context, Handler, ResponseFuture, WrapFuture};
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, VoteRequest};
use openraft::{ChangeMembers, RaftMetrics, ServerState, SnapshotMeta, SnapshotPolicy, Vote};

use crate::cluster::alerts::{AlertManager, Fire, Resolve, Severity};
use crate::cluster::node::{Node, Propose, RaftCall, RaftStatus, RoleChange};
use crate::cluster::wire::{self, ApiError, ClusterView, MemberState, names};

use super::membership::{Change, Group, plan};
use super::network::{Contacts, MISADDRESSED, Network};
use super::state_machine::Registry;
use super::store::{LogStore, Store};
use super::types::{Command, Raft, RaftPeer, RegistrySnapshot, TypeConfig};

/// Why the Raft host could not start.
#[derive(Debug, thiserror::Error)]
pub enum RaftHostError {
    /// The Raft database.
    #[error("the Raft store: {0}")]
    Store(String),
    /// openraft refused to start.
    #[error("Raft: {0}")]
    Raft(String),
}

/// This node's Raft member.
pub struct RaftHost {
    node: Node,
    raft: Raft,
    id: u64,
    contacts: Contacts,
    /// When a leader that reaches a quorum last sent an append-entries here.
    leader_contact: Rc<Cell<Option<Instant>>>,
    alerts: Addr<AlertManager>,
    /// Whether `no_quorum` is firing.
    lost: bool,
    /// Whether this node has had a quorum since it started (a node still joining has none
    /// to lose).
    had_quorum: bool,
    /// A membership change in flight.
    changing: Rc<Cell<bool>>,
    /// A role change sent and not yet carried out.
    leading_term: Option<u64>,
    /// Members the committed view has had down, since when.
    down_since: BTreeMap<String, Instant>,
}

impl RaftHost {
    /// Starts the Raft host of `node` on an arbiter of its own and installs it in the
    /// node's `Consensus`. With `first`, a node whose store has no Raft state yet founds a
    /// new group with itself as its only voter (it then leads within an election timeout).
    pub async fn start_for(node: &Node, first: bool) -> Result<(), RaftHostError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let node = node.clone();
        // openraft runs single-threaded here (its futures are not `Send`): started from
        // inside the arbiter's thread.
        Arbiter::new().spawn_fn(move || {
            actix::spawn(async move {
                let _ = tx.send(RaftHost::start(node, first).await);
            });
        });
        rx.await.map_err(|_| RaftHostError::Raft("the Raft arbiter stopped".into()))?
    }

    async fn start(node: Node, first: bool) -> Result<(), RaftHostError> {
        let dir = node.cfg.data_dir.clone();
        let store = Store::open(dir.as_deref()).map_err(|e| RaftHostError::Store(e.to_string()))?;
        let id = store.raft_id().map_err(RaftHostError::Store)?;
        let registry = Registry::open(store.clone(), node.clone()).map_err(RaftHostError::Store)?;
        let c = &node.cfg.consensus;
        let config = openraft::Config {
            cluster_name: "mlmf".into(),
            heartbeat_interval: c.heartbeat_ms,
            election_timeout_min: c.election_timeout_ms,
            election_timeout_max: c.election_timeout_ms * 2,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(c.snapshot_every),
            max_in_snapshot_log_to_keep: 50,
            ..Default::default()
        }
        .validate()
        .map_err(|e| RaftHostError::Raft(e.to_string()))?;
        let contacts = Contacts::default();
        let network = Network { node: node.clone(), contacts: contacts.clone() };
        let raft = Raft::new(id, Arc::new(config), network, LogStore(store), registry)
            .await
            .map_err(|e| RaftHostError::Raft(e.to_string()))?;
        if first && !raft.is_initialized().await.map_err(|e| RaftHostError::Raft(e.to_string()))? {
            let me = BTreeMap::from([(id, RaftPeer { id: node.id.clone(), addr: node.addr.clone() })]);
            raft.initialize(me).await.map_err(|e| RaftHostError::Raft(e.to_string()))?;
            tracing::info!(raft_id = id, "founded the control plane's Raft group");
        }
        let alerts = {
            let (cfg, name) = (node.cfg.alerts.clone(), node.id.clone());
            actix::Supervisor::start(move |_| AlertManager::new(cfg.clone(), name.clone()))
        };
        let host = RaftHost {
            node: node.clone(),
            raft,
            id,
            contacts,
            leader_contact: Default::default(),
            alerts,
            lost: false,
            had_quorum: false,
            changing: Default::default(),
            leading_term: None,
            down_since: BTreeMap::new(),
        };
        let addr = host.start();
        node.consensus.install(id, addr.clone().recipient(), addr.recipient());
        Ok(())
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        let m = self.raft.metrics().borrow().clone();
        let timeout = Duration::from_millis(self.node.cfg.consensus.quorum_timeout_ms);
        let membership = m.membership_config.membership();
        let voters: Vec<u64> = membership.voter_ids().collect();
        let quorum = match m.state {
            ServerState::Leader => {
                let yes = self.contacts.reached(self.id, &voters, timeout) * 2 > voters.len();
                self.contacts.set_leader_quorum(yes);
                yes
            }
            ServerState::Follower | ServerState::Learner => {
                self.leader_contact.get().is_some_and(|t| t.elapsed() <= timeout)
            }
            ServerState::Candidate | ServerState::Shutdown => false,
        };
        if m.state != ServerState::Leader {
            self.contacts.set_leader_quorum(false);
        }
        self.alert(quorum);
        self.publish(&m, quorum);
        self.follow_role(&m, quorum);
        if m.state == ServerState::Leader && quorum && self.node.is_coordinator() && !self.changing.get() {
            self.reconcile(&m, ctx);
        }
    }

    fn publish(&self, m: &RaftMetrics<u64, RaftPeer>, quorum: bool) {
        let membership = m.membership_config.membership();
        let name = |id: &u64| membership.get_node(id).map(|p| p.id.clone()).unwrap_or_else(|| id.to_string());
        let role = match m.state {
            ServerState::Leader => "leader",
            ServerState::Follower => "follower",
            ServerState::Candidate => "candidate",
            ServerState::Learner => "learner",
            ServerState::Shutdown => "shutdown",
        };
        self.node.consensus.publish(RaftStatus {
            id: self.id,
            role: role.into(),
            term: m.current_term,
            leader: m.current_leader.as_ref().map(name),
            quorum,
            voters: membership.voter_ids().map(|i| name(&i)).collect(),
            learners: membership.learner_ids().map(|i| name(&i)).collect(),
            last_log_index: m.last_log_index,
            last_applied: m.last_applied.map(|l| l.index),
            cut_off: self.lost,
        });
    }

    fn alert(&mut self, quorum: bool) {
        self.had_quorum |= quorum;
        let key = self.node.id.clone();
        if !quorum && self.had_quorum && !self.lost {
            self.lost = true;
            tracing::warn!("cut off from the majority of the control plane: no quorum");
            let summary = format!("node {key} lost the control plane's quorum; control-plane changes are refused");
            self.alerts.do_send(Fire { rule: "no_quorum".into(), key, severity: Severity::Critical, summary });
        } else if quorum && self.lost {
            self.lost = false;
            tracing::info!("the control plane's quorum is back");
            self.alerts.do_send(Resolve { rule: "no_quorum".into(), key });
        }
    }

    /// Coordinates while leading with a quorum and with every earlier entry applied (the
    /// leader's first entry of its term applied); stops otherwise.
    fn follow_role(&mut self, m: &RaftMetrics<u64, RaftPeer>, quorum: bool) {
        let leading = m.state == ServerState::Leader && quorum;
        let caught_up = m.last_applied.is_some_and(|l| l.leader_id.term == m.current_term)
            && m.last_applied.map(|l| l.index) == m.last_log_index;
        if leading && caught_up && !self.node.is_coordinator() && self.leading_term != Some(m.current_term) {
            self.leading_term = Some(m.current_term);
            let view = (*self.node.view()).clone();
            tracing::info!(term = m.current_term, "leading the control plane: coordinating");
            self.node.role.change(RoleChange::Lead { view, term: m.current_term });
        } else if !leading && self.node.is_coordinator() {
            self.leading_term = None;
            tracing::warn!(term = m.current_term, state = ?m.state, quorum, "no longer leading with a quorum: stepping down");
            self.node.role.stop_coordinating();
            self.node.role.change(RoleChange::StepDown);
        } else if !leading {
            self.leading_term = None;
        }
    }

    /// One membership change toward the committed view (see [`plan`]).
    fn reconcile(&mut self, m: &RaftMetrics<u64, RaftPeer>, ctx: &mut Context<Self>) {
        let view = self.node.view();
        let now = Instant::now();
        let down: Vec<String> =
            view.nodes.iter().filter(|n| n.state == MemberState::Down).map(|n| n.info.id.clone()).collect();
        self.down_since.retain(|id, _| down.contains(id));
        for id in down {
            self.down_since.entry(id).or_insert(now);
        }
        let grace = Duration::from_millis(self.node.cfg.health.replace_after_ms);
        let lost: Vec<String> =
            self.down_since.iter().filter(|(_, t)| t.elapsed() >= grace).map(|(id, _)| id.clone()).collect();
        let Some(change) = plan(&Group::of(m), &view, &lost, self.node.cfg.consensus.voters, self.id) else { return };
        tracing::info!(?change, "changing the control plane's membership");
        let (raft, changing) = (self.raft.clone(), Rc::clone(&self.changing));
        changing.set(true);
        ctx.spawn(
            async move {
                let done = match change {
                    Change::AddLearner(id, peer) => raft.add_learner(id, peer, false).await.map(|_| ()),
                    Change::Voters(set) => {
                        raft.change_membership(ChangeMembers::ReplaceAllVoters(set), false).await.map(|_| ())
                    }
                    Change::RemoveNodes(set) => {
                        raft.change_membership(ChangeMembers::RemoveNodes(set), false).await.map(|_| ())
                    }
                };
                if let Err(e) = done {
                    tracing::warn!(error = %e, "membership change failed; retrying next round");
                }
                changing.set(false);
            }
            .into_actor(self),
        );
    }

    /// Answers a peer's Raft message.
    /// Each names the Raft id it is meant for: one meant for another incarnation of this
    /// node (the one before a restart without its data directory, at the same address) is
    /// refused as [`MISADDRESSED`], so the leader never takes this node's empty log for that
    /// member's (openraft panics on a follower log that goes backwards).
    async fn answer(
        raft: Raft,
        me: u64,
        contact: Rc<Cell<Option<Instant>>>,
        name: String,
        payload: Vec<u8>,
    ) -> Result<Vec<u8>, String> {
        let (target, payload): (u64, Vec<u8>) = wire::from_bytes(&payload)?;
        if target != me {
            return Err(format!("{MISADDRESSED}: meant for Raft id {target}, this node is {me}"));
        }
        match name.as_str() {
            names::RAFT_APPEND => {
                let (rpc, leader_quorum): (AppendEntriesRequest<TypeConfig>, bool) = wire::from_bytes(&payload)?;
                let answer = raft.append_entries(rpc).await;
                if leader_quorum && matches!(&answer, Ok(r) if !matches!(r, AppendEntriesResponse::HigherVote(_))) {
                    contact.set(Some(Instant::now()));
                }
                wire::to_bytes(&answer)
            }
            names::RAFT_VOTE => {
                let rpc: VoteRequest<u64> = wire::from_bytes(&payload)?;
                wire::to_bytes(&raft.vote(rpc).await)
            }
            names::RAFT_SNAPSHOT => {
                let (vote, meta, data): (Vote<u64>, SnapshotMeta<u64, RaftPeer>, RegistrySnapshot) =
                    wire::from_bytes(&payload)?;
                let snapshot = openraft::Snapshot { meta, snapshot: Box::new(data) };
                wire::to_bytes(&raft.install_full_snapshot(vote, snapshot).await)
            }
            other => Err(format!("unknown Raft message {other:?}")),
        }
    }
}

/// Hands the committed `view` to every other member at once (they would apply it with the
/// leader's next append; this makes it a round trip), each within a second, then records it
/// as delivered.
async fn deliver(node: &Node, view: ClusterView) {
    let pushes = view.nodes.iter().filter(|n| n.info.id != node.id && n.state != MemberState::Down).map(|n| {
        let addr = n.info.addr.clone();
        let view = &view;
        async move {
            if let Err(e) = node.links.ask_heartbeat(&addr, view, Duration::from_secs(1)).await {
                tracing::debug!(%addr, error = %e, "committed view not pushed; Raft delivers it");
            }
        }
    });
    futures_util::future::join_all(pushes).await;
    node.consensus.set_delivered(view);
}

impl Actor for RaftHost {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let every = Duration::from_millis(self.node.cfg.consensus.heartbeat_ms.min(100));
        ctx.run_interval(every, |me, ctx| me.tick(ctx));
    }
}

impl Handler<RaftCall> for RaftHost {
    type Result = ResponseFuture<Result<Vec<u8>, String>>;

    fn handle(&mut self, call: RaftCall, _: &mut Context<Self>) -> Self::Result {
        Box::pin(RaftHost::answer(self.raft.clone(), self.id, Rc::clone(&self.leader_contact), call.name, call.payload))
    }
}

impl Handler<Propose> for RaftHost {
    type Result = actix::ResponseActFuture<Self, Result<(), ApiError>>;

    fn handle(&mut self, Propose(view): Propose, _: &mut Context<Self>) -> Self::Result {
        let (raft, node) = (self.raft.clone(), self.node.clone());
        let within = Duration::from_millis(3 * self.node.cfg.consensus.quorum_timeout_ms);
        let no_quorum = self.node.consensus.no_quorum();
        Box::pin(
            async move {
                match tokio::time::timeout(within, raft.client_write(Command::View(Box::new(view.clone())))).await {
                    Ok(Ok(_)) => {
                        deliver(&node, view).await;
                        Ok(())
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "a control-plane change was not committed");
                        Err(no_quorum)
                    }
                    Err(_) => {
                        tracing::warn!(?within, "a control-plane change was not committed in time");
                        Err(no_quorum)
                    }
                }
            }
            .into_actor(self)
            .map(|r, _, _| r),
        )
    }
}
