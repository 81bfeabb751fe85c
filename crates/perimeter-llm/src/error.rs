//! The local model's errors. None of them carries prompt or completion text: only paths the
//! administrator configured, sizes, counts and the kind of problem.

use std::path::PathBuf;

/// What went wrong loading or running the local model.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LlmError {
    /// The model file could not be opened or read.
    #[error("the model file {path} could not be read: {reason}")]
    Io {
        /// The configured path.
        path: PathBuf,
        /// The operating system's reason.
        reason: String,
    },
    /// The file is not a usable GGUF file (corrupt, truncated, or not GGUF at all).
    #[error("the model file is not a valid GGUF file: {0}")]
    InvalidGguf(String),
    /// The file is GGUF but describes something this build cannot run.
    #[error("the model is not supported: {0}")]
    Unsupported(String),
    /// The tokenizer in the file's metadata is missing or inconsistent.
    #[error("the model's tokenizer could not be built: {0}")]
    Tokenizer(String),
    /// The chat template in the file's metadata could not be compiled or rendered.
    #[error("the model's chat template failed: {0}")]
    Template(String),
    /// A generation parameter is out of range.
    #[error("invalid parameter {param}: {reason}")]
    InvalidParameter {
        /// The parameter (`temperature`, `top_p`, `max_tokens`, `stop`, ...).
        param: &'static str,
        /// What is allowed.
        reason: &'static str,
    },
    /// The prompt (plus the tokens asked for) does not fit in the model's context.
    #[error(
        "the prompt has {prompt_tokens} tokens and {requested} more were asked for, but the context holds {context} tokens"
    )]
    ContextLength {
        /// Tokens in the prompt.
        prompt_tokens: usize,
        /// Completion tokens asked for (0 when none were asked for explicitly).
        requested: usize,
        /// The context length.
        context: usize,
    },
    /// `choose` was called without allowed values, or with an empty or duplicate one.
    #[error("invalid choice: {0}")]
    InvalidChoice(&'static str),
    /// Too many requests are waiting for the model.
    #[error("the local model is busy ({queued} requests waiting)")]
    Busy {
        /// The queue's capacity.
        queued: usize,
    },
    /// The request was cancelled before it finished.
    #[error("the generation was cancelled")]
    Cancelled,
    /// The model's worker thread is gone (it failed earlier).
    #[error("the local model's worker thread has stopped")]
    WorkerGone,
    /// The tensor computation failed.
    #[error("the model computation failed: {0}")]
    Compute(String),
}

impl LlmError {
    /// A short stable code for records and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            LlmError::Io { .. } => "model_io",
            LlmError::InvalidGguf(_) => "model_invalid_gguf",
            LlmError::Unsupported(_) => "model_unsupported",
            LlmError::Tokenizer(_) => "model_tokenizer",
            LlmError::Template(_) => "model_template",
            LlmError::InvalidParameter { .. } => "invalid_parameter",
            LlmError::ContextLength { .. } => "context_length_exceeded",
            LlmError::InvalidChoice(_) => "invalid_choice",
            LlmError::Busy { .. } => "model_busy",
            LlmError::Cancelled => "cancelled",
            LlmError::WorkerGone => "model_worker_gone",
            LlmError::Compute(_) => "model_compute",
        }
    }
}

/// Errors of candle's tensor code. Its messages name shapes, dtypes and tensor names, never
/// token text, so they are kept.
pub(crate) fn compute(e: candle_core::Error) -> LlmError {
    LlmError::Compute(e.to_string())
}
