//! Helpers of the tests: files built byte by byte, for headers the writer would not write.

use std::path::Path;

use crate::{GgufError, GgufFile};

/// Parses `bytes` as a file named `test.gguf`.
pub(crate) fn parse(bytes: &[u8]) -> Result<GgufFile, GgufError> {
    GgufFile::parse(Path::new("test.gguf"), bytes)
}

/// A GGUF file written field by field.
pub(crate) struct Raw(pub(crate) Vec<u8>);

impl Raw {
    /// Magic, `version` and the two counts.
    pub(crate) fn header(version: u32, n_tensors: u64, n_keys: u64) -> Raw {
        Raw(b"GGUF".to_vec()).u32(version).u64(n_tensors).u64(n_keys)
    }

    pub(crate) fn u32(mut self, v: u32) -> Raw {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }

    pub(crate) fn u64(mut self, v: u64) -> Raw {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }

    pub(crate) fn bytes(mut self, b: &[u8]) -> Raw {
        self.0.extend_from_slice(b);
        self
    }

    /// A GGUF string of any bytes.
    pub(crate) fn string(self, s: &[u8]) -> Raw {
        self.u64(s.len() as u64).bytes(s)
    }

    /// A tensor info.
    pub(crate) fn tensor(self, name: &str, dims: &[u64], type_id: u32, offset: u64) -> Raw {
        let mut raw = self.string(name.as_bytes()).u32(dims.len() as u32);
        for &d in dims {
            raw = raw.u64(d);
        }
        raw.u32(type_id).u64(offset)
    }

    /// Pads to 32 bytes and appends `n` bytes of data.
    pub(crate) fn data(mut self, n: usize) -> Vec<u8> {
        let len = self.0.len().next_multiple_of(32);
        self.0.resize(len + n, 0);
        self.0
    }
}
