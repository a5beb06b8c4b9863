//! Loading a shard replica on this node: from the mapped checkpoint when the node can read
//! the model directory, otherwise by pulling exactly the byte ranges it needs from a peer
//! that can: `config.json`, the index, every header and every tensor checked against the
//! SHA-256 the coordinator recorded from its own read (the peer's own figures only when the
//! coordinator cannot read the files, after a takeover by a node without them).
//!
//! A pulled checkpoint is rebuilt as sparse files in the node's data directory: the config,
//! the index, every safetensors header and the shard's own tensors, at their original
//! offsets, so the ordinary header validation and mmap reader load it unchanged. Bytes never
//! pulled are holes and are never read.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::model::{Checkpoint, MappedCheckpoint};

use super::node::{ControlMessage, LocalShard, Node, Origin};
use super::shard::{RestartPolicy, ShardActor, ShardCaches, ShardHandle, WarmUp};
use super::wire::{
    self, DigestRequest, Digests, FETCH_MAX, Fetch, LoadShard, Manifest, ManifestFile, ManifestRequest, ManifestTensor,
    Progress, ShardLoaded, names,
};

use crate::model::checkpoint::INDEX_FILE;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn report(node: &Node, msg: &LoadShard, loaded: u64, total: u64) {
    let p = Progress { model: msg.model.clone(), shard: msg.shard.id, node: node.id.clone(), loaded, total };
    if msg.coordinator == node.addr {
        if let (Some(c), Ok(payload)) = (node.role.coordinator(), wire::to_bytes(&p)) {
            c.do_send(ControlMessage { name: names::PROGRESS.to_string(), payload });
        }
        return;
    }
    let _ = node.links.ask(&msg.coordinator, &p, Duration::from_secs(5)).await;
}

/// Tokens of the warm-up forward a new replica runs before it serves (the references' first
/// length).
pub const WARM_UP_TOKENS: usize = 7;

/// Loads `msg`'s replica and registers it on `node`: from the node's warm cache when it
/// kept this very replica, otherwise from the files (read here or pulled from a peer).
pub async fn load_shard(node: &Node, msg: LoadShard) -> Result<ShardLoaded, String> {
    let path = PathBuf::from(&msg.path);
    let key = (msg.model.clone(), msg.shard.id);
    if let Some(s) = node.shards.get(&key) {
        let loaded = ShardLoaded { bytes: s.bytes, pulled: s.pulled, load_ms: 0, warmup_ms: 0, from_warm_cache: false };
        return Ok(loaded);
    }
    let started = std::time::Instant::now();
    if let Some(kept) = node.warm.take(&msg.model, &msg.shard, &path) {
        match warm_up(&kept.handle).await {
            Ok(warmup) => {
                let load_ms = started.elapsed().saturating_sub(warmup).as_millis() as u64;
                // Its latency is counted afresh (its earlier life is not this one's).
                let kept = LocalShard { latency: Arc::default(), ..kept };
                return Ok(register(node, &msg, kept, load_ms, warmup, true).await);
            }
            Err(e) => {
                tracing::warn!(model = %msg.model, shard = msg.shard.id, error = %e, "a kept replica failed its warm-up; loading it again")
            }
        }
    }
    let (mapped, pulled) = if node.checkpoints.can_read(&path) {
        let n = node.clone();
        let p = path.clone();
        let mapped =
            actix_web::rt::task::spawn_blocking(move || n.checkpoints.open(&p)).await.map_err(|e| e.to_string())??;
        (mapped, false)
    } else {
        (pull(node, &msg).await?, true)
    };
    let names: Vec<String> = msg.shard.tensors.clone();
    let entries: Vec<_> = names.iter().filter_map(|n| mapped.checkpoint().tensors.get(n)).collect();
    let total: u64 = entries.iter().map(|t| t.bytes).sum::<u64>().max(1);
    let threads = node.cfg.shard_threads;
    let numel: u64 = entries.iter().map(|t| t.shape.iter().map(|&d| d as u64).product::<u64>()).sum();
    let resident = numel.saturating_mul(4).saturating_mul(threads as u64);
    if !pulled {
        // Page the shard's bytes in, reporting progress; this is the read that costs time on
        // a cold disk, and what the progress bar shows.
        let mut loaded = 0u64;
        let mut last_report = 0u64;
        for name in &names {
            let m = Arc::clone(&mapped);
            let n = name.clone();
            let bytes = actix_web::rt::task::spawn_blocking(move || -> Result<u64, String> {
                let (e, raw) = m.raw(&n).map_err(|e| e.to_string())?;
                // Touch one byte per page.
                let mut acc = 0u8;
                for b in raw.iter().step_by(4096) {
                    acc = acc.wrapping_add(*b);
                }
                std::hint::black_box(acc);
                Ok(e.bytes)
            })
            .await
            .map_err(|e| e.to_string())??;
            loaded += bytes;
            if loaded - last_report >= total / 8 {
                last_report = loaded;
                report(node, &msg, loaded, total).await;
            }
        }
    }
    // Stamped before the stage is built from them: a file replaced meanwhile makes the kept
    // replica stale, never a stale replica look current.
    let origin = if pulled {
        None
    } else {
        let files = mapped.checkpoint().files.iter().map(|f| f.path.clone());
        let dir = mapped.checkpoint().dir.canonicalize().ok();
        dir.zip(Origin::stamp(files)).map(|(dir, files)| Origin { dir, files, resident })
    };
    let spec = msg.shard.clone();
    let device = node.device.clone();
    let (m, s, d) = (Arc::clone(&mapped), spec.spec.clone(), device.clone());
    let first = actix_web::rt::task::spawn_blocking(move || crate::model::Stage::load(&m, &s, &d))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let load_ms = started.elapsed().as_millis() as u64;
    let caches = ShardCaches { store: Arc::clone(&node.kv), model: msg.model.clone() };
    let handle = ShardActor::start_loaded(spec, mapped, first, device, threads, RestartPolicy::default(), caches);
    // Warmed with one forward of the references' first length (7 tokens) before it is
    // registered: no request can reach a replica that has not run (its counters show it).
    let warmup = warm_up(&handle).await?;
    let mailbox = mlmf_actors::priority::PriorityMailbox::new(handle.addr.clone(), node.cfg.requests.shard_queue);
    let local =
        LocalShard { handle, mailbox, bytes: total, pulled, latency: Arc::default(), ongoing: Arc::default(), origin };
    Ok(register(node, &msg, local, load_ms, warmup, false).await)
}

/// Runs the warm-up forward on the replica's compute thread.
async fn warm_up(handle: &ShardHandle) -> Result<Duration, String> {
    match handle.addr.send(WarmUp { tokens: WARM_UP_TOKENS }).await {
        Ok(Ok(took)) => Ok(took),
        Ok(Err(e)) => Err(format!("warm-up forward: {e}")),
        Err(e) => Err(format!("warm-up forward: {e}")),
    }
}

/// Puts a warm replica in the node's registry (the routes reach it from now on).
async fn register(
    node: &Node,
    msg: &LoadShard,
    local: LocalShard,
    load_ms: u64,
    warmup: Duration,
    from_warm_cache: bool,
) -> ShardLoaded {
    let (bytes, pulled) = (local.bytes, local.pulled);
    node.shards.insert((msg.model.clone(), msg.shard.id), local);
    report(node, msg, bytes, bytes).await;
    let warmup_ms = warmup.as_millis() as u64;
    tracing::info!(model = %msg.model, shard = msg.shard.id, pulled, bytes, load_ms, warmup_ms, from_warm_cache, "shard loaded");
    ShardLoaded { bytes, pulled, load_ms, warmup_ms, from_warm_cache }
}

/// Pulls the shard's tensors from the first source that answers.
async fn pull(node: &Node, msg: &LoadShard) -> Result<Arc<MappedCheckpoint>, String> {
    let mut errors = Vec::new();
    for src in &msg.sources {
        match pull_from(node, msg, src).await {
            Ok(m) => return Ok(m),
            Err(e) => {
                tracing::warn!(source = %src, error = %e, "pull failed");
                errors.push(format!("{src}: {e}"));
            }
        }
    }
    Err(format!("node {} cannot read {} and no peer could supply it ({})", node.id, msg.path, errors.join("; ")))
}

async fn fetch(node: &Node, src: &str, path: &str, file: usize, offset: u64, len: u64) -> Result<Vec<u8>, String> {
    let req = wire::to_bytes(&Fetch { path: path.into(), file, offset, len })?;
    let bytes =
        node.links.call(src, names::FETCH, &req, Duration::from_secs(60), 0).await.map_err(|e| e.to_string())?;
    if bytes.len() as u64 != len {
        return Err(format!("asked for {len} bytes at {offset}, got {}", bytes.len()));
    }
    Ok(bytes)
}

fn safe_name(name: &str) -> Result<&str, String> {
    let ok = !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains('/')
        && !name.contains('\\')
        && Path::new(name).file_name().is_some_and(|f| f == name);
    if ok { Ok(name) } else { Err(format!("peer sent an unsafe file name {name:?}")) }
}

/// The SHA-256 the coordinator recorded of the parts of `msg`'s checkpoint; `None` when the
/// coordinator cannot read the files itself.
async fn recorded_digests(node: &Node, msg: &LoadShard) -> Result<Option<Digests>, String> {
    let req = DigestRequest { model: msg.model.clone(), tensors: msg.shard.tensors.clone() };
    let answer: Result<Digests, wire::ApiError> = if msg.coordinator == node.addr {
        let c = node.role.coordinator().ok_or("this node no longer coordinates")?;
        let payload = mlmf_actors::remote::encode_request(&req).map_err(|e| e.to_string())?;
        let bytes =
            c.send(ControlMessage { name: names::DIGESTS.to_string(), payload }).await.map_err(|e| e.to_string())??;
        wire::from_bytes(&bytes)?
    } else {
        node.links.ask(&msg.coordinator, &req, Duration::from_secs(120)).await.map_err(|e| e.to_string())?
    };
    match answer {
        Ok(d) => Ok(Some(d)),
        Err(e) if e.code == "unreadable" => {
            tracing::warn!(model = %msg.model, reason = %e.message, "pulling with the source's own checksums only");
            Ok(None)
        }
        Err(e) => Err(format!("the coordinator's checksums: {}", e.message)),
    }
}

/// Checks part `what` of a pulled checkpoint (its SHA-256 `got`) against the coordinator's
/// record: `recorded` is `None` without a record (the coordinator cannot read the files),
/// `Some(None)` when the record lacks the part.
fn check(what: &str, got: [u8; 32], recorded: Option<Option<&[u8; 32]>>, src: &str) -> Result<(), String> {
    match recorded {
        None => Ok(()),
        Some(Some(d)) if *d == got => Ok(()),
        Some(Some(_)) => Err(format!("{what} from {src} does not match the SHA-256 the coordinator recorded")),
        Some(None) => Err(format!("{what} from {src} is not in the coordinator's record")),
    }
}

fn recorded<'a>(list: &'a [(String, [u8; 32])], name: &str) -> Option<&'a [u8; 32]> {
    list.iter().find(|(n, _)| n == name).map(|(_, d)| d)
}

async fn pull_from(node: &Node, msg: &LoadShard, src: &str) -> Result<Arc<MappedCheckpoint>, String> {
    let req = ManifestRequest { path: msg.path.clone(), tensors: msg.shard.tensors.clone() };
    let manifest: Manifest = node.links.ask(src, &req, Duration::from_secs(60)).await.map_err(|e| e.to_string())??;
    let digests = recorded_digests(node, msg).await?;
    let sha = |b: &[u8]| -> [u8; 32] { Sha256::digest(b).into() };
    check("config.json", sha(&manifest.config_json), digests.as_ref().map(|d| Some(&d.config_json)), src)?;
    if let Some(d) = &digests {
        match &manifest.index_json {
            Some(index) => check(INDEX_FILE, sha(index), Some(d.index_json.as_ref()), src)?,
            None if d.index_json.is_some() => return Err(format!("{src} sent no {INDEX_FILE}")),
            None => {}
        }
        if manifest.files.len() != d.headers.len() {
            return Err(format!("{src} lists {} files, the coordinator {}", manifest.files.len(), d.headers.len()));
        }
    }
    let digest = Sha256::digest(msg.path.as_bytes());
    let safe_model: String =
        msg.model.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect();
    let dir = node.data_dir().join(format!("{safe_model}-{}", &hex(&digest)[..12]));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let write = |name: &str, bytes: &[u8]| std::fs::write(dir.join(name), bytes).map_err(|e| format!("{name}: {e}"));
    if !manifest.config_json.is_empty() {
        write("config.json", &manifest.config_json)?;
    }
    if let Some(index) = &manifest.index_json {
        write(INDEX_FILE, index)?;
    }
    let mut files = Vec::with_capacity(manifest.files.len());
    for (i, f) in manifest.files.iter().enumerate() {
        let name = safe_name(&f.name)?;
        if f.header_end > f.len || f.header_end > 100 << 20 {
            return Err(format!("{name}: header end {} beyond the file of {} bytes", f.header_end, f.len));
        }
        let p = dir.join(name);
        let file =
            OpenOptions::new().create(true).write(true).truncate(false).open(&p).map_err(|e| format!("{name}: {e}"))?;
        if file.metadata().map(|m| m.len()).unwrap_or(0) != f.len {
            file.set_len(f.len).map_err(|e| format!("{name}: {e}"))?;
        }
        let header = fetch(node, src, &msg.path, i, 0, f.header_end).await?;
        let what = format!("the header of {name}");
        check(&what, sha(&header), digests.as_ref().map(|d| recorded(&d.headers, name)), src)?;
        file.write_all_at(&header, 0).map_err(|e| format!("{name}: {e}"))?;
        files.push(file);
    }
    let total: u64 = manifest.tensors.iter().map(|t| t.len).sum::<u64>().max(1);
    let mut loaded = 0;
    for t in &manifest.tensors {
        let (file, meta) =
            files.get(t.file).zip(manifest.files.get(t.file)).ok_or_else(|| format!("tensor {} in no file", t.name))?;
        if t.offset.checked_add(t.len).is_none_or(|end| end > meta.len) || t.offset < meta.header_end {
            return Err(format!("tensor {} lies outside its file's data", t.name));
        }
        let mut hasher = Sha256::new();
        let mut at = 0;
        while at < t.len {
            let n = (t.len - at).min(FETCH_MAX);
            let chunk = fetch(node, src, &msg.path, t.file, t.offset + at, n).await?;
            hasher.update(&chunk);
            file.write_all_at(&chunk, t.offset + at).map_err(|e| format!("{}: {e}", t.name))?;
            at += n;
            loaded += n;
            report(node, msg, loaded, total).await;
        }
        let got: [u8; 32] = hasher.finalize().into();
        match &digests {
            Some(d) => check(&format!("tensor {}", t.name), got, Some(recorded(&d.tensors, &t.name)), src)?,
            None if got != t.sha256 => return Err(format!("tensor {} from {src} failed its SHA-256 check", t.name)),
            None => {}
        }
    }
    drop(files);
    let d = dir.clone();
    actix_web::rt::task::spawn_blocking(move || -> Result<Arc<MappedCheckpoint>, String> {
        let ckpt = Arc::new(Checkpoint::open(&d).map_err(|e| e.to_string())?);
        Ok(Arc::new(ckpt.map().map_err(|e| e.to_string())?))
    })
    .await
    .map_err(|e| e.to_string())?
}

/// Answers a [`ManifestRequest`] from a peer: only for a directory this node may read, only
/// for tensors that exist.
pub async fn manifest(node: &Node, req: ManifestRequest) -> Result<Manifest, String> {
    let dir = PathBuf::from(&req.path);
    let n = node.clone();
    actix_web::rt::task::spawn_blocking(move || -> Result<Manifest, String> {
        let mapped = n.checkpoints.open(&dir)?;
        let ckpt = mapped.checkpoint();
        let mut files = Vec::new();
        for f in &ckpt.files {
            files.push(ManifestFile { name: f.name()?, len: f.len, header_end: f.header_end()? });
        }
        let mut tensors = Vec::new();
        for name in &req.tensors {
            let (e, raw) = mapped.raw(name).map_err(|e| e.to_string())?;
            let sha256: [u8; 32] = Sha256::digest(raw).into();
            tensors.push(ManifestTensor { name: name.clone(), file: e.file, offset: e.offset, len: e.bytes, sha256 });
        }
        // A GGUF model's config travels in its header: it sends an empty config.json.
        let config_json = match ckpt.config_file() {
            Some(path) => std::fs::read(path).map_err(|e| e.to_string())?,
            None => Vec::new(),
        };
        let index_json = std::fs::read(ckpt.dir.join(INDEX_FILE)).ok();
        Ok(Manifest { config_json, index_json, files, tensors })
    })
    .await
    .map_err(|e| e.to_string())?
}

/// Answers a [`Fetch`]: a range of one of the checkpoint's own files, within its length.
pub async fn fetch_range(node: &Node, req: Fetch) -> Result<Vec<u8>, String> {
    if req.len > FETCH_MAX {
        return Err(format!("a fetch returns at most {FETCH_MAX} bytes, {} asked", req.len));
    }
    let n = node.clone();
    actix_web::rt::task::spawn_blocking(move || -> Result<Vec<u8>, String> {
        let mapped = n.checkpoints.open(Path::new(&req.path))?;
        let f = mapped.checkpoint().files.get(req.file).ok_or("no such file")?;
        if req.offset.checked_add(req.len).is_none_or(|end| end > f.len) {
            return Err(format!("range {}+{} beyond the file of {} bytes", req.offset, req.len, f.len));
        }
        let mut buf = vec![0u8; req.len as usize];
        std::fs::File::open(&f.path)
            .and_then(|h| h.read_exact_at(&mut buf, req.offset))
            .map_err(|e| format!("{}: {e}", f.path.display()))?;
        Ok(buf)
    })
    .await
    .map_err(|e| e.to_string())?
}
