//! The AI gateway.
//!
//! Only this crate sends text out of the process (invariant 1), and only with a [`Permit`]: a
//! value that nothing but [`policy::decide`] can create. The decision weighs the vendor's terms
//! (BAA validity on the day, the data class it may receive), the purpose of the call and who
//! is calling, and says whether text goes as is, goes pseudonymised, or does not go at all.
//!
//! A call, for the server's `POST /v1/chat/completions`:
//! 1. [`wire::parse_request`] reads the body (errors never quote it).
//! 2. [`decide`] gives a [`Decision`]; a refusal is recorded with [`CallRecord::refused`].
//! 3. [`Gateway::prepare`] turns the [`Permit`] and the request into a [`Ready`] request: as is,
//!    or with every string de-identified into the call's [`perimeter_phi::Vault`]
//!    ([`outbound`] says what is done with each field). Any engine error refuses the call.
//! 4. [`Gateway::send`] sends it through a [`Provider`] (the only code that opens a connection
//!    to a vendor) and restores the answer ([`inbound`]), with the output guardrails
//!    ([`guard`], [`clinical`]).
//! 5. The answer is released only after the caller confirms that the [`CallRecord`] was
//!    written: [`PendingAnswer::finish`], or [`PendingStream::begin`] and
//!    [`LiveStream::finish`] for streams (see [`gateway`]).

pub mod clinical;
pub mod error;
pub mod gateway;
pub mod guard;
pub mod inbound;
mod json_text;
#[cfg(feature = "local-model")]
pub mod local;
pub mod outbound;
pub mod policy;
pub mod provider;
pub mod purpose;
pub mod record;
pub mod sse;
pub mod vendor;
pub mod wire;

pub use clinical::ClinicalAdvice;
pub use error::{GatewayError, UpstreamError};
pub use gateway::{
    Answer, AsIsPermit, Blocked, Failure, Gateway, GatewayConfig, LiveStream, PendingAnswer,
    PendingStream, PermitForm, PseudonymisedPermit, Ready, Released, Reply, ResponseBody,
};
pub use guard::{Encoding, IdentifierHits};
#[cfg(feature = "local-model")]
pub use local::LocalProvider;
/// The local model crate, for constructing a [`LocalProvider`]'s model.
#[cfg(feature = "local-model")]
pub use perimeter_llm;
pub use policy::{Caller, Decision, Permit, Refusal, SendForm, decide};
pub use provider::{HttpProvider, HttpSettings, Provider, VendorConnection};
pub use purpose::{AiPurpose, PurposeRule};
pub use record::{CallOutcome, CallRecord, GatewayMetrics, GuardrailHits, MetricsSnapshot};
pub use vendor::{Baa, DataClass, VendorTerms};
pub use wire::{ChatCompletion, ChatCompletionChunk, ChatCompletionRequest, ErrorBody, ModelList};
