//! The checksums of a checkpoint, from the coordinator's own read: a node that cannot read a
//! model pulls its bytes from a peer and checks `config.json`, the index, every header and
//! every tensor against these, so a peer never vouches for its own bytes. Each part is hashed
//! the first time a puller asks for it and the figure is kept (for the directory as the
//! coordinator resolves it), so later pulls are checked against that first read.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use actix::{Context, Handler, Message, ResponseFuture};
use sha2::{Digest, Sha256};

use super::actor::{Coordinator, DigestCache};
use crate::cluster::node::Node;
use crate::cluster::wire::{ApiError, DigestRequest, Digests};
use crate::model::checkpoint::INDEX_FILE;

/// A puller asks for the digests of a model's checkpoint.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<Digests, ApiError>")]
pub struct DigestsMsg(pub DigestRequest);

impl Handler<DigestsMsg> for Coordinator {
    type Result = ResponseFuture<Result<Digests, ApiError>>;

    fn handle(&mut self, DigestsMsg(req): DigestsMsg, _: &mut Context<Self>) -> Self::Result {
        let path = self.models.get(&req.model).map(|r| PathBuf::from(&r.status.path));
        let (node, cache) = (self.node.clone(), Arc::clone(&self.digests));
        Box::pin(async move {
            let Some(path) = path else {
                return Err(ApiError::new(404, "unknown_model", format!("no model {:?} here", req.model)));
            };
            if !node.checkpoints.can_read(&path) {
                // A coordinator that took over on a node without the files.
                let why = format!("the coordinator {} cannot read {}", node.id, path.display());
                return Err(ApiError::new(409, "unreadable", why));
            }
            actix_web::rt::task::spawn_blocking(move || digests(&node, &path, &req.tensors, &cache))
                .await
                .map_err(|e| ApiError::new(500, "internal", e.to_string()))?
                .map_err(|e| ApiError::new(500, "digest_failed", e))
        })
    }
}

/// Every part's digest, from the cache or hashed now from the coordinator's own mapping of
/// the checkpoint at `path`.
fn digests(node: &Node, path: &Path, tensors: &[String], cache: &DigestCache) -> Result<Digests, String> {
    let mapped = node.checkpoints.open(path)?;
    let ckpt = mapped.checkpoint();
    let dir = ckpt.dir.canonicalize().map_err(|e| format!("{}: {e}", ckpt.dir.display()))?;
    if tensors.len() > ckpt.tensors.len() {
        return Err(format!("{} tensors asked of a checkpoint of {}", tensors.len(), ckpt.tensors.len()));
    }
    // `hash` reads the part and hashes it, on a cache miss only.
    let part = |name: String, hash: &dyn Fn() -> Result<[u8; 32], String>| -> Result<[u8; 32], String> {
        let key = (dir.clone(), name);
        if let Some(d) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
            return Ok(*d);
        }
        let d = hash()?;
        Ok(*cache.lock().unwrap_or_else(|e| e.into_inner()).entry(key).or_insert(d))
    };
    let sha = |bytes: &[u8]| -> [u8; 32] { Sha256::digest(bytes).into() };
    let file = |p: PathBuf| move || std::fs::read(&p).map(|b| sha(&b)).map_err(|e| format!("{}: {e}", p.display()));
    // A GGUF model has no config.json: its config is in the header, hashed with the header.
    let config_json = match ckpt.config_file() {
        Some(_) => part("config.json".into(), &file(dir.join("config.json")))?,
        None => sha(&[]),
    };
    let index_json = match dir.join(INDEX_FILE).is_file() {
        true => Some(part(INDEX_FILE.into(), &file(dir.join(INDEX_FILE)))?),
        false => None,
    };
    let mut headers = Vec::with_capacity(ckpt.files.len());
    for f in &ckpt.files {
        let name = f.name()?;
        let read = || -> Result<[u8; 32], String> {
            use std::os::unix::fs::FileExt;
            let mut buf = vec![0u8; f.header_end()? as usize];
            let h = std::fs::File::open(&f.path).map_err(|e| format!("{}: {e}", f.path.display()))?;
            h.read_exact_at(&mut buf, 0).map_err(|e| e.to_string())?;
            Ok(sha(&buf))
        };
        headers.push((name.clone(), part(format!("header:{name}"), &read)?));
    }
    let mut out = Vec::with_capacity(tensors.len());
    for t in tensors {
        let read = || mapped.raw(t).map(|(_, raw)| sha(raw)).map_err(|e| e.to_string());
        out.push((t.clone(), part(format!("tensor:{t}"), &read)?));
    }
    Ok(Digests { config_json, index_json, headers, tensors: out })
}
