//! `mlmf-actors`: typed remote actors for actix over websocket.
//!
//! This crate is the transport layer of mlmf and knows nothing about models. It is a
//! skeleton today: the envelope, codec, peer connections, authentication and registry
//! described in `DESIGN.md` are not built yet (see the README's "Not there yet").

/// The crate's version, so that peers can refuse an incompatible transport.
pub const PROTOCOL_VERSION: u32 = 0;
