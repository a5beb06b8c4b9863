//! SmolLM2 with 8-bit activations (`MLMF_QUANT_ACTIVATIONS=int8`), as llama.cpp computes
//! quantized weights: the same teacher-forced and free-running rule as `tests/smollm2.rs`,
//! with the near-tie margin at 0.55 instead of 0.5. Why: llama.cpp's own kernels, on the same
//! file (llama-server of `scripts/build-llama-cpp.sh`, one thread, measured 2026-12-08), pick
//! `"\n"` over the reference's `" as"` at step 30 of the second generation prompt, whose
//! reference margin is 0.503, and answer the reference chat's question with "L'Étoile, ..."
//! (its first step's margin is 0.082); mlmf's 8-bit activations flip exactly those two. 0.55
//! leaves a tenth above the flip that llama.cpp makes.

mod common;

use common::smollm2::{cases, check_case, smollm2};
use mlmf::exec::LocalRunner;
use mlmf::plan::ShardingStrategy;

const NEAR_TIE_INT8: f64 = 0.55;

fn check(strategy: ShardingStrategy) {
    // SAFETY: set before any thread of this test binary reads the environment (the mode is read
    // once, at the first quantized product); every test of this binary sets the same value.
    unsafe { std::env::set_var("MLMF_QUANT_ACTIVATIONS", "int8") };
    let Some(path) = smollm2() else { return };
    assert_eq!(mlmf::model::quant_linear::activations(), mlmf_quant::Activations::Int8);
    let device = mlmf::model::default_device();
    let runner = LocalRunner::load(&path, &strategy, &device).unwrap_or_else(|e| panic!("{strategy}: {e}"));
    let mut failures = Vec::new();
    for (name, case) in cases() {
        failures.extend(check_case(&runner, &format!("int8 {strategy} {name}"), &case, NEAR_TIE_INT8));
    }
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn int8_activations_whole_and_tensor_parallel_keep_the_tokens_by_the_llama_cpp_rule() {
    check(ShardingStrategy::NoSharding);
    check(ShardingStrategy::TensorSharding { degree: 3 });
}
