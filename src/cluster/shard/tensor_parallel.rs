//! A tensor-parallel member's steps ([`TpStep`]): the embedding, one sublayer's partial sum
//! (continuing the member's KV cache during generation), the combination of the members'
//! partial sums, and the head.

use burn::tensor::Tensor;

use crate::exec::RunOutputs;
use crate::model::ForwardContext;
use crate::model::activation::{decode, encode};
use crate::model::ops::last_position;

use super::{ShardActor, ShardError, StageOutput, TpOutput, TpStep};
use crate::cluster::wire::Sublayer;

impl ShardActor {
    /// Runs one step of a tensor-parallel member.
    pub(super) fn tp(&self, step: TpStep) -> Result<TpOutput, ShardError> {
        let id = self.spec.id;
        let invalid = |message: String| ShardError::Invalid { shard: id, message };
        let stage =
            self.stage.as_ref().map_err(|reason| ShardError::Escalated { shard: id, reason: reason.clone() })?;
        let cfg = &stage.config;
        let dev = &stage.device;
        let act = |bytes: &[u8]| -> Result<Tensor<3>, ShardError> {
            let x = decode::<3>(bytes, dev).map_err(|e| invalid(e.to_string()))?;
            if x.dims()[2] != cfg.hidden_size {
                return Err(invalid(format!("activation of shape {:?}, hidden size {}", x.dims(), cfg.hidden_size)));
            }
            Ok(x)
        };
        let block = |layer: usize| {
            stage
                .blocks()
                .find(|(i, _)| *i == layer)
                .map(|(_, b)| b)
                .ok_or_else(|| invalid(format!("no block {layer}")))
        };
        let bytes = |t: Tensor<3>| encode(t).map(TpOutput::Bytes).map_err(|e| invalid(e.to_string()));
        match step {
            TpStep::Embed { input, past } => {
                input.validate(cfg).map_err(|e| invalid(e.to_string()))?;
                bytes(stage.embed_at(&input, past).map_err(|e| invalid(e.to_string()))?)
            }
            TpStep::Partial { input, layer, sublayer, x, kv } => {
                input.validate(cfg).map_err(|e| invalid(e.to_string()))?;
                let b = block(layer)?;
                let x = act(&x)?;
                let [bb, l, _] = x.dims();
                if [bb, l] != [input.batch, input.seq_len] {
                    return Err(invalid(format!("activation of shape {:?} for a {bb}x{l} input", x.dims())));
                }
                let past = kv.map(|k| k.past).unwrap_or(0);
                let ctx = || ForwardContext::continuing(cfg, &input, past, dev);
                match (sublayer, kv) {
                    (Sublayer::Attention, None) => bytes(b.attention_partial(x, &ctx())),
                    (Sublayer::Attention, Some(k)) => {
                        // One block of the member's cache: the first block of a step from
                        // position 0 starts the sequence afresh.
                        let n = stage.spec.layers.clone().position(|i| i == layer).unwrap_or(0);
                        let key = self.caches.key(id, k.seq);
                        let fresh = k.past == 0 && n == 0;
                        let mut cache = match self.caches.store.take(&key) {
                            Some(c) if !fresh => c,
                            _ if k.past == 0 => stage.new_cache(),
                            _ => return Err(ShardError::CacheMiss { shard: id, seq: k.seq, past: k.past }),
                        };
                        let kv_layer = &mut cache.layers[n];
                        if kv_layer.positions() < k.past {
                            return Err(ShardError::CacheMiss { shard: id, seq: k.seq, past: k.past });
                        }
                        kv_layer.truncate(k.past);
                        let out = b.attention_partial_kv(x, &ctx(), Some(kv_layer));
                        self.caches.store.put(key, cache);
                        bytes(out)
                    }
                    (Sublayer::Mlp, _) => bytes(b.mlp_partial(x)),
                }
            }
            TpStep::Combine { layer, sublayer, x, partials } => {
                let b = block(layer)?;
                let x = act(&x)?;
                let mut sum: Option<Tensor<3>> = None;
                for p in &partials {
                    let p = act(p)?;
                    if p.dims() != x.dims() {
                        return Err(invalid(format!("partial of shape {:?}, expected {:?}", p.dims(), x.dims())));
                    }
                    sum = Some(match sum {
                        None => p,
                        Some(s) => s + p,
                    });
                }
                let sum = sum.ok_or_else(|| invalid("no partial sums to combine".into()))?;
                match sublayer {
                    Sublayer::Attention => bytes(b.attention_combine(x, sum)),
                    Sublayer::Mlp => bytes(b.mlp_combine(x, sum)),
                }
            }
            TpStep::Finish { x, last_only } => {
                if !stage.spec.head {
                    return Ok(TpOutput::Stage(StageOutput::Hidden { bytes: x, blocks: Vec::new() }));
                }
                let x = if last_only { last_position(act(&x)?) } else { act(&x)? };
                let head = stage.head(x).map_err(|e| invalid(e.to_string()))?;
                let outputs = RunOutputs::from_head(head).map_err(|e| invalid(e.to_string()))?;
                Ok(TpOutput::Stage(StageOutput::Final(outputs)))
            }
        }
    }
}
