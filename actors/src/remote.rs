//! Typed requests over a peer connection: a message type names itself and its reply, and
//! [`PeerPool::ask`] / [`answer`] do the encoding, so callers never handle bytes.
//!
//! ```
//! use mlmf_actors::remote::{RemoteMessage, decode_request, encode_reply};
//! #[derive(serde::Serialize, serde::Deserialize)]
//! struct Ping(u32);
//! impl RemoteMessage for Ping {
//!     const NAME: &'static str = "Ping";
//!     type Reply = u32;
//! }
//! // What a handler does with the payload of a "Ping" request:
//! let payload = mlmf_actors::remote::encode_request(&Ping(41)).unwrap();
//! let Ping(n) = decode_request::<Ping>(&payload).unwrap();
//! let reply = encode_reply::<Ping>(&(n + 1)).unwrap();
//! ```

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::codec::{Bincode2, Codec};
use crate::error::WireError;
use crate::peer::{PeerClient, PeerError};
use crate::pool::PeerPool;

/// Largest encoded request or reply.
pub const REMOTE_LIMIT: usize = 256 << 20;

/// A message that crosses the network under a stable name, with a typed reply.
pub trait RemoteMessage: Serialize + DeserializeOwned {
    /// The stable name in the envelope.
    const NAME: &'static str;
    /// What the receiver answers.
    type Reply: Serialize + DeserializeOwned;
}

/// Encodes a request.
pub fn encode_request<M: RemoteMessage>(msg: &M) -> Result<Vec<u8>, WireError> {
    Bincode2::<REMOTE_LIMIT>.encode(msg)
}

/// Decodes a request (with limits).
pub fn decode_request<M: RemoteMessage>(payload: &[u8]) -> Result<M, WireError> {
    Bincode2::<REMOTE_LIMIT>.decode(payload)
}

/// Encodes a reply.
pub fn encode_reply<M: RemoteMessage>(reply: &M::Reply) -> Result<Vec<u8>, WireError> {
    Bincode2::<REMOTE_LIMIT>.encode(reply)
}

/// Decodes a reply (with limits).
pub fn decode_reply<M: RemoteMessage>(bytes: &[u8]) -> Result<M::Reply, PeerError> {
    Ok(Bincode2::<REMOTE_LIMIT>.decode(bytes)?)
}

/// Decodes a request, runs `f`, encodes its reply: the body of a handler arm.
pub async fn answer<M, F, Fut>(payload: &[u8], f: F) -> Result<Vec<u8>, String>
where
    M: RemoteMessage,
    F: FnOnce(M) -> Fut,
    Fut: Future<Output = M::Reply>,
{
    let msg = decode_request::<M>(payload).map_err(|e| e.to_string())?;
    encode_reply::<M>(&f(msg).await).map_err(|e| e.to_string())
}

impl PeerClient {
    /// Sends `msg` and decodes its typed reply.
    pub async fn ask<M: RemoteMessage>(&self, msg: &M, deadline: Duration) -> Result<M::Reply, PeerError> {
        let bytes = self.request(M::NAME, &encode_request(msg)?, deadline, 0).await?;
        decode_reply::<M>(&bytes)
    }
}

impl PeerPool {
    /// Sends `msg` to `url` (dialling if needed) and decodes its typed reply.
    pub async fn ask<M: RemoteMessage>(&self, url: &str, msg: &M, deadline: Duration) -> Result<M::Reply, PeerError> {
        let bytes = self.request(url, M::NAME, &encode_request(msg)?, deadline, 0).await?;
        decode_reply::<M>(&bytes)
    }
}
