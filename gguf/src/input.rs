//! [`Reader`]: little-endian reads from a GGUF header, each checked against the bytes left.
//!
//! The same reader runs over a buffered file and over bytes in memory, so that the parser the
//! fuzz tests exercise is the one that opens files.

use std::io::{ErrorKind, Read};
use std::path::Path;

use crate::GgufError;
use crate::limits::MAX_HEADER_BYTES;

/// Describes, on demand, what is being read: formatting a message for each of 262,144
/// vocabulary strings would cost more than reading them.
pub(crate) type What<'a> = &'a dyn Fn() -> String;

/// A position in a GGUF header and the reads that move it.
pub(crate) struct Reader<'p, R> {
    inner: R,
    path: &'p Path,
    pos: u64,
    /// Length of the whole file.
    len: u64,
    /// Where the header must end: the file's end or [`MAX_HEADER_BYTES`], whichever is first.
    limit: u64,
}

impl<'p, R: Read> Reader<'p, R> {
    /// A reader at the start of a file of `len` bytes whose bytes `inner` yields.
    pub(crate) fn new(inner: R, path: &'p Path, len: u64) -> Self {
        Reader { inner, path, pos: 0, len, limit: len.min(MAX_HEADER_BYTES) }
    }

    /// The file this reads, for errors.
    pub(crate) fn path(&self) -> &'p Path {
        self.path
    }

    /// Length of the whole file.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// Bytes read so far.
    pub(crate) fn pos(&self) -> u64 {
        self.pos
    }

    /// Bytes the rest of the header can still take.
    pub(crate) fn left(&self) -> u64 {
        self.limit - self.pos
    }

    /// Fails unless `n` more bytes can be read: `Truncated` where the file ends first,
    /// `TooLarge` where the header would pass [`MAX_HEADER_BYTES`].
    pub(crate) fn need(&self, n: u64, what: What) -> Result<(), GgufError> {
        if n <= self.left() {
            return Ok(());
        }
        if n > self.len - self.pos {
            return Err(GgufError::Truncated {
                path: self.path.to_path_buf(),
                what: format!("{} ({n} bytes from byte {}, but the file has {} bytes)", what(), self.pos, self.len),
            });
        }
        Err(GgufError::TooLarge {
            path: self.path.to_path_buf(),
            what: format!("the header's size (reading {})", what()),
            count: self.pos.saturating_add(n),
            limit: MAX_HEADER_BYTES,
        })
    }

    /// Checks a count of items that take at least `min_size` bytes each: against `cap` and
    /// against what the rest of the header can hold. Returns it as a `usize` for allocating.
    pub(crate) fn count(&self, n: u64, min_size: u64, cap: u64, what: What) -> Result<usize, GgufError> {
        let fits = self.left() / min_size.max(1);
        let limit = cap.min(fits);
        if n > limit {
            return Err(GgufError::TooLarge { path: self.path.to_path_buf(), what: what(), count: n, limit });
        }
        // `limit` is at most the header's size, which is in memory or could be.
        usize::try_from(n).map_err(|_| GgufError::TooLarge {
            path: self.path.to_path_buf(),
            what: what(),
            count: n,
            limit: usize::MAX as u64,
        })
    }

    /// Fills `buf` from the file.
    pub(crate) fn fill(&mut self, buf: &mut [u8], what: What) -> Result<(), GgufError> {
        self.need(buf.len() as u64, what)?;
        self.inner.read_exact(buf).map_err(|source| {
            if source.kind() == ErrorKind::UnexpectedEof {
                // The file shrank while being read.
                GgufError::Truncated { path: self.path.to_path_buf(), what: what() }
            } else {
                GgufError::Io { path: self.path.to_path_buf(), source }
            }
        })?;
        self.pos += buf.len() as u64;
        Ok(())
    }

    /// Reads `N` bytes.
    pub(crate) fn array<const N: usize>(&mut self, what: What) -> Result<[u8; N], GgufError> {
        let mut buf = [0; N];
        self.fill(&mut buf, what)?;
        Ok(buf)
    }

    /// Reads a little-endian `u32`.
    pub(crate) fn u32(&mut self, what: What) -> Result<u32, GgufError> {
        self.array(what).map(u32::from_le_bytes)
    }

    /// Reads a little-endian `u64`.
    pub(crate) fn u64(&mut self, what: What) -> Result<u64, GgufError> {
        self.array(what).map(u64::from_le_bytes)
    }

    /// Reads `n` bytes into a new vector, allocated only once they are known to be there.
    pub(crate) fn bytes(&mut self, n: u64, what: What) -> Result<Vec<u8>, GgufError> {
        self.need(n, what)?;
        let n = usize::try_from(n).map_err(|_| GgufError::TooLarge {
            path: self.path.to_path_buf(),
            what: what(),
            count: n,
            limit: usize::MAX as u64,
        })?;
        let mut buf = vec![0; n];
        self.fill(&mut buf, what)?;
        Ok(buf)
    }

    /// Passes over `n` bytes.
    pub(crate) fn skip(&mut self, mut n: u64, what: What) -> Result<(), GgufError> {
        self.need(n, what)?;
        let mut scratch = [0; 4096];
        while n > 0 {
            let step = n.min(scratch.len() as u64) as usize;
            self.fill(&mut scratch[..step], what)?;
            n -= step as u64;
        }
        Ok(())
    }

    /// Reads a GGUF string (u64 length, then bytes) of at most `cap` bytes.
    pub(crate) fn string(&mut self, cap: u64, what: What) -> Result<String, GgufError> {
        let len = self.string_len(cap, what)?;
        let bytes = self.bytes(len, what)?;
        String::from_utf8(bytes).map_err(|_| GgufError::NotUtf8 { path: self.path.to_path_buf(), what: what() })
    }

    /// Reads a GGUF string's length and checks it against `cap`.
    pub(crate) fn string_len(&mut self, cap: u64, what: What) -> Result<u64, GgufError> {
        let len = self.u64(&|| format!("the length of {}", what()))?;
        if len > cap {
            return Err(GgufError::TooLarge {
                path: self.path.to_path_buf(),
                what: format!("the length of {}", what()),
                count: len,
                limit: cap,
            });
        }
        Ok(len)
    }
}
