//! Balancing: [`policies`] holds the pure choices (strategies, session affinity by
//! rendezvous hashing, circuit breakers, round-robin routes); [`actor`] holds the
//! [`Balancer`] actor, one per thread that takes requests, and the messages a user's own
//! strategy answers ([`PickRoute`]).

pub mod actor;
pub mod policies;

pub use actor::{Balancer, PickRoute, RequestDone, SetView};
pub use policies::{Candidate, CircuitBreaker, NoRoute, PeakEwma, choose, rendezvous, round_robin};
