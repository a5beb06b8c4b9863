//! [`Backend`]: the compute backends a node can be told to use by name (`device = "..."` in a
//! node's TOML, `--device` on the command line), and whether this build has each one.

/// A burn backend by name. Which ones exist depends on the cargo features mlmf was built with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The first GPU backend compiled in (`cuda`, then `wgpu`), else `flex`.
    Default,
    /// burn's pure-Rust CPU backend (also spelled `cpu`).
    Flex,
    /// burn's deprecated ndarray CPU backend (feature `ndarray`).
    Ndarray,
    /// WebGPU through wgpu (feature `wgpu`).
    Wgpu,
    /// NVIDIA CUDA (feature `cuda`).
    Cuda,
}

impl Backend {
    /// The backend called `name`: `default`, `flex` (or `cpu`), `ndarray`, `wgpu`, `cuda`. A
    /// backend not compiled in is an error naming the cargo feature that enables it.
    ///
    /// ```
    /// use mlmf::config::Backend;
    /// assert_eq!(Backend::parse("cpu"), Ok(Backend::Flex));
    /// assert!(Backend::parse("tpu").unwrap_err().contains("unknown device"));
    /// ```
    pub fn parse(name: &str) -> Result<Backend, String> {
        let (backend, compiled) = match name {
            "default" => (Backend::Default, true),
            "flex" | "cpu" => (Backend::Flex, true),
            "ndarray" => (Backend::Ndarray, cfg!(feature = "ndarray")),
            "wgpu" => (Backend::Wgpu, cfg!(feature = "wgpu")),
            "cuda" => (Backend::Cuda, cfg!(feature = "cuda")),
            other => return Err(format!("unknown device {other:?} (default, flex, ndarray, wgpu, cuda)")),
        };
        if !compiled {
            return Err(format!("device {name:?} needs mlmf built with --features {name}"));
        }
        Ok(backend)
    }
}
