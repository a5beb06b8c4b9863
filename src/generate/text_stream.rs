//! [`TextStream`]: a sequence's generated tokens turned into text one token at a time, as
//! Text Generation Inference does it: the tokens since the last complete character are decoded
//! together, and text is released only when it does not end in U+FFFD, the mark of bytes that
//! wait for the next token to complete a character. Decoding a window rather than the whole
//! sequence keeps each step's cost flat, and the released pieces concatenate to the decode of
//! all the tokens.

use super::error::GenerateError;
use super::tokenizer::TextTokenizer;

/// Text of the tokens pushed so far.
#[derive(Debug, Clone, Default)]
pub struct TextStream {
    ids: Vec<u32>,
    prefix_offset: usize,
    read_offset: usize,
    text: String,
}

impl TextStream {
    /// Adds token `id`; its text joins [`TextStream::text`] once its characters are complete.
    pub fn push(&mut self, tok: &TextTokenizer, id: u32) -> Result<(), GenerateError> {
        self.ids.push(id);
        self.release(tok, false)
    }

    /// Releases whatever is held back (bytes that never completed a character become U+FFFD).
    pub fn finish(&mut self, tok: &TextTokenizer) -> Result<(), GenerateError> {
        self.release(tok, true)
    }

    fn release(&mut self, tok: &TextTokenizer, all: bool) -> Result<(), GenerateError> {
        let prefix = tok.decode(&self.ids[self.prefix_offset..self.read_offset])?;
        let full = tok.decode(&self.ids[self.prefix_offset..])?;
        let complete = all || !full.ends_with('\u{FFFD}');
        if full.len() > prefix.len() && complete && full.starts_with(&prefix) {
            self.text.push_str(&full[prefix.len()..]);
            self.prefix_offset = self.read_offset;
            self.read_offset = self.ids.len();
        }
        Ok(())
    }

    /// The text released so far.
    pub fn text(&self) -> &str {
        &self.text
    }
}
