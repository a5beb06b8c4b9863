//! What a [`ShardActor`](super::shard::ShardActor) answers: [`Forward`] for a whole stage,
//! [`TpStep`] for a tensor-parallel member, their outputs, and [`ShardError`].

use std::sync::Arc;

use actix::Message;

use crate::exec::{HostTensor, RunOutputs};
use crate::model::ModelInput;

use super::wire::{KvStep, Sublayer};

/// Why a shard could not answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShardError {
    /// The request does not fit this shard (input, activation shape, missing part).
    #[error("shard {shard}: {message}")]
    Invalid {
        /// The shard id.
        shard: usize,
        /// What is wrong.
        message: String,
    },
    /// Compute panicked; the actor is being restarted.
    #[error("shard {shard}: compute panicked ({message}); restarting")]
    Panicked {
        /// The shard id.
        shard: usize,
        /// The panic message.
        message: String,
    },
    /// A generation step continues a sequence whose cache this replica does not hold (never
    /// made here, dropped for the budget, expired): the sequence's holder replays it.
    #[error("shard {shard}: no KV cache of sequence {seq} at position {past}")]
    CacheMiss {
        /// The shard id.
        shard: usize,
        /// The sequence.
        seq: u64,
        /// The position the step continues.
        past: usize,
    },
    /// The restart limit was exceeded (or the weights could not be reloaded).
    #[error("shard {shard}: failed, escalated to the node: {reason}")]
    Escalated {
        /// The shard id.
        shard: usize,
        /// Why.
        reason: String,
    },
}

/// Run the shard's part of one request.
///
/// The first stage takes `hidden: None` and embeds `input`; later stages take the previous
/// stage's activation bytes. Every stage needs `input` for the attention mask.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<StageOutput, ShardError>")]
pub struct Forward {
    /// The request (token ids, mask, token types).
    pub input: Arc<ModelInput>,
    /// The previous stage's activation, as bytes.
    pub hidden: Option<Vec<u8>>,
    /// Also return each block's output.
    pub block_outputs: bool,
    /// A generation step: continue the sequence's cache at this replica.
    pub kv: Option<KvStep>,
    /// A batch of decode steps, one per input row, each continuing its sequence's cache.
    pub kv_batch: Vec<KvStep>,
}

/// How many requests a message to a shard carries, as the load figures count them: the rows
/// of its input (a dynamic batch of requests, a batch of sequences' decode steps), one for a
/// step that carries none.
pub trait Carries {
    /// Requests in this message.
    fn requests(&self) -> usize;
}

impl Carries for Forward {
    fn requests(&self) -> usize {
        if self.kv_batch.is_empty() { self.input.batch.max(1) } else { self.kv_batch.len() }
    }
}

impl Carries for TpStep {
    fn requests(&self) -> usize {
        match self {
            TpStep::Embed { input, .. } | TpStep::Partial { input, .. } => input.batch.max(1),
            TpStep::Combine { .. } | TpStep::Finish { .. } => 1,
        }
    }
}

/// What a stage returns.
#[derive(Debug, Clone, PartialEq)]
pub enum StageOutput {
    /// The activation for the next stage, plus block outputs when asked.
    Hidden {
        /// Activation bytes.
        bytes: Vec<u8>,
        /// `(block index, output)`.
        blocks: Vec<(usize, HostTensor)>,
    },
    /// The model's outputs (last stage).
    Final(RunOutputs),
}

/// One step of a tensor-parallel stage. The group's lead (rank 0) embeds, combines and
/// finishes; every member computes partial sums. Activations travel as bytes.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<TpOutput, ShardError>")]
pub enum TpStep {
    /// Embed the input (lead of a first stage), its first token at position `past`.
    Embed {
        /// The request.
        input: Arc<ModelInput>,
        /// Positions before it (a generation step); 0 otherwise.
        past: usize,
    },
    /// This member's partial sum of `sublayer` of block `layer` on activation `x`.
    Partial {
        /// The request (for the attention mask).
        input: Arc<ModelInput>,
        /// Model-wide block index.
        layer: usize,
        /// Which sublayer.
        sublayer: Sublayer,
        /// The sublayer's input activation.
        x: Vec<u8>,
        /// A generation step: attention continues this member's cache of the sequence.
        kv: Option<KvStep>,
    },
    /// Residual (and post-norm) after the group's partials are summed (the all-reduce).
    Combine {
        /// Model-wide block index.
        layer: usize,
        /// Which sublayer.
        sublayer: Sublayer,
        /// The sublayer's input activation.
        x: Vec<u8>,
        /// Every member's partial sum.
        partials: Vec<Vec<u8>>,
    },
    /// The stage's output: the head applied when the stage holds it.
    Finish {
        /// The last block's output.
        x: Vec<u8>,
        /// Apply the head to the last position only (a generation step's next-token logits).
        last_only: bool,
    },
}

/// What a [`TpStep`] returns.
#[derive(Debug, Clone, PartialEq)]
pub enum TpOutput {
    /// An activation or partial sum, as bytes.
    Bytes(Vec<u8>),
    /// The stage's output.
    Stage(StageOutput),
}

/// Runs one forward of `tokens` tokens through everything the replica holds, the answer
/// dropped, and marks it warm: a new replica gets this before it joins the routes. Answers
/// how long the forward took.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Result<std::time::Duration, ShardError>")]
pub struct WarmUp {
    /// Tokens of the forward.
    pub tokens: usize,
}

/// Makes the shard's compute panic, to exercise supervision (fault-injection tests).
#[doc(hidden)]
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Result<StageOutput, ShardError>")]
pub struct InjectPanic;

#[cfg(test)]
mod tests {
    use super::*;

    fn forward(batch: usize, kv_rows: usize) -> Forward {
        let input =
            ModelInput { batch, seq_len: 1, input_ids: vec![1; batch], attention_mask: None, token_type_ids: None };
        let step = KvStep { seq: 0, past: 3, all_logits: false };
        Forward { input: Arc::new(input), hidden: None, block_outputs: false, kv: None, kv_batch: vec![step; kv_rows] }
    }

    #[test]
    fn a_message_carries_its_rows_as_requests() {
        assert_eq!(forward(1, 0).requests(), 1);
        assert_eq!(forward(5, 0).requests(), 5, "a dynamic batch of five requests");
        assert_eq!(forward(4, 4).requests(), 4, "a batch of four sequences' decode steps");
        let input = Arc::new(ModelInput::single(&[1, 2, 3]));
        assert_eq!(TpStep::Embed { input, past: 0 }.requests(), 1);
        assert_eq!(TpStep::Finish { x: Vec::new(), last_only: true }.requests(), 1);
    }
}
