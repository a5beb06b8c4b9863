//! [`KvCache`]: one sequence's keys and values at one stage, so that a generation computes
//! its prompt once (prefill) and each later step only its newest position. Each block of the
//! stage keeps a [`LayerKv`]: `[batch, kv_heads, positions, head_dim]` keys (after RoPE) and
//! values, for the heads of its own tensor slice only. Sequences keep caches of their own, so
//! the decode steps of several sequences batch by padding their caches to the longest and
//! masking the padding.

use burn::tensor::Tensor;

/// One block's cached keys and values for one sequence.
#[derive(Debug, Clone, Default)]
pub struct LayerKv {
    k: Option<Tensor<4>>,
    v: Option<Tensor<4>>,
}

impl LayerKv {
    /// Appends this step's keys and values (`[b, kv_heads, new, d]`) and returns all of them.
    pub fn append(&mut self, k: Tensor<4>, v: Tensor<4>) -> (Tensor<4>, Tensor<4>) {
        let k = match self.k.take() {
            Some(past) => Tensor::cat(vec![past, k], 2),
            None => k,
        };
        let v = match self.v.take() {
            Some(past) => Tensor::cat(vec![past, v], 2),
            None => v,
        };
        self.k = Some(k.clone());
        self.v = Some(v.clone());
        (k, v)
    }

    /// Positions held.
    pub fn positions(&self) -> usize {
        self.k.as_ref().map(|k| k.dims()[2]).unwrap_or(0)
    }

    /// Keeps the first `positions` (a step retried after it was applied once is computed
    /// again from there, so it is never applied twice).
    pub fn truncate(&mut self, positions: usize) {
        if positions >= self.positions() {
            return;
        }
        if positions == 0 {
            *self = LayerKv::default();
            return;
        }
        self.k = self.k.take().map(|k| k.narrow(2, 0, positions));
        self.v = self.v.take().map(|v| v.narrow(2, 0, positions));
    }

    /// The caches of a batch of sequences as one: row `i` holds `rows[i]`'s positions, then
    /// zeros up to `len` (the longest; the decode context masks them), so that a block
    /// appends the batch's new keys and values after position `len` for every row.
    pub fn padded(rows: &[&LayerKv], len: usize) -> LayerKv {
        let pad = |t: &Option<Tensor<4>>| -> Option<Tensor<4>> {
            let t = t.clone()?;
            let [b, h, p, d] = t.dims();
            Some(if p < len {
                Tensor::cat(vec![t.clone(), Tensor::zeros([b, h, len - p, d], &t.device())], 2)
            } else {
                t
            })
        };
        let k: Option<Vec<Tensor<4>>> = rows.iter().map(|r| pad(&r.k)).collect();
        let v: Option<Vec<Tensor<4>>> = rows.iter().map(|r| pad(&r.v)).collect();
        LayerKv { k: k.map(|k| Tensor::cat(k, 0)), v: v.map(|v| Tensor::cat(v, 0)) }
    }

    /// Row `row` of a batch's cache, its first `len` positions (a sequence prefilled in a
    /// padded batch keeps only its own).
    pub fn row(&self, row: usize, len: usize) -> LayerKv {
        let cut = |t: &Option<Tensor<4>>| t.as_ref().map(|t| t.clone().narrow(0, row, 1).narrow(2, 0, len));
        LayerKv { k: cut(&self.k), v: cut(&self.v) }
    }

    /// The keys and values of the newest position (`[b, kv_heads, 1, d]`), if any.
    pub fn newest(&self) -> Option<(Tensor<4>, Tensor<4>)> {
        let (k, v) = (self.k.as_ref()?, self.v.as_ref()?);
        let p = k.dims()[2];
        Some((k.clone().narrow(2, p - 1, 1), v.clone().narrow(2, p - 1, 1)))
    }

    /// Bytes held (f32 keys and values).
    pub fn bytes(&self) -> u64 {
        let n = |t: &Option<Tensor<4>>| t.as_ref().map(|t| t.dims().iter().product::<usize>()).unwrap_or(0);
        4 * (n(&self.k) + n(&self.v)) as u64
    }
}

/// One sequence's cache at one stage: a [`LayerKv`] per block, in the stage's block order.
#[derive(Debug, Clone, Default)]
pub struct KvCache {
    /// Per block of the stage.
    pub layers: Vec<LayerKv>,
}

impl KvCache {
    /// An empty cache for a stage of `blocks` blocks.
    pub fn new(blocks: usize) -> KvCache {
        KvCache { layers: vec![LayerKv::default(); blocks] }
    }

    /// Positions held (those of the first block; every block holds as many).
    pub fn positions(&self) -> usize {
        self.layers.first().map(LayerKv::positions).unwrap_or(0)
    }

    /// Bytes held.
    pub fn bytes(&self) -> u64 {
        self.layers.iter().map(LayerKv::bytes).sum()
    }

    /// Row `row` of a batch's cache, its first `len` positions, in every block.
    pub fn row(&self, row: usize, len: usize) -> KvCache {
        KvCache { layers: self.layers.iter().map(|l| l.row(row, len)).collect() }
    }

    /// Keeps the first `positions` of every block.
    pub fn truncate(&mut self, positions: usize) {
        for l in &mut self.layers {
            l.truncate(positions);
        }
    }
}
