//! The families mlmf runs, one line each, and the two ways to find one: by the
//! [`Architecture`] a config carries ([`family`]) and by the keys of a `config.json`
//! ([`detect`]). Everything above the families (config reading, layout, stage loading, the
//! per-request checks) reaches a family through here.
//!
//! # Adding a family
//!
//! A LLaMA-shaped family (Mistral, say) takes:
//!
//! 1. a file `src/model/mistral.rs` with a unit struct implementing [`Family`]: its names
//!    and facts, and for everything it shares with LLaMA a call to `llama::Llama`:
//!
//!    ```text
//!    pub(crate) struct Mistral;
//!
//!    impl Family for Mistral {
//!        fn arch(&self) -> Architecture { Architecture::Mistral }
//!        fn name(&self) -> &'static str { "mistral" }
//!        fn model_types(&self) -> &'static [&'static str] { &["mistral"] }
//!        fn architecture_prefixes(&self) -> &'static [&'static str] { &["Mistral"] }
//!        fn read_config(&self, json: &ConfigJson) -> Result<ModelConfig, LoadError> {
//!            Ok(ModelConfig { arch: Architecture::Mistral, ..Llama.read_config(json)? })
//!        }
//!        fn load_block(&self, r: &WeightReader, cfg: &ModelConfig, i: usize, slice: TensorSlice)
//!            -> Result<Box<dyn TransformerBlock>, LoadError> { Llama.load_block(r, cfg, i, slice) }
//!        // ... and so on for the facts, the tensor names and the other loaders.
//!    }
//!    ```
//!
//! 2. one line in the `families!` list below: `Mistral => mistral::Mistral,`;
//! 3. what Rust itself asks for: a variant `Mistral` in [`Architecture`] (`config.rs`; it
//!    serialises as `"mistral"`) and `mod mistral;` in `mod.rs`.
//!
//! Nothing else changes: [`family`] is a `match` generated from the list, so a variant
//! without a line here does not compile, and the tests below check that each family's names
//! agree (display, serde, detection).

use std::fmt;

use super::config::Architecture;
use super::config_json::ConfigJson;
use super::error::LoadError;
use super::family::Family;
use super::{bert, gpt2, llama};

/// Declares [`FAMILIES`] and [`family`] from one `Variant => family` line per family.
macro_rules! families {
    ($($variant:ident => $family:expr,)*) => {
        /// Every family, in the order [`detect`] tries them.
        pub const FAMILIES: &[&dyn Family] = &[$(&$family),*];

        /// The family of an architecture.
        pub fn family(arch: Architecture) -> &'static dyn Family {
            match arch {
                $(Architecture::$variant => &$family,)*
            }
        }
    };
}

families! {
    Gpt2 => gpt2::Gpt2,
    Llama => llama::Llama,
    Bert => bert::Bert,
}

/// The family a `config.json` names: by `model_type`, or else by the first class name in
/// `architectures`. A name no family answers to is [`LoadError::UnknownArchitecture`].
pub fn detect(json: &ConfigJson) -> Result<&'static dyn Family, LoadError> {
    let unknown = |name: &str| LoadError::UnknownArchitecture {
        path: json.path().to_path_buf(),
        name: name.to_string(),
        supported: supported(),
    };
    if let Some(mt) = json.get("model_type") {
        let mt = mt.as_str().ok_or_else(|| json.error("model_type is not a string".into()))?;
        return FAMILIES.iter().copied().find(|f| f.model_types().contains(&mt)).ok_or_else(|| unknown(mt));
    }
    let first = json
        .get("architectures")
        .and_then(serde_json::Value::as_array)
        .and_then(|a| a.first())
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| json.error("neither model_type nor architectures is given".into()))?;
    FAMILIES
        .iter()
        .copied()
        .find(|f| f.architecture_prefixes().iter().any(|p| first.starts_with(p)))
        .ok_or_else(|| unknown(first))
}

/// The names of every family, for messages: `gpt2, llama, bert`.
pub fn supported() -> String {
    FAMILIES.iter().map(|f| f.name()).collect::<Vec<_>>().join(", ")
}

/// An architecture displays as its family's name (the same spelling it serialises as).
impl fmt::Display for Architecture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(family(*self).name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each family is the one its architecture finds, and displays, serialises and is
    /// detected by the same name.
    #[test]
    fn every_family_answers_to_its_own_names() {
        for f in FAMILIES {
            let arch = f.arch();
            assert_eq!(family(arch).name(), f.name());
            assert_eq!(arch.to_string(), f.name());
            assert_eq!(serde_json::to_value(arch).unwrap(), serde_json::Value::String(f.name().into()));
            assert_eq!(serde_json::from_value::<Architecture>(f.name().into()).unwrap(), arch);
            for mt in f.model_types() {
                let obj = serde_json::json!({ "model_type": mt });
                let json = ConfigJson::new(obj.as_object().unwrap(), "config.json".as_ref());
                assert_eq!(detect(&json).unwrap().arch(), arch, "{mt}");
            }
        }
    }

    /// No `model_type` or `architectures` prefix is claimed by two families.
    #[test]
    fn no_name_is_claimed_twice() {
        for (i, a) in FAMILIES.iter().enumerate() {
            for b in &FAMILIES[i + 1..] {
                assert!(a.model_types().iter().all(|m| !b.model_types().contains(m)), "{} {}", a.name(), b.name());
                for p in a.architecture_prefixes() {
                    for q in b.architecture_prefixes() {
                        assert!(!p.starts_with(q) && !q.starts_with(p), "{p} {q}");
                    }
                }
            }
        }
    }

    #[test]
    fn supported_lists_every_family() {
        assert_eq!(supported(), "gpt2, llama, bert");
    }
}
