//! [`Pooling`]: how token states become one embedding, as sentence-transformers configures it
//! in a model folder: `modules.json` (a Pooling module, and Normalize when listed),
//! `1_Pooling/config.json` (mean, CLS or max) and `sentence_bert_config.json`
//! (`max_seq_length`, where inputs are truncated). A folder without them pools by mean and
//! does not normalise.

use std::path::Path;

use serde_json::Value;

use super::error::GenerateError;
use super::json_file::read_json;

/// Largest config file read.
const MAX_BYTES: u64 = 1 << 20;

/// How token states are pooled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolingMode {
    /// Mean over the tokens.
    Mean,
    /// The first token's state.
    Cls,
    /// The maximum of each dimension over the tokens.
    Max,
}

/// A model's pooling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pooling {
    /// The mode.
    pub mode: PoolingMode,
    /// L2-normalise the pooled vector.
    pub normalize: bool,
    /// Inputs longer than this are cut to it.
    pub max_seq_length: Option<usize>,
}

impl Default for Pooling {
    fn default() -> Self {
        Pooling { mode: PoolingMode::Mean, normalize: false, max_seq_length: None }
    }
}

impl Pooling {
    /// The pooling the model folder `dir` configures.
    pub fn load(dir: &Path) -> Result<Pooling, GenerateError> {
        let mut p = Pooling::default();
        let modules = read_json(&dir.join("modules.json"), MAX_BYTES)?;
        let listed = |kind: &str| {
            modules
                .as_ref()
                .and_then(Value::as_array)
                .and_then(|m| m.iter().find(|x| x["type"].as_str().is_some_and(|t| t.ends_with(kind))).cloned())
        };
        if let Some(pool) = listed(".Pooling") {
            let folder = pool["path"].as_str().unwrap_or("1_Pooling");
            if folder.split('/').any(|c| c == "..") {
                return Err(GenerateError::File {
                    path: dir.join("modules.json"),
                    message: "a path leaves the folder".into(),
                });
            }
            if let Some(cfg) = read_json(&dir.join(folder).join("config.json"), MAX_BYTES)? {
                let on = |k: &str| cfg[k].as_bool().unwrap_or(false);
                p.mode = if on("pooling_mode_cls_token") {
                    PoolingMode::Cls
                } else if on("pooling_mode_max_tokens") {
                    PoolingMode::Max
                } else {
                    PoolingMode::Mean
                };
            }
        }
        p.normalize = listed(".Normalize").is_some();
        if let Some(cfg) = read_json(&dir.join("sentence_bert_config.json"), MAX_BYTES)? {
            p.max_seq_length = cfg["max_seq_length"].as_u64().map(|n| n as usize).filter(|&n| n > 0);
        }
        Ok(p)
    }

    /// The most tokens an input may keep on a model of `positions` positions.
    pub fn limit(&self, positions: usize) -> usize {
        self.max_seq_length.unwrap_or(positions).min(positions)
    }

    /// Cuts a tokenized text to `limit` tokens as sentence-transformers does: the closing
    /// special token (the last id) stays.
    pub fn truncate_text(ids: &mut Vec<u32>, limit: usize) {
        if ids.len() > limit && limit > 0 {
            let last = ids[ids.len() - 1];
            ids.truncate(limit - 1);
            ids.push(last);
        }
    }

    /// Pools `states` (`seq × width`, row-major) into one vector.
    pub fn pool(&self, states: &[f32], seq: usize, width: usize) -> Vec<f32> {
        let row = |t: usize| &states[t * width..(t + 1) * width];
        let mut v = match self.mode {
            PoolingMode::Cls => row(0).to_vec(),
            PoolingMode::Mean => {
                let mut acc = vec![0.0f32; width];
                for t in 0..seq {
                    for (a, x) in acc.iter_mut().zip(row(t)) {
                        *a += x;
                    }
                }
                acc.iter_mut().for_each(|a| *a /= seq.max(1) as f32);
                acc
            }
            PoolingMode::Max => {
                let mut acc = vec![f32::NEG_INFINITY; width];
                for t in 0..seq {
                    for (a, x) in acc.iter_mut().zip(row(t)) {
                        *a = a.max(*x);
                    }
                }
                acc
            }
        };
        if self.normalize {
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
            v.iter_mut().for_each(|x| *x /= norm);
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_keeps_the_closing_token() {
        let mut ids = vec![101, 1, 2, 3, 4, 102];
        Pooling::truncate_text(&mut ids, 4);
        assert_eq!(ids, [101, 1, 2, 102]);
        let mut short = vec![101, 102];
        Pooling::truncate_text(&mut short, 4);
        assert_eq!(short, [101, 102]);
        let p = Pooling { max_seq_length: Some(256), ..Pooling::default() };
        assert_eq!((p.limit(512), p.limit(128), Pooling::default().limit(64)), (256, 128, 64));
    }

    #[test]
    fn mean_cls_max_and_normalisation() {
        let states = [1.0, 2.0, 3.0, 6.0];
        let p = |mode, normalize| Pooling { mode, normalize, max_seq_length: None };
        assert_eq!(p(PoolingMode::Mean, false).pool(&states, 2, 2), vec![2.0, 4.0]);
        assert_eq!(p(PoolingMode::Cls, false).pool(&states, 2, 2), vec![1.0, 2.0]);
        assert_eq!(p(PoolingMode::Max, false).pool(&states, 2, 2), vec![3.0, 6.0]);
        let n = p(PoolingMode::Mean, true).pool(&states, 2, 2);
        assert!((n[0] * n[0] + n[1] * n[1] - 1.0).abs() < 1e-6);
    }

    #[test]
    fn a_folder_without_sentence_transformers_files_pools_by_mean() {
        let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bert_tiny");
        assert_eq!(Pooling::load(&dir).unwrap(), Pooling::default());
    }
}
