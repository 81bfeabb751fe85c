//! A model inside the perimeter: a local GGUF model run in-process, so work on PHI can use a
//! language model with no vendor at all.
//!
//! - [`LocalModel::load`] checks the file's structure ([`gguf::check`]), reads it with candle,
//!   builds the tokenizer from the file's own metadata ([`TextTokenizer`]) and its chat
//!   template ([`ChatTemplate`]), and re-quantizes Q4_1 tensors to Q8_0 (candle has no fast
//!   Q4_1 kernel). Nothing is fetched from the network.
//! - [`LocalModel::generate`] streams text deltas (whole UTF-8 characters; stop sequences held
//!   back until they can be ruled out), with temperature, top-p, seed, `max_tokens`, stop
//!   sequences, usage counts, the finish reason and cancellation (drop the stream, or
//!   [`CancelToken::cancel`]). [`LocalModel::complete`] waits for the whole text.
//! - [`LocalModel::choose`] constrains the answer to a list of allowed values (the most likely
//!   one), for classification-like work whose output must be one of known values.
//!
//! One generation runs at a time on a dedicated worker thread; others wait in a bounded queue
//! (see [`model`]). Errors never carry prompt or completion text.
//!
//! The perimeter's gateway wraps a [`LocalModel`] as its `LocalProvider` (feature
//! `local-model` of `perimeter-gateway`), so calls to it go through the same policy, records
//! and guardrails as calls to vendors.

pub mod decode;
pub mod error;
pub mod gguf;
pub mod model;
pub mod template;
pub mod tokenizer;

pub use decode::StopScanner;
pub use error::LlmError;
pub use gguf::{GgufSummary, check as check_gguf};
pub use model::{
    CancelToken, Choice, Completion, FinishReason, GenerationParams, GenerationStream, LocalModel,
    ModelConfig, ModelInfo, StreamEvent, Usage,
};
pub use template::{ChatMessage, ChatTemplate};
pub use tokenizer::TextTokenizer;
