//! Every sharding strategy reproduces the PyTorch `transformers` references of
//! `tests/fixtures/*_tiny` within the tolerances written there: whole model, every layer
//! split, every pipeline stage count, tensor degrees 2 and 4 where the heads allow.

mod common;

use common::{compare, fixture, read_safetensors, tolerances};
use mlmf::exec::{LocalRunner, RunOptions};
use mlmf::model::{Checkpoint, ModelInput};
use mlmf::plan::ShardingStrategy;

const SEQS: [usize; 3] = [1, 7, 32];

fn strategies(case: &str, family: &str) -> Vec<ShardingStrategy> {
    let cfg = Checkpoint::open(&fixture(case)).unwrap().config;
    let n = cfg.num_layers;
    match family {
        "none" => vec![ShardingStrategy::NoSharding],
        "layer" => (1..=n).map(|k| ShardingStrategy::LayerSharding { layers_per_shard: k }).collect(),
        "pipeline" => (1..=n).map(|s| ShardingStrategy::PipelineSharding { num_stages: s }).collect(),
        "tensor" => [2, 4]
            .into_iter()
            .filter(|d| cfg.num_heads.is_multiple_of(*d) && cfg.num_kv_heads.is_multiple_of(*d))
            .map(|d| ShardingStrategy::TensorSharding { degree: d })
            .collect(),
        _ => unreachable!(),
    }
}

fn check(case: &str, family: &str) {
    let dir = fixture(case);
    let reference = read_safetensors(&dir.join("reference.safetensors"));
    let tol = tolerances(case);
    let device = mlmf::model::default_device();
    let mut failures = Vec::new();
    let mut checked = 0;
    for strategy in strategies(case, family) {
        let runner = LocalRunner::load(&dir, &strategy, &device).unwrap_or_else(|e| panic!("{case} {strategy}: {e}"));
        for l in SEQS {
            let ids: Vec<u32> = reference[&format!("seq{l}.input_ids")].i64.iter().map(|&i| i as u32).collect();
            let out = runner.run(&ModelInput::single(&ids), RunOptions { block_outputs: true }).unwrap();
            // logits + last_hidden_state (decoders) or last_hidden_state + pooler_output (BERT).
            let expected_outputs = 2 + runner.layout.layers.len();
            assert_eq!(out.tensors.len(), expected_outputs, "{case} {strategy}: outputs {:?}", out.tensors.keys());
            failures.extend(compare(&out, &reference, &format!("seq{l}."), &tol, &format!("{case} {strategy} seq{l}")));
            checked += 1;
        }
    }
    assert!(checked > 0, "{case} {family}: nothing checked");
    assert!(failures.is_empty(), "{} mismatches:\n{}", failures.len(), failures.join("\n"));
}

macro_rules! reference_tests {
    ($($name:ident: $case:literal $family:literal;)*) => {
        $( #[test] fn $name() { check($case, $family); } )*
    };
}

reference_tests! {
    gpt2_whole: "gpt2_tiny" "none";
    gpt2_layer_splits: "gpt2_tiny" "layer";
    gpt2_pipeline_stages: "gpt2_tiny" "pipeline";
    gpt2_tensor_degrees: "gpt2_tiny" "tensor";
    llama_whole: "llama_tiny" "none";
    llama_layer_splits: "llama_tiny" "layer";
    llama_pipeline_stages: "llama_tiny" "pipeline";
    llama_tensor_degrees: "llama_tiny" "tensor";
    bert_whole: "bert_tiny" "none";
    bert_layer_splits: "bert_tiny" "layer";
    bert_pipeline_stages: "bert_tiny" "pipeline";
    bert_tensor_degrees: "bert_tiny" "tensor";
}

/// The tensor degrees tested per case, so a change to the fixtures cannot silently skip one.
#[test]
fn tensor_degrees_cover_what_the_heads_allow() {
    let names = |c| strategies(c, "tensor").iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(names("gpt2_tiny"), ["tensor:2", "tensor:4"]);
    assert_eq!(names("llama_tiny"), ["tensor:2"]); // 2 KV heads: degree 4 cannot split them
    assert_eq!(names("bert_tiny"), ["tensor:2", "tensor:4"]);
}

/// A sum of slices is the block: each slice alone is not (the test can fail).
#[test]
fn a_single_slice_is_not_the_block() {
    let dir = fixture("gpt2_tiny");
    let ckpt = std::sync::Arc::new(Checkpoint::open(&dir).unwrap());
    let mapped = ckpt.map().unwrap();
    let device = mlmf::model::default_device();
    let cfg = &ckpt.config;
    let spec = |rank, degree| mlmf::model::StageSpec {
        embeddings: true,
        layers: 0..1,
        head: false,
        slice: mlmf::model::TensorSlice { rank, degree },
    };
    let whole = mlmf::model::Stage::load(&mapped, &spec(0, 1), &device).unwrap();
    let half = mlmf::model::Stage::load(&mapped, &spec(0, 2), &device).unwrap();
    let input = ModelInput::single(&[5, 6, 7]);
    let ctx = mlmf::model::ForwardContext::new(cfg, &input, &device);
    let x = whole.embed(&input).unwrap();
    let (_, full) = whole.blocks().next().unwrap();
    let (_, part) = half.blocks().next().unwrap();
    let a: Vec<f32> = full.attention_partial(x.clone(), &ctx).into_data().try_to_vec().unwrap();
    let b: Vec<f32> = part.attention_partial(x, &ctx).into_data().try_to_vec().unwrap();
    let diff = a.iter().zip(&b).map(|(p, q)| (p - q).abs()).fold(0.0f32, f32::max);
    assert!(diff > 1e-2, "half the heads gave the whole attention output (diff {diff})");
    assert!(half.run_blocks(whole.embed(&input).unwrap(), &ctx, None).is_err());
}

/// A user's own cut: embeddings alone, every block, the head alone.
#[derive(Debug)]
struct EndsApart {
    gap: bool,
}

impl mlmf::plan::CustomSharding for EndsApart {
    fn name(&self) -> &str {
        "ends-apart"
    }

    fn stages(
        &self,
        layout: &mlmf::model::ModelLayout,
    ) -> Result<Vec<Vec<mlmf::model::StageSpec>>, mlmf::plan::PlanError> {
        let n = layout.layers.len();
        let first = if self.gap { 1 } else { 0 };
        let one = |embeddings, layers, head| {
            vec![mlmf::model::StageSpec { embeddings, layers, head, slice: mlmf::model::TensorSlice::WHOLE }]
        };
        Ok(vec![one(true, 0..0, false), one(false, first..n, false), one(false, n..n, true)])
    }
}

#[test]
fn custom_strategy_matches_the_reference_and_bad_ones_are_named() {
    let dir = fixture("llama_tiny");
    let reference = read_safetensors(&dir.join("reference.safetensors"));
    let device = mlmf::model::default_device();
    let custom = ShardingStrategy::Custom(std::sync::Arc::new(EndsApart { gap: false }));
    let runner = LocalRunner::load(&dir, &custom, &device).unwrap();
    assert_eq!(runner.plan.num_stages, 3);
    let ids: Vec<u32> = reference["seq7.input_ids"].i64.iter().map(|&i| i as u32).collect();
    let out = runner.run(&ModelInput::single(&ids), RunOptions { block_outputs: true }).unwrap();
    let failures = compare(&out, &reference, "seq7.", &tolerances("llama_tiny"), "custom");
    assert!(failures.is_empty(), "{failures:?}");
    let bad = ShardingStrategy::Custom(std::sync::Arc::new(EndsApart { gap: true }));
    let e = LocalRunner::load(&dir, &bad, &device).err().unwrap().to_string();
    assert!(e.contains("ends-apart") && e.contains("block 0 is next"), "{e}");
}
