//! One message on the wire: a fixed header, an [`Envelope`], then the payload.
//!
//! ```text
//! u8  version (1)
//! u8  compression id of the payload (0 none, 1 lz4, 2 zstd, 3 gzip)
//! u32 envelope length, little-endian
//! ... envelope (codec-encoded)
//! ... payload (compressed as the header says)
//! ```
//! Every length is checked against [`Limits`] before anything is allocated.

use serde::{Deserialize, Serialize};

use crate::codec::Codec;
use crate::compression::Compression;
use crate::error::WireError;

/// Frame format version.
pub const VERSION: u8 = 1;
const HEADER: usize = 6;

/// What a frame carries besides its payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// The message's stable registry name (for example `mlmf.Forward`).
    pub name: String,
    /// Pairs a response with its request; unique per connection and direction.
    pub correlation: u64,
    /// Request, response, error or one-way.
    pub kind: Kind,
    /// Milliseconds the sender will wait for an answer (0 for none).
    pub deadline_ms: u32,
    /// The request id that tracing spans carry across nodes.
    pub request_id: u64,
}

/// The role of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    /// Expects a response with the same correlation id.
    Request,
    /// Answers a request.
    Response,
    /// Answers a request with an error (the payload is the message).
    Error,
    /// Expects no answer.
    OneWay,
}

/// Bounds on what a peer may send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest encoded envelope.
    pub max_envelope: usize,
    /// Largest payload, before and after decompression.
    pub max_payload: usize,
    /// Payloads at least this large are compressed (when a compression was negotiated).
    pub compress_threshold: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_envelope: 4096, max_payload: 256 << 20, compress_threshold: 64 << 10 }
    }
}

/// Encodes a frame, compressing the payload with `compression` when it is at least
/// `limits.compress_threshold` bytes and compression makes it smaller.
pub fn encode<C: Codec>(
    codec: &C,
    envelope: &Envelope,
    payload: &[u8],
    compression: Compression,
    limits: &Limits,
) -> Result<Vec<u8>, WireError> {
    if payload.len() > limits.max_payload {
        return Err(WireError::TooLarge { what: "payload", len: payload.len(), max: limits.max_payload });
    }
    let env = codec.encode(envelope)?;
    if env.len() > limits.max_envelope {
        return Err(WireError::TooLarge { what: "envelope", len: env.len(), max: limits.max_envelope });
    }
    let (used, body) = if compression != Compression::None && payload.len() >= limits.compress_threshold {
        let packed = compression.compress(payload)?;
        if packed.len() < payload.len() { (compression, packed) } else { (Compression::None, payload.to_vec()) }
    } else {
        (Compression::None, payload.to_vec())
    };
    let mut out = Vec::with_capacity(HEADER + env.len() + body.len());
    out.push(VERSION);
    out.push(used.id());
    out.extend_from_slice(&(env.len() as u32).to_le_bytes());
    out.extend_from_slice(&env);
    out.extend_from_slice(&body);
    Ok(out)
}

/// Decodes a frame into its envelope and (decompressed) payload.
pub fn decode<C: Codec>(codec: &C, frame: &[u8], limits: &Limits) -> Result<(Envelope, Vec<u8>), WireError> {
    let header = frame.first_chunk::<HEADER>().ok_or_else(|| WireError::Truncated(format!("{} bytes", frame.len())))?;
    if header[0] != VERSION {
        return Err(WireError::Version(header[0]));
    }
    let compression = Compression::from_id(header[1])?;
    let env_len = u32::from_le_bytes([header[2], header[3], header[4], header[5]]) as usize;
    if env_len > limits.max_envelope {
        return Err(WireError::TooLarge { what: "envelope", len: env_len, max: limits.max_envelope });
    }
    let env_bytes = frame
        .get(HEADER..HEADER + env_len)
        .ok_or_else(|| WireError::Truncated(format!("envelope of {env_len} bytes")))?;
    let envelope: Envelope = codec.decode(env_bytes)?;
    let body = &frame[HEADER + env_len..];
    if body.len() > limits.max_payload {
        return Err(WireError::TooLarge { what: "payload", len: body.len(), max: limits.max_payload });
    }
    let payload = compression.decompress(body, limits.max_payload)?;
    Ok((envelope, payload))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Bincode2;
    use proptest::prelude::*;

    fn env(name: String, correlation: u64) -> Envelope {
        Envelope { name, correlation, kind: Kind::Request, deadline_ms: 1500, request_id: correlation ^ 0xABCD }
    }

    proptest! {
        #[test]
        fn round_trip_with_every_compression(
            name in "[a-zA-Z.]{1,40}", corr in any::<u64>(),
            payload in prop::collection::vec(prop_oneof![Just(0u8), any::<u8>()], 0..20_000),
            c in 0usize..4, threshold in 0usize..30_000,
        ) {
            let limits = Limits { compress_threshold: threshold, ..Limits::default() };
            let e = env(name, corr);
            let frame = encode(&Bincode2::<4096>, &e, &payload, Compression::ALL[c], &limits).unwrap();
            let (e2, p2) = decode(&Bincode2::<4096>, &frame, &limits).unwrap();
            prop_assert_eq!(e2, e);
            prop_assert_eq!(p2, payload);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode(&Bincode2::<4096>, &bytes, &Limits::default());
        }
    }

    #[test]
    fn compressible_payloads_are_compressed_above_the_threshold() {
        let limits = Limits::default();
        let payload = vec![7u8; 1 << 20];
        for c in [Compression::Lz4, Compression::Zstd, Compression::Gzip] {
            let frame = encode(&Bincode2::<4096>, &env("t".into(), 1), &payload, c, &limits).unwrap();
            assert_eq!(frame[1], c.id());
            assert!(frame.len() < payload.len() / 20, "{c:?}: {}", frame.len());
        }
        let small = encode(&Bincode2::<4096>, &env("t".into(), 1), &[7u8; 100], Compression::Zstd, &limits).unwrap();
        assert_eq!(small[1], Compression::None.id());
    }

    #[test]
    fn hostile_frames_get_typed_errors() {
        let limits = Limits { max_payload: 1 << 20, ..Limits::default() };
        let c = Bincode2::<4096>;
        let good = encode(&c, &env("m".into(), 9), b"hello", Compression::None, &limits).unwrap();
        assert!(matches!(decode(&c, &good[..3], &limits), Err(WireError::Truncated(_))));
        let mut v = good.clone();
        v[0] = 9;
        assert_eq!(decode(&c, &v, &limits), Err(WireError::Version(9)));
        let mut v = good.clone();
        v[1] = 7;
        assert_eq!(decode(&c, &v, &limits), Err(WireError::UnknownCompression(7)));
        let mut v = good.clone();
        v[2..6].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(decode(&c, &v, &limits), Err(WireError::TooLarge { what: "envelope", .. })));
        let mut v = good.clone();
        v[2..6].copy_from_slice(&100u32.to_le_bytes());
        assert!(matches!(decode(&c, &v, &limits), Err(WireError::Truncated(_))));
        // A decompression bomb: 64 MiB of zeros compress to a few KiB.
        let bomb = vec![0u8; 64 << 20];
        for comp in [Compression::Zstd, Compression::Gzip, Compression::Lz4] {
            let big = Limits { max_payload: 64 << 20, ..limits };
            let frame = encode(&c, &env("b".into(), 1), &bomb, comp, &big).unwrap();
            assert!(frame.len() < 1 << 20);
            let e = decode(&c, &frame, &limits).unwrap_err();
            assert!(matches!(e, WireError::TooLarge { what: "decompressed payload", .. }), "{comp:?}: {e:?}");
        }
        // An LZ4 prefix claiming 4 GiB.
        let mut v = good[..6 + (good.len() - 6 - 5)].to_vec();
        v[1] = Compression::Lz4.id();
        v.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(decode(&c, &v, &limits), Err(WireError::TooLarge { .. })));
    }
}
