//! Property tests: mutated and random files parse to `Ok` or `Err`, never a panic, quickly.

use std::time::{Duration, Instant};

use mlmf_quant::QuantType;
use proptest::prelude::*;

use crate::testing::parse;
use crate::{GgufWriter, MetaValue, ValueType};

/// A valid file with every kind of section, for mutations to break.
fn base() -> Vec<u8> {
    GgufWriter::new(3)
        .alignment(64)
        .metadata("general.architecture", MetaValue::String("llama".into()))
        .metadata("llama.block_count", MetaValue::U32(2))
        .metadata("llama.rope.freq_base", MetaValue::F32(10_000.0))
        .metadata("tokenizer.ggml.tokens", MetaValue::StringArray(vec!["<s>".into(), "a".into(), "ab".into()]))
        .metadata("tokenizer.ggml.scores", MetaValue::FloatArray(vec![0.0, -1.0, -2.0]))
        .metadata_array("tokenizer.ggml.token_type", ValueType::I32, MetaValue::IntArray(vec![3, 1, 1]))
        .metadata("flags", MetaValue::BoolArray(vec![true, false]))
        .metadata("nested", MetaValue::NestedArray(2))
        .tensor("token_embd.weight", QuantType::Q8_0, &[32, 3], vec![1; 102])
        .tensor("blk.0.attn_norm.weight", QuantType::F32, &[32], vec![2; 128])
        .tensor("output.weight", QuantType::Q4K, &[256], vec![3; 144])
        .to_bytes()
}

/// Parses, and fails the property if that took long (a loop over a hostile count).
fn parse_quickly(bytes: &[u8]) -> Result<(), TestCaseError> {
    let start = Instant::now();
    let _ = parse(bytes);
    let took = start.elapsed();
    prop_assert!(took < Duration::from_secs(1), "parsing {} bytes took {took:?}", bytes.len());
    Ok(())
}

/// A change to a file.
#[derive(Debug, Clone)]
enum Mutation {
    /// Set the byte at (index modulo length).
    Set(usize, u8),
    /// Write a little-endian u64 at (index modulo length): hits counts and lengths.
    SetU64(usize, u64),
    /// Keep the first (index modulo length) bytes.
    Cut(usize),
    /// Append bytes.
    Extend(Vec<u8>),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        (any::<usize>(), prop_oneof![any::<u64>(), 0..4096u64, Just(u64::MAX)])
            .prop_map(|(i, v)| Mutation::SetU64(i, v)),
        any::<usize>().prop_map(Mutation::Cut),
        proptest::collection::vec(any::<u8>(), 0..64).prop_map(Mutation::Extend),
    ]
}

fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    let len = bytes.len().max(1);
    match m {
        Mutation::Set(i, b) => {
            if let Some(slot) = bytes.get_mut(i % len) {
                *slot = *b;
            }
        }
        Mutation::SetU64(i, v) => {
            let at = i % len;
            for (k, b) in v.to_le_bytes().into_iter().enumerate() {
                if let Some(slot) = bytes.get_mut(at + k) {
                    *slot = b;
                }
            }
        }
        Mutation::Cut(i) => bytes.truncate(i % len),
        Mutation::Extend(more) => bytes.extend_from_slice(more),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn mutated_files_never_panic(mutations in proptest::collection::vec(mutation(), 1..6)) {
        let mut bytes = base();
        for m in &mutations {
            apply(&mut bytes, m);
        }
        parse_quickly(&bytes)?;
    }

    #[test]
    fn random_bytes_never_panic(tail in proptest::collection::vec(any::<u8>(), 0..512), version in 0u32..5) {
        parse_quickly(&tail)?;
        // Behind a valid magic and version, random bytes reach the counts and the metadata.
        let mut bytes = b"GGUF".to_vec();
        bytes.extend_from_slice(&version.to_le_bytes());
        bytes.extend_from_slice(&tail);
        parse_quickly(&bytes)?;
    }
}

#[test]
fn the_base_file_is_valid() {
    let file = parse(&base()).expect("the base file parses");
    assert_eq!(file.tensors.len(), 3);
    assert_eq!(file.alignment, 64);
}
