//! [`Sampler`]: the next token from the last position's logits, as `transformers` chooses it:
//! the repetition penalty first (CTRL's: a seen token's logit divided by the penalty when
//! positive, multiplied when negative), then greedy (`temperature` 0, the first maximum) or
//! temperature, top-k and top-p (nucleus) sampling. A seeded sampler draws from its own
//! generator, so the same seed gives the same tokens whatever else runs; its state lives with
//! the request.

use super::error::GenerateError;

/// How the next token is chosen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplingParams {
    /// 0 is greedy; otherwise logits are divided by it.
    pub temperature: f32,
    /// Keep only the `top_k` most likely tokens (0: all).
    pub top_k: usize,
    /// Keep the fewest most likely tokens whose probabilities sum to at least `top_p` (1: all).
    pub top_p: f32,
    /// Penalty on tokens already in the sequence (1: none).
    pub repetition_penalty: f32,
    /// Seed of the sampler's generator; a random one when absent.
    pub seed: Option<u64>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams { temperature: 1.0, top_k: 0, top_p: 1.0, repetition_penalty: 1.0, seed: None }
    }
}

impl SamplingParams {
    /// Greedy decoding.
    pub fn greedy() -> SamplingParams {
        SamplingParams { temperature: 0.0, ..SamplingParams::default() }
    }

    /// Checks every field's range; the error names the field.
    pub fn validate(&self) -> Result<(), GenerateError> {
        let bad = |field, message: &str| Err(GenerateError::Invalid { field, message: message.into() });
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return bad("temperature", "must be a finite number of at least 0");
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad("top_p", "must be in (0, 1]");
        }
        if !(self.repetition_penalty.is_finite() && self.repetition_penalty > 0.0) {
            return bad("repetition_penalty", "must be a finite number above 0");
        }
        Ok(())
    }
}

/// A request's sampler.
#[derive(Debug, Clone)]
pub struct Sampler {
    params: SamplingParams,
    rng: fastrand::Rng,
}

impl Sampler {
    /// A sampler for `params`.
    pub fn new(params: SamplingParams) -> Sampler {
        let rng = match params.seed {
            Some(s) => fastrand::Rng::with_seed(s),
            None => fastrand::Rng::new(),
        };
        Sampler { params, rng }
    }

    /// The next token after `history` (prompt and generated ids) given `logits`.
    pub fn next(&mut self, logits: &[f32], history: &[u32]) -> u32 {
        let mut l = logits.to_vec();
        let p = self.params.repetition_penalty;
        if p != 1.0 {
            let mut seen = vec![false; l.len()];
            for &t in history {
                if let Some(s) = seen.get_mut(t as usize)
                    && !*s
                {
                    *s = true;
                    let x = &mut l[t as usize];
                    *x = if *x < 0.0 { *x * p } else { *x / p };
                }
            }
        }
        if self.params.temperature == 0.0 {
            return argmax(&l);
        }
        for x in &mut l {
            *x /= self.params.temperature;
        }
        // Candidates, most likely first (ties: lower id first, as a stable sort keeps them).
        let mut order: Vec<usize> = (0..l.len()).collect();
        order.sort_by(|&a, &b| l[b].total_cmp(&l[a]));
        if self.params.top_k > 0 {
            order.truncate(self.params.top_k.max(1));
        }
        let max = l[order[0]];
        let weights: Vec<f64> = order.iter().map(|&i| ((l[i] - max) as f64).exp()).collect();
        let total: f64 = weights.iter().sum();
        let mut keep = weights.len();
        if self.params.top_p < 1.0 {
            let mut acc = 0.0;
            for (n, w) in weights.iter().enumerate() {
                acc += w / total;
                if acc >= self.params.top_p as f64 {
                    keep = n + 1;
                    break;
                }
            }
        }
        let kept: f64 = weights[..keep].iter().sum();
        let mut r = self.rng.f64() * kept;
        for (n, w) in weights[..keep].iter().enumerate() {
            if r < *w {
                return order[n] as u32;
            }
            r -= w;
        }
        order[keep - 1] as u32
    }
}

/// The index of the first largest value (0 for an empty slice).
pub fn argmax(v: &[f32]) -> u32 {
    let mut best = 0;
    for (i, x) in v.iter().enumerate() {
        if *x > v[best] {
            best = i;
        }
    }
    best as u32
}

/// `log_softmax(logits)`, computed in f64.
pub fn log_softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let sum: f64 = logits.iter().map(|&x| (x as f64 - max).exp()).sum();
    let log_sum = sum.ln() + max;
    logits.iter().map(|&x| (x as f64 - log_sum) as f32).collect()
}

/// The `k` most likely tokens and their log-probabilities, most likely first.
pub fn top_logprobs(logprobs: &[f32], k: usize) -> Vec<(u32, f32)> {
    let mut order: Vec<usize> = (0..logprobs.len()).collect();
    order.sort_by(|&a, &b| logprobs[b].total_cmp(&logprobs[a]));
    order.into_iter().take(k).map(|i| (i as u32, logprobs[i])).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_the_first_maximum() {
        let mut s = Sampler::new(SamplingParams::greedy());
        assert_eq!(s.next(&[0.1, 3.0, 3.0, -1.0], &[]), 1);
    }

    #[test]
    fn the_repetition_penalty_divides_positive_and_multiplies_negative_logits() {
        let params = SamplingParams { repetition_penalty: 2.0, ..SamplingParams::greedy() };
        // Token 0 (logit 3) was seen: 3 / 2 = 1.5 < 2, so token 1 wins.
        assert_eq!(Sampler::new(params).next(&[3.0, 2.0, -5.0], &[0, 0]), 1);
        // Token 2 (logit -1) seen: -2 < -1.5.
        assert_eq!(Sampler::new(params).next(&[-3.0, -1.5, -1.0], &[2]), 1);
    }

    #[test]
    fn a_seed_gives_the_same_tokens_and_top_k_one_is_greedy() {
        let logits: Vec<f32> = (0..50).map(|i| ((i * 37) % 11) as f32 * 0.3).collect();
        let params = SamplingParams { temperature: 0.9, top_p: 0.9, seed: Some(7), ..SamplingParams::default() };
        let run = |p| {
            let mut s = Sampler::new(p);
            (0..20).map(|_| s.next(&logits, &[])).collect::<Vec<_>>()
        };
        assert_eq!(run(params), run(params));
        assert_ne!(run(params), run(SamplingParams { seed: Some(8), ..params }));
        let top1 = SamplingParams { top_k: 1, ..params };
        assert!(run(top1).iter().all(|&t| t == argmax(&logits)));
    }

    #[test]
    fn top_p_keeps_only_the_nucleus() {
        // Probabilities about 0.64, 0.24, 0.09, 0.03: top_p 0.7 keeps the first two only.
        let logits = [3.0, 2.0, 1.0, 0.0];
        let mut s = Sampler::new(SamplingParams { top_p: 0.7, seed: Some(1), ..SamplingParams::default() });
        let drawn: std::collections::BTreeSet<u32> = (0..500).map(|_| s.next(&logits, &[])).collect();
        assert_eq!(drawn.into_iter().collect::<Vec<_>>(), vec![0, 1]);
    }

    #[test]
    fn out_of_range_fields_are_named() {
        let e = SamplingParams { temperature: -1.0, ..SamplingParams::default() }.validate().unwrap_err();
        assert!(e.to_string().starts_with("temperature"), "{e}");
        let e = SamplingParams { top_p: 0.0, ..SamplingParams::default() }.validate().unwrap_err();
        assert!(e.to_string().starts_with("top_p"), "{e}");
    }

    #[test]
    fn log_softmax_sums_to_one() {
        let lp = log_softmax(&[1.0, 2.0, 3.0]);
        let total: f64 = lp.iter().map(|&x| (x as f64).exp()).sum();
        assert!((total - 1.0).abs() < 1e-6);
        assert_eq!(top_logprobs(&lp, 2).iter().map(|t| t.0).collect::<Vec<_>>(), vec![2, 1]);
    }
}
