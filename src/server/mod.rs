//! Booting a node: the top of the stack, where the HTTP API ([`crate::api`]) and the actors
//! of [`crate::cluster`] are started together on one port. `mlmf node`, the in-process
//! manager and the tests all start nodes through [`start`], [`start_with_key`] or
//! [`start_with`].

pub mod boot;
pub mod handle;
pub mod telemetry;

pub use boot::{NodeError, RunningNode, start, start_with, start_with_key};
