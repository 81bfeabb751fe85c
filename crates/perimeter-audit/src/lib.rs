//! The audit trail's data model and its tamper evidence.
//!
//! The storage crate appends [`AuditRecord`]s in the same transaction as the access they record
//! (invariant 3), computing each with [`AuditRecord::next`]; this crate defines what the bytes
//! are, so that anyone holding the records and a checkpoint can verify them.
//!
//! - [`merkle`]: the RFC 6962 tree and its [`merkle::Frontier`];
//! - [`proof`]: inclusion and consistency proofs, generated from stored nodes and verified per
//!   RFC 9162;
//! - [`checkpoint`]: signed checkpoints (C2SP tlog-checkpoint in a signed note, Ed25519) and
//!   the checkpoint log format; [`schedule`]: when to write one;
//! - [`verify`]: whole-trail verification; [`bundle`]: offline-checkable inclusion proofs;
//! - [`query`]: the activity filter, the query columns stores keep (and the verifier checks),
//!   and the self-audit event; [`export`]: FHIR R4 (IHE BALP) and CSV; [`fhir_check`]: a
//!   structural check of exported bundles against FHIR R4 and the BALP profiles they claim;
//! - feature `runtime` (default): `group` (group commit of standalone events) and
//!   `checkpointer` (the background task writing checkpoints to the database and the
//!   checkpoint file), and `trail` (verification and proofs over an asynchronous store).
//!   Without it the crate does no I/O.
//!
//! Audit records cannot be deleted or changed through Perimeter: no API here or in the store
//! does it, the database refuses it (triggers on every audit table; the head may only
//! advance), and retention is at least [`query::RETENTION_YEARS`] years.

pub mod bundle;
pub mod checkpoint;
#[cfg(feature = "runtime")]
pub mod checkpointer;
mod event;
pub mod export;
pub mod fhir_check;
#[cfg(feature = "runtime")]
pub mod group;
pub mod merkle;
pub mod proof;
pub mod query;
mod record;
pub mod schedule;
#[cfg(feature = "runtime")]
pub mod trail;
pub mod verify;

pub use event::{Action, Actor, AuditEvent, ObjectRef, Outcome};
pub use record::{AuditRecord, GENESIS_HASH, Hash32, RecordError, leaf_hash};
