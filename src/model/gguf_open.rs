//! [`Checkpoint::open_gguf`]: a GGUF model (one file, a split set, or a folder holding one)
//! read into the same [`Checkpoint`] as a `transformers` folder: the family found by the
//! file's `general.architecture`, its config from llama.cpp's metadata keys, its tensors
//! under the names `transformers` gives them, in the shapes `transformers` gives them
//! (`[out, in]`: GGUF lists a matrix's dimensions innermost first), each with its stored
//! type. Only headers are read.
//!
//! Written here rather than in `checkpoint.rs` because it detects the family through the
//! registry, which imports the families, which import `checkpoint.rs`.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use mlmf_gguf::GgufModel;
use mlmf_quant::QuantType;

use super::checkpoint::{Checkpoint, RowOrder, StoredDtype, TensorEntry, WeightFile};
use super::error::LoadError;
use super::gguf_meta::GgufMeta;
use super::registry::FAMILIES;

/// Whether `path` names a GGUF model rather than a `transformers` folder: a file (only a
/// GGUF model is one file; a file that is not one is refused by the GGUF reader, naming its
/// bad magic), or a folder without `config.json` that holds a `.gguf` file.
pub fn is_gguf_model(path: &Path) -> bool {
    if path.is_file() {
        return true;
    }
    if path.join("config.json").is_file() {
        return false;
    }
    std::fs::read_dir(path).is_ok_and(|entries| {
        entries.flatten().any(|e| e.path().extension().is_some_and(|x| x.eq_ignore_ascii_case("gguf")))
    })
}

impl Checkpoint {
    /// Reads a GGUF model's headers: its config and tensor table, nothing of the weights.
    ///
    /// ```no_run
    /// let ckpt = mlmf::model::Checkpoint::open("SmolLM2-135M-Instruct.Q4_1.gguf".as_ref()).unwrap();
    /// assert_eq!(ckpt.config.num_layers, 30);
    /// ```
    pub fn open_gguf(path: &Path) -> Result<Checkpoint, LoadError> {
        let model = GgufModel::open(path)?;
        let arch = model.architecture()?;
        let family = FAMILIES.iter().copied().find(|f| f.gguf_architectures().contains(&arch)).ok_or_else(|| {
            LoadError::UnknownArchitecture {
                path: model.path().to_path_buf(),
                name: arch.to_string(),
                supported: FAMILIES.iter().flat_map(|f| f.gguf_architectures()).copied().collect::<Vec<_>>().join(", "),
            }
        })?;
        let meta = GgufMeta::new(&model, arch);
        let config = family.read_gguf_config(&meta)?;
        config.validate(model.path(), family.heads_divide_hidden(), family.token_types())?;
        let mut tensors = BTreeMap::new();
        for (name, info) in &model.tensors {
            let (hf, row_order) =
                family.gguf_tensor(&config, name).unwrap_or_else(|| (name.to_string(), RowOrder::Stored));
            let shape: Vec<usize> =
                info.dims.iter().rev().map(|&d| usize::try_from(d)).collect::<Result<_, _>>().map_err(|_| {
                    LoadError::config(model.path(), format!("tensor {name:?}: a dimension is too large"))
                })?;
            let dtype = match info.ty {
                QuantType::F32 => StoredDtype::F32,
                QuantType::F16 => StoredDtype::F16,
                QuantType::BF16 => StoredDtype::BF16,
                q => StoredDtype::Quant(q),
            };
            let entry = TensorEntry {
                name: hf.clone(),
                file: info.file,
                dtype,
                shape,
                offset: info.offset,
                bytes: info.bytes,
                row_order,
            };
            if tensors.insert(hf.clone(), entry).is_some() {
                return Err(LoadError::config(
                    model.path(),
                    format!("two tensors are both {hf:?} (the second is {name:?})"),
                ));
            }
        }
        let files = model
            .files
            .iter()
            .map(|f| WeightFile { path: f.path.clone(), len: f.len, gguf_data_start: Some(f.data_offset) })
            .collect();
        Ok(Checkpoint { dir: path.to_path_buf(), config, files, tensors, gguf: Some(Arc::new(model)) })
    }
}
