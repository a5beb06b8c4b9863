//! [`GgufModel`]: a model in one GGUF file or a split set, its tensors by name.

use std::collections::BTreeMap;
use std::path::Path;

use crate::split::{check_parts, find_model, read_parts};
use crate::{GgufError, GgufFile, MetaValue, TensorInfo};

/// A model: one file, or every part of a split set (`NAME-00001-of-0000N.gguf`, keys
/// `split.no`, `split.count`, `split.tensors.count`).
#[derive(Debug, Clone)]
pub struct GgufModel {
    /// The files, in part order; never empty. The first holds the model's metadata.
    pub files: Vec<GgufFile>,
    /// Every tensor of every part, by name; [`TensorInfo::file`] indexes [`GgufModel::files`].
    pub tensors: BTreeMap<String, TensorInfo>,
}

impl GgufModel {
    /// Opens a model from `path`: a `.gguf` file, any part of a split set (the set opens
    /// whole), or a directory holding exactly one GGUF model (one file, or one split set;
    /// `mmproj*` projector files beside it are passed over). Reads headers only.
    ///
    /// ```no_run
    /// let model = mlmf_gguf::GgufModel::open("models/qwen3".as_ref())?;
    /// println!("{}: {} tensors", model.architecture()?, model.tensors.len());
    /// # Ok::<(), mlmf_gguf::GgufError>(())
    /// ```
    pub fn open(path: &Path) -> Result<GgufModel, GgufError> {
        let meta = std::fs::metadata(path).map_err(|source| GgufError::Io { path: path.to_path_buf(), source })?;
        let file = if meta.is_dir() { find_model(path)? } else { path.to_path_buf() };
        let opened = GgufFile::read(&file)?;
        GgufModel::from_files(read_parts(opened)?)
    }

    /// A model from headers already read: one file, or the parts of a split set in order
    /// (checked to agree, as [`GgufModel::open`] checks them). Sets each tensor's `file`.
    pub fn from_files(mut files: Vec<GgufFile>) -> Result<GgufModel, GgufError> {
        if files.is_empty() {
            return Err(GgufError::Split { path: Default::default(), message: "a model needs a file".to_string() });
        }
        check_parts(&files)?;
        let mut tensors: BTreeMap<String, TensorInfo> = BTreeMap::new();
        for (index, file) in files.iter_mut().enumerate() {
            for tensor in &mut file.tensors {
                tensor.file = index;
                if let Some(earlier) = tensors.get(&tensor.name) {
                    return Err(GgufError::Split {
                        path: file.path.clone(),
                        message: format!("tensor `{}` is in this part and in part {}", tensor.name, earlier.file + 1),
                    });
                }
                tensors.insert(tensor.name.clone(), tensor.clone());
            }
        }
        Ok(GgufModel { files, tensors })
    }

    /// The first file: the one holding the model's metadata.
    fn first(&self) -> &GgufFile {
        // `from_files` refuses an empty list and nothing else builds a model.
        &self.files[0]
    }

    /// The model's metadata (the first file's).
    pub fn metadata(&self) -> &BTreeMap<String, MetaValue> {
        &self.first().metadata
    }

    /// The first file's path.
    pub fn path(&self) -> &Path {
        &self.first().path
    }

    /// The tensor named `name`.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.get(name)
    }

    /// The file that holds `tensor`'s data.
    pub fn file_of(&self, tensor: &TensorInfo) -> Option<&GgufFile> {
        self.files.get(tensor.file)
    }

    /// `general.architecture` (`llama`, `qwen3`, ...).
    pub fn architecture(&self) -> Result<&str, GgufError> {
        self.first().architecture()
    }

    /// A string value; `Ok(None)` when absent, `BadMetadata` naming the key for another type.
    pub fn get_str(&self, key: &str) -> Result<Option<&str>, GgufError> {
        self.first().get_str(key)
    }

    /// An integer value of any type that is not negative.
    pub fn get_u64(&self, key: &str) -> Result<Option<u64>, GgufError> {
        self.first().get_u64(key)
    }

    /// A float value, or an integer one as a float.
    pub fn get_f64(&self, key: &str) -> Result<Option<f64>, GgufError> {
        self.first().get_f64(key)
    }

    /// A boolean value.
    pub fn get_bool(&self, key: &str) -> Result<Option<bool>, GgufError> {
        self.first().get_bool(key)
    }

    /// An array of strings.
    pub fn get_str_array(&self, key: &str) -> Result<Option<&[String]>, GgufError> {
        self.first().get_str_array(key)
    }

    /// An array of integers of any width.
    pub fn get_int_array(&self, key: &str) -> Result<Option<&[i64]>, GgufError> {
        self.first().get_int_array(key)
    }

    /// An array of floats of either width.
    pub fn get_float_array(&self, key: &str) -> Result<Option<&[f64]>, GgufError> {
        self.first().get_float_array(key)
    }

    /// An array of booleans.
    pub fn get_bool_array(&self, key: &str) -> Result<Option<&[bool]>, GgufError> {
        self.first().get_bool_array(key)
    }

    /// Bytes of all tensors' data.
    pub fn total_tensor_bytes(&self) -> u64 {
        self.tensors.values().map(|t| t.bytes).fold(0, u64::saturating_add)
    }
}

/// Whether the file at `path` starts with the GGUF magic (`false` when it cannot be read).
pub fn is_gguf(path: &Path) -> bool {
    use std::io::Read;
    let mut magic = [0; 4];
    std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut magic)).is_ok() && &magic == b"GGUF"
}

#[cfg(test)]
mod tests;
