//! Value codecs behind a trait, so that bincode 2 (final release, no longer developed) can be
//! swapped without touching the frame or the actors.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::WireError;

/// Turns values into bytes and back.
pub trait Codec: Send + Sync + 'static {
    /// Encodes a value.
    fn encode<T: Serialize>(&self, value: &T) -> Result<Vec<u8>, WireError>;
    /// Decodes a value that must use all of `bytes`.
    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, WireError>;
}

/// bincode 2 (standard configuration: little-endian, variable-length integers) with a decode
/// limit of `LIMIT` bytes: a length prefix that claims more than the limit is refused before
/// any allocation (bincode checks each container's claimed size against it).
///
/// ```
/// use mlmf_actors::codec::{Bincode2, Codec};
/// let c = Bincode2::<1024>;
/// let bytes = c.encode(&(7u32, "seven".to_string())).unwrap();
/// assert_eq!(c.decode::<(u32, String)>(&bytes).unwrap(), (7, "seven".to_string()));
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Bincode2<const LIMIT: usize = { 64 << 20 }>;

impl<const LIMIT: usize> Codec for Bincode2<LIMIT> {
    fn encode<T: Serialize>(&self, value: &T) -> Result<Vec<u8>, WireError> {
        let bytes = bincode::serde::encode_to_vec(value, bincode::config::standard())
            .map_err(|e| WireError::Codec(e.to_string()))?;
        if bytes.len() > LIMIT {
            return Err(WireError::TooLarge { what: "encoded value", len: bytes.len(), max: LIMIT });
        }
        Ok(bytes)
    }

    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, WireError> {
        if bytes.len() > LIMIT {
            return Err(WireError::TooLarge { what: "encoded value", len: bytes.len(), max: LIMIT });
        }
        let config = bincode::config::standard().with_limit::<LIMIT>();
        let (value, used) =
            bincode::serde::decode_from_slice(bytes, config).map_err(|e| WireError::Codec(e.to_string()))?;
        if used != bytes.len() {
            return Err(WireError::Codec(format!("{} trailing bytes after the value", bytes.len() - used)));
        }
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_huge_length_prefix_is_refused_without_allocating() {
        // A Vec<u8> claiming u64::MAX elements: varint 0xFD marker + 8 bytes.
        let mut hostile = vec![253u8];
        hostile.extend_from_slice(&u64::MAX.to_le_bytes());
        let e = Bincode2::<4096>.decode::<Vec<u8>>(&hostile).unwrap_err();
        assert!(matches!(e, WireError::Codec(_)), "{e:?}");
    }

    #[test]
    fn trailing_bytes_are_an_error() {
        let mut b = Bincode2::<64>.encode(&5u8).unwrap();
        b.push(0);
        assert!(Bincode2::<64>.decode::<u8>(&b).is_err());
    }
}
