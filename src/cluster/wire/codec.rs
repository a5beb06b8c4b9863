//! How wire values are encoded: bincode 2 through [`mlmf_actors::codec`], with a limit on
//! every decode; a payload that carries an activation is `u32 header length, header, raw
//! bytes` ([`pack`] / [`unpack`]), so a 4 MiB tensor is copied once, not walked element by
//! element.

use serde::Serialize;
use serde::de::DeserializeOwned;

use mlmf_actors::codec::{Bincode2, Codec};

/// Largest encoded control message (views, statuses, outputs).
const CONTROL_LIMIT: usize = 256 << 20;

/// Encodes a value.
pub fn to_bytes<T: Serialize>(v: &T) -> Result<Vec<u8>, String> {
    Bincode2::<CONTROL_LIMIT>.encode(v).map_err(|e| e.to_string())
}

/// Decodes a value, refusing anything malformed or over the limit.
pub fn from_bytes<T: DeserializeOwned>(b: &[u8]) -> Result<T, String> {
    Bincode2::<CONTROL_LIMIT>.decode(b).map_err(|e| e.to_string())
}

/// `u32 header length, header, raw`.
pub fn pack<T: Serialize>(header: &T, raw: &[u8]) -> Result<Vec<u8>, String> {
    let h = to_bytes(header)?;
    let len = u32::try_from(h.len()).map_err(|_| "header too large".to_string())?;
    let mut out = Vec::with_capacity(4 + h.len() + raw.len());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(raw);
    Ok(out)
}

/// The inverse of [`pack`]; the raw part is returned as the rest of `payload`.
pub fn unpack<T: DeserializeOwned>(mut payload: Vec<u8>) -> Result<(T, Vec<u8>), String> {
    if payload.len() < 4 {
        return Err("payload shorter than its header length".into());
    }
    let len = u32::from_le_bytes([payload[0], payload[1], payload[2], payload[3]]) as usize;
    if len > payload.len() - 4 {
        return Err(format!("header length {len} exceeds the payload of {} bytes", payload.len()));
    }
    let header = from_bytes(&payload[4..4 + len])?;
    let raw = payload.split_off(4 + len);
    Ok((header, raw))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::wire::UnloadShard;

    #[test]
    fn pack_round_trips_and_refuses_lies() {
        let h = UnloadShard { model: "m".into(), shard: None };
        let p = pack(&h, &[1, 2, 3]).unwrap();
        let (back, raw): (UnloadShard, Vec<u8>) = unpack(p.clone()).unwrap();
        assert_eq!((back, raw), (h, vec![1, 2, 3]));
        let mut lie = p;
        lie[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(unpack::<UnloadShard>(lie).is_err());
        assert!(unpack::<UnloadShard>(vec![1]).is_err());
    }
}
