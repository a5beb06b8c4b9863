//! `mlmf-actors`: typed remote actors for actix over websocket. It knows nothing about
//! models; another project could use it alone.
//!
//! Built so far: the wire format ([`frame`]: header, [`frame::Envelope`], payload), value
//! codecs behind a trait ([`codec`], bincode 2 with decode limits), negotiated compression
//! ([`compression`]: lz4, zstd, gzip, bounded against decompression bombs) and the cluster
//! key ([`auth`]), and peer connections ([`peer`]: the `/v1/peer` route on actix-web and an
//! awc client, authenticated and compressed per connection, requests with deadlines). Not
//! built yet: the registry of named recipients, reconnection with backoff, bounded
//! mailboxes, a prioritised heartbeat channel, TLS.

pub mod auth;
pub mod codec;
pub mod compression;
pub mod error;
pub mod frame;
pub mod peer;
pub mod pool;
pub mod registry;
pub mod tls;

pub use error::WireError;
