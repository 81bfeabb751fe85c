//! The tokenizer, built from the GGUF file's own metadata (nothing is fetched).
//!
//! Supported: `tokenizer.ggml.model = "gpt2"` (byte-level BPE, as SmolLM, Llama 3, Qwen and most
//! recent models use) with the pre-tokenizers `gpt2` / `default`, `smollm` (digits split one by
//! one), `llama-bpe` / `llama3` and `qwen2`. SentencePiece files (`llama`) are refused with a clear
//! error rather than tokenized wrongly.
//!
//! Two encoders share the vocabulary: one for the rendered chat template, which recognises the
//! control tokens (`<|im_start|>`, ...), and one for text that came from a caller, which encodes
//! a control token's spelling as plain text, so a message cannot forge a turn boundary.

use std::collections::HashMap;

use candle_core::quantized::gguf_file::Value;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, SplitDelimiterBehavior, Tokenizer};

use crate::error::LlmError;

const LLAMA3_PATTERN: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2_PATTERN: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Token types in `tokenizer.ggml.token_type`.
const TYPE_CONTROL: i64 = 3;
const TYPE_USER_DEFINED: i64 = 4;

/// The model's tokenizer.
#[derive(Clone)]
pub struct TextTokenizer {
    /// Recognises control tokens (for the rendered template).
    template: Tokenizer,
    /// Encodes control tokens' spellings as text (for callers' text).
    text: Tokenizer,
    bos: Option<u32>,
    eos: Option<u32>,
    add_bos: bool,
    vocab_size: usize,
    end_of_turn: Vec<u32>,
    tokens: Vec<String>,
}

impl std::fmt::Debug for TextTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextTokenizer")
            .field("vocab_size", &self.vocab_size)
            .field("bos", &self.bos)
            .field("eos", &self.eos)
            .finish_non_exhaustive()
    }
}

fn tok_err(what: &str) -> LlmError {
    LlmError::Tokenizer(what.to_string())
}

fn as_u32(v: &Value) -> Option<u32> {
    match v {
        Value::U8(x) => Some(u32::from(*x)),
        Value::U16(x) => Some(u32::from(*x)),
        Value::U32(x) => Some(*x),
        Value::U64(x) => u32::try_from(*x).ok(),
        Value::I8(x) => u32::try_from(*x).ok(),
        Value::I16(x) => u32::try_from(*x).ok(),
        Value::I32(x) => u32::try_from(*x).ok(),
        Value::I64(x) => u32::try_from(*x).ok(),
        _ => None,
    }
}

fn as_i64(v: &Value) -> Option<i64> {
    match v {
        Value::U8(x) => Some(i64::from(*x)),
        Value::U16(x) => Some(i64::from(*x)),
        Value::U32(x) => Some(i64::from(*x)),
        Value::U64(x) => i64::try_from(*x).ok(),
        Value::I8(x) => Some(i64::from(*x)),
        Value::I16(x) => Some(i64::from(*x)),
        Value::I32(x) => Some(i64::from(*x)),
        Value::I64(x) => Some(*x),
        _ => None,
    }
}

fn strings<'a>(md: &'a HashMap<String, Value>, key: &str) -> Result<Vec<&'a str>, LlmError> {
    match md.get(key) {
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.as_str()),
                _ => Err(LlmError::Tokenizer(format!("{key} holds a non-string"))),
            })
            .collect(),
        Some(_) => Err(LlmError::Tokenizer(format!("{key} is not an array"))),
        None => Err(LlmError::Tokenizer(format!("{key} is missing"))),
    }
}

fn pre_tokenizer(pre: &str) -> Result<PreTokenizerWrapper, LlmError> {
    let byte_level = |use_regex: bool| ByteLevel::new(false, true, use_regex);
    let split = |pattern: &str| {
        Split::new(
            SplitPattern::Regex(pattern.to_string()),
            SplitDelimiterBehavior::Isolated,
            false,
        )
        .map_err(|_| tok_err("the pre-tokenizer pattern did not compile"))
    };
    Ok(match pre {
        "gpt2" | "default" | "" => byte_level(true).into(),
        "smollm" => PreTokenizerWrapper::Sequence(Sequence::new(vec![
            Digits::new(true).into(),
            byte_level(true).into(),
        ])),
        "llama-bpe" | "llama3" | "llama-v3" => PreTokenizerWrapper::Sequence(Sequence::new(vec![
            split(LLAMA3_PATTERN)?.into(),
            byte_level(false).into(),
        ])),
        "qwen2" => PreTokenizerWrapper::Sequence(Sequence::new(vec![
            split(QWEN2_PATTERN)?.into(),
            byte_level(false).into(),
        ])),
        other => {
            return Err(LlmError::Unsupported(format!(
                "the pre-tokenizer {other:?} (supported: gpt2, smollm, llama-bpe, qwen2)"
            )));
        }
    })
}

impl TextTokenizer {
    /// Builds the tokenizer from GGUF metadata.
    pub fn from_metadata(md: &HashMap<String, Value>) -> Result<TextTokenizer, LlmError> {
        match md.get("tokenizer.ggml.model") {
            Some(Value::String(m)) if m == "gpt2" => {}
            Some(Value::String(m)) => {
                return Err(LlmError::Unsupported(format!(
                    "the tokenizer model {m:?} (only byte-level BPE, \"gpt2\", is supported)"
                )));
            }
            _ => return Err(tok_err("tokenizer.ggml.model is missing")),
        }
        let tokens = strings(md, "tokenizer.ggml.tokens")?;
        if tokens.is_empty() {
            return Err(tok_err("tokenizer.ggml.tokens is empty"));
        }
        let vocab_size = tokens.len();
        let mut vocab: HashMap<String, u32> = HashMap::with_capacity(vocab_size);
        for (id, t) in tokens.iter().enumerate() {
            let id = u32::try_from(id).map_err(|_| tok_err("the vocabulary is too large"))?;
            vocab.entry((*t).to_string()).or_insert(id);
        }
        let merges: Vec<(String, String)> = match md.get("tokenizer.ggml.merges") {
            None => Vec::new(),
            Some(_) => strings(md, "tokenizer.ggml.merges")?
                .into_iter()
                .map(|m| {
                    m.split_once(' ')
                        .map(|(a, b)| (a.to_string(), b.to_string()))
                        .ok_or_else(|| tok_err("a merge is not two tokens"))
                })
                .collect::<Result<_, _>>()?,
        };
        for (a, b) in &merges {
            if !vocab.contains_key(a) || !vocab.contains_key(b) {
                return Err(tok_err(
                    "a merge names a token that is not in the vocabulary",
                ));
            }
        }
        let types: Vec<i64> = match md.get("tokenizer.ggml.token_type") {
            Some(Value::Array(items)) => items.iter().map(|v| as_i64(v).unwrap_or(1)).collect(),
            _ => Vec::new(),
        };
        let model = BPE::builder()
            .vocab_and_merges(
                vocab
                    .into_iter()
                    .collect::<tokenizers::models::bpe::Vocab>(),
                merges,
            )
            .build()
            .map_err(|_| tok_err("the BPE model could not be built"))?;
        let pre = match md.get("tokenizer.ggml.pre") {
            Some(Value::String(p)) => p.as_str(),
            _ => "gpt2",
        };
        let mut template = Tokenizer::new(model);
        template.with_pre_tokenizer(Some(pre_tokenizer(pre)?));
        template.with_decoder(Some(ByteLevelDecoder::default()));
        let mut special = Vec::new();
        let mut user = Vec::new();
        for (i, t) in tokens.iter().enumerate() {
            match types.get(i).copied() {
                Some(TYPE_CONTROL) => special.push(AddedToken::from((*t).to_string(), true)),
                Some(TYPE_USER_DEFINED) => user.push(AddedToken::from((*t).to_string(), false)),
                _ => {}
            }
        }
        template.add_special_tokens(&special);
        template.add_tokens(&user);
        let mut text = template.clone();
        text.set_encode_special_tokens(true);
        let id = |key: &str| {
            md.get(key)
                .and_then(as_u32)
                .filter(|&i| (i as usize) < vocab_size)
        };
        let bos = id("tokenizer.ggml.bos_token_id");
        let eos = id("tokenizer.ggml.eos_token_id");
        let add_bos = matches!(
            md.get("tokenizer.ggml.add_bos_token"),
            Some(Value::Bool(true))
        );
        let mut end_of_turn: Vec<u32> = Vec::new();
        end_of_turn.extend(eos);
        end_of_turn.extend(id("tokenizer.ggml.eot_token_id"));
        end_of_turn.extend(id("tokenizer.ggml.eom_token_id"));
        for name in [
            "<|im_end|>",
            "<|eot_id|>",
            "<|end|>",
            "<|endoftext|>",
            "<end_of_turn>",
        ] {
            if let Some(i) = tokens.iter().position(|t| *t == name) {
                let i = u32::try_from(i).map_err(|_| tok_err("the vocabulary is too large"))?;
                if types.get(i as usize).copied() == Some(TYPE_CONTROL) || types.is_empty() {
                    end_of_turn.push(i);
                }
            }
        }
        end_of_turn.sort_unstable();
        end_of_turn.dedup();
        if end_of_turn.is_empty() {
            return Err(tok_err(
                "the file names no end-of-sequence token (tokenizer.ggml.eos_token_id)",
            ));
        }
        Ok(TextTokenizer {
            template,
            text,
            bos,
            eos,
            add_bos,
            vocab_size,
            end_of_turn,
            tokens: tokens.into_iter().map(str::to_string).collect(),
        })
    }

    /// Encodes a caller's text: control tokens' spellings are encoded as plain text.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, LlmError> {
        self.text
            .encode(text, false)
            .map(|e| e.get_ids().to_vec())
            .map_err(|_| tok_err("the text could not be encoded"))
    }

    /// Encodes text written by the chat template: control tokens are recognised. Never for a
    /// caller's text (see [`TextTokenizer::encode`]).
    pub fn encode_with_control_tokens(&self, text: &str) -> Result<Vec<u32>, LlmError> {
        self.template
            .encode(text, false)
            .map(|e| e.get_ids().to_vec())
            .map_err(|_| tok_err("the prompt could not be encoded"))
    }

    /// Decodes tokens to text; control tokens are left out.
    pub fn decode(&self, ids: &[u32]) -> Result<String, LlmError> {
        self.template
            .decode(ids, true)
            .map_err(|_| tok_err("the tokens could not be decoded"))
    }

    /// The number of tokens in the vocabulary.
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// The beginning-of-sequence token, if the model has one.
    pub fn bos(&self) -> Option<u32> {
        self.bos
    }

    /// The end-of-sequence token, if the model names one.
    pub fn eos(&self) -> Option<u32> {
        self.eos
    }

    /// Whether the model expects a beginning-of-sequence token first.
    pub fn add_bos(&self) -> bool {
        self.add_bos
    }

    /// Tokens that end the assistant's turn (end of sequence, end of turn).
    pub fn end_of_turn(&self) -> &[u32] {
        &self.end_of_turn
    }

    /// The id of a token spelled exactly `text`, if the vocabulary has one.
    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.template.token_to_id(text)
    }

    /// The spelling of a token in the vocabulary (for the template's `bos_token`, ...).
    pub fn token_text(&self, id: u32) -> Option<&str> {
        self.tokens.get(id as usize).map(String::as_str)
    }
}
