//! The PHI engine.
//!
//! Only this crate finds PHI (invariant 1). It has no I/O and no async: text in, spans out.
//! See `ARCHITECTURE.md` and `../shared/corpus/README.md` for the labels and their rules.

mod label;
mod span;

pub use label::Label;
pub use span::Span;
