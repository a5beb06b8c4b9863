//! The cluster key: a shared secret peers (and HTTP clients) present, held in zeroizing
//! memory, compared in constant time, never printed.

use std::path::Path;

use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// Shortest key accepted, in bytes.
pub const MIN_KEY_BYTES: usize = 16;

/// Why a key could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The key file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The key is too short to be a secret.
    #[error("cluster key must be at least {MIN_KEY_BYTES} bytes, got {0}")]
    TooShort(usize),
    /// The operating system's random source failed.
    #[error("no random bytes from the operating system: {0}")]
    Random(String),
}

/// A shared cluster secret.
#[derive(Clone)]
pub struct ClusterKey(Zeroizing<Vec<u8>>);

impl ClusterKey {
    /// A fresh key of 32 bytes from the operating system's CSPRNG, and its text (64 hex
    /// digits) to write into a key file; both are wiped from memory when dropped.
    pub fn generate() -> Result<(ClusterKey, Zeroizing<String>), KeyError> {
        let mut bytes = Zeroizing::new([0u8; 32]);
        getrandom::fill(bytes.as_mut()).map_err(|e| KeyError::Random(e.to_string()))?;
        let mut text = Zeroizing::new(String::with_capacity(64));
        for b in bytes.iter() {
            use std::fmt::Write;
            let _ = write!(text, "{b:02x}");
        }
        Ok((ClusterKey::new(text.as_bytes())?, text))
    }

    /// A key from bytes (surrounding whitespace removed).
    pub fn new(bytes: &[u8]) -> Result<ClusterKey, KeyError> {
        let trimmed = bytes.trim_ascii();
        if trimmed.len() < MIN_KEY_BYTES {
            return Err(KeyError::TooShort(trimmed.len()));
        }
        Ok(ClusterKey(Zeroizing::new(trimmed.to_vec())))
    }

    /// Reads a key file.
    pub fn from_file(path: &Path) -> Result<ClusterKey, KeyError> {
        let bytes = Zeroizing::new(
            std::fs::read(path).map_err(|source| KeyError::Io { path: path.display().to_string(), source })?,
        );
        ClusterKey::new(&bytes)
    }

    /// Whether `presented` is this key, in time independent of where they differ.
    pub fn verify(&self, presented: &[u8]) -> bool {
        // Length is not secret (it is fixed per cluster); content comparison is.
        self.0.len() == presented.len() && bool::from(self.0.as_slice().ct_eq(presented))
    }

    /// The key's bytes, to put in a handshake header.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterKey(<redacted>)")
    }
}

/// A key kept in a file and read again on request, so that it can be rotated without a
/// restart: a new key that cannot be used (missing file, too short) is refused and the one
/// in use stays.
#[derive(Debug)]
pub struct KeyFile {
    path: std::path::PathBuf,
    key: std::sync::RwLock<ClusterKey>,
}

impl KeyFile {
    /// Reads the key in `path`.
    pub fn open(path: &Path) -> Result<KeyFile, KeyError> {
        Ok(KeyFile { path: path.to_path_buf(), key: std::sync::RwLock::new(ClusterKey::from_file(path)?) })
    }

    /// Reads the file again: `Ok(true)` when it holds a new key (now in use), `Ok(false)` when
    /// it is unchanged, an error (the old key still in use) when it cannot be used.
    pub fn reload(&self) -> Result<bool, KeyError> {
        let fresh = ClusterKey::from_file(&self.path)?;
        let mut key = self.key.write().unwrap_or_else(|e| e.into_inner());
        if key.verify(fresh.expose()) {
            return Ok(false);
        }
        *key = fresh;
        Ok(true)
    }

    /// Whether `presented` is the key in use.
    pub fn verify(&self, presented: &[u8]) -> bool {
        self.key.read().unwrap_or_else(|e| e.into_inner()).verify(presented)
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_file_rotates_and_refuses_an_unusable_key() {
        let dir = std::env::temp_dir().join(format!("mlmf-keyfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("key");
        std::fs::write(&path, "the first key, long enough\n").unwrap();
        let k = KeyFile::open(&path).unwrap();
        assert!(k.verify(b"the first key, long enough"));
        assert!(!k.reload().unwrap(), "unchanged");
        std::fs::write(&path, "the second key, long enough").unwrap();
        assert!(k.reload().unwrap());
        assert!(k.verify(b"the second key, long enough") && !k.verify(b"the first key, long enough"));
        std::fs::write(&path, "short").unwrap();
        assert!(matches!(k.reload(), Err(KeyError::TooShort(5))));
        assert!(k.verify(b"the second key, long enough"), "the key in use stays");
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(k.reload(), Err(KeyError::Io { .. })));
        assert!(k.verify(b"the second key, long enough"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn generated_keys_are_hex_of_32_random_bytes_and_differ() {
        let (a, text_a) = ClusterKey::generate().unwrap();
        let (_, text_b) = ClusterKey::generate().unwrap();
        assert_eq!(text_a.len(), 64);
        assert!(text_a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(*text_a, *text_b);
        assert!(a.verify(text_a.as_bytes()));
    }

    #[test]
    fn verify_and_redaction() {
        let k = ClusterKey::new(b"  correct horse battery staple\n").unwrap();
        assert!(k.verify(b"correct horse battery staple"));
        assert!(!k.verify(b"correct horse battery stapl"));
        assert!(!k.verify(b"correct horse battery stapleX"));
        assert!(!k.verify(b"Correct horse battery staple"));
        assert_eq!(format!("{k:?}"), "ClusterKey(<redacted>)");
        assert!(matches!(ClusterKey::new(b"short"), Err(KeyError::TooShort(5))));
    }
}
