//! OpenAI's `logprobs` object of a completion, token by token: each token's text, its
//! log-probability (`null` for a prompt's first token, which nothing precedes), the most likely
//! tokens at its position, and where its text starts in the returned text. With `echo`, the
//! prompt's tokens come first: that is how lm-evaluation-harness scores a model. And the
//! chat completions' shape of the same figures ([`chat_content`]).

use serde_json::{Map, Value, json};

use crate::generate::{Step, TextTokenizer};

/// The object, built one token at a time.
pub struct Logprobs<'a> {
    tok: Option<&'a TextTokenizer>,
    tokens: Vec<String>,
    token_logprobs: Vec<Option<f32>>,
    top_logprobs: Vec<Option<Map<String, Value>>>,
    text_offset: Vec<usize>,
    at: usize,
}

impl<'a> Logprobs<'a> {
    /// An empty object; token texts come from `tok` (ids in decimal without one).
    pub fn new(tok: Option<&'a TextTokenizer>) -> Logprobs<'a> {
        Logprobs {
            tok,
            tokens: Vec::new(),
            token_logprobs: Vec::new(),
            top_logprobs: Vec::new(),
            text_offset: Vec::new(),
            at: 0,
        }
    }

    fn text(&self, id: u32) -> String {
        self.tok.map(|t| t.token(id)).unwrap_or_else(|| id.to_string())
    }

    /// Adds token `id` with its log-probability and the most likely tokens at its position
    /// (`None` for a prompt's first token).
    pub fn push(&mut self, id: u32, scored: Option<(f32, &[(u32, f32)])>) {
        let text = self.text(id);
        self.text_offset.push(self.at);
        self.at += text.chars().count();
        self.tokens.push(text);
        self.token_logprobs.push(scored.map(|s| s.0));
        self.top_logprobs.push(scored.map(|(_, top)| {
            let mut m = Map::new();
            // Most likely first; tokens whose texts coincide (bytes of an incomplete character
            // all read U+FFFD) keep the likeliest one's value.
            for &(t, lp) in top {
                m.entry(self.text(t)).or_insert(json!(lp));
            }
            m
        }));
    }

    /// The JSON object.
    pub fn to_json(&self) -> Value {
        json!({"tokens": self.tokens, "token_logprobs": self.token_logprobs,
            "top_logprobs": self.top_logprobs, "text_offset": self.text_offset})
    }
}

/// The chat completions' `logprobs.content` entries of `steps`: each chosen token's text,
/// log-probability and UTF-8 bytes, with its `top_logprobs` (most likely first).
pub fn chat_content(tok: &TextTokenizer, steps: &[Step]) -> Value {
    let entry = |id: u32, logprob: f32| {
        let token = tok.token(id);
        json!({"token": token, "logprob": logprob, "bytes": token.as_bytes()})
    };
    let content: Vec<Value> = steps
        .iter()
        .map(|s| {
            let mut e = entry(s.token, s.logprob);
            e["top_logprobs"] = s.top.iter().map(|&(t, lp)| entry(t, lp)).collect();
            e
        })
        .collect();
    json!({"content": content})
}
