//! [`Sequence`]: one generation as the node that took the request holds it: the prompt, the
//! tokens generated so far, the sampler, the text released so far, and the stop conditions
//! (eos, stop strings, `max_tokens`). Each step takes the last position's logits and returns
//! the chosen token and the piece of text it releases. A piece never holds the start of a
//! stop string that may still complete, nor a stop string itself, so the pieces of a stream
//! concatenate to the returned text.

use serde::{Deserialize, Serialize};

use super::error::GenerateError;
use super::sampler::{Sampler, SamplingParams, log_softmax, top_logprobs};
use super::text_stream::TextStream;
use super::tokenizer::TextTokenizer;

/// Most stop strings a request may give.
pub const MAX_STOPS: usize = 16;
/// Longest stop string, bytes.
pub const MAX_STOP_BYTES: usize = 256;

/// Why a sequence ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FinishReason {
    /// An eos token or a stop string.
    Stop,
    /// `max_tokens`, or the model's positions.
    Length,
}

impl FinishReason {
    /// OpenAI's name for it: `stop` or `length`.
    pub fn name(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
        }
    }
}

/// What a generation is asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationParams {
    /// Tokens to generate at most.
    pub max_tokens: usize,
    /// How tokens are chosen.
    pub sampling: SamplingParams,
    /// Texts that end the generation (not part of the returned text).
    pub stop: Vec<String>,
    /// Keep generating past eos.
    pub ignore_eos: bool,
    /// Log-probabilities of this many most likely tokens per step (0: only the chosen one's).
    pub logprobs: usize,
}

impl Default for GenerationParams {
    fn default() -> Self {
        GenerationParams {
            max_tokens: 16,
            sampling: SamplingParams::default(),
            stop: Vec::new(),
            ignore_eos: false,
            logprobs: 0,
        }
    }
}

impl GenerationParams {
    /// Checks the fields; the error names the one out of range.
    pub fn validate(&self) -> Result<(), GenerateError> {
        self.sampling.validate()?;
        let bad = |field, message: String| Err(GenerateError::Invalid { field, message });
        if self.stop.len() > MAX_STOPS {
            return bad("stop", format!("at most {MAX_STOPS} stop strings"));
        }
        if self.stop.iter().any(|s| s.is_empty() || s.len() > MAX_STOP_BYTES) {
            return bad("stop", format!("each stop string must be 1 to {MAX_STOP_BYTES} bytes"));
        }
        if self.logprobs > 20 {
            return bad("logprobs", "at most 20".into());
        }
        Ok(())
    }
}

/// One step's result.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// The token chosen.
    pub token: u32,
    /// Its log-probability under the model's distribution (before temperature and filters).
    pub logprob: f32,
    /// The most likely tokens and their log-probabilities, when asked for.
    pub top: Vec<(u32, f32)>,
    /// Text released by this step (may be empty).
    pub piece: String,
    /// Set on the last step.
    pub finish: Option<FinishReason>,
}

/// One generation.
#[derive(Debug, Clone)]
pub struct Sequence {
    ids: Vec<u32>,
    prompt_len: usize,
    params: GenerationParams,
    sampler: Sampler,
    eos: Vec<u32>,
    text: Option<TextStream>,
    emitted: usize,
    finish: Option<FinishReason>,
}

impl Sequence {
    /// A generation continuing `prompt`, ending on any of `eos`. With `text`, steps release
    /// text (and stop strings apply); without, only ids.
    pub fn new(prompt: Vec<u32>, params: GenerationParams, eos: Vec<u32>, text: bool) -> Sequence {
        Sequence {
            prompt_len: prompt.len(),
            ids: prompt,
            sampler: Sampler::new(params.sampling),
            params,
            eos,
            text: text.then(TextStream::default),
            emitted: 0,
            finish: None,
        }
    }

    /// The prompt and every token generated so far (what a replay prefills).
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }

    /// The prompt.
    pub fn prompt(&self) -> &[u32] {
        &self.ids[..self.prompt_len]
    }

    /// The tokens generated so far.
    pub fn generated(&self) -> &[u32] {
        &self.ids[self.prompt_len..]
    }

    /// Why it ended, once it has.
    pub fn finish_reason(&self) -> Option<FinishReason> {
        self.finish
    }

    /// The text released so far.
    pub fn text(&self) -> &str {
        self.text.as_ref().map(|t| &t.text()[..self.emitted]).unwrap_or("")
    }

    /// Chooses the next token from `logits` (the last position's) and releases its text.
    pub fn step(&mut self, logits: &[f32], tok: Option<&TextTokenizer>) -> Result<Step, GenerateError> {
        if self.finish.is_some() {
            return Err(GenerateError::Invalid { field: "sequence", message: "already finished".into() });
        }
        let token = self.sampler.next(logits, &self.ids);
        let lp = log_softmax(logits);
        let logprob = lp.get(token as usize).copied().unwrap_or(f32::NEG_INFINITY);
        let top = if self.params.logprobs > 0 { top_logprobs(&lp, self.params.logprobs) } else { Vec::new() };
        self.ids.push(token);
        if self.eos.contains(&token) && !self.params.ignore_eos {
            self.finish = Some(FinishReason::Stop);
        } else if let (Some(text), Some(tok)) = (self.text.as_mut(), tok) {
            text.push(tok, token)?;
        }
        if self.finish.is_none() && self.generated().len() >= self.params.max_tokens {
            self.finish = Some(FinishReason::Length);
        }
        let piece = self.release(tok)?;
        Ok(Step { token, logprob, top, piece, finish: self.finish })
    }

    /// The text that can be released now; on the last step, everything up to a stop string.
    fn release(&mut self, tok: Option<&TextTokenizer>) -> Result<String, GenerateError> {
        let (Some(text), Some(tok)) = (self.text.as_mut(), tok) else { return Ok(String::new()) };
        if self.finish.is_some() {
            text.finish(tok)?;
        }
        let all = text.text();
        let longest = self.params.stop.iter().map(String::len).max().unwrap_or(0);
        let mut from = self.emitted.saturating_sub(longest);
        while !all.is_char_boundary(from) {
            from -= 1;
        }
        let found = self.params.stop.iter().filter_map(|s| all[from..].find(s.as_str()).map(|i| from + i)).min();
        let end = match found {
            Some(at) => {
                self.finish = Some(FinishReason::Stop);
                at
            }
            None if self.finish.is_some() => all.len(),
            None => all.len() - held_back(all, &self.params.stop),
        };
        let end = end.max(self.emitted);
        let piece = all[self.emitted..end].to_string();
        self.emitted = end;
        Ok(piece)
    }
}

/// Bytes at the end of `text` that begin some stop string (and so may not be released yet).
fn held_back(text: &str, stops: &[String]) -> usize {
    let mut held = 0;
    for s in stops {
        for (i, _) in s.char_indices().skip(1).chain(std::iter::once((s.len(), ' '))) {
            let head = &s[..i];
            if i < s.len() && text.ends_with(head) {
                held = held.max(head.len());
            }
        }
    }
    held
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn tokenizer() -> TextTokenizer {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gpt2_tiny");
        TextTokenizer::require(&dir).unwrap()
    }

    /// Logits that make `id` the greedy choice.
    fn one_hot(id: u32) -> Vec<f32> {
        let mut l = vec![0.0; 1000];
        l[id as usize] = 10.0;
        l
    }

    fn run(tok: &TextTokenizer, ids: &[u32], params: GenerationParams) -> (Vec<String>, Sequence) {
        let mut seq = Sequence::new(vec![1, 2], params, tok.eos.clone(), true);
        let mut pieces = Vec::new();
        for &id in ids {
            let step = seq.step(&one_hot(id), Some(tok)).unwrap();
            assert_eq!(step.token, id);
            pieces.push(step.piece);
            if step.finish.is_some() {
                break;
            }
        }
        (pieces, seq)
    }

    #[test]
    fn pieces_concatenate_to_the_decoded_text_even_across_split_characters() {
        let tok = tokenizer();
        let refs: serde_json::Value = serde_json::from_slice(
            &std::fs::read(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gpt2_tiny/generation.json"))
                .unwrap(),
        )
        .unwrap();
        for p in refs["prompts"].as_array().unwrap() {
            let new: Vec<u32> = p["new_ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
            let params =
                GenerationParams { max_tokens: new.len(), sampling: SamplingParams::greedy(), ..Default::default() };
            let (pieces, seq) = run(&tok, &new, params);
            assert_eq!(pieces.concat(), p["new_text"].as_str().unwrap());
            assert_eq!(seq.text(), p["new_text"].as_str().unwrap());
            assert_eq!(seq.finish_reason(), Some(FinishReason::Length));
        }
    }

    #[test]
    fn a_stop_string_ends_the_text_before_it_and_is_never_streamed() {
        let tok = tokenizer();
        let ids = tok.encode("a node fails and the replica loads").unwrap();
        let params = GenerationParams {
            max_tokens: 100,
            sampling: SamplingParams::greedy(),
            stop: vec!["the rep".into()],
            ..Default::default()
        };
        let (pieces, seq) = run(&tok, &ids, params);
        assert_eq!(seq.finish_reason(), Some(FinishReason::Stop));
        assert_eq!(pieces.concat(), "a node fails and ");
        assert_eq!(seq.text(), "a node fails and ");
    }

    #[test]
    fn eos_stops_unless_ignored_and_max_tokens_stops_with_length() {
        let tok = tokenizer();
        let (_, seq) =
            run(&tok, &[52, 72, 0, 69], GenerationParams { sampling: SamplingParams::greedy(), ..Default::default() });
        assert_eq!((seq.finish_reason(), seq.generated()), (Some(FinishReason::Stop), &[52, 72, 0][..]));
        let params = GenerationParams {
            ignore_eos: true,
            max_tokens: 4,
            sampling: SamplingParams::greedy(),
            ..Default::default()
        };
        let (_, seq) = run(&tok, &[52, 72, 0, 69, 70], params);
        assert_eq!((seq.finish_reason(), seq.generated().len()), (Some(FinishReason::Length), 4));
    }

    #[test]
    fn held_back_is_the_longest_started_stop() {
        let stops = vec!["abc".to_string(), "cd".to_string()];
        assert_eq!(held_back("xxab", &stops), 2);
        assert_eq!(held_back("xxc", &stops), 1);
        assert_eq!(held_back("xxabc", &stops), 1);
        assert_eq!(held_back("xyz", &stops), 0);
    }
}
