//! A model's chat template (`chat_template` in `tokenizer_config.json`), rendered as
//! HuggingFace's `apply_chat_template` renders it: Jinja with `trim_blocks` and
//! `lstrip_blocks`, Python's string methods, `raise_exception`, the `messages`,
//! `add_generation_prompt`, and the special tokens as `bos_token` and `eos_token`.

use serde::{Deserialize, Serialize};

use super::error::GenerateError;

/// Largest rendered prompt, bytes.
const MAX_RENDERED: usize = 4 << 20;

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ChatMessage {
    /// `system`, `user`, `assistant`, ...
    pub role: String,
    /// Its text.
    pub content: String,
}

/// Renders `messages` through `template`, ending with the assistant's turn when
/// `add_generation_prompt`.
pub fn render_chat(
    template: &str,
    messages: &[ChatMessage],
    bos_token: &str,
    eos_token: &str,
    add_generation_prompt: bool,
) -> Result<String, GenerateError> {
    let bad = |message: String| GenerateError::Invalid { field: "messages", message };
    let mut env = minijinja::Environment::new();
    let syntax = minijinja::syntax::SyntaxConfig::builder()
        .trim_blocks(true)
        .lstrip_blocks(true)
        .build()
        .map_err(|e| bad(e.to_string()))?;
    env.set_syntax(syntax);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function("raise_exception", |message: String| -> Result<String, minijinja::Error> {
        Err(minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, message))
    });
    env.add_template("chat", template).map_err(|e| bad(format!("the model's chat template does not parse: {e}")))?;
    let tmpl = env.get_template("chat").map_err(|e| bad(e.to_string()))?;
    let out = tmpl
        .render(minijinja::context! {
            messages => minijinja::Value::from(minijinja::value::Serde(messages)),
            add_generation_prompt,
            bos_token,
            eos_token,
        })
        .map_err(|e| bad(format!("the chat template refused them: {e}")))?;
    if out.len() > MAX_RENDERED {
        return Err(bad(format!("the rendered conversation is over {MAX_RENDERED} bytes")));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHATML: &str = "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] | trim }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

    fn msgs() -> Vec<ChatMessage> {
        vec![
            ChatMessage { role: "system".into(), content: "Be brief.".into() },
            ChatMessage { role: "user".into(), content: " Hello ".into() },
        ]
    }

    #[test]
    fn chatml_renders_with_the_generation_prompt() {
        let out = render_chat(CHATML, &msgs(), "<s>", "</s>", true).unwrap();
        assert_eq!(
            out,
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn python_methods_and_raise_exception_work_as_in_transformers() {
        let t = "{% if messages[0]['role'] != 'user' %}{{ raise_exception('first must be user') }}{% endif %}{{ bos_token }}{{ messages[0]['content'].strip().upper() }}";
        let e = render_chat(t, &msgs(), "<s>", "</s>", false).unwrap_err().to_string();
        assert!(e.contains("first must be user"), "{e}");
        let out = render_chat(t, &msgs()[1..], "<s>", "</s>", false).unwrap();
        assert_eq!(out, "<s>HELLO");
    }
}
