//! [`ShardActor`]: one loaded shard replica. Its burn compute runs on a `SyncArbiter` thread
//! (never on an async arbiter) under `catch_unwind`.
//!
//! Supervision: a panic during compute answers the request with [`ShardError::Panicked`] and
//! stops the actor; the `SyncArbiter` then builds a fresh actor from the factory, which
//! reloads the shard's weights from the (already validated) mapped checkpoint. A
//! [`RestartPolicy`] bounds this, as Erlang's supervisors do: more than `max_restarts` within
//! `window` and the factory builds the actor in a failed state that refuses work with
//! [`ShardError::Escalated`], for the node to act on.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::{Actor, ActorContext, Addr, Handler, SyncArbiter, SyncContext};
use burn::tensor::{Device, Tensor};

use crate::config::GenerationConfig;
use crate::exec::{HostTensor, RunOutputs};
use crate::model::activation::{decode, encode};
use crate::model::ops::last_position;
use crate::model::{ForwardContext, KvCache, LoadError, MappedCheckpoint, Stage};
use crate::plan::ShardSpec;

use super::kv_store::{KvKey, KvStore};
use super::wire::KvStep;

pub use super::shard_messages::{Carries, Forward, InjectPanic, ShardError, StageOutput, TpOutput, TpStep, WarmUp};

mod tensor_parallel;

/// How many restarts within how long before a shard gives up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartPolicy {
    /// Restarts allowed within `window`.
    pub max_restarts: usize,
    /// The sliding window.
    pub window: Duration,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        RestartPolicy { max_restarts: 3, window: Duration::from_secs(5) }
    }
}

/// One shard replica.
pub struct ShardActor {
    spec: ShardSpec,
    /// The loaded stage, or why the shard gave up (restart limit, reload failure).
    stage: Result<Stage, String>,
    /// Where this replica keeps its sequences' KV caches (shared by its threads).
    caches: ShardCaches,
    /// The messages its threads handled (shared by them).
    counters: Arc<ShardCounters>,
}

/// What a replica's threads count of the requests they handle.
#[derive(Debug, Default)]
pub struct ShardCounters {
    handled: AtomicU64,
    cold: AtomicU64,
    tokens: AtomicU64,
    warmed: AtomicBool,
}

impl ShardCounters {
    fn count(&self, tokens: usize) {
        self.handled.fetch_add(1, Ordering::Relaxed);
        self.tokens.fetch_add(tokens as u64, Ordering::Relaxed);
        if !self.warmed.load(Ordering::Acquire) {
            self.cold.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Requests ([`Forward`], [`TpStep`]) handled since the replica started.
    pub fn handled(&self) -> u64 {
        self.handled.load(Ordering::Relaxed)
    }

    /// Of those, the ones handled before its [`WarmUp`] had finished (a replica that joins
    /// the routes only once warm handles none).
    pub fn cold(&self) -> u64 {
        self.cold.load(Ordering::Relaxed)
    }

    /// Tokens through it: every row's positions of the inputs it computed (a tensor-parallel
    /// member counts them at its embedding, once per step).
    pub fn tokens(&self) -> u64 {
        self.tokens.load(Ordering::Relaxed)
    }

    /// Whether its warm-up forward has run.
    pub fn warmed(&self) -> bool {
        self.warmed.load(Ordering::Acquire)
    }
}

/// The node's KV store and the model a replica belongs to (the first part of its keys).
#[derive(Clone)]
pub struct ShardCaches {
    /// The node's store.
    pub store: Arc<KvStore>,
    /// The model id.
    pub model: String,
}

impl ShardCaches {
    /// A store of its own with the default budget (for a replica outside a node).
    pub fn standalone(model: &str) -> ShardCaches {
        ShardCaches { store: Arc::new(KvStore::new(&GenerationConfig::default())), model: model.to_string() }
    }

    fn key(&self, shard: usize, seq: u64) -> KvKey {
        (self.model.clone(), shard, seq)
    }
}

impl Actor for ShardActor {
    type Context = SyncContext<Self>;
}

/// The address of a running shard plus what it holds.
#[derive(Clone)]
pub struct ShardHandle {
    /// The actor (a pool of `threads` identical replicas behind one address).
    pub addr: Addr<ShardActor>,
    /// What it holds.
    pub spec: ShardSpec,
    /// What its threads counted.
    pub counters: Arc<ShardCounters>,
}

impl ShardActor {
    /// Loads the shard once (so that a bad checkpoint is an error here, not in a thread), then
    /// starts it on `threads` sync threads under `policy`.
    pub fn start(
        spec: ShardSpec,
        mapped: Arc<MappedCheckpoint>,
        device: Device,
        threads: usize,
        policy: RestartPolicy,
    ) -> Result<ShardHandle, LoadError> {
        let first = Stage::load(&mapped, &spec.spec, &device)?;
        let caches = ShardCaches::standalone("model");
        Ok(ShardActor::start_loaded(spec, mapped, first, device, threads, policy, caches))
    }

    /// As [`ShardActor::start`], with the first replica's stage already loaded (load it on a
    /// blocking thread; this must run inside an actix system).
    pub fn start_loaded(
        spec: ShardSpec,
        mapped: Arc<MappedCheckpoint>,
        first: Stage,
        device: Device,
        threads: usize,
        policy: RestartPolicy,
        caches: ShardCaches,
    ) -> ShardHandle {
        let preloaded = Mutex::new(Some(first));
        let starts: Mutex<VecDeque<Instant>> = Mutex::new(VecDeque::new());
        let threads = threads.max(1);
        let initial = Mutex::new(threads);
        let factory_spec = spec.clone();
        let counters = Arc::new(ShardCounters::default());
        let shared = Arc::clone(&counters);
        let addr = SyncArbiter::start(threads, move || {
            let spec = factory_spec.clone();
            // The first `threads` builds are starts, not restarts.
            let is_restart = {
                let mut left = initial.lock().unwrap_or_else(|e| e.into_inner());
                if *left > 0 {
                    *left -= 1;
                    false
                } else {
                    true
                }
            };
            if is_restart {
                let mut log = starts.lock().unwrap_or_else(|e| e.into_inner());
                let now = Instant::now();
                while log.front().is_some_and(|t| now.duration_since(*t) > policy.window) {
                    log.pop_front();
                }
                log.push_back(now);
                if log.len() > policy.max_restarts {
                    let reason = format!("{} restarts within {:?}", log.len(), policy.window);
                    tracing::error!(shard = spec.id, %reason, "shard escalated");
                    return ShardActor {
                        spec,
                        stage: Err(reason),
                        caches: caches.clone(),
                        counters: Arc::clone(&shared),
                    };
                }
                tracing::warn!(shard = spec.id, "restarting shard from the mapped checkpoint");
            }
            let stage = match preloaded.lock().unwrap_or_else(|e| e.into_inner()).take() {
                Some(s) => Ok(s),
                None => Stage::load(&mapped, &spec.spec, &device).map_err(|e| e.to_string()),
            };
            ShardActor { spec, stage, caches: caches.clone(), counters: Arc::clone(&shared) }
        });
        ShardHandle { addr, spec, counters }
    }

    fn run(&self, msg: &Forward) -> Result<StageOutput, ShardError> {
        let id = self.spec.id;
        let invalid = |message: String| ShardError::Invalid { shard: id, message };
        let stage =
            self.stage.as_ref().map_err(|reason| ShardError::Escalated { shard: id, reason: reason.clone() })?;
        let cfg = &stage.config;
        msg.input.validate(cfg).map_err(|e| invalid(e.to_string()))?;
        if !msg.kv_batch.is_empty() {
            return self.run_rows(stage, msg);
        }
        let past = msg.kv.map(|k| k.past).unwrap_or(0);
        let x = self.stage_input(stage, msg, || stage.embed_at(&msg.input, past))?;
        let ctx = ForwardContext::continuing(cfg, &msg.input, past, &stage.device);
        let mut trace = Vec::new();
        let traced = msg.block_outputs.then_some(&mut trace);
        let x = match msg.kv {
            None => stage.run_blocks(x, &ctx, traced),
            Some(k) => {
                let key = self.caches.key(id, k.seq);
                let mut cache = self.continued(&key, k, stage.new_cache())?;
                let out = stage.run_blocks_kv(x, &ctx, traced, Some(&mut cache));
                self.caches.store.put(key, cache);
                out
            }
        }
        .map_err(|e| invalid(e.to_string()))?;
        let x = match msg.kv {
            Some(k) if !k.all_logits && stage.spec.head => last_position(x),
            _ => x,
        };
        let mut blocks = Vec::with_capacity(trace.len());
        for (i, t) in trace {
            blocks.push((i, HostTensor::from_tensor(t).map_err(|e| invalid(e.to_string()))?));
        }
        self.finish(stage, x, blocks)
    }

    /// A stage's first activation: the embedding `embed` makes of the ids at the first
    /// stage, the previous stage's bytes (checked to be `[batch, seq, hidden]`) at the others.
    fn stage_input(
        &self,
        stage: &Stage,
        msg: &Forward,
        embed: impl FnOnce() -> Result<Tensor<3>, crate::model::ForwardError>,
    ) -> Result<Tensor<3>, ShardError> {
        let invalid = |message: String| ShardError::Invalid { shard: self.spec.id, message };
        match (&msg.hidden, stage.spec.embeddings) {
            (None, true) => embed().map_err(|e| invalid(e.to_string())),
            (Some(bytes), false) => {
                let x = decode::<3>(bytes, &stage.device).map_err(|e| invalid(e.to_string()))?;
                let want = [msg.input.batch, msg.input.seq_len, stage.config.hidden_size];
                if x.dims() != want {
                    return Err(invalid(format!("activation of shape {:?}, expected {want:?}", x.dims())));
                }
                Ok(x)
            }
            (None, false) => Err(invalid("this stage needs the previous stage's activation".into())),
            (Some(_), true) => Err(invalid("the first stage takes token ids, not an activation".into())),
        }
    }

    /// A stage's result: the activation for the next stage, or the head's outputs.
    fn finish(&self, stage: &Stage, x: Tensor<3>, blocks: Vec<(usize, HostTensor)>) -> Result<StageOutput, ShardError> {
        let invalid = |message: String| ShardError::Invalid { shard: self.spec.id, message };
        if !stage.spec.head {
            let bytes = encode(x).map_err(|e| invalid(e.to_string()))?;
            return Ok(StageOutput::Hidden { bytes, blocks });
        }
        let head = stage.head(x).map_err(|e| invalid(e.to_string()))?;
        let mut outputs = RunOutputs::from_head(head).map_err(|e| invalid(e.to_string()))?;
        for (i, t) in blocks {
            outputs.tensors.insert(format!("block_output.{i}"), t);
        }
        Ok(StageOutput::Final(outputs))
    }

    /// A batch of decode steps: row `i` one token continuing sequence `kv_batch[i]`'s cache
    /// here. Every cache is taken first; if one is missing, those taken go back untouched and
    /// the miss is reported (the batch's members then step alone, and that one replays).
    fn run_rows(&self, stage: &Stage, msg: &Forward) -> Result<StageOutput, ShardError> {
        let id = self.spec.id;
        let invalid = |message: String| ShardError::Invalid { shard: id, message };
        let steps = &msg.kv_batch;
        let n = steps.len();
        if steps.iter().all(|k| k.past == 0) {
            return self.prefill_rows(stage, msg);
        }
        if msg.input.batch != n || msg.input.seq_len != 1 || msg.block_outputs {
            return Err(invalid(format!(
                "a batch of {n} decode steps takes {n} rows of one token and no block outputs"
            )));
        }
        if steps.iter().any(|k| k.past == 0 || k.all_logits) {
            return Err(invalid("a batched decode step continues a cache and returns its last logits only".into()));
        }
        let pasts: Vec<usize> = steps.iter().map(|k| k.past).collect();
        let x = self.stage_input(stage, msg, || stage.embed_rows(&msg.input, &pasts))?;
        let mut keys = Vec::with_capacity(n);
        let mut caches = Vec::with_capacity(n);
        for k in steps {
            let key = self.caches.key(id, k.seq);
            match self.continued(&key, *k, stage.new_cache()) {
                Ok(c) => {
                    keys.push(key);
                    caches.push(c);
                }
                Err(e) => {
                    for (key, c) in keys.into_iter().zip(caches) {
                        self.caches.store.put(key, c);
                    }
                    return Err(e);
                }
            }
        }
        let ctx = ForwardContext::decoding(&stage.config, &pasts, &stage.device);
        let out = stage.run_blocks_rows(x, &ctx, &mut caches);
        for (key, c) in keys.into_iter().zip(caches) {
            self.caches.store.put(key, c);
        }
        let x = out.map_err(|e| invalid(e.to_string()))?;
        self.finish(stage, x, Vec::new())
    }

    /// A batch of prompts, right-padded (the attention mask marks each row's tokens), each
    /// starting sequence `kv_batch[i]`: one forward, then each row's cache cut to its own
    /// length and kept, and at the head each row's last token's logits.
    fn prefill_rows(&self, stage: &Stage, msg: &Forward) -> Result<StageOutput, ShardError> {
        let id = self.spec.id;
        let invalid = |message: String| ShardError::Invalid { shard: id, message };
        let (n, l) = (msg.input.batch, msg.input.seq_len);
        if msg.kv_batch.len() != n || msg.block_outputs || msg.kv_batch.iter().any(|k| k.all_logits) {
            return Err(invalid(format!("a batch of {n} prefills takes {n} rows, no block outputs, last logits only")));
        }
        let lens: Vec<usize> = match &msg.input.attention_mask {
            None => vec![l; n],
            Some(m) => m.chunks(l.max(1)).map(|r| r.iter().take_while(|&&v| v == 1).count()).collect(),
        };
        let ones = |i: usize| {
            msg.input.attention_mask.as_ref().map_or(l, |m| m[i * l..(i + 1) * l].iter().filter(|&&v| v == 1).count())
        };
        if lens.iter().enumerate().any(|(i, &len)| len == 0 || ones(i) != len) {
            return Err(invalid("batched prompts must be right-padded, each with at least one token".into()));
        }
        let x = self.stage_input(stage, msg, || stage.embed(&msg.input))?;
        let ctx = ForwardContext::new(&stage.config, &msg.input, &stage.device);
        let mut batch = stage.new_cache();
        let x = stage.run_blocks_kv(x, &ctx, None, Some(&mut batch)).map_err(|e| invalid(e.to_string()))?;
        for (i, k) in msg.kv_batch.iter().enumerate() {
            self.caches.store.put(self.caches.key(id, k.seq), batch.row(i, lens[i]));
        }
        let x = if stage.spec.head {
            let last: Vec<Tensor<3>> =
                lens.iter().enumerate().map(|(i, &len)| x.clone().narrow(0, i, 1).narrow(1, len - 1, 1)).collect();
            Tensor::cat(last, 0)
        } else {
            x
        };
        self.finish(stage, x, Vec::new())
    }

    /// The cache a whole-stage generation step continues: a fresh one from position 0, else
    /// the one held, cut back to the step's position (a retried step is computed again).
    fn continued(&self, key: &KvKey, k: KvStep, fresh: KvCache) -> Result<KvCache, ShardError> {
        let held = self.caches.store.take(key);
        if k.past == 0 {
            return Ok(fresh);
        }
        match held {
            Some(mut c) if c.positions() >= k.past => {
                c.truncate(k.past);
                Ok(c)
            }
            _ => Err(ShardError::CacheMiss { shard: self.spec.id, seq: k.seq, past: k.past }),
        }
    }

    /// Runs `f` under `catch_unwind`; a panic stops the actor so the arbiter rebuilds it.
    fn guarded<T>(
        &mut self,
        ctx: &mut SyncContext<Self>,
        f: impl FnOnce(&Self) -> Result<T, ShardError>,
    ) -> Result<T, ShardError> {
        match catch_unwind(AssertUnwindSafe(|| f(self))) {
            Ok(r) => r,
            Err(panic) => {
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".into());
                tracing::error!(shard = self.spec.id, %message, "shard compute panicked");
                ctx.stop();
                Err(ShardError::Panicked { shard: self.spec.id, message })
            }
        }
    }
}

/// The last position of `[b, l, h]` (the one whose logits choose the next token).
impl Handler<Forward> for ShardActor {
    type Result = Result<StageOutput, ShardError>;

    fn handle(&mut self, msg: Forward, ctx: &mut SyncContext<Self>) -> Self::Result {
        self.counters.count(msg.input.batch * msg.input.seq_len);
        self.guarded(ctx, |me| me.run(&msg))
    }
}

impl Handler<TpStep> for ShardActor {
    type Result = Result<TpOutput, ShardError>;

    fn handle(&mut self, msg: TpStep, ctx: &mut SyncContext<Self>) -> Self::Result {
        let tokens = match &msg {
            TpStep::Embed { input, .. } => input.batch * input.seq_len,
            _ => 0,
        };
        self.counters.count(tokens);
        self.guarded(ctx, |me| me.tp(msg))
    }
}

impl Handler<WarmUp> for ShardActor {
    type Result = Result<Duration, ShardError>;

    fn handle(&mut self, msg: WarmUp, ctx: &mut SyncContext<Self>) -> Self::Result {
        let took = self.guarded(ctx, |me| {
            let id = me.spec.id;
            let stage =
                me.stage.as_ref().map_err(|reason| ShardError::Escalated { shard: id, reason: reason.clone() })?;
            stage.warm_up(msg.tokens).map_err(|e| ShardError::Invalid { shard: id, message: format!("warm-up: {e}") })
        })?;
        self.counters.warmed.store(true, Ordering::Release);
        Ok(took)
    }
}

/// The shard's priority queue (`mlmf_actors::priority`): take the most urgent message.
impl Handler<mlmf_actors::priority::RunNext<ShardActor>> for ShardActor {
    type Result = ();

    fn handle(&mut self, next: mlmf_actors::priority::RunNext<ShardActor>, ctx: &mut SyncContext<Self>) {
        next.run(self, ctx)
    }
}

impl Handler<InjectPanic> for ShardActor {
    type Result = Result<StageOutput, ShardError>;

    fn handle(&mut self, _: InjectPanic, ctx: &mut SyncContext<Self>) -> Self::Result {
        self.guarded(ctx, |me| match &me.stage {
            Err(reason) => Err(ShardError::Escalated { shard: me.spec.id, reason: reason.clone() }),
            Ok(_) => panic!("injected fault"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::{LocalRunner, RunOptions};
    use crate::model::{Checkpoint, ModelInput, ModelLayout};
    use crate::plan::ShardPlan;

    fn fixture(name: &str) -> std::path::PathBuf {
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
    }

    fn start_plan(strategy: &str, policy: RestartPolicy) -> Vec<ShardHandle> {
        let ckpt = Arc::new(Checkpoint::open(&fixture("gpt2_tiny")).unwrap());
        let layout = ModelLayout::from_checkpoint(&ckpt).unwrap();
        let plan = ShardPlan::new(&layout, &strategy.parse().unwrap()).unwrap();
        let mapped = Arc::new(ckpt.map().unwrap());
        let device = crate::model::default_device();
        plan.shards
            .into_iter()
            .map(|s| ShardActor::start(s, Arc::clone(&mapped), device.clone(), 1, policy).unwrap())
            .collect()
    }

    async fn run_pipeline(shards: &[ShardHandle], input: Arc<ModelInput>) -> Result<RunOutputs, ShardError> {
        let mut hidden = None;
        for s in shards {
            match s
                .addr
                .send(Forward {
                    input: Arc::clone(&input),
                    hidden: hidden.take(),
                    block_outputs: false,
                    kv: None,
                    kv_batch: Vec::new(),
                })
                .await
                .unwrap()?
            {
                StageOutput::Hidden { bytes, .. } => hidden = Some(bytes),
                StageOutput::Final(out) => return Ok(out),
            }
        }
        panic!("no final stage");
    }

    #[actix::test]
    async fn a_pipeline_of_shard_actors_equals_the_local_runner() {
        let shards = start_plan("pipeline:3", RestartPolicy::default());
        let input = Arc::new(ModelInput::single(&[811, 950, 92, 828, 382, 686, 220]));
        let got = run_pipeline(&shards, Arc::clone(&input)).await.unwrap();
        let device = crate::model::default_device();
        let local = LocalRunner::load(&fixture("gpt2_tiny"), &"none".parse().unwrap(), &device).unwrap();
        let want = local.run(&input, RunOptions::default()).unwrap();
        assert_eq!(got.tensors["logits"].shape, vec![1, 7, 1000]);
        let diff = got.tensors["logits"]
            .data
            .iter()
            .zip(&want.tensors["logits"].data)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(diff < 1e-5, "{diff}");
        // A wrong activation is refused with a reason, not a panic.
        let bad = shards[1]
            .addr
            .send(Forward {
                input: Arc::clone(&input),
                hidden: Some(vec![1, 2, 3]),
                block_outputs: false,
                kv: None,
                kv_batch: Vec::new(),
            })
            .await
            .unwrap();
        assert!(matches!(bad, Err(ShardError::Invalid { .. })), "{bad:?}");
    }

    #[actix::test]
    async fn requests_before_the_warm_up_are_counted_cold() {
        let shards = start_plan("none", RestartPolicy::default());
        let input = Arc::new(ModelInput::single(&[1, 2, 3]));
        let c = &shards[0].counters;
        assert!(!c.warmed());
        run_pipeline(&shards, Arc::clone(&input)).await.unwrap();
        assert_eq!((c.handled(), c.cold()), (1, 1));
        let took = shards[0].addr.send(WarmUp { tokens: 7 }).await.unwrap().unwrap();
        assert!(c.warmed() && took > Duration::ZERO);
        run_pipeline(&shards, Arc::clone(&input)).await.unwrap();
        run_pipeline(&shards, input).await.unwrap();
        assert_eq!((c.handled(), c.cold()), (3, 1), "a warm replica's requests are not cold");
    }

    #[actix::test]
    async fn a_panic_restarts_the_shard_and_too_many_escalate() {
        let policy = RestartPolicy { max_restarts: 2, window: Duration::from_secs(60) };
        let shards = start_plan("none", policy);
        let input = Arc::new(ModelInput::single(&[1, 2, 3]));
        let addr = &shards[0].addr;
        for _ in 0..2 {
            let e = addr.send(InjectPanic).await.unwrap();
            assert!(matches!(e, Err(ShardError::Panicked { .. })), "{e:?}");
            // Rebuilt from the mapped checkpoint: it answers again.
            assert!(run_pipeline(&shards, Arc::clone(&input)).await.is_ok());
        }
        let _ = addr.send(InjectPanic).await.unwrap();
        let e = run_pipeline(&shards, Arc::clone(&input)).await.unwrap_err();
        assert!(matches!(e, ShardError::Escalated { .. }), "{e:?}");
    }
}
