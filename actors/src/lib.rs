//! `mlmf-actors`: typed remote actors for actix over websocket. It knows nothing about
//! models; another project could use it alone.
//!
//! Built so far: the wire format ([`frame`]: header, [`frame::Envelope`], payload), value
//! codecs behind a trait ([`codec`], bincode 2 with decode limits), negotiated compression
//! ([`compression`]: lz4, zstd, gzip, bounded against decompression bombs) and the cluster
//! key ([`auth`]). Not built yet: peer connections (actix-ws / awc), the typed
//! request/response API with deadlines, the registry of named recipients, reconnection,
//! bounded mailboxes, TLS.

pub mod auth;
pub mod codec;
pub mod compression;
pub mod error;
pub mod frame;

pub use error::WireError;
