//! `mlmf run`: one request through a plan in this process.

use std::path::PathBuf;

use clap::Args;

use crate::exec::{LocalRunner, RunOptions};
use crate::model::ModelInput;
use crate::plan::ShardingStrategy;

/// Arguments of `mlmf run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Model directory (config.json + *.safetensors).
    #[arg(long)]
    pub model: PathBuf,
    /// Token ids, comma-separated (one sequence).
    #[arg(long, value_delimiter = ',', required = true)]
    pub input_ids: Vec<u32>,
    /// Attention mask, comma-separated 0/1 (defaults to all ones).
    #[arg(long, value_delimiter = ',')]
    pub attention_mask: Option<Vec<u32>>,
    /// Token type ids, comma-separated (BERT; defaults to zeros).
    #[arg(long, value_delimiter = ',')]
    pub token_type_ids: Option<Vec<u32>>,
    /// none | layer:K | pipeline:S | tensor:D
    #[arg(long, default_value = "none")]
    pub strategy: String,
    /// Write the outputs here as F32 safetensors.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Also write `block_output.K`, the raw output of every block K.
    #[arg(long)]
    pub block_outputs: bool,
    /// Compute device: default, flex (cpu), ndarray, wgpu, cuda.
    #[arg(long, default_value = "default")]
    pub device: String,
}

/// Runs the command.
pub fn run(a: RunArgs) -> Result<(), String> {
    let strategy: ShardingStrategy = a.strategy.parse().map_err(|e| format!("{e}"))?;
    if a.input_ids.is_empty() {
        return Err("--input-ids is empty".into());
    }
    let mask = a.attention_mask.map(|m| m.into_iter().map(|v| u8::try_from(v).unwrap_or(u8::MAX)).collect::<Vec<u8>>());
    let input = ModelInput {
        batch: 1,
        seq_len: a.input_ids.len(),
        input_ids: a.input_ids,
        attention_mask: mask,
        token_type_ids: a.token_type_ids,
    };
    let device = crate::model::device_by_name(&a.device)?;
    let runner = LocalRunner::load(&a.model, &strategy, &device).map_err(|e| e.to_string())?;
    let started = std::time::Instant::now();
    let out = runner.run(&input, RunOptions { block_outputs: a.block_outputs }).map_err(|e| e.to_string())?;
    let elapsed = started.elapsed();
    println!(
        "{} {} | strategy {} | {} stage(s), {} shard(s) | forward {:.2} ms",
        runner.layout.config.arch,
        a.model.display(),
        runner.plan.strategy,
        runner.plan.num_stages,
        runner.plan.shards.len(),
        elapsed.as_secs_f64() * 1e3
    );
    for (name, t) in &out.tensors {
        let preview: Vec<String> = t.data.iter().take(4).map(|v| format!("{v:.5}")).collect();
        println!("  {name:<20} {:?} [{} ...]", t.shape, preview.join(", "));
    }
    if let Some(logits) = out.tensors.get("logits") {
        let vocab = *logits.shape.last().unwrap_or(&1);
        let last = &logits.data[logits.data.len() - vocab..];
        let (best, _) =
            last.iter().enumerate().fold((0, f32::MIN), |acc, (i, &v)| if v > acc.1 { (i, v) } else { acc });
        println!("  next token (argmax of the last position): {best}");
    }
    if let Some(path) = a.out {
        out.write(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
