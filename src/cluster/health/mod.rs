//! Failure detection and heartbeats: [`phi`] (the detector, pure), [`monitor`] (the
//! coordinator's [`HealthMonitor`]), [`heartbeat`] (every member's [`HeartbeatSender`]),
//! [`stats`] (what a heartbeat carries).

pub mod heartbeat;
pub mod monitor;
pub mod phi;
pub mod stats;

pub use heartbeat::HeartbeatSender;
pub use monitor::{Beat, Forget, HealthMonitor, MemberStateChanged, Phis};
pub use phi::{PhiAccrual, state_of};
pub use stats::{StatsSampler, p99_between};
