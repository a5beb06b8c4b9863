//! `mlmf embed`: the embedding of each `--text`, one JSON array per line: in this process with
//! `--model DIR` (the folder's sentence-transformers pooling, normalisation and truncation;
//! the model cut by `--strategy`), or by a running cluster with `--id M` (its
//! `/v1/embeddings`).

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;

use crate::exec::LocalRunner;
use crate::generate::{Pooling, TextTokenizer};

use super::client_cmds::Target;

/// Arguments of `mlmf embed`.
#[derive(Debug, Args)]
pub struct EmbedArgs {
    /// Model directory (config.json, *.safetensors, tokenizer.json): embed in this process.
    #[arg(long, conflicts_with = "id")]
    pub model: Option<PathBuf>,
    /// Model id on a running cluster (see --addr): embed there.
    #[arg(long, required_unless_present = "model")]
    pub id: Option<String>,
    /// The cluster (with --id).
    #[command(flatten)]
    pub target: Target,
    /// A text to embed (repeat for several).
    #[arg(long, required = true)]
    pub text: Vec<String>,
    /// none | layer:K | pipeline:S | tensor:D (with --model).
    #[arg(long, default_value = "none")]
    pub strategy: String,
    /// Compute device (with --model): default, flex (cpu), ndarray, wgpu, cuda.
    #[arg(long, default_value = "default")]
    pub device: String,
}

/// Runs the command.
pub fn embed(a: EmbedArgs) -> Result<(), String> {
    let start = Instant::now();
    let vectors = match &a.model {
        Some(dir) => {
            let tok = TextTokenizer::require(dir).map_err(|e| e.to_string())?;
            let pooling = Pooling::load(dir).map_err(|e| e.to_string())?;
            let device = crate::model::device_by_name(&a.device)?;
            let strategy = a.strategy.parse().map_err(|e| format!("{e}"))?;
            let runner = LocalRunner::load(dir, &strategy, &device).map_err(|e| e.to_string())?;
            a.text
                .iter()
                .map(|t| runner.embed_text(&tok, &pooling, t).map_err(|e| e.to_string()))
                .collect::<Result<Vec<_>, _>>()?
        }
        None => {
            let id = a.id.clone().unwrap_or_default();
            let client = a.target.client()?;
            let texts: Vec<&str> = a.text.iter().map(String::as_str).collect();
            actix_web::rt::System::new().block_on(client.embeddings(&id, &texts)).map_err(|e| e.to_string())?
        }
    };
    for v in &vectors {
        println!("{}", serde_json::to_string(v).map_err(|e| e.to_string())?);
    }
    let dims = vectors.first().map(Vec::len).unwrap_or(0);
    eprintln!("{} embeddings of {dims} dimensions in {:.0} ms", vectors.len(), start.elapsed().as_secs_f64() * 1e3);
    Ok(())
}
