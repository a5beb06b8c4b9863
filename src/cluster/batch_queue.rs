//! Dynamic batching's bookkeeping, without the path that serves a batch
//! ([`super::batching`] drives it): per `(model, priority)` a queue of requests waiting for a
//! forward slot; taking the next batch within a token budget; packing its members into one
//! right-padded [`ModelInput`] (padding masked out, so neither a bidirectional encoder nor a
//! causal decoder lets it reach a real token); and cutting the batch's outputs back into each
//! member's rows and length.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use tokio::sync::oneshot;

use crate::exec::{HostTensor, RunOutputs};
use crate::model::ModelInput;

use super::infer_types::{InferError, InferOptions, InferResult};

/// One request waiting in a batch queue.
#[derive(Debug)]
pub struct Member {
    /// Its input (validated against the model).
    pub input: ModelInput,
    /// Its options.
    pub opts: InferOptions,
    /// Its request id.
    pub request_id: u64,
    /// When its caller stops waiting.
    pub deadline: Instant,
    /// The span it was queued from (the batch's span continues or links it).
    pub parent: super::trace::SpanParent,
    /// Where its answer goes.
    pub reply: oneshot::Sender<Result<InferResult, InferError>>,
}

impl Member {
    /// Tokens of its input.
    pub fn tokens(&self) -> usize {
        self.input.batch * self.input.seq_len
    }
}

#[derive(Debug, Default)]
struct Queue {
    waiting: VecDeque<Member>,
    in_flight: usize,
}

/// Upper bounds of the batch-size histogram's buckets (requests per batched forward).
pub const SIZE_BUCKETS: [u64; 9] = [1, 2, 4, 8, 16, 32, 64, 128, 256];

/// Every batch queue of a node, and what it has batched.
#[derive(Debug, Default)]
pub struct BatchQueues {
    queues: Mutex<HashMap<(String, u8), Queue>>,
    /// Requests waiting for a forward slot, all models together.
    pub waiting: AtomicUsize,
    sizes: Mutex<[u64; SIZE_BUCKETS.len()]>,
    /// Batched forwards sent.
    pub batches: AtomicU64,
    /// Requests they carried.
    pub batched: AtomicU64,
    /// Woken on every push (a decode batch gathering its sequences waits on it).
    pub pushed: tokio::sync::Notify,
}

impl BatchQueues {
    /// Queues `member` for `(model, priority)`; true when a forward slot was free and the
    /// caller must now drive the queue (take batches until [`BatchQueues::take`] says none).
    pub fn push(&self, model: &str, priority: u8, member: Member, slots: usize) -> bool {
        let mut queues = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        let q = queues.entry((model.to_string(), priority)).or_default();
        q.waiting.push_back(member);
        self.waiting.fetch_add(1, Ordering::Relaxed);
        self.pushed.notify_waiters();
        if q.in_flight < slots.max(1) {
            q.in_flight += 1;
            return true;
        }
        false
    }

    /// The next batch of `(model, priority)`: members in arrival order while the padded
    /// batch stays within `budget` tokens (the first one always), skipping callers that
    /// stopped waiting. `None` when nothing waits, and the caller's slot is given back.
    pub fn take(&self, model: &str, priority: u8, budget: usize) -> Option<Vec<Member>> {
        let mut queues = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        let key = (model.to_string(), priority);
        let q = queues.get_mut(&key)?;
        let mut batch: Vec<Member> = Vec::new();
        let (mut rows, mut seq) = (0usize, 0usize);
        while let Some(next) = q.waiting.front() {
            if next.reply.is_closed() {
                q.waiting.pop_front();
                self.waiting.fetch_sub(1, Ordering::Relaxed);
                continue;
            }
            let (r, s) = (rows + next.input.batch, seq.max(next.input.seq_len));
            if !batch.is_empty() && r.saturating_mul(s) > budget {
                break;
            }
            (rows, seq) = (r, s);
            batch.push(q.waiting.pop_front().expect("a front member"));
            self.waiting.fetch_sub(1, Ordering::Relaxed);
        }
        if batch.is_empty() {
            q.in_flight -= 1;
            if q.in_flight == 0 {
                queues.remove(&key);
            }
            return None;
        }
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.batched.fetch_add(batch.len() as u64, Ordering::Relaxed);
        let mut sizes = self.sizes.lock().unwrap_or_else(|e| e.into_inner());
        for (count, bound) in sizes.iter_mut().zip(SIZE_BUCKETS) {
            if batch.len() as u64 <= bound {
                *count += 1;
            }
        }
        Some(batch)
    }

    /// Requests waiting in `(queue, priority)`.
    pub fn waiting_in(&self, queue: &str, priority: u8) -> usize {
        let queues = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        queues.get(&(queue.to_string(), priority)).map(|q| q.waiting.len()).unwrap_or(0)
    }

    /// Gives back a slot of `(model, priority)` whose driver stopped early (the members
    /// still queued are taken by the next request's driver, or time out).
    pub fn release(&self, model: &str, priority: u8) {
        let mut queues = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(q) = queues.get_mut(&(model.to_string(), priority)) {
            q.in_flight = q.in_flight.saturating_sub(1);
        }
    }

    /// Cumulative counts per [`SIZE_BUCKETS`] bound.
    pub fn size_buckets(&self) -> [u64; SIZE_BUCKETS.len()] {
        *self.sizes.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The members' inputs as one batch, right-padded to the longest row with token 0 and mask
/// 0 (a mask is sent whenever a row is padded or a member brought one; token types when a
/// member brought them), and each member's `(rows, seq)`.
pub fn pack(inputs: &[&ModelInput]) -> (ModelInput, Vec<(usize, usize)>) {
    let seq = inputs.iter().map(|i| i.seq_len).max().unwrap_or(0);
    let rows: usize = inputs.iter().map(|i| i.batch).sum();
    let masked = inputs.iter().any(|i| i.attention_mask.is_some() || i.seq_len < seq);
    let typed = inputs.iter().any(|i| i.token_type_ids.is_some());
    let mut ids = Vec::with_capacity(rows * seq);
    let mut mask = Vec::with_capacity(if masked { rows * seq } else { 0 });
    let mut types = Vec::with_capacity(if typed { rows * seq } else { 0 });
    for input in inputs {
        let l = input.seq_len;
        for r in 0..input.batch {
            let span = r * l..(r + 1) * l;
            ids.extend_from_slice(&input.input_ids[span.clone()]);
            ids.resize(ids.len() + seq - l, 0);
            if masked {
                match &input.attention_mask {
                    Some(m) => mask.extend_from_slice(&m[span.clone()]),
                    None => mask.resize(mask.len() + l, 1),
                }
                mask.resize(mask.len() + seq - l, 0);
            }
            if typed {
                match &input.token_type_ids {
                    Some(t) => types.extend_from_slice(&t[span]),
                    None => types.resize(types.len() + l, 0),
                }
                types.resize(types.len() + seq - l, 0);
            }
        }
    }
    let layout = inputs.iter().map(|i| (i.batch, i.seq_len)).collect();
    let packed = ModelInput {
        batch: rows,
        seq_len: seq,
        input_ids: ids,
        attention_mask: masked.then_some(mask),
        token_type_ids: typed.then_some(types),
    };
    (packed, layout)
}

/// The options of a batch: every output any member wants (all when one wants all), block
/// outputs when one wants them, the latest deadline; the first member's session and trace.
pub fn merged_options(members: &[&InferOptions], deadline: std::time::Duration) -> InferOptions {
    let first = members.first().copied().cloned().unwrap_or_default();
    let outputs = members.iter().try_fold(Vec::<String>::new(), |mut all, o| {
        for name in o.outputs.as_ref()? {
            if !all.contains(name) {
                all.push(name.clone());
            }
        }
        Some(all)
    });
    InferOptions {
        block_outputs: members.iter().any(|o| o.block_outputs),
        deadline: Some(deadline),
        outputs,
        session: first.session,
        priority: first.priority,
        trace: first.trace,
        ..InferOptions::default()
    }
}

/// The batch's outputs cut back per member: its rows, and (for every output with a sequence
/// dimension) its own length; only the outputs it asked for.
pub fn split(
    outputs: &RunOutputs,
    layout: &[(usize, usize)],
    wanted: &[Option<&Vec<String>>],
) -> Result<Vec<RunOutputs>, String> {
    let rows: usize = layout.iter().map(|(r, _)| r).sum();
    let seq = layout.iter().map(|(_, s)| *s).max().unwrap_or(0);
    let mut out: Vec<RunOutputs> = layout.iter().map(|_| RunOutputs::default()).collect();
    for (name, t) in &outputs.tensors {
        if t.shape.first() != Some(&rows) {
            return Err(format!("output {name} has shape {:?}, not {rows} rows", t.shape));
        }
        let row = t.data.len() / rows.max(1);
        // Every output but the pooled one is [rows, seq, ...].
        let sequenced = name != "pooler_output" && t.shape.len() >= 2 && t.shape[1] == seq;
        let inner = if sequenced { row / seq.max(1) } else { row };
        let mut at = 0;
        for (i, &(r, l)) in layout.iter().enumerate() {
            if wanted[i].is_some_and(|w| !w.contains(name)) {
                at += r;
                continue;
            }
            let keep = if sequenced { l * inner } else { row };
            let mut data = Vec::with_capacity(r * keep);
            for k in at..at + r {
                data.extend_from_slice(&t.data[k * row..k * row + keep]);
            }
            let mut shape = t.shape.clone();
            shape[0] = r;
            if sequenced {
                shape[1] = l;
            }
            out[i].tensors.insert(name.clone(), HostTensor { shape, data });
            at += r;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(rows: &[&[u32]]) -> ModelInput {
        ModelInput {
            batch: rows.len(),
            seq_len: rows[0].len(),
            input_ids: rows.concat(),
            attention_mask: None,
            token_type_ids: None,
        }
    }

    #[test]
    fn packing_pads_right_and_masks_the_padding() {
        let a = input(&[&[5, 6, 7]]);
        let mut b = input(&[&[8], &[9]]);
        b.token_type_ids = Some(vec![1, 1]);
        let (p, layout) = pack(&[&a, &b]);
        assert_eq!((p.batch, p.seq_len), (3, 3));
        assert_eq!(p.input_ids, [5, 6, 7, 8, 0, 0, 9, 0, 0]);
        assert_eq!(p.attention_mask.unwrap(), [1, 1, 1, 1, 0, 0, 1, 0, 0]);
        assert_eq!(p.token_type_ids.unwrap(), [0, 0, 0, 1, 0, 0, 1, 0, 0]);
        assert_eq!(layout, [(1, 3), (2, 1)]);
        // Rows of one length need no mask.
        let (p, _) = pack(&[&a, &a]);
        assert!(p.attention_mask.is_none() && p.token_type_ids.is_none());
    }

    #[test]
    fn splitting_gives_each_member_its_rows_and_length() {
        // [3 rows, 3 positions, 2 wide], element = 100 row + 10 position + k.
        let data: Vec<f32> =
            (0..3).flat_map(|r| (0..3).flat_map(move |p| (0..2).map(move |k| (100 * r + 10 * p + k) as f32))).collect();
        let mut outs = RunOutputs::default();
        outs.tensors.insert("last_hidden_state".into(), HostTensor { shape: vec![3, 3, 2], data });
        outs.tensors
            .insert("pooler_output".into(), HostTensor { shape: vec![3, 3], data: (0..9).map(|x| x as f32).collect() });
        let logits = vec!["pooler_output".to_string()];
        let parts = split(&outs, &[(1, 3), (2, 1)], &[None, Some(&logits)]).unwrap();
        let h = &parts[0].tensors["last_hidden_state"];
        assert_eq!(h.shape, [1, 3, 2]);
        assert_eq!(h.data, [0., 1., 10., 11., 20., 21.]);
        assert!(!parts[1].tensors.contains_key("last_hidden_state"));
        // The pooled output keeps its width even where it equals the sequence length.
        assert_eq!(parts[1].tensors["pooler_output"].shape, [2, 3]);
        assert_eq!(parts[1].tensors["pooler_output"].data, [3., 4., 5., 6., 7., 8.]);
        assert!(split(&outs, &[(2, 3)], &[None]).is_err());
    }

    #[test]
    fn batches_respect_the_token_budget_and_skip_callers_that_left() {
        let q = BatchQueues::default();
        let member = |len: usize| {
            let (tx, rx) = oneshot::channel();
            let ids: Vec<u32> = vec![1; len];
            let m = Member {
                input: input(&[&ids]),
                opts: InferOptions::default(),
                request_id: 0,
                deadline: Instant::now(),
                parent: Default::default(),
                reply: tx,
            };
            (m, rx)
        };
        let (m1, _r1) = member(4);
        assert!(q.push("m", 1, m1, 1), "the first request takes the free slot");
        let (m2, r2) = member(4);
        let (m3, _r3) = member(8);
        let (m4, _r4) = member(2);
        assert!(!q.push("m", 1, m2, 1));
        assert!(!q.push("m", 1, m3, 1));
        assert!(!q.push("m", 1, m4, 1));
        drop(r2);
        // 4, then 8 (3 rows x 8 = 24 > 16 stops there): the one who left is skipped.
        let b = q.take("m", 1, 16).unwrap();
        assert_eq!(b.iter().map(|m| m.input.seq_len).collect::<Vec<_>>(), [4, 8]);
        assert_eq!(q.take("m", 1, 16).unwrap().len(), 1);
        assert!(q.take("m", 1, 16).is_none(), "empty: the slot is given back");
        let (m5, _r5) = member(1);
        assert!(q.push("m", 1, m5, 1), "the slot is free again");
        assert_eq!(q.size_buckets()[0], 1);
        assert_eq!(q.waiting.load(Ordering::Relaxed), 1);
    }
}
