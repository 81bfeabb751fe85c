//! The chat template: `tokenizer.chat_template` from the file (Jinja, as Hugging Face writes
//! them), rendered with minijinja and its Python-compatible methods. A file without one gets
//! ChatML (`<|im_start|>role\n...<|im_end|>`), which is what most small instruct models use.
//!
//! The prompt is tokenized in pieces: what the template wrote (turn markers, role names) with
//! control tokens recognised, and each message's content as plain text (see
//! [`crate::TextTokenizer::encode`]). The template is rendered with a marker in place of each
//! content, and the markers are replaced by the encoded contents.

use minijinja::{Environment, ErrorKind, Value as JValue, context};
use serde::Serialize;

use crate::error::LlmError;
use crate::tokenizer::TextTokenizer;

/// ChatML, for files without a template.
pub const CHATML: &str = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

const MARK_OPEN: char = '\u{E000}';
const MARK_CLOSE: char = '\u{E001}';

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text.
    pub content: String,
}

impl ChatMessage {
    /// A message.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> ChatMessage {
        ChatMessage {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// A compiled chat template.
pub struct ChatTemplate {
    env: Environment<'static>,
    from_file: bool,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("from_file", &self.from_file)
            .finish_non_exhaustive()
    }
}

fn template_err(e: &minijinja::Error) -> LlmError {
    // minijinja's messages name the template's own constructs and line, not the messages.
    LlmError::Template(format!("{} (line {})", e.kind(), e.line().unwrap_or(0)))
}

fn raise_exception(message: String) -> Result<JValue, minijinja::Error> {
    Err(minijinja::Error::new(ErrorKind::InvalidOperation, message))
}

impl ChatTemplate {
    /// Compiles `source` (the file's `tokenizer.chat_template`), or ChatML when `None`.
    pub fn new(source: Option<&str>) -> Result<ChatTemplate, LlmError> {
        let mut env = Environment::new();
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        let from_file = source.is_some();
        env.add_template_owned("chat", source.unwrap_or(CHATML).to_string())
            .map_err(|e| template_err(&e))?;
        Ok(ChatTemplate { env, from_file })
    }

    /// Whether the template came from the file (rather than the ChatML fallback).
    pub fn from_file(&self) -> bool {
        self.from_file
    }

    fn render_raw(
        &self,
        messages: &[ChatMessage],
        tokenizer: &TextTokenizer,
    ) -> Result<String, LlmError> {
        let tmpl = self
            .env
            .get_template("chat")
            .map_err(|e| template_err(&e))?;
        let bos = tokenizer
            .bos()
            .and_then(|i| tokenizer.token_text(i))
            .unwrap_or("");
        let eos = tokenizer
            .eos()
            .and_then(|i| tokenizer.token_text(i))
            .unwrap_or("");
        tmpl.render(context! {
            messages => messages,
            add_generation_prompt => true,
            bos_token => bos,
            eos_token => eos,
        })
        .map_err(|e| template_err(&e))
    }

    /// The prompt text for `messages`, ending with the assistant's turn opening.
    pub fn render(
        &self,
        messages: &[ChatMessage],
        tokenizer: &TextTokenizer,
    ) -> Result<String, LlmError> {
        self.render_raw(messages, tokenizer)
    }

    /// The prompt's tokens for `messages`: template text with control tokens recognised,
    /// contents as plain text.
    pub fn tokens(
        &self,
        messages: &[ChatMessage],
        tokenizer: &TextTokenizer,
    ) -> Result<Vec<u32>, LlmError> {
        let clean = |s: &str| s.replace([MARK_OPEN, MARK_CLOSE], "\u{FFFD}");
        let contents: Vec<String> = messages.iter().map(|m| clean(&m.content)).collect();
        let marked: Vec<ChatMessage> = messages
            .iter()
            .enumerate()
            .map(|(i, m)| ChatMessage {
                role: clean(&m.role),
                content: format!("{MARK_OPEN}{i}{MARK_CLOSE}"),
            })
            .collect();
        let rendered = self.render_raw(&marked, tokenizer)?;
        let mut ids = Vec::new();
        let mut rest = rendered.as_str();
        while let Some(start) = rest.find(MARK_OPEN) {
            let (before, after) = rest.split_at(start);
            ids.extend(tokenizer.encode_with_control_tokens(before)?);
            let after = &after[MARK_OPEN.len_utf8()..];
            let Some(end) = after.find(MARK_CLOSE) else {
                return Err(LlmError::Template(
                    "the template altered a message's content".into(),
                ));
            };
            let index: usize = after[..end].parse().map_err(|_| {
                LlmError::Template("the template altered a message's content".into())
            })?;
            let content = contents.get(index).ok_or_else(|| {
                LlmError::Template("the template altered a message's content".into())
            })?;
            ids.extend(tokenizer.encode(content)?);
            rest = &after[end + MARK_CLOSE.len_utf8()..];
        }
        ids.extend(tokenizer.encode_with_control_tokens(rest)?);
        if tokenizer.add_bos()
            && let Some(bos) = tokenizer.bos()
            && ids.first() != Some(&bos)
        {
            ids.insert(0, bos);
        }
        Ok(ids)
    }
}
