//! `mlmf-actors`: typed remote actors for actix over websocket. It knows nothing about
//! models; another project could use it alone.
//!
//! - [`frame`]: the wire format (header, [`frame::Envelope`], payload), every length checked
//!   before allocating; [`codec`]: value codecs behind a trait (bincode 2 with decode limits);
//!   [`compression`]: negotiated lz4, zstd, gzip, bounded against decompression bombs.
//! - [`auth`]: the zeroizing, constant-time cluster key; [`tls`]: rustls with optional mutual TLS.
//! - [`peer`]: the `/v1/peer` route on actix-web and the awc client (authenticated,
//!   compressed per connection, requests with deadlines); [`pool`]: per-thread connections
//!   that redial with backoff; [`remote`]: typed requests and replies by message name.
//! - [`registry`]: named local recipients keyed by what remote messages name, and bounded
//!   mailboxes that answer "overloaded"; [`priority`]: a priority queue in front of a sync
//!   actor's worker threads.

pub mod auth;
pub mod codec;
pub mod compression;
pub mod error;
pub mod frame;
pub mod peer;
pub mod pool;
pub mod priority;
pub mod registry;
pub mod remote;
pub mod tls;

pub use error::WireError;
