//! The PHI engine.
//!
//! Only this crate finds PHI (invariant 1). It has no I/O and no async: text in, spans out.
//! See `ARCHITECTURE.md` and `../shared/corpus/README.md` for the labels and their rules.
//!
//! [`Engine::detect`] runs a pipeline of recognizers over one message: a multi-pattern
//! automaton for structured identifiers (validated: calendar dates, SSN rules, MBI, VIN, IP
//! parsing), context cues found by one Aho-Corasick pass, and name and place detection from
//! built-in public-domain lists combined with capitalisation, cues and position.

pub mod deid;
mod detect;
mod engine;
pub mod eval;
mod label;
mod lexicon;
mod span;
mod stream;
mod surrogate;
mod vault;

pub use detect::{Candidate, Recognizer, Text};
pub use engine::{DEFAULT_MAX_MESSAGE_BYTES, Engine, EngineConfig, PhiError};
pub use label::Label;
pub use span::Span;
pub use stream::StreamReidentifier;
pub use vault::{DateShiftKey, Reidentified, Vault};
