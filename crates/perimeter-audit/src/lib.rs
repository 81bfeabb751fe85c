//! The audit trail's data model and its tamper evidence.
//!
//! The storage crate appends [`AuditRecord`]s in the same transaction as the access they record
//! (invariant 3), computing each with [`AuditRecord::next`]; this crate defines what the bytes
//! are, so that anyone holding the records and a checkpoint can verify them.

mod event;
pub mod merkle;
mod record;

pub use event::{Action, Actor, AuditEvent, ObjectRef, Outcome};
pub use record::{AuditRecord, GENESIS_HASH, Hash32, RecordError, leaf_hash};
