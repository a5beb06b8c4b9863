//! Payload compression, negotiated per connection and applied above a size threshold.

use std::io::Read;

use serde::{Deserialize, Serialize};

use crate::error::WireError;

/// A compression both ends may speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Compression {
    /// Raw bytes.
    None,
    /// LZ4 block format, decompressed size prepended (fastest).
    Lz4,
    /// Zstandard level 3 (best ratio per CPU second).
    Zstd,
    /// gzip (for peers that speak nothing else).
    Gzip,
}

impl Compression {
    /// Every compression, in the default order of preference.
    pub const ALL: [Compression; 4] = [Compression::Lz4, Compression::Zstd, Compression::Gzip, Compression::None];

    /// The id on the wire.
    pub fn id(self) -> u8 {
        match self {
            Compression::None => 0,
            Compression::Lz4 => 1,
            Compression::Zstd => 2,
            Compression::Gzip => 3,
        }
    }

    /// The compression of a wire id.
    pub fn from_id(id: u8) -> Result<Compression, WireError> {
        Ok(match id {
            0 => Compression::None,
            1 => Compression::Lz4,
            2 => Compression::Zstd,
            3 => Compression::Gzip,
            other => return Err(WireError::UnknownCompression(other)),
        })
    }

    /// The compression of a name (`none`, `lz4`, `zstd`, `gzip`).
    pub fn from_name(name: &str) -> Option<Compression> {
        Compression::ALL.into_iter().find(|c| c.name() == name)
    }

    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
            Compression::Gzip => "gzip",
        }
    }

    /// Compresses `data`.
    pub fn compress(self, data: &[u8]) -> Result<Vec<u8>, WireError> {
        let err = |e: std::io::Error| WireError::Decompress { codec: self.name(), message: e.to_string() };
        Ok(match self {
            Compression::None => data.to_vec(),
            Compression::Lz4 => lz4_flex::block::compress_prepend_size(data),
            Compression::Zstd => zstd::bulk::compress(data, 3).map_err(err)?,
            Compression::Gzip => {
                use std::io::Write;
                let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                enc.write_all(data).map_err(err)?;
                enc.finish().map_err(err)?
            }
        })
    }

    /// Decompresses `data`, refusing output longer than `max` bytes: the declared size is
    /// checked before allocating (LZ4), or the stream is cut at `max + 1` bytes (zstd, gzip),
    /// so a decompression bomb costs at most `max` bytes.
    pub fn decompress(self, data: &[u8], max: usize) -> Result<Vec<u8>, WireError> {
        let err = |e: String| WireError::Decompress { codec: self.name(), message: e };
        let too_large = |len| WireError::TooLarge { what: "decompressed payload", len, max };
        match self {
            Compression::None => {
                if data.len() > max {
                    return Err(too_large(data.len()));
                }
                Ok(data.to_vec())
            }
            Compression::Lz4 => {
                let declared = data
                    .first_chunk::<4>()
                    .map(|b| u32::from_le_bytes(*b) as usize)
                    .ok_or_else(|| WireError::Truncated("lz4 size prefix".into()))?;
                if declared > max {
                    return Err(too_large(declared));
                }
                lz4_flex::block::decompress_size_prepended(data).map_err(|e| err(e.to_string()))
            }
            Compression::Zstd | Compression::Gzip => {
                let mut out = Vec::new();
                let limit = max as u64 + 1;
                let read = match self {
                    Compression::Zstd => {
                        zstd::stream::read::Decoder::new(data).and_then(|d| d.take(limit).read_to_end(&mut out))
                    }
                    _ => flate2::read::GzDecoder::new(data).take(limit).read_to_end(&mut out),
                };
                read.map_err(|e| err(e.to_string()))?;
                if out.len() > max {
                    return Err(too_large(out.len()));
                }
                Ok(out)
            }
        }
    }
}

/// The compression a connection uses: the first of `ours` (in our order of preference) that
/// the peer also offers, or none.
///
/// ```
/// use mlmf_actors::compression::{negotiate, Compression::*};
/// assert_eq!(negotiate(&[Zstd, Lz4], &[Lz4, Gzip]), Lz4);
/// assert_eq!(negotiate(&[Zstd], &[Gzip]), None);
/// ```
pub fn negotiate(ours: &[Compression], theirs: &[Compression]) -> Compression {
    ours.iter().copied().find(|c| theirs.contains(c)).unwrap_or(Compression::None)
}
