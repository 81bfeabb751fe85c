//! Perimeter's shared vocabulary.
//!
//! Everything here is plain data with no I/O: the injected [`Clock`], the typed ids that name
//! records without revealing anything about the person behind them, staff [`Role`]s, the
//! [`PurposeOfUse`] of an access and the [`DataCategory`]s it touches. Every other crate speaks
//! in these types, so that, for example, an audit event cannot be given a patient's name where
//! a [`PatientId`] is expected.

mod clock;
mod ids;
mod text;
mod vocab;

pub use clock::{Clock, ManualClock, SharedClock, SystemClock};
pub use ids::{ConversationId, IdParseError, MessageId, PatientId, PracticeId, RequestId, StaffId};
pub use text::is_invisible;
pub use vocab::{DataCategory, PurposeOfUse, Role, UnknownName};
