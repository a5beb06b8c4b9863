//! `mlmf generate`: text continued by a model, streamed to the terminal as it is generated:
//! in this process with `--model DIR` (every stage with its KV cache, cut by `--strategy`),
//! or by a running cluster with `--id M` (its `/v1/completions`, streamed).

use std::io::Write;
use std::time::Instant;

use clap::Args;
use serde_json::json;

use crate::generate::{GenerationParams, SamplingParams, TextTokenizer};

use super::client_cmds::ModelSource;

/// Arguments of `mlmf generate`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Where it runs.
    #[command(flatten)]
    pub source: ModelSource,
    /// The prompt.
    #[arg(long)]
    pub prompt: String,
    /// Tokens to generate at most.
    #[arg(long, default_value_t = 32)]
    pub max_tokens: usize,
    /// 0 is greedy.
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,
    /// Nucleus sampling.
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f32,
    /// Top-k sampling (0: off).
    #[arg(long, default_value_t = 0)]
    pub top_k: usize,
    /// Seed of the sampler.
    #[arg(long)]
    pub seed: Option<u64>,
}

/// Runs the command.
pub fn generate(a: GenerateArgs) -> Result<(), String> {
    let sampling = SamplingParams {
        temperature: a.temperature,
        top_k: a.top_k,
        top_p: a.top_p,
        repetition_penalty: 1.0,
        seed: a.seed,
    };
    let params = GenerationParams { max_tokens: a.max_tokens, sampling, ..GenerationParams::default() };
    params.validate().map_err(|e| e.to_string())?;
    let start = Instant::now();
    let mut out = std::io::stdout();
    let (tokens, finish) = match &a.source.model {
        Some(dir) => {
            let tok = TextTokenizer::require(dir).map_err(|e| e.to_string())?;
            let runner = a.source.runner(dir)?;
            let prompt = tok.encode(&a.prompt).map_err(|e| e.to_string())?;
            let done = runner
                .generate(&prompt, params, Some(&tok), |step| {
                    let _ = write!(out, "{}", step.piece);
                    let _ = out.flush();
                })
                .map_err(|e| e.to_string())?;
            let finish = match done.sequence.finish_reason() {
                Some(crate::generate::FinishReason::Stop) => "stop",
                _ => "length",
            };
            (done.sequence.generated().len(), finish.to_string())
        }
        None => {
            let id = a.source.id.clone().unwrap_or_default();
            let client = a.source.target.client()?;
            let body = json!({"model": id, "prompt": a.prompt, "max_tokens": a.max_tokens,
                "temperature": a.temperature, "top_p": a.top_p, "top_k": a.top_k, "seed": a.seed, "stream": true});
            let mut n = 0;
            let last = actix_web::rt::System::new()
                .block_on(client.completion(&body, |chunk| {
                    n += 1;
                    let _ = write!(out, "{}", chunk["choices"][0]["text"].as_str().unwrap_or(""));
                    let _ = out.flush();
                }))
                .map_err(|e| e.to_string())?;
            (n, last["choices"][0]["finish_reason"].as_str().unwrap_or("?").to_string())
        }
    };
    let secs = start.elapsed().as_secs_f64();
    println!();
    eprintln!("{tokens} tokens in {:.0} ms ({:.1} tokens/s), finish: {finish}", secs * 1e3, tokens as f64 / secs);
    Ok(())
}
