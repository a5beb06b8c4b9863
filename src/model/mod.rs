//! Checkpoints and architectures: reading HuggingFace `config.json` + safetensors, and
//! running any stage (embeddings, a range of blocks, head, or a tensor-parallel slice) on burn.

pub mod activation;
mod bert;
pub mod checkpoint;
pub mod config;
pub mod config_json;
pub mod context;
mod decoder_head;
pub mod embedding_table;
pub mod error;
pub mod family;
pub mod gguf_meta;
mod gguf_names;
pub mod gguf_open;
mod gpt2;
pub mod input;
pub mod kv_cache;
pub mod layout;
mod llama;
pub mod open;
pub mod ops;
pub mod parts;
pub mod quant_linear;
pub mod registry;
mod request;
pub mod spec;
pub mod stage;
pub mod stored;
pub mod weights;

use crate::config::Backend;

pub use checkpoint::{Checkpoint, MappedCheckpoint, RowOrder, StoredDtype, TensorEntry};
pub use config::{Act, Architecture, ModelConfig};
pub use context::ForwardContext;
pub use error::{ForwardError, LoadError};
pub use gguf_open::is_gguf_model;
pub use input::ModelInput;
pub use kv_cache::{KvCache, LayerKv};
pub use layout::{ModelLayout, Part};
pub use parts::{HeadOutput, TransformerBlock};
pub use spec::{StageSpec, TensorSlice};
pub use stage::Stage;

/// The device mlmf computes on when none is named: the first GPU backend compiled in
/// (`cuda` when the NVIDIA driver is there, then `wgpu`), else burn's pure-Rust `flex` CPU
/// backend.
pub fn default_device() -> burn::tensor::Device {
    #[cfg(feature = "cuda")]
    if cuda_driver_present() {
        return burn::tensor::Device::cuda(0);
    }
    #[cfg(all(feature = "wgpu", not(feature = "cuda")))]
    {
        return burn::tensor::Device::wgpu(Default::default());
    }
    #[allow(unreachable_code)]
    burn::tensor::Device::flex()
}

/// Whether the NVIDIA driver library can be loaded (burn's CUDA backend panics on first use
/// without it, so the devices are chosen only when it is there).
#[cfg(feature = "cuda")]
fn cuda_driver_present() -> bool {
    ["libcuda.so.1", "libcuda.so"].iter().any(|name| {
        // SAFETY: loading the system's driver library runs its initialisers, as cudarc's own
        // loading of the same library would; nothing of it is called here.
        unsafe { libloading::Library::new(name) }.is_ok()
    })
}

/// A device by name: `default`, `flex` (or `cpu`), `ndarray`, `wgpu`, `cuda`. A backend not
/// compiled in is an error naming the cargo feature that enables it (the names and that check
/// are [`Backend::parse`]'s).
pub fn device_by_name(name: &str) -> Result<burn::tensor::Device, String> {
    Ok(match Backend::parse(name)? {
        Backend::Default => default_device(),
        Backend::Flex => burn::tensor::Device::flex(),
        #[cfg(feature = "ndarray")]
        #[allow(deprecated)]
        Backend::Ndarray => burn::tensor::Device::ndarray(),
        #[cfg(feature = "wgpu")]
        Backend::Wgpu => burn::tensor::Device::wgpu(Default::default()),
        #[cfg(feature = "cuda")]
        Backend::Cuda if cuda_driver_present() => burn::tensor::Device::cuda(0),
        #[cfg(feature = "cuda")]
        Backend::Cuda => return Err("device cuda: no NVIDIA driver here (libcuda.so cannot be loaded)".into()),
        // Backend::parse refuses the backends this build lacks.
        #[allow(unreachable_patterns)]
        other => return Err(format!("device {other:?} is not compiled in")),
    })
}
