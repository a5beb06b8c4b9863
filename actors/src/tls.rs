//! TLS for peer links (and the HTTP API on the same port) through rustls, with the `ring`
//! provider; optional mutual TLS, where both ends present a certificate signed by the
//! cluster's CA. [`self_signed`] makes a CA and a loopback certificate (rcgen) for tests and
//! for `mlmf serve`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or holds nothing usable.
    #[error("{path}: {message}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// rustls refused the configuration.
    #[error("tls: {0}")]
    Rustls(#[from] rustls::Error),
    /// Certificate generation failed.
    #[error("certificate generation: {0}")]
    Generate(String),
}

/// Where a node's TLS material lives (PEM files).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// The node's certificate chain.
    pub cert: PathBuf,
    /// The node's private key.
    pub key: PathBuf,
    /// The CA that signs every node's certificate (peers are verified against it).
    pub ca: PathBuf,
    /// Require peers (and HTTP clients) to present a certificate signed by the CA.
    #[serde(default)]
    pub mutual: bool,
}

/// The loaded client and server configurations of one node.
#[derive(Clone)]
pub struct Tls {
    /// For the node's listener.
    pub server: Arc<ServerConfig>,
    /// For dialling peers (presents the node's certificate when `mutual`).
    pub client: Arc<ClientConfig>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tls(..)")
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = |message: String| TlsError::Pem { path: path.into(), message };
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem(e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| pem(e.to_string()))?;
    if certs.is_empty() {
        return Err(pem("no certificate in the file".into()));
    }
    Ok(certs)
}

impl TlsFiles {
    /// Reads the files and builds both configurations.
    pub fn load(&self) -> Result<Tls, TlsError> {
        let chain = certs(&self.cert)?;
        let key = PrivateKeyDer::from_pem_file(&self.key)
            .map_err(|e| TlsError::Pem { path: self.key.clone(), message: e.to_string() })?;
        let mut roots = RootCertStore::empty();
        for c in certs(&self.ca)? {
            roots.add(c)?;
        }
        let roots = Arc::new(roots);
        let server = ServerConfig::builder_with_provider(provider()).with_safe_default_protocol_versions()?;
        let server = if self.mutual {
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::clone(&roots), provider())
                .build()
                .map_err(|e| TlsError::Generate(e.to_string()))?;
            server.with_client_cert_verifier(verifier)
        } else {
            server.with_no_client_auth()
        }
        .with_single_cert(chain.clone(), key.clone_key())?;
        let client = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(Arc::clone(&roots));
        let client = if self.mutual { client.with_client_auth_cert(chain, key)? } else { client.with_no_client_auth() };
        Ok(Tls { server: Arc::new(server), client: Arc::new(client) })
    }
}

/// Writes a fresh CA and a certificate for 127.0.0.1 and localhost signed by it into `dir`
/// (`ca.pem`, `node.pem`, `node.key`, the key readable by the owner only).
pub fn self_signed(dir: &Path, mutual: bool) -> Result<TlsFiles, TlsError> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let gen_err = |e: rcgen::Error| TlsError::Generate(e.to_string());
    let io = |path: &Path, e: std::io::Error| TlsError::Pem { path: path.into(), message: e.to_string() };
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let ca_key = KeyPair::generate().map_err(gen_err)?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(gen_err)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, "mlmf cluster CA");
    let ca = ca_params.self_signed(&ca_key).map_err(gen_err)?;
    let key = KeyPair::generate().map_err(gen_err)?;
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).map_err(gen_err)?;
    params.distinguished_name.push(DnType::CommonName, "mlmf node");
    let cert = params.signed_by(&key, &ca, &ca_key).map_err(gen_err)?;
    let files = TlsFiles { cert: dir.join("node.pem"), key: dir.join("node.key"), ca: dir.join("ca.pem"), mutual };
    std::fs::write(&files.ca, ca.pem()).map_err(|e| io(&files.ca, e))?;
    std::fs::write(&files.cert, cert.pem()).map_err(|e| io(&files.cert, e))?;
    let key_pem = zeroize::Zeroizing::new(key.serialize_pem());
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(0o600)
            .open(&files.key)
            .map_err(|e| io(&files.key, e))?;
        f.write_all(key_pem.as_bytes()).map_err(|e| io(&files.key, e))?;
    }
    Ok(files)
}

/// A client configuration that trusts the CA in `ca` and presents no certificate (an HTTP
/// client of a cluster without mutual TLS).
pub fn client_trusting(ca: &Path) -> Result<Arc<ClientConfig>, TlsError> {
    let mut roots = RootCertStore::empty();
    for c in certs(ca)? {
        roots.add(c)?;
    }
    Ok(Arc::new(
        ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth(),
    ))
}
