//! `mlmf embed`: the embedding of each `--text`, one JSON array per line: in this process with
//! `--model DIR` (the folder's sentence-transformers pooling, normalisation and truncation;
//! the model cut by `--strategy`), or by a running cluster with `--id M` (its
//! `/v1/embeddings`).

use std::time::Instant;

use clap::Args;

use crate::generate::{Pooling, TextTokenizer};

use super::client_cmds::ModelSource;

/// Arguments of `mlmf embed`.
#[derive(Debug, Args)]
pub struct EmbedArgs {
    /// Where it runs.
    #[command(flatten)]
    pub source: ModelSource,
    /// A text to embed (repeat for several).
    #[arg(long, required = true)]
    pub text: Vec<String>,
}

/// Runs the command.
pub fn embed(a: EmbedArgs) -> Result<(), String> {
    let start = Instant::now();
    let vectors = match &a.source.model {
        Some(dir) => {
            let tok = TextTokenizer::require(dir).map_err(|e| e.to_string())?;
            let pooling = Pooling::load(dir).map_err(|e| e.to_string())?;
            let runner = a.source.runner(dir)?;
            a.text
                .iter()
                .map(|t| runner.embed_text(&tok, &pooling, t).map_err(|e| e.to_string()))
                .collect::<Result<Vec<_>, _>>()?
        }
        None => {
            let id = a.source.id.clone().unwrap_or_default();
            let client = a.source.target.client()?;
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
